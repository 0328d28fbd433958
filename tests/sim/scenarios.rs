//! Method: run every named scenario in `fixtures/scenarios/` (each fault kind, each backend),
//! require the oracle to pass and every listed fault to fire, and keep each recovery trace as
//! an insta snapshot. A change to recovery shows up as a readable diff of the story.

use faultline::campaign::{Case, KillMode, Scenario, Seams};
use faultline::fault::FaultKind;

fn scenario_files() -> Vec<std::path::PathBuf> {
    toml_files("fixtures/scenarios")
}

/// The `.toml` files of a folder of the crate, sorted.
fn toml_files(folder: &str) -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(folder);
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn named_scenarios_recover_and_their_traces_are_snapshots() {
    let files = scenario_files();
    assert!(files.len() >= 6, "the named scenarios are present");
    let mut backends = std::collections::BTreeSet::new();
    for file in files {
        let scenario = Scenario::load(&file).unwrap();
        if scenario.backend.factory().is_err() {
            continue;
        }
        backends.insert(scenario.backend);
        let dir = tempfile::tempdir().unwrap();
        let report = Case::new(scenario.clone(), Seams::default())
            .run(dir.path(), &KillMode::Sim)
            .unwrap();
        let fired = report.fired();
        assert!(
            report.verdict.passed(),
            "{}: {}",
            scenario.name,
            report.verdict
        );
        // Every listed fault fires: the once-only kinds exactly once each; a notification fault
        // hits every task it reaches.
        let once = |kind: FaultKind| {
            !matches!(
                kind,
                FaultKind::DropNotification | FaultKind::DelayNotification
            )
        };
        let fired_once = fired.iter().filter(|(kind, _)| once(*kind)).count();
        let listed_once = scenario.faults.iter().filter(|f| once(f.kind())).count();
        assert_eq!(fired_once, listed_once, "{}: {fired:?}", scenario.name);
        for fault in &scenario.faults {
            assert!(
                fired.iter().any(|(kind, _)| *kind == fault.kind()),
                "{}: {fault:?} never fired",
                scenario.name
            );
        }
        insta::assert_snapshot!(
            format!("scenario_{}", scenario.name),
            report.outcome.trace.render()
        );
    }
    assert_eq!(
        backends.len(),
        faultline::state::BackendKind::all().len(),
        "every backend has a scenario"
    );
}

#[test]
fn replay_checks_determinism_and_rejects_a_malformed_scenario() {
    let binary = env!("CARGO_BIN_EXE_faultline");
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/scenarios/notifications-memory.toml");
    let output = std::process::Command::new(binary)
        .arg("replay")
        .arg(&file)
        .arg("--check-determinism")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("determinism: two runs, identical traces"),
        "{stdout}"
    );
    assert!(stdout.contains("notify chk-1 to sink[0]: lost"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "name = \"x\"\nseed = \"not a number\"\n").unwrap();
    let output = std::process::Command::new(binary)
        .arg("replay")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.toml") && stderr.contains("line 2"),
        "{stderr}"
    );
}

#[test]
fn explore_shards_merge_into_the_whole_campaign() {
    let binary = env!("CARGO_BIN_EXE_faultline");
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let output = std::process::Command::new(binary)
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let explore = |args: &str| run(&args.split_whitespace().collect::<Vec<_>>());
    explore("explore --cases 30 --backend memory --shard 0/2 --json a.json");
    explore("explore --cases 30 --backend memory --shard 1/2 --json b.json --jobs 2");
    let whole = explore("explore --cases 30 --backend memory --json whole.json");
    let merged = explore("explore --merge a.json b.json --json merged.json");
    assert!(
        whole.contains("coverage") && merged.starts_with("30 cases"),
        "{merged}"
    );
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.path().join(name)).unwrap()).unwrap()
    };
    let (whole, merged) = (read("whole.json"), read("merged.json"));
    for field in [
        "cases",
        "faults",
        "coverage",
        "restores",
        "checkpoints",
        "loud_failures",
    ] {
        assert_eq!(
            whole[field], merged[field],
            "{field}: shards add up to the whole campaign"
        );
    }
}

#[test]
fn explore_refuses_a_bad_shard_or_fault_kind() {
    let binary = env!("CARGO_BIN_EXE_faultline");
    for (args, says) in [
        (vec!["explore", "--shard", "2/2"], "needs 0 <= k < n"),
        (
            vec!["explore", "--faults", "gremlins"],
            "unknown fault kind",
        ),
    ] {
        let output = std::process::Command::new(binary)
            .args(&args)
            .output()
            .unwrap();
        assert!(!output.status.success());
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(says),
            "{args:?}"
        );
    }
}

#[test]
fn campaign_regressions_replay_and_pass() {
    // Shrunk failures that campaigns found stay here for good: each must now pass the oracle
    // (for corruption, by failing loudly).
    let files = toml_files("proptest-regressions");
    assert!(!files.is_empty());
    for file in files {
        let scenario = Scenario::load(&file).unwrap();
        let run = tempfile::tempdir().unwrap();
        let report = Case::new(scenario, Seams::default())
            .run(run.path(), &KillMode::Sim)
            .unwrap();
        assert!(
            report.verdict.passed(),
            "{}: {}",
            file.display(),
            report.verdict
        );
    }
}
