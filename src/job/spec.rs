//! The declarative job description: a source, a pipeline of built-in operators, and a sink.
//! Declarative, so that the reference model can evaluate the same job with no engine code, and so
//! that proptest and scenario files can generate and store jobs.
//!
//! Edges: into a keyed operator, records are partitioned by key group (`key_by`); into any
//! other operator or the sink, they go forward when the parallelism is equal and are partitioned
//! by key group otherwise. Built-in operators never change a record's key, so every record of a
//! key follows one path and its order is the input order — the property that lets the model
//! predict order-dependent state exactly.
//!
//! ```
//! use faultline::job::JobSpec;
//!
//! let job: JobSpec = toml::from_str(
//!     r#"
//! name = "fraud"
//! source = { parallelism = 2, partitions = 4 }
//! sink = { kind = "two-phase-commit", parallelism = 1 }
//! stages = [
//!   { name = "map", op = { kind = "scale", factor = 2 }, parallelism = 2 },
//!   { name = "total", op = { kind = "sum" }, parallelism = 3 },
//! ]
//! "#,
//! )?;
//! job.validate()?;
//! assert_eq!(job.stage_names(), ["source", "map", "total", "sink"]);
//!
//! let mut broken = job.clone();
//! broken.stages[1].parallelism = 0;
//! assert!(broken.validate().is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use super::keygroup::{DEFAULT_MAX_PARALLELISM, MAX_PARALLELISM_LIMIT};

/// Largest parallelism of one operator.
pub const PARALLELISM_MAX: u16 = 8;

/// A whole job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// A name for traces and reports.
    pub name: String,
    /// Number of key groups (default 128, as Flink's default for small jobs).
    #[serde(default = "default_max_parallelism")]
    pub max_parallelism: u16,
    /// The replayable source.
    pub source: SourceSpec,
    /// Operators between source and sink, in order.
    #[serde(default)]
    pub stages: Vec<StageSpec>,
    /// The sink.
    pub sink: SinkSpec,
}

fn default_max_parallelism() -> u16 {
    DEFAULT_MAX_PARALLELISM
}

fn one() -> u16 {
    1
}

fn default_processing_ms() -> u64 {
    1
}

/// The name of subtask `subtask` of the stage named `stage` (`sum[1]`): traces, events and the
/// oracle's lineage all name tasks by it.
pub fn task_name(stage: &str, subtask: u16) -> String {
    format!("{stage}[{subtask}]")
}

/// The source: reads the input's partitions and snapshots its position at each barrier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// Source subtasks (default 1); partition `p` is read by subtask `p % parallelism`.
    #[serde(default = "one")]
    pub parallelism: u16,
    /// Input partitions (default: equal to the parallelism).
    #[serde(default)]
    pub partitions: Option<u32>,
    /// Simulated time to emit one record (default 0).
    #[serde(default)]
    pub emit_ms: u64,
    /// How it makes event-time watermarks (absent: the job has no event time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermarks: Option<super::WatermarkSpec>,
}

impl SourceSpec {
    /// The number of input partitions.
    pub fn partition_count(&self) -> u32 {
        self.partitions.unwrap_or(u32::from(self.parallelism))
    }
}

/// One operator of the pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// Unique name, `[a-z0-9-]`, used in traces and file names.
    pub name: String,
    /// What it does.
    pub op: OperatorSpec,
    /// Subtasks (default 1).
    #[serde(default = "one")]
    pub parallelism: u16,
    /// Simulated time to process one record (default 1).
    #[serde(default = "default_processing_ms")]
    pub processing_ms: u64,
}

/// The built-in operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum OperatorSpec {
    /// `value * factor`.
    Scale {
        /// The factor.
        factor: i64,
    },
    /// `value + delta`.
    Offset {
        /// The delta.
        delta: i64,
    },
    /// Keeps records with `value >= min`.
    FilterMin {
        /// The smallest value kept.
        min: i64,
    },
    /// Splits each record into `parts` records (`id.0`, `id.1`, ...) whose values sum to the
    /// original.
    Split {
        /// Number of parts, 1..=8.
        parts: u32,
    },
    /// Keyed running sum in `ValueState<i64>` "sum"; emits the new sum.
    Sum,
    /// Keyed running maximum in `ValueState<i64>` "max"; emits the new maximum.
    Max,
    /// Keyed running sum whose state expires (see [`crate::state::ttl`]): `TtlValueState<i64>`
    /// "expiring-sum" lives `ttl_ms` of processing time after its last update. A record whose
    /// amount is a multiple of 3 only reads it and emits the sum as it stands (0 when none is
    /// live), which under `read-and-write` updates its time; any other adds its amount to the
    /// live sum (or starts one) and emits the new sum.
    ExpiringSum {
        /// How long a sum lives after its last update.
        ttl_ms: u64,
        /// What updates it.
        update: crate::state::ttl::TtlUpdate,
    },
    /// Keyed process function using all three state kinds: `ValueState` "count", `ListState`
    /// "recent" (the last three values) and `MapState` "buckets" (count per value bucket).
    /// Emits the key's new count.
    Stats,
    /// A user's operator, registered under `name` (see [`crate::job::user`]).
    User {
        /// The registered name.
        name: String,
        /// Whether it uses keyed state (and so is preceded by `key_by`).
        keyed: bool,
    },
    /// A keyed event-time tumbling window of `size_ms` (see [`crate::job::window`]): each
    /// window's `aggregate` of the amounts, emitted when the watermark passes its end and
    /// again for each record within the allowed lateness after it; a record every window of
    /// which has closed goes to the side output `late`. The job's last stage.
    TumblingWindow {
        /// The window length.
        size_ms: i64,
        /// What each window result holds.
        aggregate: WindowAggregate,
        /// How long after its end a window still takes records (each fires it again).
        #[serde(default, skip_serializing_if = "is_zero")]
        allowed_lateness_ms: i64,
    },
    /// A keyed event-time sliding window of `size_ms` every `slide_ms`: each record falls in
    /// `size_ms / slide_ms` windows (rounded up); otherwise as the tumbling window.
    SlidingWindow {
        /// The window length.
        size_ms: i64,
        /// How far apart windows start.
        slide_ms: i64,
        /// What each window result holds.
        aggregate: WindowAggregate,
        /// How long after its end a window still takes records (each fires it again).
        #[serde(default, skip_serializing_if = "is_zero")]
        allowed_lateness_ms: i64,
    },
    /// A keyed event-time session window (see [`crate::job::session`]): a key's records less
    /// than `gap_ms` apart in event time fall in one session; otherwise as the tumbling window.
    SessionWindow {
        /// The gap that ends a session.
        gap_ms: i64,
        /// What each window result holds.
        aggregate: WindowAggregate,
        /// How long after its end a session still takes records (each fires it again).
        #[serde(default, skip_serializing_if = "is_zero")]
        allowed_lateness_ms: i64,
    },
    /// A keyed processing-time tumbling window of `size_ms` (Flink's
    /// `TumblingProcessingTimeWindows` with its `ProcessingTimeTrigger`): a record falls in the
    /// window holding the processing time it is handled at, and each window's `aggregate`
    /// comes out once the virtual clock passes its end. Nothing is late. Windows whose end the
    /// clock never reaches before the input ends stay unfired, as in Flink, whose processing
    /// time stops with the input. The job's last stage; it needs no event time.
    ProcessingTimeWindow {
        /// The window length.
        size_ms: i64,
        /// What each window result holds.
        aggregate: WindowAggregate,
    },
    /// Passes records through, but fails on its `fail_at`-th record (the tutorial's
    /// `FailingMapFunction`).
    FailingMap {
        /// Which record (1-based, counted per subtask) fails.
        fail_at: u64,
        /// Where the count lives.
        counter: FailCounter,
    },
}

/// ", {n} ms allowed lateness" when there is some.
fn lateness(allowed_lateness_ms: i64) -> String {
    match allowed_lateness_ms {
        0 => String::new(),
        n => format!(", {n} ms allowed lateness"),
    }
}

fn is_zero(value: &i64) -> bool {
    *value == 0
}

/// A window stage's shape, whichever kind it is: a tumbling window slides by its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowShape {
    /// The window length.
    pub size_ms: i64,
    /// How far apart windows start.
    pub slide_ms: i64,
    /// What each window result holds.
    pub aggregate: WindowAggregate,
    /// How long after its end a window still takes records.
    pub allowed_lateness_ms: i64,
    /// A session window's gap (its size and slide are the gap too); `None` for the others.
    pub gap_ms: Option<i64>,
    /// Whether records fall in windows by the processing time they are handled at, and
    /// windows fire by the clock (`None` lateness then), rather than by event time.
    pub processing_time: bool,
}

impl WindowShape {
    /// The clock its timers wait for.
    pub fn domain(&self) -> crate::state::timers::TimeDomain {
        match self.processing_time {
            true => crate::state::timers::TimeDomain::ProcessingTime,
            false => crate::state::timers::TimeDomain::EventTime,
        }
    }
}

/// The most windows one record may fall in (`size_ms / slide_ms`, rounded up).
pub const WINDOWS_PER_RECORD_MAX: i64 = 100;

/// What a window result holds: the sum, count or maximum of its records' amounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WindowAggregate {
    /// The sum of the amounts.
    Sum,
    /// The number of records.
    Count,
    /// The largest amount.
    Max,
}

/// Where a failing map keeps its record count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailCounter {
    /// In a plain field, as the tutorial wrote it: reset by every restart, so the failure
    /// repeats on every attempt until the restart strategy gives up.
    PlainField,
    /// Fails on the first attempt only (Flink's `FailingSource` discipline), so a correct engine
    /// recovers.
    FirstAttempt,
}

impl OperatorSpec {
    /// Whether the operator holds keyed state (and so is preceded by `key_by`).
    pub fn is_keyed(&self) -> bool {
        matches!(
            self,
            OperatorSpec::Sum
                | OperatorSpec::Max
                | OperatorSpec::Stats
                | OperatorSpec::ExpiringSum { .. }
                | OperatorSpec::TumblingWindow { .. }
                | OperatorSpec::SlidingWindow { .. }
                | OperatorSpec::SessionWindow { .. }
                | OperatorSpec::ProcessingTimeWindow { .. }
                | OperatorSpec::User { keyed: true, .. }
        )
    }

    /// Its shape, if it is a window.
    pub fn window_shape(&self) -> Option<WindowShape> {
        match *self {
            OperatorSpec::TumblingWindow {
                size_ms,
                aggregate,
                allowed_lateness_ms,
            } => Some(WindowShape {
                size_ms,
                slide_ms: size_ms,
                aggregate,
                allowed_lateness_ms,
                gap_ms: None,
                processing_time: false,
            }),
            OperatorSpec::SlidingWindow {
                size_ms,
                slide_ms,
                aggregate,
                allowed_lateness_ms,
            } => Some(WindowShape {
                size_ms,
                slide_ms,
                aggregate,
                allowed_lateness_ms,
                gap_ms: None,
                processing_time: false,
            }),
            OperatorSpec::SessionWindow {
                gap_ms,
                aggregate,
                allowed_lateness_ms,
            } => Some(WindowShape {
                size_ms: gap_ms,
                slide_ms: gap_ms,
                aggregate,
                allowed_lateness_ms,
                gap_ms: Some(gap_ms),
                processing_time: false,
            }),
            OperatorSpec::ProcessingTimeWindow { size_ms, aggregate } => Some(WindowShape {
                size_ms,
                slide_ms: size_ms,
                aggregate,
                allowed_lateness_ms: 0,
                gap_ms: None,
                processing_time: true,
            }),
            _ => None,
        }
    }

    /// Whether what it emits depends on the processing time each record is handled at: its
    /// state has a time to live, or it is a processing-time window.
    pub fn reads_processing_time(&self) -> bool {
        matches!(
            self,
            OperatorSpec::ExpiringSum { .. } | OperatorSpec::ProcessingTimeWindow { .. }
        )
    }

    /// The name of the user's operator it is, if it is one.
    pub fn user_name(&self) -> Option<&str> {
        match self {
            OperatorSpec::User { name, .. } => Some(name),
            _ => None,
        }
    }

    /// A short label for traces and fingerprints.
    pub fn label(&self) -> String {
        match self {
            OperatorSpec::Scale { factor } => format!("scale({factor})"),
            OperatorSpec::Offset { delta } => format!("offset({delta})"),
            OperatorSpec::FilterMin { min } => format!("filter-min({min})"),
            OperatorSpec::Split { parts } => format!("split({parts})"),
            OperatorSpec::Sum => "sum".into(),
            OperatorSpec::Max => "max".into(),
            OperatorSpec::Stats => "stats".into(),
            OperatorSpec::ExpiringSum { ttl_ms, update } => {
                format!("expiring-sum(ttl {ttl_ms} ms, {update:?})")
            }
            OperatorSpec::User { name, .. } => format!("user({name})"),
            OperatorSpec::TumblingWindow {
                size_ms,
                aggregate,
                allowed_lateness_ms,
            } => format!(
                "tumbling-window({size_ms} ms, {aggregate:?}{})",
                lateness(*allowed_lateness_ms)
            ),
            OperatorSpec::SlidingWindow {
                size_ms,
                slide_ms,
                aggregate,
                allowed_lateness_ms,
            } => format!(
                "sliding-window({size_ms} ms every {slide_ms} ms, {aggregate:?}{})",
                lateness(*allowed_lateness_ms)
            ),
            OperatorSpec::SessionWindow {
                gap_ms,
                aggregate,
                allowed_lateness_ms,
            } => format!(
                "session-window(gap {gap_ms} ms, {aggregate:?}{})",
                lateness(*allowed_lateness_ms)
            ),
            OperatorSpec::ProcessingTimeWindow { size_ms, aggregate } => {
                format!("processing-time-window({size_ms} ms, {aggregate:?})")
            }
            OperatorSpec::FailingMap { fail_at, counter } => {
                format!("failing-map(at {fail_at}, {counter:?})")
            }
        }
    }
}

/// How the sink writes to the external system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SinkKind {
    /// Exactly-once: two-phase commit (pre-commit at the barrier, commit on completion).
    TwoPhaseCommit,
    /// At-least-once: every record is visible as soon as it arrives, like a print sink.
    Print,
}

/// The sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSpec {
    /// Two-phase commit or print.
    pub kind: SinkKind,
    /// Sink subtasks (default 1).
    #[serde(default = "one")]
    pub parallelism: u16,
}

/// A job description that cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job {job:?}: {reason}")]
pub struct SpecError {
    /// The job's name.
    pub job: String,
    /// What is wrong.
    pub reason: String,
}

impl JobSpec {
    /// Checks every rule the engine relies on.
    pub fn validate(&self) -> Result<(), SpecError> {
        let fail = |reason: String| {
            Err(SpecError {
                job: self.name.clone(),
                reason,
            })
        };
        if self.max_parallelism == 0 || self.max_parallelism > MAX_PARALLELISM_LIMIT {
            return fail(format!(
                "max_parallelism {} outside 1..={MAX_PARALLELISM_LIMIT}",
                self.max_parallelism
            ));
        }
        let limit = PARALLELISM_MAX.min(self.max_parallelism);
        let mut parallelisms = vec![
            ("source", self.source.parallelism),
            ("sink", self.sink.parallelism),
        ];
        parallelisms.extend(self.stages.iter().map(|s| (s.name.as_str(), s.parallelism)));
        for (name, parallelism) in parallelisms {
            if parallelism == 0 || parallelism > limit {
                return fail(format!(
                    "{name}: parallelism {parallelism} outside 1..={limit}"
                ));
            }
        }
        if let Some(problem) = self.source.watermarks.as_ref().and_then(|w| w.problem()) {
            return fail(format!("source: watermarks: {problem}"));
        }
        if let Some(problem) = self.window_problem() {
            return fail(problem);
        }
        if self.source.partition_count() == 0 || self.source.partition_count() > 1024 {
            return fail(format!(
                "source: {} partitions outside 1..=1024",
                self.source.partition_count()
            ));
        }
        for (index, stage) in self.stages.iter().enumerate() {
            let valid_name = !stage.name.is_empty()
                && stage.name.len() <= 32
                && stage
                    .name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !valid_name {
                return fail(format!(
                    "stage name {:?} is not 1-32 of [a-z0-9-]",
                    stage.name
                ));
            }
            if ["source", "sink"].contains(&stage.name.as_str())
                || self.stages[..index].iter().any(|s| s.name == stage.name)
            {
                return fail(format!("stage name {:?} is used twice", stage.name));
            }
            match stage.op {
                OperatorSpec::Split { parts } if !(1..=8).contains(&parts) => {
                    return fail(format!(
                        "{}: split into {parts} parts, allowed 1..=8",
                        stage.name
                    ));
                }
                OperatorSpec::FailingMap { fail_at: 0, .. } => {
                    return fail(format!("{}: fail_at counts from 1", stage.name));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Names of every stage in task order: `source`, the operators, `sink`.
    pub fn stage_names(&self) -> Vec<String> {
        let mut names = vec!["source".to_string()];
        names.extend(self.stages.iter().map(|s| s.name.clone()));
        names.push("sink".to_string());
        names
    }

    /// Parallelism of every stage in task order.
    pub fn stage_parallelisms(&self) -> Vec<u16> {
        let mut parallelisms = vec![self.source.parallelism];
        parallelisms.extend(self.stages.iter().map(|s| s.parallelism));
        parallelisms.push(self.sink.parallelism);
        parallelisms
    }

    /// A fingerprint of the job's structure (names and operators, not parallelism, so a restore
    /// may rescale but not swap operators).
    pub fn fingerprint(&self) -> u64 {
        let mut text = format!(
            "{}|{}|{:?}",
            self.max_parallelism, self.name, self.sink.kind
        );
        for stage in &self.stages {
            text.push_str(&format!("|{}:{}", stage.name, stage.op.label()));
        }
        xxh3_64(text.as_bytes())
    }

    /// Whether the edge into task-order stage `downstream` (1-based: the first operator is 1,
    /// the sink is last) sends each upstream subtask's records to the subtask of the same index.
    pub fn edge_is_forward(&self, downstream: usize) -> bool {
        assert!(
            downstream >= 1 && downstream <= self.stages.len() + 1,
            "stage {downstream} has an input edge"
        );
        let parallelisms = self.stage_parallelisms();
        let keyed = self
            .stages
            .get(downstream - 1)
            .is_some_and(|s| s.op.is_keyed());
        !keyed && parallelisms[downstream - 1] == parallelisms[downstream]
    }

    /// The job's window stage: its index and spec (a window is always the last stage).
    pub fn window(&self) -> Option<(usize, &StageSpec)> {
        let last = self.stages.len().checked_sub(1)?;
        let stage = &self.stages[last];
        stage.op.window_shape().map(|_| (last, stage))
    }

    /// What is wrong with the job's windows, if anything.
    fn window_problem(&self) -> Option<String> {
        let windows: Vec<(usize, &StageSpec)> = (self.stages.iter().enumerate())
            .filter(|(_, s)| s.op.window_shape().is_some())
            .collect();
        let &(index, stage) = windows.first()?;
        if windows.len() > 1 || index + 1 != self.stages.len() {
            return Some(format!(
                "{}: a window must be the job's one last stage",
                stage.name
            ));
        }
        let shape = stage.op.window_shape()?;
        if self.source.watermarks.is_none() && !shape.processing_time {
            return Some(format!(
                "{}: a window needs event time (source watermarks)",
                stage.name
            ));
        }
        let WindowShape {
            size_ms,
            slide_ms,
            allowed_lateness_ms,
            ..
        } = shape;
        let problem = if size_ms < 1 || slide_ms < 1 || slide_ms > size_ms {
            format!("window size {size_ms} ms and slide {slide_ms} ms: both positive, the slide at most the size")
        } else if (size_ms - 1) / slide_ms + 1 > WINDOWS_PER_RECORD_MAX {
            format!("a record would fall in more than {WINDOWS_PER_RECORD_MAX} windows of {size_ms} ms every {slide_ms} ms")
        } else if allowed_lateness_ms < 0 {
            format!("allowed lateness {allowed_lateness_ms} ms is negative")
        } else {
            return None;
        };
        Some(format!("{}: {problem}", stage.name))
    }

    /// Whether some task reads more than one input channel, which is when barrier alignment
    /// (and its absence in at-least-once mode) matters.
    pub fn has_fan_in(&self) -> bool {
        let parallelisms = self.stage_parallelisms();
        (1..parallelisms.len())
            .any(|stage| !self.edge_is_forward(stage) && parallelisms[stage - 1] > 1)
    }
}
