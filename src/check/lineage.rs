//! The at-least-once oracle: each stage judged against the records it actually received.
//!
//! In at-least-once mode with fan-in a task does not block a channel whose barrier has arrived,
//! so its snapshot may hold records after the barrier, which a restore then replays. Restored
//! state is then not the model at the restored source positions, and an operator whose
//! emissions depend on its state (an alert at an account's third large transaction) emits on
//! other records than the model over the input does. Judging such a run against the model over
//! the input raises false alarms; not judging it hides real bugs.
//!
//! So this module follows the run's events instead. It keeps one model per stage and key, feeds
//! it the records that stage processed, in the order it processed them, captures the models of
//! a task's keys when the task snapshots, and puts them back when an attempt restores that
//! checkpoint. It then holds the run to this:
//! - every emission equals the model's for the records the stage received;
//! - restored and final keyed state equal the models';
//! - every record a stage receives is what the stage before it emitted under that id (the
//!   input's record, for the first stage);
//! - no task receives a record twice within one attempt, and the first stage receives each
//!   key's records in input order within an attempt (a replay starts a new attempt; later
//!   stages' order is not checked: their model follows the order they received);
//! - a job that finished (or stopped) received everything: the first stage every input record
//!   up to the end positions, every later stage every record the stage before it emitted; the
//!   sink's output must hold every record the last stage emitted (checked by `check`'s output
//!   rules with what this module returns).
//!
//! Operators must keep a record's key, as the built-in ones do: a key's records then take one
//! path through the tasks, so a key's model lives in exactly one task at a time.

use std::collections::{BTreeMap, BTreeSet};

use super::{CaseSpec, Violation};
use crate::engine::{JobStatus, RunOutcome};
use crate::job::keygroup::subtask_for_key_group;
use crate::job::user::timer_record;
use crate::job::watermark::{Mark, MIN_WATERMARK};
use crate::job::{task_name, Datum, JobSpec, Record};
use crate::model::{ModelFailure, StageModel};
use crate::state::timers::Timer;
use crate::state::StateView;
use crate::trace::{Emission, Event, RestoreSource, Restored};

/// What following the events found.
#[derive(Debug, Default)]
pub(super) struct Lineage {
    /// Broken properties, in the order found.
    pub violations: Vec<Violation>,
    /// The keyed state the models hold at the end.
    pub state: StateView,
    /// What the last stage emitted along the lineage of the final state: what the sink owes.
    pub owed: Vec<Record>,
    /// Everything the last stage emitted in any attempt: the values a visible record may have.
    pub emitted: Vec<Record>,
    /// Restores whose state was compared.
    pub restores: usize,
    /// Records a stage's model failed on, along the lineage.
    pub failures: Vec<ModelFailure>,
}

/// One stage's view of one key: its model and what reached it along the current lineage.
#[derive(Debug, Clone, Default)]
struct Cell {
    model: StageModel,
    /// The source partition of the key's records: where its path through the tasks starts.
    partition: u32,
    /// The subtask that processed the key's records in this phase, once one did: a user's
    /// reader may assign partitions to source subtasks its own way, which a forward edge then
    /// carries on.
    subtask: Option<u16>,
    /// Records received, in order.
    received: Vec<Record>,
    /// Records the model emitted for them, in order.
    emitted: Vec<Record>,
}

/// Cells by stage index (0 is the first operator) and key.
type Cells = BTreeMap<(usize, Datum), Cell>;

/// Follows `outcome`'s events; `None` when the lineage cannot be known (a restore from a
/// snapshot this case did not take, or of a checkpoint whose snapshots it never saw).
pub(super) fn follow(case: &CaseSpec<'_>, outcome: &RunOutcome) -> Option<Lineage> {
    // A job of no operators has no stage to follow: its sink reads the input itself.
    if case.jobs.iter().any(|job| job.stages.is_empty()) {
        return None;
    }
    let mut walk = Walk::new(case);
    for records in case.input.partitions() {
        for record in records {
            walk.last_emitted
                .insert((usize::MAX, record.id.clone()), record.clone());
        }
    }
    for stamped in outcome.trace.events() {
        walk.now_ms = stamped.time_ms;
        walk.event(&stamped.event)?;
    }
    if matches!(
        outcome.status,
        JobStatus::Finished | JobStatus::Stopped { .. }
    ) {
        walk.check_complete(outcome);
    }
    if outcome.status == JobStatus::Finished {
        walk.check_timers_fired();
    }
    Some(walk.finish())
}

/// The walk over one case's events.
struct Walk<'c> {
    case: &'c CaseSpec<'c>,
    /// The phase running (an index into the case's jobs), once one started.
    phase: Option<usize>,
    /// Operator tasks of the phase: stage index and subtask.
    tasks: BTreeMap<String, (usize, u16)>,
    cells: Cells,
    /// The cells each checkpoint's snapshots captured, by checkpoint id, with the phase that
    /// took them.
    snapshots: BTreeMap<u64, (usize, Cells)>,
    /// Records (by stage and id) received in the current attempt.
    seen: BTreeSet<(usize, String)>,
    /// The watermark each task last sent in the current attempt: the one it judges the
    /// records it takes in against.
    watermarks: BTreeMap<String, i64>,
    /// The offset the first stage last received per key in the current attempt.
    offsets: BTreeMap<Datum, u64>,
    /// What each stage last emitted under each id (the input's records as stage "-1"): what
    /// the next stage must receive under that id.
    last_emitted: BTreeMap<(usize, String), Record>,
    /// The processing time of the event being taken in: what the models are applied at, and
    /// what state views are taken at.
    now_ms: u64,
    lineage: Lineage,
}

impl<'c> Walk<'c> {
    fn new(case: &'c CaseSpec<'c>) -> Self {
        Self {
            case,
            phase: None,
            tasks: BTreeMap::new(),
            cells: Cells::new(),
            snapshots: BTreeMap::new(),
            seen: BTreeSet::new(),
            watermarks: BTreeMap::new(),
            offsets: BTreeMap::new(),
            last_emitted: BTreeMap::new(),
            now_ms: 0,
            lineage: Lineage::default(),
        }
    }

    fn job(&self) -> &'c JobSpec {
        let jobs = self.case.jobs;
        jobs[self.phase.unwrap_or(0).min(jobs.len() - 1)]
    }

    /// Takes one event in; `None` when the lineage can no longer be known.
    fn event(&mut self, event: &Event) -> Option<()> {
        match event {
            Event::JobStarted(_) => self.start_phase(),
            Event::AttemptStarted { .. } => self.start_attempt(),
            Event::Restored(restored) => self.restore(restored)?,
            Event::RecordProcessed {
                task,
                record,
                outputs,
            } => self.process(task, record, outputs),
            Event::TimerFired {
                task,
                timer,
                outputs,
            } => self.fire(task, timer, outputs),
            Event::Watermark {
                task,
                mark: Mark::At(watermark_ms),
            } => {
                self.watermarks.insert(task.clone(), *watermark_ms);
            }
            Event::Snapshot {
                checkpoint, task, ..
            } => self.snapshot(*checkpoint, task),
            _ => {}
        }
        Some(())
    }

    fn start_phase(&mut self) {
        self.phase = Some(self.phase.map_or(0, |phase| phase + 1));
        let job = self.job();
        self.tasks = job
            .stages
            .iter()
            .enumerate()
            .flat_map(|(index, stage)| {
                (0..stage.parallelism)
                    .map(move |subtask| (task_name(&stage.name, subtask), (index, subtask)))
            })
            .collect();
        self.cells.clear();
        self.start_attempt();
    }

    /// A new phase runs at new parallelisms: which subtask processed a key is not known yet.
    fn forget_subtasks(&mut self) {
        for cell in self.cells.values_mut() {
            cell.subtask = None;
        }
    }

    fn start_attempt(&mut self) {
        self.seen.clear();
        self.watermarks.clear();
        self.offsets.clear();
    }

    fn restore(&mut self, restored: &Restored) -> Option<()> {
        self.start_attempt();
        let (taken_in, cells) = match &restored.from {
            RestoreSource::Nothing => (self.phase, Cells::new()),
            RestoreSource::Checkpoint(checkpoint) | RestoreSource::Savepoint { checkpoint, .. } => {
                let (phase, cells) = self.snapshots.get(checkpoint)?;
                (Some(*phase), cells.clone())
            }
            RestoreSource::External { .. } => return None,
        };
        self.cells = cells;
        // Cells another phase captured name that phase's subtasks, every time they come back.
        if taken_in != self.phase {
            self.forget_subtasks();
        }
        let expected = self.state();
        for (addr, expected, actual) in expected.differences(&restored.state) {
            self.lineage.violations.push(Violation::RestoredState {
                attempt: restored.attempt,
                checkpoint_id: restored.from.checkpoint_id(),
                addr: addr.clone(),
                expected: expected.cloned(),
                actual: actual.cloned(),
            });
        }
        self.lineage.restores += 1;
        Some(())
    }

    fn process(&mut self, task: &str, record: &Record, outputs: &[Emission]) {
        let Some(&(stage, subtask)) = self.tasks.get(task) else {
            return;
        };
        if !self.seen.insert((stage, record.id.clone())) {
            self.lineage.violations.push(Violation::ReceivedTwice {
                task: task.to_string(),
                record: record.clone(),
            });
        } else if stage == 0 {
            let last = self
                .offsets
                .insert(record.key.clone(), record.origin.offset);
            if let Some(after) = last.filter(|last| *last > record.origin.offset) {
                self.lineage.violations.push(Violation::ReceivedOutOfOrder {
                    task: task.to_string(),
                    record: record.clone(),
                    after,
                });
            }
        }
        // What the stage before emitted under this id (the input, for the first stage) is what
        // this one must have received: a key or value changed on the way is caught here.
        let upstream = stage.checked_sub(1).unwrap_or(usize::MAX);
        let sent = self.last_emitted.get(&(upstream, record.id.clone()));
        if sent.is_none_or(|sent| sent.key != record.key || sent.value != record.value) {
            self.lineage.violations.push(Violation::ReceivedUnexpected {
                task: task.to_string(),
                record: record.clone(),
                sent: sent.cloned(),
            });
        }
        let job = self.job();
        let cell = self
            .cells
            .entry((stage, record.key.clone()))
            .or_insert_with(|| Cell {
                partition: record.origin.partition,
                ..Cell::default()
            });
        let watermark_ms = self.watermarks.get(task).copied().unwrap_or(MIN_WATERMARK);
        cell.model.set_now_ms(self.now_ms);
        let applied = (cell.model).apply_at(
            &job.stages[stage],
            self.case.users,
            record.clone(),
            watermark_ms,
        );
        let emitted = match applied {
            Ok(emitted) => emitted,
            Err(failure) => {
                self.lineage.failures.push(failure);
                Vec::new()
            }
        };
        cell.received.push(record.clone());
        self.compare(task, record, &emitted, outputs);
        self.emit(stage, subtask, record.key.clone(), emitted);
    }

    /// Whether stage `stage` is a window or a user's operator whose model acts on timers: the
    /// stages whose firings the walk judges.
    fn timed(&self, stage: usize) -> bool {
        let op = &self.job().stages[stage].op;
        if op.window_shape().is_some() {
            return true;
        }
        let name = op.user_name();
        name.and_then(|name| crate::job::user::find(self.case.users, name))
            .is_some_and(|user| user.model.fires_timers())
    }

    /// A timer fired in `task`: the model of its key fires it too, and must emit what the
    /// operator did. A firing the model does not hold is a violation.
    fn fire(&mut self, task: &str, timer: &Timer, outputs: &[Emission]) {
        let Some(&(stage, subtask)) = self.tasks.get(task) else {
            return;
        };
        if !self.timed(stage) {
            return;
        }
        let job = self.job();
        let held = match self.cells.get_mut(&(stage, timer.key.clone())) {
            None => Ok(None),
            Some(cell) => {
                cell.model.set_now_ms(self.now_ms);
                (cell.model).on_timer(&job.stages[stage], self.case.users, timer)
            }
        };
        let emitted = match held {
            Ok(Some(emitted)) => emitted,
            Ok(None) => {
                self.lineage.violations.push(Violation::TimerUnexpected {
                    task: task.to_string(),
                    timer: timer.clone(),
                });
                return;
            }
            Err(failure) => {
                self.lineage.failures.push(failure);
                Vec::new()
            }
        };
        self.compare(task, &timer_record(timer), &emitted, outputs);
        self.emit(stage, subtask, timer.key.clone(), emitted);
    }

    /// `task` emitted `outputs` for `input` (a record, or a timer's); its model `emitted`.
    fn compare(&mut self, task: &str, input: &Record, emitted: &[Record], outputs: &[Emission]) {
        let values: Vec<Emission> = emitted.iter().map(Emission::of).collect();
        if values != outputs {
            self.lineage.violations.push(Violation::EmissionUnexpected {
                task: task.to_string(),
                record: input.clone(),
                expected: values,
                actual: outputs.to_vec(),
            });
        }
    }

    /// What the model of `key` at `stage` emitted: what the next stage must receive, and
    /// (from the last stage, or on a side output) what the sink is owed.
    fn emit(&mut self, stage: usize, subtask: u16, key: Datum, emitted: Vec<Record>) {
        let last = stage + 1 == self.job().stages.len();
        self.lineage
            .emitted
            .extend(emitted.iter().filter(|r| last || r.side.is_some()).cloned());
        for out in &emitted {
            self.last_emitted
                .insert((stage, out.id.clone()), out.clone());
        }
        let cell = self.cells.entry((stage, key)).or_default();
        cell.subtask = Some(subtask);
        cell.emitted.extend(emitted);
    }

    /// A finished job with event time reached the end of input, which fired every event-time
    /// timer: a model still holding one means the engine lost it. (Without watermarks no
    /// event-time timer ever fires.)
    fn check_timers_fired(&mut self) {
        let job = self.job();
        if job.source.watermarks.is_none() {
            return;
        }
        let timed: Vec<usize> = (0..job.stages.len()).filter(|s| self.timed(*s)).collect();
        for ((stage, key), cell) in &mut self.cells {
            if !timed.contains(stage) {
                continue;
            }
            for stored in cell.model.event_timers(key) {
                self.lineage.violations.push(Violation::TimerNeverFired {
                    stage: job.stages[*stage].name.clone(),
                    timer: Timer {
                        timestamp_ms: stored.timestamp_ms,
                        key: key.clone(),
                        namespace: stored.namespace,
                        domain: stored.domain,
                    },
                });
            }
        }
    }

    fn snapshot(&mut self, checkpoint: u64, task: &str) {
        let Some(&(stage, subtask)) = self.tasks.get(task) else {
            return;
        };
        let job = self.job();
        let phase = self.phase.unwrap_or(0);
        let (taken_in, captured) = self.snapshots.entry(checkpoint).or_default();
        *taken_in = phase;
        // A later snapshot of the same task and id replaces an earlier one's cells.
        captured.retain(|(s, key), cell| *s != stage || owner(job, stage, key, cell) != subtask);
        for ((s, key), cell) in &self.cells {
            if *s == stage && owner(job, stage, key, cell) == subtask {
                captured.insert((stage, key.clone()), cell.clone());
            }
        }
    }

    /// A finished (or stopped) job's lineage holds everything: the first stage received every
    /// input record up to the end positions, each later stage everything the one before
    /// emitted.
    fn check_complete(&mut self, outcome: &RunOutcome) {
        let job = self.job();
        let owed_input = self.case.input.partitions().iter().flat_map(|records| {
            records.iter().filter(|r| {
                let partition = r.origin.partition as usize;
                let after_start = outcome
                    .start_positions
                    .0
                    .get(partition)
                    .is_none_or(|p| r.origin.offset >= *p);
                let before_end = outcome
                    .end_positions
                    .0
                    .get(partition)
                    .is_some_and(|p| r.origin.offset < *p);
                after_start && before_end
            })
        });
        let mut owed: Vec<Record> = owed_input.cloned().collect();
        // Side outputs skip the later stages on their way to the sink.
        let mut side_owed = Vec::new();
        for (stage, spec) in job.stages.iter().enumerate() {
            let received: BTreeSet<String> = self
                .stage_cells(stage)
                .flat_map(|cell| &cell.received)
                .map(|r| r.id.clone())
                .collect();
            for record in &owed {
                if !received.contains(&record.id) {
                    self.lineage.violations.push(Violation::NotReceived {
                        stage: spec.name.clone(),
                        record: record.clone(),
                    });
                }
            }
            let (side, main): (Vec<Record>, Vec<Record>) = self
                .stage_cells(stage)
                .flat_map(|cell| cell.emitted.iter().cloned())
                .partition(|r| r.side.is_some());
            side_owed.extend(side);
            owed = main;
        }
        owed.extend(side_owed);
        self.lineage.owed = owed;
    }

    fn stage_cells(&self, stage: usize) -> impl Iterator<Item = &Cell> {
        self.cells
            .iter()
            .filter(move |((s, _), _)| *s == stage)
            .map(|(_, cell)| cell)
    }

    /// The keyed state the models hold now, under the engine's names: what a read at the
    /// current event's processing time could see, as the engine's views show it.
    fn state(&self) -> StateView {
        let job = self.job();
        let mut view = StateView::new();
        for ((stage, _), cell) in &self.cells {
            (cell.model).add_state_at(&job.stages[*stage], &mut view, Some(self.now_ms));
        }
        view
    }

    fn finish(mut self) -> Lineage {
        self.lineage.state = self.state();
        self.lineage
    }
}

/// The subtask of stage `stage` that holds a key's cell: for a keyed stage the owner of its key
/// group, as the engine routes; otherwise the subtask seen processing it in this phase, or
/// where a forward edge from the source's subtask (the partition's) leads.
fn owner(job: &JobSpec, stage: usize, key: &Datum, cell: &Cell) -> u16 {
    let parallelisms = job.stage_parallelisms();
    // Task-order stages: 0 is the source, so operator `stage` is `stage + 1`.
    let group = key.key_group(job.max_parallelism);
    if job.stages[stage].op.is_keyed() {
        return subtask_for_key_group(job.max_parallelism, parallelisms[stage + 1], group);
    }
    if let Some(subtask) = cell.subtask {
        return subtask;
    }
    let mut subtask = (cell.partition % u32::from(parallelisms[0])) as u16;
    for (downstream, parallelism) in parallelisms.iter().enumerate().take(stage + 2).skip(1) {
        if !job.edge_is_forward(downstream) {
            subtask = subtask_for_key_group(job.max_parallelism, *parallelism, group);
        }
    }
    subtask
}

#[cfg(test)]
mod tests {
    //! Each lineage rule on a hand-written event stream: a sum over one key behind a fan-in,
    //! at-least-once.

    use super::super::{check_case, Violation};
    use super::*;
    use crate::checkpoint::CheckpointingMode;
    use crate::engine::PhaseEnd;
    use crate::job::{transaction_datum, Input, InputRecord, RestartStrategy};
    use crate::state::StateAddr;
    use crate::trace::{JobStarted, Trace};

    fn job() -> JobSpec {
        toml::from_str(
            r#"
name = "sum"
source = { parallelism = 2 }
sink = { kind = "print" }
stages = [{ name = "sum", op = { kind = "sum" }, parallelism = 1 }]
"#,
        )
        .expect("a valid job")
    }

    fn input() -> Input {
        let records: Vec<InputRecord> = (0..3)
            .map(|i| InputRecord::transaction(&format!("r{i}"), "k", 10_i64.pow(i)))
            .collect();
        Input::partitioned(&records, 2)
    }

    fn record(i: usize) -> Record {
        input()
            .partitions()
            .iter()
            .flatten()
            .find(|r| r.id == format!("r{i}"))
            .cloned()
            .expect("an input record")
    }

    fn sum(value: i64) -> StateView {
        let mut view = StateView::new();
        let addr = StateAddr {
            stage: "sum".into(),
            state: "sum".into(),
            key: Datum::from("k"),
            user_key: None,
        };
        view.0.insert(addr, Datum::from(value));
        view
    }

    fn started() -> Vec<Event> {
        vec![
            Event::JobStarted(JobStarted {
                job: "sum".into(),
                seed: 1,
                backend: "memory".into(),
                stages: vec![],
                interval_ms: 10,
                mode: CheckpointingMode::AtLeastOnce,
                restart: RestartStrategy::None,
            }),
            Event::AttemptStarted {
                attempt: 0,
                tasks: 4,
                channels: 3,
            },
        ]
    }

    /// What `sum[0]` emits when the sum is `total`.
    fn emitted(total: i64) -> Emission {
        Emission {
            value: transaction_datum("k", total),
            side: None,
        }
    }

    /// `sum[0]` processed record `i`, having summed to `total` with it.
    fn processed(i: usize, total: i64) -> Event {
        Event::RecordProcessed {
            task: "sum[0]".into(),
            record: record(i),
            outputs: vec![emitted(total)],
        }
    }

    fn snapshot(checkpoint: u64) -> Event {
        Event::Snapshot {
            checkpoint,
            task: "sum[0]".into(),
            keyed: None,
        }
    }

    fn restored(attempt: u32, checkpoint: u64, state: StateView) -> Vec<Event> {
        vec![
            Event::AttemptStarted {
                attempt,
                tasks: 4,
                channels: 3,
            },
            Event::Restored(Restored {
                attempt,
                from: RestoreSource::Checkpoint(checkpoint),
                positions: crate::job::Positions(vec![0, 0]),
                entries: 1,
                files: 1,
                no_claim: false,
                state,
            }),
        ]
    }

    /// The lineage findings (state and lineage violations; output is judged elsewhere) of a
    /// finished run with `events` and final sum `total`.
    fn judge(events: Vec<Event>, total: i64) -> Vec<Violation> {
        let mut trace = Trace::new();
        for event in events {
            trace.record(0, 0, event);
        }
        let input = input();
        let end = PhaseEnd {
            status: JobStatus::Finished,
            final_state: Some(sum(total)),
            end_positions: input.end_positions(),
            ..PhaseEnd::failed(String::new(), 2)
        };
        let outcome = RunOutcome::from_trace(trace, end, 2);
        let job = job();
        let jobs = [&job];
        let case = CaseSpec {
            jobs: &jobs,
            input: &input,
            mode: CheckpointingMode::AtLeastOnce,
            unaligned: false,
            seed: 1,
            users: &[],
        };
        check_case(&case, &outcome)
            .violations
            .into_iter()
            .filter(|v| !matches!(v, Violation::OutputLost { .. }))
            .collect()
    }

    #[test]
    fn a_replay_of_what_a_snapshot_already_counted_passes() {
        // chk-1 is taken after r0 and r1 reached the sum (r1 after the barrier: at-least-once);
        // the restore puts 11 back and the source replays r1 and r2 onto it.
        let mut events = started();
        events.extend([processed(0, 1), processed(1, 11), snapshot(1)]);
        events.extend(restored(1, 1, sum(11)));
        events.extend([processed(1, 21), processed(2, 121)]);
        assert_eq!(judge(events, 121), []);
    }

    #[test]
    fn restored_state_other_than_the_snapshot_s_is_caught() {
        let mut events = started();
        events.extend([processed(0, 1), snapshot(1), processed(1, 11)]);
        events.extend(restored(1, 1, sum(11)));
        events.extend([processed(1, 21), processed(2, 121)]);
        let violations = judge(events, 121);
        assert!(
            matches!(violations[0], Violation::RestoredState { .. }),
            "{violations:?}"
        );
    }

    #[test]
    fn a_record_received_twice_in_one_attempt_is_caught() {
        let mut events = started();
        events.extend([processed(0, 1), processed(0, 2), processed(1, 12)]);
        events.extend([processed(2, 112)]);
        let violations = judge(events, 112);
        assert!(
            matches!(&violations[0], Violation::ReceivedTwice { record, .. } if record.id == "r0"),
            "{violations:?}"
        );
    }

    #[test]
    fn a_key_s_records_out_of_input_order_are_caught() {
        let mut events = started();
        events.extend([processed(1, 10), processed(0, 11), processed(2, 111)]);
        let violations = judge(events, 111);
        assert!(
            matches!(&violations[0], Violation::ReceivedOutOfOrder { record, .. } if record.id == "r0"),
            "{violations:?}"
        );
    }

    #[test]
    fn a_record_missing_from_the_final_lineage_is_caught() {
        let mut events = started();
        events.extend([processed(0, 1), processed(2, 101)]);
        let violations = judge(events, 101);
        assert!(
            matches!(&violations[..], [Violation::NotReceived { record, .. }] if record.id == "r1"),
            "{violations:?}"
        );
    }

    #[test]
    fn an_emission_other_than_the_model_s_is_caught() {
        let mut events = started();
        events.extend([processed(0, 1), processed(1, 12), processed(2, 112)]);
        let violations = judge(events, 111);
        assert!(
            matches!(&violations[0], Violation::EmissionUnexpected { expected, actual, .. } if *expected == [emitted(11)] && *actual == [emitted(12)]),
            "{violations:?}"
        );
    }

    #[test]
    fn the_right_value_on_the_wrong_output_is_caught() {
        let mut events = started();
        let mut on_the_side = emitted(11);
        on_the_side.side = Some("late".into());
        events.extend([
            processed(0, 1),
            Event::RecordProcessed {
                task: "sum[0]".into(),
                record: record(1),
                outputs: vec![on_the_side.clone()],
            },
            processed(2, 111),
        ]);
        let violations = judge(events, 111);
        assert!(
            matches!(&violations[0], Violation::EmissionUnexpected { expected, actual, .. } if *expected == [emitted(11)] && *actual == [on_the_side]),
            "{violations:?}"
        );
    }

    #[test]
    fn a_record_other_than_the_one_sent_is_caught() {
        let mut events = started();
        let mut changed = record(1);
        changed.value = transaction_datum("k", 7);
        events.extend([
            processed(0, 1),
            Event::RecordProcessed {
                task: "sum[0]".into(),
                record: changed,
                outputs: vec![emitted(8)],
            },
            processed(2, 108),
        ]);
        let violations = judge(events, 108);
        assert!(
            matches!(&violations[0], Violation::ReceivedUnexpected { record, sent: Some(sent), .. } if record.value == transaction_datum("k", 7) && sent.value == transaction_datum("k", 10)),
            "{violations:?}"
        );
    }
}
