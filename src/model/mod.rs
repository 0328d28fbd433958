//! The reference model: the pure semantics of a job, evaluated over an input prefix with no
//! engine code — no channels, no scheduler, no backends, no checkpoints. The oracle compares
//! the engine against it.
//!
//! The built-in operators never change a record's key and the source partitions its input by
//! key, so each key's records reach every operator in input order; evaluating partition by
//! partition therefore yields exactly the state and outputs of any correct execution. The
//! operator semantics below are written again here on purpose, independently of
//! `job::operator`: an oracle that called the engine's code would agree with its bugs.
//!
//! ```
//! use faultline::job::{Input, InputRecord, JobSpec, Transaction};
//! use faultline::model::evaluate;
//!
//! let job: JobSpec = toml::from_str(
//!     r#"
//! name = "sum"
//! source = { parallelism = 1 }
//! sink = { kind = "print" }
//! stages = [{ name = "sum", op = { kind = "sum" }, parallelism = 1 }]
//! "#,
//! )?;
//! let records: Vec<InputRecord> = [3, 4, 5]
//!     .iter()
//!     .enumerate()
//!     .map(|(i, v)| InputRecord::transaction(&format!("r{i}"), "k", *v))
//!     .collect();
//! let input = Input::partitioned(&records, 1);
//! // The model over the whole input: one running sum per record.
//! let model = evaluate(&job, &input, &input.end_positions());
//! let sums: Vec<i64> = model
//!     .outputs
//!     .iter()
//!     .map(|r| r.value_as::<Transaction>().map(|t| t.amount_cents))
//!     .collect::<Result<_, _>>()?;
//! assert_eq!(sums, [3, 7, 12]);
//! assert_eq!(model.state.len(), 1);
//! assert!(model.failures.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod session;
mod ttl;
mod window;

use std::collections::BTreeMap;

use crate::job::user::{self, ModelState, UserOperator};
use crate::job::{
    transaction_datum, Datum, Input, JobSpec, OperatorError, OperatorSpec, Positions, Record,
    StageSpec, Transaction,
};
use crate::state::timers::{TimeDomain, Timer, TimerKey};
use crate::state::{StateAddr, StateEntry, StateView};

/// What a correct execution has produced after reading the input up to some positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelOutcome {
    /// Keyed state of every keyed operator.
    pub state: StateView,
    /// Records the sink received, per partition in input order.
    pub outputs: Vec<Record>,
    /// Records a stage's model failed on (they emit nothing): a user's model or a record of a
    /// type a built-in operator does not read.
    pub failures: Vec<ModelFailure>,
}

/// A model failed on a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFailure {
    /// The stage.
    pub stage: String,
    /// The record's id.
    pub record: String,
    /// What failed.
    pub reason: String,
}

/// Per-stage state of a built-in operator.
#[derive(Debug, Clone, Default)]
struct StageState {
    values: BTreeMap<Datum, i64>,
    counts: BTreeMap<Datum, i64>,
    recent: BTreeMap<Datum, Vec<i64>>,
    buckets: BTreeMap<(Datum, &'static str), i64>,
}

const RECENT_MAX: usize = 3;

fn bucket(value: i64) -> &'static str {
    if value < 0 {
        "negative"
    } else if value < 1000 {
        "small"
    } else if value < 100_000 {
        "medium"
    } else {
        "large"
    }
}

fn with_amount(record: Record, tx: &Transaction, amount_cents: i64) -> Record {
    Record {
        value: transaction_datum(&tx.account, amount_cents),
        ..record
    }
}

fn apply(
    op: &OperatorSpec,
    state: &mut StageState,
    record: Record,
) -> Result<Vec<Record>, OperatorError> {
    let tx: Transaction = record.value_as()?;
    let amount = tx.amount_cents;
    Ok(match op {
        OperatorSpec::Scale { factor } => {
            vec![with_amount(record, &tx, amount.wrapping_mul(*factor))]
        }
        OperatorSpec::Offset { delta } => {
            vec![with_amount(record, &tx, amount.wrapping_add(*delta))]
        }
        OperatorSpec::FilterMin { min } => {
            if amount >= *min {
                vec![record]
            } else {
                vec![]
            }
        }
        OperatorSpec::Split { parts } => {
            let n = i64::from(*parts);
            let base = amount.div_euclid(n);
            let extra = amount - base * n;
            (0..n)
                .map(|i| Record {
                    id: format!("{}.{i}", record.id),
                    key: record.key.clone(),
                    value: transaction_datum(&tx.account, if i == 0 { base + extra } else { base }),
                    side: None,
                    timestamp_ms: record.timestamp_ms,
                    origin: record.origin,
                })
                .collect()
        }
        OperatorSpec::Sum | OperatorSpec::Max => {
            let slot = state.values.entry(record.key.clone());
            let value = match (op, slot) {
                (_, std::collections::btree_map::Entry::Vacant(slot)) => *slot.insert(amount),
                (OperatorSpec::Sum, std::collections::btree_map::Entry::Occupied(mut slot)) => {
                    *slot.get_mut() = slot.get().wrapping_add(amount);
                    *slot.get()
                }
                (_, std::collections::btree_map::Entry::Occupied(mut slot)) => {
                    *slot.get_mut() = (*slot.get()).max(amount);
                    *slot.get()
                }
            };
            vec![with_amount(record, &tx, value)]
        }
        OperatorSpec::Stats => {
            let count = state.counts.entry(record.key.clone()).or_insert(0);
            *count += 1;
            let count = *count;
            let recent = state.recent.entry(record.key.clone()).or_default();
            recent.push(amount);
            if recent.len() > RECENT_MAX {
                recent.drain(..recent.len() - RECENT_MAX);
            }
            *state
                .buckets
                .entry((record.key.clone(), bucket(amount)))
                .or_insert(0) += 1;
            vec![with_amount(record, &tx, count)]
        }
        OperatorSpec::FailingMap { .. } => vec![record],
        // What a window emits depends on the watermarks of the run: over the input the model
        // passes the window's input on (`check::window` balances the results against it);
        // along the events, `window::WindowModel` says what it emits.
        OperatorSpec::TumblingWindow { .. }
        | OperatorSpec::SlidingWindow { .. }
        | OperatorSpec::ProcessingTimeWindow { .. }
        | OperatorSpec::SessionWindow { .. } => vec![record],
        OperatorSpec::User { .. } => unreachable!("user operators are applied by their models"),
        OperatorSpec::ExpiringSum { .. } => {
            unreachable!("the expiring sum is applied by its own model")
        }
    })
}

/// One stage's model: the state its operator holds after the records applied so far. The
/// at-least-once oracle keeps one per stage and key, fed the records that stage actually
/// received.
#[derive(Debug, Clone, Default)]
pub struct StageModel {
    built_in: StageState,
    user: ModelState,
    window: window::WindowModel,
    session: session::SessionModel,
    expiring: ttl::ExpiringSumModel,
    now_ms: u64,
}

impl StageModel {
    /// Applies `record` to `stage`'s state and returns what the stage emits. A side output
    /// passes through unchanged, as it does in the engine.
    ///
    /// # Panics
    /// If the stage is a user operator `users` lacks (a case refuses such a job before it
    /// runs, so the oracle never gets here with one).
    pub fn apply(
        &mut self,
        stage: &StageSpec,
        users: &[UserOperator],
        record: Record,
    ) -> Result<Vec<Record>, ModelFailure> {
        if record.side.is_some() {
            return Ok(vec![record]);
        }
        let id = record.id.clone();
        let applied = match &stage.op {
            OperatorSpec::User { name, .. } => user::find(users, name)
                .unwrap_or_else(|| panic!("no model for user operator {name:?}"))
                .model
                .apply(&mut self.user, record),
            OperatorSpec::ExpiringSum { ttl_ms, update } => {
                (self.expiring).apply((*ttl_ms, *update), record, self.now_ms)
            }
            op => apply(op, &mut self.built_in, record),
        };
        applied.map_err(|error| ModelFailure {
            stage: stage.name.clone(),
            record: id,
            reason: error.to_string(),
        })
    }

    /// Sets the processing time the next records and timers are applied at: 0 over an input,
    /// along a run's events the time the engine handled them.
    pub fn set_now_ms(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
        self.user.set_now_ms(now_ms);
    }

    /// [`StageModel::apply`] along the run's events, where the stage's task held watermark
    /// `watermark_ms` as it took `record` in: a window stage then says what it emits.
    pub fn apply_at(
        &mut self,
        stage: &StageSpec,
        users: &[UserOperator],
        record: Record,
        watermark_ms: i64,
    ) -> Result<Vec<Record>, ModelFailure> {
        let Some(shape) = stage.op.window_shape().filter(|_| record.side.is_none()) else {
            return self.apply(stage, users, record);
        };
        let id = record.id.clone();
        let applied = match shape.gap_ms {
            Some(_) => self.session.apply(&shape, record, watermark_ms),
            None => (self.window).apply(&shape, record, (watermark_ms, self.now_ms)),
        };
        applied.map_err(|error| ModelFailure {
            stage: stage.name.clone(),
            record: id,
            reason: error.to_string(),
        })
    }

    /// Fires `timer` on the stage's state, as the engine did: takes it from the key's timers
    /// and applies the window's rules, or the user model's `on_timer`. `Ok(None)` when the
    /// model holds no such timer (the engine fired one never registered, deleted, or fired
    /// already).
    ///
    /// # Panics
    /// If the stage is neither a window nor a user's operator `users` has (the oracle asks
    /// only for those whose model [fires timers](user::OperatorModel::fires_timers)).
    pub fn on_timer(
        &mut self,
        stage: &StageSpec,
        users: &[UserOperator],
        timer: &Timer,
    ) -> Result<Option<Vec<Record>>, ModelFailure> {
        let failure = |error: &dyn std::fmt::Display| ModelFailure {
            stage: stage.name.clone(),
            record: user::timer_record(timer).id,
            reason: error.to_string(),
        };
        if let Some(shape) = stage.op.window_shape() {
            let start: i64 = timer.namespace.parse().map_err(|e| failure(&e))?;
            let (key, at_ms) = (&timer.key, timer.timestamp_ms);
            let fired = match shape.gap_ms {
                Some(_) => self.session.fire(&shape, key, at_ms, start),
                None => self.window.fire(&shape, key, at_ms, start),
            };
            return Ok(fired.filter(|_| timer.domain == shape.domain()));
        }
        let model = (stage.op.user_name())
            .and_then(|name| user::find(users, name))
            .unwrap_or_else(|| panic!("{}: not a user's operator with timers", stage.name));
        let stored = TimerKey::new(timer.domain, timer.timestamp_ms, &timer.namespace);
        let mut ctx = self.user.keyed(&timer.key);
        if !ctx.timers().map_err(|e| failure(&e))?.contains(&stored) {
            return Ok(None);
        }
        ctx.delete_timer(stored.domain, stored.timestamp_ms, &stored.namespace)
            .map_err(|e| failure(&e))?;
        let fired = model.model.on_timer(&mut self.user, timer);
        fired.map(Some).map_err(|e| failure(&e))
    }

    /// The event-time timers this stage's model holds for `key`, unfired.
    pub fn event_timers(&mut self, key: &Datum) -> Vec<TimerKey> {
        // The model's own context wrote these cells, so they decode.
        let mut timers = self.user.keyed(key).timers().unwrap_or_default();
        timers.extend(self.window.timers_of(key));
        timers.extend(self.session.timers_of(key));
        (timers.into_iter())
            .filter(|t| t.domain == TimeDomain::EventTime)
            .collect()
    }

    /// Adds the keyed state this stage holds to `view`, under the names the engine reports.
    pub fn add_state(&self, stage: &StageSpec, view: &mut StateView) {
        self.add_state_at(stage, view, None);
    }

    /// [`StageModel::add_state`] as a read at processing time `now_ms` would see it: values
    /// whose time to live ran out by then are left out, as the engine's views leave them.
    pub fn add_state_at(&self, stage: &StageSpec, view: &mut StateView, now_ms: Option<u64>) {
        match stage.op {
            OperatorSpec::User { keyed: true, .. } => {
                add_user_state(view, stage, &self.user, now_ms)
            }
            OperatorSpec::ExpiringSum { ttl_ms, .. } => {
                self.expiring.add_state(stage, ttl_ms, view, now_ms)
            }
            OperatorSpec::TumblingWindow { .. }
            | OperatorSpec::SlidingWindow { .. }
            | OperatorSpec::ProcessingTimeWindow { .. } => self.window.add_state(stage, view),
            OperatorSpec::SessionWindow { .. } => self.session.add_state(stage, view),
            _ => add_built_in_state(view, stage, &self.built_in),
        }
    }
}

/// Evaluates `job` over `input` read up to `positions`.
pub fn evaluate(job: &JobSpec, input: &Input, positions: &Positions) -> ModelOutcome {
    evaluate_with(job, input, positions, &[])
}

/// [`evaluate`] for a job with user operators, each applied by its own model.
///
/// # Panics
/// If the job names a user operator `users` lacks (the runtime fails such a job loudly first).
pub fn evaluate_with(
    job: &JobSpec,
    input: &Input,
    positions: &Positions,
    users: &[UserOperator],
) -> ModelOutcome {
    assert_eq!(
        positions.0.len(),
        input.partitions().len(),
        "one position per partition"
    );
    let mut stages: Vec<StageModel> = job.stages.iter().map(|_| StageModel::default()).collect();
    let mut outputs = Vec::new();
    let mut failures = Vec::new();
    for (partition, records) in input.partitions().iter().enumerate() {
        let end = usize::try_from(positions.0[partition]).expect("positions fit in memory");
        for record in &records[..end.min(records.len())] {
            let mut batch = vec![record.clone()];
            for (stage, model) in job.stages.iter().zip(&mut stages) {
                let mut next = Vec::new();
                for record in batch {
                    match model.apply(stage, users, record) {
                        Ok(emitted) => next.extend(emitted),
                        Err(failure) => failures.push(failure),
                    }
                }
                batch = next;
            }
            outputs.extend(batch);
        }
    }
    let mut view = StateView::new();
    for (stage, model) in job.stages.iter().zip(&stages) {
        model.add_state(stage, &mut view);
    }
    ModelOutcome {
        state: view,
        outputs,
        failures,
    }
}

/// A keyed user operator's model state, decoded as the engine's state view decodes a
/// backend's cells.
fn add_user_state(
    view: &mut StateView,
    stage: &StageSpec,
    user_state: &ModelState,
    now_ms: Option<u64>,
) {
    let entries: Vec<StateEntry> = user_state
        .cells()
        .map(|((state, key, user_key), value)| StateEntry {
            key_group: 0,
            state: *state,
            key: key.clone(),
            user_key: user_key.clone(),
            value: value.clone(),
        })
        .collect();
    // The model's cells were written by the typed API, so they always decode; a failure here
    // would be a bug of this crate, shown as the differences it causes.
    let _ = match now_ms {
        Some(now_ms) => view.add_live_entries(&stage.name, user_state.states(), &entries, now_ms),
        None => view.add_entries(&stage.name, user_state.states(), &entries),
    };
}

/// A built-in operator's state, under the names its engine operator declares.
fn add_built_in_state(view: &mut StateView, stage: &StageSpec, state: &StageState) {
    let addr = |name: &str, key: &Datum, user_key: Option<Datum>| StateAddr {
        stage: stage.name.clone(),
        state: name.to_string(),
        key: key.clone(),
        user_key,
    };
    match stage.op {
        OperatorSpec::Sum | OperatorSpec::Max => {
            let name = if stage.op == OperatorSpec::Sum {
                "sum"
            } else {
                "max"
            };
            for (key, value) in &state.values {
                view.0.insert(addr(name, key, None), Datum::from(*value));
            }
        }
        OperatorSpec::Stats => {
            for (key, count) in &state.counts {
                view.0.insert(addr("count", key, None), Datum::from(*count));
            }
            for (key, recent) in &state.recent {
                let list = Datum::of(recent).expect("a list of integers always encodes");
                view.0.insert(addr("recent", key, None), list);
            }
            for ((key, bucket), count) in &state.buckets {
                view.0.insert(
                    addr("buckets", key, Some(Datum::from(*bucket))),
                    Datum::from(*count),
                );
            }
        }
        _ => {}
    }
}
