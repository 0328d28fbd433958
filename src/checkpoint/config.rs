//! Checkpointing settings, with Flink's names and defaults: the interval, alignment mode,
//! unaligned checkpoints and the aligned-checkpoint timeout, timeout, tolerated failures,
//! retention, concurrency and compression; what restore does with an unusable checkpoint; and
//! the savepoints a run is asked to take.

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

/// When a checkpoint's barriers overtake the records queued in channels
/// (`execution.checkpointing.unaligned` and `...aligned-checkpoint-timeout`). An unaligned
/// barrier goes to the front of every output channel of a partitioned exchange; a task snapshots
/// at the first one it receives and persists the records it overtook, and those it takes in on
/// each input before that input's barrier, as channel state. Forward (pointwise) exchanges stay
/// aligned, as in Flink's 1.x line; savepoints and the final checkpoint (taken once the input
/// drained) are always aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unaligned {
    /// Every barrier waits behind the records before it (the default).
    #[default]
    Never,
    /// Every checkpoint's barriers are unaligned from the source on.
    Always,
    /// Barriers start aligned; a task taking or aligning a barrier this long after its
    /// checkpoint was triggered switches that checkpoint to unaligned from there on.
    AfterMs(u64),
}

impl Unaligned {
    /// Whether checkpoints may be unaligned at all.
    pub fn enabled(self) -> bool {
        self != Unaligned::Never
    }
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
    pub compression: super::canonical::Compression,
    /// Checkpoints in flight at once (`...max-concurrent-checkpoints`); at least 1. Default 1.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: u32,
    /// The least time from one checkpoint's completion to the next trigger
    /// (`...min-pause`). As in Flink, a pause above zero allows one checkpoint in flight
    /// whatever `max_concurrent` says. Default 0.
    #[serde(default)]
    pub min_pause_ms: u64,
    /// Unaligned checkpoints, always or after an aligned-checkpoint timeout. They need
    /// exactly-once mode and one checkpoint in flight, as in Flink. Default never.
    #[serde(default, skip_serializing_if = "is_never")]
    pub unaligned: Unaligned,
}

fn is_never(unaligned: &Unaligned) -> bool {
    *unaligned == Unaligned::Never
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
fn default_max_concurrent() -> u32 {
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
            compression: super::canonical::Compression::None,
            max_concurrent: default_max_concurrent(),
            min_pause_ms: 0,
            unaligned: Unaligned::Never,
        }
    }

    /// This config with unaligned checkpoints as `unaligned` says.
    pub fn with_unaligned(mut self, unaligned: Unaligned) -> Self {
        self.unaligned = unaligned;
        self
    }

    /// What makes this config unusable, if anything: a zero interval or concurrency, or
    /// unaligned checkpoints outside exactly-once mode or with several in flight.
    pub fn problem(&self) -> Option<String> {
        if self.interval_ms == 0 {
            return Some("checkpoint.interval_ms must be positive".into());
        }
        if self.max_concurrent == 0 {
            return Some("checkpoint.max_concurrent must be at least 1".into());
        }
        if self.unaligned.enabled() {
            if self.mode != CheckpointingMode::ExactlyOnce {
                return Some("unaligned checkpoints need exactly-once mode".into());
            }
            if self.concurrency() > 1 {
                return Some(format!(
                    "unaligned checkpoints allow one checkpoint in flight, not max_concurrent = {}",
                    self.max_concurrent
                ));
            }
        }
        None
    }

    /// This config with up to `max_concurrent` checkpoints in flight, and at least
    /// `min_pause_ms` from a completion to the next trigger.
    pub fn with_concurrency(mut self, max_concurrent: u32, min_pause_ms: u64) -> Self {
        self.max_concurrent = max_concurrent;
        self.min_pause_ms = min_pause_ms;
        self
    }

    /// How many checkpoints may be in flight at once: `max_concurrent`, or one with a pause.
    pub fn concurrency(&self) -> usize {
        match self.min_pause_ms {
            0 => self.max_concurrent.max(1) as usize,
            _ => 1,
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
    pub fn with_compression(mut self, compression: super::canonical::Compression) -> Self {
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
#[non_exhaustive]
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
