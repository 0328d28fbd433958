//! Method: run cases through the one case runner and break them from inside — an engine
//! invariant broken on purpose, a user's model that panics, an operator that floods its
//! channel, a sink that never settles or leaks transactions, a trace past its bound — and check that each becomes a typed violation of its
//! case (with the trace up to it, shrunk and written out under a campaign) while the campaign
//! goes on; that a rescaled case's phases add up to one judged run; and that user operators
//! the job names but the seams lack, or give but the job never uses, are errors naming them.

use faultline::campaign::{explore, Case, CaseReport, ExploreConfig, KillMode, Scenario, Seams};
use faultline::check::{Property, Violation};
use faultline::checkpoint::{Durability, FsCheckpointStorage};
use faultline::engine::{JobStatus, Runtime};
use faultline::fault::NoFaults;
use faultline::job::sink::{TwoPhaseCommitSink, TxnEvent};
use faultline::job::user::{ModelState, UserOperator};
use faultline::job::{Operator, OperatorContext, OperatorError, Record, Sink};
use faultline::state::{BackendKind, MemoryBackendFactory};
use faultline::trace::{Event, Resource};

const USER_STAGE: &str = r#"
name = "NAME"
seed = 4
backend = "memory"
checkpoint = { interval_ms = 5 }
restart = { kind = "fixed-delay", attempts = 3, delay_ms = 5 }

[job]
name = "user"
source = { parallelism = 1, emit_ms = 1 }
sink = { kind = "two-phase-commit" }
stages = [{ name = "user", op = { kind = "user", name = "NAME", keyed = false }, parallelism = 1 }]

[input]
kind = "generated"
records = 6
keys = 2
min_value = 0
max_value = 9
"#;

fn user_case(name: &str) -> Scenario {
    Scenario::from_toml(&USER_STAGE.replace("NAME", name), name).unwrap()
}

fn run(case: &Case<'_>) -> CaseReport {
    let dir = tempfile::tempdir().unwrap();
    case.run(dir.path(), &KillMode::Sim).unwrap()
}

/// Passes every record through unchanged.
struct Identity;

impl Operator for Identity {
    fn process(
        &mut self,
        record: Record,
        _: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        out.push(record);
        Ok(())
    }
}

#[test]
fn an_engine_assertion_is_a_violation_of_its_case_shrunk_and_the_campaign_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ExploreConfig::default();
    config.cases = 4;
    config.seed = 2;
    config.strategy.backends = vec![BackendKind::Memory];
    config.strategy.sabotage.broken_invariant_at_step = Some(40);
    config.shrink_runs_max = 40;
    config.failures_dir = dir.path().to_path_buf();
    let report = explore(&config, None, &|_, _| {}).unwrap();
    assert_eq!(report.cases, 4, "every case ran: {}", report.summary());
    assert!(report.failures.len() >= 2, "{}", report.summary());
    for failure in &report.failures {
        assert!(
            failure
                .violations
                .iter()
                .all(|v| v.property == Property::Assertion),
            "{:?}",
            failure.violations
        );
        assert!(failure.records.1 <= failure.records.0);
        assert!(!failure.trace.is_empty(), "the trace up to the assertion");
        // The file replays to the same assertion, at the same place in the engine.
        let scenario = Scenario::load(&failure.scenario_file).unwrap();
        let replayed = run(&Case::new(scenario, Seams::default()));
        let location = replayed.verdict.violations.iter().find_map(|v| match v {
            Violation::Assertion { location, .. } => location.clone(),
            _ => None,
        });
        assert!(
            location.is_some_and(|at| at.starts_with("src/engine/")),
            "{}",
            replayed.verdict
        );
        assert_eq!(replayed.outcome.trace.render(), failure.trace);
    }
}

#[test]
fn user_operators_missing_unused_or_misdeclared_are_errors_naming_them() {
    use faultline::campaign::CaseError;
    let operators = [UserOperator::new(
        "identity",
        false,
        |_| Box::new(Identity),
        |_: &mut ModelState, record: Record| Ok(vec![record]),
    )];
    let dir = tempfile::tempdir().unwrap();
    // The job names an operator the seams lack: an error, not the built-in operator.
    let missing = Case::new(user_case("fraud-detector"), Seams::default())
        .run(dir.path(), &KillMode::Sim)
        .unwrap_err();
    assert!(
        matches!(&missing, CaseError::UnknownOperator { name, .. } if name == "fraud-detector"),
        "{missing}"
    );
    // Operators given to a job of built-in ones (a strategy without `user_operators`).
    let mut seams = Seams::default();
    seams.operators = &operators;
    let built_in = Scenario::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/scenarios/notifications-memory.toml"
    )))
    .unwrap();
    let unused = Case::new(built_in, seams)
        .run(dir.path(), &KillMode::Sim)
        .unwrap_err();
    assert!(
        matches!(&unused, CaseError::OperatorsUnused { given } if given == &["identity"]),
        "{unused}"
    );
    assert!(
        unused
            .to_string()
            .contains("StrategyConfig::user_operators"),
        "{unused}"
    );
    // The job calls a keyed operator stateless: the registration decides, and the mismatch is
    // an error before anything runs, not a failing job.
    let keyed = [UserOperator::new(
        "identity",
        true,
        |_| Box::new(Identity),
        |_: &mut ModelState, record: Record| Ok(vec![record]),
    )];
    let mut seams = Seams::default();
    seams.operators = &keyed;
    let mismatch = Case::new(user_case("identity"), seams)
        .run(dir.path(), &KillMode::Sim)
        .unwrap_err();
    assert!(
        matches!(&mismatch, CaseError::KeyedMismatch { name, in_job: false, registered: true } if name == "identity"),
        "{mismatch}"
    );
}

#[test]
fn a_window_operator_given_to_a_job_without_a_window_is_an_error() {
    let built_in =
        |spec: &faultline::job::OperatorSpec, _: u16| faultline::job::operator::build(spec);
    let mut seams = Seams::default();
    seams.windows = Some(&built_in);
    let scenario = Scenario::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/scenarios/notifications-memory.toml"
    )))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let unused = Case::new(scenario, seams)
        .run(dir.path(), &KillMode::Sim)
        .unwrap_err();
    assert!(
        matches!(unused, faultline::campaign::CaseError::WindowsUnused),
        "{unused}"
    );
}

#[test]
fn a_panicking_model_is_an_assertion_violation_not_a_crash() {
    let operators = [UserOperator::new(
        "bad-model",
        false,
        |_| Box::new(Identity),
        |_: &mut ModelState, _: Record| -> Result<Vec<Record>, OperatorError> {
            panic!("the model gave up")
        },
    )];
    let mut seams = Seams::default();
    seams.operators = &operators;
    let report = run(&Case::new(user_case("bad-model"), seams));
    let [Violation::Assertion { message, location }] = &report.verdict.violations[..] else {
        panic!("one assertion violation: {}", report.verdict);
    };
    assert_eq!(message, "the model gave up");
    assert!(
        location
            .as_deref()
            .is_some_and(|at| at.starts_with("tests/sim/case.rs")),
        "the panic's place in the model: {location:?}"
    );
    assert!(
        report
            .outcome
            .trace
            .events()
            .iter()
            .any(|e| matches!(e.event, Event::JobFinished { .. })),
        "the run itself finished before the oracle's model panicked"
    );
}

/// Emits more records for each record than a case may hold in flight.
struct Flood;

const FLOOD_RECORDS: usize = 150_000;

impl Operator for Flood {
    fn process(
        &mut self,
        record: Record,
        _: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        out.extend(flood(record));
        Ok(())
    }
}

fn flood(record: Record) -> impl Iterator<Item = Record> {
    (0..FLOOD_RECORDS).map(move |i| Record {
        id: format!("{}.{i}", record.id),
        ..record.clone()
    })
}

fn flood_model(_: &mut ModelState, record: Record) -> Result<Vec<Record>, OperatorError> {
    Ok(flood(record).collect())
}

#[test]
fn a_case_that_floods_its_channels_fails_at_the_bound_as_a_resource_violation() {
    let operators = [UserOperator::new(
        "flood",
        false,
        |_| Box::new(Flood),
        flood_model,
    )];
    let mut seams = Seams::default();
    seams.operators = &operators;
    let report = run(&Case::new(user_case("flood"), seams));
    assert!(
        report.verdict.violations.contains(&Violation::Resource {
            resource: Resource::RecordsInFlight,
            limit: 100_000,
        }),
        "{}",
        report.verdict
    );
    assert!(matches!(report.outcome.status, JobStatus::Failed { .. }));
}

/// A two-phase-commit sink that never reports its transactions settled.
struct NeverSettles(TwoPhaseCommitSink);

impl Sink for NeverSettles {
    crate::support::delegate_sink!(0; write, snapshot, notify_checkpoint_complete, restore);
    fn pending_transactions(&self) -> usize {
        1
    }
}

#[test]
fn re_sending_notifications_to_a_sink_that_never_settles_is_bounded_by_the_steps() {
    let job = crate::support::linear_job();
    let input = crate::support::input_for(&job, 10, 3, 1);
    let mut config = crate::support::config(3, 5);
    config.steps_max = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let mut storage =
        FsCheckpointStorage::new(dir.path().join("checkpoints"), Durability::PageCache).unwrap();
    let sink =
        |subtask: u16| Box::new(NeverSettles(TwoPhaseCommitSink::new(subtask))) as Box<dyn Sink>;
    let outcome = Runtime::new(
        &job,
        &input,
        config,
        &MemoryBackendFactory,
        &mut storage,
        &mut NoFaults,
        &dir.path().join("work"),
    )
    .unwrap()
    .with_sink(&sink)
    .run()
    .unwrap();
    assert!(matches!(outcome.status, JobStatus::Failed { .. }));
    assert!(outcome.stats.steps <= 5_000, "{}", outcome.stats.steps);
    let again = outcome
        .trace
        .events()
        .iter()
        .filter(|e| matches!(e.event, Event::NotifyAgain { .. }))
        .count();
    assert!(
        again > 100,
        "the loop ran ({again} re-sends) and the bound ended it"
    );
}

#[test]
fn a_rescaled_case_is_one_run_whose_counters_cover_both_phases() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/scenarios");
    let mut scenario = Scenario::load(&fixtures.join("panic-and-kill-memory.toml")).unwrap();
    scenario.rescale = Some(faultline::campaign::Rescale {
        at_ms: 100,
        parallelism: vec![3, 1],
        from: faultline::campaign::RescaleFrom::Savepoint,
        restore_mode: faultline::state::RestoreMode::NoClaim,
    });
    let report = run(&Case::new(scenario, Seams::default()));
    assert!(report.verdict.passed(), "{}", report.verdict);
    let events = report.outcome.trace.events();
    let count = |wanted: fn(&Event) -> bool, from: usize| {
        events[from..].iter().filter(|e| wanted(&e.event)).count() as u64
    };
    let second_phase = events
        .iter()
        .rposition(|e| matches!(e.event, Event::JobStarted(_)))
        .unwrap();
    assert!(second_phase > 0, "the case ran two phases");
    let completed = |e: &Event| matches!(e, Event::CheckpointCompleted { .. });
    let started = |e: &Event| matches!(e, Event::AttemptStarted { .. });
    let stats = &report.outcome.stats;
    assert!(
        count(completed, 0) > count(completed, second_phase),
        "{}",
        report.outcome.trace.render()
    );
    assert_eq!(stats.checkpoints_completed, count(completed, 0));
    assert_eq!(u64::from(stats.attempts), count(started, 0));
}

#[test]
fn the_trace_follows_every_transaction_from_its_beginning() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/scenarios");
    let scenario = Scenario::load(&fixtures.join("panic-and-kill-memory.toml")).unwrap();
    let report = run(&Case::new(scenario, Seams::default()));
    assert!(report.verdict.passed(), "{}", report.verdict);
    let mut begun = std::collections::BTreeSet::new();
    let mut ended = 0;
    for stamped in report.outcome.trace.events() {
        let Event::Txn { event, .. } = &stamped.event else {
            continue;
        };
        match event {
            TxnEvent::Begun { txn } => assert!(begun.insert(txn.clone()), "{txn} begun twice"),
            TxnEvent::PreCommitted { txn, .. }
            | TxnEvent::Committed { txn, .. }
            | TxnEvent::Aborted { txn, .. } => {
                assert!(begun.contains(txn), "{txn} ended before it began");
                ended += 1;
            }
            _ => {}
        }
    }
    assert!(begun.len() > 2 && ended > begun.len(), "{begun:?}");
}

/// Begins a transaction for every record and never ends one.
struct LeaksTransactions(u16);

impl Sink for LeaksTransactions {
    fn write(
        &mut self,
        record: Record,
        store: &mut faultline::job::ExternalStore,
    ) -> Result<Vec<TxnEvent>, faultline::job::sink::StoreError> {
        let txn = store.begin(self.0);
        store.write(&txn, record)?;
        Ok(vec![TxnEvent::Begun { txn }])
    }
    fn snapshot(
        &mut self,
        _: u64,
        _: &mut faultline::job::ExternalStore,
    ) -> Result<(Vec<u8>, Vec<TxnEvent>), faultline::job::sink::StoreError> {
        Ok((Vec::new(), Vec::new()))
    }
    fn notify_checkpoint_complete(
        &mut self,
        _: u64,
        _: &mut faultline::job::ExternalStore,
    ) -> Result<Vec<TxnEvent>, faultline::job::sink::StoreError> {
        Ok(Vec::new())
    }
    fn restore(
        &mut self,
        _: &[Vec<u8>],
        _: &mut faultline::job::ExternalStore,
    ) -> Result<Vec<TxnEvent>, faultline::job::sink::StoreError> {
        Ok(Vec::new())
    }
}

/// A resource and how to set a low bound on it.
type Bound = (Resource, fn(&mut faultline::engine::CaseLimits));

#[test]
fn each_case_bound_ends_a_runaway_as_a_resource_violation() {
    let job = crate::support::linear_job();
    let input = crate::support::input_for(&job, 40, 3, 1);
    let leaks = |subtask: u16| Box::new(LeaksTransactions(subtask)) as Box<dyn Sink>;
    let bounds: [Bound; 2] = [
        (Resource::Events, |limits| limits.events_max = 60),
        (Resource::OpenTransactions, |limits| {
            limits.open_transactions_max = 5;
        }),
    ];
    for (resource, bound) in bounds {
        let mut config = crate::support::config(3, 5);
        bound(&mut config.limits);
        let dir = tempfile::tempdir().unwrap();
        let mut storage =
            FsCheckpointStorage::new(dir.path().join("checkpoints"), Durability::PageCache)
                .unwrap();
        let mut faults = NoFaults;
        let mut runtime = Runtime::new(
            &job,
            &input,
            config.clone(),
            &MemoryBackendFactory,
            &mut storage,
            &mut faults,
            &dir.path().join("work"),
        )
        .unwrap();
        if resource == Resource::OpenTransactions {
            runtime = runtime.with_sink(&leaks);
        }
        let outcome = runtime.run().unwrap();
        let verdict =
            faultline::check::check_run(&job, &input, config.checkpoint.mode, 3, &outcome);
        let limit = match resource {
            Resource::Events => 60,
            _ => 5,
        };
        assert!(
            verdict
                .violations
                .contains(&Violation::Resource { resource, limit }),
            "{resource}: {verdict}"
        );
        let last = outcome.trace.events().last().map(|e| e.event.clone());
        assert_eq!(last, Some(Event::ResourceExhausted { resource, limit }));
    }
}

#[test]
fn a_case_refuses_a_directory_another_run_left_behind() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/scenarios");
    let scenario = Scenario::load(&fixtures.join("panic-and-kill-memory.toml")).unwrap();
    let case = Case::new(scenario, Seams::default());
    let dir = tempfile::tempdir().unwrap();
    case.run(dir.path(), &KillMode::Sim).unwrap();
    let again = case.run(dir.path(), &KillMode::Sim).unwrap_err();
    assert!(
        matches!(again, faultline::campaign::CaseError::DirNotEmpty { .. }),
        "{again}"
    );
}
