//! Method: drive each restart strategy's tracker with failures at chosen virtual times and check
//! every delay and the give-up point; then run a job whose failure repeats on every attempt and
//! check the restarts' timing in its trace.

use faultline::check::Property;
use faultline::checkpoint::CheckpointConfig;
use faultline::engine::{JobStatus, RunConfig};
use faultline::job::{
    FailCounter, OperatorSpec, RestartDecision, RestartStrategy, RestartTracker, StageSpec,
};
use faultline::sim::{RngStreams, StreamName};

fn decisions(
    strategy: RestartStrategy,
    failure_times_ms: &[u64],
    seed: u64,
) -> Vec<RestartDecision> {
    let mut tracker = RestartTracker::new(strategy);
    let mut rng = RngStreams::new(seed).stream(StreamName::RestartJitter);
    failure_times_ms
        .iter()
        .map(|t| tracker.on_failure(*t, &mut rng))
        .collect()
}

fn delays(decisions: &[RestartDecision]) -> Vec<Option<u64>> {
    decisions
        .iter()
        .map(|d| match d {
            RestartDecision::Restart { delay_ms, .. } => Some(*delay_ms),
            RestartDecision::GiveUp { .. } => None,
            other => panic!("an unknown decision {other:?}"),
        })
        .collect()
}

#[test]
fn none_gives_up_at_once() {
    let result = decisions(RestartStrategy::None, &[0], 1);
    assert!(matches!(&result[0], RestartDecision::GiveUp { reason } if reason.contains("none")));
}

#[test]
fn fixed_delay_restarts_n_times_then_gives_up() {
    let result = decisions(
        RestartStrategy::FixedDelay {
            attempts: 3,
            delay_ms: 5000,
        },
        &[5000, 15000, 25000, 35000],
        1,
    );
    assert_eq!(
        delays(&result),
        vec![Some(5000), Some(5000), Some(5000), None]
    );
    let RestartDecision::GiveUp { reason } = &result[3] else {
        unreachable!()
    };
    assert_eq!(
        reason,
        "recovery suppressed by fixed-delay(3 attempts, 5000 ms): 3 restarts used"
    );
}

#[test]
fn failure_rate_counts_failures_in_a_sliding_interval() {
    let strategy = RestartStrategy::FailureRate {
        max_failures: 2,
        interval_ms: 1000,
        delay_ms: 10,
    };
    // Spread out: never more than two within any 1000 ms.
    let spread = decisions(strategy.clone(), &[0, 600, 1700, 2300, 3400], 1);
    assert_eq!(delays(&spread), vec![Some(10); 5]);
    // Bunched: the third failure within 1000 ms gives up.
    let bunched = decisions(strategy, &[0, 300, 900], 1);
    assert_eq!(delays(&bunched), vec![Some(10), Some(10), None]);
}

#[test]
fn exponential_delay_grows_caps_and_resets() {
    let strategy = RestartStrategy::ExponentialDelay {
        initial_ms: 100,
        max_ms: 1000,
        multiplier: 2.0,
        reset_threshold_ms: 5000,
        jitter: 0.0,
        attempts: None,
    };
    // Each failure soon after the restart: 100, 200, 400, 800, then capped at 1000.
    let times = [0, 200, 500, 1000, 2000, 3100];
    let result = decisions(strategy.clone(), &times, 1);
    assert_eq!(
        delays(&result),
        vec![
            Some(100),
            Some(200),
            Some(400),
            Some(800),
            Some(1000),
            Some(1000)
        ]
    );
    // Running 5000 ms after a restart without failing resets the backoff.
    let result = decisions(strategy, &[0, 200, 20_000], 1);
    assert_eq!(delays(&result), vec![Some(100), Some(200), Some(100)]);
}

#[test]
fn exponential_jitter_is_bounded_and_seeded() {
    let strategy = RestartStrategy::ExponentialDelay {
        initial_ms: 1000,
        max_ms: 1000,
        multiplier: 1.0,
        reset_threshold_ms: u64::MAX,
        jitter: 0.5,
        attempts: Some(20),
    };
    let times: Vec<u64> = (0..20).map(|i| i * 10).collect();
    let first = delays(&decisions(strategy.clone(), &times, 7));
    assert_eq!(
        first,
        delays(&decisions(strategy.clone(), &times, 7)),
        "same seed, same jitter"
    );
    assert_ne!(
        first,
        delays(&decisions(strategy.clone(), &times, 8)),
        "another seed, other jitter"
    );
    for delay in &first {
        let delay = delay.expect("within the attempt limit");
        assert!((500..=1500).contains(&delay), "{delay} outside 1000 ± 50%");
    }
    let mut times = times;
    times.push(1000);
    assert_eq!(
        delays(&decisions(strategy, &times, 7))[20],
        None,
        "the 21st failure exceeds 20 attempts"
    );
}

#[test]
fn strategies_parse_with_clear_errors() {
    assert_eq!(
        "fixed-delay:3:5000".parse::<RestartStrategy>().unwrap(),
        RestartStrategy::FixedDelay {
            attempts: 3,
            delay_ms: 5000
        }
    );
    assert_eq!(
        "none".parse::<RestartStrategy>().unwrap(),
        RestartStrategy::None
    );
    assert!(matches!(
        "exponential-delay:1:10:2:100:0.1:4"
            .parse::<RestartStrategy>()
            .unwrap(),
        RestartStrategy::ExponentialDelay {
            attempts: Some(4),
            ..
        }
    ));
    for (bad, says) in [
        ("fixed-delay:3", "takes 2 fields"),
        ("fixed-delay:x:1", "attempts \"x\" is not a whole number"),
        ("sometimes", "unknown strategy"),
        ("exponential-delay:10:1:2:100:0.1", "exceeds max backoff"),
        (
            "exponential-delay:1:10:0.5:100:0.1",
            "multiplier 0.5 is below 1",
        ),
        ("failure-rate:1:0:5", "interval must be positive"),
    ] {
        let error = bad.parse::<RestartStrategy>().unwrap_err().to_string();
        assert!(error.contains(says), "{bad:?}: {error}");
    }
}

#[test]
fn a_job_that_always_fails_exhausts_its_restarts_on_the_virtual_clock() {
    let mut job = crate::support::linear_job();
    job.stages.insert(
        0,
        StageSpec {
            name: "failing".into(),
            op: OperatorSpec::FailingMap {
                fail_at: 3,
                counter: FailCounter::PlainField,
            },
            parallelism: 1,
            processing_ms: 100,
        },
    );
    let input = crate::support::input_for(&job, 10, 3, 1);
    let config = RunConfig::new(
        4,
        CheckpointConfig::every(1000),
        RestartStrategy::FixedDelay {
            attempts: 2,
            delay_ms: 700,
        },
    );
    let (report, _dir) = crate::support::run(&job, &input, &config, &mut Default::default());
    let JobStatus::Failed { reason } = &report.outcome.status else {
        panic!("the job cannot finish")
    };
    assert!(
        reason.contains("recovery suppressed by fixed-delay(2 attempts, 700 ms)"),
        "{reason}"
    );
    assert_eq!(report.outcome.stats.attempts, 3);
    let failures: Vec<u64> = report.outcome.failures.iter().map(|f| f.time_ms).collect();
    let restarts: Vec<u64> = report.outcome.restores.iter().map(|r| r.time_ms).collect();
    assert_eq!(failures.len(), 3);
    for (failure, restart) in failures.iter().zip(&restarts) {
        assert_eq!(
            restart - failure,
            700,
            "each restart waits exactly the delay"
        );
    }
    assert!(report
        .verdict
        .violations
        .iter()
        .any(|v| v.property() == Property::Liveness));
}
