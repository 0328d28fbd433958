//! A fraud-style running total per account, in `ValueState`, put under faultline's faults.
//!
//! The operator keeps each account's total of transaction amounts in keyed state and emits the
//! new total with every transaction; its model says the same as a pure function. The harness
//! runs generated jobs using it (with the tutorial's transactions shape: records keyed by
//! account, amounts as values) under every fault kind, and checks restored state, final state
//! and exactly-once output against the model.
//!
//! ```sh
//! cargo run --release --example running_total            # 200 cases
//! FAULTLINE_CASES=2000 cargo run --release --example running_total
//! ```

use faultline::harness::Harness;
use faultline::job::user::{ModelState, UserOperator};
use faultline::job::{Operator, OperatorContext, OperatorError, Record};
use faultline::state::{StateBackend, StateValue, ValueState};

/// The operator under test: one `ValueState<i64>` "total" per account.
#[derive(Default)]
pub struct RunningTotal {
    total: Option<ValueState<i64>>,
}

impl Operator for RunningTotal {
    fn open(&mut self, backend: Option<&mut dyn StateBackend>) -> Result<(), OperatorError> {
        let backend = backend.ok_or_else(|| OperatorError::Failed("keyed: needs state".into()))?;
        self.total = Some(ValueState::declare(backend, "total")?);
        Ok(())
    }

    fn process(
        &mut self,
        mut record: Record,
        ctx: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        let total = self
            .total
            .as_ref()
            .ok_or_else(|| OperatorError::Failed("process before open".into()))?;
        let keyed = ctx.keyed()?;
        let sum = total.get(keyed)?.unwrap_or(0).wrapping_add(record.value);
        total.set(keyed, &sum)?;
        record.value = sum;
        out.push(record);
        Ok(())
    }
}

/// The model: the same semantics over a plain map.
pub fn running_total_model(state: &mut ModelState, mut record: Record) -> Vec<Record> {
    let previous = match state.get("total", &record.key) {
        Some(StateValue::Int(total)) => *total,
        _ => 0,
    };
    let sum = previous.wrapping_add(record.value);
    state.set("total", &record.key, StateValue::Int(sum));
    record.value = sum;
    vec![record]
}

/// The operator, registered for the harness.
pub fn running_total() -> UserOperator {
    UserOperator::new(
        "running-total",
        true,
        |_subtask| Box::new(RunningTotal::default()),
        running_total_model,
    )
}

/// Runs the campaign: `cases` cases (unless `FAULTLINE_CASES` says otherwise).
pub fn run(cases: u64) -> faultline::campaign::ExploreReport {
    let operators = [running_total()];
    Harness::new().cases(cases).operators(&operators).run()
}

#[allow(dead_code)] // Also compiled into the test suite, which calls `run` instead.
fn main() {
    let report = run(200);
    print!("{}", report.summary());
}
