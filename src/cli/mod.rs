//! The `faultline` command line. It parses flags and prints; every behaviour lives in the
//! library.

pub mod demo;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::job::{RestartStrategy, SinkKind};
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
}

/// The demos.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DemoWhich {
    /// A map failing on its 5th record: as the tutorial wrote it, then corrected.
    Recovery,
    /// key_by(account) with a running sum in ValueState, surviving a failure.
    Stateful,
}

/// The sink a demo writes to.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SinkFlag {
    /// At-least-once: visible at once, duplicated by replays (the tutorial's print).
    Print,
    /// Exactly-once two-phase commit.
    TwoPhase,
}

/// Demo parameters; each defaults to the tutorial's value.
#[derive(Debug, clap::Args)]
pub struct DemoFlags {
    /// Record (1-based) on which the map fails [default: 5 for recovery, 12 for stateful].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub fail_at: Option<u64>,
    /// Checkpoint interval in simulated milliseconds.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub interval_ms: u64,
    /// Restart strategy: none | fixed-delay:ATTEMPTS:DELAY_MS | failure-
    /// rate:MAX:INTERVAL_MS:DELAY_MS
    /// | exponential-delay:INITIAL_MS:MAX_MS:MULTIPLIER:RESET_MS:JITTER[:ATTEMPTS].
    #[arg(long, default_value = "fixed-delay:3:5000")]
    pub restart: RestartStrategy,
    /// Root seed of the run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// CSV input (transaction_id,account,amount) instead of the embedded fixture.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Simulated processing time per record in the failing map.
    #[arg(long, default_value_t = 1000)]
    pub processing_ms: u64,
    /// The sink.
    #[arg(long, value_enum, default_value = "print")]
    pub sink: SinkFlag,
    /// Print every trace event, not only the story.
    #[arg(long)]
    pub trace: bool,
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo { which, flags } => run_demo(which, flags),
    }
}

fn run_demo(which: DemoWhich, flags: DemoFlags) -> ExitCode {
    let kind = match which {
        DemoWhich::Recovery => DemoKind::Recovery,
        DemoWhich::Stateful => DemoKind::Stateful,
    };
    let mut options = DemoOptions::defaults(kind);
    options.fail_at = flags.fail_at.unwrap_or(options.fail_at);
    options.interval_ms = flags.interval_ms;
    options.restart = flags.restart;
    options.seed = flags.seed;
    options.input = flags.input;
    options.processing_ms = flags.processing_ms;
    options.sink = match flags.sink {
        SinkFlag::Print => SinkKind::Print,
        SinkFlag::TwoPhase => SinkKind::TwoPhaseCommit,
    };
    options.full_trace = flags.trace;
    #[allow(clippy::disallowed_methods)] // Wall time is reported, never fed into the simulation.
    let started = std::time::Instant::now();
    match demo::run(kind, &options) {
        Ok(report) => {
            let wall = started.elapsed();
            print!("{}", report.text);
            let wall_ms = wall.as_secs_f64() * 1000.0;
            println!(
                "wall time {wall_ms:.1} ms for {} ms simulated ({:.0}x faster than real time)",
                report.simulated_ms,
                report.simulated_ms as f64 / wall_ms.max(0.001)
            );
            println!(
                "replay: faultline demo {} --seed {}",
                if kind == DemoKind::Recovery {
                    "recovery"
                } else {
                    "stateful"
                },
                options.seed
            );
            if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}
