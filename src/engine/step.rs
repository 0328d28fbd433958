//! One scheduler step of one task: a source emits a record, an operator processes one element of
//! one input (panics caught here, by the supervisor), a sink writes; outputs are routed by key
//! group.

use super::Runtime;

use super::task::*;

use crate::fault::FaultPoint;
use crate::job::keygroup::subtask_for_key_group;
use crate::job::operator::OperatorContext;
use crate::job::source::SourceInput;
use crate::job::Record;
use crate::state::KeyedContext;
use crate::trace::{Emission, Event, FailureCause};

impl<'a> Runtime<'a> {
    pub(super) fn step_task(
        &mut self,
        execution: &mut Execution,
        index: usize,
    ) -> Result<(), Failure> {
        if matches!(execution.tasks[index].body, Body::Source(_)) {
            return self.step_source(execution, index);
        }
        let capacity = self.config.channel_capacity;
        let task = &execution.tasks[index];
        let outputs_full =
            (task.outputs.channels.iter()).any(|c| execution.channels[*c].queue.len() >= capacity);
        if outputs_full {
            // Back-pressured: only an unaligned barrier may be taken (see `runnable`).
            let priority = execution.priority_inputs(index);
            let input = self
                .scheduler
                .pick(&priority)
                .expect("a back-pressured runnable task has an unaligned barrier next");
            return self.take_next(execution, index, input);
        }
        if self.processing_timer_due(execution, index) {
            return self.fire_processing_timers(execution, index);
        }
        let open: Vec<usize> = execution.tasks[index]
            .inputs
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                !execution.channels[**c].blocked && !execution.channels[**c].queue.is_empty()
            })
            .map(|(input, _)| input)
            .collect();
        // Records restored from channel state come before any input (the sabotage handles them
        // only once no input has any).
        let after_input = self.config.sabotage.channel_state_after_new_input && !open.is_empty();
        if !after_input {
            if let Some(record) = execution.tasks[index].recovered.pop_front() {
                return self.process_record(execution, index, record);
            }
        }
        let input = self
            .scheduler
            .pick(&open)
            .expect("a runnable task has an open input");
        self.take_next(execution, index, input)
    }

    /// Task `index` takes the next element of its input `input`.
    fn take_next(
        &mut self,
        execution: &mut Execution,
        index: usize,
        input: usize,
    ) -> Result<(), Failure> {
        let channel = execution.tasks[index].inputs[input];
        let element = execution.channels[channel]
            .queue
            .pop_front()
            .expect("open inputs are not empty");
        match element {
            Element::Record(record) => {
                if let Some(capture) = execution.tasks[index].capture.as_mut() {
                    if !capture.arrived[input] {
                        // After the unaligned snapshot, before this input's barrier: in flight.
                        capture.inputs[input].push(record.clone());
                    }
                }
                self.process_record(execution, index, record)
            }
            Element::Mark(mark) => self.on_mark(execution, index, input, mark),
            Element::Barrier(barrier) => {
                assert!(
                    barrier.checkpoint > execution.channels[channel].last_barrier,
                    "barriers out of order on a channel"
                );
                execution.channels[channel].last_barrier = barrier.checkpoint;
                self.on_barrier(execution, index, input, barrier)
            }
        }
    }

    pub(super) fn step_source(
        &mut self,
        execution: &mut Execution,
        index: usize,
    ) -> Result<(), Failure> {
        let task = &mut execution.tasks[index];
        let Body::Source(source) = &mut task.body else {
            unreachable!("checked by the caller")
        };
        if let Some(reader) = source.reader.as_mut() {
            reader.ensure_open(&task.name, &source.positions)?;
            let input = SourceInput::new(&reader.lengths);
            let Some((partition, offset)) = guarded(&task.name, || reader.source.poll(&input))?
            else {
                reader.finished = true;
                let event = Event::SourceFinished {
                    task: task.name.clone(),
                    unread: reader.unread(&source.positions),
                };
                self.record(event);
                self.marks_after_record(execution, index, true);
                return Ok(());
            };
            reader.check_named(partition, offset).map_err(|error| {
                let problem = error.to_string();
                Failure::new(
                    &task.name,
                    FailureCause::SourceContract {
                        checkpoint: None,
                        problem,
                    },
                )
            })?;
            let record = self.input.partitions()[partition as usize][offset as usize].clone();
            // Where the reader stands now, even if it went back: what it emits is judged, not
            // how it moves.
            source.positions.insert(partition, offset + 1);
            self.emit(execution, index, record);
            self.marks_after_record(execution, index, false);
            return Ok(());
        }
        let count = source.partitions.len();
        let partitions = self.input.partitions();
        let slot = (0..count)
            .map(|i| (source.cursor + i) % count)
            .find(|&i| {
                source.positions[&source.partitions[i]]
                    < partitions[source.partitions[i] as usize].len() as u64
            })
            .expect("a runnable source has input left");
        let partition = source.partitions[slot];
        let offset = source.positions[&partition];
        let record = partitions[partition as usize][offset as usize].clone();
        source.positions.insert(partition, offset + 1);
        source.cursor = (slot + 1) % count;
        self.emit(execution, index, record);
        // Only a job with event time needs to know (it scans the subtask's partitions).
        let exhausted =
            self.job.source.watermarks.is_some() && self.source_exhausted(execution, index);
        self.marks_after_record(execution, index, exhausted);
        Ok(())
    }

    /// Source task `index` emits `record` (after the mark that it is active, if it was idle).
    fn emit(&mut self, execution: &mut Execution, index: usize, record: Record) {
        self.clock.advance_ms(self.job.source.emit_ms);
        let (partition, at) = (record.origin.partition, record.timestamp_ms);
        self.marks_before_record(execution, index, partition, at);
        let task = &execution.tasks[index];
        let event = Event::RecordEmitted {
            task: task.name.clone(),
            record: record.clone(),
        };
        self.record(event);
        self.route(execution, index, vec![record]);
    }

    pub(super) fn route(&mut self, execution: &mut Execution, task: usize, records: Vec<Record>) {
        let outputs = &execution.tasks[task].outputs;
        let max_parallelism = self.job.max_parallelism;
        for record in records {
            let channel = if outputs.forward {
                outputs.channels[0]
            } else {
                let group = record.key.key_group(max_parallelism);
                outputs.channels[usize::from(subtask_for_key_group(
                    max_parallelism,
                    outputs.channels.len() as u16,
                    group,
                ))]
            };
            execution.channels[channel]
                .queue
                .push_back(Element::Record(record));
        }
    }

    pub(super) fn process_record(
        &mut self,
        execution: &mut Execution,
        index: usize,
        record: Record,
    ) -> Result<(), Failure> {
        self.stats.records_processed += 1;
        match &execution.tasks[index].body {
            Body::Sink(_) => self.write_to_sink(execution, index, record),
            Body::Operator(_) => self.process_in_operator(execution, index, record),
            Body::Source(_) => unreachable!("sources have no inputs"),
        }
    }

    /// A sink task writes `record` to the external system.
    fn write_to_sink(
        &mut self,
        execution: &mut Execution,
        index: usize,
        record: Record,
    ) -> Result<(), Failure> {
        let task = &mut execution.tasks[index];
        let Body::Sink(sink) = &mut task.body else {
            unreachable!("process_record sends only sink tasks here")
        };
        let name = task.name.clone();
        let written = Event::RecordWritten {
            task: name.clone(),
            record: record.clone(),
        };
        let (user, store) = (self.sink_factory.is_some(), &mut self.store);
        let events = guarded_if(user, &name, || sink.write(record, store))?.map_err(|e| {
            Failure::new(
                &name,
                FailureCause::SinkWrite {
                    error: e.to_string(),
                },
            )
        })?;
        // What the write did to transactions (beginning one) came before the record was
        // written.
        for event in events {
            self.record(Event::Txn {
                task: name.clone(),
                event,
            });
        }
        self.record(written);
        Ok(())
    }

    /// An operator task processes `record` (a fault may fire before it) and routes what it
    /// emits. The operator runs under the supervisor: its panic fails the task, as in Flink.
    fn process_in_operator(
        &mut self,
        execution: &mut Execution,
        index: usize,
        record: Record,
    ) -> Result<(), Failure> {
        // A side output passes the later stages untouched, on its way to the sink.
        if record.side.is_some() {
            self.route(execution, index, vec![record]);
            return Ok(());
        }
        let attempt = execution.attempt;
        let max_parallelism = self.job.max_parallelism;
        let task = &mut execution.tasks[index];
        let Body::Operator(op) = &mut task.body else {
            unreachable!("process_record sends only operator tasks here")
        };
        let name = task.name.clone();
        op.processed += 1;
        let job = self.job;
        let point = FaultPoint::Record {
            stage: &job.stages[task.stage - 1].name,
            subtask: task.subtask,
            attempt,
            record_index: op.processed,
            record: &record,
        };
        if let Some(action) = self.fault(&point) {
            return Err(Failure::from_action(&name, action));
        }
        let key = record.key.clone();
        let group = key.key_group(max_parallelism);
        let processed = record.clone();
        let mut out = Vec::new();
        // The record is handled once its processing time has passed: the callback sees the
        // clock its event is stamped with, which the oracle feeds a model of state TTL.
        self.clock.advance_ms(op.processing_ms);
        let (at_ms, watermark_ms, now_ms) = (
            record.timestamp_ms,
            task.valve.current(),
            self.clock.now_ms(),
        );
        let keyed = op.backend.as_deref_mut().map(|backend| {
            assert!(
                backend.key_groups().contains(group),
                "{name}: key {key:?} (group {group}) routed outside {}",
                backend.key_groups()
            );
            KeyedContext::new(backend, group, key.as_bytes()).at_time(at_ms, watermark_ms, now_ms)
        });
        let mut ctx = OperatorContext::new(attempt, task.subtask, keyed).at(watermark_ms, now_ms);
        // Every operator runs supervised, built-in ones too: a panicking map is a task failure
        // the restart strategy handles, as in Flink.
        let result = guarded(&name, || op.op.process(record, &mut ctx, &mut out));
        for change in ctx.take_timer_changes() {
            op.timers.apply(&key, &change);
        }
        result?.map_err(|error| {
            Failure::new(
                &name,
                FailureCause::Operator {
                    error: error.to_string(),
                },
            )
        })?;
        self.record(Event::RecordProcessed {
            task: name,
            record: processed,
            outputs: out.iter().map(Emission::of).collect(),
        });
        self.route(execution, index, out);
        Ok(())
    }
}
