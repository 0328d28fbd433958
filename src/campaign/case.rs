//! [`Case`]: a scenario and the user's seams, and its one way to run — used by `explore`,
//! `replay`, the named scenarios, the [`crate::harness::Harness`], the demos, and both kill
//! modes. A case is phases the runner walks (the job runs; with a rescale, it stops with a
//! savepoint and resumes at another parallelism on the same checkpoint root and external
//! system), each phase recording into the one trace of the case; the oracle then judges the
//! whole case once. A panic anywhere inside — an engine assertion, a user's code — is that
//! case's `assertion` violation, with the trace up to it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::panic::{self, Panic};
use super::{CaseError, Phase, PhaseEnding, Scenario, Seams};
use crate::check::{self, CaseSpec, Verdict, Violation};
use crate::checkpoint::{Durability, FsCheckpointStorage};
use crate::engine::{JobStatus, PhaseEnd, RunOutcome, RunStats, Runtime};
use crate::fault::{FaultKind, FaultSchedule, FaultSite};
use crate::job::{user, ExternalStore, Input, OperatorSpec};
use crate::state::StateBackendFactory;
use crate::trace::{Event, Trace, TraceHash};

/// How process kills happen.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum KillMode {
    /// Simulated inside one process.
    #[default]
    Sim,
    /// Real: each phase of a case runs in child processes of `binary` (a `faultline` build),
    /// and every kill at a scheduler step aborts the child (SIGABRT); the next child resumes on
    /// the same directories.
    Process {
        /// The `faultline` binary to run children of.
        binary: PathBuf,
    },
}

/// A case: a scenario and the seams plugged into it.
#[derive(Debug, Clone)]
pub struct Case<'a> {
    scenario: Scenario,
    seams: Seams<'a>,
}

/// One run of a case and its verdict.
#[derive(Debug)]
pub struct CaseReport {
    /// What the case produced, its phases together.
    pub outcome: RunOutcome,
    /// The oracle's findings.
    pub verdict: Verdict,
    /// Hash of the trace: equal for equal seeds, in either kill mode.
    pub trace_hash: TraceHash,
    /// Child processes killed for real (process mode).
    pub real_kills: u32,
}

impl CaseReport {
    /// The faults that fired, in order, as (kind, site): read from the trace, so it is the same
    /// in either kill mode.
    pub fn fired(&self) -> Vec<(FaultKind, FaultSite)> {
        self.outcome
            .trace
            .events()
            .iter()
            .filter_map(|stamped| match stamped.event {
                Event::FaultFired { fault, site } => Some((fault, site)),
                _ => None,
            })
            .collect()
    }
}

impl CaseReport {
    /// The fault kinds that fired before an attempt restored after a failure: the faults
    /// that reached recovery.
    pub fn reached_restore(&self) -> BTreeSet<FaultKind> {
        reached_restore(self.outcome.trace.events().iter().map(|s| &s.event))
    }
}

/// The fault kinds among `events` that fired before a restore that followed a failure. A
/// phase's planned restore (from the rescale's savepoint) follows no failure and counts not.
fn reached_restore<'e>(events: impl Iterator<Item = &'e Event>) -> BTreeSet<FaultKind> {
    let (mut fired, mut reached) = (BTreeSet::new(), BTreeSet::new());
    let mut failed = false;
    for event in events {
        match event {
            Event::FaultFired { fault, .. } => {
                fired.insert(*fault);
            }
            Event::Failure { .. } => failed = true,
            Event::JobStarted(_) => failed = false,
            Event::Restored(_) if failed => {
                reached.extend(fired.iter().copied());
                failed = false;
            }
            _ => {}
        }
    }
    reached
}

/// What the phases run so far left.
#[derive(Default)]
pub(super) struct Walked {
    pub(super) ends: Vec<PhaseEnd>,
    pub(super) real_kills: u32,
}

impl<'a> Case<'a> {
    /// `scenario`, with `seams` plugged in.
    pub fn new(scenario: Scenario, seams: Seams<'a>) -> Self {
        Self { scenario, seams }
    }

    /// Every user operator the job names is given, and the operators given are used (a window
    /// operator given finds a window): a case must never fall back to built-in operators
    /// silently.
    fn operators_given(&self) -> Result<(), CaseError> {
        let given: Vec<String> = self
            .seams
            .operators
            .iter()
            .map(|op| op.name.clone())
            .collect();
        let mut used = false;
        for stage in &self.scenario.job.stages {
            if let OperatorSpec::User { name, keyed } = &stage.op {
                let Some(registered) = user::find(self.seams.operators, name) else {
                    return Err(CaseError::UnknownOperator {
                        name: name.clone(),
                        given,
                    });
                };
                if registered.keyed != *keyed {
                    return Err(CaseError::KeyedMismatch {
                        name: name.clone(),
                        in_job: *keyed,
                        registered: registered.keyed,
                    });
                }
                used = true;
            }
        }
        if !given.is_empty() && !used {
            return Err(CaseError::OperatorsUnused { given });
        }
        if self.seams.windows.is_some() && self.scenario.job.window().is_none() {
            return Err(CaseError::WindowsUnused);
        }
        Ok(())
    }

    /// The scenario.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// Runs the case in `dir` (checkpoints, the external system, backends' work: an empty or
    /// new directory) and judges it.
    pub fn run(&self, dir: &Path, mode: &KillMode) -> Result<CaseReport, CaseError> {
        self.seams.usable(mode)?;
        self.operators_given()?;
        fresh(dir)?;
        let input = self.scenario.input()?;
        let mut trace = Trace::new();
        let mut walked = Walked::default();
        let panicked = match mode {
            KillMode::Sim => match panic::catch(|| self.walk(dir, &input, &mut trace, &mut walked))
            {
                Ok(ran) => ran.map(|()| None)?,
                Err(panic) => Some(panic),
            },
            KillMode::Process { binary } => {
                super::process::walk(&self.scenario, dir, binary, &mut trace, &mut walked)?
            }
        };
        match panicked {
            None => self.judge(trace, walked, &input),
            Some(panic) => Ok(self.panicked(trace, panic, &input, walked)),
        }
    }

    /// Runs the phases in this process, each recording into `trace` and leaving its end in
    /// `walked` (so a panic in a later phase keeps what the earlier ones did).
    fn walk(
        &self,
        dir: &Path,
        input: &Input,
        trace: &mut Trace,
        walked: &mut Walked,
    ) -> Result<(), CaseError> {
        let built_in;
        let backends: &dyn StateBackendFactory = match self.seams.backend {
            Some(user) => user,
            None => {
                built_in = self.scenario.backend.factory()?;
                built_in.as_ref()
            }
        };
        // One fault schedule spans every phase: a fault fires once in the whole case.
        let mut faults = FaultSchedule::with_seed(self.scenario.faults.clone(), self.scenario.seed);
        let mut storage = FsCheckpointStorage::new(dir.join("checkpoints"), Durability::PageCache)?;
        // The external system's directory outlives every attempt, and every phase.
        let external = dir.join("external");
        std::fs::create_dir_all(&external).map_err(|e| CaseError::Io {
            path: external.clone(),
            source: e,
        })?;
        let mut store = ExternalStore::new().with_dir(external);
        let phases = self.scenario.phases();
        let ends = &mut walked.ends;
        while let Some(phase) = next_phase(&phases, ends) {
            let runtime = Runtime::new(
                &phase.job,
                input,
                phase.config,
                backends,
                &mut storage,
                &mut faults,
                &dir.join("work"),
            )?
            .with_store(store)
            .with_operators(self.seams.operators);
            let runtime = match self.seams.sink {
                Some(factory) => runtime.with_sink(factory),
                None => runtime,
            };
            let runtime = match self.seams.source {
                Some(factory) => runtime.with_source(factory),
                None => runtime,
            };
            let runtime = match self.seams.windows {
                Some(factory) => runtime.with_windows(factory),
                None => runtime,
            };
            let mut end = runtime.run_into(trace)?;
            store = std::mem::take(&mut end.store);
            ends.push(end);
        }
        // `next_phase` always gives a first phase, so one ran.
        let last = ends.last_mut().expect("a case runs at least one phase");
        last.store = store;
        Ok(())
    }

    /// Judges the walked phases once, as one run.
    fn judge(&self, trace: Trace, walked: Walked, input: &Input) -> Result<CaseReport, CaseError> {
        let jobs: Vec<_> = self.scenario.phases().into_iter().map(|p| p.job).collect();
        let jobs: Vec<&_> = jobs.iter().take(walked.ends.len()).collect();
        let real_kills = walked.real_kills;
        let end = merge(walked.ends);
        let mut outcome = RunOutcome::from_trace(trace, end, input.partitions().len());
        let spec = CaseSpec {
            jobs: &jobs,
            input,
            mode: self.scenario.checkpoint.mode,
            unaligned: self.scenario.checkpoint.unaligned.enabled(),
            seed: self.scenario.seed,
            users: self.seams.operators,
        };
        let verdict = panic::catch(|| {
            super::judge(&mut outcome, self.seams, |o| check::check_case(&spec, o))
        });
        let verdict = match verdict {
            Ok(verdict) => verdict?,
            Err(panic) => {
                let stats = outcome.stats.clone();
                let (trace, _) = outcome.into_parts();
                return Ok(self.report_panic(trace, panic, input, stats, real_kills));
            }
        };
        let trace_hash = outcome.trace.hash();
        Ok(CaseReport {
            outcome,
            verdict,
            trace_hash,
            real_kills,
        })
    }

    /// The report of a case a panic ended while it ran: the phases run so far count.
    fn panicked(&self, trace: Trace, panic: Panic, input: &Input, walked: Walked) -> CaseReport {
        let stats = match walked.ends.is_empty() {
            true => RunStats::default(),
            false => merge(walked.ends).stats,
        };
        self.report_panic(trace, panic, input, stats, walked.real_kills)
    }

    /// The report of a case a panic ended: its trace so far, and the panic as its violation.
    fn report_panic(
        &self,
        trace: Trace,
        panic: Panic,
        input: &Input,
        stats: RunStats,
        real_kills: u32,
    ) -> CaseReport {
        let partitions = input.partitions().len();
        let mut end = PhaseEnd::failed(format!("panicked: {}", panic.message), partitions);
        end.stats = stats;
        let outcome = RunOutcome::from_trace(trace, end, partitions);
        let verdict = Verdict {
            seed: self.scenario.seed,
            violations: vec![Violation::Assertion {
                message: panic.message,
                location: panic.location,
            }],
            ..Verdict::default()
        };
        let trace_hash = outcome.trace.hash();
        CaseReport {
            outcome,
            verdict,
            trace_hash,
            real_kills,
        }
    }
}

/// Refuses a case directory holding anything: checkpoints or an external system left there
/// would be taken up as this case's own.
fn fresh(dir: &Path) -> Result<(), CaseError> {
    match std::fs::read_dir(dir).map(|mut entries| entries.next().is_some()) {
        Ok(true) => Err(CaseError::DirNotEmpty {
            path: dir.to_path_buf(),
        }),
        Ok(false) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(CaseError::Io {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// The phase to run after those that ended as `ends`, or none when the case is over: a later
/// phase runs only if the one before stopped with the savepoint it resumes from. Its attempt
/// numbers and virtual time continue the phases before, so faults keyed by attempt fire once
/// overall.
pub(super) fn next_phase(phases: &[Phase], ends: &[PhaseEnd]) -> Option<Phase> {
    if let (Some(end), Some(before)) = (ends.last(), phases.get(ends.len().wrapping_sub(1))) {
        let stopped = match (&end.status, &before.then) {
            (JobStatus::Stopped { savepoint }, Some(PhaseEnding::Savepoint(then))) => {
                savepoint == then
            }
            (JobStatus::Cancelled { .. }, Some(PhaseEnding::Cancelled)) => true,
            _ => false,
        };
        if !stopped {
            return None;
        }
    }
    let mut phase = phases.get(ends.len())?.clone();
    phase.config.first_attempt = ends.iter().map(|end| end.stats.attempts).sum();
    phase.config.start_ms = ends.last().map_or(0, |end| end.stats.time_ms);
    Some(phase)
}

/// The phases' ends as one: how the last ended, the counters of all.
fn merge(ends: Vec<PhaseEnd>) -> PhaseEnd {
    let mut stats = RunStats::default();
    for end in &ends {
        let s = &end.stats;
        stats.steps += s.steps;
        stats.attempts += s.attempts;
        stats.checkpoints_completed += s.checkpoints_completed;
        stats.checkpoints_aborted += s.checkpoints_aborted;
        stats.checkpoints_overlapping += s.checkpoints_overlapping;
        stats.unaligned.add(&s.unaligned);
        stats.inherited_restores.add(&s.inherited_restores);
        stats.notifications_out_of_order += s.notifications_out_of_order;
        stats.records_processed += s.records_processed;
        stats.files_written += s.files_written;
        stats.files_reused += s.files_reused;
        stats.bytes_written += s.bytes_written;
    }
    let error = ends.iter().find_map(|end| end.final_state_error.clone());
    let mut last = ends
        .into_iter()
        .last()
        .expect("a case runs at least one phase");
    stats.time_ms = last.stats.time_ms;
    last.stats = stats;
    last.final_state_error = last.final_state_error.or(error);
    last
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::CheckpointingMode;
    use crate::fault::FaultSite;
    use crate::job::{Positions, RestartStrategy};
    use crate::state::StateView;
    use crate::trace::{FailureCause, JobStarted, RestoreSource, Restored};

    fn started() -> Event {
        Event::JobStarted(JobStarted {
            job: "j".into(),
            seed: 1,
            backend: "memory".into(),
            stages: vec![],
            interval_ms: 10,
            mode: CheckpointingMode::ExactlyOnce,
            restart: RestartStrategy::None,
        })
    }

    fn restored(attempt: u32) -> Event {
        Event::Restored(Restored {
            attempt,
            from: RestoreSource::Checkpoint(1),
            positions: Positions(vec![0]),
            entries: 0,
            files: 0,
            no_claim: false,
            state: StateView::new(),
        })
    }

    #[test]
    fn only_a_restore_after_a_failure_counts_as_reaching_recovery() {
        let fired = Event::FaultFired {
            fault: FaultKind::Corrupt,
            site: FaultSite::ALL[0],
        };
        let failed = Event::Failure {
            attempt: 0,
            task: "sum[0]".into(),
            cause: FailureCause::Operator { error: "x".into() },
        };
        // The rescale's planned restore in a new phase follows no failure.
        let planned = [started(), fired.clone(), started(), restored(1)];
        assert!(reached_restore(planned.iter()).is_empty());
        let recovered = [started(), fired, failed, restored(1)];
        assert_eq!(
            reached_restore(recovered.iter()),
            BTreeSet::from([FaultKind::Corrupt])
        );
    }
}
