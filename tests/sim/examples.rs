//! Method: compile each example under `examples/` into the suite as a module and run it with a
//! small case count: the example's own operator (with its model) or backend wrapper must pass
//! the harness, and the wrapper must really be in the path (its meter counts); and the exported
//! proptest strategies work inside a user's own `proptest!` block.

#[path = "../../examples/running_total.rs"]
pub(crate) mod running_total;

#[test]
fn the_running_total_example_passes_the_harness() {
    let report = running_total::run(60);
    assert_eq!(report.cases, 60);
    assert!(report.failures.is_empty());
    assert!(report.restores > 0, "the cases restored state");
}

#[path = "../../examples/word_count.rs"]
mod word_count;

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

mod own_proptest_block {
    //! The exported strategies inside a user's own `proptest!` block: scenarios drawn from
    //! `scenario_strategy`, run with a user operator, judged by the oracle.

    use faultline::campaign::{scenario_strategy, Seams, StrategyConfig};
    use proptest::prelude::*;

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
            let seams = Seams { operators: &operators, ..Seams::default() };
            let (report, _) = scenario.run_with(dir.path(), seams).unwrap();
            prop_assert!(report.verdict.passed(), "{}", report.verdict);
        }
    }
}
