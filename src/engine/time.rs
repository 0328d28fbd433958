//! Watermarks through the tasks: a source's generator runs as it emits (an idle subtask turns
//! active before its record goes out, the periodic emit after it, the end of input once all it
//! reads is out); an operator or sink passes each mark it takes through its valve, and sends on
//! what the valve outputs. Marks travel every output channel, like barriers, behind the records
//! sent before them; nothing of them is checkpointed (see `job::watermark`).

use super::task::*;
use super::Runtime;
use crate::job::watermark::Mark;
use crate::trace::Event;

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

    /// Task `index` took `mark` from input `input`.
    pub(super) fn on_mark(
        &mut self,
        execution: &mut Execution,
        index: usize,
        input: usize,
        mark: Mark,
    ) {
        let marks = execution.tasks[index].valve.on_mark(input, mark);
        self.send_marks(execution, index, marks);
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
