//! An inactivity detector as a `KeyedProcessFunction`, put under faultline's faults.
//!
//! Each transaction counts towards its account's activity (`ValueState`) and moves the
//! account's event-time timer to one second after the latest transaction seen; when the
//! watermark passes it, the account has been quiet for a second and the timer emits the number
//! of transactions since the last alert, then clears the account's state. The same two
//! functions (`on_transaction`, `on_quiet`) are the operator and its model: the oracle applies
//! each firing the engine made to the model, where the engine made it, and holds the operator
//! to what the model emits, to the state it keeps, and to firing every timer the model holds
//! once the input ends.
//!
//! The harness runs generated jobs using it (half of them with event time; without it the
//! detector stays silent) under every fault kind, the faults in timers and watermarks
//! included. Then the operator is driven step by step with `OperatorHarness`: two
//! transactions, a checkpoint, a restore, and the watermark that fires the alert.
//!
//! ```sh
//! cargo run --release --example inactivity            # 200 cases, then step by step
//! ```

use faultline::harness::Harness;
use faultline::job::user::{Output, UserOperator};
use faultline::job::{OperatorError, Record, Transaction};
use faultline::state::timers::{TimeDomain, Timer};
use faultline::state::{BackendKind, KeyedContext, ValueState};
use faultline::testing::{OperatorHarness, Operators, TestHarnessError};

/// How long an account must be quiet (in event time) before the alert.
pub const QUIET_MS: i64 = 1_000;
/// Transactions since the last alert.
const SEEN: ValueState<i64> = ValueState::new("seen");
/// When the account's timer fires.
const DEADLINE: ValueState<i64> = ValueState::new("deadline");

/// A transaction: count it, and move the account's timer to `QUIET_MS` after the latest
/// event time seen (a transaction arriving out of order never pulls it back).
pub fn on_transaction(
    ctx: &mut KeyedContext<'_>,
    _tx: Transaction,
    _out: &mut Output<Transaction>,
) -> Result<(), OperatorError> {
    let Some(at_ms) = ctx.timestamp_ms() else {
        return Ok(());
    };
    SEEN.set(ctx, &(SEEN.get(ctx)?.unwrap_or(0) + 1))?;
    let old = DEADLINE.get(ctx)?;
    let deadline = old.unwrap_or(i64::MIN).max(at_ms.saturating_add(QUIET_MS));
    if old != Some(deadline) {
        if let Some(old) = old {
            ctx.delete_timer(TimeDomain::EventTime, old, "")?;
        }
        ctx.register_timer(TimeDomain::EventTime, deadline, "")?;
        DEADLINE.set(ctx, &deadline)?;
    }
    Ok(())
}

/// The account has been quiet: emit how many transactions it saw, and forget it.
pub fn on_quiet(
    ctx: &mut KeyedContext<'_>,
    timer: &Timer,
    out: &mut Output<Transaction>,
) -> Result<(), OperatorError> {
    let seen = SEEN.get(ctx)?.unwrap_or(0);
    SEEN.clear(ctx)?;
    DEADLINE.clear(ctx)?;
    out.emit(&Transaction {
        account: timer.key.get().unwrap_or_else(|_| timer.key.to_string()),
        amount_cents: seen,
    })
}

/// The operator, registered for the harness: the same functions run in the engine and as the
/// model.
pub fn inactivity() -> UserOperator {
    UserOperator::keyed_with_timers(
        "inactivity",
        (on_transaction, on_quiet),
        (on_transaction, on_quiet),
    )
}

/// Runs the campaign: `cases` cases.
pub fn run(cases: u64) -> faultline::campaign::ExploreReport {
    let operators = [inactivity()];
    Harness::new().cases(cases).operators(&operators).run()
}

fn at(id: &str, account: &str, timestamp_ms: i64) -> Record {
    Record {
        timestamp_ms: Some(timestamp_ms),
        ..Record::transaction(id, account, 100)
    }
}

/// The operator step by step, as a unit test would: two transactions of one account, a
/// checkpoint, a restore on RocksDB into a new instance, a third transaction, then watermarks.
/// Returns the alerts emitted after the restore, with the watermark that released each.
pub fn step_by_step() -> Result<Vec<(i64, Transaction)>, TestHarnessError> {
    let operator = inactivity();
    let operators = Operators::user(&operator);
    let mut harness = OperatorHarness::builder(&operators)
        .backend(BackendKind::Memory)
        .open()?;
    harness.process_element(at("t1", "acct-1", 1_000))?;
    harness.process_element(at("t2", "acct-1", 1_500))?;
    let checkpoint = harness.snapshot(1)?;
    let mut restored = OperatorHarness::builder(&operators)
        .backend(BackendKind::RocksDbFull)
        .initialize_state(&[&checkpoint])?;
    restored.process_element(at("t3", "acct-1", 1_800))?;
    let mut alerts = Vec::new();
    for watermark_ms in [2_000, 2_799, 2_800, 10_000] {
        for alert in restored.process_watermark(watermark_ms)? {
            alerts.push((watermark_ms, alert.value_as::<Transaction>()?));
        }
    }
    Ok(alerts)
}

#[allow(dead_code)] // Also compiled into the test suite, which calls `run` instead.
fn main() {
    let report = run(200);
    print!("{}", report.summary());
    match step_by_step() {
        Ok(alerts) => println!("after the restore: {alerts:?}"),
        Err(error) => println!("step by step: {error}"),
    }
}
