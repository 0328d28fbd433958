//! The window model: the built-in windows' semantics written again, independently of
//! `job::window`, for the judgement along the run's events. Which results a run emits
//! depends on its watermarks, so the walk over the events gives this model, with each record,
//! the watermark the window's task held when it took the record in (the last one it sent in
//! the attempt), and each timer the task fired; the model then says exactly what the window
//! must have emitted, and what it must hold.
//!
//! The rules (Flink's `WindowOperator` with an `EventTimeTrigger` and allowed lateness):
//! a record falls in every window of the shape that contains its event time; a window whose
//! end plus the lateness is at or below the watermark is closed to it; a record no window
//! takes is late (side output `late`). A window that takes a record holds its sum, count and
//! maximum, the record that opened it and how often it fired; it waits for a cleanup timer at
//! its end plus the lateness and, while the watermark is below its end, a trigger timer at its
//! end; past its end, taking a record fires it at once. The trigger timer fires the result,
//! the cleanup timer removes the window.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::job::window::LATE;
use crate::job::{
    transaction_datum, Datum, OperatorError, Record, StageSpec, Transaction, WindowAggregate,
    WindowShape,
};
use crate::state::timers::{TimeDomain, TimerKey};
use crate::state::{StateAddr, StateView};

/// One window of one key, as the engine's map state `windows` holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Pane {
    sum: i64,
    count: i64,
    max: i64,
    first: String,
    fired: i64,
}

/// A window stage's model: every key's windows and timers.
#[derive(Debug, Clone, Default)]
pub(super) struct WindowModel {
    panes: BTreeMap<(Datum, i64), Pane>,
    /// (timestamp, key, window start).
    timers: BTreeSet<(i64, Datum, i64)>,
    /// Whether the windows are by processing time, whose timers wait for the clock.
    processing_time: bool,
}

/// The last millisecond of the window starting at `start`.
fn end_ms(shape: &WindowShape, start: i64) -> i64 {
    start.saturating_add(shape.size_ms - 1)
}

fn cleanup_ms(shape: &WindowShape, start: i64) -> i64 {
    end_ms(shape, start).saturating_add(shape.allowed_lateness_ms)
}

/// The windows containing `at_ms`: the starts, multiples of the slide, from the first one
/// whose end reaches `at_ms` up to `at_ms`.
fn starts(shape: &WindowShape, at_ms: i64) -> Vec<i64> {
    let earliest = at_ms.saturating_sub(shape.size_ms - 1);
    let mut start = earliest.div_euclid(shape.slide_ms) * shape.slide_ms;
    if start < earliest {
        start += shape.slide_ms;
    }
    let mut all = Vec::new();
    while start <= at_ms {
        all.push(start);
        start += shape.slide_ms;
    }
    all
}

impl WindowModel {
    /// `record` reaches the window at processing time `now_ms` while its task's watermark is
    /// `watermark_ms`. A processing-time window places it by `now_ms`, and no watermark
    /// closes one: the window holding the clock's time is still open.
    pub(super) fn apply(
        &mut self,
        shape: &WindowShape,
        record: Record,
        (watermark_ms, now_ms): (i64, u64),
    ) -> Result<Vec<Record>, OperatorError> {
        self.processing_time = shape.processing_time;
        let (at_ms, watermark_ms) = if shape.processing_time {
            (i64::try_from(now_ms).unwrap_or(i64::MAX), i64::MIN)
        } else {
            let Some(at_ms) = record.timestamp_ms else {
                return Err(OperatorError::Failed(format!(
                    "{}: a window needs records with event times",
                    record.id
                )));
            };
            (at_ms, watermark_ms)
        };
        let amount = record.value_as::<Transaction>()?.amount_cents;
        let open: Vec<i64> = (starts(shape, at_ms).into_iter())
            .filter(|start| watermark_ms < cleanup_ms(shape, *start))
            .collect();
        if open.is_empty() {
            return Ok(vec![Record {
                side: Some(LATE.to_string()),
                ..record
            }]);
        }
        let mut out = Vec::new();
        for start in open {
            let key = record.key.clone();
            let pane = self.panes.entry((key.clone(), start)).or_insert(Pane {
                sum: 0,
                count: 0,
                max: amount,
                first: record.id.clone(),
                fired: 0,
            });
            pane.sum = pane.sum.wrapping_add(amount);
            pane.count += 1;
            pane.max = pane.max.max(amount);
            self.timers
                .insert((cleanup_ms(shape, start), key.clone(), start));
            if end_ms(shape, start) > watermark_ms {
                self.timers.insert((end_ms(shape, start), key, start));
            } else {
                out.push(result(shape, &record.key, start, pane));
                pane.fired += 1;
            }
        }
        Ok(out)
    }

    /// The engine fired `key`'s timer at `timestamp_ms` for the window at `start`: `None`
    /// when the model holds no such timer.
    pub(super) fn fire(
        &mut self,
        shape: &WindowShape,
        key: &Datum,
        timestamp_ms: i64,
        start: i64,
    ) -> Option<Vec<Record>> {
        if !self.timers.remove(&(timestamp_ms, key.clone(), start)) {
            return None;
        }
        let slot = (key.clone(), start);
        let Some(pane) = self.panes.get_mut(&slot) else {
            return Some(Vec::new());
        };
        let mut out = Vec::new();
        if timestamp_ms == end_ms(shape, start) {
            out.push(result(shape, key, start, pane));
            pane.fired += 1;
        }
        if timestamp_ms == cleanup_ms(shape, start) {
            self.panes.remove(&slot);
        }
        Some(out)
    }

    /// `key`'s timers, unfired.
    pub(super) fn timers_of(&self, key: &Datum) -> Vec<TimerKey> {
        let domain = match self.processing_time {
            true => TimeDomain::ProcessingTime,
            false => TimeDomain::EventTime,
        };
        timers_of(&self.timers, key, domain)
    }

    /// The windows held, under the names the engine's state view gives them.
    pub(super) fn add_state(&self, stage: &StageSpec, view: &mut StateView) {
        add_panes(stage, "windows", &self.panes, view);
    }
}

/// Each key's panes by start, as the engine's map state `state` holds them.
pub(super) fn add_panes<P: Serialize>(
    stage: &StageSpec,
    state: &str,
    panes: &BTreeMap<(Datum, i64), P>,
    view: &mut StateView,
) {
    for ((key, start), pane) in panes {
        let addr = StateAddr {
            stage: stage.name.clone(),
            state: state.into(),
            key: key.clone(),
            user_key: Some(Datum::from(*start)),
        };
        // A struct of integers and a string always encodes.
        let value = Datum::of(pane).expect("a pane encodes");
        view.0.insert(addr, value);
    }
}

/// The `aggregate` of a pane's amounts.
pub(super) fn amount_of(aggregate: WindowAggregate, (sum, count, max): (i64, i64, i64)) -> i64 {
    match aggregate {
        WindowAggregate::Sum => sum,
        WindowAggregate::Count => count,
        WindowAggregate::Max => max,
    }
}

/// The window's result as it stands.
fn result(shape: &WindowShape, key: &Datum, start: i64, pane: &Pane) -> Record {
    let amount = amount_of(shape.aggregate, (pane.sum, pane.count, pane.max));
    let named = (&pane.first[..], pane.fired);
    result_of(key, start, named, amount, end_ms(shape, start))
}

/// A result as the model names it: id `{account}@{start}/{first}`, `+{n}` after the n-th
/// firing (`named` is the opening record and the firings so far), stamped with the window's
/// last millisecond, descending from no one record.
pub(super) fn result_of(
    key: &Datum,
    start: i64,
    (first, fired): (&str, i64),
    amount: i64,
    last_ms: i64,
) -> Record {
    let account: String = key.get().unwrap_or_else(|_| key.to_string());
    let id = match fired {
        0 => format!("{account}@{start}/{first}"),
        n => format!("{account}@{start}/{first}+{n}"),
    };
    Record {
        id,
        key: key.clone(),
        value: transaction_datum(&account, amount),
        side: None,
        timestamp_ms: Some(last_ms),
        origin: crate::job::Origin {
            partition: 0,
            offset: u64::MAX,
        },
    }
}

/// `key`'s timers among `timers` (timestamp, key, start), unfired.
pub(super) fn timers_of(
    timers: &BTreeSet<(i64, Datum, i64)>,
    key: &Datum,
    domain: TimeDomain,
) -> Vec<TimerKey> {
    (timers.iter())
        .filter(|(_, k, _)| k == key)
        .map(|(at, _, start)| TimerKey::new(domain, *at, &start.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(size_ms: i64, slide_ms: i64) -> WindowShape {
        WindowShape {
            size_ms,
            slide_ms,
            aggregate: WindowAggregate::Sum,
            allowed_lateness_ms: 0,
            gap_ms: None,
            processing_time: false,
        }
    }

    #[test]
    fn windows_holding_a_time_are_the_slides_within_a_size_of_it() {
        assert_eq!(starts(&shape(1_000, 1_000), 999), [0]);
        assert_eq!(starts(&shape(1_000, 1_000), -1), [-1_000]);
        assert_eq!(starts(&shape(1_000, 500), 1_500), [1_000, 1_500]);
        assert_eq!(starts(&shape(1_000, 300), 100), [-600, -300, 0]);
    }
}
