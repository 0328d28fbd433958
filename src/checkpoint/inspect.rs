//! `faultline inspect`: validates a checkpoint or savepoint directory — `_metadata`, then every
//! file it names against the recorded size and checksum, and every canonical file's blocks —
//! and describes it: id, kind, format, key groups, states, files, and what is wrong.
//!
//! ```
//! use faultline::campaign::{Case, KillMode, Scenario, Seams};
//! use faultline::checkpoint::inspect::inspect;
//!
//! let scenario = Scenario::from_toml(
//!     r#"
//! name = "inspected"
//! seed = 1
//! backend = "memory"
//! checkpoint = { interval_ms = 5, num_retained = 1 }
//! restart = { kind = "none" }
//!
//! [job]
//! name = "sum"
//! source = { parallelism = 1, emit_ms = 1 }
//! sink = { kind = "two-phase-commit" }
//! stages = [{ name = "sum", op = { kind = "sum" }, parallelism = 2 }]
//!
//! [input]
//! kind = "generated"
//! records = 20
//! keys = 3
//! min_value = 0
//! max_value = 100
//! "#,
//!     "doc example",
//! )?;
//! let dir = tempfile::tempdir()?;
//! let report = Case::new(scenario, Seams::default()).run(dir.path(), &KillMode::Sim)?;
//! let latest = report.outcome.retained_checkpoints.last().copied().expect("one is retained");
//! let inspected = inspect(&dir.path().join("checkpoints").join(format!("chk-{latest}")))?;
//! assert!(inspected.states.contains("sum.sum (Value)"), "{:?}", inspected.states);
//! assert!(!inspected.files.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use super::{
    canonical, CheckpointMetadata, Durability, FsCheckpointStorage, KeyedStateHandle, SnapshotKind,
    StorageError,
};
use crate::state::snapshot::read_verified;
use crate::state::KeyGroupRange;

/// One file a snapshot names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InspectedFile {
    /// The path relative to the snapshot's root.
    pub path: String,
    /// `shared`, `private` or `canonical`.
    pub scope: &'static str,
    /// Recorded size.
    pub size: u64,
    /// What is wrong with it, if anything.
    pub problem: Option<String>,
}

/// One subtask's part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InspectedSubtask {
    /// `sum[1]`.
    pub task: String,
    /// Key groups it owned.
    pub key_groups: KeyGroupRange,
    /// `canonical`, `native`, or `-` for no keyed state.
    pub format: &'static str,
    /// Cells in a canonical file (native files are not opened).
    pub entries: Option<usize>,
    /// Of them, keyed timers, each decoded.
    pub timers: Option<usize>,
    /// Bytes of operator state.
    pub operator_state_bytes: usize,
}

/// What `inspect` found.
#[derive(Debug, Clone)]
pub struct InspectReport {
    /// The directory inspected.
    pub dir: PathBuf,
    /// The decoded metadata.
    pub metadata: CheckpointMetadata,
    /// Subtasks, in stage order.
    pub subtasks: Vec<InspectedSubtask>,
    /// Declared states found in canonical files.
    pub states: BTreeSet<String>,
    /// Every file named.
    pub files: Vec<InspectedFile>,
}

impl InspectReport {
    /// Every problem found, one line each.
    pub fn problems(&self) -> Vec<String> {
        self.files
            .iter()
            .filter_map(|f| f.problem.as_ref().map(|p| format!("{}: {p}", f.path)))
            .collect()
    }
}

/// The directory cannot be inspected at all.
#[derive(Debug, thiserror::Error)]
#[error("{dir}: {reason}")]
pub struct InspectError {
    /// The directory.
    pub dir: PathBuf,
    /// Why (naming the file).
    pub reason: String,
}

/// Inspects the checkpoint (`.../chk-<id>`) or savepoint directory `dir`.
pub fn inspect(dir: &Path) -> Result<InspectReport, InspectError> {
    let fail = |reason: String| InspectError {
        dir: dir.to_path_buf(),
        reason,
    };
    let metadata_file = dir.join("_metadata");
    let bytes = std::fs::read(&metadata_file).map_err(|e| fail(format!("_metadata: {e}")))?;
    let metadata =
        CheckpointMetadata::decode(&bytes).map_err(|e| fail(format!("_metadata: {e}")))?;
    // A savepoint names files relative to itself; a checkpoint relative to its root (`shared/`
    // lives beside `chk-<id>`).
    let root = match metadata.kind {
        SnapshotKind::Savepoint => dir.to_path_buf(),
        SnapshotKind::Checkpoint => dir
            .parent()
            .map(Path::to_path_buf)
            .ok_or_else(|| fail("a checkpoint directory needs its parent root".into()))?,
    };
    let storage =
        FsCheckpointStorage::new(&root, Durability::PageCache).map_err(|e| fail(e.to_string()))?;
    let mut report = InspectReport {
        dir: dir.to_path_buf(),
        metadata: metadata.clone(),
        subtasks: Vec::new(),
        states: BTreeSet::new(),
        files: Vec::new(),
    };
    for stage in &metadata.stages {
        for subtask in &stage.subtasks {
            let mut inspected = InspectedSubtask {
                task: format!("{}[{}]", stage.name, subtask.subtask),
                key_groups: subtask.key_groups,
                format: subtask.keyed.as_ref().map_or("-", KeyedStateHandle::format),
                entries: None,
                timers: None,
                operator_state_bytes: subtask.operator_state.len(),
            };
            match &subtask.keyed {
                None => {}
                Some(KeyedStateHandle::Canonical(file)) => {
                    let key_groups = subtask.key_groups;
                    let problem = inspect_canonical(&storage, file, key_groups, &mut inspected)
                        .map(|states| {
                            let named = states
                                .into_iter()
                                .map(|s| format!("{}.{} ({:?})", stage.name, s.name, s.kind));
                            report.states.extend(named);
                        })
                        .err();
                    report.files.push(InspectedFile {
                        path: file.path.to_string(),
                        scope: "canonical",
                        size: file.size,
                        problem,
                    });
                }
                Some(KeyedStateHandle::Native { shared, private }) => {
                    for (scope, list) in [("shared", shared), ("private", private)] {
                        for named in list {
                            let problem = read_verified(&storage, &named.file)
                                .err()
                                .map(|e| e.problem());
                            report.files.push(InspectedFile {
                                path: named.file.path.to_string(),
                                scope,
                                size: named.file.size,
                                problem,
                            });
                        }
                    }
                }
            }
            report.subtasks.push(inspected);
        }
    }
    Ok(report)
}

/// Reads and decodes one canonical file, counting its cells and timers into `inspected`;
/// returns the states it declares, or what is wrong with it.
fn inspect_canonical(
    storage: &FsCheckpointStorage,
    file: &crate::checkpoint::FileRef,
    key_groups: KeyGroupRange,
    inspected: &mut InspectedSubtask,
) -> Result<Vec<crate::state::StateDescriptor>, String> {
    let snapshot = read_verified(storage, file)
        .and_then(|bytes| {
            canonical::decode(&bytes, key_groups).map_err(|e| StorageError::format(&file.path, e))
        })
        .map_err(|error| error.problem())?;
    inspected.entries = Some(snapshot.entries.len());
    inspected.timers = Some(crate::state::timers::count_stored(
        &snapshot.states,
        &snapshot.entries,
    )?);
    Ok(snapshot.states)
}

impl fmt::Display for InspectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.metadata;
        let kind = match m.kind {
            SnapshotKind::Checkpoint => "checkpoint",
            SnapshotKind::Savepoint => "savepoint",
        };
        writeln!(
            f,
            "{}: {kind} chk-{} (triggered at {} ms), backend {}, max parallelism {}",
            self.dir.display(),
            m.checkpoint_id,
            m.trigger_time_ms,
            m.backend,
            m.max_parallelism
        )?;
        let formats: BTreeSet<&str> = self
            .subtasks
            .iter()
            .map(|s| s.format)
            .filter(|f| *f != "-")
            .collect();
        writeln!(
            f,
            "format: {}",
            if formats.is_empty() {
                "no keyed state".to_string()
            } else {
                formats.into_iter().collect::<Vec<_>>().join(", ")
            }
        )?;
        if !self.states.is_empty() {
            writeln!(
                f,
                "states: {}",
                self.states.iter().cloned().collect::<Vec<_>>().join(", ")
            )?;
        }
        writeln!(f, "subtasks:")?;
        for subtask in &self.subtasks {
            let entries = subtask
                .entries
                .map_or_else(String::new, |n| format!(", {n} entries"));
            let timers = subtask
                .timers
                .filter(|n| *n > 0)
                .map_or_else(String::new, |n| format!(" ({n} timers)"));
            let entries = entries + &timers;
            writeln!(
                f,
                "  {:<16} key groups {:<9} {:<9}{entries}, {} bytes of operator state",
                subtask.task,
                subtask.key_groups.to_string(),
                subtask.format,
                subtask.operator_state_bytes
            )?;
        }
        let total: u64 = self.files.iter().map(|file| file.size).sum();
        writeln!(f, "files: {} ({total} bytes)", self.files.len())?;
        for file in &self.files {
            let status = file.problem.as_deref().unwrap_or("ok");
            writeln!(
                f,
                "  {:<9} {:>10}  {}  {status}",
                file.scope, file.size, file.path
            )?;
        }
        let problems = self.problems();
        if problems.is_empty() {
            writeln!(f, "verdict: every file present and intact")
        } else {
            writeln!(f, "verdict: {} problem(s)", problems.len())?;
            problems
                .iter()
                .try_for_each(|p| writeln!(f, "  PROBLEM {p}"))
        }
    }
}
