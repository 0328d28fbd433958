//! The real process-kill mode. Each phase of a case runs in child processes of the same binary
//! (`faultline case-child`); a kill at a scheduler step really aborts the child (SIGABRT: no
//! unwinding, no flushing), after it wrote down the harness's own state (see
//! [`crate::engine::ResumeState`]). The parent starts the next child on the same directories,
//! which resumes exactly as a simulated kill would have — so a case's trace, and its hash, are
//! the same in both modes, rescaled cases included.
//!
//! What must survive a kill is made durable as it happens: checkpoint files (atomic writes),
//! the external store (written through on every operation), and the events (streamed as JSON
//! lines, one child's file after another's). A phase after a rescale starts in a fresh child
//! that takes over the fault plan's state where the phase before left it.
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

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::case::{next_phase, Walked};
use super::panic::{self, Panic};
use super::scenario::Phase;
use super::{CaseError, Scenario};
use crate::checkpoint::{Durability, FsCheckpointStorage};
use crate::engine::{PhaseEnd, ResumeState, Runtime};
use crate::fault::{FaultPlan, FaultSchedule};
use crate::job::ExternalStore;
use crate::trace::{Stamped, Trace};

/// Children a phase may take (each real kill starts one more) before the parent gives up.
const CHILDREN_MAX: u32 = 64;

/// How a child that did not die ended.
#[derive(Debug, Serialize, Deserialize)]
enum ChildEnd {
    /// Its phase ended; the fault plan's state goes to the next phase.
    Ended {
        end: Box<PhaseEnd>,
        plan: Option<serde_json::Value>,
    },
    /// A panic inside it.
    Panicked(Panic),
}

/// Where one child of a case keeps what it leaves behind.
struct ChildFiles {
    dir: PathBuf,
    phase: usize,
    generation: u32,
}

impl ChildFiles {
    fn events(&self) -> PathBuf {
        self.dir
            .join(format!("events-{}-{}.jsonl", self.phase, self.generation))
    }

    /// The state this child leaves if it is killed.
    fn kill_state(&self) -> PathBuf {
        self.dir
            .join(format!("kill-{}-{}.json", self.phase, self.generation))
    }

    /// The state the child killed before this one left.
    fn resume_from(&self) -> Option<PathBuf> {
        let before = self.generation.checked_sub(1)?;
        Some(self.dir.join(format!("kill-{}-{before}.json", self.phase)))
    }

    fn end(&self) -> PathBuf {
        self.dir.join(format!("end-{}.json", self.phase))
    }

    /// The fault plan's state a phase leaves to the next.
    fn plan(dir: &Path, phase: usize) -> PathBuf {
        dir.join(format!("plan-{phase}.json"))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CaseError + '_ {
    move |source| CaseError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The parent: runs `scenario`'s phases in child processes of `binary` in `dir`, each phase's
/// children one after another until one ends it, every child's events into `trace`, every
/// phase's end into `walked`. A panic in a child ends the case: it is returned.
pub(super) fn walk(
    scenario: &Scenario,
    dir: &Path,
    binary: &Path,
    trace: &mut Trace,
    walked: &mut Walked,
) -> Result<Option<Panic>, CaseError> {
    let scenario_file = dir.join("scenario.toml");
    std::fs::write(&scenario_file, scenario.to_toml()).map_err(io(&scenario_file))?;
    let phases = scenario.phases();
    while let Some(phase) = next_phase(&phases, &walked.ends) {
        let mut files = ChildFiles {
            dir: dir.to_path_buf(),
            phase: walked.ends.len(),
            generation: 0,
        };
        let ended = run_phase_children(binary, &scenario_file, &phase, &mut files, trace)?;
        walked.real_kills += files.generation;
        match ended {
            ChildEnd::Ended { end, plan } => {
                let path = ChildFiles::plan(dir, files.phase);
                let bytes = serde_json::to_vec(&plan).map_err(|source| CaseError::ChildFile {
                    path: path.clone(),
                    source,
                })?;
                std::fs::write(&path, bytes).map_err(io(&path))?;
                walked.ends.push(*end);
            }
            ChildEnd::Panicked(panic) => return Ok(Some(panic)),
        }
    }
    // `next_phase` always gives a first phase, so one ran.
    let last = walked
        .ends
        .last_mut()
        .expect("a case runs at least one phase");
    last.store = durable_store(dir)?;
    Ok(None)
}

/// Runs children of one phase until one ends it: each killed for real is followed by the next
/// generation, resuming where it died. `files.generation` ends as the number killed.
fn run_phase_children(
    binary: &Path,
    scenario_file: &Path,
    phase: &Phase,
    files: &mut ChildFiles,
    trace: &mut Trace,
) -> Result<ChildEnd, CaseError> {
    loop {
        let status = run_child(binary, scenario_file, files, phase)?;
        read_events(&files.events(), trace)?;
        if status.success() {
            return read_end(files);
        }
        if !files.kill_state().exists() {
            return Err(CaseError::ChildDied {
                phase: files.phase,
                status: status.to_string(),
                stderr: String::new(),
            });
        }
        files.generation += 1;
        if files.generation >= CHILDREN_MAX {
            return Err(CaseError::ChildrenExhausted {
                phase: files.phase,
                children: CHILDREN_MAX,
            });
        }
    }
}

/// Runs one child to its end (or its death by a real kill) and returns how it exited.
fn run_child(
    binary: &Path,
    scenario_file: &Path,
    files: &ChildFiles,
    phase: &Phase,
) -> Result<std::process::ExitStatus, CaseError> {
    let output = Command::new(binary)
        .arg("case-child")
        .arg(scenario_file)
        .arg("--dir")
        .arg(&files.dir)
        .arg("--phase")
        .arg(files.phase.to_string())
        .arg("--generation")
        .arg(files.generation.to_string())
        .arg("--first-attempt")
        .arg(phase.config.first_attempt.to_string())
        .arg("--start-ms")
        .arg(phase.config.start_ms.to_string())
        .output()
        .map_err(io(binary))?;
    if !output.status.success() && !killed_by_abort(&output.status) {
        return Err(CaseError::ChildDied {
            phase: files.phase,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(output.status)
}

fn read_end(files: &ChildFiles) -> Result<ChildEnd, CaseError> {
    let path = files.end();
    let bytes = std::fs::read(&path).map_err(io(&path))?;
    serde_json::from_slice(&bytes).map_err(|source| CaseError::ChildFile { path, source })
}

/// Reads a child's streamed events into `trace`. Each line is written whole before the next
/// event, so only the last line may be torn (the child died writing it); any other line that
/// does not parse is an error, never a quietly shorter trace.
fn read_events(path: &Path, trace: &mut Trace) -> Result<(), CaseError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        match serde_json::from_str::<Stamped>(line) {
            Ok(stamped) => trace.push(stamped),
            Err(_) if lines.peek().is_none() => break,
            Err(source) => {
                return Err(CaseError::ChildFile {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// The case's external system, as the children left it.
fn durable_store(dir: &Path) -> Result<ExternalStore, CaseError> {
    let store = ExternalStore::durable(&dir.join("store.json"))?;
    Ok(store.with_dir(dir.join("external")))
}

/// The child: runs phase `phase` of the scenario in `scenario_file`, in `dir`, as child
/// `generation` of that phase (above 0: resuming where the one killed before it left off), from
/// attempt `first_attempt` at `start_ms`. Called by `faultline case-child`.
pub fn child_main(
    scenario_file: &Path,
    dir: &Path,
    phase: usize,
    generation: u32,
    first_attempt: u32,
    start_ms: u64,
) -> Result<(), CaseError> {
    let scenario = Scenario::load(scenario_file)?;
    let files = ChildFiles {
        dir: dir.to_path_buf(),
        phase,
        generation,
    };
    let end = match panic::catch(|| run_phase(&scenario, &files, first_attempt, start_ms)) {
        Ok(ended) => ended?,
        Err(panic) => ChildEnd::Panicked(panic),
    };
    let path = files.end();
    let bytes = serde_json::to_vec(&end).map_err(|source| CaseError::ChildFile {
        path: path.clone(),
        source,
    })?;
    std::fs::write(&path, bytes).map_err(io(&path))
}

/// Runs the child's part of its phase, and the fault plan's state at its end.
fn run_phase(
    scenario: &Scenario,
    files: &ChildFiles,
    first_attempt: u32,
    start_ms: u64,
) -> Result<ChildEnd, CaseError> {
    let input = scenario.input()?;
    let backends = scenario.backend.factory()?;
    let mut phase = scenario
        .phases()
        .into_iter()
        .nth(files.phase)
        .ok_or(CaseError::NoSuchPhase { phase: files.phase })?;
    phase.config.first_attempt = first_attempt;
    phase.config.start_ms = start_ms;
    let mut faults = FaultSchedule::with_seed(scenario.faults.clone(), scenario.seed);
    if files.generation == 0 && files.phase > 0 {
        let path = ChildFiles::plan(&files.dir, files.phase - 1);
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let state: Option<serde_json::Value> =
            serde_json::from_slice(&bytes).map_err(|source| CaseError::ChildFile {
                path: path.clone(),
                source,
            })?;
        if let Some(state) = state {
            faults
                .load(state)
                .map_err(|source| CaseError::ChildFile { path, source })?;
        }
    }
    let mut storage =
        FsCheckpointStorage::new(files.dir.join("checkpoints"), Durability::PageCache)?;
    let log = std::fs::File::create(files.events()).map_err(io(&files.events()))?;
    let runtime = Runtime::new(
        &phase.job,
        &input,
        phase.config,
        backends.as_ref(),
        &mut storage,
        &mut faults,
        &files.dir.join("work"),
    )?
    .with_store(durable_store(&files.dir)?)
    .with_event_log(log)
    .with_real_kills(&files.kill_state());
    let runtime = match files.resume_from() {
        Some(path) => runtime.resuming(ResumeState::read(&path)?)?,
        None => runtime,
    };
    // The events went to the log as they happened; the parent reads them from there.
    let mut trace = Trace::new();
    let end = runtime.run_into(&mut trace)?;
    Ok(ChildEnd::Ended {
        end: Box::new(end),
        plan: faults.save(),
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Event;

    fn line(step: u64) -> String {
        let stamped = Stamped {
            step,
            time_ms: step,
            event: Event::NotifyAgain { checkpoint: step },
        };
        serde_json::to_string(&stamped).unwrap()
    }

    #[test]
    fn only_a_torn_last_line_of_a_child_s_events_is_passed_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let torn_last = format!("{}\n{}\n{{\"step\":3,\"ti", line(1), line(2));
        std::fs::write(&path, torn_last).unwrap();
        let mut trace = Trace::new();
        read_events(&path, &mut trace).unwrap();
        assert_eq!(trace.events().len(), 2);

        let torn_middle = format!("{}\n{{\"step\":2\n{}\n", line(1), line(3));
        std::fs::write(&path, torn_middle).unwrap();
        let error = read_events(&path, &mut Trace::new()).unwrap_err();
        assert!(matches!(error, CaseError::ChildFile { .. }), "{error}");
    }
}
