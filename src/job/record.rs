//! The record that flows through a job, the tutorial's [`Transaction`] the built-in operators
//! work on, and the input a source replays.
//!
//! A record's key and value are [`Datum`]s: a user's own types in canonical form, read back
//! with [`Record::value_as`]. Input is keyed like a Kafka topic's: every record has a key and a
//! value, and the source partitions by key.
//!
//! ```
//! use faultline::job::{partition_for_key, Datum, Input, InputRecord, Transaction};
//!
//! let records: Vec<InputRecord> = (0..6)
//!     .map(|i| InputRecord::transaction(&format!("r{i}"), &format!("k{}", i % 3), i))
//!     .collect();
//! let input = Input::partitioned(&records, 2);
//! assert_eq!(input.len(), 6);
//! // Every record of a key lives in one partition, in input order.
//! let k1 = Datum::from("k1");
//! let partition = partition_for_key(&k1, 2) as usize;
//! let of_k1: Vec<_> = input.partitions()[partition].iter().filter(|r| r.key == k1).collect();
//! let ids: Vec<&str> = of_k1.iter().map(|r| r.id.as_str()).collect();
//! assert_eq!(ids, ["r1", "r4"]);
//! let first: Transaction = of_k1[0].value_as()?;
//! assert_eq!(first.amount_cents, 1);
//! assert_eq!(input.end_positions().total(), 6);
//! # Ok::<(), faultline::job::DataError>(())
//! ```

use std::fmt;

use serde::Serialize;

use super::datum::{Data, DataError, Datum};

/// Where a record came from: the source partition and its offset there. Every record a job
/// emits carries its origin, which is how the oracle tells a replay from a duplicate.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Origin {
    /// The source partition.
    pub partition: u32,
    /// The offset of the input record within its partition.
    pub offset: u64,
}

/// The tutorial's transaction: an account and an amount in cents (so sums are exact). The
/// built-in operators read and write it; a user's operators use their own types.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Transaction {
    /// The account, which the built-in jobs key by.
    pub account: String,
    /// The amount in cents.
    pub amount_cents: i64,
}

/// A keyed record: an id (from the input, suffixed by operators that emit several records per
/// input), a key and a value of the user's types in canonical form, and, for a side output, the
/// tag it was emitted under.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Record {
    /// Identifies the record and its lineage (`tx1005`, `tx1005.1`).
    pub id: String,
    /// The partitioning key.
    pub key: Datum,
    /// The payload.
    pub value: Datum,
    /// The side output it belongs to; `None` for the main output. Later stages forward a
    /// side output unchanged and the sink commits it with the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side: Option<String>,
    /// Its event time, in milliseconds since the epoch, if the input gave one; what it emits
    /// keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_ms: Option<i64>,
    /// The input record it derives from.
    pub origin: Origin,
}

impl Record {
    /// A record with `id`, `key` and `value` (of the user's types), from offset 0 of partition
    /// 0 (a test's record; the source sets the real origin of what it reads).
    pub fn of<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        id: &str,
        key: &K,
        value: &V,
    ) -> Result<Self, DataError> {
        Ok(Self::at_start(InputRecord::of(id, key, value)?))
    }

    /// A transaction of `amount_cents` on `account`, keyed by the account (a test's record).
    pub fn transaction(id: &str, account: &str, amount_cents: i64) -> Self {
        Self::at_start(InputRecord::transaction(id, account, amount_cents))
    }

    /// `input` as read from offset 0 of partition 0, on the main output.
    fn at_start(input: InputRecord) -> Self {
        Self {
            id: input.id,
            key: input.key,
            value: input.value,
            side: None,
            timestamp_ms: input.timestamp_ms,
            origin: Origin {
                partition: 0,
                offset: 0,
            },
        }
    }

    /// The value as a `T`.
    pub fn value_as<T: Data>(&self) -> Result<T, DataError> {
        self.value.get()
    }

    /// The key as a `K`.
    pub fn key_as<K: Data>(&self) -> Result<K, DataError> {
        self.key.get()
    }

    /// This record with another value, of the same lineage, key and output.
    pub fn with_value<V: Serialize + ?Sized>(self, value: &V) -> Result<Self, DataError> {
        Ok(Self {
            value: Datum::of(value)?,
            ..self
        })
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.id, self.key, self.value)?;
        if let Some(timestamp_ms) = self.timestamp_ms {
            write!(f, " @{timestamp_ms}")?;
        }
        if let Some(side) = &self.side {
            write!(f, " (side {side})")?;
        }
        Ok(())
    }
}

/// One input row, before it is assigned a partition: an id, and a key and value of the user's
/// types. Scenario files write the key and value as TOML values
/// (`{ id = "tx1", key = "acct-1", value = { account = "acct-1", amount_cents = 1250 } }`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputRecord {
    /// The record id.
    pub id: String,
    /// The key.
    pub key: Datum,
    /// The value.
    pub value: Datum,
    /// The event time, in milliseconds since the epoch (`timestamp_ms = 1700000000000`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_ms: Option<i64>,
}

impl InputRecord {
    /// A row of the user's types.
    pub fn of<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        id: &str,
        key: &K,
        value: &V,
    ) -> Result<Self, DataError> {
        Ok(Self {
            id: id.to_string(),
            key: Datum::of(key)?,
            value: Datum::of(value)?,
            timestamp_ms: None,
        })
    }

    /// Rows of `values`, keyed by `key_by`, with ids `{prefix}{index}`.
    pub fn keyed_by<T: Serialize, K: Serialize>(
        values: &[T],
        prefix: &str,
        key_by: impl Fn(&T) -> K,
    ) -> Result<Vec<Self>, DataError> {
        values
            .iter()
            .enumerate()
            .map(|(index, value)| Self::of(&format!("{prefix}{index}"), &key_by(value), value))
            .collect()
    }

    /// A transaction of `amount_cents` on `account`, keyed by the account.
    pub fn transaction(id: &str, account: &str, amount_cents: i64) -> Self {
        Self {
            id: id.to_string(),
            key: Datum::from(account),
            value: transaction_datum(account, amount_cents),
            timestamp_ms: None,
        }
    }
}

/// The canonical form of a transaction, written directly: the built-in operators and input
/// generator make one per record. Keys sort `account` before `amount_cents`.
pub(crate) fn transaction_datum(account: &str, amount_cents: i64) -> Datum {
    let plain = account
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    let text = if plain {
        format!(r#"{{"account":"{account}","amount_cents":{amount_cents}}}"#)
    } else {
        let account = serde_json::Value::String(account.to_string());
        format!(r#"{{"account":{account},"amount_cents":{amount_cents}}}"#)
    };
    Datum::from_canonical(text)
}

/// The whole input of a job, split into partitions by key, as a keyed Kafka topic would be:
/// every record of a key lives in one partition, in input order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    partitions: Vec<Vec<Record>>,
}

impl Input {
    /// Partitions `records` into `partition_count` partitions by the key's hash.
    pub fn partitioned(records: &[InputRecord], partition_count: u32) -> Self {
        assert!(partition_count > 0, "at least one partition");
        let mut partitions: Vec<Vec<Record>> = vec![Vec::new(); partition_count as usize];
        for record in records {
            let partition = partition_for_key(&record.key, partition_count);
            let list = &mut partitions[partition as usize];
            list.push(Record {
                id: record.id.clone(),
                key: record.key.clone(),
                value: record.value.clone(),
                side: None,
                timestamp_ms: record.timestamp_ms,
                origin: Origin {
                    partition,
                    offset: list.len() as u64,
                },
            });
        }
        Self { partitions }
    }

    /// The partitions, each in offset order.
    pub fn partitions(&self) -> &[Vec<Record>] {
        &self.partitions
    }

    /// Number of records in all partitions.
    pub fn len(&self) -> usize {
        self.partitions.iter().map(Vec::len).sum()
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The position at the end of every partition.
    pub fn end_positions(&self) -> Positions {
        Positions(self.partitions.iter().map(|p| p.len() as u64).collect())
    }
}

/// The partition a key lives in: Flink's key hash, modulo the partition count.
pub fn partition_for_key(key: &Datum, partition_count: u32) -> u32 {
    let hash = super::keygroup::murmur_hash(key.hash_code());
    hash as u32 % partition_count
}

/// Source positions: for each partition, the offset of the next record to read. A checkpoint
/// records them at its barrier; the model evaluates the input up to them.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Positions(pub Vec<u64>);

impl Positions {
    /// All partitions at offset zero.
    pub fn start(partition_count: usize) -> Self {
        Self(vec![0; partition_count])
    }

    /// Records read in all.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

impl fmt::Display for Positions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (partition, offset) in self.0.iter().enumerate() {
            if partition > 0 {
                f.write_str(" ")?;
            }
            write!(f, "p{partition}@{offset}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_written_directly_is_its_canonical_form() {
        for (account, cents) in [("acct-1", 5), ("a \"quoted\" one", -7), ("", i64::MIN)] {
            let tx = Transaction {
                account: account.to_string(),
                amount_cents: cents,
            };
            assert_eq!(transaction_datum(account, cents), Datum::of(&tx).unwrap());
        }
    }
}
