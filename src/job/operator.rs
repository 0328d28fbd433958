//! The `Operator` seam and the built-in operators. A user's operator implements the same trait
//! and is tested the same way.
//!
//! Records carry the user's types in canonical form; an operator reads them with
//! [`Record::value_as`]. The built-in operators work on the tutorial's [`Transaction`]s.
//!
//! ```
//! use faultline::job::{Operator, OperatorContext, OperatorError, Record, Transaction};
//!
//! /// Drops negative amounts; stateless, so it needs no keyed context.
//! struct DropNegative;
//!
//! impl Operator for DropNegative {
//!     fn process(
//!         &mut self,
//!         record: Record,
//!         _ctx: &mut OperatorContext<'_>,
//!         out: &mut Vec<Record>,
//!     ) -> Result<(), OperatorError> {
//!         if record.value_as::<Transaction>()?.amount_cents >= 0 {
//!             out.push(record);
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let record = |cents| Record::transaction("r0", "acct-1", cents);
//! let mut op = DropNegative;
//! let mut ctx = OperatorContext::new(0, 0, None);
//! let mut out = Vec::new();
//! op.process(record(-5), &mut ctx, &mut out)?;
//! op.process(record(5), &mut ctx, &mut out)?;
//! assert_eq!(out.len(), 1);
//! # Ok::<(), OperatorError>(())
//! ```

use super::datum::DataError;
use super::record::{transaction_datum, Record, Transaction};
use super::spec::{FailCounter, OperatorSpec};
use crate::state::timers::Timer;
use crate::state::ttl::{TtlConfig, TtlValueState};
use crate::state::{KeyedContext, ListState, MapState, StateBackend, StateError, ValueState};

/// An operator failed while processing, snapshotting or restoring.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OperatorError {
    /// The operator's own logic failed (Flink: the user function threw).
    #[error("{0}")]
    Failed(String),
    /// Its state backend failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// A record or value is not of the type the operator reads or cannot be written.
    #[error(transparent)]
    Data(#[from] DataError),
}

/// A record's transaction, for the built-in operators.
fn transaction(record: &Record) -> Result<Transaction, OperatorError> {
    Ok(record.value_as()?)
}

/// `record` with its transaction's amount replaced.
fn with_amount(record: Record, tx: &Transaction, amount_cents: i64) -> Record {
    Record {
        value: transaction_datum(&tx.account, amount_cents),
        ..record
    }
}

/// What an operator sees while processing one record.
pub struct OperatorContext<'a> {
    /// Restart count of the job: 0 on the first attempt.
    pub attempt: u32,
    /// This subtask's index.
    pub subtask: u16,
    /// The subtask's current watermark (`i64::MIN` before any, and after every restore).
    pub watermark_ms: i64,
    /// The virtual clock: processing time.
    pub now_ms: u64,
    keyed: Option<KeyedContext<'a>>,
}

impl<'a> OperatorContext<'a> {
    /// A context; `keyed` is the state of the record's key for keyed operators. Its time is
    /// none yet: see [`OperatorContext::at`].
    pub fn new(attempt: u32, subtask: u16, keyed: Option<KeyedContext<'a>>) -> Self {
        Self {
            attempt,
            subtask,
            watermark_ms: i64::MIN,
            now_ms: 0,
            keyed,
        }
    }

    /// The context at watermark `watermark_ms` and virtual time `now_ms`.
    pub fn at(self, watermark_ms: i64, now_ms: u64) -> Self {
        Self {
            watermark_ms,
            now_ms,
            ..self
        }
    }

    /// What the callback did to the current key's timers.
    pub(crate) fn take_timer_changes(&mut self) -> Vec<crate::state::timers::TimerChange> {
        self.keyed
            .as_mut()
            .map(KeyedContext::take_timer_changes)
            .unwrap_or_default()
    }

    /// The keyed state of the current record's key.
    pub fn keyed(&mut self) -> Result<&mut KeyedContext<'a>, OperatorError> {
        self.keyed.as_mut().ok_or_else(|| {
            OperatorError::Failed("keyed state used by an operator that is not keyed".into())
        })
    }
}

impl std::fmt::Debug for OperatorContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorContext")
            .field("attempt", &self.attempt)
            .field("subtask", &self.subtask)
            .finish()
    }
}

/// One subtask of a stream operator.
///
/// Lifecycle per attempt: built fresh, `open` (declare keyed state, after the backend restored
/// it), `restore_state` (operator state from the restored checkpoint, if any), then `process`
/// per record, `on_timer` per timer due (registered through the keyed context, kept as keyed
/// state) and `snapshot_state` per checkpoint barrier.
pub trait Operator {
    /// Declares keyed state in `backend` (present exactly for keyed operators). Stateless
    /// operators need not implement it.
    fn open(&mut self, _backend: Option<&mut dyn StateBackend>) -> Result<(), OperatorError> {
        Ok(())
    }

    /// Processes one record, appending outputs to `out`.
    fn process(
        &mut self,
        record: Record,
        ctx: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError>;

    /// A timer of the context's key fired (its cell is gone already); outputs go to `out`, as
    /// from `process`. Default: nothing (an operator that registers no timer).
    fn on_timer(
        &mut self,
        _timer: &Timer,
        _ctx: &mut OperatorContext<'_>,
        _out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        Ok(())
    }

    /// Operator (non-keyed) state to checkpoint; default none.
    fn snapshot_state(&mut self) -> Vec<u8> {
        Vec::new()
    }

    /// Restores operator state: this subtask's own entry, or every old subtask's entry after a
    /// change of parallelism (union redistribution).
    fn restore_state(&mut self, _states: &[Vec<u8>]) -> Result<(), OperatorError> {
        Ok(())
    }
}

/// Where and when a timer fires: the subtask, its attempt, and its clocks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimerSite {
    pub(crate) attempt: u32,
    pub(crate) subtask: u16,
    pub(crate) watermark_ms: i64,
    pub(crate) now_ms: u64,
    pub(crate) max_parallelism: u16,
}

/// Fires `timer`, already taken from `timers`: clears its cell, runs `op.on_timer` in its
/// key's context, and applies what the callback did to that key's timers. The outer error is
/// the backend's; the inner, the operator's.
pub(crate) fn fire_timer(
    op: &mut dyn Operator,
    backend: &mut dyn StateBackend,
    timers: &mut crate::state::timers::TimerQueue,
    timer: &Timer,
    site: TimerSite,
    out: &mut Vec<Record>,
) -> Result<Result<(), OperatorError>, StateError> {
    let group = timer.key.key_group(site.max_parallelism);
    let mut keyed = KeyedContext::new(backend, group, timer.key.as_bytes()).at_time(
        Some(timer.timestamp_ms),
        site.watermark_ms,
        site.now_ms,
    );
    let stored = timer.stored();
    keyed.delete_timer(stored.domain, stored.timestamp_ms, &stored.namespace)?;
    // The queue gave the timer up already.
    let _ = keyed.take_timer_changes();
    let mut ctx = OperatorContext::new(site.attempt, site.subtask, Some(keyed))
        .at(site.watermark_ms, site.now_ms);
    let result = op.on_timer(timer, &mut ctx, out);
    for change in ctx.take_timer_changes() {
        timers.apply(&timer.key, &change);
    }
    Ok(result)
}

/// Builds a window stage's operator for one subtask (given the stage's spec and the subtask),
/// in place of the built-in one: how a user's own window operator is put under faults and
/// judged by the built-in windows' model ([`crate::campaign::Seams::windows`]). It must keep
/// the built-in layout of window state ([`crate::job::window::WINDOWS`],
/// [`crate::job::session::SESSIONS`]), which the oracle compares with the model's; [`build`]
/// makes the built-in operator, for the kinds it leaves alone or to wrap.
pub type WindowFactory = dyn Fn(&OperatorSpec, u16) -> Box<dyn Operator> + Send + Sync;

/// Builds the built-in operator a spec describes.
pub fn build(spec: &OperatorSpec) -> Box<dyn Operator> {
    match spec.clone() {
        OperatorSpec::Scale { factor } => Box::new(MapOp(move |v: i64| v.wrapping_mul(factor))),
        OperatorSpec::Offset { delta } => Box::new(MapOp(move |v: i64| v.wrapping_add(delta))),
        OperatorSpec::FilterMin { min } => Box::new(FilterMin { min }),
        OperatorSpec::Split { parts } => Box::new(Split { parts }),
        OperatorSpec::Sum => Box::new(Running {
            state: ValueState::new("sum"),
            combine: i64::wrapping_add,
        }),
        OperatorSpec::Max => Box::new(Running {
            state: ValueState::new("max"),
            combine: i64::max,
        }),
        OperatorSpec::Stats => Box::new(Stats),
        OperatorSpec::ExpiringSum { ttl_ms, update } => Box::new(ExpiringSum {
            state: TtlValueState::new("expiring-sum", TtlConfig { ttl_ms, update }),
        }),
        OperatorSpec::SessionWindow {
            gap_ms,
            aggregate,
            allowed_lateness_ms,
        } => Box::new(super::session::SessionOperator {
            gap_ms,
            aggregate,
            allowed_lateness_ms,
        }),
        OperatorSpec::TumblingWindow { .. }
        | OperatorSpec::SlidingWindow { .. }
        | OperatorSpec::ProcessingTimeWindow { .. } => {
            let shape = spec.window_shape().expect("a window spec has a shape");
            Box::new(super::window::WindowOperator { shape })
        }
        // The runtime builds registered user operators itself; one not registered fails loudly.
        OperatorSpec::User { name, .. } => Box::new(Unregistered { name }),
        OperatorSpec::FailingMap { fail_at, counter } => Box::new(FailingMap {
            fail_at,
            counter,
            seen: 0,
        }),
    }
}

/// A stateless map of the amount.
struct MapOp<F>(F);

impl<F: FnMut(i64) -> i64> Operator for MapOp<F> {
    fn process(
        &mut self,
        record: Record,
        _: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        let tx = transaction(&record)?;
        let amount = (self.0)(tx.amount_cents);
        out.push(with_amount(record, &tx, amount));
        Ok(())
    }
}

struct FilterMin {
    min: i64,
}

impl Operator for FilterMin {
    fn process(
        &mut self,
        record: Record,
        _: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        if transaction(&record)?.amount_cents >= self.min {
            out.push(record);
        }
        Ok(())
    }
}

struct Split {
    parts: u32,
}

impl Operator for Split {
    fn process(
        &mut self,
        record: Record,
        _: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        let tx = transaction(&record)?;
        let parts = i64::from(self.parts);
        let share = tx.amount_cents.div_euclid(parts);
        let remainder = tx.amount_cents.rem_euclid(parts);
        for part in 0..parts {
            // The first part takes the remainder, so the parts sum to the original exactly.
            let value = if part == 0 { share + remainder } else { share };
            out.push(Record {
                id: format!("{}.{part}", record.id),
                key: record.key.clone(),
                value: transaction_datum(&tx.account, value),
                side: None,
                timestamp_ms: record.timestamp_ms,
                origin: record.origin,
            });
        }
        Ok(())
    }
}

/// A keyed running aggregate of amounts in one `ValueState<i64>`; emits the new value as the
/// transaction's amount.
struct Running {
    state: ValueState<i64>,
    combine: fn(i64, i64) -> i64,
}

impl Operator for Running {
    fn process(
        &mut self,
        record: Record,
        ctx: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        let tx = transaction(&record)?;
        let keyed = ctx.keyed()?;
        let value = match self.state.get(keyed)? {
            None => tx.amount_cents,
            Some(previous) => (self.combine)(previous, tx.amount_cents),
        };
        self.state.set(keyed, &value)?;
        out.push(with_amount(record, &tx, value));
        Ok(())
    }
}

/// `OperatorSpec::ExpiringSum`: a running sum in TTL state; a multiple of 3 only reads.
struct ExpiringSum {
    state: TtlValueState<i64>,
}

impl Operator for ExpiringSum {
    fn process(
        &mut self,
        record: Record,
        ctx: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        let tx = transaction(&record)?;
        let keyed = ctx.keyed()?;
        let live = self.state.get(keyed)?;
        let value = if tx.amount_cents.rem_euclid(3) == 0 {
            live.unwrap_or(0)
        } else {
            let sum = live.unwrap_or(0).wrapping_add(tx.amount_cents);
            self.state.set(keyed, &sum)?;
            sum
        };
        out.push(with_amount(record, &tx, value));
        Ok(())
    }
}

/// The value bucket `Stats` counts a value in.
pub fn stats_bucket(value: i64) -> &'static str {
    match value {
        i64::MIN..=-1 => "negative",
        0..=999 => "small",
        1000..=99_999 => "medium",
        _ => "large",
    }
}

/// How many recent values `Stats` keeps.
pub const STATS_RECENT_MAX: usize = 3;

const STATS_COUNT: ValueState<i64> = ValueState::new("count");
const STATS_RECENT: ListState<i64> = ListState::new("recent");
const STATS_BUCKETS: MapState<String, i64> = MapState::new("buckets");

/// Per account: how many transactions, the last few amounts, and how many fell in each bucket;
/// emits the count as the amount.
struct Stats;

impl Operator for Stats {
    fn process(
        &mut self,
        record: Record,
        ctx: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        let tx = transaction(&record)?;
        let keyed: &mut KeyedContext<'_> = ctx.keyed()?;
        let new_count = STATS_COUNT.get(keyed)?.unwrap_or(0) + 1;
        STATS_COUNT.set(keyed, &new_count)?;
        let mut values = STATS_RECENT.get(keyed)?;
        values.push(tx.amount_cents);
        if values.len() > STATS_RECENT_MAX {
            values.remove(0);
        }
        STATS_RECENT.update(keyed, &values)?;
        let bucket = stats_bucket(tx.amount_cents).to_string();
        let in_bucket = STATS_BUCKETS.get(keyed, &bucket)?.unwrap_or(0) + 1;
        STATS_BUCKETS.put(keyed, &bucket, &in_bucket)?;
        out.push(with_amount(record, &tx, new_count));
        Ok(())
    }
}

/// The tutorial's failing map: identity, except that it fails on its `fail_at`-th record.
struct FailingMap {
    fail_at: u64,
    counter: FailCounter,
    // A plain field: rebuilt (so reset to zero) by every restart. That is the tutorial's bug
    // when `counter` is `PlainField`.
    seen: u64,
}

impl Operator for FailingMap {
    fn process(
        &mut self,
        record: Record,
        ctx: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        self.seen += 1;
        let armed = match self.counter {
            FailCounter::PlainField => true,
            FailCounter::FirstAttempt => ctx.attempt == 0,
        };
        if armed && self.seen == self.fail_at {
            return Err(OperatorError::Failed(format!(
                "failing map raised on record #{} ({})",
                self.seen, record.id
            )));
        }
        out.push(record);
        Ok(())
    }
}

/// Stands in for a user operator nobody registered: fails on its first record, naming it.
struct Unregistered {
    name: String,
}

impl Operator for Unregistered {
    fn process(
        &mut self,
        _: Record,
        _: &mut OperatorContext<'_>,
        _: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        Err(OperatorError::Failed(format!(
            "no user operator named {:?} is registered",
            self.name
        )))
    }
}
