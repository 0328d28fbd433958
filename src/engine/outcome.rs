//! What a run produces: its status, restores, failures, counters and trace, and the errors that
//! stop a run from being carried out at all.

use std::path::PathBuf;

use crate::checkpoint::registry::AuditProblem;
use crate::checkpoint::AbortReason;
use crate::fault::Corruption;
use crate::job::sink::ExternalStore;
use crate::job::Positions;
use crate::sim::StepLimit;
use crate::state::StateView;
use crate::trace::{AuditContext, Event, FailureCause, RestoreSource, Trace};

/// The run could not be carried out (as opposed to the job failing, which is an outcome).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The step bound was hit.
    #[error(transparent)]
    StepLimit(#[from] StepLimit),
    /// The configuration or job cannot run.
    #[error("invalid run: {0}")]
    Invalid(String),
    /// The restart strategy's parameters are out of range.
    #[error("invalid run: {0}")]
    Restart(#[from] crate::job::InvalidRestart),
    /// A restore made for inspection failed.
    #[error("restore: {0}")]
    Restore(String),
    /// The state a killed process left cannot be read.
    #[error("resume state {path}: {reason}")]
    Resume {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The event log (process mode) could not be written.
    #[error("event log: {0}")]
    EventLog(std::io::Error),
    /// The engine's own working directory failed.
    #[error("working directory {path}: {source}")]
    WorkDir {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The checkpoint root could not be read when the run started.
    #[error("checkpoint storage: {0}")]
    Storage(#[from] crate::checkpoint::StorageError),
}

/// How the job ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum JobStatus {
    /// All input processed, a final checkpoint completed and was notified.
    Finished,
    /// Stopped after the stop-with-savepoint named here completed.
    Stopped {
        /// The savepoint's name.
        savepoint: String,
    },
    /// Cancelled once a checkpoint completed at or after the time the run was told to cancel
    /// at, keeping its checkpoints (a rescale from a retained checkpoint resumes from it).
    Cancelled {
        /// The checkpoint whose completion it was cancelled at.
        checkpoint: u64,
    },
    /// The restart strategy gave up.
    Failed {
        /// The strategy's reason, after the last failure's.
        reason: String,
    },
}

/// Restores of a checkpoint an earlier job left (a rescale from a retained checkpoint), by
/// restore mode, in a run (or, summed, in a campaign).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InheritedRestores {
    /// Restored CLAIM.
    pub claim: u64,
    /// Restored NO_CLAIM.
    pub no_claim: u64,
}

impl InheritedRestores {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &InheritedRestores) {
        self.claim += other.claim;
        self.no_claim += other.no_claim;
    }
}

/// What unaligned checkpoints did in a run (or, summed, in a campaign).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UnalignedStats {
    /// Snapshots taken at an unaligned barrier.
    pub snapshots: u64,
    /// Of them, alignments switched to unaligned past the aligned-checkpoint timeout.
    pub timed_out: u64,
    /// Records persisted as channel state.
    pub records_persisted: u64,
    /// Records restores handed back from channel state.
    pub records_restored: u64,
    /// Restores that handed channel state back at another parallelism.
    pub rescaled_restores: u64,
}

impl UnalignedStats {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &UnalignedStats) {
        self.snapshots += other.snapshots;
        self.timed_out += other.timed_out;
        self.records_persisted += other.records_persisted;
        self.records_restored += other.records_restored;
        self.rescaled_restores += other.rescaled_restores;
    }
}

/// A restore that happened at the start of an attempt: what the oracle checks.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RestoreRecord {
    /// The attempt that restored.
    pub attempt: u32,
    /// Where the state came from.
    pub from: RestoreSource,
    /// The checkpoint restored, or `None` when none had completed (sources start over) or the
    /// state came from outside the job's storage.
    pub checkpoint_id: Option<u64>,
    /// Source positions restored.
    pub positions: Positions,
    /// Keyed state right after the restore.
    pub state: StateView,
    /// Virtual time of the restore.
    pub time_ms: u64,
    /// The origins of the records in flight it handed back from channel state, once each
    /// time it did: records a sink that is not exactly-once may show again.
    pub in_flight: Vec<crate::job::Origin>,
}

/// A failure that ended an attempt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FailureRecord {
    /// The attempt it ended.
    pub attempt: u32,
    /// The task (or `process`, `restore`, `coordinator`).
    pub task: String,
    /// What happened.
    pub cause: FailureCause,
    /// Virtual time.
    pub time_ms: u64,
}

/// A snapshot the upload hand-off refused because it reused a shared file no uploaded or
/// retained checkpoint holds; its checkpoint failed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RefusedReuse {
    /// The checkpoint.
    pub checkpoint: u64,
    /// The task whose snapshot reused the file.
    pub task: String,
    /// The hand-off's refusal, naming the file.
    pub error: String,
}

/// Counters of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunStats {
    /// Scheduler steps.
    pub steps: u64,
    /// Virtual time at the end.
    pub time_ms: u64,
    /// Attempts started (1 + restarts).
    pub attempts: u32,
    /// Checkpoints completed.
    pub checkpoints_completed: u64,
    /// Checkpoints aborted (failure, expiry, write error).
    pub checkpoints_aborted: u64,
    /// Checkpoints triggered while another was in flight (concurrent checkpoints).
    #[serde(default)]
    pub checkpoints_overlapping: u64,
    /// Completion notifications a task heard after a newer checkpoint's.
    #[serde(default)]
    pub notifications_out_of_order: u64,
    /// What unaligned checkpoints did.
    #[serde(default)]
    pub unaligned: UnalignedStats,
    /// Restores of checkpoints an earlier job left, by mode.
    #[serde(default)]
    pub inherited_restores: InheritedRestores,
    /// Records processed by operators and sinks.
    pub records_processed: u64,
    /// Files keyed-state snapshots wrote, over all checkpoints.
    pub files_written: u64,
    /// Files checkpoints reused from a confirmed earlier checkpoint.
    pub files_reused: u64,
    /// Bytes keyed-state snapshots wrote.
    pub bytes_written: u64,
}

/// How a run ended: what its trace does not hold.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct PhaseEnd {
    /// How the job ended.
    pub status: JobStatus,
    /// Keyed state when the job finished or stopped.
    pub final_state: Option<StateView>,
    /// Why the keyed state could not be read when the job finished or stopped.
    pub final_state_error: Option<String>,
    /// The external system after the run.
    #[serde(skip)]
    pub store: ExternalStore,
    /// Counters.
    pub stats: RunStats,
    /// Checkpoints retained in storage at the end, oldest first.
    pub retained_checkpoints: Vec<u64>,
    /// Savepoints taken, by name.
    pub savepoints: Vec<String>,
    /// Source positions at the end: the input's end when finished, the stop-with-savepoint's
    /// positions when stopped, and the last positions read when the job failed.
    pub end_positions: Positions,
}

impl PhaseEnd {
    /// The end of a run that failed for `reason` before it could say more: no state, no
    /// counters, sources at the start of each of `partitions`.
    pub fn failed(reason: String, partitions: usize) -> Self {
        Self {
            status: JobStatus::Failed { reason },
            final_state: None,
            final_state_error: None,
            store: ExternalStore::new(),
            stats: RunStats::default(),
            retained_checkpoints: Vec::new(),
            savepoints: Vec::new(),
            end_positions: Positions::start(partitions),
        }
    }
}

/// Everything a run produced: its trace, and what the oracle reads, gathered from the trace's
/// typed events and the run's end.
#[derive(Debug)]
pub struct RunOutcome {
    /// How the job ended.
    pub status: JobStatus,
    /// The event trace.
    pub trace: Trace,
    /// Every restore, in order.
    pub restores: Vec<RestoreRecord>,
    /// Every failure, in order.
    pub failures: Vec<FailureRecord>,
    /// Keyed state when the job finished.
    pub final_state: Option<StateView>,
    /// The external system after the run: what the sink made visible.
    pub store: ExternalStore,
    /// Counters.
    pub stats: RunStats,
    /// Checkpoints retained in storage at the end, oldest first.
    pub retained_checkpoints: Vec<u64>,
    /// Savepoints taken, by name.
    pub savepoints: Vec<String>,
    /// Corruptions a fault plan applied to retained files, each with the index of its event.
    pub corruptions: Vec<(usize, Corruption)>,
    /// Problems the storage audit found after completions and restores (when enabled), each
    /// with the index of its event and when the audit ran.
    pub audit_problems: Vec<(usize, AuditContext, AuditProblem)>,
    /// Snapshots the upload hand-off refused.
    pub refused_reuses: Vec<RefusedReuse>,
    /// Why the keyed state could not be read when the job finished or stopped (then
    /// `final_state` is none): a backend holding a key its subtask does not own, say.
    pub final_state_error: Option<String>,
    /// Source positions the first attempt started from: all zero, or those of the initial
    /// snapshot. Output before them was produced by an earlier run.
    pub start_positions: Positions,
    /// Source positions at the end: the input's end when finished, the stop-with-savepoint's
    /// positions when stopped, and the last positions read when the job failed.
    pub end_positions: Positions,
}

impl RunOutcome {
    /// The outcome of a run whose events are `trace` and which ended as `end`, over an input of
    /// `partitions` partitions.
    pub fn from_trace(trace: Trace, end: PhaseEnd, partitions: usize) -> Self {
        let restores = Self::restores_in(&trace);
        let mut failures = Vec::new();
        let mut corruptions = Vec::new();
        let mut audit_problems = Vec::new();
        let mut refused_reuses = Vec::new();
        for (index, stamped) in trace.events().iter().enumerate() {
            match &stamped.event {
                Event::Failure {
                    attempt,
                    task,
                    cause,
                } => failures.push(FailureRecord {
                    attempt: *attempt,
                    task: task.clone(),
                    cause: cause.clone(),
                    time_ms: stamped.time_ms,
                }),
                Event::Corrupted(corruption) => corruptions.push((index, corruption.clone())),
                Event::AuditFailed { context, problem } => {
                    audit_problems.push((index, *context, problem.clone()))
                }
                Event::CheckpointAborted {
                    checkpoint,
                    reason: AbortReason::ReuseRefused { task, error },
                } => refused_reuses.push(RefusedReuse {
                    checkpoint: *checkpoint,
                    task: task.clone(),
                    error: error.clone(),
                }),
                _ => {}
            }
        }
        let start_positions = match restores.first() {
            Some(first) if first.attempt == 0 => first.positions.clone(),
            _ => Positions::start(partitions),
        };
        Self {
            status: end.status,
            trace,
            restores,
            failures,
            final_state: end.final_state,
            store: end.store,
            stats: end.stats,
            retained_checkpoints: end.retained_checkpoints,
            savepoints: end.savepoints,
            corruptions,
            audit_problems,
            refused_reuses,
            final_state_error: end.final_state_error,
            start_positions,
            end_positions: end.end_positions,
        }
    }

    /// The trace and the end this outcome was gathered from.
    pub fn into_parts(self) -> (Trace, PhaseEnd) {
        let end = PhaseEnd {
            status: self.status,
            final_state: self.final_state,
            final_state_error: self.final_state_error,
            store: self.store,
            stats: self.stats,
            retained_checkpoints: self.retained_checkpoints,
            savepoints: self.savepoints,
            end_positions: self.end_positions,
        };
        (self.trace, end)
    }

    /// Every restore in `trace`, in order, with the channel state each handed back (recorded
    /// just before it).
    pub fn restores_in(trace: &Trace) -> Vec<RestoreRecord> {
        let mut restores = Vec::new();
        let mut in_flight = Vec::new();
        for stamped in trace.events() {
            match &stamped.event {
                Event::ChannelStateRestored { origins, .. } => {
                    in_flight.extend(origins.iter().copied());
                }
                Event::Restored(restored) => restores.push(RestoreRecord {
                    attempt: restored.attempt,
                    from: restored.from.clone(),
                    checkpoint_id: restored.from.checkpoint_id(),
                    positions: restored.positions.clone(),
                    state: restored.state.clone(),
                    time_ms: stamped.time_ms,
                    in_flight: std::mem::take(&mut in_flight),
                }),
                // A restore that failed after handing back channel state handed back nothing.
                Event::AttemptStarted { .. } => in_flight.clear(),
                _ => {}
            }
        }
        restores
    }
}
