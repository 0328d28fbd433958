//! Keyed timers: registered through the keyed context, kept as keyed state on every backend,
//! deduplicated, deletable, fired in order (timestamp, then key) by watermarks and the virtual
//! clock, snapshotted and restored across backends and parallelisms; in the engine, fired only
//! once the watermark passes them, never twice in an attempt, and restored after a failure.

use faultline::campaign::{Case, KillMode, Scenario, Seams};
use faultline::job::user::UserOperator;
use faultline::job::watermark::{Mark, END_OF_INPUT};
use faultline::job::{Operator, OperatorContext, OperatorError, Record, Transaction};
use faultline::state::timers::{TimeDomain, Timer};
use faultline::state::{BackendKind, SavepointFormat, StateError, ValueState};
use faultline::testing::{OperatorHarness, OperatorSnapshot, Operators};
use faultline::trace::Event;

/// How long a key may be silent before its session closes.
const GAP_MS: i64 = 1_000;
const LAST_SEEN: ValueState<i64> = ValueState::new("last-seen");

/// A session detector, as a `KeyedProcessFunction`: each record moves its key's event-time
/// timer to `timestamp + GAP_MS` (deleting the old one); the timer closes the session, emitting
/// when it was last seen. Each record also sets a processing-time reminder 50 ms on.
struct Sessions;

fn state_error(error: StateError) -> OperatorError {
    OperatorError::Failed(error.to_string())
}

impl Operator for Sessions {
    fn process(
        &mut self,
        record: Record,
        ctx: &mut OperatorContext<'_>,
        _out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        let at = record.timestamp_ms.unwrap_or(0);
        let now_ms = i64::try_from(ctx.now_ms).unwrap_or(i64::MAX);
        let keyed = ctx.keyed()?;
        if let Some(last) = LAST_SEEN.get(keyed).map_err(state_error)? {
            keyed
                .delete_timer(TimeDomain::EventTime, last + GAP_MS, "session")
                .map_err(state_error)?;
        }
        let last = LAST_SEEN
            .get(keyed)
            .map_err(state_error)?
            .map_or(at, |l| l.max(at));
        LAST_SEEN.set(keyed, &last).map_err(state_error)?;
        for _ in 0..2 {
            // Registered twice: it must fire once.
            keyed
                .register_timer(TimeDomain::EventTime, last + GAP_MS, "session")
                .map_err(state_error)?;
        }
        keyed
            .register_timer(TimeDomain::ProcessingTime, now_ms + 50, "reminder")
            .map_err(state_error)
    }

    fn on_timer(
        &mut self,
        timer: &Timer,
        ctx: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        if timer.domain == TimeDomain::ProcessingTime {
            return Ok(());
        }
        let keyed = ctx.keyed()?;
        let last = LAST_SEEN
            .get(keyed)
            .map_err(state_error)?
            .unwrap_or_default();
        LAST_SEEN.clear(keyed).map_err(state_error)?;
        let id = format!("closed-{}-{}", timer.key, timer.timestamp_ms);
        let closed = Record::of(
            &id,
            &timer.key,
            &Transaction {
                account: timer.key.to_string(),
                amount_cents: last,
            },
        )
        .map_err(|e| OperatorError::Failed(e.to_string()))?;
        out.push(closed);
        Ok(())
    }
}

fn sessions() -> UserOperator {
    UserOperator::new(
        "sessions",
        true,
        |_| Box::new(Sessions),
        |_: &mut faultline::state::ModelState, _: Record| Ok(Vec::new()),
    )
}

fn at(id: &str, key: &str, timestamp_ms: i64) -> Record {
    Record {
        timestamp_ms: Some(timestamp_ms),
        ..Record::transaction(id, key, 1)
    }
}

/// The keys of what a harness emitted, in order.
fn closed_keys(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| r.key.to_string()).collect()
}

/// Every backend this build has.
fn backends() -> Vec<BackendKind> {
    BackendKind::all()
}

#[test]
fn timers_are_deduplicated_deleted_and_fired_in_timestamp_then_key_order() {
    let user = sessions();
    let operators = Operators::user(&user);
    for backend in backends() {
        let mut harness = OperatorHarness::builder(&operators)
            .backend(backend)
            .open()
            .expect("opens");
        harness.process_element(at("r1", "k1", 100)).expect("r1");
        harness.process_element(at("r2", "k2", 100)).expect("r2");
        harness.process_element(at("r3", "k0", 50)).expect("r3");
        // k1 moves on: its timer at 1100 is deleted, one at 1200 registered.
        harness.process_element(at("r4", "k1", 200)).expect("r4");
        // k1's two reminders, both at 50 ms, are one timer.
        assert_eq!(
            harness.pending_timers(),
            3 + 3,
            "{backend:?}: three sessions and three reminders"
        );
        assert!(harness
            .process_watermark(1_049)
            .expect("no timer due")
            .is_empty());
        let fired = harness.process_watermark(1_100).expect("fires").to_vec();
        assert_eq!(
            closed_keys(&fired),
            ["k0", "k2"],
            "{backend:?}: by timestamp, then key"
        );
        assert!(
            harness.process_watermark(1_100).expect("again").is_empty(),
            "each fires once"
        );
        let fired = harness
            .process_watermark(END_OF_INPUT)
            .expect("the end")
            .to_vec();
        assert_eq!(closed_keys(&fired), ["k1"], "{backend:?}");
        assert!(
            harness.get(&LAST_SEEN, "k1").expect("reads").is_none(),
            "the timer cleared its state"
        );
        assert!(harness
            .set_processing_time(49)
            .expect("none due")
            .is_empty());
        assert_eq!(harness.pending_timers(), 3);
        harness.set_processing_time(50).expect("reminders fire");
        assert_eq!(
            harness.pending_timers(),
            0,
            "{backend:?}: every reminder fired once"
        );
    }
}

/// Four keys' sessions open on `backend`, in the backend's own checkpoint or (`savepoint`) a
/// canonical savepoint, which any backend restores.
fn open_sessions<'a>(
    operators: &'a Operators<'a>,
    backend: BackendKind,
    savepoint: bool,
) -> (OperatorHarness<'a>, OperatorSnapshot) {
    let mut harness = OperatorHarness::builder(operators)
        .backend(backend)
        .open()
        .expect("opens");
    for (index, key) in ["k0", "k1", "k2", "k3"].iter().enumerate() {
        harness
            .process_element(at(&format!("r{index}"), key, 100 * index as i64))
            .expect("processes");
    }
    let snapshot = if savepoint {
        harness.savepoint(1, SavepointFormat::Canonical)
    } else {
        harness.snapshot(1)
    };
    (harness, snapshot.expect("a snapshot"))
}

#[test]
fn timers_survive_each_backends_own_checkpoint_split_across_subtasks() {
    let user = sessions();
    let operators = Operators::user(&user);
    for backend in backends() {
        let (_, snapshot) = open_sessions(&operators, backend, false);
        let mut closed = Vec::new();
        for subtask in 0..2 {
            let mut restored = OperatorHarness::builder(&operators)
                .backend(backend)
                .subtask(subtask, 2)
                .initialize_state(&[&snapshot])
                .expect("restores");
            closed.extend(closed_keys(
                restored.process_watermark(END_OF_INPUT).expect("fires"),
            ));
        }
        closed.sort();
        assert_eq!(closed, ["k0", "k1", "k2", "k3"], "{backend:?}");
    }
}

#[test]
fn a_canonical_savepoint_moves_timers_between_every_pair_of_backends() {
    let user = sessions();
    let operators = Operators::user(&user);
    for from in backends() {
        for to in backends() {
            let (mut original, snapshot) = open_sessions(&operators, from, true);
            // Fired after the snapshot: the restored instances have them again.
            let fired = original
                .process_watermark(END_OF_INPUT)
                .expect("fires")
                .len();
            assert_eq!(fired, 4);
            let mut closed = Vec::new();
            let mut pending = 0;
            for subtask in 0..2 {
                let mut restored = OperatorHarness::builder(&operators)
                    .backend(to)
                    .subtask(subtask, 2)
                    .initialize_state(&[&snapshot])
                    .expect("restores");
                pending += restored.pending_timers();
                closed.extend(closed_keys(
                    restored.process_watermark(END_OF_INPUT).expect("fires"),
                ));
            }
            assert_eq!(
                pending, 8,
                "{from:?} -> {to:?}: four sessions and four reminders, split by key group"
            );
            closed.sort();
            assert_eq!(closed, ["k0", "k1", "k2", "k3"], "{from:?} -> {to:?}");
        }
    }
}

fn scenario(faults: &str) -> Scenario {
    let text = format!(
        r#"
name = "sessions"
seed = 3
backend = "memory"
checkpoint = {{ interval_ms = 6 }}
restart = {{ kind = "fixed-delay", attempts = 3, delay_ms = 200 }}
faults = [{faults}]

[job]
name = "sessions"
source = {{ parallelism = 2, emit_ms = 1, watermarks = {{ out_of_orderness_ms = 200, interval_ms = 3 }} }}
sink = {{ kind = "two-phase-commit" }}
stages = [{{ name = "sessions", op = {{ kind = "user", name = "sessions", keyed = true }}, parallelism = 2 }}]

[input]
kind = "generated"
records = 80
keys = 6
min_value = 0
max_value = 100
"#
    );
    Scenario::from_toml(&text, "timers test").expect("the scenario parses")
}

/// (attempt, task, timer) of every firing, and each task's watermarks with their event index.
fn firings(events: &[Event]) -> Vec<(u32, usize, String, Timer)> {
    let mut attempt = 0;
    let mut fired = Vec::new();
    for (index, event) in events.iter().enumerate() {
        match event {
            Event::AttemptStarted { attempt: a, .. } => attempt = *a,
            Event::TimerFired { task, timer, .. } => {
                fired.push((attempt, index, task.clone(), timer.clone()))
            }
            _ => {}
        }
    }
    fired
}

/// The events of a case of the session job with `faults`.
fn run_sessions(faults: &str) -> (faultline::campaign::CaseReport, Vec<Event>) {
    let user = sessions();
    let users = [user];
    let mut seams = Seams::default();
    seams.operators = &users;
    let dir = tempfile::tempdir().expect("a temp dir");
    let report = Case::new(scenario(faults), seams)
        .run(dir.path(), &KillMode::Sim)
        .expect("runs");
    let events = report
        .outcome
        .trace
        .events()
        .iter()
        .map(|s| s.event.clone())
        .collect();
    (report, events)
}

/// No timer fired twice within one attempt of one task.
fn assert_each_fires_once(fired: &[(u32, usize, String, Timer)]) {
    let mut seen = std::collections::BTreeSet::new();
    for (attempt, _, task, timer) in fired {
        assert!(
            seen.insert((*attempt, task.clone(), timer.clone())),
            "{task} fired {timer:?} twice in attempt {attempt}"
        );
    }
}

#[test]
fn in_the_engine_a_timer_fires_once_its_watermark_passes_and_never_twice() {
    let (_, events) = run_sessions("");
    let fired = firings(&events);
    let event_timers: Vec<_> = fired
        .iter()
        .filter(|f| f.3.domain == TimeDomain::EventTime)
        .collect();
    assert!(
        event_timers.len() >= 6,
        "every key's last session closes: {}",
        event_timers.len()
    );
    for (_, index, task, timer) in &event_timers {
        // The watermark that fired it is sent right after its timers.
        let next = events[*index..].iter().find_map(|e| match e {
            Event::Watermark {
                task: t,
                mark: Mark::At(w),
            } if t == task => Some(*w),
            _ => None,
        });
        assert!(
            next.is_some_and(|w| w >= timer.timestamp_ms),
            "{task} fired {timer:?} before watermark {next:?}"
        );
    }
    assert_each_fires_once(&fired);
    // Processing time is quiesced once the final checkpoint is under way.
    let last_final = events
        .iter()
        .rposition(|e| matches!(e, Event::CheckpointTriggered { is_final: true, .. }));
    let final_at = last_final.expect("the job ends with its final checkpoint");
    let late = fired
        .iter()
        .filter(|f| f.1 > final_at && f.3.domain == TimeDomain::ProcessingTime)
        .count();
    assert_eq!(
        late, 0,
        "no processing-time timer fires after the final checkpoint began"
    );
}

#[test]
fn after_a_kill_restored_timers_fire_and_overdue_processing_timers_fire_once() {
    let (report, events) = run_sessions(r#"{ kind = "kill", step = 90 }"#);
    let restored_from = report.outcome.restores.iter().find_map(|r| r.checkpoint_id);
    assert!(
        restored_from.is_some(),
        "the kill came after a checkpoint: {:?}",
        report.outcome.restores.len()
    );
    let fired = firings(&events);
    // The restart waits 200 ms: every reminder restored from the checkpoint is overdue, and
    // fires once in the new attempt.
    let overdue: Vec<_> = fired
        .iter()
        .filter(|f| f.0 == 1 && f.3.domain == TimeDomain::ProcessingTime)
        .collect();
    assert!(
        !overdue.is_empty(),
        "restored reminders fired after the restore"
    );
    assert_each_fires_once(&fired);
    let closed_after = fired
        .iter()
        .filter(|f| f.0 == 1 && f.3.domain == TimeDomain::EventTime)
        .count();
    assert!(
        closed_after >= 6,
        "every key's last session closes after the restore: {closed_after}"
    );
}

#[test]
fn a_clock_jump_while_the_job_is_down_makes_reminders_overdue_and_each_fires_once() {
    let jump =
        r#"{ kind = "kill", step = 90 }, { kind = "clock-jump", attempt = 1, jump_ms = 100000 }"#;
    let (report, events) = run_sessions(jump);
    use faultline::fault::{FaultKind, FaultSite};
    assert_eq!(
        report.fired(),
        [
            (FaultKind::Kill, FaultSite::Step),
            (FaultKind::ClockJump, FaultSite::BeforeRestore)
        ]
    );
    let stamped = report.outcome.trace.events();
    let jumped = stamped
        .iter()
        .position(|s| matches!(s.event, Event::ClockJumped { by_ms: 100_000, .. }));
    let jumped = jumped.expect("the clock jumped before the restart");
    let down_at = stamped[..jumped]
        .iter()
        .rfind(|s| matches!(s.event, Event::Failure { .. }))
        .map(|s| s.time_ms)
        .expect("a failure came before the jump");
    let fired = firings(&events);
    let overdue: Vec<_> = (fired.iter())
        .filter(|f| f.0 == 1 && f.3.domain == TimeDomain::ProcessingTime)
        .collect();
    assert!(
        !overdue.is_empty(),
        "restored reminders fired after the jump"
    );
    for (_, index, task, timer) in &overdue {
        assert!(
            stamped[*index].time_ms >= down_at + 100_000,
            "{task} fired {timer:?} at {} ms, before the clock came back",
            stamped[*index].time_ms
        );
    }
    assert_each_fires_once(&fired);
}

#[test]
fn inspect_reads_and_counts_the_timers_of_a_checkpoint() {
    let user = sessions();
    let users = [user];
    let mut seams = Seams::default();
    seams.operators = &users;
    let dir = tempfile::tempdir().expect("a temp dir");
    // Killed mid-run with the restart still waiting: the checkpoint holds open sessions.
    let mut scenario = scenario(r#"{ kind = "kill", step = 90 }"#);
    scenario.restart = faultline::job::RestartStrategy::None;
    let report = Case::new(scenario, seams)
        .run(dir.path(), &KillMode::Sim)
        .expect("runs");
    assert!(report.outcome.restores.is_empty(), "no restart");
    let checkpoints = dir.path().join("checkpoints");
    let latest = std::fs::read_dir(&checkpoints)
        .expect("a checkpoint root")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("_metadata").exists())
        .max()
        .expect("a completed checkpoint");
    let inspected = faultline::checkpoint::inspect::inspect(&latest).expect("inspects");
    assert!(inspected.problems().is_empty(), "{inspected}");
    let timers: usize = inspected.subtasks.iter().filter_map(|s| s.timers).sum();
    assert!(timers > 0, "the checkpoint holds timers: {inspected}");
    assert!(inspected.to_string().contains("timers)"), "{inspected}");
}

/// What a typed function sees of time: (the record's event time, the watermark, the clock).
fn times(
    ctx: &mut faultline::state::KeyedContext<'_>,
    _tx: Transaction,
    out: &mut faultline::job::user::Output<(Option<i64>, i64, u64)>,
) -> Result<(), OperatorError> {
    out.emit(&(ctx.timestamp_ms(), ctx.watermark_ms(), ctx.now_ms()))
}

#[test]
fn a_typed_function_sees_the_record_time_the_watermark_and_the_clock() {
    let user = UserOperator::keyed("times", times, times);
    let operators = Operators::user(&user);
    let mut harness = OperatorHarness::builder(&operators).open().expect("opens");
    harness.process_element(at("r1", "k1", 700)).expect("r1");
    harness.process_watermark(500).expect("a watermark");
    harness.set_processing_time(42).expect("the clock");
    harness.process_element(at("r2", "k1", 900)).expect("r2");
    let seen: Vec<(Option<i64>, i64, u64)> = harness.outputs_as().expect("decodes");
    assert_eq!(seen, [(Some(700), i64::MIN, 0), (Some(900), 500, 42)]);
    // The model has the record's time but no watermark or clock.
    let mut state = faultline::state::ModelState::default();
    let modelled = user
        .model
        .apply(&mut state, at("r3", "k1", 5))
        .expect("applies");
    assert_eq!(
        modelled[0]
            .value_as::<(Option<i64>, i64, u64)>()
            .expect("decodes"),
        (Some(5), i64::MIN, 0)
    );
}

/// A case of the session job's shape with the inactivity example in its stage.
fn run_inactivity(faults: &str, forget_timers: bool) -> faultline::campaign::CaseReport {
    let users = [crate::examples::inactivity::inactivity()];
    let mut seams = Seams::default();
    seams.operators = &users;
    // More keys than the session job's: some see no record after the restore, so only their
    // restored timers can alert them.
    let text = scenario(faults).to_toml().replace("keys = 6", "keys = 30");
    let mut scenario = Scenario::from_toml(&text, "inactivity").expect("the scenario parses");
    assert!(text.contains("keys = 30"), "{text}");
    scenario.job.stages[0].op = faultline::job::OperatorSpec::User {
        name: "inactivity".into(),
        keyed: true,
    };
    scenario.sabotage.timers_forgotten_on_restore = forget_timers;
    let dir = tempfile::tempdir().expect("a temp dir");
    Case::new(scenario, seams)
        .run(dir.path(), &KillMode::Sim)
        .expect("runs")
}

#[test]
fn a_timed_model_judges_every_firing_and_catches_restored_timers_forgotten() {
    use faultline::check::{Note, Violation};
    let honest = run_inactivity(r#"{ kind = "kill", step = 90 }"#, false);
    assert!(honest.verdict.passed(), "{}", honest.verdict);
    assert!(
        (honest.verdict.notes.iter())
            .any(|n| matches!(n, Note::JudgedByLineage { restores, .. } if *restores > 0)),
        "exactly-once, judged along the events: {:?}",
        honest.verdict.notes
    );
    let alerts = honest.outcome.store.visible().len();
    assert!(
        alerts >= 20,
        "every account's quiet spell is alerted: {alerts}"
    );
    let forgetful = run_inactivity(r#"{ kind = "kill", step = 90 }"#, true);
    let lost: Vec<_> = (forgetful.verdict.violations.iter())
        .filter(|v| matches!(v, Violation::TimerNeverFired { .. }))
        .collect();
    assert!(!lost.is_empty(), "{}", forgetful.verdict);
    assert!(lost
        .iter()
        .all(|v| v.property() == faultline::check::Property::State));
}
