//! A readable, backend-independent view of keyed state: what the oracle compares. The engine
//! decodes its backends' cells into it; the model builds it directly from its own evaluation.
//!
//! ```
//! use faultline::state::{StateAddr, StateValue, StateView};
//!
//! let addr = StateAddr { stage: "sum".into(), state: "sum".into(), key: "k0".into(), user_key: None };
//! let mut engine = StateView::new();
//! engine.0.insert(addr.clone(), StateValue::Int(7));
//! let mut model = StateView::new();
//! model.0.insert(addr.clone(), StateValue::Int(12));
//! let differences = model.differences(&engine);
//! assert_eq!(differences.len(), 1);
//! assert_eq!(differences[0].0, &addr);
//! ```

use std::collections::BTreeMap;
use std::fmt;

use super::keyed::decode_list;
use super::{StateDescriptor, StateEntry, StateError, StateKind, ValueType};

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
    pub key: String,
    /// The map key, for map state.
    pub user_key: Option<String>,
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

/// A decoded state value.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum StateValue {
    /// An integer.
    Int(i64),
    /// Text.
    Text(String),
    /// Bytes of a user-defined encoding.
    Bytes(Vec<u8>),
    /// A list.
    List(Vec<StateValue>),
}

impl fmt::Display for StateValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateValue::Int(value) => write!(f, "{value}"),
            StateValue::Text(text) => write!(f, "{text:?}"),
            StateValue::Bytes(bytes) => {
                f.write_str("0x")?;
                bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
            StateValue::List(values) => {
                f.write_str("[")?;
                for (index, value) in values.iter().enumerate() {
                    if index > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{value}")?;
                }
                f.write_str("]")
            }
        }
    }
}

/// Keyed state of a whole job, in canonical order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateView(pub BTreeMap<StateAddr, StateValue>);

// JSON maps need string keys: a view crosses process boundaries as a list of pairs.
impl serde::Serialize for StateView {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter())
    }
}

impl<'de> serde::Deserialize<'de> for StateView {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let pairs: Vec<(StateAddr, StateValue)> = serde::Deserialize::deserialize(deserializer)?;
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
    ) -> Vec<(
        &'a StateAddr,
        Option<&'a StateValue>,
        Option<&'a StateValue>,
    )> {
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

    /// Adds the decoded cells of one backend of stage `stage`.
    pub fn add_entries(
        &mut self,
        stage: &str,
        states: &[StateDescriptor],
        entries: &[StateEntry],
    ) -> Result<(), StateError> {
        for entry in entries {
            let descriptor = states.get(usize::from(entry.state)).ok_or_else(|| {
                StateError::Codec(format!("cell of undeclared state #{}", entry.state))
            })?;
            let value = match descriptor.kind {
                StateKind::List => StateValue::List(
                    decode_list(&entry.value)?
                        .iter()
                        .map(|e| decode_value(descriptor.value_type, e))
                        .collect(),
                ),
                StateKind::Value | StateKind::Map => {
                    decode_value(descriptor.value_type, &entry.value)
                }
            };
            let user_key = (descriptor.kind == StateKind::Map)
                .then(|| String::from_utf8_lossy(&entry.user_key).into_owned());
            let addr = StateAddr {
                stage: stage.to_string(),
                state: descriptor.name.clone(),
                key: String::from_utf8_lossy(&entry.key).into_owned(),
                user_key,
            };
            if self.0.insert(addr.clone(), value).is_some() {
                return Err(StateError::Codec(format!("{addr} is held by two subtasks")));
            }
        }
        Ok(())
    }
}

fn decode_value(value_type: ValueType, bytes: &[u8]) -> StateValue {
    match value_type {
        ValueType::I64 => match <[u8; 8]>::try_from(bytes) {
            Ok(array) => StateValue::Int(i64::from_le_bytes(array)),
            Err(_) => StateValue::Bytes(bytes.to_vec()),
        },
        ValueType::Text => match std::str::from_utf8(bytes) {
            Ok(text) => StateValue::Text(text.to_string()),
            Err(_) => StateValue::Bytes(bytes.to_vec()),
        },
        ValueType::Bytes => StateValue::Bytes(bytes.to_vec()),
    }
}
