//! Cases: a job, its input, a run configuration, a fault plan and a backend, run end to end on
//! real checkpoint storage and judged by the oracle; scenarios (cases as files), the one case
//! runner ([`Case`]) for both kill modes, the proptest strategies that generate scenarios, and
//! exploration with shrinking.
//!
//! ```
//! use faultline::campaign::{Case, InputSpec, KillMode, Scenario, Seams};
//! use faultline::fault::Fault;
//!
//! let mut scenario = Scenario::from_toml(
//!     r#"
//! name = "max"
//! seed = 3
//! backend = "memory"
//! checkpoint = { interval_ms = 4 }
//! restart = { kind = "fixed-delay", attempts = 3, delay_ms = 5 }
//!
//! [job]
//! name = "max"
//! source = { parallelism = 1 }
//! sink = { kind = "two-phase-commit" }
//! stages = [{ name = "max", op = { kind = "max" }, parallelism = 2 }]
//!
//! [input]
//! kind = "generated"
//! records = 30
//! keys = 5
//! min_value = 0
//! max_value = 10
//! "#,
//!     "doc example",
//! )?;
//! // A process kill at scheduler step 40: the run restarts from the last checkpoint.
//! scenario.faults = vec![Fault::Kill { step: 40 }];
//! let dir = tempfile::tempdir()?;
//! let case = Case::new(scenario, Seams::default());
//! let report = case.run(dir.path(), &KillMode::Sim)?;
//! assert_eq!(report.fired().len(), 1);
//! assert!(report.verdict.passed(), "{}", report.verdict);
//! // The same seed gives the same trace.
//! let again = tempfile::tempdir()?;
//! assert_eq!(report.trace_hash, case.run(again.path(), &KillMode::Sim)?.trace_hash);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod case;
pub mod eventtime;
mod explore;
pub mod keyspace;
mod panic;
mod process;
mod scenario;
mod strategy;

pub use case::{Case, CaseReport, KillMode};
pub use explore::{
    explore, explore_with, generate, merge, Coverage, ExploreConfig, ExploreError, ExploreReport,
    FailureReport, ReportedViolation,
};
pub use panic::Panic;
pub use process::child_main;
pub use scenario::{
    InputSpec, Phase, PhaseEnding, Rescale, RescaleFrom, Scenario, ScenarioError, RESCALE_SAVEPOINT,
};
pub use strategy::{
    scenario_strategy, Checkpointing, InputStrategy, StrategyConfig, StrategyError, UserChaining,
    ALL_FAULT_KINDS,
};

use crate::check::{self, Verdict};
use crate::checkpoint::StorageError;
use crate::engine::{RunError, RunOutcome};
use crate::job::sink::DurableStoreError;
use crate::job::source::SourceFactory;
use crate::job::user::UserOperator;
use crate::job::{ExternalStore, OutputReader, SinkFactory, WindowFactory};
use crate::state::{BackendUnavailable, StateBackendFactory};

/// A case could not be run (as opposed to running and breaking a property, which is a
/// violation in its report).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaseError {
    /// The checkpoint root could not be set up.
    #[error("checkpoint storage: {0}")]
    Storage(#[from] StorageError),
    /// The run could not be carried out.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The scenario file cannot be used.
    #[error(transparent)]
    ScenarioFile(#[from] ScenarioError),
    /// The scenario names a backend this build lacks.
    #[error("scenario: {0}")]
    Scenario(#[from] BackendUnavailable),
    /// The seams cannot be used as given.
    #[error("seams: {0}")]
    Seams(String),
    /// The job names a user operator the seams do not hold.
    #[error(
        "the job names user operator {name:?}, which is not among the operators given ({given:?})"
    )]
    UnknownOperator {
        /// The name the job uses.
        name: String,
        /// The names of the operators given.
        given: Vec<String>,
    },
    /// The job says a user operator is keyed, or not, and the operator given says otherwise.
    #[error("the job uses user operator {name:?} with keyed = {in_job}, but it is registered with keyed = {registered}")]
    KeyedMismatch {
        /// The operator.
        name: String,
        /// What the job says.
        in_job: bool,
        /// What the registered operator says.
        registered: bool,
    },
    /// User operators were given but the job uses none of them, so the case would test only
    /// built-in ones: a strategy without `user_operators`, or a scenario file of another job.
    #[error("user operators {given:?} were given, but the job uses none of them (set `StrategyConfig::user_operators`, or use `Harness::operators`)")]
    OperatorsUnused {
        /// The names of the operators given.
        given: Vec<String>,
    },
    /// A window operator was given but the job has no window, so the case would test none of
    /// it: a strategy without `windowed`, or a scenario file of another job.
    #[error("a window operator was given, but the job has no window (set `StrategyConfig::windowed`, or use `Harness::windows`)")]
    WindowsUnused,
    /// The case's directory holds something already.
    #[error("{path}: a case runs in an empty or new directory")]
    DirNotEmpty {
        /// The directory.
        path: std::path::PathBuf,
    },
    /// The case's own directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A child process of the process-kill mode died other than by a real kill.
    #[error("process mode: the child of phase {phase} died ({status}): {stderr}")]
    ChildDied {
        /// The phase it ran.
        phase: usize,
        /// How it exited.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A phase was killed for real more often than process mode starts children for it.
    #[error("process mode: phase {phase} was killed {children} times; no more children start")]
    ChildrenExhausted {
        /// The phase.
        phase: usize,
        /// Children started for it.
        children: u32,
    },
    /// A file a child left (its events, its end, the fault plan's state) does not parse.
    #[error("process mode: {path}: {source}")]
    ChildFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// A child was asked for a phase the scenario does not have.
    #[error("process mode: the scenario has no phase {phase}")]
    NoSuchPhase {
        /// The phase asked for.
        phase: usize,
    },
    /// The durable external store cannot be read.
    #[error("external store: {0}")]
    Store(#[from] DurableStoreError),
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
    /// Builds each window stage's operator instead of the built-in window operator; the
    /// oracle judges it by the built-in windows' model. Default none.
    pub windows: Option<&'a WindowFactory>,
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
        .ok_or_else(|| CaseError::Seams("the external store has no directory".into()))?
        .to_path_buf();
    let seen = match reader(&dir) {
        Ok(output) => output,
        Err(error) => {
            let mut verdict = check(outcome);
            verdict.violations.push(check::Violation::OutputUnreadable {
                reason: error.to_string(),
            });
            return Ok(verdict);
        }
    };
    let store = std::mem::replace(&mut outcome.store, ExternalStore::observed(seen));
    let verdict = check(outcome);
    outcome.store = store;
    Ok(verdict)
}

impl Seams<'_> {
    /// Whether these seams can run in `mode`: real process kills run the built-in parts in a
    /// child process, and an output reader reads what a user's sink wrote.
    pub fn usable(&self, mode: &KillMode) -> Result<(), CaseError> {
        if *mode != KillMode::Sim && self.any() {
            return Err(CaseError::Seams(
                "a user's source, sink, backend, operator or window operator lives in this process; real process kills need the built-in ones".into(),
            ));
        }
        if self.output.is_some() && self.sink.is_none() {
            return Err(CaseError::Seams(
                "an output reader reads a user's sink's external system: give the sink too".into(),
            ));
        }
        Ok(())
    }

    /// Whether any user code is plugged in.
    pub fn any(&self) -> bool {
        self.sink.is_some()
            || self.backend.is_some()
            || self.source.is_some()
            || self.output.is_some()
            || self.windows.is_some()
            || !self.operators.is_empty()
    }
}

impl std::fmt::Debug for Seams<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seams")
            .field("sink", &self.sink.map(|_| "user sink"))
            .field("backend", &self.backend.map(|b| b.name()))
            .field("operators", &self.operators)
            .field("source", &self.source.map(|_| "user source"))
            .field("output", &self.output.map(|_| "user output reader"))
            .field("windows", &self.windows.map(|_| "user window operators"))
            .finish()
    }
}
