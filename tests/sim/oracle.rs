//! Method: plug a deliberately broken state backend into the public `StateBackend` seam — it
//! forgets one key whenever it restores — and check that the oracle reports it, naming the
//! seed, the checkpoint, the key and both values; the same run on the correct backend passes.

use std::path::Path;

use crate::support::{config, kills, linear_job};
use faultline::campaign::run_case;
use faultline::check::Violation;
use faultline::checkpoint::CheckpointStorage;
use faultline::state::{
    BackendContext, CellRef, KeyGroupRange, MemoryBackend, RestoreHandle, RestoreMode,
    RestoreStats, SnapshotResult, SnapshotTarget, StateBackend, StateBackendFactory,
    StateDescriptor, StateEntry, StateError, StateId, UserEntries,
};

/// Delegates to the memory backend, but drops key `k0`'s cells after every restore.
struct ForgetfulBackend(MemoryBackend);

impl StateBackend for ForgetfulBackend {
    fn name(&self) -> &'static str {
        "forgetful"
    }
    fn key_groups(&self) -> KeyGroupRange {
        self.0.key_groups()
    }
    fn register_state(&mut self, descriptor: &StateDescriptor) -> Result<StateId, StateError> {
        self.0.register_state(descriptor)
    }
    fn states(&self) -> &[StateDescriptor] {
        self.0.states()
    }
    fn get(&self, cell: CellRef<'_>) -> Result<Option<Vec<u8>>, StateError> {
        self.0.get(cell)
    }
    fn put(&mut self, cell: CellRef<'_>, value: &[u8]) -> Result<(), StateError> {
        self.0.put(cell, value)
    }
    fn delete(&mut self, cell: CellRef<'_>) -> Result<(), StateError> {
        self.0.delete(cell)
    }
    fn user_entries(
        &self,
        state: StateId,
        key_group: u16,
        key: &[u8],
    ) -> Result<UserEntries, StateError> {
        self.0.user_entries(state, key_group, key)
    }
    fn entries(&self) -> Result<Vec<StateEntry>, StateError> {
        self.0.entries()
    }
    fn snapshot(
        &mut self,
        target: &SnapshotTarget,
        storage: &mut dyn CheckpointStorage,
    ) -> Result<SnapshotResult, StateError> {
        self.0.snapshot(target, storage)
    }
    fn restore(
        &mut self,
        handles: &[RestoreHandle],
        storage: &dyn CheckpointStorage,
        mode: RestoreMode,
    ) -> Result<RestoreStats, StateError> {
        let stats = self.0.restore(handles, storage, mode)?;
        for entry in self.0.entries()? {
            if entry.key == b"k0" {
                let cell = CellRef {
                    state: entry.state,
                    key_group: entry.key_group,
                    key: &entry.key,
                    user_key: &entry.user_key,
                };
                self.0.delete(cell)?;
            }
        }
        Ok(stats)
    }
}

struct ForgetfulFactory;

impl StateBackendFactory for ForgetfulFactory {
    fn name(&self) -> &'static str {
        "forgetful"
    }
    fn create(&self, context: BackendContext) -> Result<Box<dyn StateBackend>, StateError> {
        Ok(Box::new(ForgetfulBackend(MemoryBackend::new(
            context.task_name,
            context.key_groups,
        ))))
    }
}

fn run_with(backends: &dyn StateBackendFactory, dir: &Path) -> faultline::campaign::CaseReport {
    let job = linear_job();
    let input = crate::support::input_for(&job, 60, 3, 17);
    run_case(
        &job,
        &input,
        &config(23, 10),
        backends,
        &mut kills(&[80]),
        dir,
    )
    .unwrap()
}

#[test]
fn the_oracle_names_a_backend_that_forgets_a_key_on_restore() {
    let dir = tempfile::tempdir().unwrap();
    let correct = run_with(
        &faultline::state::MemoryBackendFactory,
        &dir.path().join("correct"),
    );
    assert!(correct.verdict.passed(), "{}", correct.verdict);

    let broken = run_with(&ForgetfulFactory, &dir.path().join("broken"));
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
        (addr.stage.as_str(), addr.state.as_str(), addr.key.as_str()),
        ("sum", "sum", "k0")
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
