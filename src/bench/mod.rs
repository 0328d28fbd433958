//! `faultline bench checkpoints`: the tutorial's full-versus-incremental experiment, done with
//! real keyed state. A keyed workload of `keys` values of `value_bytes` random bytes is loaded;
//! before each of `checkpoints` checkpoints a `changed_fraction` of the keys gets new values.
//! Each backend is driven through the same `StateBackend` seam, storage, retention
//! (`num_retained` 1) and shared-file collection the runtime uses; every checkpoint's bytes
//! written, bytes retained, files written and reused, and wall time are measured, then one
//! restore of the last checkpoint.
//!
//! Wall time is measured here, outside any simulated run: benchmarks report it and nothing
//! feeds it back into a simulation.

mod chart;

use std::path::Path;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::checkpoint::canonical::Compression;
use crate::checkpoint::{
    registry, CheckpointMetadata, CheckpointStorage, Durability, FsCheckpointStorage, SnapshotKind,
    StageSnapshot, SubtaskSnapshot,
};
use crate::job::keygroup::key_group_for;
use crate::state::{
    BackendContext, BackendKind, KeyGroupRange, KeyedContext, RestoreHandle, RestoreMode,
    SnapshotPurpose, SnapshotTarget, ValueState,
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
    /// Wall time of snapshot, metadata, retention and collection.
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
    let mut storage =
        FsCheckpointStorage::new(&root, Durability::PageCache).map_err(|e| fail(e.to_string()))?;
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
    };
    let mut last: Option<(u64, SubtaskSnapshot)> = None;
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
        let (result, wall) = timed(|| -> Result<_, BenchError> {
            let target = SnapshotTarget {
                checkpoint_id: id,
                dir: registry::checkpoint_dir(id),
                purpose: SnapshotPurpose::Checkpoint,
                compression: Compression::None,
            };
            let result = backend
                .snapshot(&target, &mut storage)
                .map_err(|e| fail(e.to_string()))?;
            let subtask = SubtaskSnapshot {
                subtask: 0,
                key_groups: range,
                keyed: Some(result.handle.clone()),
                operator_state: Vec::new(),
            };
            let metadata = CheckpointMetadata {
                checkpoint_id: id,
                kind: SnapshotKind::Checkpoint,
                trigger_time_ms: 0,
                job_fingerprint: 0,
                max_parallelism: 128,
                backend: factory.name().to_string(),
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
            backend.notify_checkpoint_complete(id);
            if id > 1 {
                storage
                    .remove_dir(&registry::checkpoint_dir(id - 1))
                    .map_err(|e| fail(e.to_string()))?;
                registry::collect_garbage(&mut storage).map_err(|e| fail(e.to_string()))?;
            }
            Ok((result, subtask))
        });
        let (result, subtask) = result?;
        last = Some((id, subtask));
        figures.checkpoints.push(CheckpointFigures {
            checkpoint,
            keys_changed,
            changed_bytes: keys_changed * entry_bytes,
            bytes_written: result.bytes_written,
            files_written: result.files_written,
            files_reused: result.files_reused,
            retained_bytes: dir_bytes(&root),
            wall_ms: wall.as_secs_f64() * 1000.0,
        });
    }
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
            "keyed state: {} keys x {} value bytes; {:.1}% of keys changed before each checkpoint after the first; {} checkpoints, num_retained 1\n",
            p.keys, p.value_bytes, p.changed_fraction * 100.0, p.checkpoints
        );
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
            "\nbackend              total written   mean ms/chk   restore ms   restored entries\n",
        );
        for backend in &self.backends {
            let total: u64 = backend.checkpoints.iter().map(|c| c.bytes_written).sum();
            let mean = backend.checkpoints.iter().map(|c| c.wall_ms).sum::<f64>()
                / backend.checkpoints.len().max(1) as f64;
            text.push_str(&format!(
                "{:<20} {:>13} {:>13.1} {:>12.1} {:>18}\n",
                backend.backend,
                human(total),
                mean,
                backend.restore_ms,
                backend.restored_entries
            ));
        }
        text
    }
}
