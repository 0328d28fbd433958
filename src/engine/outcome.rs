//! What a run produces: its status, restores, failures, counters and trace, and the errors that
//! stop a run from being carried out at all.

use std::path::PathBuf;

use crate::job::sink::ExternalStore;
use crate::job::Positions;
use crate::sim::{StepLimit, Trace};
use crate::state::StateView;

/// The run could not be carried out (as opposed to the job failing, which is an outcome).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The step bound was hit.
    #[error(transparent)]
    StepLimit(#[from] StepLimit),
    /// The configuration or job cannot run.
    #[error("invalid run: {0}")]
    Invalid(String),
    /// The engine's own working directory failed.
    #[error("working directory {path}: {source}")]
    WorkDir {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// How the job ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum JobStatus {
    /// All input processed, a final checkpoint completed and was notified.
    Finished,
    /// Stopped after the stop-with-savepoint named here completed.
    Stopped {
        /// The savepoint's name.
        savepoint: String,
    },
    /// The restart strategy gave up.
    Failed {
        /// The strategy's reason, after the last failure's.
        reason: String,
    },
}

/// A restore that happened at the start of an attempt: what the oracle checks.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RestoreRecord {
    /// The attempt that restored.
    pub attempt: u32,
    /// The checkpoint restored, or `None` when none had completed (sources start over).
    pub checkpoint_id: Option<u64>,
    /// Source positions restored.
    pub positions: Positions,
    /// Keyed state right after the restore.
    pub state: StateView,
    /// Virtual time of the restore.
    pub time_ms: u64,
}

/// A failure that ended an attempt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FailureRecord {
    /// The attempt it ended.
    pub attempt: u32,
    /// The task (or `process`, `restore`, `coordinator`).
    pub task: String,
    /// What happened.
    pub reason: String,
    /// Virtual time.
    pub time_ms: u64,
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
    /// Records processed by operators and sinks.
    pub records_processed: u64,
    /// Files keyed-state snapshots wrote, over all checkpoints.
    pub files_written: u64,
    /// Files checkpoints reused from a confirmed earlier checkpoint.
    pub files_reused: u64,
    /// Bytes keyed-state snapshots wrote.
    pub bytes_written: u64,
}

/// Everything a run produced.
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
    /// Corruptions a fault plan applied to retained files.
    pub corruptions: Vec<crate::fault::Corruption>,
    /// Problems the storage audit found after completions and restores (when enabled), with
    /// where: `after chk-3`, `after restore (attempt 2)`.
    pub audit_problems: Vec<(String, crate::checkpoint::registry::AuditProblem)>,
    /// Snapshots the upload hand-off refused, each failing its checkpoint, because they reused
    /// a shared file no uploaded or retained checkpoint holds: `chk-4: keyed0[1]: ...`.
    pub refused_reuses: Vec<String>,
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
