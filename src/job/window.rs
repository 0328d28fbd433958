//! The built-in event-time windows ([`OperatorSpec::TumblingWindow`],
//! [`OperatorSpec::SlidingWindow`]), as Flink's `WindowOperator` with an `EventTimeTrigger`
//! and an allowed lateness. A record falls in every window `[start, start + size)` that
//! holds its event time, the starts being multiples of the slide (a tumbling window slides by
//! its size). For each such window it is either added to it or, when the subtask's watermark
//! has passed the window's cleanup time (its last millisecond plus the allowed lateness),
//! skipped; a record skipped by every window goes to the side output [`LATE`].
//!
//! Window contents live in keyed state (map state `windows`, by window start). A window's
//! trigger timer at its last millisecond fires its result (the `aggregate` of the amounts, as
//! a `Transaction` of the key); its cleanup timer at that millisecond plus the allowed
//! lateness clears it (the two are one timer without lateness). A record added to a window
//! the watermark already passed, within the allowed lateness, fires it again at once, as
//! Flink's trigger does. A timer whose window holds nothing is ignored.
//!
//! A result's id names the key, the window and the record that opened its contents, then
//! the firing: `{key}@{start}/{first}` and `…+{n}` for the n-th firing after the first.
//! Watermarks start again from nothing after a restore, so a window already fired and
//! cleared may open again there with a record that was late before: the first record tells
//! the two apart. Results descend from no one record, so their origin lies after every
//! source position: any restore may replay them.
//!
//! [`OperatorSpec::TumblingWindow`]: crate::job::OperatorSpec::TumblingWindow
//! [`OperatorSpec::SlidingWindow`]: crate::job::OperatorSpec::SlidingWindow

use serde::{Deserialize, Serialize};

use super::datum::Datum;
use super::operator::{Operator, OperatorContext, OperatorError};
use super::record::{Origin, Record, Transaction};
use super::spec::{WindowAggregate, WindowShape};
use crate::state::timers::Timer;
use crate::state::{KeyedContext, MapState};

/// The side output late records go to.
pub const LATE: &str = "late";

/// What a window holds so far: the cell of [`WINDOWS`] under its start. Public because it is
/// the state layout the oracle compares with the model's, which an operator built in place
/// of the built-in one ([`crate::job::WindowFactory`]) must keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contents {
    /// The sum of its amounts.
    pub sum: i64,
    /// How many records it took.
    pub count: i64,
    /// The largest amount.
    pub max: i64,
    /// The id of the record that opened it.
    pub first: String,
    /// Results fired so far.
    pub fired: i64,
}

/// The windows of a key, by window start (the namespace of their timers).
pub const WINDOWS: MapState<i64, Contents> = MapState::new("windows");

/// The start of the window of `size_ms` that `timestamp_ms` falls in (tumbling windows).
pub fn window_start(timestamp_ms: i64, size_ms: i64) -> i64 {
    timestamp_ms - timestamp_ms.rem_euclid(size_ms)
}

/// The last millisecond of the window of `size_ms` starting at `start_ms`: its trigger time.
pub fn window_max_ms(start_ms: i64, size_ms: i64) -> i64 {
    start_ms.saturating_add(size_ms).saturating_sub(1)
}

/// What a window's (or a session's) result is made of.
pub(crate) struct Firing<'a> {
    /// The record that opened it.
    pub(crate) first: &'a str,
    /// Results fired before this one.
    pub(crate) fired: i64,
    /// The aggregate of its amounts.
    pub(crate) amount_cents: i64,
    /// Its last millisecond: the result's event time.
    pub(crate) last_ms: i64,
}

/// The `aggregate` of a window's amounts.
pub(crate) fn aggregate_of(aggregate: WindowAggregate, sum: i64, count: i64, max: i64) -> i64 {
    match aggregate {
        WindowAggregate::Sum => sum,
        WindowAggregate::Count => count,
        WindowAggregate::Max => max,
    }
}

/// A window's result: `{key}@{start}/{first}`, `+{n}` after the n-th firing, a `Transaction`
/// of the key stamped with the window's last millisecond, descending from no one record.
pub(crate) fn result_record(
    key: &Datum,
    start: i64,
    firing: &Firing<'_>,
) -> Result<Record, OperatorError> {
    let account: String = key.get().unwrap_or_else(|_| key.to_string());
    let mut id = format!("{account}@{start}/{}", firing.first);
    if firing.fired > 0 {
        id = format!("{id}+{}", firing.fired);
    }
    let amount_cents = firing.amount_cents;
    let result = Record::of(
        &id,
        key,
        &Transaction {
            account,
            amount_cents,
        },
    )?;
    Ok(Record {
        timestamp_ms: Some(firing.last_ms),
        origin: Origin {
            partition: 0,
            offset: u64::MAX,
        },
        ..result
    })
}

/// The window operator of one subtask.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WindowOperator {
    pub(crate) shape: WindowShape,
}

fn failed(error: impl std::fmt::Display) -> OperatorError {
    OperatorError::Failed(error.to_string())
}

impl WindowOperator {
    /// The starts of the windows holding `at_ms`, earliest first.
    fn starts(&self, at_ms: i64) -> Vec<i64> {
        let WindowShape {
            size_ms, slide_ms, ..
        } = self.shape;
        let last = window_start(at_ms, slide_ms);
        let mut starts = Vec::new();
        let mut start = last;
        while start > at_ms.saturating_sub(size_ms) {
            starts.push(start);
            start = start.saturating_sub(slide_ms);
        }
        starts.reverse();
        starts
    }

    fn max_ms(&self, start: i64) -> i64 {
        window_max_ms(start, self.shape.size_ms)
    }

    fn cleanup_ms(&self, start: i64) -> i64 {
        self.max_ms(start)
            .saturating_add(self.shape.allowed_lateness_ms)
    }

    /// The window's result now, named for its `fired`-th firing.
    fn result(
        &self,
        key: &Datum,
        start: i64,
        contents: &Contents,
    ) -> Result<Record, OperatorError> {
        let firing = Firing {
            first: &contents.first,
            fired: contents.fired,
            amount_cents: aggregate_of(
                self.shape.aggregate,
                contents.sum,
                contents.count,
                contents.max,
            ),
            last_ms: self.max_ms(start),
        };
        result_record(key, start, &firing)
    }

    /// Adds `record` to the window at `start`: registers its timers, and fires it at once
    /// when the watermark already passed its end.
    fn add(
        &self,
        keyed: &mut KeyedContext<'_>,
        (record, amount): (&Record, i64),
        start: i64,
        watermark_ms: i64,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        let mut contents = match WINDOWS.get(keyed, &start).map_err(failed)? {
            Some(c) => Contents {
                sum: c.sum.wrapping_add(amount),
                count: c.count + 1,
                max: c.max.max(amount),
                ..c
            },
            None => Contents {
                sum: amount,
                count: 1,
                max: amount,
                first: record.id.clone(),
                fired: 0,
            },
        };
        let (max_ms, cleanup_ms) = (self.max_ms(start), self.cleanup_ms(start));
        let namespace = start.to_string();
        let domain = self.shape.domain();
        keyed
            .register_timer(domain, cleanup_ms, &namespace)
            .map_err(failed)?;
        if max_ms <= watermark_ms {
            out.push(self.result(&record.key, start, &contents)?);
            contents.fired += 1;
        } else {
            keyed
                .register_timer(domain, max_ms, &namespace)
                .map_err(failed)?;
        }
        WINDOWS.put(keyed, &start, &contents).map_err(failed)
    }
}

impl Operator for WindowOperator {
    fn process(
        &mut self,
        record: Record,
        ctx: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        let tx: Transaction = record.value_as()?;
        // A processing-time window places a record by the clock, and nothing closes the
        // window holding the clock's time.
        let (at_ms, watermark_ms) = if self.shape.processing_time {
            (i64::try_from(ctx.now_ms).unwrap_or(i64::MAX), i64::MIN)
        } else {
            let at_ms = record.timestamp_ms.ok_or_else(|| {
                failed(format!(
                    "{}: a window needs records with event times",
                    record.id
                ))
            })?;
            (at_ms, ctx.watermark_ms)
        };
        let open: Vec<i64> = (self.starts(at_ms).into_iter())
            .filter(|start| self.cleanup_ms(*start) > watermark_ms)
            .collect();
        if open.is_empty() {
            out.push(Record {
                side: Some(LATE.into()),
                ..record
            });
            return Ok(());
        }
        let keyed = ctx.keyed()?;
        for start in open {
            self.add(keyed, (&record, tx.amount_cents), start, watermark_ms, out)?;
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        timer: &Timer,
        ctx: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        let start: i64 = timer.namespace.parse().map_err(|e| {
            failed(format!(
                "a window timer's namespace {:?}: {e}",
                timer.namespace
            ))
        })?;
        let keyed = ctx.keyed()?;
        let Some(mut contents) = WINDOWS.get(keyed, &start).map_err(failed)? else {
            return Ok(());
        };
        if timer.timestamp_ms == self.max_ms(start) {
            out.push(self.result(&timer.key, start, &contents)?);
            contents.fired += 1;
        }
        if timer.timestamp_ms == self.cleanup_ms(start) {
            WINDOWS.remove(keyed, &start).map_err(failed)
        } else {
            WINDOWS.put(keyed, &start, &contents).map_err(failed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_start_at_multiples_of_the_size_negative_times_too() {
        assert_eq!(window_start(0, 1_000), 0);
        assert_eq!(window_start(999, 1_000), 0);
        assert_eq!(window_start(1_000, 1_000), 1_000);
        assert_eq!(window_start(-1, 1_000), -1_000);
        assert_eq!(window_max_ms(-1_000, 1_000), -1);
    }

    #[test]
    fn a_record_falls_in_size_over_slide_windows() {
        let sliding = |size_ms, slide_ms| WindowOperator {
            shape: WindowShape {
                size_ms,
                slide_ms,
                aggregate: WindowAggregate::Sum,
                allowed_lateness_ms: 0,
                gap_ms: None,
                processing_time: false,
            },
        };
        assert_eq!(sliding(1_000, 1_000).starts(1_500), [1_000]);
        assert_eq!(sliding(1_000, 500).starts(1_500), [1_000, 1_500]);
        assert_eq!(sliding(1_000, 500).starts(1_499), [500, 1_000]);
        assert_eq!(sliding(1_000, 300).starts(100), [-600, -300, 0]);
    }
}
