//! [`FaultSchedule`]: a list of faults, each firing at most once, with its own random stream
//! for the choices a fault leaves open. Serializable, so scenario files and shrunk failures
//! name their faults.
//!
//! ```
//! use faultline::fault::{Fault, FaultSchedule};
//!
//! let faults: Vec<Fault> = vec![Fault::Kill { step: 40 }];
//! assert_eq!(faults[0].kind_name(), "kill");
//! // The same faults and seed always make the same choices; nothing fired before a run.
//! let schedule = FaultSchedule::with_seed(faults, 7);
//! assert!(schedule.fired().is_empty());
//! ```

use std::collections::BTreeSet;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{
    corrupt_retained, Corruption, CorruptionKind, Crash, Effect, FaultAction, FaultPlan,
    FaultPoint, NotifyFate, Unsynced,
};
use crate::checkpoint::CheckpointStorage;
use crate::sim::{RngStreams, StreamName};

/// A checkpoint phase where a simulated kill can fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Phase {
    /// Just after the barrier was injected at the sources.
    BarrierAtSource,
    /// Just before a task's synchronous snapshot.
    SyncSnapshot,
    /// During a state-file upload.
    FileUpload,
    /// During the write of a task's channel state (an unaligned snapshot's records in flight).
    ChannelStateWrite,
    /// During the `_metadata` write (the commit point).
    MetadataWrite,
    /// After completion, before notifications go out.
    BeforeNotify,
    /// Inside a sink's commit on notification.
    SinkCommit,
}

impl Phase {
    /// Every phase, in checkpoint order.
    pub const ALL: [Phase; 7] = [
        Phase::BarrierAtSource,
        Phase::SyncSnapshot,
        Phase::FileUpload,
        Phase::ChannelStateWrite,
        Phase::MetadataWrite,
        Phase::BeforeNotify,
        Phase::SinkCommit,
    ];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Phase::BarrierAtSource => "barrier-at-source",
            Phase::SyncSnapshot => "sync-snapshot",
            Phase::FileUpload => "file-upload",
            Phase::ChannelStateWrite => "channel-state-write",
            Phase::MetadataWrite => "metadata-write",
            Phase::BeforeNotify => "before-notify",
            Phase::SinkCommit => "sink-commit",
        }
    }
}

/// The kinds of fault, as swarm configurations and coverage tables name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum FaultKind {
    /// An operator panics before a record.
    Panic,
    /// A task panics in its snapshot.
    PanicInSnapshot,
    /// A task panics in its restore.
    PanicInRestore,
    /// The process is killed at a scheduler step.
    Kill,
    /// The process is killed at a checkpoint phase.
    KillAtPhase,
    /// A checkpoint write fails.
    IoError,
    /// A completion notification is lost.
    DropNotification,
    /// A completion notification comes late.
    DelayNotification,
    /// A retained file is damaged before a restart.
    Corrupt,
    /// The machine crashes after a write step.
    Crash,
    /// An operator panics in `on_timer`.
    PanicInTimer,
    /// The process is killed while an operator's timers fire.
    KillInTimers,
    /// The process is killed between a watermark and the timers it makes due.
    KillAtWatermark,
    /// The job is down longer before a restart: the virtual clock jumps.
    ClockJump,
}

impl FaultKind {
    /// Every kind, in the order reports list them.
    pub const ALL: [FaultKind; 14] = [
        FaultKind::Panic,
        FaultKind::PanicInSnapshot,
        FaultKind::PanicInRestore,
        FaultKind::Kill,
        FaultKind::KillAtPhase,
        FaultKind::IoError,
        FaultKind::DropNotification,
        FaultKind::DelayNotification,
        FaultKind::Corrupt,
        FaultKind::Crash,
        FaultKind::PanicInTimer,
        FaultKind::KillInTimers,
        FaultKind::KillAtWatermark,
        FaultKind::ClockJump,
    ];

    /// The kinds that act on time (timers, watermarks, the virtual clock): campaigns draw them
    /// only for jobs with event time.
    pub const TIME: [FaultKind; 4] = [
        FaultKind::PanicInTimer,
        FaultKind::KillInTimers,
        FaultKind::KillAtWatermark,
        FaultKind::ClockJump,
    ];

    /// Its name: `panic`, `kill-at-phase`, ...
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Panic => "panic",
            FaultKind::PanicInSnapshot => "panic-in-snapshot",
            FaultKind::PanicInRestore => "panic-in-restore",
            FaultKind::Kill => "kill",
            FaultKind::KillAtPhase => "kill-at-phase",
            FaultKind::IoError => "io-error",
            FaultKind::DropNotification => "drop-notification",
            FaultKind::DelayNotification => "delay-notification",
            FaultKind::Corrupt => "corrupt",
            FaultKind::Crash => "crash",
            FaultKind::PanicInTimer => "panic-in-timer",
            FaultKind::KillInTimers => "kill-in-timers",
            FaultKind::KillAtWatermark => "kill-at-watermark",
            FaultKind::ClockJump => "clock-jump",
        }
    }

    /// The kind with this name.
    pub fn from_name(name: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// Whether its fault fires only once the job restarts: corruption and a clock jump (just
    /// before a restore) and a panic in a restore.
    pub fn waits_for_a_restart(self) -> bool {
        matches!(
            self,
            FaultKind::Corrupt | FaultKind::PanicInRestore | FaultKind::ClockJump
        )
    }

    /// Whether it acts on time (one of [`FaultKind::TIME`]).
    pub fn is_time(self) -> bool {
        FaultKind::TIME.contains(&self)
    }

    /// Whether its fault fails the job, so that it restarts.
    pub fn restarts_the_job(self) -> bool {
        matches!(
            self,
            FaultKind::Panic
                | FaultKind::Kill
                | FaultKind::KillAtPhase
                | FaultKind::Crash
                | FaultKind::PanicInTimer
                | FaultKind::KillInTimers
                | FaultKind::KillAtWatermark
        )
    }
}

/// Where a fault fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum FaultSite {
    /// Before an operator's record.
    Record,
    /// Before a scheduler step.
    Step,
    /// In a task's restore.
    Restore,
    /// At a checkpoint phase.
    Phase(Phase),
    /// At a completion notification.
    Notification,
    /// Between a failure and the restore that follows.
    BeforeRestore,
    /// After a step of a checkpoint write.
    WriteStep,
    /// In an operator's `on_timer`.
    Timer,
    /// Right after an operator's timer fired, before its next one.
    TimerFired,
    /// Where an operator's watermark advanced, before the timers it makes due fire.
    Watermark,
}

impl FaultSite {
    /// Every site, in the order of a case: coverage tables list them so.
    pub const ALL: [FaultSite; 16] = [
        FaultSite::Record,
        FaultSite::Watermark,
        FaultSite::Timer,
        FaultSite::TimerFired,
        FaultSite::Step,
        FaultSite::Restore,
        FaultSite::Phase(Phase::BarrierAtSource),
        FaultSite::Phase(Phase::SyncSnapshot),
        FaultSite::Phase(Phase::FileUpload),
        FaultSite::Phase(Phase::ChannelStateWrite),
        FaultSite::Phase(Phase::MetadataWrite),
        FaultSite::Phase(Phase::BeforeNotify),
        FaultSite::Phase(Phase::SinkCommit),
        FaultSite::Notification,
        FaultSite::BeforeRestore,
        FaultSite::WriteStep,
    ];

    /// Its name in coverage tables: `record`, `file-upload`, `before-restore`, ...
    pub fn name(self) -> &'static str {
        match self {
            FaultSite::Record => "record",
            FaultSite::Step => "step",
            FaultSite::Restore => "restore",
            FaultSite::Phase(phase) => phase.name(),
            FaultSite::Notification => "notification",
            FaultSite::BeforeRestore => "before-restore",
            FaultSite::WriteStep => "write-step",
            FaultSite::Timer => "timer",
            FaultSite::TimerFired => "timer-fired",
            FaultSite::Watermark => "watermark",
        }
    }
}

/// One scheduled fault.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Fault {
    /// An operator fails before its `record_index`-th record of `attempt`.
    Panic {
        /// The stage.
        stage: String,
        /// The subtask.
        subtask: u16,
        /// The attempt in which it fires.
        attempt: u32,
        /// Which record (1-based).
        record_index: u64,
    },
    /// The first task to snapshot checkpoint `checkpoint` fails during its snapshot.
    PanicInSnapshot {
        /// The checkpoint.
        checkpoint: u64,
    },
    /// The first task to restore in attempt `attempt` fails during its restore.
    PanicInRestore {
        /// The attempt.
        attempt: u32,
    },
    /// The process is killed at this scheduler step.
    Kill {
        /// The step.
        step: u64,
    },
    /// The process is killed at `phase` of checkpoint `checkpoint`. Named `kill-at-phase`
    /// everywhere; scenario files may still say `kill-at`.
    #[serde(rename = "kill-at-phase", alias = "kill-at")]
    KillAt {
        /// The phase.
        phase: Phase,
        /// The checkpoint.
        checkpoint: u64,
    },
    /// The `nth_write` storage write of checkpoint `checkpoint` fails with an I/O error.
    IoError {
        /// The checkpoint.
        checkpoint: u64,
        /// Which write (1-based; the `_metadata` write counts).
        nth_write: u32,
    },
    /// The first delivery of checkpoint `checkpoint`'s notification to every task is lost.
    DropNotification {
        /// The checkpoint.
        checkpoint: u64,
    },
    /// The first delivery of checkpoint `checkpoint`'s notification to every task is late.
    DelayNotification {
        /// The checkpoint.
        checkpoint: u64,
        /// By how much.
        delay_ms: u64,
    },
    /// Before attempt `attempt` restores, a file of the latest retained checkpoint is damaged.
    Corrupt {
        /// The attempt about to restore.
        attempt: u32,
        /// How.
        corruption: CorruptionKind,
    },
    /// The machine crashes right after the `after_step`-th step of the run's checkpoint writes
    /// (five to a write: create, write, sync, rename, sync the directory).
    Crash {
        /// The last step that happens.
        after_step: u64,
        /// What becomes of the data not yet synced.
        unsynced: Unsynced,
    },
    /// An operator fails in `on_timer`, at the `firing`-th timer its subtask fires in
    /// `attempt`.
    PanicInTimer {
        /// The stage.
        stage: String,
        /// The subtask.
        subtask: u16,
        /// The attempt in which it fires.
        attempt: u32,
        /// Which firing (1-based).
        firing: u64,
    },
    /// The process is killed right after the `firing`-th timer a subtask fires in `attempt`:
    /// its output is out, the timers due with it have not fired.
    KillInTimers {
        /// The stage.
        stage: String,
        /// The subtask.
        subtask: u16,
        /// The attempt in which it fires.
        attempt: u32,
        /// Which firing (1-based).
        firing: u64,
    },
    /// The process is killed when a subtask's watermark advances for the `advance`-th time in
    /// `attempt`, before the timers it makes due fire and before it goes on downstream.
    KillAtWatermark {
        /// The stage.
        stage: String,
        /// The subtask.
        subtask: u16,
        /// The attempt in which it fires.
        attempt: u32,
        /// Which advance (1-based).
        advance: u64,
    },
    /// Before attempt `attempt` restores, the job stays down `jump_ms` longer than its restart
    /// delay: the virtual clock (processing time) jumps ahead.
    ClockJump {
        /// The attempt about to restore.
        attempt: u32,
        /// By how much.
        jump_ms: u64,
    },
}

impl Fault {
    /// The fault's kind.
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::Panic { .. } => FaultKind::Panic,
            Fault::PanicInSnapshot { .. } => FaultKind::PanicInSnapshot,
            Fault::PanicInRestore { .. } => FaultKind::PanicInRestore,
            Fault::Kill { .. } => FaultKind::Kill,
            Fault::KillAt { .. } => FaultKind::KillAtPhase,
            Fault::IoError { .. } => FaultKind::IoError,
            Fault::DropNotification { .. } => FaultKind::DropNotification,
            Fault::DelayNotification { .. } => FaultKind::DelayNotification,
            Fault::Corrupt { .. } => FaultKind::Corrupt,
            Fault::Crash { .. } => FaultKind::Crash,
            Fault::PanicInTimer { .. } => FaultKind::PanicInTimer,
            Fault::KillInTimers { .. } => FaultKind::KillInTimers,
            Fault::KillAtWatermark { .. } => FaultKind::KillAtWatermark,
            Fault::ClockJump { .. } => FaultKind::ClockJump,
        }
    }

    /// The longest notification delay or clock jump a fault may name: a year.
    pub const DELAY_MAX_MS: u64 = 365 * 24 * 3_600_000;

    /// What makes this fault one no run can carry out, if anything.
    pub fn problem(&self) -> Option<String> {
        match self {
            Fault::DelayNotification { delay_ms: ms, .. }
            | Fault::ClockJump { jump_ms: ms, .. }
                if *ms > Self::DELAY_MAX_MS =>
            {
                Some(format!(
                    "a {} of {ms} ms: at most {} ms (a year)",
                    self.kind_name(),
                    Self::DELAY_MAX_MS
                ))
            }
            _ => None,
        }
    }

    /// The fault kind's name, for swarm configuration and coverage tables.
    pub fn kind_name(&self) -> &'static str {
        self.kind().name()
    }
}

/// A fixed list of faults, each firing at most once.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSchedule {
    /// The faults.
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// Seed of the stream for choices faults leave open (which bytes a corruption hits, how
    /// much of an uncommitted write a kill leaves).
    #[serde(default)]
    pub seed: u64,
    #[serde(skip)]
    fired: Vec<bool>,
    #[serde(skip)]
    notified: BTreeSet<(u64, String)>,
    #[serde(skip)]
    rng: Option<ChaCha8Rng>,
    #[serde(skip)]
    fired_log: Vec<(FaultKind, FaultSite)>,
}

impl PartialEq for FaultSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.faults == other.faults && self.seed == other.seed
    }
}

impl FaultSchedule {
    /// A schedule of `faults`.
    pub fn new(faults: Vec<Fault>) -> Self {
        Self {
            faults,
            ..Self::default()
        }
    }

    /// A schedule of `faults` whose open choices draw from `seed`.
    pub fn with_seed(faults: Vec<Fault>, seed: u64) -> Self {
        Self {
            faults,
            seed,
            ..Self::default()
        }
    }

    /// The faults that fired, in order: (fault kind, site where it fired).
    pub fn fired(&self) -> &[(FaultKind, FaultSite)] {
        &self.fired_log
    }

    fn rng(&mut self) -> &mut ChaCha8Rng {
        let seed = self.seed;
        self.rng
            .get_or_insert_with(|| RngStreams::new(seed).stream(StreamName::Faults))
    }

    /// Fires the first unfired fault `matches` selects, at `site`.
    fn fire(&mut self, site: FaultSite, matches: impl Fn(&Fault) -> bool) -> Option<Fault> {
        self.fired.resize(self.faults.len(), false);
        let index = (0..self.faults.len()).find(|&i| !self.fired[i] && matches(&self.faults[i]))?;
        self.fired[index] = true;
        self.fired_log.push((self.faults[index].kind(), site));
        Some(self.faults[index].clone())
    }

    /// Fires a matching fault as `effect`, its detail written by `detail`.
    fn act(
        &mut self,
        site: FaultSite,
        effect: Effect,
        matches: impl Fn(&Fault) -> bool,
        detail: impl FnOnce() -> String,
    ) -> Option<FaultAction> {
        let fault = self.fire(site, matches)?;
        Some(FaultAction {
            fault: fault.kind(),
            site,
            effect,
            detail: detail(),
        })
    }

    /// A panic before an operator's record (`point` is a [`FaultPoint::Record`]).
    fn panic_at_record(&mut self, point: &FaultPoint<'_>) -> Option<FaultAction> {
        let FaultPoint::Record {
            stage,
            subtask,
            attempt,
            record_index,
            record,
        } = *point
        else {
            return None;
        };
        self.act(
            FaultSite::Record,
            Effect::Panic,
            |f| {
                matches!(f, Fault::Panic { stage: s, subtask: t, attempt: a, record_index: r }
                    if s == stage && *t == subtask && *a == attempt && *r == record_index)
            },
            || {
                format!(
                    "injected panic before record #{record_index} ({})",
                    record.id
                )
            },
        )
    }

    /// A kill in, or an I/O error of, the `nth` write of `checkpoint` (its `_metadata` when
    /// `metadata`).
    fn at_write(
        &mut self,
        checkpoint: u64,
        nth: u32,
        metadata: bool,
        channel_state: bool,
    ) -> Option<FaultAction> {
        let phase = match (metadata, channel_state) {
            (true, _) => Phase::MetadataWrite,
            (false, true) => Phase::ChannelStateWrite,
            (false, false) => Phase::FileUpload,
        };
        self.kill_at(phase, checkpoint).or_else(|| {
            self.act(
                FaultSite::Phase(phase),
                Effect::IoError,
                |f| matches!(f, Fault::IoError { checkpoint: c, nth_write: n } if *c == checkpoint && *n == nth),
                || format!("injected I/O error on write #{nth} of chk-{checkpoint}"),
            )
        })
    }

    /// A fault in time at an operator subtask's `nth` firing or watermark advance: `kind` is
    /// the one fault kind `site` takes.
    fn in_time(
        &mut self,
        site: FaultSite,
        (stage, subtask, attempt, nth): (&str, u16, u32, u64),
        detail: impl FnOnce() -> String,
    ) -> Option<FaultAction> {
        let at = |s: &String, t: &u16, a: &u32, n: &u64| {
            s == stage && *t == subtask && *a == attempt && *n == nth
        };
        let effect = match site {
            FaultSite::Timer => Effect::Panic,
            _ => Effect::Kill,
        };
        self.act(
            site,
            effect,
            |f| match (site, f) {
                (
                    FaultSite::Timer,
                    Fault::PanicInTimer {
                        stage,
                        subtask,
                        attempt,
                        firing,
                    },
                )
                | (
                    FaultSite::TimerFired,
                    Fault::KillInTimers {
                        stage,
                        subtask,
                        attempt,
                        firing,
                    },
                )
                | (
                    FaultSite::Watermark,
                    Fault::KillAtWatermark {
                        stage,
                        subtask,
                        attempt,
                        advance: firing,
                    },
                ) => at(stage, subtask, attempt, firing),
                _ => false,
            },
            detail,
        )
    }

    /// A fault at one of the points in time (`point` is one of them).
    fn at_time_point(&mut self, point: &FaultPoint<'_>) -> Option<FaultAction> {
        match *point {
            FaultPoint::Timer {
                stage,
                subtask,
                attempt,
                firing,
                timer,
            } => self.in_time(FaultSite::Timer, (stage, subtask, attempt, firing), || {
                format!(
                    "injected panic in on_timer of firing #{firing} (key {}, {} ms)",
                    timer.key, timer.timestamp_ms
                )
            }),
            FaultPoint::TimerFired {
                stage,
                subtask,
                attempt,
                firing,
            } => self.in_time(
                FaultSite::TimerFired,
                (stage, subtask, attempt, firing),
                || format!("process killed after timer firing #{firing} (simulated)"),
            ),
            FaultPoint::WatermarkAdvanced {
                stage,
                subtask,
                attempt,
                advance,
                watermark_ms,
            } => self.in_time(
                FaultSite::Watermark,
                (stage, subtask, attempt, advance),
                || format!("process killed as the watermark reached {watermark_ms} ms (simulated)"),
            ),
            _ => None,
        }
    }

    fn kill_at(&mut self, phase: Phase, checkpoint: u64) -> Option<FaultAction> {
        self.act(
            FaultSite::Phase(phase),
            Effect::Kill,
            |f| matches!(f, Fault::KillAt { phase: p, checkpoint: c } if *p == phase && *c == checkpoint),
            || format!("process killed at {} of chk-{checkpoint} (simulated)", phase.name()),
        )
    }
}

impl FaultPlan for FaultSchedule {
    fn at(&mut self, point: &FaultPoint<'_>) -> Option<FaultAction> {
        match *point {
            FaultPoint::Record { .. } => self.panic_at_record(point),
            FaultPoint::Step { step } => self.act(
                FaultSite::Step,
                Effect::Kill,
                |f| matches!(f, Fault::Kill { step: s } if *s == step),
                || format!("process killed at step {step} (simulated)"),
            ),
            FaultPoint::BarrierInjected { checkpoint } => {
                self.kill_at(Phase::BarrierAtSource, checkpoint)
            }
            FaultPoint::SyncSnapshot {
                checkpoint,
                stage,
                subtask,
            } => self.kill_at(Phase::SyncSnapshot, checkpoint).or_else(|| {
                self.act(
                    FaultSite::Phase(Phase::SyncSnapshot),
                    Effect::Panic,
                    |f| matches!(f, Fault::PanicInSnapshot { checkpoint: c } if *c == checkpoint),
                    || {
                        format!(
                            "injected panic in {stage}[{subtask}]'s snapshot of chk-{checkpoint}"
                        )
                    },
                )
            }),
            FaultPoint::StorageWrite {
                checkpoint,
                nth,
                metadata,
                channel_state,
            } => self.at_write(checkpoint, nth, metadata, channel_state),
            FaultPoint::BeforeNotify { checkpoint } => {
                self.kill_at(Phase::BeforeNotify, checkpoint)
            }
            FaultPoint::SinkCommit { checkpoint, .. } => {
                self.kill_at(Phase::SinkCommit, checkpoint)
            }
            FaultPoint::Restore {
                attempt,
                stage,
                subtask,
            } => self.act(
                FaultSite::Restore,
                Effect::Panic,
                |f| matches!(f, Fault::PanicInRestore { attempt: a } if *a == attempt),
                || format!("injected panic in {stage}[{subtask}]'s restore"),
            ),
            FaultPoint::Timer { .. }
            | FaultPoint::TimerFired { .. }
            | FaultPoint::WatermarkAdvanced { .. } => self.at_time_point(point),
        }
    }

    fn downtime_ms(&mut self, attempt: u32) -> u64 {
        match self.fire(
            FaultSite::BeforeRestore,
            |f| matches!(f, Fault::ClockJump { attempt: a, .. } if *a == attempt),
        ) {
            Some(Fault::ClockJump { jump_ms, .. }) => jump_ms,
            _ => 0,
        }
    }

    fn notification(&mut self, checkpoint: u64, task: &str) -> NotifyFate {
        // Only the first delivery to each task is affected; re-sent notifications get through.
        if !self.notified.insert((checkpoint, task.to_string())) {
            return NotifyFate::Deliver;
        }
        let mut fate = NotifyFate::Deliver;
        for fault in &self.faults {
            match fault {
                Fault::DropNotification { checkpoint: c } if *c == checkpoint => {
                    fate = NotifyFate::Drop
                }
                Fault::DelayNotification {
                    checkpoint: c,
                    delay_ms,
                } if *c == checkpoint => fate = NotifyFate::Delay(*delay_ms),
                _ => {}
            }
        }
        match fate {
            NotifyFate::Deliver => {}
            NotifyFate::Drop => self
                .fired_log
                .push((FaultKind::DropNotification, FaultSite::Notification)),
            NotifyFate::Delay(_) => self
                .fired_log
                .push((FaultKind::DelayNotification, FaultSite::Notification)),
        }
        fate
    }

    fn corrupt(&mut self, storage: &mut dyn CheckpointStorage, attempt: u32) -> Vec<Corruption> {
        let mut done = Vec::new();
        while let Some(Fault::Corrupt { corruption, .. }) = self.fire(
            FaultSite::BeforeRestore,
            |f| matches!(f, Fault::Corrupt { attempt: a, .. } if *a == attempt),
        ) {
            let rng = self.rng();
            match corrupt_retained(storage, corruption, &mut |bound| {
                rng.random_range(0..bound.max(1))
            }) {
                Some(applied) => done.push(applied),
                // Nothing to damage (no retained checkpoint, or a stale copy identical to the
                // original): the fault did not happen, so it is not logged as fired.
                None => {
                    self.fired_log.pop();
                }
            }
        }
        done
    }

    fn crash_after(&mut self, step: u64) -> Option<Crash> {
        let Fault::Crash { unsynced, .. } = self.fire(
            FaultSite::WriteStep,
            |f| matches!(f, Fault::Crash { after_step, .. } if *after_step == step),
        )?
        else {
            unreachable!("only a crash fault matches")
        };
        Some(Crash {
            action: FaultAction {
                fault: FaultKind::Crash,
                site: FaultSite::WriteStep,
                effect: Effect::Kill,
                detail: format!("machine crashed after write step {step} (simulated)"),
            },
            unsynced,
        })
    }

    fn draw(&mut self, bound: u64) -> u64 {
        self.rng().random_range(0..bound.max(1))
    }

    fn save(&self) -> Option<serde_json::Value> {
        let state = ScheduleState {
            fired: self.fired.clone(),
            notified: self.notified.clone(),
            rng: self.rng.clone(),
            fired_log: self.fired_log.clone(),
        };
        Some(serde_json::to_value(state).expect("a schedule's state serializes"))
    }

    fn load(&mut self, state: serde_json::Value) -> Result<(), serde_json::Error> {
        let state: ScheduleState = serde_json::from_value(state)?;
        self.fired = state.fired;
        self.notified = state.notified;
        self.rng = state.rng;
        self.fired_log = state.fired_log;
        Ok(())
    }
}

/// What a [`FaultSchedule`] knows beyond its faults: which fired, where its stream stands.
#[derive(Serialize, Deserialize)]
struct ScheduleState {
    fired: Vec<bool>,
    notified: BTreeSet<(u64, String)>,
    rng: Option<ChaCha8Rng>,
    fired_log: Vec<(FaultKind, FaultSite)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_kind_has_one_name_in_scenario_files_and_everywhere_else() {
        #[derive(Debug, Deserialize, Serialize)]
        struct Faults {
            faults: Vec<Fault>,
        }
        let old: Faults = toml::from_str(
            r#"faults = [{ kind = "kill-at", phase = "sink-commit", checkpoint = 3 }]"#,
        )
        .expect("the older name still reads");
        let fault = &old.faults[0];
        assert_eq!(fault.kind_name(), FaultKind::KillAtPhase.name());
        let written = toml::to_string(&old).expect("faults serialize");
        assert!(written.contains(r#"kind = "kill-at-phase""#), "{written}");
    }
}
