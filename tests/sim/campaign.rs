//! Method: run seeded campaigns of generated scenarios. On the correct engine a sweep of every
//! backend with every fault kind finds nothing, reaches every kill phase, and replays each case
//! to the same trace hash. With a deliberately broken sink plugged in through the public seam,
//! the campaign must fail, shrink the case to a handful of faults and records, and the scenario
//! file it writes must reproduce the very same failure.

use std::collections::BTreeSet;

use crate::catalogue::commits_in_snapshot;
use faultline::campaign::{explore, generate, ExploreConfig, Scenario, StrategyConfig};
use faultline::fault::Phase;
use faultline::state::BackendKind;

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
            let hash = || {
                let dir = tempfile::tempdir().unwrap();
                scenario.run(dir.path(), None).unwrap().0.trace_hash
            };
            assert_eq!(hash(), hash(), "{backend} case {case}");
        }
    }
}

#[test]
fn a_broken_sink_is_caught_shrunk_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = campaign(vec![BackendKind::Memory], 200, 21, dir.path());
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
            .any(|v| v.contains("[output] output duplicated")),
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

    // The replay line names a scenario file; running it again gives the same failure, event
    // for event.
    let file = failure
        .replay
        .strip_prefix("faultline replay ")
        .expect("a replay command");
    let scenario = Scenario::load(std::path::Path::new(file)).unwrap();
    let run = tempfile::tempdir().unwrap();
    let (replayed, _) = scenario
        .run(run.path(), Some(&commits_in_snapshot))
        .unwrap();
    assert!(!replayed.verdict.passed());
    assert_eq!(
        replayed.outcome.trace.render(),
        failure.trace,
        "the replay is the shrunk case, bit for bit"
    );
}

#[test]
fn real_process_kills_recover_and_replay_on_every_backend() {
    // The child aborts itself (SIGABRT) at the scenario's kill step; the parent restarts it on the
    // same directories, and the restarted child's trace continues the same story.
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_faultline"));
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/scenarios");
    let mut scenario = Scenario::load(&fixtures.join("panic-and-kill-memory.toml")).unwrap();
    for backend in BackendKind::all() {
        scenario.backend = backend;
        let run = || {
            let dir = tempfile::tempdir().unwrap();
            faultline::campaign::run_with_process_kills(&scenario, dir.path(), binary)
                .unwrap()
                .0
        };
        let first = run();
        assert!(first.verdict.passed(), "{backend}: {}", first.verdict);
        let trace = first.outcome.trace.render();
        assert!(
            trace.contains("(real SIGABRT"),
            "{backend}: a real abort happened:\n{trace}"
        );
        assert!(
            trace.contains("restore from chk-"),
            "{backend}: the restarted child restored:\n{trace}"
        );
        assert_eq!(
            first.trace_hash,
            run().trace_hash,
            "{backend}: process mode replays bit for bit"
        );
    }
}

#[test]
fn a_process_kill_campaign_finds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = campaign(vec![BackendKind::Memory], 12, 31, dir.path());
    config.strategy.fault_kinds = vec!["kill".into(), "panic".into(), "drop-notification".into()];
    config.kill_mode = faultline::campaign::KillMode::Process {
        binary: env!("CARGO_BIN_EXE_faultline").into(),
    };
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
