//! The dataflow engine: job graph, operators, key groups and partitioning, channels, barriers and
//! alignment, sources, sinks, restart strategies, and the runtime that executes a job on the
//! deterministic scheduler. It does not know which state backend or fault plan is in use: both
//! come in through traits.

pub mod csv;
pub mod keygroup;
pub mod operator;
mod record;
pub mod restart;
mod runtime;
pub mod sink;
pub mod source;
pub mod spec;
pub mod user;

pub use operator::{Operator, OperatorContext, OperatorError};
pub use record::{partition_for_key, Input, InputRecord, Origin, Positions, Record};
pub use restart::{RestartDecision, RestartStrategy, RestartTracker};
pub use runtime::{
    CheckpointConfig, CheckpointingMode, FailureRecord, JobStatus, RestorePolicy, RestoreRecord,
    RunConfig, RunError, RunOutcome, RunStats, Runtime, SavepointRequest, SinkFactory,
};
pub use sink::{ExternalOutput, ExternalStore, OutputReader, Sink};
pub use source::{Source, SourceFactory};
pub use spec::{FailCounter, JobSpec, OperatorSpec, SinkKind, SinkSpec, SourceSpec, StageSpec};
