//! The checkpoint coordinator: triggers checkpoints on the virtual clock and savepoints when
//! asked, injects barriers at sources, aligns them at tasks with several inputs, collects
//! snapshots and acknowledgements, writes `_metadata`, subsumes old checkpoints, collects
//! unreferenced shared files and delivers completion notifications; aborts on failure, expiry
//! or write errors.
//!
//! A savepoint travels as a barrier like a checkpoint, but its files and `_metadata` live in
//! `savepoints/<name>/` with paths relative to that directory (so it can be moved), it is never
//! retained or subsumed, and its uploads never become an incremental base.

use std::collections::BTreeMap;

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
                    format!("expired after {} ms", self.config.checkpoint.timeout_ms),
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
                format!(
                    "checkpoint chk-{id} triggered{}",
                    if is_final {
                        " (final: input exhausted)"
                    } else {
                        ""
                    }
                )
            }
            Some(request) => format!(
                "savepoint {} triggered as chk-{id} ({:?}{})",
                request.name,
                request.format,
                if request.stop { ", stop" } else { "" }
            ),
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
            writes: 0,
        });
        self.note(what);
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
                    reader.check_stored(&stored).map_err(|reason| {
                        Failure::new(&task.name, format!("chk-{id}: {reason}"))
                    })?;
                    Some(stored)
                }
                None => None,
            };
            let stored = user_stored.as_ref().unwrap_or(&source.positions);
            // A reader storing other positions than it read to is the bug to see in the trace.
            let read_to = if *stored == source.positions {
                String::new()
            } else {
                format!("; read to {}", render_positions(&source.positions))
            };
            let snapshot = SubtaskSnapshot {
                subtask: task.subtask,
                key_groups: task.key_groups,
                keyed: None,
                operator_state: encode_positions(stored),
            };
            let positions = render_positions(stored);
            let line = format!(
                "barrier chk-{id} injected at {} ({positions}{read_to})",
                task.name
            );
            self.note(line);
            self.emit_barrier(execution, index, id);
            self.ack(execution, index, id, snapshot)?;
            if execution.pending.is_none() {
                break;
            }
        }
        if let Some(action) = self
            .faults
            .at(&FaultPoint::BarrierInjected { checkpoint: id })
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
        let mut pending = execution
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
            return self.abort_checkpoint(
                execution,
                id,
                format!("references {path}, which no retained checkpoint holds any more"),
            );
        }
        let metadata_path = dir.join("_metadata").expect("_metadata is a valid name");
        let written = FaultyStorage {
            inner: &mut *self.storage,
            faults: &mut *self.faults,
            checkpoint: id,
            writes: &mut pending.writes,
            killed: &mut self.killed,
            uncommitted: &mut self.uncommitted,
        }
        .write(&metadata_path, &encoded);
        if let Some(reason) = self.killed.take() {
            return Err(Failure::kill(reason));
        }
        if let Err(error) = written {
            execution.pending = Some(pending);
            return self.abort_checkpoint(
                execution,
                id,
                format!("_metadata write failed: {error}"),
            );
        }
        // The `_metadata` is the commit point: nothing written before it can be lost any more.
        self.uncommitted.clear();
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
        if let Some(action) = self.faults.at(&FaultPoint::BeforeNotify { checkpoint: id }) {
            return Err(Failure::from_action("coordinator", action));
        }
        self.consecutive_checkpoint_failures = 0;
        for task in 0..execution.tasks.len() {
            execution.notifications.push_back((id, task));
        }
        if let Some(request) = &pending.savepoint {
            self.note(format!(
                "savepoint {} completed as chk-{id}: {file_count} state files, in {dir}",
                request.name
            ));
            self.savepoints_taken.push(request.name.clone());
            if request.stop {
                execution.stopped = Some((request.name.clone(), id));
            }
            return Ok(());
        }
        self.stats.checkpoints_completed += 1;
        self.note(format!(
            "checkpoint chk-{id} completed: {file_count} state files"
        ));
        if pending.is_final {
            execution.final_completed = true;
        }
        if let Err(error) = registry::record_completed(&mut *self.storage, id) {
            // The `_metadata` already committed the checkpoint; the record only lets a later
            // restore notice a lost `_metadata`.
            self.note(format!("could not record chk-{id} as completed: {error}"));
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
                .map_err(|e| Failure::new("coordinator", format!("subsuming chk-{old}: {e}")))?;
            // Checkpoints completed by an earlier attempt are not in this attempt's hand-off.
            if self.uploads.knows(old) {
                self.uploads
                    .subsume(old)
                    .expect("a retained checkpoint of this attempt completed");
            }
            self.note(format!("checkpoint chk-{old} subsumed"));
            subsumed = true;
        }
        if subsumed {
            self.collect_garbage();
        }
        self.audit_storage(&format!("after chk-{id}"));
        Ok(())
    }

    pub(super) fn abort_checkpoint(
        &mut self,
        execution: &mut Execution,
        id: u64,
        reason: String,
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
        self.note(format!("checkpoint chk-{id} aborted: {reason}"));
        if self.consecutive_checkpoint_failures > self.config.checkpoint.tolerable_failures {
            return Err(Failure::new(
                "coordinator",
                format!(
                    "{} consecutive checkpoint failures exceed the {} tolerated",
                    self.consecutive_checkpoint_failures, self.config.checkpoint.tolerable_failures
                ),
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
            match self.faults.notification(id, &name) {
                NotifyFate::Deliver => {}
                NotifyFate::Drop => {
                    self.note(format!("notify chk-{id} to {name}: lost"));
                    continue;
                }
                NotifyFate::Delay(delay_ms) => {
                    self.note(format!("notify chk-{id} to {name}: delayed {delay_ms} ms"));
                    execution
                        .delayed
                        .push((self.clock.now_ms() + delay_ms, id, task));
                    continue;
                }
            }
            let subtask = execution.tasks[task].subtask;
            match &mut execution.tasks[task].body {
                Body::Sink(sink) => {
                    if let Some(action) = self.faults.at(&FaultPoint::SinkCommit {
                        checkpoint: id,
                        subtask,
                    }) {
                        return Err(Failure::from_action(&name, action));
                    }
                    let (user, store) = (self.sink_factory.is_some(), &mut self.store);
                    let events =
                        guarded_if(user, &name, || sink.notify_checkpoint_complete(id, store))
                            .map_err(|f| {
                                Failure::new(&name, format!("notify chk-{id}: {}", f.reason))
                            })?
                            .map_err(|e| Failure::new(&name, format!("notify chk-{id}: {e}")))?;
                    for event in events {
                        self.note(format!("txn {name}: {event}"));
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
            if mode == CheckpointingMode::ExactlyOnce {
                execution.channels[task.inputs[input]].blocked = true;
            }
            let received = task.alignment.received.iter().filter(|r| **r).count();
            if received < inputs {
                let line = format!(
                    "barrier chk-{id} at {} input {input} ({received}/{inputs})",
                    task.name
                );
                self.note(line);
                return Ok(());
            }
            task.alignment.checkpoint = None;
            task.alignment.received.iter_mut().for_each(|r| *r = false);
            for &channel in &task.inputs {
                execution.channels[channel].blocked = false;
            }
            let line = format!(
                "barrier chk-{id} aligned at {} ({inputs} inputs)",
                task.name
            );
            self.note(line);
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
        if let Some(action) = self.faults.at(&point) {
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
        let line = match &mut task.body {
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
                        let mut staging = Staging::new(&*self.storage);
                        let staged = guarded(&name, || backend.snapshot(&target, &mut staging))?;
                        let files = staging.into_files();
                        let writes = &mut execution
                            .pending
                            .as_mut()
                            .expect("snapshotting the pending checkpoint")
                            .writes;
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
                                        let reason = format!("{name}: {error}");
                                        self.refused_reuses.push(format!("chk-{id}: {reason}"));
                                        return self.abort_checkpoint(execution, id, reason);
                                    }
                                    Err(error) => {
                                        return Err(Failure::new(&name, error.to_string()))
                                    }
                                }
                                let mut storage = FaultyStorage {
                                    inner: &mut *self.storage,
                                    faults: &mut *self.faults,
                                    checkpoint: id,
                                    writes,
                                    killed: &mut self.killed,
                                    uncommitted: &mut self.uncommitted,
                                };
                                let uploaded = self.uploads.upload_next(&mut |path, bytes| {
                                    storage
                                        .write(path, bytes)
                                        .map(|_| ())
                                        .map_err(|e| e.to_string())
                                });
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
                        if let Some(reason) = self.killed.take() {
                            return Err(Failure::kill(reason));
                        }
                        match result {
                            Ok(result) => {
                                self.stats.files_written += u64::from(result.files_written);
                                self.stats.files_reused += u64::from(result.files_reused);
                                self.stats.bytes_written += result.bytes_written;
                                let files = result.handle.files().len();
                                snapshot.keyed = Some(result.handle);
                                format!(
                                    "snapshot {name} chk-{id}: {files} files ({} written, {} reused)",
                                    result.files_written, result.files_reused
                                )
                            }
                            Err(error) => {
                                // Writing state is the asynchronous phase in Flink: its failure
                                // fails the checkpoint, not the task.
                                return self.abort_checkpoint(
                                    execution,
                                    id,
                                    format!("{name}: {error}"),
                                );
                            }
                        }
                    }
                    None => format!("snapshot {name} chk-{id}"),
                }
            }
            Body::Sink(sink) => {
                let (user, store) = (self.sink_factory.is_some(), &mut self.store);
                let (state, event) = guarded_if(user, &name, || sink.snapshot(id, store))?
                    .map_err(|e| Failure::new(&name, format!("snapshot: {e}")))?;
                snapshot.operator_state = state;
                match event {
                    Some(event) => format!("txn {name}: {event}"),
                    None => format!("snapshot {name} chk-{id}"),
                }
            }
            Body::Source(_) => unreachable!("sources snapshot when the barrier is injected"),
        };
        self.note(line);
        self.emit_barrier(execution, index, id);
        self.ack(execution, index, id, snapshot)
    }
}

/// Source positions as the trace shows them: `p0@4 p2@3`.
fn render_positions(positions: &BTreeMap<u32, u64>) -> String {
    let rendered: Vec<String> = positions.iter().map(|(p, o)| format!("p{p}@{o}")).collect();
    rendered.join(" ")
}
