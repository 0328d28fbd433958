//! A user's operators, plugged into jobs by name ([`crate::job::OperatorSpec::User`]): the
//! operator itself, built fresh for each subtask and attempt, and its model — the same
//! semantics over a plain map ([`ModelState`]) — which the oracle evaluates instead of the
//! engine's code.
//!
//! Most operators are a function of the user's own types: [`UserOperator::keyed`] takes one
//! for the operator and one for the model, with the same signature. Both read and write keyed
//! state through the same descriptors, so they may well be the same function — the harness
//! then checks that the engine recovers the state the function wrote. [`UserOperator::new`]
//! takes a hand-written [`Operator`] (for operator state, say) and a record-level model.
//!
//! ```
//! use faultline::job::user::{Output, UserOperator};
//! use faultline::job::{OperatorError, Record, Transaction};
//! use faultline::state::{KeyedContext, ModelState, ValueState};
//!
//! const TOTAL: ValueState<i64> = ValueState::new("total");
//!
//! /// Each account's running total, emitted with every transaction.
//! fn total(ctx: &mut KeyedContext<'_>, tx: Transaction, out: &mut Output<i64>) -> Result<(), OperatorError> {
//!     let sum = TOTAL.get(ctx)?.unwrap_or(0) + tx.amount_cents;
//!     TOTAL.set(ctx, &sum)?;
//!     out.emit(&sum)
//! }
//!
//! let running_total = UserOperator::keyed("running-total", total, total);
//! assert!(running_total.keyed);
//!
//! // The model applied to two records of one account.
//! let mut state = ModelState::default();
//! let first = running_total.model.apply(&mut state, Record::transaction("t1", "a", 5))?;
//! let second = running_total.model.apply(&mut state, Record::transaction("t2", "a", 7))?;
//! assert_eq!(second[0].value_as::<i64>()?, 12);
//! assert_eq!(first[0].id, "t1");
//! # Ok::<(), OperatorError>(())
//! ```

use std::marker::PhantomData;
use std::sync::Arc;

use super::datum::{Data, Datum};
use super::operator::{Operator, OperatorContext, OperatorError};
use super::record::Record;
use crate::state::timers::Timer;
use crate::state::KeyedContext;
pub use crate::state::ModelState;

/// A side output's tag and type (Flink's `OutputTag`): records emitted under it go to the
/// sink marked with its name, and later stages forward them unchanged.
#[derive(Debug)]
pub struct OutputTag<T> {
    name: &'static str,
    _type: PhantomData<fn() -> T>,
}

impl<T: Data> OutputTag<T> {
    /// The tag `name`.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            _type: PhantomData,
        }
    }

    /// Its name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// What a typed operator or model emits for one input record: values of its output type, and
/// side outputs. Every output keeps the input's key and origin. A single output keeps the
/// input's id; several are `{id}.0`, `{id}.1`, ... in emission order, as the built-in `split`
/// names its parts. Operator and model name their outputs alike, and ids stay unique through
/// any chain of stages: no id is ever both kept and extended.
#[derive(Debug)]
pub struct Output<Out> {
    input: Record,
    emitted: Vec<Record>,
    _type: PhantomData<fn(Out)>,
}

impl<Out: Data> Output<Out> {
    fn new(input: Record) -> Self {
        Self {
            input,
            emitted: Vec::new(),
            _type: PhantomData,
        }
    }

    fn push(&mut self, value: Datum, side: Option<&str>) {
        self.emitted.push(Record {
            id: String::new(),
            key: self.input.key.clone(),
            value,
            side: side.map(str::to_string),
            timestamp_ms: self.input.timestamp_ms,
            origin: self.input.origin,
        });
    }

    /// Emits `value` on the main output.
    pub fn emit(&mut self, value: &Out) -> Result<(), OperatorError> {
        self.push(Datum::of(value)?, None);
        Ok(())
    }

    /// Emits `value` on the side output `tag`.
    pub fn side<T: Data>(&mut self, tag: &OutputTag<T>, value: &T) -> Result<(), OperatorError> {
        self.push(Datum::of(value)?, Some(tag.name));
        Ok(())
    }

    /// The outputs, named by the rule above.
    fn finish(self) -> Vec<Record> {
        let mut emitted = self.emitted;
        let single = emitted.len() == 1;
        for (index, record) in emitted.iter_mut().enumerate() {
            record.id = if single {
                self.input.id.clone()
            } else {
                format!("{}.{index}", self.input.id)
            };
        }
        emitted
    }
}

/// A keyed operator's logic over the user's types (operator and model alike).
pub trait KeyedFn<In, Out>:
    Fn(&mut KeyedContext<'_>, In, &mut Output<Out>) -> Result<(), OperatorError> + Send + Sync + 'static
{
}

impl<In, Out, F> KeyedFn<In, Out> for F where
    F: Fn(&mut KeyedContext<'_>, In, &mut Output<Out>) -> Result<(), OperatorError>
        + Send
        + Sync
        + 'static
{
}

/// A keyed operator's timer callback over the user's types (operator and model alike), as
/// `KeyedProcessFunction::onTimer`: runs in the firing timer's key context, where
/// `ctx.timestamp_ms()` is the timer's time. What it emits is named after the timer (see
/// [`timer_record`]).
pub trait TimerFn<Out>:
    Fn(&mut KeyedContext<'_>, &Timer, &mut Output<Out>) -> Result<(), OperatorError>
    + Send
    + Sync
    + 'static
{
}

impl<Out, F> TimerFn<Out> for F where
    F: Fn(&mut KeyedContext<'_>, &Timer, &mut Output<Out>) -> Result<(), OperatorError>
        + Send
        + Sync
        + 'static
{
}

/// The record a timer's outputs descend from: id `{key}@{timestamp_ms}`, then `/{namespace}`
/// when it has one, the timer's key and time, no value, and an origin after every source
/// position. A timer fires once per attempt, so its outputs' ids are unique within one, and a
/// replay after a restore repeats them.
pub fn timer_record(timer: &Timer) -> Record {
    let mut id = format!("{}@{}", timer.key, timer.timestamp_ms);
    if !timer.namespace.is_empty() {
        id = format!("{id}/{}", timer.namespace);
    }
    Record {
        id,
        key: timer.key.clone(),
        value: Datum::from_canonical("null".to_string()),
        side: None,
        timestamp_ms: Some(timer.timestamp_ms),
        // No input record is its origin: it lies after every position, so any restore may
        // replay it (a timer a checkpoint holds fires again after that checkpoint's restore).
        origin: super::record::Origin {
            partition: 0,
            offset: u64::MAX,
        },
    }
}

/// Runs a typed timer callback: collects its outputs, named after the timer.
fn run_timer<Out: Data>(
    timer: &Timer,
    body: impl FnOnce(&mut Output<Out>) -> Result<(), OperatorError>,
) -> Result<Vec<Record>, OperatorError> {
    let mut output = Output::new(timer_record(timer));
    body(&mut output)?;
    Ok(output.finish())
}

/// A stateless operator's logic over the user's types (operator and model alike).
pub trait StatelessFn<In, Out>:
    Fn(In, &mut Output<Out>) -> Result<(), OperatorError> + Send + Sync + 'static
{
}

impl<In, Out, F> StatelessFn<In, Out> for F where
    F: Fn(In, &mut Output<Out>) -> Result<(), OperatorError> + Send + Sync + 'static
{
}

/// Runs a typed function on one record: decodes the input, collects the outputs.
fn run_typed<In: Data, Out: Data>(
    record: Record,
    body: impl FnOnce(In, &mut Output<Out>) -> Result<(), OperatorError>,
) -> Result<Vec<Record>, OperatorError> {
    let value: In = record.value_as()?;
    let mut output = Output::new(record);
    body(value, &mut output)?;
    Ok(output.finish())
}

/// The engine side of a typed keyed function.
struct KeyedOperator<F, In, Out>(Arc<F>, PhantomData<fn(In) -> Out>);

impl<F: KeyedFn<In, Out>, In: Data, Out: Data> Operator for KeyedOperator<F, In, Out> {
    fn process(
        &mut self,
        record: Record,
        ctx: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        process_keyed(&*self.0, record, ctx, out)
    }
}

/// Runs a typed keyed function on one record in the engine, in the record's key context.
fn process_keyed<In: Data, Out: Data>(
    function: &impl KeyedFn<In, Out>,
    record: Record,
    ctx: &mut OperatorContext<'_>,
    out: &mut Vec<Record>,
) -> Result<(), OperatorError> {
    let keyed = ctx.keyed()?;
    out.extend(run_typed(record, |value, output| {
        function(keyed, value, output)
    })?);
    Ok(())
}

/// The engine side of a typed keyed function with a timer callback.
struct TimedOperator<F, T, In, Out>(Arc<F>, Arc<T>, PhantomData<fn(In) -> Out>);

impl<F: KeyedFn<In, Out>, T: TimerFn<Out>, In: Data, Out: Data> Operator
    for TimedOperator<F, T, In, Out>
{
    fn process(
        &mut self,
        record: Record,
        ctx: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        process_keyed(&*self.0, record, ctx, out)
    }

    fn on_timer(
        &mut self,
        timer: &Timer,
        ctx: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        let keyed = ctx.keyed()?;
        out.extend(run_timer(timer, |output| (self.1)(keyed, timer, output))?);
        Ok(())
    }
}

/// The engine side of a typed stateless function.
struct StatelessOperator<F, In, Out>(Arc<F>, PhantomData<fn(In) -> Out>);

impl<F: StatelessFn<In, Out>, In: Data, Out: Data> Operator for StatelessOperator<F, In, Out> {
    fn process(
        &mut self,
        record: Record,
        _: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        out.extend(run_typed(record, &*self.0)?);
        Ok(())
    }
}

/// The pure semantics of a user's operator, for the oracle.
pub trait OperatorModel: Send + Sync {
    /// Applies one record to the stage's state and returns what the operator emits; an error
    /// is the model's own failure, reported as a violation of the case.
    fn apply(&self, state: &mut ModelState, record: Record) -> Result<Vec<Record>, OperatorError>;

    /// Fires `timer` (already removed from the key's timers) on the stage's state and returns
    /// what the operator emits. By default a model's operator emits nothing from timers.
    fn on_timer(
        &self,
        _state: &mut ModelState,
        _timer: &Timer,
    ) -> Result<Vec<Record>, OperatorError> {
        Ok(Vec::new())
    }

    /// Whether the operator acts on timers. When the timers fire depends on the run's
    /// watermarks and clock, so a case with such an operator is judged along the run's
    /// events: each firing the engine made is applied to the model there, in order.
    fn fires_timers(&self) -> bool {
        false
    }

    /// Whether what the operator does depends on the processing time it handles a record at
    /// (its state has a time to live, say). The model is then given, along the run's events,
    /// the time the engine handled each record (`ModelState::now_ms`), so such a case is
    /// judged there.
    fn reads_processing_time(&self) -> bool {
        false
    }
}

/// A model whose operator reads the processing time: see [`UserOperator::with_state_ttl`].
struct Clocked(Box<dyn OperatorModel>);

impl OperatorModel for Clocked {
    fn apply(&self, state: &mut ModelState, record: Record) -> Result<Vec<Record>, OperatorError> {
        self.0.apply(state, record)
    }

    fn on_timer(
        &self,
        state: &mut ModelState,
        timer: &Timer,
    ) -> Result<Vec<Record>, OperatorError> {
        self.0.on_timer(state, timer)
    }

    fn fires_timers(&self) -> bool {
        self.0.fires_timers()
    }

    fn reads_processing_time(&self) -> bool {
        true
    }
}

impl<F> OperatorModel for F
where
    F: Fn(&mut ModelState, Record) -> Result<Vec<Record>, OperatorError> + Send + Sync,
{
    fn apply(&self, state: &mut ModelState, record: Record) -> Result<Vec<Record>, OperatorError> {
        self(state, record)
    }
}

struct KeyedModel<F, In, Out>(F, PhantomData<fn(In) -> Out>);

impl<F: KeyedFn<In, Out>, In: Data, Out: Data> OperatorModel for KeyedModel<F, In, Out> {
    fn apply(&self, state: &mut ModelState, record: Record) -> Result<Vec<Record>, OperatorError> {
        let key = record.key.clone();
        // A model sees the record's event time and the processing time it is given (see
        // `ModelState::now_ms`), but no watermark.
        let now_ms = state.now_ms();
        let mut ctx = (state.keyed(&key)).at_time(record.timestamp_ms, i64::MIN, now_ms);
        run_typed(record, |value, output| (self.0)(&mut ctx, value, output))
    }
}

struct TimedModel<F, T, In, Out>(F, T, PhantomData<fn(In) -> Out>);

impl<F: KeyedFn<In, Out>, T: TimerFn<Out>, In: Data, Out: Data> OperatorModel
    for TimedModel<F, T, In, Out>
{
    fn apply(&self, state: &mut ModelState, record: Record) -> Result<Vec<Record>, OperatorError> {
        let key = record.key.clone();
        let now_ms = state.now_ms();
        let mut ctx = (state.keyed(&key)).at_time(record.timestamp_ms, i64::MIN, now_ms);
        run_typed(record, |value, output| (self.0)(&mut ctx, value, output))
    }

    fn on_timer(
        &self,
        state: &mut ModelState,
        timer: &Timer,
    ) -> Result<Vec<Record>, OperatorError> {
        let now_ms = state.now_ms();
        let mut ctx = (state.keyed(&timer.key)).at_time(Some(timer.timestamp_ms), i64::MIN, now_ms);
        run_timer(timer, |output| (self.1)(&mut ctx, timer, output))
    }

    fn fires_timers(&self) -> bool {
        true
    }
}

struct StatelessModel<F, In, Out>(F, PhantomData<fn(In) -> Out>);

impl<F: StatelessFn<In, Out>, In: Data, Out: Data> OperatorModel for StatelessModel<F, In, Out> {
    fn apply(&self, _: &mut ModelState, record: Record) -> Result<Vec<Record>, OperatorError> {
        run_typed(record, &self.0)
    }
}

/// Builds one subtask's operator (called for every subtask of every attempt).
pub type BuildOperator = dyn Fn(u16) -> Box<dyn Operator> + Send + Sync;

/// A user's operator: jobs name it with `OperatorSpec::User { name, keyed }`.
pub struct UserOperator {
    /// The name jobs use.
    pub name: String,
    /// Whether it uses keyed state (and so is preceded by `key_by`).
    pub keyed: bool,
    /// Builds it.
    pub build: Box<BuildOperator>,
    /// Its model.
    pub model: Box<dyn OperatorModel>,
}

impl UserOperator {
    /// A hand-written operator from its name, whether it is keyed, a builder and a model.
    pub fn new(
        name: &str,
        keyed: bool,
        build: impl Fn(u16) -> Box<dyn Operator> + Send + Sync + 'static,
        model: impl OperatorModel + 'static,
    ) -> Self {
        Self {
            name: name.to_string(),
            keyed,
            build: Box::new(build),
            model: Box::new(model),
        }
    }

    /// A keyed operator over the user's types: `operator` runs in the engine against its
    /// state backend, `model` in the oracle against a plain map.
    pub fn keyed<In: Data, Out: Data>(
        name: &str,
        operator: impl KeyedFn<In, Out>,
        model: impl KeyedFn<In, Out>,
    ) -> Self {
        let operator = Arc::new(operator);
        Self::new(
            name,
            true,
            move |_| Box::new(KeyedOperator(Arc::clone(&operator), PhantomData)),
            KeyedModel(model, PhantomData),
        )
    }

    /// A keyed operator over the user's types with timers, as a `KeyedProcessFunction`:
    /// `operator` and `on_timer` run in the engine, `model` and `model_on_timer` in the
    /// oracle, which applies each firing of the run to the model where the engine made it.
    pub fn keyed_with_timers<In: Data, Out: Data>(
        name: &str,
        (operator, on_timer): (impl KeyedFn<In, Out>, impl TimerFn<Out>),
        (model, model_on_timer): (impl KeyedFn<In, Out>, impl TimerFn<Out>),
    ) -> Self {
        let (operator, on_timer) = (Arc::new(operator), Arc::new(on_timer));
        Self::new(
            name,
            true,
            move |_| {
                Box::new(TimedOperator(
                    Arc::clone(&operator),
                    Arc::clone(&on_timer),
                    PhantomData,
                ))
            },
            TimedModel(model, model_on_timer, PhantomData),
        )
    }

    /// The same operator, declared to read the processing time: its state has a time to live
    /// (`state::ttl`), or its logic reads `KeyedContext::now_ms`. Its model then sees the time
    /// the engine handled each record, and its cases are judged along the run's events.
    pub fn with_state_ttl(self) -> Self {
        Self {
            model: Box::new(Clocked(self.model)),
            ..self
        }
    }

    /// A stateless operator over the user's types.
    pub fn stateless<In: Data, Out: Data>(
        name: &str,
        operator: impl StatelessFn<In, Out>,
        model: impl StatelessFn<In, Out>,
    ) -> Self {
        let operator = Arc::new(operator);
        Self::new(
            name,
            false,
            move |_| Box::new(StatelessOperator(Arc::clone(&operator), PhantomData)),
            StatelessModel(model, PhantomData),
        )
    }
}

impl std::fmt::Debug for UserOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserOperator")
            .field("name", &self.name)
            .field("keyed", &self.keyed)
            .finish()
    }
}

/// Finds `name` among `operators`.
pub fn find<'a>(operators: &'a [UserOperator], name: &str) -> Option<&'a UserOperator> {
    operators.iter().find(|op| op.name == name)
}
