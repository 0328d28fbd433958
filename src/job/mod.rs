//! The dataflow job: its graph, operators, key groups and partitioning, records and input,
//! sources, sinks and the external system they write to, watermarks, and restart strategies. The seams a
//! user plugs code into (`Operator`, `Source`, `Sink`) are defined here; [`crate::engine`] runs
//! a job.

pub mod csv;
mod datum;
pub mod jsonl;
pub mod keygroup;
pub mod operator;
mod record;
pub mod restart;
pub mod session;
pub mod sink;
pub mod source;
pub mod spec;
pub mod user;
pub mod watermark;
pub mod window;

pub(crate) use datum::{canonical_text, read_canonical};
pub use datum::{Data, DataError, Datum};
pub use operator::{Operator, OperatorContext, OperatorError, WindowFactory};
pub(crate) use record::transaction_datum;
pub use record::{partition_for_key, Input, InputRecord, Origin, Positions, Record, Transaction};
pub use restart::{InvalidRestart, RestartDecision, RestartStrategy, RestartTracker};
pub use sink::{ExternalOutput, ExternalStore, OutputReader, Sink, SinkFactory};
pub use source::{Source, SourceFactory};
pub use spec::{
    task_name, FailCounter, JobSpec, OperatorSpec, SinkKind, SinkSpec, SourceSpec, StageSpec,
    WindowAggregate, WindowShape, WINDOWS_PER_RECORD_MAX,
};
pub use watermark::WatermarkSpec;
