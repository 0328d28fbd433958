//! Building an attempt's tasks and channels, and restoring them from a checkpoint: finding the
//! latest `_metadata` in storage (never a list in memory), validating it against the job,
//! redistributing key groups, source positions and sink transactions.

use super::{RestoreRecord, Runtime};
use std::collections::{BTreeMap, VecDeque};

use super::task::*;

use crate::checkpoint::{CheckpointMetadata, KeyedStateHandle, StorageError};
use crate::job::keygroup::key_group_range;
use crate::job::operator;
use crate::job::record::Positions;
use crate::job::sink::{PrintSink, Sink, TwoPhaseCommitSink};
use crate::job::spec::SinkKind;
use crate::state::{BackendContext, KeyGroupRange, StateView};

impl<'a> Runtime<'a> {
    pub(super) fn build_execution(
        &mut self,
        attempt: u32,
        target: RestoreTarget,
    ) -> Result<Execution, Failure> {
        let job = self.job;
        let names = job.stage_names();
        let parallelisms = job.stage_parallelisms();
        let max_parallelism = job.max_parallelism;
        let full_range = KeyGroupRange {
            start: 0,
            end: max_parallelism - 1,
        };

        let mut tasks = Vec::new();
        let mut stage_tasks = Vec::new();
        for (stage, (name, &parallelism)) in names.iter().zip(&parallelisms).enumerate() {
            let first = tasks.len();
            for subtask in 0..parallelism {
                let task_name = format!("{name}[{subtask}]");
                let keyed =
                    stage >= 1 && stage <= job.stages.len() && job.stages[stage - 1].op.is_keyed();
                let key_groups = if keyed {
                    key_group_range(max_parallelism, parallelism, subtask)
                } else {
                    full_range
                };
                let body = if stage == 0 {
                    let partitions: Vec<u32> = (0..job.source.partition_count())
                        .filter(|p| p % u32::from(parallelism) == u32::from(subtask))
                        .collect();
                    let positions = partitions.iter().map(|p| (*p, 0)).collect();
                    Body::Source(SourceTask {
                        partitions,
                        positions,
                        cursor: 0,
                        emit_ms: job.source.emit_ms,
                    })
                } else if stage == names.len() - 1 {
                    let sink: Box<dyn Sink> = match job.sink.kind {
                        SinkKind::TwoPhaseCommit => {
                            Box::new(TwoPhaseCommitSink::new(subtask, attempt))
                        }
                        SinkKind::Print => Box::new(PrintSink),
                    };
                    Body::Sink(sink)
                } else {
                    let spec = &job.stages[stage - 1];
                    let backend = if keyed {
                        let working_dir = self
                            .work_dir
                            .join(format!("attempt-{attempt}"))
                            .join(format!("{name}-{subtask}"));
                        let context = BackendContext {
                            task_name: format!("{name}-{subtask}"),
                            key_groups,
                            working_dir,
                        };
                        Some(
                            self.backends
                                .create(context)
                                .map_err(|e| Failure::new(&task_name, format!("backend: {e}")))?,
                        )
                    } else {
                        None
                    };
                    Body::Operator(OperatorTask {
                        op: operator::build(&spec.op),
                        backend,
                        processing_ms: spec.processing_ms,
                        processed: 0,
                    })
                };
                tasks.push(Task {
                    name: task_name,
                    stage,
                    subtask,
                    key_groups,
                    inputs: Vec::new(),
                    outputs: Outputs {
                        channels: Vec::new(),
                        forward: false,
                    },
                    alignment: Alignment::default(),
                    body,
                });
            }
            stage_tasks.push(first..tasks.len());
        }

        // Wire the channels: forward edges pair subtasks by index; other edges connect every
        // upstream subtask to every downstream one, in subtask order.
        let mut channels = Vec::new();
        for downstream in 1..names.len() {
            let forward = job.edge_is_forward(downstream);
            let upstream_tasks = stage_tasks[downstream - 1].clone();
            let downstream_tasks = stage_tasks[downstream].clone();
            for up in upstream_tasks {
                tasks[up].outputs.forward = forward;
                for down in downstream_tasks.clone() {
                    if forward && tasks[up].subtask != tasks[down].subtask {
                        continue;
                    }
                    channels.push(Channel::default());
                    tasks[up].outputs.channels.push(channels.len() - 1);
                    tasks[down].inputs.push(channels.len() - 1);
                }
            }
        }
        for task in &mut tasks {
            task.alignment.received = vec![false; task.inputs.len()];
        }

        let mut execution = Execution {
            attempt,
            tasks,
            channels,
            stage_tasks,
            pending: None,
            next_trigger_ms: self.clock.now_ms() + self.config.checkpoint.interval_ms,
            notifications: VecDeque::new(),
            final_completed: false,
        };
        self.note(format!(
            "attempt {attempt} started: {} tasks, {} channels",
            execution.tasks.len(),
            execution.channels.len()
        ));
        if target != RestoreTarget::Fresh {
            self.restore(&mut execution, target)?;
        }
        Ok(execution)
    }

    /// Finds the latest completed checkpoint in storage (the `_metadata` commit point, never an
    /// in-memory list, since a killed process keeps nothing) and rebuilds the retention queue.
    pub(super) fn completed_checkpoints(&mut self) -> Result<Vec<u64>, Failure> {
        let names = self
            .storage
            .list(None)
            .map_err(|e| Failure::new("restore", e.to_string()))?;
        let mut ids: Vec<u64> = names
            .iter()
            .filter_map(|name| name.strip_prefix("chk-")?.parse::<u64>().ok())
            .filter(|id| self.storage.exists(&metadata_path(*id)))
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    pub(super) fn restore(
        &mut self,
        execution: &mut Execution,
        target: RestoreTarget,
    ) -> Result<(), Failure> {
        let ids = self.completed_checkpoints()?;
        // Checkpoint ids never repeat, even across restarts: aborted ones leave gaps.
        let highest_dir = self
            .storage
            .list(None)
            .map_err(|e| Failure::new("restore", e.to_string()))?
            .iter()
            .filter_map(|n| n.strip_prefix("chk-")?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        self.next_checkpoint_id = self.next_checkpoint_id.max(highest_dir + 1);
        self.retained = ids.iter().copied().collect();
        let chosen = match target {
            RestoreTarget::Inspect(id) => Some(id),
            _ => ids.last().copied(),
        };
        let Some(latest) = chosen else {
            let positions = Positions::start(self.input.partitions().len());
            self.note(format!(
                "restore: no completed checkpoint; sources start over at {positions}"
            ));
            let state = self.dump_state(execution)?;
            self.record_restore(execution.attempt, None, positions, state);
            return Ok(());
        };
        let path = metadata_path(latest);
        let fail = |reason: String| Failure::new("restore", format!("chk-{latest}: {reason}"));
        let bytes = self.storage.read(&path).map_err(|e| fail(e.to_string()))?;
        let metadata = CheckpointMetadata::decode(&bytes)
            .map_err(|e| fail(StorageError::format(&path, e).to_string()))?;
        self.validate_metadata(&metadata).map_err(fail)?;

        let mut positions = BTreeMap::new();
        let mut entries = 0u64;
        for (stage, range) in execution.stage_tasks.clone().into_iter().enumerate() {
            let snapshot = &metadata.stages[stage];
            let rescaled = snapshot.parallelism as usize != range.len();
            for task_index in range {
                let task = &mut execution.tasks[task_index];
                let own: Vec<Vec<u8>> = if rescaled {
                    if task.subtask == 0 {
                        snapshot
                            .subtasks
                            .iter()
                            .map(|s| s.operator_state.clone())
                            .collect()
                    } else {
                        Vec::new()
                    }
                } else {
                    vec![snapshot.subtasks[usize::from(task.subtask)]
                        .operator_state
                        .clone()]
                };
                match &mut task.body {
                    Body::Source(source) => {
                        for state in &snapshot.subtasks {
                            for (partition, offset) in decode_positions(&state.operator_state)
                                .map_err(|e| fail(format!("{}: {e}", task.name)))?
                            {
                                positions.insert(partition, offset);
                            }
                        }
                        for partition in &source.partitions {
                            let offset = *positions.get(partition).ok_or_else(|| {
                                fail(format!("no position for partition {partition}"))
                            })?;
                            let len = self.input.partitions()[*partition as usize].len() as u64;
                            if offset > len {
                                return Err(fail(format!(
                                    "partition {partition} position {offset} is past its end {len}"
                                )));
                            }
                            source.positions.insert(*partition, offset);
                        }
                    }
                    Body::Operator(op) => {
                        if let Some(backend) = op.backend.as_deref_mut() {
                            let handles: Vec<KeyedStateHandle> = snapshot
                                .subtasks
                                .iter()
                                .filter(|s| s.key_groups.intersects(&task.key_groups))
                                .filter_map(|s| s.keyed.clone())
                                .collect();
                            let stats = backend
                                .restore(&handles, &*self.storage)
                                .map_err(|e| fail(format!("{}: {e}", task.name)))?;
                            entries += stats.entries;
                        }
                        op.op
                            .restore_state(&own)
                            .map_err(|e| fail(format!("{}: {e}", task.name)))?;
                    }
                    Body::Sink(_) if matches!(target, RestoreTarget::Inspect(_)) => {}
                    Body::Sink(sink) => {
                        let events = sink
                            .restore(&own, &mut self.store)
                            .map_err(|e| fail(format!("{}: {e}", task.name)))?;
                        let name = task.name.clone();
                        for event in events {
                            self.note(format!("txn {name}: {event}"));
                        }
                    }
                }
            }
        }
        let positions = Positions(
            (0..self.input.partitions().len() as u32)
                .map(|p| positions.get(&p).copied().unwrap_or(0))
                .collect(),
        );
        self.note(format!(
            "restore from chk-{latest}: sources at {positions}, {entries} keyed entries"
        ));
        let state = self.dump_state(execution)?;
        self.record_restore(execution.attempt, Some(latest), positions, state);
        Ok(())
    }

    pub(super) fn record_restore(
        &mut self,
        attempt: u32,
        checkpoint_id: Option<u64>,
        positions: Positions,
        state: StateView,
    ) {
        self.restores.push(RestoreRecord {
            attempt,
            checkpoint_id,
            positions,
            state,
            time_ms: self.clock.now_ms(),
        });
    }

    pub(super) fn validate_metadata(&self, metadata: &CheckpointMetadata) -> Result<(), String> {
        let job = self.job;
        if metadata.job_fingerprint != job.fingerprint() {
            return Err("written by a different job (fingerprint mismatch)".into());
        }
        if metadata.max_parallelism != job.max_parallelism {
            return Err(format!(
                "max parallelism {} differs from the job's {}",
                metadata.max_parallelism, job.max_parallelism
            ));
        }
        let names = job.stage_names();
        if metadata.stages.len() != names.len() {
            return Err(format!(
                "{} stages, the job has {}",
                metadata.stages.len(),
                names.len()
            ));
        }
        for (stage, name) in metadata.stages.iter().zip(&names) {
            if &stage.name != name {
                return Err(format!(
                    "stage {} is {:?}, the job has {:?}",
                    stage.stage, stage.name, name
                ));
            }
        }
        Ok(())
    }

    /// Keyed state of every backend, decoded.
    pub(super) fn dump_state(&self, execution: &Execution) -> Result<StateView, Failure> {
        let mut view = StateView::new();
        for task in &execution.tasks {
            if let Body::Operator(OperatorTask {
                backend: Some(backend),
                ..
            }) = &task.body
            {
                let stage = &self.job.stages[task.stage - 1].name;
                let entries = backend
                    .entries()
                    .map_err(|e| Failure::new(&task.name, e.to_string()))?;
                view.add_entries(stage, backend.states(), &entries)
                    .map_err(|e| Failure::new(&task.name, e.to_string()))?;
            }
        }
        Ok(view)
    }
}
