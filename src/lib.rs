//! faultline: a property-based fault-injection harness for stateful stream processing.
//!
//! It runs a Flink-style dataflow engine ([`job`]) with keyed state ([`state`]) and aligned
//! checkpoints ([`checkpoint`]) on a deterministic single-threaded runtime ([`sim`]), injects
//! faults ([`fault`]) at seeded points, and checks recovered state and committed output against
//! a reference model ([`model`]) with an oracle ([`check`]). [`campaign`] runs whole cases;
//! [`harness`] runs campaigns over your own code from a test, and [`testing`] drives one
//! operator step by step.
//!
//! ```
//! use faultline::harness::Harness;
//! use faultline::state::BackendKind;
//!
//! // Generated jobs, inputs, configurations and fault schedules, each run on the deterministic
//! // runtime and judged by the oracle; a violation panics with the shrunk case and its replay.
//! let report = Harness::new()
//!     .cases(10)
//!     .seed(3)
//!     .backends(vec![BackendKind::Memory])
//!     .run();
//! assert_eq!(report.cases, 10);
//! ```

#![deny(missing_docs)]

pub mod bench;
pub mod campaign;
pub mod check;
pub mod checkpoint;
pub mod cli;
pub mod engine;
pub mod fault;
pub mod fuzzing;
pub mod harness;
pub mod job;
pub mod model;
pub mod sim;
pub mod state;
mod sync;
pub mod testing;
pub mod trace;

/// The README's Rust examples, compiled by `cargo test --doc` so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeExamples;

/// The `proptest` crate faultline's strategies are built with, so a user's own `proptest!` block
/// over [`campaign::scenario_strategy`] needs no version of its own that could differ.
pub use proptest;

/// The `rocksdb` crate faultline is built with, so native checkpoints can be opened with plain
/// RocksDB by the very same build.
#[cfg(feature = "rocksdb")]
pub use rocksdb;
