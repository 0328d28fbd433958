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

/// A timestamp that [`parse_timestamp_ms`] rejects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is neither milliseconds since the epoch nor an ISO-8601 instant like 2024-05-01T12:00:00Z: {reason}")]
pub struct TimestampError {
    /// The text given.
    pub text: String,
    /// What the ISO-8601 parser said.
    pub reason: String,
}

/// Parses an event time: milliseconds since the epoch (`1714564800000`), or an ISO-8601 /
/// RFC 3339 instant with its offset (`2024-05-01T12:00:00Z`, `2024-05-01T14:00:00.250+02:00`).
pub fn parse_timestamp_ms(text: &str) -> Result<i64, TimestampError> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map_err(|e: std::num::ParseIntError| TimestampError {
                text: text.to_string(),
                reason: e.to_string(),
            });
    }
    text.parse::<jiff::Timestamp>()
        .map(|instant| instant.as_millisecond())
        .map_err(|e| TimestampError {
            text: text.to_string(),
            reason: e.to_string(),
        })
}

/// Reads the header: the three tutorial columns, optionally followed by `timestamp`. Returns
/// whether the timestamp column is there.
fn read_header(reader: &mut csv::Reader<&[u8]>) -> Result<bool, CsvError> {
    let headers = reader
        .headers()
        .map_err(|e| CsvError {
            line: 1,
            column: None,
            reason: e.to_string(),
        })?
        .clone();
    let header: Vec<&str> = headers.iter().collect();
    match header.as_slice() {
        [columns @ .., "timestamp"] if columns == COLUMNS => Ok(true),
        columns if columns == COLUMNS => Ok(false),
        _ => Err(CsvError {
            line: 1,
            column: None,
            reason: format!(
                "header is {header:?}, expected {COLUMNS:?}, optionally then \"timestamp\""
            ),
        }),
    }
}

/// One complete row as a record.
fn transaction_row(row: &csv::StringRecord, line: u64) -> Result<InputRecord, CsvError> {
    let value = parse_cents(&row[2]).map_err(|error| CsvError {
        line,
        column: Some("amount".into()),
        reason: error.to_string(),
    })?;
    let mut record = InputRecord::transaction(&row[0], &row[1], value);
    if let Some(text) = row.get(3) {
        record.timestamp_ms = Some(parse_timestamp_ms(text).map_err(|error| CsvError {
            line,
            column: Some("timestamp".into()),
            reason: error.to_string(),
        })?);
    }
    Ok(record)
}

/// Parses transactions CSV text.
pub fn parse_transactions(text: &str) -> Result<CsvInput, CsvError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let columns = COLUMNS.len() + usize::from(read_header(&mut reader)?);
    let mut records = Vec::new();
    let mut skipped_lines = Vec::new();
    for row in reader.records() {
        let row = row.map_err(|e| CsvError {
            line: e.position().map_or(0, |p| p.line()),
            column: None,
            reason: e.to_string(),
        })?;
        let line = row.position().map_or(0, |p| p.line());
        if row.len() != columns {
            return Err(CsvError {
                line,
                column: None,
                reason: format!("{} fields, expected {columns}", row.len()),
            });
        }
        if row.iter().any(str::is_empty) {
            skipped_lines.push(line);
            continue;
        }
        records.push(transaction_row(&row, line)?);
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
    fn event_times_are_epoch_milliseconds_or_iso_8601_instants() {
        assert_eq!(parse_timestamp_ms("1714564800000"), Ok(1_714_564_800_000));
        assert_eq!(parse_timestamp_ms("-5"), Ok(-5));
        assert_eq!(
            parse_timestamp_ms("2024-05-01T12:00:00Z"),
            Ok(1_714_564_800_000)
        );
        assert_eq!(
            parse_timestamp_ms("2024-05-01T14:00:00.250+02:00"),
            Ok(1_714_564_800_250)
        );
        for bad in ["yesterday", "2024-05-01", "2024-13-01T00:00:00Z", "12:00"] {
            assert!(parse_timestamp_ms(bad).is_err(), "{bad:?} parsed");
        }
        let parsed = parse_transactions(
            "transaction_id,account,amount,timestamp\ntx1,a,1.5,1000\ntx2,b,2,2024-05-01T12:00:00Z\ntx3,c,3,\n",
        )
        .unwrap();
        let times: Vec<Option<i64>> = parsed.records.iter().map(|r| r.timestamp_ms).collect();
        assert_eq!(times, [Some(1000), Some(1_714_564_800_000)]);
        assert_eq!(parsed.skipped_lines, vec![4]);
        let error = parse_transactions("transaction_id,account,amount,timestamp\ntx1,a,1.5,noon\n")
            .unwrap_err();
        assert_eq!(
            (error.line, error.column.as_deref()),
            (2, Some("timestamp"))
        );
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
