//! The oracle: compares a run with the reference model and reports typed violations that name
//! the seed, where it happened (checkpoint, attempt, key) and both values. It reads outcomes and
//! never mutates anything.
//!
//! Properties:
//! 1. **Restored state**: after every restore, keyed state equals the model evaluated at the
//!    restored checkpoint's source positions — so "restored from a checkpoint" is told apart
//!    from "recomputed from scratch".
//! 2. **Final state**: when the job finishes, keyed state equals the model over the whole input.
//! 3. **Output**: an exactly-once sink in exactly-once mode makes visible exactly the model's
//!    output (nothing lost, nothing twice). Otherwise (a print sink, or at-least-once mode)
//!    nothing is lost and a record appears more than once only if a restore rewound its
//!    partition to or before it — a replay.
//! 4. **Liveness**: the job finishes.
//!
//! In at-least-once mode with fan-in, a snapshot may hold records after its barrier, so restored
//! state and output values legitimately differ from the model: properties 1 and 2 and output
//! values are then not checked (the verdict says so); loss and replay-only duplication still are.
//!
//! ```
//! use faultline::check::Violation;
//!
//! // Every violation names the property it breaks, which failure reports lead with.
//! let violation = Violation::JobFailed { reason: "40 restarts used".into() };
//! assert_eq!(violation.property(), "liveness");
//! assert!(violation.to_string().contains("40 restarts used"));
//! ```

use std::collections::BTreeMap;
use std::fmt;

use crate::checkpoint::CheckpointingMode;
use crate::engine::{JobStatus, RunOutcome};
use crate::job::user::UserOperator;
use crate::job::{Input, JobSpec, Record, SinkKind};
use crate::model;
use crate::state::{StateAddr, StateValue};

/// A broken property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// Keyed state right after a restore differs from the model at the restored positions.
    RestoredState {
        /// The attempt that restored.
        attempt: u32,
        /// The checkpoint restored (`None`: no checkpoint, restart from scratch).
        checkpoint_id: Option<u64>,
        /// Where the values differ.
        addr: StateAddr,
        /// The model's value.
        expected: Option<StateValue>,
        /// The engine's value.
        actual: Option<StateValue>,
    },
    /// Keyed state at the end differs from the model over the whole input.
    FinalState {
        /// Where the values differ.
        addr: StateAddr,
        /// The model's value.
        expected: Option<StateValue>,
        /// The engine's value.
        actual: Option<StateValue>,
    },
    /// A record of the model's output never became visible.
    OutputLost {
        /// The record.
        record: Record,
    },
    /// A record became visible more often than allowed.
    OutputDuplicated {
        /// The record.
        record: Record,
        /// How often it is visible.
        count: usize,
        /// How often it may be (1, or 1 + the restores that replayed it).
        allowed: usize,
    },
    /// A visible record the model does not produce (or with another value).
    OutputUnexpected {
        /// The record.
        record: Record,
        /// The model's record with the same id, if any.
        expected: Option<Record>,
    },
    /// The job did not finish.
    JobFailed {
        /// Why.
        reason: String,
    },
    /// A user's output reader could not read what the sink left in its external system.
    OutputUnreadable {
        /// The reader's error.
        reason: String,
    },
    /// The keyed state could not be read at the end: a backend holds cells no consistent
    /// state has (a key in two subtasks).
    StateUnreadable {
        /// Why.
        reason: String,
    },
    /// The engine's upload hand-off refused a snapshot that reused a shared file no uploaded or
    /// retained checkpoint holds: the backend reused a file of a checkpoint that was never
    /// confirmed (or is gone). Without the refusal the checkpoint would name a file that may be
    /// deleted; with it, every such checkpoint fails.
    ReuseRefused {
        /// Which checkpoint, subtask and file.
        reason: String,
    },
    /// Records left in a transaction that was never committed nor aborted by the end of a
    /// finished job: a sink that did not abort (or commit) what it began.
    TransactionStranded {
        /// The transaction.
        txn: String,
        /// Records in it.
        records: usize,
    },
    /// A completion notification failed a task. Notifications may come late, twice or never
    /// (a later one covers earlier ones), so receiving one must never fail: every such failure
    /// is a needless failover, and a restart loop waiting to happen.
    NotificationFailed {
        /// The task.
        task: String,
        /// Its error.
        reason: String,
    },
    /// The storage audit found a problem the faults do not explain.
    Storage {
        /// When: `after chk-3`, `after restore (attempt 2)`.
        context: String,
        /// What.
        problem: String,
    },
    /// A checkpoint was restored after one of its files had been corrupted: wrong state may
    /// have been restored silently.
    CorruptRestored {
        /// The checkpoint.
        checkpoint: u64,
        /// The corrupted file.
        path: String,
    },
}

fn show(value: &Option<StateValue>) -> String {
    value
        .as_ref()
        .map_or_else(|| "absent".to_string(), ToString::to_string)
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::RestoredState {
                attempt,
                checkpoint_id,
                addr,
                expected,
                actual,
            } => {
                let from = checkpoint_id
                    .map_or_else(|| "no checkpoint".to_string(), |id| format!("chk-{id}"));
                write!(f, "restored state: after restore from {from} (attempt {attempt}), {addr} is {}, the model says {}", show(actual), show(expected))
            }
            Violation::FinalState {
                addr,
                expected,
                actual,
            } => {
                write!(
                    f,
                    "final state: {addr} is {}, the model says {}",
                    show(actual),
                    show(expected)
                )
            }
            Violation::OutputLost { record } => {
                write!(f, "output lost: {record} never became visible")
            }
            Violation::OutputDuplicated {
                record,
                count,
                allowed,
            } => {
                write!(
                    f,
                    "output duplicated: {record} visible {count} times, at most {allowed} allowed"
                )
            }
            Violation::OutputUnexpected { record, expected } => match expected {
                Some(expected) => write!(
                    f,
                    "output wrong: {record} visible, the model says {expected}"
                ),
                None => write!(
                    f,
                    "output unexpected: {record} is not in the model's output"
                ),
            },
            Violation::Storage { context, problem } => {
                write!(f, "storage audit {context}: {problem}")
            }
            Violation::CorruptRestored { checkpoint, path } => {
                write!(f, "corruption restored silently: chk-{checkpoint} was restored after {path} was corrupted")
            }
            Violation::JobFailed { reason } => {
                write!(f, "liveness: the job did not finish: {reason}")
            }
            Violation::OutputUnreadable { reason } => {
                write!(f, "the sink's output cannot be read back: {reason}")
            }
            Violation::StateUnreadable { reason } => {
                write!(f, "the final state cannot be read: {reason}")
            }
            Violation::ReuseRefused { reason } => {
                write!(
                    f,
                    "a snapshot reused a shared file no uploaded or retained checkpoint holds: {reason}"
                )
            }
            Violation::TransactionStranded { txn, records } => {
                write!(f, "transaction {txn} still holds {records} records, neither committed nor aborted, when the job finished")
            }
            Violation::NotificationFailed { task, reason } => {
                write!(f, "a completion notification failed {task}: {reason}")
            }
        }
    }
}

impl Violation {
    /// The property this violation breaks: `state`, `output`, `liveness`, `notification`,
    /// `transactions`, `storage` or `corruption`.
    pub fn property(&self) -> &'static str {
        match self {
            Violation::RestoredState { .. } | Violation::FinalState { .. } => "state",
            Violation::OutputLost { .. }
            | Violation::OutputDuplicated { .. }
            | Violation::OutputUnexpected { .. } => "output",
            Violation::JobFailed { .. } => "liveness",
            Violation::NotificationFailed { .. } => "notification",
            Violation::TransactionStranded { .. } => "transactions",
            Violation::ReuseRefused { .. } => "reuse",
            Violation::StateUnreadable { .. } => "state",
            Violation::OutputUnreadable { .. } => "output",
            Violation::Storage { .. } => "storage",
            Violation::CorruptRestored { .. } => "corruption",
        }
    }
}

/// The oracle's findings on one run.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// The seed of the run, for messages.
    pub seed: u64,
    /// Broken properties, in the order found.
    pub violations: Vec<Violation>,
    /// What was checked, skipped or observed, for the report.
    pub notes: Vec<String>,
    /// Visible records that are allowed replays of a restore.
    pub replayed: Vec<Record>,
}

impl Verdict {
    /// Whether every property held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.passed() {
            writeln!(f, "verdict (seed {}): every property held", self.seed)?;
        } else {
            writeln!(
                f,
                "verdict (seed {}): {} violation(s)",
                self.seed,
                self.violations.len()
            )?;
            for violation in &self.violations {
                writeln!(
                    f,
                    "  VIOLATION [{}] seed {}: {violation}",
                    violation.property(),
                    self.seed
                )?;
            }
        }
        for note in &self.notes {
            writeln!(f, "  note: {note}")?;
        }
        Ok(())
    }
}

type RecordKey = (String, String, i64);

fn record_key(record: &Record) -> RecordKey {
    (record.id.clone(), record.key.clone(), record.value)
}

/// Checks every property of a run of `job` over `input`.
pub fn check_run(
    job: &JobSpec,
    input: &Input,
    mode: CheckpointingMode,
    seed: u64,
    outcome: &RunOutcome,
) -> Verdict {
    check_run_with(job, input, mode, seed, outcome, &[])
}

/// [`check_run`] for a job with user operators, judged by their models.
pub fn check_run_with(
    job: &JobSpec,
    input: &Input,
    mode: CheckpointingMode,
    seed: u64,
    outcome: &RunOutcome,
    users: &[UserOperator],
) -> Verdict {
    check_phases(job, job.has_fan_in(), input, mode, seed, outcome, users)
}

/// Checks a run that was stopped with a savepoint and resumed as `after` (the same stages at
/// other parallelisms). Snapshots taken while running as `before` carry its fan-in into the
/// second phase's restores, so state is exact only if neither phase has fan-in.
pub fn check_rescaled_run(
    before: &JobSpec,
    after: &JobSpec,
    input: &Input,
    mode: CheckpointingMode,
    seed: u64,
    outcome: &RunOutcome,
) -> Verdict {
    check_rescaled_run_with(before, after, input, mode, seed, outcome, &[])
}

/// [`check_rescaled_run`] for a job with user operators, judged by their models.
pub fn check_rescaled_run_with(
    before: &JobSpec,
    after: &JobSpec,
    input: &Input,
    mode: CheckpointingMode,
    seed: u64,
    outcome: &RunOutcome,
    users: &[UserOperator],
) -> Verdict {
    let fan_in = before.has_fan_in() || after.has_fan_in();
    check_phases(after, fan_in, input, mode, seed, outcome, users)
}

fn check_phases(
    job: &JobSpec,
    fan_in: bool,
    input: &Input,
    mode: CheckpointingMode,
    seed: u64,
    outcome: &RunOutcome,
    users: &[UserOperator],
) -> Verdict {
    let mut verdict = Verdict {
        seed,
        ..Verdict::default()
    };
    let state_exact = mode == CheckpointingMode::ExactlyOnce || !fan_in;
    if !state_exact {
        verdict.notes.push("at-least-once mode with fan-in: snapshots may hold records after their barrier, so state and output values are not compared (loss and replay-only duplication are)".into());
    }

    if state_exact {
        let before = verdict.violations.len();
        for restore in &outcome.restores {
            let expected = model::evaluate_with(job, input, &restore.positions, users).state;
            for (addr, expected, actual) in expected.differences(&restore.state) {
                verdict.violations.push(Violation::RestoredState {
                    attempt: restore.attempt,
                    checkpoint_id: restore.checkpoint_id,
                    addr: addr.clone(),
                    expected: expected.cloned(),
                    actual: actual.cloned(),
                });
            }
        }
        let differing = verdict.violations.len() - before;
        if !outcome.restores.is_empty() && differing == 0 {
            verdict.notes.push(format!(
                "restored state matched the model at {} restore(s)",
                outcome.restores.len()
            ));
        }
    }

    let end = model::evaluate_with(job, input, &outcome.end_positions, users);
    match (&outcome.status, &outcome.final_state) {
        (JobStatus::Finished | JobStatus::Stopped { .. }, Some(state)) if state_exact => {
            for (addr, expected, actual) in end.state.differences(state) {
                verdict.violations.push(Violation::FinalState {
                    addr: addr.clone(),
                    expected: expected.cloned(),
                    actual: actual.cloned(),
                });
            }
        }
        (JobStatus::Failed { reason }, _) => {
            // Corruption must fail loudly: a restore that names a corrupted file is the
            // expected end, not a liveness failure.
            let last = outcome.failures.last();
            let loud = last.is_some_and(|f| {
                f.task == "restore"
                    && outcome
                        .corruptions
                        .iter()
                        .any(|c| f.reason.contains(&c.path))
            });
            if loud {
                verdict
                    .notes
                    .push(format!("failed loudly, as corruption must: {reason}"));
            } else {
                verdict.violations.push(Violation::JobFailed {
                    reason: reason.clone(),
                });
            }
        }
        _ => {}
    }

    if matches!(outcome.status, JobStatus::Finished) {
        for (txn, records) in outcome.store.stranded() {
            verdict
                .violations
                .push(Violation::TransactionStranded { txn, records });
        }
    }

    if let Some(reason) = &outcome.final_state_error {
        verdict.violations.push(Violation::StateUnreadable {
            reason: reason.clone(),
        });
    }
    for reason in &outcome.refused_reuses {
        verdict.violations.push(Violation::ReuseRefused {
            reason: reason.clone(),
        });
    }

    // The runtime names a failure in `notify_checkpoint_complete` `notify chk-N: ...`.
    for failure in &outcome.failures {
        if failure.reason.starts_with("notify chk-") {
            verdict.violations.push(Violation::NotificationFailed {
                task: failure.task.clone(),
                reason: failure.reason.clone(),
            });
        }
    }

    for (context, problem) in &outcome.audit_problems {
        verdict.violations.push(Violation::Storage {
            context: context.clone(),
            problem: problem.to_string(),
        });
    }
    for corruption in &outcome.corruptions {
        // Corruption is applied just before an attempt restores; restoring the damaged
        // checkpoint afterwards means its damage went unnoticed.
        if outcome.restores.iter().any(|r| {
            r.checkpoint_id == Some(corruption.checkpoint) && r.attempt >= corruption.attempt
        }) {
            verdict.violations.push(Violation::CorruptRestored {
                checkpoint: corruption.checkpoint,
                path: corruption.path.clone(),
            });
        }
    }
    let finished = matches!(
        outcome.status,
        JobStatus::Finished | JobStatus::Stopped { .. }
    );
    let exactly_once =
        job.sink.kind == SinkKind::TwoPhaseCommit && mode == CheckpointingMode::ExactlyOnce;
    // Output of records before the start positions came from the run that took the initial
    // snapshot; this run owes only the rest.
    let start = &outcome.start_positions;
    let owed: Vec<Record> = end
        .outputs
        .into_iter()
        .filter(|r| {
            start
                .0
                .get(r.origin.partition as usize)
                .is_none_or(|p| r.origin.offset >= *p)
        })
        .collect();
    let all = model::evaluate_with(job, input, &input.end_positions(), users).outputs;
    check_output(
        &mut verdict,
        &owed,
        &all,
        outcome,
        finished,
        exactly_once,
        state_exact,
    );
    verdict
}

/// Checks visible output. `expected` is what the run owed (nothing of it may be lost when it
/// finished); `model_all` is the model over the whole input: a record's value does not depend
/// on where a run stopped, so every visible record is judged against it (an earlier attempt
/// of a failed run may have got further than the last one).
fn check_output(
    verdict: &mut Verdict,
    expected: &[Record],
    model_all: &[Record],
    outcome: &RunOutcome,
    finished: bool,
    exactly_once: bool,
    values_exact: bool,
) {
    let mut model_by_id: BTreeMap<&str, &Record> = BTreeMap::new();
    for record in model_all {
        let previous = model_by_id.insert(&record.id, record);
        assert!(
            previous.is_none(),
            "the model emits each id once: {}",
            record.id
        );
    }
    // Records before the start positions were made visible by the run that took the initial
    // snapshot; this run cannot have produced them.
    let start = &outcome.start_positions;
    let mut visible: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for record in outcome.store.visible() {
        if start
            .0
            .get(record.origin.partition as usize)
            .is_none_or(|p| record.origin.offset >= *p)
        {
            visible.entry(&record.id).or_default().push(record);
        }
    }
    // How often each record may appear: once, plus once per restore that rewound its
    // partition to or before it (it was read again).
    let replays = |record: &Record| {
        // The first attempt's restore (from an initial snapshot) starts the run: it replays
        // nothing this run emitted.
        outcome
            .restores
            .iter()
            .filter(|r| r.attempt > 0)
            .filter(|r| {
                r.positions
                    .0
                    .get(record.origin.partition as usize)
                    .is_some_and(|p| *p <= record.origin.offset)
            })
            .count()
    };
    for (id, copies) in &visible {
        let model_record = model_by_id.get(id).copied();
        for copy in copies {
            let matches_model = model_record.is_some_and(|m| record_key(m) == record_key(copy));
            if values_exact && !matches_model {
                verdict.violations.push(Violation::OutputUnexpected {
                    record: (*copy).clone(),
                    expected: model_record.cloned(),
                });
            }
        }
        let allowed = if exactly_once {
            1
        } else {
            1 + replays(copies[0])
        };
        if copies.len() > allowed {
            verdict.violations.push(Violation::OutputDuplicated {
                record: copies[0].clone(),
                count: copies.len(),
                allowed,
            });
        } else if copies.len() > 1 {
            verdict.replayed.push(copies[0].clone());
        }
    }
    if finished {
        for record in expected {
            if !visible.contains_key(record.id.as_str()) {
                verdict.violations.push(Violation::OutputLost {
                    record: record.clone(),
                });
            }
        }
    }
    let total: usize = visible.values().map(Vec::len).sum();
    let rule = if exactly_once {
        "exactly-once"
    } else {
        "at-least-once"
    };
    verdict.notes.push(format!(
        "output ({rule}): the model emits {} records; {} visible, {} replayed after a restore",
        expected.len(),
        total,
        total - visible.len()
    ));
}
