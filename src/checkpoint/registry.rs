//! The shared-file registry and the storage audit.
//!
//! Which files in `shared/` are in use is read from the `_metadata` of the retained checkpoints
//! in storage at every restore, and kept from then on by the coordinator, which adds each
//! completed checkpoint's files and drops a subsumed one's. A shared file no retained
//! checkpoint names is garbage. If any retained `_metadata` cannot be read, nothing is deleted:
//! a file it names might still be needed.
//!
//! The audit checks a whole root: every file a retained checkpoint or savepoint names exists
//! with its recorded size and checksum, nothing else lingers in `shared/` nor in a completed
//! checkpoint's directory (channel state or keyed state no snapshot names was left behind),
//! and no checkpoint directory lacks its `_metadata`. A job that restored an earlier job's checkpoint NO_CLAIM
//! must leave it alone: no checkpoint of its own may reference a file of the restored one.
//!
//! ```
//! use faultline::checkpoint::registry::{checkpoint_dir, latest_completed, metadata_path};
//! use faultline::checkpoint::{Durability, FsCheckpointStorage};
//!
//! assert_eq!(checkpoint_dir(3).as_str(), "chk-3");
//! assert_eq!(metadata_path(3).as_str(), "chk-3/_metadata");
//!
//! let dir = tempfile::tempdir()?;
//! let storage = FsCheckpointStorage::new(dir.path(), Durability::PageCache)?;
//! assert_eq!(latest_completed(&storage)?, None, "a fresh root has no checkpoint");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeSet;
use std::fmt;

use super::upload::Uploads;
use super::{CheckpointMetadata, CheckpointStorage, FileRef, RelPath, StorageError};

/// A retained checkpoint as read back from storage.
#[derive(Debug)]
pub struct Retained {
    /// Its id.
    pub id: u64,
    /// Its metadata, or why it could not be read.
    pub metadata: Result<CheckpointMetadata, StorageError>,
}

/// The `chk-<id>` directories of a root, with whether each holds a `_metadata`.
pub fn checkpoint_dirs(storage: &dyn CheckpointStorage) -> Result<Vec<(u64, bool)>, StorageError> {
    let mut dirs: Vec<(u64, bool)> = storage
        .list(None)?
        .iter()
        .filter_map(|name| name.strip_prefix("chk-")?.parse::<u64>().ok())
        .map(|id| (id, storage.exists(&metadata_path(id))))
        .collect();
    dirs.sort_unstable();
    Ok(dirs)
}

const COMPLETED_MAGIC: [u8; 4] = *b"FLTC";

/// `_completed`: the id of the latest completed checkpoint, written after its `_metadata`.
/// Storage alone cannot tell a checkpoint that never completed from one whose `_metadata` was
/// lost later; this record can (Flink keeps completed ids in ZooKeeper for the same reason).
pub fn completed_path() -> RelPath {
    RelPath::new("_completed").expect("a valid relative path")
}

/// Records `id` as the latest completed checkpoint.
pub fn record_completed(storage: &mut dyn CheckpointStorage, id: u64) -> Result<(), StorageError> {
    storage
        .write(
            &completed_path(),
            &super::envelope::seal(COMPLETED_MAGIC, 1, &id.to_le_bytes()),
        )
        .map(|_| ())
}

/// The latest checkpoint recorded as completed, if any was.
pub fn latest_completed(storage: &dyn CheckpointStorage) -> Result<Option<u64>, StorageError> {
    let path = completed_path();
    if !storage.exists(&path) {
        return Ok(None);
    }
    let bytes = storage.read(&path)?;
    let payload = super::envelope::open("_completed", COMPLETED_MAGIC, 1, &bytes)
        .map_err(|e| StorageError::format(&path, e))?;
    let id: [u8; 8] = payload.try_into().map_err(|_| {
        StorageError::format(
            &path,
            super::FormatError::Invalid {
                what: "_completed",
                offset: 0,
                reason: "not one checkpoint id".into(),
            },
        )
    })?;
    Ok(Some(u64::from_le_bytes(id)))
}

/// The highest snapshot id in a root: of checkpoint directories and of savepoints' metadata.
/// New ids must exceed it, or a savepoint and a later snapshot could share an id and a
/// restore could not tell which is newer.
pub fn highest_snapshot_id(storage: &dyn CheckpointStorage) -> u64 {
    let checkpoints = checkpoint_dirs(storage)
        .unwrap_or_default()
        .iter()
        .map(|(id, _)| *id)
        .max()
        .unwrap_or(0);
    let savepoints = RelPath::new("savepoints").expect("a valid relative path");
    let names = storage.list(Some(&savepoints)).unwrap_or_default();
    let savepoint_ids = names.iter().filter_map(|name| {
        let path = savepoints
            .join(name)
            .and_then(|dir| dir.join("_metadata"))
            .ok()?;
        CheckpointMetadata::decode(&storage.read(&path).ok()?)
            .ok()
            .map(|m| m.checkpoint_id)
    });
    savepoint_ids.fold(checkpoints, u64::max)
}

/// `chk-<id>`.
pub fn checkpoint_dir(id: u64) -> RelPath {
    RelPath::new(&format!("chk-{id}")).expect("chk-<id> is a valid relative path")
}

/// `chk-<id>/_metadata`.
pub fn metadata_path(id: u64) -> RelPath {
    RelPath::new(&format!("chk-{id}/_metadata"))
        .expect("chk-<id>/_metadata is a valid relative path")
}

/// Reads and decodes `chk-<id>/_metadata`.
pub fn read_metadata(
    storage: &dyn CheckpointStorage,
    id: u64,
) -> Result<CheckpointMetadata, StorageError> {
    let path = metadata_path(id);
    let bytes = storage.read(&path)?;
    CheckpointMetadata::decode(&bytes).map_err(|e| StorageError::format(&path, e))
}

/// Every completed checkpoint in storage, oldest first.
pub fn retained(storage: &dyn CheckpointStorage) -> Result<Vec<Retained>, StorageError> {
    Ok(checkpoint_dirs(storage)?
        .into_iter()
        .filter(|(_, complete)| *complete)
        .map(|(id, _)| Retained {
            id,
            metadata: read_metadata(storage, id),
        })
        .collect())
}

fn shared_dir() -> RelPath {
    RelPath::new("shared").expect("a valid relative path")
}

/// What a garbage collection did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Collection {
    /// Shared files deleted.
    pub deleted: Vec<String>,
    /// Why nothing was deleted, if so.
    pub skipped: Option<String>,
}

/// Which shared files garbage collection must keep.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Keep {
    /// These (the retained checkpoints reference them); every other shared file is garbage.
    Files(BTreeSet<RelPath>),
    /// Every file: a retained checkpoint's metadata could not be read, so any shared file
    /// might be one it needs.
    Everything {
        /// Which checkpoint, and why.
        reason: String,
    },
}

/// The shared files the retained checkpoints in storage reference, read from their `_metadata`.
pub fn referenced(storage: &dyn CheckpointStorage) -> Result<Keep, StorageError> {
    let mut files = BTreeSet::new();
    for checkpoint in retained(storage)? {
        match checkpoint.metadata {
            Ok(metadata) => files.extend(metadata.shared_paths()),
            Err(error) => {
                return Ok(Keep::Everything {
                    reason: format!("chk-{} unreadable: {error}", checkpoint.id),
                })
            }
        }
    }
    Ok(Keep::Files(files))
}

/// Deletes every file in `shared/` that `keep` does not keep and no live part of the upload
/// hand-off references: the one garbage collection, of the engine and the benchmark alike.
/// The deletions happen under the hand-off's lock, so no checkpoint can register a file in
/// between; a temporary file counts as the file it becomes, so an upload in flight keeps its.
pub fn collect_garbage(
    storage: &mut dyn CheckpointStorage,
    keep: &Keep,
    uploads: &Uploads,
) -> Result<Collection, StorageError> {
    let keep = match keep {
        Keep::Files(files) => files,
        Keep::Everything { reason } => {
            return Ok(Collection {
                deleted: Vec::new(),
                skipped: Some(reason.clone()),
            })
        }
    };
    let mut candidates = Vec::new();
    for name in storage.list(Some(&shared_dir()))? {
        let path = shared_dir()
            .join(&name)
            .map_err(|e| StorageError::format(&shared_dir(), e))?;
        if !keep.contains(&path) {
            candidates.push(path);
        }
    }
    let mut failed = None;
    let deleted = uploads.delete_unreferenced(&candidates, &mut |path| {
        if let Err(error) = storage.remove_file(path) {
            failed.get_or_insert(error);
        }
    });
    if let Some(error) = failed {
        return Err(error);
    }
    Ok(Collection {
        deleted: deleted.iter().map(ToString::to_string).collect(),
        skipped: None,
    })
}

fn shared_paths(metadata: &CheckpointMetadata) -> Vec<String> {
    metadata
        .shared_paths()
        .into_iter()
        .map(|path| path.to_string())
        .collect()
}

/// Something wrong in a checkpoint root.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum AuditProblem {
    /// A snapshot's `_metadata` cannot be read.
    Unreadable {
        /// `chk-3` or `savepoints/name`.
        snapshot: String,
        /// Why.
        error: String,
    },
    /// A file a snapshot names is missing or differs from what was recorded.
    BadFile {
        /// The snapshot naming it.
        snapshot: String,
        /// The file, relative to the root.
        file: String,
        /// The error, naming the file.
        error: String,
    },
    /// A shared file no retained checkpoint references.
    Orphan {
        /// The file.
        path: String,
    },
    /// A checkpoint directory without `_metadata`: a checkpoint that never completed.
    Incomplete {
        /// The directory.
        dir: String,
    },
    /// A file in a completed checkpoint's directory that its `_metadata` does not name.
    LeftBehind {
        /// The checkpoint (`chk-3`).
        snapshot: String,
        /// The file, relative to the root.
        path: String,
    },
    /// A checkpoint of the job's own references a file of a checkpoint it restored NO_CLAIM,
    /// which stays the earlier job's (and the user's to delete).
    ReferencesUnclaimed {
        /// The job's checkpoint (`chk-7`).
        snapshot: String,
        /// The file, relative to the root.
        file: String,
        /// The checkpoint restored NO_CLAIM that holds it (`chk-4`).
        restored: String,
    },
}

impl fmt::Display for AuditProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditProblem::Unreadable { snapshot, error } => {
                write!(f, "{snapshot}: metadata unreadable: {error}")
            }
            AuditProblem::BadFile {
                snapshot, error, ..
            } => write!(f, "{snapshot}: {error}"),
            AuditProblem::Orphan { path } => {
                write!(f, "{path}: referenced by no retained checkpoint")
            }
            AuditProblem::Incomplete { dir } => write!(f, "{dir}: no _metadata (never completed)"),
            AuditProblem::LeftBehind { path, .. } => {
                write!(f, "{path}: left behind, named by no snapshot")
            }
            AuditProblem::ReferencesUnclaimed {
                snapshot,
                file,
                restored,
            } => write!(
                f,
                "{snapshot}: references {file} of {restored}, which was restored NO_CLAIM"
            ),
        }
    }
}

/// The result of an audit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditReport {
    /// Retained checkpoint ids.
    pub checkpoints: Vec<u64>,
    /// Savepoint names.
    pub savepoints: Vec<String>,
    /// Files verified.
    pub files_checked: usize,
    /// Everything wrong.
    pub problems: Vec<AuditProblem>,
}

/// Checks a file against its recorded size and checksum.
pub fn verify_file(storage: &dyn CheckpointStorage, file: &FileRef) -> Result<(), StorageError> {
    crate::state::snapshot::read_verified(storage, file).map(|_| ())
}

/// What a running job knows that storage alone cannot tell: which checkpoints and savepoints
/// are in flight rather than debris, with the shared files their snapshots name (with
/// concurrent checkpoints, an audit after one completes finds the others' directories and
/// uploads), and which checkpoints are an earlier job's, restored NO_CLAIM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunningJob {
    /// Checkpoints in flight (their directories have no `_metadata` yet).
    pub checkpoints: BTreeSet<u64>,
    /// Savepoints in flight, by name.
    pub savepoints: BTreeSet<String>,
    /// Shared files the acknowledged snapshots of checkpoints in flight name (`shared/<name>`),
    /// which no `_metadata` references yet.
    pub shared: BTreeSet<String>,
    /// Checkpoints up to this one are an earlier job's, restored NO_CLAIM.
    pub unclaimed_up_to: Option<u64>,
}

/// Audits a checkpoint root at rest (see the module doc): nothing in flight.
pub fn audit(storage: &dyn CheckpointStorage) -> Result<AuditReport, StorageError> {
    audit_running(storage, &RunningJob::default())
}

/// Audits a checkpoint root while `running` is under way: what it has in flight is no problem.
/// Savepoints are read with paths relative to their own directory, as they are relocatable.
pub fn audit_running(
    storage: &dyn CheckpointStorage,
    running: &RunningJob,
) -> Result<AuditReport, StorageError> {
    let mut report = AuditReport::default();
    let mut referenced = running.shared.clone();
    let mut shared_by_checkpoint = Vec::new();
    let mut readable = true;
    for (id, complete) in checkpoint_dirs(storage)? {
        if !complete && running.checkpoints.contains(&id) {
            continue;
        }
        if !complete {
            report.problems.push(AuditProblem::Incomplete {
                dir: format!("chk-{id}"),
            });
            continue;
        }
        report.checkpoints.push(id);
        match read_metadata(storage, id) {
            Ok(metadata) => {
                let shared = shared_paths(&metadata);
                referenced.extend(shared.iter().cloned());
                shared_by_checkpoint.push((id, shared));
                audit_left_behind(storage, id, &metadata, &mut report)?;
                for file in metadata.files() {
                    report.files_checked += 1;
                    if let Err(error) = verify_file(storage, file) {
                        report.problems.push(AuditProblem::BadFile {
                            snapshot: format!("chk-{id}"),
                            file: file.path.to_string(),
                            error: error.to_string(),
                        });
                    }
                }
            }
            Err(error) => {
                readable = false;
                report.problems.push(AuditProblem::Unreadable {
                    snapshot: format!("chk-{id}"),
                    error: error.to_string(),
                });
            }
        }
    }
    if let Some(up_to) = running.unclaimed_up_to {
        audit_unclaimed(&shared_by_checkpoint, up_to, &mut report);
    }
    audit_savepoints(storage, running, &mut report)?;
    if readable {
        for name in storage.list(Some(&shared_dir()))? {
            let path = format!("shared/{name}");
            if !referenced.contains(&path) {
                report.problems.push(AuditProblem::Orphan { path });
            }
        }
    }
    Ok(report)
}

/// Checks that checkpoint `id`'s directory holds nothing its `_metadata` does not name: a file
/// there that no snapshot names (channel state or keyed state of a task whose snapshot was
/// replaced, say) was left behind.
fn audit_left_behind(
    storage: &dyn CheckpointStorage,
    id: u64,
    metadata: &CheckpointMetadata,
    report: &mut AuditReport,
) -> Result<(), StorageError> {
    let snapshot = checkpoint_dir(id);
    let named: BTreeSet<String> = metadata
        .files()
        .into_iter()
        .map(|file| file.path.to_string())
        .chain([metadata_path(id).to_string()])
        .collect();
    // Every directory on the way to a named file (a backend's private files sit in one).
    let dirs: BTreeSet<&str> = named
        .iter()
        .flat_map(|path| path.match_indices('/').map(move |(at, _)| &path[..at]))
        .collect();
    let mut pending = vec![snapshot.clone()];
    while let Some(dir) = pending.pop() {
        for name in storage.list(Some(&dir))? {
            let path = dir.join(&name).map_err(|e| StorageError::format(&dir, e))?;
            if dirs.contains(path.as_str()) {
                pending.push(path);
            } else if !named.contains(path.as_str()) {
                report.problems.push(AuditProblem::LeftBehind {
                    snapshot: snapshot.to_string(),
                    path: path.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Checks that no checkpoint of the job's own references a shared file of a checkpoint up to
/// `up_to`, which an earlier job took and this one restored NO_CLAIM: the user may delete it.
fn audit_unclaimed(
    shared_by_checkpoint: &[(u64, Vec<String>)],
    up_to: u64,
    report: &mut AuditReport,
) {
    let (unclaimed, own): (Vec<_>, Vec<_>) = shared_by_checkpoint
        .iter()
        .partition(|(id, _)| *id <= up_to);
    let mut owner = std::collections::BTreeMap::new();
    for (id, files) in unclaimed {
        for file in files {
            owner.entry(file.as_str()).or_insert(*id);
        }
    }
    for (id, files) in own {
        for file in files {
            if let Some(restored) = owner.get(file.as_str()) {
                report.problems.push(AuditProblem::ReferencesUnclaimed {
                    snapshot: format!("chk-{id}"),
                    file: file.clone(),
                    restored: format!("chk-{restored}"),
                });
            }
        }
    }
}

/// Checks every savepoint not in flight: its `_metadata` decodes and names intact files.
fn audit_savepoints(
    storage: &dyn CheckpointStorage,
    running: &RunningJob,
    report: &mut AuditReport,
) -> Result<(), StorageError> {
    let savepoints = RelPath::new("savepoints").expect("a valid relative path");
    for name in storage.list(Some(&savepoints))? {
        if running.savepoints.contains(&name) {
            continue;
        }
        let snapshot = format!("savepoints/{name}");
        report.savepoints.push(name.clone());
        let dir = savepoints
            .join(&name)
            .map_err(|e| StorageError::format(&savepoints, e))?;
        let nested = super::storage::Subdirectory::new(storage, dir);
        match nested
            .read(&RelPath::new("_metadata").expect("valid"))
            .and_then(|bytes| {
                CheckpointMetadata::decode(&bytes).map_err(|e| {
                    StorageError::format(
                        &RelPath::new(&format!("{snapshot}/_metadata")).expect("valid"),
                        e,
                    )
                })
            }) {
            Ok(metadata) => {
                for file in metadata.files() {
                    report.files_checked += 1;
                    if let Err(error) = verify_file(&nested, file) {
                        report.problems.push(AuditProblem::BadFile {
                            snapshot: snapshot.clone(),
                            file: format!("{snapshot}/{}", file.path),
                            error: format!("{snapshot}/{error}"),
                        });
                    }
                }
            }
            Err(error) => report.problems.push(AuditProblem::Unreadable {
                snapshot,
                error: error.to_string(),
            }),
        }
    }
    Ok(())
}
