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
//! once on the workload's thread. When the upload is done the engine's coordinator
//! ([`crate::checkpoint::coordinator`]) completes the checkpoint, and its commands are carried
//! out as the engine carries them out: `_metadata`, the completion record, retention and the
//! engine's garbage collection, which never deletes a file an in-flight checkpoint references.
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
//!
//! // With timers, every checkpoint carries them and the restore finds each one.
//! params.timers_per_key = 3;
//! let dir = tempfile::tempdir()?;
//! let report = run(&params, dir.path(), &mut |_backend| {})?;
//! assert_eq!(report.backends[0].restored_timers, 600);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod chart;

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::checkpoint::canonical::Compression;
use crate::checkpoint::coordinator::{Command, Coordinator, Layout};
use crate::checkpoint::upload::{PartId, Staging, Submission, UploadEvent, Uploads};
use crate::checkpoint::{
    registry, CheckpointConfig, CheckpointStorage, Durability, FsCheckpointStorage, SubtaskSnapshot,
};
use crate::job::Datum;
use crate::state::timers::{TimeDomain, TimerQueue};
use crate::state::{
    BackendContext, BackendKind, KeyGroupRange, KeyedContext, RestoreHandle, RestoreMode,
    SnapshotPurpose, SnapshotTarget, StateBackend, ValueState,
};

pub use chart::{draw_chart, ChartError};

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
    /// Event-time timers each key registers when it is loaded (kept as keyed state, so every
    /// checkpoint carries them). Default 0.
    pub timers_per_key: u32,
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
            timers_per_key: 0,
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
    /// Timers found in the restored backend.
    pub restored_timers: u64,
    /// Wall time to rebuild the timer queue from the restored backend, as every attempt's
    /// start does.
    pub timer_queue_ms: f64,
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

/// A value of `bytes` random hex digits: stored as canonical text, a string costs its length
/// plus its quotes, so the cell is the size asked for.
fn random_value(rng: &mut ChaCha8Rng, bytes: usize) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    (0..bytes.saturating_sub(2))
        .map(|_| char::from(DIGITS[rng.random_range(0..16)]))
        .collect()
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
    let mut bench = Bench::open(kind, params, dir)?;
    bench.load()?;
    // The uploader's storage is opened here, so a failure to open it is an error now rather
    // than an uploader that never runs while the workload waits for it.
    let uploader_storage = match params.async_upload {
        true => Some(
            FsCheckpointStorage::new(bench.storage.root(), bench.durability())
                .map_err(|e| fail(e.to_string()))?,
        ),
        false => None,
    };
    // The uploader is a real thread: this is real (non-simulated) use, timed by the wall clock.
    #[allow(clippy::disallowed_methods)]
    let uploader = uploader_storage.map(|mut storage| {
        let uploads = bench.uploads.clone();
        crate::sync::thread::spawn(move || {
            uploads.run_uploader(&mut |path, bytes| storage.write(path, bytes).map(|_| ()));
        })
    });
    let (outcome, total) = timed(|| bench.checkpoints(uploader.is_some()));
    bench.uploads.shutdown();
    if let Some(thread) = uploader {
        thread
            .join()
            .map_err(|_| fail("the uploader thread panicked".into()))?;
    }
    outcome?;
    bench.figures.total_ms = total.as_secs_f64() * 1000.0;
    bench.restore_last()?;
    let _ = std::fs::remove_dir_all(dir);
    Ok(bench.figures)
}

/// One backend under the benchmark's workload, checkpointed by the engine's coordinator, with
/// the engine's retention and garbage collection.
struct Bench<'a> {
    kind: BackendKind,
    params: &'a BenchParams,
    dir: &'a Path,
    factory: Box<dyn crate::state::StateBackendFactory>,
    storage: FsCheckpointStorage,
    backend: Box<dyn StateBackend>,
    value: ValueState<String>,
    rng: ChaCha8Rng,
    coordinator: Coordinator,
    uploads: Uploads,
    /// Figures of checkpoints whose upload is in flight, with their snapshots.
    pending: BTreeMap<u64, (CheckpointFigures, SubtaskSnapshot)>,
    /// The snapshot of the last checkpoint completed, to restore from.
    last: Option<SubtaskSnapshot>,
    figures: BackendFigures,
}

/// The one subtask's key groups: all of them.
const RANGE: KeyGroupRange = KeyGroupRange { start: 0, end: 127 };

impl<'a> Bench<'a> {
    fn open(kind: BackendKind, params: &'a BenchParams, dir: &'a Path) -> Result<Self, BenchError> {
        let fail = |reason: String| BenchError {
            backend: kind.name().to_string(),
            reason,
        };
        let factory = kind.factory().map_err(|e| fail(e.to_string()))?;
        let durability = if params.fsync {
            Durability::Fsync
        } else {
            Durability::PageCache
        };
        let storage = FsCheckpointStorage::new(dir.join("checkpoints"), durability)
            .map_err(|e| fail(e.to_string()))?;
        let backend = factory
            .create(context(dir, "a0"))
            .map_err(|e| fail(e.to_string()))?;
        let value = ValueState::<String>::new("value");
        let layout = Layout::single("bench", 128, factory.name());
        let checkpoints = params.checkpoints as usize;
        let mut coordinator = Coordinator::new(
            CheckpointConfig::every(1).with_concurrency(checkpoints as u32, 0),
            Vec::new(),
            layout,
        );
        coordinator.start_attempt(0);
        Ok(Self {
            kind,
            params,
            dir,
            factory,
            storage,
            backend,
            value,
            rng: ChaCha8Rng::seed_from_u64(params.seed),
            coordinator,
            uploads: Uploads::new(),
            pending: BTreeMap::new(),
            last: None,
            figures: BackendFigures {
                backend: kind.name().to_string(),
                checkpoints: Vec::new(),
                restore_ms: 0.0,
                restored_entries: 0,
                restored_timers: 0,
                timer_queue_ms: 0.0,
                total_ms: 0.0,
            },
        })
    }

    fn fail(&self, reason: impl std::fmt::Display) -> BenchError {
        BenchError {
            backend: self.kind.name().to_string(),
            reason: reason.to_string(),
        }
    }

    fn durability(&self) -> Durability {
        if self.params.fsync {
            Durability::Fsync
        } else {
            Durability::PageCache
        }
    }

    /// Writes a fresh random value for key `index`.
    fn write(&mut self, index: u64) -> Result<(), BenchError> {
        let key = Datum::from(key(index).as_str());
        let group = key.key_group(128);
        let value = random_value(&mut self.rng, self.params.value_bytes);
        let mut keyed = KeyedContext::new(self.backend.as_mut(), group, key.as_bytes());
        self.value.set(&mut keyed, &value).map_err(|e| self.fail(e))
    }

    /// Loads every key once, with its timers.
    fn load(&mut self) -> Result<(), BenchError> {
        for index in 0..self.params.keys {
            self.write(index)?;
            self.register_timers(index)?;
        }
        Ok(())
    }

    /// Registers key `index`'s timers, one second apart.
    fn register_timers(&mut self, index: u64) -> Result<(), BenchError> {
        let key = Datum::from(key(index).as_str());
        let group = key.key_group(128);
        let mut keyed = KeyedContext::new(self.backend.as_mut(), group, key.as_bytes());
        let registered = (0..self.params.timers_per_key).try_for_each(|timer| {
            let at_ms = i64::from(timer) * 1_000;
            keyed.register_timer(TimeDomain::EventTime, at_ms, "bench")
        });
        registered.map_err(|e| self.fail(e))
    }

    /// Takes every checkpoint, changing keys before each after the first, then waits for the
    /// uploads still in flight.
    fn checkpoints(&mut self, uploader: bool) -> Result<(), BenchError> {
        for checkpoint in 1..=self.params.checkpoints {
            let keys_changed = if checkpoint == 1 {
                self.params.keys
            } else {
                (self.params.keys as f64 * self.params.changed_fraction).round() as u64
            };
            if checkpoint > 1 {
                for _ in 0..keys_changed {
                    let index = self.rng.random_range(0..self.params.keys.max(1));
                    self.write(index)?;
                }
            }
            self.checkpoint(u64::from(checkpoint), keys_changed, uploader)?;
            for event in self.uploads.take_events() {
                self.uploaded(event)?;
            }
        }
        while let Some(event) = self.uploads.wait_event() {
            self.uploaded(event)?;
        }
        Ok(())
    }

    /// Triggers checkpoint number `number`, snapshots the backend and hands its files to the
    /// uploader (or uploads them at once, on this thread).
    fn checkpoint(
        &mut self,
        number: u64,
        keys_changed: u64,
        uploader: bool,
    ) -> Result<(), BenchError> {
        let commands = self.coordinator.tick(number, false);
        let Some(Command::Trigger { checkpoint, .. }) = commands.into_iter().next() else {
            return Err(self.fail(format!("checkpoint {number} was not triggered")));
        };
        let (snapshot, wall) = timed(|| -> Result<_, BenchError> {
            let target = SnapshotTarget {
                checkpoint_id: checkpoint,
                dir: registry::checkpoint_dir(checkpoint),
                purpose: SnapshotPurpose::Checkpoint,
                compression: Compression::None,
                now_ms: 0,
            };
            let mut staging = Staging::new(&self.storage);
            let result = self
                .backend
                .snapshot(&target, &mut staging)
                .map_err(|e| self.fail(e))?;
            let shared = result
                .handle
                .shared_files()
                .into_iter()
                .map(|file| file.path.clone())
                .collect();
            let files = staging.into_files();
            self.uploads
                .submit(Submission {
                    id: PartId {
                        checkpoint_id: checkpoint,
                        part: 0,
                    },
                    files,
                    shared,
                })
                .map_err(|e| self.fail(e))?;
            if !uploader {
                let storage = &mut self.storage;
                self.uploads
                    .upload_next(&mut |path, bytes| storage.write(path, bytes).map(|_| ()));
            }
            Ok(result)
        });
        let result = snapshot?;
        let entry_bytes = (key(0).len() + self.params.value_bytes) as u64;
        let figures = CheckpointFigures {
            checkpoint: number as u32,
            keys_changed,
            changed_bytes: keys_changed * entry_bytes,
            bytes_written: result.bytes_written,
            files_written: result.files_written,
            files_reused: result.files_reused,
            retained_bytes: 0,
            wall_ms: wall.as_secs_f64() * 1000.0,
        };
        let subtask = SubtaskSnapshot {
            subtask: 0,
            key_groups: RANGE,
            keyed: Some(result.handle),
            operator_state: Vec::new(),
            channel_state: None,
        };
        self.pending.insert(checkpoint, (figures, subtask));
        Ok(())
    }

    /// A checkpoint's upload ended: the coordinator completes it, and its commands are carried
    /// out — `_metadata`, the completion record, the confirmation, retention and collection.
    fn uploaded(&mut self, event: UploadEvent) -> Result<(), BenchError> {
        let checkpoint = match event {
            UploadEvent::Uploaded(part) => part.checkpoint_id,
            other => return Err(self.fail(format!("upload ended as {other:?}"))),
        };
        let (mut figures, subtask) = self
            .pending
            .remove(&checkpoint)
            .ok_or_else(|| self.fail(format!("checkpoint {checkpoint} uploaded twice")))?;
        let (completed, wall) = timed(|| -> Result<(), BenchError> {
            let mut commands: VecDeque<Command> = self
                .coordinator
                .acknowledge(checkpoint, 0, subtask.clone())
                .into();
            while let Some(command) = commands.pop_front() {
                commands.extend(self.carry_out(command)?);
            }
            Ok(())
        });
        completed?;
        figures.wall_ms += wall.as_secs_f64() * 1000.0;
        figures.retained_bytes = dir_bytes(&self.dir.join("checkpoints"));
        self.figures.checkpoints.push(figures);
        self.last = Some(subtask);
        Ok(())
    }

    /// Carries out one of the coordinator's commands as the engine does.
    fn carry_out(&mut self, command: Command) -> Result<Vec<Command>, BenchError> {
        match command {
            Command::WriteMetadata {
                checkpoint,
                metadata,
                dir,
            } => {
                let path = dir.join("_metadata").expect("a valid name");
                self.storage
                    .write(&path, &metadata.encode())
                    .map_err(|e| self.fail(e))?;
                self.uploads
                    .complete(checkpoint, 1)
                    .map_err(|e| self.fail(e))?;
                return Ok(self.coordinator.metadata_written(checkpoint, 0));
            }
            Command::Notify { checkpoint } => {
                self.backend.notify_checkpoint_complete(checkpoint);
            }
            Command::RecordCompleted { checkpoint } => {
                registry::record_completed(&mut self.storage, checkpoint)
                    .map_err(|e| self.fail(e))?;
            }
            Command::Subsume { checkpoint } => {
                self.storage
                    .remove_dir(&registry::checkpoint_dir(checkpoint))
                    .map_err(|e| self.fail(e))?;
                self.uploads.subsume(checkpoint).map_err(|e| self.fail(e))?;
            }
            Command::CollectGarbage { keep } => {
                registry::collect_garbage(&mut self.storage, &keep, &self.uploads)
                    .map_err(|e| self.fail(e))?;
            }
            Command::Completed { .. } => {}
            other => return Err(self.fail(format!("the coordinator asked for {other:?}"))),
        }
        Ok(Vec::new())
    }

    /// Restores the last checkpoint into a fresh backend, timed.
    fn restore_last(&mut self) -> Result<(), BenchError> {
        let Some(subtask) = self.last.take() else {
            return Ok(());
        };
        let mut restored = self
            .factory
            .create(context(self.dir, "restore"))
            .map_err(|e| self.fail(e))?;
        let handle = RestoreHandle {
            key_groups: RANGE,
            handle: subtask.keyed.expect("the bench state is keyed"),
        };
        let (stats, wall) =
            timed(|| restored.restore(&[handle], &self.storage, RestoreMode::Claim));
        let stats = stats.map_err(|e| self.fail(e))?;
        self.figures.restore_ms = wall.as_secs_f64() * 1000.0;
        self.figures.restored_entries = stats.entries;
        let (queue, wall) = timed(|| TimerQueue::from_backend(restored.as_ref()));
        let queue = queue.map_err(|e| self.fail(e))?;
        self.figures.timer_queue_ms = wall.as_secs_f64() * 1000.0;
        self.figures.restored_timers = queue.len() as u64;
        Ok(())
    }
}

/// The benchmark subtask's backend context for `instance`.
fn context(dir: &Path, instance: &str) -> BackendContext {
    BackendContext {
        task_name: "bench-0".into(),
        instance: instance.into(),
        key_groups: RANGE,
        working_dir: dir.join(format!("work-{instance}")),
        created_ms: 0,
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
        if self.params.timers_per_key > 0 {
            text.push_str("\nbackend              restored timers   timer queue ms\n");
            for backend in &self.backends {
                text.push_str(&format!(
                    "{:<20} {:>15} {:>16.1}\n",
                    backend.backend, backend.restored_timers, backend.timer_queue_ms
                ));
            }
        }
        text
    }
}
