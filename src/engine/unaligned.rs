//! Unaligned checkpoints: a task snapshots at the first barrier it receives, sends its barrier
//! ahead of the records queued on its partitioned outputs, keeps what each input delivers until
//! that input's barrier arrives, and then persists both as its channel state
//! ([`crate::checkpoint::channel`]) before it acknowledges. An aligned barrier that is still
//! waited on past the aligned-checkpoint timeout switches its checkpoint to unaligned at that
//! task. A restore hands the records back to the subtasks that own them now (`owner`).

use super::task::*;
use super::Runtime;
use crate::checkpoint::channel::{ChannelSide, ChannelState, ChannelStateFile};
use crate::checkpoint::coordinator::{snapshot_dir, AbortReason};
use crate::checkpoint::{CheckpointStorage, SubtaskSnapshot, Unaligned};
use crate::job::keygroup::subtask_for_key_group;
use crate::job::{JobSpec, Record};
use crate::trace::Event;

impl Runtime<'_> {
    /// Whether a barrier of `checkpoint` taken or aligned now has waited past the
    /// aligned-checkpoint timeout (savepoints and the final checkpoint never time out into
    /// unaligned).
    pub(super) fn alignment_timed_out(&self, checkpoint: u64) -> bool {
        let Unaligned::AfterMs(timeout_ms) = self.config.checkpoint.unaligned else {
            return false;
        };
        let mut pending = self.coordinator.pending();
        pending.find(|p| p.id == checkpoint).is_some_and(|p| {
            p.savepoint.is_none() && !p.is_final && self.clock.now_ms() >= p.trigger_ms + timeout_ms
        })
    }

    /// Tasks aligning a checkpoint past the aligned-checkpoint timeout switch it to unaligned.
    pub(super) fn switch_timed_out(&mut self, execution: &mut Execution) -> Result<(), Failure> {
        if !matches!(self.config.checkpoint.unaligned, Unaligned::AfterMs(_)) {
            return Ok(());
        }
        for index in 0..execution.tasks.len() {
            let aligning = execution.tasks[index]
                .alignment
                .received
                .keys()
                .next()
                .copied();
            if let Some(checkpoint) = aligning.filter(|c| self.alignment_timed_out(*c)) {
                self.snapshot_unaligned(execution, index, None, checkpoint, true)?;
            }
        }
        Ok(())
    }

    /// A source's unaligned barrier: it overtakes the source's queued output, which becomes
    /// its channel state.
    pub(super) fn snapshot_source_unaligned(
        &mut self,
        execution: &mut Execution,
        index: usize,
        checkpoint: u64,
        snapshot: SubtaskSnapshot,
    ) -> Result<(), Failure> {
        let outputs = self.overtake(execution, index, checkpoint, false);
        let capture = Capture {
            checkpoint,
            arrived: Vec::new(),
            snapshot,
            inputs: Vec::new(),
            outputs,
        };
        self.complete_capture(execution, index, capture)
    }

    /// Task `index` snapshots `checkpoint` unaligned: at the barrier on `input`, or (with no
    /// input) where its alignment timed out. Inputs it blocked while aligning open again.
    pub(super) fn snapshot_unaligned(
        &mut self,
        execution: &mut Execution,
        index: usize,
        input: Option<usize>,
        checkpoint: u64,
        timed_out: bool,
    ) -> Result<(), Failure> {
        let task = &mut execution.tasks[index];
        let inputs = task.inputs.len();
        let mut arrived =
            (task.alignment.received.remove(&checkpoint)).unwrap_or_else(|| vec![false; inputs]);
        if let Some(input) = input {
            assert!(
                !arrived[input],
                "{}: two barriers chk-{checkpoint} on one input",
                task.name
            );
            arrived[input] = true;
        }
        for &channel in &task.inputs {
            execution.channels[channel].blocked = false;
        }
        let Some(snapshot) = self.take_snapshot(execution, index, checkpoint)? else {
            return Ok(());
        };
        let outputs = self.overtake(execution, index, checkpoint, timed_out);
        let capture = Capture {
            checkpoint,
            arrived,
            snapshot,
            inputs: vec![Vec::new(); inputs],
            outputs,
        };
        if capture.arrived.iter().all(|a| *a) {
            return self.complete_capture(execution, index, capture);
        }
        execution.tasks[index].capture = Some(capture);
        Ok(())
    }

    /// Sends task `index`'s unaligned barrier and says so; returns what it overtook.
    fn overtake(
        &mut self,
        execution: &mut Execution,
        index: usize,
        checkpoint: u64,
        timed_out: bool,
    ) -> Vec<(u16, Vec<Record>)> {
        let barrier = Barrier {
            checkpoint,
            unaligned: true,
        };
        let outputs = self.emit_barrier(execution, index, barrier);
        self.stats.unaligned.snapshots += 1;
        self.stats.unaligned.timed_out += u64::from(timed_out);
        self.record(Event::BarrierOvertook {
            checkpoint,
            task: execution.tasks[index].name.clone(),
            timed_out,
            overtaken: outputs.iter().map(|(_, records)| records.len()).sum(),
        });
        outputs
    }

    /// A barrier reached task `index`, which is completing an unaligned snapshot.
    pub(super) fn capture_barrier(
        &mut self,
        execution: &mut Execution,
        index: usize,
        input: usize,
        checkpoint: u64,
    ) -> Result<(), Failure> {
        let task = &mut execution.tasks[index];
        let capture = task.capture.as_mut().expect("the caller checked");
        // One checkpoint is in flight with unaligned barriers, and an aborted one's capture is
        // dropped with it.
        assert_eq!(
            capture.checkpoint, checkpoint,
            "{}: barrier chk-{checkpoint} while completing another unaligned snapshot",
            task.name
        );
        assert!(
            !capture.arrived[input],
            "{}: two barriers chk-{checkpoint} on one input",
            task.name
        );
        capture.arrived[input] = true;
        if capture.arrived.iter().all(|a| *a) {
            let capture = task.capture.take().expect("present");
            return self.complete_capture(execution, index, capture);
        }
        Ok(())
    }

    /// Every barrier arrived: the task writes its channel state and acknowledges.
    fn complete_capture(
        &mut self,
        execution: &mut Execution,
        index: usize,
        capture: Capture,
    ) -> Result<(), Failure> {
        let Capture {
            checkpoint,
            mut snapshot,
            inputs,
            outputs,
            ..
        } = capture;
        let task = &execution.tasks[index];
        let peers = task
            .inputs
            .iter()
            .map(|c| execution.tasks[execution.channels[*c].sender].subtask);
        let mut channels: Vec<ChannelState> = peers
            .zip(inputs)
            .filter(|(_, records)| !records.is_empty())
            .map(|(peer, records)| ChannelState {
                side: ChannelSide::Input,
                peer,
                records,
            })
            .collect();
        let (input_records, output_records) = (
            channels.iter().map(|c| c.records.len()).sum(),
            outputs.iter().map(|(_, records)| records.len()).sum(),
        );
        channels.extend(outputs.into_iter().map(|(peer, records)| ChannelState {
            side: ChannelSide::Output,
            peer,
            records,
        }));
        if !channels.is_empty() {
            let file = ChannelStateFile {
                checkpoint_id: checkpoint,
                subtask: task.subtask,
                channels,
            };
            let Some(written) = self.write_channel_state(execution, index, &file)? else {
                return Ok(());
            };
            snapshot.channel_state = Some(written);
            self.stats.unaligned.records_persisted += (input_records + output_records) as u64;
            self.record(Event::ChannelStateWritten {
                checkpoint,
                task: execution.tasks[index].name.clone(),
                inputs: input_records,
                outputs: output_records,
            });
        }
        self.acknowledge(execution, index, checkpoint, snapshot)
    }

    /// Writes task `index`'s channel-state file into its checkpoint's directory; `None` when
    /// the write failed and aborted the checkpoint.
    fn write_channel_state(
        &mut self,
        execution: &mut Execution,
        index: usize,
        file: &ChannelStateFile,
    ) -> Result<Option<crate::checkpoint::FileRef>, Failure> {
        let task = &execution.tasks[index];
        let name = crate::checkpoint::channel::file_name(task.stage, task.subtask);
        let path = snapshot_dir(file.checkpoint_id, None)
            .join(&name)
            .expect("a plain file name");
        self.storage.writing_for(Some(file.checkpoint_id));
        let written = self.storage.write(&path, &file.encode());
        self.storage.writing_for(None);
        self.crashed()?;
        match written {
            Ok(written) => Ok(Some(written)),
            Err(error) => {
                let reason = AbortReason::ChannelStateWrite {
                    task: task.name.clone(),
                    error: error.to_string(),
                };
                self.abort_checkpoint(execution, file.checkpoint_id, reason)?;
                Ok(None)
            }
        }
    }
}

/// The subtask of task-order stage `stage` (0: the source) that `record` reaches in `job`: from
/// the source subtask reading its partition, along forward edges by index and partitioned ones
/// by its key group. Operators keep a record's key, so this is where the record would have gone
/// had it been sent now.
pub(super) fn owner(job: &JobSpec, stage: usize, record: &Record) -> u16 {
    let parallelisms = job.stage_parallelisms();
    let group = record.key.key_group(job.max_parallelism);
    let mut subtask = (record.origin.partition % u32::from(parallelisms[0])) as u16;
    for (downstream, &parallelism) in parallelisms.iter().enumerate().take(stage + 1).skip(1) {
        if !job.edge_is_forward(downstream) {
            subtask = subtask_for_key_group(job.max_parallelism, parallelism, group);
        }
    }
    subtask
}

/// The records of one old subtask's channel state bound for one stage: (old subtask, records).
type Bound = Vec<(u16, Vec<Record>)>;

/// Hands `metadata`'s channel state to the tasks of `execution` (built for `job`) that own its
/// records now, in the order they must be handled: per stage, the records its tasks had taken
/// in before their inputs' barriers, then those the upstream barriers overtook. Every file is
/// checked against its reference and must belong to this checkpoint and subtask.
pub(super) fn recover_channel_state(
    job: &JobSpec,
    metadata: &crate::checkpoint::CheckpointMetadata,
    storage: &dyn crate::checkpoint::CheckpointStorage,
    execution: &mut Execution,
    sabotage: super::Sabotage,
) -> Result<Recovered, crate::trace::RestoreFailure> {
    let stages = execution.stage_tasks.len();
    let (mut inputs, mut outputs): (Vec<Bound>, Vec<Bound>) =
        (vec![Vec::new(); stages], vec![Vec::new(); stages]);
    for (stage, snapshot) in metadata.stages.iter().enumerate() {
        for subtask in &snapshot.subtasks {
            let Some(file) = &subtask.channel_state else {
                continue;
            };
            let read = read_channel_state(storage, file, metadata.checkpoint_id, subtask.subtask)?;
            for channel in read.channels {
                let (target, owner, bound) = match channel.side {
                    ChannelSide::Input => (stage, subtask.subtask, &mut inputs),
                    ChannelSide::Output => (stage + 1, channel.peer, &mut outputs),
                };
                if target == 0 || target >= stages {
                    return Err(unusable(
                        file,
                        "channel state on a channel the job does not have",
                    ));
                }
                bound[target].push((owner, channel.records));
            }
        }
    }
    let rescaled = (metadata.stages.iter())
        .zip(&execution.stage_tasks)
        .any(|(snapshot, tasks)| usize::from(snapshot.parallelism) != tasks.len());
    if rescaled && sabotage.channel_state_dropped_on_rescale {
        return Ok(Recovered {
            events: Vec::new(),
            rescaled: false,
        });
    }
    for (stage, bound) in inputs.into_iter().zip(outputs).enumerate() {
        let tasks = execution.stage_tasks[stage].clone();
        let (bound_in, bound_out) = bound;
        for (old, records) in bound_in.into_iter().chain(bound_out) {
            for record in records {
                let subtask = if sabotage.channel_state_to_old_subtask {
                    old % tasks.len() as u16
                } else {
                    owner(job, stage, &record)
                };
                execution.tasks[tasks.start + usize::from(subtask)]
                    .recovered
                    .push_back(record);
            }
        }
    }
    let restored = execution.tasks.iter().filter(|t| !t.recovered.is_empty());
    let events: Vec<Event> = restored
        .map(|task| Event::ChannelStateRestored {
            task: task.name.clone(),
            origins: task.recovered.iter().map(|r| r.origin).collect(),
        })
        .collect();
    Ok(Recovered {
        rescaled: rescaled && !events.is_empty(),
        events,
    })
}

/// What a restore handed back from channel state.
pub(super) struct Recovered {
    /// A `ChannelStateRestored` per task that got records.
    pub(super) events: Vec<Event>,
    /// It did so at another parallelism than the snapshot's.
    pub(super) rescaled: bool,
}

/// Reads and checks one channel-state file of checkpoint `checkpoint` and subtask `subtask`.
fn read_channel_state(
    storage: &dyn crate::checkpoint::CheckpointStorage,
    file: &crate::checkpoint::FileRef,
    checkpoint: u64,
    subtask: u16,
) -> Result<ChannelStateFile, crate::trace::RestoreFailure> {
    let bytes = storage
        .read(&file.path)
        .map_err(|e| unusable(file, &e.to_string()))?;
    if let Some(why) = file.mismatch(&bytes) {
        return Err(unusable(file, why));
    }
    let read = ChannelStateFile::decode(&bytes).map_err(|e| unusable(file, &e.to_string()))?;
    if read.checkpoint_id != checkpoint || read.subtask != subtask {
        let why = format!(
            "written for chk-{} subtask {}, named for chk-{checkpoint} subtask {subtask}",
            read.checkpoint_id, read.subtask
        );
        return Err(unusable(file, &why));
    }
    Ok(read)
}

fn unusable(file: &crate::checkpoint::FileRef, why: &str) -> crate::trace::RestoreFailure {
    crate::trace::RestoreFailure {
        file: Some(file.path.to_string()),
        detail: format!("channel state {}: {why}", file.path),
    }
}
