//! Keyed timers, kept as keyed state: each key's timers are the map keys of the reserved map
//! state [`TIMER_STATE`], so they live in key groups, in every backend (RocksDB gives the state
//! its own column family), in full, incremental and both savepoint formats, move with their key
//! groups on rescale, and are read back by `inspect`, with no format of their own. A registered
//! timer is a cell; firing or deleting it removes the cell, so registering one twice fires it
//! once.
//!
//! A subtask also keeps a [`TimerQueue`], the in-memory order timers fire in (timestamp, then
//! key, then namespace), rebuilt from the backend's cells after every restore.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{StateBackend, StateError, StateKind};
use crate::job::{read_canonical, Datum};

/// The reserved map state holding every key's timers.
pub const TIMER_STATE: &str = "_timers";

/// Which clock a timer waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimeDomain {
    /// The watermark.
    EventTime,
    /// The virtual clock.
    ProcessingTime,
}

/// One timer of the current key, as stored (the map key of [`TIMER_STATE`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TimerKey {
    /// Its clock.
    pub domain: TimeDomain,
    /// When it fires: once the watermark or the virtual clock reaches it.
    pub timestamp_ms: i64,
    /// What it is for (a window, say): timers differ by namespace.
    pub namespace: String,
}

impl TimerKey {
    /// The timer of `domain` at `timestamp_ms` in `namespace`.
    pub fn new(domain: TimeDomain, timestamp_ms: i64, namespace: &str) -> Self {
        Self {
            domain,
            timestamp_ms,
            namespace: namespace.to_string(),
        }
    }
}

/// A timer due to fire: its key with it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Timer {
    /// When it fires.
    pub timestamp_ms: i64,
    /// The key it belongs to.
    pub key: Datum,
    /// Its namespace.
    pub namespace: String,
    /// Its clock.
    pub domain: TimeDomain,
}

/// What a callback did to the current key's timers, for the subtask's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerChange {
    /// A timer was registered (it was not there before).
    Registered(TimerKey),
    /// A timer was deleted (it was there).
    Deleted(TimerKey),
}

/// A subtask's timers in firing order, per clock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimerQueue {
    event: BTreeSet<(i64, Datum, String)>,
    processing: BTreeSet<(i64, Datum, String)>,
}

impl TimerQueue {
    /// Every timer the backend holds.
    pub fn from_backend(backend: &dyn StateBackend) -> Result<Self, StateError> {
        let mut queue = Self::default();
        let Some(state) = backend.states().iter().position(|s| s.name == TIMER_STATE) else {
            return Ok(queue);
        };
        if backend.states()[state].kind != StateKind::Map {
            return Err(StateError::Declaration {
                name: TIMER_STATE.into(),
                reason: "the timer state is not a map state".into(),
            });
        }
        for entry in backend.entries()? {
            if usize::from(entry.state) != state {
                continue;
            }
            let timer: TimerKey = read_canonical(&entry.user_key)
                .map_err(|e| StateError::Codec(format!("a stored timer: {e}")))?;
            let key = std::str::from_utf8(&entry.key)
                .map_err(|e| e.to_string())
                .and_then(|text| Datum::parse(text).map_err(|e| e.to_string()))
                .map_err(|e| StateError::Codec(format!("a stored timer's key: {e}")))?;
            queue.apply(&key, &TimerChange::Registered(timer));
        }
        Ok(queue)
    }

    /// Applies a callback's change to `key`'s timers.
    pub fn apply(&mut self, key: &Datum, change: &TimerChange) {
        let (timer, add) = match change {
            TimerChange::Registered(timer) => (timer, true),
            TimerChange::Deleted(timer) => (timer, false),
        };
        let set = match timer.domain {
            TimeDomain::EventTime => &mut self.event,
            TimeDomain::ProcessingTime => &mut self.processing,
        };
        let entry = (timer.timestamp_ms, key.clone(), timer.namespace.clone());
        if add {
            set.insert(entry);
        } else {
            set.remove(&entry);
        }
    }

    /// Takes the first timer of `domain` due at `time_ms`, if any.
    pub fn pop_due(&mut self, domain: TimeDomain, time_ms: i64) -> Option<Timer> {
        let set = match domain {
            TimeDomain::EventTime => &mut self.event,
            TimeDomain::ProcessingTime => &mut self.processing,
        };
        let first = set.first().filter(|(at, _, _)| *at <= time_ms)?.clone();
        set.remove(&first);
        let (timestamp_ms, key, namespace) = first;
        Some(Timer {
            timestamp_ms,
            key,
            namespace,
            domain,
        })
    }

    /// Whether a timer of `domain` is due at `time_ms`.
    pub fn is_due(&self, domain: TimeDomain, time_ms: i64) -> bool {
        let set = match domain {
            TimeDomain::EventTime => &self.event,
            TimeDomain::ProcessingTime => &self.processing,
        };
        set.first().is_some_and(|(at, _, _)| *at <= time_ms)
    }

    /// Timers waiting, of both clocks.
    pub fn len(&self) -> usize {
        self.event.len() + self.processing.len()
    }

    /// Whether no timer waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The timers among a snapshot's cells, each checked to decode as a timer: what `inspect`
/// reports. The error names the first cell that does not.
pub fn count_stored(
    states: &[super::StateDescriptor],
    entries: &[super::StateEntry],
) -> Result<usize, String> {
    let Some(state) = states.iter().position(|s| s.name == TIMER_STATE) else {
        return Ok(0);
    };
    let mut count = 0;
    for entry in entries.iter().filter(|e| usize::from(e.state) == state) {
        read_canonical::<TimerKey>(&entry.user_key).map_err(|e| {
            format!(
                "a timer in key group {} does not decode: {e}",
                entry.key_group
            )
        })?;
        count += 1;
    }
    Ok(count)
}

impl Timer {
    /// The stored form, without the key.
    pub fn stored(&self) -> TimerKey {
        TimerKey {
            domain: self.domain,
            timestamp_ms: self.timestamp_ms,
            namespace: self.namespace.clone(),
        }
    }
}
