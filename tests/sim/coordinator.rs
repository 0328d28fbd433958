//! Method: make barriers slower than the checkpoint timeout (1000 ms per record behind a full
//! channel, 1500 ms timeout) and check both outcomes of Flink's tolerable-failure rule: with
//! none tolerated the expiry fails the job; with some tolerated the job carries on and still
//! ends exactly-once, its final checkpoint taken once the input drained. Then checkpoints
//! slower than their interval with up to three in flight: they overlap, in both modes and on
//! every backend, through kills, and the oracle and storage audit pass; a minimum pause keeps
//! one in flight and waits after each completion; a delayed notification reaches every task
//! after a newer checkpoint's, and output stays exactly once.

use crate::support::{assert_passed, fan_in_job, input_for, kills, linear_job, run, run_on};
use faultline::checkpoint::{CheckpointConfig, CheckpointingMode};
use faultline::engine::{JobStatus, RunConfig};
use faultline::job::RestartStrategy;
use faultline::state::BackendKind;
use faultline::trace::{AbortReason, Event, FailureCause};

fn slow_config(tolerable_failures: u32) -> RunConfig {
    let checkpoint = CheckpointConfig::every(1000)
        .with_timeout_ms(1500)
        .with_tolerable_failures(tolerable_failures);
    RunConfig::new(
        1,
        checkpoint,
        RestartStrategy::FixedDelay {
            attempts: 1,
            delay_ms: 10,
        },
    )
}

fn slow_job() -> faultline::job::JobSpec {
    let mut job = linear_job();
    job.source.emit_ms = 0;
    job.stages[0].processing_ms = 1000;
    job
}

#[test]
fn an_expired_checkpoint_fails_the_job_when_none_is_tolerated() {
    let job = slow_job();
    let input = input_for(&job, 20, 3, 1);
    let (report, _dir) = run(&job, &input, &slow_config(0), &mut Default::default());
    let expired = report.outcome.trace.events().iter().any(|stamped| {
        matches!(
            stamped.event,
            Event::CheckpointAborted {
                reason: AbortReason::Expired { timeout_ms: 1500 },
                ..
            }
        )
    });
    assert!(expired, "{}", report.outcome.trace.render());
    let failure = &report.outcome.failures[0];
    assert_eq!(failure.task, "coordinator");
    assert_eq!(
        failure.cause,
        FailureCause::CheckpointFailures {
            consecutive: 1,
            tolerated: 0
        }
    );
    assert!(matches!(report.outcome.status, JobStatus::Failed { .. }));
}

#[test]
fn tolerated_expiries_let_the_job_finish_exactly_once() {
    let job = slow_job();
    let input = input_for(&job, 20, 3, 1);
    let (report, _dir) = run(&job, &input, &slow_config(1000), &mut Default::default());
    assert_passed(&report);
    assert_eq!(report.outcome.status, JobStatus::Finished);
    assert!(
        report.outcome.stats.checkpoints_aborted > 0,
        "some checkpoint expired"
    );
    assert!(report.outcome.failures.is_empty());
}

/// The most checkpoints in flight at once, and how many were triggered while another was,
/// from the typed events (an attempt starts with none in flight).
fn in_flight(report: &faultline::campaign::CaseReport) -> (usize, usize) {
    let mut pending = std::collections::BTreeSet::new();
    let (mut most, mut overlapping) = (0, 0);
    for stamped in report.outcome.trace.events() {
        match &stamped.event {
            Event::AttemptStarted { .. } => pending.clear(),
            Event::CheckpointTriggered { checkpoint, .. } => {
                overlapping += usize::from(!pending.is_empty());
                pending.insert(*checkpoint);
                most = most.max(pending.len());
            }
            Event::CheckpointCompleted { checkpoint, .. }
            | Event::CheckpointAborted { checkpoint, .. } => {
                pending.remove(checkpoint);
            }
            _ => {}
        }
    }
    (most, overlapping)
}

/// Barriers slower than the interval: each record takes 5 ms at every stage, a checkpoint is
/// due every 2 ms.
fn concurrent_config(mode: CheckpointingMode, max_concurrent: u32, min_pause_ms: u64) -> RunConfig {
    let checkpoint = CheckpointConfig::every(2)
        .with_mode(mode)
        .with_num_retained(2)
        .with_concurrency(max_concurrent, min_pause_ms);
    let mut config = RunConfig::new(
        3,
        checkpoint,
        RestartStrategy::FixedDelay {
            attempts: 5,
            delay_ms: 3,
        },
    );
    config.audit_storage = true;
    config
}

fn concurrent_job() -> faultline::job::JobSpec {
    let mut job = fan_in_job();
    for stage in &mut job.stages {
        stage.processing_ms = 5;
    }
    job
}

#[test]
fn concurrent_checkpoints_overlap_and_recover_on_every_backend_in_both_modes() {
    let job = concurrent_job();
    let input = input_for(&job, 40, 5, 2);
    for backend in BackendKind::all() {
        for mode in [
            CheckpointingMode::ExactlyOnce,
            CheckpointingMode::AtLeastOnce,
        ] {
            let config = concurrent_config(mode, 3, 0);
            let (report, _dir) = run_on(backend, &job, &input, &config, &mut kills(&[60, 150]));
            assert_passed(&report);
            let (most, overlapping) = in_flight(&report);
            assert!(
                (2..=3).contains(&most) && overlapping > 0,
                "{backend:?} {mode:?}: at most {most} in flight, {overlapping} overlapping"
            );
            assert!(!report.outcome.restores.is_empty(), "{backend:?} {mode:?}");
            let counted = report.outcome.stats.checkpoints_overlapping;
            assert_eq!(counted, overlapping as u64, "{backend:?} {mode:?}");
        }
    }
}

#[test]
fn a_minimum_pause_keeps_one_checkpoint_in_flight_and_waits_after_each_completion() {
    let job = concurrent_job();
    let input = input_for(&job, 40, 5, 2);
    let config = concurrent_config(CheckpointingMode::ExactlyOnce, 3, 7);
    let (report, _dir) = run(&job, &input, &config, &mut Default::default());
    assert_passed(&report);
    assert_eq!(in_flight(&report).0, 1);
    let mut completed_ms = None;
    let mut triggers = 0;
    for stamped in report.outcome.trace.events() {
        match &stamped.event {
            Event::CheckpointCompleted { .. } => completed_ms = Some(stamped.time_ms),
            Event::CheckpointTriggered { .. } => {
                triggers += 1;
                if let Some(completed_ms) = completed_ms {
                    assert!(
                        stamped.time_ms >= completed_ms + 7,
                        "{}",
                        report.outcome.trace.render()
                    );
                }
            }
            _ => {}
        }
    }
    assert!(triggers > 2, "{triggers} checkpoints");
}

#[test]
fn no_concurrent_checkpoints_is_an_error_naming_the_setting() {
    let job = concurrent_job();
    let input = input_for(&job, 4, 2, 2);
    let config = concurrent_config(CheckpointingMode::ExactlyOnce, 0, 0);
    let dir = tempfile::tempdir().unwrap();
    let factory = BackendKind::Memory.factory().unwrap();
    let error = faultline::engine::Runtime::new(
        &job,
        &input,
        config,
        factory.as_ref(),
        &mut faultline::checkpoint::FsCheckpointStorage::new(
            dir.path().join("checkpoints"),
            faultline::checkpoint::Durability::PageCache,
        )
        .unwrap(),
        &mut faultline::fault::FaultSchedule::default(),
        dir.path(),
    )
    .err()
    .expect("refused");
    assert!(error.to_string().contains("max_concurrent"), "{error}");
}

#[test]
fn a_late_notification_reaches_tasks_after_a_newer_checkpoints_and_output_stays_exactly_once() {
    let job = concurrent_job();
    let input = input_for(&job, 40, 5, 2);
    let config = concurrent_config(CheckpointingMode::ExactlyOnce, 3, 0);
    let late = faultline::fault::Fault::DelayNotification {
        checkpoint: 2,
        delay_ms: 60,
    };
    for backend in BackendKind::all() {
        let mut faults = faultline::fault::FaultSchedule::new(vec![late.clone()]);
        let (report, _dir) = run_on(backend, &job, &input, &config, &mut faults);
        assert_passed(&report);
        assert!(
            report.outcome.stats.notifications_out_of_order > 0,
            "{backend:?}: {}",
            report.outcome.trace.render()
        );
    }
}
