//! JSON Lines input: one JSON value per line, as event logs and Kafka dumps are kept. A user's
//! own type reads them typed ([`parse_lines`]); a scenario file names the field that holds the
//! key ([`parse_values`]). A malformed line is an error naming it; blank lines are skipped.
//!
//! ```
//! use faultline::job::jsonl::{parse_lines, parse_values};
//!
//! #[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
//! struct Click { user: String, page: String }
//!
//! let text = "{\"user\":\"u1\",\"page\":\"/\"}\n\n{\"user\":\"u2\",\"page\":\"/a\"}\n";
//! let typed = parse_lines(text, |c: &Click| c.user.clone())?;
//! assert_eq!(typed[1].value.get::<Click>()?.page, "/a");
//! // Untyped, as a scenario file reads them: the key is the `user` field.
//! let untyped = parse_values(text, "user", None)?;
//! assert_eq!(untyped, typed);
//! assert_eq!(parse_values("{\"user\":1}\nnot json\n", "user", None).unwrap_err().line, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::datum::Datum;
use super::record::InputRecord;

/// A JSON Lines file that cannot be read as input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct JsonLinesError {
    /// 1-based line number.
    pub line: u64,
    /// What is wrong.
    pub reason: String,
}

fn lines(text: &str) -> impl Iterator<Item = (u64, &str)> {
    text.lines()
        .enumerate()
        .map(|(index, line)| (index as u64 + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty())
}

/// Lines of a user's type `T`, keyed by `key_by`, with ids `r0`, `r1`, ... in file order.
pub fn parse_lines<T: DeserializeOwned + Serialize, K: Serialize>(
    text: &str,
    key_by: impl Fn(&T) -> K,
) -> Result<Vec<InputRecord>, JsonLinesError> {
    lines(text)
        .enumerate()
        .map(|(index, (line, json))| {
            let error = |reason: String| JsonLinesError { line, reason };
            let value: T = serde_json::from_str(json).map_err(|e| error(e.to_string()))?;
            InputRecord::of(&format!("r{index}"), &key_by(&value), &value)
                .map_err(|e| error(e.to_string()))
        })
        .collect()
}

/// Lines of JSON objects, keyed by their field `key_field`, with ids from the field `id_field`
/// (text) or else `r0`, `r1`, ... in file order.
pub fn parse_values(
    text: &str,
    key_field: &str,
    id_field: Option<&str>,
) -> Result<Vec<InputRecord>, JsonLinesError> {
    lines(text)
        .enumerate()
        .map(|(index, (line, json))| {
            let error = |reason: String| JsonLinesError { line, reason };
            let value: serde_json::Value =
                serde_json::from_str(json).map_err(|e| error(e.to_string()))?;
            let key = value
                .get(key_field)
                .ok_or_else(|| error(format!("no key field {key_field:?}")))?;
            let id = match id_field {
                None => format!("r{index}"),
                Some(field) => value
                    .get(field)
                    .and_then(serde_json::Value::as_str)
                    .ok_or_else(|| error(format!("no text id field {field:?}")))?
                    .to_string(),
            };
            let datum = |v: &serde_json::Value| Datum::of(v).map_err(|e| error(e.to_string()));
            Ok(InputRecord {
                id,
                key: datum(key)?,
                value: datum(&value)?,
                timestamp_ms: None,
            })
        })
        .collect()
}
