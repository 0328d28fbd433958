//! Method: plug a deliberately broken state backend into the public `StateBackend` seam — it
//! forgets one key whenever it restores — and check that the oracle reports it, naming the
//! seed, the checkpoint, the key and both values; the same run on the correct backend passes.
//! Then a backend that checks its own files: naming the damaged checkpoint file, its restore
//! fails loudly as it must; naming its own local copy instead, it is caught.

use std::path::Path;

use crate::support::{config, delete_cells, kills, linear_job, TwistedFactory};
use faultline::check::{Property, Violation};
use faultline::checkpoint::CheckpointStorage;
use faultline::state::{
    BackendContext, MemoryBackend, RestoreHandle, RestoreMode, RestoreStats, SnapshotResult,
    SnapshotTarget, StateBackend, StateBackendFactory, StateError,
};

/// The memory backend, but key `k0`'s cells are dropped after every restore.
static FORGETFUL: TwistedFactory = TwistedFactory {
    name: "forgetful",
    // Keys are stored as their canonical text: the string `k0` in quotes.
    after_restore: |backend, _, _| delete_cells(backend, |entry| entry.key == br#""k0""#),
};

fn run_with(backends: &dyn StateBackendFactory, dir: &Path) -> faultline::campaign::CaseReport {
    let job = linear_job();
    let input = crate::support::input_for(&job, 60, 3, 17);
    crate::support::run_phase(
        &job,
        &input,
        &config(23, 10),
        backends,
        &mut kills(&[80]),
        dir,
        faultline::job::ExternalStore::new(),
    )
}

#[test]
fn the_oracle_names_a_backend_that_forgets_a_key_on_restore() {
    let dir = tempfile::tempdir().unwrap();
    let correct = run_with(
        &faultline::state::MemoryBackendFactory,
        &dir.path().join("correct"),
    );
    assert!(correct.verdict.passed(), "{}", correct.verdict);

    let broken = run_with(&FORGETFUL, &dir.path().join("broken"));
    let restore = &broken.outcome.restores[0];
    let checkpoint = restore
        .checkpoint_id
        .expect("a checkpoint completed before the kill");
    let forgotten = broken.verdict.violations.iter().find_map(|v| match v {
        Violation::RestoredState {
            checkpoint_id,
            addr,
            expected,
            actual,
            ..
        } => Some((
            *checkpoint_id,
            addr.clone(),
            expected.clone(),
            actual.clone(),
        )),
        _ => None,
    });
    let (checkpoint_id, addr, expected, actual) =
        forgotten.expect("the restored-state check fired");
    assert_eq!(checkpoint_id, Some(checkpoint));
    assert_eq!(
        (
            addr.stage.as_str(),
            addr.state.as_str(),
            addr.key.to_string()
        ),
        ("sum", "sum", "k0".to_string())
    );
    assert!(expected.is_some() && actual.is_none());
    let text = broken.verdict.to_string();
    assert!(
        text.contains("seed 23")
            && text.contains(&format!("chk-{checkpoint}"))
            && text.contains("sum.sum[k0] is absent, the model says"),
        "{text}"
    );
    assert!(
        broken
            .verdict
            .violations
            .iter()
            .any(|v| matches!(v, Violation::FinalState { .. })),
        "the loss also shows at the end"
    );
}

/// The memory backend, reporting damage it finds on restore as `StateError::DamagedFile`, as a
/// backend that checks its own files does: naming the checkpoint file, or (the broken twin)
/// naming its own local copy of it, as RocksDB's own errors do.
struct ReportsDamage {
    names_local_copy: bool,
}

impl StateBackendFactory for ReportsDamage {
    fn name(&self) -> &'static str {
        "reports-damage"
    }
    fn create(&self, context: BackendContext) -> Result<Box<dyn StateBackend>, StateError> {
        Ok(Box::new(DamageReporter {
            inner: MemoryBackend::new(context.task_name, context.key_groups),
            names_local_copy: self.names_local_copy,
        }))
    }
}

struct DamageReporter {
    inner: MemoryBackend,
    names_local_copy: bool,
}

impl StateBackend for DamageReporter {
    fn name(&self) -> &'static str {
        "reports-damage"
    }
    crate::support::delegate_cell_access!();
    fn snapshot(
        &mut self,
        target: &SnapshotTarget,
        storage: &mut dyn CheckpointStorage,
    ) -> Result<SnapshotResult, StateError> {
        self.inner.snapshot(target, storage)
    }
    fn restore(
        &mut self,
        handles: &[RestoreHandle],
        storage: &dyn CheckpointStorage,
        mode: RestoreMode,
    ) -> Result<RestoreStats, StateError> {
        self.inner.restore(handles, storage, mode).map_err(|error| {
            let Some(file) = error.file().map(str::to_string) else {
                return error;
            };
            let file = match file.rsplit_once('/') {
                Some((_, name)) if self.names_local_copy => format!("db-restored/{name}"),
                _ => file,
            };
            StateError::DamagedFile {
                file,
                reason: "the restored copy is damaged".into(),
            }
        })
    }
}

fn reporting_damage(names_local_copy: bool) -> faultline::campaign::ExploreReport {
    let factory = ReportsDamage { names_local_copy };
    let dir = tempfile::tempdir().unwrap();
    faultline::harness::Harness::new()
        .cases(150)
        .backend(&factory)
        .backend_verifies_files()
        .faults(&["corrupt", "panic", "kill"])
        .failures_dir(dir.path())
        .try_run()
        .unwrap()
}

#[test]
fn a_backend_naming_the_damaged_checkpoint_file_fails_loudly_and_one_naming_its_copy_does_not() {
    let named = reporting_damage(false);
    assert!(named.failures.is_empty(), "{}", named.summary());
    assert!(named.loud_failures > 0, "{}", named.summary());

    // The damage is the same; only the file the error names differs. A loud failure must name
    // the checkpoint's file, so this is the job failing for no reason the oracle accepts.
    let local = reporting_damage(true);
    let failure = local.failures.first().expect("caught");
    assert!(
        failure
            .violations
            .iter()
            .any(|v| v.property == Property::Liveness),
        "{:?}",
        failure.violations
    );
}
