//! Named random streams derived from one root seed.
//!
//! Each component draws from its own ChaCha stream, so adding a draw in one component (say, a
//! new fault kind) does not shift the schedule of another. A stream is the root seed's ChaCha8
//! generator moved to the stream number given by the name's hash.
//!
//! ```
//! use faultline::sim::{RngStreams, StreamName};
//! use rand::Rng;
//!
//! let streams = RngStreams::new(7);
//! let faults: u64 = streams.stream(StreamName::Faults).random();
//! // The same root seed gives the same stream, wherever it is derived.
//! assert_eq!(faults, RngStreams::new(7).stream(StreamName::Faults).random::<u64>());
//! // Another component's stream is independent of it.
//! assert_ne!(faults, streams.stream(StreamName::Scheduler).random::<u64>());
//! ```

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use xxhash_rust::xxh3::xxh3_64;

/// The components that draw randomness, one stream each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StreamName {
    /// Which runnable task runs next, and from which input channel it reads.
    Scheduler,
    /// Jitter of the exponential-delay restart strategy.
    RestartJitter,
    /// Where and when faults fire, and what corruption does to a file.
    Faults,
    /// Generated inputs and job shapes.
    Workload,
    /// Event times of generated inputs.
    EventTime,
}

impl StreamName {
    /// The name hashed into the stream number; stable across releases, because changing it
    /// changes every recorded trace.
    pub fn label(self) -> &'static str {
        match self {
            StreamName::Scheduler => "scheduler",
            StreamName::RestartJitter => "restart-jitter",
            StreamName::Faults => "faults",
            StreamName::Workload => "workload",
            StreamName::EventTime => "event-time",
        }
    }
}

/// Derives every named stream of a case from its root seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RngStreams {
    root_seed: u64,
}

impl RngStreams {
    /// Streams for the case with this root seed.
    pub fn new(root_seed: u64) -> Self {
        Self { root_seed }
    }

    /// The root seed every stream derives from.
    pub fn root_seed(&self) -> u64 {
        self.root_seed
    }

    /// A fresh generator for `name`: the same seed and name always give the same sequence.
    pub fn stream(&self, name: StreamName) -> ChaCha8Rng {
        self.stream_for_label(name.label())
    }

    /// A fresh generator for a free-form label, for user components with their own streams.
    pub fn stream_for_label(&self, label: &str) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.root_seed);
        rng.set_stream(xxh3_64(label.as_bytes()));
        rng
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn same_seed_and_name_give_the_same_sequence() {
        let streams = RngStreams::new(7);
        let mut a = streams.stream(StreamName::Scheduler);
        let mut b = streams.stream(StreamName::Scheduler);
        for _ in 0..16 {
            assert_eq!(a.random::<u64>(), b.random::<u64>());
        }
    }

    #[test]
    fn different_names_give_different_sequences() {
        let streams = RngStreams::new(7);
        let mut a = streams.stream(StreamName::Scheduler);
        let mut b = streams.stream(StreamName::Faults);
        let draws_a: Vec<u64> = (0..8).map(|_| a.random()).collect();
        let draws_b: Vec<u64> = (0..8).map(|_| b.random()).collect();
        assert_ne!(draws_a, draws_b);
    }
}
