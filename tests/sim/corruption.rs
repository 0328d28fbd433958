//! Method: finish a run, damage the retained checkpoint's `_metadata` (a flipped byte at every
//! tenth position, truncation at several lengths) or its state file, and restore it: the restore
//! must fail with an error that names the damaged file, never restore different state.

use std::path::Path;

use crate::support::{config, input_for, linear_job, run};
use faultline::checkpoint::{Durability, FsCheckpointStorage};
use faultline::fault::{FaultSchedule, NoFaults};
use faultline::job::{Input, JobSpec, RunConfig, Runtime};
use faultline::state::MemoryBackendFactory;

fn restore(
    job: &JobSpec,
    input: &Input,
    config: &RunConfig,
    root: &Path,
    id: u64,
) -> Result<(), String> {
    let mut storage = FsCheckpointStorage::new(root, Durability::PageCache).unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut faults = NoFaults;
    let runtime = Runtime::new(
        job,
        input,
        config.clone(),
        &MemoryBackendFactory,
        &mut storage,
        &mut faults,
        work.path(),
    )
    .unwrap();
    runtime.restore_for_inspection(id).map(|_| ())
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
