//! The fault model: where and when the harness makes things go wrong, what each fault does, and
//! what recovery must do. Each fault is named by the site where it fires and applied in one
//! place: process-level faults (panics, kills) by the engine's failure handling at the points
//! it names, storage effects by the [`Injector`] every checkpoint byte is written through.
//!
//! | fault | fires at | effect | label |
//! |---|---|---|---|
//! | operator panic | an operator's n-th record of an attempt, or its n-th timer firing (in `on_timer`); a task's snapshot; a task's restore | the task fails; the job restarts | must recover |
//! | process kill in time | right after an operator's n-th timer firing of an attempt (its output out, the timers due with it not fired); at the n-th advance of its watermark (before the timers it makes due fire and before it goes on) | as a process kill | must recover |
//! | clock jump | between a failure and the restart: the job stays down longer than its restart delay | the virtual clock (processing time) jumps ahead: processing-time timers fall due, partitions go idle | must recover |
//! | process kill | a scheduler step; a checkpoint phase: barrier at source, sync snapshot, before notify, inside a sink's commit | every task dies, in-flight records are lost; checkpoint writes no commit point made durable are each kept, lost or torn | must recover |
//! | process kill in a write | a checkpoint's file upload, its `_metadata` write | the machine dies after a drawn step of the write, its unsynced data lost, torn or kept; then as a kill | must recover |
//! | machine crash | right after the n-th write step of the run (create, write, sync, rename, directory sync) | as a kill in a write, at that step, with the fate the fault names | must recover |
//! | I/O error | the n-th storage write of a checkpoint | the write fails: the checkpoint is aborted, the job goes on within its tolerable failures, else restarts | must recover |
//! | notification loss or delay | `notify_checkpoint_complete` to one task; delays reorder notifications | the first delivery is lost or late | must recover (a later notification covers earlier ones; the coordinator re-sends the latest) |
//! | corruption | a retained checkpoint's file, between a failure and the restart: bit flip at a position drawn from the fault stream and the file's size, truncation, a zero-filled block, deletion, a torn `_metadata`, a stale same-named file from another checkpoint | the file is damaged in place | must fail loudly: the restore names the file; the corrupted checkpoint is never restored |
//!
//! The storage model behind the kills and crashes (the [`Injector`]'s module doc has it whole):
//! a write is durable once its five steps are done, except that checkpoint files are at risk
//! until their checkpoint's `_metadata` write begins; `_metadata` and the completion record
//! are durable once written.
//!
//! The engine reports each fault point to the plan; the plan never inspects engine state, so
//! one plan drives every backend. [`FaultSchedule`] is the plan campaigns generate and shrink:
//! a list of faults, each firing at most once.
//!
//! ```
//! use faultline::fault::{FaultAction, FaultPlan, FaultPoint, NotifyFate};
//!
//! /// A plan of one's own: drops every notification of checkpoint 2, injects nothing else.
//! struct DropSecond;
//!
//! impl FaultPlan for DropSecond {
//!     fn notification(&mut self, checkpoint: u64, _task: &str) -> NotifyFate {
//!         if checkpoint == 2 { NotifyFate::Drop } else { NotifyFate::Deliver }
//!     }
//!     fn draw(&mut self, bound: u64) -> u64 {
//!         bound / 2
//!     }
//! }
//!
//! let mut plan = DropSecond;
//! assert_eq!(plan.notification(2, "sink[0]"), NotifyFate::Drop);
//! let point = FaultPoint::BarrierInjected { checkpoint: 1 };
//! let action: Option<FaultAction> = plan.at(&point);
//! assert!(action.is_none());
//! ```

mod corrupt;
mod inject;
mod schedule;

pub use corrupt::{corrupt_retained, Corruption, CorruptionKind};
pub use inject::{Injector, InjectorState, LostWrites};
pub use schedule::{Fault, FaultKind, FaultSchedule, FaultSite, Phase};

use crate::checkpoint::CheckpointStorage;
use crate::job::Record;
use crate::state::timers::Timer;

/// A point where a fault may fire.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum FaultPoint<'a> {
    /// An operator is about to process a record.
    Record {
        /// The stage name.
        stage: &'a str,
        /// The subtask index.
        subtask: u16,
        /// The job attempt (0 before any restart).
        attempt: u32,
        /// 1-based count of records this subtask processed in this attempt, this one included.
        record_index: u64,
        /// The record.
        record: &'a Record,
    },
    /// A scheduler step is about to run.
    Step {
        /// The step number.
        step: u64,
    },
    /// Checkpoint `checkpoint`'s barrier was injected at the sources.
    BarrierInjected {
        /// The checkpoint.
        checkpoint: u64,
    },
    /// A task is about to take its synchronous snapshot.
    SyncSnapshot {
        /// The checkpoint.
        checkpoint: u64,
        /// The stage name.
        stage: &'a str,
        /// The subtask.
        subtask: u16,
    },
    /// A checkpoint file (state or `_metadata`) is about to be written.
    StorageWrite {
        /// The checkpoint it belongs to.
        checkpoint: u64,
        /// 1-based count of writes for this checkpoint, this one included.
        nth: u32,
        /// Whether it is the `_metadata` (the commit point).
        metadata: bool,
        /// Whether it is a task's channel state.
        channel_state: bool,
    },
    /// Checkpoint `checkpoint` completed; notifications are about to go out.
    BeforeNotify {
        /// The checkpoint.
        checkpoint: u64,
    },
    /// A sink is about to commit the transactions a notification covers.
    SinkCommit {
        /// The checkpoint notified.
        checkpoint: u64,
        /// The sink subtask.
        subtask: u16,
    },
    /// An operator is about to run `on_timer` for a timer that fell due.
    Timer {
        /// The stage name.
        stage: &'a str,
        /// The subtask index.
        subtask: u16,
        /// The job attempt.
        attempt: u32,
        /// 1-based count of timers this subtask fired in this attempt, this one included.
        firing: u64,
        /// The timer.
        timer: &'a Timer,
    },
    /// An operator's timer fired and its output went out; the timers due with it have not
    /// fired yet.
    TimerFired {
        /// The stage name.
        stage: &'a str,
        /// The subtask index.
        subtask: u16,
        /// The job attempt.
        attempt: u32,
        /// 1-based count of timers this subtask fired in this attempt, this one included.
        firing: u64,
    },
    /// An operator's watermark advanced; the timers it makes due have not fired and it has
    /// not gone downstream.
    WatermarkAdvanced {
        /// The stage name.
        stage: &'a str,
        /// The subtask index.
        subtask: u16,
        /// The job attempt.
        attempt: u32,
        /// 1-based count of advances of this subtask's watermark in this attempt.
        advance: u64,
        /// The new watermark.
        watermark_ms: i64,
    },
    /// A task is about to restore at the start of an attempt.
    Restore {
        /// The attempt.
        attempt: u32,
        /// The stage name.
        stage: &'a str,
        /// The subtask.
        subtask: u16,
    },
}

/// What a fault does to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Effect {
    /// The operator (or task) fails, as if it panicked: the job restarts.
    Panic,
    /// The process dies: every task, in-flight records and uncommitted writes.
    Kill,
    /// The storage write fails with an I/O error.
    IoError,
}

/// A fault that fires at a point: which one, where, what it does, and its own account of it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FaultAction {
    /// The fault's kind.
    pub fault: FaultKind,
    /// Where it fired.
    pub site: FaultSite,
    /// What it does.
    pub effect: Effect,
    /// What happened, for the trace: `injected panic before record #4 (r3)`.
    pub detail: String,
}

/// What a machine crash does to data that was not yet synced.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Unsynced {
    /// Unsynced bytes are gone (the file is empty) and an unsynced rename is undone.
    Lost,
    /// Half of the unsynced bytes reached the disk, and an unsynced rename is undone.
    Torn,
    /// Everything reached the disk after all (the lucky crash).
    Kept,
}

impl Unsynced {
    /// Every fate, in order.
    pub const ALL: [Unsynced; 3] = [Unsynced::Lost, Unsynced::Torn, Unsynced::Kept];
}

/// A machine crash in the middle of a write: the fault, and what becomes of unsynced data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crash {
    /// The fault (its effect is a kill).
    pub action: FaultAction,
    /// What of the unsynced data survives.
    pub unsynced: Unsynced,
}

/// What happens to one completion notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotifyFate {
    /// Delivered now.
    Deliver,
    /// Lost.
    Drop,
    /// Delivered this many milliseconds later.
    Delay(u64),
}

/// Decides at each fault point whether a fault fires.
pub trait FaultPlan {
    /// The fault firing at `point`, if any.
    fn at(&mut self, _point: &FaultPoint<'_>) -> Option<FaultAction> {
        None
    }

    /// The fate of the notification of `checkpoint` to task `task`.
    fn notification(&mut self, _checkpoint: u64, _task: &str) -> NotifyFate {
        NotifyFate::Deliver
    }

    /// Whether the machine crashes right after write step `step` (counted from 1 over every
    /// step of every checkpoint write of the run).
    fn crash_after(&mut self, _step: u64) -> Option<Crash> {
        None
    }

    /// Called after a kill, before the restart: damages retained files and reports what it did.
    fn corrupt(&mut self, _storage: &mut dyn CheckpointStorage, _attempt: u32) -> Vec<Corruption> {
        Vec::new()
    }

    /// How much longer than its restart delay the job stays down before attempt `attempt`
    /// (the virtual clock jumps by it); 0 for no jump.
    fn downtime_ms(&mut self, _attempt: u32) -> u64 {
        0
    }

    /// A number in `0..bound` from the plan's own stream, for choices a fault leaves open (how
    /// much of an uncommitted write survives a kill).
    fn draw(&mut self, _bound: u64) -> u64 {
        0
    }

    /// The plan's own state (which faults fired, where its stream stands), for a process killed
    /// for real to leave to the next one; `None` for a plan that keeps none.
    fn save(&self) -> Option<serde_json::Value> {
        None
    }

    /// Takes up a state that [`FaultPlan::save`] gave.
    fn load(&mut self, _state: serde_json::Value) -> Result<(), serde_json::Error> {
        Ok(())
    }
}

/// No faults at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFaults;

impl FaultPlan for NoFaults {}
