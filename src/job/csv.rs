//! CSV input for the replayable source: the tutorials' `transaction_id, account, amount` rows
//! as [`Transaction`](super::Transaction)s ([`parse_transactions`]), or rows of a user's own
//! type ([`parse_rows`]). Transaction rows with a missing value are skipped and counted (the
//! tutorial's `dropna`); anything else malformed is an error naming the line and column.
//!
//! ```
//! use faultline::job::csv::parse_transactions;
//!
//! let input = parse_transactions(
//!     "transaction_id,account,amount\ntx1,acc-1,12.50\ntx2,acc-2,\ntx3,acc-1,0.75\n",
//! )?;
//! // Amounts are cents; the row without an amount is skipped and counted.
//! assert_eq!(input.records.len(), 2);
//! assert_eq!(input.records[0].value.get::<faultline::job::Transaction>()?.amount_cents, 1250);
//! assert_eq!(input.skipped_lines, vec![3]);
//!
//! let error = parse_transactions("transaction_id,account,amount\ntx1,acc-1,twelve\n").unwrap_err();
//! assert_eq!(error.line, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::record::InputRecord;

/// Parsed CSV input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvInput {
    /// Records in file order; `value` is the amount in cents, `key` the account.
    pub records: Vec<InputRecord>,
    /// Rows skipped for a missing value, by line number.
    pub skipped_lines: Vec<u64>,
}

/// A CSV file that cannot be read as transactions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}{}: {reason}", column.as_ref().map(|c| format!(", column {c}")).unwrap_or_default())]
pub struct CsvError {
    /// 1-based line number.
    pub line: u64,
    /// The column name, where one is at fault.
    pub column: Option<String>,
    /// What is wrong.
    pub reason: String,
}

const COLUMNS: [&str; 3] = ["transaction_id", "account", "amount"];

/// An amount that [`parse_cents`] rejects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AmountError {
    /// Not digits with at most two decimals.
    #[error("{text:?} is not an amount like 2500.0 (at most two decimals)")]
    NotAnAmount {
        /// The text given.
        text: String,
    },
    /// More cents than an `i64` holds.
    #[error("{text:?} is too large")]
    TooLarge {
        /// The text given.
        text: String,
    },
}

/// Parses an amount like `2500.0`, `12.34` or `-7` into cents, exactly (no floating point).
pub fn parse_cents(text: &str) -> Result<i64, AmountError> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let is_digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if whole.is_empty() || !is_digits(whole) || !is_digits(fraction) || fraction.len() > 2 {
        return Err(AmountError::NotAnAmount {
            text: text.to_string(),
        });
    }
    let too_large = || AmountError::TooLarge {
        text: text.to_string(),
    };
    let whole: i64 = whole.parse().map_err(|_| too_large())?;
    let fraction: i64 = format!("{fraction:0<2}").parse().expect("two ASCII digits");
    let cents = whole
        .checked_mul(100)
        .and_then(|c| c.checked_add(fraction))
        .ok_or_else(too_large)?;
    Ok(if negative { -cents } else { cents })
}

/// Parses transactions CSV text.
pub fn parse_transactions(text: &str) -> Result<CsvInput, CsvError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| CsvError {
            line: 1,
            column: None,
            reason: e.to_string(),
        })?
        .clone();
    let header: Vec<&str> = headers.iter().collect();
    if header != COLUMNS {
        return Err(CsvError {
            line: 1,
            column: None,
            reason: format!("header is {header:?}, expected {COLUMNS:?}"),
        });
    }
    let mut records = Vec::new();
    let mut skipped_lines = Vec::new();
    for row in reader.records() {
        let row = row.map_err(|e| CsvError {
            line: e.position().map_or(0, |p| p.line()),
            column: None,
            reason: e.to_string(),
        })?;
        let line = row.position().map_or(0, |p| p.line());
        if row.len() != COLUMNS.len() {
            return Err(CsvError {
                line,
                column: None,
                reason: format!("{} fields, expected {}", row.len(), COLUMNS.len()),
            });
        }
        if row.iter().any(str::is_empty) {
            skipped_lines.push(line);
            continue;
        }
        let value = parse_cents(&row[2]).map_err(|error| CsvError {
            line,
            column: Some("amount".into()),
            reason: error.to_string(),
        })?;
        records.push(InputRecord::transaction(&row[0], &row[1], value));
    }
    Ok(CsvInput {
        records,
        skipped_lines,
    })
}

/// Rows of a user's type `T` (a header naming its fields, as the `csv` crate's serde support
/// reads them), keyed by `key_by`, with ids `r0`, `r1`, ... in file order.
///
/// ```
/// use faultline::job::csv::parse_rows;
///
/// #[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
/// struct Reading { sensor: String, celsius: i64 }
///
/// let rows = parse_rows("sensor,celsius\ns1,20\ns2,21\n", |r: &Reading| r.sensor.clone())?;
/// assert_eq!(rows[1].value.get::<Reading>()?, Reading { sensor: "s2".into(), celsius: 21 });
/// let error = parse_rows("sensor,celsius\ns1,warm\n", |r: &Reading| r.sensor.clone()).unwrap_err();
/// assert_eq!(error.line, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn parse_rows<T: DeserializeOwned + Serialize, K: Serialize>(
    text: &str,
    key_by: impl Fn(&T) -> K,
) -> Result<Vec<InputRecord>, CsvError> {
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let mut records = Vec::new();
    for (index, row) in reader.deserialize::<T>().enumerate() {
        let row = row.map_err(|e| CsvError {
            line: e.position().map_or(0, |p| p.line()),
            column: None,
            reason: e.to_string(),
        })?;
        let record =
            InputRecord::of(&format!("r{index}"), &key_by(&row), &row).map_err(|e| CsvError {
                line: index as u64 + 2,
                column: None,
                reason: e.to_string(),
            })?;
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_exact_cents() {
        assert_eq!(parse_cents("2500.0"), Ok(250_000));
        assert_eq!(parse_cents("12.34"), Ok(1234));
        assert_eq!(parse_cents("-7"), Ok(-700));
        for bad in ["", "1.234", "abc", "1e5", ".5", "--1", "1.2.3"] {
            assert!(parse_cents(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn missing_values_are_skipped_and_bad_ones_named() {
        let parsed =
            parse_transactions("transaction_id,account,amount\ntx1,a,1.5\ntx2,,3\ntx3,b,\n")
                .unwrap();
        assert_eq!(parsed.records.len(), 1);
        assert_eq!(parsed.skipped_lines, vec![3, 4]);
        let error = parse_transactions("transaction_id,account,amount\ntx1,a,1.5\ntx2,b,lots\n")
            .unwrap_err();
        assert_eq!((error.line, error.column.as_deref()), (3, Some("amount")));
        let error = parse_transactions("transaction_id,account,amount\ntx1,a\n").unwrap_err();
        assert_eq!(error.line, 2);
        let error = parse_transactions("id,account,amount\n").unwrap_err();
        assert_eq!(error.line, 1);
    }
}
