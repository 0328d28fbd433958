//! `faultline explore` and `faultline replay`: campaigns from the command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::campaign::{
    explore, generate, merge, Case, ExploreConfig, ExploreReport, KillMode, Scenario, Seams,
    StrategyConfig, ALL_FAULT_KINDS,
};
use crate::state::BackendKind;

/// Parses `k/n`.
pub fn parse_shard(text: &str) -> Result<(u64, u64), String> {
    let (k, n) = text
        .split_once('/')
        .ok_or_else(|| format!("shard {text:?} is not k/n"))?;
    let k: u64 = k
        .parse()
        .map_err(|_| format!("shard {text:?}: k is not a number"))?;
    let n: u64 = n
        .parse()
        .map_err(|_| format!("shard {text:?}: n is not a number"))?;
    if n == 0 || k >= n {
        return Err(format!("shard {text:?}: needs 0 <= k < n"));
    }
    Ok((k, n))
}

/// Parses a comma-separated list of fault kinds (`all` for every kind).
pub fn parse_faults(text: &str) -> Result<Vec<String>, String> {
    if text == "all" {
        return Ok(ALL_FAULT_KINDS.iter().map(|k| k.to_string()).collect());
    }
    text.split(',')
        .map(|kind| {
            let kind = kind.trim();
            if ALL_FAULT_KINDS.contains(&kind) {
                Ok(kind.to_string())
            } else {
                Err(format!(
                    "unknown fault kind {kind:?}; kinds: {}",
                    ALL_FAULT_KINDS.join(", ")
                ))
            }
        })
        .collect()
}

/// Runs a campaign with a progress bar and prints its summary; writes JSON if asked.
pub fn run_explore(config: &ExploreConfig, json: Option<&Path>) -> Result<ExitCode, String> {
    println!(
        "explore: seed {}, {} cases (shard {}/{}), backends {}, faults {}",
        config.seed,
        config.cases,
        config.shard.0,
        config.shard.1,
        config
            .strategy
            .backends
            .iter()
            .map(|b| b.name())
            .collect::<Vec<_>>()
            .join(","),
        config.strategy.fault_kinds.join(",")
    );
    let bar = indicatif::ProgressBar::new(config.cases.div_ceil(config.shard.1));
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} cases, {per_sec}, {msg}")
            .map_err(|e| e.to_string())?,
    );
    let report = explore(config, None, &|_, failures| {
        bar.inc(1);
        bar.set_message(format!("{failures} failing"));
    })
    .map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    finish(&report, json)
}

fn finish(report: &ExploreReport, json: Option<&Path>) -> Result<ExitCode, String> {
    print!("{}", report.summary());
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    if let Some(first) = report.failures.first() {
        println!("\nshrunk trace of case {}:\n{}", first.case, first.trace);
    }
    Ok(if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Merges shard reports.
pub fn run_merge(files: &[PathBuf], json: Option<&Path>) -> Result<ExitCode, String> {
    let mut reports = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        reports.push(
            serde_json::from_str::<ExploreReport>(&text)
                .map_err(|e| format!("{}: not an explore report: {e}", file.display()))?,
        );
    }
    finish(&merge(&reports), json)
}

/// Where `replay` takes its case from.
#[derive(Debug, Clone)]
pub enum ReplaySource {
    /// A scenario file.
    File(PathBuf),
    /// Case `case` of an exploration with root seed `seed`.
    Case {
        /// Root seed.
        seed: u64,
        /// Case index.
        case: u64,
        /// Backends the exploration drew from.
        backends: Vec<BackendKind>,
        /// Fault kinds it allowed.
        faults: Vec<String>,
    },
}

/// Replays one case: prints its trace (violations marked) and verdict; with
/// `check_determinism`, runs it twice and reports the first diverging event.
pub fn run_replay(
    source: &ReplaySource,
    check_determinism: bool,
    mode: &KillMode,
) -> Result<ExitCode, String> {
    let scenario = match source {
        ReplaySource::File(path) => Scenario::load(path).map_err(|e| e.to_string())?,
        ReplaySource::Case {
            seed,
            case,
            backends,
            faults,
        } => {
            let strategy = StrategyConfig {
                backends: backends.clone(),
                fault_kinds: faults.clone(),
                ..StrategyConfig::default()
            };
            generate(&strategy, *seed, *case)
                .map_err(|e| e.to_string())?
                .0
        }
    };
    let case = Case::new(scenario.clone(), Seams::default());
    let run = || -> Result<crate::campaign::CaseReport, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        case.run(dir.path(), mode).map_err(|e| e.to_string())
    };
    let report = run()?;
    println!(
        "replay {}: seed {}, backend {}, swarm [{}], {} faults",
        scenario.name,
        scenario.seed,
        scenario.backend,
        scenario.swarm.join(","),
        scenario.faults.len()
    );
    print!("{}", report.outcome.trace.render());
    print!("{}", report.verdict);
    if check_determinism {
        let again = run()?;
        match report.outcome.trace.first_divergence(&again.outcome.trace) {
            None => println!(
                "determinism: two runs, identical traces (hash {})",
                report.trace_hash
            ),
            Some(index) => {
                let show = |trace: &crate::trace::Trace| {
                    trace
                        .events()
                        .get(index)
                        .map_or_else(|| "(end of trace)".to_string(), ToString::to_string)
                };
                println!(
                    "NONDETERMINISM at event {index}:\n  first:  {}\n  second: {}",
                    show(&report.outcome.trace),
                    show(&again.outcome.trace)
                );
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(if report.verdict.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
