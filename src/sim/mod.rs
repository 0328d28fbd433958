//! The deterministic runtime's primitives: one root seed split into named random streams, a
//! virtual clock in milliseconds, the seeded scheduler that picks the next runnable task and the
//! step bound, and [`HostDetail`] for the few facts that depend on the host rather than the seed.
//! The record of a run and its hash live in [`crate::trace`].
//!
//! Nothing here reads the wall clock, asks the OS for randomness or spawns a thread; `clippy.toml`
//! bans those APIs crate-wide.

mod clock;
mod host;
mod rng;
mod scheduler;

pub use clock::Clock;
pub use host::HostDetail;
pub use rng::{RngStreams, StreamName};
pub use scheduler::{Scheduler, StepLimit};
