//! The built-in event-time session window ([`OperatorSpec::SessionWindow`]), as Flink's
//! `EventTimeSessionWindows.withGap` with an `EventTimeTrigger` and an allowed lateness. A
//! record opens the session `[t, t + gap)`; sessions of a key that overlap or touch it merge
//! with it into one, their contents added up and their timers moved to the merged session.
//! When the merged session's end plus the lateness is at or below the subtask's watermark
//! the record is late: it goes to the side output [`LATE`] and no session changes (Flink
//! would merge and then retire the late result; nothing of it is emitted either way). As in
//! the other windows, a trigger timer at the session's last millisecond fires its result, a
//! record taken past that fires it again at once, and a cleanup timer at the end plus the
//! lateness removes it.
//!
//! Contents live in map state `sessions` by start. A result's id is
//! `{key}@{start}/{first}` (`+{n}` after the n-th firing), where `first` is the record that
//! opened the earliest of the merged sessions.
//!
//! [`OperatorSpec::SessionWindow`]: crate::job::OperatorSpec::SessionWindow

use serde::{Deserialize, Serialize};

use super::datum::Datum;
use super::operator::{Operator, OperatorContext, OperatorError};
use super::record::{Record, Transaction};
use super::spec::WindowAggregate;
use super::window::{aggregate_of, result_record, Firing, LATE};
use crate::state::timers::{TimeDomain, Timer};
use crate::state::{KeyedContext, MapState};

/// One session so far: the cell of [`SESSIONS`] under its start. Public because it is the
/// state layout the oracle compares with the model's (see [`crate::job::WindowFactory`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// One past its last millisecond.
    pub end: i64,
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

/// The sessions of a key, by start (the namespace of their timers).
pub const SESSIONS: MapState<i64, Session> = MapState::new("sessions");

/// A record's session merged with the stored ones it reaches: its start, the session, and the
/// stored sessions (by start) it replaces.
type Merged = (i64, Session, Vec<(i64, Session)>);

/// The session window operator of one subtask.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionOperator {
    pub(crate) gap_ms: i64,
    pub(crate) aggregate: WindowAggregate,
    pub(crate) allowed_lateness_ms: i64,
}

fn failed(error: impl std::fmt::Display) -> OperatorError {
    OperatorError::Failed(error.to_string())
}

impl SessionOperator {
    fn cleanup_ms(&self, session: &Session) -> i64 {
        (session.end - 1).saturating_add(self.allowed_lateness_ms)
    }

    /// `at_ms`'s own session merged with every stored one it overlaps or touches: the
    /// merged start and session, and the starts it replaces.
    fn merged(
        &self,
        keyed: &KeyedContext<'_>,
        record: &Record,
        (at_ms, amount): (i64, i64),
    ) -> Result<Merged, OperatorError> {
        let end = at_ms.saturating_add(self.gap_ms);
        let mut sessions = SESSIONS.entries(keyed).map_err(failed)?;
        sessions.sort_by_key(|(start, _)| *start);
        let touched: Vec<(i64, Session)> = (sessions.into_iter())
            .filter(|(start, s)| *start <= end && s.end >= at_ms)
            .collect();
        let mut merged = Session {
            end,
            sum: amount,
            count: 1,
            max: amount,
            first: record.id.clone(),
            fired: 0,
        };
        let mut start = at_ms;
        for (other_start, other) in &touched {
            if *other_start <= start {
                merged.first = other.first.clone();
                merged.fired = other.fired;
                start = *other_start;
            }
            merged.end = merged.end.max(other.end);
            merged.sum = merged.sum.wrapping_add(other.sum);
            merged.count += other.count;
            merged.max = merged.max.max(other.max);
        }
        Ok((start, merged, touched))
    }

    /// The session's result now.
    fn result(&self, key: &Datum, start: i64, session: &Session) -> Result<Record, OperatorError> {
        let firing = Firing {
            first: &session.first,
            fired: session.fired,
            amount_cents: aggregate_of(self.aggregate, session.sum, session.count, session.max),
            last_ms: session.end - 1,
        };
        result_record(key, start, &firing)
    }

    /// Replaces the `touched` sessions by `merged` at `start`, moving their timers, and fires
    /// it at once when the watermark already passed its end.
    fn store(
        &self,
        keyed: &mut KeyedContext<'_>,
        (start, mut merged): (i64, Session),
        touched: &[(i64, Session)],
        (key, watermark_ms): (&Datum, i64),
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        for (old_start, old) in touched {
            let namespace = old_start.to_string();
            keyed
                .delete_timer(TimeDomain::EventTime, old.end - 1, &namespace)
                .map_err(failed)?;
            keyed
                .delete_timer(TimeDomain::EventTime, self.cleanup_ms(old), &namespace)
                .map_err(failed)?;
            SESSIONS.remove(keyed, old_start).map_err(failed)?;
        }
        let namespace = start.to_string();
        keyed
            .register_timer(TimeDomain::EventTime, self.cleanup_ms(&merged), &namespace)
            .map_err(failed)?;
        if merged.end - 1 <= watermark_ms {
            out.push(self.result(key, start, &merged)?);
            merged.fired += 1;
        } else {
            keyed
                .register_timer(TimeDomain::EventTime, merged.end - 1, &namespace)
                .map_err(failed)?;
        }
        SESSIONS.put(keyed, &start, &merged).map_err(failed)
    }
}

impl Operator for SessionOperator {
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
        let amount = record.value_as::<Transaction>()?.amount_cents;
        let watermark_ms = ctx.watermark_ms;
        let keyed = ctx.keyed()?;
        let (start, merged, touched) = self.merged(keyed, &record, (at_ms, amount))?;
        if self.cleanup_ms(&merged) <= watermark_ms {
            out.push(Record {
                side: Some(LATE.into()),
                ..record
            });
            return Ok(());
        }
        let key = record.key.clone();
        self.store(keyed, (start, merged), &touched, (&key, watermark_ms), out)
    }

    fn on_timer(
        &mut self,
        timer: &Timer,
        ctx: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        let start: i64 = timer.namespace.parse().map_err(|e| {
            failed(format!(
                "a session timer's namespace {:?}: {e}",
                timer.namespace
            ))
        })?;
        let keyed = ctx.keyed()?;
        let Some(mut session) = SESSIONS.get(keyed, &start).map_err(failed)? else {
            return Ok(());
        };
        if timer.timestamp_ms == session.end - 1 {
            out.push(self.result(&timer.key, start, &session)?);
            session.fired += 1;
        }
        if timer.timestamp_ms == self.cleanup_ms(&session) {
            SESSIONS.remove(keyed, &start).map_err(failed)
        } else {
            SESSIONS.put(keyed, &start, &session).map_err(failed)
        }
    }
}
