//! The built-in event-time tumbling window ([`OperatorSpec::TumblingWindow`]), as Flink's
//! `WindowOperator` with an `EventTimeTrigger` and no allowed lateness: a record goes into the
//! window `[start, start + size)` its event time falls in, unless the subtask's watermark has
//! passed that window's last millisecond, in which case it goes to the side output [`LATE`].
//! Window contents live in keyed state (map state `windows`, by window start) and a cleanup
//! timer at the window's last millisecond, namespaced by the start, fires the result (the
//! `aggregate` of the amounts, as a `Transaction` of the key) and clears the window. A timer
//! whose window holds nothing is ignored, as in Flink.
//!
//! Watermarks start again from nothing after a restore, so a record late before a failure may
//! be on time after it, and a window already fired may fire again with it: Flink does the same.
//! The oracle judges windows by conservation (`check::window`): every record the window stage
//! received is counted in exactly one result or late output.
//!
//! [`OperatorSpec::TumblingWindow`]: crate::job::OperatorSpec::TumblingWindow

use serde::{Deserialize, Serialize};

use super::operator::{Operator, OperatorContext, OperatorError};
use super::record::{Record, Transaction};
use super::spec::WindowAggregate;
use crate::state::timers::{TimeDomain, Timer};
use crate::state::MapState;

/// The side output late records go to.
pub const LATE: &str = "late";

/// What a window holds so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Contents {
    sum: i64,
    count: i64,
    max: i64,
}

const WINDOWS: MapState<i64, Contents> = MapState::new("windows");

/// The start of the window of `size_ms` that `timestamp_ms` falls in.
pub fn window_start(timestamp_ms: i64, size_ms: i64) -> i64 {
    timestamp_ms - timestamp_ms.rem_euclid(size_ms)
}

/// The last millisecond of the window starting at `start_ms`: its cleanup timer's time.
pub fn window_max_ms(start_ms: i64, size_ms: i64) -> i64 {
    start_ms.saturating_add(size_ms).saturating_sub(1)
}

/// The window operator of one subtask.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TumblingWindow {
    pub(crate) size_ms: i64,
    pub(crate) aggregate: WindowAggregate,
}

fn failed(error: impl std::fmt::Display) -> OperatorError {
    OperatorError::Failed(error.to_string())
}

impl Operator for TumblingWindow {
    fn process(
        &mut self,
        record: Record,
        ctx: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        let at_ms = record.timestamp_ms.ok_or_else(|| {
            failed(format!(
                "{}: a window needs records with event times",
                record.id
            ))
        })?;
        let tx: Transaction = record.value_as()?;
        let start = window_start(at_ms, self.size_ms);
        let max_ms = window_max_ms(start, self.size_ms);
        if max_ms <= ctx.watermark_ms {
            out.push(Record {
                side: Some(LATE.into()),
                ..record
            });
            return Ok(());
        }
        let keyed = ctx.keyed()?;
        let contents = match WINDOWS.get(keyed, &start).map_err(failed)? {
            Some(c) => Contents {
                sum: c.sum.wrapping_add(tx.amount_cents),
                count: c.count + 1,
                max: c.max.max(tx.amount_cents),
            },
            None => Contents {
                sum: tx.amount_cents,
                count: 1,
                max: tx.amount_cents,
            },
        };
        WINDOWS.put(keyed, &start, &contents).map_err(failed)?;
        keyed
            .register_timer(TimeDomain::EventTime, max_ms, &start.to_string())
            .map_err(failed)
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
        let Some(contents) = WINDOWS.get(keyed, &start).map_err(failed)? else {
            return Ok(());
        };
        WINDOWS.remove(keyed, &start).map_err(failed)?;
        let amount_cents = match self.aggregate {
            WindowAggregate::Sum => contents.sum,
            WindowAggregate::Count => contents.count,
            WindowAggregate::Max => contents.max,
        };
        let account: String = timer.key.get().unwrap_or_else(|_| timer.key.to_string());
        let id = format!("{account}@{start}");
        let result = Record::of(
            &id,
            &timer.key,
            &Transaction {
                account,
                amount_cents,
            },
        )?;
        out.push(Record {
            timestamp_ms: Some(timer.timestamp_ms),
            ..result
        });
        Ok(())
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
}
