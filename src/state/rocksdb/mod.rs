//! The RocksDB backend: one RocksDB instance per operator subtask in its working directory, a
//! column family per declared state, and keys laid out so that RocksDB's byte order is the
//! canonical order:
//!
//! ```text
//! key_group (u16, big-endian) ‖ escape(key) ‖ 00 00 ‖ user_key
//! ```
//!
//! `escape` doubles every `00` byte as `00 FF`, so the terminator `00 00` sorts before any
//! continuation and (key, user key) pairs compare as the memory backend's `BTreeMap` does.
//! Key groups are a prefix, so a key-group range is a contiguous key range.
//!
//! Checkpoints are full (a consistent RocksDB snapshot written in the canonical format) or
//! incremental (a native RocksDB checkpoint whose SST files are shared between checkpoints; see
//! [`native`]). Determinism: automatic compactions are off, memtables are flushed only when a
//! checkpoint is taken, and compaction runs synchronously at checkpoints when the
//! [`CompactionPolicy`] says so. RocksDB still runs its own background threads for flushes, but
//! the files a checkpoint holds depend only on the operations and the policy.

mod keys;
mod native;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rocksdb::compaction_filter::Decision;
use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteOptions, DB};

use super::snapshot::{restore_canonical, write_canonical};
use super::{
    BackendContext, CellRef, KeyGroupRange, RestoreHandle, RestoreMode, RestoreStats,
    SnapshotPurpose, SnapshotResult, SnapshotTarget, StateBackend, StateBackendFactory,
    StateDescriptor, StateEntry, StateError, StateId, StateKind, UserEntries, ValueType,
};
use crate::checkpoint::{CheckpointStorage, FileRef, KeyedStateHandle};

/// Which kind of checkpoint the backend takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RocksDbMode {
    /// Every checkpoint writes all state in the canonical format.
    Full,
    /// Every checkpoint is a native RocksDB checkpoint that uploads only SST files no confirmed
    /// earlier checkpoint uploaded.
    Incremental,
}

/// When the backend compacts, always synchronously just before a checkpoint, so the files a
/// checkpoint holds are a function of the operations alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct CompactionPolicy {
    /// Compact before every k-th checkpoint. Default: none.
    pub every_checkpoints: Option<u32>,
    /// Compact when a column family has more than this many level-0 files. Default: 4
    /// (RocksDB's own level-0 compaction trigger).
    pub level0_files_max: Option<u32>,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        Self {
            every_checkpoints: None,
            level0_files_max: Some(4),
        }
    }
}

impl CompactionPolicy {
    /// Never compact.
    pub fn never() -> Self {
        Self {
            every_checkpoints: None,
            level0_files_max: None,
        }
    }

    /// Compact before every `k`-th checkpoint and when level 0 holds more than `level0` files.
    pub fn new(every_checkpoints: Option<u32>, level0_files_max: Option<u32>) -> Self {
        Self {
            every_checkpoints,
            level0_files_max,
        }
    }
}

/// Makes RocksDB backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RocksDbFactory {
    /// Full or incremental checkpoints.
    pub mode: RocksDbMode,
    /// When to compact.
    pub compaction: CompactionPolicy,
}

impl RocksDbFactory {
    /// A factory for `mode` with the default compaction policy.
    pub fn new(mode: RocksDbMode) -> Self {
        Self {
            mode,
            compaction: CompactionPolicy::default(),
        }
    }
}

impl StateBackendFactory for RocksDbFactory {
    fn name(&self) -> &'static str {
        match self.mode {
            RocksDbMode::Full => "rocksdb-full",
            RocksDbMode::Incremental => "rocksdb-incremental",
        }
    }

    fn create(&self, context: BackendContext) -> Result<Box<dyn StateBackend>, StateError> {
        Ok(Box::new(RocksDbBackend::open(
            context,
            self.mode,
            self.compaction,
        )?))
    }
}

/// The column family holding state descriptors, so a native snapshot describes itself.
const META_CF: &str = "faultline-states";

pub(crate) fn rocks(error: rocksdb::Error) -> StateError {
    StateError::Backend {
        backend: "rocksdb",
        reason: error.into_string(),
    }
}

pub(crate) fn io(path: &Path, error: std::io::Error) -> StateError {
    StateError::Backend {
        backend: "rocksdb",
        reason: format!("{}: {error}", path.display()),
    }
}

/// A TTL state's column family carries a prefix of its own, so a database opened from its
/// files alone knows which families its compaction filter drops expired cells from.
fn cf_name(descriptor: &StateDescriptor) -> String {
    match descriptor.value_type {
        ValueType::TtlJson => format!("{TTL_CF_PREFIX}{}", descriptor.name),
        _ => format!("state-{}", descriptor.name),
    }
}

const TTL_CF_PREFIX: &str = "ttl-state-";

/// The processing time compaction filters judge expiry by: the time of the snapshot whose
/// compaction runs them (compaction runs only there), never ahead of the job's clock.
type CompactionClock = Arc<AtomicU64>;

/// The options of column family `cf`: a TTL state's drop the cells expired at the
/// compaction clock's time whenever a compaction rewrites them (Flink's
/// `cleanupInRocksdbCompactFilter`).
fn cf_options(cf: &str, clock: &CompactionClock) -> Result<Options, StateError> {
    let mut options = db_options()?;
    if cf.starts_with(TTL_CF_PREFIX) {
        let clock = Arc::clone(clock);
        options.set_compaction_filter("faultline-ttl", move |_level, _key, value| {
            if super::ttl::expired(value, clock.load(Ordering::SeqCst)) {
                Decision::Remove
            } else {
                Decision::Keep
            }
        });
    }
    Ok(options)
}

/// Options passed explicitly, each for a reason.
fn db_options() -> Result<Options, StateError> {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    // Determinism: no background compaction picks file layouts; compaction runs at checkpoints.
    options.set_disable_auto_compactions(true);
    // Memtables large enough that flushes happen at checkpoints, not at arbitrary points.
    options.set_write_buffer_size(64 << 20);
    // No statistics threads writing on their own schedule.
    options.set_stats_dump_period_sec(0);
    options.set_stats_persist_period_sec(0);
    // One info log, so the working directory does not grow with restarts.
    options.set_keep_log_file_num(1);
    options.set_compression_type(rocksdb::DBCompressionType::Lz4);
    // Harness cases open many small instances: the info log and statistics on open are pure
    // cost, and one background job is plenty for flushes of a few kilobytes.
    options.set_log_level(rocksdb::LogLevel::Error);
    options.set_skip_stats_update_on_db_open(true);
    options.set_max_background_jobs(1);
    options.set_max_file_opening_threads(1);
    // RocksDB preallocates the write-ahead log (about 1.1x the write buffer, here 70 MiB) and
    // the MANIFEST (4 MiB) with fallocate, and truncates them on close. Writes skip the WAL and
    // instances are small, so that is pure cost: on tmpfs it was most of a case's time.
    options.set_manifest_preallocation_size(0);
    // The Rust binding has no setter for this one; RocksDB's own option parser sets it.
    options
        .get_options_from_string("allow_fallocate=false")
        .map_err(rocks)
}

/// Writes skip the WAL, as Flink's RocksDB backend does: durability comes from checkpoints,
/// which flush memtables (`log_size_for_flush` 0) before linking files.
fn write_options() -> WriteOptions {
    let mut options = WriteOptions::default();
    options.disable_wal(true);
    options
}

fn encode_descriptor(descriptor: &StateDescriptor) -> Vec<u8> {
    vec![descriptor.kind.tag(), descriptor.value_type.tag()]
}

fn decode_descriptor(name: &[u8], value: &[u8]) -> Result<StateDescriptor, StateError> {
    let bad = || StateError::Backend {
        backend: "rocksdb",
        reason: "malformed state descriptor".into(),
    };
    let name = String::from_utf8(name.to_vec()).map_err(|_| bad())?;
    let [kind, value_type] = value else {
        return Err(bad());
    };
    let kind = StateKind::from_tag(*kind).ok_or_else(bad)?;
    let value_type = ValueType::from_tag(*value_type).ok_or_else(bad)?;
    Ok(StateDescriptor {
        name,
        kind,
        value_type,
    })
}

/// Opens a RocksDB directory with every column family it has, and reads its descriptors.
fn open_existing(
    path: &Path,
    clock: &CompactionClock,
) -> Result<(DB, Vec<StateDescriptor>), StateError> {
    let options = db_options()?;
    let names = DB::list_cf(&options, path).map_err(rocks)?;
    let descriptors = names
        .iter()
        .map(|name| Ok(ColumnFamilyDescriptor::new(name, cf_options(name, clock)?)))
        .collect::<Result<Vec<_>, StateError>>()?;
    let db = DB::open_cf_descriptors(&options, path, descriptors).map_err(rocks)?;
    let mut states = Vec::new();
    if let Some(meta) = db.cf_handle(META_CF) {
        for item in db.iterator_cf(meta, IteratorMode::Start) {
            let (name, value) = item.map_err(rocks)?;
            states.push(decode_descriptor(&name, &value)?);
        }
    }
    // Descriptors are listed in name order; ids are positions in this list.
    Ok((db, states))
}

/// A RocksDB instance holding one subtask's keyed state.
pub struct RocksDbBackend {
    task_name: String,
    instance: String,
    key_groups: KeyGroupRange,
    states: Vec<StateDescriptor>,
    /// Opened on first write (see [`RocksDbBackend::open_db`]); until then every state is empty.
    db: Option<DB>,
    working_dir: PathBuf,
    db_dir: PathBuf,
    mode: RocksDbMode,
    compaction: CompactionPolicy,
    snapshots_taken: u32,
    incremental: native::Uploads,
    compaction_clock: CompactionClock,
    /// The options of column families created after the database opened: a TTL family's
    /// options own its compaction filter, which RocksDB calls for as long as the database is
    /// open, and `create_cf` does not keep them (opening does). Declared after `db`, so they
    /// are dropped after it.
    late_cf_options: Vec<Options>,
}

impl std::fmt::Debug for RocksDbBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbBackend")
            .field("task_name", &self.task_name)
            .field("key_groups", &self.key_groups)
            .field("mode", &self.mode)
            .finish()
    }
}

impl RocksDbBackend {
    /// Creates an empty instance in `context.working_dir/db`. The database itself opens on first
    /// write or snapshot, with a column family for every state declared by then.
    pub fn open(
        context: BackendContext,
        mode: RocksDbMode,
        compaction: CompactionPolicy,
    ) -> Result<Self, StateError> {
        let db_dir = context.working_dir.join("db");
        if db_dir.exists() {
            std::fs::remove_dir_all(&db_dir).map_err(|e| io(&db_dir, e))?;
        }
        std::fs::create_dir_all(&db_dir).map_err(|e| io(&db_dir, e))?;
        Ok(Self {
            task_name: context.task_name,
            instance: context.instance,
            key_groups: context.key_groups,
            states: Vec::new(),
            db: None,
            working_dir: context.working_dir,
            db_dir,
            mode,
            compaction,
            snapshots_taken: 0,
            incremental: native::Uploads::default(),
            compaction_clock: CompactionClock::default(),
            late_cf_options: Vec::new(),
        })
    }

    /// The directory of the live database.
    pub fn db_dir(&self) -> &Path {
        &self.db_dir
    }

    fn owned(&self, key_group: u16) -> Result<(), StateError> {
        if self.key_groups.contains(key_group) {
            Ok(())
        } else {
            Err(StateError::KeyGroupNotOwned {
                task: self.task_name.clone(),
                key_group,
                range: self.key_groups,
            })
        }
    }

    /// The open database, opening it first if needed. Every OPTIONS file RocksDB writes (one per
    /// open and one per column family created later) is serialised, synced and parsed back, so
    /// opening once with every declared state's column family is most of the cost of a fresh
    /// instance saved: a subtask declares its states before it writes.
    fn open_db(&mut self) -> Result<&DB, StateError> {
        if self.db.is_none() {
            let clock = &self.compaction_clock;
            let families = std::iter::once(META_CF.to_string())
                .chain(self.states.iter().map(cf_name))
                .map(|name| {
                    Ok(ColumnFamilyDescriptor::new(
                        &name,
                        cf_options(&name, clock)?,
                    ))
                })
                .collect::<Result<Vec<_>, StateError>>()?;
            let db =
                DB::open_cf_descriptors(&db_options()?, &self.db_dir, families).map_err(rocks)?;
            let meta = db
                .cf_handle(META_CF)
                .expect("opened with the meta column family");
            for descriptor in &self.states {
                db.put_cf_opt(
                    meta,
                    descriptor.name.as_bytes(),
                    encode_descriptor(descriptor),
                    &write_options(),
                )
                .map_err(rocks)?;
            }
            self.db = Some(db);
        }
        Ok(self.db.as_ref().expect("opened above"))
    }

    /// The database and the column family of `state`, or `None` while the database is not open
    /// (every state is then empty). Fails for an undeclared state either way.
    fn cf(&self, state: StateId) -> Result<Option<(&DB, &rocksdb::ColumnFamily)>, StateError> {
        let descriptor =
            self.states
                .get(usize::from(state))
                .ok_or_else(|| StateError::Declaration {
                    name: format!("#{state}"),
                    reason: "used before it was declared".into(),
                })?;
        let Some(db) = &self.db else { return Ok(None) };
        let cf = db
            .cf_handle(&cf_name(descriptor))
            .ok_or_else(|| StateError::Backend {
                backend: "rocksdb",
                reason: format!("column family of state {:?} is missing", descriptor.name),
            })?;
        Ok(Some((db, cf)))
    }

    /// The database and the column family of `state`, opening the database first if needed.
    fn cf_for_write(
        &mut self,
        state: StateId,
    ) -> Result<(&DB, &rocksdb::ColumnFamily), StateError> {
        self.open_db()?;
        Ok(self.cf(state)?.expect("the database was opened above"))
    }

    /// Replaces the live database with one opened from `dir` (already holding restored files).
    fn adopt(&mut self, dir: PathBuf) -> Result<(), StateError> {
        let (db, states) = open_existing(&dir, &self.compaction_clock)?;
        let old = self.db.replace(db);
        drop(old);
        // The new database keeps the options it was opened with.
        self.late_cf_options.clear();
        let old_dir = std::mem::replace(&mut self.db_dir, dir);
        std::fs::remove_dir_all(&old_dir).map_err(|e| io(&old_dir, e))?;
        self.states = states;
        Ok(())
    }

    fn compact_if_due(&mut self) -> Result<(), StateError> {
        self.open_db()?;
        let db = self.db.as_ref().expect("opened above");
        let every = self
            .compaction
            .every_checkpoints
            .is_some_and(|k| k > 0 && self.snapshots_taken.is_multiple_of(k));
        let mut due = every;
        if let Some(limit) = self.compaction.level0_files_max {
            for descriptor in &self.states {
                let cf = db
                    .cf_handle(&cf_name(descriptor))
                    .expect("declared states have column families");
                let level0 = db
                    .property_int_value_cf(cf, "rocksdb.num-files-at-level0")
                    .map_err(rocks)?
                    .unwrap_or(0);
                due |= level0 > u64::from(limit);
            }
        }
        if due {
            for descriptor in &self.states {
                let cf = db
                    .cf_handle(&cf_name(descriptor))
                    .expect("declared states have column families");
                db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
            }
        }
        Ok(())
    }
}

impl StateBackend for RocksDbBackend {
    fn name(&self) -> &'static str {
        "rocksdb"
    }

    fn key_groups(&self) -> KeyGroupRange {
        self.key_groups
    }

    fn register_state(&mut self, descriptor: &StateDescriptor) -> Result<StateId, StateError> {
        if let Some(index) = self.states.iter().position(|s| s.name == descriptor.name) {
            return super::memory::register_in(&mut self.states, descriptor)
                .inspect(|id| debug_assert_eq!(usize::from(*id), index));
        }
        let id = super::memory::register_in(&mut self.states, descriptor)?;
        // Before the database opens, open_db creates the column family and records the
        // descriptor along with the others.
        let Some(db) = &mut self.db else {
            return Ok(id);
        };
        let cf = cf_name(descriptor);
        let options = cf_options(&cf, &self.compaction_clock)?;
        db.create_cf(&cf, &options).map_err(rocks)?;
        self.late_cf_options.push(options);
        let meta = db
            .cf_handle(META_CF)
            .expect("opened with the meta column family");
        db.put_cf_opt(
            meta,
            descriptor.name.as_bytes(),
            encode_descriptor(descriptor),
            &write_options(),
        )
        .map_err(rocks)?;
        Ok(id)
    }

    fn states(&self) -> &[StateDescriptor] {
        &self.states
    }

    fn get(&self, cell: CellRef<'_>) -> Result<Option<Vec<u8>>, StateError> {
        self.owned(cell.key_group)?;
        let key = keys::encode(cell.key_group, cell.key, cell.user_key);
        match self.cf(cell.state)? {
            Some((db, cf)) => db.get_cf(cf, key).map_err(rocks),
            None => Ok(None),
        }
    }

    fn put(&mut self, cell: CellRef<'_>, value: &[u8]) -> Result<(), StateError> {
        self.owned(cell.key_group)?;
        let key = keys::encode(cell.key_group, cell.key, cell.user_key);
        let (db, cf) = self.cf_for_write(cell.state)?;
        db.put_cf_opt(cf, key, value, &write_options())
            .map_err(rocks)
    }

    fn delete(&mut self, cell: CellRef<'_>) -> Result<(), StateError> {
        self.owned(cell.key_group)?;
        let key = keys::encode(cell.key_group, cell.key, cell.user_key);
        let (db, cf) = self.cf_for_write(cell.state)?;
        db.delete_cf_opt(cf, key, &write_options()).map_err(rocks)
    }

    fn user_entries(
        &self,
        state: StateId,
        key_group: u16,
        key: &[u8],
    ) -> Result<UserEntries, StateError> {
        self.owned(key_group)?;
        let prefix = keys::encode(key_group, key, &[]);
        let mut entries = Vec::new();
        let Some((db, cf)) = self.cf(state)? else {
            return Ok(entries);
        };
        for item in db.iterator_cf(cf, IteratorMode::From(&prefix, Direction::Forward)) {
            let (stored, value) = item.map_err(rocks)?;
            let Some(user_key) = stored.strip_prefix(prefix.as_slice()) else {
                break;
            };
            entries.push((user_key.to_vec(), value.to_vec()));
        }
        Ok(entries)
    }

    fn entries(&self) -> Result<Vec<StateEntry>, StateError> {
        // One pass per state (each already in key-group, key, user-key order), then a stable
        // sort by (key group, state): the canonical order, with one iterator per state instead
        // of one per key group and state.
        let mut entries = Vec::new();
        for state in 0..self.states.len() {
            let Some((db, cf)) = self.cf(state as StateId)? else {
                break;
            };
            for item in db.iterator_cf(cf, IteratorMode::Start) {
                let (key, value) = item.map_err(rocks)?;
                let (key_group, record_key, user_key) = keys::decode(&key)?;
                debug_assert!(
                    self.key_groups.contains(key_group),
                    "only owned key groups are written"
                );
                entries.push(StateEntry {
                    key_group,
                    state: state as StateId,
                    key: record_key,
                    user_key,
                    value: value.to_vec(),
                });
            }
        }
        entries.sort_by_key(|entry| (entry.key_group, entry.state));
        Ok(entries)
    }

    fn snapshot(
        &mut self,
        target: &SnapshotTarget,
        storage: &mut dyn CheckpointStorage,
    ) -> Result<SnapshotResult, StateError> {
        self.compaction_clock.store(target.now_ms, Ordering::SeqCst);
        self.compact_if_due()?;
        self.snapshots_taken += 1;
        let native = match target.purpose {
            SnapshotPurpose::Checkpoint => self.mode == RocksDbMode::Incremental,
            SnapshotPurpose::Savepoint(format) => format == super::SavepointFormat::Native,
        };
        if native {
            native::snapshot(self, target, storage)
        } else {
            // The single-threaded runtime makes no writes while this runs, so the cells read are
            // a consistent view, as a RocksDB snapshot would give.
            write_canonical(self, &self.task_name, target, storage)
        }
    }

    fn restore(
        &mut self,
        handles: &[RestoreHandle],
        storage: &dyn CheckpointStorage,
        mode: RestoreMode,
    ) -> Result<RestoreStats, StateError> {
        if !self.states.is_empty() || self.snapshots_taken > 0 {
            return Err(StateError::Backend {
                backend: "rocksdb",
                reason: "restore needs a fresh backend".into(),
            });
        }
        let natives = handles
            .iter()
            .filter(|h| matches!(h.handle, KeyedStateHandle::Native { .. }))
            .count();
        match natives {
            0 => restore_canonical(self, handles, storage),
            n if n == handles.len() => native::restore(self, handles, storage, mode),
            _ => Err(StateError::Backend {
                backend: "rocksdb",
                reason: "a snapshot mixes canonical and native handles".into(),
            }),
        }
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) {
        self.incremental.confirm(checkpoint_id);
    }

    fn notify_checkpoint_aborted(&mut self, checkpoint_id: u64) {
        self.incremental.forget(checkpoint_id);
    }
}

/// The file map of a native handle: local name to stored file.
pub(crate) fn named_map(files: &[crate::checkpoint::NamedFile]) -> BTreeMap<String, FileRef> {
    files
        .iter()
        .map(|named| (named.local_name.clone(), named.file.clone()))
        .collect()
}
