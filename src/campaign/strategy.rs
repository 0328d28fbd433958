//! Proptest strategies for scenarios: job shapes (a stateless stage, one to three keyed stages,
//! parallelism one to four, so fan-in makes barrier alignment matter; maximum parallelism 128,
//! small, large and not a power of two, or 32768), inputs (records; one to hundreds of keys, so
//! both skew and occupied key groups; keys on both sides of every subtask range boundary in half
//! the cases; value ranges), configurations (backend, exactly- or at-least-once, interval,
//! retention, tolerable failures, restart delay) and fault plans.
//!
//! Swarm testing: each scenario enables a random subset of the allowed fault kinds and draws its
//! faults from those only, so some cases hammer one kind and others mix them; the enabled kinds
//! are recorded in the scenario. A fault that fires only after a restart (corruption before a
//! restore, a panic in one) mostly waits for the first restart, and comes with a kill when
//! nothing else in its case would restart the job. Every range shrinks toward the simplest case: fewer faults,
//! fewer records and keys, lower parallelism.
//!
//! ```
//! use faultline::campaign::{scenario_strategy, StrategyConfig};
//! use faultline::state::BackendKind;
//! use proptest::strategy::{Strategy, ValueTree};
//! use proptest::test_runner::TestRunner;
//!
//! let mut config = StrategyConfig::default();
//! config.backends = vec![BackendKind::Memory];
//! config.fault_kinds = vec!["panic".into(), "kill".into()];
//! let mut runner = TestRunner::deterministic();
//! let scenario = scenario_strategy(config).new_tree(&mut runner)?.current();
//! assert_eq!(scenario.backend, BackendKind::Memory);
//! assert!(scenario.faults.iter().all(|f| ["panic", "kill"].contains(&f.kind_name())));
//! // Every generated scenario is a TOML file a user can replay.
//! assert!(scenario.to_toml().contains("[job]"));
//! # Ok::<(), proptest::test_runner::Reason>(())
//! ```

use proptest::prelude::*;

use std::sync::Arc;

use super::eventtime::DISORDER_MS;
use super::scenario::{InputSpec, Rescale, RescaleFrom, Scenario};
use crate::checkpoint::SavepointRequest;
use crate::checkpoint::{CheckpointConfig, CheckpointingMode, Unaligned};
use crate::engine::Sabotage;
use crate::fault::{CorruptionKind, Fault, FaultKind, Phase, Unsynced};
use crate::job::{
    InputRecord, JobSpec, OperatorSpec, RestartStrategy, SinkKind, SinkSpec, SourceSpec, StageSpec,
    WatermarkSpec, WindowAggregate,
};
use crate::state::ttl::TtlUpdate;
use crate::state::{BackendKind, RestoreMode, SavepointFormat};

/// Every fault kind, by name (the names of [`FaultKind::ALL`], in order).
pub const ALL_FAULT_KINDS: [&str; 14] = [
    "panic",
    "panic-in-snapshot",
    "panic-in-restore",
    "kill",
    "kill-at-phase",
    "io-error",
    "drop-notification",
    "delay-notification",
    "corrupt",
    "crash",
    "panic-in-timer",
    "kill-in-timers",
    "kill-at-watermark",
    "clock-jump",
];

/// What scenarios may contain.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StrategyConfig {
    /// Backends to draw from. Default: every backend this build has.
    pub backends: Vec<BackendKind>,
    /// Fault kinds allowed (names from [`ALL_FAULT_KINDS`]). Default: all.
    pub fault_kinds: Vec<String>,
    /// Fewest records per generated input. Default 5.
    pub records_min: u32,
    /// Most records per generated input. Default 80.
    pub records_max: u32,
    /// Most distinct keys per generated input (at least one). Default 300: three cases in
    /// four draw up to 12, the rest up to this.
    pub keys_max: u32,
    /// Amounts (cents) of the generated transactions, inclusive. Default -50 to 500.
    pub values: (i64, i64),
    /// Your input generator, used by every scenario instead of the built-in one (the records
    /// are written into the scenario, so shrinking shrinks them). Default none.
    pub input: Option<InputStrategy>,
    /// Where user operators may stand in generated jobs. Default: anywhere.
    pub user_chaining: UserChaining,
    /// Most faults per case. Default 4.
    pub faults_max: usize,
    /// Checkpointing modes cases use. Default both, exactly-once in four cases of five; with
    /// one mode, every case uses it.
    pub modes: Vec<CheckpointingMode>,
    /// User operators (name, keyed) the generated jobs use: keyed stages take the keyed ones
    /// in turn, the optional stateless stage the first stateless one. Default none (only
    /// built-in operators).
    pub user_operators: Vec<(String, bool)>,
    /// Whether every generated job has event time and ends in a window (of every kind in
    /// turn), as a user's window operator ([`crate::campaign::Seams::windows`]) needs.
    /// Default false: a window in a quarter of the jobs. No window goes after a user's
    /// operators.
    pub windowed: bool,
    /// Whether the engine checks restored files before backends read them. Default true; off
    /// puts a backend's own checks under corruption faults.
    pub verify_restored_files: bool,
    /// Aligned or unaligned checkpoints. Default mixed.
    pub checkpointing: Checkpointing,
    /// Deliberate engine defects every case carries, for the harness's own tests (see
    /// [`crate::engine::RunConfig::sabotage`]). Default none.
    #[doc(hidden)]
    pub sabotage: Sabotage,
}

/// A user's input generator for [`StrategyConfig::input`]: builds a fresh strategy of record
/// lists each time a case is drawn.
#[derive(Clone)]
pub struct InputStrategy(Arc<dyn Fn() -> BoxedStrategy<Vec<InputRecord>> + Send + Sync>);

impl InputStrategy {
    /// From a function making the strategy.
    pub fn new<S>(make: impl Fn() -> S + Send + Sync + 'static) -> Self
    where
        S: Strategy<Value = Vec<InputRecord>> + 'static,
    {
        Self(Arc::new(move || make().boxed()))
    }

    /// From a strategy of values of the user's type `T`, keyed by `key_by`, with ids `r0`,
    /// `r1`, ... A value that cannot be encoded (a map keyed by a struct, say) becomes a record
    /// whose value names the error, so the case that draws it fails saying so.
    pub fn keyed_by<T, K, S>(
        make: impl Fn() -> S + Send + Sync + 'static,
        key_by: impl Fn(&T) -> K + Send + Sync + 'static,
    ) -> Self
    where
        T: serde::Serialize + std::fmt::Debug + 'static,
        K: serde::Serialize,
        S: Strategy<Value = Vec<T>> + 'static,
    {
        let key_by = Arc::new(key_by);
        Self::new(move || {
            let key_by = Arc::clone(&key_by);
            make().prop_map(move |values| {
                InputRecord::keyed_by(&values, "r", &*key_by).unwrap_or_else(|error| {
                    vec![InputRecord {
                        id: "r0".into(),
                        key: crate::job::Datum::from("unencodable"),
                        value: crate::job::Datum::from(error.to_string().as_str()),
                        timestamp_ms: None,
                    }]
                })
            })
        })
    }
}

impl std::fmt::Debug for InputStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InputStrategy(..)")
    }
}

impl PartialEq for InputStrategy {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for InputStrategy {}

/// Whether a user operator may stand next to itself or to built-in operators in a generated
/// job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserChaining {
    /// More than one stage of the same user operator in a job (default true).
    pub with_itself: bool,
    /// Built-in operators before or after it (default true).
    pub with_built_ins: bool,
}

impl Default for UserChaining {
    fn default() -> Self {
        Self {
            with_itself: true,
            with_built_ins: true,
        }
    }
}

/// A strategy configuration that cannot draw cases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StrategyError {
    /// No backend to draw from.
    #[error("the strategy names no backend")]
    NoBackend,
    /// No checkpointing mode to draw from.
    #[error("the strategy names no checkpointing mode")]
    NoMode,
    /// A fault kind no fault has.
    #[error("unknown fault kind {0:?} (known: {known})", known = ALL_FAULT_KINDS.join(", "))]
    UnknownFaultKind(String),
    /// A range whose bounds are out of order or out of reach.
    #[error("{what}: {reason}")]
    Range {
        /// Which knob.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl StrategyConfig {
    /// Whether cases can be drawn under this configuration.
    pub fn validate(&self) -> Result<(), StrategyError> {
        if self.backends.is_empty() {
            return Err(StrategyError::NoBackend);
        }
        if self.modes.is_empty() {
            return Err(StrategyError::NoMode);
        }
        if self.records_min > self.records_max {
            return Err(StrategyError::Range {
                what: "records",
                reason: format!(
                    "at least {} but at most {}",
                    self.records_min, self.records_max
                ),
            });
        }
        if self.keys_max == 0 {
            return Err(StrategyError::Range {
                what: "keys",
                reason: "at most 0: an input needs a key".into(),
            });
        }
        if self.values.0 > self.values.1 {
            return Err(StrategyError::Range {
                what: "values",
                reason: format!("from {} to {}", self.values.0, self.values.1),
            });
        }
        if let Some(kind) = self
            .fault_kinds
            .iter()
            .find(|kind| FaultKind::from_name(kind).is_none())
        {
            return Err(StrategyError::UnknownFaultKind(kind.clone()));
        }
        Ok(())
    }
}

impl Default for StrategyConfig {
    fn default() -> Self {
        Self {
            backends: BackendKind::all(),
            fault_kinds: ALL_FAULT_KINDS.iter().map(|k| k.to_string()).collect(),
            records_min: 5,
            records_max: 80,
            keys_max: 300,
            values: (-50, 500),
            input: None,
            user_chaining: UserChaining::default(),
            faults_max: 4,
            modes: vec![
                CheckpointingMode::ExactlyOnce,
                CheckpointingMode::AtLeastOnce,
            ],
            user_operators: Vec::new(),
            windowed: false,
            verify_restored_files: true,
            checkpointing: Checkpointing::Mixed,
            sabotage: Sabotage::default(),
        }
    }
}

/// Which checkpoints generated cases take ([`StrategyConfig::checkpointing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Checkpointing {
    /// Every barrier aligned.
    Aligned,
    /// Every exactly-once case unaligned: from the source on in two cases of three, after an
    /// aligned-checkpoint timeout of 1 to 30 ms in the rest.
    Unaligned,
    /// Half the exactly-once cases aligned, a quarter unaligned from the source on, a quarter
    /// after a timeout.
    #[default]
    Mixed,
}

impl Checkpointing {
    /// What a case drawing `kind` (0..6) and `timeout_ms` takes: only exactly-once cases with one
    /// checkpoint in flight may be unaligned, as in Flink.
    fn unaligned(self, kind: u8, timeout_ms: u64) -> Unaligned {
        let always = match self {
            Checkpointing::Aligned => return Unaligned::Never,
            Checkpointing::Unaligned => kind % 3 != 2,
            Checkpointing::Mixed if kind < 3 => return Unaligned::Never,
            Checkpointing::Mixed => kind != 5,
        };
        if always {
            Unaligned::Always
        } else {
            Unaligned::AfterMs(timeout_ms)
        }
    }
}

fn stateless_op() -> impl Strategy<Value = OperatorSpec> {
    prop_oneof![
        (1i64..=3).prop_map(|factor| OperatorSpec::Scale { factor }),
        (-5i64..=5).prop_map(|delta| OperatorSpec::Offset { delta }),
        (-20i64..=100).prop_map(|min| OperatorSpec::FilterMin { min }),
        (1u32..=3).prop_map(|parts| OperatorSpec::Split { parts }),
    ]
}

fn keyed_op() -> impl Strategy<Value = OperatorSpec> {
    prop_oneof![
        Just(OperatorSpec::Sum),
        Just(OperatorSpec::Max),
        Just(OperatorSpec::Stats),
        expiring_sum(),
    ]
}

/// A sum with a time to live: a few records' processing time (each takes 2 ms or more), a
/// few tens, or longer than most cases run; updated on writes, or on reads too.
fn expiring_sum() -> impl Strategy<Value = OperatorSpec> {
    let update = prop_oneof![
        Just(TtlUpdate::OnCreateAndWrite),
        Just(TtlUpdate::OnReadAndWrite)
    ];
    (prop_oneof![Just(6u64), Just(40), Just(1000)], update)
        .prop_map(|(ttl_ms, update)| OperatorSpec::ExpiringSum { ttl_ms, update })
}

/// Maximum parallelisms: Flink's default 128, small ones (every key group a boundary's
/// neighbour), large ones that are no power of two, and the largest, 32768.
fn max_parallelism() -> impl Strategy<Value = u16> {
    prop_oneof![3 => Just(128u16), 2 => 4u16..=12, 2 => 13u16..=400, 1 => Just(32768u16)]
}

/// Key counts: mostly a few (skew: many records per key), sometimes up to `keys_max` (most
/// keys seen once, most key groups occupied).
fn key_count(keys_max: u32) -> BoxedStrategy<u32> {
    let few = keys_max.clamp(1, 12);
    if keys_max > few {
        prop_oneof![3 => 1..=few, 1 => few + 1..=keys_max].boxed()
    } else {
        (1..=few).boxed()
    }
}

/// Job shapes.
pub fn job_strategy() -> impl Strategy<Value = JobSpec> {
    (
        1u16..=3,
        0u32..=2,
        proptest::option::weighted(0.5, (stateless_op(), 1u16..=4)),
        proptest::collection::vec((keyed_op(), 1u16..=4), 1..=3),
        prop_oneof![3 => Just(SinkKind::TwoPhaseCommit), 1 => Just(SinkKind::Print)],
        1u16..=2,
        max_parallelism(),
    )
        .prop_map(
            |(
                source_parallelism,
                extra_partitions,
                stateless,
                keyed,
                sink,
                sink_parallelism,
                max_parallelism,
            )| {
                let mut stages = Vec::new();
                if let Some((op, parallelism)) = stateless {
                    stages.push(StageSpec {
                        name: "map".into(),
                        op,
                        parallelism,
                        processing_ms: 1,
                    });
                }
                for (index, (op, parallelism)) in keyed.into_iter().enumerate() {
                    stages.push(StageSpec {
                        name: format!("keyed{index}"),
                        op,
                        parallelism,
                        processing_ms: 1,
                    });
                }
                JobSpec {
                    name: "generated".into(),
                    max_parallelism,
                    source: SourceSpec {
                        parallelism: source_parallelism,
                        partitions: Some(u32::from(source_parallelism) + extra_partitions),
                        emit_ms: 1,
                        watermarks: None,
                    },
                    stages,
                    sink: SinkSpec {
                        kind: sink,
                        parallelism: sink_parallelism,
                    },
                }
            },
        )
}

/// A generated job's event time: for half the jobs, a bounded out-of-orderness up to the
/// generated inputs' disorder, a periodic interval and, for some, an idleness timeout; and for
/// half of those (every job and every one of them when windowed), a window as the last
/// stage: size, aggregate, parallelism, size over slide
/// (1: tumbling; 0: sessions with a gap of half the size; -1: by processing time), allowed
/// lateness.
type EventTime = Option<(WatermarkSpec, Option<(i64, WindowAggregate, u16, i64, i64)>)>;

fn event_time(windowed: bool) -> BoxedStrategy<EventTime> {
    let spec = (
        prop_oneof![Just(0i64), Just(DISORDER_MS / 2), Just(DISORDER_MS)],
        1u64..=20,
        proptest::option::weighted(0.5, 5u64..=60),
    )
        .prop_map(
            |(out_of_orderness_ms, interval_ms, idle_timeout_ms)| WatermarkSpec {
                out_of_orderness_ms,
                interval_ms,
                idle_timeout_ms,
            },
        );
    let aggregate = prop_oneof![
        Just(WindowAggregate::Sum),
        Just(WindowAggregate::Count),
        Just(WindowAggregate::Max)
    ];
    let window = (
        prop_oneof![Just(500i64), Just(1_000), Just(3_000)],
        aggregate,
        1u16..=3,
        // Tumbling in two cases of six, sliding by a half or a quarter of the size in one
        // each, sessions with a gap of half the size in one, a processing-time tumbling
        // window of a fiftieth of the size (a few records' time) in one.
        prop_oneof![2 => Just(1i64), 1 => Just(2), 1 => Just(4), 1 => Just(0), 1 => Just(-1)],
        prop_oneof![2 => Just(0i64), 1 => Just(200), 1 => Just(1_000)],
    );
    if windowed {
        return (spec, window)
            .prop_map(|(spec, window)| Some((spec, Some(window))))
            .boxed();
    }
    proptest::option::weighted(0.5, (spec, proptest::option::weighted(0.5, window))).boxed()
}

/// Records a channel holds before its sender waits: from one (every record sent waits for the
/// one before it to be taken: the most back-pressure) to sixteen (senders run ahead, channels
/// hold records in flight), the former default of four most often.
fn channel_capacity() -> impl Strategy<Value = usize> {
    prop_oneof![1 => Just(1usize), 2 => Just(4), 1 => 2usize..=3, 1 => 5usize..=16]
}

/// Checkpoints in flight at once and the pause after a completion: one at a time in half the
/// cases, two or three concurrent in a quarter, and in the rest a pause of up to 20 ms (one
/// in flight, as any pause makes it).
fn concurrency() -> impl Strategy<Value = (u32, u64)> {
    prop_oneof![
        2 => Just((1u32, 0u64)),
        1 => (2u32..=3, Just(0u64)),
        1 => (1u32..=3, 1u64..=20),
    ]
}

/// Puts the drawn event time on `job`: its watermarks, and its window as the last stage (not
/// with a user's operators, whose output a window may not read).
fn use_event_time(job: &mut JobSpec, event_time: EventTime, users: bool) {
    let Some((watermarks, window)) = event_time else {
        return;
    };
    job.source.watermarks = Some(watermarks);
    if let (Some((size_ms, aggregate, parallelism, per_slide, allowed_lateness_ms)), false) =
        (window, users)
    {
        let op = match per_slide {
            0 => OperatorSpec::SessionWindow {
                gap_ms: size_ms / 2,
                aggregate,
                allowed_lateness_ms,
            },
            -1 => OperatorSpec::ProcessingTimeWindow {
                size_ms: size_ms / 50,
                aggregate,
            },
            1 => OperatorSpec::TumblingWindow {
                size_ms,
                aggregate,
                allowed_lateness_ms,
            },
            n => OperatorSpec::SlidingWindow {
                size_ms,
                slide_ms: size_ms / n,
                aggregate,
                allowed_lateness_ms,
            },
        };
        job.stages.push(StageSpec {
            name: "window".into(),
            op,
            parallelism,
            processing_ms: 1,
        });
    }
}

/// A fault drawn as raw numbers, mapped onto a job by [`make_fault`]: drawing it independently
/// of the job keeps shrinking effective (a `prop_flat_map` on the job would draw new faults
/// whenever the job shrinks).
type RawFault = (u8, u64, u64, u64, u64);

const CORRUPTIONS: [CorruptionKind; 6] = [
    CorruptionKind::BitFlip,
    CorruptionKind::Truncate,
    CorruptionKind::ZeroBlock,
    CorruptionKind::Delete,
    CorruptionKind::TornMetadata,
    CorruptionKind::StaleFile,
];

/// The attempt a fault that waits for a restart fires in: the first restart in four cases of
/// six, the second or third otherwise (each later one needs one more failure before it, so a
/// case that needs it is bigger).
fn later_attempt(raw: u64) -> u32 {
    match raw % 6 {
        4 => 2,
        5 => 3,
        _ => 1,
    }
}

fn make_fault(kind: &str, job: &JobSpec, (_, a, b, c, d): RawFault) -> Fault {
    let pick = |n: usize, x: u64| (x % n as u64) as usize;
    match kind {
        "panic" => {
            let stage = &job.stages[pick(job.stages.len(), a)];
            Fault::Panic {
                stage: stage.name.clone(),
                subtask: pick(usize::from(stage.parallelism), b) as u16,
                attempt: (c % 3) as u32,
                record_index: 1 + d % 30,
            }
        }
        "panic-in-snapshot" => Fault::PanicInSnapshot {
            checkpoint: 1 + a % 6,
        },
        "panic-in-restore" => Fault::PanicInRestore {
            attempt: later_attempt(a),
        },
        "kill" => Fault::Kill { step: 1 + a % 600 },
        "kill-at-phase" => Fault::KillAt {
            phase: Phase::ALL[pick(Phase::ALL.len(), a)],
            checkpoint: 1 + b % 6,
        },
        "io-error" => Fault::IoError {
            checkpoint: 1 + a % 6,
            nth_write: 1 + (b % 4) as u32,
        },
        "drop-notification" => Fault::DropNotification {
            checkpoint: 1 + a % 6,
        },
        "delay-notification" => Fault::DelayNotification {
            checkpoint: 1 + a % 6,
            delay_ms: 1 + b % 60,
        },
        "corrupt" => Fault::Corrupt {
            attempt: later_attempt(a),
            corruption: CORRUPTIONS[pick(CORRUPTIONS.len(), b)],
        },
        "crash" => Fault::Crash {
            after_step: 1 + a % 300,
            unsynced: Unsynced::ALL[pick(Unsynced::ALL.len(), b)],
        },
        "panic-in-timer" | "kill-in-timers" => {
            let stage = timer_stage(job, a);
            let (stage, subtask) = (
                stage.name.clone(),
                pick(usize::from(stage.parallelism), b) as u16,
            );
            let (attempt, firing) = ((c % 3) as u32, 1 + d % 20);
            match kind {
                "panic-in-timer" => Fault::PanicInTimer {
                    stage,
                    subtask,
                    attempt,
                    firing,
                },
                _ => Fault::KillInTimers {
                    stage,
                    subtask,
                    attempt,
                    firing,
                },
            }
        }
        "kill-at-watermark" => {
            let stage = &job.stages[pick(job.stages.len(), a)];
            Fault::KillAtWatermark {
                stage: stage.name.clone(),
                subtask: pick(usize::from(stage.parallelism), b) as u16,
                attempt: (c % 3) as u32,
                advance: 1 + d % 30,
            }
        }
        "clock-jump" => Fault::ClockJump {
            attempt: later_attempt(a),
            jump_ms: [1_000, 10_000, 100_000][pick(3, b)],
        },
        other => {
            panic!("unknown fault kind {other:?}: the CLI validates names against ALL_FAULT_KINDS")
        }
    }
}

/// The stage whose timers a fault in timers aims at: the window, when the job has one (the
/// only built-in operator with timers), else a keyed stage (a user's may have timers).
fn timer_stage(job: &JobSpec, raw: u64) -> &StageSpec {
    if let Some((_, window)) = job.window() {
        return window;
    }
    let keyed: Vec<&StageSpec> = job.stages.iter().filter(|s| s.op.is_keyed()).collect();
    match keyed.len() {
        0 => &job.stages[(raw % job.stages.len() as u64) as usize],
        n => keyed[(raw % n as u64) as usize],
    }
}

/// Adds a job's faults in time to a case's faults, and their kinds to its swarm: each raw
/// fault of a time kind `allowed` has, in a job with event time. They are drawn apart from the
/// other kinds, last, so that every draw before them is what it was without them. A clock jump
/// that waits for a restart nothing else causes comes with a kill at its raw position.
fn with_time_faults(
    (swarm, faults): (&mut Vec<String>, &mut Vec<Fault>),
    allowed: &[String],
    job: &JobSpec,
    raw: &[RawFault],
) {
    // A job without event time still has a processing clock when its state has a time to
    // live: a jump of it, and nothing else in time, applies.
    let event_time = job.source.watermarks.is_some();
    let ttl = job.stages.iter().any(|s| s.op.reads_processing_time());
    let applies = |kind: FaultKind| kind.is_time() && (event_time || kind == FaultKind::ClockJump);
    let kinds: Vec<&String> = allowed
        .iter()
        .filter(|k| FaultKind::from_name(k).is_some_and(applies))
        .collect();
    if kinds.is_empty() || !(event_time || ttl) {
        return;
    }
    let mut jump = None;
    for r in raw {
        let fault = make_fault(kinds[usize::from(r.0) % kinds.len()], job, *r);
        if !swarm.iter().any(|k| k == fault.kind_name()) {
            swarm.push(fault.kind_name().to_string());
        }
        if fault.kind() == FaultKind::ClockJump {
            jump = Some(*r);
        }
        faults.push(fault);
    }
    let restarts = faults.iter().any(|f| f.kind().restarts_the_job());
    let kill_allowed = allowed.iter().any(|k| k == FaultKind::Kill.name());
    if let (Some(r), false, true) = (jump, restarts, kill_allowed) {
        faults.push(make_fault(FaultKind::Kill.name(), job, r));
    }
}

/// Puts user operators in place of built-in ones: the keyed ones in turn on keyed stages, the
/// first stateless one on the stateless stage (added in front when the drawn job has none and
/// no keyed user operator is given, so every job uses one). The shape is otherwise the drawn
/// one, so shrinking works the same.
fn use_user_operators(job: &mut JobSpec, users: &[(String, bool)]) {
    let keyed: Vec<&String> = users.iter().filter(|(_, k)| *k).map(|(n, _)| n).collect();
    let stateless = users.iter().find(|(_, k)| !*k).map(|(n, _)| n);
    if keyed.is_empty() && stateless.is_some() && job.stages.iter().all(|s| s.op.is_keyed()) {
        job.stages.insert(
            0,
            StageSpec {
                name: "map".into(),
                op: OperatorSpec::Scale { factor: 1 },
                parallelism: job.source.parallelism,
                processing_ms: 1,
            },
        );
    }
    let mut next = 0;
    for stage in &mut job.stages {
        if stage.op.is_keyed() {
            if !keyed.is_empty() {
                stage.op = OperatorSpec::User {
                    name: keyed[next % keyed.len()].clone(),
                    keyed: true,
                };
                next += 1;
            }
        } else if let Some(name) = stateless {
            stage.op = OperatorSpec::User {
                name: name.clone(),
                keyed: false,
            };
        }
    }
}

/// The faults of a case: each raw fault of a kind the swarm enables. A fault that fires only
/// after a restart (corruption, a panic in a restore) comes with a kill at the same raw
/// position when nothing else in the case would restart the job and a kill is allowed: without
/// it such faults fired in a few cases in a hundred.
fn swarm_faults(
    swarm: &[String],
    allowed: &[String],
    job: &JobSpec,
    raw: Vec<RawFault>,
) -> Vec<Fault> {
    if swarm.is_empty() {
        return Vec::new();
    }
    let kinds: Vec<&String> = raw
        .iter()
        .map(|r| &swarm[usize::from(r.0) % swarm.len()])
        .collect();
    let mut faults: Vec<Fault> = kinds
        .iter()
        .zip(&raw)
        .map(|(kind, r)| make_fault(kind, job, *r))
        .collect();
    let restarts = faults.iter().any(|f| f.kind().restarts_the_job());
    let waits = faults.iter().position(|f| f.kind().waits_for_a_restart());
    let kill_allowed = allowed
        .iter()
        .any(|k| FaultKind::from_name(k) == Some(FaultKind::Kill));
    if let (false, Some(index), true) = (restarts, waits, kill_allowed) {
        faults.push(make_fault(FaultKind::Kill.name(), job, raw[index]));
    }
    faults
}

/// Drops the stages `chaining` rules out: built-in operators next to a user's, and a user
/// operator's second stage in one job.
fn keep_chaining(job: &mut JobSpec, chaining: UserChaining) {
    let mut seen = std::collections::BTreeSet::new();
    job.stages.retain(|stage| match &stage.op {
        OperatorSpec::User { name, .. } => chaining.with_itself || seen.insert(name.clone()),
        _ => chaining.with_built_ins,
    });
}

/// Scenarios drawn under `config`.
pub fn scenario_strategy(config: StrategyConfig) -> impl Strategy<Value = Scenario> {
    assert!(!config.backends.is_empty(), "at least one backend");
    let backends = config.backends.clone();
    let allowed = config.fault_kinds.clone();
    // The swarm of kinds besides those in time, drawn as before those existed.
    let kinds: Vec<String> = (allowed.iter())
        .filter(|k| !FaultKind::from_name(k).is_some_and(FaultKind::is_time))
        .cloned()
        .collect();
    let users = config.user_operators.clone();
    let verify_restored_files = config.verify_restored_files;
    let sabotage = config.sabotage;
    let checkpointing = config.checkpointing;
    let modes = config.modes.clone();
    assert!(!modes.is_empty(), "at least one checkpointing mode");
    let chaining = config.user_chaining;
    let (min_value, max_value) = config.values;
    let user_input: BoxedStrategy<Option<Vec<InputRecord>>> = match &config.input {
        Some(input) => (input.0)().prop_map(Some).boxed(),
        None => Just(None).boxed(),
    };
    let raw_fault = (any::<u8>(), 0u64..1000, 0u64..1000, 0u64..1000, 0u64..1000);
    (
        job_strategy(),
        any::<u64>(),
        0..backends.len(),
        (config.records_min..=config.records_max.max(config.records_min), key_count(config.keys_max), user_input, any::<bool>()),
        (5u64..=40, prop_oneof![4 => Just(CheckpointingMode::ExactlyOnce), 1 => Just(CheckpointingMode::AtLeastOnce)], 1u32..=3, 0u32..=2),
        (0u64..=30, 0usize..3),
        proptest::collection::vec(any::<bool>(), kinds.len()),
        proptest::collection::vec(raw_fault.clone(), 0..=config.faults_max),
        proptest::option::weighted(0.2, (5u64..=100, any::<bool>())),
        proptest::option::weighted(0.2, (10u64..=120, proptest::collection::vec(1u16..=4, 4))),
        // Drawn last, so that every draw before them is what it was without event time, drawn
        // channel capacities, concurrent and unaligned checkpoints, and restore modes.
        (event_time(config.windowed), proptest::collection::vec(raw_fault, 0..=2), channel_capacity(), concurrency(), (0u8..6, 1u64..=30, any::<bool>()), (any::<bool>(), 0u8..4)),
    )
        .prop_map(move |(mut job, seed, backend, (records, keys, user_input, boundary_keys), (interval_ms, mode, num_retained, tolerable), (delay_ms, restart), enabled, raw_faults, savepoint, rescale, (event_time, raw_time_faults, channel_capacity, (max_concurrent, min_pause_ms), (unaligned_kind, aligned_timeout_ms, rescale_from_checkpoint), (claim, aligned_from_checkpoint)))| {
            use_user_operators(&mut job, &users);
            use_event_time(&mut job, event_time, !users.is_empty());
            if !users.is_empty() {
                keep_chaining(&mut job, chaining);
            }
            // The mode is drawn the same way whatever the modes allowed, so one seed draws the
            // same cases otherwise.
            let mode = if modes.contains(&mode) { mode } else { modes[0] };
            let unaligned = match mode {
                CheckpointingMode::ExactlyOnce => checkpointing.unaligned(unaligned_kind, aligned_timeout_ms),
                CheckpointingMode::AtLeastOnce => Unaligned::Never,
            };
            // Unaligned checkpoints run one at a time, as in Flink.
            let max_concurrent = if unaligned.enabled() { 1 } else { max_concurrent };
            // A rescale resumes from the retained checkpoint in half the unaligned cases
            // (redistributing the records in flight) and a quarter of the others, CLAIM or
            // NO_CLAIM.
            let from_checkpoint = if unaligned.enabled() { rescale_from_checkpoint } else { aligned_from_checkpoint == 0 };
            let from = if from_checkpoint { RescaleFrom::Checkpoint } else { RescaleFrom::Savepoint };
            let restore_mode = if claim { RestoreMode::Claim } else { RestoreMode::NoClaim };
            let mut swarm: Vec<String> = kinds.iter().zip(&enabled).filter(|(_, on)| **on).map(|(k, _)| k.clone()).collect();
            let mut faults = swarm_faults(&swarm, &allowed, &job, raw_faults);
            with_time_faults((&mut swarm, &mut faults), &allowed, &job, &raw_time_faults);
            Scenario {
                name: "explore".into(),
                seed,
                backend: backends[backend],
                swarm,
                job,
                input: match user_input {
                    Some(records) => InputSpec::Records { records },
                    None => InputSpec::Generated { records, keys, min_value, max_value, boundary_keys },
                },
                checkpoint: CheckpointConfig::every(interval_ms).with_mode(mode).with_num_retained(num_retained).with_tolerable_failures(tolerable).with_concurrency(max_concurrent, min_pause_ms).with_unaligned(unaligned),
                // Enough restarts for every must-recover fault, whatever the strategy; only corruption
                // may end a case.
                restart: match restart {
                    0 => RestartStrategy::FixedDelay { attempts: 40, delay_ms },
                    1 => RestartStrategy::FailureRate { max_failures: 40, interval_ms: 1_000_000, delay_ms },
                    _ => RestartStrategy::ExponentialDelay { initial_ms: delay_ms.max(1), max_ms: 60, multiplier: 2.0, reset_threshold_ms: 200, jitter: 0.5, attempts: Some(40) },
                },
                faults,
                savepoints: savepoint
                    .map(|(at_ms, native)| SavepointRequest { at_ms, name: "user".into(), format: if native { SavepointFormat::Native } else { SavepointFormat::Canonical }, stop: false })
                    .into_iter()
                    .collect(),
                channel_capacity,
                rescale: rescale.map(|(at_ms, parallelism)| Rescale { at_ms, parallelism, from, restore_mode }),
                verify_restored_files,
                initial_snapshot: None,
                audit_storage: true,
                sabotage,
            }
        })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::fault::FaultKind;
    use crate::job::Datum;
    use proptest::strategy::ValueTree;

    #[test]
    fn the_fault_kind_names_are_those_of_every_kind() {
        let names: Vec<&str> = FaultKind::ALL.iter().map(|kind| kind.name()).collect();
        assert_eq!(names, ALL_FAULT_KINDS);
        let job = job_strategy()
            .new_tree(&mut proptest::test_runner::TestRunner::deterministic())
            .unwrap()
            .current();
        for kind in ALL_FAULT_KINDS {
            assert_eq!(make_fault(kind, &job, (0, 1, 2, 3, 4)).kind_name(), kind);
        }
    }

    #[test]
    fn every_generated_job_uses_a_user_operator_when_one_is_given() {
        for users in [
            vec![("mine".to_string(), false)],
            vec![("mine".to_string(), true)],
        ] {
            let config = StrategyConfig {
                user_operators: users,
                backends: vec![BackendKind::Memory],
                ..StrategyConfig::default()
            };
            let strategy = scenario_strategy(config);
            let mut runner = proptest::test_runner::TestRunner::deterministic();
            for _ in 0..50 {
                let scenario = strategy.new_tree(&mut runner).unwrap().current();
                assert!(
                    scenario.job.stages.iter().any(
                        |s| matches!(&s.op, OperatorSpec::User { name, .. } if name == "mine")
                    ),
                    "{}",
                    scenario.to_toml()
                );
            }
        }
    }

    fn drawn(config: StrategyConfig, count: usize) -> Vec<Scenario> {
        let strategy = scenario_strategy(config);
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        (0..count)
            .map(|_| strategy.new_tree(&mut runner).unwrap().current())
            .collect()
    }

    #[test]
    fn generated_inputs_keep_to_the_record_key_and_value_ranges() {
        let config = StrategyConfig {
            records_min: 7,
            records_max: 9,
            keys_max: 2,
            values: (10, 20),
            ..StrategyConfig::default()
        };
        for scenario in drawn(config, 40) {
            let records = scenario.input_records().unwrap();
            assert!((7..=9).contains(&records.len()), "{}", records.len());
            assert!(records.iter().all(|r| {
                let tx: crate::job::Transaction = r.value.get().unwrap();
                (10..=20).contains(&tx.amount_cents)
            }));
            let keys: BTreeSet<&str> = records.iter().map(|r| r.key.as_str()).collect();
            assert!(keys.len() <= 2, "{keys:?}");
        }
    }

    #[test]
    fn channel_capacities_range_from_one_record_to_sixteen() {
        let capacities: BTreeSet<usize> = drawn(StrategyConfig::default(), 200)
            .iter()
            .map(|scenario| scenario.channel_capacity)
            .collect();
        // A set in order: its first is the least capacity drawn, its last the largest.
        assert_eq!(capacities.first(), Some(&1), "{capacities:?}");
        assert!(capacities.iter().any(|c| *c == 4), "{capacities:?}");
        let largest = capacities.last().copied().unwrap_or(0);
        assert!(largest > 4 && largest <= 16, "{capacities:?}");
    }

    #[test]
    fn every_windowed_job_ends_in_a_window_with_event_time() {
        let config = StrategyConfig {
            windowed: true,
            ..StrategyConfig::default()
        };
        for scenario in drawn(config, 40) {
            assert!(scenario.job.window().is_some(), "{:?}", scenario.job.stages);
            assert!(scenario.job.source.watermarks.is_some());
        }
    }

    #[test]
    fn a_user_input_strategy_replaces_the_built_in_generator() {
        let input = InputStrategy::new(|| {
            proptest::collection::vec(1i64..=3, 1..=4).prop_map(|values| {
                values
                    .into_iter()
                    .enumerate()
                    .map(|(i, value)| InputRecord::transaction(&format!("t{i}"), "acct", value))
                    .collect()
            })
        });
        let config = StrategyConfig {
            input: Some(input),
            ..StrategyConfig::default()
        };
        for scenario in drawn(config, 20) {
            let InputSpec::Records { records } = &scenario.input else {
                panic!("the user's records: {:?}", scenario.input);
            };
            assert!((1..=4).contains(&records.len()));
            assert!(records.iter().all(|r| r.key == Datum::from("acct")));
        }
    }

    #[test]
    fn user_chaining_rules_out_built_in_neighbours_and_repeats() {
        let alone = UserChaining {
            with_itself: false,
            with_built_ins: false,
        };
        let config = StrategyConfig {
            user_operators: vec![("mine".into(), true)],
            user_chaining: alone,
            ..StrategyConfig::default()
        };
        for scenario in drawn(config, 40) {
            let stages = &scenario.job.stages;
            assert_eq!(stages.len(), 1, "{}", scenario.to_toml());
            assert!(matches!(&stages[0].op, OperatorSpec::User { name, .. } if name == "mine"));
        }
        let default = StrategyConfig {
            user_operators: vec![("mine".into(), true)],
            ..StrategyConfig::default()
        };
        let scenarios = drawn(default, 40);
        assert!(
            scenarios.iter().any(|s| s.job.stages.len() > 1),
            "the default chains"
        );
    }

    #[test]
    fn ranges_out_of_order_are_refused() {
        let records = StrategyConfig {
            records_min: 9,
            records_max: 3,
            ..StrategyConfig::default()
        };
        assert!(matches!(
            records.validate(),
            Err(StrategyError::Range {
                what: "records",
                ..
            })
        ));
        let values = StrategyConfig {
            values: (5, 1),
            ..StrategyConfig::default()
        };
        assert!(matches!(
            values.validate(),
            Err(StrategyError::Range { what: "values", .. })
        ));
        let modes = StrategyConfig {
            modes: Vec::new(),
            ..StrategyConfig::default()
        };
        assert_eq!(modes.validate(), Err(StrategyError::NoMode));
    }
}
