//! A word count in `MapState`, put under faultline's faults.
//!
//! Each transaction names a word (`w0` … `w4`, the amount modulo 5); the operator counts, per
//! key, how often it has seen each word, in a `MapState<String, i64>` "words", and emits the
//! word's new count. Its model says the same another way over a plain map. `step_by_step` drives the
//! operator alone through a checkpoint and a restore with `OperatorHarness`.
//!
//! ```sh
//! cargo run --release --example word_count
//! FAULTLINE_CASES=2000 cargo run --release --example word_count
//! ```

use faultline::harness::Harness;
use faultline::job::user::{Output, UserOperator};
use faultline::job::{OperatorError, Record, Transaction};
use faultline::state::{BackendKind, KeyedContext, MapState};
use faultline::testing::{OperatorHarness, Operators, TestHarnessError};

/// Per key, how often each word was seen.
pub const WORDS: MapState<String, i64> = MapState::new("words");

/// The word a transaction names.
pub fn word(tx: &Transaction) -> String {
    format!("w{}", tx.amount_cents.rem_euclid(5))
}

/// The operator under test: per key, a count per word; emits the word's new count as the
/// transaction's amount.
pub fn word_count_logic(
    ctx: &mut KeyedContext<'_>,
    tx: Transaction,
    out: &mut Output<Transaction>,
) -> Result<(), OperatorError> {
    let word = word(&tx);
    let count = WORDS.get(ctx, &word)?.unwrap_or(0) + 1;
    WORDS.put(ctx, &word, &count)?;
    out.emit(&Transaction {
        amount_cents: count,
        ..tx
    })
}

/// The model: the same counts, written without the state API's `get`-then-`put`, over every
/// entry of the key (an independent statement of the same rule).
pub fn word_count_model(
    ctx: &mut KeyedContext<'_>,
    tx: Transaction,
    out: &mut Output<Transaction>,
) -> Result<(), OperatorError> {
    let word = word(&tx);
    let seen = WORDS
        .entries(ctx)?
        .into_iter()
        .find(|(w, _)| *w == word)
        .map_or(0, |(_, count)| count);
    WORDS.put(ctx, &word, &(seen + 1))?;
    out.emit(&Transaction {
        amount_cents: seen + 1,
        ..tx
    })
}

/// The operator, registered for the harness.
pub fn word_count() -> UserOperator {
    UserOperator::keyed("word-count", word_count_logic, word_count_model)
}

/// The operator driven step by step on RocksDB (full): one key's words, a checkpoint, a
/// restore into a fresh instance, and one more word. Returns the word counts the restored
/// instance holds (map key, count) and the count it emitted for the last word.
pub fn step_by_step() -> Result<(Vec<(String, i64)>, i64), TestHarnessError> {
    let operator = word_count();
    let operators = Operators::user(&operator);
    let mut harness = OperatorHarness::builder(&operators)
        .backend(BackendKind::RocksDbFull)
        .open()?;
    for (i, cents) in [0, 1, 5, 10, 2].into_iter().enumerate() {
        harness.process_element(Record::transaction(&format!("r{i}"), "doc-1", cents))?;
    }
    let checkpoint = harness.snapshot(1)?;
    let mut restored = OperatorHarness::builder(&operators)
        .backend(BackendKind::RocksDbFull)
        .initialize_state(&[&checkpoint])?;
    let counts = restored
        .state()?
        .0
        .into_iter()
        .filter_map(|(addr, count)| Some((addr.user_key?.get().ok()?, count.get().ok()?)))
        .collect();
    restored.process_element(Record::transaction("r5", "doc-1", 15))?;
    let emitted = restored.outputs_as::<Transaction>()?[0].amount_cents;
    Ok((counts, emitted))
}

/// Runs the campaign: `cases` cases (unless `FAULTLINE_CASES` says otherwise).
pub fn run(cases: u64) -> faultline::campaign::ExploreReport {
    let operators = [word_count()];
    Harness::new().cases(cases).operators(&operators).run()
}

#[allow(dead_code)] // Also compiled into the test suite, which calls `run` instead.
fn main() {
    let report = run(200);
    print!("{}", report.summary());
    match step_by_step() {
        Ok((counts, emitted)) => println!("restored {counts:?}; w0 then counted {emitted}"),
        Err(error) => println!("step by step: {error}"),
    }
}
