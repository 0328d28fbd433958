//! The parts of one attempt: tasks and their bodies, channels, alignment state, the pending
//! checkpoint, and small encoders of source positions.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;

use crate::checkpoint::codec::{Decoder, Encoder};
use crate::checkpoint::{FormatError, SubtaskSnapshot};
use crate::fault::{Effect, FaultAction};
use crate::job::operator::Operator;
use crate::job::sink::Sink;
use crate::job::source::Source;
use crate::job::watermark::{Mark, SourceWatermarks, Valve};
use crate::job::Record;
use crate::state::timers::TimerQueue;
use crate::state::{KeyGroupRange, StateBackend};
use crate::trace::{FailureCause, RestoreFailure, Unread};

#[derive(Debug, Clone)]
pub(super) enum Element {
    Record(Record),
    Barrier(Barrier),
    /// A watermark or a change of the sender's idleness.
    Mark(Mark),
}

/// A checkpoint barrier on a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Barrier {
    pub(super) checkpoint: u64,
    /// It overtook the records queued before it: the receiver snapshots at once.
    pub(super) unaligned: bool,
}

#[derive(Debug)]
pub(super) struct Channel {
    pub(super) queue: VecDeque<Element>,
    /// Blocked by barrier alignment: its barrier arrived, others' have not.
    pub(super) blocked: bool,
    pub(super) last_barrier: u64,
    /// The task that sends on it and the one that receives from it.
    pub(super) sender: usize,
    pub(super) receiver: usize,
    /// A forward (pointwise) edge's: its barriers never overtake records.
    pub(super) forward: bool,
}

impl Channel {
    pub(super) fn new(sender: usize, receiver: usize, forward: bool) -> Self {
        Self {
            queue: VecDeque::new(),
            blocked: false,
            last_barrier: 0,
            sender,
            receiver,
            forward,
        }
    }

    /// The records queued on it, in order (marks and barriers left out).
    pub(super) fn records(&self) -> Vec<Record> {
        let records = self.queue.iter().filter_map(|element| match element {
            Element::Record(record) => Some(record.clone()),
            _ => None,
        });
        records.collect()
    }
}

/// An unaligned snapshot a task took and has not acknowledged yet: it waits for the barrier on
/// every input, keeping what each input delivers until its barrier arrives.
#[derive(Debug)]
pub(super) struct Capture {
    pub(super) checkpoint: u64,
    /// Inputs whose barrier arrived.
    pub(super) arrived: Vec<bool>,
    /// The snapshot taken at the first barrier, acknowledged once every barrier arrived.
    pub(super) snapshot: SubtaskSnapshot,
    /// Records taken in on each input after the snapshot, before its barrier.
    pub(super) inputs: Vec<Vec<Record>>,
    /// The records the barrier overtook on each output channel: (receiving subtask, records).
    pub(super) outputs: Vec<(u16, Vec<Record>)>,
}

#[derive(Debug)]
pub(super) struct Outputs {
    /// Channel per downstream subtask, or the single forward channel.
    pub(super) channels: Vec<usize>,
    pub(super) forward: bool,
}

/// The barriers a task with several inputs has received, by checkpoint: which inputs each
/// arrived on. Exactly-once holds at most one checkpoint (its inputs with a barrier are
/// blocked); at-least-once may count several at once, since inputs run ahead.
#[derive(Debug, Default)]
pub(super) struct Alignment {
    pub(super) received: BTreeMap<u64, Vec<bool>>,
}

pub(super) struct SourceTask {
    pub(super) partitions: Vec<u32>,
    /// Where each partition stands: after the last record emitted (the runtime's own account,
    /// whatever a user's reader stores).
    pub(super) positions: BTreeMap<u32, u64>,
    pub(super) cursor: usize,
    /// A user's reader in place of the built-in round robin.
    pub(super) reader: Option<UserReader>,
    /// The watermark generator, when the job has event time.
    pub(super) watermarks: Option<SourceWatermarks>,
}

/// A user's source reader and what the runtime knows of it.
pub(super) struct UserReader {
    pub(super) source: Box<dyn Source>,
    /// Records per partition this subtask reads.
    pub(super) lengths: BTreeMap<u32, u64>,
    /// Opened lazily, once the restored positions are known.
    pub(super) opened: bool,
    /// Its poll said nothing is left.
    pub(super) finished: bool,
}

impl UserReader {
    /// Opens the reader at `positions` unless it is open (a panic in it fails `task`).
    pub(super) fn ensure_open(
        &mut self,
        task: &str,
        positions: &BTreeMap<u32, u64>,
    ) -> Result<(), Failure> {
        if !self.opened {
            guarded(task, || self.source.open(positions))?;
            self.opened = true;
        }
        Ok(())
    }

    /// The reader stored a position for each partition it reads, each within its partition.
    pub(super) fn check_stored(
        &self,
        stored: &BTreeMap<u32, u64>,
    ) -> Result<(), SourceContractError> {
        if let Some(&partition) = self.lengths.keys().find(|p| !stored.contains_key(p)) {
            return Err(SourceContractError::NoPositionStored { partition });
        }
        for (&partition, &offset) in stored {
            match self.lengths.get(&partition) {
                None => {
                    return Err(SourceContractError::StoredForeign {
                        partition,
                        assigned: self.assigned(),
                    })
                }
                Some(&len) if offset > len => {
                    return Err(SourceContractError::StoredPastEnd {
                        partition,
                        offset,
                        len,
                    })
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The record the reader named, or why there is none.
    pub(super) fn check_named(
        &self,
        partition: u32,
        offset: u64,
    ) -> Result<(), SourceContractError> {
        match self.lengths.get(&partition) {
            None => Err(SourceContractError::NamedForeign {
                partition,
                offset,
                assigned: self.assigned(),
            }),
            Some(&len) if offset >= len => Err(SourceContractError::NamedPastEnd {
                partition,
                offset,
                len,
            }),
            Some(_) => Ok(()),
        }
    }

    /// The partitions this subtask reads.
    fn assigned(&self) -> Vec<u32> {
        self.lengths.keys().copied().collect()
    }

    /// Partitions the reader left unread.
    pub(super) fn unread(&self, positions: &BTreeMap<u32, u64>) -> Vec<Unread> {
        self.lengths
            .iter()
            .filter_map(|(&partition, &len)| {
                let at = positions.get(&partition).copied().unwrap_or(0);
                (at < len).then_some(Unread { partition, at, len })
            })
            .collect()
    }
}

/// How a user's reader broke the source contract: the problem of a
/// [`FailureCause::SourceContract`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum SourceContractError {
    /// At a barrier, it stored no position for a partition it reads.
    #[error("the reader stored no position for p{partition}")]
    NoPositionStored { partition: u32 },
    /// At a barrier, it stored a position for a partition of another subtask.
    #[error("the reader stored a position for p{partition}, which is not assigned to this subtask (it reads {})", partition_list(assigned))]
    StoredForeign { partition: u32, assigned: Vec<u32> },
    /// At a barrier, it stored a position past its partition's end.
    #[error("the reader stored p{partition}@{offset}, past the partition's end {len}")]
    StoredPastEnd {
        partition: u32,
        offset: u64,
        len: u64,
    },
    /// It named a record of a partition of another subtask.
    #[error("the reader named p{partition}@{offset}, but p{partition} is not assigned to this subtask (it reads {})", partition_list(assigned))]
    NamedForeign {
        partition: u32,
        offset: u64,
        assigned: Vec<u32>,
    },
    /// It named a record past its partition's end.
    #[error("the reader named p{partition}@{offset}, past the partition's end {len}")]
    NamedPastEnd {
        partition: u32,
        offset: u64,
        len: u64,
    },
}

/// Partitions as messages name them: `p0, p2`, or `none`.
fn partition_list(partitions: &[u32]) -> String {
    if partitions.is_empty() {
        "none".into()
    } else {
        let names: Vec<String> = partitions.iter().map(|p| format!("p{p}")).collect();
        names.join(", ")
    }
}

/// Why a source's stored positions do not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum PositionsError {
    /// The bytes are not the encoding.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A partition appears twice.
    #[error("partition {partition} listed twice")]
    Duplicate { partition: u32 },
}

/// Runs a call into a user's code, turning a panic into a failure of `task`, as the supervisor
/// does for operators. Built-in code is called with [`guarded_if`]`(false, ..)`, so a broken
/// engine invariant still stops the run.
pub(super) fn guarded<T>(task: &str, call: impl FnOnce() -> T) -> Result<T, Failure> {
    #[allow(clippy::disallowed_methods)]
    // The supervisor is the one place in the engine that catches panics (the case runner
    // catches what escapes it).
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).map_err(|payload| {
        Failure::new(
            task,
            FailureCause::Panicked {
                message: panic_message(&*payload),
            },
        )
    })
}

/// [`guarded`] when `user` says the code is a user's; a plain call otherwise.
pub(super) fn guarded_if<T>(
    user: bool,
    task: &str,
    call: impl FnOnce() -> T,
) -> Result<T, Failure> {
    if user {
        guarded(task, call)
    } else {
        Ok(call())
    }
}

pub(super) struct OperatorTask {
    pub(super) op: Box<dyn Operator>,
    pub(super) backend: Option<Box<dyn StateBackend>>,
    /// The backend's timers in firing order, rebuilt from its cells at every start.
    pub(super) timers: TimerQueue,
    pub(super) processing_ms: u64,
    /// Records processed in this attempt.
    pub(super) processed: u64,
    /// Timers fired in this attempt.
    pub(super) fired: u64,
    /// Advances of the watermark in this attempt.
    pub(super) advances: u64,
}

pub(super) enum Body {
    Source(SourceTask),
    Operator(OperatorTask),
    Sink(Box<dyn Sink>),
}

pub(super) struct Task {
    pub(super) name: String,
    pub(super) stage: usize,
    pub(super) subtask: u16,
    pub(super) key_groups: KeyGroupRange,
    pub(super) inputs: Vec<usize>,
    pub(super) outputs: Outputs,
    pub(super) alignment: Alignment,
    /// An unaligned snapshot waiting for its input barriers.
    pub(super) capture: Option<Capture>,
    /// Records a restore took from channel state: handled before any input.
    pub(super) recovered: VecDeque<Record>,
    /// The newest checkpoint whose completion it heard of (0: none yet).
    pub(super) notified_up_to: u64,
    /// Combines the inputs' watermarks (sources have none).
    pub(super) valve: Valve,
    pub(super) body: Body,
}

pub(super) struct Execution {
    pub(super) attempt: u32,
    pub(super) tasks: Vec<Task>,
    pub(super) channels: Vec<Channel>,
    pub(super) stage_tasks: Vec<Range<usize>>,
    pub(super) notifications: VecDeque<(u64, usize)>,
    /// Notifications a fault delayed: (due time, checkpoint, task).
    pub(super) delayed: Vec<(u64, u64, usize)>,
}

/// A failure inside an attempt.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct Failure {
    pub(super) task: String,
    pub(super) cause: FailureCause,
}

impl Failure {
    pub(super) fn new(task: impl Into<String>, cause: FailureCause) -> Self {
        Self {
            task: task.into(),
            cause,
        }
    }

    /// A failure of the restore at the start of an attempt.
    pub(super) fn restore(problem: RestoreFailure) -> Self {
        Self::new("restore", FailureCause::Restore(problem))
    }

    /// The failure a fault action causes in `task` (a kill fails the whole process).
    pub(super) fn from_action(task: &str, action: FaultAction) -> Self {
        let task = if action.effect == Effect::Kill {
            "process"
        } else {
            task
        };
        Self::new(
            task,
            FailureCause::Injected {
                fault: action.fault,
                site: action.site,
                effect: action.effect,
                detail: action.detail,
            },
        )
    }

    /// Whether the whole process died: uncommitted writes are lost or torn.
    pub(super) fn killed(&self) -> bool {
        self.cause.is_kill()
    }
}

/// Which checkpoint an attempt starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RestoreTarget {
    /// No restore: the job's first attempt.
    Fresh,
    /// The latest completed checkpoint in storage (or none).
    Latest,
    /// A given checkpoint, sinks left alone.
    Inspect(u64),
}

pub(super) fn encode_positions(positions: &BTreeMap<u32, u64>) -> Vec<u8> {
    let mut e = Encoder::new();
    e.u32(positions.len() as u32);
    for (partition, offset) in positions {
        e.u32(*partition).u64(*offset);
    }
    e.finish()
}

pub(super) fn decode_positions(bytes: &[u8]) -> Result<BTreeMap<u32, u64>, PositionsError> {
    let mut d = Decoder::new(bytes);
    let count = d.count("source positions", 12)?;
    let mut positions = BTreeMap::new();
    for _ in 0..count {
        let partition = d.u32("partition")?;
        let offset = d.u64("offset")?;
        if positions.insert(partition, offset).is_some() {
            return Err(PositionsError::Duplicate { partition });
        }
    }
    d.finish("source positions")?;
    Ok(positions)
}

/// The backend as the shorter-lived trait object operator methods take (a coercion `Option`
/// cannot make by itself, since `&mut` is invariant).
pub(super) fn backend_mut(
    backend: &mut Option<Box<dyn StateBackend>>,
) -> Option<&mut dyn StateBackend> {
    match backend {
        Some(backend) => Some(backend.as_mut()),
        None => None,
    }
}

pub(super) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-text payload".into())
}
