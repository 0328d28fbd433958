//! Method: make barriers slower than the checkpoint timeout (1000 ms per record behind a full
//! channel, 1500 ms timeout) and check both outcomes of Flink's tolerable-failure rule: with
//! none tolerated the expiry fails the job; with some tolerated the job carries on and still
//! ends exactly-once, its final checkpoint taken once the input drained.

use crate::support::{assert_passed, input_for, linear_job, run};
use faultline::checkpoint::CheckpointConfig;
use faultline::engine::{JobStatus, RunConfig};
use faultline::job::RestartStrategy;
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
