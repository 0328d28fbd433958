//! Method: back-pressure channels with a slow keyed stage so barriers have records to overtake,
//! then check unaligned checkpoints from the events: tasks persist what was in flight as channel
//! state, a restore hands it back before new input, on every backend and through kills; an
//! aligned checkpoint waited on past the aligned-checkpoint timeout switches to unaligned; the
//! named unaligned-rescale scenario resumes a retained unaligned checkpoint at another
//! parallelism in both kill modes; each broken twin of the channel-state restore (dropped on
//! rescale, given to the old subtask index, replayed after new input) is caught and named;
//! damaged channel state fails the restore naming its file, and a channel-state file left
//! behind in a checkpoint is reported by the audit; settings Flink refuses are refused.

use crate::support::{assert_passed, fan_in_job, input_for, kills, run_on};
use faultline::campaign::{Case, KillMode, Scenario, Seams};
use faultline::check::Property;
use faultline::checkpoint::{
    registry, CheckpointConfig, CheckpointingMode, Durability, FsCheckpointStorage, Unaligned,
};
use faultline::engine::{JobStatus, RunConfig};
use faultline::job::RestartStrategy;
use faultline::state::BackendKind;
use faultline::trace::{Event, FailureCause};

/// A fan-in job whose keyed stages take 4 ms a record behind channels of two.
fn pressured_config(unaligned: Unaligned, seed: u64) -> RunConfig {
    let checkpoint = CheckpointConfig::every(6)
        .with_num_retained(2)
        .with_unaligned(unaligned);
    let mut config = RunConfig::new(
        seed,
        checkpoint,
        RestartStrategy::FixedDelay {
            attempts: 6,
            delay_ms: 2,
        },
    );
    config.channel_capacity = 2;
    config.audit_storage = true;
    config
}

fn pressured_job() -> faultline::job::JobSpec {
    let mut job = fan_in_job();
    job.stages[1].processing_ms = 4;
    job.stages[2].processing_ms = 2;
    job
}

/// Records persisted as channel state and records handed back by restores, from the events.
fn channel_records(report: &faultline::campaign::CaseReport) -> (usize, usize) {
    let (mut written, mut restored) = (0, 0);
    for stamped in report.outcome.trace.events() {
        match &stamped.event {
            Event::ChannelStateWritten {
                inputs, outputs, ..
            } => written += inputs + outputs,
            Event::ChannelStateRestored { origins, .. } => restored += origins.len(),
            _ => {}
        }
    }
    (written, restored)
}

#[test]
fn records_in_flight_are_persisted_and_handed_back_on_every_backend_through_kills() {
    let job = pressured_job();
    let input = input_for(&job, 40, 6, 3);
    for backend in BackendKind::all() {
        let config = pressured_config(Unaligned::Always, 3);
        let (report, _dir) = run_on(backend, &job, &input, &config, &mut kills(&[70, 160]));
        assert_passed(&report);
        let (written, restored) = channel_records(&report);
        assert!(
            written > 0,
            "{backend:?}: nothing was in flight at a barrier"
        );
        assert!(restored > 0, "{backend:?}: no restore handed records back");
        assert_eq!(report.outcome.status, JobStatus::Finished, "{backend:?}");
    }
}

#[test]
fn an_alignment_waited_on_past_the_timeout_switches_to_unaligned() {
    let job = pressured_job();
    let input = input_for(&job, 40, 6, 4);
    let config = pressured_config(Unaligned::AfterMs(3), 4);
    let (report, _dir) = run_on(
        BackendKind::Memory,
        &job,
        &input,
        &config,
        &mut kills(&[90]),
    );
    assert_passed(&report);
    let switched = report.outcome.trace.events().iter().any(|stamped| {
        matches!(
            stamped.event,
            Event::BarrierOvertook {
                timed_out: true,
                ..
            }
        )
    });
    assert!(switched, "{}", report.outcome.trace.render());
    assert!(channel_records(&report).0 > 0, "records were persisted");
    // With a timeout no alignment reaches, every barrier stays aligned.
    let config = pressured_config(Unaligned::AfterMs(1_000_000), 4);
    let (report, _dir) = run_on(
        BackendKind::Memory,
        &job,
        &input,
        &config,
        &mut kills(&[90]),
    );
    assert_passed(&report);
    let overtook = (report.outcome.trace.events().iter())
        .any(|stamped| matches!(stamped.event, Event::BarrierOvertook { .. }));
    assert!(!overtook, "no barrier was unaligned");
}

fn named_scenario() -> Scenario {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/scenarios/unaligned-rescale-rocksdb-incremental.toml");
    Scenario::load(&file).unwrap()
}

fn run_case(scenario: &Scenario) -> faultline::campaign::CaseReport {
    let dir = tempfile::tempdir().unwrap();
    Case::new(scenario.clone(), Seams::default())
        .run(dir.path(), &KillMode::Sim)
        .unwrap()
}

#[test]
fn a_retained_unaligned_checkpoint_resumes_at_another_parallelism_in_both_kill_modes() {
    let scenario = named_scenario();
    let report = crate::campaign::assert_both_modes_agree(&scenario);
    let events = report.outcome.trace.events();
    let cancelled = events
        .iter()
        .position(|s| matches!(s.event, Event::JobCancelled { .. }));
    let cancelled = cancelled.expect("the first phase was cancelled at a checkpoint");
    // The second phase restores the sum at three subtasks, the third one among them holding
    // records that were in flight towards two.
    let handed_back = events[cancelled..].iter().any(|s| {
        matches!(&s.event, Event::ChannelStateRestored { task, origins } if task == "sum[2]" && !origins.is_empty())
    });
    assert!(handed_back, "{}", report.outcome.trace.render());
}

#[test]
fn a_kill_while_channel_state_is_written_recovers_in_both_kill_modes() {
    let mut scenario = named_scenario();
    scenario.faults = vec![faultline::fault::Fault::KillAt {
        phase: faultline::fault::Phase::ChannelStateWrite,
        checkpoint: 2,
    }];
    let report = crate::campaign::assert_both_modes_agree(&scenario);
    let site = faultline::fault::FaultSite::Phase(faultline::fault::Phase::ChannelStateWrite);
    assert!(
        report.fired().iter().any(|(_, fired)| *fired == site),
        "{:?}",
        report.fired()
    );
}

/// Turns one engine defect on.
type BreakIt = fn(&mut faultline::engine::Sabotage);

#[test]
fn each_broken_channel_state_restore_is_caught_and_named() {
    let twins: [(&str, BreakIt, Property); 3] = [
        (
            "dropped on rescale",
            |s| s.channel_state_dropped_on_rescale = true,
            Property::Output,
        ),
        (
            "given to the old subtask",
            |s| s.channel_state_to_old_subtask = true,
            Property::Assertion,
        ),
        (
            "replayed after new input",
            |s| s.channel_state_after_new_input = true,
            Property::Output,
        ),
    ];
    assert!(run_case(&named_scenario()).verdict.passed());
    for (name, break_it, property) in twins {
        let mut scenario = named_scenario();
        break_it(&mut scenario.sabotage);
        let report = run_case(&scenario);
        let properties: Vec<Property> = report
            .verdict
            .violations
            .iter()
            .map(|v| v.property())
            .collect();
        assert!(properties.contains(&property), "{name}: {}", report.verdict);
    }
}

/// What the named scenario's first phase left when run alone and cancelled at its checkpoint:
/// the case directory, the phase, its external system, and the channel-state file of the
/// retained checkpoint.
struct Cancelled {
    dir: tempfile::TempDir,
    phase: Scenario,
    store: faultline::job::ExternalStore,
    path: faultline::checkpoint::RelPath,
}

fn cancelled_with_channel_state() -> Cancelled {
    let mut phase = named_scenario();
    phase.faults.clear();
    let rescale = phase.rescale.take().expect("the scenario rescales");
    let dir = tempfile::tempdir().unwrap();
    let mut config = phase.run_config();
    config.cancel_after_ms = Some(rescale.at_ms);
    let input = phase.input().unwrap();
    let factory = phase.backend.factory().unwrap();
    let mut report = crate::support::run_phase(
        &phase.job,
        &input,
        &config,
        factory.as_ref(),
        &mut faultline::fault::FaultSchedule::default(),
        dir.path(),
        faultline::job::ExternalStore::new(),
    );
    assert!(matches!(report.outcome.status, JobStatus::Cancelled { .. }));
    let store = std::mem::take(&mut report.outcome.store);
    let storage =
        FsCheckpointStorage::new(dir.path().join("checkpoints"), Durability::PageCache).unwrap();
    let latest = registry::latest_completed(&storage)
        .unwrap()
        .expect("a checkpoint");
    let metadata = registry::read_metadata(&storage, latest).unwrap();
    let file = (metadata.stages.iter())
        .flat_map(|stage| &stage.subtasks)
        .find_map(|subtask| subtask.channel_state.clone())
        .expect("the retained checkpoint has channel state");
    Cancelled {
        dir,
        phase,
        store,
        path: file.path,
    }
}

#[test]
fn a_channel_state_file_left_behind_in_a_checkpoint_is_reported_by_the_audit() {
    let Cancelled { dir, path, .. } = cancelled_with_channel_state();
    let root = dir.path().join("checkpoints");
    let storage = FsCheckpointStorage::new(&root, Durability::PageCache).unwrap();
    assert_eq!(registry::audit(&storage).unwrap().problems, Vec::new());
    // A second copy under a name no snapshot gives: what a replaced channel-state write, or
    // one the engine forgot to delete, leaves.
    let stray = format!("{}-stale", path.as_str());
    std::fs::copy(path.under(&root), root.join(&stray)).unwrap();
    let problems = registry::audit(&storage).unwrap().problems;
    let left_behind = problems.iter().any(|problem| {
        matches!(problem, registry::AuditProblem::LeftBehind { path, .. } if *path == stray)
    });
    assert!(left_behind, "{problems:?}");
}

#[test]
fn damaged_channel_state_fails_the_restore_naming_its_file() {
    for verify in [true, false] {
        let Cancelled {
            dir,
            phase,
            store,
            path,
        } = cancelled_with_channel_state();
        let full = path.under(&dir.path().join("checkpoints"));
        let mut bytes = std::fs::read(&full).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x20;
        std::fs::write(&full, bytes).unwrap();
        let mut config = phase.run_config();
        config.first_attempt = 1;
        config.verify_restored_files = verify;
        config.restart = RestartStrategy::None;
        let input = phase.input().unwrap();
        let factory = phase.backend.factory().unwrap();
        let report = crate::support::run_phase(
            &phase.job,
            &input,
            &config,
            factory.as_ref(),
            &mut faultline::fault::FaultSchedule::default(),
            dir.path(),
            store,
        );
        let failure = report.outcome.failures.first().expect("the restore failed");
        let FailureCause::Restore(problem) = &failure.cause else {
            panic!("verify {verify}: {:?}", failure.cause);
        };
        assert_eq!(
            problem.file.as_deref(),
            Some(path.as_str()),
            "verify {verify}: {problem:?}"
        );
    }
}

#[test]
fn unaligned_checkpoints_outside_exactly_once_or_with_several_in_flight_are_refused() {
    let job = pressured_job();
    let input = input_for(&job, 4, 2, 1);
    let refused = [
        CheckpointConfig::every(5)
            .with_mode(CheckpointingMode::AtLeastOnce)
            .with_unaligned(Unaligned::Always),
        CheckpointConfig::every(5)
            .with_concurrency(2, 0)
            .with_unaligned(Unaligned::AfterMs(10)),
    ];
    for checkpoint in refused {
        let problem = checkpoint.problem().expect("refused");
        assert!(problem.contains("unaligned"), "{problem}");
        let config = RunConfig::new(1, checkpoint, RestartStrategy::None);
        let dir = tempfile::tempdir().unwrap();
        let factory = BackendKind::Memory.factory().unwrap();
        let mut storage =
            FsCheckpointStorage::new(dir.path().join("checkpoints"), Durability::PageCache)
                .unwrap();
        let mut faults = faultline::fault::FaultSchedule::default();
        let built = faultline::engine::Runtime::new(
            &job,
            &input,
            config,
            factory.as_ref(),
            &mut storage,
            &mut faults,
            dir.path(),
        );
        assert!(built.is_err());
    }
    let mut text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/scenarios/unaligned-rescale-rocksdb-incremental.toml"),
    )
    .unwrap();
    text = text.replace("mode = \"exactly-once\"", "mode = \"at-least-once\"");
    let error = Scenario::from_toml(&text, "edited").unwrap_err();
    assert!(error.to_string().contains("exactly-once"), "{error}");
}
