//! The engine's side of checkpointing: it feeds the coordinator ([`crate::checkpoint::coordinator`])
//! its inputs and carries out its commands — injects barriers at sources, aligns them at tasks
//! with several inputs (exactly-once) or only counts them (at-least-once), takes each task's
//! snapshot and uploads it through the hand-off, writes `_metadata`, subsumes, collects
//! garbage, discards aborted checkpoints, and delivers completion notifications.

use std::collections::VecDeque;

use super::task::*;
use super::Runtime;
use crate::checkpoint::coordinator::{AbortReason, Command};
use crate::checkpoint::registry::{self, Keep};
use crate::checkpoint::upload::{PartId, Staging, Submission, UploadError, UploadEvent};
use crate::checkpoint::{
    CheckpointMetadata, CheckpointStorage, CheckpointingMode, RelPath, SavepointRequest,
    SubtaskSnapshot, Unaligned,
};
use crate::fault::{FaultKind, FaultPoint, FaultSite, NotifyFate};
use crate::job::Record;
use crate::state::{SnapshotPurpose, SnapshotResult, SnapshotTarget, StateBackend};
use crate::trace::{AuditContext, Event, FailureCause, KeyedFiles, NotificationFate};

impl Runtime<'_> {
    /// Time passes: the coordinator expires and triggers checkpoints, and what it asks is done.
    pub(super) fn coordinate(&mut self, execution: &mut Execution) -> Result<(), Failure> {
        let exhausted = self.sources_exhausted(execution);
        let commands = self.coordinator.tick(self.clock.now_ms(), exhausted);
        self.carry_out(execution, commands)?;
        self.switch_timed_out(execution)
    }

    /// Carries out the coordinator's commands in order; those a command leads to come first.
    fn carry_out(
        &mut self,
        execution: &mut Execution,
        commands: Vec<Command>,
    ) -> Result<(), Failure> {
        let mut queue: VecDeque<Command> = commands.into();
        while let Some(command) = queue.pop_front() {
            let follow_up = self.carry_out_one(execution, command)?;
            for command in follow_up.into_iter().rev() {
                queue.push_front(command);
            }
        }
        Ok(())
    }

    fn carry_out_one(
        &mut self,
        execution: &mut Execution,
        command: Command,
    ) -> Result<Vec<Command>, Failure> {
        match command {
            Command::Trigger {
                checkpoint,
                savepoint,
                is_final,
            } => self.trigger(execution, checkpoint, savepoint, is_final),
            Command::WriteMetadata {
                checkpoint,
                metadata,
                dir,
            } => self.write_metadata(execution, checkpoint, &metadata, &dir),
            Command::Notify { checkpoint } => {
                execution
                    .notifications
                    .extend((0..execution.tasks.len()).map(|task| (checkpoint, task)));
                Ok(Vec::new())
            }
            Command::Completed {
                checkpoint,
                files,
                savepoint,
                ..
            } => {
                let event = match savepoint {
                    Some((name, dir)) => Event::SavepointCompleted {
                        name,
                        checkpoint,
                        files,
                        dir: dir.to_string(),
                    },
                    None => {
                        self.stats.checkpoints_completed += 1;
                        let now_ms = self.clock.now_ms();
                        if self.config.cancel_after_ms.is_some_and(|at| now_ms >= at) {
                            self.cancel_at = Some(checkpoint);
                        }
                        Event::CheckpointCompleted { checkpoint, files }
                    }
                };
                self.record(event);
                Ok(Vec::new())
            }
            Command::RecordCompleted { checkpoint } => {
                self.record_completed(checkpoint)?;
                Ok(Vec::new())
            }
            Command::Subsume { checkpoint } => {
                self.subsume(checkpoint)?;
                Ok(Vec::new())
            }
            Command::CollectGarbage { keep } => {
                self.collect_garbage(&keep);
                Ok(Vec::new())
            }
            Command::Discard { checkpoint, dir } => {
                self.discard(execution, checkpoint, &dir);
                Ok(Vec::new())
            }
            Command::Aborted { checkpoint, reason } => {
                self.stats.checkpoints_aborted += 1;
                self.record(Event::CheckpointAborted { checkpoint, reason });
                Ok(Vec::new())
            }
            Command::Fail {
                consecutive,
                tolerated,
            } => Err(Failure::new(
                "coordinator",
                FailureCause::CheckpointFailures {
                    consecutive,
                    tolerated,
                },
            )),
        }
    }

    /// Starts `checkpoint`: sources store their positions, acknowledge, and send the barrier.
    fn trigger(
        &mut self,
        execution: &mut Execution,
        checkpoint: u64,
        savepoint: Option<SavepointRequest>,
        is_final: bool,
    ) -> Result<Vec<Command>, Failure> {
        self.record(match &savepoint {
            None => Event::CheckpointTriggered {
                checkpoint,
                is_final,
            },
            Some(request) => Event::SavepointTriggered {
                name: request.name.clone(),
                checkpoint,
                format: request.format,
                stop: request.stop,
            },
        });
        if self.coordinator.pending().nth(1).is_some() {
            self.stats.checkpoints_overlapping += 1;
        }
        // Savepoints and the final checkpoint are aligned: the final one must hold every record
        // the input had (Flink takes it once the input drained, when nothing is in flight).
        let unaligned = savepoint.is_none()
            && !is_final
            && self.config.checkpoint.unaligned == Unaligned::Always;
        for index in execution.stage_tasks[0].clone() {
            if !self.coordinator.is_pending(checkpoint) {
                // A source's channel state failed to write and aborted the checkpoint.
                break;
            }
            let snapshot = self.source_snapshot(execution, index, checkpoint)?;
            if unaligned {
                self.snapshot_source_unaligned(execution, index, checkpoint, snapshot)?;
            } else {
                let barrier = Barrier {
                    checkpoint,
                    unaligned: false,
                };
                self.emit_barrier(execution, index, barrier);
                self.acknowledge(execution, index, checkpoint, snapshot)?;
            }
        }
        if let Some(action) = self.fault(&FaultPoint::BarrierInjected { checkpoint }) {
            return Err(Failure::from_action("coordinator", action));
        }
        Ok(Vec::new())
    }

    /// What source task `index` stores at `checkpoint`'s barrier: a user's reader says, the
    /// built-in one stores where it stands.
    fn source_snapshot(
        &mut self,
        execution: &mut Execution,
        index: usize,
        checkpoint: u64,
    ) -> Result<SubtaskSnapshot, Failure> {
        let task = &mut execution.tasks[index];
        let Body::Source(source) = &mut task.body else {
            unreachable!("stage 0 holds the sources")
        };
        let user_stored = match source.reader.as_mut() {
            Some(reader) => {
                reader.ensure_open(&task.name, &source.positions)?;
                let stored = guarded(&task.name, || reader.source.snapshot(checkpoint))?;
                reader.check_stored(&stored).map_err(|error| {
                    let problem = error.to_string();
                    Failure::new(
                        &task.name,
                        FailureCause::SourceContract {
                            checkpoint: Some(checkpoint),
                            problem,
                        },
                    )
                })?;
                Some(stored)
            }
            None => None,
        };
        let stored = user_stored.as_ref().unwrap_or(&source.positions);
        // A reader storing other positions than it read to is the bug to see in the trace.
        let read_to = (*stored != source.positions).then(|| source.positions.clone());
        let snapshot = SubtaskSnapshot {
            subtask: task.subtask,
            key_groups: task.key_groups,
            keyed: None,
            operator_state: encode_positions(stored),
            channel_state: None,
        };
        let event = Event::BarrierInjected {
            checkpoint,
            task: task.name.clone(),
            stored: stored.clone(),
            read_to,
        };
        self.record(event);
        Ok(snapshot)
    }

    /// Sends `barrier` on every output of `task`. Barriers bypass back-pressure (they are tiny
    /// and must not wait behind records); an unaligned one goes to the front of each partitioned
    /// channel, and what it overtook there is returned: (receiving subtask, records), for the
    /// channels where it overtook any.
    pub(super) fn emit_barrier(
        &mut self,
        execution: &mut Execution,
        task: usize,
        barrier: Barrier,
    ) -> Vec<(u16, Vec<Record>)> {
        let mut overtaken = Vec::new();
        for &index in &execution.tasks[task].outputs.channels {
            let channel = &mut execution.channels[index];
            if !barrier.unaligned || channel.forward {
                channel.queue.push_back(Element::Barrier(barrier));
                continue;
            }
            // One checkpoint is in flight when barriers are unaligned: a barrier still queued
            // here belongs to an aborted one, which its receiver would drop.
            channel.queue.retain(|element| match element {
                Element::Barrier(old) => {
                    assert!(
                        !self.coordinator.is_pending(old.checkpoint),
                        "an unaligned barrier overtook chk-{}, which is in flight",
                        old.checkpoint
                    );
                    false
                }
                _ => true,
            });
            let records = channel.records();
            channel.queue.push_front(Element::Barrier(barrier));
            if !records.is_empty() {
                let peer = execution.tasks[channel.receiver].subtask;
                overtaken.push((peer, records));
            }
        }
        overtaken
    }

    pub(super) fn acknowledge(
        &mut self,
        execution: &mut Execution,
        task: usize,
        checkpoint: u64,
        snapshot: SubtaskSnapshot,
    ) -> Result<(), Failure> {
        let commands = self.coordinator.acknowledge(checkpoint, task, snapshot);
        self.carry_out(execution, commands)
    }

    /// Aborts `checkpoint`, for `reason`.
    pub(super) fn abort_checkpoint(
        &mut self,
        execution: &mut Execution,
        checkpoint: u64,
        reason: AbortReason,
    ) -> Result<(), Failure> {
        let commands = self.coordinator.abort(checkpoint, reason);
        self.carry_out(execution, commands)
    }

    /// Every task acknowledged: writes `_metadata` (the commit point), unless it would name a
    /// shared file that is gone, then carries out the completion and audits storage.
    fn write_metadata(
        &mut self,
        execution: &mut Execution,
        checkpoint: u64,
        metadata: &CheckpointMetadata,
        dir: &RelPath,
    ) -> Result<Vec<Command>, Failure> {
        // A backend may reuse files of a checkpoint it confirmed late, after a newer one had
        // subsumed it and its files were collected. Like Flink's registry refusing a reference
        // to unknown shared state, the checkpoint then fails instead of committing a reference
        // to a file that is gone.
        let missing = metadata
            .shared_paths()
            .into_iter()
            .find(|path| !self.storage.exists(path));
        if let Some(path) = missing {
            let path = path.to_string();
            return Ok(self
                .coordinator
                .abort(checkpoint, AbortReason::MissingSharedFile { path }));
        }
        let metadata_path = dir.join("_metadata").expect("_metadata is a valid name");
        self.storage.writing_for(Some(checkpoint));
        let written = self.storage.write(&metadata_path, &metadata.encode());
        self.storage.writing_for(None);
        self.crashed()?;
        if let Err(error) = written {
            let error = error.to_string();
            return Ok(self
                .coordinator
                .abort(checkpoint, AbortReason::MetadataWrite { error }));
        }
        // Every subtask with keyed state submitted one part.
        let parts = metadata
            .stages
            .iter()
            .flat_map(|stage| &stage.subtasks)
            .filter(|subtask| subtask.keyed.is_some())
            .count();
        if self.uploads.knows(checkpoint) {
            self.uploads
                .complete(checkpoint, parts)
                .expect("every part of a checkpoint all tasks acknowledged is uploaded");
        }
        if let Some(action) = self.fault(&FaultPoint::BeforeNotify { checkpoint }) {
            return Err(Failure::from_action("coordinator", action));
        }
        let completion = self
            .coordinator
            .metadata_written(checkpoint, self.clock.now_ms());
        let savepoint = metadata.kind == crate::checkpoint::SnapshotKind::Savepoint;
        self.carry_out(execution, completion)?;
        if !savepoint {
            self.audit_storage(AuditContext::AfterCheckpoint(checkpoint));
        }
        Ok(Vec::new())
    }

    /// Records `checkpoint` as the latest completed one. The `_metadata` already committed
    /// it; the record only lets a later restore notice a lost `_metadata`.
    fn record_completed(&mut self, checkpoint: u64) -> Result<(), Failure> {
        let recorded = registry::record_completed(&mut self.storage, checkpoint);
        self.crashed()?;
        if let Err(error) = recorded {
            self.record(Event::CompletionUnrecorded {
                checkpoint,
                error: error.to_string(),
            });
        }
        Ok(())
    }

    fn subsume(&mut self, checkpoint: u64) -> Result<(), Failure> {
        self.storage
            .remove_dir(&registry::checkpoint_dir(checkpoint))
            .map_err(|e| {
                Failure::new(
                    "coordinator",
                    FailureCause::Subsume {
                        checkpoint,
                        error: e.to_string(),
                    },
                )
            })?;
        // Checkpoints completed by an earlier attempt are not in this attempt's hand-off.
        if self.uploads.knows(checkpoint) {
            self.uploads
                .subsume(checkpoint)
                .expect("a retained checkpoint of this attempt completed");
        }
        self.record(Event::CheckpointSubsumed { checkpoint });
        Ok(())
    }

    /// Deletes the shared files `keep` does not keep (and no upload in flight references),
    /// and says so in the trace.
    pub(super) fn collect_garbage(&mut self, keep: &Keep) {
        match registry::collect_garbage(&mut self.storage, keep, &self.uploads) {
            Ok(collection) => {
                if let Some(reason) = collection.skipped {
                    self.record(Event::GarbageCollectionSkipped { reason });
                } else if !collection.deleted.is_empty() {
                    self.record(Event::GarbageCollected {
                        deleted: collection.deleted,
                    });
                }
            }
            Err(error) => self.record(Event::GarbageCollectionFailed {
                error: error.to_string(),
            }),
        }
    }

    /// An aborted checkpoint: tasks aligning its barriers stop, backends forget its uploads,
    /// and its files are discarded — its directory is private to it, unless a `_metadata` in
    /// it committed (a savepoint taken before).
    fn discard(&mut self, execution: &mut Execution, checkpoint: u64, dir: &RelPath) {
        for task in &mut execution.tasks {
            if task
                .capture
                .as_ref()
                .is_some_and(|c| c.checkpoint == checkpoint)
            {
                task.capture = None;
            }
            if task.alignment.received.remove(&checkpoint).is_some() {
                // Only an exactly-once alignment blocks, and it aligns one checkpoint.
                for &channel in &task.inputs {
                    execution.channels[channel].blocked = false;
                }
            }
            if let Body::Operator(OperatorTask {
                backend: Some(backend),
                ..
            }) = &mut task.body
            {
                backend.notify_checkpoint_aborted(checkpoint);
            }
        }
        if self.uploads.knows(checkpoint) {
            self.uploads
                .abort(checkpoint)
                .expect("a checkpoint being aborted never completed");
        }
        let committed = dir.join("_metadata").expect("a valid name");
        if !self.storage.exists(&committed) {
            // Nothing is lost if the removal fails: the next restore discards the directory.
            let _ = self.storage.remove_dir(dir);
        }
    }

    /// Delivers queued completion notifications: sinks commit, backends confirm uploads,
    /// readers commit their offsets.
    pub(super) fn deliver_notifications(
        &mut self,
        execution: &mut Execution,
    ) -> Result<(), Failure> {
        while let Some((checkpoint, task)) = execution.notifications.pop_front() {
            let name = execution.tasks[task].name.clone();
            let fate = match self.storage.notification_fate(checkpoint, &name) {
                NotifyFate::Deliver => None,
                NotifyFate::Drop => Some((FaultKind::DropNotification, NotificationFate::Lost)),
                NotifyFate::Delay(delay_ms) => {
                    let due = self.clock.now_ms() + delay_ms;
                    execution.delayed.push((due, checkpoint, task));
                    let fate = NotificationFate::Delayed { delay_ms };
                    Some((FaultKind::DelayNotification, fate))
                }
            };
            if let Some((fault, fate)) = fate {
                let site = FaultSite::Notification;
                self.record(Event::FaultFired { fault, site });
                self.record(Event::Notification {
                    checkpoint,
                    task: name,
                    fate,
                });
                continue;
            }
            self.notify(execution, task, checkpoint)?;
        }
        Ok(())
    }

    /// Task `task` hears that `checkpoint` completed.
    fn notify(
        &mut self,
        execution: &mut Execution,
        task: usize,
        checkpoint: u64,
    ) -> Result<(), Failure> {
        let name = execution.tasks[task].name.clone();
        let subtask = execution.tasks[task].subtask;
        let newest = &mut execution.tasks[task].notified_up_to;
        if checkpoint < *newest {
            // Concurrent checkpoints with a delayed notification: a newer one's came first.
            self.stats.notifications_out_of_order += 1;
        }
        *newest = (*newest).max(checkpoint);
        match &mut execution.tasks[task].body {
            Body::Sink(sink) => {
                if let Some(action) = self.fault(&FaultPoint::SinkCommit {
                    checkpoint,
                    subtask,
                }) {
                    return Err(Failure::from_action(&name, action));
                }
                let (user, store) = (self.sink_factory.is_some(), &mut self.store);
                let failed = |error: String| {
                    Failure::new(&name, FailureCause::Notification { checkpoint, error })
                };
                let events = guarded_if(user, &name, || {
                    sink.notify_checkpoint_complete(checkpoint, store)
                })
                .map_err(|f| failed(f.cause.to_string()))?
                .map_err(|e| failed(e.to_string()))?;
                for event in events {
                    self.record(Event::Txn {
                        task: name.clone(),
                        event,
                    });
                }
            }
            Body::Operator(OperatorTask {
                backend: Some(backend),
                ..
            }) => backend.notify_checkpoint_complete(checkpoint),
            Body::Source(SourceTask {
                reader: Some(reader),
                positions,
                ..
            }) => {
                reader.ensure_open(&name, positions)?;
                guarded(&name, || {
                    reader.source.notify_checkpoint_complete(checkpoint)
                })?;
            }
            _ => {}
        }
        Ok(())
    }

    /// A barrier arrived on input `input` of task `index`. An unaligned one (or an aligned one
    /// past the aligned-checkpoint timeout) snapshots at once; a task completing an unaligned
    /// snapshot counts it; otherwise a task with several inputs aligns them first (blocking each
    /// input whose barrier arrived, exactly-once), then the task snapshots.
    pub(super) fn on_barrier(
        &mut self,
        execution: &mut Execution,
        index: usize,
        input: usize,
        barrier: Barrier,
    ) -> Result<(), Failure> {
        let checkpoint = barrier.checkpoint;
        if !self.coordinator.is_pending(checkpoint) {
            // The checkpoint was aborted while its barrier travelled: drop it.
            return Ok(());
        }
        if execution.tasks[index].capture.is_some() {
            return self.capture_barrier(execution, index, input, checkpoint);
        }
        let timed_out = !barrier.unaligned && self.alignment_timed_out(checkpoint);
        if barrier.unaligned || timed_out {
            return self.snapshot_unaligned(execution, index, Some(input), checkpoint, timed_out);
        }
        if execution.tasks[index].inputs.len() > 1
            && !self.align(execution, index, input, checkpoint)
        {
            return Ok(());
        }
        self.snapshot_task(execution, index, checkpoint)
    }

    /// Counts the barrier on `input`; returns whether every input's barrier has arrived.
    fn align(
        &mut self,
        execution: &mut Execution,
        index: usize,
        input: usize,
        checkpoint: u64,
    ) -> bool {
        let blocks = self.config.checkpoint.mode == CheckpointingMode::ExactlyOnce
            && !self.config.sabotage.alignment_never_blocks;
        let task = &mut execution.tasks[index];
        let inputs = task.inputs.len();
        // Every input delivers barriers in checkpoint order. Exactly-once, an input whose
        // barrier arrived is blocked until all have, so no later barrier can arrive meanwhile.
        assert!(
            !blocks || task.alignment.received.keys().all(|c| *c == checkpoint),
            "{}: barrier chk-{checkpoint} while aligning another",
            task.name
        );
        let arrived = (task.alignment.received)
            .entry(checkpoint)
            .or_insert_with(|| vec![false; inputs]);
        assert!(
            !arrived[input],
            "{}: two barriers chk-{checkpoint} on one input",
            task.name
        );
        arrived[input] = true;
        if blocks {
            execution.channels[task.inputs[input]].blocked = true;
        }
        let received = arrived.iter().filter(|r| **r).count();
        if received < inputs {
            let event = Event::BarrierReceived {
                checkpoint,
                task: task.name.clone(),
                input,
                received,
                inputs,
                blocked: blocks,
            };
            self.record(event);
            return false;
        }
        task.alignment.received.remove(&checkpoint);
        // In order on every input: an earlier checkpoint still counting would have had its
        // barrier on every input before this one's.
        assert!(
            task.alignment.received.range(..checkpoint).next().is_none(),
            "{}: chk-{checkpoint} aligned before an earlier checkpoint",
            task.name
        );
        let mut blocked = Vec::new();
        for (input, &channel) in task.inputs.iter().enumerate() {
            if std::mem::take(&mut execution.channels[channel].blocked) {
                blocked.push(input);
            }
        }
        let event = Event::BarrierAligned {
            checkpoint,
            task: task.name.clone(),
            inputs,
            blocked,
        };
        self.record(event);
        true
    }

    /// Task `index` takes its snapshot of `checkpoint`, sends the barrier on and acknowledges.
    fn snapshot_task(
        &mut self,
        execution: &mut Execution,
        index: usize,
        checkpoint: u64,
    ) -> Result<(), Failure> {
        let Some(snapshot) = self.take_snapshot(execution, index, checkpoint)? else {
            return Ok(());
        };
        let barrier = Barrier {
            checkpoint,
            unaligned: false,
        };
        self.emit_barrier(execution, index, barrier);
        self.acknowledge(execution, index, checkpoint, snapshot)
    }

    /// Task `index`'s snapshot of `checkpoint` (a fault may fail the task first); `None` when
    /// the snapshot failed its checkpoint, which is aborted.
    pub(super) fn take_snapshot(
        &mut self,
        execution: &mut Execution,
        index: usize,
        checkpoint: u64,
    ) -> Result<Option<SubtaskSnapshot>, Failure> {
        let stage = self.job.stage_names()[execution.tasks[index].stage].clone();
        let point = FaultPoint::SyncSnapshot {
            checkpoint,
            stage: &stage,
            subtask: execution.tasks[index].subtask,
        };
        if let Some(action) = self.fault(&point) {
            return Err(Failure::from_action(&execution.tasks[index].name, action));
        }
        let task = &execution.tasks[index];
        let mut snapshot = SubtaskSnapshot {
            subtask: task.subtask,
            key_groups: task.key_groups,
            keyed: None,
            operator_state: Vec::new(),
            channel_state: None,
        };
        let taken = match &execution.tasks[index].body {
            Body::Operator(_) => {
                self.snapshot_operator(execution, index, checkpoint, &mut snapshot)?
            }
            Body::Sink(_) => self.snapshot_sink(execution, index, checkpoint, &mut snapshot)?,
            Body::Source(_) => unreachable!("sources snapshot when the barrier is injected"),
        };
        let Some(events) = taken else {
            return Ok(None);
        };
        for event in events {
            self.record(event);
        }
        Ok(Some(snapshot))
    }

    /// An operator's snapshot: its own state, and its keyed state's files, staged and uploaded.
    /// `None` when the upload failed and aborted the checkpoint.
    fn snapshot_operator(
        &mut self,
        execution: &mut Execution,
        index: usize,
        checkpoint: u64,
        snapshot: &mut SubtaskSnapshot,
    ) -> Result<Option<Vec<Event>>, Failure> {
        let name = execution.tasks[index].name.clone();
        let Body::Operator(op) = &mut execution.tasks[index].body else {
            unreachable!("called for operators")
        };
        snapshot.operator_state = op.op.snapshot_state();
        let Some(backend) = op.backend.as_deref_mut() else {
            return Ok(Some(vec![Event::Snapshot {
                checkpoint,
                task: name,
                keyed: None,
            }]));
        };
        let result = match self.snapshot_keyed(backend, &name, index, checkpoint)? {
            Ok(result) => result,
            Err(reason) => {
                self.abort_checkpoint(execution, checkpoint, reason)?;
                return Ok(None);
            }
        };
        self.stats.files_written += u64::from(result.files_written);
        self.stats.files_reused += u64::from(result.files_reused);
        self.stats.bytes_written += result.bytes_written;
        let keyed = KeyedFiles {
            files: result.handle.files().len(),
            written: result.files_written,
            reused: result.files_reused,
        };
        snapshot.keyed = Some(result.handle);
        Ok(Some(vec![Event::Snapshot {
            checkpoint,
            task: name,
            keyed: Some(keyed),
        }]))
    }

    /// Snapshots a backend and uploads its files. The synchronous phase stages the files; the
    /// asynchronous phase uploads them through the hand-off that real use runs on a thread. The
    /// simulation has no threads: the upload runs right here, through the fault injector, and
    /// the same hand-off code decides its outcome. Writing state is the asynchronous phase in
    /// Flink: its failure fails the checkpoint (the inner error), not the task.
    fn snapshot_keyed(
        &mut self,
        backend: &mut dyn StateBackend,
        name: &str,
        index: usize,
        checkpoint: u64,
    ) -> Result<Result<SnapshotResult, AbortReason>, Failure> {
        let savepoint = self.coordinator.savepoint_of(checkpoint).cloned();
        let target = SnapshotTarget {
            purpose: match &savepoint {
                None => SnapshotPurpose::Checkpoint,
                Some(request) => SnapshotPurpose::Savepoint(request.format),
            },
            checkpoint_id: checkpoint,
            dir: crate::checkpoint::coordinator::snapshot_dir(checkpoint, savepoint.as_ref()),
            compression: self.config.checkpoint.compression,
            now_ms: self.clock.now_ms(),
        };
        let snapshot_failed = |error: String| AbortReason::Snapshot {
            task: name.to_string(),
            error,
        };
        let mut staging = Staging::new(&self.storage);
        let result = match guarded(name, || backend.snapshot(&target, &mut staging))? {
            Ok(result) => result,
            Err(error) => return Ok(Err(snapshot_failed(error.to_string()))),
        };
        let part = PartId {
            checkpoint_id: checkpoint,
            part: index as u32,
        };
        let submission = Submission {
            id: part,
            files: staging.into_files(),
            shared: result
                .handle
                .shared_files()
                .into_iter()
                .map(|file| file.path.clone())
                .collect(),
        };
        match self.uploads.submit(submission) {
            Ok(()) => {}
            // A reuse of a file no live checkpoint holds fails the checkpoint (Flink's registry
            // refusing unknown state).
            Err(error @ UploadError::Unregistered { .. }) => {
                return Ok(Err(AbortReason::ReuseRefused {
                    task: name.to_string(),
                    error: error.to_string(),
                }))
            }
            Err(error) => {
                let error = error.to_string();
                return Err(Failure::new(name, FailureCause::Upload { error }));
            }
        }
        self.storage.writing_for(Some(checkpoint));
        let storage = &mut self.storage;
        let uploaded = self
            .uploads
            .upload_next(&mut |path, bytes| storage.write(path, bytes).map(|_| ()));
        self.storage.writing_for(None);
        assert!(uploaded, "the part just submitted is queued");
        self.crashed()?;
        let events = self.uploads.take_events();
        match events.iter().find(|event| event.id() == part) {
            Some(UploadEvent::Uploaded(_)) => Ok(Ok(result)),
            Some(UploadEvent::Failed { reason, .. }) => Ok(Err(snapshot_failed(reason.clone()))),
            other => unreachable!("a part uploaded inline ends uploaded or failed, not {other:?}"),
        }
    }

    /// A sink's snapshot: it pre-commits, and its state goes into the checkpoint.
    fn snapshot_sink(
        &mut self,
        execution: &mut Execution,
        index: usize,
        checkpoint: u64,
        snapshot: &mut SubtaskSnapshot,
    ) -> Result<Option<Vec<Event>>, Failure> {
        let name = execution.tasks[index].name.clone();
        let Body::Sink(sink) = &mut execution.tasks[index].body else {
            unreachable!("called for sinks")
        };
        let (user, store) = (self.sink_factory.is_some(), &mut self.store);
        let (state, events) = guarded_if(user, &name, || sink.snapshot(checkpoint, store))?
            .map_err(|e| {
                let error = e.to_string();
                Failure::new(&name, FailureCause::SinkSnapshot { error })
            })?;
        snapshot.operator_state = state;
        if events.is_empty() {
            return Ok(Some(vec![Event::Snapshot {
                checkpoint,
                task: name,
                keyed: None,
            }]));
        }
        let task = name;
        Ok(Some(
            events
                .into_iter()
                .map(|event| Event::Txn {
                    task: task.clone(),
                    event,
                })
                .collect(),
        ))
    }

    /// Fails the attempt as a kill if the machine crashed in the storage operation just made.
    pub(super) fn crashed(&self) -> Result<(), Failure> {
        match self.storage.crash() {
            Some(crash) => Err(Failure::from_action("process", crash.clone())),
            None => Ok(()),
        }
    }
}
