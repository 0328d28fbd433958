//! Fault plans: where and when the harness makes things go wrong.
//!
//! | fault | where it fires | label |
//! |---|---|---|
//! | operator panic | before an operator processes its n-th record of an attempt | must recover |
//! | process kill (simulated) | at a scheduler step: every task dies, in-flight records are lost |
//! must recover |
//!
//! *Must recover*: after the restart strategy restarts the job, restored state and committed
//! output must match the model. The runtime asks the plan at each fault point; a plan that never
//! answers is the fault-free run.

use serde::{Deserialize, Serialize};

use crate::job::Record;

/// A record about to be processed: the fault point of operator panics.
#[derive(Debug, Clone, Copy)]
pub struct RecordPoint<'a> {
    /// The stage name.
    pub stage: &'a str,
    /// The subtask index.
    pub subtask: u16,
    /// The job attempt (0 before any restart).
    pub attempt: u32,
    /// 1-based count of records this subtask processed in this attempt, this one included.
    pub record_index: u64,
    /// The record.
    pub record: &'a Record,
}

/// Decides at each fault point whether a fault fires. The runtime calls it; it never inspects
/// engine state, so the same plan drives every backend.
pub trait FaultPlan {
    /// A failure message if the operator must fail instead of processing this record.
    fn on_record(&mut self, _point: &RecordPoint<'_>) -> Option<String> {
        None
    }

    /// A kill message if the process must die at this step.
    fn on_step(&mut self, _step: u64, _time_ms: u64) -> Option<String> {
        None
    }
}

/// No faults at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFaults;

impl FaultPlan for NoFaults {}

/// One scheduled fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Fault {
    /// The operator panics before its `record_index`-th record of `attempt`.
    Panic {
        /// The stage.
        stage: String,
        /// The subtask.
        subtask: u16,
        /// The attempt in which it fires.
        attempt: u32,
        /// Which record (1-based).
        record_index: u64,
    },
    /// The process is killed at this scheduler step.
    Kill {
        /// The step.
        step: u64,
    },
}

/// A fixed list of faults, each firing at most once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultSchedule {
    /// The faults.
    pub faults: Vec<Fault>,
    #[serde(skip)]
    fired: Vec<bool>,
}

impl FaultSchedule {
    /// A schedule of `faults`.
    pub fn new(faults: Vec<Fault>) -> Self {
        let fired = vec![false; faults.len()];
        Self { faults, fired }
    }

    fn fire(&mut self, matches: impl Fn(&Fault) -> bool) -> Option<usize> {
        self.fired.resize(self.faults.len(), false);
        let index = (0..self.faults.len()).find(|&i| !self.fired[i] && matches(&self.faults[i]))?;
        self.fired[index] = true;
        Some(index)
    }
}

impl FaultPlan for FaultSchedule {
    fn on_record(&mut self, point: &RecordPoint<'_>) -> Option<String> {
        self.fire(|fault| {
            matches!(fault, Fault::Panic { stage, subtask, attempt, record_index }
                if stage == point.stage && *subtask == point.subtask && *attempt == point.attempt && *record_index == point.record_index)
        })
        .map(|_| format!("injected panic before record #{} ({})", point.record_index, point.record.id))
    }

    fn on_step(&mut self, step: u64, _time_ms: u64) -> Option<String> {
        self.fire(|fault| matches!(fault, Fault::Kill { step: at } if *at == step))
            .map(|_| format!("process killed at step {step} (simulated)"))
    }
}
