//! The checkpoint coordinator: triggers checkpoints on the virtual clock and savepoints when
//! asked, injects barriers at sources, aligns them at tasks with several inputs, collects
//! snapshots and acknowledgements, writes `_metadata`, subsumes old checkpoints, collects
//! unreferenced shared files and delivers completion notifications; aborts on failure, expiry
//! or write errors.
//!
//! A savepoint travels as a barrier like a checkpoint, but its files and `_metadata` live in
//! `savepoints/<name>/` with paths relative to that directory (so it can be moved), it is never
//! retained or subsumed, and its uploads never become an incremental base.

use super::task::*;
use super::Runtime;
use crate::checkpoint::CheckpointingMode;
use crate::checkpoint::SavepointRequest;

use crate::checkpoint::upload::{PartId, Staging, Submission, UploadError, UploadEvent};
use crate::checkpoint::CheckpointStorage;
use crate::checkpoint::{
    registry, CheckpointMetadata, FileRef, KeyedStateHandle, NamedFile, RelPath, SnapshotKind,
    StageSnapshot, SubtaskSnapshot,
};
use crate::fault::{FaultPoint, NotifyFate};
use crate::state::{SnapshotPurpose, SnapshotTarget};
use crate::trace::{AbortReason, AuditContext, Event, FailureCause, KeyedFiles, NotificationFate};

/// Where a snapshot's private files go: `chk-<id>` or `savepoints/<name>`.
pub(super) fn snapshot_dir(id: u64, savepoint: Option<&SavepointRequest>) -> RelPath {
    match savepoint {
        None => registry::checkpoint_dir(id),
        Some(request) => RelPath::new(&format!("savepoints/{}", request.name))
            .expect("savepoint names are validated"),
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

impl<'a> Runtime<'a> {
    /// Timers: expire a pending snapshot, or trigger a due savepoint, else a due checkpoint.
    pub(super) fn coordinate(&mut self, execution: &mut Execution) -> Result<(), Failure> {
        let now = self.clock.now_ms();
        if let Some(pending) = &execution.pending {
            if now.saturating_sub(pending.trigger_ms) >= self.config.checkpoint.timeout_ms {
                let id = pending.id;
                self.abort_checkpoint(
                    execution,
                    id,
                    AbortReason::Expired {
                        timeout_ms: self.config.checkpoint.timeout_ms,
                    },
                )?;
            }
        }
        if execution.pending.is_some() || execution.final_completed || execution.stopping {
            return Ok(());
        }
        let due = self
            .config
            .savepoints
            .iter()
            .find(|request| now >= request.at_ms && !self.savepoints_taken.contains(&request.name))
            .cloned();
        if let Some(request) = due {
            self.trigger(execution, Some(request))?;
        } else if now >= execution.next_trigger_ms {
            self.trigger(execution, None)?;
        }
        Ok(())
    }

    /// Starts checkpoint (or savepoint) `next_checkpoint_id`: sources record their positions,
    /// acknowledge, and emit the barrier.
    pub(super) fn trigger(
        &mut self,
        execution: &mut Execution,
        savepoint: Option<SavepointRequest>,
    ) -> Result<(), Failure> {
        let id = self.next_checkpoint_id;
        self.next_checkpoint_id += 1;
        let is_final = self.sources_exhausted(execution);
        let now = self.clock.now_ms();
        let what = match &savepoint {
            None => {
                execution.next_trigger_ms = now + self.config.checkpoint.interval_ms;
                Event::CheckpointTriggered {
                    checkpoint: id,
                    is_final,
                }
            }
            Some(request) => Event::SavepointTriggered {
                name: request.name.clone(),
                checkpoint: id,
                format: request.format,
                stop: request.stop,
            },
        };
        if savepoint.as_ref().is_some_and(|request| request.stop) {
            execution.stopping = true;
        }
        execution.pending = Some(Pending {
            id,
            trigger_ms: now,
            is_final: is_final && savepoint.is_none(),
            savepoint,
            acks: (0..execution.tasks.len()).map(|_| None).collect(),
        });
        self.record(what);
        for index in execution.stage_tasks[0].clone() {
            let task = &mut execution.tasks[index];
            let Body::Source(source) = &mut task.body else {
                unreachable!("stage 0 holds the sources")
            };
            // A user's reader says what to store; the built-in one stores where it stands.
            let user_stored = match source.reader.as_mut() {
                Some(reader) => {
                    reader.ensure_open(&task.name, &source.positions)?;
                    let stored = guarded(&task.name, || reader.source.snapshot(id))?;
                    reader.check_stored(&stored).map_err(|problem| {
                        Failure::new(
                            &task.name,
                            FailureCause::SourceContract {
                                checkpoint: Some(id),
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
            };
            let event = Event::BarrierInjected {
                checkpoint: id,
                task: task.name.clone(),
                stored: stored.clone(),
                read_to,
            };
            self.record(event);
            self.emit_barrier(execution, index, id);
            self.ack(execution, index, id, snapshot)?;
            if execution.pending.is_none() {
                break;
            }
        }
        if let Some(action) = self
            .storage
            .fault_at(&FaultPoint::BarrierInjected { checkpoint: id })
        {
            return Err(Failure::from_action("coordinator", action));
        }
        Ok(())
    }

    pub(super) fn emit_barrier(&mut self, execution: &mut Execution, task: usize, id: u64) {
        for &channel in &execution.tasks[task].outputs.channels {
            // Barriers bypass back-pressure (they are tiny and must not wait behind records).
            execution.channels[channel]
                .queue
                .push_back(Element::Barrier(id));
        }
    }

    pub(super) fn ack(
        &mut self,
        execution: &mut Execution,
        task: usize,
        id: u64,
        snapshot: SubtaskSnapshot,
    ) -> Result<(), Failure> {
        let Some(pending) = execution.pending.as_mut().filter(|p| p.id == id) else {
            return Ok(());
        };
        assert!(
            pending.acks[task].is_none(),
            "{} acknowledged chk-{id} twice",
            execution.tasks[task].name
        );
        pending.acks[task] = Some(snapshot);
        if pending.acks.iter().all(Option::is_some) {
            self.complete(execution)?;
        }
        Ok(())
    }

    /// Every task acknowledged: write `_metadata` (the commit point), then retention, garbage
    /// collection and notifications.
    pub(super) fn complete(&mut self, execution: &mut Execution) -> Result<(), Failure> {
        let pending = execution
            .pending
            .take()
            .expect("completing a pending checkpoint");
        let id = pending.id;
        let dir = snapshot_dir(id, pending.savepoint.as_ref());
        let mut stages = Vec::new();
        for (stage, range) in execution.stage_tasks.iter().enumerate() {
            let mut subtasks: Vec<SubtaskSnapshot> = range
                .clone()
                .map(|t| pending.acks[t].clone().expect("all acknowledged"))
                .collect();
            if pending.savepoint.is_some() {
                for subtask in &mut subtasks {
                    subtask.keyed = subtask.keyed.as_ref().map(|handle| relocate(&dir, handle));
                }
            }
            stages.push(StageSnapshot {
                stage: stage as u16,
                name: self.job.stage_names()[stage].clone(),
                parallelism: subtasks.len() as u16,
                subtasks,
            });
        }
        let metadata = CheckpointMetadata {
            checkpoint_id: id,
            kind: if pending.savepoint.is_some() {
                SnapshotKind::Savepoint
            } else {
                SnapshotKind::Checkpoint
            },
            trigger_time_ms: pending.trigger_ms,
            job_fingerprint: self.job.fingerprint(),
            max_parallelism: self.job.max_parallelism,
            backend: self.backends.name().to_string(),
            stages,
        };
        let files = metadata.files();
        let file_count = files.len();
        let encoded = metadata.encode();
        // A backend may reuse files of a checkpoint it confirmed late, after a newer one had
        // subsumed it and its files were collected. Like Flink's registry refusing a reference
        // to unknown shared state, the checkpoint then fails instead of committing a reference
        // to a file that is gone.
        let missing = metadata
            .stages
            .iter()
            .flat_map(|stage| &stage.subtasks)
            .filter_map(|s| s.keyed.as_ref())
            .flat_map(|h| h.shared_files())
            .find(|file| !self.storage.exists(&file.path))
            .map(|file| file.path.to_string());
        if let Some(path) = missing {
            execution.pending = Some(pending);
            return self.abort_checkpoint(execution, id, AbortReason::MissingSharedFile { path });
        }
        let metadata_path = dir.join("_metadata").expect("_metadata is a valid name");
        self.storage.writing_for(Some(id));
        let written = self.storage.write(&metadata_path, &encoded);
        self.storage.writing_for(None);
        self.crashed()?;
        if let Err(error) = written {
            execution.pending = Some(pending);
            return self.abort_checkpoint(
                execution,
                id,
                AbortReason::MetadataWrite {
                    error: error.to_string(),
                },
            );
        }
        // Every subtask with keyed state submitted one part.
        let parts = metadata
            .stages
            .iter()
            .flat_map(|stage| &stage.subtasks)
            .filter(|subtask| subtask.keyed.is_some())
            .count();
        if self.uploads.knows(id) {
            self.uploads
                .complete(id, parts)
                .expect("every part of a checkpoint all tasks acknowledged is uploaded");
        }
        if let Some(action) = self
            .storage
            .fault_at(&FaultPoint::BeforeNotify { checkpoint: id })
        {
            return Err(Failure::from_action("coordinator", action));
        }
        self.consecutive_checkpoint_failures = 0;
        for task in 0..execution.tasks.len() {
            execution.notifications.push_back((id, task));
        }
        if let Some(request) = &pending.savepoint {
            self.record(Event::SavepointCompleted {
                name: request.name.clone(),
                checkpoint: id,
                files: file_count,
                dir: dir.to_string(),
            });
            self.savepoints_taken.push(request.name.clone());
            if request.stop {
                execution.stopped = Some((request.name.clone(), id));
            }
            return Ok(());
        }
        self.stats.checkpoints_completed += 1;
        self.record(Event::CheckpointCompleted {
            checkpoint: id,
            files: file_count,
        });
        if pending.is_final {
            execution.final_completed = true;
        }
        let recorded = registry::record_completed(&mut self.storage, id);
        self.crashed()?;
        if let Err(error) = recorded {
            // The `_metadata` already committed the checkpoint; the record only lets a later
            // restore notice a lost `_metadata`.
            self.record(Event::CompletionUnrecorded {
                checkpoint: id,
                error: error.to_string(),
            });
        }
        self.retained.push_back(id);
        let mut subsumed = false;
        while self.retained.len() > self.config.checkpoint.num_retained as usize {
            let old = self
                .retained
                .pop_front()
                .expect("longer than num_retained >= 1");
            self.storage
                .remove_dir(&registry::checkpoint_dir(old))
                .map_err(|e| {
                    Failure::new(
                        "coordinator",
                        FailureCause::Subsume {
                            checkpoint: old,
                            error: e.to_string(),
                        },
                    )
                })?;
            // Checkpoints completed by an earlier attempt are not in this attempt's hand-off.
            if self.uploads.knows(old) {
                self.uploads
                    .subsume(old)
                    .expect("a retained checkpoint of this attempt completed");
            }
            self.record(Event::CheckpointSubsumed { checkpoint: old });
            subsumed = true;
        }
        if subsumed {
            self.collect_garbage();
        }
        self.audit_storage(AuditContext::AfterCheckpoint(id));
        Ok(())
    }

    pub(super) fn abort_checkpoint(
        &mut self,
        execution: &mut Execution,
        id: u64,
        reason: AbortReason,
    ) -> Result<(), Failure> {
        let pending = execution
            .pending
            .take()
            .expect("aborting the pending checkpoint");
        debug_assert_eq!(pending.id, id, "aborting the pending checkpoint");
        for task in &mut execution.tasks {
            if task.alignment.checkpoint == Some(id) {
                task.alignment.checkpoint = None;
                task.alignment.received.iter_mut().for_each(|r| *r = false);
                for &channel in &task.inputs {
                    execution.channels[channel].blocked = false;
                }
            }
            if let Body::Operator(OperatorTask {
                backend: Some(backend),
                ..
            }) = &mut task.body
            {
                backend.notify_checkpoint_aborted(id);
            }
        }
        if pending
            .savepoint
            .as_ref()
            .is_some_and(|request| request.stop)
        {
            execution.stopping = false;
        }
        if self.uploads.knows(id) {
            self.uploads
                .abort(id)
                .expect("a checkpoint being aborted never completed");
        }
        // Files already written for it are discarded: its directory is private to it, and the
        // shared files only it referenced are garbage now.
        let dir = snapshot_dir(id, pending.savepoint.as_ref());
        // Never delete a directory whose `_metadata` committed (a savepoint taken before).
        if !self
            .storage
            .exists(&dir.join("_metadata").expect("a valid name"))
        {
            let _ = self.storage.remove_dir(&dir);
        }
        self.collect_garbage();
        self.stats.checkpoints_aborted += 1;
        self.consecutive_checkpoint_failures += 1;
        self.record(Event::CheckpointAborted {
            checkpoint: id,
            reason,
        });
        if self.consecutive_checkpoint_failures > self.config.checkpoint.tolerable_failures {
            return Err(Failure::new(
                "coordinator",
                FailureCause::CheckpointFailures {
                    consecutive: self.consecutive_checkpoint_failures,
                    tolerated: self.config.checkpoint.tolerable_failures,
                },
            ));
        }
        Ok(())
    }

    /// Delivers queued completion notifications: sinks commit, backends confirm uploads.
    pub(super) fn deliver_notifications(
        &mut self,
        execution: &mut Execution,
    ) -> Result<(), Failure> {
        while let Some((id, task)) = execution.notifications.pop_front() {
            let name = execution.tasks[task].name.clone();
            match self.storage.notification_fate(id, &name) {
                NotifyFate::Deliver => {}
                NotifyFate::Drop => {
                    self.record(Event::Notification {
                        checkpoint: id,
                        task: name,
                        fate: NotificationFate::Lost,
                    });
                    continue;
                }
                NotifyFate::Delay(delay_ms) => {
                    self.record(Event::Notification {
                        checkpoint: id,
                        task: name,
                        fate: NotificationFate::Delayed { delay_ms },
                    });
                    execution
                        .delayed
                        .push((self.clock.now_ms() + delay_ms, id, task));
                    continue;
                }
            }
            let subtask = execution.tasks[task].subtask;
            match &mut execution.tasks[task].body {
                Body::Sink(sink) => {
                    if let Some(action) = self.storage.fault_at(&FaultPoint::SinkCommit {
                        checkpoint: id,
                        subtask,
                    }) {
                        return Err(Failure::from_action(&name, action));
                    }
                    let (user, store) = (self.sink_factory.is_some(), &mut self.store);
                    let notification_failed = |error: String| {
                        Failure::new(
                            &name,
                            FailureCause::Notification {
                                checkpoint: id,
                                error,
                            },
                        )
                    };
                    let events =
                        guarded_if(user, &name, || sink.notify_checkpoint_complete(id, store))
                            .map_err(|f| notification_failed(f.cause.to_string()))?
                            .map_err(|e| notification_failed(e.to_string()))?;
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
                }) => backend.notify_checkpoint_complete(id),
                Body::Source(SourceTask {
                    reader: Some(reader),
                    positions,
                    ..
                }) => {
                    reader.ensure_open(&name, positions)?;
                    guarded(&name, || reader.source.notify_checkpoint_complete(id))?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    pub(super) fn on_barrier(
        &mut self,
        execution: &mut Execution,
        index: usize,
        input: usize,
        id: u64,
    ) -> Result<(), Failure> {
        if execution.pending.as_ref().map(|p| p.id) != Some(id) {
            // The checkpoint was aborted while its barrier travelled: drop it.
            return Ok(());
        }
        let mode = self.config.checkpoint.mode;
        let task = &mut execution.tasks[index];
        let inputs = task.inputs.len();
        if inputs > 1 {
            if task.alignment.checkpoint != Some(id) {
                assert!(
                    task.alignment.checkpoint.is_none(),
                    "{}: barrier chk-{id} while aligning another",
                    task.name
                );
                task.alignment.checkpoint = Some(id);
            }
            assert!(
                !task.alignment.received[input],
                "{}: two barriers chk-{id} on one input",
                task.name
            );
            task.alignment.received[input] = true;
            let blocks = mode == CheckpointingMode::ExactlyOnce
                && !self.config.sabotage.alignment_never_blocks;
            if blocks {
                execution.channels[task.inputs[input]].blocked = true;
            }
            let received = task.alignment.received.iter().filter(|r| **r).count();
            if received < inputs {
                let event = Event::BarrierReceived {
                    checkpoint: id,
                    task: task.name.clone(),
                    input,
                    received,
                    inputs,
                    blocked: blocks,
                };
                self.record(event);
                return Ok(());
            }
            task.alignment.checkpoint = None;
            task.alignment.received.iter_mut().for_each(|r| *r = false);
            let mut blocked = Vec::new();
            for (input, &channel) in task.inputs.iter().enumerate() {
                if std::mem::take(&mut execution.channels[channel].blocked) {
                    blocked.push(input);
                }
            }
            let event = Event::BarrierAligned {
                checkpoint: id,
                task: task.name.clone(),
                inputs,
                blocked,
            };
            self.record(event);
        }
        self.snapshot_task(execution, index, id)
    }

    pub(super) fn snapshot_task(
        &mut self,
        execution: &mut Execution,
        index: usize,
        id: u64,
    ) -> Result<(), Failure> {
        let stage = self.job.stage_names()[execution.tasks[index].stage].clone();
        let point = FaultPoint::SyncSnapshot {
            checkpoint: id,
            stage: &stage,
            subtask: execution.tasks[index].subtask,
        };
        if let Some(action) = self.storage.fault_at(&point) {
            return Err(Failure::from_action(&execution.tasks[index].name, action));
        }
        let task = &mut execution.tasks[index];
        let name = task.name.clone();
        let mut snapshot = SubtaskSnapshot {
            subtask: task.subtask,
            key_groups: task.key_groups,
            keyed: None,
            operator_state: Vec::new(),
        };
        let events = match &mut task.body {
            Body::Operator(op) => {
                snapshot.operator_state = op.op.snapshot_state();
                match op.backend.as_deref_mut() {
                    Some(backend) => {
                        let savepoint =
                            execution.pending.as_ref().and_then(|p| p.savepoint.clone());
                        let target = SnapshotTarget {
                            purpose: match &savepoint {
                                None => SnapshotPurpose::Checkpoint,
                                Some(request) => SnapshotPurpose::Savepoint(request.format),
                            },
                            checkpoint_id: id,
                            dir: snapshot_dir(id, savepoint.as_ref()),
                            compression: self.config.checkpoint.compression,
                        };
                        // The synchronous phase stages the snapshot's files; the asynchronous
                        // phase uploads them through the hand-off real use runs on a thread.
                        // The simulation has no threads: the upload runs right here, through
                        // the fault plan, and the same hand-off code decides its outcome.
                        let mut staging = Staging::new(&self.storage);
                        let staged = guarded(&name, || backend.snapshot(&target, &mut staging))?;
                        let files = staging.into_files();
                        let part = PartId {
                            checkpoint_id: id,
                            part: index as u32,
                        };
                        let result = match staged {
                            Ok(result) => {
                                let shared = result
                                    .handle
                                    .shared_files()
                                    .into_iter()
                                    .map(|file| file.path.clone())
                                    .collect();
                                match self.uploads.submit(Submission {
                                    id: part,
                                    files,
                                    shared,
                                }) {
                                    Ok(()) => {}
                                    // A reuse of a file no live checkpoint holds fails the
                                    // checkpoint (FLINK's registry refusing unknown state).
                                    Err(error @ UploadError::Unregistered { .. }) => {
                                        let reason = AbortReason::ReuseRefused {
                                            task: name,
                                            error: error.to_string(),
                                        };
                                        return self.abort_checkpoint(execution, id, reason);
                                    }
                                    Err(error) => {
                                        return Err(Failure::new(
                                            &name,
                                            FailureCause::Upload {
                                                error: error.to_string(),
                                            },
                                        ))
                                    }
                                }
                                self.storage.writing_for(Some(id));
                                let storage = &mut self.storage;
                                let uploaded = self.uploads.upload_next(&mut |path, bytes| {
                                    storage
                                        .write(path, bytes)
                                        .map(|_| ())
                                        .map_err(|e| e.to_string())
                                });
                                self.storage.writing_for(None);
                                assert!(uploaded, "the part just submitted is queued");
                                let events = self.uploads.take_events();
                                match events.iter().find(|event| event.id() == part) {
                                    Some(UploadEvent::Uploaded(_)) => Ok(result),
                                    Some(UploadEvent::Failed { reason, .. }) => Err(reason.clone()),
                                    other => unreachable!(
                                        "a part uploaded inline ends uploaded or failed, not {other:?}"
                                    ),
                                }
                            }
                            Err(error) => Err(error.to_string()),
                        };
                        self.crashed()?;
                        match result {
                            Ok(result) => {
                                self.stats.files_written += u64::from(result.files_written);
                                self.stats.files_reused += u64::from(result.files_reused);
                                self.stats.bytes_written += result.bytes_written;
                                let files = result.handle.files().len();
                                snapshot.keyed = Some(result.handle);
                                vec![Event::Snapshot {
                                    checkpoint: id,
                                    task: name.clone(),
                                    keyed: Some(KeyedFiles {
                                        files,
                                        written: result.files_written,
                                        reused: result.files_reused,
                                    }),
                                }]
                            }
                            Err(error) => {
                                // Writing state is the asynchronous phase in Flink: its failure
                                // fails the checkpoint, not the task.
                                return self.abort_checkpoint(
                                    execution,
                                    id,
                                    AbortReason::Snapshot { task: name, error },
                                );
                            }
                        }
                    }
                    None => vec![Event::Snapshot {
                        checkpoint: id,
                        task: name.clone(),
                        keyed: None,
                    }],
                }
            }
            Body::Sink(sink) => {
                let (user, store) = (self.sink_factory.is_some(), &mut self.store);
                let (state, events) = guarded_if(user, &name, || sink.snapshot(id, store))?
                    .map_err(|e| {
                        Failure::new(
                            &name,
                            FailureCause::SinkSnapshot {
                                error: e.to_string(),
                            },
                        )
                    })?;
                snapshot.operator_state = state;
                if events.is_empty() {
                    vec![Event::Snapshot {
                        checkpoint: id,
                        task: name.clone(),
                        keyed: None,
                    }]
                } else {
                    events
                        .into_iter()
                        .map(|event| Event::Txn {
                            task: name.clone(),
                            event,
                        })
                        .collect()
                }
            }
            Body::Source(_) => unreachable!("sources snapshot when the barrier is injected"),
        };
        for event in events {
            self.record(event);
        }
        self.emit_barrier(execution, index, id);
        self.ack(execution, index, id, snapshot)
    }
}

impl Runtime<'_> {
    /// Fails the attempt as a kill if the machine crashed in the storage operation just made.
    fn crashed(&self) -> Result<(), Failure> {
        match self.storage.crash() {
            Some(crash) => Err(Failure::from_action("process", crash.clone())),
            None => Ok(()),
        }
    }
}
