//! Building an attempt: a task for every subtask of every stage — sources with their
//! partitions, operators with their state backends, sinks — and the channels between them.
//! Restoring state into them is `restore.rs`'s.

use std::collections::VecDeque;

use super::task::*;
use super::Runtime;
use crate::job::keygroup::key_group_range;
use crate::job::sink::{PrintSink, Sink, TwoPhaseCommitSink};
use crate::job::spec::SinkKind;
use crate::job::watermark::{SourceWatermarks, Valve};
use crate::job::{operator, user, OperatorSpec};
use crate::state::timers::TimerQueue;
use crate::state::{BackendContext, KeyGroupRange, StateError};
use crate::trace::{Event, FailureCause};

impl Runtime<'_> {
    /// Builds every task and channel of attempt `attempt`, with nothing restored yet.
    pub(super) fn build_execution(&mut self, attempt: u32) -> Result<Execution, Failure> {
        let names = self.job.stage_names();
        let parallelisms = self.job.stage_parallelisms();
        let mut tasks = Vec::new();
        let mut stage_tasks = Vec::new();
        for (stage, (name, &parallelism)) in names.iter().zip(&parallelisms).enumerate() {
            let first = tasks.len();
            for subtask in 0..parallelism {
                tasks.push(self.build_task(attempt, stage, name, parallelism, subtask)?);
            }
            stage_tasks.push(first..tasks.len());
        }
        let channels = self.wire(&mut tasks, &stage_tasks);
        for task in &mut tasks {
            task.valve = Valve::new(task.inputs.len());
        }
        let execution = Execution {
            attempt,
            tasks,
            channels,
            stage_tasks,
            notifications: VecDeque::new(),
            delayed: Vec::new(),
        };
        self.record(Event::AttemptStarted {
            attempt,
            tasks: execution.tasks.len(),
            channels: execution.channels.len(),
        });
        Ok(execution)
    }

    /// Subtask `subtask` of stage `stage`, named `name[subtask]`.
    fn build_task(
        &self,
        attempt: u32,
        stage: usize,
        name: &str,
        parallelism: u16,
        subtask: u16,
    ) -> Result<Task, Failure> {
        let job = self.job;
        let keyed = stage >= 1 && stage <= job.stages.len() && job.stages[stage - 1].op.is_keyed();
        let key_groups = if keyed {
            key_group_range(job.max_parallelism, parallelism, subtask)
        } else {
            KeyGroupRange {
                start: 0,
                end: job.max_parallelism - 1,
            }
        };
        let task_name = crate::job::task_name(name, subtask);
        let body = if stage == 0 {
            Body::Source(self.build_source(parallelism, subtask))
        } else if stage == job.stages.len() + 1 {
            Body::Sink(self.build_sink(subtask))
        } else {
            let context = keyed.then(|| BackendContext {
                task_name: format!("{name}-{subtask}"),
                instance: format!("a{attempt}"),
                key_groups,
                working_dir: self
                    .work_dir
                    .join(format!("attempt-{attempt}"))
                    .join(format!("{name}-{subtask}")),
                created_ms: self.clock.now_ms(),
            });
            self.build_operator(stage, subtask, context)
                .map_err(|error| {
                    let error = error.to_string();
                    Failure::new(&task_name, FailureCause::Backend { error })
                })?
        };
        Ok(Task {
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
            capture: None,
            recovered: VecDeque::new(),
            notified_up_to: 0,
            valve: Valve::new(0),
            body,
        })
    }

    /// A source subtask: the partitions it reads (round robin over subtasks), from offset 0
    /// until a restore says otherwise, with a user's reader if one is plugged in.
    fn build_source(&self, parallelism: u16, subtask: u16) -> SourceTask {
        let partitions: Vec<u32> = (0..self.job.source.partition_count())
            .filter(|p| p % u32::from(parallelism) == u32::from(subtask))
            .collect();
        let positions = partitions.iter().map(|p| (*p, 0)).collect();
        let reader = self.source_factory.map(|factory| UserReader {
            source: factory(subtask),
            lengths: partitions
                .iter()
                .map(|p| (*p, self.input.partitions()[*p as usize].len() as u64))
                .collect(),
            opened: false,
            finished: false,
        });
        let now_ms = self.clock.now_ms();
        let watermarks = (self.job.source.watermarks.as_ref())
            .map(|spec| SourceWatermarks::new(spec, &partitions, now_ms));
        SourceTask {
            partitions,
            positions,
            cursor: 0,
            reader,
            watermarks,
        }
    }

    /// A sink subtask: a user's, or the one the job names.
    fn build_sink(&self, subtask: u16) -> Box<dyn Sink> {
        match (self.sink_factory, self.job.sink.kind) {
            (Some(factory), _) => factory(subtask),
            (None, SinkKind::TwoPhaseCommit) => Box::new(TwoPhaseCommitSink::new(subtask)),
            (None, SinkKind::Print) => Box::new(PrintSink),
        }
    }

    /// An operator subtask of stage `stage`, with a state backend made in `context` if keyed;
    /// the error is the backend's.
    fn build_operator(
        &self,
        stage: usize,
        subtask: u16,
        context: Option<BackendContext>,
    ) -> Result<Body, StateError> {
        let spec = &self.job.stages[stage - 1];
        let backend = match context {
            Some(context) => Some(self.backends.create(context)?),
            None => None,
        };
        let op = match &spec.op {
            OperatorSpec::User { name, .. } => match user::find(self.user_operators, name) {
                Some(user) => (user.build)(subtask),
                None => operator::build(&spec.op),
            },
            window if window.window_shape().is_some() => match self.window_factory {
                Some(factory) => factory(window, subtask),
                None => operator::build(window),
            },
            built_in => operator::build(built_in),
        };
        Ok(Body::Operator(OperatorTask {
            op,
            backend,
            timers: TimerQueue::default(),
            processing_ms: spec.processing_ms,
            processed: 0,
            fired: 0,
            advances: 0,
        }))
    }

    /// Wires the channels: forward edges pair subtasks by index; other edges connect every
    /// upstream subtask to every downstream one, in subtask order.
    fn wire(&self, tasks: &mut [Task], stage_tasks: &[std::ops::Range<usize>]) -> Vec<Channel> {
        let mut channels = Vec::new();
        for downstream in 1..stage_tasks.len() {
            let forward = self.job.edge_is_forward(downstream);
            for up in stage_tasks[downstream - 1].clone() {
                tasks[up].outputs.forward = forward;
                for down in stage_tasks[downstream].clone() {
                    if forward && tasks[up].subtask != tasks[down].subtask {
                        continue;
                    }
                    channels.push(Channel::new(up, down, forward));
                    tasks[up].outputs.channels.push(channels.len() - 1);
                    tasks[down].inputs.push(channels.len() - 1);
                }
            }
        }
        channels
    }
}
