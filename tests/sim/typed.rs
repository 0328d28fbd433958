//! Method: a user's own record type end to end — `Payment`s keyed by a numeric payee, drawn
//! from the user's proptest strategy — through an operator using `ReducingState`,
//! `AggregatingState` and `MapState` of its own types and a side output; step by step in the
//! operator harness, then a campaign of generated jobs, which must pass. Its broken twin (the
//! largest payment in a plain field) must be caught, and a model that fails on a record must
//! be reported as a model violation of that case. Scenario files carry typed records as TOML
//! values and JSON Lines, and a later stage lets the side output pass to the sink; records'
//! event times travel from a scenario file through built-in stages to the sink.

use faultline::campaign::{Case, InputStrategy, KillMode, Scenario, Seams, UserChaining};
use faultline::check::Property;
use faultline::harness::Harness;
use faultline::job::user::{Output, OutputTag, UserOperator};
use faultline::job::{Datum, Operator, OperatorContext, OperatorError, Record, Transaction};
use faultline::proptest::prelude::*;
use faultline::state::{
    AggregatingState, BackendKind, KeyedContext, MapState, ReducingState, ValueState,
};
use faultline::testing::{OperatorHarness, Operators};
use serde::{Deserialize, Serialize};

/// The user's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Payment {
    payer: String,
    payee: u32,
    cents: i64,
}

/// What the operator emits per payment: the payee's figures so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Summary {
    payee: u32,
    largest: i64,
    mean: i64,
    payers: usize,
}

const LARGEST: ReducingState<i64> = ReducingState::new("largest", |a, b| *a.max(b));
const MEAN: AggregatingState<i64, (i64, i64), i64> = AggregatingState::new(
    "mean",
    || (0, 0),
    |acc, cents| *acc = (acc.0.wrapping_add(*cents), acc.1 + 1),
    |acc| acc.0 / acc.1.max(1),
);
const BY_PAYER: MapState<String, i64> = MapState::new("by-payer");
/// Payments of 900 cents or more, on the side.
const LARGE: OutputTag<Payment> = OutputTag::new("large");

fn summary(
    ctx: &mut KeyedContext<'_>,
    payment: &Payment,
    largest: i64,
) -> Result<Summary, OperatorError> {
    let mean = MEAN.add(ctx, &payment.cents)?;
    let paid = BY_PAYER.get(ctx, &payment.payer)?.unwrap_or(0);
    BY_PAYER.put(ctx, &payment.payer, &paid.wrapping_add(payment.cents))?;
    Ok(Summary {
        payee: payment.payee,
        largest,
        mean,
        payers: BY_PAYER.entries(ctx)?.len(),
    })
}

/// The operator, and its own model.
fn payee_stats(
    ctx: &mut KeyedContext<'_>,
    payment: Payment,
    out: &mut Output<Summary>,
) -> Result<(), OperatorError> {
    let largest = LARGEST.add(ctx, &payment.cents)?;
    let figures = summary(ctx, &payment, largest)?;
    out.emit(&figures)?;
    if payment.cents >= 900 {
        out.side(&LARGE, &payment)?;
    }
    Ok(())
}

fn operator() -> UserOperator {
    UserOperator::keyed("payee-stats", payee_stats, payee_stats)
}

fn payments() -> impl Strategy<Value = Vec<Payment>> {
    let payment = (
        prop::sample::select(vec!["ann", "bob", "cy"]),
        0u32..40,
        0i64..1000,
    )
        .prop_map(|(payer, payee, cents)| Payment {
            payer: payer.to_string(),
            payee,
            cents,
        });
    prop::collection::vec(payment, 1..50)
}

fn harness(operators: &[UserOperator], cases: u64) -> Harness<'_> {
    Harness::new()
        .cases(cases)
        .backends(vec![BackendKind::Memory, BackendKind::RocksDbIncremental])
        .input(InputStrategy::keyed_by(payments, |p: &Payment| p.payee))
        // The operator reads payments and emits summaries: nothing else reads either.
        .user_chaining(UserChaining {
            with_itself: false,
            with_built_ins: false,
        })
        .operators(operators)
}

#[test]
fn typed_state_and_side_outputs_step_by_step() {
    let op = operator();
    let operators = Operators::user(&op);
    let mut first = OperatorHarness::builder(&operators)
        .backend(BackendKind::RocksDbFull)
        .open()
        .unwrap();
    for (i, (payer, cents)) in [("ann", 100), ("bob", 950), ("ann", 300)]
        .iter()
        .enumerate()
    {
        let payment = Payment {
            payer: payer.to_string(),
            payee: 7,
            cents: *cents,
        };
        let record = Record::of(&format!("p{i}"), &7u32, &payment).unwrap();
        first.process_element(record).unwrap();
    }
    let snapshot = first.snapshot(1).unwrap();
    let large = first.side_outputs(&LARGE).unwrap();
    assert_eq!(large.iter().map(|p| p.cents).collect::<Vec<_>>(), [950]);
    let mut restored = OperatorHarness::builder(&operators)
        .backend(BackendKind::Memory)
        .initialize_state(&[&snapshot])
        .unwrap();
    let payment = Payment {
        payer: "cy".into(),
        payee: 7,
        cents: 50,
    };
    restored
        .process_element(Record::of("p3", &7u32, &payment).unwrap())
        .unwrap();
    let summaries: Vec<Summary> = restored.outputs_as().unwrap();
    assert_eq!(
        summaries,
        [Summary {
            payee: 7,
            largest: 950,
            mean: 350,
            payers: 3
        }]
    );
    // The canonical view shows the user's types readably.
    let state = restored.state().unwrap().0;
    let by_payer: Vec<String> = state
        .iter()
        .filter(|(addr, _)| addr.state == "by-payer")
        .map(|(addr, value)| format!("{}={value}", addr.user_key.as_ref().unwrap()))
        .collect();
    assert_eq!(by_payer, ["ann=400", "bob=950", "cy=50"]);
    let mean = state.iter().find(|(addr, _)| addr.state == "mean").unwrap();
    assert_eq!(mean.0.key, Datum::of(&7u32).unwrap());
    assert_eq!(mean.1.to_string(), "[1400, 4]");
}

#[test]
fn a_typed_operator_with_side_outputs_passes_the_campaign() {
    let operators = [operator()];
    let report = harness(&operators, 80).run();
    assert_eq!(report.cases, 80);
    assert!(report.restores > 0, "the cases restored state");
}

/// Transactions of 400 cents or more, on the side.
const LARGE_TX: OutputTag<Transaction> = OutputTag::new("large-tx");
/// Transactions per account.
const SEEN: ValueState<i64> = ValueState::new("seen");

/// Passes each transaction on, counting it, and copies a large one to the side.
fn flag_large(
    ctx: &mut KeyedContext<'_>,
    tx: Transaction,
    out: &mut Output<Transaction>,
) -> Result<(), OperatorError> {
    let seen = SEEN.get(ctx)?.unwrap_or(0) + 1;
    SEEN.set(ctx, &seen)?;
    if tx.amount_cents >= 400 {
        out.side(&LARGE_TX, &tx)?;
    }
    out.emit(&tx)
}

#[test]
fn side_outputs_pass_chained_stages_in_both_modes() {
    // Default chaining: next to itself and to built-in operators (a `split` after it names
    // its parts as `Output` names two outputs), exactly-once and at-least-once with fan-in.
    let operators = [UserOperator::keyed("flag-large", flag_large, flag_large)];
    let report = Harness::new()
        .cases(120)
        .backends(vec![BackendKind::Memory])
        .operators(&operators)
        .run();
    assert_eq!(report.cases, 120);
    assert!(report.restores > 0, "the cases restored state");
}

/// Broken twin: the largest payment in a plain field, which no snapshot holds.
#[derive(Default)]
struct PlainLargest {
    largest: std::collections::BTreeMap<Datum, i64>,
}

impl Operator for PlainLargest {
    fn process(
        &mut self,
        record: Record,
        ctx: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        let payment: Payment = record.value_as()?;
        let largest = self.largest.entry(record.key.clone()).or_insert(i64::MIN);
        *largest = (*largest).max(payment.cents);
        let largest = *largest;
        // Keeps the reducing state the model describes in step, so only the field is wrong.
        LARGEST.add(ctx.keyed()?, &payment.cents)?;
        let figures = summary(ctx.keyed()?, &payment, largest)?;
        let mut main = record.clone().with_value(&figures)?;
        if payment.cents >= 900 {
            // Two outputs: both ids suffixed, as `Output` names them.
            main.id = format!("{}.0", record.id);
            let mut side = record.clone().with_value(&payment)?;
            side.id = format!("{}.1", record.id);
            side.side = Some(LARGE.name().to_string());
            out.extend([main, side]);
        } else {
            out.push(main);
        }
        Ok(())
    }
}

#[test]
fn a_typed_operator_keeping_state_in_a_field_is_caught() {
    let operators = [UserOperator {
        build: Box::new(|_| Box::new(PlainLargest::default())),
        ..operator()
    }];
    let report = harness(&operators, 200).try_run().unwrap();
    let failure = report.failures.first().expect("the plain field is caught");
    assert!(
        failure
            .violations
            .iter()
            .any(|v| matches!(v.property, Property::Output | Property::State)),
        "{:?}",
        failure.violations
    );
}

#[test]
fn a_model_failing_on_a_record_is_a_model_violation_of_its_case() {
    fn picky(
        ctx: &mut KeyedContext<'_>,
        payment: Payment,
        out: &mut Output<Summary>,
    ) -> Result<(), OperatorError> {
        if payment.cents >= 500 {
            return Err(OperatorError::Failed(
                "the model refuses large payments".into(),
            ));
        }
        payee_stats(ctx, payment, out)
    }
    let operators = [UserOperator::keyed("payee-stats", payee_stats, picky)];
    let report = harness(&operators, 40).try_run().unwrap();
    let failure = report
        .failures
        .first()
        .expect("the model's failure is reported");
    assert!(
        failure
            .violations
            .iter()
            .any(|v| v.property == Property::Model),
        "{:?}",
        failure.violations
    );
}

const TYPED_SCENARIO: &str = r#"
name = "typed-records"
seed = 3
backend = "memory"
checkpoint = { interval_ms = 3 }
restart = { kind = "fixed-delay", attempts = 3, delay_ms = 5 }
faults = [{ kind = "kill", step = 40 }]

[job]
name = "payees"
source = { parallelism = 1, partitions = 2, emit_ms = 1 }
sink = { kind = "two-phase-commit" }
stages = [
  { name = "stats", op = { kind = "user", name = "payee-stats", keyed = true }, parallelism = 2 },
  { name = "relay", op = { kind = "user", name = "relay", keyed = false }, parallelism = 1 },
]
"#;

/// Passes summaries on: the side output's payments, which it could not read, go past it.
fn relay(summary: Summary, out: &mut Output<Summary>) -> Result<(), OperatorError> {
    out.emit(&summary)
}

fn run_typed(input: &str, dir: &std::path::Path) -> faultline::campaign::CaseReport {
    let scenario = Scenario::from_toml(&format!("{TYPED_SCENARIO}{input}"), "typed").unwrap();
    let operators = [operator(), UserOperator::stateless("relay", relay, relay)];
    let mut seams = Seams::default();
    seams.operators = &operators;
    Case::new(scenario, seams).run(dir, &KillMode::Sim).unwrap()
}

#[test]
fn scenario_files_carry_typed_records_inline_and_as_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut inline = String::from("[input]\nkind = \"records\"\nrecords = [\n");
    let mut lines = String::new();
    for i in 0..30 {
        let (payer, payee, cents) = (["ann", "bob"][i % 2], i % 5, i as i64 * 37);
        inline.push_str(&format!(
            "  {{ id = \"p{i}\", key = {payee}, value = {{ payer = \"{payer}\", payee = {payee}, cents = {cents} }} }},\n"
        ));
        lines.push_str(&format!(
            "{{\"id\":\"p{i}\",\"payee\":{payee},\"cents\":{cents},\"payer\":\"{payer}\"}}\n"
        ));
    }
    inline.push_str("]\n");
    let from_toml = run_typed(&inline, &dir.path().join("toml"));
    assert!(from_toml.verdict.passed(), "{}", from_toml.verdict);
    assert!(!from_toml.outcome.restores.is_empty(), "the kill restored");

    // The JSON Lines objects also carry their `id`, a field `Payment` does not declare and
    // serde passes over.
    let path = dir.path().join("payments.jsonl");
    std::fs::write(&path, lines).unwrap();
    let jsonl = format!(
        "[input]\nkind = \"json-lines\"\npath = {:?}\nkey = \"payee\"\nid = \"id\"\n",
        path.display().to_string()
    );
    let from_lines = run_typed(&jsonl, &dir.path().join("jsonl"));
    assert!(from_lines.verdict.passed(), "{}", from_lines.verdict);
    let visible = |report: &faultline::campaign::CaseReport| {
        let mut ids: Vec<String> = report
            .outcome
            .store
            .visible()
            .iter()
            .map(|r| r.id.clone())
            .collect();
        ids.sort();
        ids
    };
    // Both inputs are the same payments (the JSON Lines values carry their id besides): the
    // same committed output ids, side outputs included.
    assert_eq!(visible(&from_toml), visible(&from_lines));
    assert!(
        visible(&from_toml).iter().any(|id| id.ends_with(".1")),
        "side outputs committed"
    );

    let bad = format!(
        "[input]\nkind = \"json-lines\"\npath = {:?}\nkey = \"nobody\"\n",
        path.display().to_string()
    );
    let scenario = Scenario::from_toml(&format!("{TYPED_SCENARIO}{bad}"), "typed").unwrap();
    let error = scenario.input_records().unwrap_err().to_string();
    assert!(
        error.contains("line 1") && error.contains("nobody"),
        "{error}"
    );
}

#[test]
fn event_times_travel_from_a_scenario_file_to_the_sink() {
    let mut records = String::new();
    for i in 0..12 {
        records.push_str(&format!(
            "  {{ id = \"t{i}\", key = \"k{}\", value = {{ account = \"k{}\", amount_cents = {} }}, timestamp_ms = {} }},\n",
            i % 3,
            i % 3,
            i * 10,
            1_000 + i * 250
        ));
    }
    let text = format!(
        r#"
name = "event-times"
seed = 5
backend = "memory"
checkpoint = {{ interval_ms = 3 }}
restart = {{ kind = "fixed-delay", attempts = 3, delay_ms = 5 }}
faults = [{{ kind = "kill", step = 30 }}]

[job]
name = "times"
source = {{ parallelism = 1, partitions = 2, emit_ms = 1 }}
sink = {{ kind = "two-phase-commit" }}
stages = [
  {{ name = "sum", op = {{ kind = "sum" }}, parallelism = 2 }},
  {{ name = "split", op = {{ kind = "split", parts = 2 }}, parallelism = 1 }},
]

[input]
kind = "records"
records = [
{records}]
"#
    );
    let scenario = Scenario::from_toml(&text, "event-times").unwrap();
    // The scenario file round-trips its event times.
    assert_eq!(
        Scenario::from_toml(&scenario.to_toml(), "again").unwrap(),
        scenario
    );
    let dir = tempfile::tempdir().unwrap();
    let report = Case::new(scenario, Seams::default())
        .run(dir.path(), &KillMode::Sim)
        .unwrap();
    assert!(report.verdict.passed(), "{}", report.verdict);
    let visible = report.outcome.store.visible();
    assert_eq!(visible.len(), 24, "two parts of each of the 12 records");
    for record in visible {
        let input: usize = record.id[1..].split('.').next().unwrap().parse().unwrap();
        assert_eq!(
            record.timestamp_ms,
            Some(1_000 + input as i64 * 250),
            "{record}"
        );
    }
}
