//! Building an attempt's tasks and channels, and restoring them from a checkpoint: finding the
//! latest `_metadata` in storage (never a list in memory), validating it against the job,
//! redistributing key groups, source positions and sink transactions.

use super::Runtime;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::task::*;

use std::path::Path;

use crate::checkpoint::coordinator::Command;
use crate::checkpoint::upload::Uploads;
use crate::checkpoint::RestorePolicy;
use crate::checkpoint::{
    registry, CheckpointMetadata, CheckpointStorage, Durability, FsCheckpointStorage, RelPath,
    SnapshotKind, StorageError, Subdirectory,
};
use crate::fault::{FaultAction, FaultPlan, FaultPoint};
use crate::job::keygroup::key_group_range;
use crate::job::operator;
use crate::job::sink::ExternalStore;
use crate::job::sink::{PrintSink, Sink, TwoPhaseCommitSink};
use crate::job::spec::JobSpec;
use crate::job::spec::SinkKind;
use crate::job::user;
use crate::job::Input;
use crate::job::OperatorSpec;
use crate::job::Positions;
use crate::state::{BackendContext, KeyGroupRange, RestoreHandle, RestoreMode, StateView};
use crate::trace::{AuditContext, Event, FailureCause, RestoreFailure, RestoreSource, Restored};

impl<'a> Runtime<'a> {
    pub(super) fn build_execution(
        &mut self,
        attempt: u32,
        target: RestoreTarget,
    ) -> Result<Execution, Failure> {
        // A new attempt is a new process in Flink's sense: nothing of the old hand-off survives.
        self.uploads = Uploads::new();
        let job = self.job;
        let names = job.stage_names();
        let parallelisms = job.stage_parallelisms();
        let max_parallelism = job.max_parallelism;
        let full_range = KeyGroupRange {
            start: 0,
            end: max_parallelism - 1,
        };

        let mut tasks = Vec::new();
        let mut stage_tasks = Vec::new();
        for (stage, (name, &parallelism)) in names.iter().zip(&parallelisms).enumerate() {
            let first = tasks.len();
            for subtask in 0..parallelism {
                let task_name = format!("{name}[{subtask}]");
                let keyed =
                    stage >= 1 && stage <= job.stages.len() && job.stages[stage - 1].op.is_keyed();
                let key_groups = if keyed {
                    key_group_range(max_parallelism, parallelism, subtask)
                } else {
                    full_range
                };
                let body = if stage == 0 {
                    let partitions: Vec<u32> = (0..job.source.partition_count())
                        .filter(|p| p % u32::from(parallelism) == u32::from(subtask))
                        .collect();
                    let positions = partitions.iter().map(|p| (*p, 0)).collect();
                    let reader = self.source_factory.map(|factory| UserReader {
                        source: factory(subtask),
                        lengths: partitions
                            .iter()
                            .map(|p| (*p, self.input.partitions()[*p as usize].len() as u64))
                            .collect(),
                        opened: false,
                        finished: false,
                    });
                    Body::Source(SourceTask {
                        partitions,
                        positions,
                        cursor: 0,
                        emit_ms: job.source.emit_ms,
                        reader,
                    })
                } else if stage == names.len() - 1 {
                    let sink: Box<dyn Sink> = match (self.sink_factory, job.sink.kind) {
                        (Some(factory), _) => factory(subtask),
                        (None, SinkKind::TwoPhaseCommit) => {
                            Box::new(TwoPhaseCommitSink::new(subtask))
                        }
                        (None, SinkKind::Print) => Box::new(PrintSink),
                    };
                    Body::Sink(sink)
                } else {
                    let spec = &job.stages[stage - 1];
                    let backend = if keyed {
                        let working_dir = self
                            .work_dir
                            .join(format!("attempt-{attempt}"))
                            .join(format!("{name}-{subtask}"));
                        let context = BackendContext {
                            task_name: format!("{name}-{subtask}"),
                            instance: format!("a{attempt}"),
                            key_groups,
                            working_dir,
                        };
                        Some(self.backends.create(context).map_err(|e| {
                            Failure::new(
                                &task_name,
                                FailureCause::Backend {
                                    error: e.to_string(),
                                },
                            )
                        })?)
                    } else {
                        None
                    };
                    let op = match &spec.op {
                        OperatorSpec::User { name, .. } => {
                            match user::find(self.user_operators, name) {
                                Some(user) => (user.build)(subtask),
                                None => operator::build(&spec.op),
                            }
                        }
                        built_in => operator::build(built_in),
                    };
                    Body::Operator(OperatorTask {
                        op,
                        backend,
                        processing_ms: spec.processing_ms,
                        processed: 0,
                    })
                };
                tasks.push(Task {
                    name: task_name,
                    stage,
                    subtask,
                    key_groups,
                    inputs: Vec::new(),
                    outputs: Outputs {
                        channels: Vec::new(),
                        forward: false,
                    },
                    alignment: Alignment::default(),
                    body,
                });
            }
            stage_tasks.push(first..tasks.len());
        }

        // Wire the channels: forward edges pair subtasks by index; other edges connect every
        // upstream subtask to every downstream one, in subtask order.
        let mut channels = Vec::new();
        for downstream in 1..names.len() {
            let forward = job.edge_is_forward(downstream);
            let upstream_tasks = stage_tasks[downstream - 1].clone();
            let downstream_tasks = stage_tasks[downstream].clone();
            for up in upstream_tasks {
                tasks[up].outputs.forward = forward;
                for down in downstream_tasks.clone() {
                    if forward && tasks[up].subtask != tasks[down].subtask {
                        continue;
                    }
                    channels.push(Channel::default());
                    tasks[up].outputs.channels.push(channels.len() - 1);
                    tasks[down].inputs.push(channels.len() - 1);
                }
            }
        }
        for task in &mut tasks {
            task.alignment.received = vec![false; task.inputs.len()];
        }

        let mut execution = Execution {
            attempt,
            tasks,
            channels,
            stage_tasks,
            notifications: VecDeque::new(),
            delayed: Vec::new(),
        };
        self.coordinator.start_attempt(self.clock.now_ms());
        self.record(Event::AttemptStarted {
            attempt,
            tasks: execution.tasks.len(),
            channels: execution.channels.len(),
        });
        if target != RestoreTarget::Fresh {
            self.restore(&mut execution, target)?;
        }
        Ok(execution)
    }

    /// Restores an attempt: from `target`'s checkpoint in the job's own storage (CLAIM mode), or,
    /// when none completed yet, from the configured initial snapshot (NO_CLAIM), or from
    /// nothing. Incomplete checkpoint directories left by a failure are removed first, and shared
    /// files no retained checkpoint references are collected.
    pub(super) fn restore(
        &mut self,
        execution: &mut Execution,
        target: RestoreTarget,
    ) -> Result<(), Failure> {
        let storage_error = |e: StorageError| Failure::restore(problem_with(e));
        let dirs = registry::checkpoint_dirs(&self.storage).map_err(storage_error)?;
        // Checkpoint ids never repeat, even across restarts: aborted ones leave gaps.
        self.coordinator
            .ids_above(registry::highest_snapshot_id(&self.storage));
        let ids: Vec<u64> = dirs
            .iter()
            .filter(|(_, complete)| *complete)
            .map(|(id, _)| *id)
            .collect();
        if !matches!(target, RestoreTarget::Inspect(_))
            && self.config.restore_policy == RestorePolicy::FailLoudly
        {
            // A checkpoint recorded as completed must still be there: restoring anything older
            // would replay output its sink transactions already committed.
            if let Some(latest) =
                registry::latest_completed(&self.storage).map_err(storage_error)?
            {
                if !ids.contains(&latest) {
                    return Err(Failure::restore(RestoreFailure {
                        file: Some(registry::metadata_path(latest).to_string()),
                        detail: format!(
                            "chk-{latest}: completed, but chk-{latest}/_metadata is missing"
                        ),
                    }));
                }
            }
        }
        if !matches!(target, RestoreTarget::Inspect(_)) {
            for (id, complete) in &dirs {
                if !complete {
                    self.storage
                        .remove_dir(&registry::checkpoint_dir(*id))
                        .map_err(storage_error)?;
                    self.record(Event::CheckpointDiscarded { checkpoint: *id });
                }
            }
            let retained: Vec<(u64, Result<BTreeSet<RelPath>, String>)> =
                registry::retained(&self.storage)
                    .map_err(storage_error)?
                    .into_iter()
                    .map(|checkpoint| {
                        let shared = checkpoint
                            .metadata
                            .map(|metadata| metadata.shared_paths())
                            .map_err(|error| error.to_string());
                        (checkpoint.id, shared)
                    })
                    .collect();
            // The new attempt's upload hand-off holds the retained checkpoints' shared files,
            // so the restored state may reuse them and nothing collects them meanwhile.
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
        }
        // Savepoints this job took count as restore candidates too (FLINK-10354): a savepoint
        // commits the sink's pending transactions, so failing over to an older checkpoint
        // would replay committed output.
        let mut candidates: Vec<Candidate> = match target {
            RestoreTarget::Inspect(id) => vec![Candidate::Checkpoint(id)],
            _ => ids.iter().map(|id| Candidate::Checkpoint(*id)).collect(),
        };
        if !matches!(target, RestoreTarget::Inspect(_)) {
            for (name, id) in self.own_savepoints() {
                // A savepoint whose `_metadata` committed is taken, even if the process died
                // before it could say so: it must never be taken again into the same place.
                self.coordinator.taken(&name);
                candidates.push(Candidate::Savepoint { name, id });
            }
        }
        candidates.sort_by_key(|candidate| std::cmp::Reverse(candidate.id()));
        let mut chosen = None;
        for (index, candidate) in candidates.iter().enumerate() {
            match self.validate_candidate(candidate) {
                Ok(metadata) => {
                    chosen = Some((candidate.clone(), metadata));
                    break;
                }
                Err(problem)
                    if self.config.restore_policy == RestorePolicy::FallbackToLatestValid
                        && index + 1 < candidates.len() =>
                {
                    self.record(Event::RestoreFallback {
                        candidate: candidate.label(),
                        problem: problem.detail,
                    });
                }
                Err(problem) => {
                    return Err(Failure::restore(RestoreFailure {
                        file: problem.file,
                        detail: format!("{}: {}", candidate.label(), problem.detail),
                    }))
                }
            }
        }
        let (label, from, metadata, source) = match chosen {
            Some((candidate, metadata)) => {
                let (source, from) = match &candidate {
                    Candidate::Checkpoint(id) => (Source::Own, RestoreSource::Checkpoint(*id)),
                    Candidate::Savepoint { name, id } => (
                        Source::OwnSavepoint(savepoint_dir(name)),
                        RestoreSource::Savepoint {
                            name: name.clone(),
                            checkpoint: *id,
                        },
                    ),
                };
                (candidate.label(), from, metadata, source)
            }
            None => match self.config.initial_snapshot.clone() {
                Some(path) => {
                    let (metadata, storage) = open_external(&path).map_err(Failure::restore)?;
                    self.validate_metadata(&metadata).map_err(|e| {
                        Failure::restore(RestoreFailure {
                            file: Some(path.join("_metadata").display().to_string()),
                            detail: format!("{}: {e}", path.display()),
                        })
                    })?;
                    let label = path.display().to_string();
                    let from = RestoreSource::External {
                        path: label.clone(),
                    };
                    (label, from, metadata, Source::External(storage))
                }
                None => {
                    let positions = Positions::start(self.input.partitions().len());
                    // Nothing to restore, but the external system still holds what the failed
                    // attempt began: each sink aborts its lingering transactions, as a Kafka
                    // producer's fencing of its transactional id would.
                    let mut events = Vec::new();
                    for task in &mut execution.tasks {
                        if let Body::Sink(sink) = &mut task.body {
                            let (user, store) = (self.sink_factory.is_some(), &mut self.store);
                            let restored =
                                guarded_if(user, &task.name, || sink.restore(&[], store))?
                                    .map_err(|e| {
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
                    return Ok(());
                }
            },
        };
        let inspect = matches!(target, RestoreTarget::Inspect(_));
        let subdirectory;
        let (own, faults) = self.storage.split();
        let (storage, mode): (&dyn CheckpointStorage, RestoreMode) = match &source {
            Source::Own => (own, RestoreMode::Claim),
            Source::OwnSavepoint(dir) => {
                subdirectory = Subdirectory::new(own, dir.clone());
                (&subdirectory, RestoreMode::NoClaim)
            }
            Source::External(storage) => (storage, RestoreMode::NoClaim),
        };
        let applied = apply_snapshot(
            execution,
            &metadata,
            storage,
            mode,
            &mut self.store,
            self.input,
            inspect,
            self.sink_factory.is_some(),
            faults,
            self.job,
        )
        .map_err(|applying| match applying {
            Applying::Injected(action) => Failure::from_action(
                "restore",
                FaultAction {
                    detail: format!("{label}: {}", action.detail),
                    ..action
                },
            ),
            Applying::Problem(problem) => Failure::restore(RestoreFailure {
                file: problem.file.map(|file| match &source {
                    Source::OwnSavepoint(dir) => format!("{dir}/{file}"),
                    _ => file,
                }),
                detail: format!("{label}: {}", problem.detail),
            }),
        })?;
        for event in applied.events {
            self.record(event);
        }
        let state = self.dump_state(execution)?;
        self.record(Event::Restored(Restored {
            attempt: execution.attempt,
            from,
            positions: applied.positions,
            entries: applied.entries,
            files: applied.files,
            no_claim: mode == RestoreMode::NoClaim,
            state,
        }));
        if !inspect {
            self.audit_storage(AuditContext::AfterRestore(execution.attempt));
        }
        Ok(())
    }

    /// Decodes a retained checkpoint's `_metadata`, checks it belongs to this job, and (unless
    /// the backends verify their own files) verifies every file it names before any of it is
    /// used.
    fn validate_candidate(
        &self,
        candidate: &Candidate,
    ) -> Result<CheckpointMetadata, RestoreFailure> {
        match candidate {
            Candidate::Checkpoint(id) => {
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
            Candidate::Savepoint { name, .. } => {
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
            .map_err(|detail| RestoreFailure {
                file: Some(metadata_file.to_string()),
                detail,
            })?;
        if self.config.verify_restored_files {
            for file in metadata.files() {
                registry::verify_file(storage, file).map_err(problem_with)?;
            }
        }
        Ok(())
    }

    /// Savepoints in this job's own root whose `_metadata` reads, with their barrier ids.
    fn own_savepoints(&mut self) -> Vec<(String, u64)> {
        let root = RelPath::new("savepoints").expect("a valid relative path");
        let names = self.storage.list(Some(&root)).unwrap_or_default();
        let mut found = Vec::new();
        for name in names {
            let Ok(dir) = root.join(&name) else { continue };
            if !self
                .storage
                .exists(&dir.join("_metadata").expect("a valid name"))
            {
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

    pub(super) fn validate_metadata(&self, metadata: &CheckpointMetadata) -> Result<(), String> {
        let job = self.job;
        if metadata.job_fingerprint != job.fingerprint() {
            return Err("written by a different job (fingerprint mismatch)".into());
        }
        if metadata.max_parallelism != job.max_parallelism {
            return Err(format!(
                "max parallelism {} differs from the job's {}",
                metadata.max_parallelism, job.max_parallelism
            ));
        }
        let names = job.stage_names();
        if metadata.stages.len() != names.len() {
            return Err(format!(
                "{} stages, the job has {}",
                metadata.stages.len(),
                names.len()
            ));
        }
        for (index, stage) in metadata.stages.iter().enumerate() {
            // Key groups must be exactly how this job partitions them at that parallelism:
            // a gap or overlap would drop or duplicate state silently.
            let keyed =
                index >= 1 && index <= job.stages.len() && job.stages[index - 1].op.is_keyed();
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
                    return Err(format!(
                        "{}[{}] owned key groups {}, the job assigns {expected}",
                        stage.name, subtask.subtask, subtask.key_groups
                    ));
                }
            }
        }
        for (stage, name) in metadata.stages.iter().zip(&names) {
            if &stage.name != name {
                return Err(format!(
                    "stage {} is {:?}, the job has {:?}",
                    stage.stage, stage.name, name
                ));
            }
        }
        Ok(())
    }

    /// Keyed state of every backend, decoded.
    pub(super) fn dump_state(&self, execution: &Execution) -> Result<StateView, Failure> {
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
                view.add_entries(stage, backend.states(), &entries)
                    .map_err(|e| unreadable(e.to_string()))?;
            }
        }
        Ok(view)
    }
}

/// What applying a snapshot to freshly built tasks did.
struct Applied {
    positions: Positions,
    entries: u64,
    files: u64,
    events: Vec<Event>,
}

/// A restore problem about the file a storage error names.
fn problem_with(error: StorageError) -> RestoreFailure {
    RestoreFailure {
        file: Some(error.path().to_string()),
        detail: error.to_string(),
    }
}

/// A restore problem that names no file.
fn problem(detail: String) -> RestoreFailure {
    RestoreFailure { file: None, detail }
}

/// Why applying a snapshot to freshly built tasks failed.
enum Applying {
    /// A fault fired in a task's restore.
    Injected(FaultAction),
    /// The snapshot could not be applied.
    Problem(RestoreFailure),
}

/// An applying problem that names no file.
fn bad(detail: impl std::fmt::Display) -> Applying {
    Applying::Problem(problem(detail.to_string()))
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
            .ok_or_else(|| {
                problem(format!(
                    "{}: a checkpoint directory has a parent root",
                    path.display()
                ))
            })?
            .to_path_buf(),
    };
    let storage = FsCheckpointStorage::new(root, Durability::PageCache).map_err(problem_with)?;
    for file in metadata.files() {
        registry::verify_file(&storage, file).map_err(problem_with)?;
    }
    Ok((metadata, storage))
}

/// Restores every task of `execution` from `metadata`: key groups go to the subtasks that own
/// them now, source positions to the subtasks that read each partition now, and operator and
/// sink state to the same subtask (or all of it to subtask 0 when the parallelism changed).
#[allow(clippy::too_many_arguments)] // One call site; a struct would only rename these.
fn apply_snapshot(
    execution: &mut Execution,
    metadata: &CheckpointMetadata,
    storage: &dyn CheckpointStorage,
    mode: RestoreMode,
    store: &mut ExternalStore,
    input: &Input,
    inspect: bool,
    user_sink: bool,
    faults: &mut dyn FaultPlan,
    job: &JobSpec,
) -> Result<Applied, Applying> {
    let attempt = execution.attempt;
    let mut positions = BTreeMap::new();
    for state in &metadata.stages[0].subtasks {
        for (partition, offset) in decode_positions(&state.operator_state).map_err(bad)? {
            if positions.insert(partition, offset).is_some() {
                return Err(bad(format!("partition {partition} has two positions")));
            }
        }
    }
    let mut applied = Applied {
        positions: Positions(Vec::new()),
        entries: 0,
        files: 0,
        events: Vec::new(),
    };
    for (stage, range) in execution.stage_tasks.clone().into_iter().enumerate() {
        let snapshot = &metadata.stages[stage];
        let rescaled = usize::from(snapshot.parallelism) != range.len();
        for task_index in range {
            let task = &mut execution.tasks[task_index];
            let stage_name = &job.stage_names()[task.stage];
            if let Some(action) = faults.at(&FaultPoint::Restore {
                attempt,
                stage: stage_name,
                subtask: task.subtask,
            }) {
                return Err(Applying::Injected(FaultAction {
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
                Body::Source(source) => {
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
                }
                Body::Operator(op) => {
                    if let Some(backend) = op.backend.as_deref_mut() {
                        let handles: Vec<RestoreHandle> = snapshot
                            .subtasks
                            .iter()
                            .filter(|s| s.key_groups.intersects(&task.key_groups))
                            .filter_map(|s| {
                                s.keyed.clone().map(|handle| RestoreHandle {
                                    key_groups: s.key_groups,
                                    handle,
                                })
                            })
                            .collect();
                        let stats =
                            guarded(&task.name, || backend.restore(&handles, storage, mode))
                                .map_err(|f| bad(format!("{}: {}", task.name, f.cause)))?
                                .map_err(|e| {
                                    Applying::Problem(RestoreFailure {
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
                Body::Sink(_) if inspect => {}
                Body::Sink(sink) => {
                    let events = guarded_if(user_sink, &task.name, || sink.restore(&own, store))
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
        }
    }
    let partitions = input.partitions().len() as u32;
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

/// A snapshot restore may use.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Candidate {
    /// A retained checkpoint.
    Checkpoint(u64),
    /// A savepoint this job took, in `savepoints/<name>`.
    Savepoint { name: String, id: u64 },
}

impl Candidate {
    fn id(&self) -> u64 {
        match self {
            Candidate::Checkpoint(id) | Candidate::Savepoint { id, .. } => *id,
        }
    }

    fn label(&self) -> String {
        match self {
            Candidate::Checkpoint(id) => format!("chk-{id}"),
            Candidate::Savepoint { name, id } => format!("savepoint {name} (chk-{id})"),
        }
    }
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
