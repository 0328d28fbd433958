//! The record of a run: one typed [`Event`] for everything the engine does, stamped with the
//! scheduler step and the virtual time at which it happened.
//!
//! Judgements read events and their typed fields, never text: the oracle, the campaign and the
//! process-kill mode match on variants. The text of a trace is *rendered* from the events by
//! one renderer (`render.rs`), so recovery traces stay readable and their insta snapshots show
//! every change as a diff of the story. The trace hash is computed over a canonical binary
//! encoding of the events (postcard's stable wire format), never over the rendered text, so
//! rewording a line changes neither a judgement nor a hash.
//!
//! Events carry logical facts only (ids, keys, counts, paths), never raw file bytes or
//! checksums of RocksDB files, which differ between identical runs. Where an event must carry
//! a detail that depends on the host (where a corruption landed in a RocksDB file, whose size
//! varies by host), the detail is a [`crate::sim::HostDetail`]: rendered and kept, but left out
//! of the hash.
//!
//! ```
//! use faultline::trace::{Event, Trace};
//!
//! let mut first = Trace::new();
//! first.record(1, 0, Event::AttemptStarted { attempt: 0, tasks: 3, channels: 2 });
//! let mut second = first.clone();
//! assert_eq!(first.hash(), second.hash());
//!
//! second.record(2, 1, Event::CheckpointTriggered { checkpoint: 1, is_final: false });
//! assert_ne!(first.hash(), second.hash());
//! assert_eq!(first.first_divergence(&second), Some(1));
//! assert_eq!(second.events()[1].to_string(), "       1 ms  checkpoint chk-1 triggered");
//! ```

mod event;
mod render;

pub use event::{
    AbortReason, AuditContext, Emission, Event, FailureCause, JobStarted, KeyedFiles,
    NotificationFate, Resource, RestoreFailure, RestoreSource, Restored, Unread,
};

use std::fmt;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

/// One event and when it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stamped {
    /// The scheduler step at which the event was recorded.
    pub step: u64,
    /// Virtual time in milliseconds.
    pub time_ms: u64,
    /// What happened.
    pub event: Event,
}

impl fmt::Display for Stamped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>8} ms  {}", self.time_ms, self.event)
    }
}

/// A stable 64-bit hash of a trace (XXH3 over the canonical encoding of its stamped events);
/// equal traces have equal hashes on every platform and release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TraceHash(pub u64);

impl fmt::Display for TraceHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The ordered events of one case.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trace {
    events: Vec<Stamped>,
}

impl Trace {
    /// An empty trace.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `event`, which happened at `step` and `time_ms`.
    pub fn record(&mut self, step: u64, time_ms: u64, event: Event) {
        self.push(Stamped {
            step,
            time_ms,
            event,
        });
    }

    /// Appends an event recorded elsewhere (by another process of the same case).
    pub fn push(&mut self, stamped: Stamped) {
        if let Some(last) = self.events.last() {
            debug_assert!(last.time_ms <= stamped.time_ms, "trace time went backwards");
        }
        self.events.push(stamped);
    }

    /// The events in order.
    pub fn events(&self) -> &[Stamped] {
        &self.events
    }

    /// Appends every event of `other`, in order.
    pub fn extend(&mut self, other: Trace) {
        for stamped in other.events {
            self.push(stamped);
        }
    }

    /// The hash of every event, in order, including its step and time.
    pub fn hash(&self) -> TraceHash {
        let mut hasher = Hashing(Xxh3::new());
        for stamped in &self.events {
            hasher = postcard::serialize_with_flavor(stamped, hasher)
                .expect("hashing never fails: the flavor only feeds the hasher");
        }
        TraceHash(hasher.0.digest())
    }

    /// The index of the first event at which two traces differ, if they do: compared as the
    /// hash sees them, so host details never count as a difference.
    pub fn first_divergence(&self, other: &Trace) -> Option<usize> {
        let canonical = |stamped: &Stamped| {
            postcard::to_allocvec(stamped).expect("every event has a canonical encoding")
        };
        let common = self.events.len().min(other.events.len());
        (0..common)
            .find(|&i| canonical(&self.events[i]) != canonical(&other.events[i]))
            .or_else(|| (self.events.len() != other.events.len()).then_some(common))
    }

    /// The whole trace as text, one event per line.
    pub fn render(&self) -> String {
        let mut text = String::new();
        for stamped in &self.events {
            text.push_str(&stamped.to_string());
            text.push('\n');
        }
        text
    }
}

/// A postcard flavor that feeds the encoding straight into the hasher: no buffer.
struct Hashing(Xxh3);

impl postcard::ser_flavors::Flavor for Hashing {
    type Output = Hashing;

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.update(&[data]);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.update(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Hashing> {
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(attempt: u32) -> Event {
        Event::AttemptStarted {
            attempt,
            tasks: 2,
            channels: 1,
        }
    }

    #[test]
    fn hash_covers_order_and_time() {
        let mut a = Trace::new();
        a.record(1, 0, started(0));
        a.record(2, 5, started(1));
        let mut b = Trace::new();
        b.record(1, 0, started(0));
        b.record(2, 6, started(1));
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.first_divergence(&b), Some(1));
        assert_eq!(a.first_divergence(&a.clone()), None);
    }

    #[test]
    fn a_prefix_diverges_where_it_ends() {
        let mut a = Trace::new();
        a.record(1, 0, started(0));
        let mut b = a.clone();
        b.record(2, 0, started(1));
        assert_eq!(a.first_divergence(&b), Some(1));
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn a_host_detail_is_kept_but_not_hashed() {
        use crate::fault::{Corruption, CorruptionKind};
        use crate::sim::HostDetail;
        let event = |detail: &str| {
            Event::Corrupted(Corruption {
                attempt: 1,
                checkpoint: 2,
                path: "chk-2/keyed0-0.kv".into(),
                kind: CorruptionKind::BitFlip,
                detail: HostDetail(detail.into()),
            })
        };
        let (mut a, mut b) = (Trace::new(), Trace::new());
        a.record(1, 0, event("bit 1 of byte 100 flipped"));
        b.record(1, 0, event("bit 1 of byte 104 flipped"));
        assert_eq!(a.hash(), b.hash());
        assert_eq!(
            a.first_divergence(&b),
            None,
            "the determinism check agrees with the hash"
        );
        // Kept in the human-readable form process mode streams.
        let json = serde_json::to_string(&a.events()[0]).unwrap();
        assert!(json.contains("byte 100"), "{json}");
        let back: Stamped = serde_json::from_str(&json).unwrap();
        assert_eq!(back, a.events()[0]);
    }
}
