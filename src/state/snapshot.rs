//! Canonical snapshot and restore, written once for every backend: a backend lists its cells in
//! canonical order and loads cells back; this module turns that into checkpoint files and back,
//! verifying each file's size and checksum against its handle before decoding it.
//!
//! ```
//! use faultline::checkpoint::{CheckpointStorage, Durability, FsCheckpointStorage, RelPath};
//! use faultline::state::snapshot::read_verified;
//!
//! let dir = tempfile::tempdir()?;
//! let mut storage = FsCheckpointStorage::new(dir.path(), Durability::PageCache)?;
//! let path = RelPath::new("chk-1/sum-0.kv")?;
//! let file = storage.write(&path, b"cells")?;
//! assert_eq!(read_verified(&storage, &file)?, b"cells");
//!
//! // Other bytes under the same name (a stale or misdirected write) are refused.
//! storage.write(&path, b"CELLS")?;
//! assert!(read_verified(&storage, &file).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use super::{
    CellRef, RestoreHandle, RestoreStats, SnapshotResult, SnapshotTarget, StateBackend, StateError,
    ValueType,
};
use crate::checkpoint::{canonical, CheckpointStorage, FileRef, KeyedStateHandle, StorageError};

/// Writes `backend`'s cells as one canonical file `<dir>/<task>.kv`, but for TTL cells expired
/// at the target's processing time.
pub fn write_canonical(
    backend: &dyn StateBackend,
    task_name: &str,
    target: &SnapshotTarget,
    storage: &mut dyn CheckpointStorage,
) -> Result<SnapshotResult, StateError> {
    let mut entries = backend.entries()?;
    // A full snapshot leaves expired TTL cells out (Flink's `cleanupFullSnapshot`).
    let states = backend.states();
    entries.retain(|entry| {
        let ttl = states
            .get(usize::from(entry.state))
            .is_some_and(|s| s.value_type == ValueType::TtlJson);
        !(ttl && super::ttl::expired(&entry.value, target.now_ms))
    });
    let bytes = canonical::encode(
        backend.states(),
        backend.key_groups(),
        &entries,
        target.compression,
    );
    let path = target
        .dir
        .join(&format!("{task_name}.kv"))
        .map_err(|e| StateError::Backend {
            backend: backend.name(),
            reason: format!("task name {task_name:?} does not make a file name: {e}"),
        })?;
    let file = storage.write(&path, &bytes)?;
    // Pair assertion: what was written reads back intact before the handle is acknowledged.
    debug_assert!(canonical::decode(&bytes, backend.key_groups()).is_ok());
    let bytes_written = file.size;
    Ok(SnapshotResult {
        handle: KeyedStateHandle::Canonical(file),
        files_written: 1,
        files_reused: 0,
        bytes_written,
    })
}

/// Reads a file a handle names and checks it against the recorded size and checksum.
pub fn read_verified(
    storage: &dyn CheckpointStorage,
    file: &FileRef,
) -> Result<Vec<u8>, StorageError> {
    let bytes = storage.read(&file.path)?;
    match file.mismatch(&bytes) {
        Some(reason) => Err(StorageError::Mismatch {
            path: file.path.to_string(),
            reason: reason.into(),
        }),
        None => Ok(bytes),
    }
}

/// Loads the owned key groups of canonical handles into `backend`, re-addressing each cell to
/// the backend's own state ids; cells of key groups owned by other subtasks are skipped.
pub fn restore_canonical(
    backend: &mut dyn StateBackend,
    handles: &[RestoreHandle],
    storage: &dyn CheckpointStorage,
) -> Result<RestoreStats, StateError> {
    let owned = backend.key_groups();
    let mut stats = RestoreStats::default();
    for handle in handles {
        let KeyedStateHandle::Canonical(file) = &handle.handle else {
            return Err(StateError::Backend {
                backend: backend.name(),
                reason: "a native snapshot restores only into the backend that wrote it; use a canonical savepoint to switch backends".into(),
            });
        };
        let bytes = read_verified(storage, file)?;
        let snapshot = canonical::decode(&bytes, owned)
            .map_err(|source| StorageError::format(&file.path, source))?;
        // A valid file of another subtask (a misdirected or stale write) decodes cleanly; the
        // key groups it holds must be those the metadata says its writer owned.
        if snapshot.key_groups != handle.key_groups {
            return Err(StorageError::Mismatch {
                path: file.path.to_string(),
                reason: format!(
                    "holds key groups {}, the metadata says {}",
                    snapshot.key_groups, handle.key_groups
                ),
            }
            .into());
        }
        stats.files += 1;
        if !snapshot.key_groups.intersects(&owned) {
            continue;
        }
        let ids: Vec<_> = snapshot
            .states
            .iter()
            .map(|descriptor| backend.register_state(descriptor))
            .collect::<Result<_, _>>()?;
        for entry in snapshot.entries {
            debug_assert!(
                owned.contains(entry.key_group),
                "decode filtered to owned groups"
            );
            let cell = CellRef {
                state: ids[usize::from(entry.state)],
                key_group: entry.key_group,
                key: &entry.key,
                user_key: &entry.user_key,
            };
            backend.put(cell, &entry.value)?;
            stats.entries += 1;
        }
    }
    Ok(stats)
}
