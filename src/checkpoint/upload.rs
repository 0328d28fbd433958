//! Asynchronous checkpoint upload: the hand-off between the thread that snapshots — it stages a
//! checkpoint's files in memory and goes back to processing records — and the uploader that
//! writes them to checkpoint storage (Flink's asynchronous snapshot phase).
//!
//! One mutex guards the whole hand-off and one condition variable announces every change, so
//! these rules hold at every moment, whatever the interleaving:
//! - a checkpoint is queued, uploading, uploaded (awaiting the coordinator), retained, or gone;
//! - every submitted checkpoint gets exactly one upload outcome ([`UploadEvent`]): uploaded,
//!   failed, or aborted if an abort came before the upload finished. None is lost, none doubled;
//! - an aborted checkpoint never completes, and a completed one is never aborted;
//! - a shared file is deleted only under the lock, and only if no queued, uploading, uploaded or
//!   retained checkpoint references it; a part may reuse a shared file only while a live
//!   checkpoint holds it. So deletion and reuse cannot race: a reuse that comes too late is
//!   refused (the checkpoint fails), never left pointing at a deleted file.
//!
//! Threads: in real use the uploader runs [`Uploads::run_uploader`] on a thread of its own.
//! Single-threaded callers — the simulated runtime's deterministic world, or a benchmark with
//! upload off — call [`Uploads::upload_next`] where they choose, and the same code runs with
//! no thread at all. Its synchronisation comes from [`crate::sync`], which is loom's under
//! `--cfg loom`: the loom tests below explore the races between uploader and coordinator.
//!
//! ```
//! use std::collections::BTreeSet;
//! use faultline::checkpoint::upload::{PartId, Submission, UploadError, UploadEvent, Uploads};
//! use faultline::checkpoint::RelPath;
//!
//! let uploads = Uploads::new();
//! let sst = RelPath::new("shared/keyed0-0-c1-000008.sst")?;
//! let part = PartId { checkpoint_id: 1, part: 0 };
//! uploads
//!     .submit(Submission {
//!         id: part,
//!         files: vec![(sst.clone(), b"sst bytes".to_vec())],
//!         shared: BTreeSet::from([sst.clone()]),
//!     })
//!     .expect("a fresh part");
//! // The uploader (a thread in real use) writes it; here, inline.
//! let mut written = Vec::new();
//! assert!(uploads.upload_next(&mut |path, _bytes| {
//!     written.push(path.clone());
//!     Ok(())
//! }));
//! assert_eq!(uploads.take_events(), vec![UploadEvent::Uploaded(part)]);
//! uploads.complete(1, 1).expect("every part uploaded");
//! // A retained checkpoint holds its shared file: garbage collection leaves it alone.
//! assert!(uploads.delete_unreferenced(&[sst.clone()], &mut |_| {}).is_empty());
//! // Reusing a file no live checkpoint holds is refused, so it can never point at a deleted file.
//! let stray = RelPath::new("shared/never-written.sst")?;
//! let refused = uploads.submit(Submission {
//!     id: PartId { checkpoint_id: 2, part: 0 },
//!     files: Vec::new(),
//!     shared: BTreeSet::from([stray]),
//! });
//! assert!(matches!(refused, Err(UploadError::Unregistered { .. })));
//! # Ok::<(), faultline::checkpoint::FormatError>(())
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::{CheckpointStorage, FileRef, RelPath, StorageError};
use crate::sync::{Arc, Condvar, Mutex, MutexGuard};

/// A file staged by a snapshot: where it goes and its bytes.
pub type StagedFile = (RelPath, Vec<u8>);

/// One subtask's part of a checkpoint: the unit of upload (each subtask snapshots and uploads
/// its own files, as in Flink's asynchronous phase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartId {
    /// The checkpoint.
    pub checkpoint_id: u64,
    /// The part within it (the subtask's index in the job).
    pub part: u32,
}

impl std::fmt::Display for PartId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "chk-{} part {}", self.checkpoint_id, self.part)
    }
}

/// A part of a checkpoint handed to the uploader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// Which part of which checkpoint.
    pub id: PartId,
    /// Files to write, in order.
    pub files: Vec<StagedFile>,
    /// Every shared file the part references: those among `files` and those it reuses from
    /// earlier checkpoints. None of them may be deleted while the checkpoint lives.
    pub shared: BTreeSet<RelPath>,
}

/// The outcome of one submission's upload.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UploadEvent {
    /// Every file is written: once all its parts are, the coordinator may complete (or abort)
    /// the checkpoint.
    Uploaded(PartId),
    /// The checkpoint was aborted before this part's upload finished; the part is gone.
    Aborted(PartId),
    /// A write failed; the part is gone (the coordinator aborts the checkpoint).
    Failed {
        /// The part.
        id: PartId,
        /// The storage error.
        reason: String,
    },
}

impl UploadEvent {
    /// The part the outcome is about.
    pub fn id(&self) -> PartId {
        match self {
            UploadEvent::Uploaded(id) | UploadEvent::Aborted(id) => *id,
            UploadEvent::Failed { id, .. } => *id,
        }
    }
}

/// A request the hand-off refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UploadError {
    /// The checkpoint has no part here: never submitted, or already gone.
    #[error("checkpoint {0} is not known to the uploader (never submitted, or already gone)")]
    Unknown(u64),
    /// Completion before every part's upload finished.
    #[error("checkpoint {0} cannot complete: the upload of a part has not finished")]
    NotUploaded(u64),
    /// Abort of a completed checkpoint.
    #[error("checkpoint {0} cannot be aborted: it completed")]
    Completed(u64),
    /// A part of a checkpoint already aborted, completed or subsumed.
    #[error("{0}: its checkpoint is already aborted, completed or subsumed")]
    Closed(PartId),
    /// Completion with parts missing.
    #[error(
        "checkpoint {checkpoint_id} cannot complete: {found} of its {expected} parts are here"
    )]
    PartsMissing {
        /// The checkpoint.
        checkpoint_id: u64,
        /// Parts it has.
        found: usize,
        /// Parts it should have.
        expected: usize,
    },
    /// Subsumption of a checkpoint that never completed.
    #[error("checkpoint {0} cannot be subsumed: it never completed")]
    NotCompleted(u64),
    /// The same part twice.
    #[error("{0} was submitted twice")]
    Duplicate(PartId),
    /// A part reuses a shared file no uploaded or retained checkpoint holds: it may be deleted
    /// already, or never have been written.
    #[error("{id} reuses {path}, which no uploaded or retained checkpoint holds")]
    Unregistered {
        /// The part.
        id: PartId,
        /// The shared file.
        path: RelPath,
    },
    /// Submission after shutdown.
    #[error("the uploader has shut down")]
    ShutDown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Queued,
    Uploading,
    Uploaded,
    Retained,
}

#[derive(Debug)]
struct Entry {
    phase: Phase,
    shared: BTreeSet<RelPath>,
    abort_requested: bool,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<(PartId, Vec<StagedFile>)>,
    parts: BTreeMap<PartId, Entry>,
    /// Checkpoints aborted or subsumed: no part of them may come back.
    closed: BTreeSet<u64>,
    events: VecDeque<UploadEvent>,
    shutdown: bool,
}

impl State {
    /// The ids of `checkpoint_id`'s parts, in order.
    fn parts_of(&self, checkpoint_id: u64) -> Vec<PartId> {
        let first = PartId {
            checkpoint_id,
            part: 0,
        };
        self.parts
            .range(first..)
            .take_while(|(id, _)| id.checkpoint_id == checkpoint_id)
            .map(|(id, _)| *id)
            .collect()
    }
}

/// The hand-off; clones share it.
#[derive(Clone)]
pub struct Uploads {
    inner: Arc<(Mutex<State>, Condvar)>,
}

impl Default for Uploads {
    fn default() -> Self {
        Self {
            inner: Arc::new((Mutex::new(State::default()), Condvar::new())),
        }
    }
}

impl std::fmt::Debug for Uploads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploads")
            .field("live", &self.live())
            .finish()
    }
}

/// What writes one staged file to storage.
pub type WriteFile<'a> = dyn FnMut(&RelPath, &[u8]) -> Result<(), StorageError> + 'a;

impl Uploads {
    /// An empty hand-off.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state half-changed: nothing can go on.
        self.inner
            .0
            .lock()
            .expect("the upload hand-off lock is never poisoned")
    }

    fn changed(&self) {
        self.inner.1.notify_all();
    }

    /// Queues a part's files and registers every shared file it references. A shared file it
    /// does not upload itself must be held by a live checkpoint.
    pub fn submit(&self, submission: Submission) -> Result<(), UploadError> {
        let mut state = self.lock();
        if state.shutdown {
            return Err(UploadError::ShutDown);
        }
        if state.parts.contains_key(&submission.id) {
            return Err(UploadError::Duplicate(submission.id));
        }
        let checkpoint_id = submission.id.checkpoint_id;
        let completed = state
            .parts_of(checkpoint_id)
            .iter()
            .any(|id| state.parts[id].phase == Phase::Retained);
        if completed || state.closed.contains(&checkpoint_id) {
            return Err(UploadError::Closed(submission.id));
        }
        let uploads: BTreeSet<&RelPath> = submission.files.iter().map(|(path, _)| path).collect();
        if let Some(path) = submission
            .shared
            .iter()
            .find(|path| !uploads.contains(path) && !held(&state, path))
        {
            return Err(UploadError::Unregistered {
                id: submission.id,
                path: path.clone(),
            });
        }
        state.parts.insert(
            submission.id,
            Entry {
                phase: Phase::Queued,
                shared: submission.shared,
                abort_requested: false,
            },
        );
        state.queue.push_back((submission.id, submission.files));
        drop(state);
        self.changed();
        Ok(())
    }

    /// Uploads the next queued part with `write`, on the calling thread; `false` if none was
    /// queued. An abort is honoured between files.
    pub fn upload_next(&self, write: &mut WriteFile<'_>) -> bool {
        let (id, files) = {
            let mut state = self.lock();
            let Some((id, files)) = state.queue.pop_front() else {
                return false;
            };
            state
                .parts
                .get_mut(&id)
                .expect("a queued part is registered")
                .phase = Phase::Uploading;
            (id, files)
        };
        let mut failure = None;
        for (path, bytes) in &files {
            let aborted = self
                .lock()
                .parts
                .get(&id)
                .is_some_and(|entry| entry.abort_requested);
            if aborted {
                break;
            }
            if let Err(error) = write(path, bytes) {
                failure = Some(error.to_string());
                break;
            }
        }
        let mut state = self.lock();
        let entry = state
            .parts
            .get_mut(&id)
            .expect("an uploading part stays registered until its upload ends");
        let event = if entry.abort_requested {
            state.parts.remove(&id);
            UploadEvent::Aborted(id)
        } else if let Some(reason) = failure {
            state.parts.remove(&id);
            UploadEvent::Failed { id, reason }
        } else {
            entry.phase = Phase::Uploaded;
            UploadEvent::Uploaded(id)
        };
        state.events.push_back(event);
        drop(state);
        self.changed();
        true
    }

    /// The uploader thread's loop: uploads queued parts as they come, until
    /// [`Uploads::shutdown`] and an empty queue.
    pub fn run_uploader(&self, write: &mut WriteFile<'_>) {
        loop {
            if self.upload_next(write) {
                continue;
            }
            let state = self.lock();
            if state.shutdown && state.queue.is_empty() {
                return;
            }
            if state.queue.is_empty() {
                // Woken by a submission or the shutdown; spurious wake-ups just loop.
                drop(
                    self.inner
                        .1
                        .wait(state)
                        .expect("the upload hand-off lock is never poisoned"),
                );
            }
        }
    }

    /// Asks the uploader to stop once the queue is empty; later submissions are refused.
    pub fn shutdown(&self) {
        self.lock().shutdown = true;
        self.changed();
    }

    /// Upload outcomes not yet taken, in the order they happened.
    pub fn take_events(&self) -> Vec<UploadEvent> {
        self.lock().events.drain(..).collect()
    }

    /// Waits for the next upload outcome; `None` once no submitted part can produce one.
    pub fn wait_event(&self) -> Option<UploadEvent> {
        let mut state = self.lock();
        loop {
            if let Some(event) = state.events.pop_front() {
                return Some(event);
            }
            let pending = state
                .parts
                .values()
                .any(|entry| matches!(entry.phase, Phase::Queued | Phase::Uploading));
            if !pending {
                return None;
            }
            state = self
                .inner
                .1
                .wait(state)
                .expect("the upload hand-off lock is never poisoned");
        }
    }

    /// Registers a checkpoint completed before this hand-off existed (one a restarted job
    /// restored, or retains) with the shared files it references, as retained.
    pub fn adopt(&self, checkpoint_id: u64, shared: BTreeSet<RelPath>) -> Result<(), UploadError> {
        let mut state = self.lock();
        let id = PartId {
            checkpoint_id,
            part: 0,
        };
        if !state.parts_of(checkpoint_id).is_empty() {
            return Err(UploadError::Duplicate(id));
        }
        state.parts.insert(
            id,
            Entry {
                phase: Phase::Retained,
                shared,
                abort_requested: false,
            },
        );
        Ok(())
    }

    /// Whether any part of `checkpoint_id` is here.
    pub fn knows(&self, checkpoint_id: u64) -> bool {
        !self.lock().parts_of(checkpoint_id).is_empty()
    }

    /// The coordinator completes a checkpoint of `parts` parts, all uploaded (after writing its
    /// `_metadata`): it is retained until subsumed.
    pub fn complete(&self, checkpoint_id: u64, parts: usize) -> Result<(), UploadError> {
        let mut state = self.lock();
        let ids = state.parts_of(checkpoint_id);
        if ids.is_empty() {
            return Err(UploadError::Unknown(checkpoint_id));
        }
        if ids.len() != parts {
            return Err(UploadError::PartsMissing {
                checkpoint_id,
                found: ids.len(),
                expected: parts,
            });
        }
        if ids
            .iter()
            .any(|id| matches!(state.parts[id].phase, Phase::Queued | Phase::Uploading))
        {
            return Err(UploadError::NotUploaded(checkpoint_id));
        }
        for id in ids {
            state.parts.get_mut(&id).expect("listed above").phase = Phase::Retained;
        }
        Ok(())
    }

    /// Aborts a checkpoint: a queued part is dropped at once (its outcome: aborted), an
    /// uploading one stops after the file in flight (the uploader reports it aborted), an
    /// uploaded one is forgotten.
    pub fn abort(&self, checkpoint_id: u64) -> Result<(), UploadError> {
        let mut state = self.lock();
        let ids = state.parts_of(checkpoint_id);
        if ids.is_empty() {
            return Err(UploadError::Unknown(checkpoint_id));
        }
        if ids
            .iter()
            .any(|id| state.parts[id].phase == Phase::Retained)
        {
            return Err(UploadError::Completed(checkpoint_id));
        }
        state.closed.insert(checkpoint_id);
        for id in ids {
            match state.parts[&id].phase {
                Phase::Queued => {
                    state.queue.retain(|(queued, _)| *queued != id);
                    state.parts.remove(&id);
                    state.events.push_back(UploadEvent::Aborted(id));
                }
                Phase::Uploading => {
                    state
                        .parts
                        .get_mut(&id)
                        .expect("listed above")
                        .abort_requested = true;
                }
                Phase::Uploaded | Phase::Retained => {
                    state.parts.remove(&id);
                }
            }
        }
        drop(state);
        self.changed();
        Ok(())
    }

    /// A newer checkpoint subsumed a retained one: its references go.
    pub fn subsume(&self, checkpoint_id: u64) -> Result<(), UploadError> {
        let mut state = self.lock();
        let ids = state.parts_of(checkpoint_id);
        if ids.is_empty() {
            return Err(UploadError::Unknown(checkpoint_id));
        }
        if ids
            .iter()
            .any(|id| state.parts[id].phase != Phase::Retained)
        {
            return Err(UploadError::NotCompleted(checkpoint_id));
        }
        state.closed.insert(checkpoint_id);
        for id in ids {
            state.parts.remove(&id);
        }
        Ok(())
    }

    /// Whether any live part references `path`.
    pub fn is_referenced(&self, path: &RelPath) -> bool {
        referenced(&self.lock(), path)
    }

    /// Deletes, with `delete`, each of `candidates` that no live part references, while holding
    /// the lock (so no checkpoint can register it in between); returns what it deleted. A
    /// temporary file (`.name.tmp`, a write in progress or the debris of a crashed one) counts
    /// as the file it becomes: an upload in flight keeps its own.
    pub fn delete_unreferenced(
        &self,
        candidates: &[RelPath],
        delete: &mut dyn FnMut(&RelPath),
    ) -> Vec<RelPath> {
        let state = self.lock();
        let mut deleted = Vec::new();
        for path in candidates {
            if !referenced(&state, &final_name(path)) {
                delete(path);
                deleted.push(path.clone());
            }
        }
        deleted
    }

    /// Checkpoints with a part here, in id order (for traces and tests).
    pub fn live(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .lock()
            .parts
            .keys()
            .map(|id| id.checkpoint_id)
            .collect();
        ids.dedup();
        ids
    }
}

/// The snapshot side of the hand-off: a [`CheckpointStorage`] that keeps what a snapshot writes
/// in memory (its [`FileRef`]s are final: size and checksum of the staged bytes) and reads the
/// rest from the real storage, so the snapshot finishes without waiting for any upload.
pub struct Staging<'a> {
    storage: &'a dyn CheckpointStorage,
    files: Vec<StagedFile>,
}

impl<'a> Staging<'a> {
    /// Stages writes over `storage`, which it only reads.
    pub fn new(storage: &'a dyn CheckpointStorage) -> Self {
        Self {
            storage,
            files: Vec::new(),
        }
    }

    /// The staged files, in the order they were written.
    pub fn into_files(self) -> Vec<StagedFile> {
        self.files
    }

    fn staged(&self, path: &RelPath) -> Option<&[u8]> {
        self.files
            .iter()
            .rev()
            .find(|(staged, _)| staged == path)
            .map(|(_, bytes)| bytes.as_slice())
    }
}

impl CheckpointStorage for Staging<'_> {
    fn root(&self) -> &std::path::Path {
        self.storage.root()
    }

    fn write(&mut self, path: &RelPath, bytes: &[u8]) -> Result<FileRef, StorageError> {
        self.files.push((path.clone(), bytes.to_vec()));
        Ok(FileRef::of(path.clone(), bytes))
    }

    fn read(&self, path: &RelPath) -> Result<Vec<u8>, StorageError> {
        match self.staged(path) {
            Some(bytes) => Ok(bytes.to_vec()),
            None => self.storage.read(path),
        }
    }

    fn exists(&self, path: &RelPath) -> bool {
        self.staged(path).is_some() || self.storage.exists(path)
    }

    fn list(&self, dir: Option<&RelPath>) -> Result<Vec<String>, StorageError> {
        let mut names: BTreeSet<String> = self.storage.list(dir)?.into_iter().collect();
        for (path, _) in &self.files {
            let (parent, name) = match path.as_str().rsplit_once('/') {
                Some((parent, name)) => (Some(parent), name),
                None => (None, path.as_str()),
            };
            if parent == dir.map(RelPath::as_str) {
                names.insert(name.to_string());
            }
        }
        Ok(names.into_iter().collect())
    }

    fn remove_file(&mut self, path: &RelPath) -> Result<(), StorageError> {
        Err(refused(path))
    }

    fn remove_dir(&mut self, dir: &RelPath) -> Result<(), StorageError> {
        Err(refused(dir))
    }
}

/// A snapshot only writes: deletion belongs to the coordinator, under the hand-off's lock.
fn refused(path: &RelPath) -> StorageError {
    StorageError::Io {
        path: path.to_string(),
        source: std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "a staged snapshot cannot delete; the coordinator does, after the upload",
        ),
    }
}

/// Whether an uploaded or retained part holds `path`: only such a file may be reused (a queued
/// part's file may never be written).
fn held(state: &State, path: &RelPath) -> bool {
    state.parts.values().any(|entry| {
        matches!(entry.phase, Phase::Uploaded | Phase::Retained) && entry.shared.contains(path)
    })
}

/// The file a temporary file becomes once written: `shared/x.sst` for `shared/.x.sst.tmp`.
fn final_name(path: &RelPath) -> RelPath {
    let name = path.file_name();
    let Some(stem) = name
        .strip_prefix('.')
        .and_then(|rest| rest.strip_suffix(".tmp"))
    else {
        return path.clone();
    };
    let dir = &path.as_str()[..path.as_str().len() - name.len()];
    RelPath::new(&format!("{dir}{stem}")).unwrap_or_else(|_| path.clone())
}

fn referenced(state: &State, path: &RelPath) -> bool {
    state
        .parts
        .values()
        .any(|entry| entry.shared.contains(path))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn path(name: &str) -> RelPath {
        RelPath::new(name).unwrap()
    }

    /// Part 0 of checkpoint `checkpoint_id`.
    fn part(checkpoint_id: u64) -> PartId {
        PartId {
            checkpoint_id,
            part: 0,
        }
    }

    fn submission(id: u64, shared: &[&str]) -> Submission {
        Submission {
            id: part(id),
            files: shared
                .iter()
                .map(|name| (path(name), name.as_bytes().to_vec()))
                .chain([(path(&format!("chk-{id}/state")), vec![1, 2, 3])])
                .collect(),
            shared: shared.iter().map(|name| path(name)).collect(),
        }
    }

    #[test]
    fn single_threaded_upload_completes_subsumes_and_deletes_in_order() {
        let uploads = Uploads::new();
        let mut written = Vec::new();
        let mut write = |p: &RelPath, _: &[u8]| {
            written.push(p.to_string());
            Ok(())
        };
        uploads.submit(submission(1, &["shared/a"])).unwrap();
        uploads
            .submit(submission(2, &["shared/a", "shared/b"]))
            .unwrap();
        assert_eq!(
            uploads.submit(submission(2, &[])),
            Err(UploadError::Duplicate(part(2)))
        );
        assert_eq!(uploads.complete(1, 1), Err(UploadError::NotUploaded(1)));
        assert!(uploads.upload_next(&mut write));
        assert!(uploads.upload_next(&mut write));
        assert!(!uploads.upload_next(&mut write));
        assert_eq!(
            uploads.take_events(),
            [
                UploadEvent::Uploaded(part(1)),
                UploadEvent::Uploaded(part(2))
            ]
        );
        uploads.complete(1, 1).unwrap();
        uploads.complete(2, 1).unwrap();
        assert_eq!(uploads.abort(2), Err(UploadError::Completed(2)));
        uploads.subsume(1).unwrap();
        let candidates = [path("shared/a"), path("shared/b")];
        let deleted = uploads.delete_unreferenced(&candidates, &mut |_| {});
        assert!(deleted.is_empty(), "checkpoint 2 still references both");
        uploads.subsume(2).unwrap();
        let deleted = uploads.delete_unreferenced(&candidates, &mut |_| {});
        assert_eq!(deleted, candidates);
        assert_eq!(
            written,
            [
                "shared/a",
                "chk-1/state",
                "shared/a",
                "shared/b",
                "chk-2/state"
            ]
        );
    }

    #[test]
    fn a_queued_abort_reports_once_and_a_failed_write_ends_the_checkpoint() {
        let uploads = Uploads::new();
        uploads.submit(submission(1, &["shared/a"])).unwrap();
        uploads.submit(submission(2, &["shared/b"])).unwrap();
        uploads.abort(1).unwrap();
        assert_eq!(uploads.abort(1), Err(UploadError::Unknown(1)));
        let mut failing = |path: &RelPath, _: &[u8]| {
            Err(StorageError::Io {
                path: path.to_string(),
                source: std::io::Error::other("disk full"),
            })
        };
        assert!(uploads.upload_next(&mut failing));
        assert_eq!(
            uploads.take_events(),
            [
                UploadEvent::Aborted(part(1)),
                UploadEvent::Failed {
                    id: part(2),
                    reason: "shared/b: disk full".into()
                }
            ]
        );
        assert!(uploads.live().is_empty());
        assert_eq!(uploads.wait_event(), None, "nothing can report any more");
    }

    #[test]
    fn a_checkpoint_completes_once_every_part_is_uploaded_and_aborts_as_a_whole() {
        let uploads = Uploads::new();
        let second = |checkpoint_id| PartId {
            checkpoint_id,
            part: 1,
        };
        for id in [1, 2] {
            uploads.submit(submission(id, &["shared/a"])).unwrap();
            let mut other = submission(id, &["shared/b"]);
            other.id = second(id);
            uploads.submit(other).unwrap();
        }
        let mut ok = |_: &RelPath, _: &[u8]| Ok(());
        assert!(uploads.upload_next(&mut ok));
        assert_eq!(uploads.complete(1, 2), Err(UploadError::NotUploaded(1)));
        assert!(uploads.upload_next(&mut ok));
        assert_eq!(
            uploads.complete(1, 3),
            Err(UploadError::PartsMissing {
                checkpoint_id: 1,
                found: 2,
                expected: 3
            })
        );
        uploads.complete(1, 2).unwrap();
        // Checkpoint 2: one part uploaded, one still queued; the abort takes both.
        assert!(uploads.upload_next(&mut ok));
        uploads.abort(2).unwrap();
        assert!(
            !uploads.upload_next(&mut ok),
            "the queued part went with the abort"
        );
        assert_eq!(
            uploads.take_events(),
            [
                UploadEvent::Uploaded(part(1)),
                UploadEvent::Uploaded(second(1)),
                UploadEvent::Uploaded(part(2)),
                UploadEvent::Aborted(second(2)),
            ]
        );
        assert_eq!(uploads.live(), [1]);
        assert_eq!(uploads.subsume(2), Err(UploadError::Unknown(2)));
        // An aborted or completed checkpoint takes no further part.
        for id in [1, 2] {
            let mut late = submission(id, &[]);
            late.id.part = 7;
            assert_eq!(
                uploads.submit(late),
                Err(UploadError::Closed(PartId {
                    checkpoint_id: id,
                    part: 7
                }))
            );
        }
        assert_eq!(uploads.abort(1), Err(UploadError::Completed(1)));
        uploads.subsume(1).unwrap();
        assert!(!uploads.is_referenced(&path("shared/b")));
    }

    #[test]
    fn reusing_a_shared_file_no_live_checkpoint_holds_is_refused() {
        let uploads = Uploads::new();
        uploads
            .adopt(1, [path("shared/a")].into_iter().collect())
            .unwrap();
        let reuse = |id| Submission {
            id: part(id),
            files: Vec::new(),
            shared: [path("shared/a")].into_iter().collect(),
        };
        uploads.submit(reuse(2)).unwrap();
        assert!(uploads.upload_next(&mut |_, _| Ok(())));
        uploads.complete(2, 1).unwrap();
        uploads.subsume(1).unwrap();
        uploads.subsume(2).unwrap();
        assert_eq!(
            uploads.submit(reuse(3)),
            Err(UploadError::Unregistered {
                id: part(3),
                path: path("shared/a")
            })
        );
    }

    #[test]
    fn a_real_uploader_thread_drains_the_queue_and_stops() {
        let uploads = Uploads::new();
        let worker = uploads.clone();
        #[allow(clippy::disallowed_methods)]
        // The real-use uploader thread, outside any simulation.
        let thread = std::thread::spawn(move || {
            let mut count = 0;
            worker.run_uploader(&mut |_, _| {
                count += 1;
                Ok(())
            });
            count
        });
        for id in 1..=20 {
            uploads.submit(submission(id, &["shared/x"])).unwrap();
        }
        let mut uploaded = Vec::new();
        while uploaded.len() < 20 {
            match uploads.wait_event() {
                Some(UploadEvent::Uploaded(id)) => uploaded.push(id.checkpoint_id),
                other => panic!("unexpected {other:?}"),
            }
        }
        uploads.shutdown();
        assert_eq!(thread.join().unwrap(), 40, "two files per checkpoint");
        assert_eq!(uploaded, (1..=20).collect::<Vec<_>>());
        assert_eq!(
            uploads.submit(submission(21, &[])),
            Err(UploadError::ShutDown)
        );
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! Run with `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release
    //! --no-default-features --lib loom_tests`.

    use super::*;
    use crate::sync::thread;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn path(name: &str) -> RelPath {
        RelPath::new(name).unwrap()
    }

    /// Part 0 of checkpoint `checkpoint_id`.
    fn part(checkpoint_id: u64) -> PartId {
        PartId {
            checkpoint_id,
            part: 0,
        }
    }

    /// Runs `body` under loom and reports how many interleavings it explored.
    fn model(name: &str, body: impl Fn() + Sync + Send + 'static) {
        let explored = std::sync::Arc::new(AtomicUsize::new(0));
        let counter = explored.clone();
        loom::model(move || {
            counter.fetch_add(1, Ordering::Relaxed);
            body();
        });
        let explored = explored.load(Ordering::Relaxed);
        eprintln!("loom {name}: {explored} interleavings");
        assert!(explored > 1, "{name}: loom explored a single interleaving");
    }

    /// Storage the uploader writes to and the coordinator deletes from.
    type Store = Arc<Mutex<BTreeSet<RelPath>>>;

    fn uploader(uploads: &Uploads, store: &Store) -> thread::JoinHandle<()> {
        let (uploads, store) = (uploads.clone(), store.clone());
        thread::spawn(move || {
            uploads.run_uploader(&mut |path, _| {
                store.lock().unwrap().insert(path.clone());
                Ok(())
            })
        })
    }

    fn submission(id: u64, shared: &[&str]) -> Submission {
        Submission {
            id: part(id),
            files: shared.iter().map(|name| (path(name), Vec::new())).collect(),
            shared: shared.iter().map(|name| path(name)).collect(),
        }
    }

    /// Complete and abort race with the upload: exactly one outcome, and an aborted checkpoint
    /// never completes.
    #[test]
    fn complete_and_abort_race_with_the_upload() {
        model("complete and abort race", || {
            let uploads = Uploads::new();
            let store = Store::new(Mutex::new(BTreeSet::new()));
            uploads.submit(submission(1, &["shared/a"])).unwrap();
            let thread = uploader(&uploads, &store);
            uploads.abort(1).unwrap();
            // Aborted while queued or uploading; or uploaded first, then forgotten by abort.
            let outcome = uploads.wait_event();
            assert!(
                outcome == Some(UploadEvent::Aborted(part(1)))
                    || outcome == Some(UploadEvent::Uploaded(part(1))),
                "unexpected outcome {outcome:?}"
            );
            assert_eq!(uploads.complete(1, 1), Err(UploadError::Unknown(1)));
            uploads.shutdown();
            thread.join().unwrap();
            assert!(uploads.take_events().is_empty(), "no second outcome");
            assert!(uploads.live().is_empty());
        });
    }

    /// A shared file a retained checkpoint and an in-flight one both reference survives the
    /// retained one's subsumption and collection, whatever the interleaving.
    #[test]
    fn a_shared_file_is_never_deleted_while_an_in_flight_checkpoint_references_it() {
        model("shared file in flight", || {
            let uploads = Uploads::new();
            let store = Store::new(Mutex::new(BTreeSet::new()));
            store.lock().unwrap().insert(path("shared/a"));
            uploads.submit(submission(1, &["shared/a"])).unwrap();
            assert!(uploads.upload_next(&mut |_, _| Ok(())));
            assert_eq!(uploads.take_events(), [UploadEvent::Uploaded(part(1))]);
            uploads.complete(1, 1).unwrap();

            // Checkpoint 2 reuses shared/a while the coordinator subsumes 1 and collects.
            let thread = uploader(&uploads, &store);
            uploads
                .submit(submission(2, &["shared/a", "shared/b"]))
                .unwrap();
            uploads.subsume(1).unwrap();
            let deleted = uploads.delete_unreferenced(&[path("shared/a")], &mut |p| {
                store.lock().unwrap().remove(p);
            });
            assert!(deleted.is_empty(), "checkpoint 2 references shared/a");
            assert_eq!(uploads.wait_event(), Some(UploadEvent::Uploaded(part(2))));
            uploads.complete(2, 1).unwrap();
            uploads.shutdown();
            thread.join().unwrap();
            let store = store.lock().unwrap();
            assert!(store.contains(&path("shared/a")) && store.contains(&path("shared/b")));
        });
    }

    /// A checkpoint reusing a shared file races with the subsumption of the checkpoint that
    /// held it and the collection of unreferenced files: either the reuse registers first and
    /// the file survives, or the collection comes first and the reuse is refused. Never both
    /// a registered reuse and a deleted file.
    #[test]
    fn reuse_and_deletion_of_a_shared_file_never_both_succeed() {
        model("reuse against deletion", || {
            let uploads = Uploads::new();
            let store = Store::new(Mutex::new(BTreeSet::new()));
            store.lock().unwrap().insert(path("shared/a"));
            uploads
                .adopt(1, [path("shared/a")].into_iter().collect())
                .unwrap();
            let collector = {
                let (uploads, store) = (uploads.clone(), store.clone());
                thread::spawn(move || {
                    uploads.subsume(1).unwrap();
                    uploads.delete_unreferenced(&[path("shared/a")], &mut |p| {
                        store.lock().unwrap().remove(p);
                    })
                })
            };
            let reused = uploads.submit(Submission {
                id: part(2),
                files: Vec::new(),
                shared: [path("shared/a")].into_iter().collect(),
            });
            let deleted = collector.join().unwrap();
            let present = store.lock().unwrap().contains(&path("shared/a"));
            match reused {
                Ok(()) => assert!(
                    deleted.is_empty() && present,
                    "a registered reuse was deleted"
                ),
                Err(UploadError::Unregistered { .. }) => {
                    assert!(!deleted.is_empty() && !present)
                }
                Err(other) => panic!("unexpected {other}"),
            }
        });
    }

    /// Two checkpoints, an abort of the first racing with the uploader: every submission gets
    /// its outcome and a blocked waiter is always woken (a lost wake-up deadlocks, which loom
    /// reports).
    #[test]
    fn no_outcome_is_lost_and_no_waiter_sleeps_forever() {
        model("no lost outcome", || {
            let uploads = Uploads::new();
            let store = Store::new(Mutex::new(BTreeSet::new()));
            let thread = uploader(&uploads, &store);
            uploads.submit(submission(1, &["shared/a"])).unwrap();
            uploads.submit(submission(2, &["shared/b"])).unwrap();
            uploads.abort(1).unwrap();
            let mut outcomes = BTreeMap::new();
            while let Some(event) = uploads.wait_event() {
                let id = event.id().checkpoint_id;
                assert!(
                    outcomes.insert(id, event).is_none(),
                    "one outcome per checkpoint"
                );
            }
            assert_eq!(outcomes.get(&2), Some(&UploadEvent::Uploaded(part(2))));
            // Checkpoint 1: aborted, or uploaded before the abort and then forgotten.
            let first = outcomes.get(&1);
            assert!(
                first == Some(&UploadEvent::Aborted(part(1)))
                    || first == Some(&UploadEvent::Uploaded(part(1))),
                "unexpected outcome {first:?}"
            );
            uploads.shutdown();
            thread.join().unwrap();
        });
    }
}
