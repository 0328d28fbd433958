//! The checkpoint coordinator as a state machine: it decides when checkpoints and savepoints
//! are triggered, collects every task's acknowledgement, assembles `_metadata`, completes,
//! retains, subsumes and aborts checkpoints, and says which shared files must be kept. It does
//! no I/O and knows no tasks: the engine (or the benchmark) feeds it inputs and carries out the
//! [`Command`]s it returns, in order.
//!
//! Inputs: [`Coordinator::tick`] (time passes), [`Coordinator::acknowledge`] (a task's
//! snapshot is uploaded), [`Coordinator::metadata_written`] (the commit point), [`Coordinator::abort`],
//! and [`Coordinator::restored`] / [`Coordinator::start_attempt`] at each attempt's restore.
//! Completion notifications go out as [`Command::Notify`]; what a late or lost one may do to
//! an incremental base is the backend's to get right (as in Flink, the backend keeps its own
//! base), and the harness delivers them late, twice or never on purpose to test that.
//!
//! A savepoint travels as a barrier like a checkpoint, but its files and `_metadata` live in
//! `savepoints/<name>/` with paths relative to that directory (so it can be moved), it is never
//! retained or subsumed, and its uploads never become an incremental base.
//!
//! ```
//! use faultline::checkpoint::coordinator::{Command, Coordinator, Layout};
//! use faultline::checkpoint::{CheckpointConfig, SubtaskSnapshot};
//! use faultline::state::KeyGroupRange;
//!
//! // One stage of one task, a checkpoint every 10 ms.
//! let layout = Layout::single("bench", 128, "memory");
//! let mut coordinator = Coordinator::new(CheckpointConfig::every(10), Vec::new(), layout);
//! coordinator.start_attempt(0);
//! let commands = coordinator.tick(10, false);
//! assert!(matches!(commands[..], [Command::Trigger { checkpoint: 1, .. }]));
//! let snapshot = SubtaskSnapshot {
//!     subtask: 0,
//!     key_groups: KeyGroupRange { start: 0, end: 127 },
//!     keyed: None,
//!     operator_state: Vec::new(),
//!     channel_state: None,
//! };
//! // Once every task acknowledged, the metadata is to be written; once it is, the checkpoint
//! // completes and every task is to be notified.
//! let commands = coordinator.acknowledge(1, 0, snapshot);
//! assert!(matches!(commands[..], [Command::WriteMetadata { checkpoint: 1, .. }]));
//! let commands = coordinator.metadata_written(1, 12);
//! assert!(commands.iter().any(|c| matches!(c, Command::Notify { checkpoint: 1 })));
//! assert_eq!(coordinator.latest_retained(), Some(1));
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::registry::{self, Keep};
use super::{
    CheckpointConfig, CheckpointMetadata, FileRef, KeyedStateHandle, NamedFile, RelPath,
    SavepointRequest, SnapshotKind, StageSnapshot, StorageError, SubtaskSnapshot,
};
use crate::state::RestoreMode;

/// Why a checkpoint was aborted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum AbortReason {
    /// It did not complete within the checkpoint timeout.
    Expired {
        /// The timeout.
        timeout_ms: u64,
    },
    /// Its metadata would reference a shared file that is gone.
    MissingSharedFile {
        /// The file.
        path: String,
    },
    /// Writing `_metadata` failed.
    MetadataWrite {
        /// The storage error.
        error: String,
    },
    /// The upload hand-off refused a snapshot that reused a shared file no uploaded or
    /// retained checkpoint holds.
    ReuseRefused {
        /// The task whose snapshot reused it.
        task: String,
        /// The hand-off's refusal.
        error: String,
    },
    /// A task's keyed snapshot or its upload failed (Flink's asynchronous phase).
    Snapshot {
        /// The task.
        task: String,
        /// The error.
        error: String,
    },
    /// Writing a task's channel state (an unaligned snapshot's records in flight) failed.
    ChannelStateWrite {
        /// The task.
        task: String,
        /// The storage error.
        error: String,
    },
}

/// The shape of the job the coordinator assembles metadata for: its stages in order, each with
/// its name and parallelism (tasks are numbered stage after stage), and what identifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Each stage's name and parallelism, source first.
    pub stages: Vec<(String, u16)>,
    /// The job's fingerprint, recorded so a restore refuses another job.
    pub job_fingerprint: u64,
    /// The job's max parallelism.
    pub max_parallelism: u16,
    /// The state backend's name.
    pub backend: String,
}

impl Layout {
    /// One stage of one task: a benchmark's single keyed subtask.
    pub fn single(stage: &str, max_parallelism: u16, backend: &str) -> Self {
        Self {
            stages: vec![(stage.to_string(), 1)],
            job_fingerprint: 0,
            max_parallelism,
            backend: backend.to_string(),
        }
    }

    /// Tasks in all.
    pub fn tasks(&self) -> usize {
        self.stages.iter().map(|(_, p)| usize::from(*p)).sum()
    }
}

/// What the coordinator asks of whoever drives it, to be carried out in order.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Command {
    /// Start checkpoint `checkpoint` (a savepoint, if `savepoint` says so): sources store
    /// their positions, acknowledge and send the barrier on.
    Trigger {
        /// Its id.
        checkpoint: u64,
        /// The savepoint it takes, if any.
        savepoint: Option<SavepointRequest>,
        /// The input is exhausted: the job finishes once it completes.
        is_final: bool,
    },
    /// Every task acknowledged: write `metadata` as `<dir>/_metadata`, then report it with
    /// [`Coordinator::metadata_written`] (or abort).
    WriteMetadata {
        /// The checkpoint.
        checkpoint: u64,
        /// Its metadata.
        metadata: CheckpointMetadata,
        /// Its directory.
        dir: RelPath,
    },
    /// The checkpoint is complete.
    Completed {
        /// The checkpoint.
        checkpoint: u64,
        /// State files its metadata names.
        files: usize,
        /// Set when it was a savepoint: its name and directory.
        savepoint: Option<(String, RelPath)>,
        /// The final checkpoint of a finished input.
        is_final: bool,
    },
    /// Record `checkpoint` as the latest completed one.
    RecordCompleted {
        /// The checkpoint.
        checkpoint: u64,
    },
    /// A newer checkpoint subsumed `checkpoint`: remove its directory.
    Subsume {
        /// The checkpoint.
        checkpoint: u64,
    },
    /// Delete every shared file that `keep` does not keep.
    CollectGarbage {
        /// What to keep.
        keep: Keep,
    },
    /// Notify every task that `checkpoint` completed.
    Notify {
        /// The checkpoint.
        checkpoint: u64,
    },
    /// `checkpoint` is aborted: unblock its alignment, tell the backends, and remove its
    /// directory unless a `_metadata` in it committed.
    Discard {
        /// The checkpoint.
        checkpoint: u64,
        /// Its directory.
        dir: RelPath,
    },
    /// `checkpoint` was aborted, for `reason`.
    Aborted {
        /// The checkpoint.
        checkpoint: u64,
        /// Why.
        reason: AbortReason,
    },
    /// More consecutive checkpoints failed than tolerated: the job fails.
    Fail {
        /// Consecutive failures.
        consecutive: u32,
        /// Tolerated.
        tolerated: u32,
    },
}

/// A checkpoint in flight.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingCheckpoint {
    /// Its id.
    pub id: u64,
    /// When it was triggered.
    pub trigger_ms: u64,
    /// The final checkpoint of a finished input.
    pub is_final: bool,
    /// The savepoint it takes, if any.
    pub savepoint: Option<SavepointRequest>,
    acks: Vec<Option<SubtaskSnapshot>>,
    /// Assembled once every task acknowledged.
    metadata: Option<CheckpointMetadata>,
}

impl PendingCheckpoint {
    /// The snapshots its tasks acknowledged so far.
    pub fn acknowledged(&self) -> impl Iterator<Item = &SubtaskSnapshot> {
        self.acks.iter().flatten()
    }
}

/// A retained checkpoint and the shared files it references (an error: its metadata could not
/// be read, so nothing is known to be unreferenced).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Retained {
    id: u64,
    shared: Result<BTreeSet<RelPath>, UnreadableMetadata>,
}

/// A retained checkpoint whose `_metadata` could not be read at a restore: garbage collection
/// then keeps every shared file, since any of them might be one it needs. It renders as the
/// storage error did (`{path}: {problem}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct UnreadableMetadata {
    /// The checkpoint.
    pub checkpoint: u64,
    /// The file that could not be read, relative to the checkpoint root.
    pub path: String,
    /// What is wrong with it.
    pub problem: String,
}

impl UnreadableMetadata {
    /// Checkpoint `checkpoint`'s metadata failed to read with `error`.
    pub fn new(checkpoint: u64, error: &StorageError) -> Self {
        Self {
            checkpoint,
            path: error.path().to_string(),
            problem: error.problem(),
        }
    }
}

/// What a [`Coordinator`] keeps across attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinatorState {
    next_id: u64,
    savepoints_taken: Vec<String>,
    consecutive_failures: u32,
    #[serde(default)]
    inherited: Option<Inherited>,
}

/// The checkpoints an earlier job left in the root, and how this job restores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inherited {
    /// The newest of them: every checkpoint up to it is the earlier job's.
    pub up_to: u64,
    /// CLAIM (they become this job's) or NO_CLAIM (they stay the earlier job's).
    pub mode: RestoreMode,
}

/// The coordinator (see the module doc).
#[derive(Debug, Clone)]
pub struct Coordinator {
    config: CheckpointConfig,
    savepoints: Vec<SavepointRequest>,
    layout: Layout,
    max_concurrent: usize,
    next_id: u64,
    retained: VecDeque<Retained>,
    /// Checkpoints an earlier job left, restored NO_CLAIM: never subsumed, and their shared
    /// files always kept.
    unclaimed: Vec<Retained>,
    inherited: Option<Inherited>,
    savepoints_taken: Vec<String>,
    consecutive_failures: u32,
    pending: BTreeMap<u64, PendingCheckpoint>,
    next_trigger_ms: u64,
    /// No checkpoint triggers before this: the last completion plus the minimum pause.
    paused_until_ms: u64,
    final_completed: bool,
    stopping: bool,
    stopped: Option<(String, u64)>,
}

impl Coordinator {
    /// A coordinator checkpointing as `config` says, taking `savepoints` when due, for a job of
    /// `layout`, with at most `config.concurrency()` checkpoints in flight.
    pub fn new(
        config: CheckpointConfig,
        savepoints: Vec<SavepointRequest>,
        layout: Layout,
    ) -> Self {
        Self {
            max_concurrent: config.concurrency(),
            config,
            savepoints,
            layout,
            next_id: 1,
            retained: VecDeque::new(),
            unclaimed: Vec::new(),
            inherited: None,
            savepoints_taken: Vec::new(),
            consecutive_failures: 0,
            pending: BTreeMap::new(),
            next_trigger_ms: 0,
            paused_until_ms: 0,
            final_completed: false,
            stopping: false,
            stopped: None,
        }
    }

    /// A new attempt starts at `now_ms` (the job's first, or one after a failure): nothing is
    /// in flight, and the next checkpoint is due an interval from now.
    pub fn start_attempt(&mut self, now_ms: u64) {
        self.pending.clear();
        self.next_trigger_ms = now_ms + self.config.interval_ms;
        self.final_completed = false;
        self.stopping = false;
        self.stopped = None;
    }

    /// Snapshot ids in storage go up to `highest`: new ids exceed it, so no id repeats across
    /// restarts (aborted ones leave gaps).
    pub fn ids_above(&mut self, highest: u64) {
        self.next_id = self.next_id.max(highest + 1);
    }

    /// The checkpoints up to `inherited.up_to` are an earlier job's. Restored NO_CLAIM, they
    /// are never subsumed nor counted as retained, and their shared files are never collected;
    /// CLAIM, they are the job's like any other.
    pub fn inherit(&mut self, inherited: Inherited) {
        self.inherited = Some(inherited);
    }

    /// How `checkpoint` is restored, if it is an earlier job's.
    pub fn inherited_mode(&self, checkpoint: u64) -> Option<RestoreMode> {
        let inherited = self.inherited?;
        (checkpoint <= inherited.up_to).then_some(inherited.mode)
    }

    /// Whether `checkpoint` is an earlier job's, left unclaimed.
    pub fn is_unclaimed(&self, checkpoint: u64) -> bool {
        self.inherited_mode(checkpoint) == Some(RestoreMode::NoClaim)
    }

    /// The newest checkpoint left unclaimed, if the job restores NO_CLAIM.
    pub fn unclaimed_up_to(&self) -> Option<u64> {
        let inherited = self.inherited?;
        (inherited.mode == RestoreMode::NoClaim).then_some(inherited.up_to)
    }

    /// At a restore: the retained checkpoints found in storage, oldest first, each with the
    /// shared files its metadata references (or why that metadata is unreadable). Returns the
    /// garbage collection that follows.
    pub fn restored(
        &mut self,
        retained: Vec<(u64, Result<BTreeSet<RelPath>, UnreadableMetadata>)>,
    ) -> Command {
        let (unclaimed, claimed): (Vec<_>, Vec<_>) = retained
            .into_iter()
            .map(|(id, shared)| Retained { id, shared })
            .partition(|retained| self.is_unclaimed(retained.id));
        self.unclaimed = unclaimed;
        self.retained = claimed.into();
        debug_assert!(
            self.retained
                .iter()
                .zip(self.retained.iter().skip(1))
                .all(|(a, b)| a.id < b.id),
            "retained checkpoints are listed oldest first"
        );
        self.collect_garbage()
    }

    /// The savepoint `name` is taken (found in storage at a restore): it is never taken again.
    pub fn taken(&mut self, name: &str) {
        if !self.savepoints_taken.iter().any(|taken| taken == name) {
            self.savepoints_taken.push(name.to_string());
        }
    }

    /// Time passed to `now_ms`: expire checkpoints past the timeout, then, below the
    /// concurrency, trigger a due savepoint once nothing is in flight, else a due checkpoint
    /// (`input_exhausted`: the final one).
    pub fn tick(&mut self, now_ms: u64, input_exhausted: bool) -> Vec<Command> {
        let mut commands = Vec::new();
        let expired: Vec<u64> = self
            .pending
            .values()
            .filter(|p| now_ms.saturating_sub(p.trigger_ms) >= self.config.timeout_ms)
            .map(|p| p.id)
            .collect();
        for id in expired {
            let timeout_ms = self.config.timeout_ms;
            commands.extend(self.abort(id, AbortReason::Expired { timeout_ms }));
        }
        if self.pending.len() >= self.max_concurrent || self.final_completed || self.stopping {
            return commands;
        }
        let due = self
            .savepoints
            .iter()
            .find(|r| now_ms >= r.at_ms && !self.savepoints_taken.contains(&r.name))
            .cloned();
        match due {
            // A savepoint due waits for the checkpoints in flight, and no new one starts.
            Some(_) if !self.pending.is_empty() => {}
            Some(_) => commands.push(self.trigger(now_ms, due, input_exhausted)),
            None if now_ms >= self.next_trigger_ms => {
                commands.push(self.trigger(now_ms, None, input_exhausted));
            }
            None => {}
        }
        commands
    }

    /// The next checkpoint is due as soon as it may be (the input is drained: the final one
    /// need not wait for the interval, only for the minimum pause after the last completion).
    /// Returns when that is.
    pub fn trigger_now(&mut self, now_ms: u64) -> u64 {
        let at_ms = now_ms.max(self.paused_until_ms);
        self.next_trigger_ms = self.next_trigger_ms.min(at_ms);
        at_ms
    }

    fn trigger(
        &mut self,
        now_ms: u64,
        savepoint: Option<SavepointRequest>,
        input_exhausted: bool,
    ) -> Command {
        let id = self.next_id;
        self.next_id += 1;
        if savepoint.is_none() {
            self.next_trigger_ms = now_ms + self.config.interval_ms;
        }
        if savepoint.as_ref().is_some_and(|request| request.stop) {
            self.stopping = true;
        }
        let is_final = input_exhausted && savepoint.is_none();
        self.pending.insert(
            id,
            PendingCheckpoint {
                id,
                trigger_ms: now_ms,
                is_final,
                savepoint: savepoint.clone(),
                acks: vec![None; self.layout.tasks()],
                metadata: None,
            },
        );
        Command::Trigger {
            checkpoint: id,
            savepoint,
            is_final,
        }
    }

    /// Task `task` (numbered stage after stage) took its snapshot of `checkpoint`. Once every
    /// task has, the metadata is to be written. A checkpoint no longer in flight (aborted while
    /// its barrier travelled) takes no acknowledgement.
    pub fn acknowledge(
        &mut self,
        checkpoint: u64,
        task: usize,
        snapshot: SubtaskSnapshot,
    ) -> Vec<Command> {
        let Some(pending) = self.pending.get_mut(&checkpoint) else {
            return Vec::new();
        };
        assert!(
            pending.acks[task].is_none(),
            "task {task} acknowledged chk-{checkpoint} twice"
        );
        pending.acks[task] = Some(snapshot);
        if pending.acks.iter().any(Option::is_none) {
            return Vec::new();
        }
        let dir = snapshot_dir(checkpoint, pending.savepoint.as_ref());
        let metadata = self.metadata(&self.pending[&checkpoint], &dir);
        self.pending
            .get_mut(&checkpoint)
            .expect("looked up above")
            .metadata = Some(metadata.clone());
        vec![Command::WriteMetadata {
            checkpoint,
            metadata,
            dir,
        }]
    }

    /// The metadata of a checkpoint every task acknowledged.
    fn metadata(&self, pending: &PendingCheckpoint, dir: &RelPath) -> CheckpointMetadata {
        let mut acks = pending.acks.iter().map(|ack| {
            let mut subtask = ack.clone().expect("every task acknowledged");
            if pending.savepoint.is_some() {
                subtask.keyed = subtask.keyed.as_ref().map(|handle| relocate(dir, handle));
            }
            subtask
        });
        let stages = self
            .layout
            .stages
            .iter()
            .enumerate()
            .map(|(stage, (name, parallelism))| StageSnapshot {
                stage: stage as u16,
                name: name.clone(),
                parallelism: *parallelism,
                subtasks: acks.by_ref().take(usize::from(*parallelism)).collect(),
            })
            .collect();
        CheckpointMetadata {
            checkpoint_id: pending.id,
            kind: if pending.savepoint.is_some() {
                SnapshotKind::Savepoint
            } else {
                SnapshotKind::Checkpoint
            },
            trigger_time_ms: pending.trigger_ms,
            job_fingerprint: self.layout.job_fingerprint,
            max_parallelism: self.layout.max_parallelism,
            backend: self.layout.backend.clone(),
            stages,
        }
    }

    /// The `_metadata` of `checkpoint` is written: the commit point. It is complete: a
    /// savepoint is taken (and stops the job, if asked); a checkpoint is recorded, retained,
    /// and subsumes the oldest beyond `num_retained`; every task is to be notified. It was
    /// written at `now_ms`: no checkpoint is triggered before the minimum pause from then.
    pub fn metadata_written(&mut self, checkpoint: u64, now_ms: u64) -> Vec<Command> {
        let Some(pending) = self.pending.remove(&checkpoint) else {
            debug_assert!(false, "chk-{checkpoint} completed while not in flight");
            return Vec::new();
        };
        self.paused_until_ms = now_ms.saturating_add(self.config.min_pause_ms);
        self.next_trigger_ms = self.next_trigger_ms.max(self.paused_until_ms);
        self.consecutive_failures = 0;
        let dir = snapshot_dir(checkpoint, pending.savepoint.as_ref());
        let metadata = pending
            .metadata
            .expect("the metadata written is the one assembled when every task acknowledged");
        let files = metadata.files().len();
        if let Some(request) = pending.savepoint {
            self.savepoints_taken.push(request.name.clone());
            if request.stop {
                self.stopped = Some((request.name.clone(), checkpoint));
            }
            return vec![
                Command::Notify { checkpoint },
                Command::Completed {
                    checkpoint,
                    files,
                    savepoint: Some((request.name, dir)),
                    is_final: false,
                },
            ];
        }
        self.final_completed |= pending.is_final;
        let mut commands = vec![
            Command::Notify { checkpoint },
            Command::Completed {
                checkpoint,
                files,
                savepoint: None,
                is_final: pending.is_final,
            },
            Command::RecordCompleted { checkpoint },
        ];
        let position = self.retained.partition_point(|r| r.id < checkpoint);
        self.retained.insert(
            position,
            Retained {
                id: checkpoint,
                shared: Ok(metadata.shared_paths()),
            },
        );
        let mut subsumed = false;
        while self.retained.len() > self.config.num_retained as usize {
            let old = self
                .retained
                .pop_front()
                .expect("longer than num_retained >= 1");
            commands.push(Command::Subsume { checkpoint: old.id });
            subsumed = true;
        }
        if subsumed {
            commands.push(self.collect_garbage());
        }
        commands
    }

    /// Aborts `checkpoint`, for `reason`: its files are discarded and their shared ones
    /// collected; too many failures in a row fail the job.
    pub fn abort(&mut self, checkpoint: u64, reason: AbortReason) -> Vec<Command> {
        let Some(pending) = self.pending.remove(&checkpoint) else {
            return Vec::new();
        };
        if pending
            .savepoint
            .as_ref()
            .is_some_and(|request| request.stop)
        {
            self.stopping = false;
        }
        self.consecutive_failures += 1;
        let mut commands = vec![
            Command::Discard {
                checkpoint,
                dir: snapshot_dir(checkpoint, pending.savepoint.as_ref()),
            },
            self.collect_garbage(),
            Command::Aborted { checkpoint, reason },
        ];
        if self.consecutive_failures > self.config.tolerable_failures {
            commands.push(Command::Fail {
                consecutive: self.consecutive_failures,
                tolerated: self.config.tolerable_failures,
            });
        }
        commands
    }

    /// What outlives an attempt (ids, taken savepoints, failures in a row), for a
    /// process killed for real to leave to the next; the rest is read back at the restore.
    pub fn save(&self) -> CoordinatorState {
        CoordinatorState {
            next_id: self.next_id,
            savepoints_taken: self.savepoints_taken.clone(),
            consecutive_failures: self.consecutive_failures,
            inherited: self.inherited,
        }
    }

    /// Takes up what [`Coordinator::save`] gave.
    pub fn load(&mut self, state: CoordinatorState) {
        self.next_id = state.next_id;
        self.savepoints_taken = state.savepoints_taken;
        self.consecutive_failures = state.consecutive_failures;
        self.inherited = state.inherited;
    }

    fn collect_garbage(&self) -> Command {
        let mut files = BTreeSet::new();
        for retained in self.unclaimed.iter().chain(&self.retained) {
            match &retained.shared {
                Ok(shared) => files.extend(shared.iter().cloned()),
                Err(reason) => {
                    return Command::CollectGarbage {
                        keep: Keep::Everything {
                            reason: format!("chk-{} unreadable: {reason}", retained.id),
                        },
                    }
                }
            }
        }
        Command::CollectGarbage {
            keep: Keep::Files(files),
        }
    }

    /// The savepoint checkpoint `checkpoint` takes, if it is one in flight.
    pub fn savepoint_of(&self, checkpoint: u64) -> Option<&SavepointRequest> {
        self.pending.get(&checkpoint)?.savepoint.as_ref()
    }

    /// Whether `checkpoint` is in flight.
    pub fn is_pending(&self, checkpoint: u64) -> bool {
        self.pending.contains_key(&checkpoint)
    }

    /// The checkpoints in flight, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &PendingCheckpoint> {
        self.pending.values()
    }

    /// The newest retained checkpoint.
    pub fn latest_retained(&self) -> Option<u64> {
        self.retained.back().map(|r| r.id)
    }

    /// The retained checkpoints, oldest first.
    pub fn retained(&self) -> Vec<u64> {
        self.retained.iter().map(|r| r.id).collect()
    }

    /// The savepoints taken, in order.
    pub fn savepoints_taken(&self) -> &[String] {
        &self.savepoints_taken
    }

    /// The final checkpoint of a finished input completed.
    pub fn final_completed(&self) -> bool {
        self.final_completed
    }

    /// A stop-with-savepoint is in flight or done: sources emit nothing more.
    pub fn stopping(&self) -> bool {
        self.stopping
    }

    /// The stop-with-savepoint that completed, with its barrier id.
    pub fn stopped(&self) -> Option<&(String, u64)> {
        self.stopped.as_ref()
    }
}

/// Where a snapshot's private files go: `chk-<id>` or `savepoints/<name>`.
pub fn snapshot_dir(id: u64, savepoint: Option<&SavepointRequest>) -> RelPath {
    match savepoint {
        None => registry::checkpoint_dir(id),
        Some(request) => RelPath::new(&format!("savepoints/{}", request.name))
            .expect("savepoint names are validated as plain names"),
    }
}

/// A file path made relative to a savepoint's own directory.
fn relative_to(dir: &RelPath, file: &FileRef) -> FileRef {
    let prefix = format!("{dir}/");
    let inside = file
        .path
        .as_str()
        .strip_prefix(&prefix)
        .expect("savepoint files are written inside its directory");
    FileRef {
        path: RelPath::new(inside).expect("a suffix of a valid path is valid"),
        ..file.clone()
    }
}

fn relocate(dir: &RelPath, handle: &KeyedStateHandle) -> KeyedStateHandle {
    let named = |files: &[NamedFile]| -> Vec<NamedFile> {
        files
            .iter()
            .map(|n| NamedFile {
                local_name: n.local_name.clone(),
                file: relative_to(dir, &n.file),
            })
            .collect()
    };
    match handle {
        KeyedStateHandle::Canonical(file) => KeyedStateHandle::Canonical(relative_to(dir, file)),
        KeyedStateHandle::Native { shared, private } => {
            assert!(shared.is_empty(), "a savepoint shares no files");
            KeyedStateHandle::Native {
                shared: Vec::new(),
                private: named(private),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Property tests over random input orders: the coordinator's promises hold whatever the
    //! engine feeds it, and in whatever order acknowledgements, completions, aborts, restores
    //! and notifications come.

    use super::*;
    use crate::checkpoint::FileRef;
    use crate::state::{KeyGroupRange, SavepointFormat};
    use proptest::prelude::*;

    /// source(1) -> sink(2): three tasks.
    fn layout() -> Layout {
        Layout {
            stages: vec![("source".into(), 1), ("sink".into(), 2)],
            job_fingerprint: 7,
            max_parallelism: 128,
            backend: "memory".into(),
        }
    }

    #[derive(Debug, Clone)]
    enum Input {
        Tick {
            advance_ms: u64,
            exhausted: bool,
        },
        Ack {
            which: usize,
            task: usize,
            reuse: bool,
        },
        AckRest {
            which: usize,
            reuse: bool,
        },
        Written {
            which: usize,
        },
        Abort {
            which: usize,
        },
        Restart {
            highest: u64,
        },
    }

    fn input() -> impl Strategy<Value = Input> {
        prop_oneof![
            3 => (0u64..15, any::<bool>()).prop_map(|(advance_ms, exhausted)| Input::Tick { advance_ms, exhausted }),
            4 => (0usize..4, 0usize..3, any::<bool>()).prop_map(|(which, task, reuse)| Input::Ack { which, task, reuse }),
            3 => (0usize..4, any::<bool>()).prop_map(|(which, reuse)| Input::AckRest { which, reuse }),
            3 => (0usize..4).prop_map(|which| Input::Written { which }),
            1 => (0usize..4).prop_map(|which| Input::Abort { which }),
            1 => (0u64..40).prop_map(|highest| Input::Restart { highest }),
        ]
    }

    /// A file of checkpoint `id`'s task `task`, in `shared/`.
    fn shared(id: u64, task: usize) -> NamedFile {
        NamedFile {
            local_name: format!("{task}.sst"),
            file: FileRef::of(
                RelPath::new(&format!("shared/c{id}-t{task}.sst")).unwrap(),
                b"sst",
            ),
        }
    }

    /// What the test knows from outside: every command seen, every ack given.
    #[derive(Default)]
    struct Observed {
        triggered: Vec<u64>,
        acked: BTreeMap<u64, BTreeSet<usize>>,
        /// The shared files each checkpoint's acknowledgements named.
        named: BTreeMap<u64, BTreeSet<RelPath>>,
        /// Completed checkpoints (not savepoints) with their shared files, less the subsumed.
        retained: BTreeMap<u64, BTreeSet<RelPath>>,
        savepoints: BTreeSet<u64>,
        /// Checkpoints whose metadata is to be written, and not yet reported.
        writing: Vec<u64>,
        floor: u64,
    }

    impl Observed {
        /// Checks every promise against `commands`, the coordinator's answer to one input.
        fn see(&mut self, coordinator: &Coordinator, commands: &[Command]) -> Result<(), String> {
            for command in commands {
                self.check(command)?;
            }
            let retained: Vec<u64> = self.retained.keys().copied().collect();
            if coordinator.retained() != retained || retained.len() > 2 {
                return Err(format!(
                    "retained {:?}, completed less subsumed {retained:?}",
                    coordinator.retained()
                ));
            }
            Ok(())
        }

        fn check(&mut self, command: &Command) -> Result<(), String> {
            match command {
                Command::Trigger { checkpoint, .. } => {
                    let last = self.triggered.last().copied().unwrap_or(0).max(self.floor);
                    if *checkpoint <= last {
                        return Err(format!("ids strictly increase: {checkpoint} after {last}"));
                    }
                    self.triggered.push(*checkpoint);
                }
                Command::WriteMetadata {
                    checkpoint,
                    metadata,
                    ..
                } => {
                    let acked = self.acked.get(checkpoint).map_or(0, BTreeSet::len);
                    if acked != layout().tasks() || metadata.checkpoint_id != *checkpoint {
                        return Err(format!("chk-{checkpoint} completes with {acked} acks"));
                    }
                    self.writing.push(*checkpoint);
                }
                Command::Completed {
                    checkpoint,
                    savepoint: Some(_),
                    ..
                } => {
                    self.savepoints.insert(*checkpoint);
                }
                Command::Completed {
                    checkpoint,
                    savepoint: None,
                    ..
                } => {
                    let files = self.named.get(checkpoint).cloned().unwrap_or_default();
                    self.retained.insert(*checkpoint, files);
                }
                Command::Subsume { checkpoint } => {
                    let retained = self.retained.remove(checkpoint).is_some();
                    if self.savepoints.contains(checkpoint) || !retained {
                        return Err(format!(
                            "chk-{checkpoint} subsumed, but it is not a retained checkpoint"
                        ));
                    }
                }
                Command::CollectGarbage {
                    keep: Keep::Files(keep),
                } => {
                    if let Some((id, _)) = self
                        .retained
                        .iter()
                        .find(|(_, files)| !files.is_subset(keep))
                    {
                        return Err(format!(
                            "collection would delete a file retained chk-{id} names"
                        ));
                    }
                }
                Command::Discard { checkpoint, .. }
                    if self.savepoints.contains(checkpoint)
                        || self.retained.contains_key(checkpoint) =>
                {
                    return Err(format!("chk-{checkpoint} discarded, but it completed"));
                }
                _ => {}
            }
            Ok(())
        }
    }

    /// Task `task` acknowledges `id`; the files it names are noted in `observed`.
    fn ack(
        coordinator: &mut Coordinator,
        observed: &mut Observed,
        id: u64,
        task: usize,
        reuse: bool,
    ) -> Vec<Command> {
        // A checkpoint's snapshot names its own shared file and, sometimes, one of the newest
        // retained checkpoint's; a savepoint's is self-contained, in its own directory.
        let handle = match coordinator.savepoint_of(id) {
            Some(request) => KeyedStateHandle::Canonical(FileRef::of(
                RelPath::new(&format!("savepoints/{}/t{task}.kv", request.name)).unwrap(),
                b"cells",
            )),
            None => {
                let mut files = vec![shared(id, task)];
                if let (true, Some(old)) = (reuse, coordinator.latest_retained()) {
                    files.push(shared(old, task));
                }
                observed
                    .named
                    .entry(id)
                    .or_default()
                    .extend(files.iter().map(|named| named.file.path.clone()));
                KeyedStateHandle::Native {
                    shared: files,
                    private: Vec::new(),
                }
            }
        };
        let snapshot = SubtaskSnapshot {
            subtask: task as u16,
            key_groups: KeyGroupRange { start: 0, end: 127 },
            keyed: Some(handle),
            operator_state: Vec::new(),
            channel_state: None,
        };
        coordinator.acknowledge(id, task, snapshot)
    }

    /// Checkpoint 3 an earlier job left, inherited in `mode`, then four checkpoints of the
    /// job's own with one retained: what was subsumed, and whether every collection kept
    /// chk-3's file.
    fn after_inheriting(mode: RestoreMode) -> (Vec<u64>, bool) {
        let config = CheckpointConfig::every(5).with_num_retained(1);
        let mut coordinator = Coordinator::new(config, Vec::new(), layout());
        coordinator.inherit(Inherited { up_to: 3, mode });
        coordinator.ids_above(3);
        let inherited = shared(3, 0).file.path;
        let mut commands = vec![coordinator.restored(vec![(3, Ok([inherited.clone()].into()))])];
        coordinator.start_attempt(0);
        let mut observed = Observed::default();
        for now_ms in (5..=20).step_by(5) {
            let triggered = coordinator.tick(now_ms, false);
            let Some(Command::Trigger { checkpoint, .. }) = triggered.first() else {
                panic!("a checkpoint triggers every 5 ms: {triggered:?}");
            };
            let id = *checkpoint;
            for task in 0..layout().tasks() {
                commands.extend(ack(&mut coordinator, &mut observed, id, task, true));
            }
            commands.extend(coordinator.metadata_written(id, now_ms));
        }
        let subsumed = (commands.iter())
            .filter_map(|command| match command {
                Command::Subsume { checkpoint } => Some(*checkpoint),
                _ => None,
            })
            .collect();
        let kept = commands.iter().all(|command| match command {
            Command::CollectGarbage {
                keep: Keep::Files(files),
            } => files.contains(&inherited),
            _ => true,
        });
        (subsumed, kept)
    }

    #[test]
    fn a_checkpoint_inherited_no_claim_is_never_subsumed_nor_collected() {
        assert_eq!(
            after_inheriting(RestoreMode::NoClaim),
            (vec![4, 5, 6], true)
        );
        // Claimed, it is the job's own: the first checkpoint after it subsumes it.
        assert_eq!(
            after_inheriting(RestoreMode::Claim),
            (vec![3, 4, 5, 6], false)
        );
    }

    proptest! {
        #[test]
        fn promises_hold_in_any_input_order(inputs in proptest::collection::vec(input(), 1..80)) {
            let config = CheckpointConfig::every(5).with_num_retained(2).with_timeout_ms(40).with_tolerable_failures(1000).with_concurrency(2, 0);
            let savepoint = SavepointRequest { at_ms: 12, name: "sp".into(), format: SavepointFormat::Canonical, stop: false };
            let mut coordinator = Coordinator::new(config, vec![savepoint], layout());
            coordinator.start_attempt(0);
            let mut observed = Observed::default();
            let (mut now, mut savepoint_taken) = (0, false);
            for input in inputs {
                let pending: Vec<u64> = coordinator.pending().map(|p| p.id).collect();
                let pick = |which: usize| pending.get(which % pending.len().max(1)).copied();
                let commands = match input {
                    Input::Tick { advance_ms, exhausted } => {
                        now += advance_ms;
                        coordinator.tick(now, exhausted)
                    }
                    Input::Ack { which, task, reuse } => match pick(which) {
                        Some(id) if observed.acked.entry(id).or_default().insert(task) => ack(&mut coordinator, &mut observed, id, task, reuse),
                        _ => Vec::new(),
                    },
                    Input::AckRest { which, reuse } => match pick(which) {
                        Some(id) => {
                            let mut commands = Vec::new();
                            for task in 0..layout().tasks() {
                                if observed.acked.entry(id).or_default().insert(task) {
                                    commands.extend(ack(&mut coordinator, &mut observed, id, task, reuse));
                                }
                            }
                            commands
                        }
                        None => Vec::new(),
                    },
                    Input::Written { which } => match observed.writing.is_empty() {
                        true => Vec::new(),
                        false => {
                            let id = observed.writing.remove(which % observed.writing.len());
                            if coordinator.is_pending(id) { coordinator.metadata_written(id, now) } else { Vec::new() }
                        }
                    },
                    Input::Abort { which } => match pick(which) {
                        Some(id) => {
                            observed.writing.retain(|w| *w != id);
                            coordinator.abort(id, AbortReason::Expired { timeout_ms: 0 })
                        }
                        None => Vec::new(),
                    },
                    Input::Restart { highest } => {
                        // A restart: nothing in flight, the retained checkpoints read back.
                        observed.writing.clear();
                        observed.floor = observed.floor.max(highest);
                        coordinator.ids_above(highest);
                        coordinator.start_attempt(now);
                        let retained = observed.retained.iter().map(|(id, files)| (*id, Ok(files.clone()))).collect();
                        vec![coordinator.restored(retained)]
                    }
                };
                if let Err(broken) = observed.see(&coordinator, &commands) {
                    prop_assert!(false, "{}", broken);
                }
                for command in &commands {
                    let Command::Trigger { savepoint, .. } = command else { continue };
                    // A due savepoint waits for the checkpoints in flight, and holds back
                    // new ones until it is taken.
                    match savepoint {
                        Some(_) => {
                            prop_assert_eq!(coordinator.pending().count(), 1, "savepoint beside others");
                            savepoint_taken = true;
                        }
                        None => prop_assert!(now < 12 || savepoint_taken, "checkpoint triggered while a savepoint is due"),
                    }
                }
            }
        }

        #[test]
        fn the_minimum_pause_holds_every_trigger_after_a_completion(
            pause_ms in 1u64..30,
            steps in proptest::collection::vec((1u64..15, any::<bool>()), 1..60),
        ) {
            let config = CheckpointConfig::every(5).with_concurrency(3, pause_ms);
            let mut coordinator = Coordinator::new(config, Vec::new(), layout());
            coordinator.start_attempt(0);
            let (mut now, mut completed_ms) = (0, None);
            for (advance_ms, complete) in steps {
                now += advance_ms;
                for command in coordinator.tick(now, false) {
                    if let (Command::Trigger { .. }, Some(at)) = (&command, completed_ms) {
                        prop_assert!(now >= at + pause_ms, "triggered at {} ms, completed at {} ms", now, at);
                    }
                }
                prop_assert!(coordinator.pending().count() <= 1, "a pause allows one in flight");
                let pending: Vec<u64> = coordinator.pending().map(|p| p.id).collect();
                for id in pending.into_iter().filter(|_| complete) {
                    let mut observed = Observed::default();
                    for task in 0..layout().tasks() {
                        observed.acked.entry(id).or_default().insert(task);
                        ack(&mut coordinator, &mut observed, id, task, false);
                    }
                    coordinator.metadata_written(id, now);
                    completed_ms = Some(now);
                    prop_assert!(coordinator.trigger_now(now) >= now + pause_ms);
                }
            }
        }
    }

    /// Five checkpoints taken one after another, each acknowledged by every task and completed:
    /// retention subsumes, collection runs. Each command list goes through `twin` first.
    fn five_checkpoints(twin: impl Fn(Vec<Command>) -> Vec<Command>) -> Result<(), String> {
        let config = CheckpointConfig::every(5).with_num_retained(2);
        let mut coordinator = Coordinator::new(config, Vec::new(), layout());
        coordinator.start_attempt(0);
        let mut observed = Observed::default();
        for round in 1..=5u64 {
            let commands = twin(coordinator.tick(round * 5, false));
            observed.see(&coordinator, &commands)?;
            let id = coordinator.pending().next().expect("triggered").id;
            for task in 0..layout().tasks() {
                observed.acked.entry(id).or_default().insert(task);
                let commands = twin(ack(&mut coordinator, &mut observed, id, task, true));
                observed.see(&coordinator, &commands)?;
            }
            let commands = twin(coordinator.metadata_written(id, round * 5));
            observed.see(&coordinator, &commands)?;
        }
        Ok(())
    }

    /// The checks above can fail: each broken twin of the coordinator's answers is caught.
    #[test]
    fn broken_twins_of_the_coordinator_are_caught() {
        assert_eq!(five_checkpoints(|commands| commands), Ok(()));
        let repeats_an_id = |commands: Vec<Command>| {
            commands
                .into_iter()
                .map(|command| match command {
                    Command::Trigger {
                        savepoint,
                        is_final,
                        ..
                    } => Command::Trigger {
                        checkpoint: 1,
                        savepoint,
                        is_final,
                    },
                    other => other,
                })
                .collect()
        };
        let never_subsumes = |commands: Vec<Command>| {
            commands
                .into_iter()
                .filter(|c| !matches!(c, Command::Subsume { .. }))
                .collect()
        };
        let forgets_a_file = |commands: Vec<Command>| {
            commands
                .into_iter()
                .map(|command| match command {
                    Command::CollectGarbage {
                        keep: Keep::Files(mut files),
                    } => {
                        let first = files.iter().next().cloned();
                        files.retain(|file| Some(file) != first.as_ref());
                        Command::CollectGarbage {
                            keep: Keep::Files(files),
                        }
                    }
                    other => other,
                })
                .collect()
        };
        let writes_metadata_at_trigger = |commands: Vec<Command>| {
            let mut out = Vec::new();
            for command in commands {
                if let Command::Trigger { checkpoint, .. } = &command {
                    let checkpoint = *checkpoint;
                    out.push(command);
                    out.push(Command::WriteMetadata {
                        checkpoint,
                        metadata: CheckpointMetadata {
                            checkpoint_id: checkpoint,
                            kind: SnapshotKind::Checkpoint,
                            trigger_time_ms: 0,
                            job_fingerprint: 7,
                            max_parallelism: 128,
                            backend: "memory".into(),
                            stages: Vec::new(),
                        },
                        dir: registry::checkpoint_dir(checkpoint),
                    });
                } else {
                    out.push(command);
                }
            }
            out
        };
        for (twin, broken) in [
            (
                "writes metadata before every ack",
                five_checkpoints(writes_metadata_at_trigger),
            ),
            ("repeats an id", five_checkpoints(repeats_an_id)),
            ("never subsumes", five_checkpoints(never_subsumes)),
            ("forgets a file", five_checkpoints(forgets_a_file)),
        ] {
            assert!(broken.is_err(), "the twin that {twin} passed");
        }
    }

    #[test]
    fn an_unreadable_retained_metadata_keeps_every_shared_file() {
        let mut coordinator = Coordinator::new(CheckpointConfig::every(5), Vec::new(), layout());
        let unreadable = UnreadableMetadata {
            checkpoint: 3,
            path: "chk-3/_metadata".into(),
            problem: "torn".into(),
        };
        let collection = coordinator.restored(vec![(3, Err(unreadable))]);
        assert_eq!(
            collection,
            Command::CollectGarbage {
                keep: Keep::Everything {
                    reason: "chk-3 unreadable: chk-3/_metadata: torn".into()
                }
            }
        );
    }
}
