//! The record that flows through a job, and the input a source replays.
//!
//! ```
//! use faultline::job::{partition_for_key, Input, InputRecord};
//!
//! let records: Vec<InputRecord> = (0..6)
//!     .map(|i| InputRecord { id: format!("r{i}"), key: format!("k{}", i % 3), value: i })
//!     .collect();
//! let input = Input::partitioned(&records, 2);
//! assert_eq!(input.len(), 6);
//! // Every record of a key lives in one partition, in input order.
//! let partition = partition_for_key("k1", 2) as usize;
//! let k1: Vec<&str> = input.partitions()[partition]
//!     .iter()
//!     .filter(|r| r.key == "k1")
//!     .map(|r| r.id.as_str())
//!     .collect();
//! assert_eq!(k1, ["r1", "r4"]);
//! assert_eq!(input.end_positions().total(), 6);
//! ```

use std::fmt;

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

/// A keyed record: an id (from the input, suffixed by operators that emit several records per
/// input), a key, and an integer value (amounts are in cents, so sums are exact).
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Record {
    /// Identifies the record and its lineage (`tx1005`, `tx1005.1`).
    pub id: String,
    /// The partitioning key.
    pub key: String,
    /// The payload.
    pub value: i64,
    /// The input record it derives from.
    pub origin: Origin,
}

impl Record {
    /// A record with `id`, `key` and `value`, from offset 0 of partition 0 (a test's record;
    /// the source sets the real origin of what it reads).
    pub fn new(id: &str, key: &str, value: i64) -> Self {
        Self {
            id: id.to_string(),
            key: key.to_string(),
            value,
            origin: Origin {
                partition: 0,
                offset: 0,
            },
        }
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}={}", self.id, self.key, self.value)
    }
}

/// One input row, before it is assigned a partition.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputRecord {
    /// The record id.
    pub id: String,
    /// The key.
    pub key: String,
    /// The value.
    pub value: i64,
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
                value: record.value,
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
pub fn partition_for_key(key: &str, partition_count: u32) -> u32 {
    let hash = super::keygroup::murmur_hash(super::keygroup::java_string_hash(key));
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
