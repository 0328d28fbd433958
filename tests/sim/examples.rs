//! Method: compile each example under `examples/` into the suite as a module and run it with a
//! small case count: the example's own operator and model must pass the harness.

#[path = "../../examples/running_total.rs"]
mod running_total;

#[test]
fn the_running_total_example_passes_the_harness() {
    let report = running_total::run(60);
    assert_eq!(report.cases, 60);
    assert!(report.failures.is_empty());
    assert!(report.restores > 0, "the cases restored state");
}
