//! The typed keyed-state API operators use. A handle (`ValueState<T>`, `ListState<T>`,
//! `MapState<K, V>`) is obtained once when the operator opens; each access goes through the
//! [`KeyedContext`] of the record being processed, which scopes it to that record's key.
//!
//! ```
//! use faultline::job::keygroup::key_group_for;
//! use faultline::state::{KeyGroupRange, KeyedContext, MapState, MemoryBackend, ValueState};
//!
//! let mut backend = MemoryBackend::new("total-0", KeyGroupRange { start: 0, end: 127 });
//! // Declared once, when the operator opens.
//! let total: ValueState<i64> = ValueState::declare(&mut backend, "total")?;
//! let seen: MapState<String, i64> = MapState::declare(&mut backend, "seen")?;
//! // Each access goes through the context of the record being processed.
//! let group = key_group_for("account-1", 128);
//! let mut ctx = KeyedContext::new(&mut backend, group, b"account-1");
//! total.set(&mut ctx, &42)?;
//! seen.put(&mut ctx, &"tx1".to_string(), &7)?;
//! assert_eq!(total.get(&ctx)?, Some(42));
//! assert_eq!(seen.entries(&ctx)?, vec![("tx1".to_string(), 7)]);
//! # Ok::<(), faultline::state::StateError>(())
//! ```

use std::marker::PhantomData;

use super::{CellRef, StateBackend, StateDescriptor, StateError, StateId, StateKind, ValueType};
use crate::checkpoint::codec::{Decoder, Encoder};

/// How a state value is stored as bytes.
pub trait StateCodec: Sized {
    /// The value type recorded in snapshots, so state can be shown without the operator.
    const VALUE_TYPE: ValueType;
    /// Encodes the value.
    fn encode(&self) -> Vec<u8>;
    /// Decodes a stored value.
    fn decode(bytes: &[u8]) -> Result<Self, StateError>;
}

impl StateCodec for i64 {
    const VALUE_TYPE: ValueType = ValueType::I64;
    fn encode(&self) -> Vec<u8> {
        self.to_le_bytes().to_vec()
    }
    fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        let array: [u8; 8] = bytes
            .try_into()
            .map_err(|_| StateError::Codec(format!("i64 needs 8 bytes, found {}", bytes.len())))?;
        Ok(i64::from_le_bytes(array))
    }
}

impl StateCodec for String {
    const VALUE_TYPE: ValueType = ValueType::Text;
    fn encode(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
    fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        String::from_utf8(bytes.to_vec()).map_err(|_| StateError::Codec("text is not UTF-8".into()))
    }
}

impl StateCodec for Vec<u8> {
    const VALUE_TYPE: ValueType = ValueType::Bytes;
    fn encode(&self) -> Vec<u8> {
        self.clone()
    }
    fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        Ok(bytes.to_vec())
    }
}

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

/// Access to the keyed state of the record being processed.
pub struct KeyedContext<'a> {
    backend: &'a mut dyn StateBackend,
    key_group: u16,
    key: &'a [u8],
}

impl std::fmt::Debug for KeyedContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedContext")
            .field("key_group", &self.key_group)
            .field("key", &String::from_utf8_lossy(self.key))
            .finish()
    }
}

impl<'a> KeyedContext<'a> {
    /// Scopes `backend` to `key`, which lies in `key_group`.
    pub fn new(backend: &'a mut dyn StateBackend, key_group: u16, key: &'a [u8]) -> Self {
        debug_assert!(
            backend.key_groups().contains(key_group),
            "record routed to the wrong subtask"
        );
        Self {
            backend,
            key_group,
            key,
        }
    }

    /// The current key.
    pub fn key(&self) -> &[u8] {
        self.key
    }

    fn cell<'b>(&'b self, state: StateId, user_key: &'b [u8]) -> CellRef<'b> {
        CellRef {
            state,
            key_group: self.key_group,
            key: self.key,
            user_key,
        }
    }
}

fn register(
    backend: &mut dyn StateBackend,
    name: &str,
    kind: StateKind,
    value_type: ValueType,
) -> Result<StateId, StateError> {
    backend.register_state(&StateDescriptor {
        name: name.to_string(),
        kind,
        value_type,
    })
}

/// One value of type `T` per key.
#[derive(Debug)]
pub struct ValueState<T> {
    id: StateId,
    _type: PhantomData<fn() -> T>,
}

impl<T: StateCodec> ValueState<T> {
    /// Declares the state `name` in `backend`.
    pub fn declare(backend: &mut dyn StateBackend, name: &str) -> Result<Self, StateError> {
        let id = register(backend, name, StateKind::Value, T::VALUE_TYPE)?;
        Ok(Self {
            id,
            _type: PhantomData,
        })
    }

    /// The current key's value, if set.
    pub fn get(&self, ctx: &KeyedContext<'_>) -> Result<Option<T>, StateError> {
        ctx.backend
            .get(ctx.cell(self.id, &[]))?
            .map(|bytes| T::decode(&bytes))
            .transpose()
    }

    /// Sets the current key's value.
    pub fn set(&self, ctx: &mut KeyedContext<'_>, value: &T) -> Result<(), StateError> {
        let cell = CellRef {
            state: self.id,
            key_group: ctx.key_group,
            key: ctx.key,
            user_key: &[],
        };
        ctx.backend.put(cell, &value.encode())
    }

    /// Clears the current key's value.
    pub fn clear(&self, ctx: &mut KeyedContext<'_>) -> Result<(), StateError> {
        let cell = CellRef {
            state: self.id,
            key_group: ctx.key_group,
            key: ctx.key,
            user_key: &[],
        };
        ctx.backend.delete(cell)
    }
}

/// A list of `T` per key.
#[derive(Debug)]
pub struct ListState<T> {
    id: StateId,
    _type: PhantomData<fn() -> T>,
}

impl<T: StateCodec> ListState<T> {
    /// Declares the state `name` in `backend`.
    pub fn declare(backend: &mut dyn StateBackend, name: &str) -> Result<Self, StateError> {
        let id = register(backend, name, StateKind::List, T::VALUE_TYPE)?;
        Ok(Self {
            id,
            _type: PhantomData,
        })
    }

    /// The current key's list (empty if unset).
    pub fn get(&self, ctx: &KeyedContext<'_>) -> Result<Vec<T>, StateError> {
        match ctx.backend.get(ctx.cell(self.id, &[]))? {
            None => Ok(Vec::new()),
            Some(bytes) => decode_list(&bytes)?.iter().map(|e| T::decode(e)).collect(),
        }
    }

    /// Replaces the current key's list.
    pub fn update(&self, ctx: &mut KeyedContext<'_>, values: &[T]) -> Result<(), StateError> {
        let encoded: Vec<Vec<u8>> = values.iter().map(StateCodec::encode).collect();
        let cell = CellRef {
            state: self.id,
            key_group: ctx.key_group,
            key: ctx.key,
            user_key: &[],
        };
        ctx.backend.put(cell, &encode_list(&encoded))
    }

    /// Appends to the current key's list.
    pub fn add(&self, ctx: &mut KeyedContext<'_>, value: &T) -> Result<(), StateError> {
        let mut elements = match ctx.backend.get(ctx.cell(self.id, &[]))? {
            None => Vec::new(),
            Some(bytes) => decode_list(&bytes)?,
        };
        elements.push(value.encode());
        let cell = CellRef {
            state: self.id,
            key_group: ctx.key_group,
            key: ctx.key,
            user_key: &[],
        };
        ctx.backend.put(cell, &encode_list(&elements))
    }
}

/// A map from `K` to `V` per key; each entry is its own cell.
#[derive(Debug)]
pub struct MapState<K, V> {
    id: StateId,
    _type: PhantomData<fn() -> (K, V)>,
}

impl<K: StateCodec, V: StateCodec> MapState<K, V> {
    /// Declares the state `name` in `backend`.
    pub fn declare(backend: &mut dyn StateBackend, name: &str) -> Result<Self, StateError> {
        let id = register(backend, name, StateKind::Map, V::VALUE_TYPE)?;
        Ok(Self {
            id,
            _type: PhantomData,
        })
    }

    /// The value under `user_key` for the current key.
    pub fn get(&self, ctx: &KeyedContext<'_>, user_key: &K) -> Result<Option<V>, StateError> {
        let user_key = user_key.encode();
        ctx.backend
            .get(ctx.cell(self.id, &user_key))?
            .map(|bytes| V::decode(&bytes))
            .transpose()
    }

    /// Sets the value under `user_key` for the current key.
    pub fn put(
        &self,
        ctx: &mut KeyedContext<'_>,
        user_key: &K,
        value: &V,
    ) -> Result<(), StateError> {
        let user_key = user_key.encode();
        let cell = CellRef {
            state: self.id,
            key_group: ctx.key_group,
            key: ctx.key,
            user_key: &user_key,
        };
        ctx.backend.put(cell, &value.encode())
    }

    /// Removes `user_key` for the current key.
    pub fn remove(&self, ctx: &mut KeyedContext<'_>, user_key: &K) -> Result<(), StateError> {
        let user_key = user_key.encode();
        let cell = CellRef {
            state: self.id,
            key_group: ctx.key_group,
            key: ctx.key,
            user_key: &user_key,
        };
        ctx.backend.delete(cell)
    }

    /// Every entry of the current key, in user-key byte order.
    pub fn entries(&self, ctx: &KeyedContext<'_>) -> Result<Vec<(K, V)>, StateError> {
        ctx.backend
            .user_entries(self.id, ctx.key_group, ctx.key)?
            .into_iter()
            .map(|(k, v)| Ok((K::decode(&k)?, V::decode(&v)?)))
            .collect()
    }
}
