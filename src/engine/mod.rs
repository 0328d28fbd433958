//! The execution engine: runs a job on the deterministic runtime, one scheduler step at a time.
//!
//! A run is a loop of attempts (`run.rs`): each builds every subtask and the bounded channels
//! between them (`topology.rs`), restores them from the newest usable snapshot (`restore.rs`),
//! and loops (`attempt.rs`): deliver due notifications, let the checkpoint coordinator expire
//! or trigger checkpoints on the virtual clock (`checkpointing.rs` carries out what it asks),
//! then let the seeded scheduler pick one runnable task for one step (`step.rs`: emit a record,
//! process one element of one input channel). A failure ends the attempt; the restart strategy
//! decides whether and when the next one starts.
//!
//! Every storage operation goes through the fault injector, which is also the engine's line to
//! the fault plan; every event is recorded to the trace ([`crate::trace`]) as it happens.

mod attempt;
mod checkpointing;
mod config;
mod outcome;
mod restore;
mod resume;
mod run;
mod step;
mod task;
mod time;
mod topology;
mod unaligned;

pub use config::{CaseLimits, RunConfig, Sabotage};
pub use outcome::{
    FailureRecord, InheritedRestores, JobStatus, PhaseEnd, RefusedReuse, RestoreRecord, RunError,
    RunOutcome, RunStats, UnalignedStats,
};
pub use resume::ResumeState;

use std::path::{Path, PathBuf};

use rand_chacha::ChaCha8Rng;

use crate::checkpoint::coordinator::{Coordinator, Inherited, Layout};
use crate::checkpoint::registry::{self, AuditProblem};
use crate::checkpoint::upload::Uploads;
use crate::checkpoint::CheckpointStorage;
use crate::fault::{FaultAction, FaultPlan, FaultPoint, Injector};
use crate::job::restart::RestartTracker;
use crate::job::sink::ExternalStore;
use crate::job::sink::SinkFactory;
use crate::job::source::SourceFactory;
use crate::job::spec::JobSpec;
use crate::job::user::UserOperator;
use crate::job::{Input, WindowFactory};
use crate::sim::{Clock, RngStreams, Scheduler, StreamName};
use crate::state::StateBackendFactory;
use crate::trace::{AuditContext, Event, Stamped, Trace};
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
///     .map(|i| InputRecord::transaction(&format!("r{i}"), &format!("k{}", i % 4), i))
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
    trace: Recorder<'a>,
    /// Events this run recorded (a resumed one counts the killed process's too), for
    /// [`CaseLimits::events_max`].
    events: u64,
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
    /// Makes each window subtask instead of the built-in window operator.
    window_factory: Option<&'a WindowFactory>,
    /// Where trace events are streamed as they happen (JSON lines), so a process that aborts
    /// leaves its story behind.
    event_log: Option<std::fs::File>,
    /// The first failure to write the event log; the run reports it at its end.
    log_error: Option<std::io::Error>,
    /// Where a real kill leaves the state the next process resumes from; `None`: kills are
    /// simulated.
    real_kills: Option<PathBuf>,
    /// A killed process's state, to resume from.
    resume: Option<ResumeState>,
    /// The upload hand-off of the current attempt (a restarted process starts with an empty
    /// one); uploads run inline, so the simulation stays single-threaded.
    uploads: Uploads,
    final_state_error: Option<String>,
    /// The checkpoint whose completion cancels the attempt (`RunConfig::cancel_after_ms`).
    cancel_at: Option<u64>,
}

/// Where the runtime records its events: a trace of its own, or its caller's, so that the
/// events recorded before a panic survive it.
enum Recorder<'a> {
    Own(Trace),
    Borrowed(&'a mut Trace),
}

impl Recorder<'_> {
    fn push(&mut self, stamped: Stamped) {
        match self {
            Recorder::Own(trace) => trace.push(stamped),
            Recorder::Borrowed(trace) => trace.push(stamped),
        }
    }

    /// The runtime's own trace (empty when it recorded into its caller's).
    fn take(&mut self) -> Trace {
        match self {
            Recorder::Own(trace) => std::mem::take(trace),
            Recorder::Borrowed(_) => Trace::new(),
        }
    }
}

/// Why a run cannot be carried out with this job, input and configuration.
fn validate(job: &JobSpec, input: &Input, config: &RunConfig) -> Result<(), RunError> {
    job.validate()
        .map_err(|e| RunError::Invalid(e.to_string()))?;
    config.restart.validate()?;
    if config.checkpoint.interval_ms == 0 {
        return Err(RunError::Invalid(
            "the checkpoint interval must be positive".into(),
        ));
    }
    if config.checkpoint.num_retained == 0 {
        return Err(RunError::Invalid("num_retained must be at least 1".into()));
    }
    for (index, request) in config.savepoints.iter().enumerate() {
        let valid =
            crate::checkpoint::RelPath::new(&request.name).is_ok_and(|p| !p.as_str().contains('/'));
        let repeated = config.savepoints[..index]
            .iter()
            .any(|r| r.name == request.name);
        if !valid || repeated {
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
    if let Some(problem) = config.checkpoint.problem() {
        return Err(RunError::Invalid(problem));
    }
    if input.partitions().len() != job.source.partition_count() as usize {
        return Err(RunError::Invalid(format!(
            "the input has {} partitions, the source expects {}",
            input.partitions().len(),
            job.source.partition_count()
        )));
    }
    Ok(())
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
        validate(job, input, &config)?;
        let streams = RngStreams::new(config.seed);
        let mut coordinator = Coordinator::new(
            config.checkpoint.clone(),
            config.savepoints.clone(),
            layout(job, backends.name()),
        );
        // What is complete in the root before the job's first attempt, an earlier job took.
        // A process resuming after a real kill loads the coordinator the first process began.
        let complete = registry::checkpoint_dirs(storage)?.into_iter();
        if let Some(newest) = complete.filter(|(_, done)| *done).map(|(id, _)| id).max() {
            coordinator.inherit(Inherited {
                up_to: newest,
                mode: config.restore_mode,
            });
        }
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
            trace: Recorder::Own(Trace::new()),
            events: 0,
            store: ExternalStore::new(),
            last_failure: None,
            stats: RunStats::default(),
            coordinator,
            uploads: Uploads::new(),
            sink_factory: None,
            source_factory: None,
            user_operators: &[],
            window_factory: None,
            event_log: None,
            log_error: None,
            real_kills: None,
            resume: None,
            final_state_error: None,
            cancel_at: None,
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

    /// Builds window stages' operators with `factory` (given the stage's spec and the subtask)
    /// instead of the built-in ones: how a user's own window operator is put under the same
    /// faults and judged by the built-in windows' model.
    pub fn with_windows(mut self, factory: &'a WindowFactory) -> Self {
        self.window_factory = Some(factory);
        self
    }

    /// Streams every trace event to `file` as it happens.
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

    /// Makes kills at scheduler steps real: the process writes the state the next process
    /// resumes from ([`ResumeState`]) to `path` and aborts itself (SIGABRT: no unwinding, no
    /// flushing). Everything else it leaves is what survives a real kill.
    pub fn with_real_kills(mut self, path: &Path) -> Self {
        self.real_kills = Some(path.to_path_buf());
        self
    }

    /// Continues the run a process killed for real left as `state`: the kill is handled as a
    /// simulated one would have been, and the run goes on exactly as it would have.
    pub fn resuming(mut self, state: ResumeState) -> Result<Self, RunError> {
        self.load(&state)?;
        self.resume = Some(state);
        Ok(self)
    }

    /// Runs the job to its end: finished, stopped with a savepoint, or failed for good.
    pub fn run(mut self) -> Result<RunOutcome, RunError> {
        let end = self.execute()?;
        let partitions = self.input.partitions().len();
        Ok(RunOutcome::from_trace(self.trace.take(), end, partitions))
    }

    /// [`Runtime::run`], recording into `trace`: whatever happens to the runtime (a panic
    /// unwinding it), the events it recorded stay with the caller.
    pub fn run_into(mut self, trace: &'a mut Trace) -> Result<PhaseEnd, RunError> {
        self.trace = Recorder::Borrowed(trace);
        self.execute()
    }

    /// Records `event` at the current step and time (and streams it, if asked), after the
    /// checkpoint files stored and the storage faults fired since the last event.
    fn record(&mut self, event: Event) {
        self.record_storage_events();
        self.stamp(event);
    }

    /// Records the storage faults fired and the checkpoint files stored since the last event.
    fn record_storage_events(&mut self) {
        for action in self.storage.take_fired() {
            self.stamp(fired(&action));
        }
        for path in self.storage.take_written() {
            self.stamp(Event::Stored {
                path: path.to_string(),
            });
        }
    }

    fn stamp(&mut self, event: Event) {
        let stamped = Stamped {
            step: self.scheduler.steps(),
            time_ms: self.clock.now_ms(),
            event,
        };
        if let Some(log) = &mut self.event_log {
            if let Err(error) = log_line(log, &stamped) {
                // The log is the harness's, not a fault under test: stop writing it, and
                // fail the run with the error once it ends.
                self.event_log = None;
                self.log_error.get_or_insert(error);
            }
        }
        self.trace.push(stamped);
        self.events += 1;
    }

    /// The fault firing at `point`, if one does: recorded as fired, and handed back to act on.
    fn fault(&mut self, point: &FaultPoint<'_>) -> Option<FaultAction> {
        let action = self.storage.fault_at(point)?;
        self.record(fired(&action));
        Some(action)
    }

    /// The checkpoints and savepoints in flight, the shared files their acknowledged
    /// snapshots name, and the checkpoints left unclaimed.
    fn running_job(&self) -> registry::RunningJob {
        let mut in_flight = registry::RunningJob {
            unclaimed_up_to: self.coordinator.unclaimed_up_to(),
            ..registry::RunningJob::default()
        };
        for pending in self.coordinator.pending() {
            match &pending.savepoint {
                Some(request) => in_flight.savepoints.insert(request.name.clone()),
                None => in_flight.checkpoints.insert(pending.id),
            };
            // Only the uploads of checkpoints in flight: a retained checkpoint's shared files
            // count through its `_metadata`, so losing that still shows its files as orphans.
            let handles = pending.acknowledged().filter_map(|ack| ack.keyed.as_ref());
            for handle in handles {
                let shared = handle.shared_files().into_iter();
                in_flight
                    .shared
                    .extend(shared.map(|file| file.path.to_string()));
            }
        }
        in_flight
    }

    /// Audits checkpoint storage (when the config asks) and records every problem found; the
    /// oracle tells those a fault explains from the rest.
    pub(super) fn audit_storage(&mut self, context: AuditContext) {
        if !self.config.audit_storage {
            return;
        }
        let problems = match registry::audit_running(&self.storage, &self.running_job()) {
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

/// The event of a fault that fired.
fn fired(action: &FaultAction) -> Event {
    Event::FaultFired {
        fault: action.fault,
        site: action.site,
    }
}

/// Writes one event as a JSON line and pushes it to the file at once: the process may abort
/// next.
fn log_line(log: &mut std::fs::File, stamped: &Stamped) -> std::io::Result<()> {
    use std::io::Write;
    let mut line = serde_json::to_string(stamped)?;
    line.push('\n');
    log.write_all(line.as_bytes())
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
