//! The session window model, written again apart from `job::session`, for the judgement
//! along the run's events (see `window.rs` for how the walk feeds it). The rules: a record's
//! own session is `[t, t + gap)`; every held session of the key that starts at or before its
//! end and ends at or after its start merges with it (the earliest start, the latest end,
//! the contents added up; the opening record and firings of the earliest session, the record
//! itself only when it starts before every one of them). If the merged session's last
//! millisecond plus the lateness is at or below the watermark, the record is late and
//! nothing changes. Otherwise the merged session replaces the ones it took in, their timers
//! go, and it waits for a cleanup timer at its last millisecond plus the lateness and, unless
//! the watermark already passed its last millisecond (then it fires at once), a trigger timer
//! there.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::job::window::LATE;
use crate::job::WindowShape;
use crate::job::{Datum, OperatorError, Record, StageSpec, Transaction};
use crate::state::timers::{TimeDomain, TimerKey};
use crate::state::StateView;

/// One session of one key, as the engine's map state `sessions` holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Held {
    end: i64,
    sum: i64,
    count: i64,
    max: i64,
    first: String,
    fired: i64,
}

/// A session stage's model: every key's sessions and timers.
#[derive(Debug, Clone, Default)]
pub(super) struct SessionModel {
    sessions: BTreeMap<(Datum, i64), Held>,
    /// (timestamp, key, session start).
    timers: BTreeSet<(i64, Datum, i64)>,
}

impl SessionModel {
    /// `record` reaches the session window while its task's watermark is `watermark_ms`.
    pub(super) fn apply(
        &mut self,
        shape: &WindowShape,
        record: Record,
        watermark_ms: i64,
    ) -> Result<Vec<Record>, OperatorError> {
        let gap_ms = shape.gap_ms.unwrap_or(shape.size_ms);
        let Some(at_ms) = record.timestamp_ms else {
            return Err(OperatorError::Failed(format!(
                "{}: a window needs records with event times",
                record.id
            )));
        };
        let amount = record.value_as::<Transaction>()?.amount_cents;
        let key = record.key.clone();
        let own_end = at_ms.saturating_add(gap_ms);
        let taken: Vec<(i64, Held)> = (self.sessions.range((key.clone(), i64::MIN)..))
            .take_while(|((k, _), _)| *k == key)
            .filter(|((_, start), held)| *start <= own_end && held.end >= at_ms)
            .map(|((_, start), held)| (*start, held.clone()))
            .collect();
        let earliest = taken.first().filter(|(start, _)| *start <= at_ms);
        let (start, first, fired) = match earliest {
            Some((start, held)) => (*start, held.first.clone(), held.fired),
            None => (at_ms, record.id.clone(), 0),
        };
        let mut merged = Held {
            end: own_end,
            sum: amount,
            count: 1,
            max: amount,
            first,
            fired,
        };
        for (_, held) in &taken {
            merged.end = merged.end.max(held.end);
            merged.sum = merged.sum.wrapping_add(held.sum);
            merged.count += held.count;
            merged.max = merged.max.max(held.max);
        }
        let last_ms = merged.end - 1;
        let cleanup_ms = last_ms.saturating_add(shape.allowed_lateness_ms);
        if cleanup_ms <= watermark_ms {
            return Ok(vec![Record {
                side: Some(LATE.to_string()),
                ..record
            }]);
        }
        for (old_start, held) in &taken {
            self.sessions.remove(&(key.clone(), *old_start));
            let old_last = held.end - 1;
            self.timers.remove(&(old_last, key.clone(), *old_start));
            let old_cleanup = old_last.saturating_add(shape.allowed_lateness_ms);
            self.timers.remove(&(old_cleanup, key.clone(), *old_start));
        }
        self.timers.insert((cleanup_ms, key.clone(), start));
        let mut out = Vec::new();
        if last_ms <= watermark_ms {
            out.push(result(shape, &key, start, &merged));
            merged.fired += 1;
        } else {
            self.timers.insert((last_ms, key.clone(), start));
        }
        self.sessions.insert((key, start), merged);
        Ok(out)
    }

    /// The engine fired `key`'s timer at `timestamp_ms` for the session at `start`: `None`
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
        let Some(held) = self.sessions.get_mut(&slot) else {
            return Some(Vec::new());
        };
        let mut out = Vec::new();
        let last_ms = held.end - 1;
        if timestamp_ms == last_ms {
            out.push(result(shape, key, start, held));
            held.fired += 1;
        }
        if timestamp_ms == last_ms.saturating_add(shape.allowed_lateness_ms) {
            self.sessions.remove(&slot);
        }
        Some(out)
    }

    /// `key`'s timers, unfired.
    pub(super) fn timers_of(&self, key: &Datum) -> Vec<TimerKey> {
        super::window::timers_of(&self.timers, key, TimeDomain::EventTime)
    }

    /// The sessions held, under the names the engine's state view gives them.
    pub(super) fn add_state(&self, stage: &StageSpec, view: &mut StateView) {
        super::window::add_panes(stage, "sessions", &self.sessions, view);
    }
}

/// The session's result as it stands, named as a window's.
fn result(shape: &WindowShape, key: &Datum, start: i64, held: &Held) -> Record {
    let amount = super::window::amount_of(shape.aggregate, (held.sum, held.count, held.max));
    let named = (&held.first[..], held.fired);
    super::window::result_of(key, start, named, amount, held.end - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::WindowAggregate;

    fn at(id: &str, timestamp_ms: i64) -> Record {
        Record {
            timestamp_ms: Some(timestamp_ms),
            ..Record::transaction(id, "a", 1)
        }
    }

    #[test]
    fn a_record_between_two_sessions_merges_them_into_one() {
        let shape = WindowShape {
            size_ms: 300,
            slide_ms: 300,
            aggregate: WindowAggregate::Count,
            allowed_lateness_ms: 0,
            gap_ms: Some(300),
            processing_time: false,
        };
        let mut model = SessionModel::default();
        for (id, t) in [("r0", 0), ("r1", 200), ("r2", 600)] {
            assert!(model.apply(&shape, at(id, t), i64::MIN).unwrap().is_empty());
        }
        assert_eq!(model.sessions.len(), 2, "[0, 500) and [600, 900)");
        assert!(model
            .apply(&shape, at("r3", 450), i64::MIN)
            .unwrap()
            .is_empty());
        let key = Datum::of("a").unwrap();
        let merged = &model.sessions[&(key.clone(), 0)];
        assert_eq!(
            (merged.end, merged.count, merged.first.as_str()),
            (900, 4, "r0")
        );
        assert_eq!(model.timers_of(&key).len(), 1, "one timer, at 899");
        let fired = model
            .fire(&shape, &key, 899, 0)
            .expect("the merged session's timer");
        assert_eq!(fired[0].id, "a@0/r0");
        assert_eq!(fired[0].value_as::<Transaction>().unwrap().amount_cents, 4);
        // A record whose session ended before the watermark is late.
        let late = model.apply(&shape, at("r4", 100), 1_000).unwrap();
        assert_eq!(late[0].side.as_deref(), Some(LATE));
    }
}
