//! The watermark judgement: what every task sent as its watermark, read from the trace's
//! `Event::Watermark`s and the records sources emitted, against rules written from the job
//! spec alone (no code of `job::watermark`):
//!
//! - **monotone**: within an attempt, each task's watermarks strictly grow;
//! - **a source never runs ahead of its partitions**: a source's watermark is at most
//!   `max − bound − 1` over each partition it emitted from in the attempt that is not idle at
//!   that moment (it emitted within the idleness timeout), and the end of input comes only
//!   when it emits nothing more;
//! - **an operator or sink never runs ahead of its inputs**: its watermark is at most the least
//!   of its upstream tasks' latest watermarks — or, once an upstream task has gone idle in the
//!   attempt (idle inputs leave the minimum, and a returning one rejoins it only when it has
//!   caught up), at most the largest of them. An upstream task's watermark is read where it was
//!   sent, which is never behind where it was received, so the bound is safe under any
//!   interleaving;
//! - **the end is reached**: a job that finished sent the end-of-input watermark from every
//!   task of its last attempt, so every event-time timer could fire.
//!
//! A watermark too high judges on-time records late (their windows drop them); one that never
//! arrives leaves windows unfired. Both are what these rules catch.

use std::collections::BTreeMap;
use std::fmt;

use crate::job::watermark::{Mark, END_OF_INPUT, MIN_WATERMARK};
use crate::job::JobSpec;
use crate::trace::{Event, Stamped};

/// A broken watermark rule.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WatermarkViolation {
    /// A task's watermark did not grow.
    Regressed {
        /// The attempt.
        attempt: u32,
        /// The task.
        task: String,
        /// Its watermark before.
        previous: i64,
        /// The one it sent.
        watermark: i64,
    },
    /// A task's watermark ran ahead of what its partitions or inputs allow.
    Ahead {
        /// The attempt.
        attempt: u32,
        /// The task.
        task: String,
        /// The watermark it sent.
        watermark: i64,
        /// The most it could be.
        bound: i64,
    },
    /// A source emitted a record after its end-of-input watermark.
    RecordAfterEnd {
        /// The attempt.
        attempt: u32,
        /// The source task.
        task: String,
        /// The record's id.
        record: String,
    },
    /// A finished job's task never sent the end-of-input watermark.
    EndNotReached {
        /// The task.
        task: String,
        /// Its last watermark, if any.
        last: Option<i64>,
    },
}

fn show(watermark: i64) -> String {
    match watermark {
        END_OF_INPUT => "the end of input".into(),
        MIN_WATERMARK => "none".into(),
        at => format!("{at} ms"),
    }
}

impl fmt::Display for WatermarkViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Regressed {
                attempt,
                task,
                previous,
                watermark,
            } => write!(
                f,
                "watermark regressed: {task} sent {} after {} (attempt {attempt})",
                show(*watermark),
                show(*previous)
            ),
            Self::Ahead {
                attempt,
                task,
                watermark,
                bound,
            } => write!(
                f,
                "watermark ahead: {task} sent {}, at most {} allowed (attempt {attempt})",
                show(*watermark),
                show(*bound)
            ),
            Self::RecordAfterEnd {
                attempt,
                task,
                record,
            } => write!(
                f,
                "watermark: {task} emitted {record} after its end of input (attempt {attempt})"
            ),
            Self::EndNotReached { task, last } => write!(
                f,
                "watermark: the job finished but {task} never reached the end of input (last: {})",
                show(last.unwrap_or(MIN_WATERMARK))
            ),
        }
    }
}

/// One source partition within an attempt.
#[derive(Debug, Clone, Copy)]
struct Partition {
    max_ms: Option<i64>,
    emitted_at_ms: u64,
}

/// What the judgement knows of one task within an attempt.
#[derive(Debug, Clone, Default)]
struct TaskMarks {
    last: Option<i64>,
    ever_idle: bool,
    partitions: BTreeMap<u32, Partition>,
}

/// The tasks of one phase's job: each task's stage index, and the tasks upstream of it.
struct Topology<'a> {
    job: &'a JobSpec,
    tasks: BTreeMap<String, (usize, u16)>,
}

impl<'a> Topology<'a> {
    fn of(job: &'a JobSpec) -> Self {
        let names = job.stage_names();
        let parallelisms = job.stage_parallelisms();
        let mut tasks = BTreeMap::new();
        for (stage, (name, &parallelism)) in names.iter().zip(&parallelisms).enumerate() {
            for subtask in 0..parallelism {
                tasks.insert(crate::job::task_name(name, subtask), (stage, subtask));
            }
        }
        Self { job, tasks }
    }

    /// The tasks that send to `task`.
    fn upstream(&self, stage: usize, subtask: u16) -> Vec<String> {
        let names = self.job.stage_names();
        let parallelisms = self.job.stage_parallelisms();
        let up = stage - 1;
        if self.job.edge_is_forward(stage) {
            vec![crate::job::task_name(&names[up], subtask)]
        } else {
            (0..parallelisms[up])
                .map(|s| crate::job::task_name(&names[up], s))
                .collect()
        }
    }
}

/// Judges the watermarks of a case's trace; `jobs` is each phase's job, `finished` whether the
/// case's last attempt finished its input.
pub(super) fn check(
    jobs: &[&JobSpec],
    events: &[Stamped],
    finished: bool,
) -> Vec<WatermarkViolation> {
    let mut judge = Judge::default();
    let mut phase: Option<usize> = None;
    for stamped in events {
        match &stamped.event {
            Event::JobStarted(_) => {
                phase = Some(phase.map_or(0, |p| p + 1));
                judge.tasks.clear();
            }
            Event::AttemptStarted { attempt, .. } => {
                judge.attempt = *attempt;
                judge.tasks.clear();
            }
            _ => {}
        }
        let Some(job) = phase.and_then(|p| jobs.get(p)) else {
            continue;
        };
        judge.take(&Topology::of(job), stamped);
    }
    let last_job = jobs.last().filter(|job| job.source.watermarks.is_some());
    if let (true, Some(job)) = (finished, last_job) {
        judge.end_reached(&Topology::of(job));
    }
    judge.violations
}

#[derive(Default)]
struct Judge {
    attempt: u32,
    tasks: BTreeMap<String, TaskMarks>,
    violations: Vec<WatermarkViolation>,
}

impl Judge {
    fn take(&mut self, topology: &Topology<'_>, stamped: &Stamped) {
        match &stamped.event {
            Event::RecordEmitted { task, record } => {
                let marks = self.tasks.entry(task.clone()).or_default();
                if marks.last == Some(END_OF_INPUT) {
                    self.violations.push(WatermarkViolation::RecordAfterEnd {
                        attempt: self.attempt,
                        task: task.clone(),
                        record: record.id.clone(),
                    });
                }
                let partition =
                    marks
                        .partitions
                        .entry(record.origin.partition)
                        .or_insert(Partition {
                            max_ms: None,
                            emitted_at_ms: stamped.time_ms,
                        });
                partition.emitted_at_ms = stamped.time_ms;
                if let Some(at) = record.timestamp_ms {
                    partition.max_ms = Some(partition.max_ms.map_or(at, |max| max.max(at)));
                }
            }
            Event::Watermark { task, mark } => self.mark(topology, stamped.time_ms, task, *mark),
            _ => {}
        }
    }

    fn mark(&mut self, topology: &Topology<'_>, now_ms: u64, task: &str, mark: Mark) {
        let Mark::At(watermark) = mark else {
            let marks = self.tasks.entry(task.to_string()).or_default();
            marks.ever_idle |= mark == Mark::Idle;
            return;
        };
        let previous = self.tasks.get(task).and_then(|m| m.last);
        if let Some(previous) = previous.filter(|p| watermark <= *p) {
            self.violations.push(WatermarkViolation::Regressed {
                attempt: self.attempt,
                task: task.to_string(),
                previous,
                watermark,
            });
        }
        let bound = match topology.tasks.get(task) {
            Some(&(0, _)) => self.source_bound(topology.job, now_ms, task, watermark),
            Some(&(stage, subtask)) => Some(self.input_bound(&topology.upstream(stage, subtask))),
            None => None,
        };
        if let Some(bound) = bound.filter(|b| watermark > *b) {
            self.violations.push(WatermarkViolation::Ahead {
                attempt: self.attempt,
                task: task.to_string(),
                watermark,
                bound,
            });
        }
        self.tasks.entry(task.to_string()).or_default().last = Some(watermark);
    }

    /// The most a source may send: the end of input is judged by what follows it; any other
    /// watermark by the partitions that are not idle.
    fn source_bound(&self, job: &JobSpec, now_ms: u64, task: &str, watermark: i64) -> Option<i64> {
        if watermark == END_OF_INPUT {
            return None;
        }
        let spec = job.source.watermarks.unwrap_or_default();
        let Some(marks) = self.tasks.get(task) else {
            return Some(MIN_WATERMARK);
        };
        // With no partition active, the source could only have gone idle: a watermark then
        // has nothing to stand on.
        let bound = marks
            .partitions
            .values()
            .filter(|p| {
                spec.idle_timeout_ms
                    .is_none_or(|timeout| now_ms.saturating_sub(p.emitted_at_ms) <= timeout)
            })
            .map(|p| {
                p.max_ms.map_or(MIN_WATERMARK, |max| {
                    max.saturating_sub(spec.out_of_orderness_ms)
                        .saturating_sub(1)
                })
            })
            .min();
        Some(bound.unwrap_or(MIN_WATERMARK))
    }

    /// The most an operator or sink may send, from its upstream tasks' latest watermarks.
    fn input_bound(&self, upstream: &[String]) -> i64 {
        let lasts = upstream.iter().map(|task| {
            self.tasks
                .get(task)
                .and_then(|m| m.last)
                .unwrap_or(MIN_WATERMARK)
        });
        let any_idle = upstream
            .iter()
            .any(|task| self.tasks.get(task).is_some_and(|m| m.ever_idle));
        let bound = if any_idle { lasts.max() } else { lasts.min() };
        bound.unwrap_or(MIN_WATERMARK)
    }

    fn end_reached(&mut self, topology: &Topology<'_>) {
        for task in topology.tasks.keys() {
            let last = self.tasks.get(task).and_then(|m| m.last);
            if last != Some(END_OF_INPUT) {
                self.violations.push(WatermarkViolation::EndNotReached {
                    task: task.clone(),
                    last,
                });
            }
        }
    }
}
