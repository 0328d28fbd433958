//! Method: run each job shape several times per seed (with and without kills) and compare trace
//! hashes; then run one parallel shape under several seeds and require distinct schedules.

use std::collections::BTreeSet;

use crate::support::{config, fan_in_job, input_for, job_shapes, kills, run};
use faultline::fault::FaultSchedule;

#[test]
fn the_same_seed_gives_the_same_trace_hash() {
    for job in job_shapes() {
        let input = input_for(&job, 60, 7, 11);
        for seed in [1, 2, 99, 12345] {
            let mut hashes = BTreeSet::new();
            for _ in 0..2 {
                let (report, _dir) = run(&job, &input, &config(seed, 20), &mut kills(&[40, 95]));
                assert!(
                    report.outcome.restores.len() >= 2,
                    "{}: the kills fired",
                    job.name
                );
                hashes.insert(report.trace_hash);
            }
            assert_eq!(
                hashes.len(),
                1,
                "{} seed {seed}: two runs, two hashes",
                job.name
            );
        }
    }
}

#[test]
fn different_seeds_give_different_schedules_when_parallel() {
    let job = fan_in_job();
    let input = input_for(&job, 40, 5, 3);
    let hashes: BTreeSet<_> = (0..6)
        .map(|seed| {
            run(
                &job,
                &input,
                &config(seed, 15),
                &mut FaultSchedule::default(),
            )
            .0
            .trace_hash
        })
        .collect();
    assert_eq!(
        hashes.len(),
        6,
        "six seeds gave only {} distinct schedules",
        hashes.len()
    );
}

#[test]
fn identical_traces_are_identical_event_by_event() {
    let job = fan_in_job();
    let input = input_for(&job, 30, 4, 5);
    let (first, _a) = run(&job, &input, &config(7, 10), &mut kills(&[33]));
    let (second, _b) = run(&job, &input, &config(7, 10), &mut kills(&[33]));
    assert_eq!(
        first.outcome.trace.first_divergence(&second.outcome.trace),
        None
    );
    let (other, _c) = run(&job, &input, &config(8, 10), &mut kills(&[33]));
    assert!(first
        .outcome
        .trace
        .first_divergence(&other.outcome.trace)
        .is_some());
}

#[test]
fn the_same_seed_gives_the_same_trace_hash_on_every_backend() {
    // RocksDB runs threads of its own; the trace still names only what the operations decide:
    // file counts and sizes, never bytes or checksums.
    let job = fan_in_job();
    let input = input_for(&job, 80, 9, 13);
    for backend in faultline::state::BackendKind::all() {
        let hashes: BTreeSet<_> = (0..3)
            .map(|_| {
                crate::support::run_on(
                    backend,
                    &job,
                    &input,
                    &config(4, 12),
                    &mut kills(&[70, 160]),
                )
                .0
                .trace_hash
            })
            .collect();
        assert_eq!(
            hashes.len(),
            1,
            "{backend}: three runs, {} hashes",
            hashes.len()
        );
    }
}
