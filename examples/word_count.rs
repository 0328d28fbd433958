//! A word count in `MapState`, put under faultline's faults.
//!
//! Each record's value names a word (`w0` … `w4`, the value modulo 5); the operator counts, per
//! key, how often it has seen each word, in a `MapState<String, i64>` "words", and emits the
//! word's new count. Its model says the same over a plain map. `step_by_step` drives the
//! operator alone through a checkpoint and a restore with `OperatorHarness`.
//!
//! ```sh
//! cargo run --release --example word_count
//! FAULTLINE_CASES=2000 cargo run --release --example word_count
//! ```

use faultline::harness::Harness;
use faultline::job::user::{ModelState, UserOperator};
use faultline::job::{Operator, OperatorContext, OperatorError, Record};
use faultline::state::{BackendKind, MapState, StateBackend, StateValue};
use faultline::testing::{OperatorHarness, Operators, TestHarnessError};

/// The word a record names.
pub fn word(record: &Record) -> String {
    format!("w{}", record.value.rem_euclid(5))
}

/// The operator under test: per key, a count per word.
#[derive(Default)]
pub struct WordCount {
    words: Option<MapState<String, i64>>,
}

impl Operator for WordCount {
    fn open(&mut self, backend: Option<&mut dyn StateBackend>) -> Result<(), OperatorError> {
        let backend = backend.ok_or_else(|| OperatorError::Failed("keyed: needs state".into()))?;
        self.words = Some(MapState::declare(backend, "words")?);
        Ok(())
    }

    fn process(
        &mut self,
        mut record: Record,
        ctx: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        let words = self
            .words
            .as_ref()
            .ok_or_else(|| OperatorError::Failed("process before open".into()))?;
        let keyed = ctx.keyed()?;
        let word = word(&record);
        let count = words.get(keyed, &word)?.unwrap_or(0) + 1;
        words.put(keyed, &word, &count)?;
        record.value = count;
        out.push(record);
        Ok(())
    }
}

/// The model: the same counts over a plain map.
pub fn word_count_model(state: &mut ModelState, mut record: Record) -> Vec<Record> {
    let word = word(&record);
    let count = match state.get_entry("words", &record.key, &word) {
        Some(StateValue::Int(count)) => count + 1,
        _ => 1,
    };
    state.set_entry("words", &record.key, &word, StateValue::Int(count));
    record.value = count;
    vec![record]
}

/// The operator, registered for the harness.
pub fn word_count() -> UserOperator {
    UserOperator::new(
        "word-count",
        true,
        |_subtask| Box::new(WordCount::default()),
        word_count_model,
    )
}

/// The operator driven step by step on RocksDB (full): one key's words, a checkpoint, a
/// restore into a fresh instance, and one more word. Returns the word counts the restored
/// instance holds (map key, count) and the count it emitted for the last word.
pub fn step_by_step() -> Result<(Vec<(String, StateValue)>, i64), TestHarnessError> {
    let operator = word_count();
    let operators = Operators::user(&operator);
    let mut harness = OperatorHarness::builder(&operators)
        .backend(BackendKind::RocksDbFull)
        .open()?;
    for (i, value) in [0, 1, 5, 10, 2].into_iter().enumerate() {
        harness.process_element(Record::new(&format!("r{i}"), "doc-1", value))?;
    }
    let checkpoint = harness.snapshot(1)?;
    let mut restored = OperatorHarness::builder(&operators)
        .backend(BackendKind::RocksDbFull)
        .initialize_state(&[&checkpoint])?;
    let counts = restored
        .state()?
        .0
        .into_iter()
        .filter_map(|(addr, count)| Some((addr.user_key?, count)))
        .collect();
    let emitted = restored.process_element(Record::new("r5", "doc-1", 15))?[0].value;
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
