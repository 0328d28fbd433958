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

/// Judges a case whose last stage is a window. Along the events (`lineage`), the window model
/// judged every emission, restore and firing, and the caller goes on with the lineage's
/// rules; this adds what the window's end owes: no window left in state, and for a tumbling
/// window without lateness the balance of every window against its input. Without the
/// events (a restore from a snapshot this case did not take), it judges state without the
/// window (restored and final), what the run reported, and the same end.
pub(super) fn check_case(
    case: &CaseSpec<'_>,
    outcome: &RunOutcome,
    window_input: &[Record],
    stage: &StageSpec,
    lineage: bool,
    verdict: &mut Verdict,
) {
    let exact = case.values_exact() && !case.reads_processing_time();
    if !lineage {
        if exact {
            super::check_restores(case, outcome, verdict);
        } else {
            verdict.notes.push(Note::ValuesNotCompared);
        }
        let end = model::evaluate_with(case.job(), case.input, &outcome.end_positions, case.users);
        super::check_end(case.job(), &end.state, exact, outcome, verdict);
        super::check_reported(outcome, verdict);
    }
    // Processing time stops with the input: windows the clock has not closed by then stay,
    // unfired, as in Flink, and what fell in them depends on the clock.
    let by_clock = stage.op.window_shape().is_some_and(|s| s.processing_time);
    if outcome.status != JobStatus::Finished || by_clock {
        return;
    }
    if let Some(state) = &outcome.final_state {
        let left = state.0.iter().filter(|(addr, _)| addr.stage == stage.name);
        verdict.violations.extend(left.map(|(addr, value)| {
            Violation::Window(WindowViolation::StateLeft {
                addr: addr.clone(),
                value: value.clone(),
            })
        }));
    }
    // Behind a stage whose state expires, what reaches the window depends on the run's
    // processing times, which the model over the input does not have: the walk judged it.
    if case.reads_processing_time() {
        return;
    }
    let Some(ledger) = window_ledger(case.job(), window_input, outcome.store.visible()) else {
        return;
    };
    let exactly_once = case.job().sink.kind == SinkKind::TwoPhaseCommit
        && case.mode == CheckpointingMode::ExactlyOnce;
    verdict
        .violations
        .extend(ledger.violations(exactly_once).map(Violation::Window));
    verdict.notes.push(Note::Windows {
        windows: ledger.accounts.len(),
        results: ledger.results,
        late: ledger.late,
        exactly_once,
    });
}

/// One window of one key, as the judgement sees it: what fell in it by the model, and what
/// the run's visible output holds for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowAccount {
    /// The key.
    pub key: Datum,
    /// The window's start.
    pub start_ms: i64,
    /// Records that fell in it.
    pub records: usize,
    /// Their aggregate: what the window must account for.
    pub input: i64,
    /// The results visible for it, in output order.
    pub results: Vec<i64>,
    /// Its late records visible on the side output.
    pub late: usize,
    /// The aggregate of its results and late records (`None`: nothing came out for it).
    pub accounted: Option<i64>,
}

impl WindowAccount {
    /// Whether its results and late records add up to its input.
    pub fn balanced(&self) -> bool {
        self.accounted == Some(self.input)
    }
}

/// Every window of a window job's run: the judgement's ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowLedger {
    /// The aggregate the window computes.
    pub aggregate: Option<WindowAggregate>,
    /// The windows something fell in, by key, then start.
    pub accounts: Vec<WindowAccount>,
    /// Visible records of windows nothing fell in: (key, window start, record id).
    pub phantoms: Vec<(Datum, i64, String)>,
    /// Results visible.
    pub results: usize,
    /// Late records visible.
    pub late: usize,
}

impl WindowLedger {
    /// What the ledger breaks: phantoms, windows with no output, and (when `exactly_once`)
    /// windows whose output does not add up to their input.
    fn violations(&self, exactly_once: bool) -> impl Iterator<Item = WindowViolation> + '_ {
        let aggregate = self.aggregate.unwrap_or(WindowAggregate::Sum);
        let phantoms =
            self.phantoms
                .iter()
                .map(|(key, start_ms, record)| WindowViolation::Phantom {
                    key: key.clone(),
                    start_ms: *start_ms,
                    record: record.clone(),
                });
        let windows = self.accounts.iter().filter_map(move |a| match a.accounted {
            None => Some(WindowViolation::Uncovered {
                key: a.key.clone(),
                start_ms: a.start_ms,
                records: a.records,
            }),
            Some(accounted) if exactly_once && accounted != a.input => {
                Some(WindowViolation::Unbalanced {
                    key: a.key.clone(),
                    start_ms: a.start_ms,
                    aggregate,
                    input: a.input,
                    accounted,
                })
            }
            Some(_) => None,
        });
        phantoms.chain(windows)
    }
}

/// The ledger of a job whose last stage is a tumbling window without allowed lateness (each
/// record in one window, each window firing once until it opens again): `window_input` is
/// what reaches the window (the model's output over the input, which passes records through
/// the window), `visible` what the sink's external system shows. `None` for a job without
/// such a window: sliding windows and late firings are judged along the events only.
pub fn window_ledger(
    job: &JobSpec,
    window_input: &[Record],
    visible: &[Record],
) -> Option<WindowLedger> {
    let (_, stage) = job.window()?;
    let OperatorSpec::TumblingWindow {
        size_ms,
        aggregate,
        allowed_lateness_ms: 0,
    } = stage.op
    else {
        return None;
    };
    let mut inputs = Windows::new();
    for record in window_input.iter().filter(|r| r.side.is_none()) {
        if let (Some(at), Ok(tx)) = (record.timestamp_ms, record.value_as::<Transaction>()) {
            inputs
                .entry((record.key.clone(), window_start(at, size_ms)))
                .or_default()
                .add(tx.amount_cents, 1);
        }
    }
    let mut ledger = WindowLedger {
        aggregate: Some(aggregate),
        ..WindowLedger::default()
    };
    let mut outputs: BTreeMap<(Datum, i64), (Tally, Vec<i64>, usize)> = BTreeMap::new();
    for record in visible {
        let (Some(at), Ok(tx)) = (record.timestamp_ms, record.value_as::<Transaction>()) else {
            continue;
        };
        let counts_for = match record.side.as_deref() {
            None if aggregate == WindowAggregate::Count => tx.amount_cents,
            None => 1,
            Some(LATE) => 1,
            Some(_) => continue,
        };
        let slot = (record.key.clone(), window_start(at, size_ms));
        if record.side.is_none() {
            ledger.results += 1;
        } else {
            ledger.late += 1;
        }
        if !inputs.contains_key(&slot) {
            ledger.phantoms.push((slot.0, slot.1, record.id.clone()));
            continue;
        }
        let (tally, results, late) = outputs.entry(slot).or_default();
        tally.add(tx.amount_cents, counts_for);
        match record.side {
            None => results.push(tx.amount_cents),
            Some(_) => *late += 1,
        }
    }
    for ((key, start_ms), input) in inputs {
        let (tally, results, late) = outputs.remove(&(key.clone(), start_ms)).unwrap_or_default();
        ledger.accounts.push(WindowAccount {
            key,
            start_ms,
            records: input.records,
            input: input.of(aggregate),
            results,
            late,
            accounted: (tally.records > 0).then(|| tally.of(aggregate)),
        });
    }
    Some(ledger)
}
