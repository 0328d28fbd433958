//! The oracle: compares a run with the reference model and reports typed violations that name
//! the seed, where it happened (checkpoint, attempt, key) and both values. It reads outcomes and
//! never mutates anything.
//!
//! Properties:
//! 1. **Restored state**: after every restore, keyed state equals the model evaluated at the
//!    restored checkpoint's source positions — so "restored from a checkpoint" is told apart
//!    from "recomputed from scratch".
//! 2. **Final state**: when the job finishes, keyed state equals the model over the whole input.
//! 3. **Output**: an exactly-once sink in exactly-once mode makes visible exactly the model's
//!    output (nothing lost, nothing twice). Otherwise (a print sink, or at-least-once mode)
//!    nothing is lost and a record appears more than once only if a restore rewound its
//!    partition to or before it — a replay.
//! 4. **Liveness**: the job finishes.
//!
//! In at-least-once mode with fan-in, a snapshot may hold records after its barrier, so restored
//! state and output values legitimately differ from the model over the input. Such a case is
//! judged by its lineage instead (`lineage.rs`): every stage against the records it actually
//! received, with the same properties. Only when the lineage cannot be known (a restore from a
//! snapshot another run took) are state and output values left unchecked (the verdict says
//! so); loss and replay-only duplication still are.
//!
//! ```
//! use faultline::check::Violation;
//!
//! // Every violation names the property it breaks, which failure reports lead with.
//! let violation = Violation::JobFailed { reason: "40 restarts used".into() };
//! assert_eq!(violation.property(), faultline::check::Property::Liveness);
//! assert!(violation.to_string().contains("40 restarts used"));
//! ```

mod lineage;
mod watermark;
mod window;

pub use watermark::WatermarkViolation;
pub use window::{window_ledger, WindowAccount, WindowLedger, WindowViolation};

use std::collections::BTreeMap;
use std::fmt;

use crate::checkpoint::registry::AuditProblem;
use crate::checkpoint::CheckpointingMode;
use crate::engine::{JobStatus, RunOutcome};
use crate::job::user::UserOperator;
use crate::job::Datum;
use crate::job::{Input, JobSpec, Record, SinkKind};
use crate::model;
use crate::state::timers::Timer;
use crate::state::{StateAddr, StateView};
use crate::trace::{AuditContext, Emission, Event, FailureCause, Resource, RestoreFailure};

/// A broken property.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// Keyed state right after a restore differs from the model at the restored positions.
    RestoredState {
        /// The attempt that restored.
        attempt: u32,
        /// The checkpoint restored (`None`: no checkpoint, restart from scratch).
        checkpoint_id: Option<u64>,
        /// Where the values differ.
        addr: StateAddr,
        /// The model's value.
        expected: Option<Datum>,
        /// The engine's value.
        actual: Option<Datum>,
    },
    /// Keyed state at the end differs from the model over the whole input.
    FinalState {
        /// Where the values differ.
        addr: StateAddr,
        /// The model's value.
        expected: Option<Datum>,
        /// The engine's value.
        actual: Option<Datum>,
    },
    /// A record of the model's output never became visible.
    OutputLost {
        /// The record.
        record: Record,
    },
    /// A record became visible more often than allowed.
    OutputDuplicated {
        /// The record.
        record: Record,
        /// How often it is visible.
        count: usize,
        /// How often it may be (1, or 1 + the restores that replayed it).
        allowed: usize,
    },
    /// A visible record the model does not produce (or with another value).
    OutputUnexpected {
        /// The record.
        record: Record,
        /// The model's record with the same id, if any.
        expected: Option<Record>,
    },
    /// At-least-once lineage: an operator emitted other values than its model does for the
    /// records the operator received.
    EmissionUnexpected {
        /// The task.
        task: String,
        /// The record it processed.
        record: Record,
        /// What the model emits.
        expected: Vec<Emission>,
        /// What it emitted.
        actual: Vec<Emission>,
    },
    /// Lineage: an operator task fired a timer its model does not hold (never registered,
    /// deleted, or fired already).
    TimerUnexpected {
        /// The task.
        task: String,
        /// The timer, with its key.
        timer: Timer,
    },
    /// Lineage: the job finished with an event-time timer its model holds unfired (the end of
    /// input fires every one): the engine lost it.
    TimerNeverFired {
        /// The stage.
        stage: String,
        /// The timer, with its key.
        timer: Timer,
    },
    /// At-least-once lineage: a task received a record twice within one attempt (only a
    /// restore may replay a record).
    ReceivedTwice {
        /// The task.
        task: String,
        /// The record.
        record: Record,
    },
    /// At-least-once lineage: a stage received a record other than the one the stage before
    /// it emitted under that id (or the input's record, for the first stage).
    ReceivedUnexpected {
        /// The task.
        task: String,
        /// The record received.
        record: Record,
        /// What was sent under its id, if anything.
        sent: Option<Record>,
    },
    /// At-least-once lineage: the first stage received a key's record after a later one of the
    /// same key within one attempt.
    ReceivedOutOfOrder {
        /// The task.
        task: String,
        /// The record.
        record: Record,
        /// The offset it received before.
        after: u64,
    },
    /// At-least-once lineage: a record a stage was owed is missing from the lineage of the
    /// job's final state: it was lost on the way.
    NotReceived {
        /// The stage.
        stage: String,
        /// The record.
        record: Record,
    },
    /// The model emits two records with one id over the input. The oracle tells records apart
    /// by id, so a job's output ids must be unique (a record's id, or an id derived from it,
    /// as `tx5.1`): a mistake in the model or the operator it describes.
    OutputIdReused {
        /// The id.
        id: String,
        /// How many of the model's records carry it.
        count: usize,
    },
    /// A stage's model failed on a record (a user's model returned an error, or a record is
    /// not of the type the stage reads): the model cannot say what is right, so the case
    /// cannot be judged there.
    ModelFailed {
        /// The stage.
        stage: String,
        /// The record's id.
        record: String,
        /// What failed.
        reason: String,
    },
    /// The job did not finish.
    JobFailed {
        /// Why.
        reason: String,
    },
    /// A user's output reader could not read what the sink left in its external system.
    OutputUnreadable {
        /// The reader's error.
        reason: String,
    },
    /// The keyed state could not be read at the end: a backend holds cells no consistent
    /// state has (a key in two subtasks).
    StateUnreadable {
        /// Why.
        reason: String,
    },
    /// The engine's upload hand-off refused a snapshot that reused a shared file no uploaded or
    /// retained checkpoint holds: the backend reused a file of a checkpoint that was never
    /// confirmed (or is gone). Without the refusal the checkpoint would name a file that may be
    /// deleted; with it, every such checkpoint fails.
    ReuseRefused {
        /// The checkpoint that failed.
        checkpoint: u64,
        /// The task whose snapshot reused the file.
        task: String,
        /// The hand-off's refusal, naming the file.
        error: String,
    },
    /// Records left in a transaction that was never committed nor aborted by the end of a
    /// finished job: a sink that did not abort (or commit) what it began.
    TransactionStranded {
        /// The transaction.
        txn: String,
        /// Records in it.
        records: usize,
    },
    /// A completion notification failed a task. Notifications may come late, twice or never
    /// (a later one covers earlier ones), so receiving one must never fail: every such failure
    /// is a needless failover, and a restart loop waiting to happen.
    NotificationFailed {
        /// The task.
        task: String,
        /// Its error.
        reason: String,
    },
    /// The storage audit found a problem the faults do not explain.
    Storage {
        /// When the audit ran.
        context: AuditContext,
        /// What it found.
        problem: AuditProblem,
    },
    /// A checkpoint was restored after one of its files had been corrupted: wrong state may
    /// have been restored silently.
    CorruptRestored {
        /// The checkpoint.
        checkpoint: u64,
        /// The corrupted file.
        path: String,
    },
    /// A panic inside the case: an engine invariant that broke (an assertion fired), or a
    /// user's operator, sink, backend or model that panicked where nothing supervises it.
    Assertion {
        /// The panic's message.
        message: String,
        /// Where it was raised.
        location: Option<String>,
    },
    /// The run grew past a bound of its case (events, records in flight, open transactions)
    /// and was ended there.
    Resource {
        /// What grew.
        resource: Resource,
        /// The bound.
        limit: u64,
    },
    /// A task's event-time watermark broke a rule (`check::watermark`).
    Watermark(WatermarkViolation),
    /// A window stage's results do not account for its input (`check::window`).
    Window(WindowViolation),
}

fn show_all(values: &[Emission]) -> String {
    let shown: Vec<String> = values.iter().map(ToString::to_string).collect();
    format!("[{}]", shown.join(", "))
}

fn show(value: &Option<Datum>) -> String {
    value
        .as_ref()
        .map_or_else(|| "absent".to_string(), ToString::to_string)
}

impl fmt::Display for Violation {
    // One arm per violation, exhaustive, each the sentence a failure report leads with.
    #[allow(clippy::too_many_lines)]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::RestoredState {
                attempt,
                checkpoint_id,
                addr,
                expected,
                actual,
            } => {
                let from = checkpoint_id
                    .map_or_else(|| "no checkpoint".to_string(), |id| format!("chk-{id}"));
                write!(f, "restored state: after restore from {from} (attempt {attempt}), {addr} is {}, the model says {}", show(actual), show(expected))
            }
            Violation::FinalState {
                addr,
                expected,
                actual,
            } => {
                write!(
                    f,
                    "final state: {addr} is {}, the model says {}",
                    show(actual),
                    show(expected)
                )
            }
            Violation::OutputLost { record } => {
                write!(f, "output lost: {record} never became visible")
            }
            Violation::OutputDuplicated {
                record,
                count,
                allowed,
            } => {
                write!(
                    f,
                    "output duplicated: {record} visible {count} times, at most {allowed} allowed"
                )
            }
            Violation::OutputUnexpected { record, expected } => match expected {
                Some(expected) => write!(
                    f,
                    "output wrong: {record} visible, the model says {expected}"
                ),
                None => write!(
                    f,
                    "output unexpected: {record} is not in the model's output"
                ),
            },
            Violation::EmissionUnexpected {
                task,
                record,
                expected,
                actual,
            } => write!(
                f,
                "emission wrong: {task} emitted {} for {record}, its model emits {} for the records it received",
                show_all(actual),
                show_all(expected),
            ),
            Violation::ReceivedUnexpected { task, record, sent } => match sent {
                Some(sent) => write!(f, "received wrong: {task} received {record}, the stage before sent {sent}"),
                None => write!(f, "received unexpected: {task} received {record}, which nothing before it sent"),
            },
            Violation::ReceivedTwice { task, record } => {
                write!(f, "received twice: {task} received {record} twice in one attempt")
            }
            Violation::TimerUnexpected { task, timer } => write!(
                f,
                "timer unexpected: {task} fired {} at {} ms ({:?}, namespace {:?}), which its model does not hold",
                timer.key, timer.timestamp_ms, timer.domain, timer.namespace
            ),
            Violation::TimerNeverFired { stage, timer } => write!(
                f,
                "timer lost: {stage}'s model holds {}'s event-time timer at {} ms (namespace {:?}), which never fired though the input ended",
                timer.key, timer.timestamp_ms, timer.namespace
            ),
            Violation::ReceivedOutOfOrder {
                task,
                record,
                after,
            } => write!(
                f,
                "received out of order: {task} received {record} after offset {after} of its key"
            ),
            Violation::NotReceived { stage, record } => {
                write!(f, "record lost: {stage} never received {record} in the lineage of the final state")
            }
            Violation::ModelFailed {
                stage,
                record,
                reason,
            } => write!(f, "model failed: {stage}'s model failed on {record}: {reason}"),
            Violation::OutputIdReused { id, count } => write!(
                f,
                "output ids must be unique: the model emits {count} records with id {id:?}"
            ),
            Violation::Storage { context, problem } => {
                write!(f, "storage audit {context}: {problem}")
            }
            Violation::CorruptRestored { checkpoint, path } => {
                write!(f, "corruption restored silently: chk-{checkpoint} was restored after {path} was corrupted")
            }
            Violation::JobFailed { reason } => {
                write!(f, "liveness: the job did not finish: {reason}")
            }
            Violation::OutputUnreadable { reason } => {
                write!(f, "the sink's output cannot be read back: {reason}")
            }
            Violation::StateUnreadable { reason } => {
                write!(f, "the final state cannot be read: {reason}")
            }
            Violation::ReuseRefused {
                checkpoint,
                task,
                error,
            } => {
                write!(
                    f,
                    "a snapshot reused a shared file no uploaded or retained checkpoint holds: chk-{checkpoint}: {task}: {error}"
                )
            }
            Violation::TransactionStranded { txn, records } => {
                write!(f, "transaction {txn} still holds {records} records, neither committed nor aborted, when the job finished")
            }
            Violation::NotificationFailed { task, reason } => {
                write!(f, "a completion notification failed {task}: {reason}")
            }
            Violation::Assertion { message, location } => match location {
                Some(location) => write!(f, "panicked at {location}: {message}"),
                None => write!(f, "panicked: {message}"),
            },
            Violation::Resource { resource, limit } => {
                write!(
                    f,
                    "the run grew past its bound: {resource} exceeded {limit}"
                )
            }
            Violation::Watermark(violation) => violation.fmt(f),
            Violation::Window(violation) => violation.fmt(f),
        }
    }
}

impl Violation {
    /// The property this violation breaks.
    pub fn property(&self) -> Property {
        match self {
            Violation::RestoredState { .. }
            | Violation::FinalState { .. }
            | Violation::TimerNeverFired { .. } => Property::State,
            Violation::OutputLost { .. }
            | Violation::OutputDuplicated { .. }
            | Violation::OutputUnexpected { .. }
            | Violation::EmissionUnexpected { .. }
            | Violation::TimerUnexpected { .. }
            | Violation::ReceivedTwice { .. }
            | Violation::ReceivedUnexpected { .. }
            | Violation::ReceivedOutOfOrder { .. }
            | Violation::NotReceived { .. } => Property::Output,
            Violation::OutputIdReused { .. } => Property::Ids,
            Violation::ModelFailed { .. } => Property::Model,
            Violation::JobFailed { .. } => Property::Liveness,
            Violation::NotificationFailed { .. } => Property::Notification,
            Violation::TransactionStranded { .. } => Property::Transactions,
            Violation::ReuseRefused { .. } => Property::Reuse,
            Violation::StateUnreadable { .. } => Property::State,
            Violation::OutputUnreadable { .. } => Property::Output,
            Violation::Storage { .. } => Property::Storage,
            Violation::CorruptRestored { .. } => Property::Corruption,
            Violation::Assertion { .. } => Property::Assertion,
            Violation::Resource { .. } => Property::Resource,
            Violation::Watermark(_) => Property::Watermark,
            Violation::Window(violation) => violation.property(),
        }
    }
}

/// A property of a run, which each violation names and reports lead with (`[state]`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Property {
    /// Restored and final keyed state.
    State,
    /// Visible output: nothing lost, nothing twice, nothing wrong.
    Output,
    /// Output ids unique job-wide.
    Ids,
    /// The models of the job's stages apply to every record.
    Model,
    /// The job finishes (or fails loudly on corruption).
    Liveness,
    /// Completion notifications never fail a task.
    Notification,
    /// No transaction left open at the end.
    Transactions,
    /// No reuse of files no live checkpoint holds.
    Reuse,
    /// The storage audit finds nothing the faults do not explain.
    Storage,
    /// Corrupted checkpoints are never restored.
    Corruption,
    /// No panic inside the case.
    Assertion,
    /// The case stays within its bounds.
    Resource,
    /// The same seed gives the same trace.
    Determinism,
    /// Watermarks grow, never run ahead of their inputs, and reach the end of input.
    Watermark,
}

impl Property {
    /// Its name, as reports print it.
    pub fn name(self) -> &'static str {
        match self {
            Property::State => "state",
            Property::Output => "output",
            Property::Ids => "ids",
            Property::Model => "model",
            Property::Liveness => "liveness",
            Property::Notification => "notification",
            Property::Transactions => "transactions",
            Property::Reuse => "reuse",
            Property::Storage => "storage",
            Property::Corruption => "corruption",
            Property::Assertion => "assertion",
            Property::Resource => "resource",
            Property::Determinism => "determinism",
            Property::Watermark => "watermark",
        }
    }
}

impl fmt::Display for Property {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the oracle checked, skipped or observed besides violations, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Note {
    /// At-least-once mode with fan-in, restored from a snapshot this case did not take: state
    /// and output values were not compared.
    ValuesNotCompared,
    /// Judged along the run's events (at-least-once mode with fan-in, a window, or a user's
    /// operator with timers): every stage against the records it received and the timers it
    /// fired.
    JudgedByLineage {
        /// Restores whose state was compared.
        restores: usize,
        /// Records the sink owed that the model over the input does not emit: replays changed
        /// what state decided (each would be "lost" to an oracle judging by the input alone).
        owed_not_in_model: usize,
    },
    /// Unaligned checkpoints: each restore judged along the events (restored state against
    /// what the snapshotting tasks had received; the records in flight replayed once, before
    /// new input), the end and the output against the model over the input.
    RestoresAlongEvents {
        /// Restores whose state was compared.
        restores: usize,
    },
    /// Restored state matched the model at every restore.
    RestoredStateMatched {
        /// Restores checked.
        restores: usize,
    },
    /// The job failed, as corruption must make it: a restore named the damaged file.
    FailedLoudly {
        /// The job's failure.
        reason: String,
    },
    /// What the window check saw: windows with input, results and late records visible.
    Windows {
        /// Windows (key and start) records fell in.
        windows: usize,
        /// Window results visible.
        results: usize,
        /// Late records visible.
        late: usize,
        /// Whether each window's aggregate was checked to balance (else: only that it shows).
        exactly_once: bool,
    },
    /// What the output check saw.
    Output {
        /// Whether the exactly-once rule applied (else at-least-once).
        exactly_once: bool,
        /// Records the model emits that the run owed.
        owed: usize,
        /// Records visible.
        visible: usize,
        /// Of them, allowed replays after a restore.
        replayed: usize,
    },
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::ValuesNotCompared => f.write_str("at-least-once mode with fan-in, restored from a snapshot this case did not take: state and output values are not compared (loss and replay-only duplication are)"),
            Note::JudgedByLineage { restores, owed_not_in_model } => write!(f, "judged along the run's events (at-least-once with fan-in, a window, an operator's timers, or state with a time to live): each stage against the records it received, at the times it received them, and the timers it fired ({restores} restore(s) compared; {owed_not_in_model} owed record(s) differ from the model over the input)"),
            Note::Windows { windows, results, late, exactly_once } => {
                let rule = if *exactly_once { "each balanced against its input" } else { "each seen (replays allowed)" };
                write!(f, "windows: {windows} with input, {results} result(s) and {late} late record(s) visible, {rule}")
            }
            Note::RestoresAlongEvents { restores } => write!(f, "unaligned checkpoints: {restores} restore(s) judged along the run's events (state as the snapshotting tasks had received it, records in flight replayed once and before new input); the end and the output against the model over the input"),
            Note::RestoredStateMatched { restores } => {
                write!(f, "restored state matched the model at {restores} restore(s)")
            }
            Note::FailedLoudly { reason } => {
                write!(f, "failed loudly, as corruption must: {reason}")
            }
            Note::Output {
                exactly_once,
                owed,
                visible,
                replayed,
            } => {
                let rule = if *exactly_once {
                    "exactly-once"
                } else {
                    "at-least-once"
                };
                write!(f, "output ({rule}): the model emits {owed} records; {visible} visible, {replayed} replayed after a restore")
            }
        }
    }
}

/// The oracle's findings on one run.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// The seed of the run, for messages.
    pub seed: u64,
    /// Broken properties, in the order found.
    pub violations: Vec<Violation>,
    /// What was checked, skipped or observed, for the report.
    pub notes: Vec<Note>,
    /// Visible records that are allowed replays of a restore.
    pub replayed: Vec<Record>,
}

impl Verdict {
    /// Whether every property held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// Whether the job failed loudly on corruption, as it must.
    pub fn failed_loudly(&self) -> bool {
        self.notes
            .iter()
            .any(|note| matches!(note, Note::FailedLoudly { .. }))
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.passed() {
            writeln!(f, "verdict (seed {}): every property held", self.seed)?;
        } else {
            writeln!(
                f,
                "verdict (seed {}): {} violation(s)",
                self.seed,
                self.violations.len()
            )?;
            for violation in &self.violations {
                writeln!(
                    f,
                    "  VIOLATION [{}] seed {}: {violation}",
                    violation.property(),
                    self.seed
                )?;
            }
        }
        for note in &self.notes {
            writeln!(f, "  note: {note}")?;
        }
        Ok(())
    }
}

type RecordKey = (String, Datum, Datum, Option<String>);

fn record_key(record: &Record) -> RecordKey {
    (
        record.id.clone(),
        record.key.clone(),
        record.value.clone(),
        record.side.clone(),
    )
}

/// What a case is judged against: the jobs its phases ran (the same stages, at each phase's
/// parallelism; the model evaluates the last), its input, checkpointing mode, seed, and the
/// models of the user operators it uses.
#[derive(Debug, Clone, Copy)]
pub struct CaseSpec<'a> {
    /// The job of each phase, in order.
    pub jobs: &'a [&'a JobSpec],
    /// The input.
    pub input: &'a Input,
    /// Aligned or not.
    pub mode: CheckpointingMode,
    /// Whether checkpoints may be unaligned: restored state then lacks the records in flight,
    /// which the restore replays, so restores are judged along the events.
    pub unaligned: bool,
    /// The root seed, for messages.
    pub seed: u64,
    /// The user operators the jobs name, judged by their models.
    pub users: &'a [UserOperator],
}

impl CaseSpec<'_> {
    /// The job the model evaluates: the last phase's (every phase has the same stages).
    fn job(&self) -> &JobSpec {
        self.jobs.last().expect("a case has a phase")
    }

    /// Whether restored state and output values are exact: always in exactly-once mode; in
    /// at-least-once mode only without fan-in in any phase (a snapshot taken in one phase is
    /// restored in the next).
    fn values_exact(&self) -> bool {
        self.mode == CheckpointingMode::ExactlyOnce || !self.jobs.iter().any(|j| j.has_fan_in())
    }

    /// Whether a stage of some phase is a user's operator whose model acts on timers.
    fn fires_timers(&self) -> bool {
        self.any_user_model(|model| model.fires_timers())
    }

    /// Whether a stage of some phase acts on the processing time it handles records at: its
    /// state has a time to live.
    fn reads_processing_time(&self) -> bool {
        let mut stages = self.jobs.iter().flat_map(|job| &job.stages);
        stages.any(|s| s.op.reads_processing_time())
            || self.any_user_model(|m| m.reads_processing_time())
    }

    fn any_user_model(&self, test: impl Fn(&dyn crate::job::user::OperatorModel) -> bool) -> bool {
        let stages = self.jobs.iter().flat_map(|job| &job.stages);
        stages.filter_map(|s| s.op.user_name()).any(|name| {
            crate::job::user::find(self.users, name).is_some_and(|u| test(u.model.as_ref()))
        })
    }
}

/// Checks every property of a run of `job` over `input`.
pub fn check_run(
    job: &JobSpec,
    input: &Input,
    mode: CheckpointingMode,
    seed: u64,
    outcome: &RunOutcome,
) -> Verdict {
    let jobs = [job];
    let case = CaseSpec {
        jobs: &jobs,
        input,
        mode,
        unaligned: false,
        seed,
        users: &[],
    };
    check_case(&case, outcome)
}

/// Checks every property of one run of `job` over `input` under `config` (its checkpointing,
/// unaligned or not, and its seed).
pub fn check_phase(
    job: &JobSpec,
    input: &Input,
    config: &crate::engine::RunConfig,
    outcome: &RunOutcome,
) -> Verdict {
    let jobs = [job];
    let case = CaseSpec {
        jobs: &jobs,
        input,
        mode: config.checkpoint.mode,
        unaligned: config.checkpoint.unaligned.enabled(),
        seed: config.seed,
        users: &[],
    };
    check_case(&case, outcome)
}

/// Checks every property of a whole case — all its phases, judged once.
pub fn check_case(case: &CaseSpec<'_>, outcome: &RunOutcome) -> Verdict {
    let mut verdict = Verdict {
        seed: case.seed,
        ..Verdict::default()
    };
    let finished = matches!(
        outcome.status,
        JobStatus::Finished | JobStatus::Stopped { .. }
    );
    let exactly_once = case.job().sink.kind == SinkKind::TwoPhaseCommit
        && case.mode == CheckpointingMode::ExactlyOnce;
    let over_input = model::evaluate_with(
        case.job(),
        case.input,
        &case.input.end_positions(),
        case.users,
    );
    check_model_applies(&over_input.failures, &mut verdict);
    check_watermarks(case, outcome, &mut verdict);
    let all = over_input.outputs;
    check_ids_unique(&all, &mut verdict);
    // A window, a user's operator acting on timers and state with a time to live are judged
    // along the events, where the watermarks, firings and processing times are.
    let windowed = case.job().window();
    let along_events = case.fires_timers() || case.reads_processing_time() || windowed.is_some();
    // An unaligned case is judged as an exact one, but its restores along the events: a
    // snapshot holds what its task had received, not the model at the restored positions.
    let restores_along_events = case.unaligned && case.values_exact() && !along_events;
    let lineage = if case.values_exact() && !along_events && !case.unaligned {
        None
    } else {
        lineage::follow(case, outcome)
    };
    if let Some((_, stage)) = windowed {
        window::check_case(case, outcome, &all, stage, lineage.is_some(), &mut verdict);
        if lineage.is_none() {
            return verdict;
        }
    }
    let rules = OutputRules {
        finished,
        exactly_once,
        values_exact: case.values_exact() || lineage.is_some(),
        lineage: lineage.is_some(),
    };
    match lineage {
        Some(lineage) if !restores_along_events => check_lineage(
            case,
            outcome,
            lineage,
            (&all, over_input.failures.is_empty()),
            rules,
            &mut verdict,
        ),
        lineage => {
            // Values that depend on processing times cannot be judged without the events.
            let exact = case.values_exact() && !case.reads_processing_time();
            if let (true, Some(lineage)) = (exact, lineage) {
                verdict.violations.extend(lineage.violations);
                verdict.notes.push(Note::RestoresAlongEvents {
                    restores: lineage.restores,
                });
            } else if exact {
                check_restores(case, outcome, &mut verdict);
            } else {
                verdict.notes.push(Note::ValuesNotCompared);
            }
            let end =
                model::evaluate_with(case.job(), case.input, &outcome.end_positions, case.users);
            check_end(case.job(), &end.state, exact, outcome, &mut verdict);
            check_reported(outcome, &mut verdict);
            let owed = owed_since_start(end.outputs, outcome);
            check_output(&mut verdict, &owed, &all, outcome, rules);
        }
    }
    verdict
}

/// Judges a case along its events: what the walk found, then the end and the output against
/// what the lineage owes. `model` is the model's output over the input and whether it applied
/// to every record.
fn check_lineage(
    case: &CaseSpec<'_>,
    outcome: &RunOutcome,
    lineage: lineage::Lineage,
    (all, model_applied): (&[Record], bool),
    rules: OutputRules,
    verdict: &mut Verdict,
) {
    verdict.violations.extend(lineage.violations);
    if model_applied {
        check_model_applies(&lineage.failures, verdict);
    }
    let in_model: std::collections::BTreeSet<RecordKey> = all.iter().map(record_key).collect();
    verdict.notes.push(Note::JudgedByLineage {
        restores: lineage.restores,
        owed_not_in_model: (lineage.owed.iter())
            .filter(|r| !in_model.contains(&record_key(r)))
            .count(),
    });
    let state = window::judged_state(case.job(), &lineage.state);
    check_end(case.job(), &state, true, outcome, verdict);
    check_reported(outcome, verdict);
    check_output(verdict, &lineage.owed, &lineage.emitted, outcome, rules);
}

/// The watermark rules over the whole trace; the end of input is owed once the job finished.
fn check_watermarks(case: &CaseSpec<'_>, outcome: &RunOutcome, verdict: &mut Verdict) {
    let ran_out = outcome.status == JobStatus::Finished;
    let marks = watermark::check(case.jobs, outcome.trace.events(), ran_out);
    verdict
        .violations
        .extend(marks.into_iter().map(Violation::Watermark));
}

/// Output of records before the start positions came from the run that took the initial
/// snapshot; this run owes only the rest.
fn owed_since_start(outputs: Vec<Record>, outcome: &RunOutcome) -> Vec<Record> {
    let start = &outcome.start_positions;
    outputs
        .into_iter()
        .filter(|r| {
            start
                .0
                .get(r.origin.partition as usize)
                .is_none_or(|p| r.origin.offset >= *p)
        })
        .collect()
}

/// A model that fails on a record cannot say what is right for it: each such record (the
/// first failure of each stage, the rest being alike) is a violation of its own.
fn check_model_applies(failures: &[model::ModelFailure], verdict: &mut Verdict) {
    let mut stages = std::collections::BTreeSet::new();
    for failure in failures {
        if stages.insert(failure.stage.as_str()) {
            verdict.violations.push(Violation::ModelFailed {
                stage: failure.stage.clone(),
                record: failure.record.clone(),
                reason: failure.reason.clone(),
            });
        }
    }
}

/// The oracle tells records apart by id: a model emitting one id twice is a user's mistake,
/// reported as such rather than judged.
fn check_ids_unique(model_all: &[Record], verdict: &mut Verdict) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for record in model_all {
        *counts.entry(&record.id).or_default() += 1;
    }
    for (id, count) in counts {
        if count > 1 {
            verdict.violations.push(Violation::OutputIdReused {
                id: id.to_string(),
                count,
            });
        }
    }
}

/// Property 1: after every restore, keyed state equals the model at the restored positions.
fn check_restores(case: &CaseSpec<'_>, outcome: &RunOutcome, verdict: &mut Verdict) {
    let before = verdict.violations.len();
    for restore in &outcome.restores {
        let expected =
            model::evaluate_with(case.job(), case.input, &restore.positions, case.users).state;
        let actual = window::judged_state(case.job(), &restore.state);
        for (addr, expected, actual) in expected.differences(&actual) {
            verdict.violations.push(Violation::RestoredState {
                attempt: restore.attempt,
                checkpoint_id: restore.checkpoint_id,
                addr: addr.clone(),
                expected: expected.cloned(),
                actual: actual.cloned(),
            });
        }
    }
    if !outcome.restores.is_empty() && verdict.violations.len() == before {
        verdict.notes.push(Note::RestoredStateMatched {
            restores: outcome.restores.len(),
        });
    }
}

/// Properties 2 and 4: the final state equals the model's over the input read; a job that
/// failed did so loudly on corruption, or broke liveness (or a bound of its case); a finished
/// job left no records stranded in open transactions.
fn check_end(
    job: &JobSpec,
    expected: &StateView,
    exact: bool,
    outcome: &RunOutcome,
    verdict: &mut Verdict,
) {
    match (&outcome.status, &outcome.final_state) {
        (JobStatus::Finished | JobStatus::Stopped { .. }, Some(state)) if exact => {
            let state = window::judged_state(job, state);
            for (addr, expected, actual) in expected.differences(&state) {
                verdict.violations.push(Violation::FinalState {
                    addr: addr.clone(),
                    expected: expected.cloned(),
                    actual: actual.cloned(),
                });
            }
        }
        (JobStatus::Failed { reason }, _) => {
            let exhausted = outcome.trace.events().iter().find_map(|s| match s.event {
                Event::ResourceExhausted { resource, limit } => Some((resource, limit)),
                _ => None,
            });
            // Corruption must fail loudly: a restore that names a corrupted file is the
            // expected end, not a liveness failure.
            let loud = outcome
                .failures
                .last()
                .is_some_and(|failure| names_a_corrupted_file(&failure.cause, outcome));
            if let Some((resource, limit)) = exhausted {
                verdict
                    .violations
                    .push(Violation::Resource { resource, limit });
            } else if loud {
                verdict.notes.push(Note::FailedLoudly {
                    reason: reason.clone(),
                });
            } else {
                verdict.violations.push(Violation::JobFailed {
                    reason: reason.clone(),
                });
            }
        }
        _ => {}
    }
    if matches!(outcome.status, JobStatus::Finished) {
        for (txn, records) in outcome.store.stranded() {
            verdict
                .violations
                .push(Violation::TransactionStranded { txn, records });
        }
    }
    if let Some(reason) = &outcome.final_state_error {
        verdict.violations.push(Violation::StateUnreadable {
            reason: reason.clone(),
        });
    }
}

/// What the run reported along the way: refused reuses, notifications that failed a task,
/// storage problems no fault explains, and corrupted checkpoints that were restored.
fn check_reported(outcome: &RunOutcome, verdict: &mut Verdict) {
    for refused in &outcome.refused_reuses {
        verdict.violations.push(Violation::ReuseRefused {
            checkpoint: refused.checkpoint,
            task: refused.task.clone(),
            error: refused.error.clone(),
        });
    }
    for failure in &outcome.failures {
        if matches!(failure.cause, FailureCause::Notification { .. }) {
            verdict.violations.push(Violation::NotificationFailed {
                task: failure.task.clone(),
                reason: failure.cause.to_string(),
            });
        }
    }
    for (found_at, context, problem) in &outcome.audit_problems {
        // Damage a fault did on purpose explains what the audit finds after it.
        let injected = outcome
            .corruptions
            .iter()
            .any(|(done_at, corruption)| done_at < found_at && corruption.explains(problem));
        if !injected {
            verdict.violations.push(Violation::Storage {
                context: *context,
                problem: problem.clone(),
            });
        }
    }
    for (_, corruption) in &outcome.corruptions {
        // Corruption is applied just before an attempt restores; restoring the damaged
        // checkpoint afterwards means its damage went unnoticed.
        let restored = outcome.restores.iter().any(|r| {
            r.checkpoint_id == Some(corruption.checkpoint) && r.attempt >= corruption.attempt
        });
        if restored {
            verdict.violations.push(Violation::CorruptRestored {
                checkpoint: corruption.checkpoint,
                path: corruption.path.clone(),
            });
        }
    }
}

/// How visible output is judged.
#[derive(Debug, Clone, Copy)]
struct OutputRules {
    /// The run owed its whole output: nothing of it may be lost.
    finished: bool,
    /// Each record visible at most once (an exactly-once sink in exactly-once mode).
    exactly_once: bool,
    /// Values are compared with the model's.
    values_exact: bool,
    /// The model's records are the at-least-once lineage's: a record is lost unless a copy
    /// with its value is visible (an id may carry other values in other attempts).
    lineage: bool,
}

/// Checks visible output. `expected` is what the run owed (nothing of it may be lost when it
/// finished); `model_all` is the model over the whole input: a record's value does not depend
/// on where a run stopped, so every visible record is judged against it (an earlier attempt
/// of a failed run may have got further than the last one).
fn check_output(
    verdict: &mut Verdict,
    expected: &[Record],
    model_all: &[Record],
    outcome: &RunOutcome,
    rules: OutputRules,
) {
    let mut model_by_id: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for record in model_all {
        model_by_id.entry(&record.id).or_default().push(record);
    }
    // Records before the start positions were made visible by the run that took the initial
    // snapshot; this run cannot have produced them.
    let start = &outcome.start_positions;
    let mut visible: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for record in outcome.store.visible() {
        if start
            .0
            .get(record.origin.partition as usize)
            .is_none_or(|p| record.origin.offset >= *p)
        {
            visible.entry(&record.id).or_default().push(record);
        }
    }
    for (id, copies) in &visible {
        let model_records = model_by_id.get(id).map_or(&[][..], Vec::as_slice);
        for copy in copies {
            let matches_model = model_records
                .iter()
                .any(|m| record_key(m) == record_key(copy));
            if rules.values_exact && !matches_model {
                verdict.violations.push(Violation::OutputUnexpected {
                    record: (*copy).clone(),
                    expected: model_records.first().map(|m| (*m).clone()),
                });
            }
        }
        let allowed = if rules.exactly_once {
            1
        } else {
            1 + replays(outcome, copies[0])
        };
        if copies.len() > allowed {
            verdict.violations.push(Violation::OutputDuplicated {
                record: copies[0].clone(),
                count: copies.len(),
                allowed,
            });
        } else if copies.len() > 1 {
            verdict.replayed.push(copies[0].clone());
        }
    }
    if rules.finished {
        for record in expected {
            let copies = visible.get(record.id.as_str());
            let found = if rules.lineage {
                copies.is_some_and(|c| c.iter().any(|v| record_key(v) == record_key(record)))
            } else {
                copies.is_some()
            };
            if !found {
                verdict.violations.push(Violation::OutputLost {
                    record: record.clone(),
                });
            }
        }
    }
    let total: usize = visible.values().map(Vec::len).sum();
    verdict.notes.push(Note::Output {
        exactly_once: rules.exactly_once,
        owed: expected.len(),
        visible: total,
        replayed: total - visible.len(),
    });
}

/// How often `record` may appear beyond once: once per restore that rewound its partition to
/// or before it (it was read again), and once each time a restore handed it back from an
/// unaligned snapshot's channel state. The first attempt's restore (from an initial snapshot)
/// starts the run: it replays nothing this run emitted.
fn replays(outcome: &RunOutcome, record: &Record) -> usize {
    let restores = outcome.restores.iter().filter(|r| r.attempt > 0);
    let rewound = restores
        .clone()
        .filter(|r| {
            r.positions
                .0
                .get(record.origin.partition as usize)
                .is_some_and(|p| *p <= record.origin.offset)
        })
        .count();
    let in_flight = restores
        .flat_map(|r| &r.in_flight)
        .filter(|origin| **origin == record.origin)
        .count();
    rewound + in_flight
}

/// Whether a failure is a restore that named a file a fault had corrupted: how corruption
/// must end a run.
fn names_a_corrupted_file(cause: &FailureCause, outcome: &RunOutcome) -> bool {
    let FailureCause::Restore(RestoreFailure {
        file: Some(file), ..
    }) = cause
    else {
        return false;
    };
    outcome
        .corruptions
        .iter()
        .any(|(_, corruption)| corruption.path == *file)
}

#[cfg(test)]
mod tests {
    //! Judgements read typed causes: rewording a failure's message must change no verdict.

    use super::*;
    use crate::engine::PhaseEnd;
    use crate::fault::{Corruption, CorruptionKind};
    use crate::job::InputRecord;
    use crate::sim::HostDetail;
    use crate::trace::{Event, Trace};

    fn job() -> JobSpec {
        toml::from_str(
            r#"
name = "sum"
source = { parallelism = 1 }
sink = { kind = "print" }
stages = [{ name = "sum", op = { kind = "sum" }, parallelism = 1 }]
"#,
        )
        .expect("a valid job")
    }

    fn input() -> Input {
        let records = [InputRecord::transaction("r0", "k", 1)];
        Input::partitioned(&records, 1)
    }

    /// The verdict on a failed run whose trace holds `events`.
    fn judge_failed(events: Vec<Event>) -> Verdict {
        let mut trace = Trace::new();
        for event in events {
            trace.record(0, 0, event);
        }
        let end = PhaseEnd::failed("gave up".into(), 1);
        let outcome = RunOutcome::from_trace(trace, end, 1);
        check_run(
            &job(),
            &input(),
            CheckpointingMode::ExactlyOnce,
            1,
            &outcome,
        )
    }

    fn failure(task: &str, cause: FailureCause) -> Event {
        Event::Failure {
            attempt: 1,
            task: task.into(),
            cause,
        }
    }

    fn corrupted(path: &str) -> Event {
        Event::Corrupted(Corruption {
            attempt: 1,
            checkpoint: 1,
            path: path.into(),
            kind: CorruptionKind::BitFlip,
            detail: HostDetail::default(),
        })
    }

    fn liveness(verdict: &Verdict) -> bool {
        verdict
            .violations
            .iter()
            .any(|v| matches!(v, Violation::JobFailed { .. }))
    }

    #[test]
    fn a_restore_naming_the_corrupted_file_fails_loudly_however_it_is_worded() {
        let named = RestoreFailure {
            file: Some("chk-1/_metadata".into()),
            detail: "the snapshot could not be read".into(),
        };
        let verdict = judge_failed(vec![
            corrupted("chk-1/_metadata"),
            failure("restore", FailureCause::Restore(named)),
        ]);
        assert!(verdict.failed_loudly(), "{verdict}");
        assert!(!liveness(&verdict), "{verdict}");

        // The path in the words alone names nothing: that is a liveness failure.
        let unnamed = RestoreFailure {
            file: None,
            detail: "chk-1/_metadata: unreadable".into(),
        };
        let verdict = judge_failed(vec![
            corrupted("chk-1/_metadata"),
            failure("restore", FailureCause::Restore(unnamed)),
        ]);
        assert!(!verdict.failed_loudly(), "{verdict}");
        assert!(liveness(&verdict), "{verdict}");
    }

    #[test]
    fn a_notification_failure_is_judged_by_its_cause_however_it_is_worded() {
        let notified = FailureCause::Notification {
            checkpoint: 2,
            error: "the sink said no".into(),
        };
        let verdict = judge_failed(vec![failure("sink[0]", notified)]);
        assert!(
            verdict
                .violations
                .iter()
                .any(|v| matches!(v, Violation::NotificationFailed { .. })),
            "{verdict}"
        );

        // An operator's error that reads like one is not one.
        let lookalike = FailureCause::Operator {
            error: "notify chk-2: the sink said no".into(),
        };
        let verdict = judge_failed(vec![failure("sum[0]", lookalike)]);
        assert!(
            !verdict
                .violations
                .iter()
                .any(|v| matches!(v, Violation::NotificationFailed { .. })),
            "{verdict}"
        );
    }

    #[test]
    fn a_model_emitting_one_id_twice_is_a_violation_of_the_case_not_a_panic() {
        let job: JobSpec = toml::from_str(
            r#"
name = "twice"
source = { parallelism = 1 }
sink = { kind = "print" }
stages = [{ name = "twice", op = { kind = "user", name = "twice", keyed = true }, parallelism = 1 }]
"#,
        )
        .expect("a valid job");
        let users = [UserOperator::new(
            "twice",
            true,
            |_| crate::job::operator::build(&crate::job::OperatorSpec::Sum),
            |_: &mut crate::job::user::ModelState, record: Record| Ok(vec![record.clone(), record]),
        )];
        let jobs = [&job];
        let case = CaseSpec {
            jobs: &jobs,
            input: &input(),
            mode: CheckpointingMode::ExactlyOnce,
            unaligned: false,
            seed: 1,
            users: &users,
        };
        let outcome = RunOutcome::from_trace(Trace::new(), PhaseEnd::failed("x".into(), 1), 1);
        let verdict = check_case(&case, &outcome);
        assert!(
            verdict.violations.contains(&Violation::OutputIdReused {
                id: "r0".into(),
                count: 2
            }),
            "{verdict}"
        );
        assert_eq!(verdict.violations[0].property(), Property::Ids);
    }
}
