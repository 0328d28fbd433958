//! The deterministic runtime's primitives: one root seed split into named random streams, a
//! virtual clock in milliseconds, the seeded scheduler that picks the next runnable task, the
//! step bound, and the trace recorder whose hash proves that a seed replays bit-for-bit.
//!
//! Nothing here reads the wall clock, asks the OS for randomness or spawns a thread; `clippy.toml`
//! bans those APIs crate-wide.

mod clock;
mod rng;
mod scheduler;
mod trace;

pub use clock::Clock;
pub use rng::{RngStreams, StreamName};
pub use scheduler::{Scheduler, StepLimit};
pub use trace::{Trace, TraceEvent, TraceHash};
