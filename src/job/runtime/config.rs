//! Run configuration: checkpointing (Flink's settings, with their defaults) and the run's seed,
//! restart strategy and bounds.

use crate::job::restart::RestartStrategy;

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

/// Everything that parameterises one run besides the job and its input.
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
        }
    }
}
