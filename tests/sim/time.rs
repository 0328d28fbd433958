//! Event time: watermarks generated per partition, combined by every task, idle partitions left
//! out after their timeout, regenerated from nothing after a restore — and the watermark
//! judgement's broken twins, each a real trace with one mark changed, caught.

use faultline::campaign::{Case, CaseReport, KillMode, Scenario, Seams};
use faultline::check::{check_run, Violation, WatermarkViolation};
use faultline::job::watermark::{Mark, END_OF_INPUT};
use faultline::trace::{Event, Trace};

/// A keyed sum over eight keys in two partitions, one per source subtask; `faults` is spliced
/// into the scenario.
fn scenario(faults: &str, records: u32) -> Scenario {
    with_partitions(faults, None, records, 2, 8)
}

/// A keyed sum over `keys` keys in `partitions` partitions read by two source subtasks, with
/// an idleness timeout if given.
fn with_partitions(
    faults: &str,
    idle_timeout_ms: Option<u64>,
    records: u32,
    partitions: u32,
    keys: u32,
) -> Scenario {
    let idle = idle_timeout_ms.map_or(String::new(), |ms| format!(", idle_timeout_ms = {ms}"));
    let text = format!(
        r#"
name = "watermarks"
seed = 7
backend = "memory"
checkpoint = {{ interval_ms = 5 }}
restart = {{ kind = "fixed-delay", attempts = 3, delay_ms = 10 }}
faults = [{faults}]

[job]
name = "sum"
source = {{ parallelism = 2, partitions = {partitions}, emit_ms = 1, watermarks = {{ out_of_orderness_ms = 400, interval_ms = 5{idle} }} }}
sink = {{ kind = "two-phase-commit" }}
stages = [{{ name = "sum", op = {{ kind = "sum" }}, parallelism = 2 }}]

[input]
kind = "generated"
records = {records}
keys = {keys}
min_value = 0
max_value = 100
"#
    );
    Scenario::from_toml(&text, "time test").expect("the scenario parses")
}

fn run(scenario: Scenario) -> CaseReport {
    let dir = tempfile::tempdir().expect("a temp dir");
    Case::new(scenario, Seams::default())
        .run(dir.path(), &KillMode::Sim)
        .expect("the case runs")
}

/// Every watermark `task` sent, per attempt, in order.
fn marks_of(report: &CaseReport, task: &str) -> Vec<(u32, Mark)> {
    let mut attempt = 0;
    let mut marks = Vec::new();
    for stamped in report.outcome.trace.events() {
        match &stamped.event {
            Event::AttemptStarted { attempt: a, .. } => attempt = *a,
            Event::Watermark { task: t, mark } if t == task => marks.push((attempt, *mark)),
            _ => {}
        }
    }
    marks
}

/// The verdict on `report`'s case with its trace's events edited by `edit`.
pub(crate) fn judged_with(
    scenario: &Scenario,
    report: CaseReport,
    edit: impl Fn(&mut Vec<Event>),
) -> Vec<Violation> {
    let mut events: Vec<Event> = report
        .outcome
        .trace
        .events()
        .iter()
        .map(|s| s.event.clone())
        .collect();
    let stamps: Vec<(u64, u64)> = report
        .outcome
        .trace
        .events()
        .iter()
        .map(|s| (s.step, s.time_ms))
        .collect();
    edit(&mut events);
    let mut trace = Trace::new();
    for (index, event) in events.into_iter().enumerate() {
        let (step, time_ms) = stamps[index.min(stamps.len() - 1)];
        trace.record(step, time_ms, event);
    }
    let mut outcome = report.outcome;
    outcome.trace = trace;
    let input = scenario.input().expect("the input builds");
    let verdict = check_run(
        &scenario.job,
        &input,
        scenario.checkpoint.mode,
        scenario.seed,
        &outcome,
    );
    verdict.violations
}

fn watermark_violations(violations: &[Violation]) -> Vec<&WatermarkViolation> {
    violations
        .iter()
        .filter_map(|v| match v {
            Violation::Watermark(w) => Some(w),
            _ => None,
        })
        .collect()
}

/// The index of the `nth` watermark event `task` sent as a real watermark (not the end).
fn nth_watermark(events: &[Event], task: &str, nth: usize) -> usize {
    events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Event::Watermark { task: t, mark: Mark::At(at) } if t == task && *at != END_OF_INPUT))
        .nth(nth)
        .map(|(index, _)| index)
        .expect("the task sent enough watermarks")
}

#[test]
fn every_task_sends_growing_watermarks_and_reaches_the_end_of_input() {
    let report = run(scenario("", 40));
    assert!(report.verdict.passed(), "{}", report.verdict);
    for task in ["source[0]", "source[1]", "sum[0]", "sum[1]", "sink[0]"] {
        let marks = marks_of(&report, task);
        assert_eq!(
            marks.last(),
            Some(&(0, Mark::At(END_OF_INPUT))),
            "{task}: {marks:?}"
        );
        let ats: Vec<i64> = marks
            .iter()
            .filter_map(|(_, m)| match m {
                Mark::At(at) => Some(*at),
                _ => None,
            })
            .collect();
        assert!(
            ats.len() >= 2,
            "{task} sent watermarks before the end: {ats:?}"
        );
        assert!(ats.windows(2).all(|w| w[0] < w[1]), "{task}: {ats:?}");
    }
}

#[test]
fn an_empty_partition_holds_the_watermark_back_until_its_idleness_timeout() {
    // Three keys over three partitions, read by two subtasks: with this seed partition 0 or 2,
    // both read by source[0], has no record at all.
    let held = run(with_partitions("", None, 60, 3, 3));
    let freed = run(with_partitions("", Some(8), 60, 3, 3));
    assert!(
        held.verdict.passed() && freed.verdict.passed(),
        "{}\n{}",
        held.verdict,
        freed.verdict
    );
    let before_end = |report: &CaseReport| -> usize {
        marks_of(report, "sink[0]")
            .iter()
            .filter(|(_, m)| matches!(m, Mark::At(at) if *at != END_OF_INPUT))
            .count()
    };
    assert_eq!(
        before_end(&held),
        0,
        "the empty partition held event time back to the end"
    );
    assert!(
        before_end(&freed) > 0,
        "past the timeout the empty partition is idle and time moves"
    );
}

#[test]
fn after_a_restore_watermarks_start_again_from_nothing() {
    let report = run(scenario(
        r#"{ kind = "panic", stage = "sum", subtask = 1, attempt = 0, record_index = 10 }"#,
        60,
    ));
    assert!(report.verdict.passed(), "{}", report.verdict);
    assert_eq!(
        report.outcome.restores.len(),
        1,
        "the panic restarted the job"
    );
    let marks = marks_of(&report, "sum[1]");
    let last_before = marks
        .iter()
        .rev()
        .filter(|(a, _)| *a == 0)
        .find_map(|(_, m)| match m {
            Mark::At(at) => Some(*at),
            _ => None,
        });
    let first_after = marks
        .iter()
        .filter(|(a, _)| *a == 1)
        .find_map(|(_, m)| match m {
            Mark::At(at) => Some(*at),
            _ => None,
        });
    let (Some(before), Some(after)) = (last_before, first_after) else {
        panic!("watermarks on both sides of the restore: {marks:?}");
    };
    assert!(
        after < before,
        "not checkpointed: the new attempt starts lower ({after} after {before})"
    );
}

#[test]
fn an_operator_watermark_ahead_of_its_inputs_is_caught() {
    let scenario = scenario("", 40);
    let report = run(scenario.clone());
    let violations = judged_with(&scenario, report, |events| {
        let at = nth_watermark(events, "sum[0]", 0);
        events[at] = Event::Watermark {
            task: "sum[0]".into(),
            mark: Mark::At(END_OF_INPUT - 1),
        };
    });
    let found = watermark_violations(&violations);
    assert!(
        found
            .iter()
            .any(|v| matches!(v, WatermarkViolation::Ahead { task, .. } if task == "sum[0]")),
        "{violations:?}"
    );
}

#[test]
fn a_source_watermark_ahead_of_its_partitions_is_caught() {
    let scenario = scenario("", 40);
    let report = run(scenario.clone());
    let violations = judged_with(&scenario, report, |events| {
        let at = nth_watermark(events, "source[0]", 0);
        let Event::Watermark {
            mark: Mark::At(w), ..
        } = events[at]
        else {
            unreachable!()
        };
        // One millisecond more than the bound allows: the off-by-one of bounded out-of-orderness.
        events[at] = Event::Watermark {
            task: "source[0]".into(),
            mark: Mark::At(w + 1),
        };
    });
    let found = watermark_violations(&violations);
    assert!(
        found
            .iter()
            .any(|v| matches!(v, WatermarkViolation::Ahead { task, .. } if task == "source[0]")),
        "{violations:?}"
    );
}

#[test]
fn a_regressing_watermark_is_caught() {
    let scenario = scenario("", 40);
    let report = run(scenario.clone());
    let violations = judged_with(&scenario, report, |events| {
        let first = nth_watermark(events, "sum[1]", 0);
        let second = nth_watermark(events, "sum[1]", 1);
        events.swap(first, second);
    });
    let found = watermark_violations(&violations);
    assert!(
        found
            .iter()
            .any(|v| matches!(v, WatermarkViolation::Regressed { task, .. } if task == "sum[1]")),
        "{violations:?}"
    );
}

#[test]
fn a_lost_end_of_input_and_a_record_after_it_are_caught() {
    let scenario = scenario("", 40);
    let report = run(scenario.clone());
    let again = run(scenario.clone());
    let lost = judged_with(&scenario, report, |events| {
        events.retain(|e| !matches!(e, Event::Watermark { task, mark: Mark::At(END_OF_INPUT) } if task == "sink[0]"));
    });
    assert!(
        watermark_violations(&lost).iter().any(
            |v| matches!(v, WatermarkViolation::EndNotReached { task, .. } if task == "sink[0]")
        ),
        "{lost:?}"
    );
    let early = judged_with(&scenario, again, |events| {
        let first = events
            .iter()
            .position(|e| matches!(e, Event::RecordEmitted { task, .. } if task == "source[0]"))
            .expect("source[0] emits");
        events.insert(
            first,
            Event::Watermark {
                task: "source[0]".into(),
                mark: Mark::At(END_OF_INPUT),
            },
        );
    });
    assert!(
        watermark_violations(&early).iter().any(
            |v| matches!(v, WatermarkViolation::RecordAfterEnd { task, .. } if task == "source[0]")
        ),
        "{early:?}"
    );
}
