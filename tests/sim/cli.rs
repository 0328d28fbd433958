//! Method: run the `faultline` binary as a user would: the demos succeed with the story they
//! promise (the recovery story is an insta snapshot; wall time is left out because it varies),
//! and bad flags or a malformed CSV fail with an error that says what and where.

use std::process::Command;

use faultline::cli::demo::{self, DemoKind, DemoOptions};

fn faultline(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(args)
        .output()
        .expect("the binary runs")
}

#[test]
fn demo_recovery_story_snapshot() {
    let report = demo::run(
        DemoKind::Recovery,
        &DemoOptions::defaults(DemoKind::Recovery),
    )
    .unwrap();
    assert!(report.ok);
    insta::assert_snapshot!("demo_recovery", report.text);
}

#[test]
fn demo_stateful_restores_from_a_checkpoint() {
    let report = demo::run(
        DemoKind::Stateful,
        &DemoOptions::defaults(DemoKind::Stateful),
    )
    .unwrap();
    assert!(report.ok, "{}", report.text);
    assert!(report.text.contains("restore from chk-"), "{}", report.text);
    assert!(
        report.text.contains("every property held"),
        "{}",
        report.text
    );
}

#[test]
fn the_binary_runs_both_demos() {
    for which in ["recovery", "stateful"] {
        let output = faultline(&["demo", which]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "demo {which}: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains("every property held"), "{stdout}");
        assert!(stdout.contains("wall time"), "{stdout}");
        assert!(
            stdout.contains(&format!("replay: faultline demo {which} --seed 1")),
            "{stdout}"
        );
    }
    let output = faultline(&[
        "demo",
        "stateful",
        "--sink",
        "two-phase",
        "--seed",
        "9",
        "--restart",
        "exponential-delay:100:1000:2:60000:0.2",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn bad_flags_are_rejected_with_a_reason() {
    for (args, says) in [
        (vec!["demo", "recovery", "--fail-at", "0"], "--fail-at"),
        (
            vec!["demo", "recovery", "--restart", "sometimes"],
            "unknown strategy",
        ),
        (
            vec!["demo", "recovery", "--interval-ms", "x"],
            "--interval-ms",
        ),
        (vec!["demo", "sideways"], "sideways"),
    ] {
        let output = faultline(&args);
        assert!(!output.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn a_malformed_csv_names_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.csv");
    std::fs::write(
        &path,
        "transaction_id,account,amount\ntx1,a,1.0\ntx2,b,12,5\ntx3,c,oops\n",
    )
    .unwrap();
    let output = faultline(&["demo", "recovery", "--input", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 3: 4 fields, expected 3"), "{stderr}");

    std::fs::write(
        &path,
        "transaction_id,account,amount\ntx1,a,1.0\ntx3,c,oops\n",
    )
    .unwrap();
    let output = faultline(&["demo", "recovery", "--input", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 3, column amount"), "{stderr}");

    let output = faultline(&[
        "demo",
        "recovery",
        "--input",
        dir.path().join("absent.csv").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot read") && stderr.contains("absent.csv"),
        "{stderr}"
    );
}
