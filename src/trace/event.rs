//! The event vocabulary: what a run can do, each as typed data. Display lives in `render.rs`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::checkpoint::registry::AuditProblem;
pub use crate::checkpoint::restore::RestoreFailure;
pub use crate::checkpoint::AbortReason;
use crate::checkpoint::CheckpointingMode;
use crate::fault::{Corruption, Effect, FaultKind, FaultSite};
use crate::job::sink::TxnEvent;
use crate::job::watermark::Mark;
use crate::job::{Datum, Origin, Positions, Record, RestartStrategy};
use crate::state::timers::Timer;
use crate::state::{SavepointFormat, StateView};

/// Everything a run does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Event {
    /// A run of the job started (every phase of a case starts one).
    JobStarted(JobStarted),
    /// An attempt built its tasks and channels.
    AttemptStarted {
        /// 0 for the first, one more after each restart.
        attempt: u32,
        /// Tasks built.
        tasks: usize,
        /// Channels between them.
        channels: usize,
    },
    /// A source task emitted an input record.
    RecordEmitted {
        /// The source task.
        task: String,
        /// The record.
        record: Record,
    },
    /// An operator processed a record and emitted these records.
    RecordProcessed {
        /// The operator task.
        task: String,
        /// The record it processed.
        record: Record,
        /// What it emitted, in order.
        outputs: Vec<Emission>,
    },
    /// A sink received a record.
    RecordWritten {
        /// The sink task.
        task: String,
        /// The record.
        record: Record,
    },
    /// A task sent a watermark or a change of its idleness downstream (a sink: took it in).
    Watermark {
        /// The source, operator or sink task.
        task: String,
        /// What it sent.
        mark: Mark,
    },
    /// A keyed timer fired in an operator task.
    TimerFired {
        /// The operator task.
        task: String,
        /// The timer, with its key.
        timer: Timer,
        /// What the operator emitted, in order.
        outputs: Vec<Emission>,
    },
    /// A user's reader said nothing is left to read.
    SourceFinished {
        /// The source task.
        task: String,
        /// Partitions it left unread.
        unread: Vec<Unread>,
    },
    /// The coordinator triggered a checkpoint.
    CheckpointTriggered {
        /// Its id.
        checkpoint: u64,
        /// The input is exhausted: the job finishes once it completes.
        is_final: bool,
    },
    /// The coordinator triggered a savepoint; it travels as checkpoint `checkpoint`.
    SavepointTriggered {
        /// The savepoint's name.
        name: String,
        /// Its barrier id.
        checkpoint: u64,
        /// Canonical or native.
        format: SavepointFormat,
        /// Stop-with-savepoint.
        stop: bool,
    },
    /// A source stored its positions and sent the barrier on.
    BarrierInjected {
        /// The checkpoint.
        checkpoint: u64,
        /// The source task.
        task: String,
        /// The positions stored in the checkpoint.
        stored: BTreeMap<u32, u64>,
        /// Where the source had actually read to, when that differs from what it stored.
        read_to: Option<BTreeMap<u32, u64>>,
    },
    /// A barrier arrived on one input of a task with several, before the others'.
    BarrierReceived {
        /// The checkpoint.
        checkpoint: u64,
        /// The task.
        task: String,
        /// The input it arrived on.
        input: usize,
        /// Inputs whose barrier has arrived.
        received: usize,
        /// The task's inputs.
        inputs: usize,
        /// Whether the input is now blocked until the others' barriers arrive (exactly-once).
        blocked: bool,
    },
    /// The last barrier of a checkpoint arrived at a task with several inputs.
    BarrierAligned {
        /// The checkpoint.
        checkpoint: u64,
        /// The task.
        task: String,
        /// Its inputs.
        inputs: usize,
        /// The inputs that were blocked while it aligned (exactly-once: all but the last).
        blocked: Vec<usize>,
    },
    /// A task snapshotted at the first barrier of an unaligned checkpoint (or switched one it
    /// was aligning to unaligned, past the aligned-checkpoint timeout) and sent its barrier
    /// ahead of the records queued on its partitioned outputs.
    BarrierOvertook {
        /// The checkpoint.
        checkpoint: u64,
        /// The task.
        task: String,
        /// The barrier had been aligned and waited past the timeout.
        timed_out: bool,
        /// The records its barrier overtook on its outputs.
        overtaken: usize,
    },
    /// Every input barrier of a task's unaligned snapshot arrived: it persisted the records in
    /// flight as the snapshot's channel state.
    ChannelStateWritten {
        /// The checkpoint.
        checkpoint: u64,
        /// The task.
        task: String,
        /// Records taken in on its inputs after the snapshot, before each input's barrier.
        inputs: usize,
        /// Records its barrier overtook on its outputs.
        outputs: usize,
    },
    /// A restore gave a task records in flight from the snapshot's channel state: it handles
    /// them before any input.
    ChannelStateRestored {
        /// The task that owns them now.
        task: String,
        /// Where each record came from, in the order the task handles them: what a sink that
        /// is not exactly-once may show again.
        origins: Vec<Origin>,
    },
    /// A task took its snapshot and sent the barrier on.
    Snapshot {
        /// The checkpoint.
        checkpoint: u64,
        /// The task.
        task: String,
        /// Its keyed state's files, uploaded, for a task with keyed state.
        keyed: Option<KeyedFiles>,
    },
    /// A sink acted on a transaction.
    Txn {
        /// The sink task.
        task: String,
        /// What it did.
        event: TxnEvent,
    },
    /// A checkpoint file was written to storage (state files, `_metadata`, the completion
    /// record), whole.
    Stored {
        /// The file, relative to the checkpoint root.
        path: String,
    },
    /// Every task acknowledged and `_metadata` is written: the checkpoint is complete.
    CheckpointCompleted {
        /// The checkpoint.
        checkpoint: u64,
        /// State files its metadata names.
        files: usize,
    },
    /// A savepoint completed.
    SavepointCompleted {
        /// Its name.
        name: String,
        /// Its barrier id.
        checkpoint: u64,
        /// State files its metadata names.
        files: usize,
        /// Its directory in the checkpoint root.
        dir: String,
    },
    /// The record of the latest completed checkpoint could not be written.
    CompletionUnrecorded {
        /// The checkpoint.
        checkpoint: u64,
        /// The storage error.
        error: String,
    },
    /// A newer checkpoint subsumed this one: its directory is gone.
    CheckpointSubsumed {
        /// The checkpoint.
        checkpoint: u64,
    },
    /// A checkpoint was aborted.
    CheckpointAborted {
        /// The checkpoint.
        checkpoint: u64,
        /// Why.
        reason: AbortReason,
    },
    /// A checkpoint directory without `_metadata` was removed at a restore.
    CheckpointDiscarded {
        /// The checkpoint.
        checkpoint: u64,
    },
    /// A savepoint directory without `_metadata` was removed at a restore.
    SavepointDiscarded {
        /// The savepoint.
        name: String,
    },
    /// A savepoint's `_metadata` does not read, so it is no restore candidate.
    SavepointUnusable {
        /// The savepoint.
        name: String,
        /// Why.
        error: String,
    },
    /// Shared files no retained checkpoint references were deleted.
    GarbageCollected {
        /// The files.
        deleted: Vec<String>,
    },
    /// Garbage collection deleted nothing, because a retained checkpoint's metadata is unreadable.
    GarbageCollectionSkipped {
        /// Why.
        reason: String,
    },
    /// Garbage collection failed.
    GarbageCollectionFailed {
        /// The storage error.
        error: String,
    },
    /// A completion notification was not delivered now.
    Notification {
        /// The checkpoint notified.
        checkpoint: u64,
        /// The task.
        task: String,
        /// What happened to it.
        fate: NotificationFate,
    },
    /// Sinks still hold pending transactions at the end: the latest completion is sent again.
    NotifyAgain {
        /// The checkpoint notified again.
        checkpoint: u64,
    },
    /// A failure ended an attempt.
    Failure {
        /// The attempt it ended.
        attempt: u32,
        /// The task, or `process`, `restore`, `coordinator`.
        task: String,
        /// What happened.
        cause: FailureCause,
    },
    /// A kill lost or tore checkpoint writes no `_metadata` had committed yet.
    WritesLost {
        /// Uncommitted writes.
        writes: usize,
        /// Of them, lost.
        lost: usize,
        /// Of them, cut short.
        torn: usize,
    },
    /// The restart strategy restarts the job.
    Restarting {
        /// 1 for the first restart.
        restart: u32,
        /// Delay before the next attempt.
        delay_ms: u64,
        /// The strategy.
        strategy: RestartStrategy,
    },
    /// The job failed for good: the restart strategy gave up, or the step bound was hit.
    JobFailed {
        /// Why.
        reason: String,
    },
    /// A fault damaged a retained checkpoint file before a restart.
    Corrupted(Corruption),
    /// The newest restore candidate is unusable and the policy falls back to an older one.
    RestoreFallback {
        /// The candidate skipped: `chk-4`, `savepoint user (chk-3)`.
        candidate: String,
        /// Why it is unusable.
        problem: String,
    },
    /// An attempt restored its tasks.
    Restored(Restored),
    /// The storage audit found a problem.
    AuditFailed {
        /// When the audit ran.
        context: AuditContext,
        /// What it found.
        problem: AuditProblem,
    },
    /// The keyed state could not be read when the job ended.
    FinalStateUnreadable {
        /// Why.
        reason: String,
    },
    /// All input processed and the final checkpoint notified.
    JobFinished {
        /// Records visible in the sink's external system.
        visible: usize,
    },
    /// A fault fired.
    FaultFired {
        /// Which kind.
        fault: FaultKind,
        /// Where.
        site: FaultSite,
    },
    /// The job stayed down longer than its restart delay: the virtual clock jumped.
    ClockJumped {
        /// By how much.
        by_ms: u64,
        /// Where it stands now.
        now_ms: u64,
    },
    /// The run grew past a bound of its case and was ended there.
    ResourceExhausted {
        /// What grew.
        resource: Resource,
        /// The bound.
        limit: u64,
    },
    /// The job stopped after its stop-with-savepoint completed.
    JobStopped {
        /// The savepoint.
        savepoint: String,
    },
    /// The job was cancelled once this checkpoint completed, keeping its checkpoints.
    JobCancelled {
        /// The checkpoint.
        checkpoint: u64,
    },
}

/// One record an operator emitted: its value and the side output it went to (`None`: the main
/// output). Its key and origin are the processed record's; its id is checked where the next
/// stage or the sink receives it, so the step loop does not copy it here.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Emission {
    /// Its value.
    pub value: Datum,
    /// Its side output, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side: Option<String>,
}

impl Emission {
    /// What `record` says of itself.
    pub fn of(record: &Record) -> Self {
        Self {
            value: record.value.clone(),
            side: record.side.clone(),
        }
    }
}

impl std::fmt::Display for Emission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.value)?;
        match &self.side {
            Some(side) => write!(f, " (side {side})"),
            None => Ok(()),
        }
    }
}

/// The start of a run: what runs, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStarted {
    /// The job's name.
    pub job: String,
    /// The root seed.
    pub seed: u64,
    /// The state backend.
    pub backend: String,
    /// Every stage with its parallelism, source first and sink last.
    pub stages: Vec<(String, u16)>,
    /// The checkpoint interval.
    pub interval_ms: u64,
    /// Aligned or not.
    pub mode: CheckpointingMode,
    /// The restart strategy.
    pub restart: RestartStrategy,
}

impl Event {
    /// Whether the event is the data flowing rather than the story of the run: records
    /// emitted and processed, barriers travelling, snapshots taken and their files stored.
    pub fn is_flow(&self) -> bool {
        matches!(
            self,
            Event::RecordEmitted { .. }
                | Event::RecordProcessed { .. }
                | Event::Watermark { .. }
                | Event::TimerFired { .. }
                | Event::BarrierInjected { .. }
                | Event::BarrierReceived { .. }
                | Event::BarrierAligned { .. }
                | Event::BarrierOvertook { .. }
                | Event::ChannelStateWritten { .. }
                | Event::Snapshot { .. }
                | Event::Stored { .. }
        )
    }
}

/// A partition a reader left unread: it stopped `at` of `len` records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unread {
    /// The partition.
    pub partition: u32,
    /// Where the reader stopped.
    pub at: u64,
    /// Records in the partition.
    pub len: u64,
}

/// A keyed snapshot's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyedFiles {
    /// Files its handle names.
    pub files: usize,
    /// Of them, written by this snapshot.
    pub written: u32,
    /// Of them, reused from a confirmed earlier checkpoint.
    pub reused: u32,
}

/// What happened to a completion notification that was not delivered at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum NotificationFate {
    /// It never arrives.
    Lost,
    /// It arrives this much later.
    Delayed {
        /// The delay.
        delay_ms: u64,
    },
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum FailureCause {
    /// A fault fired: an injected panic, or a kill of the whole process.
    Injected {
        /// Which fault.
        fault: FaultKind,
        /// Where it fired.
        site: FaultSite,
        /// What it did.
        effect: Effect,
        /// The fault's own account.
        detail: String,
    },
    /// An operator returned an error.
    Operator {
        /// The error.
        error: String,
    },
    /// A user's code panicked (an operator, reader or sink).
    Panicked {
        /// The panic's message.
        message: String,
    },
    /// An operator's `open` failed.
    Open {
        /// The error.
        error: String,
    },
    /// The state backend could not be created.
    Backend {
        /// The error.
        error: String,
    },
    /// A sink's write failed.
    SinkWrite {
        /// The error.
        error: String,
    },
    /// A sink's snapshot failed.
    SinkSnapshot {
        /// The error.
        error: String,
    },
    /// Receiving a completion notification failed a task.
    Notification {
        /// The checkpoint notified.
        checkpoint: u64,
        /// The error.
        error: String,
    },
    /// A user's reader broke the source contract (named or stored a foreign position).
    SourceContract {
        /// The checkpoint whose barrier it stored positions for, if any.
        checkpoint: Option<u64>,
        /// What it did.
        problem: String,
    },
    /// The restore at the start of an attempt failed.
    Restore(RestoreFailure),
    /// More consecutive checkpoints failed than the configuration tolerates.
    CheckpointFailures {
        /// Consecutive failures.
        consecutive: u32,
        /// Tolerated.
        tolerated: u32,
    },
    /// Removing a subsumed checkpoint failed.
    Subsume {
        /// The checkpoint.
        checkpoint: u64,
        /// The storage error.
        error: String,
    },
    /// The upload hand-off refused a part (other than a refused reuse).
    Upload {
        /// The error.
        error: String,
    },
    /// The keyed state could not be read back from a backend.
    State {
        /// The error.
        error: String,
    },
}

impl FailureCause {
    /// Whether the whole process died: uncommitted checkpoint writes are lost or torn.
    pub fn is_kill(&self) -> bool {
        matches!(
            self,
            FailureCause::Injected {
                effect: Effect::Kill,
                ..
            }
        )
    }
}

/// Where an attempt's state came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RestoreSource {
    /// Nothing had completed: sources start over.
    Nothing,
    /// A retained checkpoint.
    Checkpoint(u64),
    /// A savepoint this job took.
    Savepoint {
        /// Its name.
        name: String,
        /// Its barrier id.
        checkpoint: u64,
    },
    /// A savepoint or checkpoint directory outside the job's storage (`initial_snapshot`).
    External {
        /// The directory.
        path: String,
    },
}

impl RestoreSource {
    /// The checkpoint restored, if any.
    pub fn checkpoint_id(&self) -> Option<u64> {
        match self {
            RestoreSource::Checkpoint(id) => Some(*id),
            RestoreSource::Savepoint { checkpoint, .. } => Some(*checkpoint),
            RestoreSource::Nothing | RestoreSource::External { .. } => None,
        }
    }
}

/// What a restore did: where from, where the sources stand, and the keyed state it left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Restored {
    /// The attempt that restored.
    pub attempt: u32,
    /// Where from.
    pub from: RestoreSource,
    /// Source positions restored.
    pub positions: Positions,
    /// Keyed entries restored.
    pub entries: u64,
    /// State files read.
    pub files: u64,
    /// NO_CLAIM: later checkpoints share none of the restored files.
    pub no_claim: bool,
    /// Keyed state right after the restore, for the oracle.
    pub state: StateView,
}

/// What a run may not grow without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Resource {
    /// Events recorded to the trace.
    Events,
    /// Records queued in channels at once.
    RecordsInFlight,
    /// Transactions neither committed nor aborted.
    OpenTransactions,
}

/// When the storage audit ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum AuditContext {
    /// After a checkpoint completed.
    AfterCheckpoint(u64),
    /// After an attempt restored.
    AfterRestore(u32),
}
