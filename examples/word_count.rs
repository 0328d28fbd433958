//! A word count in `MapState`, put under faultline's faults.
//!
//! Each record's value names a word (`w0` … `w4`, the value modulo 5); the operator counts, per
//! key, how often it has seen each word, in a `MapState<String, i64>` "words", and emits the
//! word's new count. Its model says the same over a plain map.
//!
//! ```sh
//! cargo run --release --example word_count
//! FAULTLINE_CASES=2000 cargo run --release --example word_count
//! ```

use faultline::harness::Harness;
use faultline::job::user::{ModelState, UserOperator};
use faultline::job::{Operator, OperatorContext, OperatorError, Record};
use faultline::state::{MapState, StateBackend, StateValue};

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

/// Runs the campaign: `cases` cases (unless `FAULTLINE_CASES` says otherwise).
pub fn run(cases: u64) -> faultline::campaign::ExploreReport {
    let operators = [word_count()];
    Harness::new().cases(cases).operators(&operators).run()
}

#[allow(dead_code)] // Also compiled into the test suite, which calls `run` instead.
fn main() {
    let report = run(200);
    print!("{}", report.summary());
}
