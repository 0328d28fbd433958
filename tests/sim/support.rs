//! Shared fixtures: job shapes, seeded inputs, and a runner of one phase with any run
//! configuration that keeps its directory alive.

use faultline::campaign::CaseReport;
use faultline::checkpoint::CheckpointConfig;
use faultline::checkpoint::CheckpointStorage;
use faultline::checkpoint::{Durability, FsCheckpointStorage};
use faultline::engine::RunConfig;
use faultline::engine::{RestoreRecord, Runtime};
use faultline::fault::NoFaults;
use faultline::fault::{Fault, FaultPlan, FaultSchedule};
use faultline::job::{
    ExternalStore, Input, InputRecord, JobSpec, OperatorSpec, RestartStrategy, SinkKind, SinkSpec,
    SourceSpec, StageSpec,
};
use faultline::state::{
    BackendContext, BackendKind, CellRef, MemoryBackend, RestoreHandle, RestoreMode, RestoreStats,
    SnapshotResult, SnapshotTarget, StateBackend, StateBackendFactory, StateEntry, StateError,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn stage(name: &str, op: OperatorSpec, parallelism: u16) -> StageSpec {
    StageSpec {
        name: name.into(),
        op,
        parallelism,
        processing_ms: 1,
    }
}

/// source(1) -> sum(1) -> two-phase sink(1): no fan-in.
pub fn linear_job() -> JobSpec {
    JobSpec {
        name: "linear".into(),
        max_parallelism: 128,
        source: SourceSpec {
            parallelism: 1,
            partitions: None,
            emit_ms: 1,
            watermarks: None,
        },
        stages: vec![stage("sum", OperatorSpec::Sum, 1)],
        sink: SinkSpec {
            kind: SinkKind::TwoPhaseCommit,
            parallelism: 1,
        },
    }
}

/// source(2, 4 partitions) -> scale(2) -> sum(3) -> stats(2) -> two-phase sink(2): fan-in at
/// every keyed stage, so alignment matters.
pub fn fan_in_job() -> JobSpec {
    JobSpec {
        name: "fan-in".into(),
        max_parallelism: 128,
        source: SourceSpec {
            parallelism: 2,
            partitions: Some(4),
            emit_ms: 1,
            watermarks: None,
        },
        stages: vec![
            stage("scale", OperatorSpec::Scale { factor: 3 }, 2),
            stage("sum", OperatorSpec::Sum, 3),
            stage("stats", OperatorSpec::Stats, 2),
        ],
        sink: SinkSpec {
            kind: SinkKind::TwoPhaseCommit,
            parallelism: 2,
        },
    }
}

/// source(3) -> split(3) -> filter-min(2) -> max(4) -> two-phase sink(1): flat-map, filter, a
/// keyed reduce, and a sink fed by four subtasks.
pub fn split_job() -> JobSpec {
    JobSpec {
        name: "split".into(),
        max_parallelism: 64,
        source: SourceSpec {
            parallelism: 3,
            partitions: None,
            emit_ms: 1,
            watermarks: None,
        },
        stages: vec![
            stage("split", OperatorSpec::Split { parts: 3 }, 3),
            stage("filter", OperatorSpec::FilterMin { min: 5 }, 2),
            stage("max", OperatorSpec::Max, 4),
        ],
        sink: SinkSpec {
            kind: SinkKind::TwoPhaseCommit,
            parallelism: 1,
        },
    }
}

/// Every shape above.
pub fn job_shapes() -> Vec<JobSpec> {
    vec![linear_job(), fan_in_job(), split_job()]
}

/// `records` records over `keys` keys with values in -20..200, drawn from `seed`.
pub fn input_for(job: &JobSpec, records: usize, keys: usize, seed: u64) -> Input {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let rows: Vec<InputRecord> = (0..records)
        .map(|i| {
            let key = format!("k{}", rng.random_range(0..keys));
            InputRecord::transaction(&format!("r{i}"), &key, rng.random_range(-20..200))
        })
        .collect();
    Input::partitioned(&rows, job.source.partition_count())
}

/// Checkpoint every `interval_ms`, restart fixed-delay(10, 50 ms).
pub fn config(seed: u64, interval_ms: u64) -> RunConfig {
    RunConfig::new(
        seed,
        CheckpointConfig::every(interval_ms),
        RestartStrategy::FixedDelay {
            attempts: 10,
            delay_ms: 50,
        },
    )
}

/// Kills at the given scheduler steps.
pub fn kills(steps: &[u64]) -> FaultSchedule {
    FaultSchedule::new(steps.iter().map(|&step| Fault::Kill { step }).collect())
}

/// Runs a case on the memory backend in a fresh temporary directory, which is returned so the
/// checkpoints can be inspected.
pub fn run(
    job: &JobSpec,
    input: &Input,
    config: &RunConfig,
    faults: &mut FaultSchedule,
) -> (CaseReport, tempfile::TempDir) {
    run_on(BackendKind::Memory, job, input, config, faults)
}

/// Runs a case on `backend` in a fresh temporary directory (returned; checkpoints live in its
/// `checkpoints` folder).
pub fn run_on(
    backend: BackendKind,
    job: &JobSpec,
    input: &Input,
    config: &RunConfig,
    faults: &mut FaultSchedule,
) -> (CaseReport, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let factory = backend.factory().expect("the backend is built in");
    let report = run_phase(
        job,
        input,
        config,
        factory.as_ref(),
        faults,
        dir.path(),
        ExternalStore::new(),
    );
    (report, dir)
}

/// One phase of a case, any run configuration and fault plan, run in `dir` against `store` (an
/// external system an earlier run may have written to) and judged by the oracle: what the
/// engine's tests need beyond a [`faultline::campaign::Case`]'s scenario.
pub fn run_phase(
    job: &JobSpec,
    input: &Input,
    config: &RunConfig,
    backends: &dyn StateBackendFactory,
    faults: &mut dyn FaultPlan,
    dir: &std::path::Path,
    store: ExternalStore,
) -> CaseReport {
    let mut storage = FsCheckpointStorage::new(dir.join("checkpoints"), Durability::PageCache)
        .expect("the checkpoint root");
    let store = match store.dir() {
        Some(_) => store,
        None => {
            let external = dir.join("external");
            std::fs::create_dir_all(&external).expect("the external system's directory");
            store.with_dir(external)
        }
    };
    let outcome = Runtime::new(
        job,
        input,
        config.clone(),
        backends,
        &mut storage,
        faults,
        &dir.join("work"),
    )
    .expect("the job is valid")
    .with_store(store)
    .run()
    .expect("the case runs");
    let verdict = faultline::check::check_phase(job, input, config, &outcome);
    CaseReport {
        trace_hash: outcome.trace.hash(),
        outcome,
        verdict,
        real_kills: 0,
    }
}

/// Restores checkpoint `id` from the root `checkpoints` with `backend`, without running.
pub fn restore_checkpoint(
    backend: BackendKind,
    job: &JobSpec,
    input: &Input,
    config: &RunConfig,
    checkpoints: &std::path::Path,
    id: u64,
) -> Result<RestoreRecord, String> {
    let mut storage = FsCheckpointStorage::new(checkpoints, Durability::PageCache).unwrap();
    let work = tempfile::tempdir().unwrap();
    let factory = backend.factory().expect("the backend is built in");
    let mut faults = NoFaults;
    let runtime = Runtime::new(
        job,
        input,
        config.clone(),
        factory.as_ref(),
        &mut storage,
        &mut faults,
        work.path(),
    )
    .unwrap();
    runtime
        .restore_for_inspection(id)
        .map_err(|e| e.to_string())
}

/// Panics with the verdict and trace when the oracle found a violation.
#[track_caller]
pub fn assert_passed(report: &CaseReport) {
    assert!(
        report.verdict.passed(),
        "{}\ntrace:\n{}",
        report.verdict,
        report.outcome.trace.render()
    );
}

/// The cell-access half of `StateBackend`, delegated to `self.inner`: the suite's wrapper
/// backends differ only in how they snapshot, restore and hear of checkpoints.
macro_rules! delegate_cell_access {
    () => {
        fn key_groups(&self) -> faultline::state::KeyGroupRange {
            self.inner.key_groups()
        }
        fn register_state(
            &mut self,
            descriptor: &faultline::state::StateDescriptor,
        ) -> Result<faultline::state::StateId, faultline::state::StateError> {
            self.inner.register_state(descriptor)
        }
        fn states(&self) -> &[faultline::state::StateDescriptor] {
            self.inner.states()
        }
        fn get(
            &self,
            cell: faultline::state::CellRef<'_>,
        ) -> Result<Option<Vec<u8>>, faultline::state::StateError> {
            self.inner.get(cell)
        }
        fn put(
            &mut self,
            cell: faultline::state::CellRef<'_>,
            value: &[u8],
        ) -> Result<(), faultline::state::StateError> {
            self.inner.put(cell, value)
        }
        fn delete(
            &mut self,
            cell: faultline::state::CellRef<'_>,
        ) -> Result<(), faultline::state::StateError> {
            self.inner.delete(cell)
        }
        fn user_entries(
            &self,
            state: faultline::state::StateId,
            key_group: u16,
            key: &[u8],
        ) -> Result<faultline::state::UserEntries, faultline::state::StateError> {
            self.inner.user_entries(state, key_group, key)
        }
        fn entries(
            &self,
        ) -> Result<Vec<faultline::state::StateEntry>, faultline::state::StateError> {
            self.inner.entries()
        }
    };
}
pub(crate) use delegate_cell_access;

/// The `Sink` methods named, delegated to the wrapped sink in field `$field`: the suite's
/// broken sinks each change one or two methods of a correct one and list the rest here.
macro_rules! delegate_sink {
    ($field:tt; $($method:ident),* $(,)?) => {
        $(crate::support::delegate_sink!(@ $field $method);)*
    };
    (@ $field:tt write) => {
        fn write(
            &mut self,
            record: faultline::job::Record,
            store: &mut faultline::job::ExternalStore,
        ) -> Result<Vec<faultline::job::sink::TxnEvent>, faultline::job::sink::StoreError> {
            self.$field.write(record, store)
        }
    };
    (@ $field:tt snapshot) => {
        fn snapshot(
            &mut self,
            checkpoint_id: u64,
            store: &mut faultline::job::ExternalStore,
        ) -> Result<
            (Vec<u8>, Vec<faultline::job::sink::TxnEvent>),
            faultline::job::sink::StoreError,
        > {
            self.$field.snapshot(checkpoint_id, store)
        }
    };
    (@ $field:tt pending_transactions) => {
        fn pending_transactions(&self) -> usize {
            self.$field.pending_transactions()
        }
    };
    (@ $field:tt notify_checkpoint_complete) => {
        fn notify_checkpoint_complete(
            &mut self,
            checkpoint_id: u64,
            store: &mut faultline::job::ExternalStore,
        ) -> Result<Vec<faultline::job::sink::TxnEvent>, faultline::job::sink::StoreError> {
            self.$field.notify_checkpoint_complete(checkpoint_id, store)
        }
    };
    (@ $field:tt restore) => {
        fn restore(
            &mut self,
            states: &[Vec<u8>],
            store: &mut faultline::job::ExternalStore,
        ) -> Result<Vec<faultline::job::sink::TxnEvent>, faultline::job::sink::StoreError> {
            self.$field.restore(states, store)
        }
    };
}
pub(crate) use delegate_sink;

/// A deliberately broken backend: the memory backend, with `after_restore` applied to its cells
/// after every restore. The suite's broken backends are each one such twist.
pub struct TwistedFactory {
    /// The backend's name in traces.
    pub name: &'static str,
    /// The twist, given the restored backend, the handles it restored from and the processing
    /// time of the restore.
    pub after_restore: fn(&mut MemoryBackend, &[RestoreHandle], u64) -> Result<(), StateError>,
}

impl StateBackendFactory for TwistedFactory {
    fn name(&self) -> &'static str {
        self.name
    }
    fn create(&self, context: BackendContext) -> Result<Box<dyn StateBackend>, StateError> {
        Ok(Box::new(Twisted {
            inner: MemoryBackend::new(context.task_name, context.key_groups),
            name: self.name,
            after_restore: self.after_restore,
            restored_ms: context.created_ms,
        }))
    }
}

struct Twisted {
    inner: MemoryBackend,
    name: &'static str,
    after_restore: fn(&mut MemoryBackend, &[RestoreHandle], u64) -> Result<(), StateError>,
    restored_ms: u64,
}

impl StateBackend for Twisted {
    fn name(&self) -> &'static str {
        self.name
    }
    delegate_cell_access!();
    fn snapshot(
        &mut self,
        target: &SnapshotTarget,
        storage: &mut dyn CheckpointStorage,
    ) -> Result<SnapshotResult, StateError> {
        self.inner.snapshot(target, storage)
    }
    fn restore(
        &mut self,
        handles: &[RestoreHandle],
        storage: &dyn CheckpointStorage,
        mode: RestoreMode,
    ) -> Result<RestoreStats, StateError> {
        let stats = self.inner.restore(handles, storage, mode)?;
        (self.after_restore)(&mut self.inner, handles, self.restored_ms)?;
        Ok(stats)
    }
}

/// Deletes every cell of `backend` that `doomed` selects.
pub fn delete_cells(
    backend: &mut dyn StateBackend,
    doomed: impl Fn(&StateEntry) -> bool,
) -> Result<(), StateError> {
    for entry in backend.entries()? {
        if doomed(&entry) {
            backend.delete(CellRef {
                state: entry.state,
                key_group: entry.key_group,
                key: &entry.key,
                user_key: &entry.user_key,
            })?;
        }
    }
    Ok(())
}
