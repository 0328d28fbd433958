//! One attempt: built and restored, then the loop — due notifications delivered, the
//! coordinator's timers, one scheduler step of one runnable task — until the job finishes,
//! stops with a savepoint, fails, or a bound ends the run.

use super::task::*;
use super::Runtime;
use crate::fault::FaultPoint;
use crate::sim::StepLimit;
use crate::state::timers::TimerQueue;
use crate::trace::{Event, FailureCause, Resource};

/// How an attempt ended.
pub(super) enum AttemptEnd {
    Finished,
    Stopped(String),
    /// Cancelled at this checkpoint's completion.
    Cancelled(u64),
    Failed(Failure),
}

/// A bound of the case ended the run.
pub(super) enum Halt {
    /// The step bound.
    Steps(StepLimit),
    /// A resource grew past its bound.
    Resource { resource: Resource, limit: u64 },
}

impl From<StepLimit> for Halt {
    fn from(limit: StepLimit) -> Self {
        Halt::Steps(limit)
    }
}

/// What the loop does when no task can run.
enum Idle {
    /// Go round again.
    Continue,
    /// The attempt is over.
    End(AttemptEnd),
}

impl Runtime<'_> {
    /// Builds every task and channel of an attempt and restores it (from the latest snapshot,
    /// unless it is the job's first attempt), then opens the operators.
    pub(super) fn start_attempt(&mut self, attempt: u32) -> Result<Execution, Failure> {
        let target = if attempt == 0 && self.config.initial_snapshot.is_none() {
            RestoreTarget::Fresh
        } else {
            RestoreTarget::Latest
        };
        self.cancel_at = None;
        let mut execution = self.new_execution(attempt, target)?;
        self.end_of_input_at_start(&mut execution);
        for task in &mut execution.tasks {
            if let Body::Operator(op) = &mut task.body {
                let forgotten = self.config.sabotage.timers_forgotten_on_restore;
                if let Some(backend) = op.backend.as_ref().filter(|_| !forgotten) {
                    op.timers = TimerQueue::from_backend(backend.as_ref()).map_err(|e| {
                        let error = e.to_string();
                        Failure::new(&task.name, FailureCause::Backend { error })
                    })?;
                }
                op.op.open(backend_mut(&mut op.backend)).map_err(|e| {
                    let error = e.to_string();
                    Failure::new(&task.name, FailureCause::Open { error })
                })?;
            }
        }
        Ok(execution)
    }

    /// A new attempt's tasks and channels, restored from `target`. A new attempt is a new
    /// process in Flink's sense: nothing of the old upload hand-off or pending checkpoints
    /// survives.
    pub(super) fn new_execution(
        &mut self,
        attempt: u32,
        target: RestoreTarget,
    ) -> Result<Execution, Failure> {
        self.uploads = crate::checkpoint::upload::Uploads::new();
        let mut execution = self.build_execution(attempt)?;
        self.coordinator.start_attempt(self.clock.now_ms());
        if target != RestoreTarget::Fresh {
            self.restore(&mut execution, target)?;
        }
        Ok(execution)
    }

    /// Restores checkpoint `checkpoint_id` into freshly built tasks and returns the restored
    /// source positions and keyed state, without running anything. Sinks are not restored (that
    /// would commit transactions in the external system). For tests and `inspect`.
    pub fn restore_for_inspection(
        mut self,
        checkpoint_id: u64,
    ) -> Result<super::RestoreRecord, super::RunError> {
        self.new_execution(1, RestoreTarget::Inspect(checkpoint_id))
            .map_err(|f| super::RunError::Restore(format!("{}: {}", f.task, f.cause)))?;
        let trace = self.trace.take();
        super::RunOutcome::restores_in(&trace)
            .pop()
            .ok_or_else(|| super::RunError::Restore("nothing was restored".into()))
    }

    /// Runs an attempt until it ends, or a bound ends the run.
    pub(super) fn run_attempt(&mut self, execution: &mut Execution) -> Result<AttemptEnd, Halt> {
        loop {
            // A machine crash in any storage operation ends the attempt as a kill.
            if let Some(crash) = self.storage.crash() {
                let crash = crash.clone();
                return Ok(AttemptEnd::Failed(Failure::from_action("process", crash)));
            }
            // Cancelled right after the completion, before anything else can happen: a fault in
            // between would make the two kill modes disagree on whether the cancel came.
            if let Some(checkpoint) = self.cancel_at {
                return Ok(AttemptEnd::Cancelled(checkpoint));
            }
            self.within_bounds(execution)?;
            execution.deliver_due(self.clock.now_ms());
            if let Err(failure) = self.deliver_notifications(execution) {
                return Ok(AttemptEnd::Failed(failure));
            }
            if let Some(idle) = self.stopped(execution)? {
                match idle {
                    Idle::Continue => continue,
                    Idle::End(end) => return Ok(end),
                }
            }
            if let Err(failure) = self.coordinate(execution) {
                return Ok(AttemptEnd::Failed(failure));
            }
            let runnable = self.runnable(execution);
            if runnable.is_empty() {
                match self.idle(execution)? {
                    Idle::Continue => continue,
                    Idle::End(end) => return Ok(end),
                }
            }
            if let Some(failure) = self.step(execution, &runnable)? {
                return Ok(AttemptEnd::Failed(failure));
            }
        }
    }

    /// One scheduler step: a kill may fire before it, else one runnable task takes it.
    fn step(
        &mut self,
        execution: &mut Execution,
        runnable: &[usize],
    ) -> Result<Option<Failure>, Halt> {
        let step = self.scheduler.tick()?;
        assert!(
            self.config.sabotage.broken_invariant_at_step != Some(step),
            "engine invariant broken on purpose at step {step} (test sabotage)"
        );
        if let Some(action) = self.fault(&FaultPoint::Step { step }) {
            return Ok(Some(Failure::from_action("process", action)));
        }
        let task = self
            .scheduler
            .pick(runnable)
            .expect("runnable is not empty");
        Ok(self.step_task(execution, task).err())
    }

    /// Ends the run when the case grows past a bound: events recorded, records in flight, or
    /// transactions neither committed nor aborted.
    fn within_bounds(&self, execution: &Execution) -> Result<(), Halt> {
        let limits = &self.config.limits;
        let in_flight: usize = execution.channels.iter().map(|c| c.queue.len()).sum();
        let exceeded = [
            (Resource::Events, self.events, limits.events_max),
            (
                Resource::RecordsInFlight,
                in_flight as u64,
                limits.records_in_flight_max,
            ),
            (
                Resource::OpenTransactions,
                self.store.open_transactions() as u64,
                limits.open_transactions_max,
            ),
        ]
        .into_iter()
        .find(|(_, used, limit)| used > limit);
        match exceeded {
            Some((resource, _, limit)) => Err(Halt::Resource { resource, limit }),
            None => Ok(()),
        }
    }

    /// After a stop-with-savepoint completed: the attempt ends once its notifications are out
    /// and every sink settled; a lost one is sent again.
    fn stopped(&mut self, execution: &mut Execution) -> Result<Option<Idle>, Halt> {
        let Some((savepoint, id)) = self.coordinator.stopped().cloned() else {
            return Ok(None);
        };
        if !execution.notifications.is_empty() || !execution.delayed.is_empty() {
            return Ok(None);
        }
        if execution.sinks_settled() {
            return Ok(Some(Idle::End(AttemptEnd::Stopped(savepoint))));
        }
        self.notify_again(execution, id)?;
        Ok(Some(Idle::Continue))
    }

    /// No task can run: wait for a delayed notification, finish, or trigger the final
    /// checkpoint at once.
    fn idle(&mut self, execution: &mut Execution) -> Result<Idle, Halt> {
        let drained = execution.channels.iter().all(|c| c.queue.is_empty())
            && execution.tasks.iter().all(|t| t.recovered.is_empty());
        assert!(
            drained,
            "deadlock: no runnable task but records in flight (seed {})",
            self.config.seed
        );
        assert!(
            self.coordinator.stopping() || self.sources_exhausted(execution),
            "sources idle with input left"
        );
        if let Some(due) = execution.delayed.iter().map(|(at, _, _)| *at).min() {
            // Nothing runs until a delayed notification arrives; the wait is a step, so the step
            // bound bounds it too.
            self.scheduler.tick()?;
            self.clock.advance_to_ms(due);
            return Ok(Idle::Continue);
        }
        if self.coordinator.final_completed() && execution.notifications.is_empty() {
            if execution.sinks_settled() {
                return Ok(Idle::End(AttemptEnd::Finished));
            }
            let latest = self
                .coordinator
                .latest_retained()
                .expect("a final checkpoint completed");
            self.notify_again(execution, latest)?;
            return Ok(Idle::Continue);
        }
        // Everything is drained: the final checkpoint runs now, not at the interval.
        assert!(
            self.coordinator.pending().next().is_none() && !self.coordinator.stopping(),
            "checkpoint pending with nothing in flight (seed {})",
            self.config.seed
        );
        let at_ms = self.coordinator.trigger_now(self.clock.now_ms());
        if at_ms > self.clock.now_ms() {
            // Nothing else can happen until the pause after the last completion is over.
            self.scheduler.tick()?;
            self.clock.advance_to_ms(at_ms);
        }
        Ok(Idle::Continue)
    }

    /// A lost notification left transactions pending: notifications are best effort, so the
    /// coordinator sends `checkpoint`'s completion to every task again. Each round is a step,
    /// so a sink that never settles runs into the step bound rather than forever.
    fn notify_again(&mut self, execution: &mut Execution, checkpoint: u64) -> Result<(), Halt> {
        self.scheduler.tick()?;
        self.record(Event::NotifyAgain { checkpoint });
        execution
            .notifications
            .extend((0..execution.tasks.len()).map(|task| (checkpoint, task)));
        Ok(())
    }

    /// Whether every source has emitted all it reads.
    pub(super) fn sources_exhausted(&self, execution: &Execution) -> bool {
        (0..execution.tasks.len()).all(|index| {
            !matches!(execution.tasks[index].body, Body::Source(_))
                || self.source_exhausted(execution, index)
        })
    }

    /// Whether task `index` is a source that has emitted all it reads.
    pub(super) fn source_exhausted(&self, execution: &Execution, index: usize) -> bool {
        match &execution.tasks[index].body {
            Body::Source(SourceTask {
                reader: Some(reader),
                ..
            }) => reader.finished,
            Body::Source(source) => source
                .partitions
                .iter()
                .all(|p| source.positions[p] >= self.input.partitions()[*p as usize].len() as u64),
            _ => false,
        }
    }

    /// The tasks that can take a step now, in task order.
    fn runnable(&self, execution: &Execution) -> Vec<usize> {
        let capacity = self.config.channel_capacity;
        // A stop-with-savepoint's barrier is out: sources emit nothing more.
        let stopping = self.coordinator.stopping();
        let mut runnable = Vec::new();
        for (index, task) in execution.tasks.iter().enumerate() {
            let outputs_free = task
                .outputs
                .channels
                .iter()
                .all(|c| execution.channels[*c].queue.len() < capacity);
            let ready = match &task.body {
                Body::Source(SourceTask {
                    reader: Some(reader),
                    ..
                }) => !stopping && outputs_free && !reader.finished,
                Body::Source(source) => {
                    !stopping
                        && outputs_free
                        && source.partitions.iter().any(|p| {
                            source.positions[p] < self.input.partitions()[*p as usize].len() as u64
                        })
                }
                // An unaligned barrier is taken even by a back-pressured task: it needs no room
                // on the outputs, and waiting for room is what it exists to avoid.
                _ if !execution.priority_inputs(index).is_empty() => true,
                _ => {
                    outputs_free
                        && (self.processing_timer_due(execution, index)
                            || !task.recovered.is_empty()
                            || task.inputs.iter().any(|c| {
                                !execution.channels[*c].blocked
                                    && !execution.channels[*c].queue.is_empty()
                            }))
                }
            };
            if ready {
                runnable.push(index);
            }
        }
        runnable
    }
}

impl Execution {
    /// The open inputs of task `index` whose next element is an unaligned barrier: none while
    /// it still holds records a restore handed back, since a snapshot then would hold neither
    /// them nor their effect (FLINK-20654; Flink declines checkpoints until channel state is
    /// consumed).
    pub(super) fn priority_inputs(&self, index: usize) -> Vec<usize> {
        if !self.tasks[index].recovered.is_empty() {
            return Vec::new();
        }
        let inputs = self.tasks[index].inputs.iter().enumerate();
        inputs
            .filter(|(_, c)| {
                let channel = &self.channels[**c];
                !channel.blocked
                    && matches!(
                        channel.queue.front(),
                        Some(Element::Barrier(Barrier {
                            unaligned: true,
                            ..
                        }))
                    )
            })
            .map(|(input, _)| input)
            .collect()
    }

    /// Queues the delayed notifications that are due at `now_ms`.
    fn deliver_due(&mut self, now_ms: u64) {
        let (due, later): (Vec<_>, Vec<_>) =
            self.delayed.drain(..).partition(|(at, _, _)| *at <= now_ms);
        self.delayed = later;
        self.notifications.extend(
            due.into_iter()
                .map(|(_, checkpoint, task)| (checkpoint, task)),
        );
    }

    /// Whether no sink holds a pre-committed transaction waiting for a notification.
    fn sinks_settled(&self) -> bool {
        self.tasks.iter().all(|task| match &task.body {
            Body::Sink(sink) => sink.pending_transactions() == 0,
            _ => true,
        })
    }

    /// Where every source partition stands.
    pub(super) fn source_positions(&self, partitions: usize) -> crate::job::Positions {
        let mut positions = crate::job::Positions::start(partitions);
        for task in &self.tasks {
            if let Body::Source(source) = &task.body {
                for (partition, offset) in &source.positions {
                    positions.0[*partition as usize] = *offset;
                }
            }
        }
        positions
    }
}
