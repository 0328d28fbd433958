//! Windows: generated and scenario jobs with a tumbling or sliding window (with
//! allowed lateness) as the last stage pass under panics, kills and faults in time on every
//! backend, judged along the events by the window model and, for tumbling windows, balanced
//! against the records each window received; edited real traces (a result changed, a firing
//! dropped or repeated, a record wrongly late) are caught; an engine that forgets restored
//! timers (windows never fire) is caught, after a kill at a step or between firings, by the
//! state left and the records unaccounted. Processing-time tumbling windows fire by the
//! clock, overdue ones once after a restore, judged along the events, an edited result caught.

use faultline::campaign::{Case, CaseReport, KillMode, Scenario, Seams};
use faultline::check::{Note, Property, Violation, WindowViolation};
use faultline::state::BackendKind;
use faultline::trace::Event;

fn scenario(backend: BackendKind, aggregate: &str, faults: &str) -> Scenario {
    shaped(
        backend,
        &format!(r#"kind = "tumbling-window", size_ms = 1000, aggregate = "{aggregate}""#),
        faults,
    )
}

/// The windows job with the window `op` (the fields of its spec) and `faults`.
fn shaped(backend: BackendKind, op: &str, faults: &str) -> Scenario {
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
stages = [{{ name = "window", op = {{ {op} }}, parallelism = 2 }}]

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

fn sliding(backend: BackendKind, faults: &str) -> Scenario {
    let op = r#"kind = "sliding-window", size_ms = 1000, slide_ms = 250, aggregate = "sum", allowed_lateness_ms = 300"#;
    shaped(backend, op, faults)
}

/// The events of `report`'s trace.
fn events_of(report: &CaseReport) -> Vec<Event> {
    (report.outcome.trace.events().iter())
        .map(|s| s.event.clone())
        .collect()
}

/// `report` passed, judged along its events with `restores` restores compared.
fn assert_passed_along_the_events(report: &CaseReport, backend: BackendKind, restores: usize) {
    assert!(report.verdict.passed(), "{backend:?}: {}", report.verdict);
    assert!(
        (report.verdict.notes.iter())
            .any(|n| matches!(n, Note::JudgedByLineage { restores: r, .. } if *r == restores)),
        "{backend:?}: {:?}",
        report.verdict.notes
    );
}

#[test]
fn sliding_windows_with_allowed_lateness_are_judged_exactly_along_the_events() {
    let faults = r#"{ kind = "kill", step = 70 }, { kind = "panic-in-timer", stage = "window", subtask = 1, attempt = 1, firing = 3 }"#;
    for backend in BackendKind::all() {
        let report = run(sliding(backend, faults));
        assert_passed_along_the_events(&report, backend, 2);
        let visible = report.outcome.store.visible();
        // Each record falls in four windows; some fire again within the lateness.
        assert!(visible.len() > 80, "{backend:?}: {} results", visible.len());
        assert!(
            visible.iter().any(|r| r.id.contains('+')),
            "{backend:?}: a window fired again for a record within its lateness"
        );
    }
}

#[test]
fn the_window_model_catches_a_wrong_result_a_lost_firing_and_a_firing_it_never_set() {
    let scenario = sliding(BackendKind::Memory, "");
    let honest = run(scenario.clone());
    assert!(honest.verdict.passed(), "{}", honest.verdict);
    let events = events_of(&honest);
    let firing = (events.iter())
        .position(|e| matches!(e, Event::TimerFired { outputs, .. } if !outputs.is_empty()))
        .expect("a window fired");
    let wrong = crate::time::judged_with(&scenario, run(scenario.clone()), |events| {
        if let Event::TimerFired { outputs, .. } = &mut events[firing] {
            let wrong = faultline::job::Transaction {
                account: "k0".into(),
                amount_cents: 123_456,
            };
            outputs[0].value = faultline::job::Datum::of(&wrong).unwrap();
        }
    });
    assert!(
        wrong
            .iter()
            .any(|v| matches!(v, Violation::EmissionUnexpected { .. })),
        "{wrong:?}"
    );
    let lost = crate::time::judged_with(&scenario, run(scenario.clone()), |events| {
        events.remove(firing);
    });
    assert!(
        lost.iter()
            .any(|v| matches!(v, Violation::TimerNeverFired { .. })),
        "{lost:?}"
    );
    let twice = crate::time::judged_with(&scenario, run(scenario.clone()), |events| {
        let again = events[firing].clone();
        events.insert(firing + 1, again);
    });
    assert!(
        twice
            .iter()
            .any(|v| matches!(v, Violation::TimerUnexpected { .. })),
        "{twice:?}"
    );
}

#[test]
fn the_window_model_catches_a_record_wrongly_sent_to_the_late_output() {
    let scenario = sliding(BackendKind::Memory, "");
    let honest = run(scenario.clone());
    let taken = (events_of(&honest).iter())
        .position(|e| matches!(e, Event::RecordProcessed { task, outputs, .. } if task.starts_with("window") && outputs.is_empty()))
        .expect("a window took a record in");
    let violations = crate::time::judged_with(&scenario, honest, |events| {
        if let Event::RecordProcessed {
            record, outputs, ..
        } = &mut events[taken]
        {
            outputs.push(faultline::trace::Emission {
                value: record.value.clone(),
                side: Some("late".into()),
            });
        }
    });
    assert!(
        (violations.iter()).any(|v| matches!(v, Violation::EmissionUnexpected { .. })),
        "{violations:?}"
    );
}

#[test]
fn a_rescaled_window_job_restored_twice_from_the_first_phases_savepoint_passes() {
    // Found by a campaign: the second restore from a savepoint of the phase before put back
    // cells naming that phase's subtasks, and the lineage lost the keys no later record came
    // for.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/regressions/rescaled-window-restored-twice.toml"
    );
    let scenario = Scenario::load(std::path::Path::new(path)).expect("the scenario loads");
    let report = run(scenario);
    assert!(report.verdict.passed(), "{}", report.verdict);
    let from_savepoint = (report.outcome.restores.iter())
        .filter(|r| r.checkpoint_id == Some(3))
        .count();
    assert_eq!(from_savepoint, 2, "both restores of the second phase");
}

fn sessions(backend: BackendKind, faults: &str) -> Scenario {
    let op =
        r#"kind = "session-window", gap_ms = 300, aggregate = "count", allowed_lateness_ms = 200"#;
    shaped(backend, op, faults)
}

#[test]
fn session_windows_merge_and_recover_on_every_backend_judged_along_the_events() {
    let faults = r#"{ kind = "kill", step = 70 }, { kind = "kill-in-timers", stage = "window", subtask = 0, attempt = 1, firing = 2 }"#;
    for backend in BackendKind::all() {
        let report = run(sessions(backend, faults));
        assert_passed_along_the_events(&report, backend, 2);
        let counted: i64 = (report.outcome.store.visible().iter())
            .filter(|r| r.side.is_none() && !r.id.contains('+'))
            .map(|r| {
                r.value_as::<faultline::job::Transaction>()
                    .unwrap()
                    .amount_cents
            })
            .sum();
        assert!(counted > 0, "{backend:?}: sessions fired");
    }
}

#[test]
fn the_session_operator_merges_two_sessions_through_a_record_between_them() {
    use faultline::job::{OperatorSpec, Record, Transaction, WindowAggregate};
    use faultline::testing::{OperatorHarness, Operators};
    let operators = Operators::built_in(OperatorSpec::SessionWindow {
        gap_ms: 300,
        aggregate: WindowAggregate::Sum,
        allowed_lateness_ms: 0,
    });
    let mut harness = OperatorHarness::builder(&operators).open().unwrap();
    for (id, at_ms, cents) in [("r0", 0, 1), ("r1", 200, 2), ("r2", 600, 4), ("r3", 450, 8)] {
        let record = Record {
            timestamp_ms: Some(at_ms),
            ..Record::transaction(id, "a", cents)
        };
        assert!(harness.process_element(record).unwrap().is_empty());
    }
    let fired = harness.process_watermark(1_000).unwrap().to_vec();
    assert_eq!(fired.len(), 1, "one session: {fired:?}");
    assert_eq!(fired[0].id, "a@0/r0");
    assert_eq!(fired[0].value_as::<Transaction>().unwrap().amount_cents, 15);
    assert_eq!(fired[0].timestamp_ms, Some(899));
    assert_eq!(harness.pending_timers(), 0);
}

fn by_the_clock(backend: BackendKind, faults: &str) -> Scenario {
    let op = r#"kind = "processing-time-window", size_ms = 20, aggregate = "sum""#;
    shaped(backend, op, faults)
}

#[test]
fn processing_time_windows_fire_by_the_clock_and_recover_on_every_backend() {
    // A clock jump leaves every restored window overdue: each fires once after the restore.
    let faults = r#"{ kind = "kill", step = 70 }, { kind = "clock-jump", attempt = 1, jump_ms = 10000 }, { kind = "kill", step = 150 }"#;
    for backend in BackendKind::all() {
        let report = run(by_the_clock(backend, faults));
        assert!(report.outcome.restores.len() >= 2, "{backend:?}");
        assert!(report.verdict.passed(), "{backend:?}: {}", report.verdict);
        let judged =
            (report.verdict.notes.iter()).any(|n| matches!(n, Note::JudgedByLineage { .. }));
        assert!(judged, "{backend:?}: {:?}", report.verdict.notes);
        let fired = (events_of(&report).into_iter()).filter(|e| {
            matches!(e, Event::TimerFired { timer, outputs, .. }
                if timer.domain == faultline::state::timers::TimeDomain::ProcessingTime
                    && !outputs.is_empty())
        });
        assert!(fired.count() > 3, "{backend:?}: windows fired by the clock");
    }
}

#[test]
fn the_window_model_catches_a_wrong_processing_time_result() {
    let scenario = by_the_clock(BackendKind::Memory, "");
    let honest = run(scenario.clone());
    assert!(honest.verdict.passed(), "{}", honest.verdict);
    let events = events_of(&honest);
    let firing = (events.iter())
        .position(|e| matches!(e, Event::TimerFired { outputs, .. } if !outputs.is_empty()))
        .expect("a window fired");
    let wrong = crate::time::judged_with(&scenario, run(scenario.clone()), |events| {
        if let Event::TimerFired { outputs, .. } = &mut events[firing] {
            let value = outputs[0]
                .value
                .get::<faultline::job::Transaction>()
                .unwrap();
            let more = faultline::job::Transaction {
                amount_cents: value.amount_cents + 1,
                ..value
            };
            outputs[0].value = faultline::job::Datum::of(&more).unwrap();
        }
    });
    assert!(
        wrong
            .iter()
            .any(|v| matches!(v, Violation::EmissionUnexpected { .. })),
        "{wrong:?}"
    );
}
