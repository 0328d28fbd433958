//! A fraud-style running total per account, in `ValueState`, put under faultline's faults.
//!
//! The operator keeps each account's total of transaction amounts in a `ValueState<i64>` and
//! emits the new total with every transaction; one function over the tutorial's `Transaction`
//! is both the operator and its model (run by the oracle on a plain map). The harness
//! runs generated jobs using it (with the tutorial's transactions shape: records keyed by
//! account, amounts as values) under every fault kind, and checks restored state, final state
//! and exactly-once output against the model.
//!
//! It then runs the tutorial's own transactions (`fixtures/transactions.csv`) through the
//! operator with a panic and a process kill on the way, and drives the operator step by step
//! with `OperatorHarness`: a checkpoint, then a restore at parallelism two.
//!
//! ```sh
//! cargo run --release --example running_total            # 200 cases, then the tutorial's data
//! FAULTLINE_CASES=2000 cargo run --release --example running_total
//! ```

use faultline::campaign::{Case, KillMode, Scenario, Seams};
use faultline::harness::Harness;
use faultline::job::user::{Output, UserOperator};
use faultline::job::{OperatorError, Record, Transaction};
use faultline::state::{BackendKind, KeyedContext, ValueState};
use faultline::testing::{OperatorHarness, Operators, TestHarnessError};

/// Each account's total, in cents.
pub const TOTAL: ValueState<i64> = ValueState::new("total");

/// The operator's logic: add the amount to the account's total and emit the transaction with
/// the new total as its amount (so built-in operators may follow it in generated jobs). The
/// same function is the model: run on a plain map by the oracle, it says what the engine's
/// recovered state and output must be.
pub fn running_total_logic(
    ctx: &mut KeyedContext<'_>,
    tx: Transaction,
    out: &mut Output<Transaction>,
) -> Result<(), OperatorError> {
    let total = TOTAL.get(ctx)?.unwrap_or(0).wrapping_add(tx.amount_cents);
    TOTAL.set(ctx, &total)?;
    out.emit(&Transaction {
        amount_cents: total,
        ..tx
    })
}

/// The operator, registered for the harness.
pub fn running_total() -> UserOperator {
    UserOperator::keyed("running-total", running_total_logic, running_total_logic)
}

/// What [`step_by_step`] saw: the restored total of each account the subtask owns, and the
/// totals emitted after the restore.
pub type StepByStep = (Vec<(String, Option<i64>)>, Vec<i64>);

/// The operator driven step by step, as a unit test would: three transactions, a checkpoint,
/// then a restore into subtask `subtask` of two on RocksDB (incremental), which owns some of the
/// accounts, and one more transaction per account it owns. Returns each account's total in the
/// restored instance and what it emitted after the restore.
pub fn step_by_step(subtask: u16) -> Result<StepByStep, TestHarnessError> {
    let operator = running_total();
    let operators = Operators::user(&operator);
    let mut harness = OperatorHarness::builder(&operators)
        .backend(BackendKind::RocksDbIncremental)
        .open()?;
    for (id, account, cents) in [
        ("t1", "acct-1", 18_800),
        ("t2", "acct-2", 52_400),
        ("t3", "acct-1", 1_200),
    ] {
        harness.process_element(Record::transaction(id, account, cents))?;
    }
    let checkpoint = harness.snapshot(1)?;
    harness.notify_checkpoint_complete(1);
    let mut restored = OperatorHarness::builder(&operators)
        .backend(BackendKind::RocksDbIncremental)
        .subtask(subtask, 2)
        .initialize_state(&[&checkpoint])?;
    let mut totals = Vec::new();
    for account in ["acct-1", "acct-2"] {
        let total = match restored.get(&TOTAL, account) {
            Err(TestHarnessError::KeyNotOwned { .. }) => continue,
            total => total?,
        };
        totals.push((account.to_string(), total));
        restored.process_element(Record::transaction("t4", account, 100))?;
    }
    let emitted = restored.outputs_as::<Transaction>()?;
    Ok((totals, emitted.iter().map(|t| t.amount_cents).collect()))
}

/// Runs the campaign: `cases` cases (unless `FAULTLINE_CASES` says otherwise).
pub fn run(cases: u64) -> faultline::campaign::ExploreReport {
    let operators = [running_total()];
    Harness::new().cases(cases).operators(&operators).run()
}

/// The tutorial's own transactions (`fixtures/transactions.csv` under the crate root, which
/// replaces `{manifest_dir}`) through the operator, with a
/// panic in it and a process kill on the way: the run must restore and still end with every
/// account's exact total, each committed once.
pub const TUTORIAL_SCENARIO: &str = r#"
name = "running-total-on-the-tutorial-transactions"
seed = 11
backend = "rocksdb-incremental"
checkpoint = { interval_ms = 4, num_retained = 2 }
restart = { kind = "fixed-delay", attempts = 5, delay_ms = 10 }
faults = [
  { kind = "panic", stage = "total", subtask = 1, attempt = 0, record_index = 6 },
  { kind = "kill", step = 90 },
]

[job]
name = "fraud-totals"
source = { parallelism = 2, partitions = 2, emit_ms = 1 }
sink = { kind = "two-phase-commit" }
stages = [{ name = "total", op = { kind = "user", name = "running-total", keyed = true }, parallelism = 2 }]

[input]
kind = "csv"
path = "{manifest_dir}/fixtures/transactions.csv"
"#;

/// Runs [`TUTORIAL_SCENARIO`] from the crate root, judged by the operator's model.
pub fn run_on_tutorial_transactions() -> faultline::campaign::CaseReport {
    // The data file is found from the crate root, wherever the example runs from.
    let text = TUTORIAL_SCENARIO.replace("{manifest_dir}", env!("CARGO_MANIFEST_DIR"));
    let scenario = Scenario::from_toml(&text, "running_total example")
        .expect("the example's scenario is valid");
    let operators = [running_total()];
    let mut seams = Seams::default();
    seams.operators = &operators;
    let dir = tempfile::tempdir().expect("a temporary directory");
    Case::new(scenario, seams)
        .run(dir.path(), &KillMode::Sim)
        .expect("the scenario runs")
}

#[allow(dead_code)] // Also compiled into the test suite, which calls `run` instead.
fn main() {
    let report = run(200);
    print!("{}", report.summary());
    let tutorial = run_on_tutorial_transactions();
    println!(
        "tutorial transactions: {} restores, verdict: {}",
        tutorial.outcome.restores.len(),
        tutorial.verdict
    );
    for subtask in 0..2 {
        match step_by_step(subtask) {
            Ok((totals, emitted)) => {
                println!("subtask {subtask} of 2 restored {totals:?}, then emitted {emitted:?}")
            }
            Err(error) => println!("subtask {subtask} of 2: {error}"),
        }
    }
}
