//! [`Harness`]: put your own operator, source, sink or state backend under faultline's seeded faults
//! and oracle, from an ordinary `#[test]` run by `cargo nextest`.
//!
//! A harness runs a campaign ([`crate::campaign::explore_with`]) of generated cases — job
//! shapes, inputs, checkpoint configurations, restart strategies, rescales and a swarm of fault
//! kinds — with your implementation plugged into every case in place of the built-in one. On
//! a violation it panics with each shrunk case: the property that broke, its trace, the scenario
//! file and how to replay it, so the test output holds everything needed to debug it.
//!
//! Environment overrides, read by [`Harness::run`], so CI can widen a test without editing it:
//! - `FAULTLINE_SEED`: the root seed (default: the harness's, 1 unless set).
//! - `FAULTLINE_CASES`: the number of cases (default: the harness's, 200 unless set).
//! - `FAULTLINE_REPLAY`: a shrunk scenario file: `run` replays that one case with the test's
//!   seams instead of running the campaign, and fails with its trace if it still fails. The
//!   failure message prints the command, with the test's own name.
//!
//! Shrunk failing cases are written under the target directory
//! (`target/faultline-failures/`), as proptest and insta keep theirs with the project, so they
//! outlive the test that wrote them; each file is created once, under a name of its own.
//!
//! ```
//! use faultline::harness::Harness;
//! use faultline::job::sink::TwoPhaseCommitSink;
//! use faultline::job::Sink;
//!
//! // Your sink: here the built-in two-phase-commit sink, which must pass.
//! let sink = |subtask: u16| Box::new(TwoPhaseCommitSink::new(subtask)) as Box<dyn Sink>;
//! let report = Harness::new().cases(20).sink(&sink).run();
//! assert_eq!(report.cases, 20);
//! ```

use std::path::{Path, PathBuf};

use crate::campaign::{
    explore_with, Case, CaseError, CaseReport, ExploreConfig, ExploreError, ExploreReport,
    InputStrategy, KillMode, Scenario, Seams, UserChaining,
};
use crate::checkpoint::CheckpointingMode;
use crate::job::user::UserOperator;
use crate::job::{OutputReader, SinkFactory, SourceFactory, WindowFactory};
use crate::state::{BackendKind, StateBackendFactory};

/// Seed override (see the module doc).
pub const SEED_VAR: &str = "FAULTLINE_SEED";
/// Case-count override (see the module doc).
pub const CASES_VAR: &str = "FAULTLINE_CASES";
/// Replay override (see the module doc).
pub const REPLAY_VAR: &str = "FAULTLINE_REPLAY";

/// A campaign against a user's seams; see the module doc.
#[derive(Debug, Clone)]
pub struct Harness<'a> {
    config: ExploreConfig,
    seams: Seams<'a>,
}

impl Default for Harness<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> Harness<'a> {
    /// A harness with the defaults: 200 cases, seed 1, every fault kind, every built-in
    /// backend, one worker, stopping at the first failing case (shrunk), failing cases
    /// written under the target directory (`faultline-failures/`; the system's temporary
    /// directory when no target directory is found).
    pub fn new() -> Self {
        let config = ExploreConfig {
            cases: 200,
            stop_at_first_failure: true,
            failures_dir: default_failures_dir(),
            ..ExploreConfig::default()
        };
        Self {
            config,
            seams: Seams::default(),
        }
    }

    /// Cases to run.
    pub fn cases(mut self, cases: u64) -> Self {
        self.config.cases = cases;
        self
    }

    /// The root seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = seed;
        self
    }

    /// Fault kinds the swarm draws from (names from [`crate::campaign::ALL_FAULT_KINDS`]).
    pub fn faults(mut self, kinds: &[&str]) -> Self {
        self.config.strategy.fault_kinds = kinds.iter().map(|k| k.to_string()).collect();
        self
    }

    /// Built-in backends the cases draw from. With a user backend, they only shape the cases
    /// (a RocksDB kind also takes native savepoints).
    pub fn backends(mut self, kinds: Vec<BackendKind>) -> Self {
        self.config.strategy.backends = kinds;
        self
    }

    /// Checkpointing modes the cases use (default both; exactly-once in four cases of five).
    /// `&[CheckpointingMode::AtLeastOnce]` puts every case under at-least-once, where snapshots
    /// may hold records after their barrier and restores replay them.
    pub fn modes(mut self, modes: &[CheckpointingMode]) -> Self {
        self.config.strategy.modes = modes.to_vec();
        self
    }

    /// Aligned checkpoints, unaligned ones (from the source on, or after an aligned-checkpoint
    /// timeout: records in flight persisted as channel state and handed back on restore, across
    /// rescales too), or a mix (the default).
    pub fn checkpointing(mut self, checkpointing: crate::campaign::Checkpointing) -> Self {
        self.config.strategy.checkpointing = checkpointing;
        self
    }

    /// Deliberate engine defects every case carries, for the harness's own tests.
    #[doc(hidden)]
    pub fn sabotage(mut self, sabotage: crate::engine::Sabotage) -> Self {
        self.config.strategy.sabotage = sabotage;
        self
    }

    /// Most records per case (default 80).
    pub fn records_max(mut self, records: u32) -> Self {
        self.config.strategy.records_max = records;
        self
    }

    /// How many records a generated input holds, inclusive (default 5 to 80).
    pub fn records(mut self, min: u32, max: u32) -> Self {
        self.config.strategy.records_min = min;
        self.config.strategy.records_max = max;
        self
    }

    /// Most distinct keys a generated input uses (default 12).
    pub fn keys_max(mut self, keys: u32) -> Self {
        self.config.strategy.keys_max = keys;
        self
    }

    /// The amounts, in cents, of the generated transactions, inclusive (default -50 to 500).
    pub fn values(mut self, min: i64, max: i64) -> Self {
        self.config.strategy.values = (min, max);
        self
    }

    /// Your input generator, in place of the built-in one: every case's input is drawn from
    /// it (and shrinks with it).
    pub fn input(mut self, input: InputStrategy) -> Self {
        self.config.strategy.input = Some(input);
        self
    }

    /// Where your operators may stand in generated jobs (default: next to themselves and to
    /// built-in operators).
    pub fn user_chaining(mut self, chaining: UserChaining) -> Self {
        self.config.strategy.user_chaining = chaining;
        self
    }

    /// Your state backend, in place of the built-in one in every case. Cases then take only
    /// canonical savepoints unless [`Harness::backends`] names a RocksDB kind.
    pub fn backend(mut self, factory: &'a (dyn StateBackendFactory + Sync)) -> Self {
        self.seams.backend = Some(factory);
        if self.config.strategy.backends == BackendKind::all() {
            self.config.strategy.backends = vec![BackendKind::Memory];
        }
        self
    }

    /// Your operators, with their models: generated jobs use them in place of the built-in ones
    /// (keyed ones on keyed stages, a stateless one on the stateless stage), and the oracle
    /// judges them by their models. They must keep each record's key, as the built-in operators
    /// do, so that every key's records reach each operator in input order.
    pub fn operators(mut self, operators: &'a [UserOperator]) -> Self {
        self.seams.operators = operators;
        self.config.strategy.user_operators = operators
            .iter()
            .map(|op| (op.name.clone(), op.keyed))
            .collect();
        self
    }

    /// Your window operator, in place of the built-in one: every generated job ends in a window
    /// (tumbling, sliding, session or by processing time, with event time and faults in time),
    /// whose subtasks `factory` builds from the stage's spec, and the oracle judges it by the
    /// built-in windows' model, state included: it keeps the built-in state layout (see
    /// [`crate::job::WindowFactory`]), and returns [`crate::job::operator::build`] for the
    /// kinds it does not implement. Not with [`Harness::operators`], since no window reads a
    /// user operator's output.
    pub fn windows(mut self, factory: &'a WindowFactory) -> Self {
        self.seams.windows = Some(factory);
        self.config.strategy.windowed = true;
        self
    }

    /// Your sink, in place of the job's built-in sink in every case.
    pub fn sink(mut self, factory: &'a SinkFactory) -> Self {
        self.seams.sink = Some(factory);
        self
    }

    /// How to read what your sink made visible, when it writes to its own external system (files
    /// under [`crate::job::ExternalStore::dir`]) rather than through the simulated store's
    /// transactions: the oracle judges what this reader sees.
    pub fn output(mut self, reader: &'a OutputReader) -> Self {
        self.seams.output = Some(reader);
        self
    }

    /// Leave checking restored files to your backend: the engine skips its own check of each
    /// file against the checksum its metadata recorded, as Flink does, so corruption faults reach
    /// your backend's restore, which must fail on them rather than restore damaged state.
    pub fn backend_verifies_files(mut self) -> Self {
        self.config.strategy.verify_restored_files = false;
        self
    }

    /// Your source reader, in place of the built-in one in every case: it decides where each
    /// source subtask reads and which positions it stores at a barrier.
    pub fn source(mut self, factory: &'a SourceFactory) -> Self {
        self.seams.source = Some(factory);
        self
    }

    /// Cases run in parallel (each case stays single-threaded and deterministic).
    pub fn jobs(mut self, jobs: usize) -> Self {
        self.config.jobs = jobs.max(1);
        self
    }

    /// Run every case twice and fail on differing traces: catches an implementation whose
    /// behaviour depends on hash-map order, the wall clock or anything else outside the seed.
    pub fn check_determinism(mut self) -> Self {
        self.config.check_determinism = true;
        self
    }

    /// Run every case even after a failure (default: stop at the first, as a test wants).
    pub fn all_cases(mut self) -> Self {
        self.config.stop_at_first_failure = false;
        self
    }

    /// Where shrunk failing cases are written.
    pub fn failures_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.failures_dir = dir.into();
        self
    }

    /// The campaign configuration after the environment overrides.
    fn configured(&self) -> Result<ExploreConfig, ExploreError> {
        let mut config = self.config.clone();
        if let Some(seed) = env_u64(SEED_VAR)? {
            config.seed = seed;
        }
        if let Some(cases) = env_u64(CASES_VAR)? {
            config.cases = cases;
        }
        Ok(config)
    }

    /// Runs the campaign and returns its report, violations included.
    pub fn try_run(&self) -> Result<ExploreReport, ExploreError> {
        explore_with(&self.configured()?, self.seams, &|_, _| {})
    }

    /// Runs the campaign; panics with every shrunk failure (see the module doc). With
    /// `FAULTLINE_REPLAY` set, replays that scenario file instead and panics if it still
    /// fails; the report then counts the one case.
    #[track_caller]
    pub fn run(&self) -> ExploreReport {
        if let Some(file) = std::env::var_os(REPLAY_VAR) {
            return self.run_replay(Path::new(&file));
        }
        let report = match self.try_run() {
            Ok(report) => report,
            Err(error) => panic!("faultline harness: {error}"),
        };
        if !report.failures.is_empty() {
            panic!("{}", failure_message(&report));
        }
        report
    }

    #[track_caller]
    fn run_replay(&self, file: &Path) -> ExploreReport {
        let report = match self.replay(file) {
            Ok(report) => report,
            Err(error) => panic!(
                "faultline harness: {REPLAY_VAR}={}: {error}",
                file.display()
            ),
        };
        if !report.verdict.passed() {
            panic!(
                "faultline: the replayed case {} still fails\n{}\ntrace:\n{}",
                file.display(),
                report.verdict,
                report.outcome.trace.render()
            );
        }
        ExploreReport {
            cases: 1,
            requested: 1,
            ..ExploreReport::default()
        }
    }

    /// Re-runs one scenario file (a shrunk failure) with this harness's seams.
    pub fn replay(&self, scenario_file: &Path) -> Result<CaseReport, CaseError> {
        let scenario = Scenario::load(scenario_file)?;
        let dir = tempfile::tempdir().map_err(|source| CaseError::Io {
            path: std::env::temp_dir(),
            source,
        })?;
        Case::new(scenario, self.seams).run(dir.path(), &KillMode::Sim)
    }
}

/// `faultline-failures/` under the target directory the running binary was built in (a test
/// or example binary lives in `<target>/<profile>/deps/` or `.../examples/`), else under the
/// system's temporary directory.
fn default_failures_dir() -> PathBuf {
    let built_in = std::env::current_exe().ok().and_then(|exe| {
        let folder = exe
            .ancestors()
            .find(|a| matches!(a.file_name(), Some(n) if n == "deps" || n == "examples"))?
            .to_path_buf();
        Some(folder.parent()?.parent()?.to_path_buf())
    });
    built_in
        .unwrap_or_else(std::env::temp_dir)
        .join("faultline-failures")
}

/// How to replay a failure's scenario file: the test running now, by its own name, under
/// `FAULTLINE_REPLAY` (libtest names each test's thread after the test).
fn replay_command(scenario_file: &Path) -> String {
    let file = scenario_file.display();
    match std::thread::current().name() {
        Some(test) if test != "main" => {
            format!("{REPLAY_VAR}={file} cargo nextest run -E 'test(={test})'")
        }
        _ => {
            let exe = std::env::current_exe()
                .map_or_else(|_| "<this binary>".to_string(), |e| e.display().to_string());
            format!("{REPLAY_VAR}={file} {exe}")
        }
    }
}

fn env_u64(name: &str) -> Result<Option<u64>, ExploreError> {
    let refused = |value: String, reason: String| ExploreError::Env {
        name: name.to_string(),
        value,
        reason,
    };
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|e: std::num::ParseIntError| refused(text.clone(), e.to_string())),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(e) => Err(refused(String::new(), e.to_string())),
    }
}

/// The panic message: every shrunk failure with its violations, trace and replay.
pub fn failure_message(report: &ExploreReport) -> String {
    let mut text = format!(
        "faultline: {} failing case(s) in {} run of {} requested (seed {}; the campaign stops at its first failure unless told otherwise)\n",
        report.failures.len(),
        report.cases,
        report.requested,
        report.seed
    );
    for failure in &report.failures {
        let minimum = if failure.local_minimum {
            "a local minimum: without any one of them it passes"
        } else {
            "the run budget ran out before a local minimum"
        };
        text.push_str(&format!(
            "\ncase {}: shrunk from {} to {} faults, {} to {} records ({minimum})\n",
            failure.case, failure.faults.0, failure.faults.1, failure.records.0, failure.records.1
        ));
        for violation in &failure.violations {
            text.push_str(&format!("  violated: {violation}\n"));
        }
        text.push_str(&format!(
            "  scenario: {}\n  replay: {}\n  trace:\n",
            failure.scenario_file.display(),
            replay_command(&failure.scenario_file),
        ));
        for line in failure.trace.lines() {
            text.push_str(&format!("    {line}\n"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replayed_scenario_that_passes_counts_one_case() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/scenarios/notifications-memory.toml");
        let report = Harness::new().run_replay(&file);
        assert_eq!((report.cases, report.requested), (1, 1));
    }

    #[test]
    fn a_replay_of_a_missing_file_names_it() {
        let missing = Path::new("no-such-scenario.toml");
        // The test reads the message `run` fails a test with.
        #[allow(clippy::disallowed_methods)]
        let panic = std::panic::catch_unwind(|| Harness::new().run_replay(missing))
            .expect_err("a missing file fails the test");
        let message = panic.downcast_ref::<String>().expect("a formatted panic");
        assert!(
            message.contains("FAULTLINE_REPLAY=no-such-scenario.toml"),
            "{message}"
        );
    }
}
