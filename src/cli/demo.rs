//! `faultline demo`: the tutorials' experiments on the deterministic runtime, with a verdict.
//!
//! - `recovery` (tutorial 2): a map that fails on its 5th record. First as the tutorial wrote
//!   it — the count in a plain field, so every restart fails again until the restart strategy
//!   gives up — then corrected (it fails on the first attempt only), recovering.
//! - `stateful`: the same behind `key_by(account)` with a running sum per account in
//!   `ValueState`; the oracle proves the state after the failure was restored from a checkpoint,
//!   not recomputed from scratch.
//! - `windows` (`windows_demo.rs`): per-account tumbling sums in event time, the map in front
//!   of the window failing mid-window; the judgement's ledger of every window.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::campaign::{Case, CaseReport, InputSpec, KillMode, Scenario, Seams};
use crate::check::{Note, Violation};
use crate::checkpoint::CheckpointConfig;
use crate::engine::JobStatus;
use crate::job::csv::{parse_transactions, CsvInput};
use crate::job::{
    FailCounter, InputRecord, JobSpec, OperatorSpec, RestartStrategy, SinkKind, SinkSpec,
    SourceSpec, StageSpec,
};
use crate::state::BackendKind;

/// The embedded default input: `fixtures/transactions.csv`.
pub const TRANSACTIONS_CSV: &str = include_str!("../../fixtures/transactions.csv");

/// Which demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoKind {
    /// Tutorial 2: a failing map, as written and corrected.
    Recovery,
    /// Keyed running sums surviving the failure.
    Stateful,
    /// Per-account tumbling sums in event time surviving a failure mid-window.
    Windows,
}

/// Parameters of a demo.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DemoOptions {
    /// Which record (1-based) the failing map fails on.
    pub fail_at: u64,
    /// Checkpoint interval.
    pub interval_ms: u64,
    /// Restart strategy.
    pub restart: RestartStrategy,
    /// Root seed.
    pub seed: u64,
    /// A CSV file instead of the embedded fixture.
    pub input: Option<PathBuf>,
    /// Simulated processing time per record in the failing map.
    pub processing_ms: u64,
    /// The sink.
    pub sink: SinkKind,
    /// Print every trace event, not only the story.
    pub full_trace: bool,
    /// The state backend.
    pub backend: BackendKind,
}

impl DemoOptions {
    /// The tutorial's settings for `kind`: checkpoint every 5000 ms, `fixed-delay(3, 5000 ms)`,
    /// 1000 ms per record, print sink, seed 1. `recovery` fails on record 5 (tx1005) as the
    /// tutorial does; `stateful` fails on record 12, after a checkpoint has completed, so the
    /// restore has state to prove; `windows` fails on record 14 (tx1014), in the middle of
    /// its third window, and writes through a two-phase-commit sink, so that every window
    /// result is committed exactly once.
    pub fn defaults(kind: DemoKind) -> Self {
        Self {
            fail_at: match kind {
                DemoKind::Recovery => 5,
                DemoKind::Stateful => 12,
                DemoKind::Windows => 14,
            },
            interval_ms: 5000,
            restart: RestartStrategy::FixedDelay {
                attempts: 3,
                delay_ms: 5000,
            },
            seed: 1,
            input: None,
            processing_ms: 1000,
            sink: match kind {
                DemoKind::Windows => SinkKind::TwoPhaseCommit,
                _ => SinkKind::Print,
            },
            full_trace: false,
            backend: BackendKind::Memory,
        }
    }
}

/// A demo could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// The input file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The CSV is malformed.
    #[error("{path}: {source}")]
    Csv {
        /// The file.
        path: String,
        /// What is wrong, with line and column.
        source: crate::job::csv::CsvError,
    },
    /// The CSV holds no usable record.
    #[error("{0}: no record left after skipping rows with missing values")]
    Empty(String),
    /// A case failed to run.
    #[error(transparent)]
    Case(#[from] crate::campaign::CaseError),
    /// A temporary directory could not be made.
    #[error("temporary directory: {0}")]
    TempDir(std::io::Error),
    /// The backend is not in this build.
    #[error(transparent)]
    Backend(#[from] crate::state::BackendUnavailable),
    /// The windows demo was given records without event times.
    #[error("{path}: {record} has no event time; the windows demo needs a timestamp column")]
    NoEventTime {
        /// The file.
        path: String,
        /// The first record without one.
        record: String,
    },
}

/// What a demo printed, and whether its verdicts came out as they should.
#[derive(Debug)]
pub struct DemoReport {
    /// The story and verdicts, as printed.
    pub text: String,
    /// Whether the corrected run passed every check of the oracle (state restored and at the
    /// end equal to the model's, no output lost or duplicated). The as-written run of `recovery`
    /// is told, not judged: it fails as the tutorial's bug predicts.
    pub ok: bool,
    /// Simulated time of all runs.
    pub simulated_ms: u64,
}

/// Loads the demo input: `options.input`, or the embedded fixture.
pub fn load_input(options: &DemoOptions) -> Result<(String, CsvInput), DemoError> {
    let (label, text) = match &options.input {
        None => (
            "fixtures/transactions.csv (embedded)".to_string(),
            TRANSACTIONS_CSV.to_string(),
        ),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| DemoError::Read {
                path: path.clone(),
                source,
            })?;
            (path.display().to_string(), text)
        }
    };
    let parsed = parse_transactions(&text).map_err(|source| DemoError::Csv {
        path: label.clone(),
        source,
    })?;
    if parsed.records.is_empty() {
        return Err(DemoError::Empty(label));
    }
    Ok((label, parsed))
}

fn job_for(kind: DemoKind, options: &DemoOptions, counter: FailCounter) -> JobSpec {
    let mut stages = vec![StageSpec {
        name: "failing-map".into(),
        op: OperatorSpec::FailingMap {
            fail_at: options.fail_at,
            counter,
        },
        parallelism: 1,
        processing_ms: options.processing_ms,
    }];
    if kind == DemoKind::Stateful {
        stages.push(StageSpec {
            name: "sum".into(),
            op: OperatorSpec::Sum,
            parallelism: 1,
            processing_ms: 0,
        });
    }
    JobSpec {
        name: format!(
            "demo-{}",
            if kind == DemoKind::Recovery {
                "recovery"
            } else {
                "stateful"
            }
        ),
        max_parallelism: crate::job::keygroup::DEFAULT_MAX_PARALLELISM,
        source: SourceSpec {
            parallelism: 1,
            partitions: None,
            emit_ms: 0,
            watermarks: None,
        },
        stages,
        sink: SinkSpec {
            kind: options.sink,
            parallelism: 1,
        },
    }
}

/// The demo's case: `job` over `records` with the options' seed, backend, checkpoint interval
/// and restart strategy, and no faults beyond what the job's own operators do.
pub(super) fn scenario(job: &JobSpec, records: &[InputRecord], options: &DemoOptions) -> Scenario {
    Scenario {
        name: job.name.clone(),
        seed: options.seed,
        backend: options.backend,
        swarm: Vec::new(),
        job: job.clone(),
        input: InputSpec::Records {
            records: records.to_vec(),
        },
        checkpoint: CheckpointConfig::every(options.interval_ms),
        restart: options.restart.clone(),
        faults: Vec::new(),
        savepoints: Vec::new(),
        channel_capacity: 4,
        rescale: None,
        verify_restored_files: true,
        initial_snapshot: None,
        // A story, not a campaign: the oracle judges the run, the audit's lines stay out.
        audit_storage: false,
        sabotage: Default::default(),
    }
}

/// Runs `scenario` in `dir` and judges it.
pub(super) fn run_case(scenario: Scenario, dir: &Path) -> Result<CaseReport, DemoError> {
    Ok(Case::new(scenario, Seams::default()).run(dir, &KillMode::Sim)?)
}

fn run_part(
    job: &JobSpec,
    records: &[InputRecord],
    options: &DemoOptions,
    text: &mut String,
) -> Result<CaseReport, DemoError> {
    let dir = tempfile::tempdir().map_err(DemoError::TempDir)?;
    let report = run_case(scenario(job, records, options), dir.path())?;
    for event in report.outcome.trace.events() {
        // The story: everything but the data flowing (`--trace` shows that too).
        if options.full_trace || !event.event.is_flow() {
            writeln!(text, "  {event}").expect("writing to a String");
        }
    }
    Ok(report)
}

/// The demo's title, input and configuration lines.
fn header(kind: DemoKind, options: &DemoOptions, label: &str, csv: &CsvInput) -> String {
    let mut text = String::new();
    let title = match kind {
        DemoKind::Recovery => {
            "demo recovery: the PyFlink tutorial's failing map, on the deterministic runtime"
        }
        DemoKind::Stateful | DemoKind::Windows => {
            "demo stateful: key_by(account) with a running sum in ValueState, surviving a failure"
        }
    };
    writeln!(text, "faultline {title}").expect("writing to a String");
    let skipped = csv
        .skipped_lines
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    writeln!(
        text,
        "input: {label}: {} records; {} rows skipped for a missing value (lines {skipped})",
        csv.records.len(),
        csv.skipped_lines.len()
    )
    .expect("writing to a String");
    let shape = if kind == DemoKind::Recovery {
        "source -> failing-map -> sink"
    } else {
        "source -> failing-map -> key_by(account) sum -> sink"
    };
    writeln!(
        text,
        "job: {shape} ({:?} sink); the map fails on record #{}, takes {} ms per record\nconfig: backend {}, checkpoint every {} ms, restart {}, seed {}; values are amounts in cents",
        options.sink, options.fail_at, options.processing_ms, options.backend, options.interval_ms, options.restart, options.seed
    )
    .expect("writing to a String");
    text
}

/// Part 1 of `recovery`: the map as the tutorial wrote it, told; returns its simulated time.
fn as_written(
    options: &DemoOptions,
    records: &[InputRecord],
    text: &mut String,
) -> Result<u64, DemoError> {
    writeln!(
        text,
        "\n== 1. as the tutorial wrote it: the record count lives in a plain field =="
    )
    .expect("writing to a String");
    let job = job_for(DemoKind::Recovery, options, FailCounter::PlainField);
    let report = run_part(&job, records, options, text)?;
    match &report.outcome.status {
        JobStatus::Failed { .. } => writeln!(
            text,
            "-> as in Flink, it never recovers: each restart builds the operator anew, its counter starts again at 0,\n   and record #{} fails again on every one of {} attempts. State kept outside checkpointed state is lost on restart.",
            options.fail_at, report.outcome.stats.attempts
        )
        .expect("writing to a String"),
        JobStatus::Finished | JobStatus::Stopped { .. } | JobStatus::Cancelled { .. } => {
            writeln!(text, "-> it finished: with fewer than {} records the failure never fires", options.fail_at).expect("writing to a String");
        }
    }
    writeln!(
        text,
        "\n== 2. corrected: the map fails on the first attempt only =="
    )
    .expect("writing to a String");
    Ok(report.outcome.stats.time_ms)
}

/// What the corrected run's verdict says of its restores and its output, in words: each claim
/// is made only when the oracle checked it and it held.
fn summary(report: &CaseReport, records_in: usize, text: &mut String) {
    let outcome = &report.outcome;
    let violations = &report.verdict.violations;
    for restore in &outcome.restores {
        let from = restore.checkpoint_id.map_or_else(
            || "no completed checkpoint: the source started over".to_string(),
            |id| format!("chk-{id}"),
        );
        let differs = violations.iter().any(|v| {
            matches!(v, Violation::RestoredState { attempt, .. } if *attempt == restore.attempt)
        });
        let matched = report
            .verdict
            .notes
            .iter()
            .any(|note| matches!(note, Note::RestoredStateMatched { .. }));
        let judged = match (differs, matched) {
            (true, _) => "NOT equal to the model's (see the violations above)",
            (false, true) => "equal to the model's",
            (false, false) => "not compared with the model",
        };
        writeln!(
            text,
            "restore at {} ms: {from}; sources at {}; {} keyed values restored, {judged}",
            restore.time_ms,
            restore.positions,
            restore.state.len()
        )
        .expect("writing to a String");
    }
    let lost = violations
        .iter()
        .filter(|v| matches!(v, Violation::OutputLost { .. }))
        .count();
    let output = match lost {
        0 if report.verdict.passed() => "nothing lost".to_string(),
        0 => "see the violations above".to_string(),
        n => format!("{n} record(s) LOST"),
    };
    let replayed: Vec<&str> = report
        .verdict
        .replayed
        .iter()
        .map(|r| r.id.as_str())
        .collect();
    writeln!(
        text,
        "summary: {records_in} records in, {} visible in the sink, {output}; replayed after the restore: {}",
        outcome.store.visible().len(),
        if replayed.is_empty() { "none".to_string() } else { replayed.join(" ") }
    )
    .expect("writing to a String");
    writeln!(
        text,
        "{} checkpoints completed, {} failure(s), simulated time {} ms",
        outcome.stats.checkpoints_completed,
        outcome.failures.len(),
        outcome.stats.time_ms
    )
    .expect("writing to a String");
}

/// Runs a demo and renders its story.
pub fn run(kind: DemoKind, options: &DemoOptions) -> Result<DemoReport, DemoError> {
    if kind == DemoKind::Windows {
        return super::windows_demo::run(options);
    }
    let (label, csv) = load_input(options)?;
    let mut text = header(kind, options, &label, &csv);
    let mut simulated_ms = 0;
    if kind == DemoKind::Recovery {
        simulated_ms += as_written(options, &csv.records, &mut text)?;
    } else {
        writeln!(text).expect("writing to a String");
    }
    let job = job_for(kind, options, FailCounter::FirstAttempt);
    let report = run_part(&job, &csv.records, options, &mut text)?;
    simulated_ms += report.outcome.stats.time_ms;
    write!(text, "{}", report.verdict).expect("writing to a String");
    summary(&report, csv.records.len(), &mut text);
    Ok(DemoReport {
        text,
        ok: report.verdict.passed(),
        simulated_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateAddr;

    /// The stateful demo's corrected run: it restores once and passes.
    fn corrected() -> (CaseReport, usize) {
        let options = DemoOptions::defaults(DemoKind::Stateful);
        let (_, csv) = load_input(&options).unwrap();
        let job = job_for(DemoKind::Stateful, &options, FailCounter::FirstAttempt);
        let dir = tempfile::tempdir().unwrap();
        let report = run_case(scenario(&job, &csv.records, &options), dir.path()).unwrap();
        assert!(report.verdict.passed(), "{}", report.verdict);
        assert_eq!(report.outcome.restores.len(), 1);
        (report, csv.records.len())
    }

    fn summarized(report: &CaseReport, records_in: usize) -> String {
        let mut text = String::new();
        summary(report, records_in, &mut text);
        text
    }

    #[test]
    fn the_summary_claims_what_the_verdict_checked() {
        let (mut report, records_in) = corrected();
        let passed = summarized(&report, records_in);
        assert!(passed.contains("nothing lost"), "{passed}");
        assert!(passed.contains("equal to the model's"), "{passed}");

        let attempt = report.outcome.restores[0].attempt;
        let lost = report.outcome.store.visible()[0].clone();
        report.verdict.violations = vec![
            Violation::RestoredState {
                attempt,
                checkpoint_id: report.outcome.restores[0].checkpoint_id,
                addr: StateAddr {
                    stage: "sum".into(),
                    state: "sum".into(),
                    key: lost.key.clone(),
                    user_key: None,
                },
                expected: None,
                actual: None,
            },
            Violation::OutputLost { record: lost },
        ];
        let failed = summarized(&report, records_in);
        assert!(!failed.contains("nothing lost"), "{failed}");
        assert!(failed.contains("1 record(s) LOST"), "{failed}");
        assert!(!failed.contains(", equal to the model's"), "{failed}");
        assert!(failed.contains("NOT equal to the model's"), "{failed}");

        // A restore the oracle did not compare is claimed neither way.
        report.verdict.violations.clear();
        report.verdict.notes.clear();
        let unchecked = summarized(&report, records_in);
        assert!(
            unchecked.contains("not compared with the model"),
            "{unchecked}"
        );
        assert!(!unchecked.contains(", equal to the model's"), "{unchecked}");
    }
}
