//! `faultline savepoint take|resume`: Flink's stop-with-savepoint and restore-from-savepoint, on
//! the stateful demo's job (a keyed running sum per account, without the failing map).
//!
//! `take` runs the job until the requested time, stops it with a savepoint, and moves the
//! savepoint out of the checkpoint root to `--out`, so every savepoint used here has been
//! relocated. `resume` starts a new run from it — with any backend for a canonical savepoint,
//! at any parallelism — and checks the restored state against the model at the savepoint's
//! source positions, then the run to the end.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::demo::{self, load_input, DemoError, DemoOptions};
use crate::campaign::CaseReport;
use crate::checkpoint::inspect;
use crate::checkpoint::SavepointRequest;
use crate::engine::JobStatus;
use crate::job::{
    JobSpec, OperatorSpec, RestartStrategy, SinkKind, SinkSpec, SourceSpec, StageSpec,
};
use crate::state::SavepointFormat;
use crate::trace::Event;

/// The job: source -> key_by(account) sum -> print sink, the sum at `parallelism`.
pub fn savepoint_job(parallelism: u16) -> JobSpec {
    JobSpec {
        name: "savepoint-sum".into(),
        max_parallelism: crate::job::keygroup::DEFAULT_MAX_PARALLELISM,
        source: SourceSpec {
            parallelism: 1,
            partitions: None,
            emit_ms: 0,
            watermarks: None,
        },
        stages: vec![StageSpec {
            name: "sum".into(),
            op: OperatorSpec::Sum,
            parallelism,
            processing_ms: 1000,
        }],
        sink: SinkSpec {
            kind: SinkKind::Print,
            parallelism: 1,
        },
    }
}

/// A savepoint flow failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SavepointError {
    /// Input or case failure.
    #[error(transparent)]
    Demo(#[from] DemoError),
    /// The output directory is unusable.
    #[error("{path}: {reason}")]
    Output {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The job did not stop with a savepoint.
    #[error("the job ended without its savepoint: {0}")]
    NotStopped(String),
}

fn story(report: &CaseReport, text: &mut String) {
    for stamped in report.outcome.trace.events() {
        let flow = stamped.event.is_flow() || matches!(stamped.event, Event::RecordWritten { .. });
        if !flow {
            writeln!(text, "  {stamped}").expect("writing to a String");
        }
    }
}

/// Runs the job until `at_ms`, stops it with a savepoint in `format`, and moves the savepoint to
/// `out` (which must not exist). Returns the story and the savepoint's inspection.
pub fn take(
    options: &DemoOptions,
    at_ms: u64,
    format: SavepointFormat,
    out: &Path,
) -> Result<String, SavepointError> {
    if out.exists() {
        return Err(SavepointError::Output {
            path: out.to_path_buf(),
            reason: "already exists; savepoints are never overwritten".into(),
        });
    }
    let (_, csv) = load_input(options)?;
    let mut scenario = demo::scenario(&savepoint_job(1), &csv.records, options);
    scenario.restart = RestartStrategy::None;
    scenario.savepoints = vec![SavepointRequest {
        at_ms,
        name: "savepoint".into(),
        format,
        stop: true,
    }];
    let dir = tempfile::tempdir().map_err(DemoError::TempDir)?;
    let report = demo::run_case(scenario, dir.path())?;
    let mut text = String::new();
    story(&report, &mut text);
    if !matches!(report.outcome.status, JobStatus::Stopped { .. }) {
        return Err(SavepointError::NotStopped(format!(
            "{:?}",
            report.outcome.status
        )));
    }
    let taken = dir
        .path()
        .join("checkpoints")
        .join("savepoints")
        .join("savepoint");
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| SavepointError::Output {
            path: parent.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    copy_dir(&taken, out).map_err(|e| SavepointError::Output {
        path: out.to_path_buf(),
        reason: e.to_string(),
    })?;
    let inspected = inspect::inspect(out).map_err(|e| SavepointError::Output {
        path: out.to_path_buf(),
        reason: e.to_string(),
    })?;
    writeln!(
        text,
        "\nsavepoint moved to {} (relocatable: it names files relative to itself)\n{inspected}",
        out.display()
    )
    .expect("writing to a String");
    Ok(text)
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    let mut entries: Vec<_> = std::fs::read_dir(from)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// Starts a run from the savepoint in `savepoint` with the sum at `parallelism` and runs it to
/// the end; returns the story with the verdict, and whether every property held.
pub fn resume(
    options: &DemoOptions,
    savepoint: &Path,
    parallelism: u16,
) -> Result<(String, bool), SavepointError> {
    let (_, csv) = load_input(options)?;
    let mut scenario = demo::scenario(&savepoint_job(parallelism), &csv.records, options);
    scenario.initial_snapshot = Some(savepoint.to_path_buf());
    let dir = tempfile::tempdir().map_err(DemoError::TempDir)?;
    let report = demo::run_case(scenario, dir.path())?;
    let mut text = String::new();
    story(&report, &mut text);
    write!(text, "{}", report.verdict).expect("writing to a String");
    Ok((text, report.verdict.passed()))
}
