//! Event-time tumbling windows: generated and scenario jobs with a window as the last stage
//! pass under panics and kills on every backend, their results balanced against the records
//! each window received, late records on the side output; faults in time (a panic in
//! `on_timer`, a kill between firings, a kill as a watermark advances) fire where they say and
//! the windows recover; an engine that forgets restored timers (windows never fire) is caught,
//! after a kill at a step or between firings, by the state left and the records unaccounted.

use faultline::campaign::{Case, CaseReport, KillMode, Scenario, Seams};
use faultline::check::{Property, Violation, WindowViolation};
use faultline::state::BackendKind;

fn scenario(backend: BackendKind, aggregate: &str, faults: &str) -> Scenario {
    let text = format!(
        r#"
name = "windows"
seed = 7
backend = "{}"
checkpoint = {{ interval_ms = 5 }}
restart = {{ kind = "fixed-delay", attempts = 3, delay_ms = 10 }}
faults = [{faults}]

[job]
name = "windows"
source = {{ parallelism = 2, emit_ms = 1, watermarks = {{ out_of_orderness_ms = 200, interval_ms = 5 }} }}
sink = {{ kind = "two-phase-commit" }}
stages = [{{ name = "window", op = {{ kind = "tumbling-window", size_ms = 1000, aggregate = "{aggregate}" }}, parallelism = 2 }}]

[input]
kind = "generated"
records = 80
keys = 4
min_value = 0
max_value = 100
"#,
        backend.name()
    );
    Scenario::from_toml(&text, "windows test").expect("the scenario parses")
}

fn run(scenario: Scenario) -> CaseReport {
    let dir = tempfile::tempdir().expect("a temp dir");
    Case::new(scenario, Seams::default())
        .run(dir.path(), &KillMode::Sim)
        .expect("the case runs")
}

fn window_violations(report: &CaseReport) -> Vec<&WindowViolation> {
    (report.verdict.violations.iter())
        .filter_map(|v| match v {
            Violation::Window(w) => Some(w),
            _ => None,
        })
        .collect()
}

#[test]
fn windows_recover_from_a_kill_and_a_panic_on_every_backend() {
    for backend in BackendKind::all() {
        for aggregate in ["sum", "count", "max"] {
            let faults = r#"{ kind = "kill", step = 60 }, { kind = "panic", stage = "window", subtask = 1, attempt = 1, record_index = 12 }"#;
            let report = run(scenario(backend, aggregate, faults));
            assert!(
                report.verdict.passed(),
                "{backend:?} {aggregate}: {}",
                report.verdict
            );
            assert!(
                !report.outcome.restores.is_empty(),
                "{backend:?}: the faults restarted the job"
            );
            let windows = report
                .verdict
                .notes
                .iter()
                .find(|n| matches!(n, faultline::check::Note::Windows { .. }));
            assert!(
                matches!(windows, Some(faultline::check::Note::Windows { windows, results, exactly_once: true, .. }) if *windows > 10 && *results >= *windows),
                "{backend:?}: {windows:?}"
            );
        }
    }
}

#[test]
fn an_engine_that_forgets_restored_timers_leaves_windows_unfired_and_is_caught() {
    let mut sabotaged = scenario(
        BackendKind::Memory,
        "sum",
        r#"{ kind = "kill", step = 60 }"#,
    );
    sabotaged.sabotage.timers_forgotten_on_restore = true;
    let report = run(sabotaged);
    let found = window_violations(&report);
    assert!(
        found
            .iter()
            .any(|v| matches!(v, WindowViolation::StateLeft { .. })),
        "the restored windows were never cleaned up: {}",
        report.verdict
    );
    assert!(
        found.iter().any(|v| matches!(
            v,
            WindowViolation::Unbalanced { .. } | WindowViolation::Uncovered { .. }
        )),
        "the restored windows' records are unaccounted for: {}",
        report.verdict
    );
    let properties: Vec<Property> = report
        .verdict
        .violations
        .iter()
        .map(Violation::property)
        .collect();
    assert!(properties.contains(&Property::State) && properties.contains(&Property::Output));
}

#[test]
fn a_window_that_is_not_the_last_stage_or_has_no_event_time_is_refused() {
    let mut no_time = scenario(BackendKind::Memory, "sum", "");
    no_time.job.source.watermarks = None;
    let error = no_time.job.validate().expect_err("refused");
    assert!(error.to_string().contains("needs event time"), "{error}");
    let mut not_last = scenario(BackendKind::Memory, "sum", "");
    let mut after = not_last.job.stages[0].clone();
    after.name = "sum".into();
    after.op = faultline::job::OperatorSpec::Sum;
    not_last.job.stages.push(after);
    let error = not_last.job.validate().expect_err("refused");
    assert!(error.to_string().contains("last stage"), "{error}");
}

#[test]
fn faults_in_time_fire_where_they_say_and_windows_recover_on_every_backend() {
    use faultline::fault::{FaultKind, FaultSite};
    let faults = r#"{ kind = "panic-in-timer", stage = "window", subtask = 0, attempt = 0, firing = 2 },
        { kind = "kill-in-timers", stage = "window", subtask = 1, attempt = 1, firing = 1 },
        { kind = "kill-at-watermark", stage = "window", subtask = 0, attempt = 2, advance = 3 }"#;
    for backend in BackendKind::all() {
        let report = run(scenario(backend, "sum", faults));
        assert!(report.verdict.passed(), "{backend:?}: {}", report.verdict);
        assert_eq!(
            report.fired(),
            [
                (FaultKind::PanicInTimer, FaultSite::Timer),
                (FaultKind::KillInTimers, FaultSite::TimerFired),
                (FaultKind::KillAtWatermark, FaultSite::Watermark),
            ],
            "{backend:?}"
        );
        assert_eq!(report.outcome.restores.len(), 3, "{backend:?}");
    }
}

#[test]
fn a_kill_while_timers_fire_exposes_an_engine_that_forgets_restored_timers() {
    let faults =
        r#"{ kind = "kill-in-timers", stage = "window", subtask = 0, attempt = 0, firing = 3 }"#;
    let honest = run(scenario(BackendKind::Memory, "count", faults));
    assert!(honest.verdict.passed(), "{}", honest.verdict);
    let mut sabotaged = scenario(BackendKind::Memory, "count", faults);
    sabotaged.sabotage.timers_forgotten_on_restore = true;
    let report = run(sabotaged);
    assert!(
        window_violations(&report)
            .iter()
            .any(|v| matches!(v, WindowViolation::StateLeft { .. })),
        "{}",
        report.verdict
    );
}

#[test]
fn a_scenario_with_a_clock_jump_past_a_year_is_refused() {
    let text = scenario(BackendKind::Memory, "sum", "").to_toml().replace(
        "faults = []",
        r#"faults = [{ kind = "clock-jump", attempt = 1, jump_ms = 100000000000 }]"#,
    );
    assert!(text.contains("clock-jump"), "the fault went in: {text}");
    let error = Scenario::from_toml(&text, "jump.toml").expect_err("refused");
    let message = error.to_string();
    assert!(
        message.contains("jump.toml") && message.contains("clock-jump of 100000000000 ms"),
        "{message}"
    );
}
