//! Time through the tasks: watermarks and keyed timers.
//!
//! Watermarks: a source's generator runs as it emits (an idle subtask turns active before its
//! record goes out, the periodic emit after it, the end of input once all it reads is out); an
//! operator or sink passes each mark it takes through its valve and sends on what the valve
//! outputs. Marks travel every output channel, like barriers, behind the records sent before
//! them; nothing of them is checkpointed (see `job::watermark`).
//!
//! Timers: an operator's event-time timers fire when its valve lets a watermark through,
//! before the watermark goes on; its processing-time timers fire at its next step once the
//! virtual clock passes them. Each firing clears the timer's cell and runs `on_timer` under
//! the supervisor.

use super::task::*;
use super::Runtime;
use crate::fault::FaultPoint;
use crate::job::operator::{fire_timer, TimerSite};
use crate::job::watermark::Mark;
use crate::job::Record;
use crate::state::timers::{TimeDomain, Timer};
use crate::trace::{Emission, Event, FailureCause};

impl Runtime<'_> {
    /// Source task `index` is about to emit a record of `partition` with `timestamp_ms`.
    pub(super) fn marks_before_record(
        &mut self,
        execution: &mut Execution,
        index: usize,
        partition: u32,
        timestamp_ms: Option<i64>,
    ) {
        let now_ms = self.clock.now_ms();
        let Some(watermarks) = source_watermarks(execution, index) else {
            return;
        };
        let marks = watermarks.on_record(partition, timestamp_ms, now_ms);
        self.send_marks(execution, index, marks);
    }

    /// Source task `index` emitted a record: the periodic emit if one is due, and the end of
    /// input if `exhausted`.
    pub(super) fn marks_after_record(
        &mut self,
        execution: &mut Execution,
        index: usize,
        exhausted: bool,
    ) {
        let now_ms = self.clock.now_ms();
        let Some(watermarks) = source_watermarks(execution, index) else {
            return;
        };
        let mut marks = watermarks.on_periodic(now_ms);
        if exhausted {
            marks.extend(watermarks.end_of_input());
        }
        self.send_marks(execution, index, marks);
    }

    /// At the start of an attempt, every source with nothing left to read sends the end of
    /// input at once: a restored source that already read everything still releases the
    /// event time downstream.
    pub(super) fn end_of_input_at_start(&mut self, execution: &mut Execution) {
        for index in 0..execution.tasks.len() {
            if self.source_exhausted(execution, index) {
                if let Some(watermarks) = source_watermarks(execution, index) {
                    let marks = watermarks.end_of_input();
                    self.send_marks(execution, index, marks);
                }
            }
        }
    }

    /// Task `index` took `mark` from input `input`: a watermark its valve lets through first
    /// fires the event-time timers it passed, whose outputs go before it.
    pub(super) fn on_mark(
        &mut self,
        execution: &mut Execution,
        index: usize,
        input: usize,
        mark: Mark,
    ) -> Result<(), Failure> {
        let marks = execution.tasks[index].valve.on_mark(input, mark);
        for mark in marks {
            if let Mark::At(watermark) = mark {
                self.watermark_advanced(execution, index, watermark)?;
                self.fire_due(execution, index, TimeDomain::EventTime, watermark)?;
            }
            self.send_marks(execution, index, vec![mark]);
        }
        Ok(())
    }

    /// An operator task's watermark advanced to `watermark_ms`: the fault point before the
    /// timers it makes due fire.
    fn watermark_advanced(
        &mut self,
        execution: &mut Execution,
        index: usize,
        watermark_ms: i64,
    ) -> Result<(), Failure> {
        let (job, attempt) = (self.job, execution.attempt);
        let task = &mut execution.tasks[index];
        let Body::Operator(op) = &mut task.body else {
            return Ok(());
        };
        op.advances += 1;
        let point = FaultPoint::WatermarkAdvanced {
            stage: &job.stages[task.stage - 1].name,
            subtask: task.subtask,
            attempt,
            advance: op.advances,
            watermark_ms,
        };
        match self.fault(&point) {
            Some(action) => Err(Failure::from_action(&task.name, action)),
            None => Ok(()),
        }
    }

    /// Whether operator task `index` has a processing-time timer due on the virtual clock.
    /// Processing time is quiesced once a stop-with-savepoint or the final checkpoint is under
    /// way (as Flink quiesces it at the end of input): what a timer did then would be in no
    /// snapshot, and would only fire if some fault happened to move the clock on.
    pub(super) fn processing_timer_due(&self, execution: &Execution, index: usize) -> bool {
        // The queue first: this runs for every task at every step, and most have no timer.
        let due = match &execution.tasks[index].body {
            Body::Operator(op) => op
                .timers
                .is_due(TimeDomain::ProcessingTime, self.now_as_time()),
            _ => false,
        };
        let coordinator = &self.coordinator;
        due && !(coordinator.stopping()
            || coordinator.final_completed()
            || coordinator.pending().any(|p| p.is_final))
    }

    /// Fires every processing-time timer of task `index` due on the virtual clock: those that
    /// fell due while the job was down fire once, at the first step after the restore.
    pub(super) fn fire_processing_timers(
        &mut self,
        execution: &mut Execution,
        index: usize,
    ) -> Result<(), Failure> {
        let now_ms = self.now_as_time();
        self.fire_due(execution, index, TimeDomain::ProcessingTime, now_ms)
    }

    /// The virtual clock as a timer timestamp.
    fn now_as_time(&self) -> i64 {
        i64::try_from(self.clock.now_ms()).unwrap_or(i64::MAX)
    }

    /// Fires task `index`'s timers of `domain` due at `time_ms`, in order (timestamp, key,
    /// namespace), including those a callback registers at or before `time_ms` (as Flink's
    /// loop re-peeks its queue). A callback that keeps registering due timers runs into the
    /// case's event bound: the loop stops there, and the attempt's next bound check ends the
    /// run as a resource violation.
    fn fire_due(
        &mut self,
        execution: &mut Execution,
        index: usize,
        domain: TimeDomain,
        time_ms: i64,
    ) -> Result<(), Failure> {
        while self.events <= self.config.limits.events_max {
            let Some((timer, outputs)) = self.fire_one(execution, index, domain, time_ms)? else {
                return Ok(());
            };
            let task = execution.tasks[index].name.clone();
            let emitted = outputs.iter().map(Emission::of).collect();
            self.record(Event::TimerFired {
                task,
                timer,
                outputs: emitted,
            });
            self.route(execution, index, outputs);
            self.timer_fired(execution, index)?;
        }
        Ok(())
    }

    /// Operator task `index` fired a timer and sent its output: the fault point before the
    /// next one.
    fn timer_fired(&mut self, execution: &Execution, index: usize) -> Result<(), Failure> {
        let task = &execution.tasks[index];
        let Body::Operator(op) = &task.body else {
            return Ok(());
        };
        let point = FaultPoint::TimerFired {
            stage: &self.job.stages[task.stage - 1].name,
            subtask: task.subtask,
            attempt: execution.attempt,
            firing: op.fired,
        };
        match self.fault(&point) {
            Some(action) => Err(Failure::from_action(&task.name, action)),
            None => Ok(()),
        }
    }

    /// Pops the first due timer of task `index`, clears its cell and runs the operator's
    /// `on_timer` for it, supervised; `None` when none is due.
    fn fire_one(
        &mut self,
        execution: &mut Execution,
        index: usize,
        domain: TimeDomain,
        time_ms: i64,
    ) -> Result<Option<(Timer, Vec<Record>)>, Failure> {
        let (attempt, now_ms) = (execution.attempt, self.clock.now_ms());
        let max_parallelism = self.job.max_parallelism;
        let task = &mut execution.tasks[index];
        let (name, subtask, watermark) = (task.name.clone(), task.subtask, task.valve.current());
        let Body::Operator(op) = &mut task.body else {
            return Ok(None);
        };
        let Some(timer) = op.timers.pop_due(domain, time_ms) else {
            return Ok(None);
        };
        op.fired += 1;
        let point = FaultPoint::Timer {
            stage: &self.job.stages[task.stage - 1].name,
            subtask,
            attempt,
            firing: op.fired,
            timer: &timer,
        };
        if let Some(action) = self.fault(&point) {
            return Err(Failure::from_action(&name, action));
        }
        let backend = op
            .backend
            .as_deref_mut()
            .expect("only a keyed operator's backend holds timers");
        let site = TimerSite {
            attempt,
            subtask,
            watermark_ms: watermark,
            now_ms,
            max_parallelism,
        };
        let mut out = Vec::new();
        let fired = guarded(&name, || {
            fire_timer(
                op.op.as_mut(),
                backend,
                &mut op.timers,
                &timer,
                site,
                &mut out,
            )
        })?;
        let result = fired.map_err(|e| {
            let error = e.to_string();
            Failure::new(&name, FailureCause::Backend { error })
        })?;
        result.map_err(|error| {
            let error = error.to_string();
            Failure::new(&name, FailureCause::Operator { error })
        })?;
        Ok(Some((timer, out)))
    }

    /// Records each of `marks` as task `index`'s and puts it on every output channel.
    fn send_marks(&mut self, execution: &mut Execution, index: usize, marks: Vec<Mark>) {
        for mark in marks {
            let task = execution.tasks[index].name.clone();
            self.record(Event::Watermark { task, mark });
            for &channel in &execution.tasks[index].outputs.channels {
                // Like barriers, marks bypass back-pressure.
                execution.channels[channel]
                    .queue
                    .push_back(Element::Mark(mark));
            }
        }
    }
}

/// The generator of source task `index`, if it is a source of a job with event time.
fn source_watermarks(
    execution: &mut Execution,
    index: usize,
) -> Option<&mut crate::job::watermark::SourceWatermarks> {
    match &mut execution.tasks[index].body {
        Body::Source(source) => source.watermarks.as_mut(),
        _ => None,
    }
}
