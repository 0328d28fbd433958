//! Method: run a job — checkpoints every few milliseconds and a savepoint, on the memory and the
//! incremental RocksDB backend — once to count every file-system step of every storage write
//! (create, write, sync, rename, directory sync). Then, for every step and each fate of unsynced
//! data (lost, torn, kept), run it again with a simulated machine crash right after that step,
//! and restart it on what the crash left on disk. The restart must restore the newest snapshot
//! whose `_metadata` was durable before the crash or the one being written (the previous or the
//! new one, never an older one or a half-written one), the restored state must equal the model
//! at the restored source positions, and the finished job's output must be exactly once.

use std::path::Path;

use crate::support::{config, fan_in_job, input_for, linear_job};
use faultline::check;
use faultline::checkpoint::SavepointRequest;
use faultline::checkpoint::{
    CrashPlan, Durability, FsCheckpointStorage, RelPath, Unsynced, WriteStep,
};
use faultline::engine::{RunConfig, RunOutcome, Runtime};
use faultline::fault::NoFaults;
use faultline::job::{ExternalStore, Input, JobSpec};
use faultline::state::{BackendKind, SavepointFormat};

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

    /// One process lifetime on `dir`: from the start, or (with `after`) restarted after it.
    fn run(
        &self,
        dir: &Path,
        crash: CrashPlan,
        after: Option<&RunOutcome>,
    ) -> (RunOutcome, FsCheckpointStorage) {
        let mut storage = FsCheckpointStorage::new(dir.join("checkpoints"), Durability::PageCache)
            .unwrap()
            .with_crash(crash);
        let mut config = self.config.clone();
        let mut store = ExternalStore::new();
        if let Some(before) = after {
            config.first_attempt = before.stats.attempts;
            config.start_ms = before.stats.time_ms;
            store = before.store.clone();
        }
        let factory = self.backend.factory().unwrap();
        let mut faults = NoFaults;
        let outcome = Runtime::new(
            &self.job,
            &self.input,
            config,
            factory.as_ref(),
            &mut storage,
            &mut faults,
            &dir.join("work"),
        )
        .unwrap()
        .with_store(store)
        .run()
        .expect("the run ends with an outcome");
        (outcome, storage)
    }
}

const NEVER: CrashPlan = CrashPlan {
    after_step: u64::MAX,
    unsynced: Unsynced::Kept,
};

/// Crashes after each step `pick` selects, with each fate in `fates`, and checks the restart;
/// returns the steps of a run and the crashes tried.
fn crash_at_steps(
    backend: BackendKind,
    fates: &[Unsynced],
    pick: impl Fn(u64, &WriteStep, &RelPath) -> bool,
) -> (u64, u64) {
    let case = Case::new(backend);
    let baseline = tempfile::tempdir().unwrap();
    let (outcome, storage) = case.run(baseline.path(), NEVER, None);
    let log = storage.step_log().to_vec();
    assert!(
        outcome.stats.checkpoints_completed >= 2 && log.len() > 50,
        "{backend}: {} steps, {:?}",
        log.len(),
        outcome.stats
    );
    assert!(
        log.iter()
            .any(|(_, path)| path.as_str() == "savepoints/sp/_metadata"),
        "the savepoint is written"
    );
    let mut crashes = 0;
    // The newest snapshot whose `_metadata` was durable (renamed, directory synced) before the
    // current step: learnt from the restarts, as ids are the engine's business.
    let mut durable: Option<u64> = None;
    for (index, (step, path)) in log.iter().enumerate() {
        let after_step = index as u64 + 1;
        let metadata = path.as_str().ends_with("/_metadata");
        // A `_metadata` made durable moves the expectation on, so it is always tried.
        let makes_durable = metadata && *step == WriteStep::SyncDir;
        if !(makes_durable || pick(after_step, step, path)) {
            continue;
        }
        let mut newly_durable = None;
        for &unsynced in fates {
            let dir = tempfile::tempdir().unwrap();
            let plan = CrashPlan {
                after_step,
                unsynced,
            };
            let (crashed, storage) = case.run(dir.path(), plan, None);
            let crash = storage
                .crashed()
                .unwrap_or_else(|| panic!("{backend}: step {after_step} never came"))
                .to_string();
            assert!(crash.contains(path.as_str()), "{crash} is not at {path}");
            let (restarted, _) = case.run(dir.path(), NEVER, Some(&crashed));
            crashes += 1;
            let verdict = check::check_run(
                &case.job,
                &case.input,
                case.config.checkpoint.mode,
                case.config.seed,
                &restarted,
            );
            assert!(
                verdict.passed(),
                "{backend}, crash {crash}:\n{verdict}\n{}",
                restarted.trace.render()
            );
            let restored = restarted
                .restores
                .first()
                .unwrap_or_else(|| panic!("{backend}, crash {crash}: the restart restores"))
                .checkpoint_id;
            // A new `_metadata` counts once its rename is on disk: synced, or kept by luck.
            let new_is_complete = metadata
                && (*step == WriteStep::SyncDir
                    || *step == WriteStep::Rename && unsynced == Unsynced::Kept);
            if new_is_complete {
                assert!(
                    restored.is_some() && restored > durable,
                    "{backend}, crash {crash}: restored {restored:?}, not the new snapshot (previous {durable:?})"
                );
            } else {
                assert_eq!(
                    restored, durable,
                    "{backend}, crash {crash}: not the previous snapshot"
                );
            }
            if metadata && *step == WriteStep::SyncDir {
                newly_durable = restored;
            }
        }
        durable = newly_durable.or(durable);
    }
    (log.len() as u64, crashes)
}

#[test]
fn a_crash_at_any_write_step_restores_the_previous_or_the_new_snapshot_memory() {
    let fates = [Unsynced::Lost, Unsynced::Torn, Unsynced::Kept];
    let (steps, crashes) = crash_at_steps(BackendKind::Memory, &fates, |_, _, _| true);
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
        |n, _, path| path.as_str().ends_with("_metadata") || n % 11 == 0,
    );
    assert!(crashes >= steps / 11, "{crashes} crashes of {steps} steps");
}
