//! Method: run seeded campaigns of generated scenarios. On the correct engine a sweep of every
//! backend with every fault kind finds nothing, reaches every kill phase, and replays each case
//! to the same trace hash. With a deliberately broken sink plugged in through the public seam,
//! the campaign must fail, shrink the case to a handful of faults and records, and the scenario
//! file it writes must reproduce the very same failure.

use std::collections::BTreeSet;

use crate::catalogue::commits_in_snapshot;
use faultline::campaign::{
    explore, generate, Case, CaseReport, ExploreConfig, InputSpec, KillMode, Rescale, Scenario,
    Seams, StrategyConfig,
};
use faultline::check::{Property, Violation};
use faultline::fault::{Fault, FaultKind, Phase, Unsynced};
use faultline::state::BackendKind;
use faultline::trace::Event;

fn campaign(
    backends: Vec<BackendKind>,
    cases: u64,
    seed: u64,
    failures: &std::path::Path,
) -> ExploreConfig {
    let mut config = ExploreConfig::default();
    config.cases = cases;
    config.seed = seed;
    config.strategy.backends = backends;
    config.failures_dir = failures.to_path_buf();
    config
}

#[test]
fn a_sweep_with_every_fault_kind_finds_nothing_and_reaches_every_phase() {
    let dir = tempfile::tempdir().unwrap();
    let report = explore(
        &campaign(vec![BackendKind::Memory], 400, 11, dir.path()),
        None,
        &|_, _| {},
    )
    .unwrap();
    assert!(report.failures.is_empty(), "{}", report.summary());
    assert_eq!(report.cases, 400);
    for kind in faultline::campaign::ALL_FAULT_KINDS {
        assert!(
            report.faults.get(kind).copied().unwrap_or(0) > 0,
            "{kind} never fired:\n{}",
            report.summary()
        );
    }
    let phases: BTreeSet<&str> = report.coverage["kill-at-phase"]
        .keys()
        .map(String::as_str)
        .collect();
    for phase in Phase::ALL {
        assert!(
            phases.contains(phase.name()),
            "no kill at {}:\n{}",
            phase.name(),
            report.summary()
        );
    }
    assert!(report.loud_failures > 0, "some corruption failed loudly");
}

#[cfg(feature = "rocksdb")]
#[test]
fn a_sweep_of_the_rocksdb_backends_finds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let backends = vec![BackendKind::RocksDbFull, BackendKind::RocksDbIncremental];
    let report = explore(&campaign(backends, 24, 12, dir.path()), None, &|_, _| {}).unwrap();
    assert!(report.failures.is_empty(), "{}", report.summary());
    assert!(report.restores > 0 && report.checkpoints > 0);
}

#[test]
fn generated_cases_replay_to_the_same_trace_hash_on_every_backend() {
    for backend in BackendKind::all() {
        let mut strategy = StrategyConfig::default();
        strategy.backends = vec![backend];
        for case in 0..4 {
            let (scenario, _) = generate(&strategy, 5, case).unwrap();
            let (again, _) = generate(&strategy, 5, case).unwrap();
            assert_eq!(
                scenario, again,
                "case {case} is a function of seed and index"
            );
            let case = Case::new(scenario, Seams::default());
            let hash = || {
                let dir = tempfile::tempdir().unwrap();
                case.run(dir.path(), &KillMode::Sim).unwrap().trace_hash
            };
            assert_eq!(hash(), hash(), "{backend} {}", case.scenario().name);
        }
    }
}

#[test]
fn a_broken_sink_is_caught_shrunk_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = campaign(vec![BackendKind::Memory], 200, 23, dir.path());
    config.strategy.fault_kinds = vec!["kill-at-phase".into(), "kill".into()];
    config.stop_at_first_failure = true;
    let report = explore(&config, Some(&commits_in_snapshot), &|_, _| {}).unwrap();
    let failure = report
        .failures
        .first()
        .unwrap_or_else(|| panic!("the broken sink was not caught:\n{}", report.summary()));
    assert!(
        failure
            .violations
            .iter()
            .any(|v| v.property == Property::Output),
        "{:?}",
        failure.violations
    );
    assert!(
        failure.faults.1 <= 2,
        "shrunk to {} faults",
        failure.faults.1
    );
    assert!(
        failure.records.1 <= 20,
        "shrunk to {} records",
        failure.records.1
    );
    assert!(failure.faults.1 <= failure.faults.0 && failure.records.1 <= failure.records.0);

    // The scenario file the failure names gives the same failure again, event for event.
    let scenario = Scenario::load(&failure.scenario_file).unwrap();
    assert_eq!(
        failure.replay,
        format!("faultline replay {}", failure.scenario_file.display())
    );
    let mut seams = Seams::default();
    seams.sink = Some(&commits_in_snapshot);
    let run = tempfile::tempdir().unwrap();
    let replayed = Case::new(scenario.clone(), seams)
        .run(run.path(), &KillMode::Sim)
        .unwrap();
    assert!(
        replayed
            .verdict
            .violations
            .iter()
            .any(|v| matches!(v, Violation::OutputDuplicated { .. })),
        "{}",
        replayed.verdict
    );
    assert_eq!(
        replayed.outcome.trace.render(),
        failure.trace,
        "the replay is the shrunk case, bit for bit"
    );

    // A local minimum: without any one of its faults, or any one of its records, it passes.
    assert!(failure.local_minimum);
    let passes = |candidate: Scenario| {
        let run = tempfile::tempdir().unwrap();
        let report = Case::new(candidate, seams)
            .run(run.path(), &KillMode::Sim)
            .unwrap();
        !report
            .verdict
            .violations
            .iter()
            .any(|v| v.property() == Property::Output)
    };
    for index in 0..scenario.faults.len() {
        let mut fewer = scenario.clone();
        fewer.faults.remove(index);
        assert!(passes(fewer), "fails without fault {index}");
    }
    let records = scenario.input_records().unwrap();
    for index in 0..records.len() {
        let mut fewer = records.clone();
        fewer.remove(index);
        let mut candidate = scenario.clone();
        candidate.input = InputSpec::Records { records: fewer };
        assert!(passes(candidate), "fails without record {index}");
    }
}

/// The process-kill mode of `binary`, the suite's own build of the CLI.
fn process_mode() -> KillMode {
    KillMode::Process {
        binary: env!("CARGO_BIN_EXE_faultline").into(),
    }
}

/// Runs `scenario` in both kill modes: the real one must kill children, recover, and tell the
/// simulation's story event for event.
pub(crate) fn assert_both_modes_agree(scenario: &Scenario) -> CaseReport {
    let case = Case::new(scenario.clone(), Seams::default());
    let run = |mode: &KillMode| {
        let dir = tempfile::tempdir().unwrap();
        case.run(dir.path(), mode).unwrap()
    };
    let real = run(&process_mode());
    let name = &scenario.name;
    assert!(real.verdict.passed(), "{name}: {}", real.verdict);
    assert!(real.real_kills > 0, "{name}: no child was killed for real");
    assert!(
        real.outcome
            .restores
            .iter()
            .any(|r| r.checkpoint_id.is_some()),
        "{name}: a restarted child restored a checkpoint"
    );
    let simulated = run(&KillMode::Sim);
    assert_eq!(simulated.real_kills, 0);
    assert_eq!(
        simulated.outcome.trace.render(),
        real.outcome.trace.render(),
        "{name}: the real kills tell the simulated story"
    );
    assert_eq!(simulated.trace_hash, real.trace_hash, "{name}");
    assert_eq!(simulated.outcome.stats, real.outcome.stats, "{name}");
    real
}

#[test]
fn real_process_kills_recover_and_match_the_simulation_on_every_backend() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/scenarios");
    let mut scenario = Scenario::load(&fixtures.join("panic-and-kill-memory.toml")).unwrap();
    for backend in BackendKind::all() {
        scenario.backend = backend;
        scenario.name = format!("panic-and-kill on {backend}");
        assert_both_modes_agree(&scenario);
    }
}

#[test]
fn kills_at_checkpoint_phases_and_inside_writes_are_real_kills_too() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/scenarios");
    let mut scenario =
        Scenario::load(&fixtures.join("kill-phases-rocksdb-incremental.toml")).unwrap();
    scenario.backend = BackendKind::Memory;
    scenario.restart = faultline::job::RestartStrategy::FixedDelay {
        attempts: 10,
        delay_ms: 10,
    };
    // A kill at every checkpoint phase, one checkpoint after another, and a machine crash
    // after the 100th write step.
    // (The scenario's checkpoints are aligned: they write no channel state to kill inside.)
    scenario.faults = Phase::ALL
        .iter()
        .filter(|phase| **phase != Phase::ChannelStateWrite)
        .zip(1..)
        .map(|(&phase, checkpoint)| Fault::KillAt { phase, checkpoint })
        .chain([Fault::Crash {
            after_step: 100,
            unsynced: Unsynced::Torn,
        }])
        .collect();
    let report = assert_both_modes_agree(&scenario);
    let fired: Vec<FaultKind> = report.fired().iter().map(|(kind, _)| *kind).collect();
    assert_eq!(
        fired.len(),
        scenario.faults.len(),
        "every fault fired: {fired:?}"
    );
    assert!(fired.contains(&FaultKind::Crash), "{fired:?}");
    assert_eq!(
        report.real_kills as usize,
        fired.len(),
        "each kill killed a child"
    );
}

#[test]
fn a_rescaled_case_runs_both_phases_under_real_kills() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/scenarios");
    let mut scenario = Scenario::load(&fixtures.join("panic-and-kill-memory.toml")).unwrap();
    scenario.name = "rescaled under real kills".into();
    // Killed in each phase: step 30 falls before the stop-with-savepoint at 40 ms, step 140
    // after it.
    scenario.faults = vec![Fault::Kill { step: 30 }, Fault::Kill { step: 140 }];
    scenario.rescale = Some(Rescale {
        at_ms: 40,
        parallelism: vec![3, 1],
        from: faultline::campaign::RescaleFrom::Savepoint,
        restore_mode: faultline::state::RestoreMode::NoClaim,
    });
    let report = assert_both_modes_agree(&scenario);
    assert_eq!(report.real_kills, 2, "a child died in each phase");
    let started: Vec<Vec<(String, u16)>> = report
        .outcome
        .trace
        .events()
        .iter()
        .filter_map(|stamped| match &stamped.event {
            Event::JobStarted(started) => Some(started.stages.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(started.len(), 2, "the job ran, then resumed rescaled");
    let parallelism =
        |stages: &[(String, u16)]| -> Vec<u16> { stages[1..3].iter().map(|(_, p)| *p).collect() };
    assert_eq!(parallelism(&started[0]), vec![2, 2]);
    assert_eq!(
        parallelism(&started[1]),
        vec![3, 1],
        "the second phase ran at the new parallelism"
    );
}

#[test]
fn a_process_kill_campaign_finds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = campaign(vec![BackendKind::Memory], 12, 31, dir.path());
    config.strategy.fault_kinds = vec!["kill".into(), "panic".into(), "drop-notification".into()];
    config.kill_mode = process_mode();
    let report = explore(&config, None, &|_, _| {}).unwrap();
    assert!(report.failures.is_empty(), "{}", report.summary());
    assert!(
        report
            .coverage
            .get("kill")
            .is_some_and(|points| points.contains_key("step")),
        "{}",
        report.summary()
    );
}

#[test]
fn a_harness_failure_is_kept_under_the_target_directory_with_a_real_replay_command() {
    use faultline::harness::Harness;
    let harness = Harness::new()
        .seed(21)
        .backends(vec![BackendKind::Memory])
        .faults(&["kill-at-phase", "kill"])
        .sink(&commits_in_snapshot);
    // The test reads the message `run` fails a test with.
    #[allow(clippy::disallowed_methods)]
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| harness.run()))
        .expect_err("the broken sink is caught");
    let message = panic.downcast_ref::<String>().expect("a formatted panic");
    let file = message
        .lines()
        .find_map(|line| line.trim().strip_prefix("scenario: "))
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| panic!("no scenario line in\n{message}"));
    // The file outlives the test, in the target directory this test binary was built in.
    let exe = std::env::current_exe().unwrap();
    let target = exe
        .ancestors()
        .find(|a| a.ends_with("deps"))
        .and_then(|deps| deps.parent()?.parent())
        .unwrap();
    assert_eq!(
        file.parent(),
        Some(target.join("faultline-failures").as_path())
    );
    assert!(file.exists(), "{}", file.display());
    // The replay line is a command naming this very test.
    let test = std::thread::current().name().unwrap().to_string();
    let command = format!(
        "replay: FAULTLINE_REPLAY={} cargo nextest run -E 'test(={test})'",
        file.display()
    );
    assert!(message.contains(&command), "{command}\nnot in\n{message}");
    assert!(message.contains("failing case(s) in"), "{message}");
    // And the file replays the failure with the test's seams.
    let replayed = harness.replay(&file).unwrap();
    assert!(!replayed.verdict.passed(), "{}", replayed.verdict);
    std::fs::remove_file(&file).unwrap();
}
