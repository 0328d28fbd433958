//! The one renderer: each event as one compact, readable trace line. Nothing outside this file
//! (and its tests) turns an event into text, and nothing reads the text back.

use std::collections::BTreeMap;
use std::fmt::{self, Display, Formatter};

use super::event::{
    AbortReason, AuditContext, Emission, Event, FailureCause, JobStarted, NotificationFate,
    Resource, RestoreSource, Restored, Unread,
};
use crate::checkpoint::CheckpointingMode;
use crate::job::sink::{TxnAbort, TxnEvent};
use crate::job::watermark::{Mark, END_OF_INPUT};
use crate::job::Record;
use crate::state::timers::{TimeDomain, Timer};

impl Display for Event {
    // One arm per event, exhaustive, so that no event can go unrendered; the arms that need
    // more than a line call a helper below.
    #[allow(clippy::too_many_lines)]
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Event::JobStarted(started) => started.fmt(f),
            Event::AttemptStarted {
                attempt,
                tasks,
                channels,
            } => write!(f, "attempt {attempt} started: {tasks} tasks, {channels} channels"),
            Event::RecordEmitted { task, record } => write!(f, "emit {task} {record}"),
            Event::RecordProcessed {
                task,
                record,
                outputs,
            } => processed(f, task, record, outputs),
            Event::RecordWritten { task, record } => write!(f, "write {task} {record}"),
            Event::Watermark { task, mark } => watermark(f, task, *mark),
            Event::TimerFired {
                task,
                timer,
                outputs,
            } => timer_fired(f, task, timer, outputs),
            Event::SourceFinished { task, unread } => source_finished(f, task, unread),
            Event::CheckpointTriggered {
                checkpoint,
                is_final,
            } => {
                let why = if *is_final { " (final: input exhausted)" } else { "" };
                write!(f, "checkpoint chk-{checkpoint} triggered{why}")
            }
            Event::SavepointTriggered {
                name,
                checkpoint,
                format,
                stop,
            } => {
                let stop = if *stop { ", stop" } else { "" };
                write!(f, "savepoint {name} triggered as chk-{checkpoint} ({format:?}{stop})")
            }
            Event::BarrierInjected {
                checkpoint,
                task,
                stored,
                read_to,
            } => barrier_injected(f, *checkpoint, task, stored, read_to.as_ref()),
            Event::BarrierReceived {
                checkpoint,
                task,
                input,
                received,
                inputs,
                ..
            } => write!(f, "barrier chk-{checkpoint} at {task} input {input} ({received}/{inputs})"),
            Event::BarrierAligned {
                checkpoint,
                task,
                inputs,
                ..
            } => write!(f, "barrier chk-{checkpoint} aligned at {task} ({inputs} inputs)"),
            Event::BarrierOvertook {
                checkpoint,
                task,
                timed_out,
                overtaken,
            } => {
                let why = if *timed_out {
                    " (aligned-checkpoint timeout)"
                } else {
                    ""
                };
                write!(f, "barrier chk-{checkpoint} unaligned at {task}{why}: overtook {overtaken} records")
            }
            Event::ChannelStateWritten {
                checkpoint,
                task,
                inputs,
                outputs,
            } => write!(
                f,
                "channel state {task} chk-{checkpoint}: {inputs} input, {outputs} output records"
            ),
            Event::ChannelStateRestored { task, origins } => write!(
                f,
                "channel state restored to {task}: {} records before its input",
                origins.len()
            ),
            Event::Snapshot {
                checkpoint,
                task,
                keyed: None,
            } => write!(f, "snapshot {task} chk-{checkpoint}"),
            Event::Snapshot {
                checkpoint,
                task,
                keyed: Some(k),
            } => write!(
                f,
                "snapshot {task} chk-{checkpoint}: {} files ({} written, {} reused)",
                k.files, k.written, k.reused
            ),
            Event::Txn { task, event } => write!(f, "txn {task}: {event}"),
            Event::Stored { path } => write!(f, "stored {path}"),
            Event::CheckpointCompleted { checkpoint, files } => {
                write!(f, "checkpoint chk-{checkpoint} completed: {files} state files")
            }
            Event::SavepointCompleted {
                name,
                checkpoint,
                files,
                dir,
            } => write!(
                f,
                "savepoint {name} completed as chk-{checkpoint}: {files} state files, in {dir}"
            ),
            Event::CompletionUnrecorded { checkpoint, error } => {
                write!(f, "could not record chk-{checkpoint} as completed: {error}")
            }
            Event::CheckpointSubsumed { checkpoint } => {
                write!(f, "checkpoint chk-{checkpoint} subsumed")
            }
            Event::CheckpointAborted { checkpoint, reason } => {
                write!(f, "checkpoint chk-{checkpoint} aborted: {reason}")
            }
            Event::CheckpointDiscarded { checkpoint } => {
                write!(f, "checkpoint chk-{checkpoint} discarded: it never completed")
            }
            Event::SavepointDiscarded { name } => {
                write!(f, "savepoint {name} discarded: it never completed")
            }
            Event::SavepointUnusable { name, error } => {
                write!(f, "savepoint {name} is not a restore candidate: {error}")
            }
            Event::GarbageCollected { deleted } => write!(
                f,
                "gc: deleted {} shared files no retained checkpoint references",
                deleted.len()
            ),
            Event::GarbageCollectionSkipped { reason } => write!(f, "gc skipped: {reason}"),
            Event::GarbageCollectionFailed { error } => write!(f, "gc failed: {error}"),
            Event::Notification {
                checkpoint,
                task,
                fate: NotificationFate::Lost,
            } => write!(f, "notify chk-{checkpoint} to {task}: lost"),
            Event::Notification {
                checkpoint,
                task,
                fate: NotificationFate::Delayed { delay_ms },
            } => write!(f, "notify chk-{checkpoint} to {task}: delayed {delay_ms} ms"),
            Event::NotifyAgain { checkpoint } => {
                write!(f, "notify chk-{checkpoint} again: sinks hold pending transactions")
            }
            Event::Failure { task, cause, .. } => write!(f, "failure {task}: {cause}"),
            Event::WritesLost { writes, lost, torn } => write!(
                f,
                "kill: of {writes} uncommitted checkpoint writes, {lost} lost, {torn} torn"
            ),
            Event::Restarting {
                restart,
                delay_ms,
                strategy,
            } => write!(f, "restart #{restart} in {delay_ms} ms ({strategy})"),
            Event::JobFailed { reason } => write!(f, "job failed: {reason}"),
            Event::Corrupted(c) => {
                write!(f, "corrupt {} of chk-{} ({:?})", c.path, c.checkpoint, c.kind)
            }
            Event::RestoreFallback { candidate, problem } => write!(
                f,
                "restore: {candidate} unusable ({problem}); falling back to an older checkpoint, risking exactly-once"
            ),
            Event::Restored(restored) => restored.fmt(f),
            Event::AuditFailed { context, problem } => {
                write!(f, "storage audit {context}: {problem}")
            }
            Event::FinalStateUnreadable { reason } => write!(f, "final state unreadable: {reason}"),
            Event::JobFinished { visible } => {
                write!(f, "job finished: {visible} records visible in the sink")
            }
            Event::JobStopped { savepoint } => write!(f, "job stopped with savepoint {savepoint}"),
            Event::JobCancelled { checkpoint } => {
                write!(f, "job cancelled after chk-{checkpoint} completed, keeping its checkpoints")
            }
            Event::ClockJumped { by_ms, now_ms } => write!(
                f,
                "clock jumped {by_ms} ms to {now_ms} ms while the job was down"
            ),
            Event::FaultFired { fault, site } => {
                write!(f, "fault {} fired at {}", fault.name(), site.name())
            }
            Event::ResourceExhausted { resource, limit } => {
                write!(f, "job stopped: {resource} exceeded the bound of {limit}")
            }
        }
    }
}

fn processed(
    f: &mut Formatter<'_>,
    task: &str,
    record: &Record,
    outputs: &[Emission],
) -> fmt::Result {
    write!(f, "process {task} {record} -> [")?;
    for (index, value) in outputs.iter().enumerate() {
        if index > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{value}")?;
    }
    f.write_str("]")
}

fn timer_fired(
    f: &mut Formatter<'_>,
    task: &str,
    timer: &Timer,
    outputs: &[Emission],
) -> fmt::Result {
    let clock = match timer.domain {
        TimeDomain::EventTime => "event",
        TimeDomain::ProcessingTime => "processing",
    };
    write!(
        f,
        "timer {task} {} {clock} {} ms",
        timer.key, timer.timestamp_ms
    )?;
    if !timer.namespace.is_empty() {
        write!(f, " ({})", timer.namespace)?;
    }
    f.write_str(" -> [")?;
    for (index, value) in outputs.iter().enumerate() {
        if index > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{value}")?;
    }
    f.write_str("]")
}

fn barrier_injected(
    f: &mut Formatter<'_>,
    checkpoint: u64,
    task: &str,
    stored: &BTreeMap<u32, u64>,
    read_to: Option<&BTreeMap<u32, u64>>,
) -> fmt::Result {
    write!(
        f,
        "barrier chk-{checkpoint} injected at {task} ({}",
        Partitions(stored)
    )?;
    if let Some(read_to) = read_to {
        write!(f, "; read to {}", Partitions(read_to))?;
    }
    f.write_str(")")
}

impl Display for JobStarted {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            CheckpointingMode::ExactlyOnce => "exactly-once",
            CheckpointingMode::AtLeastOnce => "at-least-once",
        };
        write!(
            f,
            "job {} started: seed {}, backend {}, ",
            self.job, self.seed, self.backend
        )?;
        for (index, (name, parallelism)) in self.stages.iter().enumerate() {
            if index > 0 {
                f.write_str(" -> ")?;
            }
            write!(f, "{name}({parallelism})")?;
        }
        write!(
            f,
            ", checkpoint every {} ms ({mode}), restart {}",
            self.interval_ms, self.restart
        )
    }
}

impl Display for Restored {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let label = match &self.from {
            RestoreSource::Nothing => {
                return write!(
                    f,
                    "restore: no completed checkpoint; sources start over at {}",
                    self.positions
                )
            }
            RestoreSource::Checkpoint(id) => format!("chk-{id}"),
            RestoreSource::Savepoint { name, checkpoint } => {
                format!("savepoint {name} (chk-{checkpoint})")
            }
            RestoreSource::External { path } => path.clone(),
        };
        write!(
            f,
            "restore from {label}: sources at {}, {} keyed entries from {} files",
            self.positions, self.entries, self.files
        )?;
        if self.no_claim {
            f.write_str(" (no-claim: later checkpoints share none of its files)")?;
        }
        Ok(())
    }
}

impl Display for FailureCause {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            FailureCause::Injected { detail, .. } => f.write_str(detail),
            FailureCause::Operator { error }
            | FailureCause::SinkWrite { error }
            | FailureCause::Upload { error }
            | FailureCause::State { error } => f.write_str(error),
            FailureCause::Panicked { message } => write!(f, "panicked: {message}"),
            FailureCause::Open { error } => write!(f, "open: {error}"),
            FailureCause::Backend { error } => write!(f, "backend: {error}"),
            FailureCause::SinkSnapshot { error } => write!(f, "snapshot: {error}"),
            FailureCause::Notification { checkpoint, error } => {
                write!(f, "notify chk-{checkpoint}: {error}")
            }
            FailureCause::SourceContract {
                checkpoint: Some(checkpoint),
                problem,
            } => write!(f, "chk-{checkpoint}: {problem}"),
            FailureCause::SourceContract {
                checkpoint: None,
                problem,
            } => f.write_str(problem),
            FailureCause::Restore(failure) => f.write_str(&failure.detail),
            FailureCause::CheckpointFailures {
                consecutive,
                tolerated,
            } => write!(
                f,
                "{consecutive} consecutive checkpoint failures exceed the {tolerated} tolerated"
            ),
            FailureCause::Subsume { checkpoint, error } => {
                write!(f, "subsuming chk-{checkpoint}: {error}")
            }
        }
    }
}

impl Display for AbortReason {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            AbortReason::Expired { timeout_ms } => write!(f, "expired after {timeout_ms} ms"),
            AbortReason::MissingSharedFile { path } => write!(
                f,
                "references {path}, which no retained checkpoint holds any more"
            ),
            AbortReason::MetadataWrite { error } => write!(f, "_metadata write failed: {error}"),
            AbortReason::ReuseRefused { task, error } | AbortReason::Snapshot { task, error } => {
                write!(f, "{task}: {error}")
            }
            AbortReason::ChannelStateWrite { task, error } => {
                write!(f, "{task}: channel state write failed: {error}")
            }
        }
    }
}

impl Display for AuditContext {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            AuditContext::AfterCheckpoint(id) => write!(f, "after chk-{id}"),
            AuditContext::AfterRestore(attempt) => {
                write!(f, "after restore (attempt {attempt})")
            }
        }
    }
}

fn watermark(f: &mut Formatter<'_>, task: &str, mark: Mark) -> fmt::Result {
    match mark {
        Mark::At(END_OF_INPUT) => write!(f, "watermark {task} end of input"),
        Mark::At(at_ms) => write!(f, "watermark {task} {at_ms} ms"),
        Mark::Idle => write!(f, "watermark {task} idle"),
        Mark::Active => write!(f, "watermark {task} active"),
    }
}

fn source_finished(f: &mut Formatter<'_>, task: &str, unread: &[Unread]) -> fmt::Result {
    write!(f, "source {task} has nothing left")?;
    if unread.is_empty() {
        return Ok(());
    }
    f.write_str(", with ")?;
    for (index, Unread { partition, at, len }) in unread.iter().enumerate() {
        if index > 0 {
            f.write_str(", ")?;
        }
        write!(f, "p{partition} at {at} of {len}")?;
    }
    f.write_str(" unread")
}

/// Source positions as the trace shows them: `p0@4 p2@3`.
struct Partitions<'a>(&'a BTreeMap<u32, u64>);

impl Display for Partitions<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for (index, (partition, offset)) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(" ")?;
            }
            write!(f, "p{partition}@{offset}")?;
        }
        Ok(())
    }
}

impl Display for TxnEvent {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let count = |records: &Option<usize>| match records {
            Some(records) => format!(" ({records} records)"),
            None => String::new(),
        };
        match self {
            TxnEvent::Begun { txn } => write!(f, "begin {txn}"),
            TxnEvent::PreCommitted {
                txn,
                checkpoint,
                records,
            } => write!(f, "pre-commit {txn}{} for chk-{checkpoint}", count(records)),
            TxnEvent::Committed {
                txn,
                checkpoint,
                records,
            } => write!(f, "commit {txn}{} for chk-{checkpoint}", count(records)),
            TxnEvent::AlreadyCommitted { txn, checkpoint } => {
                write!(f, "commit {txn} for chk-{checkpoint}: already committed")
            }
            TxnEvent::Aborted { txn, why } => match why {
                TxnAbort::InProgress => write!(f, "abort {txn} (in progress at the checkpoint)"),
                TxnAbort::Lingering => write!(f, "abort {txn} (lingering)"),
                TxnAbort::Other(reason) => write!(f, "abort {txn} ({reason})"),
            },
            TxnEvent::AbortFoundCommitted { txn } => write!(
                f,
                "abort {txn}: already committed by a later checkpoint or savepoint; this restore goes back past committed output"
            ),
        }
    }
}

impl Display for Resource {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Resource::Events => "events recorded",
            Resource::RecordsInFlight => "records in flight",
            Resource::OpenTransactions => "open transactions",
        })
    }
}
