//! Event-time watermarks as a job defines them: the source's bounded-out-of-orderness generator
//! with an idleness timeout, per partition on the virtual clock ([`SourceWatermarks`]), and the
//! valve an operator or sink combines its inputs' watermarks with ([`Valve`]). Both are plain
//! state machines; the engine carries their [`Mark`]s through channels like barriers, and the
//! oracle judges the marks it finds in the trace (`check::watermark`) without these types.
//!
//! They follow Flink's `BoundedOutOfOrdernessWatermarks`, `WatermarksWithIdleness` and
//! `StatusWatermarkValve`:
//!
//! - a partition's watermark is the largest timestamp it has emitted, less the bound, less
//!   1 ms (so a record exactly `bound` behind the largest is still on time);
//! - a partition is idle once strictly more than the timeout has passed since it last emitted,
//!   and leaves the subtask's minimum until it emits again;
//! - a valve outputs the minimum over its active, aligned inputs, only when it grows; a channel
//!   that comes back from idle rejoins the minimum once its watermark reaches the output; when
//!   every input is idle, the valve flushes the largest input watermark and goes idle itself.
//!
//! Watermarks are not checkpointed, as in Flink: after a restore every generator and valve
//! starts again at [`MIN_WATERMARK`], so right after a restore nothing is late.
//!
//! ```
//! use faultline::job::watermark::{Mark, SourceWatermarks, WatermarkSpec};
//!
//! let spec = WatermarkSpec { out_of_orderness_ms: 400, interval_ms: 10, idle_timeout_ms: Some(50) };
//! let mut marks = SourceWatermarks::new(&spec, &[0, 1], 0);
//! marks.on_record(0, Some(1_000), 1);
//! marks.on_record(1, Some(2_000), 2);
//! assert_eq!(marks.on_periodic(10), vec![Mark::At(599)]);
//! // Partition 0 falls silent; past the timeout only partition 1 holds the watermark back.
//! marks.on_record(1, Some(3_000), 40);
//! assert_eq!(marks.on_periodic(60), vec![Mark::At(2_599)]);
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The watermark before any: nothing is late yet (Flink's `Long.MIN_VALUE`).
pub const MIN_WATERMARK: i64 = i64::MIN;
/// The watermark at the end of the input: every event-time timer fires (Flink's
/// `Watermark.MAX_WATERMARK`).
pub const END_OF_INPUT: i64 = i64::MAX;

/// How the job's source makes watermarks: absent, the job has no event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatermarkSpec {
    /// How far a record may come behind the largest timestamp seen and still be on time.
    #[serde(default = "default_out_of_orderness_ms")]
    pub out_of_orderness_ms: i64,
    /// How often, in virtual time, the source looks at its partitions and emits.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// A partition that emits nothing for longer than this is idle (absent: never idle).
    #[serde(default)]
    pub idle_timeout_ms: Option<u64>,
}

fn default_out_of_orderness_ms() -> i64 {
    400
}

fn default_interval_ms() -> u64 {
    10
}

impl WatermarkSpec {
    /// What makes it unusable, if anything: a negative bound or a zero interval or timeout.
    pub fn problem(&self) -> Option<String> {
        if self.out_of_orderness_ms < 0 {
            return Some(format!(
                "out_of_orderness_ms {} is negative",
                self.out_of_orderness_ms
            ));
        }
        if self.interval_ms == 0 {
            return Some("interval_ms is 0".into());
        }
        (self.idle_timeout_ms == Some(0)).then(|| "idle_timeout_ms is 0".into())
    }
}

impl Default for WatermarkSpec {
    fn default() -> Self {
        Self {
            out_of_orderness_ms: default_out_of_orderness_ms(),
            interval_ms: default_interval_ms(),
            idle_timeout_ms: None,
        }
    }
}

/// What travels a channel about time: a watermark, or a change of the sender's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Mark {
    /// No record at or before this time (ms) is expected any more.
    At(i64),
    /// The sender is idle: leave it out of the minimum.
    Idle,
    /// The sender is active again.
    Active,
}

/// One partition as its subtask's generator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PartitionTime {
    /// The largest timestamp emitted, if any.
    max_ms: Option<i64>,
    /// The virtual time it last emitted (or the generator started).
    active_at_ms: u64,
}

/// A source subtask's watermark generator, over the partitions it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceWatermarks {
    spec: WatermarkSpec,
    partitions: BTreeMap<u32, PartitionTime>,
    emitted: i64,
    idle: bool,
    next_emit_ms: u64,
}

impl SourceWatermarks {
    /// A generator over `partitions`, started at virtual time `now_ms`.
    pub fn new(spec: &WatermarkSpec, partitions: &[u32], now_ms: u64) -> Self {
        let start = PartitionTime {
            max_ms: None,
            active_at_ms: now_ms,
        };
        Self {
            spec: *spec,
            partitions: partitions.iter().map(|p| (*p, start)).collect(),
            emitted: MIN_WATERMARK,
            idle: false,
            next_emit_ms: now_ms,
        }
    }

    /// The last watermark emitted.
    pub fn emitted(&self) -> i64 {
        self.emitted
    }

    /// `partition` emitted a record with `timestamp_ms` at `now_ms`: an idle subtask becomes
    /// active again, before the record goes out.
    pub fn on_record(
        &mut self,
        partition: u32,
        timestamp_ms: Option<i64>,
        now_ms: u64,
    ) -> Vec<Mark> {
        let time = self.partitions.entry(partition).or_insert(PartitionTime {
            max_ms: None,
            active_at_ms: now_ms,
        });
        time.active_at_ms = now_ms;
        if let Some(at) = timestamp_ms {
            time.max_ms = Some(time.max_ms.map_or(at, |max| max.max(at)));
        }
        if std::mem::take(&mut self.idle) {
            vec![Mark::Active]
        } else {
            Vec::new()
        }
    }

    /// The periodic emit, if one is due at `now_ms`: the new watermark if it grew, or `Idle`
    /// once every partition is idle.
    pub fn on_periodic(&mut self, now_ms: u64) -> Vec<Mark> {
        if now_ms < self.next_emit_ms || self.emitted == END_OF_INPUT {
            return Vec::new();
        }
        self.next_emit_ms = now_ms.saturating_add(self.spec.interval_ms);
        let bound = self.spec.out_of_orderness_ms;
        let active: Vec<i64> = self
            .partitions
            .values()
            .filter(|time| !self.is_idle(time, now_ms))
            .map(|time| {
                time.max_ms.map_or(MIN_WATERMARK, |max| {
                    max.saturating_sub(bound).saturating_sub(1)
                })
            })
            .collect();
        match active.iter().min() {
            None if !self.idle && !self.partitions.is_empty() => {
                self.idle = true;
                vec![Mark::Idle]
            }
            Some(&watermark) if watermark > self.emitted => {
                self.emitted = watermark;
                vec![Mark::At(watermark)]
            }
            _ => Vec::new(),
        }
    }

    /// Everything this subtask reads has been emitted: the end-of-input watermark, once.
    pub fn end_of_input(&mut self) -> Vec<Mark> {
        if self.emitted == END_OF_INPUT {
            return Vec::new();
        }
        self.emitted = END_OF_INPUT;
        let active = std::mem::take(&mut self.idle).then_some(Mark::Active);
        active.into_iter().chain([Mark::At(END_OF_INPUT)]).collect()
    }

    fn is_idle(&self, time: &PartitionTime, now_ms: u64) -> bool {
        self.spec
            .idle_timeout_ms
            .is_some_and(|timeout| now_ms.saturating_sub(time.active_at_ms) > timeout)
    }
}

/// One input channel of a valve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Input {
    watermark: i64,
    idle: bool,
    /// Counted in the minimum: false from a return from idle until its watermark reaches the
    /// output.
    aligned: bool,
}

/// How an operator or sink combines the watermarks of its inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Valve {
    inputs: Vec<Input>,
    output: i64,
    idle: bool,
}

impl Valve {
    /// A valve over `inputs` channels, all active at [`MIN_WATERMARK`].
    pub fn new(inputs: usize) -> Self {
        let input = Input {
            watermark: MIN_WATERMARK,
            idle: false,
            aligned: true,
        };
        Self {
            inputs: vec![input; inputs],
            output: MIN_WATERMARK,
            idle: false,
        }
    }

    /// The watermark it last output: what records and timers are judged against.
    pub fn current(&self) -> i64 {
        self.output
    }

    /// `mark` arrived on `input`: what the valve sends on, in order.
    pub fn on_mark(&mut self, input: usize, mark: Mark) -> Vec<Mark> {
        match mark {
            Mark::At(watermark) => self.on_watermark(input, watermark),
            Mark::Idle => self.on_idle(input),
            Mark::Active => self.on_active(input),
        }
    }

    fn on_watermark(&mut self, input: usize, watermark: i64) -> Vec<Mark> {
        // A watermark from an idle channel means it is active again (a sender marks that
        // first; this keeps the valve whole if one does not).
        let mut out = if self.inputs[input].idle {
            self.on_active(input)
        } else {
            Vec::new()
        };
        let output = self.output;
        let channel = &mut self.inputs[input];
        if watermark > channel.watermark {
            channel.watermark = watermark;
            if !channel.aligned && watermark >= output {
                channel.aligned = true;
            }
        }
        out.extend(self.advance());
        out
    }

    fn on_idle(&mut self, input: usize) -> Vec<Mark> {
        let channel = &mut self.inputs[input];
        channel.idle = true;
        channel.aligned = false;
        if self.inputs.iter().any(|c| !c.idle) {
            return self.advance().into_iter().collect();
        }
        let mut out = Vec::new();
        let flush = self.inputs.iter().map(|c| c.watermark).max();
        if let Some(flush) = flush.filter(|w| *w > self.output) {
            self.output = flush;
            out.push(Mark::At(flush));
        }
        if !std::mem::replace(&mut self.idle, true) {
            out.push(Mark::Idle);
        }
        out
    }

    fn on_active(&mut self, input: usize) -> Vec<Mark> {
        let output = self.output;
        let channel = &mut self.inputs[input];
        if !std::mem::replace(&mut channel.idle, false) {
            return Vec::new();
        }
        channel.aligned = channel.watermark >= output;
        if std::mem::replace(&mut self.idle, false) {
            vec![Mark::Active]
        } else {
            Vec::new()
        }
    }

    /// The minimum over active, aligned inputs, if it grew.
    fn advance(&mut self) -> Option<Mark> {
        let min = self
            .inputs
            .iter()
            .filter(|c| !c.idle && c.aligned)
            .map(|c| c.watermark)
            .min()?;
        (min > self.output).then(|| {
            self.output = min;
            Mark::At(min)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(idle_timeout_ms: Option<u64>) -> WatermarkSpec {
        WatermarkSpec {
            out_of_orderness_ms: 100,
            interval_ms: 10,
            idle_timeout_ms,
        }
    }

    #[test]
    fn an_unusable_spec_is_named() {
        let bad = |spec: WatermarkSpec| spec.problem().expect("refused");
        assert_eq!(
            bad(WatermarkSpec {
                out_of_orderness_ms: -1,
                ..spec(None)
            }),
            "out_of_orderness_ms -1 is negative"
        );
        assert_eq!(
            bad(WatermarkSpec {
                interval_ms: 0,
                ..spec(None)
            }),
            "interval_ms is 0"
        );
        assert_eq!(bad(spec(Some(0))), "idle_timeout_ms is 0");
        assert_eq!(spec(Some(1)).problem(), None);
    }

    #[test]
    fn a_record_exactly_the_bound_behind_is_still_on_time() {
        let mut marks = SourceWatermarks::new(&spec(None), &[0], 0);
        marks.on_record(0, Some(1_000), 0);
        // max − bound − 1: a record at 900 is after the watermark, so on time.
        assert_eq!(marks.on_periodic(0), vec![Mark::At(899)]);
    }

    #[test]
    fn emits_only_at_the_interval_and_only_when_it_grows() {
        let mut marks = SourceWatermarks::new(&spec(None), &[0], 0);
        marks.on_record(0, Some(1_000), 0);
        assert_eq!(marks.on_periodic(0), vec![Mark::At(899)]);
        marks.on_record(0, Some(2_000), 5);
        assert_eq!(marks.on_periodic(5), vec![], "not due before the interval");
        assert_eq!(marks.on_periodic(10), vec![Mark::At(1_899)]);
        marks.on_record(0, Some(1_500), 20);
        assert_eq!(
            marks.on_periodic(20),
            vec![],
            "a smaller timestamp does not lower it"
        );
    }

    #[test]
    fn a_partition_with_nothing_holds_the_watermark_until_it_is_idle() {
        let mut marks = SourceWatermarks::new(&spec(Some(50)), &[0, 1], 0);
        marks.on_record(0, Some(1_000), 10);
        assert_eq!(marks.on_periodic(10), vec![]);
        marks.on_record(0, Some(1_100), 50);
        assert_eq!(
            marks.on_periodic(50),
            vec![],
            "exactly the timeout is not idle yet"
        );
        marks.on_record(0, Some(1_200), 60);
        assert_eq!(marks.on_periodic(60), vec![Mark::At(1_099)]);
    }

    #[test]
    fn every_partition_idle_makes_the_subtask_idle_and_a_record_wakes_it() {
        let mut marks = SourceWatermarks::new(&spec(Some(50)), &[0], 0);
        marks.on_record(0, Some(1_000), 0);
        assert_eq!(marks.on_periodic(0), vec![Mark::At(899)]);
        assert_eq!(marks.on_periodic(51), vec![Mark::Idle]);
        assert_eq!(marks.on_periodic(70), vec![], "idle once");
        assert_eq!(marks.on_record(0, Some(1_050), 80), vec![Mark::Active]);
        assert_eq!(marks.end_of_input(), vec![Mark::At(END_OF_INPUT)]);
        assert_eq!(marks.end_of_input(), vec![], "the end comes once");
    }

    #[test]
    fn a_valve_outputs_the_minimum_of_its_inputs_when_it_grows() {
        let mut valve = Valve::new(2);
        assert_eq!(valve.on_mark(0, Mark::At(100)), vec![]);
        assert_eq!(valve.on_mark(1, Mark::At(50)), vec![Mark::At(50)]);
        assert_eq!(valve.on_mark(1, Mark::At(150)), vec![Mark::At(100)]);
        assert_eq!(
            valve.on_mark(1, Mark::At(120)),
            vec![],
            "a channel never goes back"
        );
        assert_eq!(valve.current(), 100);
    }

    #[test]
    fn an_idle_input_leaves_the_minimum_and_rejoins_once_it_catches_up() {
        let mut valve = Valve::new(2);
        valve.on_mark(0, Mark::At(100));
        valve.on_mark(1, Mark::At(10));
        assert_eq!(valve.on_mark(1, Mark::Idle), vec![Mark::At(100)]);
        assert_eq!(valve.on_mark(1, Mark::Active), vec![]);
        // Input 1 is behind the output: not counted until it reaches it.
        assert_eq!(valve.on_mark(0, Mark::At(200)), vec![Mark::At(200)]);
        assert_eq!(valve.on_mark(1, Mark::At(150)), vec![]);
        assert_eq!(valve.on_mark(0, Mark::At(300)), vec![Mark::At(300)]);
        assert_eq!(valve.on_mark(1, Mark::At(250)), vec![]);
        assert_eq!(valve.on_mark(1, Mark::At(310)), vec![]);
        assert_eq!(valve.on_mark(0, Mark::At(400)), vec![Mark::At(310)]);
    }

    #[test]
    fn all_inputs_idle_flushes_the_largest_and_goes_idle_once() {
        let mut valve = Valve::new(2);
        valve.on_mark(0, Mark::At(100));
        valve.on_mark(1, Mark::At(300));
        assert_eq!(valve.on_mark(0, Mark::Idle), vec![Mark::At(300)]);
        assert_eq!(valve.on_mark(1, Mark::Idle), vec![Mark::Idle]);
        assert_eq!(valve.on_mark(0, Mark::Active), vec![Mark::Active]);
        assert_eq!(valve.on_mark(1, Mark::Active), vec![]);
    }
}
