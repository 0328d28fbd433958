//! Exploration: run many generated scenarios, count what fired where, and shrink every failing
//! case to a minimal one that is written out as a scenario file with a replay line.
//!
//! Case `i` of root seed `s` is always the same scenario: its generator is a ChaCha stream seeded
//! from `(s, i)`. Shards split the case range (`k/n` runs cases with `i % n == k`), so CI job
//! matrices run a campaign in pieces and [`merge`] combines their JSON reports. Workers run cases
//! in parallel, each case single-threaded and deterministic; results are ordered by case index,
//! so the report does not depend on the number of workers.
//!
//! ```
//! use faultline::campaign::{explore, ExploreConfig};
//! use faultline::state::BackendKind;
//!
//! let dir = tempfile::tempdir()?;
//! let mut config = ExploreConfig::default();
//! config.cases = 5;
//! config.seed = 3;
//! config.strategy.backends = vec![BackendKind::Memory];
//! config.failures_dir = dir.path().to_path_buf();
//! let report = explore(&config, None, &|_done, _failures| {})?;
//! assert_eq!(report.cases, 5);
//! assert!(report.failures.is_empty(), "{}", report.summary());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde::{Deserialize, Serialize};

use super::scenario::{InputSpec, Scenario};
use super::strategy::{scenario_strategy, StrategyConfig};
use super::Seams;
use crate::fault::{FaultKind, FaultSite};
use crate::job::SinkFactory;

/// Fault kind -> fault point -> times fired.
pub type Coverage = BTreeMap<String, BTreeMap<String, u64>>;

/// What to explore.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ExploreConfig {
    /// Cases in the whole campaign (before sharding). Default 300.
    pub cases: u64,
    /// Root seed. Default 1.
    pub seed: u64,
    /// What scenarios may contain.
    pub strategy: StrategyConfig,
    /// This shard `(k, n)`: cases with `index % n == k`. Default `(0, 1)`.
    pub shard: (u64, u64),
    /// Parallel workers. Default 1.
    pub jobs: usize,
    /// Stop starting cases after this many seconds (wall clock). Default none.
    pub time_limit_s: Option<f64>,
    /// Most runs spent shrinking one failure. Default 300.
    pub shrink_runs_max: u32,
    /// Where failing scenarios are written. Default `faultline-failures`.
    pub failures_dir: PathBuf,
    /// Simulated kills, or real ones of child processes. Default simulated.
    pub kill_mode: KillMode,
    /// Start no new case once one failed (with one worker, the report then tells how many
    /// cases it took to find the failure). Default false.
    pub stop_at_first_failure: bool,
    /// Run every case twice and count differing traces as a violation (`determinism`): what
    /// catches code whose behaviour depends on hash-map order or the wall clock. Default false.
    pub check_determinism: bool,
}

/// How process kills happen.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum KillMode {
    /// Simulated inside one process.
    #[default]
    Sim,
    /// Real: each case runs in child processes of this binary, aborted at the seeded step.
    Process {
        /// The `faultline` binary to run children of.
        binary: PathBuf,
    },
}

impl Default for ExploreConfig {
    fn default() -> Self {
        Self {
            cases: 300,
            seed: 1,
            strategy: StrategyConfig::default(),
            shard: (0, 1),
            jobs: 1,
            time_limit_s: None,
            shrink_runs_max: 300,
            failures_dir: PathBuf::from("faultline-failures"),
            kill_mode: KillMode::Sim,
            stop_at_first_failure: false,
            check_determinism: false,
        }
    }
}

/// One failing case, shrunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureReport {
    /// The case index.
    pub case: u64,
    /// Violations of the shrunk case, as printed.
    pub violations: Vec<String>,
    /// Faults before and after shrinking.
    pub faults: (usize, usize),
    /// Records before and after shrinking.
    pub records: (u32, u32),
    /// Runs spent shrinking.
    pub shrink_runs: u32,
    /// The shrunk scenario file.
    pub scenario_file: PathBuf,
    /// The shrunk case's trace.
    pub trace: String,
    /// A command line that replays it.
    pub replay: String,
}

/// What a campaign found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExploreReport {
    /// Root seed.
    pub seed: u64,
    /// Cases run.
    pub cases: u64,
    /// Cases per backend.
    pub backends: BTreeMap<String, u64>,
    /// Faults fired, by kind.
    pub faults: BTreeMap<String, u64>,
    /// Fault kind x fault point.
    pub coverage: Coverage,
    /// Restores.
    pub restores: u64,
    /// Checkpoints completed.
    pub checkpoints: u64,
    /// Cases that ended failing loudly on corruption, as they must.
    pub loud_failures: u64,
    /// Failing cases, shrunk.
    pub failures: Vec<FailureReport>,
    /// Wall time in seconds.
    pub wall_s: f64,
}

/// An exploration could not run.
#[derive(Debug, thiserror::Error)]
#[error("explore: {0}")]
pub struct ExploreError(pub String);

struct CaseResult {
    case: u64,
    scenario: Scenario,
    fired: Vec<(FaultKind, FaultSite)>,
    restores: u64,
    checkpoints: u64,
    loud: bool,
    failure: Option<FailureReport>,
}

fn case_rng(seed: u64, case: u64) -> TestRng {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..16].copy_from_slice(&case.to_le_bytes());
    bytes[16..24].copy_from_slice(b"faultlin");
    TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
}

/// The scenario of case `case` of root seed `seed`.
pub fn generate(
    strategy: &StrategyConfig,
    seed: u64,
    case: u64,
) -> Result<(Scenario, impl ValueTree<Value = Scenario>), ExploreError> {
    let mut runner = TestRunner::new_with_rng(Config::default(), case_rng(seed, case));
    let tree = scenario_strategy(strategy.clone())
        .new_tree(&mut runner)
        .map_err(|e| ExploreError(e.to_string()))?;
    let mut scenario = tree.current();
    scenario.name = format!("seed {seed} case {case}");
    Ok((scenario, tree))
}

fn records(scenario: &Scenario) -> u32 {
    match scenario.input {
        InputSpec::Generated { records, .. } => records,
        InputSpec::Csv { .. } => 0,
    }
}

/// A run's violations (`None` when every property held), its report, and the faults that fired.
type Judged = (
    Option<Vec<String>>,
    crate::campaign::CaseReport,
    Vec<(FaultKind, FaultSite)>,
);

/// Runs a scenario in a fresh directory and judges it.
fn violations(
    scenario: &Scenario,
    seams: Seams<'_>,
    config: &ExploreConfig,
) -> Result<Judged, ExploreError> {
    let run = || -> Result<_, ExploreError> {
        let dir = tempfile::tempdir().map_err(|e| ExploreError(e.to_string()))?;
        let ran = match &config.kill_mode {
            KillMode::Sim => scenario.run_with(dir.path(), seams),
            KillMode::Process { binary } => {
                super::run_with_process_kills(scenario, dir.path(), binary)
            }
        };
        ran.map_err(|e| ExploreError(format!("{}: {e}", scenario.name)))
    };
    let (report, fired) = run()?;
    let mut found: Vec<String> = report
        .verdict
        .violations
        .iter()
        .map(|v| format!("[{}] {v}", v.property()))
        .collect();
    if config.check_determinism {
        let (again, _) = run()?;
        if let Some(index) = report.outcome.trace.first_divergence(&again.outcome.trace) {
            let event = |report: &crate::campaign::CaseReport| {
                report
                    .outcome
                    .trace
                    .events()
                    .get(index)
                    .map_or_else(|| "(the trace ended)".to_string(), |e| e.to_string())
            };
            found.push(format!(
                "[determinism] the same seed gave two traces; first difference at event {index}: {} / {}",
                event(&report),
                event(&again)
            ));
        }
    }
    Ok(((!found.is_empty()).then_some(found), report, fired))
}

fn run_case(
    config: &ExploreConfig,
    case: u64,
    seams: Seams<'_>,
) -> Result<CaseResult, ExploreError> {
    let (scenario, mut tree) = generate(&config.strategy, config.seed, case)?;
    let (found, report, fired) = violations(&scenario, seams, config)?;
    let outcome = &report.outcome;
    let mut result = CaseResult {
        case,
        scenario: scenario.clone(),
        fired,
        restores: outcome.restores.len() as u64,
        checkpoints: outcome.stats.checkpoints_completed,
        loud: report.verdict.failed_loudly(),
        failure: None,
    };
    let Some(mut best_violations) = found else {
        return Ok(result);
    };
    // Shrink: simplify while the case still fails, complicate back when it passes.
    let mut best = scenario.clone();
    let mut best_trace = outcome.trace.render();
    let mut runs = 0;
    if tree.simplify() {
        while runs < config.shrink_runs_max {
            runs += 1;
            let mut candidate = tree.current();
            candidate.name = scenario.name.clone();
            let (found, report, _) = violations(&candidate, seams, config)?;
            match found {
                Some(found) => {
                    best = candidate;
                    best_violations = found;
                    best_trace = report.outcome.trace.render();
                    if !tree.simplify() {
                        break;
                    }
                }
                None => {
                    if !tree.complicate() {
                        break;
                    }
                }
            }
        }
    }
    std::fs::create_dir_all(&config.failures_dir)
        .map_err(|e| ExploreError(format!("{}: {e}", config.failures_dir.display())))?;
    let file = config
        .failures_dir
        .join(format!("seed{}-case{case}.toml", config.seed));
    std::fs::write(&file, best.to_toml())
        .map_err(|e| ExploreError(format!("{}: {e}", file.display())))?;
    result.failure = Some(FailureReport {
        case,
        violations: best_violations,
        faults: (scenario.faults.len(), best.faults.len()),
        records: (records(&scenario), records(&best)),
        shrink_runs: runs,
        replay: format!("faultline replay {}", file.display()),
        scenario_file: file,
        trace: best_trace,
    });
    Ok(result)
}

/// Runs the campaign; `progress(done, failures)` is called after every case.
pub fn explore(
    config: &ExploreConfig,
    sink: Option<&SinkFactory>,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<ExploreReport, ExploreError> {
    explore_with(
        config,
        Seams {
            sink,
            ..Seams::default()
        },
        progress,
    )
}

/// [`explore`] with a user's sink and state backend in place of the built-in ones.
pub fn explore_with(
    config: &ExploreConfig,
    seams: Seams<'_>,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<ExploreReport, ExploreError> {
    let user_seam = seams.sink.is_some()
        || seams.backend.is_some()
        || seams.source.is_some()
        || seams.output.is_some();
    if user_seam && config.kill_mode != KillMode::Sim {
        return Err(ExploreError(
            "a user's source, sink or backend lives in this process; real process kills need the built-in ones"
                .into(),
        ));
    }
    if seams.output.is_some() && seams.sink.is_none() {
        return Err(ExploreError(
            "an output reader reads a user's sink's external system: give the sink too".into(),
        ));
    }
    let (shard, shards) = config.shard;
    if shards == 0 || shard >= shards {
        return Err(ExploreError(format!(
            "shard {shard}/{shards}: k must be below n"
        )));
    }
    let cases: Vec<u64> = (0..config.cases).filter(|i| i % shards == shard).collect();
    #[allow(clippy::disallowed_methods)]
    // Wall time bounds the campaign and is reported; no case reads it.
    let started = std::time::Instant::now();
    let next = AtomicU64::new(0);
    let results: Mutex<Vec<Result<CaseResult, ExploreError>>> = Mutex::new(Vec::new());
    let failures = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let worker = || loop {
        if config
            .time_limit_s
            .is_some_and(|limit| started.elapsed().as_secs_f64() > limit)
        {
            return;
        }
        if config.stop_at_first_failure && failures.load(Ordering::SeqCst) > 0 {
            return;
        }
        let slot = next.fetch_add(1, Ordering::SeqCst) as usize;
        let Some(&case) = cases.get(slot) else { return };
        let result = run_case(config, case, seams);
        if result.as_ref().map_or(true, |r| r.failure.is_some()) {
            failures.fetch_add(1, Ordering::SeqCst);
        }
        results
            .lock()
            .expect("a worker panicked while holding the results")
            .push(result);
        progress(
            done.fetch_add(1, Ordering::SeqCst) + 1,
            failures.load(Ordering::SeqCst),
        );
    };
    // Cases are independent and each is single-threaded; workers only share the queue.
    std::thread::scope(|scope| {
        for _ in 1..config.jobs.max(1) {
            scope.spawn(worker);
        }
        worker();
    });
    let mut results = results
        .into_inner()
        .expect("workers finished")
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    results.sort_by_key(|r| r.case);
    let mut report = ExploreReport {
        seed: config.seed,
        ..ExploreReport::default()
    };
    for result in results {
        report.cases += 1;
        *report
            .backends
            .entry(result.scenario.backend.name().to_string())
            .or_default() += 1;
        for (kind, site) in &result.fired {
            let kind = kind.name().to_string();
            *report.faults.entry(kind.clone()).or_default() += 1;
            *report
                .coverage
                .entry(kind)
                .or_default()
                .entry(site.name().to_string())
                .or_default() += 1;
        }
        report.restores += result.restores;
        report.checkpoints += result.checkpoints;
        report.loud_failures += u64::from(result.loud);
        report.failures.extend(result.failure);
    }
    report.wall_s = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Combines shard reports into one.
pub fn merge(reports: &[ExploreReport]) -> ExploreReport {
    let mut merged = ExploreReport {
        seed: reports.first().map_or(0, |r| r.seed),
        ..ExploreReport::default()
    };
    for report in reports {
        merged.cases += report.cases;
        for (backend, n) in &report.backends {
            *merged.backends.entry(backend.clone()).or_default() += n;
        }
        for (kind, n) in &report.faults {
            *merged.faults.entry(kind.clone()).or_default() += n;
        }
        for (kind, points) in &report.coverage {
            for (point, n) in points {
                *merged
                    .coverage
                    .entry(kind.clone())
                    .or_default()
                    .entry(point.clone())
                    .or_default() += n;
            }
        }
        merged.restores += report.restores;
        merged.checkpoints += report.checkpoints;
        merged.loud_failures += report.loud_failures;
        merged.failures.extend(report.failures.iter().cloned());
        merged.wall_s = merged.wall_s.max(report.wall_s);
    }
    merged.failures.sort_by_key(|f| f.case);
    merged
}

impl ExploreReport {
    /// The summary and the coverage table (fault kind x fault point), as printed.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "{} cases ({}) in {:.1} s, {:.1} cases/s; {} restores, {} checkpoints, {} loud failures on corruption\n",
            self.cases,
            self.backends.iter().map(|(b, n)| format!("{b} {n}")).collect::<Vec<_>>().join(", "),
            self.wall_s,
            self.cases as f64 / self.wall_s.max(1e-9),
            self.restores,
            self.checkpoints,
            self.loud_failures,
        );
        let points: Vec<&str> = FaultSite::ALL.iter().map(|site| site.name()).collect();
        text.push_str(&format!(
            "\ncoverage (fault kind x point where it fired):\n{:<20}",
            "kind"
        ));
        for point in &points {
            text.push_str(&format!(" {:>8}", shorten(point)));
        }
        text.push('\n');
        for kind in super::ALL_FAULT_KINDS {
            text.push_str(&format!("{kind:<20}"));
            for point in &points {
                let n = self
                    .coverage
                    .get(kind)
                    .and_then(|p| p.get(*point))
                    .copied()
                    .unwrap_or(0);
                text.push_str(&format!(
                    " {:>8}",
                    if n == 0 {
                        "-".to_string()
                    } else {
                        n.to_string()
                    }
                ));
            }
            text.push('\n');
        }
        text.push_str(&format!("\n{} failing case(s)\n", self.failures.len()));
        for failure in &self.failures {
            text.push_str(&format!(
                "case {}: shrunk from {} to {} faults, {} to {} records in {} runs\n",
                failure.case,
                failure.faults.0,
                failure.faults.1,
                failure.records.0,
                failure.records.1,
                failure.shrink_runs
            ));
            for violation in &failure.violations {
                text.push_str(&format!("  VIOLATION {violation}\n"));
            }
            text.push_str(&format!("  replay: {}\n", failure.replay));
        }
        text
    }
}

fn shorten(point: &str) -> String {
    point.chars().take(8).collect()
}
