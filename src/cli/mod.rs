//! The `faultline` command line. It parses flags and prints; every behaviour lives in the
//! library.
//!
//! ```
//! use clap::Parser;
//! use faultline::cli::{Cli, Command};
//!
//! let cli = Cli::try_parse_from(["faultline", "explore", "--cases", "50", "--seed", "7"])?;
//! assert!(matches!(cli.command, Command::Explore(_)));
//! // A bad flag is a clear error, not a panic.
//! let error = Cli::try_parse_from(["faultline", "explore", "--cases", "many"]).unwrap_err();
//! assert!(error.to_string().contains("--cases"));
//! # Ok::<(), clap::Error>(())
//! ```

pub mod demo;
pub mod explore;
pub mod savepoint;
pub mod windows_demo;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::bench::{self, BenchParams};
use crate::checkpoint::{inspect, CheckpointingMode};
use crate::job::{RestartStrategy, SinkKind};
use crate::state::{BackendKind, SavepointFormat};
use demo::{DemoKind, DemoOptions};

/// faultline: a property-based fault-injection harness for stateful stream processing.
#[derive(Debug, Parser)]
#[command(name = "faultline", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Reproduce a Flink tutorial's experiment, with a verdict instead of a log to eyeball.
    Demo {
        /// Which experiment.
        #[arg(value_enum)]
        which: DemoWhich,
        /// The demo's parameters.
        #[command(flatten)]
        flags: DemoFlags,
    },
    /// Validate every file and checksum of a checkpoint (`.../chk-N`) or savepoint directory.
    Inspect {
        /// The directory holding `_metadata`.
        dir: PathBuf,
    },
    /// Take a savepoint of the stateful job, or resume from one.
    Savepoint {
        /// Take or resume.
        #[command(subcommand)]
        action: SavepointAction,
    },
    /// Generate and run seeded fault-injection cases; shrink and report every failure.
    Explore(ExploreFlags),
    /// Re-run one case (a scenario file, or --seed S --case I of an exploration) and print its
    /// trace.
    Replay(ReplayFlags),
    /// Run one case in this process on behalf of a parent in process-kill mode (internal).
    #[command(hide = true)]
    CaseChild {
        /// The scenario file.
        scenario: PathBuf,
        /// The case directory (checkpoints, external store, event logs).
        #[arg(long)]
        dir: PathBuf,
        /// The phase of the case this process runs.
        #[arg(long, default_value_t = 0)]
        phase: usize,
        /// Children of this phase before this one (each was killed).
        #[arg(long, default_value_t = 0)]
        generation: u32,
        /// The attempt the phase starts at.
        #[arg(long, default_value_t = 0)]
        first_attempt: u32,
        /// The virtual time the phase starts at.
        #[arg(long, default_value_t = 0)]
        start_ms: u64,
    },
    /// Regenerate the fuzz targets' seed corpora from real checkpoints and savepoints.
    FuzzCorpus {
        /// Corpus root: one directory per target.
        #[arg(long, default_value = "fuzz/corpus")]
        out: PathBuf,
        /// Scenario files to add to the scenario corpus.
        #[arg(long, default_value = "fixtures/scenarios")]
        scenarios: PathBuf,
    },
    /// Measure checkpoints: full vs incremental, bytes written and retained, times.
    Bench {
        /// What to measure.
        #[command(subcommand)]
        what: BenchWhat,
    },
}

/// The demos.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DemoWhich {
    /// A map failing on its 5th record: as the tutorial wrote it, then corrected.
    Recovery,
    /// key_by(account) with a running sum in ValueState, surviving a failure.
    Stateful,
    /// Per-account 10-second tumbling sums in event time, surviving a failure mid-window.
    Windows,
}

/// The sink a demo writes to.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SinkFlag {
    /// At-least-once: visible at once, duplicated by replays (the tutorial's print).
    Print,
    /// Exactly-once two-phase commit.
    TwoPhase,
}

/// A state backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendFlag {
    /// In memory, full canonical checkpoints.
    Memory,
    /// RocksDB, full canonical checkpoints.
    RocksdbFull,
    /// RocksDB, incremental native checkpoints (shared SST files).
    RocksdbIncremental,
}

impl From<BackendFlag> for BackendKind {
    fn from(flag: BackendFlag) -> Self {
        match flag {
            BackendFlag::Memory => BackendKind::Memory,
            BackendFlag::RocksdbFull => BackendKind::RocksDbFull,
            BackendFlag::RocksdbIncremental => BackendKind::RocksDbIncremental,
        }
    }
}

/// A savepoint format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatFlag {
    /// Backend-independent: restores into any backend, at any parallelism.
    Canonical,
    /// The backend's own files: same backend only.
    Native,
}

/// Demo parameters; each defaults to the tutorial's value.
#[derive(Debug, Args)]
pub struct DemoFlags {
    /// Record (1-based) on which the map fails [default: 5 for recovery, 12 for stateful, 14
    /// for windows].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub fail_at: Option<u64>,
    /// Checkpoint interval in simulated milliseconds.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub interval_ms: u64,
    /// Restart strategy: none | fixed-delay:ATTEMPTS:DELAY_MS | failure-rate:MAX:INTERVAL_MS:DELAY_MS
    /// | exponential-delay:INITIAL_MS:MAX_MS:MULTIPLIER:RESET_MS:JITTER[:ATTEMPTS].
    #[arg(long, default_value = "fixed-delay:3:5000")]
    pub restart: RestartStrategy,
    /// Root seed of the run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// CSV input (transaction_id,account,amount[,timestamp]; windows needs the timestamp)
    /// instead of the embedded fixture.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Simulated processing time per record in the failing map.
    #[arg(long, default_value_t = 1000)]
    pub processing_ms: u64,
    /// The sink [default: print; two-phase for windows].
    #[arg(long, value_enum)]
    pub sink: Option<SinkFlag>,
    /// The state backend.
    #[arg(long, value_enum, default_value = "memory")]
    pub backend: BackendFlag,
    /// Print every trace event, not only the story.
    #[arg(long)]
    pub trace: bool,
}

impl DemoFlags {
    fn options(self, kind: DemoKind) -> DemoOptions {
        let mut options = DemoOptions::defaults(kind);
        options.fail_at = self.fail_at.unwrap_or(options.fail_at);
        options.interval_ms = self.interval_ms;
        options.restart = self.restart;
        options.seed = self.seed;
        options.input = self.input;
        options.processing_ms = self.processing_ms;
        options.sink = match self.sink {
            None => options.sink,
            Some(SinkFlag::Print) => SinkKind::Print,
            Some(SinkFlag::TwoPhase) => SinkKind::TwoPhaseCommit,
        };
        options.backend = self.backend.into();
        options.full_trace = self.trace;
        options
    }
}

/// Savepoint actions.
#[derive(Debug, Subcommand)]
pub enum SavepointAction {
    /// Run the stateful job, stop it with a savepoint at --at-ms, and move it to --out.
    Take {
        /// Where the savepoint goes (must not exist).
        #[arg(long)]
        out: PathBuf,
        /// Simulated time at which the savepoint is taken.
        #[arg(long, default_value_t = 12_000)]
        at_ms: u64,
        /// Canonical (any backend) or native (same backend only).
        #[arg(long, value_enum, default_value = "canonical")]
        format: FormatFlag,
        /// The state backend.
        #[arg(long, value_enum, default_value = "memory")]
        backend: BackendFlag,
        /// Root seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// CSV input instead of the embedded fixture.
        #[arg(long)]
        input: Option<PathBuf>,
    },
    /// Start the stateful job from a savepoint and run it to the end, with a verdict.
    Resume {
        /// The savepoint directory.
        dir: PathBuf,
        /// The state backend (a native savepoint needs the one that wrote it).
        #[arg(long, value_enum, default_value = "memory")]
        backend: BackendFlag,
        /// Parallelism of the keyed sum (key groups are redistributed).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=8))]
        parallelism: u16,
        /// Root seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// CSV input instead of the embedded fixture.
        #[arg(long)]
        input: Option<PathBuf>,
    },
}

/// Backends for a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CampaignBackend {
    /// In memory.
    Memory,
    /// RocksDB, full checkpoints.
    RocksdbFull,
    /// RocksDB, incremental checkpoints.
    RocksdbIncremental,
    /// Every backend of this build.
    All,
}

impl CampaignBackend {
    fn kinds(self) -> Vec<BackendKind> {
        match self {
            CampaignBackend::Memory => vec![BackendKind::Memory],
            CampaignBackend::RocksdbFull => vec![BackendKind::RocksDbFull],
            CampaignBackend::RocksdbIncremental => vec![BackendKind::RocksDbIncremental],
            CampaignBackend::All => BackendKind::all(),
        }
    }
}

/// Checkpointing modes for a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CampaignModes {
    /// Exactly-once in four cases of five, at-least-once in the rest.
    Both,
    /// Every case exactly-once.
    ExactlyOnce,
    /// Every case at-least-once.
    AtLeastOnce,
}

impl CampaignModes {
    fn modes(self) -> Vec<CheckpointingMode> {
        match self {
            CampaignModes::Both => vec![
                CheckpointingMode::ExactlyOnce,
                CheckpointingMode::AtLeastOnce,
            ],
            CampaignModes::ExactlyOnce => vec![CheckpointingMode::ExactlyOnce],
            CampaignModes::AtLeastOnce => vec![CheckpointingMode::AtLeastOnce],
        }
    }
}

/// `explore` parameters.
#[derive(Debug, Args)]
pub struct ExploreFlags {
    /// Cases to run (across all shards).
    #[arg(long, default_value_t = 300)]
    pub cases: u64,
    /// Root seed: case i of seed s is always the same case.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Backends to draw from.
    #[arg(long, value_enum, default_value = "all")]
    pub backend: CampaignBackend,
    /// Fault kinds allowed, comma-separated, or `all`.
    #[arg(long, default_value = "all", value_parser = explore::parse_faults)]
    pub faults: std::vec::Vec<String>,
    /// Checkpointing modes the cases use.
    #[arg(long, value_enum, default_value = "both")]
    pub modes: CampaignModes,
    /// Every generated job has event time and ends in a window (of every kind in turn).
    #[arg(long)]
    pub windowed: bool,
    /// Aligned checkpoints, unaligned ones (from the source on, or after an aligned-checkpoint
    /// timeout), or a mix of both.
    #[arg(long, value_enum, default_value = "mixed")]
    pub checkpointing: crate::campaign::Checkpointing,
    /// Run only shard k of n (k/n): cases with index % n == k.
    #[arg(long, default_value = "0/1", value_parser = explore::parse_shard)]
    pub shard: (u64, u64),
    /// Parallel workers (each case stays single-threaded and deterministic).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub jobs: u64,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Stop starting new cases after this many seconds.
    #[arg(long)]
    pub time_limit: Option<f64>,
    /// Where shrunk failing cases are written.
    #[arg(long, default_value = "faultline-failures")]
    pub failures_dir: PathBuf,
    /// Merge these shard reports (JSON) instead of running cases.
    #[arg(long, num_args = 1..)]
    pub merge: Vec<PathBuf>,
    /// Simulated kills, or real kills of child processes (each case's first step-kill becomes
    /// a real SIGABRT of a child, restarted on the same directories).
    #[arg(long, value_enum, default_value = "sim")]
    pub kill_mode: KillModeFlag,
}

/// How process kills happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KillModeFlag {
    /// Simulated inside one process.
    Sim,
    /// Real kills of child processes.
    Process,
}

impl KillModeFlag {
    fn mode(self) -> anyhow::Result<crate::campaign::KillMode> {
        Ok(match self {
            KillModeFlag::Sim => crate::campaign::KillMode::Sim,
            KillModeFlag::Process => crate::campaign::KillMode::Process {
                binary: std::env::current_exe().context("cannot find this binary")?,
            },
        })
    }
}

/// `replay` parameters.
#[derive(Debug, Args)]
pub struct ReplayFlags {
    /// A scenario file (as `explore` writes for failures, or from fixtures/scenarios).
    pub file: Option<PathBuf>,
    /// With --case: the exploration's root seed.
    #[arg(long, requires = "case", conflicts_with = "file")]
    pub seed: Option<u64>,
    /// With --seed: the case index.
    #[arg(long, requires = "seed")]
    pub case: Option<u64>,
    /// With --seed/--case: the exploration's backends.
    #[arg(long, value_enum, default_value = "all")]
    pub backend: CampaignBackend,
    /// With --seed/--case: the exploration's fault kinds.
    #[arg(long, default_value = "all", value_parser = explore::parse_faults)]
    pub faults: std::vec::Vec<String>,
    /// With --seed/--case: the exploration's checkpointing modes.
    #[arg(long, value_enum, default_value = "both")]
    pub modes: CampaignModes,
    /// With --seed/--case: the exploration's jobs all ended in a window (`explore --windowed`).
    #[arg(long, requires = "seed")]
    pub windowed: bool,
    /// With --seed/--case: the exploration's checkpointing (`explore --checkpointing`).
    #[arg(long, value_enum, default_value = "mixed")]
    pub checkpointing: crate::campaign::Checkpointing,
    /// Run twice and report the first event where the traces differ.
    #[arg(long)]
    pub check_determinism: bool,
    /// Simulated kills, or real kills of child processes.
    #[arg(long, value_enum, default_value = "sim")]
    pub kill_mode: KillModeFlag,
}

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchWhat {
    /// Full vs incremental checkpoints on keyed state of a chosen size and churn.
    Checkpoints(BenchFlags),
}

/// `bench checkpoints` parameters.
#[derive(Debug, Args)]
pub struct BenchFlags {
    /// Keys of keyed state.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub keys: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub value_bytes: u64,
    /// Fraction of keys changed before each checkpoint after the first (0..=1).
    #[arg(long, default_value_t = 0.01)]
    pub changed_fraction: f64,
    /// Checkpoints to take.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub checkpoints: u32,
    /// Backends to measure (repeat the flag); all by default.
    #[arg(long, value_enum)]
    pub backend: Vec<BackendFlag>,
    /// Seed of keys and values.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Upload checkpoint files on a background thread while the workload goes on.
    #[arg(long)]
    pub async_upload: bool,
    /// Sync every checkpoint file and directory to disk (default: leave them to the page cache).
    #[arg(long)]
    pub fsync: bool,
    /// Event-time timers each key registers (kept as keyed state in every checkpoint).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub timers_per_key: u32,
    /// Directory for bench.json and bench.svg.
    #[arg(long, default_value = "bench-out")]
    pub out: PathBuf,
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { which, flags } => run_demo(which, flags),
        Command::Inspect { dir } => run_inspect(&dir),
        Command::Savepoint { action } => run_savepoint(action),
        Command::Bench {
            what: BenchWhat::Checkpoints(flags),
        } => run_bench(flags),
        Command::Explore(flags) => run_explore(flags),
        Command::FuzzCorpus { out, scenarios } => {
            crate::fuzzing::write_seed_corpus(&out, &scenarios)
                .map(|counts| {
                    for count in counts {
                        println!("{:<14} {} seed file(s)", count.target.name(), count.files);
                    }
                    ExitCode::SUCCESS
                })
                .map_err(anyhow::Error::from)
        }
        Command::Replay(flags) => run_replay(flags),
        Command::CaseChild {
            scenario,
            dir,
            phase,
            generation,
            first_attempt,
            start_ms,
        } => {
            crate::campaign::child_main(&scenario, &dir, phase, generation, first_attempt, start_ms)
                .map(|()| ExitCode::SUCCESS)
                .map_err(anyhow::Error::from)
        }
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", render(&error));
            ExitCode::from(2)
        }
    }
}

/// An error and its causes on one line, `outer: inner: ...`, as `{error:#}` prints them, but
/// with each cause only once: the library's errors already end their messages with their
/// source's (`path: the I/O error`), and saying it twice would not say more.
fn render(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

fn run_demo(which: DemoWhich, flags: DemoFlags) -> anyhow::Result<ExitCode> {
    let (kind, name) = match which {
        DemoWhich::Recovery => (DemoKind::Recovery, "recovery"),
        DemoWhich::Stateful => (DemoKind::Stateful, "stateful"),
        DemoWhich::Windows => (DemoKind::Windows, "windows"),
    };
    let options = flags.options(kind);
    #[allow(clippy::disallowed_methods)] // Wall time is reported, never fed into the simulation.
    let started = std::time::Instant::now();
    let report = demo::run(kind, &options)?;
    let wall_ms = started.elapsed().as_secs_f64() * 1000.0;
    print!("{}", report.text);
    println!(
        "wall time {wall_ms:.1} ms for {} ms simulated ({:.0}x faster than real time)",
        report.simulated_ms,
        report.simulated_ms as f64 / wall_ms.max(0.001)
    );
    println!(
        "replay: faultline demo {name} --seed {} --backend {}",
        options.seed, options.backend
    );
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn run_inspect(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let report = inspect::inspect(dir)?;
    print!("{report}");
    Ok(if report.problems().is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The stateful demo job as the savepoint commands run it.
fn stateful_options(backend: BackendFlag, seed: u64, input: Option<PathBuf>) -> DemoOptions {
    let mut options = DemoOptions::defaults(DemoKind::Stateful);
    options.backend = backend.into();
    options.seed = seed;
    options.input = input;
    options
}

fn run_savepoint(action: SavepointAction) -> anyhow::Result<ExitCode> {
    match action {
        SavepointAction::Take {
            out,
            at_ms,
            format,
            backend,
            seed,
            input,
        } => {
            let options = stateful_options(backend, seed, input);
            let format = match format {
                FormatFlag::Canonical => SavepointFormat::Canonical,
                FormatFlag::Native => SavepointFormat::Native,
            };
            let text = savepoint::take(&options, at_ms, format, &out)?;
            print!("{text}");
            println!(
                "resume: faultline savepoint resume {} --backend {}",
                out.display(),
                options.backend
            );
            Ok(ExitCode::SUCCESS)
        }
        SavepointAction::Resume {
            dir,
            backend,
            parallelism,
            seed,
            input,
        } => {
            let options = stateful_options(backend, seed, input);
            let (text, passed) = savepoint::resume(&options, &dir, parallelism)?;
            print!("{text}");
            Ok(if passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

fn run_bench(flags: BenchFlags) -> anyhow::Result<ExitCode> {
    if !(0.0..=1.0).contains(&flags.changed_fraction) {
        bail!(
            "--changed-fraction {} is outside 0..=1",
            flags.changed_fraction
        );
    }
    let mut params = BenchParams {
        keys: flags.keys,
        value_bytes: flags.value_bytes as usize,
        changed_fraction: flags.changed_fraction,
        checkpoints: flags.checkpoints,
        seed: flags.seed,
        async_upload: flags.async_upload,
        fsync: flags.fsync,
        timers_per_key: flags.timers_per_key,
        ..BenchParams::default()
    };
    if !flags.backend.is_empty() {
        params.backends = flags
            .backend
            .iter()
            .map(|b| BackendKind::from(*b))
            .collect();
        params.backends.dedup();
    }
    std::fs::create_dir_all(&flags.out).with_context(|| flags.out.display().to_string())?;
    let work = tempfile::tempdir().context("temporary directory")?;
    let bar = indicatif::ProgressBar::new(params.backends.len() as u64);
    bar.set_style(indicatif::ProgressStyle::with_template(
        "{bar:30} {pos}/{len} backends {msg}",
    )?);
    let report = bench::run(&params, work.path(), &mut |backend| {
        // Called as each backend starts: the previous one is done.
        if !bar.message().is_empty() {
            bar.inc(1);
        }
        bar.set_message(backend.to_string());
    })?;
    bar.finish_and_clear();
    print!("{}", report.table());
    let json = flags.out.join("bench.json");
    let svg = flags.out.join("bench.svg");
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)
        .with_context(|| json.display().to_string())?;
    bench::draw_chart(&report, &svg)?;
    println!("wrote {} and {}", json.display(), svg.display());
    Ok(ExitCode::SUCCESS)
}

fn run_explore(flags: ExploreFlags) -> anyhow::Result<ExitCode> {
    if !flags.merge.is_empty() {
        return explore::run_merge(&flags.merge, flags.json.as_deref());
    }
    if flags
        .time_limit
        .is_some_and(|limit| limit.is_nan() || limit <= 0.0)
    {
        bail!("--time-limit must be a positive number of seconds");
    }
    let defaults = crate::campaign::ExploreConfig::default();
    let strategy = crate::campaign::StrategyConfig {
        backends: flags.backend.kinds(),
        fault_kinds: flags.faults,
        modes: flags.modes.modes(),
        windowed: flags.windowed,
        checkpointing: flags.checkpointing,
        ..defaults.strategy.clone()
    };
    let config = crate::campaign::ExploreConfig {
        cases: flags.cases,
        seed: flags.seed,
        strategy,
        shard: flags.shard,
        jobs: flags.jobs as usize,
        time_limit_s: flags.time_limit,
        failures_dir: flags.failures_dir,
        kill_mode: flags.kill_mode.mode()?,
        ..defaults
    };
    explore::run_explore(&config, flags.json.as_deref())
}

fn run_replay(flags: ReplayFlags) -> anyhow::Result<ExitCode> {
    let source = match (flags.file, flags.seed, flags.case) {
        (Some(file), None, None) => explore::ReplaySource::File(file),
        (None, Some(seed), Some(case)) => explore::ReplaySource::Case {
            seed,
            case,
            backends: flags.backend.kinds(),
            faults: flags.faults,
            modes: flags.modes.modes(),
            windowed: flags.windowed,
            checkpointing: flags.checkpointing,
        },
        _ => bail!("replay takes a scenario file, or --seed S --case I"),
    };
    explore::run_replay(&source, flags.check_determinism, &flags.kill_mode.mode()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendered_error_names_each_cause_once() {
        let storage = crate::checkpoint::StorageError::Io {
            path: "chk-1/_metadata".into(),
            source: std::io::Error::other("disk on fire"),
        };
        let case = crate::campaign::CaseError::from(storage);
        assert_eq!(
            render(&anyhow::Error::from(case)),
            "checkpoint storage: chk-1/_metadata: disk on fire"
        );
        let read = Err::<(), _>(std::io::Error::other("gone")).context("out/bench.json");
        assert_eq!(render(&read.unwrap_err()), "out/bench.json: gone");
    }
}
