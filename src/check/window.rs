//! The window judgement. What a window emits depends on the watermarks of the run (a record is
//! late only because a watermark overtook it, and after a restore watermarks start again from
//! nothing), so the model cannot say which results a run emits. It says which records enter
//! the window stage (it passes them on), and the rule is conservation: in a finished
//! exactly-once run, for every key and window, the results' aggregate together with the late
//! records accounts for exactly the records that fall in that window — the sum of the results
//! and late amounts is the sum of the inputs, their count (a result counting its records, a
//! late record one) the number of inputs, their maximum the inputs' maximum. No result or late
//! record names a window nothing fell in. With replays allowed (at-least-once, or a sink
//! without transactions) every window with input must show up, as a result or late. And once
//! the job finished, the end-of-input watermark fired every window: none may be left in state.
//! The window stage's cells are left out of the state the model is compared with, since the
//! model keeps none.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use super::{CaseSpec, Note, Property, Verdict, Violation};
use crate::checkpoint::CheckpointingMode;
use crate::engine::{JobStatus, RunOutcome};
use crate::job::window::{window_start, LATE};
use crate::job::{
    Datum, JobSpec, OperatorSpec, Record, SinkKind, StageSpec, Transaction, WindowAggregate,
};
use crate::model;
use crate::state::{StateAddr, StateView};

/// A window stage's results that do not account for its input.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WindowViolation {
    /// A window's results and late records do not add up to its input.
    Unbalanced {
        /// The key.
        key: Datum,
        /// The window's start.
        start_ms: i64,
        /// What was aggregated.
        aggregate: WindowAggregate,
        /// The aggregate of the records that fell in the window.
        input: i64,
        /// What the results and late records account for.
        accounted: i64,
    },
    /// A window with input has no result and no late record.
    Uncovered {
        /// The key.
        key: Datum,
        /// The window's start.
        start_ms: i64,
        /// Records that fell in it.
        records: usize,
    },
    /// A result or late record of a window nothing fell in.
    Phantom {
        /// The key.
        key: Datum,
        /// The window's start.
        start_ms: i64,
        /// The record's id.
        record: String,
    },
    /// A window still in state after the job finished (its cleanup timer never fired).
    StateLeft {
        /// The cell.
        addr: StateAddr,
        /// What it holds.
        value: Datum,
    },
}

impl WindowViolation {
    /// The property it breaks.
    pub fn property(&self) -> Property {
        match self {
            Self::StateLeft { .. } => Property::State,
            _ => Property::Output,
        }
    }
}

impl fmt::Display for WindowViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unbalanced { key, start_ms, aggregate, input, accounted } => write!(f, "window {key}@{start_ms}: its results and late records account for {aggregate:?} {accounted}, its input is {input}"),
            Self::Uncovered { key, start_ms, records } => write!(f, "window {key}@{start_ms}: {records} record(s) fell in it, but no result and no late record came out"),
            Self::Phantom { key, start_ms, record } => write!(f, "window {key}@{start_ms}: {record} is visible, but no record fell in that window"),
            Self::StateLeft { addr, value } => write!(f, "window state left after the job finished: {addr} holds {value}"),
        }
    }
}

/// `view` as the model is compared with: without the window stage's cells.
pub(super) fn judged_state<'v>(job: &JobSpec, view: &'v StateView) -> Cow<'v, StateView> {
    match job.window() {
        None => Cow::Borrowed(view),
        Some((_, stage)) => Cow::Owned(StateView(
            (view.0.iter())
                .filter(|(addr, _)| addr.stage != stage.name)
                .map(|(addr, value)| (addr.clone(), value.clone()))
                .collect(),
        )),
    }
}

/// What one window accounts for, on either side.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    records: usize,
    sum: i64,
    count: i64,
    max: Option<i64>,
}

impl Tally {
    fn add(&mut self, amount: i64, counts_for: i64) {
        self.records += 1;
        self.sum = self.sum.wrapping_add(amount);
        self.count += counts_for;
        self.max = Some(self.max.map_or(amount, |m| m.max(amount)));
    }

    fn of(&self, aggregate: WindowAggregate) -> i64 {
        match aggregate {
            WindowAggregate::Sum => self.sum,
            WindowAggregate::Count => self.count,
            WindowAggregate::Max => self.max.unwrap_or(i64::MIN),
        }
    }
}

type Windows = BTreeMap<(Datum, i64), Tally>;

/// Judges a case whose last stage is a window: state without the window (restored and
/// final), what the run reported, the window state left at the end, and conservation.
pub(super) fn check_case(
    case: &CaseSpec<'_>,
    outcome: &RunOutcome,
    window_input: &[Record],
    stage: &StageSpec,
    verdict: &mut Verdict,
) {
    let exact = case.values_exact();
    if exact {
        super::check_restores(case, outcome, verdict);
    } else {
        verdict.notes.push(Note::ValuesNotCompared);
    }
    let end = model::evaluate_with(case.job(), case.input, &outcome.end_positions, case.users);
    super::check_end(case.job(), &end.state, exact, outcome, verdict);
    super::check_reported(outcome, verdict);
    if outcome.status != JobStatus::Finished {
        return;
    }
    let OperatorSpec::TumblingWindow { size_ms, aggregate } = stage.op else {
        unreachable!("JobSpec::window returns window stages")
    };
    if let Some(state) = &outcome.final_state {
        let left = state.0.iter().filter(|(addr, _)| addr.stage == stage.name);
        verdict.violations.extend(left.map(|(addr, value)| {
            Violation::Window(WindowViolation::StateLeft {
                addr: addr.clone(),
                value: value.clone(),
            })
        }));
    }
    let mut inputs = Windows::new();
    for record in window_input.iter().filter(|r| r.side.is_none()) {
        if let (Some(at), Ok(tx)) = (record.timestamp_ms, record.value_as::<Transaction>()) {
            inputs
                .entry((record.key.clone(), window_start(at, size_ms)))
                .or_default()
                .add(tx.amount_cents, 1);
        }
    }
    let (outputs, results, late) = account(
        outcome.store.visible(),
        size_ms,
        aggregate,
        &inputs,
        verdict,
    );
    let exactly_once = case.job().sink.kind == SinkKind::TwoPhaseCommit
        && case.mode == CheckpointingMode::ExactlyOnce;
    for ((key, start_ms), input) in &inputs {
        let out = outputs
            .get(&(key.clone(), *start_ms))
            .copied()
            .unwrap_or_default();
        let (key, start_ms) = (key.clone(), *start_ms);
        if out.records == 0 {
            verdict
                .violations
                .push(Violation::Window(WindowViolation::Uncovered {
                    key,
                    start_ms,
                    records: input.records,
                }));
        } else if exactly_once && out.of(aggregate) != input.of(aggregate) {
            verdict
                .violations
                .push(Violation::Window(WindowViolation::Unbalanced {
                    key,
                    start_ms,
                    aggregate,
                    input: input.of(aggregate),
                    accounted: out.of(aggregate),
                }));
        }
    }
    verdict.notes.push(Note::Windows {
        windows: inputs.len(),
        results,
        late,
        exactly_once,
    });
}

/// Tallies the visible results and late records by window (a result counts as the records it
/// aggregated, a late record as one); a record of a window nothing fell in is a violation.
fn account(
    visible: &[Record],
    size_ms: i64,
    aggregate: WindowAggregate,
    inputs: &Windows,
    verdict: &mut Verdict,
) -> (Windows, usize, usize) {
    let (mut outputs, mut results, mut late) = (Windows::new(), 0, 0);
    for record in visible {
        let (Some(at), Ok(tx)) = (record.timestamp_ms, record.value_as::<Transaction>()) else {
            continue;
        };
        let start_ms = window_start(at, size_ms);
        let counts_for = match record.side.as_deref() {
            None if aggregate == WindowAggregate::Count => tx.amount_cents,
            None => 1,
            Some(LATE) => 1,
            Some(_) => continue,
        };
        if record.side.is_none() {
            results += 1;
        } else {
            late += 1;
        }
        let slot = (record.key.clone(), start_ms);
        if !inputs.contains_key(&slot) {
            verdict
                .violations
                .push(Violation::Window(WindowViolation::Phantom {
                    key: slot.0,
                    start_ms,
                    record: record.id.clone(),
                }));
            continue;
        }
        outputs
            .entry(slot)
            .or_default()
            .add(tx.amount_cents, counts_for);
    }
    (outputs, results, late)
}
