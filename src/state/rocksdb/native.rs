//! Native snapshots: incremental checkpoints and native savepoints.
//!
//! A checkpoint takes a RocksDB checkpoint (hard links, memtables flushed first) into a local
//! staging directory, then stores its files: SST files under `shared/`, where later checkpoints
//! may reference them again, and every other file (MANIFEST, CURRENT, OPTIONS) in the
//! checkpoint's own directory. An SST is reused instead of stored again only if the last
//! *confirmed* checkpoint stored it — an upload of a checkpoint that was aborted, or whose
//! completion was never notified, may since have been deleted, so it is never trusted — and,
//! when that confirmation came late, every later snapshot this backend took holds the same
//! stored file (see [`Uploads::confirm`]).
//!
//! A native savepoint stores every file in its own directory and shares nothing, so deleting or
//! moving it never breaks a checkpoint, and its uploads never become a base.
//!
//! Restore copies the files into a fresh directory and opens RocksDB on it; when the key-group
//! range changed (rescaling) it opens each old instance on its own copy and copies the owned
//! key-group range into a new instance.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use rocksdb::checkpoint::Checkpoint;
use rocksdb::{Direction, IteratorMode};

use super::{cf_name, io, keys, named_map, open_existing, rocks, write_options, RocksDbBackend};
use crate::checkpoint::{CheckpointStorage, FileRef, KeyedStateHandle, NamedFile, RelPath};
use crate::state::snapshot::read_verified;
use crate::state::{
    RestoreHandle, RestoreMode, RestoreStats, SnapshotPurpose, SnapshotResult, SnapshotTarget,
    StateBackend, StateError,
};

/// Which SST files the backend stored for which checkpoint.
#[derive(Debug, Default)]
pub(crate) struct Uploads {
    /// SSTs each unconfirmed checkpoint referenced.
    pending: BTreeMap<u64, BTreeMap<String, FileRef>>,
    /// SSTs of the last confirmed checkpoint: the only ones a new checkpoint may reuse.
    base: BTreeMap<String, FileRef>,
    /// That checkpoint.
    base_of: Option<u64>,
}

impl Uploads {
    /// Checkpoint `id` completed: its files become the base; older pending entries are covered
    /// by it. A notification for an id never recorded here (a savepoint) changes nothing.
    ///
    /// A notification may come late, after this backend took later snapshots that stored their
    /// own copies of the same SSTs (the checkpoint was not confirmed yet when they were taken).
    /// Any of those may already have completed and subsumed `id`, and then garbage collection
    /// deletes the files only `id` held. So only files every later snapshot references too
    /// (the same stored file) become the base.
    pub(crate) fn confirm(&mut self, id: u64) {
        if let Some(mut files) = self.pending.remove(&id) {
            for later in self.pending.range(id + 1..).map(|(_, later)| later) {
                files.retain(|name, file| later.get(name) == Some(file));
            }
            self.base = files;
            self.base_of = Some(id);
        }
        // Older snapshots are covered: a notification for one of them, coming later still,
        // finds nothing and leaves the base where it is.
        self.pending.retain(|pending, _| *pending > id);
    }

    /// Checkpoint `id` was aborted: its uploads must not be reused.
    pub(crate) fn forget(&mut self, id: u64) {
        self.pending.remove(&id);
    }
}

fn relpath(text: String) -> Result<RelPath, StateError> {
    RelPath::new(&text).map_err(|e| StateError::Backend {
        backend: "rocksdb",
        reason: e.to_string(),
    })
}

/// Takes a native snapshot of `backend` (see the module doc).
pub(crate) fn snapshot(
    backend: &mut RocksDbBackend,
    target: &SnapshotTarget,
    storage: &mut dyn CheckpointStorage,
) -> Result<SnapshotResult, StateError> {
    let (staging, names) = stage(backend, target)?;
    let share = target.purpose == SnapshotPurpose::Checkpoint;
    let (mut shared, mut private) = (Vec::new(), Vec::new());
    let mut referenced = BTreeMap::new();
    let (mut files_written, mut files_reused, mut bytes_written) = (0u32, 0u32, 0u64);
    for name in names {
        let is_sst = name.ends_with(".sst");
        let file = match backend.incremental.base.get(&name) {
            Some(file) if share && is_sst => {
                files_reused += 1;
                file.clone()
            }
            _ => {
                let file = upload(backend, target, storage, &staging, &name, share && is_sst)?;
                files_written += 1;
                bytes_written += file.size;
                file
            }
        };
        let named = NamedFile {
            local_name: name.clone(),
            file: file.clone(),
        };
        if share && is_sst {
            referenced.insert(name, file);
            shared.push(named);
        } else {
            private.push(named);
        }
    }
    fs::remove_dir_all(&staging).map_err(|e| io(&staging, e))?;
    if share {
        backend
            .incremental
            .pending
            .insert(target.checkpoint_id, referenced);
    }
    debug_assert!(
        private.iter().any(|f| f.local_name == "CURRENT"),
        "a RocksDB checkpoint has CURRENT"
    );
    Ok(SnapshotResult {
        handle: KeyedStateHandle::Native { shared, private },
        files_written,
        files_reused,
        bytes_written,
    })
}

/// Makes a RocksDB checkpoint of the backend in a staging directory of the working dir and
/// lists its files, sorted.
fn stage(
    backend: &mut RocksDbBackend,
    target: &SnapshotTarget,
) -> Result<(PathBuf, Vec<String>), StateError> {
    let staging = backend
        .working_dir
        .join(format!("staging-{}", target.checkpoint_id));
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(|e| io(&staging, e))?;
    }
    // log_size_for_flush 0: memtables are flushed first. Writes skip the WAL, so with any other
    // value the checkpoint could miss them.
    Checkpoint::new(backend.open_db()?)
        .and_then(|checkpoint| checkpoint.create_checkpoint_with_log_size(&staging, 0))
        .map_err(rocks)?;
    let mut names = Vec::new();
    for entry in fs::read_dir(&staging).map_err(|e| io(&staging, e))? {
        names.push(
            entry
                .map_err(|e| io(&staging, e))?
                .file_name()
                .to_string_lossy()
                .into_owned(),
        );
    }
    names.sort();
    Ok((staging, names))
}

/// Writes the staged file `name` to checkpoint storage: into `shared/` when it is a shared
/// SST file, else into the checkpoint's own directory.
fn upload(
    backend: &RocksDbBackend,
    target: &SnapshotTarget,
    storage: &mut dyn CheckpointStorage,
    staging: &Path,
    name: &str,
    shared: bool,
) -> Result<FileRef, StateError> {
    let task = &backend.task_name;
    let path = if shared {
        // The checkpoint id makes every upload a new file: a file a retained checkpoint
        // references is never overwritten, so a torn upload cannot damage it.
        relpath(format!(
            "shared/{task}-{}-c{}-{name}",
            backend.instance, target.checkpoint_id
        ))?
    } else {
        target
            .dir
            .join(task)
            .and_then(|dir| dir.join(name))
            .map_err(|e| StateError::Backend {
                backend: "rocksdb",
                reason: e.to_string(),
            })?
    };
    let bytes = fs::read(staging.join(name)).map_err(|e| io(&staging.join(name), e))?;
    Ok(storage.write(&path, &bytes)?)
}

/// Copies every file of a native handle into `dir`, verifying each against its recorded size
/// and checksum first.
fn materialize(
    handle: &KeyedStateHandle,
    storage: &dyn CheckpointStorage,
    dir: &Path,
) -> Result<u64, StateError> {
    let KeyedStateHandle::Native { shared, private } = handle else {
        unreachable!("the caller checked that every handle is native");
    };
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| io(dir, e))?;
    }
    fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let mut files = 0;
    for named in shared.iter().chain(private) {
        let bytes = read_verified(storage, &named.file)?;
        // The local name was validated as one plain path component when `_metadata` was decoded.
        fs::write(dir.join(&named.local_name), bytes)
            .map_err(|e| io(&dir.join(&named.local_name), e))?;
        files += 1;
    }
    Ok(files)
}

/// Restores native handles (see the module doc).
pub(crate) fn restore(
    backend: &mut RocksDbBackend,
    handles: &[RestoreHandle],
    storage: &dyn CheckpointStorage,
    mode: RestoreMode,
) -> Result<RestoreStats, StateError> {
    let owned = backend.key_groups;
    let mut stats = RestoreStats::default();
    if let [single] = handles {
        if single.key_groups == owned {
            let dir = backend.working_dir.join("db-restored");
            stats.files = materialize(&single.handle, storage, &dir)?;
            backend.adopt(dir)?;
            if mode == RestoreMode::Claim {
                let KeyedStateHandle::Native { shared, .. } = &single.handle else {
                    unreachable!("native")
                };
                backend.incremental.base = named_map(shared);
            }
            stats.entries = backend.entries()?.len() as u64;
            return Ok(stats);
        }
    }
    // Rescaling: copy the owned key groups out of every old instance that held some.
    for (index, handle) in handles.iter().enumerate() {
        if !handle.key_groups.intersects(&owned) {
            continue;
        }
        let dir = backend.working_dir.join(format!("rescale-{index}"));
        stats.files += materialize(&handle.handle, storage, &dir)?;
        let (old, states) = open_existing(&dir, &backend.compaction_clock)?;
        for descriptor in &states {
            let state = backend.register_state(descriptor)?;
            let source =
                old.cf_handle(&cf_name(descriptor))
                    .ok_or_else(|| StateError::Backend {
                        backend: "rocksdb",
                        reason: format!(
                            "restored instance lacks the column family of {:?}",
                            descriptor.name
                        ),
                    })?;
            let (db, target) = backend.cf_for_write(state)?;
            let start = owned.start.to_be_bytes();
            for item in old.iterator_cf(source, IteratorMode::From(&start, Direction::Forward)) {
                let (key, value) = item.map_err(rocks)?;
                let (group, _, _) = keys::decode(&key)?;
                if group > owned.end {
                    break;
                }
                db.put_cf_opt(target, &key, &value, &write_options())
                    .map_err(rocks)?;
                stats.entries += 1;
            }
        }
        drop(old);
        fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(path: &str) -> FileRef {
        FileRef {
            path: RelPath::new(path).expect("a plain relative path"),
            size: 1,
            checksum: 0,
        }
    }

    fn files(entries: &[(&str, &str)]) -> BTreeMap<String, FileRef> {
        entries
            .iter()
            .map(|(name, path)| (name.to_string(), stored(path)))
            .collect()
    }

    /// What a test does to the uploads: snapshot, or confirm or forget one of the snapshots
    /// taken so far (the `which`-th, confirmed late or twice as it may be).
    #[derive(Debug, Clone)]
    enum Op {
        Snapshot { changed: [bool; 3] },
        Confirm { which: usize },
        Forget { which: usize },
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            3 => any::<[bool; 3]>().prop_map(|changed| Op::Snapshot { changed }),
            3 => any::<usize>().prop_map(|which| Op::Confirm { which }),
            1 => any::<usize>().prop_map(|which| Op::Forget { which }),
        ]
    }

    /// Runs `ops`, confirming through `confirm`, and checks after each that the base never
    /// moved back to an older checkpoint and holds only files its checkpoint stored.
    fn base_stays_newest(ops: &[Op], confirm: impl Fn(&mut Uploads, u64)) -> Result<(), String> {
        let mut uploads = Uploads::default();
        let mut taken: Vec<u64> = Vec::new();
        let mut uploaded: BTreeMap<u64, BTreeMap<String, FileRef>> = BTreeMap::new();
        for op in ops {
            let before = uploads.base_of;
            match *op {
                Op::Snapshot { changed } => {
                    // As `snapshot` does: an unchanged SST of the base is reused, any other
                    // is uploaded anew under this checkpoint's id.
                    let id = taken.last().map_or(1, |last| last + 1);
                    let files: BTreeMap<String, FileRef> = (0..3)
                        .map(|sst| {
                            let name = format!("{sst}.sst");
                            let file = match uploads.base.get(&name) {
                                Some(file) if !changed[sst] => file.clone(),
                                _ => stored(&format!("shared/c{id}-{name}")),
                            };
                            (name, file)
                        })
                        .collect();
                    uploads.pending.insert(id, files.clone());
                    uploaded.insert(id, files);
                    taken.push(id);
                }
                Op::Confirm { which } if !taken.is_empty() => {
                    confirm(&mut uploads, taken[which % taken.len()]);
                }
                Op::Forget { which } if !taken.is_empty() => {
                    uploads.forget(taken[which % taken.len()]);
                }
                _ => {}
            }
            if uploads.base_of < before {
                return Err(format!(
                    "the base moved back from {before:?} to {:?}",
                    uploads.base_of
                ));
            }
            if let Some(base) = uploads.base_of {
                let own = &uploaded[&base];
                if uploads
                    .base
                    .iter()
                    .any(|(name, file)| own.get(name) != Some(file))
                {
                    return Err(format!("the base holds a file chk-{base} did not store"));
                }
            }
        }
        Ok(())
    }

    proptest::proptest! {
        #[test]
        fn a_late_notification_never_moves_the_base_backwards(ops in proptest::collection::vec(op(), 1..60)) {
            let held = base_stays_newest(&ops, Uploads::confirm);
            proptest::prop_assert!(held.is_ok(), "{:?}", held);
        }
    }

    /// The property can fail: a twin that keeps older snapshots pending after a confirmation
    /// lets a late notification of one of them become the base.
    #[test]
    fn a_base_that_follows_late_notifications_is_caught() {
        let keeps_older = |uploads: &mut Uploads, id: u64| {
            if let Some(files) = uploads.pending.remove(&id) {
                uploads.base = files;
                uploads.base_of = Some(id);
            }
        };
        let ops = [
            Op::Snapshot { changed: [true; 3] },
            Op::Snapshot { changed: [true; 3] },
            Op::Confirm { which: 1 },
            Op::Confirm { which: 0 },
        ];
        assert_eq!(base_stays_newest(&ops, Uploads::confirm), Ok(()));
        assert!(base_stays_newest(&ops, keeps_older).is_err());
    }

    #[test]
    fn a_prompt_confirmation_makes_every_file_of_the_checkpoint_the_base() {
        let mut uploads = Uploads::default();
        uploads
            .pending
            .insert(3, files(&[("1.sst", "shared/c3-1.sst")]));
        uploads.confirm(3);
        assert_eq!(uploads.base, files(&[("1.sst", "shared/c3-1.sst")]));
        assert!(uploads.pending.is_empty());
    }

    #[test]
    fn a_late_confirmation_keeps_only_files_every_later_snapshot_also_holds() {
        let mut uploads = Uploads::default();
        uploads.pending.insert(
            3,
            files(&[("1.sst", "shared/c2-1.sst"), ("2.sst", "shared/c3-2.sst")]),
        );
        // Taken before chk-3 was confirmed: it reused chk-2's copy and stored its own of 2.sst.
        uploads.pending.insert(
            4,
            files(&[("1.sst", "shared/c2-1.sst"), ("2.sst", "shared/c4-2.sst")]),
        );
        uploads.confirm(3);
        assert_eq!(uploads.base, files(&[("1.sst", "shared/c2-1.sst")]));
        assert_eq!(uploads.pending.keys().collect::<Vec<_>>(), vec![&4]);
        uploads.confirm(4);
        assert_eq!(
            uploads.base,
            files(&[("1.sst", "shared/c2-1.sst"), ("2.sst", "shared/c4-2.sst")])
        );
    }
}
