//! Keyed state: the typed API operators use (`ValueState`, `ListState`, `MapState`), the
//! byte-level [`StateBackend`] trait every backend implements, and the built-in memory backend.
//!
//! A backend stores cells addressed by (key group, state, key, user key) and keeps them in that
//! canonical order, so snapshots and comparisons with the model do not depend on hashing. It
//! decides how to snapshot and restore, never when: the checkpoint coordinator decides that.
//!
//! ```
//! use std::path::PathBuf;
//! use faultline::state::{
//!     BackendContext, KeyGroupRange, MemoryBackendFactory, StateBackendFactory, StateDescriptor,
//!     StateKind, ValueType,
//! };
//!
//! let context = BackendContext {
//!     task_name: "sum-0".into(),
//!     instance: "a0".into(),
//!     key_groups: KeyGroupRange { start: 0, end: 63 },
//!     working_dir: PathBuf::from("unused-by-memory"),
//!     created_ms: 0,
//! };
//! let mut backend = MemoryBackendFactory.create(context)?;
//! let descriptor = StateDescriptor {
//!     name: "total".into(),
//!     kind: StateKind::Value,
//!     value_type: ValueType::I64,
//! };
//! let id = backend.register_state(&descriptor)?;
//! // Declaring the same state again returns the same id.
//! assert_eq!(backend.register_state(&descriptor)?, id);
//! assert_eq!(backend.key_groups().end, 63);
//! assert!(backend.entries()?.is_empty());
//! # Ok::<(), faultline::state::StateError>(())
//! ```

mod keyed;
mod kind;
mod memory;
#[cfg(feature = "rocksdb")]
mod rocksdb;
pub mod snapshot;
pub mod timers;
pub mod ttl;
mod view;

#[cfg(feature = "rocksdb")]
pub use self::rocksdb::{CompactionPolicy, RocksDbBackend, RocksDbFactory, RocksDbMode};
pub use keyed::{
    AggregatingState, KeyedContext, ListState, MapState, ModelState, ReducingState, ValueState,
};
pub use kind::{BackendKind, BackendUnavailable, UnknownBackend};
pub use memory::{MemoryBackend, MemoryBackendFactory};
pub use view::{StateAddr, StateView};

use std::fmt;
use std::path::PathBuf;

use crate::checkpoint::{CheckpointStorage, KeyedStateHandle, RelPath, StorageError};

/// A contiguous, inclusive range of key groups, as Flink's `KeyGroupRange`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyGroupRange {
    /// First key group.
    pub start: u16,
    /// Last key group (inclusive).
    pub end: u16,
}

impl KeyGroupRange {
    /// Whether `key_group` lies in the range.
    pub fn contains(&self, key_group: u16) -> bool {
        self.start <= key_group && key_group <= self.end
    }

    /// Whether the two ranges share a key group.
    pub fn intersects(&self, other: &KeyGroupRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

impl fmt::Display for KeyGroupRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..={}", self.start, self.end)
    }
}

/// The shape of a declared state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StateKind {
    /// One value per key.
    Value,
    /// A list per key.
    List,
    /// A map per key, one cell per user key.
    Map,
}

impl StateKind {
    /// The byte that encodes the kind in snapshot formats.
    pub fn tag(self) -> u8 {
        match self {
            StateKind::Value => 0,
            StateKind::List => 1,
            StateKind::Map => 2,
        }
    }

    /// The kind a tag encodes, if any.
    pub fn from_tag(tag: u8) -> Option<Self> {
        [StateKind::Value, StateKind::List, StateKind::Map]
            .into_iter()
            .find(|k| k.tag() == tag)
    }
}

/// The type of a state's values (and list elements), so state can be shown and compared
/// without the operator that wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ValueType {
    /// A little-endian `i64`.
    I64,
    /// UTF-8 text.
    Text,
    /// Opaque bytes (a user's own encoding).
    Bytes,
    /// Canonical [`crate::job::Datum`] text: what the typed state API writes for every type.
    Json,
    /// Canonical text behind a time-to-live header ([`ttl::TtlCell`]): what the TTL states
    /// write.
    TtlJson,
}

impl ValueType {
    /// The byte that encodes the type in snapshot formats.
    pub fn tag(self) -> u8 {
        match self {
            ValueType::I64 => 0,
            ValueType::Text => 1,
            ValueType::Bytes => 2,
            ValueType::Json => 3,
            ValueType::TtlJson => 4,
        }
    }

    /// The type a tag encodes, if any.
    pub fn from_tag(tag: u8) -> Option<Self> {
        [
            ValueType::I64,
            ValueType::Text,
            ValueType::Bytes,
            ValueType::Json,
            ValueType::TtlJson,
        ]
        .into_iter()
        .find(|t| t.tag() == tag)
    }
}

/// A declared state: its name (unique per operator), kind and value type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StateDescriptor {
    /// Unique within the operator.
    pub name: String,
    /// Value, list or map.
    pub kind: StateKind,
    /// How values are encoded.
    pub value_type: ValueType,
}

/// The (user key, value) cells of one key of a map state.
pub type UserEntries = Vec<(Vec<u8>, Vec<u8>)>;

/// Index of a declared state within its backend.
pub type StateId = u16;

/// One stored cell, with its full address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StateEntry {
    /// The key group of `key`.
    pub key_group: u16,
    /// The state it belongs to.
    pub state: StateId,
    /// The record key, as bytes.
    pub key: Vec<u8>,
    /// The map key for map state; empty otherwise.
    pub user_key: Vec<u8>,
    /// The encoded value.
    pub value: Vec<u8>,
}

impl StateEntry {
    /// The canonical ordering key: (key group, state, key, user key).
    pub fn sort_key(&self) -> (u16, StateId, &[u8], &[u8]) {
        (self.key_group, self.state, &self.key, &self.user_key)
    }
}

/// The address of a cell, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellRef<'a> {
    /// The state.
    pub state: StateId,
    /// The key group of `key`.
    pub key_group: u16,
    /// The record key.
    pub key: &'a [u8],
    /// The map key, or empty.
    pub user_key: &'a [u8],
}

/// What a backend knows about the subtask it serves.
#[derive(Debug, Clone)]
pub struct BackendContext {
    /// Operator name and subtask, for messages and file names (`sum-0`).
    pub task_name: String,
    /// Unique among the backends that ever write to one checkpoint root (`a3`: the attempt), so
    /// files a backend shares never collide with another backend's files of the same name.
    pub instance: String,
    /// The key groups this subtask owns; anything else is refused.
    pub key_groups: KeyGroupRange,
    /// A private working directory the backend may use (RocksDB puts its files here).
    pub working_dir: PathBuf,
    /// The processing time the backend is created at: its attempt's start, which is also when
    /// it restores, if it does.
    pub created_ms: u64,
}

/// The format of a savepoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SavepointFormat {
    /// Backend-independent: restores into any backend, at any parallelism.
    Canonical,
    /// The backend's own files, copied whole (nothing shared): fast, same backend only.
    Native,
}

/// Why a snapshot is taken, which decides its format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotPurpose {
    /// A checkpoint: the backend's configured format (full canonical, or incremental native).
    Checkpoint,
    /// A savepoint in the given format: self-contained, never sharing files with checkpoints.
    Savepoint(SavepointFormat),
}

/// Where and under which id a snapshot is being written.
#[derive(Debug, Clone)]
pub struct SnapshotTarget {
    /// The checkpoint (or savepoint barrier) id.
    pub checkpoint_id: u64,
    /// The directory for files private to this snapshot (`chk-3`, `savepoints/before-upgrade`).
    pub dir: RelPath,
    /// Checkpoint or savepoint.
    pub purpose: SnapshotPurpose,
    /// How canonical snapshots compress their blocks (native ones rely on the backend's own).
    pub compression: crate::checkpoint::canonical::Compression,
    /// The processing time of the snapshot: TTL cells expired by then may be left out.
    pub now_ms: u64,
}

/// A handle to restore, with the key groups its writer owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreHandle {
    /// The key groups the writing subtask owned.
    pub key_groups: KeyGroupRange,
    /// Its keyed state.
    pub handle: KeyedStateHandle,
}

impl RestoreHandle {
    /// The handles among `snapshots` (each: the key groups its writer owned, and its keyed
    /// state if it had any) whose key groups overlap `key_groups`: everything a subtask owning
    /// those key groups restores, whatever the parallelism was.
    pub fn overlapping<'h>(
        snapshots: impl IntoIterator<Item = (KeyGroupRange, Option<&'h KeyedStateHandle>)>,
        key_groups: KeyGroupRange,
    ) -> Vec<RestoreHandle> {
        snapshots
            .into_iter()
            .filter(|(range, _)| range.intersects(&key_groups))
            .filter_map(|(range, handle)| {
                handle.map(|handle| RestoreHandle {
                    key_groups: range,
                    handle: handle.clone(),
                })
            })
            .collect()
    }
}

/// Whether a restored snapshot's files become the job's (Flink's restore modes, 1.15+).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestoreMode {
    /// The job takes the snapshot over: later checkpoints may reuse its files, and it is
    /// subsumed and collected like any checkpoint of the job's own (a failover's restore).
    Claim,
    /// The snapshot stays the user's (a savepoint, or another job's checkpoint): later
    /// checkpoints never reference its files, so the first one is self-contained, and the job
    /// never deletes it. Flink's default.
    #[default]
    NoClaim,
}

/// What a snapshot wrote, for traces and benchmarks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotResult {
    /// The handle recorded in `_metadata`.
    pub handle: KeyedStateHandle,
    /// Files written by this snapshot.
    pub files_written: u32,
    /// Files referenced from an earlier, confirmed checkpoint instead of being written again.
    pub files_reused: u32,
    /// Bytes written by this snapshot.
    pub bytes_written: u64,
}

/// Counts from a restore, for the trace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreStats {
    /// Cells loaded.
    pub entries: u64,
    /// Files read.
    pub files: u64,
}

/// A backend failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Reading or writing checkpoint storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A write addressed a key group the subtask does not own: a partitioning bug.
    #[error("{task}: key group {key_group} is outside the owned range {range}")]
    KeyGroupNotOwned {
        /// The subtask.
        task: String,
        /// The key group written.
        key_group: u16,
        /// The range it owns.
        range: KeyGroupRange,
    },
    /// A state was declared twice with different shapes, or used with the wrong shape.
    #[error("state {name:?}: {reason}")]
    Declaration {
        /// The state.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A stored value does not decode as its declared type.
    #[error("state value does not decode: {0}")]
    Codec(String),
    /// A value of the user's type does not encode, or a stored one is not of the type asked.
    #[error(transparent)]
    Data(#[from] crate::job::DataError),
    /// A checkpoint file does not hold what it should. A backend that checks the files it
    /// restores itself reports damage so, naming the file: that is how a restore that refuses
    /// corrupted state is told from any other failure.
    #[error("{file}: {reason}")]
    DamagedFile {
        /// The file, relative to the checkpoint storage it was read from.
        file: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The backend's own store failed.
    #[error("{backend} backend: {reason}")]
    Backend {
        /// Which backend.
        backend: &'static str,
        /// What failed.
        reason: String,
    },
}

impl StateError {
    /// The checkpoint file the error is about, relative to the storage it was read from, when
    /// one is to blame.
    pub fn file(&self) -> Option<&str> {
        match self {
            StateError::Storage(error) => Some(error.path()),
            StateError::DamagedFile { file, .. } => Some(file),
            _ => None,
        }
    }
}

/// A keyed state backend for one operator subtask. The memory backend and the RocksDB backend
/// implement it; so can a user's own backend, which is then tested the same way.
pub trait StateBackend {
    /// Short name recorded in `_metadata` (`memory`, `rocksdb`).
    fn name(&self) -> &'static str;
    /// The key groups this subtask owns.
    fn key_groups(&self) -> KeyGroupRange;
    /// Declares a state, or returns the id of an identical earlier declaration.
    fn register_state(&mut self, descriptor: &StateDescriptor) -> Result<StateId, StateError>;
    /// Every declared state, indexed by [`StateId`].
    fn states(&self) -> &[StateDescriptor];
    /// Reads a cell.
    fn get(&self, cell: CellRef<'_>) -> Result<Option<Vec<u8>>, StateError>;
    /// Writes a cell.
    fn put(&mut self, cell: CellRef<'_>, value: &[u8]) -> Result<(), StateError>;
    /// Deletes a cell (a missing cell is not an error).
    fn delete(&mut self, cell: CellRef<'_>) -> Result<(), StateError>;
    /// The (user key, value) cells of one key of a map state, in user-key order.
    fn user_entries(
        &self,
        state: StateId,
        key_group: u16,
        key: &[u8],
    ) -> Result<UserEntries, StateError>;
    /// Every cell, in canonical order.
    fn entries(&self) -> Result<Vec<StateEntry>, StateError>;
    /// Writes a snapshot of every cell into `storage` (private files under `target.dir`) and
    /// returns its handle.
    fn snapshot(
        &mut self,
        target: &SnapshotTarget,
        storage: &mut dyn CheckpointStorage,
    ) -> Result<SnapshotResult, StateError>;
    /// Loads the cells of owned key groups from the handles of a snapshot (several handles when
    /// the parallelism changed), replacing anything held before.
    fn restore(
        &mut self,
        handles: &[RestoreHandle],
        storage: &dyn CheckpointStorage,
        mode: RestoreMode,
    ) -> Result<RestoreStats, StateError>;

    /// Checkpoint `checkpoint_id` completed (this covers every earlier one). An incremental
    /// backend may now reuse the files it uploaded for it. Notifications may be late or lost.
    fn notify_checkpoint_complete(&mut self, _checkpoint_id: u64) {}

    /// Checkpoint `checkpoint_id` was aborted: nothing it uploaded may be reused.
    fn notify_checkpoint_aborted(&mut self, _checkpoint_id: u64) {}
}

/// Makes one backend per keyed subtask; the engine holds a factory, not a backend, because a
/// restart builds every subtask anew.
pub trait StateBackendFactory {
    /// The backend's name, for traces and reports.
    fn name(&self) -> &'static str;
    /// A fresh, empty backend for one subtask.
    fn create(&self, context: BackendContext) -> Result<Box<dyn StateBackend>, StateError>;
}
