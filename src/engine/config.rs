//! Run configuration: the run's seed, checkpointing, restart strategy and bounds.

use std::path::PathBuf;

use crate::checkpoint::{CheckpointConfig, RestorePolicy, SavepointRequest};
use crate::job::restart::RestartStrategy;
use crate::state::RestoreMode;

/// Everything that parameterises one run besides the job and its input.
///
/// ```
/// use faultline::checkpoint::{CheckpointConfig, CheckpointingMode};
/// use faultline::engine::RunConfig;
/// use faultline::job::RestartStrategy;
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
    /// How the job restores a retained checkpoint an earlier job left in its checkpoint root
    /// (every checkpoint complete there when the run starts, as after a rescale from a
    /// checkpoint): NO_CLAIM leaves them the earlier job's, CLAIM makes them this job's. An
    /// initial snapshot (`initial_snapshot`) lies outside the root, which the job never
    /// deletes from, so it is always restored NO_CLAIM. Default NO_CLAIM, as in Flink.
    pub restore_mode: RestoreMode,
    /// Cancel the job at the first checkpoint completion at or after this virtual time, keeping
    /// its checkpoints, as a user does before restoring a retained checkpoint elsewhere (at
    /// another parallelism, say). Default none.
    pub cancel_after_ms: Option<u64>,
    /// Bounds on what a run may grow to; past one the run ends as a `resource` violation.
    pub limits: CaseLimits,
    /// Deliberate engine defects, for the harness's own tests: each "broken twin" proves that a
    /// check can fail. Default none.
    #[doc(hidden)]
    pub sabotage: Sabotage,
}

/// Bounds on what one run of the engine may grow to. A run that grows past one — a broken
/// engine or a user's operator emitting without end, a sink opening transactions it never
/// closes — ends there, reported as a `resource` violation of its case, instead of taking the
/// process (and the campaign) down with it. With the step bound ([`RunConfig::steps_max`]) they
/// bound a run's time and memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CaseLimits {
    /// Events recorded to the trace. Default 5,000,000.
    pub events_max: u64,
    /// Records queued in channels at once. Default 100,000.
    pub records_in_flight_max: u64,
    /// Transactions in the external system neither committed nor aborted. Default 100,000.
    pub open_transactions_max: u64,
}

impl Default for CaseLimits {
    fn default() -> Self {
        Self {
            events_max: 5_000_000,
            records_in_flight_max: 100_000,
            open_transactions_max: 100_000,
        }
    }
}

/// Deliberate engine defects (see [`RunConfig::sabotage`]); none is on by default.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sabotage {
    /// Exactly-once alignment never blocks an input whose barrier arrived, so records after a
    /// barrier reach the snapshot.
    pub alignment_never_blocks: bool,
    /// An engine invariant breaks (an assertion fires) at this scheduler step.
    pub broken_invariant_at_step: Option<u64>,
    /// A restored subtask forgets its timers: the cells stay in state, but nothing fires them.
    pub timers_forgotten_on_restore: bool,
    /// A restore at another parallelism drops the channel state (FLINK-38544's loss).
    pub channel_state_dropped_on_rescale: bool,
    /// A restore at another parallelism gives each old subtask's channel state to the subtask
    /// of the same index (modulo the new parallelism), not to the owner of each record.
    pub channel_state_to_old_subtask: bool,
    /// Records restored from channel state are handled once the inputs are empty, after new
    /// input, instead of before it.
    pub channel_state_after_new_input: bool,
    /// A checkpoint restored NO_CLAIM is handed to the backends as claimed, so the incremental
    /// backend's next checkpoint reuses the restored files.
    pub no_claim_checkpoint_claimed: bool,
}

impl Sabotage {
    /// Whether no defect is on.
    pub fn is_none(&self) -> bool {
        *self == Sabotage::default()
    }
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
            limits: CaseLimits::default(),
            cancel_after_ms: None,
            restore_mode: RestoreMode::NoClaim,
            sabotage: Sabotage::default(),
        }
    }
}
