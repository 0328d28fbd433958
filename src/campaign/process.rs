//! The real process-kill mode. A case runs in a child process of the same binary
//! (`faultline case-child`), which aborts itself — `std::process::abort`, a real SIGABRT, no
//! unwinding, no flushing — at a seeded scheduler step. The parent restarts it on the same
//! directories with the next attempt number and the virtual time the dead process reached; the
//! restarted child restores from checkpoint storage exactly as after a simulated kill.
//!
//! What must survive the kill is made durable as it happens: checkpoint files (atomic writes),
//! the external store (written through on every operation), and the trace and restores (streamed
//! as JSON lines). In this mode the scenario's first step-kill fault becomes the real abort; its
//! other faults run as usual inside the children.
//!
//! ```no_run
//! use faultline::campaign::{explore, ExploreConfig, KillMode};
//!
//! // Each case in child processes of the faultline binary, really aborted at seeded steps.
//! let mut config = ExploreConfig::default();
//! config.cases = 100;
//! config.kill_mode = KillMode::Process { binary: "target/release/faultline".into() };
//! let report = explore(&config, None, &|_, _| {})?;
//! assert!(report.failures.is_empty());
//! # Ok::<(), faultline::campaign::ExploreError>(())
//! ```

use std::io::BufRead;
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::{CaseError, CaseReport, Scenario};
use crate::check;
use crate::checkpoint::{Durability, FsCheckpointStorage};
use crate::engine::{PhaseEnd, RunOutcome, Runtime};
use crate::fault::{
    Corruption, Effect, Fault, FaultAction, FaultKind, FaultPlan, FaultPoint, FaultSchedule,
    FaultSite, NotifyFate,
};
use crate::job::ExternalStore;
use crate::trace::{Event, FailureCause, Stamped, Trace};

/// Restarts after real kills before the parent gives up on a case.
const PROCESS_RESTARTS_MAX: u32 = 8;

/// What a child that ran to the end reports (its events were streamed).
#[derive(Debug, Serialize, Deserialize)]
struct ChildOutcome {
    end: PhaseEnd,
    fired: Vec<(FaultKind, FaultSite)>,
}

/// Aborts the process at one scheduler step; every other fault point goes to `inner`.
struct AbortAt {
    inner: FaultSchedule,
    step: Option<u64>,
}

impl FaultPlan for AbortAt {
    fn at(&mut self, point: &FaultPoint<'_>) -> Option<FaultAction> {
        if let (FaultPoint::Step { step }, Some(at)) = (point, self.step) {
            if *step == at {
                // The real thing: no unwinding, no destructors, no flush.
                std::process::abort();
            }
        }
        self.inner.at(point)
    }

    fn notification(&mut self, checkpoint: u64, task: &str) -> NotifyFate {
        self.inner.notification(checkpoint, task)
    }

    fn corrupt(
        &mut self,
        storage: &mut dyn crate::checkpoint::CheckpointStorage,
        attempt: u32,
    ) -> Vec<Corruption> {
        self.inner.corrupt(storage, attempt)
    }

    fn draw(&mut self, bound: u64) -> u64 {
        self.inner.draw(bound)
    }
}

/// The step at which the first child aborts, and the scenario's other faults.
fn split_faults(scenario: &Scenario) -> (Option<u64>, Vec<Fault>) {
    let mut abort = None;
    let mut others = Vec::new();
    for fault in &scenario.faults {
        match fault {
            Fault::Kill { step } if abort.is_none() => abort = Some(*step),
            other => others.push(other.clone()),
        }
    }
    (abort, others)
}

/// The child: runs `scenario` in `dir` from `first_attempt` at `start_ms`, aborting at
/// `abort_at_step` if given. Called by `faultline case-child`.
pub fn child_main(
    scenario: &Scenario,
    dir: &Path,
    first_attempt: u32,
    start_ms: u64,
    abort_at_step: Option<u64>,
) -> Result<(), CaseError> {
    let scenario_error = |e: String| CaseError::Scenario(e);
    let input = scenario
        .input()
        .map_err(|e| scenario_error(e.to_string()))?;
    let backends = scenario.backend.factory().map_err(scenario_error)?;
    let (_, others) = split_faults(scenario);
    let mut faults = AbortAt {
        inner: FaultSchedule::with_seed(others, scenario.seed),
        step: abort_at_step,
    };
    let mut config = scenario.run_config();
    config.first_attempt = first_attempt;
    config.start_ms = start_ms;
    let store = ExternalStore::durable(&dir.join("store.json")).map_err(scenario_error)?;
    let log = std::fs::File::create(dir.join(format!("events-{first_attempt}.jsonl")))
        .map_err(|e| scenario_error(e.to_string()))?;
    let mut storage = FsCheckpointStorage::new(dir.join("checkpoints"), Durability::PageCache)?;
    let work = dir.join(format!("work-{first_attempt}"));
    let outcome = Runtime::new(
        &scenario.job,
        &input,
        config,
        backends.as_ref(),
        &mut storage,
        &mut faults,
        &work,
    )?
    .with_store(store)
    .with_event_log(log)
    .run()?;
    let child = ChildOutcome {
        end: PhaseEnd {
            status: outcome.status,
            final_state: outcome.final_state,
            final_state_error: outcome.final_state_error,
            store: ExternalStore::new(),
            stats: outcome.stats,
            retained_checkpoints: outcome.retained_checkpoints,
            savepoints: outcome.savepoints,
            end_positions: outcome.end_positions,
        },
        fired: faults.inner.fired().to_vec(),
    };
    let json = serde_json::to_vec(&child).map_err(|e| scenario_error(e.to_string()))?;
    std::fs::write(dir.join(format!("outcome-{first_attempt}.json")), json)
        .map_err(|e| scenario_error(e.to_string()))?;
    Ok(())
}

/// Reads a child's streamed events into `trace`.
fn read_events(path: &Path, trace: &mut Trace) -> Result<(), CaseError> {
    let file = std::fs::File::open(path)
        .map_err(|e| CaseError::Scenario(format!("{}: {e}", path.display())))?;
    for line in std::io::BufReader::new(file).lines() {
        let line = line.map_err(|e| CaseError::Scenario(e.to_string()))?;
        // The last line may be torn by the abort; everything before it is whole.
        let Ok(stamped) = serde_json::from_str::<Stamped>(&line) else {
            break;
        };
        trace.push(stamped);
    }
    Ok(())
}

/// The parent: runs `scenario` in child processes of `binary` in `dir`, restarting them after
/// each real abort, then judges the whole case.
pub fn run_with_process_kills(
    scenario: &Scenario,
    dir: &Path,
    binary: &Path,
) -> Result<(CaseReport, Vec<(FaultKind, FaultSite)>), CaseError> {
    let (mut abort_at, _) = split_faults(scenario);
    let scenario_file = dir.join("scenario.toml");
    std::fs::write(&scenario_file, scenario.to_toml())
        .map_err(|e| CaseError::Scenario(e.to_string()))?;
    let mut trace = Trace::new();
    let mut kills = 0;
    let mut fired = Vec::new();
    let (mut attempt, mut start_ms) = (0u32, 0u64);
    let child = loop {
        let mut command = Command::new(binary);
        command
            .arg("case-child")
            .arg(&scenario_file)
            .arg("--dir")
            .arg(dir)
            .arg("--first-attempt")
            .arg(attempt.to_string())
            .arg("--start-ms")
            .arg(start_ms.to_string());
        if let Some(step) = abort_at {
            command.arg("--abort-at-step").arg(step.to_string());
        }
        let output = command
            .output()
            .map_err(|e| CaseError::Scenario(format!("{}: {e}", binary.display())))?;
        let before = trace.events().len();
        read_events(&dir.join(format!("events-{attempt}.jsonl")), &mut trace)?;
        if output.status.success() {
            let path = dir.join(format!("outcome-{attempt}.json"));
            let bytes = std::fs::read(&path)
                .map_err(|e| CaseError::Scenario(format!("{}: {e}", path.display())))?;
            break serde_json::from_slice::<ChildOutcome>(&bytes)
                .map_err(|e| CaseError::Scenario(e.to_string()))?;
        }
        let aborted = abort_at.is_some() && killed_by_abort(&output.status);
        if !aborted || kills >= PROCESS_RESTARTS_MAX {
            return Err(CaseError::Scenario(format!(
                "child process failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        let last = trace
            .events()
            .get(before..)
            .and_then(|events| events.last())
            .cloned();
        let (step, time_ms) = last.as_ref().map_or((0, start_ms), |e| (e.step, e.time_ms));
        // The attempts the dead child reached.
        let reached = trace.events()[before..]
            .iter()
            .filter_map(|stamped| match stamped.event {
                Event::AttemptStarted { attempt, .. } => Some(attempt),
                _ => None,
            })
            .max()
            .unwrap_or(attempt);
        let detail = format!(
            "process aborted at step {} (real SIGABRT, exit {}); restarted on the same directories",
            abort_at.unwrap_or(0),
            output.status
        );
        trace.record(
            step,
            time_ms,
            Event::Failure {
                attempt: reached,
                task: "process".into(),
                cause: FailureCause::Injected {
                    fault: FaultKind::Kill,
                    site: FaultSite::Step,
                    effect: Effect::Kill,
                    detail,
                },
            },
        );
        kills += 1;
        fired.push((FaultKind::Kill, FaultSite::Step));
        attempt = reached + 1;
        start_ms = time_ms;
        abort_at = None;
    };
    fired.extend(child.fired);
    let mut end = child.end;
    end.store = ExternalStore::durable(&dir.join("store.json")).map_err(CaseError::Scenario)?;
    let trace_hash = trace.hash();
    let input = scenario
        .input()
        .map_err(|e| CaseError::Scenario(e.to_string()))?;
    let outcome = RunOutcome::from_trace(trace, end, input.partitions().len());
    let verdict = check::check_run(
        &scenario.job,
        &input,
        scenario.checkpoint.mode,
        scenario.seed,
        &outcome,
    );
    Ok((
        CaseReport {
            outcome,
            verdict,
            trace_hash,
        },
        fired,
    ))
}

#[cfg(unix)]
fn killed_by_abort(status: &std::process::ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(6)
}

#[cfg(not(unix))]
fn killed_by_abort(status: &std::process::ExitStatus) -> bool {
    !status.success()
}
