//! The trace recorder: one compact, readable line per event, and a stable hash of the whole
//! trace. Lines carry logical facts only (ids, keys, counts, sizes), never raw file bytes or
//! checksums of RocksDB files, which differ between identical runs.
//!
//! ```
//! use faultline::sim::Trace;
//!
//! let mut first = Trace::new();
//! first.record(1, 0, "emit source[0] r0 k0=5".into());
//! let mut second = first.clone();
//! assert_eq!(first.hash(), second.hash());
//!
//! second.record(2, 1, "process keyed0[0] r0 k0=5 -> [5]".into());
//! assert_ne!(first.hash(), second.hash());
//! assert_eq!(first.first_divergence(&second), Some(1));
//! ```

use std::fmt;
use xxhash_rust::xxh3::Xxh3;

/// One recorded event: when it happened and what it was.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TraceEvent {
    /// Scheduler step at which the event was recorded.
    pub step: u64,
    /// Virtual time in milliseconds.
    pub time_ms: u64,
    /// The event, as a compact line (`checkpoint chk-2 completed: ...`).
    pub line: String,
}

impl fmt::Display for TraceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>8} ms  {}", self.time_ms, self.line)
    }
}

/// A stable 64-bit hash of a trace (XXH3 over its lines); equal traces have equal hashes on
/// every platform and release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TraceHash(pub u64);

impl fmt::Display for TraceHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The ordered list of events of one case.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    events: Vec<TraceEvent>,
}

impl Trace {
    /// An empty trace.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an event.
    pub fn record(&mut self, step: u64, time_ms: u64, line: String) {
        debug_assert!(!line.contains('\n'), "a trace event is one line: {line:?}");
        if let Some(last) = self.events.last() {
            debug_assert!(last.time_ms <= time_ms, "trace time went backwards");
        }
        self.events.push(TraceEvent {
            step,
            time_ms,
            line,
        });
    }

    /// Appends an event recorded elsewhere (by another process of the same case).
    pub fn push(&mut self, event: TraceEvent) {
        self.events.push(event);
    }

    /// The events in order.
    pub fn events(&self) -> &[TraceEvent] {
        &self.events
    }

    /// The hash of every event, in order, including its step and time.
    pub fn hash(&self) -> TraceHash {
        let mut hasher = Xxh3::new();
        for event in &self.events {
            hasher.update(&event.step.to_le_bytes());
            hasher.update(&event.time_ms.to_le_bytes());
            hasher.update(event.line.as_bytes());
            hasher.update(b"\n");
        }
        TraceHash(hasher.digest())
    }

    /// The index of the first event at which two traces differ, if they do.
    pub fn first_divergence(&self, other: &Trace) -> Option<usize> {
        let common = self.events.len().min(other.events.len());
        (0..common)
            .find(|&i| self.events[i] != other.events[i])
            .or_else(|| (self.events.len() != other.events.len()).then_some(common))
    }

    /// The whole trace as text, one event per line.
    pub fn render(&self) -> String {
        let mut text = String::new();
        for event in &self.events {
            text.push_str(&event.to_string());
            text.push('\n');
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_covers_order_and_time() {
        let mut a = Trace::new();
        a.record(1, 0, "x".into());
        a.record(2, 5, "y".into());
        let mut b = Trace::new();
        b.record(1, 0, "x".into());
        b.record(2, 6, "y".into());
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.first_divergence(&b), Some(1));
        assert_eq!(a.first_divergence(&a.clone()), None);
    }

    #[test]
    fn a_prefix_diverges_where_it_ends() {
        let mut a = Trace::new();
        a.record(1, 0, "x".into());
        let mut b = a.clone();
        b.record(2, 0, "y".into());
        assert_eq!(a.first_divergence(&b), Some(1));
        assert_ne!(a.hash(), b.hash());
    }
}
