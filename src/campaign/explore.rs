//! Exploration: run many generated scenarios, count what fired where, and shrink every failing
//! case to a minimal one that is written out as a scenario file with a replay line.
//!
//! Case `i` of root seed `s` is always the same scenario: its generator is a ChaCha stream seeded
//! from `(s, i)`. Shards split the case range (`k/n` runs cases with `i % n == k`), so CI job
//! matrices run a campaign in pieces and [`merge`] combines their JSON reports. Workers run cases
//! in parallel, each case single-threaded and deterministic; results are ordered by case index,
//! so the report does not depend on the number of workers. A case that breaks — a violated
//! property, a panic inside it, a bound it ran past — is a failure of that case, shrunk and
//! written out; the campaign goes on with the next.
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

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde::{Deserialize, Serialize};

use super::case::{Case, CaseReport, KillMode};
use super::keyspace::{key_space, KeySpace};
use super::scenario::{InputSpec, Scenario};
use super::strategy::StrategyError;
use super::strategy::{scenario_strategy, StrategyConfig};
use super::{CaseError, Seams};
use crate::check::Property;
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
    /// Most runs spent after shrinking, removing single faults and records, to reach a local
    /// minimum (removing any one remaining fault or record makes the case pass). Default 400.
    pub minimize_runs_max: u32,
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
            minimize_runs_max: 400,
            failures_dir: PathBuf::from("faultline-failures"),
            kill_mode: KillMode::Sim,
            stop_at_first_failure: false,
            check_determinism: false,
        }
    }
}

/// A property a shrunk case broke, and what broke it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedViolation {
    /// The property ([`crate::check::Violation::property`], or determinism).
    pub property: Property,
    /// What happened, as printed.
    pub message: String,
}

impl std::fmt::Display for ReportedViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.property, self.message)
    }
}

/// One failing case, shrunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureReport {
    /// The case index.
    pub case: u64,
    /// Violations of the shrunk case.
    pub violations: Vec<ReportedViolation>,
    /// Faults before and after shrinking.
    pub faults: (usize, usize),
    /// Records before and after shrinking.
    pub records: (u32, u32),
    /// Runs spent shrinking.
    pub shrink_runs: u32,
    /// Whether the shrunk case is a local minimum: removing any one of its faults, or any one of
    /// its records, makes it pass (false when the run budget ran out first).
    #[serde(default)]
    pub local_minimum: bool,
    /// The shrunk scenario file, created for this failure alone.
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
    /// Cases asked for (this shard's share): more than run when the campaign stopped at its
    /// first failure or its time limit.
    #[serde(default)]
    pub requested: u64,
    /// Cases per backend.
    pub backends: BTreeMap<String, u64>,
    /// Faults fired, by kind.
    pub faults: BTreeMap<String, u64>,
    /// Fault kind x fault point.
    pub coverage: Coverage,
    /// Per fault kind, the cases in which it fired and an attempt then restored: the fault
    /// reached recovery.
    #[serde(default)]
    pub reached_restore: BTreeMap<String, u64>,
    /// Key groups the cases' inputs touched, summed over cases.
    #[serde(default)]
    pub key_groups_touched: u64,
    /// Subtask range boundaries of the cases' keyed stages, summed over cases.
    #[serde(default)]
    pub boundaries: u64,
    /// Of them, crossed (keys on both sides), summed over cases.
    #[serde(default)]
    pub boundaries_crossed: u64,
    /// Restores, every phase of every case.
    pub restores: u64,
    /// Checkpoints completed, every phase of every case.
    pub checkpoints: u64,
    /// Checkpoints triggered while another was in flight, every phase of every case.
    #[serde(default)]
    pub checkpoints_overlapping: u64,
    /// Completion notifications a task heard after a newer checkpoint's.
    #[serde(default)]
    pub notifications_out_of_order: u64,
    /// What unaligned checkpoints did, every phase of every case.
    #[serde(default)]
    pub unaligned: crate::engine::UnalignedStats,
    /// Restores of a retained checkpoint an earlier phase left (a rescale from a checkpoint),
    /// CLAIM and NO_CLAIM.
    #[serde(default)]
    pub inherited_restores: crate::engine::InheritedRestores,
    /// Cases that ended failing loudly on corruption, as they must.
    pub loud_failures: u64,
    /// Failing cases, shrunk.
    pub failures: Vec<FailureReport>,
    /// Wall time in seconds.
    pub wall_s: f64,
}

/// An exploration could not run (as opposed to finding failing cases, which its report holds).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExploreError {
    /// A case could not be run.
    #[error("case {case} ({name}): {source}")]
    Case {
        /// The case index.
        case: u64,
        /// The scenario's name.
        name: String,
        /// Why.
        source: CaseError,
    },
    /// The generator could not make a case.
    #[error("case {case}: the generator failed: {reason}")]
    Generate {
        /// The case index.
        case: u64,
        /// Why.
        reason: String,
    },
    /// The shard is not one of its campaign.
    #[error("shard {shard}/{shards}: k must be below n")]
    Shard {
        /// `k`.
        shard: u64,
        /// `n`.
        shards: u64,
    },
    /// The seams cannot be used as given.
    #[error(transparent)]
    Seams(CaseError),
    /// The strategy cannot draw cases.
    #[error(transparent)]
    Strategy(#[from] StrategyError),
    /// A failing case could not be written out.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// An environment override is not a number.
    #[error("{name}={value:?}: {reason}")]
    Env {
        /// The variable.
        name: String,
        /// Its value.
        value: String,
        /// Why it cannot be used.
        reason: String,
    },
}

/// What one case of the campaign came to.
struct CaseResult {
    case: u64,
    backend: String,
    fired: Vec<(FaultKind, FaultSite)>,
    reached_restore: BTreeSet<FaultKind>,
    key_space: KeySpace,
    restores: u64,
    checkpoints: u64,
    overlapping: u64,
    out_of_order: u64,
    unaligned: crate::engine::UnalignedStats,
    inherited_restores: crate::engine::InheritedRestores,
    loud: bool,
    failure: Option<FailureReport>,
}

/// A run of a case and the properties it broke (none when every one held).
struct Judged {
    report: CaseReport,
    found: Vec<ReportedViolation>,
}

/// The failing scenario shrinking has got to so far.
struct Shrunk {
    scenario: Scenario,
    found: Vec<ReportedViolation>,
    trace: String,
    runs: u32,
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
        .map_err(|reason| ExploreError::Generate {
            case,
            reason: reason.to_string(),
        })?;
    let mut scenario = tree.current();
    scenario.name = format!("seed {seed} case {case}");
    Ok((scenario, tree))
}

fn records(scenario: &Scenario) -> u32 {
    match &scenario.input {
        InputSpec::Generated { records, .. } => *records,
        InputSpec::Records { records } => u32::try_from(records.len()).unwrap_or(u32::MAX),
        InputSpec::Csv { .. } | InputSpec::JsonLines { .. } => 0,
    }
}

/// Runs `scenario` once, in a fresh directory.
fn run_once(
    scenario: &Scenario,
    case: u64,
    seams: Seams<'_>,
    mode: &KillMode,
) -> Result<CaseReport, ExploreError> {
    let failed = |source| ExploreError::Case {
        case,
        name: scenario.name.clone(),
        source,
    };
    let dir = tempfile::tempdir().map_err(|source| {
        failed(CaseError::Io {
            path: std::env::temp_dir(),
            source,
        })
    })?;
    Case::new(scenario.clone(), seams)
        .run(dir.path(), mode)
        .map_err(failed)
}

/// Runs `scenario` (twice, checking determinism) and collects what it broke.
fn judged(
    scenario: &Scenario,
    case: u64,
    seams: Seams<'_>,
    config: &ExploreConfig,
) -> Result<Judged, ExploreError> {
    let report = run_once(scenario, case, seams, &config.kill_mode)?;
    let mut found: Vec<ReportedViolation> = report
        .verdict
        .violations
        .iter()
        .map(|violation| ReportedViolation {
            property: violation.property(),
            message: violation.to_string(),
        })
        .collect();
    if config.check_determinism {
        let again = run_once(scenario, case, seams, &config.kill_mode)?;
        found.extend(divergence(&report, &again));
    }
    Ok(Judged { report, found })
}

/// The first event two runs of one seed disagree on, as a `determinism` violation.
fn divergence(first: &CaseReport, second: &CaseReport) -> Option<ReportedViolation> {
    let index = first
        .outcome
        .trace
        .first_divergence(&second.outcome.trace)?;
    let event = |report: &CaseReport| {
        report
            .outcome
            .trace
            .events()
            .get(index)
            .map_or_else(|| "(the trace ended)".to_string(), ToString::to_string)
    };
    Some(ReportedViolation {
        property: Property::Determinism,
        message: format!(
            "the same seed gave two traces; first difference at event {index}: {} / {}",
            event(first),
            event(second)
        ),
    })
}

fn run_case(
    config: &ExploreConfig,
    case: u64,
    seams: Seams<'_>,
) -> Result<CaseResult, ExploreError> {
    let (scenario, mut tree) = generate(&config.strategy, config.seed, case)?;
    let Judged { report, found } = judged(&scenario, case, seams, config)?;
    let key_space = key_space(&scenario).map_err(|e| ExploreError::Case {
        case,
        name: scenario.name.clone(),
        source: e.into(),
    })?;
    let mut result = CaseResult {
        case,
        backend: scenario.backend.name().to_string(),
        fired: report.fired(),
        reached_restore: report.reached_restore(),
        key_space,
        restores: report.outcome.restores.len() as u64,
        checkpoints: report.outcome.stats.checkpoints_completed,
        overlapping: report.outcome.stats.checkpoints_overlapping,
        out_of_order: report.outcome.stats.notifications_out_of_order,
        unaligned: report.outcome.stats.unaligned,
        inherited_restores: report.outcome.stats.inherited_restores,
        loud: report.verdict.failed_loudly(),
        failure: None,
    };
    if found.is_empty() {
        return Ok(result);
    }
    // Shrinking keeps to the properties the case first broke: it must not drift to another bug.
    let wanted: BTreeSet<Property> = found.iter().map(|v| v.property).collect();
    let first = Shrunk {
        scenario: scenario.clone(),
        found,
        trace: report.outcome.trace.render(),
        runs: 0,
    };
    let best = shrink(&mut tree, first, case, seams, config)?;
    let (best, local_minimum) = minimize(best, &wanted, case, seams, config)?;
    let file = write_failure(&config.failures_dir, config.seed, case, &best.scenario)?;
    result.failure = Some(FailureReport {
        case,
        violations: best.found,
        faults: (scenario.faults.len(), best.scenario.faults.len()),
        records: (records(&scenario), records(&best.scenario)),
        shrink_runs: best.runs,
        local_minimum,
        replay: format!("faultline replay {}", file.display()),
        scenario_file: file,
        trace: best.trace,
    });
    Ok(result)
}

/// Shrinks a failing case: simplifies while it still breaks a property the original case
/// broke, complicates back when it does not (passing, or failing another way: shrinking must
/// not drift from one bug to another).
fn shrink(
    tree: &mut impl ValueTree<Value = Scenario>,
    mut best: Shrunk,
    case: u64,
    seams: Seams<'_>,
    config: &ExploreConfig,
) -> Result<Shrunk, ExploreError> {
    let wanted: BTreeSet<Property> = best.found.iter().map(|v| v.property).collect();
    let mut more = tree.simplify();
    while more && best.runs < config.shrink_runs_max {
        best.runs += 1;
        let mut candidate = tree.current();
        candidate.name = best.scenario.name.clone();
        let Judged { report, found } = judged(&candidate, case, seams, config)?;
        if !found.iter().any(|v| wanted.contains(&v.property)) {
            more = tree.complicate();
        } else {
            best = Shrunk {
                scenario: candidate,
                found,
                trace: report.outcome.trace.render(),
                runs: best.runs,
            };
            more = tree.simplify();
        }
    }
    Ok(best)
}

/// Takes a shrunk case to a local minimum: removes one fault at a time, then one record at a
/// time (the input written out as records), keeping each removal after which the case still
/// breaks a property it first broke, until no single removal does. proptest's shrinking moves
/// along the strategy's own axes and may stop short of that; this says which faults and records
/// the failure needs. Returns whether the minimum was reached within the run budget.
fn minimize(
    mut best: Shrunk,
    wanted: &BTreeSet<Property>,
    case: u64,
    seams: Seams<'_>,
    config: &ExploreConfig,
) -> Result<(Shrunk, bool), ExploreError> {
    let mut budget = config.minimize_runs_max;
    let mut attempt =
        |candidate: Scenario, best: &mut Shrunk| -> Result<Option<bool>, ExploreError> {
            if budget == 0 {
                return Ok(None);
            }
            budget -= 1;
            best.runs += 1;
            let Judged { report, found } = judged(&candidate, case, seams, config)?;
            if !found.iter().any(|v| wanted.contains(&v.property)) {
                return Ok(Some(false));
            }
            *best = Shrunk {
                scenario: candidate,
                found,
                trace: report.outcome.trace.render(),
                runs: best.runs,
            };
            Ok(Some(true))
        };
    loop {
        let mut removed = false;
        let mut index = 0;
        while index < best.scenario.faults.len() {
            let mut candidate = best.scenario.clone();
            candidate.faults.remove(index);
            match attempt(candidate, &mut best)? {
                None => return Ok((best, false)),
                Some(true) => removed = true,
                Some(false) => index += 1,
            }
        }
        let mut records = best
            .scenario
            .input_records()
            .map_err(|e| ExploreError::Case {
                case,
                name: best.scenario.name.clone(),
                source: e.into(),
            })?;
        let mut index = 0;
        while index < records.len() {
            let mut fewer = records.clone();
            fewer.remove(index);
            let mut candidate = best.scenario.clone();
            candidate.input = InputSpec::Records {
                records: fewer.clone(),
            };
            match attempt(candidate, &mut best)? {
                None => return Ok((best, false)),
                Some(true) => {
                    records = fewer;
                    removed = true;
                }
                Some(false) => index += 1,
            }
        }
        if !removed {
            return Ok((best, true));
        }
    }
}

/// Writes a shrunk scenario to a file of its own in `dir`: created exclusively, so workers,
/// shards and tests sharing the directory never overwrite each other's failures.
fn write_failure(
    dir: &Path,
    seed: u64,
    case: u64,
    scenario: &Scenario,
) -> Result<PathBuf, ExploreError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ExploreError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    for copy in 1..=FAILURE_COPIES_MAX {
        let name = match copy {
            1 => format!("seed{seed}-case{case}.toml"),
            n => format!("seed{seed}-case{case}-{n}.toml"),
        };
        let path = dir.join(name);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path);
        match file {
            Ok(mut file) => {
                file.write_all(scenario.to_toml().as_bytes())
                    .map_err(io(&path))?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io(&path)(e)),
        }
    }
    Err(ExploreError::Io {
        path: dir.join(format!("seed{seed}-case{case}-{FAILURE_COPIES_MAX}.toml")),
        source: std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "every name for this failing case is taken: clear the failures directory",
        ),
    })
}

/// Files one failing case may have in one directory before the names run out.
const FAILURE_COPIES_MAX: u32 = 10_000;

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

/// [`explore`] with a user's seams in place of the built-in parts.
pub fn explore_with(
    config: &ExploreConfig,
    seams: Seams<'_>,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<ExploreReport, ExploreError> {
    seams
        .usable(&config.kill_mode)
        .map_err(ExploreError::Seams)?;
    config.strategy.validate()?;
    let (shard, shards) = config.shard;
    if shards == 0 || shard >= shards {
        return Err(ExploreError::Shard { shard, shards });
    }
    let cases: Vec<u64> = (0..config.cases).filter(|i| i % shards == shard).collect();
    #[allow(clippy::disallowed_methods)]
    // Wall time bounds the campaign and is reported; no case reads it.
    let started = std::time::Instant::now();
    let mut results = run_all(config, &cases, seams, progress, started)?;
    results.sort_by_key(|r| r.case);
    let mut report = ExploreReport {
        seed: config.seed,
        requested: cases.len() as u64,
        ..ExploreReport::default()
    };
    for result in results {
        report.add(result);
    }
    report.wall_s = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Runs `cases` on `config.jobs` workers that share only the queue: cases are independent and
/// each is single-threaded.
fn run_all(
    config: &ExploreConfig,
    cases: &[u64],
    seams: Seams<'_>,
    progress: &(dyn Fn(u64, u64) + Sync),
    started: std::time::Instant,
) -> Result<Vec<CaseResult>, ExploreError> {
    let next = AtomicU64::new(0);
    let results: Mutex<Vec<Result<CaseResult, ExploreError>>> = Mutex::new(Vec::new());
    let failures = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let worker = || loop {
        let out_of_time = config
            .time_limit_s
            .is_some_and(|limit| started.elapsed().as_secs_f64() > limit);
        let stop = config.stop_at_first_failure && failures.load(Ordering::SeqCst) > 0;
        let slot = next.fetch_add(1, Ordering::SeqCst) as usize;
        let Some(&case) = cases.get(slot).filter(|_| !out_of_time && !stop) else {
            return;
        };
        let result = run_case(config, case, seams);
        if result.as_ref().map_or(true, |r| r.failure.is_some()) {
            failures.fetch_add(1, Ordering::SeqCst);
        }
        results
            .lock()
            .expect("no worker panics holding the lock: a case's panics are its violations")
            .push(result);
        progress(
            done.fetch_add(1, Ordering::SeqCst) + 1,
            failures.load(Ordering::SeqCst),
        );
    };
    std::thread::scope(|scope| {
        for _ in 1..config.jobs.max(1) {
            scope.spawn(worker);
        }
        worker();
    });
    results
        .into_inner()
        .expect("no worker panicked holding the lock (see above)")
        .into_iter()
        .collect()
}

impl ExploreReport {
    /// Counts one case in.
    fn add(&mut self, result: CaseResult) {
        self.cases += 1;
        *self.backends.entry(result.backend).or_default() += 1;
        for (kind, site) in &result.fired {
            let kind = kind.name().to_string();
            *self.faults.entry(kind.clone()).or_default() += 1;
            *self
                .coverage
                .entry(kind)
                .or_default()
                .entry(site.name().to_string())
                .or_default() += 1;
        }
        for kind in &result.reached_restore {
            *self
                .reached_restore
                .entry(kind.name().to_string())
                .or_default() += 1;
        }
        self.key_groups_touched += u64::from(result.key_space.key_groups_touched);
        self.boundaries += u64::from(result.key_space.boundaries);
        self.boundaries_crossed += u64::from(result.key_space.boundaries_crossed);
        self.restores += result.restores;
        self.checkpoints += result.checkpoints;
        self.checkpoints_overlapping += result.overlapping;
        self.notifications_out_of_order += result.out_of_order;
        self.unaligned.add(&result.unaligned);
        self.inherited_restores.add(&result.inherited_restores);
        self.loud_failures += u64::from(result.loud);
        self.failures.extend(result.failure);
    }
}

/// Combines shard reports into one.
pub fn merge(reports: &[ExploreReport]) -> ExploreReport {
    let mut merged = ExploreReport {
        seed: reports.first().map_or(0, |r| r.seed),
        ..ExploreReport::default()
    };
    for report in reports {
        merged.cases += report.cases;
        merged.requested += report.requested;
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
        for (kind, n) in &report.reached_restore {
            *merged.reached_restore.entry(kind.clone()).or_default() += n;
        }
        merged.key_groups_touched += report.key_groups_touched;
        merged.boundaries += report.boundaries;
        merged.boundaries_crossed += report.boundaries_crossed;
        merged.restores += report.restores;
        merged.checkpoints += report.checkpoints;
        merged.checkpoints_overlapping += report.checkpoints_overlapping;
        merged.notifications_out_of_order += report.notifications_out_of_order;
        merged.unaligned.add(&report.unaligned);
        merged.inherited_restores.add(&report.inherited_restores);
        merged.loud_failures += report.loud_failures;
        merged.failures.extend(report.failures.iter().cloned());
        merged.wall_s = merged.wall_s.max(report.wall_s);
    }
    merged.failures.sort_by_key(|f| f.case);
    merged
}

/// A table cell: the count, or `-` for none.
fn count(n: u64) -> String {
    if n == 0 {
        "-".to_string()
    } else {
        n.to_string()
    }
}

impl ExploreReport {
    /// Key-space coverage per 1,000 cases.
    fn key_space_line(&self) -> String {
        let per_thousand = |n: u64| n as f64 * 1000.0 / self.cases.max(1) as f64;
        format!(
            "\nkey space, per 1,000 cases: {:.0} key groups touched; {:.0} of {:.0} subtask range boundaries crossed\n",
            per_thousand(self.key_groups_touched),
            per_thousand(self.boundaries_crossed),
            per_thousand(self.boundaries),
        )
    }

    /// The summary and the coverage table (fault kind x fault point), as printed.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "{} cases ({}) in {:.1} s, {:.1} cases/s; {} restores, {} checkpoints ({} triggered while another was in flight, {} notifications heard after a newer one's), {} loud failures on corruption\n",
            self.cases,
            self.backends.iter().map(|(b, n)| format!("{b} {n}")).collect::<Vec<_>>().join(", "),
            self.wall_s,
            self.cases as f64 / self.wall_s.max(1e-9),
            self.restores,
            self.checkpoints,
            self.checkpoints_overlapping,
            self.notifications_out_of_order,
            self.loud_failures,
        );
        let u = &self.unaligned;
        text.push_str(&format!(
            "unaligned checkpoints: {} snapshots ({} after an aligned-checkpoint timeout), {} records persisted as channel state, {} handed back by restores ({} restores at another parallelism)\n",
            u.snapshots, u.timed_out, u.records_persisted, u.records_restored, u.rescaled_restores,
        ));
        let inherited = &self.inherited_restores;
        text.push_str(&format!(
            "restores of a retained checkpoint an earlier job left: {} CLAIM, {} NO_CLAIM\n",
            inherited.claim, inherited.no_claim,
        ));
        let points: Vec<&str> = FaultSite::ALL.iter().map(|site| site.name()).collect();
        text.push_str(&format!(
            "\ncoverage (fault kind x point where it fired):\n{:<20}",
            "kind"
        ));
        for point in &points {
            text.push_str(&format!(" {:>8}", shorten(point)));
        }
        text.push_str(&format!(" {:>8}\n", "restored"));
        for kind in super::ALL_FAULT_KINDS {
            text.push_str(&format!("{kind:<20}"));
            for point in &points {
                let n = self
                    .coverage
                    .get(kind)
                    .and_then(|p| p.get(*point))
                    .copied()
                    .unwrap_or(0);
                text.push_str(&format!(" {:>8}", count(n)));
            }
            let restored = self.reached_restore.get(kind).copied().unwrap_or(0);
            text.push_str(&format!(" {:>8}\n", count(restored)));
        }
        text.push_str(&self.key_space_line());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(name: &str) -> Scenario {
        let (mut scenario, _) = generate(&StrategyConfig::default(), 1, 0).unwrap();
        scenario.name = name.into();
        scenario
    }

    #[test]
    fn failure_files_never_overwrite_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = (0..8).map(|i| format!("writer {i}")).collect();
        // Writers racing for the same case's name, as shards and tests sharing a directory do.
        let paths: Vec<PathBuf> = std::thread::scope(|scope| {
            let writers: Vec<_> = names
                .iter()
                .map(|name| scope.spawn(|| write_failure(dir.path(), 1, 0, &scenario(name))))
                .collect();
            writers
                .into_iter()
                .map(|writer| writer.join().unwrap().unwrap())
                .collect()
        });
        let distinct: std::collections::BTreeSet<&PathBuf> = paths.iter().collect();
        assert_eq!(distinct.len(), names.len(), "{paths:?}");
        assert!(paths.contains(&dir.path().join("seed1-case0.toml")));
        let mut written: Vec<String> = paths
            .iter()
            .map(|path| Scenario::load(path).unwrap().name)
            .collect();
        written.sort();
        assert_eq!(written, names, "every writer's scenario survives whole");
    }
}
