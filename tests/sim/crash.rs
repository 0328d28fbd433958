//! Method: run a job — checkpoints every few milliseconds and a savepoint, on the memory and the
//! incremental RocksDB backend — once to learn every storage write (five file-system steps
//! each: create, write, sync, rename, directory sync). Then, for every step and each fate of
//! unsynced data (lost, torn, kept), run it again with a `crash` fault right after that step —
//! the campaigns' own fault, through the same fault-injecting storage — and let it restart on
//! what the crash left on disk. The restart must restore the newest snapshot
//! whose `_metadata` was durable before the crash or the one being written (the previous or the
//! new one, never an older one or a half-written one), the restored state must equal the model
//! at the restored source positions, and the finished job's output must be exactly once.

use crate::support::{config, fan_in_job, input_for, linear_job};
use faultline::check;
use faultline::checkpoint::{Durability, FsCheckpointStorage, SavepointRequest, WriteStep};
use faultline::engine::{RunConfig, RunOutcome, Runtime};
use faultline::fault::{Fault, FaultKind, FaultSchedule, Unsynced};
use faultline::job::{Input, JobSpec};
use faultline::state::{BackendKind, SavepointFormat};
use faultline::trace::{Event, FailureCause};

struct Case {
    backend: BackendKind,
    job: JobSpec,
    input: Input,
    config: RunConfig,
}

impl Case {
    fn new(backend: BackendKind) -> Self {
        let job = if backend == BackendKind::Memory {
            linear_job()
        } else {
            fan_in_job()
        };
        let input = input_for(&job, 24, 4, 3);
        let mut config = config(3, 6);
        config.savepoints.push(SavepointRequest {
            at_ms: 14,
            name: "sp".into(),
            format: SavepointFormat::Canonical,
            stop: false,
        });
        Self {
            backend,
            job,
            input,
            config,
        }
    }

    /// The whole run with `faults`, in a fresh directory.
    fn run(&self, faults: Vec<Fault>) -> RunOutcome {
        let dir = tempfile::tempdir().unwrap();
        let mut storage =
            FsCheckpointStorage::new(dir.path().join("checkpoints"), Durability::PageCache)
                .unwrap();
        let factory = self.backend.factory().unwrap();
        let mut faults = FaultSchedule::with_seed(faults, self.config.seed);
        Runtime::new(
            &self.job,
            &self.input,
            self.config.clone(),
            factory.as_ref(),
            &mut storage,
            &mut faults,
            &dir.path().join("work"),
        )
        .unwrap()
        .run()
        .expect("the run ends with an outcome")
    }
}

/// The files a run stored, in order: each write is five steps of the run's step count.
fn stored(outcome: &RunOutcome) -> Vec<String> {
    outcome
        .trace
        .events()
        .iter()
        .filter_map(|stamped| match &stamped.event {
            Event::Stored { path } => Some(path.clone()),
            _ => None,
        })
        .collect()
}

/// Crashes after each step `pick` selects, with each fate in `fates`, and checks the restart;
/// returns the steps of a run and the crashes tried.
fn crash_at_steps(
    backend: BackendKind,
    fates: &[Unsynced],
    pick: impl Fn(u64, WriteStep, &str) -> bool,
) -> (u64, u64) {
    let case = Case::new(backend);
    let baseline = case.run(Vec::new());
    let writes = stored(&baseline);
    assert!(
        baseline.stats.checkpoints_completed >= 2 && writes.len() > 10,
        "{backend}: {} writes, {:?}",
        writes.len(),
        baseline.stats
    );
    assert!(
        writes.iter().any(|path| path == "savepoints/sp/_metadata"),
        "the savepoint is written"
    );
    let mut crashes = 0;
    // The newest snapshot whose `_metadata` was durable (renamed, directory synced) before the
    // current step: learnt from the restarts, as ids are the engine's business.
    let mut durable: Option<u64> = None;
    for (index, path) in writes.iter().enumerate() {
        for (k, &step) in WriteStep::ALL.iter().enumerate() {
            let after_step = (index * WriteStep::ALL.len() + k + 1) as u64;
            let metadata = path.ends_with("/_metadata");
            // A `_metadata` made durable moves the expectation on, so it is always tried.
            let makes_durable = metadata && step == WriteStep::SyncDir;
            if !(makes_durable || pick(after_step, step, path)) {
                continue;
            }
            let mut newly_durable = None;
            for &unsynced in fates {
                let restored = crash_and_restart(&case, index, after_step, unsynced);
                crashes += 1;
                // A new `_metadata` counts once its rename is on disk: synced, or kept by luck.
                let new_is_complete = metadata
                    && (step == WriteStep::SyncDir
                        || step == WriteStep::Rename && unsynced == Unsynced::Kept);
                let crash = format!("{backend}, crash after {step:?} of {path}, {unsynced:?}");
                if new_is_complete {
                    assert!(
                        restored.is_some() && restored > durable,
                        "{crash}: restored {restored:?}, not the new snapshot (previous {durable:?})"
                    );
                } else {
                    assert_eq!(restored, durable, "{crash}: not the previous snapshot");
                }
                if makes_durable {
                    newly_durable = restored;
                }
            }
            durable = newly_durable.or(durable);
        }
    }
    ((writes.len() * WriteStep::ALL.len()) as u64, crashes)
}

/// Runs `case` with a machine crash right after `after_step`, in the write of the `index`-th
/// file; checks that the crash came there and that the run recovers, passing the oracle;
/// returns the checkpoint the restart restored.
fn crash_and_restart(
    case: &Case,
    index: usize,
    after_step: u64,
    unsynced: Unsynced,
) -> Option<u64> {
    let outcome = case.run(vec![Fault::Crash {
        after_step,
        unsynced,
    }]);
    let crashed_at = outcome
        .trace
        .events()
        .iter()
        .position(|stamped| {
            matches!(
                stamped.event,
                Event::Failure {
                    cause: FailureCause::Injected {
                        fault: FaultKind::Crash,
                        ..
                    },
                    ..
                }
            )
        })
        .unwrap_or_else(|| panic!("step {after_step} never came"));
    let before = outcome.trace.events()[..crashed_at]
        .iter()
        .filter(|stamped| matches!(stamped.event, Event::Stored { .. }))
        .count();
    assert_eq!(
        before, index,
        "step {after_step} crashed the write of file {index}"
    );
    let verdict = check::check_phase(&case.job, &case.input, &case.config, &outcome);
    assert!(
        verdict.passed(),
        "crash after step {after_step}, {unsynced:?}:\n{verdict}\n{}",
        outcome.trace.render()
    );
    outcome
        .restores
        .iter()
        .find(|restore| restore.attempt > 0)
        .unwrap_or_else(|| panic!("crash after step {after_step}: the restart restores"))
        .checkpoint_id
}

#[test]
fn a_crash_at_any_write_step_restores_the_previous_or_the_new_snapshot_memory() {
    let (steps, crashes) = crash_at_steps(BackendKind::Memory, &Unsynced::ALL, |_, _, _| true);
    assert_eq!(crashes, steps * 3, "every step, every fate");
}

/// A RocksDB run is slower and writes more files (the memory test covers every step and fate
/// of the storage protocol): every step of every `_metadata` write and every eleventh step of
/// the rest, with unsynced data torn.
#[cfg(feature = "rocksdb")]
#[test]
fn a_crash_at_write_steps_restores_the_previous_or_the_new_snapshot_rocksdb() {
    let (steps, crashes) = crash_at_steps(
        BackendKind::RocksDbIncremental,
        &[Unsynced::Torn],
        |n, _, path| path.ends_with("_metadata") || n % 11 == 0,
    );
    assert!(crashes >= steps / 11, "{crashes} crashes of {steps} steps");
}
