//! Method: finish a run, damage the retained checkpoint's `_metadata` (a flipped byte at every
//! tenth position, truncation at several lengths) or its state file, and restore it: the restore
//! must fail with an error that names the damaged file, never restore different state.

use faultline::trace::{Event, FailureCause, RestoreFailure};
use std::path::Path;

use crate::support::{config, input_for, linear_job, restore_checkpoint, run};
use faultline::engine::RunConfig;
use faultline::fault::FaultSchedule;
use faultline::job::{Input, JobSpec};
use faultline::state::BackendKind;

fn restore(
    job: &JobSpec,
    input: &Input,
    config: &RunConfig,
    root: &Path,
    id: u64,
) -> Result<(), String> {
    restore_checkpoint(BackendKind::Memory, job, input, config, root, id).map(|_| ())
}

fn finished_run() -> (JobSpec, Input, RunConfig, tempfile::TempDir, u64) {
    let job = linear_job();
    let input = input_for(&job, 40, 5, 6);
    let config = config(1, 10);
    let (report, dir) = run(&job, &input, &config, &mut FaultSchedule::default());
    let id = *report
        .outcome
        .retained_checkpoints
        .last()
        .expect("a retained checkpoint");
    (job, input, config, dir, id)
}

#[test]
fn a_flipped_byte_in_metadata_fails_restore_naming_the_file() {
    let (job, input, config, dir, id) = finished_run();
    let root = dir.path().join("checkpoints");
    let path = root.join(format!("chk-{id}/_metadata"));
    let pristine = std::fs::read(&path).unwrap();
    restore(&job, &input, &config, &root, id).expect("the pristine checkpoint restores");
    for position in (0..pristine.len()).step_by(10) {
        let mut corrupt = pristine.clone();
        corrupt[position] ^= 0x20;
        std::fs::write(&path, &corrupt).unwrap();
        let error =
            restore(&job, &input, &config, &root, id).expect_err("a flipped byte is detected");
        assert!(
            error.contains(&format!("chk-{id}/_metadata")),
            "byte {position}: {error}"
        );
    }
}

#[test]
fn a_truncated_metadata_fails_restore_naming_the_file() {
    let (job, input, config, dir, id) = finished_run();
    let root = dir.path().join("checkpoints");
    let path = root.join(format!("chk-{id}/_metadata"));
    let pristine = std::fs::read(&path).unwrap();
    for len in [0, 3, pristine.len() / 2, pristine.len() - 1] {
        std::fs::write(&path, &pristine[..len]).unwrap();
        let error = restore(&job, &input, &config, &root, id).expect_err("truncation is detected");
        assert!(
            error.contains(&format!("chk-{id}/_metadata")),
            "length {len}: {error}"
        );
        assert!(
            error.contains("truncated") || error.contains("magic"),
            "length {len}: {error}"
        );
    }
}

#[test]
fn a_damaged_state_file_fails_restore_naming_the_file() {
    let (job, input, config, dir, id) = finished_run();
    let root = dir.path().join("checkpoints");
    let path = root.join(format!("chk-{id}/sum-0.kv"));
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let error =
        restore(&job, &input, &config, &root, id).expect_err("the damaged state file is detected");
    assert!(error.contains(&format!("chk-{id}/sum-0.kv")), "{error}");
    std::fs::remove_file(&path).unwrap();
    let error =
        restore(&job, &input, &config, &root, id).expect_err("the missing state file is detected");
    assert!(
        error.contains(&format!("chk-{id}/sum-0.kv: missing")),
        "{error}"
    );
}

#[test]
fn a_corrupt_latest_checkpoint_fails_loudly_unless_fallback_is_chosen() {
    use faultline::checkpoint::RestorePolicy;
    let job = linear_job();
    let input = input_for(&job, 60, 4, 3);
    let mut config = config(2, 10);
    config.checkpoint = config.checkpoint.with_num_retained(2);
    let (report, dir) = run(&job, &input, &config, &mut FaultSchedule::default());
    let root = dir.path().join("checkpoints");
    let retained = report.outcome.retained_checkpoints.clone();
    assert_eq!(retained.len(), 2);
    let latest = retained[1];
    let path = root.join(format!("chk-{latest}/_metadata"));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&path, bytes).unwrap();

    // Restart from the damaged root: a new run restores from its storage on the first restart.
    let restart = |policy: RestorePolicy| {
        let mut config = config.clone();
        config.restore_policy = policy;
        let mut storage = faultline::checkpoint::FsCheckpointStorage::new(
            &root,
            faultline::checkpoint::Durability::PageCache,
        )
        .unwrap();
        let work = tempfile::tempdir().unwrap();
        let mut faults =
            faultline::fault::FaultSchedule::new(vec![faultline::fault::Fault::Kill { step: 2 }]);
        let factory = BackendKind::Memory.factory().unwrap();
        faultline::engine::Runtime::new(
            &job,
            &input,
            config,
            factory.as_ref(),
            &mut storage,
            &mut faults,
            work.path(),
        )
        .unwrap()
        .with_store(report.outcome.store.clone())
        .run()
        .unwrap()
    };
    let loud = restart(RestorePolicy::FailLoudly);
    assert!(loud.failures.len() >= 2, "{}", loud.trace.render());
    let failure = &loud.failures[1];
    assert_eq!(failure.task, "restore");
    let metadata = format!("chk-{latest}/_metadata");
    assert!(
        matches!(&failure.cause, FailureCause::Restore(RestoreFailure { file: Some(file), .. }) if *file == metadata),
        "{failure:?}"
    );
    assert!(loud.restores.is_empty(), "nothing was restored silently");

    let fallback = restart(RestorePolicy::FallbackToLatestValid);
    assert!(!fallback.restores.is_empty(), "{}", fallback.trace.render());
    assert_eq!(fallback.restores[0].checkpoint_id, Some(retained[0]));
    // The risk the policy documents, caught: output between the restored checkpoint and the
    // skipped one was committed already, and is committed again.
    let verdict = faultline::check::check_run(&job, &input, config.checkpoint.mode, 2, &fallback);
    let duplicated = verdict
        .violations
        .iter()
        .any(|v| matches!(v, faultline::check::Violation::OutputDuplicated { .. }));
    assert!(duplicated, "{verdict}");
    assert!(fallback
        .trace
        .events()
        .iter()
        .any(|stamped| matches!(stamped.event, Event::RestoreFallback { .. })));
}

#[test]
fn a_stale_copy_that_would_repair_a_file_damaged_before_is_no_corruption() {
    // Found by a campaign: a truncated file failed its restore loudly, then a stale-file fault
    // put back a copy of the file's own recorded bytes, and the restore that followed was
    // reported as restoring corruption. Such a copy repairs the file: the fault does nothing.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/regressions/stale-copy-of-a-truncated-file.toml"
    );
    let scenario = faultline::campaign::Scenario::load(std::path::Path::new(path)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let report = faultline::campaign::Case::new(scenario, faultline::campaign::Seams::default())
        .run(dir.path(), &faultline::campaign::KillMode::Sim)
        .unwrap();
    assert!(report.verdict.passed(), "{}", report.verdict);
    let kinds: Vec<_> = (report.outcome.corruptions.iter())
        .map(|(_, c)| c.kind)
        .collect();
    assert_eq!(kinds, [faultline::fault::CorruptionKind::Truncate]);
}
