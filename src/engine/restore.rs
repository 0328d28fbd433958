//! Restoring an attempt's tasks: storage upkeep first (incomplete checkpoints discarded, the
//! shared-file registry read back, garbage collected), then the candidates in storage are
//! validated, [`choose_restore`] picks the plan, and the plan is applied: key groups go to
//! the subtasks that own them now, source positions to the subtasks that read each partition
//! now, sink transactions are recovered.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::task::*;
use super::Runtime;
use crate::checkpoint::coordinator::{Command, UnreadableMetadata};
use crate::checkpoint::restore::{choose_restore, Candidate, RestorePlan, SnapshotRef};
use crate::checkpoint::{
    registry, CheckpointMetadata, CheckpointStorage, Durability, FsCheckpointStorage, RelPath,
    RestorePolicy, SnapshotKind, StageSnapshot, StorageError, Subdirectory,
};
use crate::fault::{FaultAction, FaultPlan, FaultPoint};
use crate::job::keygroup::key_group_range;
use crate::job::{ExternalStore, Input, Positions};
use crate::state::{KeyGroupRange, RestoreHandle, RestoreMode, StateView};
use crate::trace::{AuditContext, Event, FailureCause, RestoreFailure, RestoreSource, Restored};

/// How a snapshot does not fit the job restoring it.
#[derive(Debug, thiserror::Error)]
enum Mismatch {
    #[error("written by a different job (fingerprint mismatch)")]
    Fingerprint,
    #[error("max parallelism {found} differs from the job's {job}")]
    MaxParallelism { found: u16, job: u16 },
    #[error("{found} stages, the job has {job}")]
    Stages { found: usize, job: usize },
    #[error("{stage}[{subtask}] owned key groups {found}, the job assigns {expected}")]
    KeyGroups {
        stage: String,
        subtask: u16,
        found: KeyGroupRange,
        expected: KeyGroupRange,
    },
    #[error("stage {index} is {found:?}, the job has {job:?}")]
    StageName {
        index: u16,
        found: String,
        job: String,
    },
}

impl Runtime<'_> {
    /// Restores an attempt: from the newest usable snapshot in the job's own storage (a
    /// checkpoint, CLAIM; or a savepoint it took, NO_CLAIM), or, when none completed yet, from
    /// the configured initial snapshot (NO_CLAIM), or from nothing.
    pub(super) fn restore(
        &mut self,
        execution: &mut Execution,
        target: RestoreTarget,
    ) -> Result<(), Failure> {
        // Checkpoint ids never repeat, even across restarts: aborted ones leave gaps.
        self.coordinator
            .ids_above(registry::highest_snapshot_id(&self.storage));
        let inspect = matches!(target, RestoreTarget::Inspect(_));
        let (candidates, recorded, policy) = match target {
            RestoreTarget::Inspect(id) => {
                let checkpoint = SnapshotRef::Checkpoint(id);
                let validated = self.validate_candidate(&checkpoint);
                let candidate = Candidate {
                    snapshot: checkpoint,
                    validated,
                };
                (vec![candidate], None, RestorePolicy::FailLoudly)
            }
            _ => {
                self.tidy_storage()?;
                let recorded = registry::latest_completed(&self.storage)
                    .map_err(|e| Failure::restore(problem_with(e)))?;
                (self.candidates()?, recorded, self.config.restore_policy)
            }
        };
        match choose_restore(candidates, recorded, policy) {
            RestorePlan::Fail(failure) => Err(Failure::restore(failure)),
            RestorePlan::Nothing => match self.config.initial_snapshot.clone() {
                Some(path) => self.restore_external(execution, &path),
                None => self.restore_nothing(execution),
            },
            RestorePlan::Restore {
                snapshot,
                metadata,
                skipped,
            } => {
                for (candidate, problem) in skipped {
                    self.record(Event::RestoreFallback {
                        candidate: candidate.label(),
                        problem: problem.detail,
                    });
                }
                let (source, from) = match &snapshot {
                    SnapshotRef::Checkpoint(id) => (Source::Own, RestoreSource::Checkpoint(*id)),
                    SnapshotRef::Savepoint { name, id } => (
                        Source::OwnSavepoint(savepoint_dir(name)),
                        RestoreSource::Savepoint {
                            name: name.clone(),
                            checkpoint: *id,
                        },
                    ),
                };
                let restoring = Restoring {
                    label: snapshot.label(),
                    from,
                    metadata: &metadata,
                    source: &source,
                    inspect,
                };
                self.apply(execution, restoring)
            }
        }
    }

    /// Storage upkeep before a restore: checkpoint directories without `_metadata` are
    /// removed, the retained checkpoints' shared files are read back into the coordinator's
    /// registry and the new upload hand-off, and garbage is collected.
    fn tidy_storage(&mut self) -> Result<(), Failure> {
        let storage_error = |e: StorageError| Failure::restore(problem_with(e));
        for (id, complete) in registry::checkpoint_dirs(&self.storage).map_err(storage_error)? {
            if !complete {
                self.storage
                    .remove_dir(&registry::checkpoint_dir(id))
                    .map_err(storage_error)?;
                self.record(Event::CheckpointDiscarded { checkpoint: id });
            }
        }
        let retained: Vec<(u64, Result<BTreeSet<RelPath>, UnreadableMetadata>)> =
            registry::retained(&self.storage)
                .map_err(storage_error)?
                .into_iter()
                .map(|checkpoint| {
                    let shared = checkpoint
                        .metadata
                        .map(|metadata| metadata.shared_paths())
                        .map_err(|error| UnreadableMetadata::new(checkpoint.id, &error));
                    (checkpoint.id, shared)
                })
                .collect();
        // The new attempt's upload hand-off holds the retained checkpoints' shared files, so
        // the restored state may reuse them and nothing collects them meanwhile.
        for (id, shared) in &retained {
            if let Ok(shared) = shared {
                self.uploads
                    .adopt(*id, shared.clone())
                    .expect("a fresh hand-off adopts each retained checkpoint once");
            }
        }
        if let Command::CollectGarbage { keep } = self.coordinator.restored(retained) {
            self.collect_garbage(&keep);
        }
        Ok(())
    }

    /// Every restore candidate in the job's storage, validated: the retained checkpoints, and
    /// the savepoints this job took (FLINK-10354: a savepoint commits the sink's pending
    /// transactions, so failing over to an older checkpoint would replay committed output).
    fn candidates(&mut self) -> Result<Vec<Candidate>, Failure> {
        let dirs = registry::checkpoint_dirs(&self.storage)
            .map_err(|e| Failure::restore(problem_with(e)))?;
        let mut snapshots: Vec<SnapshotRef> = dirs
            .iter()
            .filter(|(_, complete)| *complete)
            .map(|(id, _)| SnapshotRef::Checkpoint(*id))
            .collect();
        for (name, id) in self.own_savepoints() {
            // A savepoint whose `_metadata` committed is taken, even if the process died
            // before it could say so: it must never be taken again into the same place.
            self.coordinator.taken(&name);
            snapshots.push(SnapshotRef::Savepoint { name, id });
        }
        Ok(snapshots
            .into_iter()
            .map(|snapshot| {
                let validated = self.validate_candidate(&snapshot);
                Candidate {
                    snapshot,
                    validated,
                }
            })
            .collect())
    }

    /// No snapshot to restore: sources start over. The external system still holds what the
    /// failed attempt began, so each sink aborts its lingering transactions, as a Kafka
    /// producer's fencing of its transactional id would.
    fn restore_nothing(&mut self, execution: &mut Execution) -> Result<(), Failure> {
        let positions = Positions::start(self.input.partitions().len());
        let mut events = Vec::new();
        for task in &mut execution.tasks {
            if let Body::Sink(sink) = &mut task.body {
                let (user, store) = (self.sink_factory.is_some(), &mut self.store);
                let restored =
                    guarded_if(user, &task.name, || sink.restore(&[], store))?.map_err(|e| {
                        Failure::restore(RestoreFailure {
                            file: None,
                            detail: format!("{}: restore: {e}", task.name),
                        })
                    })?;
                events.extend(restored.into_iter().map(|event| Event::Txn {
                    task: task.name.clone(),
                    event,
                }));
            }
        }
        let state = self.dump_state(execution)?;
        self.record(Event::Restored(Restored {
            attempt: execution.attempt,
            from: RestoreSource::Nothing,
            positions,
            entries: 0,
            files: 0,
            no_claim: false,
            state,
        }));
        for event in events {
            self.record(event);
        }
        Ok(())
    }

    /// Restores the savepoint or retained checkpoint directory at `path`, outside the job's
    /// storage (NO_CLAIM); its files are always verified first.
    fn restore_external(&mut self, execution: &mut Execution, path: &Path) -> Result<(), Failure> {
        let (metadata, storage) = open_external(path).map_err(Failure::restore)?;
        self.validate_metadata(&metadata).map_err(|e| {
            Failure::restore(RestoreFailure {
                file: Some(path.join("_metadata").display().to_string()),
                detail: format!("{}: {e}", path.display()),
            })
        })?;
        let label = path.display().to_string();
        let restoring = Restoring {
            from: RestoreSource::External {
                path: label.clone(),
            },
            label,
            metadata: &metadata,
            source: &Source::External(storage),
            inspect: false,
        };
        self.apply(execution, restoring)
    }

    /// Applies a chosen snapshot to the attempt's freshly built tasks, records the restore,
    /// and audits storage.
    fn apply(
        &mut self,
        execution: &mut Execution,
        restoring: Restoring<'_>,
    ) -> Result<(), Failure> {
        let subdirectory;
        let own_mode = match restoring.from {
            RestoreSource::Checkpoint(id) if self.coordinator.is_unclaimed(id) => {
                RestoreMode::NoClaim
            }
            _ => RestoreMode::Claim,
        };
        let (own, faults) = self.storage.split();
        let (storage, mode): (&dyn CheckpointStorage, RestoreMode) = match restoring.source {
            Source::Own => (own, own_mode),
            Source::OwnSavepoint(dir) => {
                subdirectory = Subdirectory::new(own, dir.clone());
                (&subdirectory, RestoreMode::NoClaim)
            }
            Source::External(storage) => (storage, RestoreMode::NoClaim),
        };
        // The broken twin hands an unclaimed checkpoint to the backends as their own.
        let backend_mode = match (own_mode, self.config.sabotage.no_claim_checkpoint_claimed) {
            (RestoreMode::NoClaim, true) => RestoreMode::Claim,
            _ => mode,
        };
        let mut applying = Applying {
            execution,
            metadata: restoring.metadata,
            storage,
            mode: backend_mode,
            store: &mut self.store,
            input: self.input,
            inspect: restoring.inspect,
            user_sink: self.sink_factory.is_some(),
            faults,
            stage_names: self.job.stage_names(),
            job: self.job,
            sabotage: self.config.sabotage,
        };
        let applied = match applying.apply() {
            Ok(applied) => applied,
            Err(ApplyError::Injected(action)) => {
                self.record(Event::FaultFired {
                    fault: action.fault,
                    site: action.site,
                });
                return Err(restoring.failure(ApplyError::Injected(action)));
            }
            Err(error) => return Err(restoring.failure(error)),
        };
        for event in applied.events {
            if let Event::ChannelStateRestored { origins, .. } = &event {
                self.stats.unaligned.records_restored += origins.len() as u64;
            }
            self.record(event);
        }
        self.stats.unaligned.rescaled_restores += u64::from(applied.rescaled_channel_state);
        if let RestoreSource::Checkpoint(id) = restoring.from {
            match self.coordinator.inherited_mode(id) {
                Some(RestoreMode::Claim) => self.stats.inherited_restores.claim += 1,
                Some(RestoreMode::NoClaim) => self.stats.inherited_restores.no_claim += 1,
                None => {}
            }
        }
        let state = self.dump_state(execution)?;
        self.record(Event::Restored(Restored {
            attempt: execution.attempt,
            from: restoring.from,
            positions: applied.positions,
            entries: applied.entries,
            files: applied.files,
            no_claim: mode == RestoreMode::NoClaim,
            state,
        }));
        if !restoring.inspect {
            self.audit_storage(AuditContext::AfterRestore(execution.attempt));
        }
        Ok(())
    }

    /// Decodes a candidate's `_metadata`, checks that it describes that snapshot and belongs
    /// to this job and (unless the backends verify their own files) verifies every file it
    /// names before any of it is used.
    fn validate_candidate(
        &self,
        snapshot: &SnapshotRef,
    ) -> Result<CheckpointMetadata, RestoreFailure> {
        match snapshot {
            SnapshotRef::Checkpoint(id) => {
                let metadata = registry::read_metadata(&self.storage, *id).map_err(problem_with)?;
                let metadata_file = registry::metadata_path(*id).to_string();
                if metadata.checkpoint_id != *id || metadata.kind != SnapshotKind::Checkpoint {
                    return Err(RestoreFailure {
                        file: Some(metadata_file),
                        detail: format!(
                            "chk-{id}/_metadata describes {:?} chk-{}, not this checkpoint",
                            metadata.kind, metadata.checkpoint_id
                        ),
                    });
                }
                self.validate_snapshot(&metadata, &self.storage, &metadata_file)?;
                Ok(metadata)
            }
            SnapshotRef::Savepoint { name, .. } => {
                let view = Subdirectory::new(&self.storage, savepoint_dir(name));
                let inside = |problem: RestoreFailure| RestoreFailure {
                    file: problem.file.map(|file| format!("savepoints/{name}/{file}")),
                    detail: format!("savepoints/{name}/{}", problem.detail),
                };
                let metadata = read_savepoint_metadata(&view)
                    .map_err(problem_with)
                    .map_err(inside)?;
                if metadata.kind != SnapshotKind::Savepoint {
                    return Err(RestoreFailure {
                        file: Some(format!("savepoints/{name}/_metadata")),
                        detail: format!("savepoints/{name}/_metadata describes a checkpoint"),
                    });
                }
                self.validate_snapshot(&metadata, &view, "_metadata")
                    .map_err(inside)?;
                Ok(metadata)
            }
        }
    }

    /// Checks that `metadata` (read from `metadata_file`) belongs to this job and, unless
    /// `verify_restored_files` is off, that every file it names is intact.
    fn validate_snapshot(
        &self,
        metadata: &CheckpointMetadata,
        storage: &dyn CheckpointStorage,
        metadata_file: &str,
    ) -> Result<(), RestoreFailure> {
        self.validate_metadata(metadata)
            .map_err(|mismatch| RestoreFailure {
                file: Some(metadata_file.to_string()),
                detail: mismatch.to_string(),
            })?;
        if self.config.verify_restored_files {
            for file in metadata.files() {
                registry::verify_file(storage, file).map_err(problem_with)?;
            }
        }
        Ok(())
    }

    /// Savepoints in this job's own root whose `_metadata` reads, with their barrier ids; one
    /// that never completed is removed.
    fn own_savepoints(&mut self) -> Vec<(String, u64)> {
        let root = RelPath::new("savepoints").expect("a valid relative path");
        let names = self.storage.list(Some(&root)).unwrap_or_default();
        let mut found = Vec::new();
        for name in names {
            let Ok(dir) = root.join(&name) else { continue };
            let committed = dir.join("_metadata").expect("a valid name");
            if !self.storage.exists(&committed) {
                // A savepoint that never completed: its files are nobody's.
                if self.storage.remove_dir(&dir).is_ok() {
                    self.record(Event::SavepointDiscarded { name });
                }
                continue;
            }
            match read_savepoint_metadata(&Subdirectory::new(&self.storage, dir)) {
                Ok(metadata) => found.push((name, metadata.checkpoint_id)),
                Err(error) => self.record(Event::SavepointUnusable {
                    name,
                    error: error.to_string(),
                }),
            }
        }
        found
    }

    /// Checks that `metadata` belongs to this job: its fingerprint, max parallelism, stages,
    /// and key groups exactly as this job assigns them at the parallelism recorded (a gap or an
    /// overlap would drop or duplicate state silently).
    fn validate_metadata(&self, metadata: &CheckpointMetadata) -> Result<(), Mismatch> {
        let job = self.job;
        if metadata.job_fingerprint != job.fingerprint() {
            return Err(Mismatch::Fingerprint);
        }
        if metadata.max_parallelism != job.max_parallelism {
            return Err(Mismatch::MaxParallelism {
                found: metadata.max_parallelism,
                job: job.max_parallelism,
            });
        }
        let names = job.stage_names();
        if metadata.stages.len() != names.len() {
            return Err(Mismatch::Stages {
                found: metadata.stages.len(),
                job: names.len(),
            });
        }
        for (index, stage) in metadata.stages.iter().enumerate() {
            self.validate_key_groups(index, stage)?;
        }
        for (stage, name) in metadata.stages.iter().zip(&names) {
            if &stage.name != name {
                return Err(Mismatch::StageName {
                    index: stage.stage,
                    found: stage.name.clone(),
                    job: name.clone(),
                });
            }
        }
        Ok(())
    }

    fn validate_key_groups(&self, index: usize, stage: &StageSnapshot) -> Result<(), Mismatch> {
        let job = self.job;
        let keyed = index >= 1 && index <= job.stages.len() && job.stages[index - 1].op.is_keyed();
        for subtask in &stage.subtasks {
            let expected = if keyed {
                key_group_range(job.max_parallelism, stage.parallelism, subtask.subtask)
            } else {
                KeyGroupRange {
                    start: 0,
                    end: job.max_parallelism - 1,
                }
            };
            if subtask.key_groups != expected {
                return Err(Mismatch::KeyGroups {
                    stage: stage.name.clone(),
                    subtask: subtask.subtask,
                    found: subtask.key_groups,
                    expected,
                });
            }
        }
        Ok(())
    }

    /// Keyed state of every backend, decoded: what a read now could see (TTL cells expired
    /// at the clock's time left out).
    pub(super) fn dump_state(&self, execution: &Execution) -> Result<StateView, Failure> {
        let now_ms = self.clock.now_ms();
        let mut view = StateView::new();
        for task in &execution.tasks {
            if let Body::Operator(OperatorTask {
                backend: Some(backend),
                ..
            }) = &task.body
            {
                let stage = &self.job.stages[task.stage - 1].name;
                let unreadable =
                    |error: String| Failure::new(&task.name, FailureCause::State { error });
                let entries = backend.entries().map_err(|e| unreadable(e.to_string()))?;
                view.add_live_entries(stage, backend.states(), &entries, now_ms)
                    .map_err(|e| unreadable(e.to_string()))?;
            }
        }
        Ok(view)
    }
}

/// A snapshot being restored: where from, how messages name it, its metadata and files.
struct Restoring<'r> {
    label: String,
    from: RestoreSource,
    metadata: &'r CheckpointMetadata,
    source: &'r Source,
    inspect: bool,
}

impl Restoring<'_> {
    /// The failure of the attempt when applying this snapshot failed.
    fn failure(&self, error: ApplyError) -> Failure {
        match error {
            ApplyError::Injected(action) => Failure::from_action(
                "restore",
                FaultAction {
                    detail: format!("{}: {}", self.label, action.detail),
                    ..action
                },
            ),
            ApplyError::Problem(problem) => Failure::restore(RestoreFailure {
                file: problem.file.map(|file| match self.source {
                    Source::OwnSavepoint(dir) => format!("{dir}/{file}"),
                    _ => file,
                }),
                detail: format!("{}: {}", self.label, problem.detail),
            }),
        }
    }
}

/// What applying a snapshot to freshly built tasks did.
struct Applied {
    positions: Positions,
    entries: u64,
    files: u64,
    events: Vec<Event>,
    /// Channel state went to tasks at another parallelism.
    rescaled_channel_state: bool,
}

/// Why applying a snapshot to freshly built tasks failed.
enum ApplyError {
    /// A fault fired in a task's restore.
    Injected(FaultAction),
    /// The snapshot could not be applied.
    Problem(RestoreFailure),
}

/// A restore problem about the file a storage error names.
fn problem_with(error: StorageError) -> RestoreFailure {
    RestoreFailure {
        file: Some(error.path().to_string()),
        detail: error.to_string(),
    }
}

/// An applying problem that names no file.
fn bad(detail: impl std::fmt::Display) -> ApplyError {
    ApplyError::Problem(RestoreFailure {
        file: None,
        detail: detail.to_string(),
    })
}

/// Reads a savepoint or retained checkpoint directory outside the job's storage. A savepoint's
/// paths are relative to its own directory; a checkpoint's to its parent (the root it lives in).
fn open_external(path: &Path) -> Result<(CheckpointMetadata, FsCheckpointStorage), RestoreFailure> {
    let metadata_file = path.join("_metadata");
    let about_metadata = |detail: String| RestoreFailure {
        file: Some(metadata_file.display().to_string()),
        detail: format!("{}: {detail}", metadata_file.display()),
    };
    let bytes = std::fs::read(&metadata_file).map_err(|e| about_metadata(e.to_string()))?;
    let metadata = CheckpointMetadata::decode(&bytes).map_err(|e| about_metadata(e.to_string()))?;
    let root = match metadata.kind {
        SnapshotKind::Savepoint => path.to_path_buf(),
        SnapshotKind::Checkpoint => path
            .parent()
            .ok_or_else(|| RestoreFailure {
                file: None,
                detail: format!(
                    "{}: a checkpoint directory has a parent root",
                    path.display()
                ),
            })?
            .to_path_buf(),
    };
    let storage = FsCheckpointStorage::new(root, Durability::PageCache).map_err(problem_with)?;
    for file in metadata.files() {
        registry::verify_file(&storage, file).map_err(problem_with)?;
    }
    Ok((metadata, storage))
}

/// Applies a snapshot to an attempt's freshly built tasks.
struct Applying<'a> {
    execution: &'a mut Execution,
    metadata: &'a CheckpointMetadata,
    storage: &'a dyn CheckpointStorage,
    mode: RestoreMode,
    store: &'a mut ExternalStore,
    input: &'a Input,
    inspect: bool,
    user_sink: bool,
    faults: &'a mut dyn FaultPlan,
    stage_names: Vec<String>,
    job: &'a crate::job::JobSpec,
    sabotage: super::Sabotage,
}

impl Applying<'_> {
    /// Restores every task: key groups to the subtasks that own them now, source positions to
    /// the subtasks that read each partition now, operator and sink state to the same subtask
    /// (or all of it to subtask 0 when the parallelism changed). Sinks are left alone when
    /// inspecting (restoring them would commit transactions in the external system).
    fn apply(&mut self) -> Result<Applied, ApplyError> {
        let positions = self.stored_positions()?;
        let mut applied = Applied {
            positions: Positions(Vec::new()),
            entries: 0,
            files: 0,
            events: Vec::new(),
            rescaled_channel_state: false,
        };
        for (stage, range) in self.execution.stage_tasks.clone().into_iter().enumerate() {
            let snapshot = &self.metadata.stages[stage];
            let rescaled = usize::from(snapshot.parallelism) != range.len();
            for task in range {
                self.restore_task(task, snapshot, rescaled, &positions, &mut applied)?;
            }
        }
        let (job, sabotage) = (self.job, self.sabotage);
        let recovered = super::unaligned::recover_channel_state(
            job,
            self.metadata,
            self.storage,
            self.execution,
            sabotage,
        )
        .map_err(ApplyError::Problem)?;
        applied.rescaled_channel_state = recovered.rescaled;
        applied.events.extend(recovered.events);
        let partitions = self.input.partitions().len() as u32;
        if let Some(extra) = positions.keys().find(|p| **p >= partitions) {
            return Err(bad(format!(
                "a position for partition {extra}, but the input has {partitions}"
            )));
        }
        applied.positions = Positions(
            (0..partitions)
                .map(|p| positions.get(&p).copied().unwrap_or(0))
                .collect(),
        );
        Ok(applied)
    }

    /// Every partition's position, from the sources' stored states.
    fn stored_positions(&self) -> Result<BTreeMap<u32, u64>, ApplyError> {
        let mut positions = BTreeMap::new();
        for state in &self.metadata.stages[0].subtasks {
            for (partition, offset) in decode_positions(&state.operator_state).map_err(bad)? {
                if positions.insert(partition, offset).is_some() {
                    return Err(bad(format!("partition {partition} has two positions")));
                }
            }
        }
        Ok(positions)
    }

    /// Restores task `index` from its stage's `snapshot`.
    fn restore_task(
        &mut self,
        index: usize,
        snapshot: &StageSnapshot,
        rescaled: bool,
        positions: &BTreeMap<u32, u64>,
        applied: &mut Applied,
    ) -> Result<(), ApplyError> {
        let task = &mut self.execution.tasks[index];
        let point = FaultPoint::Restore {
            attempt: self.execution.attempt,
            stage: &self.stage_names[task.stage],
            subtask: task.subtask,
        };
        if let Some(action) = self.faults.at(&point) {
            return Err(ApplyError::Injected(FaultAction {
                detail: format!("{}: {}", task.name, action.detail),
                ..action
            }));
        }
        let own: Vec<Vec<u8>> = match (rescaled, task.subtask) {
            (false, subtask) => vec![snapshot.subtasks[usize::from(subtask)]
                .operator_state
                .clone()],
            (true, 0) => snapshot
                .subtasks
                .iter()
                .map(|s| s.operator_state.clone())
                .collect(),
            (true, _) => Vec::new(),
        };
        match &mut task.body {
            Body::Source(source) => restore_positions(source, positions, self.input)?,
            Body::Operator(op) => {
                if let Some(backend) = op.backend.as_deref_mut() {
                    let handles = handles_for(snapshot, task.key_groups);
                    let (storage, mode) = (self.storage, self.mode);
                    let stats = guarded(&task.name, || backend.restore(&handles, storage, mode))
                        .map_err(|f| bad(format!("{}: {}", task.name, f.cause)))?
                        .map_err(|e| {
                            ApplyError::Problem(RestoreFailure {
                                file: e.file().map(str::to_string),
                                detail: format!("{}: {e}", task.name),
                            })
                        })?;
                    applied.entries += stats.entries;
                    applied.files += stats.files;
                }
                op.op
                    .restore_state(&own)
                    .map_err(|e| bad(format!("{}: {e}", task.name)))?;
            }
            Body::Sink(_) if self.inspect => {}
            Body::Sink(sink) => {
                let store = &mut *self.store;
                let events = guarded_if(self.user_sink, &task.name, || sink.restore(&own, store))
                    .map_err(|f| bad(format!("{}: {}", task.name, f.cause)))?
                    .map_err(|e| bad(format!("{}: {e}", task.name)))?;
                applied
                    .events
                    .extend(events.into_iter().map(|event| Event::Txn {
                        task: task.name.clone(),
                        event,
                    }));
            }
        }
        Ok(())
    }
}

/// A source task's positions, each checked against its partition's length.
fn restore_positions(
    source: &mut SourceTask,
    positions: &BTreeMap<u32, u64>,
    input: &Input,
) -> Result<(), ApplyError> {
    for partition in &source.partitions {
        let offset = *positions
            .get(partition)
            .ok_or_else(|| bad(format!("no position for partition {partition}")))?;
        let len = input.partitions()[*partition as usize].len() as u64;
        if offset > len {
            return Err(bad(format!(
                "partition {partition} position {offset} is past its end {len}"
            )));
        }
        source.positions.insert(*partition, offset);
    }
    Ok(())
}

/// The keyed state handles of `snapshot` whose key groups overlap `key_groups`.
fn handles_for(snapshot: &StageSnapshot, key_groups: KeyGroupRange) -> Vec<RestoreHandle> {
    RestoreHandle::overlapping(
        snapshot
            .subtasks
            .iter()
            .map(|s| (s.key_groups, s.keyed.as_ref())),
        key_groups,
    )
}

/// Where the chosen snapshot's files are read from.
enum Source {
    /// The job's own checkpoint storage (CLAIM).
    Own,
    /// A savepoint directory inside it (NO_CLAIM: the user's files).
    OwnSavepoint(RelPath),
    /// A directory elsewhere (NO_CLAIM).
    External(FsCheckpointStorage),
}

fn savepoint_dir(name: &str) -> RelPath {
    RelPath::new(&format!("savepoints/{name}")).expect("savepoint names are plain file names")
}

fn read_savepoint_metadata(
    view: &dyn CheckpointStorage,
) -> Result<CheckpointMetadata, StorageError> {
    let path = RelPath::new("_metadata").expect("a valid relative path");
    let bytes = view.read(&path)?;
    CheckpointMetadata::decode(&bytes).map_err(|e| StorageError::format(&path, e))
}
