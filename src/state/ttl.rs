//! State time-to-live, as Flink's `StateTtlConfig`: a value (or a map entry) expires `ttl_ms`
//! of processing time after it was last written — or, with [`TtlUpdate::OnReadAndWrite`],
//! last read or written — and an expired value is never returned (Flink's
//! `NeverReturnExpired`). Processing time is the virtual clock the context carries
//! ([`KeyedContext::now_ms`]).
//!
//! A TTL state's cells are declared [`ValueType::TtlJson`] and self-describing: the last
//! access time, the time to live, then the value's canonical text ([`TtlCell`]). So a backend
//! can tell an expired cell from its bytes and the clock alone: a canonical (full) snapshot
//! leaves expired cells out, RocksDB drops them in a compaction filter, and a read that finds
//! one deletes it. Turning TTL on or off for a state is a different declaration, refused as
//! Flink refuses it.
//!
//! ```
//! use faultline::job::Datum;
//! use faultline::state::ttl::{TtlConfig, TtlValueState};
//! use faultline::state::ModelState;
//!
//! const LAST_SEEN: TtlValueState<i64> = TtlValueState::new("last-seen", TtlConfig::new(100));
//!
//! let key = Datum::from("k");
//! let mut state = ModelState::default();
//! state.set_now_ms(10);
//! LAST_SEEN.set(&mut state.keyed(&key), &7)?;
//! state.set_now_ms(109);
//! assert_eq!(LAST_SEEN.get(&mut state.keyed(&key))?, Some(7));
//! // Expired at 10 + 100: never returned, and the read removed it.
//! state.set_now_ms(110);
//! assert_eq!(LAST_SEEN.get(&mut state.keyed(&key))?, None);
//! assert_eq!(state.cells().count(), 0);
//! # Ok::<(), faultline::state::StateError>(())
//! ```

use std::marker::PhantomData;

use super::keyed::{declare_as, decode, encode, Shape};
use super::{KeyedContext, StateBackend, StateError, StateKind, ValueType};
use crate::job::Data;

/// When a TTL value's clock restarts (Flink's `StateTtlConfig.UpdateType`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum TtlUpdate {
    /// On every write (`OnCreateAndWrite`).
    OnCreateAndWrite,
    /// On every write and every read that returns it (`OnReadAndWrite`).
    OnReadAndWrite,
}

/// A state's time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlConfig {
    /// How long a value lives after its last update, in processing time.
    pub ttl_ms: u64,
    /// What updates it.
    pub update: TtlUpdate,
}

impl TtlConfig {
    /// Values live `ttl_ms` after they were last written.
    pub const fn new(ttl_ms: u64) -> Self {
        Self {
            ttl_ms,
            update: TtlUpdate::OnCreateAndWrite,
        }
    }

    /// The same, with reads restarting the clock too.
    pub const fn update_on_read(self) -> Self {
        Self {
            update: TtlUpdate::OnReadAndWrite,
            ..self
        }
    }
}

/// One TTL cell, decoded: when it was last updated, how long it lives, and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlCell<'a> {
    /// The processing time of its last update.
    pub last_access_ms: u64,
    /// Its time to live.
    pub ttl_ms: u64,
    /// The value's canonical text.
    pub value: &'a [u8],
}

/// The bytes before a TTL cell's value: two little-endian `u64`s.
const HEADER_BYTES: usize = 16;

impl<'a> TtlCell<'a> {
    /// Decodes a stored cell; an error names what is wrong (never a panic, whatever the bytes).
    pub fn decode(bytes: &'a [u8]) -> Result<Self, StateError> {
        let header = bytes.get(..HEADER_BYTES).ok_or_else(|| {
            StateError::Codec(format!(
                "TTL cell of {} bytes has no {HEADER_BYTES}-byte header",
                bytes.len()
            ))
        })?;
        let (last, ttl) = header.split_at(8);
        // Both halves are 8 bytes: the header is 16.
        let word = |half: &[u8]| u64::from_le_bytes(half.try_into().expect("8 bytes"));
        Ok(Self {
            last_access_ms: word(last),
            ttl_ms: word(ttl),
            value: &bytes[HEADER_BYTES..],
        })
    }

    /// The stored bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(HEADER_BYTES + self.value.len());
        bytes.extend_from_slice(&self.last_access_ms.to_le_bytes());
        bytes.extend_from_slice(&self.ttl_ms.to_le_bytes());
        bytes.extend_from_slice(self.value);
        bytes
    }

    /// The first processing time at which it is expired.
    pub fn expires_at_ms(&self) -> u64 {
        self.last_access_ms.saturating_add(self.ttl_ms)
    }

    /// Whether it is expired at `now_ms` (Flink's rule: expired once `last + ttl <= now`).
    pub fn expired_at(&self, now_ms: u64) -> bool {
        self.expires_at_ms() <= now_ms
    }
}

/// Whether the stored `bytes` of a TTL cell are expired at `now_ms`. Bytes that do not decode
/// are not expired: a cleanup never drops what it cannot read, so damage stays visible.
pub fn expired(bytes: &[u8], now_ms: u64) -> bool {
    TtlCell::decode(bytes).is_ok_and(|cell| cell.expired_at(now_ms))
}

/// Reads a TTL cell at the context's time: `None` if absent or expired (an expired cell is
/// deleted, Flink's cleanup on access); a live one read under `OnReadAndWrite` is rewritten
/// with the current time.
fn read_live(
    ctx: &mut KeyedContext<'_>,
    name: &str,
    kind: StateKind,
    user_key: &[u8],
    config: TtlConfig,
) -> Result<Option<Vec<u8>>, StateError> {
    let shape = Shape(kind, ValueType::TtlJson);
    let Some(bytes) = ctx.read_as(name, shape, user_key)? else {
        return Ok(None);
    };
    let now_ms = ctx.now_ms();
    let cell = TtlCell::decode(&bytes)?;
    if cell.expired_at(now_ms) {
        ctx.write_as(name, shape, user_key, None)?;
        return Ok(None);
    }
    let value = cell.value.to_vec();
    if config.update == TtlUpdate::OnReadAndWrite && cell.last_access_ms != now_ms {
        ctx.write_as(name, shape, user_key, Some(stamp(&value, now_ms, config)))?;
    }
    Ok(Some(value))
}

fn stamp(value: &[u8], now_ms: u64, config: TtlConfig) -> Vec<u8> {
    TtlCell {
        last_access_ms: now_ms,
        ttl_ms: config.ttl_ms,
        value,
    }
    .encode()
}

/// One value of type `T` per key that expires (Flink's `ValueState` with TTL enabled). Reads
/// take the context mutably: a read may delete an expired value or restart a live one's clock.
#[derive(Debug)]
pub struct TtlValueState<T> {
    name: &'static str,
    config: TtlConfig,
    _type: PhantomData<fn() -> T>,
}

impl<T: Data> TtlValueState<T> {
    /// The state `name` (unique within its operator), living as `config` says.
    pub const fn new(name: &'static str, config: TtlConfig) -> Self {
        Self {
            name,
            config,
            _type: PhantomData,
        }
    }

    /// Declares the state in `backend` before anything is written.
    pub fn declare(&self, backend: &mut dyn StateBackend) -> Result<(), StateError> {
        declare_as(
            backend,
            self.name,
            Shape(StateKind::Value, ValueType::TtlJson),
        )
    }

    /// The current key's value, if set and not expired.
    pub fn get(&self, ctx: &mut KeyedContext<'_>) -> Result<Option<T>, StateError> {
        read_live(ctx, self.name, StateKind::Value, &[], self.config)?
            .map(|bytes| decode(&bytes))
            .transpose()
    }

    /// Sets the current key's value, which then lives `ttl_ms` from now.
    pub fn set(&self, ctx: &mut KeyedContext<'_>, value: &T) -> Result<(), StateError> {
        let cell = stamp(&encode(value)?, ctx.now_ms(), self.config);
        let shape = Shape(StateKind::Value, ValueType::TtlJson);
        ctx.write_as(self.name, shape, &[], Some(cell))
    }

    /// Clears the current key's value.
    pub fn clear(&self, ctx: &mut KeyedContext<'_>) -> Result<(), StateError> {
        let shape = Shape(StateKind::Value, ValueType::TtlJson);
        ctx.write_as(self.name, shape, &[], None)
    }
}

/// A map from `K` to `V` per key whose entries expire one by one (Flink's `MapState` with TTL
/// enabled).
#[derive(Debug)]
pub struct TtlMapState<K, V> {
    name: &'static str,
    config: TtlConfig,
    _type: PhantomData<fn() -> (K, V)>,
}

impl<K: Data, V: Data> TtlMapState<K, V> {
    /// The state `name` (unique within its operator), its entries living as `config` says.
    pub const fn new(name: &'static str, config: TtlConfig) -> Self {
        Self {
            name,
            config,
            _type: PhantomData,
        }
    }

    const SHAPE: Shape = Shape(StateKind::Map, ValueType::TtlJson);

    /// Declares the state in `backend` before anything is written.
    pub fn declare(&self, backend: &mut dyn StateBackend) -> Result<(), StateError> {
        declare_as(backend, self.name, Self::SHAPE)
    }

    /// The live value under `user_key` for the current key.
    pub fn get(&self, ctx: &mut KeyedContext<'_>, user_key: &K) -> Result<Option<V>, StateError> {
        let user_key = encode(user_key)?;
        read_live(ctx, self.name, StateKind::Map, &user_key, self.config)?
            .map(|bytes| decode(&bytes))
            .transpose()
    }

    /// Sets the value under `user_key` for the current key; it lives `ttl_ms` from now.
    pub fn put(
        &self,
        ctx: &mut KeyedContext<'_>,
        user_key: &K,
        value: &V,
    ) -> Result<(), StateError> {
        let cell = stamp(&encode(value)?, ctx.now_ms(), self.config);
        ctx.write_as(self.name, Self::SHAPE, &encode(user_key)?, Some(cell))
    }

    /// Removes `user_key` for the current key.
    pub fn remove(&self, ctx: &mut KeyedContext<'_>, user_key: &K) -> Result<(), StateError> {
        ctx.write_as(self.name, Self::SHAPE, &encode(user_key)?, None)
    }

    /// Every live entry of the current key, in key order (expired ones are deleted; under
    /// `OnReadAndWrite` each returned one is touched).
    pub fn entries(&self, ctx: &mut KeyedContext<'_>) -> Result<Vec<(K, V)>, StateError> {
        let stored = ctx.user_entries_as(self.name, ValueType::TtlJson)?;
        let mut live = Vec::with_capacity(stored.len());
        for (user_key, _) in stored {
            let read = read_live(ctx, self.name, StateKind::Map, &user_key, self.config)?;
            if let Some(value) = read {
                live.push((decode(&user_key)?, decode(&value)?));
            }
        }
        Ok(live)
    }

    /// Removes every entry of the current key.
    pub fn clear(&self, ctx: &mut KeyedContext<'_>) -> Result<(), StateError> {
        for (user_key, _) in ctx.user_entries_as(self.name, ValueType::TtlJson)? {
            ctx.write_as(self.name, Self::SHAPE, &user_key, None)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::Datum;
    use crate::state::{ModelState, ValueState};

    const SEEN: TtlMapState<String, i64> =
        TtlMapState::new("seen", TtlConfig::new(50).update_on_read());
    const TOTAL: TtlValueState<i64> = TtlValueState::new("total", TtlConfig::new(50));

    #[test]
    fn a_read_restarts_the_clock_only_under_on_read_and_write() {
        let key = Datum::from("k");
        let mut state = ModelState::default();
        let at = |state: &mut ModelState, now_ms| state.set_now_ms(now_ms);
        at(&mut state, 0);
        TOTAL.set(&mut state.keyed(&key), &1).unwrap();
        SEEN.put(&mut state.keyed(&key), &"a".into(), &2).unwrap();
        at(&mut state, 40);
        assert_eq!(TOTAL.get(&mut state.keyed(&key)).unwrap(), Some(1));
        assert_eq!(SEEN.entries(&mut state.keyed(&key)).unwrap().len(), 1);
        // At 60 the value written at 0 is gone; the entry read at 40 lives until 90.
        at(&mut state, 60);
        assert_eq!(TOTAL.get(&mut state.keyed(&key)).unwrap(), None);
        assert_eq!(
            SEEN.get(&mut state.keyed(&key), &"a".into()).unwrap(),
            Some(2)
        );
        at(&mut state, 110);
        assert_eq!(SEEN.get(&mut state.keyed(&key), &"a".into()).unwrap(), None);
        assert_eq!(
            state.cells().count(),
            0,
            "expired cells are deleted on access"
        );
    }

    #[test]
    fn a_state_with_ttl_is_not_the_same_state_without() {
        let key = Datum::from("k");
        let mut state = ModelState::default();
        TOTAL.set(&mut state.keyed(&key), &1).unwrap();
        let plain: ValueState<i64> = ValueState::new("total");
        assert!(matches!(
            plain.get(&state.keyed(&key)),
            Err(StateError::Declaration { .. })
        ));
    }

    #[test]
    fn damaged_cells_are_errors_and_never_expired() {
        for bytes in [&b""[..], &[1; 15][..]] {
            assert!(TtlCell::decode(bytes).is_err());
            assert!(!expired(bytes, u64::MAX));
        }
        let cell = TtlCell {
            last_access_ms: u64::MAX - 1,
            ttl_ms: 10,
            value: b"1",
        };
        assert_eq!(cell.expires_at_ms(), u64::MAX, "saturates, never wraps");
        assert_eq!(TtlCell::decode(&cell.encode()).unwrap(), cell);
    }
}
