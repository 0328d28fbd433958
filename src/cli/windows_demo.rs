//! `faultline demo windows`: the tutorial's transactions with event times, a per-account
//! 10-second tumbling sum in event time (watermarks 2 s behind the largest time seen), the map
//! in front of it failing mid-window on its first attempt, the restore, and the judgement's
//! ledger: every window's results and late records set against the records the model says
//! fell in it.

use std::fmt::Write as _;

use super::demo::{run_case, scenario, DemoError, DemoOptions, DemoReport};
use crate::campaign::CaseReport;
use crate::check::{window_ledger, WindowAccount, WindowLedger};
use crate::job::csv::{parse_transactions, CsvInput};
use crate::job::{
    task_name, FailCounter, InputRecord, JobSpec, OperatorSpec, SinkSpec, SourceSpec, StageSpec,
    WatermarkSpec, WindowAggregate,
};
use crate::model;
use crate::trace::{Event, Stamped};

/// The embedded default input: `fixtures/transactions-timed.csv`, the tutorial's transactions
/// two seconds apart from 2024-05-01T12:00:00Z, a few out of order and one (tx1030) late.
pub const TIMED_TRANSACTIONS_CSV: &str = include_str!("../../fixtures/transactions-timed.csv");

/// The window's size.
const WINDOW_MS: i64 = 10_000;
/// How far the watermark stays behind the largest event time seen.
const OUT_OF_ORDERNESS_MS: i64 = 2_000;

/// Loads the input (`options.input`, or the embedded fixture): it must carry event times.
fn load_input(options: &DemoOptions) -> Result<(String, CsvInput), DemoError> {
    let (label, csv) = match &options.input {
        None => {
            let label = "fixtures/transactions-timed.csv (embedded)".to_string();
            let csv =
                parse_transactions(TIMED_TRANSACTIONS_CSV).map_err(|source| DemoError::Csv {
                    path: label.clone(),
                    source,
                })?;
            (label, csv)
        }
        Some(_) => super::demo::load_input(options)?,
    };
    if let Some(record) = csv.records.iter().find(|r| r.timestamp_ms.is_none()) {
        return Err(DemoError::NoEventTime {
            path: label,
            record: record.id.clone(),
        });
    }
    Ok((label, csv))
}

/// source (with watermarks) -> failing-map -> key_by(account) tumbling window sum -> sink.
fn job(options: &DemoOptions) -> JobSpec {
    JobSpec {
        name: "demo-windows".into(),
        max_parallelism: crate::job::keygroup::DEFAULT_MAX_PARALLELISM,
        source: SourceSpec {
            parallelism: 1,
            partitions: None,
            emit_ms: 0,
            watermarks: Some(WatermarkSpec {
                out_of_orderness_ms: OUT_OF_ORDERNESS_MS,
                interval_ms: 200,
                idle_timeout_ms: None,
            }),
        },
        stages: vec![
            StageSpec {
                name: "failing-map".into(),
                op: OperatorSpec::FailingMap {
                    fail_at: options.fail_at,
                    counter: FailCounter::FirstAttempt,
                },
                parallelism: 1,
                processing_ms: options.processing_ms,
            },
            StageSpec {
                name: "window".into(),
                op: OperatorSpec::TumblingWindow {
                    size_ms: WINDOW_MS,
                    aggregate: WindowAggregate::Sum,
                    allowed_lateness_ms: 0,
                },
                parallelism: 1,
                processing_ms: 0,
            },
        ],
        sink: SinkSpec {
            kind: options.sink,
            parallelism: 1,
        },
    }
}

/// The story's events: what is not data flowing, and the window's firings and late records.
fn told(stamped: &Stamped, full_trace: bool) -> bool {
    match &stamped.event {
        Event::TimerFired { outputs, .. } => !outputs.is_empty(),
        Event::RecordProcessed { task, outputs, .. } => {
            *task == task_name("window", 0) && outputs.iter().any(|o| o.side.is_some())
        }
        event => full_trace || !event.is_flow(),
    }
}

fn header(options: &DemoOptions, label: &str, csv: &CsvInput, text: &mut String) {
    writeln!(text, "faultline demo windows: per-account 10-second tumbling sums in event time, surviving a failure mid-window").expect("writing to a String");
    writeln!(
        text,
        "input: {label}: {} records; {} rows skipped for a missing value",
        csv.records.len(),
        csv.skipped_lines.len()
    )
    .expect("writing to a String");
    writeln!(
        text,
        "job: source (watermarks {OUT_OF_ORDERNESS_MS} ms behind the largest event time) -> failing-map -> key_by(account) tumbling window of {} s, sum -> sink ({:?}); the map fails on record #{} of its first attempt\nconfig: backend {}, checkpoint every {} ms, restart {}, seed {}; values are amounts in cents, times event times in ms",
        WINDOW_MS / 1000, options.sink, options.fail_at, options.backend, options.interval_ms, options.restart, options.seed
    )
    .expect("writing to a String");
}

/// A window's start as an instant, or as milliseconds when it is none.
fn instant(start_ms: i64) -> String {
    jiff::Timestamp::from_millisecond(start_ms)
        .map_or_else(|_| format!("{start_ms} ms"), |t| t.to_string())
}

fn account_line(account: &WindowAccount, text: &mut String) {
    let records = match account.records {
        1 => "1 record ".to_string(),
        n => format!("{n} records"),
    };
    let results: Vec<String> = account.results.iter().map(i64::to_string).collect();
    let out = match (results.is_empty(), account.late) {
        (true, 0) => "nothing".to_string(),
        (false, 0) => format!("result {}", results.join(" + ")),
        (true, late) => format!("{late} late"),
        (false, late) => format!("result {} and {late} late", results.join(" + ")),
    };
    let verdict = if account.balanced() {
        "ok"
    } else {
        "DOES NOT ADD UP"
    };
    writeln!(
        text,
        "  {:<8} [{}, +{} s)  {records}, sum {:>7}  ->  {out}: {verdict}",
        account.key.to_string(),
        instant(account.start_ms),
        WINDOW_MS / 1000,
        account.input
    )
    .expect("writing to a String");
}

/// The ledger the judgement keeps, one line a window, and what it adds up to.
fn ledger(job: &JobSpec, records: &[InputRecord], report: &CaseReport, text: &mut String) {
    let input = crate::job::Input::partitioned(records, 1);
    let model = model::evaluate(job, &input, &input.end_positions());
    let visible = report.outcome.store.visible();
    let WindowLedger {
        accounts,
        phantoms,
        results,
        late,
        ..
    } = window_ledger(job, &model.outputs, visible).unwrap_or_default();
    writeln!(
        text,
        "windows: the records the model puts in each, against what the sink committed for it"
    )
    .expect("writing to a String");
    for account in &accounts {
        account_line(account, text);
    }
    for (key, start_ms, record) in &phantoms {
        writeln!(
            text,
            "  {key} [{}]: {record} committed, but nothing fell in that window",
            instant(*start_ms)
        )
        .expect("writing to a String");
    }
    let balanced = accounts.iter().filter(|a| a.balanced()).count();
    writeln!(
        text,
        "summary: {} windows, {balanced} adding up; {results} results and {late} late record(s) committed; {} restore(s), {} checkpoints completed, simulated time {} ms",
        accounts.len(),
        report.outcome.restores.len(),
        report.outcome.stats.checkpoints_completed,
        report.outcome.stats.time_ms
    )
    .expect("writing to a String");
}

/// Runs the demo and renders its story.
pub fn run(options: &DemoOptions) -> Result<DemoReport, DemoError> {
    let (label, csv) = load_input(options)?;
    let mut text = String::new();
    header(options, &label, &csv, &mut text);
    writeln!(text).expect("writing to a String");
    let job = job(options);
    let dir = tempfile::tempdir().map_err(DemoError::TempDir)?;
    let report = run_case(scenario(&job, &csv.records, options), dir.path())?;
    for stamped in report.outcome.trace.events() {
        if told(stamped, options.full_trace) {
            writeln!(text, "  {stamped}").expect("writing to a String");
        }
    }
    write!(text, "{}", report.verdict).expect("writing to a String");
    ledger(&job, &csv.records, &report, &mut text);
    Ok(DemoReport {
        text,
        ok: report.verdict.passed(),
        simulated_ms: report.outcome.stats.time_ms,
    })
}
