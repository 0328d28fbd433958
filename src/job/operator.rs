//! The `Operator` seam and the built-in operators. A user's operator implements the same trait
//! and is tested the same way.
//!
//! ```
//! use faultline::job::{Operator, OperatorContext, OperatorError, Origin, Record};
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
//!         if record.value >= 0 {
//!             out.push(record);
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let record = |value| Record {
//!     id: "r0".into(),
//!     key: "k".into(),
//!     value,
//!     origin: Origin { partition: 0, offset: 0 },
//! };
//! let mut op = DropNegative;
//! let mut ctx = OperatorContext::new(0, 0, None);
//! let mut out = Vec::new();
//! op.process(record(-5), &mut ctx, &mut out)?;
//! op.process(record(5), &mut ctx, &mut out)?;
//! assert_eq!(out.len(), 1);
//! # Ok::<(), OperatorError>(())
//! ```

use super::record::Record;
use super::spec::{FailCounter, OperatorSpec};
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
}

/// What an operator sees while processing one record.
pub struct OperatorContext<'a> {
    /// Restart count of the job: 0 on the first attempt.
    pub attempt: u32,
    /// This subtask's index.
    pub subtask: u16,
    keyed: Option<KeyedContext<'a>>,
}

impl<'a> OperatorContext<'a> {
    /// A context; `keyed` is the state of the record's key for keyed operators.
    pub fn new(attempt: u32, subtask: u16, keyed: Option<KeyedContext<'a>>) -> Self {
        Self {
            attempt,
            subtask,
            keyed,
        }
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
/// per record and `snapshot_state` per checkpoint barrier.
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

/// Builds the built-in operator a spec describes.
pub fn build(spec: &OperatorSpec) -> Box<dyn Operator> {
    match spec.clone() {
        OperatorSpec::Scale { factor } => Box::new(MapOp(move |v: i64| v.wrapping_mul(factor))),
        OperatorSpec::Offset { delta } => Box::new(MapOp(move |v: i64| v.wrapping_add(delta))),
        OperatorSpec::FilterMin { min } => Box::new(FilterMin { min }),
        OperatorSpec::Split { parts } => Box::new(Split { parts }),
        OperatorSpec::Sum => Box::new(Running {
            name: "sum",
            state: None,
            combine: i64::wrapping_add,
        }),
        OperatorSpec::Max => Box::new(Running {
            name: "max",
            state: None,
            combine: i64::max,
        }),
        OperatorSpec::Stats => Box::new(Stats::default()),
        // The runtime builds registered user operators itself; one not registered fails loudly.
        OperatorSpec::User { name, .. } => Box::new(Unregistered { name }),
        OperatorSpec::FailingMap { fail_at, counter } => Box::new(FailingMap {
            fail_at,
            counter,
            seen: 0,
        }),
    }
}

/// A stateless value map.
struct MapOp<F>(F);

impl<F: FnMut(i64) -> i64> Operator for MapOp<F> {
    fn process(
        &mut self,
        mut record: Record,
        _: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        record.value = (self.0)(record.value);
        out.push(record);
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
        if record.value >= self.min {
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
        let parts = i64::from(self.parts);
        let share = record.value.div_euclid(parts);
        let remainder = record.value.rem_euclid(parts);
        for part in 0..parts {
            // The first part takes the remainder, so the parts sum to the original exactly.
            let value = if part == 0 { share + remainder } else { share };
            out.push(Record {
                id: format!("{}.{part}", record.id),
                key: record.key.clone(),
                value,
                origin: record.origin,
            });
        }
        Ok(())
    }
}

/// A keyed running aggregate in one `ValueState<i64>`; emits the new value.
struct Running {
    name: &'static str,
    state: Option<ValueState<i64>>,
    combine: fn(i64, i64) -> i64,
}

impl Operator for Running {
    fn open(&mut self, backend: Option<&mut dyn StateBackend>) -> Result<(), OperatorError> {
        let backend = backend
            .ok_or_else(|| OperatorError::Failed("a keyed operator needs a backend".into()))?;
        self.state = Some(ValueState::declare(backend, self.name)?);
        Ok(())
    }

    fn process(
        &mut self,
        mut record: Record,
        ctx: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        let state = self
            .state
            .as_ref()
            .ok_or_else(|| OperatorError::Failed("process before open".into()))?;
        let keyed = ctx.keyed()?;
        let value = match state.get(keyed)? {
            None => record.value,
            Some(previous) => (self.combine)(previous, record.value),
        };
        state.set(keyed, &value)?;
        record.value = value;
        out.push(record);
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

struct StatsHandles {
    count: ValueState<i64>,
    recent: ListState<i64>,
    buckets: MapState<String, i64>,
}

#[derive(Default)]
struct Stats {
    handles: Option<StatsHandles>,
}

impl Operator for Stats {
    fn open(&mut self, backend: Option<&mut dyn StateBackend>) -> Result<(), OperatorError> {
        let backend = backend
            .ok_or_else(|| OperatorError::Failed("a keyed operator needs a backend".into()))?;
        let count = ValueState::declare(backend, "count")?;
        let recent = ListState::declare(backend, "recent")?;
        let buckets = MapState::declare(backend, "buckets")?;
        self.handles = Some(StatsHandles {
            count,
            recent,
            buckets,
        });
        Ok(())
    }

    fn process(
        &mut self,
        mut record: Record,
        ctx: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        let StatsHandles {
            count,
            recent,
            buckets,
        } = self
            .handles
            .as_ref()
            .ok_or_else(|| OperatorError::Failed("process before open".into()))?;
        let keyed = ctx.keyed()?;
        let new_count = count.get(keyed)?.unwrap_or(0) + 1;
        count.set(keyed, &new_count)?;
        let mut values = recent.get(keyed)?;
        values.push(record.value);
        if values.len() > STATS_RECENT_MAX {
            values.remove(0);
        }
        recent.update(keyed, &values)?;
        let bucket = stats_bucket(record.value).to_string();
        let in_bucket = buckets.get(keyed, &bucket)?.unwrap_or(0) + 1;
        buckets.put(keyed, &bucket, &in_bucket)?;
        record.value = new_count;
        out.push(record);
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
