//! Run configuration: checkpointing (Flink's settings, with their defaults) and the run's seed,
//! restart strategy and bounds.

use std::path::PathBuf;

use crate::job::restart::RestartStrategy;
use crate::state::SavepointFormat;

/// Whether barriers are aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckpointingMode {
    /// A task with several inputs blocks each input once its barrier arrived, until all have:
    /// snapshots hold exactly the records before the barrier.
    ExactlyOnce,
    /// Barriers are only counted: records after a barrier may enter the snapshot and are
    /// replayed (duplicated) after a restore.
    AtLeastOnce,
}

/// Checkpointing settings (Flink's names in parentheses).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CheckpointConfig {
    /// Interval between checkpoint triggers (`execution.checkpointing.interval`); must be > 0.
    pub interval_ms: u64,
    /// Alignment mode (`execution.checkpointing.mode`). Default exactly-once.
    #[serde(default = "default_mode")]
    pub mode: CheckpointingMode,
    /// A checkpoint not complete after this long is aborted (`...timeout`). Default 600000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Consecutive checkpoint failures tolerated before the job fails
    /// (`...tolerable-failed-checkpoints`). Default 0.
    #[serde(default)]
    pub tolerable_failures: u32,
    /// Completed checkpoints kept (`...num-retained`). Default 1.
    #[serde(default = "default_num_retained")]
    pub num_retained: u32,
    /// Compress canonical snapshot blocks with LZ4 (`setUseSnapshotCompression`). Default off.
    #[serde(default)]
    pub compression: crate::checkpoint::canonical::Compression,
}

fn default_mode() -> CheckpointingMode {
    CheckpointingMode::ExactlyOnce
}
fn default_timeout_ms() -> u64 {
    600_000
}
fn default_num_retained() -> u32 {
    1
}

impl CheckpointConfig {
    /// Checkpoints every `interval_ms` with every other setting at its default.
    pub fn every(interval_ms: u64) -> Self {
        Self {
            interval_ms,
            mode: default_mode(),
            timeout_ms: default_timeout_ms(),
            tolerable_failures: 0,
            num_retained: default_num_retained(),
            compression: crate::checkpoint::canonical::Compression::None,
        }
    }

    /// This config with `mode`.
    pub fn with_mode(mut self, mode: CheckpointingMode) -> Self {
        self.mode = mode;
        self
    }

    /// This config retaining `num_retained` checkpoints.
    pub fn with_num_retained(mut self, num_retained: u32) -> Self {
        self.num_retained = num_retained;
        self
    }

    /// This config compressing canonical snapshots.
    pub fn with_compression(
        mut self,
        compression: crate::checkpoint::canonical::Compression,
    ) -> Self {
        self.compression = compression;
        self
    }

    /// This config with a timeout.
    pub fn with_timeout_ms(mut self, timeout_ms: u64) -> Self {
        self.timeout_ms = timeout_ms;
        self
    }

    /// This config tolerating `failures` consecutive checkpoint failures.
    pub fn with_tolerable_failures(mut self, failures: u32) -> Self {
        self.tolerable_failures = failures;
        self
    }
}

/// What restore does when the latest checkpoint cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestorePolicy {
    /// Fail the attempt with an error naming the checkpoint and file (the restart strategy
    /// decides what follows). The default, as in Flink since FLINK-22502: a silent fallback to
    /// an older checkpoint breaks exactly-once sinks.
    #[default]
    FailLoudly,
    /// Restore the newest checkpoint that validates instead. This RISKS exactly-once: a
    /// two-phase sink re-runs output its newer checkpoint already committed (duplicates), and
    /// anything committed only through the skipped checkpoint is not re-committed. Use it only
    /// where losing availability is worse than duplicating output.
    FallbackToLatestValid,
}

/// A savepoint the user asks for during a run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavepointRequest {
    /// Taken at the first moment no checkpoint is in flight from this virtual time on.
    pub at_ms: u64,
    /// Directory name under `savepoints/`: `[A-Za-z0-9._-]`.
    pub name: String,
    /// Canonical or native.
    pub format: SavepointFormat,
    /// Stop the job once the savepoint completed (Flink's stop-with-savepoint): sources emit
    /// nothing after its barrier.
    #[serde(default)]
    pub stop: bool,
}

/// Everything that parameterises one run besides the job and its input.
///
/// ```
/// use faultline::job::{CheckpointConfig, CheckpointingMode, RestartStrategy, RunConfig};
///
/// let checkpoint = CheckpointConfig::every(10)
///     .with_mode(CheckpointingMode::AtLeastOnce)
///     .with_num_retained(2)
///     .with_tolerable_failures(1);
/// let config = RunConfig::new(7, checkpoint, RestartStrategy::None);
/// // Every other setting has its stated default.
/// assert_eq!(config.channel_capacity, 4);
/// assert!(config.verify_restored_files);
/// assert!(config.savepoints.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RunConfig {
    /// The root seed.
    pub seed: u64,
    /// Checkpointing.
    pub checkpoint: CheckpointConfig,
    /// Restart strategy.
    pub restart: RestartStrategy,
    /// Records a channel holds before its writer is back-pressured. Default 4.
    pub channel_capacity: usize,
    /// Step bound of the whole run. Default 1,000,000.
    pub steps_max: u64,
    /// A savepoint or retained checkpoint directory to start from (NO_CLAIM: later checkpoints
    /// never reference its files). Default none.
    pub initial_snapshot: Option<PathBuf>,
    /// What restore does with an unusable latest checkpoint. Default fail loudly.
    pub restore_policy: RestorePolicy,
    /// Savepoints to take. Default none.
    pub savepoints: Vec<SavepointRequest>,
    /// Audit the whole checkpoint root after every completion and restore (costly: it reads
    /// every retained file). Default off; campaigns turn it on.
    pub audit_storage: bool,
    /// The attempt this run starts at: above 0 when a process restarted after a real kill
    /// continues the case, restoring from storage. Default 0.
    pub first_attempt: u32,
    /// Virtual time at which this run starts (where the killed process left off). Default 0.
    pub start_ms: u64,
    /// Check every file of a restore candidate against the size and checksum its metadata
    /// recorded before any backend reads it. Default on. Off, corrupt files reach the backends'
    /// restores, which must detect them themselves (Flink keeps no central checksums); a backend
    /// that does then fails the attempt, so [`RestorePolicy::FallbackToLatestValid`] no longer
    /// falls back past a corrupt file. An initial snapshot (`initial_snapshot`), read from
    /// outside the job's storage, is always checked.
    pub verify_restored_files: bool,
}

impl RunConfig {
    /// A config with the given seed, checkpointing and restart strategy, other settings default.
    pub fn new(seed: u64, checkpoint: CheckpointConfig, restart: RestartStrategy) -> Self {
        Self {
            seed,
            checkpoint,
            restart,
            channel_capacity: 4,
            steps_max: 1_000_000,
            initial_snapshot: None,
            restore_policy: RestorePolicy::FailLoudly,
            savepoints: Vec::new(),
            audit_storage: false,
            first_attempt: 0,
            start_ms: 0,
            verify_restored_files: true,
        }
    }
}
