//! `faultline bench checkpoints`: the tutorial's full-versus-incremental experiment, done with
//! real keyed state. A keyed workload of `keys` values of `value_bytes` random bytes is loaded;
//! before each of `checkpoints` checkpoints a `changed_fraction` of the keys gets new values.
//! Each backend is driven through the same `StateBackend` seam, storage, retention
//! (`num_retained` 1) and shared-file collection the runtime uses; every checkpoint's bytes
//! written, bytes retained, files written and reused, and wall time are measured, then one
//! restore of the last checkpoint.
//!
//! Snapshots go through the upload hand-off ([`crate::checkpoint::upload`]): the snapshot
//! stages its files in memory, then either an uploader thread writes them while the workload
//! goes on (`async_upload`, Flink's asynchronous phase), or the same hand-off uploads them at
//! once on the workload's thread. Completion, retention and shared-file deletion happen when
//! the upload is done, and never delete a file an in-flight checkpoint references.
//!
//! Wall time is measured here, outside any simulated run: benchmarks report it and nothing
//! feeds it back into a simulation.
//!
//! ```
//! use faultline::bench::{run, BenchParams};
//! use faultline::state::BackendKind;
//!
//! let mut params = BenchParams::default();
//! params.keys = 200;
//! params.checkpoints = 3;
//! params.backends = vec![BackendKind::Memory];
//! let dir = tempfile::tempdir()?;
//! let report = run(&params, dir.path(), &mut |_backend| {})?;
//! let memory = &report.backends[0];
//! assert_eq!(memory.checkpoints.len(), 3);
//! assert_eq!(memory.restored_entries, 200);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod chart;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::checkpoint::canonical::Compression;
use crate::checkpoint::upload::{PartId, Staging, Submission, UploadEvent, Uploads};
use crate::checkpoint::{
    registry, CheckpointMetadata, CheckpointStorage, Durability, FsCheckpointStorage,
    KeyedStateHandle, RelPath, SnapshotKind, StageSnapshot, SubtaskSnapshot,
};
use crate::job::keygroup::key_group_for;
use crate::state::{
    BackendContext, BackendKind, KeyGroupRange, KeyedContext, RestoreHandle, RestoreMode,
    SnapshotPurpose, SnapshotTarget, StateBackend, ValueState,
};

pub use chart::draw_chart;

/// The workload.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BenchParams {
    /// Keys of keyed state. Default 100,000.
    pub keys: u64,
    /// Bytes per value (random, so incompressible). Default 100.
    pub value_bytes: usize,
    /// Fraction of keys changed before each checkpoint after the first. Default 0.01.
    pub changed_fraction: f64,
    /// Checkpoints taken. Default 10.
    pub checkpoints: u32,
    /// Backends measured. Default all.
    pub backends: Vec<BackendKind>,
    /// Seed of keys and values. Default 1.
    pub seed: u64,
    /// Upload checkpoint files on a background thread while the workload goes on. Default off.
    pub async_upload: bool,
    /// Sync every checkpoint file and directory to disk, as real checkpoint storage must.
    /// Default off (the page cache).
    pub fsync: bool,
}

impl Default for BenchParams {
    fn default() -> Self {
        Self {
            keys: 100_000,
            value_bytes: 100,
            changed_fraction: 0.01,
            checkpoints: 10,
            backends: BackendKind::all(),
            seed: 1,
            async_upload: false,
            fsync: false,
        }
    }
}

/// One checkpoint's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckpointFigures {
    /// 1-based.
    pub checkpoint: u32,
    /// Keys changed before it.
    pub keys_changed: u64,
    /// Bytes of the changed entries (key and value).
    pub changed_bytes: u64,
    /// Bytes written by the snapshot (state files; `_metadata` excluded).
    pub bytes_written: u64,
    /// Files written.
    pub files_written: u32,
    /// Files reused from the previous confirmed checkpoint.
    pub files_reused: u32,
    /// Bytes in checkpoint storage after retention and collection.
    pub retained_bytes: u64,
    /// Wall time the workload was blocked by this checkpoint: the snapshot, and (uploading on
    /// its thread) the upload; completing it (metadata, retention, collection) blocks either way.
    pub wall_ms: f64,
}

/// One backend's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendFigures {
    /// `memory`, `rocksdb-full`, `rocksdb-incremental`.
    pub backend: String,
    /// Per checkpoint.
    pub checkpoints: Vec<CheckpointFigures>,
    /// Wall time to restore the last checkpoint into a fresh backend.
    pub restore_ms: f64,
    /// Entries restored.
    pub restored_entries: u64,
    /// Wall time of the whole run from the first checkpoint's changes to the last completion:
    /// workload and checkpoints together, the throughput figure async upload changes.
    pub total_ms: f64,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchReport {
    /// The workload.
    pub params: BenchParams,
    /// Per backend.
    pub backends: Vec<BackendFigures>,
}

/// A benchmark could not run.
#[derive(Debug, thiserror::Error)]
#[error("bench {backend}: {reason}")]
pub struct BenchError {
    /// The backend being measured.
    pub backend: String,
    /// What failed.
    pub reason: String,
}

fn key(index: u64) -> String {
    format!("key-{index:010}")
}

fn random_value(rng: &mut ChaCha8Rng, bytes: usize) -> Vec<u8> {
    (0..bytes).map(|_| rng.random()).collect()
}

#[allow(clippy::disallowed_methods)] // Benchmarks measure wall time; nothing simulated reads it.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = std::time::Instant::now();
    let value = f();
    (value, start.elapsed())
}

fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&entry.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Runs the benchmark in `work_dir` (emptied per backend), reporting progress through `progress`.
pub fn run(
    params: &BenchParams,
    work_dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<BenchReport, BenchError> {
    let mut report = BenchReport {
        params: params.clone(),
        backends: Vec::new(),
    };
    for kind in &params.backends {
        progress(kind.name());
        report
            .backends
            .push(run_backend(*kind, params, &work_dir.join(kind.name()))?);
    }
    Ok(report)
}

fn run_backend(
    kind: BackendKind,
    params: &BenchParams,
    dir: &Path,
) -> Result<BackendFigures, BenchError> {
    let fail = |reason: String| BenchError {
        backend: kind.name().to_string(),
        reason,
    };
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    }
    let factory = kind.factory().map_err(fail)?;
    let range = KeyGroupRange { start: 0, end: 127 };
    let context = |instance: &str| BackendContext {
        task_name: "bench-0".into(),
        instance: instance.into(),
        key_groups: range,
        working_dir: dir.join(format!("work-{instance}")),
    };
    let root = dir.join("checkpoints");
    let durability = if params.fsync {
        Durability::Fsync
    } else {
        Durability::PageCache
    };
    let mut storage =
        FsCheckpointStorage::new(&root, durability).map_err(|e| fail(e.to_string()))?;
    let mut backend = factory
        .create(context("a0"))
        .map_err(|e| fail(e.to_string()))?;
    let value_state = ValueState::<Vec<u8>>::declare(backend.as_mut(), "value")
        .map_err(|e| fail(e.to_string()))?;
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let write = |backend: &mut dyn crate::state::StateBackend, index: u64, rng: &mut ChaCha8Rng| {
        let key = key(index);
        let group = key_group_for(&key, 128);
        let value = random_value(rng, params.value_bytes);
        value_state
            .set(
                &mut KeyedContext::new(backend, group, key.as_bytes()),
                &value,
            )
            .map_err(|e| fail(e.to_string()))
    };
    for index in 0..params.keys {
        write(backend.as_mut(), index, &mut rng)?;
    }
    let entry_bytes = (key(0).len() + params.value_bytes) as u64;
    let mut figures = BackendFigures {
        backend: kind.name().to_string(),
        checkpoints: Vec::new(),
        restore_ms: 0.0,
        restored_entries: 0,
        total_ms: 0.0,
    };
    let uploads = Uploads::new();
    // The uploader's storage is opened here, so a failure to open it is an error now rather
    // than an uploader that never runs while the workload waits for it.
    let uploader_storage = match params.async_upload {
        true => Some(FsCheckpointStorage::new(&root, durability).map_err(|e| fail(e.to_string()))?),
        false => None,
    };
    // The uploader is a real thread: this is real (non-simulated) use, timed by the wall clock.
    #[allow(clippy::disallowed_methods)]
    let uploader = uploader_storage.map(|mut storage| {
        let uploads = uploads.clone();
        crate::sync::thread::spawn(move || {
            uploads.run_uploader(&mut |path, bytes| {
                storage
                    .write(path, bytes)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            });
        })
    });
    let mut coordinator = Coordinator {
        factory_name: factory.name(),
        range,
        root: &root,
        pending: BTreeMap::new(),
        retained: None,
        last: None,
        fail: &fail,
    };
    let (outcome, total) = timed(|| -> Result<(), BenchError> {
        for checkpoint in 1..=params.checkpoints {
            let keys_changed = if checkpoint == 1 {
                params.keys
            } else {
                (params.keys as f64 * params.changed_fraction).round() as u64
            };
            if checkpoint > 1 {
                for _ in 0..keys_changed {
                    let index = rng.random_range(0..params.keys.max(1));
                    write(backend.as_mut(), index, &mut rng)?;
                }
            }
            let id = u64::from(checkpoint);
            let (snapshot, wall) = timed(|| -> Result<_, BenchError> {
                let target = SnapshotTarget {
                    checkpoint_id: id,
                    dir: registry::checkpoint_dir(id),
                    purpose: SnapshotPurpose::Checkpoint,
                    compression: Compression::None,
                };
                let mut staging = Staging::new(&storage);
                let result = backend
                    .snapshot(&target, &mut staging)
                    .map_err(|e| fail(e.to_string()))?;
                let shared = result
                    .handle
                    .shared_files()
                    .into_iter()
                    .map(|file| file.path.clone())
                    .collect();
                uploads
                    .submit(Submission {
                        id: PartId {
                            checkpoint_id: id,
                            part: 0,
                        },
                        files: staging.into_files(),
                        shared,
                    })
                    .map_err(|e| fail(e.to_string()))?;
                if uploader.is_none() {
                    uploads.upload_next(&mut |path, bytes| {
                        storage
                            .write(path, bytes)
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    });
                }
                Ok(result)
            });
            let result = snapshot?;
            coordinator.pending.insert(
                id,
                (
                    CheckpointFigures {
                        checkpoint,
                        keys_changed,
                        changed_bytes: keys_changed * entry_bytes,
                        bytes_written: result.bytes_written,
                        files_written: result.files_written,
                        files_reused: result.files_reused,
                        retained_bytes: 0,
                        wall_ms: wall.as_secs_f64() * 1000.0,
                    },
                    result.handle,
                ),
            );
            for event in uploads.take_events() {
                coordinator.handle(
                    event,
                    &uploads,
                    &mut storage,
                    backend.as_mut(),
                    &mut figures,
                )?;
            }
        }
        while let Some(event) = uploads.wait_event() {
            coordinator.handle(
                event,
                &uploads,
                &mut storage,
                backend.as_mut(),
                &mut figures,
            )?;
        }
        Ok(())
    });
    uploads.shutdown();
    if let Some(thread) = uploader {
        thread
            .join()
            .map_err(|_| fail("the uploader thread panicked".into()))?;
    }
    outcome?;
    figures.total_ms = total.as_secs_f64() * 1000.0;
    let last = coordinator.last.take();
    drop(backend);
    if let Some((_, subtask)) = last {
        let mut restored = factory
            .create(context("restore"))
            .map_err(|e| fail(e.to_string()))?;
        let handle = RestoreHandle {
            key_groups: range,
            handle: subtask.keyed.expect("the bench state is keyed"),
        };
        let (stats, wall) = timed(|| restored.restore(&[handle], &storage, RestoreMode::Claim));
        let stats = stats.map_err(|e| fail(e.to_string()))?;
        figures.restore_ms = wall.as_secs_f64() * 1000.0;
        figures.restored_entries = stats.entries;
    }
    let _ = std::fs::remove_dir_all(dir);
    Ok(figures)
}

/// Completes uploaded checkpoints: `_metadata`, confirmation to the backend, retention
/// (`num_retained` 1) and shared-file deletion through the hand-off.
struct Coordinator<'a> {
    factory_name: &'static str,
    range: KeyGroupRange,
    root: &'a Path,
    /// Snapshotted checkpoints waiting for their upload.
    pending: BTreeMap<u64, (CheckpointFigures, KeyedStateHandle)>,
    retained: Option<u64>,
    last: Option<(u64, SubtaskSnapshot)>,
    fail: &'a dyn Fn(String) -> BenchError,
}

impl Coordinator<'_> {
    fn handle(
        &mut self,
        event: UploadEvent,
        uploads: &Uploads,
        storage: &mut FsCheckpointStorage,
        backend: &mut dyn StateBackend,
        figures: &mut BackendFigures,
    ) -> Result<(), BenchError> {
        let fail = self.fail;
        let id = match event {
            UploadEvent::Uploaded(part) => part.checkpoint_id,
            other => return Err(fail(format!("upload ended as {other:?}"))),
        };
        let (mut checkpoint, handle) = self
            .pending
            .remove(&id)
            .ok_or_else(|| fail(format!("checkpoint {id} uploaded twice")))?;
        let (subtask, wall) = timed(|| -> Result<SubtaskSnapshot, BenchError> {
            let subtask = SubtaskSnapshot {
                subtask: 0,
                key_groups: self.range,
                keyed: Some(handle),
                operator_state: Vec::new(),
            };
            let metadata = CheckpointMetadata {
                checkpoint_id: id,
                kind: SnapshotKind::Checkpoint,
                trigger_time_ms: 0,
                job_fingerprint: 0,
                max_parallelism: 128,
                backend: self.factory_name.to_string(),
                stages: vec![StageSnapshot {
                    stage: 0,
                    name: "bench".into(),
                    parallelism: 1,
                    subtasks: vec![subtask.clone()],
                }],
            };
            storage
                .write(&registry::metadata_path(id), &metadata.encode())
                .map_err(|e| fail(e.to_string()))?;
            uploads.complete(id, 1).map_err(|e| fail(e.to_string()))?;
            backend.notify_checkpoint_complete(id);
            if let Some(previous) = self.retained.replace(id) {
                storage
                    .remove_dir(&registry::checkpoint_dir(previous))
                    .map_err(|e| fail(e.to_string()))?;
                uploads.subsume(previous).map_err(|e| fail(e.to_string()))?;
            }
            let shared = RelPath::new("shared").expect("a valid relative path");
            let mut candidates = Vec::new();
            for name in storage
                .list(Some(&shared))
                .map_err(|e| fail(e.to_string()))?
            {
                // `.name.tmp` is an upload in progress, not a file anyone could reference yet.
                if !name.starts_with('.') {
                    candidates.push(shared.join(&name).map_err(|e| fail(e.to_string()))?);
                }
            }
            let mut deletion = Ok(());
            uploads.delete_unreferenced(&candidates, &mut |path| {
                if let Err(e) = storage.remove_file(path) {
                    deletion = Err(fail(e.to_string()));
                }
            });
            deletion?;
            Ok(subtask)
        });
        checkpoint.wall_ms += wall.as_secs_f64() * 1000.0;
        checkpoint.retained_bytes = dir_bytes(self.root);
        figures.checkpoints.push(checkpoint);
        self.last = Some((id, subtask?));
        Ok(())
    }
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

impl BenchReport {
    /// The table: one row per backend and checkpoint, then restore times and totals.
    pub fn table(&self) -> String {
        let p = &self.params;
        let mut text = format!(
            "keyed state: {} keys x {} value bytes; {:.1}% of keys changed before each checkpoint after the first; {} checkpoints, num_retained 1; upload {}\n",
            p.keys, p.value_bytes, p.changed_fraction * 100.0, p.checkpoints,
            if p.async_upload { "asynchronous (a background thread)" } else { "synchronous" }
        );
        if p.fsync {
            text.push_str("every checkpoint file and directory synced to disk\n");
        }
        text.push_str(&format!(
            "{:<20} {:>4} {:>10} {:>11} {:>8} {:>7} {:>11} {:>9} {:>10}\n",
            "backend",
            "chk",
            "changed",
            "written",
            "files",
            "reused",
            "retained",
            "ms",
            "written/Δ"
        ));
        for backend in &self.backends {
            for c in &backend.checkpoints {
                let ratio = if c.changed_bytes > 0 {
                    format!("{:.2}", c.bytes_written as f64 / c.changed_bytes as f64)
                } else {
                    "-".into()
                };
                text.push_str(&format!(
                    "{:<20} {:>4} {:>10} {:>11} {:>8} {:>7} {:>11} {:>9.1} {:>10}\n",
                    backend.backend,
                    c.checkpoint,
                    human(c.changed_bytes),
                    human(c.bytes_written),
                    c.files_written,
                    c.files_reused,
                    human(c.retained_bytes),
                    c.wall_ms,
                    ratio
                ));
            }
        }
        text.push_str(
            "\nbackend              total written   mean ms/chk   total ms   restore ms   restored entries\n",
        );
        for backend in &self.backends {
            let total: u64 = backend.checkpoints.iter().map(|c| c.bytes_written).sum();
            let mean = backend.checkpoints.iter().map(|c| c.wall_ms).sum::<f64>()
                / backend.checkpoints.len().max(1) as f64;
            text.push_str(&format!(
                "{:<20} {:>13} {:>13.1} {:>10.1} {:>12.1} {:>18}\n",
                backend.backend,
                human(total),
                mean,
                backend.total_ms,
                backend.restore_ms,
                backend.restored_entries
            ));
        }
        text
    }
}
