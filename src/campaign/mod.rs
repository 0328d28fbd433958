//! Cases: a job, its input, a run configuration, a fault plan and a backend, run end to end on
//! real checkpoint storage and judged by the oracle; scenarios (cases as files), the proptest
//! strategies that generate them, and exploration with shrinking.
//!
//! ```
//! use faultline::campaign::run_case;
//! use faultline::fault::{Fault, FaultSchedule};
//! use faultline::job::{Input, InputRecord, JobSpec, RestartStrategy};
//! use faultline::checkpoint::CheckpointConfig;
//! use faultline::engine::RunConfig;
//! use faultline::state::MemoryBackendFactory;
//!
//! let job: JobSpec = toml::from_str(
//!     r#"
//! name = "max"
//! source = { parallelism = 1 }
//! sink = { kind = "two-phase-commit" }
//! stages = [{ name = "max", op = { kind = "max" }, parallelism = 2 }]
//! "#,
//! )?;
//! let records: Vec<InputRecord> = (0..30)
//!     .map(|i| InputRecord { id: format!("r{i}"), key: format!("k{}", i % 5), value: (i * 7) % 11 })
//!     .collect();
//! let input = Input::partitioned(&records, 1);
//! let config = RunConfig::new(
//!     3,
//!     CheckpointConfig::every(4),
//!     RestartStrategy::FixedDelay { attempts: 3, delay_ms: 5 },
//! );
//! // A process kill at scheduler step 40: the run restarts from the last checkpoint.
//! let mut faults = FaultSchedule::with_seed(vec![Fault::Kill { step: 40 }], 3);
//! let dir = tempfile::tempdir()?;
//! let report = run_case(&job, &input, &config, &MemoryBackendFactory, &mut faults, dir.path())?;
//! assert_eq!(faults.fired().len(), 1);
//! assert!(report.verdict.passed(), "{}", report.verdict);
//! // The same seed gives the same trace.
//! let again = tempfile::tempdir()?;
//! let mut faults = FaultSchedule::with_seed(vec![Fault::Kill { step: 40 }], 3);
//! let replay = run_case(&job, &input, &config, &MemoryBackendFactory, &mut faults, again.path())?;
//! assert_eq!(report.trace_hash, replay.trace_hash);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod explore;
mod process;
mod scenario;
mod strategy;

pub use explore::{
    explore, explore_with, generate, merge, Coverage, ExploreConfig, ExploreError, ExploreReport,
    FailureReport, KillMode,
};
pub use process::{child_main, run_with_process_kills};
pub use scenario::{InputSpec, Rescale, Scenario, ScenarioError};
pub use strategy::{scenario_strategy, StrategyConfig, ALL_FAULT_KINDS};

use std::path::Path;

use crate::check::{self, Verdict};
use crate::checkpoint::{Durability, FsCheckpointStorage, StorageError};
use crate::engine::{RunConfig, RunError, RunOutcome, Runtime};
use crate::fault::FaultPlan;
use crate::job::source::SourceFactory;
use crate::job::user::UserOperator;
use crate::job::{ExternalStore, Input, JobSpec, OutputReader, SinkFactory};
use crate::state::StateBackendFactory;
use crate::trace::TraceHash;

/// A case could not be run.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    /// The checkpoint root could not be set up.
    #[error("checkpoint storage: {0}")]
    Storage(#[from] StorageError),
    /// The run could not be carried out.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The scenario cannot be turned into a run.
    #[error("scenario: {0}")]
    Scenario(String),
    /// A user's output reader could not read the external system.
    #[error("reading the sink's output: {0}")]
    Output(String),
}

/// A user's implementations, plugged into every case in place of the built-in ones. Start from
/// `Seams::default()` (nothing plugged in) and set the fields you need.
#[derive(Clone, Copy, Default)]
#[non_exhaustive]
pub struct Seams<'a> {
    /// Builds each sink subtask instead of the job's built-in sink. Default none.
    pub sink: Option<&'a SinkFactory>,
    /// Builds each keyed subtask's state backend instead of the scenario's built-in one.
    /// Default none.
    pub backend: Option<&'a (dyn StateBackendFactory + Sync)>,
    /// User operators jobs may name, with the models the oracle judges them by. Default none.
    pub operators: &'a [UserOperator],
    /// Builds each source subtask's reader instead of the built-in one. Default none.
    pub source: Option<&'a SourceFactory>,
    /// Reads what a user's sink made visible in its own external system (under
    /// [`ExternalStore::dir`]); the oracle judges that instead of the simulated store. Default
    /// none.
    pub output: Option<&'a OutputReader>,
}

/// Runs `check` on `outcome` as the oracle must see it: with a user's output reader, the store
/// is what that reader finds in the external system's directory. A reader that cannot read it
/// is a violation of the output property, like lost records, so the case shrinks.
pub(crate) fn judge(
    outcome: &mut RunOutcome,
    seams: Seams<'_>,
    check: impl FnOnce(&RunOutcome) -> Verdict,
) -> Result<Verdict, CaseError> {
    let Some(reader) = seams.output else {
        return Ok(check(outcome));
    };
    let dir = outcome
        .store
        .dir()
        .ok_or_else(|| CaseError::Output("the store has no directory".into()))?
        .to_path_buf();
    let seen = match reader(&dir) {
        Ok(output) => output,
        Err(reason) => {
            let mut verdict = check(outcome);
            verdict
                .violations
                .push(check::Violation::OutputUnreadable { reason });
            return Ok(verdict);
        }
    };
    let store = std::mem::replace(&mut outcome.store, ExternalStore::observed(seen));
    let verdict = check(outcome);
    outcome.store = store;
    Ok(verdict)
}

impl std::fmt::Debug for Seams<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seams")
            .field("sink", &self.sink.map(|_| "user sink"))
            .field("backend", &self.backend.map(|b| b.name()))
            .field("operators", &self.operators)
            .field("source", &self.source.map(|_| "user source"))
            .field("output", &self.output.map(|_| "user output reader"))
            .finish()
    }
}

/// One run and its verdict.
#[derive(Debug)]
pub struct CaseReport {
    /// What the run produced.
    pub outcome: RunOutcome,
    /// The oracle's findings.
    pub verdict: Verdict,
    /// Hash of the trace: equal for equal seeds.
    pub trace_hash: TraceHash,
}

/// Runs `job` over `input` with checkpoints under `<dir>/checkpoints` and backend working
/// directories under `<dir>/work`, then checks the outcome.
pub fn run_case(
    job: &JobSpec,
    input: &Input,
    config: &RunConfig,
    backends: &dyn StateBackendFactory,
    faults: &mut dyn FaultPlan,
    dir: &Path,
) -> Result<CaseReport, CaseError> {
    run_case_with_store(
        job,
        input,
        config,
        backends,
        faults,
        dir,
        ExternalStore::new(),
    )
}

/// [`run_case`] against an external system an earlier run wrote to, as a run started from that
/// run's savepoint writes to the same Kafka topic or database.
pub fn run_case_with_store(
    job: &JobSpec,
    input: &Input,
    config: &RunConfig,
    backends: &dyn StateBackendFactory,
    faults: &mut dyn FaultPlan,
    dir: &Path,
    store: ExternalStore,
) -> Result<CaseReport, CaseError> {
    run_case_with(job, input, config, backends, faults, dir, store, None)
}

/// The general case runner: an existing external store, and optionally a user's sink instead
/// of the job's built-in one.
#[allow(clippy::too_many_arguments)] // Each is a seam a caller may choose; see the wrappers above.
pub fn run_case_with(
    job: &JobSpec,
    input: &Input,
    config: &RunConfig,
    backends: &dyn StateBackendFactory,
    faults: &mut dyn FaultPlan,
    dir: &Path,
    store: ExternalStore,
    sink: Option<&SinkFactory>,
) -> Result<CaseReport, CaseError> {
    let seams = Seams {
        sink,
        ..Seams::default()
    };
    run_case_seams(job, input, config, backends, faults, dir, store, seams)
}

/// [`run_case_with`] with every seam: user operators (judged by their models), sink and source.
#[allow(clippy::too_many_arguments)] // The general runner's seams, one more.
pub(crate) fn run_case_seams(
    job: &JobSpec,
    input: &Input,
    config: &RunConfig,
    backends: &dyn StateBackendFactory,
    faults: &mut dyn FaultPlan,
    dir: &Path,
    store: ExternalStore,
    seams: Seams<'_>,
) -> Result<CaseReport, CaseError> {
    let mut storage = FsCheckpointStorage::new(dir.join("checkpoints"), Durability::PageCache)?;
    // The external system's directory outlives every attempt, and the rescale's second phase.
    let store = match store.dir() {
        Some(_) => store,
        None => {
            let external = dir.join("external");
            std::fs::create_dir_all(&external)
                .map_err(|e| CaseError::Scenario(format!("{}: {e}", external.display())))?;
            store.with_dir(external)
        }
    };
    let mut runtime = Runtime::new(
        job,
        input,
        config.clone(),
        backends,
        &mut storage,
        faults,
        &dir.join("work"),
    )?
    .with_store(store)
    .with_operators(seams.operators);
    if let Some(factory) = seams.sink {
        runtime = runtime.with_sink(factory);
    }
    if let Some(factory) = seams.source {
        runtime = runtime.with_source(factory);
    }
    let mut outcome = runtime.run()?;
    let verdict = judge(&mut outcome, seams, |outcome| {
        check::check_run_with(
            job,
            input,
            config.checkpoint.mode,
            config.seed,
            outcome,
            seams.operators,
        )
    })?;
    let trace_hash = outcome.trace.hash();
    Ok(CaseReport {
        outcome,
        verdict,
        trace_hash,
    })
}
