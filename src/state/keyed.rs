//! The typed keyed-state API operators and their models use. A state is a descriptor — a name
//! and a type, usually a `const` — (`ValueState<T>`, `ListState<T>`, `MapState<K, V>`,
//! `ReducingState<T>`, `AggregatingState<In, Acc, Out>`); each access goes through the
//! [`KeyedContext`] of the record being processed, which scopes it to that record's key.
//!
//! A context reads and writes either an engine backend (the operator) or a plain map
//! ([`ModelState`], the model), in the same cells and the same canonical encoding, so one
//! function can serve as both, and the oracle compares the two without knowing the types.
//! Values are stored as their canonical [`Datum`] text.
//!
//! ```
//! use faultline::job::Datum;
//! use faultline::state::{
//!     KeyGroupRange, KeyedContext, MapState, MemoryBackend, ModelState, ReducingState, ValueState,
//! };
//!
//! const TOTAL: ValueState<i64> = ValueState::new("total");
//! const SEEN: MapState<String, i64> = MapState::new("seen");
//! const LARGEST: ReducingState<i64> = ReducingState::new("largest", |a, b| *a.max(b));
//!
//! let key = Datum::from("account-1");
//! let group = key.key_group(128);
//! let mut backend = MemoryBackend::new("total-0", KeyGroupRange { start: 0, end: 127 });
//! let mut ctx = KeyedContext::new(&mut backend, group, key.as_bytes());
//! TOTAL.set(&mut ctx, &42)?;
//! SEEN.put(&mut ctx, &"tx1".to_string(), &7)?;
//! LARGEST.add(&mut ctx, &5)?;
//! LARGEST.add(&mut ctx, &3)?;
//! assert_eq!(TOTAL.get(&ctx)?, Some(42));
//! assert_eq!(SEEN.entries(&ctx)?, vec![("tx1".to_string(), 7)]);
//! assert_eq!(LARGEST.get(&ctx)?, Some(5));
//!
//! // The model writes the same descriptors on a plain map.
//! let mut model = ModelState::default();
//! TOTAL.set(&mut model.keyed(&key), &42)?;
//! assert_eq!(TOTAL.get(&model.keyed(&key))?, Some(42));
//! # Ok::<(), faultline::state::StateError>(())
//! ```

use std::collections::BTreeMap;
use std::marker::PhantomData;

use super::timers::{TimeDomain, TimerChange, TimerKey, TIMER_STATE};
use super::{
    CellRef, StateBackend, StateDescriptor, StateError, StateId, StateKind, UserEntries, ValueType,
};
use crate::checkpoint::codec::{Decoder, Encoder};
use crate::job::{Data, Datum};

/// Encodes list elements: a count, then each element length-prefixed.
pub(crate) fn encode_list(elements: &[Vec<u8>]) -> Vec<u8> {
    let mut e = Encoder::new();
    e.u32(elements.len() as u32);
    for element in elements {
        e.bytes(element);
    }
    e.finish()
}

/// Decodes what [`encode_list`] wrote.
pub(crate) fn decode_list(bytes: &[u8]) -> Result<Vec<Vec<u8>>, StateError> {
    let codec = |e: crate::checkpoint::FormatError| StateError::Codec(e.to_string());
    let mut d = Decoder::new(bytes);
    let count = d.count("list length", 4).map_err(codec)?;
    let mut elements = Vec::with_capacity(count);
    for _ in 0..count {
        elements.push(d.bytes("list element").map_err(codec)?.to_vec());
    }
    d.finish("list").map_err(codec)?;
    Ok(elements)
}

pub(super) fn encode<T: Data>(value: &T) -> Result<Vec<u8>, StateError> {
    Ok(crate::job::canonical_text(value)?.into_bytes())
}

pub(super) fn decode<T: Data>(bytes: &[u8]) -> Result<T, StateError> {
    Ok(crate::job::read_canonical(bytes)?)
}

/// A model cell's address: (state, key, user key), each as the backend stores it.
pub type ModelCell = (StateId, Vec<u8>, Vec<u8>);

/// A model's keyed state: the cells its operator's backend would hold, on a plain map, with
/// the same encoding. The oracle reads it as it reads a backend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelState {
    states: Vec<StateDescriptor>,
    cells: BTreeMap<ModelCell, Vec<u8>>,
    now_ms: u64,
}

impl ModelState {
    /// The state of `key`, as a model's [`KeyedContext`], at the model's processing time.
    pub fn keyed<'a>(&'a mut self, key: &'a Datum) -> KeyedContext<'a> {
        let time = Time {
            now_ms: self.now_ms,
            ..NO_TIME
        };
        KeyedContext {
            cells: Cells::Model(self),
            key: key.as_bytes(),
            timer_changes: Vec::new(),
            time,
        }
    }

    /// The processing time the model's contexts see: 0 over an input (a model has no clock),
    /// and along a run's events the time the engine handled the record (or timer) being
    /// applied, which state TTL reads.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Sets the processing time the model's contexts see from now on.
    pub fn set_now_ms(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
    }

    /// Every declared state, indexed by [`StateId`].
    pub fn states(&self) -> &[StateDescriptor] {
        &self.states
    }

    /// Every cell: ((state, key, user key), value), in canonical order.
    pub fn cells(&self) -> impl Iterator<Item = (&ModelCell, &Vec<u8>)> {
        self.cells.iter()
    }
}

enum Cells<'a> {
    Backend {
        backend: &'a mut dyn StateBackend,
        key_group: u16,
    },
    Model(&'a mut ModelState),
}

/// Access to the keyed state of the record being processed: an engine backend's, or a model's.
pub struct KeyedContext<'a> {
    cells: Cells<'a>,
    key: &'a [u8],
    /// What the callback did to this key's timers, for the subtask's queue.
    timer_changes: Vec<TimerChange>,
    time: Time,
}

/// The times a callback sees.
#[derive(Debug, Clone, Copy)]
struct Time {
    /// The record's event time, or the firing timer's.
    timestamp_ms: Option<i64>,
    watermark_ms: i64,
    now_ms: u64,
}

const NO_TIME: Time = Time {
    timestamp_ms: None,
    watermark_ms: i64::MIN,
    now_ms: 0,
};

impl std::fmt::Debug for KeyedContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedContext")
            .field("key", &String::from_utf8_lossy(self.key))
            .finish()
    }
}

impl<'a> KeyedContext<'a> {
    /// Scopes `backend` to `key` (its canonical bytes), which lies in `key_group`.
    pub fn new(backend: &'a mut dyn StateBackend, key_group: u16, key: &'a [u8]) -> Self {
        debug_assert!(
            backend.key_groups().contains(key_group),
            "record routed to the wrong subtask"
        );
        Self {
            cells: Cells::Backend { backend, key_group },
            key,
            timer_changes: Vec::new(),
            time: NO_TIME,
        }
    }

    /// The context at a moment: the event time of the record (or timer) being handled, the
    /// subtask's watermark, and the virtual clock.
    pub fn at_time(self, timestamp_ms: Option<i64>, watermark_ms: i64, now_ms: u64) -> Self {
        Self {
            time: Time {
                timestamp_ms,
                watermark_ms,
                now_ms,
            },
            ..self
        }
    }

    /// The event time of the record being processed (or of the timer firing), if it has one.
    pub fn timestamp_ms(&self) -> Option<i64> {
        self.time.timestamp_ms
    }

    /// The subtask's current watermark: `i64::MIN` before any, after every restore, and in a
    /// model (which has no clock).
    pub fn watermark_ms(&self) -> i64 {
        self.time.watermark_ms
    }

    /// Processing time: the virtual clock; in a model, the time it was given
    /// ([`ModelState::set_now_ms`]), 0 unless it is judged along a run's events.
    pub fn now_ms(&self) -> u64 {
        self.time.now_ms
    }

    /// The current key's canonical bytes.
    pub fn key(&self) -> &[u8] {
        self.key
    }

    /// Registers a timer of the current key: it fires once the watermark (`EventTime`) or
    /// the virtual clock (`ProcessingTime`) reaches `timestamp_ms`. The same timer registered
    /// twice fires once.
    pub fn register_timer(
        &mut self,
        domain: TimeDomain,
        timestamp_ms: i64,
        namespace: &str,
    ) -> Result<(), StateError> {
        let timer = TimerKey::new(domain, timestamp_ms, namespace);
        if TIMERS.contains(self, &timer)? {
            return Ok(());
        }
        TIMERS.put(self, &timer, &())?;
        self.timer_changes.push(TimerChange::Registered(timer));
        Ok(())
    }

    /// Deletes a timer of the current key (a timer not registered is no error).
    pub fn delete_timer(
        &mut self,
        domain: TimeDomain,
        timestamp_ms: i64,
        namespace: &str,
    ) -> Result<(), StateError> {
        let timer = TimerKey::new(domain, timestamp_ms, namespace);
        if !TIMERS.contains(self, &timer)? {
            return Ok(());
        }
        TIMERS.remove(self, &timer)?;
        self.timer_changes.push(TimerChange::Deleted(timer));
        Ok(())
    }

    /// The current key's timers, in order.
    pub fn timers(&self) -> Result<Vec<TimerKey>, StateError> {
        Ok(TIMERS.entries(self)?.into_iter().map(|(t, ())| t).collect())
    }

    /// Takes what callbacks did to this key's timers since the last call.
    pub(crate) fn take_timer_changes(&mut self) -> Vec<TimerChange> {
        std::mem::take(&mut self.timer_changes)
    }

    fn descriptor(name: &str, kind: StateKind, value_type: ValueType) -> StateDescriptor {
        StateDescriptor {
            name: name.to_string(),
            kind,
            value_type,
        }
    }

    /// The id of a declared state, checking its shape; `None` if nothing declared it yet (so
    /// no cell of it exists).
    fn find(&self, name: &str, shape: Shape) -> Result<Option<StateId>, StateError> {
        let Shape(kind, value_type) = shape;
        let states = match &self.cells {
            Cells::Backend { backend, .. } => backend.states(),
            Cells::Model(model) => &model.states,
        };
        match states.iter().position(|s| s.name == name) {
            None => Ok(None),
            Some(index) if states[index].kind == kind && states[index].value_type == value_type => {
                Ok(Some(index as StateId))
            }
            Some(index) => Err(StateError::Declaration {
                name: name.to_string(),
                reason: format!(
                    "declared as {:?}, now used as a typed {kind:?} state of {value_type:?}",
                    states[index]
                ),
            }),
        }
    }

    fn declare(&mut self, name: &str, shape: Shape) -> Result<StateId, StateError> {
        if let Some(state) = self.find(name, shape)? {
            return Ok(state);
        }
        let descriptor = Self::descriptor(name, shape.0, shape.1);
        match &mut self.cells {
            Cells::Backend { backend, .. } => backend.register_state(&descriptor),
            Cells::Model(model) => super::memory::register_in(&mut model.states, &descriptor),
        }
    }

    fn read(
        &self,
        name: &str,
        kind: StateKind,
        user_key: &[u8],
    ) -> Result<Option<Vec<u8>>, StateError> {
        self.read_as(name, Shape(kind, ValueType::Json), user_key)
    }

    /// A cell of the state `name` of `shape`.
    pub(super) fn read_as(
        &self,
        name: &str,
        shape: Shape,
        user_key: &[u8],
    ) -> Result<Option<Vec<u8>>, StateError> {
        let Some(state) = self.find(name, shape)? else {
            return Ok(None);
        };
        match &self.cells {
            Cells::Backend { backend, key_group } => backend.get(CellRef {
                state,
                key_group: *key_group,
                key: self.key,
                user_key,
            }),
            Cells::Model(model) => Ok(model
                .cells
                .get(&(state, self.key.to_vec(), user_key.to_vec()))
                .cloned()),
        }
    }

    fn write(
        &mut self,
        name: &str,
        kind: StateKind,
        user_key: &[u8],
        value: Option<Vec<u8>>,
    ) -> Result<(), StateError> {
        self.write_as(name, Shape(kind, ValueType::Json), user_key, value)
    }

    /// Writes (or, with `None`, deletes) a cell of the state `name` of `shape`.
    pub(super) fn write_as(
        &mut self,
        name: &str,
        shape: Shape,
        user_key: &[u8],
        value: Option<Vec<u8>>,
    ) -> Result<(), StateError> {
        let state = self.declare(name, shape)?;
        let key = self.key;
        match &mut self.cells {
            Cells::Backend { backend, key_group } => {
                let cell = CellRef {
                    state,
                    key_group: *key_group,
                    key,
                    user_key,
                };
                match value {
                    Some(value) => backend.put(cell, &value),
                    None => backend.delete(cell),
                }
            }
            Cells::Model(model) => {
                let address = (state, key.to_vec(), user_key.to_vec());
                match value {
                    Some(value) => model.cells.insert(address, value),
                    None => model.cells.remove(&address),
                };
                Ok(())
            }
        }
    }

    fn user_entries(&self, name: &str) -> Result<UserEntries, StateError> {
        self.user_entries_as(name, ValueType::Json)
    }

    /// The cells of the current key of the map state `name` of `value_type`.
    pub(super) fn user_entries_as(
        &self,
        name: &str,
        value_type: ValueType,
    ) -> Result<UserEntries, StateError> {
        let Some(state) = self.find(name, Shape(StateKind::Map, value_type))? else {
            return Ok(Vec::new());
        };
        match &self.cells {
            Cells::Backend { backend, key_group } => {
                backend.user_entries(state, *key_group, self.key)
            }
            Cells::Model(model) => Ok(model
                .cells
                .range((state, self.key.to_vec(), Vec::new())..)
                .take_while(|((s, k, _), _)| *s == state && k == self.key)
                .map(|((_, _, user_key), value)| (user_key.clone(), value.clone()))
                .collect()),
        }
    }
}

/// A state's kind and the type its cells hold.
#[derive(Debug, Clone, Copy)]
pub(super) struct Shape(pub(super) StateKind, pub(super) ValueType);

fn declare(backend: &mut dyn StateBackend, name: &str, kind: StateKind) -> Result<(), StateError> {
    declare_as(backend, name, Shape(kind, ValueType::Json))
}

/// Declares the state `name` of `shape` in `backend`.
pub(super) fn declare_as(
    backend: &mut dyn StateBackend,
    name: &str,
    shape: Shape,
) -> Result<(), StateError> {
    backend
        .register_state(&KeyedContext::descriptor(name, shape.0, shape.1))
        .map(|_| ())
}

/// One value of type `T` per key (Flink's `ValueState`).
#[derive(Debug)]
pub struct ValueState<T> {
    name: &'static str,
    _type: PhantomData<fn() -> T>,
}

impl<T: Data> ValueState<T> {
    /// The state `name` (unique within its operator).
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            _type: PhantomData,
        }
    }

    /// Declares the state in `backend` before any value is written (as a Flink operator's
    /// `open` does), so its snapshots name it even while it holds nothing. A first write
    /// declares it too.
    pub fn declare(&self, backend: &mut dyn StateBackend) -> Result<(), StateError> {
        declare(backend, self.name, StateKind::Value)
    }

    /// The current key's value, if set.
    pub fn get(&self, ctx: &KeyedContext<'_>) -> Result<Option<T>, StateError> {
        ctx.read(self.name, StateKind::Value, &[])?
            .map(|bytes| decode(&bytes))
            .transpose()
    }

    /// Sets the current key's value.
    pub fn set(&self, ctx: &mut KeyedContext<'_>, value: &T) -> Result<(), StateError> {
        ctx.write(self.name, StateKind::Value, &[], Some(encode(value)?))
    }

    /// Clears the current key's value.
    pub fn clear(&self, ctx: &mut KeyedContext<'_>) -> Result<(), StateError> {
        ctx.write(self.name, StateKind::Value, &[], None)
    }
}

/// A list of `T` per key (Flink's `ListState`).
#[derive(Debug)]
pub struct ListState<T> {
    name: &'static str,
    _type: PhantomData<fn() -> T>,
}

impl<T: Data> ListState<T> {
    /// The state `name` (unique within its operator).
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            _type: PhantomData,
        }
    }

    fn elements(&self, ctx: &KeyedContext<'_>) -> Result<Vec<Vec<u8>>, StateError> {
        match ctx.read(self.name, StateKind::List, &[])? {
            None => Ok(Vec::new()),
            Some(bytes) => decode_list(&bytes),
        }
    }

    /// Declares the state in `backend` before anything is written; see [`ValueState::declare`].
    pub fn declare(&self, backend: &mut dyn StateBackend) -> Result<(), StateError> {
        declare(backend, self.name, StateKind::List)
    }

    /// The current key's list (empty if unset).
    pub fn get(&self, ctx: &KeyedContext<'_>) -> Result<Vec<T>, StateError> {
        self.elements(ctx)?.iter().map(|e| decode(e)).collect()
    }

    /// Replaces the current key's list.
    pub fn update(&self, ctx: &mut KeyedContext<'_>, values: &[T]) -> Result<(), StateError> {
        let encoded = values.iter().map(encode).collect::<Result<Vec<_>, _>>()?;
        ctx.write(self.name, StateKind::List, &[], Some(encode_list(&encoded)))
    }

    /// Appends to the current key's list.
    pub fn add(&self, ctx: &mut KeyedContext<'_>, value: &T) -> Result<(), StateError> {
        let mut elements = self.elements(ctx)?;
        elements.push(encode(value)?);
        ctx.write(
            self.name,
            StateKind::List,
            &[],
            Some(encode_list(&elements)),
        )
    }

    /// Clears the current key's list.
    pub fn clear(&self, ctx: &mut KeyedContext<'_>) -> Result<(), StateError> {
        ctx.write(self.name, StateKind::List, &[], None)
    }
}

/// A map from `K` to `V` per key (Flink's `MapState`); each entry is its own cell, and
/// entries come back in the order of their keys' canonical text.
#[derive(Debug)]
pub struct MapState<K, V> {
    name: &'static str,
    _type: PhantomData<fn() -> (K, V)>,
}

impl<K: Data, V: Data> MapState<K, V> {
    /// The state `name` (unique within its operator).
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            _type: PhantomData,
        }
    }

    /// Declares the state in `backend` before anything is written; see [`ValueState::declare`].
    pub fn declare(&self, backend: &mut dyn StateBackend) -> Result<(), StateError> {
        declare(backend, self.name, StateKind::Map)
    }

    /// The value under `user_key` for the current key.
    pub fn get(&self, ctx: &KeyedContext<'_>, user_key: &K) -> Result<Option<V>, StateError> {
        ctx.read(self.name, StateKind::Map, &encode(user_key)?)?
            .map(|bytes| decode(&bytes))
            .transpose()
    }

    /// Whether `user_key` is present for the current key.
    pub fn contains(&self, ctx: &KeyedContext<'_>, user_key: &K) -> Result<bool, StateError> {
        Ok(ctx
            .read(self.name, StateKind::Map, &encode(user_key)?)?
            .is_some())
    }

    /// Sets the value under `user_key` for the current key.
    pub fn put(
        &self,
        ctx: &mut KeyedContext<'_>,
        user_key: &K,
        value: &V,
    ) -> Result<(), StateError> {
        let user_key = encode(user_key)?;
        ctx.write(self.name, StateKind::Map, &user_key, Some(encode(value)?))
    }

    /// Removes `user_key` for the current key.
    pub fn remove(&self, ctx: &mut KeyedContext<'_>, user_key: &K) -> Result<(), StateError> {
        let user_key = encode(user_key)?;
        ctx.write(self.name, StateKind::Map, &user_key, None)
    }

    /// Every entry of the current key.
    pub fn entries(&self, ctx: &KeyedContext<'_>) -> Result<Vec<(K, V)>, StateError> {
        ctx.user_entries(self.name)?
            .into_iter()
            .map(|(k, v)| Ok((decode(&k)?, decode(&v)?)))
            .collect()
    }

    /// Removes every entry of the current key.
    pub fn clear(&self, ctx: &mut KeyedContext<'_>) -> Result<(), StateError> {
        for (user_key, _) in ctx.user_entries(self.name)? {
            ctx.write(self.name, StateKind::Map, &user_key, None)?;
        }
        Ok(())
    }
}

/// One value per key that every added value is folded into with `reduce` (Flink's
/// `ReducingState`). Stored as a value state.
#[derive(Debug)]
pub struct ReducingState<T> {
    name: &'static str,
    reduce: fn(&T, &T) -> T,
}

impl<T: Data> ReducingState<T> {
    /// The state `name`, folding with `reduce(current, added)`.
    pub const fn new(name: &'static str, reduce: fn(&T, &T) -> T) -> Self {
        Self { name, reduce }
    }

    /// The current key's reduced value, if anything was added.
    pub fn get(&self, ctx: &KeyedContext<'_>) -> Result<Option<T>, StateError> {
        ValueState::<T>::new(self.name).get(ctx)
    }

    /// Folds `value` into the current key's value; returns the new value.
    pub fn add(&self, ctx: &mut KeyedContext<'_>, value: &T) -> Result<T, StateError> {
        let state = ValueState::<T>::new(self.name);
        let reduced = match state.get(ctx)? {
            None => value.clone(),
            Some(current) => (self.reduce)(&current, value),
        };
        state.set(ctx, &reduced)?;
        Ok(reduced)
    }

    /// Clears the current key's value.
    pub fn clear(&self, ctx: &mut KeyedContext<'_>) -> Result<(), StateError> {
        ValueState::<T>::new(self.name).clear(ctx)
    }
}

/// An accumulator per key that added `In` values update and that reads out as an `Out`
/// (Flink's `AggregatingState` with its `AggregateFunction`). The accumulator is what is
/// stored, as a value state.
#[derive(Debug)]
pub struct AggregatingState<In, Acc, Out> {
    name: &'static str,
    create: fn() -> Acc,
    add: fn(&mut Acc, &In),
    result: fn(&Acc) -> Out,
}

impl<In, Acc: Data, Out> AggregatingState<In, Acc, Out> {
    /// The state `name`: a fresh accumulator from `create`, `add` folds a value in, `result`
    /// reads it out.
    pub const fn new(
        name: &'static str,
        create: fn() -> Acc,
        add: fn(&mut Acc, &In),
        result: fn(&Acc) -> Out,
    ) -> Self {
        Self {
            name,
            create,
            add,
            result,
        }
    }

    /// The current key's result, if anything was added.
    pub fn get(&self, ctx: &KeyedContext<'_>) -> Result<Option<Out>, StateError> {
        Ok(ValueState::<Acc>::new(self.name)
            .get(ctx)?
            .map(|acc| (self.result)(&acc)))
    }

    /// Adds `value` to the current key's accumulator; returns the new result.
    pub fn add(&self, ctx: &mut KeyedContext<'_>, value: &In) -> Result<Out, StateError> {
        let state = ValueState::<Acc>::new(self.name);
        let mut acc = state.get(ctx)?.unwrap_or_else(self.create);
        (self.add)(&mut acc, value);
        state.set(ctx, &acc)?;
        Ok((self.result)(&acc))
    }

    /// Clears the current key's accumulator.
    pub fn clear(&self, ctx: &mut KeyedContext<'_>) -> Result<(), StateError> {
        ValueState::<Acc>::new(self.name).clear(ctx)
    }
}

/// The reserved state every key's timers are kept in.
const TIMERS: MapState<TimerKey, ()> = MapState::new(TIMER_STATE);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{KeyGroupRange, MemoryBackend};

    const COUNT: AggregatingState<i64, (i64, i64), i64> = AggregatingState::new(
        "mean",
        || (0, 0),
        |acc, value| *acc = (acc.0 + value, acc.1 + 1),
        |acc| acc.0 / acc.1,
    );
    const TOTAL: ValueState<i64> = ValueState::new("total");
    const RECENT: ListState<String> = ListState::new("recent");
    const SEEN: MapState<i64, bool> = MapState::new("seen");

    fn exercise(ctx: &mut KeyedContext<'_>) -> Result<(), StateError> {
        TOTAL.set(ctx, &7)?;
        RECENT.add(ctx, &"a".to_string())?;
        RECENT.add(ctx, &"b".to_string())?;
        SEEN.put(ctx, &3, &true)?;
        SEEN.put(ctx, &1, &false)?;
        COUNT.add(ctx, &4)?;
        COUNT.add(ctx, &8)?;
        Ok(())
    }

    #[test]
    fn model_and_backend_hold_the_same_cells() {
        let key = Datum::from("k");
        let group = key.key_group(128);
        let mut backend = MemoryBackend::new("t-0", KeyGroupRange { start: 0, end: 127 });
        exercise(&mut KeyedContext::new(&mut backend, group, key.as_bytes())).unwrap();
        let mut model = ModelState::default();
        exercise(&mut model.keyed(&key)).unwrap();
        let engine: Vec<_> = backend
            .entries()
            .unwrap()
            .into_iter()
            .map(|e| ((e.state, e.key, e.user_key), e.value))
            .collect();
        let model_cells: Vec<_> = model.cells().map(|(a, v)| (a.clone(), v.clone())).collect();
        assert_eq!(engine, model_cells);
        assert_eq!(backend.states(), model.states());
        let ctx = model.keyed(&key);
        assert_eq!(COUNT.get(&ctx).unwrap(), Some(6));
        assert_eq!(RECENT.get(&ctx).unwrap(), ["a", "b"]);
        assert_eq!(SEEN.entries(&ctx).unwrap(), [(1, false), (3, true)]);
    }

    #[test]
    fn a_state_used_with_another_shape_is_an_error() {
        let key = Datum::from("k");
        let mut model = ModelState::default();
        let mut ctx = model.keyed(&key);
        TOTAL.set(&mut ctx, &1).unwrap();
        let as_list: ListState<i64> = ListState::new("total");
        assert!(matches!(
            as_list.get(&ctx),
            Err(StateError::Declaration { .. })
        ));
        // The same name and shape with another type is a decode error, not a panic.
        let as_text: ValueState<String> = ValueState::new("total");
        assert!(matches!(as_text.get(&ctx), Err(StateError::Data(_))));
    }
}
