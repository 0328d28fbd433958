//! Method: run a job retaining every checkpoint, then restore each one on its own and compare it
//! with the model evaluated at that checkpoint's source positions; then run every shape under
//! injected panics and kills and require the full oracle and the storage audit to pass — on
//! every backend.

use crate::support::{
    assert_passed, config, input_for, job_shapes, kills, restore_checkpoint, run, run_on,
};
use faultline::checkpoint::{registry, Durability, FsCheckpointStorage};
use faultline::engine::JobStatus;
use faultline::fault::{Fault, FaultSchedule};
use faultline::model;
use faultline::state::BackendKind;

#[test]
fn restoring_each_checkpoint_equals_the_model_at_that_checkpoint() {
    for backend in BackendKind::all() {
        for job in job_shapes() {
            let input = input_for(&job, 80, 9, 21);
            let mut config = config(5, 15);
            config.checkpoint = config.checkpoint.with_num_retained(1000);
            let (report, dir) = run_on(
                backend,
                &job,
                &input,
                &config,
                &mut FaultSchedule::default(),
            );
            assert_passed(&report);
            let retained = &report.outcome.retained_checkpoints;
            assert!(
                retained.len() >= 4,
                "{backend} {}: only {} checkpoints",
                job.name,
                retained.len()
            );
            let mut previous_total = 0;
            for &id in retained {
                let restored = restore_checkpoint(
                    backend,
                    &job,
                    &input,
                    &config,
                    &dir.path().join("checkpoints"),
                    id,
                )
                .unwrap();
                let expected = model::evaluate(&job, &input, &restored.positions).state;
                assert_eq!(
                    expected.differences(&restored.state),
                    vec![],
                    "{backend} {} chk-{id}",
                    job.name
                );
                assert!(
                    restored.positions.total() >= previous_total,
                    "positions never go back"
                );
                previous_total = restored.positions.total();
            }
            assert_eq!(
                previous_total,
                input.len() as u64,
                "{backend} {}: the last checkpoint covers the whole input",
                job.name
            );
        }
    }
}

#[test]
fn runs_with_panics_and_kills_pass_the_oracle_on_every_backend() {
    for backend in BackendKind::all() {
        for job in job_shapes() {
            let input = input_for(&job, 70, 6, 8);
            let stage = job.stages[0].name.clone();
            for seed in 0..4u64 {
                let mut faults = FaultSchedule::new(vec![
                    Fault::Panic {
                        stage: stage.clone(),
                        subtask: 0,
                        attempt: 0,
                        record_index: 9,
                    },
                    Fault::Kill {
                        step: 60 + seed * 7,
                    },
                    Fault::Panic {
                        stage: stage.clone(),
                        subtask: 0,
                        attempt: 2,
                        record_index: 3,
                    },
                ]);
                let (report, dir) = run_on(backend, &job, &input, &config(seed, 12), &mut faults);
                assert_passed(&report);
                assert_eq!(report.outcome.status, JobStatus::Finished);
                assert!(
                    !report.outcome.restores.is_empty(),
                    "{backend} {} seed {seed}: a fault fired",
                    job.name
                );
                let storage =
                    FsCheckpointStorage::new(dir.path().join("checkpoints"), Durability::PageCache)
                        .unwrap();
                let audit = registry::audit(&storage).unwrap();
                assert_eq!(
                    audit.problems,
                    vec![],
                    "{backend} {} seed {seed}: storage audit",
                    job.name
                );
            }
        }
    }
}

#[test]
fn a_restore_after_checkpoints_resumes_mid_input() {
    let job = crate::support::linear_job();
    let input = input_for(&job, 50, 5, 2);
    let (report, _dir) = run(&job, &input, &config(3, 10), &mut kills(&[70]));
    assert_passed(&report);
    let restore = &report.outcome.restores[0];
    assert!(
        restore.checkpoint_id.is_some(),
        "a checkpoint completed before step 70"
    );
    let resumed = restore.positions.total();
    assert!(
        resumed > 0 && resumed < 50,
        "resumed at {resumed}, not from scratch or the end"
    );
    assert!(
        !restore.state.is_empty(),
        "the restored state is not recomputed from nothing"
    );
}

#[test]
fn a_failure_after_a_savepoint_restores_the_savepoint_not_an_older_state() {
    // FLINK-10354: the savepoint commits the two-phase sink's pending transaction; recovering
    // from anything older would replay output that is already committed.
    let job = crate::support::linear_job();
    let input = input_for(&job, 80, 5, 12);
    let mut config = config(3, 1000);
    config.savepoints = vec![faultline::checkpoint::SavepointRequest {
        at_ms: 40,
        name: "mid".into(),
        format: faultline::state::SavepointFormat::Canonical,
        stop: false,
    }];
    let panic = Fault::Panic {
        stage: "sum".into(),
        subtask: 0,
        attempt: 0,
        record_index: 60,
    };
    let (report, _dir) = run(&job, &input, &config, &mut FaultSchedule::new(vec![panic]));
    assert_passed(&report);
    let restore = &report.outcome.restores[0];
    assert!(
        restore.checkpoint_id.is_some(),
        "restored the savepoint, not nothing"
    );
    assert!(
        report
            .outcome
            .trace
            .render()
            .contains("restore from savepoint mid"),
        "{}",
        report.outcome.trace.render()
    );
}
