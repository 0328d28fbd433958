//! Method: compile each example under `examples/` into the suite as a module and run it with a
//! small case count: the example's own operator (with its model), file sink or backend wrapper
//! must pass the harness (the inactivity detector with its timer firings judged by its model), and the wrapper and sink must really be in the path (their counters
//! count, and a broken file sink is caught through its files); and the exported
//! proptest strategies work inside a user's own `proptest!` block.

#[path = "../../examples/running_total.rs"]
pub(crate) mod running_total;

#[path = "../../examples/inactivity.rs"]
pub(crate) mod inactivity;

#[test]
fn the_inactivity_example_passes_the_harness_with_its_firings_judged() {
    let report = inactivity::run(100);
    assert_eq!(report.cases, 100);
    assert!(report.failures.is_empty(), "{}", report.summary());
    assert!(report.restores > 0, "the cases restored state");
}

#[test]
fn the_inactivity_example_alerts_after_its_restore_once_the_watermark_passes() {
    let alerts = inactivity::step_by_step().unwrap();
    let expected = faultline::job::Transaction {
        account: "acct-1".into(),
        amount_cents: 3,
    };
    // Restored with two transactions counted, a third moves the deadline to 2800 ms.
    assert_eq!(alerts, [(2_800, expected)]);
}

#[test]
fn the_running_total_example_passes_the_harness() {
    let report = running_total::run(60);
    assert_eq!(report.cases, 60);
    assert!(report.failures.is_empty());
    assert!(report.restores > 0, "the cases restored state");
}

#[test]
fn the_running_total_example_recovers_on_the_tutorial_transactions() {
    let report = running_total::run_on_tutorial_transactions();
    assert!(report.verdict.passed(), "{}", report.verdict);
    assert!(
        report.outcome.restores.len() >= 2,
        "the panic and the kill both restored"
    );
    // The tutorial's 29 complete transactions (three rows miss a value) are each committed
    // exactly once.
    assert_eq!(report.outcome.store.visible().len(), 29);
}

#[test]
fn the_running_total_example_splits_its_checkpoint_between_two_subtasks() {
    let (zero, after_zero) = running_total::step_by_step(0).unwrap();
    let (one, after_one) = running_total::step_by_step(1).unwrap();
    // Each account's total is restored by exactly one of the two subtasks, which then adds to it.
    let expected = [("acct-1", 20_000), ("acct-2", 52_400)];
    for (account, total) in expected {
        let held: Vec<Option<i64>> = zero
            .iter()
            .chain(&one)
            .filter(|(a, _)| a == account)
            .map(|(_, t)| *t)
            .collect();
        assert_eq!(held, [Some(total)], "{account}");
    }
    let mut emitted: Vec<i64> = after_zero.into_iter().chain(after_one).collect();
    emitted.sort_unstable();
    assert_eq!(emitted, [20_100, 52_500]);
}

#[path = "../../examples/word_count.rs"]
mod word_count;

#[test]
fn the_word_count_example_restores_its_map_state_step_by_step() {
    let (counts, emitted) = word_count::step_by_step().unwrap();
    let expected: Vec<(String, i64)> = [("w0", 3), ("w1", 1), ("w2", 1)]
        .into_iter()
        .map(|(word, n)| (word.to_string(), n))
        .collect();
    assert_eq!(counts, expected);
    assert_eq!(emitted, 4, "the fourth w0");
}

#[test]
fn the_word_count_example_passes_the_harness() {
    let report = word_count::run(60);
    assert_eq!(report.cases, 60);
    assert!(report.failures.is_empty());
    assert!(report.restores > 0, "the cases restored state");
}

#[path = "../../examples/metered_backend.rs"]
mod metered_backend;

#[test]
fn the_metered_backend_wrapper_passes_the_harness() {
    use std::sync::atomic::Ordering;
    let (report, meter) = metered_backend::run(60);
    assert_eq!(report.cases, 60);
    assert!(report.failures.is_empty());
    for (what, count) in [
        ("writes", &meter.writes),
        ("snapshots", &meter.snapshots),
        ("restores", &meter.restores),
    ] {
        assert!(
            count.load(Ordering::Relaxed) > 0,
            "no {what} went through the wrapper"
        );
    }
}

#[path = "../../examples/file_sink.rs"]
mod file_sink;

#[test]
fn the_file_sink_example_passes_the_harness_judged_by_its_files() {
    let report = file_sink::run(60);
    assert_eq!(report.cases, 60);
    assert!(report.failures.is_empty());
    assert!(report.restores > 0, "the cases restored");
    assert!(
        file_sink::COMMITS.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "no transaction was committed by renaming its file"
    );
}

/// The file sink with its restore told of no checkpoint: it deletes what a completed
/// checkpoint pre-committed. The oracle sees that only through the files, so this proves the
/// output reader is what it judges.
struct ForgetsPending(file_sink::FileSink);

impl faultline::job::Sink for ForgetsPending {
    fn write(
        &mut self,
        record: faultline::job::Record,
        store: &mut faultline::job::ExternalStore,
    ) -> Result<Vec<faultline::job::sink::TxnEvent>, faultline::job::sink::StoreError> {
        self.0.write(record, store)
    }
    fn snapshot(
        &mut self,
        checkpoint_id: u64,
        store: &mut faultline::job::ExternalStore,
    ) -> Result<(Vec<u8>, Vec<faultline::job::sink::TxnEvent>), faultline::job::sink::StoreError>
    {
        self.0.snapshot(checkpoint_id, store)
    }
    fn pending_transactions(&self) -> usize {
        self.0.pending_transactions()
    }
    fn notify_checkpoint_complete(
        &mut self,
        checkpoint_id: u64,
        store: &mut faultline::job::ExternalStore,
    ) -> Result<Vec<faultline::job::sink::TxnEvent>, faultline::job::sink::StoreError> {
        self.0.notify_checkpoint_complete(checkpoint_id, store)
    }
    fn restore(
        &mut self,
        _: &[Vec<u8>],
        store: &mut faultline::job::ExternalStore,
    ) -> Result<Vec<faultline::job::sink::TxnEvent>, faultline::job::sink::StoreError> {
        self.0.restore(&[], store)
    }
}

#[test]
fn a_file_sink_losing_pre_committed_files_on_restore_is_caught_through_its_files() {
    let sink = |subtask: u16| {
        Box::new(ForgetsPending(file_sink::FileSink::new(subtask))) as Box<dyn faultline::job::Sink>
    };
    let dir = tempfile::tempdir().unwrap();
    let report = faultline::harness::Harness::new()
        .cases(200)
        .sink(&sink)
        .output(&file_sink::read_output)
        .failures_dir(dir.path())
        .try_run()
        .unwrap();
    let failure = report.failures.first().expect("caught within 200 cases");
    assert!(
        failure
            .violations
            .iter()
            .any(|v| v.property == faultline::check::Property::Output),
        "{:?}",
        failure.violations
    );
    assert!(failure.trace.contains("(pending)"), "{}", failure.trace);
}

mod own_proptest_block {
    //! The exported strategies inside a user's own `proptest!` block: scenarios drawn from
    //! `scenario_strategy`, run with a user operator, judged by the oracle.

    use faultline::campaign::{scenario_strategy, Case, KillMode, Seams, StrategyConfig};
    // The re-exported proptest: the same version the strategies were built with.
    use faultline::proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn generated_scenarios_with_a_user_operator_pass(
            scenario in scenario_strategy({
                let mut config = StrategyConfig::default();
                config.backends = vec![faultline::state::BackendKind::Memory];
                config.user_operators = vec![("running-total".into(), true)];
                config
            })
        ) {
            let operators = [super::running_total::running_total()];
            let dir = tempfile::tempdir().unwrap();
            let mut seams = Seams::default();
            seams.operators = &operators;
            let report = Case::new(scenario, seams).run(dir.path(), &KillMode::Sim).unwrap();
            prop_assert!(report.verdict.passed(), "{}", report.verdict);
        }
    }
}
