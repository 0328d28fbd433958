//! The execution engine: runs a job on the deterministic runtime, one scheduler step at a time.
//!
//! An attempt builds every subtask and the bounded channels between them, restores them from the
//! latest completed checkpoint, and loops: deliver due notifications, expire or trigger
//! checkpoints on the virtual clock, then let the seeded scheduler pick one runnable task for
//! one step (emit a record, process one element of one input channel). A failure ends the
//! attempt; the restart strategy decides whether and when the next one starts.
//!
//! The checkpoint coordinator lives here too: barriers are injected at the sources, aligned at
//! tasks with several inputs (exactly-once) or only counted (at-least-once), each task snapshots
//! and acknowledges, and once every task has acknowledged, `_metadata` is written, older
//! checkpoints beyond `num_retained` are subsumed and completion notifications are queued.

mod checkpointing;
mod config;
mod outcome;
mod restore;
mod step;
mod task;
mod topology;

pub use config::{RunConfig, Sabotage};
pub use outcome::{
    FailureRecord, JobStatus, PhaseEnd, RefusedReuse, RestoreRecord, RunError, RunOutcome, RunStats,
};

use std::path::{Path, PathBuf};

use rand_chacha::ChaCha8Rng;

use crate::checkpoint::coordinator::{Coordinator, Layout};
use crate::checkpoint::registry::{self, AuditProblem};
use crate::checkpoint::upload::Uploads;
use crate::checkpoint::CheckpointStorage;
use crate::fault::{FaultPlan, FaultPoint, Injector};
use crate::job::restart::{RestartDecision, RestartTracker};
use crate::job::sink::ExternalStore;
use crate::job::sink::SinkFactory;
use crate::job::source::SourceFactory;
use crate::job::spec::JobSpec;
use crate::job::user::UserOperator;
use crate::job::{Input, Positions};
use crate::sim::{Clock, RngStreams, Scheduler, StepLimit, StreamName};
use crate::state::{StateBackendFactory, StateView};
use crate::trace::{AuditContext, Event, FailureCause, JobStarted, Stamped, Trace};
use task::*;

/// Runs one job on one input with one configuration, backend, storage and fault plan.
///
/// ```
/// use faultline::checkpoint::{Durability, FsCheckpointStorage};
/// use faultline::fault::FaultSchedule;
/// use faultline::checkpoint::CheckpointConfig;
/// use faultline::engine::{JobStatus, RunConfig, Runtime};
/// use faultline::job::{Input, InputRecord, JobSpec, RestartStrategy};
/// use faultline::state::MemoryBackendFactory;
///
/// let job: JobSpec = toml::from_str(
///     r#"
/// name = "sum"
/// source = { parallelism = 1 }
/// sink = { kind = "two-phase-commit" }
/// stages = [{ name = "sum", op = { kind = "sum" }, parallelism = 2 }]
/// "#,
/// )?;
/// let records: Vec<InputRecord> = (0..20)
///     .map(|i| InputRecord { id: format!("r{i}"), key: format!("k{}", i % 4), value: i })
///     .collect();
/// let input = Input::partitioned(&records, 1);
/// let config = RunConfig::new(
///     7,
///     CheckpointConfig::every(5),
///     RestartStrategy::FixedDelay { attempts: 3, delay_ms: 10 },
/// );
/// let dir = tempfile::tempdir()?;
/// let mut storage = FsCheckpointStorage::new(dir.path().join("checkpoints"), Durability::PageCache)?;
/// let mut faults = FaultSchedule::new(Vec::new());
/// let outcome = Runtime::new(
///     &job,
///     &input,
///     config,
///     &MemoryBackendFactory,
///     &mut storage,
///     &mut faults,
///     &dir.path().join("work"),
/// )?
/// .run()?;
/// assert_eq!(outcome.status, JobStatus::Finished);
/// assert_eq!(outcome.store.visible().len(), 20, "every record committed once");
/// assert!(outcome.stats.checkpoints_completed > 0);
/// // The verdict of the oracle: state and output equal the model's.
/// let mode = faultline::checkpoint::CheckpointingMode::ExactlyOnce;
/// let verdict = faultline::check::check_run(&job, &input, mode, 7, &outcome);
/// assert!(verdict.passed(), "{verdict}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Runtime<'a> {
    job: &'a JobSpec,
    input: &'a Input,
    config: RunConfig,
    backends: &'a dyn StateBackendFactory,
    /// Checkpoint storage, through the fault injector, which is also the engine's line to the
    /// fault plan.
    storage: Injector<'a>,
    work_dir: PathBuf,
    clock: Clock,
    scheduler: Scheduler,
    jitter: ChaCha8Rng,
    trace: Trace,
    restart: RestartTracker,
    store: ExternalStore,
    /// The failure that ended the last attempt, for the message when the run gives up.
    last_failure: Option<Failure>,
    stats: RunStats,
    /// Triggers, completes, retains and aborts checkpoints; the engine carries out what it asks.
    coordinator: Coordinator,
    /// Makes each sink subtask instead of the job's built-in sink.
    sink_factory: Option<&'a SinkFactory>,
    /// Makes each source subtask's reader instead of the built-in one.
    source_factory: Option<&'a SourceFactory>,
    /// User operators jobs may name.
    user_operators: &'a [UserOperator],
    /// Where trace events and restores are streamed as they happen (JSON lines), so a process
    /// that aborts leaves its story behind.
    event_log: Option<std::fs::File>,
    /// The upload hand-off of the current attempt (a restarted process starts with an empty
    /// one); uploads run inline, so the simulation stays single-threaded.
    uploads: Uploads,
    final_state_error: Option<String>,
}

impl<'a> Runtime<'a> {
    /// A runtime for one run. `work_dir` receives the backends' working directories.
    pub fn new(
        job: &'a JobSpec,
        input: &'a Input,
        config: RunConfig,
        backends: &'a dyn StateBackendFactory,
        storage: &'a mut dyn CheckpointStorage,
        faults: &'a mut dyn FaultPlan,
        work_dir: &Path,
    ) -> Result<Self, RunError> {
        job.validate()
            .map_err(|e| RunError::Invalid(e.to_string()))?;
        config.restart.validate().map_err(RunError::Invalid)?;
        if config.checkpoint.interval_ms == 0 {
            return Err(RunError::Invalid(
                "the checkpoint interval must be positive".into(),
            ));
        }
        if config.checkpoint.num_retained == 0 {
            return Err(RunError::Invalid("num_retained must be at least 1".into()));
        }
        for (index, request) in config.savepoints.iter().enumerate() {
            let valid = crate::checkpoint::RelPath::new(&request.name)
                .is_ok_and(|p| !p.as_str().contains('/'));
            if !valid
                || config.savepoints[..index]
                    .iter()
                    .any(|r| r.name == request.name)
            {
                return Err(RunError::Invalid(format!(
                    "savepoint name {:?} is not a unique plain name",
                    request.name
                )));
            }
        }
        if config.channel_capacity == 0 {
            return Err(RunError::Invalid(
                "channel capacity must be at least 1".into(),
            ));
        }
        if input.partitions().len() != job.source.partition_count() as usize {
            return Err(RunError::Invalid(format!(
                "the input has {} partitions, the source expects {}",
                input.partitions().len(),
                job.source.partition_count()
            )));
        }
        let streams = RngStreams::new(config.seed);
        let coordinator = Coordinator::new(
            config.checkpoint.clone(),
            config.savepoints.clone(),
            layout(job, backends.name()),
            1,
        );
        Ok(Self {
            job,
            input,
            scheduler: Scheduler::new(
                streams.stream(StreamName::Scheduler),
                config.seed,
                config.steps_max,
            ),
            jitter: streams.stream(StreamName::RestartJitter),
            restart: RestartTracker::new(config.restart.clone()),
            config,
            backends,
            storage: Injector::new(storage, faults),
            work_dir: work_dir.to_path_buf(),
            clock: Clock::new(),
            trace: Trace::new(),
            store: ExternalStore::new(),
            last_failure: None,
            stats: RunStats::default(),
            coordinator,
            uploads: Uploads::new(),
            sink_factory: None,
            source_factory: None,
            user_operators: &[],
            event_log: None,
            final_state_error: None,
        })
    }

    /// Uses sinks made by `factory` (given the sink subtask) instead of the built-in sink the job
    /// names: how a user's own sink is put under the same faults and oracle.
    pub fn with_sink(mut self, factory: &'a SinkFactory) -> Self {
        self.sink_factory = Some(factory);
        self
    }

    /// Uses readers made by `factory` (given the source subtask) instead of the built-in one: how
    /// a user's own source is put under the same faults and oracle.
    pub fn with_source(mut self, factory: &'a SourceFactory) -> Self {
        self.source_factory = Some(factory);
        self
    }

    /// Registers user operators, which jobs name with `OperatorSpec::User`.
    pub fn with_operators(mut self, operators: &'a [UserOperator]) -> Self {
        self.user_operators = operators;
        self
    }

    /// Streams every trace event and restore to `file` as it happens.
    pub fn with_event_log(mut self, file: std::fs::File) -> Self {
        self.event_log = Some(file);
        self
    }

    /// Runs against an existing external system (what an earlier run left in it), as a job
    /// restored from a savepoint writes to the same Kafka topic or database as before.
    pub fn with_store(mut self, store: ExternalStore) -> Self {
        self.store = store;
        self
    }

    /// Records `event` at the current step and time (and streams it, if asked), after the
    /// checkpoint files stored since the last event.
    fn record(&mut self, event: Event) {
        for path in self.storage.take_written() {
            self.stamp(Event::Stored {
                path: path.to_string(),
            });
        }
        self.stamp(event);
    }

    fn stamp(&mut self, event: Event) {
        let stamped = Stamped {
            step: self.scheduler.steps(),
            time_ms: self.clock.now_ms(),
            event,
        };
        if let Some(log) = &mut self.event_log {
            log_line(log, &stamped);
        }
        self.trace.push(stamped);
    }

    /// Runs the job to its end: finished, or failed for good.
    pub fn run(mut self) -> Result<RunOutcome, RunError> {
        let job = self.job;
        // A run continuing a case (after a rescale or a real kill) starts where it left off.
        self.clock.advance_to_ms(self.config.start_ms);
        self.record(Event::JobStarted(JobStarted {
            job: job.name.clone(),
            seed: self.config.seed,
            backend: self.backends.name().to_string(),
            stages: job
                .stage_names()
                .into_iter()
                .zip(job.stage_parallelisms())
                .collect(),
            interval_ms: self.config.checkpoint.interval_ms,
            mode: self.config.checkpoint.mode,
            restart: self.config.restart.clone(),
        }));
        // Ids continue after any checkpoint already in storage, so a run on a used root never
        // overwrites one.
        self.coordinator
            .ids_above(registry::highest_snapshot_id(&self.storage));
        let mut attempt = self.config.first_attempt;
        let mut end_positions = Positions::start(self.input.partitions().len());
        let (status, final_state) = loop {
            self.stats.attempts = attempt + 1;
            if attempt > 0 {
                for corruption in self.storage.restart(attempt) {
                    self.record(Event::Corrupted(corruption));
                }
            }
            // Every attempt consumes a step, so the step bound also bounds a restart loop that
            // never reaches a step (a strategy without a limit restoring a corrupt checkpoint).
            if let Err(limit) = self.scheduler.tick() {
                break self.out_of_steps(limit);
            }
            let end = match self.start_attempt(attempt) {
                Ok(mut execution) => {
                    let end = match self.run_attempt(&mut execution) {
                        Ok(end) => end,
                        Err(RunError::StepLimit(limit)) => break self.out_of_steps(limit),
                        Err(other) => return Err(other),
                    };
                    // A finished job owes the whole input, whatever a user's reader read.
                    end_positions = match end {
                        AttemptEnd::Finished => self.input.end_positions(),
                        _ => source_positions(&execution, self.input.partitions().len()),
                    };
                    let status = match &end {
                        AttemptEnd::Finished => Some(JobStatus::Finished),
                        AttemptEnd::Stopped(savepoint) => Some(JobStatus::Stopped {
                            savepoint: savepoint.clone(),
                        }),
                        AttemptEnd::Failed(_) => None,
                    };
                    if let Some(status) = status {
                        match self.dump_state(&execution) {
                            Ok(state) => break (status, Some(state)),
                            // A backend holding cells it should not (a key in two subtasks):
                            // the oracle's to report, with the run kept.
                            Err(failure) => {
                                let reason = format!("{}: {}", failure.task, failure.cause);
                                self.record(Event::FinalStateUnreadable {
                                    reason: reason.clone(),
                                });
                                self.final_state_error = Some(reason);
                                break (status, None);
                            }
                        }
                    }
                    end
                }
                Err(failure) => AttemptEnd::Failed(failure),
            };
            let AttemptEnd::Failed(failure) = end else {
                unreachable!("finished and stopped break above")
            };
            self.record(Event::Failure {
                attempt,
                task: failure.task.clone(),
                cause: failure.cause.clone(),
            });
            if failure.killed() {
                let lost = self.storage.kill();
                if lost.writes > 0 {
                    self.record(Event::WritesLost {
                        writes: lost.writes,
                        lost: lost.lost,
                        torn: lost.torn,
                    });
                }
            }
            self.last_failure = Some(failure.clone());
            match self
                .restart
                .on_failure(self.clock.now_ms(), &mut self.jitter)
            {
                RestartDecision::GiveUp { reason } => {
                    self.record(Event::JobFailed {
                        reason: reason.clone(),
                    });
                    break (
                        JobStatus::Failed {
                            reason: format!(
                                "{} (last failure: {}: {})",
                                reason, failure.task, failure.cause
                            ),
                        },
                        None,
                    );
                }
                RestartDecision::Restart { delay_ms, restart } => {
                    self.record(Event::Restarting {
                        restart,
                        delay_ms,
                        strategy: self.restart.strategy().clone(),
                    });
                    self.clock.advance_ms(delay_ms);
                    attempt += 1;
                }
            }
        };
        match &status {
            JobStatus::Finished => self.record(Event::JobFinished {
                visible: self.store.visible().len(),
            }),
            JobStatus::Stopped { savepoint } => self.record(Event::JobStopped {
                savepoint: savepoint.clone(),
            }),
            JobStatus::Failed { .. } => {}
        }
        self.stats.steps = self.scheduler.steps();
        self.stats.time_ms = self.clock.now_ms();
        let end = PhaseEnd {
            status,
            final_state,
            final_state_error: self.final_state_error,
            store: self.store,
            stats: self.stats,
            retained_checkpoints: self.coordinator.retained(),
            savepoints: self.coordinator.savepoints_taken().to_vec(),
            end_positions,
        };
        Ok(RunOutcome::from_trace(
            self.trace,
            end,
            self.input.partitions().len(),
        ))
    }

    /// Builds every task and channel of an attempt, restoring from the latest checkpoint on a
    /// restart.
    fn start_attempt(&mut self, attempt: u32) -> Result<Execution, Failure> {
        let target = if attempt == 0 && self.config.initial_snapshot.is_none() {
            RestoreTarget::Fresh
        } else {
            RestoreTarget::Latest
        };
        let mut execution = self.new_execution(attempt, target)?;
        for task in &mut execution.tasks {
            if let Body::Operator(op) = &mut task.body {
                op.op.open(backend_mut(&mut op.backend)).map_err(|e| {
                    Failure::new(
                        &task.name,
                        FailureCause::Open {
                            error: e.to_string(),
                        },
                    )
                })?;
            }
        }
        Ok(execution)
    }

    /// A new attempt's tasks and channels, restored from `target`. A new attempt is a new
    /// process in Flink's sense: nothing of the old upload hand-off or pending checkpoints
    /// survives.
    fn new_execution(&mut self, attempt: u32, target: RestoreTarget) -> Result<Execution, Failure> {
        self.uploads = Uploads::new();
        let mut execution = self.build_execution(attempt)?;
        self.coordinator.start_attempt(self.clock.now_ms());
        if target != RestoreTarget::Fresh {
            self.restore(&mut execution, target)?;
        }
        Ok(execution)
    }

    /// Restores checkpoint `checkpoint_id` into freshly built tasks and returns the restored
    /// source positions and keyed state, without running anything. Sinks are not restored (that
    /// would commit transactions in the external system). For tests and `inspect`.
    pub fn restore_for_inspection(mut self, checkpoint_id: u64) -> Result<RestoreRecord, String> {
        self.new_execution(1, RestoreTarget::Inspect(checkpoint_id))
            .map_err(|f| format!("{}: {}", f.task, f.cause))?;
        let trace = std::mem::take(&mut self.trace);
        RunOutcome::restores_in(&trace)
            .pop()
            .ok_or_else(|| "nothing was restored".to_string())
    }

    fn sources_exhausted(&self, execution: &Execution) -> bool {
        execution.tasks.iter().all(|task| match &task.body {
            Body::Source(SourceTask {
                reader: Some(reader),
                ..
            }) => reader.finished,
            Body::Source(source) => source
                .partitions
                .iter()
                .all(|p| source.positions[p] >= self.input.partitions()[*p as usize].len() as u64),
            _ => true,
        })
    }

    fn runnable(&self, execution: &Execution) -> Vec<usize> {
        let capacity = self.config.channel_capacity;
        // A stop-with-savepoint's barrier is out: sources emit nothing more.
        let stopping = self.coordinator.stopping();
        let mut runnable = Vec::new();
        for (index, task) in execution.tasks.iter().enumerate() {
            let outputs_free = task
                .outputs
                .channels
                .iter()
                .all(|c| execution.channels[*c].queue.len() < capacity);
            let ready = match &task.body {
                Body::Source(SourceTask {
                    reader: Some(reader),
                    ..
                }) => !stopping && outputs_free && !reader.finished,
                Body::Source(source) => {
                    !stopping
                        && outputs_free
                        && source.partitions.iter().any(|p| {
                            source.positions[p] < self.input.partitions()[*p as usize].len() as u64
                        })
                }
                _ => {
                    outputs_free
                        && task.inputs.iter().any(|c| {
                            !execution.channels[*c].blocked
                                && !execution.channels[*c].queue.is_empty()
                        })
                }
            };
            if ready {
                runnable.push(index);
            }
        }
        runnable
    }

    fn run_attempt(&mut self, execution: &mut Execution) -> Result<AttemptEnd, RunError> {
        loop {
            // A machine crash in any storage operation ends the attempt as a kill.
            if let Some(crash) = self.storage.crash() {
                return Ok(AttemptEnd::Failed(Failure::from_action(
                    "process",
                    crash.clone(),
                )));
            }
            let now = self.clock.now_ms();
            let (due, later): (Vec<_>, Vec<_>) = execution
                .delayed
                .drain(..)
                .partition(|(at, _, _)| *at <= now);
            execution.delayed = later;
            execution.notifications.extend(
                due.into_iter()
                    .map(|(_, checkpoint, task)| (checkpoint, task)),
            );
            if let Err(failure) = self.deliver_notifications(execution) {
                return Ok(AttemptEnd::Failed(failure));
            }
            if let Some((savepoint, id)) = self.coordinator.stopped().cloned() {
                if execution.notifications.is_empty() && execution.delayed.is_empty() {
                    if sinks_settled(execution) {
                        return Ok(AttemptEnd::Stopped(savepoint));
                    }
                    // As when finishing: a lost notification is sent again until sinks commit.
                    self.record(Event::NotifyAgain { checkpoint: id });
                    notify_again(execution, id);
                    continue;
                }
            }
            if let Err(failure) = self.coordinate(execution) {
                return Ok(AttemptEnd::Failed(failure));
            }
            let runnable = self.runnable(execution);
            if runnable.is_empty() {
                let drained = execution.channels.iter().all(|c| c.queue.is_empty());
                if !drained {
                    panic!(
                        "deadlock: no runnable task but records in flight (seed {})",
                        self.config.seed
                    );
                }
                assert!(
                    self.coordinator.stopping() || self.sources_exhausted(execution),
                    "sources idle with input left"
                );
                if let Some(due) = execution.delayed.iter().map(|(at, _, _)| *at).min() {
                    // Nothing runs until a delayed notification arrives.
                    self.clock.advance_to_ms(due);
                    continue;
                }
                if self.coordinator.final_completed() && execution.notifications.is_empty() {
                    if !sinks_settled(execution) {
                        // A lost notification left transactions pending: notifications are best
                        // effort, so the coordinator sends the latest completion again.
                        let latest = self
                            .coordinator
                            .latest_retained()
                            .expect("a final checkpoint completed");
                        self.record(Event::NotifyAgain { checkpoint: latest });
                        notify_again(execution, latest);
                        continue;
                    }
                    return Ok(AttemptEnd::Finished);
                }
                // Everything is drained: the final checkpoint runs now, not at the interval.
                if self.coordinator.pending().next().is_none() && !self.coordinator.stopping() {
                    self.coordinator.trigger_now(self.clock.now_ms());
                    continue;
                }
                panic!(
                    "checkpoint pending with nothing in flight (seed {})",
                    self.config.seed
                );
            }
            let step = self.scheduler.tick()?;
            if let Some(action) = self.storage.fault_at(&FaultPoint::Step { step }) {
                return Ok(AttemptEnd::Failed(Failure::from_action("process", action)));
            }
            let task = self
                .scheduler
                .pick(&runnable)
                .expect("runnable is not empty");
            if let Err(failure) = self.step_task(execution, task) {
                return Ok(AttemptEnd::Failed(failure));
            }
        }
    }
}

/// Where every source partition of an attempt stands.
fn source_positions(execution: &Execution, partitions: usize) -> Positions {
    let mut positions = Positions::start(partitions);
    for task in &execution.tasks {
        if let Body::Source(source) = &task.body {
            for (partition, offset) in &source.positions {
                positions.0[*partition as usize] = *offset;
            }
        }
    }
    positions
}

/// Whether no sink holds a pre-committed transaction waiting for a notification.
fn sinks_settled(execution: &Execution) -> bool {
    execution.tasks.iter().all(|task| match &task.body {
        Body::Sink(sink) => sink.pending_transactions() == 0,
        _ => true,
    })
}

impl Runtime<'_> {
    /// The step bound ends the run: a liveness failure for the oracle to report, with the
    /// trace so far, rather than an error that would lose the case.
    fn out_of_steps(&mut self, limit: StepLimit) -> (JobStatus, Option<StateView>) {
        self.record(Event::JobFailed {
            reason: limit.to_string(),
        });
        (
            JobStatus::Failed {
                reason: format!(
                    "{limit} (last failure: {})",
                    self.last_failure
                        .as_ref()
                        .map_or("none".to_string(), |f| format!("{}: {}", f.task, f.cause))
                ),
            },
            None,
        )
    }

    /// Audits checkpoint storage (when the config asks) and records what is wrong, except files
    /// a fault corrupted on purpose.
    /// Audits checkpoint storage (when the config asks) and records every problem found; the
    /// oracle tells those a fault explains from the rest.
    pub(super) fn audit_storage(&mut self, context: AuditContext) {
        if !self.config.audit_storage {
            return;
        }
        let problems = match registry::audit(&self.storage) {
            Ok(report) => report.problems,
            Err(error) => vec![AuditProblem::Unreadable {
                snapshot: ".".into(),
                error: error.to_string(),
            }],
        };
        for problem in problems {
            self.record(Event::AuditFailed { context, problem });
        }
    }
}

/// Writes one event as a JSON line and pushes it to the file at once: the process may abort
/// next.
fn log_line(log: &mut std::fs::File, stamped: &Stamped) {
    use std::io::Write;
    let mut line = serde_json::to_string(stamped).expect("an event always serializes");
    line.push('\n');
    log.write_all(line.as_bytes())
        .expect("the case's event log is writable");
}

/// Queues the completion of `checkpoint` for every task again: notifications are best effort,
/// and one that was lost leaves sink transactions pending.
fn notify_again(execution: &mut Execution, checkpoint: u64) {
    execution
        .notifications
        .extend((0..execution.tasks.len()).map(|task| (checkpoint, task)));
}

/// The job as the coordinator assembles its metadata: its stages, fingerprint and backend.
fn layout(job: &JobSpec, backend: &str) -> Layout {
    Layout {
        stages: job
            .stage_names()
            .into_iter()
            .zip(job.stage_parallelisms())
            .collect(),
        job_fingerprint: job.fingerprint(),
        max_parallelism: job.max_parallelism,
        backend: backend.to_string(),
    }
}
