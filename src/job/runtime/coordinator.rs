//! The checkpoint coordinator: triggers on the virtual clock, injects barriers at sources, aligns
//! them at tasks with several inputs, collects snapshots and acknowledgements, writes `_metadata`,
//! subsumes old checkpoints and delivers completion notifications; aborts on failure, expiry or
//! write errors.

use super::task::*;
use super::{CheckpointingMode, Runtime};

use crate::checkpoint::{CheckpointMetadata, SnapshotKind, StageSnapshot, SubtaskSnapshot};
use crate::state::SnapshotTarget;

impl<'a> Runtime<'a> {
    /// Checkpoint timers: expire a pending checkpoint, or trigger the next one.
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
        if execution.pending.is_none()
            && !execution.final_completed
            && now >= execution.next_trigger_ms
        {
            self.trigger_checkpoint(execution)?;
        }
        Ok(())
    }

    pub(super) fn trigger_checkpoint(&mut self, execution: &mut Execution) -> Result<(), Failure> {
        let id = self.next_checkpoint_id;
        self.next_checkpoint_id += 1;
        let is_final = self.sources_exhausted(execution);
        let now = self.clock.now_ms();
        execution.next_trigger_ms = now + self.config.checkpoint.interval_ms;
        execution.pending = Some(Pending {
            id,
            trigger_ms: now,
            is_final,
            acks: (0..execution.tasks.len()).map(|_| None).collect(),
        });
        self.note(format!(
            "checkpoint chk-{id} triggered{}",
            if is_final {
                " (final: input exhausted)"
            } else {
                ""
            }
        ));
        for index in execution.stage_tasks[0].clone() {
            let task = &mut execution.tasks[index];
            let Body::Source(source) = &task.body else {
                unreachable!("stage 0 holds the sources")
            };
            let snapshot = SubtaskSnapshot {
                subtask: task.subtask,
                key_groups: task.key_groups,
                keyed: None,
                operator_state: encode_positions(&source.positions),
            };
            let line = format!(
                "barrier chk-{id} injected at {} ({})",
                task.name,
                source
                    .positions
                    .iter()
                    .map(|(p, o)| format!("p{p}@{o}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            self.note(line);
            self.emit_barrier(execution, index, id);
            self.ack(execution, index, id, snapshot)?;
            if execution.pending.is_none() {
                break;
            }
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
            self.complete_checkpoint(execution)?;
        }
        Ok(())
    }

    pub(super) fn complete_checkpoint(&mut self, execution: &mut Execution) -> Result<(), Failure> {
        let pending = execution
            .pending
            .take()
            .expect("completing a pending checkpoint");
        let id = pending.id;
        let mut stages = Vec::new();
        for (stage, range) in execution.stage_tasks.iter().enumerate() {
            let subtasks: Vec<SubtaskSnapshot> = range
                .clone()
                .map(|t| pending.acks[t].clone().expect("all acknowledged"))
                .collect();
            stages.push(StageSnapshot {
                stage: stage as u16,
                name: self.job.stage_names()[stage].clone(),
                parallelism: subtasks.len() as u16,
                subtasks,
            });
        }
        let metadata = CheckpointMetadata {
            checkpoint_id: id,
            kind: SnapshotKind::Checkpoint,
            trigger_time_ms: pending.trigger_ms,
            job_fingerprint: self.job.fingerprint(),
            max_parallelism: self.job.max_parallelism,
            backend: self.backends.name().to_string(),
            stages,
        };
        let files = metadata.files();
        let bytes: u64 = files.iter().map(|f| f.size).sum();
        let file_count = files.len();
        let encoded = metadata.encode();
        if let Err(error) = self.storage.write(&metadata_path(id), &encoded) {
            execution.pending = Some(pending);
            return self.abort_checkpoint(
                execution,
                id,
                format!("_metadata write failed: {error}"),
            );
        }
        self.consecutive_checkpoint_failures = 0;
        self.stats.checkpoints_completed += 1;
        self.note(format!("checkpoint chk-{id} completed: {file_count} state files, {bytes} bytes, _metadata {} bytes", encoded.len()));
        if pending.is_final {
            execution.final_completed = true;
        }
        self.retained.push_back(id);
        while self.retained.len() > self.config.checkpoint.num_retained as usize {
            let old = self
                .retained
                .pop_front()
                .expect("longer than num_retained >= 1");
            self.storage
                .remove_dir(&checkpoint_dir(old))
                .map_err(|e| Failure::new("coordinator", format!("subsuming chk-{old}: {e}")))?;
            self.note(format!("checkpoint chk-{old} subsumed"));
        }
        for task in 0..execution.tasks.len() {
            execution.notifications.push_back((id, task));
        }
        Ok(())
    }

    pub(super) fn abort_checkpoint(
        &mut self,
        execution: &mut Execution,
        id: u64,
        reason: String,
    ) -> Result<(), Failure> {
        let pending = execution.pending.take();
        debug_assert!(
            pending.as_ref().is_some_and(|p| p.id == id),
            "aborting the pending checkpoint"
        );
        for task in &mut execution.tasks {
            if task.alignment.checkpoint == Some(id) {
                task.alignment.checkpoint = None;
                task.alignment.received.iter_mut().for_each(|r| *r = false);
                for &channel in &task.inputs {
                    execution.channels[channel].blocked = false;
                }
            }
        }
        // Files already written for it are discarded; the directory is private to it.
        let _ = self.storage.remove_dir(&checkpoint_dir(id));
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

    pub(super) fn deliver_notifications(
        &mut self,
        execution: &mut Execution,
    ) -> Result<(), Failure> {
        while let Some((id, task)) = execution.notifications.pop_front() {
            let name = execution.tasks[task].name.clone();
            if let Body::Sink(sink) = &mut execution.tasks[task].body {
                let events = sink
                    .notify_checkpoint_complete(id, &mut self.store)
                    .map_err(|e| Failure::new(&name, format!("notify chk-{id}: {e}")))?;
                for event in events {
                    self.note(format!("txn {name}: {event}"));
                }
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
                        let target = SnapshotTarget {
                            checkpoint_id: id,
                            dir: checkpoint_dir(id),
                        };
                        match backend.snapshot(&target, &mut *self.storage) {
                            Ok(handle) => {
                                let bytes: u64 = handle.files().iter().map(|f| f.size).sum();
                                snapshot.keyed = Some(handle);
                                format!("snapshot {name} chk-{id}: {bytes} bytes of keyed state")
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
                let (state, event) = sink
                    .snapshot(id, &mut self.store)
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
