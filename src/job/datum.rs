//! [`Datum`]: a value of a user's own type, carried through the engine in canonical form.
//!
//! The engine, the snapshot formats, the trace hash, the oracle and the process-mode child all
//! work on one record type, so a user's types are erased at the seams into their canonical
//! encoding — compact JSON with object keys sorted — and read back with typed access
//! ([`Datum::get`]). Two equal values of a type always have the same canonical text, whatever
//! order a struct declares its fields in or a scenario file writes them, so comparing data is
//! comparing text, and the text is what traces show.
//!
//! ```
//! use faultline::job::Datum;
//!
//! #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
//! struct Txn { to: String, amount_cents: i64 }
//!
//! let txn = Txn { to: "acct-1".into(), amount_cents: 1250 };
//! let datum = Datum::of(&txn)?;
//! // Canonical: keys sorted, no whitespace.
//! assert_eq!(datum.as_str(), r#"{"amount_cents":1250,"to":"acct-1"}"#);
//! assert_eq!(datum.get::<Txn>()?, txn);
//! // Reading it as another type is an error naming both, never a panic.
//! assert!(datum.get::<i64>().is_err());
//! # Ok::<(), faultline::job::DataError>(())
//! ```

use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::keygroup::{java_string_hash, murmur_hash};

/// The bounds a user's record, key or state type needs: serde both ways, and equality, so the
/// oracle can compare what the engine holds with what the model says.
///
/// Values are compared by their canonical text, so a type must write equal values alike: use
/// ordered collections (`BTreeMap`, `BTreeSet`), not hash-ordered ones, and no floats that are
/// NaN (JSON writes it as `null`) or `-0.0` (written apart from `0.0`). Integers up to 64
/// bits are exact everywhere.
pub trait Data: Serialize + DeserializeOwned + Clone + fmt::Debug + PartialEq + 'static {}

impl<T> Data for T where T: Serialize + DeserializeOwned + Clone + fmt::Debug + PartialEq + 'static {}

/// A value that cannot be put into, or read out of, canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The value cannot be written as canonical JSON (a map keyed by a struct, say).
    #[error("cannot encode a {type_name}: {reason}")]
    Encode {
        /// The Rust type.
        type_name: &'static str,
        /// What serde said.
        reason: String,
    },
    /// The canonical text is not a value of the type asked for.
    #[error("{text} is not a {type_name}: {reason}")]
    Decode {
        /// The canonical text.
        text: String,
        /// The Rust type asked for.
        type_name: &'static str,
        /// What serde said.
        reason: String,
    },
}

/// A value in canonical form: compact JSON, object keys sorted. Shared, so the records and
/// events that carry a value clone it without copying it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Datum(Arc<str>);

/// The canonical text of `value`: what [`Datum::of`] holds and keyed state stores.
pub(crate) fn canonical_text<T: Serialize + ?Sized>(value: &T) -> Result<String, DataError> {
    let encode = |error: serde_json::Error| DataError::Encode {
        type_name: std::any::type_name::<T>(),
        reason: error.to_string(),
    };
    let text = serde_json::to_string(value).map_err(encode)?;
    // Text without an object is canonical as written; an object goes through `Value`, whose
    // objects are sorted maps, so the order of a struct's fields never shows.
    if !text.contains('{') {
        return Ok(text);
    }
    // A `Value` always serializes: its map keys are strings and its numbers finite.
    Ok(serde_json::to_value(value).map_err(encode)?.to_string())
}

/// Reads canonical text (a `Datum`'s, or a state cell's) as a `T`.
pub(crate) fn read_canonical<T: DeserializeOwned>(text: &[u8]) -> Result<T, DataError> {
    serde_json::from_slice(text).map_err(|error| DataError::Decode {
        text: String::from_utf8_lossy(text).chars().take(80).collect(),
        type_name: std::any::type_name::<T>(),
        reason: error.to_string(),
    })
}

impl Datum {
    /// The canonical form of `value`.
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Result<Self, DataError> {
        Ok(Self(canonical_text(value)?.into()))
    }

    /// Text already in canonical form, as the crate's own encoders write it (their unit
    /// tests compare it with [`Datum::of`]).
    pub(crate) fn from_canonical(text: String) -> Self {
        Self(text.into())
    }

    fn from_tree(tree: &serde_json::Value) -> Self {
        // A `Value` always serializes: its map keys are strings and its numbers finite.
        Self(tree.to_string().into())
    }

    /// Reads the value as a `T`.
    pub fn get<T: DeserializeOwned>(&self) -> Result<T, DataError> {
        read_canonical(self.as_bytes())
    }

    /// Parses JSON text (from a snapshot cell or a JSON Lines file) into canonical form.
    pub fn parse(text: &str) -> Result<Self, DataError> {
        let tree: serde_json::Value =
            serde_json::from_str(text).map_err(|error| DataError::Decode {
                text: text.chars().take(80).collect(),
                type_name: "JSON value",
                reason: error.to_string(),
            })?;
        Ok(Self::from_tree(&tree))
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The canonical bytes (the text's UTF-8), as keyed state stores them.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The text of a string value, if this is one.
    pub fn as_text(&self) -> Option<std::borrow::Cow<'_, str>> {
        let inner = self.0.strip_prefix('"')?.strip_suffix('"')?;
        if inner.contains('\\') {
            serde_json::from_str::<String>(&self.0)
                .ok()
                .map(std::borrow::Cow::Owned)
        } else {
            Some(std::borrow::Cow::Borrowed(inner))
        }
    }

    /// The key's 32-bit hash code, Flink's first step to a key group: Java's `String.hashCode`
    /// for a string key (so string keys land where a Flink job puts them), and Java's
    /// `Arrays.hashCode(byte[])` over the canonical bytes for any other key.
    pub fn hash_code(&self) -> i32 {
        match self.as_text() {
            Some(text) => java_string_hash(&text),
            None => self.0.bytes().fold(1i32, |hash, byte| {
                hash.wrapping_mul(31).wrapping_add(i32::from(byte as i8))
            }),
        }
    }

    /// The key group of this key under `max_parallelism`.
    pub fn key_group(&self, max_parallelism: u16) -> u16 {
        assert!(max_parallelism > 0, "max parallelism is at least 1");
        let group = murmur_hash(self.hash_code()) % i32::from(max_parallelism);
        debug_assert!(group >= 0, "murmur_hash is non-negative");
        group as u16
    }
}

impl From<&str> for Datum {
    fn from(text: &str) -> Self {
        Self::from_tree(&serde_json::Value::String(text.to_string()))
    }
}

impl From<i64> for Datum {
    fn from(value: i64) -> Self {
        Self(value.to_string().into())
    }
}

impl fmt::Display for Datum {
    /// Readable, for traces and reports: strings of plain characters without quotes (`acct-1`),
    /// objects as `{account: acct-1, amount_cents: 1250}`, lists as `[1, 2]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match serde_json::from_str::<serde_json::Value>(&self.0) {
            Ok(tree) => render(&tree, f),
            Err(_) => f.write_str(&self.0),
        }
    }
}

fn is_plain(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':'))
}

fn render(tree: &serde_json::Value, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    use serde_json::Value;
    match tree {
        Value::String(text) if is_plain(text) => f.write_str(text),
        Value::Array(items) => {
            f.write_str("[")?;
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    f.write_str(", ")?;
                }
                render(item, f)?;
            }
            f.write_str("]")
        }
        Value::Object(fields) => {
            f.write_str("{")?;
            for (index, (name, value)) in fields.iter().enumerate() {
                if index > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{name}: ")?;
                render(value, f)?;
            }
            f.write_str("}")
        }
        other => write!(f, "{other}"),
    }
}

/// The key under which a readable format holds a value it cannot write natively.
const AS_JSON: &str = "$json";

/// Whether every readable format writes `tree` natively: TOML has no null and no integer past
/// `i64::MAX`.
fn writes_natively(tree: &serde_json::Value) -> bool {
    use serde_json::Value;
    match tree {
        Value::Null => false,
        Value::Number(number) => number.is_i64() || number.is_f64(),
        Value::Array(items) => items.iter().all(writes_natively),
        Value::Object(fields) => fields.values().all(writes_natively),
        Value::Bool(_) | Value::String(_) => true,
    }
}

// Readable formats (scenario and failure files, process mode's JSON lines) carry the value
// itself, or `{ "$json" = "<canonical text>" }` for one they cannot write (an `Option` that is
// `None`, a `u64` past `i64::MAX`); binary ones (the trace hash's postcard) carry the text.
impl Serialize for Datum {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if !serializer.is_human_readable() {
            return serializer.serialize_str(&self.0);
        }
        let tree: serde_json::Value =
            serde_json::from_str(&self.0).map_err(serde::ser::Error::custom)?;
        if writes_natively(&tree) {
            tree.serialize(serializer)
        } else {
            let mut escaped = std::collections::BTreeMap::new();
            escaped.insert(AS_JSON, self.as_str());
            escaped.serialize(serializer)
        }
    }
}

impl<'de> serde::Deserialize<'de> for Datum {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let tree = serde_json::Value::deserialize(deserializer)?;
            match tree.as_object().and_then(|fields| match fields.len() {
                1 => fields.get(AS_JSON)?.as_str(),
                _ => None,
            }) {
                Some(text) => Self::parse(text).map_err(serde::de::Error::custom),
                None => Ok(Self::from_tree(&tree)),
            }
        } else {
            let text = String::deserialize(deserializer)?;
            Self::parse(&text).map_err(serde::de::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize)]
    struct Late {
        z: i64,
        a: i64,
    }

    #[derive(serde::Serialize)]
    struct Early {
        a: i64,
        z: i64,
    }

    #[test]
    fn canonical_text_ignores_field_order() {
        let late = Datum::of(&Late { z: 1, a: 2 }).unwrap();
        let early = Datum::of(&Early { a: 2, z: 1 }).unwrap();
        assert_eq!(late, early);
        assert_eq!(Datum::parse(r#"{ "z": 1, "a": 2 }"#).unwrap(), late);
    }

    #[test]
    fn string_keys_hash_as_java_strings() {
        let key = Datum::from("account-1");
        assert_eq!(key.hash_code(), java_string_hash("account-1"));
        assert_eq!(
            key.key_group(128),
            super::super::keygroup::key_group_for("account-1", 128)
        );
        // Another shape hashes its canonical bytes: stable, and not the string's hash.
        assert_ne!(Datum::from(7).hash_code(), java_string_hash("7"));
        assert_eq!(Datum::from(7).hash_code(), 31 + i32::from(b'7'));
    }

    #[test]
    fn values_toml_cannot_hold_round_trip_through_it() {
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        struct Row {
            value: Datum,
            big: Datum,
        }
        #[derive(serde::Serialize)]
        struct Maybe {
            note: Option<String>,
        }
        let row = Row {
            value: Datum::of(&Maybe { note: None }).unwrap(),
            big: Datum::of(&u64::MAX).unwrap(),
        };
        let text = toml::to_string(&row).unwrap();
        assert!(text.contains("$json"), "{text}");
        assert_eq!(toml::from_str::<Row>(&text).unwrap(), row);
        // Past 64 bits inside a struct: an error, not a silently rounded float.
        #[derive(serde::Serialize)]
        struct Wide {
            n: u128,
        }
        assert!(Datum::of(&Wide { n: u128::MAX }).is_err());
    }

    #[test]
    fn toml_values_become_the_same_datum_as_rust_values() {
        #[derive(serde::Deserialize)]
        struct Row {
            value: Datum,
        }
        let row: Row = toml::from_str("value = { z = 1, a = 2 }").unwrap();
        assert_eq!(row.value, Datum::of(&Early { a: 2, z: 1 }).unwrap());
        #[derive(serde::Serialize)]
        struct Out {
            value: Datum,
        }
        let text = toml::to_string(&Out {
            value: Datum::from(5),
        })
        .unwrap();
        assert_eq!(text.trim(), "value = 5");
    }

    /// A user type of every shape the canonical form must hold: nested structs, enums, options,
    /// ordered maps, lists, text needing escapes, integers of every width up to 64 bits.
    #[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
    struct Shape {
        zeta: i64,
        alpha: Option<String>,
        tags: std::collections::BTreeMap<String, Vec<u64>>,
        kind: Kind,
        small: (u8, i16),
    }

    #[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
    enum Kind {
        Unit,
        Pair(i32, bool),
        Named { note: String },
    }

    fn shapes() -> impl proptest::strategy::Strategy<Value = Shape> {
        use proptest::prelude::*;
        let text = "[a-z\\\\\"{}é ]{0,6}";
        let kind = prop_oneof![
            Just(Kind::Unit),
            (any::<i32>(), any::<bool>()).prop_map(|(a, b)| Kind::Pair(a, b)),
            text.prop_map(|note| Kind::Named { note }),
        ];
        (
            any::<i64>(),
            proptest::option::of(text),
            proptest::collection::btree_map(
                text,
                proptest::collection::vec(any::<u64>(), 0..3),
                0..3,
            ),
            kind,
            any::<(u8, i16)>(),
        )
            .prop_map(|(zeta, alpha, tags, kind, small)| Shape {
                zeta,
                alpha,
                tags,
                kind,
                small,
            })
    }

    proptest::proptest! {
        /// Canonical text is a fixed point: parsing it, or reading it back and writing it
        /// again, gives the same text and the same value; and it survives a scenario file.
        #[test]
        fn canonical_text_round_trips(shape in shapes()) {
            let datum = Datum::of(&shape).unwrap();
            proptest::prop_assert_eq!(&Datum::parse(datum.as_str()).unwrap(), &datum);
            let back: Shape = datum.get().unwrap();
            proptest::prop_assert_eq!(&back, &shape);
            proptest::prop_assert_eq!(&Datum::of(&back).unwrap(), &datum);
            #[derive(serde::Serialize, serde::Deserialize)]
            struct Row {
                value: Datum,
            }
            let text = toml::to_string(&Row { value: datum.clone() }).unwrap();
            let row: Row = toml::from_str(&text).unwrap();
            proptest::prop_assert_eq!(row.value, datum);
        }
    }
}
