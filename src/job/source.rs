//! A user's source reader, plugged in through [`crate::campaign::Seams::source`] in place of the
//! runtime's built-in reader: what it reads next, and which positions it stores at a barrier and
//! resumes from after a restart.
//!
//! The job's input stays the harness's partitioned log; a source decides where it reads, never
//! what a record holds. The runtime checks every position it names against the log and keeps
//! its own account of what was emitted. A finished job is judged against the whole input, so a
//! reader that loses, repeats or never reaches records is caught by the oracle; the trace shows
//! what a reader left unread and where its stored positions differ from what it read.
//!
//! ```
//! use std::collections::BTreeMap;
//! use faultline::job::source::{PartitionReader, Source, SourceInput};
//!
//! let mut reader = PartitionReader::default();
//! reader.open(&BTreeMap::from([(0, 0), (2, 1)]));
//! let lengths = BTreeMap::from([(0, 1), (2, 2)]);
//! let input = SourceInput::new(&lengths);
//! assert_eq!(reader.poll(&input), Some((0, 0)));
//! // The barrier comes after the record at p0@0: both partitions are stored past what went out.
//! assert_eq!(reader.snapshot(1), BTreeMap::from([(0, 1), (2, 1)]));
//! assert_eq!(reader.poll(&input), Some((2, 1)));
//! assert_eq!(reader.poll(&input), None);
//! ```

use std::collections::BTreeMap;

/// The input as one source subtask sees it: the partitions it reads now and the length of each.
#[derive(Debug, Clone, Copy)]
pub struct SourceInput<'a> {
    lengths: &'a BTreeMap<u32, u64>,
}

impl<'a> SourceInput<'a> {
    /// The view of partitions with these lengths (records per partition).
    pub fn new(lengths: &'a BTreeMap<u32, u64>) -> Self {
        Self { lengths }
    }

    /// The partitions this subtask reads, in ascending order.
    pub fn partitions(&self) -> impl Iterator<Item = u32> + '_ {
        self.lengths.keys().copied()
    }

    /// Records in `partition` (0 for a partition this subtask does not read).
    pub fn len(&self, partition: u32) -> u64 {
        self.lengths.get(&partition).copied().unwrap_or(0)
    }

    /// Whether this subtask reads no records at all.
    pub fn is_empty(&self) -> bool {
        self.lengths.values().all(|len| *len == 0)
    }
}

/// A source subtask's reader.
///
/// A reader is built fresh for every attempt. The runtime calls [`Source::open`] once, before
/// its first poll, barrier or notification (never, if the attempt fails first), then
/// [`Source::poll`] whenever the subtask is scheduled and [`Source::snapshot`] when a
/// checkpoint's barrier is injected, which is always between two polls. A panic in any of them
/// fails the subtask, as an operator's does. A correct source stores, at the barrier, exactly the position
/// after every record it has emitted: the records before the barrier are in the checkpoint's
/// state, the ones after it are read again after a restore.
pub trait Source {
    /// Starts (or resumes) reading: `positions` maps every partition this subtask reads now to
    /// the offset of its first unread record, as the restored checkpoint stored it (0 on a
    /// fresh start). After rescaling, partitions move between subtasks with their positions.
    fn open(&mut self, positions: &BTreeMap<u32, u64>);

    /// The record to emit next, as (partition, offset); `None` once nothing is left to read, after
    /// which the subtask is finished for this attempt. The runtime emits the input's record at
    /// that position and fails the subtask if there is none.
    fn poll(&mut self, input: &SourceInput<'_>) -> Option<(u32, u64)>;

    /// Checkpoint `checkpoint_id`'s barrier is injected now: the positions to store, one for every
    /// partition this subtask reads. The runtime fails the subtask if one is missing, foreign or
    /// past its partition's end.
    fn snapshot(&mut self, checkpoint_id: u64) -> BTreeMap<u32, u64>;

    /// Checkpoint `checkpoint_id` completed (covering every earlier one): where a reader would
    /// commit its offsets back to the external system, as Kafka readers do. Notifications may
    /// come late, twice or never. Default: nothing.
    fn notify_checkpoint_complete(&mut self, _checkpoint_id: u64) {}
}

/// Builds the reader of each source subtask, by subtask index, fresh for every attempt.
pub type SourceFactory = dyn Fn(u16) -> Box<dyn Source> + Send + Sync;

/// A correct reader, and the shape to start from: round robin over its partitions, one record
/// per poll, each position advanced in the same step as the record goes out.
#[derive(Debug, Clone, Default)]
pub struct PartitionReader {
    positions: BTreeMap<u32, u64>,
    /// The partition after the one read last, for round robin.
    next: u32,
}

impl Source for PartitionReader {
    fn open(&mut self, positions: &BTreeMap<u32, u64>) {
        self.positions = positions.clone();
        self.next = 0;
    }

    fn poll(&mut self, input: &SourceInput<'_>) -> Option<(u32, u64)> {
        let unread = |(partition, offset): (&u32, &u64)| {
            (*offset < input.len(*partition)).then_some((*partition, *offset))
        };
        let (partition, offset) = self
            .positions
            .range(self.next..)
            .find_map(unread)
            .or_else(|| self.positions.range(..self.next).find_map(unread))?;
        self.positions.insert(partition, offset + 1);
        self.next = partition + 1;
        Some((partition, offset))
    }

    fn snapshot(&mut self, _: u64) -> BTreeMap<u32, u64> {
        self.positions.clone()
    }
}
