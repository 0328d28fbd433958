//! `faultline explore` and `faultline replay`: campaigns from the command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::campaign::{
    explore, generate, merge, Case, ExploreConfig, ExploreReport, KillMode, Scenario, Seams,
    StrategyConfig, ALL_FAULT_KINDS,
};
use crate::checkpoint::CheckpointingMode;
use crate::state::BackendKind;

/// A `--shard` value that is not `k/n` with `0 <= k < n`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    /// No `/`.
    #[error("shard {text:?} is not k/n")]
    NotAFraction {
        /// The value given.
        text: String,
    },
    /// `k` is not a whole number.
    #[error("shard {text:?}: k is not a number")]
    BadK {
        /// The value given.
        text: String,
    },
    /// `n` is not a whole number.
    #[error("shard {text:?}: n is not a number")]
    BadN {
        /// The value given.
        text: String,
    },
    /// `k` is not below `n`.
    #[error("shard {text:?}: needs 0 <= k < n")]
    OutOfRange {
        /// The value given.
        text: String,
        /// `k`.
        k: u64,
        /// `n`.
        n: u64,
    },
}

/// A `--faults` entry that names no fault kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown fault kind {kind:?}; kinds: {}", ALL_FAULT_KINDS.join(", "))]
pub struct UnknownFaultKind {
    /// The entry given.
    pub kind: String,
}

/// Parses `k/n`.
pub fn parse_shard(text: &str) -> Result<(u64, u64), ShardError> {
    let (k, n) = text
        .split_once('/')
        .ok_or_else(|| ShardError::NotAFraction {
            text: text.to_string(),
        })?;
    let k: u64 = k.parse().map_err(|_| ShardError::BadK {
        text: text.to_string(),
    })?;
    let n: u64 = n.parse().map_err(|_| ShardError::BadN {
        text: text.to_string(),
    })?;
    if n == 0 || k >= n {
        return Err(ShardError::OutOfRange {
            text: text.to_string(),
            k,
            n,
        });
    }
    Ok((k, n))
}

/// Parses a comma-separated list of fault kinds (`all` for every kind).
pub fn parse_faults(text: &str) -> Result<Vec<String>, UnknownFaultKind> {
    if text == "all" {
        return Ok(ALL_FAULT_KINDS.iter().map(|k| k.to_string()).collect());
    }
    text.split(',')
        .map(|kind| {
            let kind = kind.trim();
            if ALL_FAULT_KINDS.contains(&kind) {
                Ok(kind.to_string())
            } else {
                Err(UnknownFaultKind {
                    kind: kind.to_string(),
                })
            }
        })
        .collect()
}

/// Runs a campaign with a progress bar and prints its summary; writes JSON if asked.
pub fn run_explore(config: &ExploreConfig, json: Option<&Path>) -> anyhow::Result<ExitCode> {
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
    bar.set_style(indicatif::ProgressStyle::with_template(
        "{bar:30} {pos}/{len} cases, {per_sec}, {msg}",
    )?);
    let report = explore(config, None, &|_, failures| {
        bar.inc(1);
        bar.set_message(format!("{failures} failing"));
    })?;
    bar.finish_and_clear();
    finish(&report, json)
}

fn finish(report: &ExploreReport, json: Option<&Path>) -> anyhow::Result<ExitCode> {
    print!("{}", report.summary());
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(report)?;
        std::fs::write(path, text).with_context(|| path.display().to_string())?;
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
pub fn run_merge(files: &[PathBuf], json: Option<&Path>) -> anyhow::Result<ExitCode> {
    let mut reports = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).with_context(|| file.display().to_string())?;
        reports.push(
            serde_json::from_str::<ExploreReport>(&text)
                .with_context(|| format!("{}: not an explore report", file.display()))?,
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
        /// Checkpointing modes it drew from.
        modes: Vec<CheckpointingMode>,
        /// Whether every job it drew ends in a window.
        windowed: bool,
        /// Its checkpointing.
        checkpointing: crate::campaign::Checkpointing,
    },
}

/// Replays one case: prints its trace (violations marked) and verdict; with
/// `check_determinism`, runs it twice and reports the first diverging event.
pub fn run_replay(
    source: &ReplaySource,
    check_determinism: bool,
    mode: &KillMode,
) -> anyhow::Result<ExitCode> {
    let scenario = match source {
        ReplaySource::File(path) => Scenario::load(path)?,
        ReplaySource::Case {
            seed,
            case,
            backends,
            faults,
            modes,
            windowed,
            checkpointing,
        } => {
            let strategy = StrategyConfig {
                backends: backends.clone(),
                fault_kinds: faults.clone(),
                modes: modes.clone(),
                windowed: *windowed,
                checkpointing: *checkpointing,
                ..StrategyConfig::default()
            };
            generate(&strategy, *seed, *case)?.0
        }
    };
    let case = Case::new(scenario.clone(), Seams::default());
    let run = || -> anyhow::Result<crate::campaign::CaseReport> {
        let dir = tempfile::tempdir()?;
        Ok(case.run(dir.path(), mode)?)
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
