//! Method: run a fan-in job under kills in both checkpointing modes. Exactly-once (aligned)
//! must give exactly the model's output through the two-phase sink, with inputs seen blocked
//! while aligning — and the same check must fail on an engine whose alignment never blocks (a
//! test-only sabotage switch); at-least-once (unaligned)
//! must be seen to duplicate after a restore and to let records after a barrier into a
//! snapshot, with the oracle accepting replays — and rejecting a duplicate that no restore
//! explains.

use crate::support::{assert_passed, config, fan_in_job, input_for, kills, run};
use faultline::check::{check_run, Violation};
use faultline::checkpoint::CheckpointingMode;
use faultline::engine::JobStatus;
use faultline::job::SinkKind;
use faultline::model;
use faultline::trace::Event;

/// Runs the fan-in job under two kills for ten seeds, exactly-once, on the engine as it is or
/// with alignment sabotaged: the barrier receipts that blocked their input, and the seeds whose
/// output was not exactly the model's.
fn aligned_runs(alignment_never_blocks: bool) -> (usize, Vec<u64>) {
    let job = fan_in_job();
    let input = input_for(&job, 90, 8, 4);
    let mut expected: Vec<_> = model::evaluate(&job, &input, &input.end_positions())
        .outputs
        .iter()
        .map(|r| (r.id.clone(), r.value.clone()))
        .collect();
    expected.sort();
    let (mut blocked_waits, mut wrong) = (0, Vec::new());
    for seed in 0..10u64 {
        let mut config = config(seed, 15);
        config.sabotage.alignment_never_blocks = alignment_never_blocks;
        let (report, _dir) = run(&job, &input, &config, &mut kills(&[50 + seed * 11, 200]));
        assert_eq!(report.outcome.status, JobStatus::Finished);
        let mut visible: Vec<_> = report
            .outcome
            .store
            .visible()
            .iter()
            .map(|r| (r.id.clone(), r.value.clone()))
            .collect();
        visible.sort();
        if visible != expected || !report.verdict.passed() {
            wrong.push(seed);
        }
        blocked_waits += report
            .outcome
            .trace
            .events()
            .iter()
            .filter(|stamped| matches!(stamped.event, Event::BarrierReceived { blocked: true, .. }))
            .count();
    }
    (blocked_waits, wrong)
}

#[test]
fn aligned_barriers_give_exactly_once_output() {
    let (blocked_waits, wrong) = aligned_runs(false);
    assert!(
        wrong.is_empty(),
        "seeds {wrong:?}: not exactly the model's output"
    );
    assert!(
        blocked_waits > 0,
        "some task blocked an input while aligning"
    );
}

/// The broken twin: an engine whose alignment never blocks an input. The check above must fail
/// on it: records after a barrier reach a snapshot, so in some seed the output is not exactly
/// the model's, or the oracle finds restored state that differs from it. (The blocked receipts
/// are the engine's own account, so they are no evidence here; the output and state are.)
#[test]
fn the_alignment_check_fails_on_an_engine_that_never_blocks() {
    let (_, wrong) = aligned_runs(true);
    assert!(
        !wrong.is_empty(),
        "unaligned snapshots broke exactly-once output in some seed"
    );
}

#[test]
fn at_least_once_mode_duplicates_only_replays() {
    let job = fan_in_job();
    let input = input_for(&job, 90, 8, 4);
    let mut duplicated_runs = 0;
    let mut leaky_snapshots = 0;
    for seed in 0..40u64 {
        let mut config = config(seed, 15);
        config.checkpoint = config.checkpoint.with_mode(CheckpointingMode::AtLeastOnce);
        let (report, _dir) = run(&job, &input, &config, &mut kills(&[60 + seed * 3]));
        assert_passed(&report);
        if report.outcome.store.visible().len()
            > model::evaluate(&job, &input, &input.end_positions())
                .outputs
                .len()
        {
            duplicated_runs += 1;
        }
        for restore in &report.outcome.restores {
            if model::evaluate(&job, &input, &restore.positions).state != restore.state {
                leaky_snapshots += 1;
            }
        }
    }
    assert!(
        duplicated_runs > 0,
        "at-least-once mode duplicated output in some run"
    );
    assert!(
        leaky_snapshots > 0,
        "an unaligned snapshot held records after its barrier"
    );
}

#[test]
fn the_oracle_rejects_a_duplicate_that_is_not_a_replay() {
    let mut job = fan_in_job();
    job.sink.kind = SinkKind::Print;
    let input = input_for(&job, 60, 5, 9);
    let (mut report, _dir) = run(&job, &input, &config(2, 15), &mut kills(&[120]));
    assert_passed(&report);
    let restore = report.outcome.restores[0].clone();
    let visible = report.outcome.store.visible().to_vec();
    let count = |id: &str| visible.iter().filter(|r| r.id == id).count();

    // A record read again after the restore may appear once more: a replay.
    let replayable = visible
        .iter()
        .find(|r| {
            restore.positions.0[r.origin.partition as usize] <= r.origin.offset && count(&r.id) == 1
        })
        .expect("some record lies after the restored position")
        .clone();
    report.outcome.store.print(replayable);
    assert!(check_run(
        &job,
        &input,
        CheckpointingMode::ExactlyOnce,
        2,
        &report.outcome
    )
    .passed());

    // A record before the restored position was never read again: a copy is a bug.
    let settled = visible
        .iter()
        .find(|r| restore.positions.0[r.origin.partition as usize] > r.origin.offset)
        .expect("some record lies before the restored position")
        .clone();
    report.outcome.store.print(settled.clone());
    let verdict = check_run(
        &job,
        &input,
        CheckpointingMode::ExactlyOnce,
        2,
        &report.outcome,
    );
    assert_eq!(
        verdict.violations,
        vec![Violation::OutputDuplicated {
            record: settled,
            count: 2,
            allowed: 1
        }]
    );
    assert!(
        verdict.to_string().contains("seed 2"),
        "the violation names the seed: {verdict}"
    );
}
