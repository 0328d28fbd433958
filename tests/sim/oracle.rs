//! Method: plug a deliberately broken state backend into the public `StateBackend` seam — it
//! forgets one key whenever it restores — and check that the oracle reports it, naming the
//! seed, the checkpoint, the key and both values; the same run on the correct backend passes.

use std::path::Path;

use crate::support::{config, delete_cells, kills, linear_job, TwistedFactory};
use faultline::check::Violation;
use faultline::state::StateBackendFactory;

/// The memory backend, but key `k0`'s cells are dropped after every restore.
static FORGETFUL: TwistedFactory = TwistedFactory {
    name: "forgetful",
    after_restore: |backend, _| delete_cells(backend, |entry| entry.key == b"k0"),
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
