//! Method: run the `faultline` binary as a user would: the demos succeed with the story they
//! promise (the recovery and windows stories are insta snapshots; wall time is left out
//! because it varies),
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
fn demo_windows_story_snapshot() {
    let report = demo::run(DemoKind::Windows, &DemoOptions::defaults(DemoKind::Windows)).unwrap();
    assert!(report.ok, "{}", report.text);
    assert!(report.text.contains("restore from chk-"), "{}", report.text);
    // tx1030 comes half a minute after its window closed.
    assert!(report.text.contains("1 late: ok"), "{}", report.text);
    assert!(!report.text.contains("DOES NOT ADD UP"), "{}", report.text);
    insta::assert_snapshot!("demo_windows", report.text);
}

#[test]
fn demo_windows_refuses_input_without_event_times() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("untimed.csv");
    std::fs::write(&csv, "transaction_id,account,amount\ntx1,a,1.5\n").unwrap();
    let output = faultline(&["demo", "windows", "--input", csv.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("tx1 has no event time") && stderr.contains("untimed.csv"),
        "{stderr}"
    );
}

#[test]
fn the_binary_runs_every_demo() {
    for which in ["recovery", "stateful", "windows"] {
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
        (vec!["explore", "--modes", "sometimes"], "at-least-once"),
    ] {
        let output = faultline(&args);
        assert!(!output.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn explore_keeps_to_one_checkpointing_mode_and_replay_finds_the_same_case() {
    let dir = tempfile::tempdir().unwrap();
    let failures = dir.path().join("failures");
    let failures = failures.to_str().unwrap();
    let explored = faultline(&[
        "explore",
        "--cases",
        "30",
        "--backend",
        "memory",
        "--modes",
        "at-least-once",
        "--failures-dir",
        failures,
    ]);
    assert!(
        explored.status.success(),
        "{}",
        String::from_utf8_lossy(&explored.stderr)
    );
    let replay = |modes: &str| {
        let output = faultline(&[
            "replay",
            "--seed",
            "1",
            "--case",
            "7",
            "--backend",
            "memory",
            "--modes",
            modes,
        ]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    // The trace's first line names the mode the case ran in.
    let started = |trace: String| {
        let line = trace.lines().find(|l| l.contains(" started: seed "));
        line.map(str::to_string).unwrap_or_default()
    };
    let at_least_once = started(replay("at-least-once"));
    assert!(at_least_once.contains("(at-least-once)"), "{at_least_once}");
    let exactly_once = started(replay("exactly-once"));
    assert!(exactly_once.contains("(exactly-once)"), "{exactly_once}");
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

#[test]
fn inspect_describes_a_checkpoint_and_names_a_damaged_file() {
    let job = crate::support::linear_job();
    let input = crate::support::input_for(&job, 30, 4, 2);
    let (report, dir) = crate::support::run(
        &job,
        &input,
        &crate::support::config(1, 10),
        &mut Default::default(),
    );
    let id = *report.outcome.retained_checkpoints.last().unwrap();
    let checkpoint = dir.path().join(format!("checkpoints/chk-{id}"));
    let output = faultline(&["inspect", checkpoint.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    for expected in [
        &format!("checkpoint chk-{id}"),
        "format: canonical",
        "sum.sum (Value)",
        "sum[0]",
        "every file present and intact",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing from:\n{stdout}"
        );
    }
    let state_file = checkpoint.join("sum-0.kv");
    let mut bytes = std::fs::read(&state_file).unwrap();
    bytes.truncate(bytes.len() - 3);
    std::fs::write(&state_file, bytes).unwrap();
    let output = faultline(&["inspect", checkpoint.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("PROBLEM chk-{id}/sum-0.kv")),
        "{stdout}"
    );
    let output = faultline(&["inspect", dir.path().to_str().unwrap()]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "a directory without _metadata is an error"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("_metadata"));
}

#[test]
fn savepoint_take_then_resume_on_other_backends_and_parallelism() {
    let dir = tempfile::tempdir().unwrap();
    let savepoint = dir.path().join("sp");
    let sp = savepoint.to_str().unwrap();
    let output = faultline(&["savepoint", "take", "--out", sp, "--at-ms", "9000"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("savepoint chk-") && stdout.contains("every file present and intact"),
        "{stdout}"
    );
    let again = faultline(&["savepoint", "take", "--out", sp]);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already exists"),
        "savepoints are never overwritten"
    );
    for backend in faultline::state::BackendKind::all() {
        let output = faultline(&[
            "savepoint",
            "resume",
            sp,
            "--backend",
            backend.name(),
            "--parallelism",
            "3",
        ]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{backend}: {stdout}");
        assert!(
            stdout.contains("every property held") && stdout.contains("restore from"),
            "{backend}: {stdout}"
        );
    }
}

#[test]
fn bench_checkpoints_writes_a_table_json_and_chart() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench");
    let output = faultline(&[
        "bench",
        "checkpoints",
        "--keys",
        "2000",
        "--checkpoints",
        "4",
        "--changed-fraction",
        "0.05",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("bench.json")).unwrap()).unwrap();
    let backends = report["backends"].as_array().unwrap();
    assert_eq!(backends.len(), faultline::state::BackendKind::all().len());
    for backend in backends {
        assert_eq!(backend["checkpoints"].as_array().unwrap().len(), 4);
        assert_eq!(backend["restored_entries"], 2000, "{}", backend["backend"]);
    }
    let svg = std::fs::read_to_string(out.join("bench.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("bytes written per checkpoint"),
        "an SVG chart"
    );
    let output = faultline(&["bench", "checkpoints", "--changed-fraction", "2"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("outside 0..=1"));
}

#[test]
fn bench_with_async_upload_restores_the_same_state_as_synchronous() {
    let dir = tempfile::tempdir().unwrap();
    let mut reports = Vec::new();
    for upload in [None, Some("--async-upload")] {
        let out = dir.path().join(upload.unwrap_or("sync"));
        let mut args = vec![
            "bench",
            "checkpoints",
            "--keys",
            "3000",
            "--checkpoints",
            "6",
            "--changed-fraction",
            "0.2",
            "--out",
            out.to_str().unwrap(),
        ];
        // The asynchronous run also syncs every file, as durable storage must.
        args.extend(upload);
        if upload.is_some() {
            args.push("--fsync");
        }
        let output = faultline(&args);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            stdout.contains(if upload.is_some() {
                "upload asynchronous"
            } else {
                "upload synchronous"
            }),
            "{stdout}"
        );
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("bench.json")).unwrap())
                .unwrap();
        reports.push(report);
    }
    for (sync, asynchronous) in reports[0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .zip(reports[1]["backends"].as_array().unwrap())
    {
        let name = &sync["backend"];
        // Every checkpoint completed, in order, and the last one restores every key: no shared
        // file it needs was deleted while an upload was in flight.
        let ids = |b: &serde_json::Value| -> Vec<u64> {
            b["checkpoints"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["checkpoint"].as_u64().unwrap())
                .collect()
        };
        assert_eq!(ids(asynchronous), (1..=6).collect::<Vec<_>>(), "{name}");
        assert_eq!(ids(sync), ids(asynchronous), "{name}");
        assert_eq!(asynchronous["restored_entries"], 3000, "{name}");
        assert_eq!(sync["restored_entries"], 3000, "{name}");
    }
}

#[test]
fn the_demos_run_on_every_backend() {
    for backend in faultline::state::BackendKind::all() {
        for kind in [DemoKind::Recovery, DemoKind::Stateful, DemoKind::Windows] {
            let mut options = DemoOptions::defaults(kind);
            options.backend = backend;
            let report = demo::run(kind, &options).unwrap();
            assert!(report.ok, "{backend} {kind:?}:\n{}", report.text);
            assert!(
                report.text.contains(&format!("backend {backend}")),
                "{}",
                report.text
            );
        }
    }
}
