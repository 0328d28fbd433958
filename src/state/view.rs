//! A readable, backend-independent view of keyed state: what the oracle compares. The engine
//! decodes its backends' cells into it; the model builds it directly from its own evaluation.
//!
//! Keys, map keys and values are [`Datum`]s: whatever the user's types, the view compares and
//! shows their canonical text.
//!
//! ```
//! use faultline::job::Datum;
//! use faultline::state::{StateAddr, StateView};
//!
//! let addr = StateAddr {
//!     stage: "sum".into(),
//!     state: "sum".into(),
//!     key: Datum::from("k0"),
//!     user_key: None,
//! };
//! let mut engine = StateView::new();
//! engine.0.insert(addr.clone(), Datum::from(7));
//! let mut model = StateView::new();
//! model.0.insert(addr.clone(), Datum::from(12));
//! let differences = model.differences(&engine);
//! assert_eq!(differences.len(), 1);
//! assert_eq!(differences[0].0, &addr);
//! ```

use std::collections::BTreeMap;
use std::fmt;

use super::keyed::decode_list;
use super::{StateDescriptor, StateEntry, StateError, StateKind, ValueType};
use crate::job::Datum;

/// Where a state value lives: stage, state name, key, and map key for map state.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct StateAddr {
    /// The operator (stage) name.
    pub stage: String,
    /// The state's name within the operator.
    pub state: String,
    /// The record key.
    pub key: Datum,
    /// The map key, for map state.
    pub user_key: Option<Datum>,
}

impl fmt::Display for StateAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}[{}]", self.stage, self.state, self.key)?;
        if let Some(user_key) = &self.user_key {
            write!(f, "[{user_key}]")?;
        }
        Ok(())
    }
}

/// Keyed state of a whole job, in canonical order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateView(pub BTreeMap<StateAddr, Datum>);

// JSON maps need string keys: a view crosses process boundaries as a list of pairs.
impl serde::Serialize for StateView {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter())
    }
}

impl<'de> serde::Deserialize<'de> for StateView {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let pairs: Vec<(StateAddr, Datum)> = serde::Deserialize::deserialize(deserializer)?;
        Ok(StateView(pairs.into_iter().collect()))
    }
}

impl StateView {
    /// An empty view.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Addresses whose values differ, with (expected, actual): `self` is the expectation.
    pub fn differences<'a>(
        &'a self,
        actual: &'a StateView,
    ) -> Vec<(&'a StateAddr, Option<&'a Datum>, Option<&'a Datum>)> {
        let mut differences = Vec::new();
        for (addr, expected) in &self.0 {
            match actual.0.get(addr) {
                Some(found) if found == expected => {}
                found => differences.push((addr, Some(expected), found)),
            }
        }
        for (addr, found) in &actual.0 {
            if !self.0.contains_key(addr) {
                differences.push((addr, None, Some(found)));
            }
        }
        differences.sort_by(|a, b| a.0.cmp(b.0));
        differences
    }

    /// Adds the decoded cells of one backend of stage `stage`, every one of them.
    pub fn add_entries(
        &mut self,
        stage: &str,
        states: &[StateDescriptor],
        entries: &[StateEntry],
    ) -> Result<(), StateError> {
        self.add_cells(stage, states, entries, None)
    }

    /// Adds the cells of one backend of stage `stage` that a read at processing time `now_ms`
    /// could see: TTL cells expired by then are left out, since whether a cleanup has dropped
    /// them yet is the backend's choice.
    pub fn add_live_entries(
        &mut self,
        stage: &str,
        states: &[StateDescriptor],
        entries: &[StateEntry],
        now_ms: u64,
    ) -> Result<(), StateError> {
        self.add_cells(stage, states, entries, Some(now_ms))
    }

    fn add_cells(
        &mut self,
        stage: &str,
        states: &[StateDescriptor],
        entries: &[StateEntry],
        now_ms: Option<u64>,
    ) -> Result<(), StateError> {
        for entry in entries {
            let descriptor = states.get(usize::from(entry.state)).ok_or_else(|| {
                StateError::Codec(format!("cell of undeclared state #{}", entry.state))
            })?;
            // Timers are judged by when they fire, not as cells: a model has no clock to fire
            // (and so delete) them by.
            if descriptor.name == super::timers::TIMER_STATE {
                continue;
            }
            let expired = |now_ms| super::ttl::expired(&entry.value, now_ms);
            if descriptor.value_type == ValueType::TtlJson && now_ms.is_some_and(expired) {
                continue;
            }
            let value = match descriptor.kind {
                StateKind::List => list_datum(descriptor.value_type, &entry.value)?,
                StateKind::Value | StateKind::Map => {
                    decode_value(descriptor.value_type, &entry.value)
                }
            };
            let user_key =
                (descriptor.kind == StateKind::Map).then(|| match descriptor.value_type {
                    ValueType::Json | ValueType::TtlJson => canonical_or_bytes(&entry.user_key),
                    _ => Datum::from(String::from_utf8_lossy(&entry.user_key).as_ref()),
                });
            let addr = StateAddr {
                stage: stage.to_string(),
                state: descriptor.name.clone(),
                key: canonical_or_bytes(&entry.key),
                user_key,
            };
            if self.0.insert(addr.clone(), value).is_some() {
                return Err(StateError::Codec(format!("{addr} is held by two subtasks")));
            }
        }
        Ok(())
    }
}

/// A list cell as one JSON array of its elements.
fn list_datum(value_type: ValueType, bytes: &[u8]) -> Result<Datum, StateError> {
    let elements: Vec<Datum> = decode_list(bytes)?
        .iter()
        .map(|e| decode_value(value_type, e))
        .collect();
    // Canonical elements joined compactly are the list's canonical text.
    let texts: Vec<&str> = elements.iter().map(Datum::as_str).collect();
    Ok(Datum::from_canonical(format!("[{}]", texts.join(","))))
}

/// Canonical text as written by the typed API; anything else (a hand-written backend's key,
/// damaged bytes) shown as its bytes rather than dropped.
fn canonical_or_bytes(bytes: &[u8]) -> Datum {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| Datum::parse(text).ok())
        .unwrap_or_else(|| bytes_datum(bytes))
}

fn bytes_datum(bytes: &[u8]) -> Datum {
    Datum::of(bytes).unwrap_or_else(|_| Datum::from("<bytes>"))
}

fn decode_value(value_type: ValueType, bytes: &[u8]) -> Datum {
    match value_type {
        ValueType::I64 => match <[u8; 8]>::try_from(bytes) {
            Ok(array) => Datum::from(i64::from_le_bytes(array)),
            Err(_) => bytes_datum(bytes),
        },
        ValueType::Text => match std::str::from_utf8(bytes) {
            Ok(text) => Datum::from(text),
            Err(_) => bytes_datum(bytes),
        },
        ValueType::Bytes => bytes_datum(bytes),
        ValueType::Json => canonical_or_bytes(bytes),
        ValueType::TtlJson => ttl_datum(bytes),
    }
}

/// A TTL cell as its value and when it expires: a restore that moved the expiry shows.
fn ttl_datum(bytes: &[u8]) -> Datum {
    match super::ttl::TtlCell::decode(bytes) {
        Ok(cell) => Datum::from_canonical(format!(
            r#"{{"expires_at_ms":{},"value":{}}}"#,
            cell.expires_at_ms(),
            canonical_or_bytes(cell.value).as_str()
        )),
        Err(_) => bytes_datum(bytes),
    }
}
