//! [`OperatorHarness`]: one operator driven step by step, as Flink's
//! `KeyedOneInputStreamOperatorTestHarness` drives one: feed it chosen records, snapshot it,
//! restore the snapshot into a fresh instance (at another parallelism, splitting or merging key
//! groups), notify it of completed checkpoints, and look at what it emitted and what its state
//! holds.
//!
//! Nothing is mocked: state lives in a real backend (memory, RocksDB full or incremental, or your
//! own factory), snapshots are written through that backend's real format into real files of a
//! checkpoint directory, and a restore reads them back from there. A harness is deterministic
//! and unit-test sized: no scheduler, no faults, no oracle; the campaign ([`crate::harness`])
//! is where those come in.
//!
//! ```
//! use faultline::job::{Record, Transaction};
//! use faultline::testing::{OperatorHarness, Operators, TestHarnessError};
//! use faultline::state::{BackendKind, ValueState};
//!
//! // The built-in running sum, as any operator would be given.
//! let sum = Operators::built_in(faultline::job::OperatorSpec::Sum);
//! let mut harness = OperatorHarness::builder(&sum).backend(BackendKind::Memory).open()?;
//! harness.process_element(Record::transaction("t1", "acct-1", 300))?;
//! harness.process_element(Record::transaction("t2", "acct-2", 7))?;
//! let snapshot = harness.snapshot(1)?;
//! harness.notify_checkpoint_complete(1);
//! harness.process_element(Record::transaction("t3", "acct-1", 5))?;
//! let emitted: Vec<i64> = harness.outputs_as::<Transaction>()?.iter().map(|t| t.amount_cents).collect();
//! assert_eq!(emitted, [300, 7, 305]);
//!
//! // A fresh instance, subtask 1 of 2, restores its half of the key groups from the snapshot:
//! // acct-1's sum is there (without t3, which came after the snapshot); acct-2's went to the
//! // other subtask.
//! const SUM: ValueState<i64> = ValueState::new("sum");
//! let mut restored = OperatorHarness::builder(&sum)
//!     .subtask(1, 2)
//!     .initialize_state(&[&snapshot])?;
//! assert_eq!(restored.get(&SUM, "acct-1")?, Some(300));
//! assert!(matches!(restored.get(&SUM, "acct-2"), Err(TestHarnessError::KeyNotOwned { .. })));
//! restored.process_element(Record::transaction("t4", "acct-1", 1))?;
//! assert_eq!(restored.outputs_as::<Transaction>()?[0].amount_cents, 301);
//! # Ok::<(), faultline::testing::TestHarnessError>(())
//! ```

use std::path::PathBuf;
use std::rc::Rc;

use crate::checkpoint::canonical::Compression;
use crate::checkpoint::{Durability, FsCheckpointStorage, KeyedStateHandle, StorageError};
use crate::job::keygroup::key_group_range;
use crate::job::operator::{build, fire_timer, TimerSite};
use crate::job::user::{OutputTag, UserOperator};
use crate::job::{
    Data, DataError, Datum, Operator, OperatorContext, OperatorError, OperatorSpec, Record,
};
use crate::state::timers::{TimeDomain, TimerQueue};
use crate::state::{
    BackendContext, BackendKind, BackendUnavailable, KeyGroupRange, KeyedContext, RestoreHandle,
    RestoreMode, SavepointFormat, SnapshotPurpose, SnapshotTarget, StateBackend,
    StateBackendFactory, StateError, StateView, ValueState,
};

/// What the harness drives: a user's operator, or a built-in one.
pub struct Operators<'a> {
    build: Box<dyn Fn(u16) -> Box<dyn Operator> + 'a>,
    keyed: bool,
    name: String,
}

impl<'a> Operators<'a> {
    /// A user's operator, built by its own builder.
    pub fn user(operator: &'a UserOperator) -> Self {
        Self {
            build: Box::new(|subtask| (operator.build)(subtask)),
            keyed: operator.keyed,
            name: operator.name.clone(),
        }
    }

    /// A built-in operator.
    pub fn built_in(spec: OperatorSpec) -> Self {
        let keyed = spec.is_keyed();
        let name = spec.label();
        Self {
            build: Box::new(move |_| build(&spec)),
            keyed,
            name,
        }
    }
}

/// Where the harness's state lives.
enum Backend<'a> {
    Kind(BackendKind),
    Factory(&'a dyn StateBackendFactory),
}

/// A harness that cannot do what it was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestHarnessError {
    /// The operator failed.
    #[error(transparent)]
    Operator(#[from] OperatorError),
    /// A key or value is not of the type asked for.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Its state backend failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The checkpoint directory could not be made or written.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The backend is not in this build.
    #[error(transparent)]
    Unavailable(#[from] BackendUnavailable),
    /// A temporary directory could not be made.
    #[error("{path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A record's key belongs to a key group this subtask does not own.
    #[error(
        "key {key:?} is in key group {key_group}, which subtask {subtask} does not own ({range})"
    )]
    KeyNotOwned {
        /// The key.
        key: Datum,
        /// Its key group.
        key_group: u16,
        /// This subtask.
        subtask: u16,
        /// The key groups it owns.
        range: KeyGroupRange,
    },
    /// Key groups or maximum parallelism do not fit together.
    #[error("{0}")]
    Shape(String),
}

/// One subtask's snapshot: its keyed state's handle (its files stay in the harness's checkpoint
/// directory while any snapshot or harness holds it) and its operator state.
#[derive(Debug, Clone)]
pub struct OperatorSnapshot {
    /// The checkpoint id.
    pub checkpoint_id: u64,
    /// The key groups the subtask owned.
    pub key_groups: KeyGroupRange,
    /// The subtask's index.
    pub subtask: u16,
    /// The parallelism it ran at.
    pub parallelism: u16,
    /// The maximum parallelism it ran with.
    pub max_parallelism: u16,
    /// Its keyed state, as `_metadata` would record it.
    pub keyed: Option<KeyedStateHandle>,
    /// Its operator (non-keyed) state.
    pub operator_state: Vec<u8>,
    root: Rc<Root>,
}

/// The checkpoint directory instances share, and how many instances have written to it.
#[derive(Debug)]
struct Root {
    dir: tempfile::TempDir,
    instances: std::cell::Cell<u32>,
}

/// How to build a harness; see the module doc.
pub struct Builder<'a> {
    operators: &'a Operators<'a>,
    backend: Backend<'a>,
    max_parallelism: u16,
    parallelism: u16,
    subtask: u16,
}

impl<'a> Builder<'a> {
    /// The state backend (default memory).
    pub fn backend(mut self, kind: BackendKind) -> Self {
        self.backend = Backend::Kind(kind);
        self
    }

    /// Your own backend, in place of a built-in one.
    pub fn backend_factory(mut self, factory: &'a dyn StateBackendFactory) -> Self {
        self.backend = Backend::Factory(factory);
        self
    }

    /// The maximum parallelism: how many key groups there are (default 128).
    pub fn max_parallelism(mut self, max_parallelism: u16) -> Self {
        self.max_parallelism = max_parallelism;
        self
    }

    /// Which subtask of how many this instance is (default 0 of 1): it owns that share of the
    /// key groups, as Flink assigns them.
    pub fn subtask(mut self, subtask: u16, parallelism: u16) -> Self {
        self.subtask = subtask;
        self.parallelism = parallelism;
        self
    }

    /// A fresh instance with empty state.
    pub fn open(self) -> Result<OperatorHarness<'a>, TestHarnessError> {
        let root = Rc::new(Root {
            dir: temp_dir()?,
            instances: std::cell::Cell::new(0),
        });
        self.start(root, &[])
    }

    /// A fresh instance restored from `snapshots` (one per subtask of the run that took them;
    /// the ones whose key groups overlap this subtask's are read, as after a rescale).
    pub fn initialize_state(
        self,
        snapshots: &[&OperatorSnapshot],
    ) -> Result<OperatorHarness<'a>, TestHarnessError> {
        let Some(first) = snapshots.first() else {
            return self.open();
        };
        if let Some(other) = snapshots
            .iter()
            .find(|s| s.max_parallelism != self.max_parallelism)
        {
            return Err(TestHarnessError::Shape(format!(
                "a snapshot taken at maximum parallelism {} cannot restore at {} (key groups are fixed for a job's life)",
                other.max_parallelism, self.max_parallelism
            )));
        }
        if snapshots.iter().any(|s| !Rc::ptr_eq(&s.root, &first.root)) {
            return Err(TestHarnessError::Shape(
                "the snapshots come from harnesses with different checkpoint directories: restore instances from one opened harness's snapshots (or from instances restored from them)".into(),
            ));
        }
        let root = Rc::clone(&first.root);
        self.start(root, snapshots)
    }

    fn start(
        self,
        root: Rc<Root>,
        snapshots: &[&OperatorSnapshot],
    ) -> Result<OperatorHarness<'a>, TestHarnessError> {
        if self.parallelism == 0 || self.subtask >= self.parallelism {
            return Err(TestHarnessError::Shape(format!(
                "subtask {} of {} does not exist",
                self.subtask, self.parallelism
            )));
        }
        if self.parallelism > self.max_parallelism {
            return Err(TestHarnessError::Shape(format!(
                "parallelism {} exceeds the maximum parallelism {}",
                self.parallelism, self.max_parallelism
            )));
        }
        let key_groups = key_group_range(self.max_parallelism, self.parallelism, self.subtask);
        let storage = FsCheckpointStorage::new(root.dir.path(), Durability::PageCache)?;
        let work = temp_dir()?;
        // Unique among the instances writing to one checkpoint directory, so the files they
        // share never collide.
        let instance = root.instances.get();
        root.instances.set(instance + 1);
        let mut backend = if self.operators.keyed {
            Some(self.create_backend(key_groups, &work, instance)?)
        } else {
            None
        };
        if let Some(backend) = backend.as_deref_mut() {
            let handles = RestoreHandle::overlapping(
                snapshots.iter().map(|s| (s.key_groups, s.keyed.as_ref())),
                key_groups,
            );
            if !handles.is_empty() {
                backend.restore(&handles, &storage, RestoreMode::Claim)?;
            }
        }
        let timers = match backend.as_deref() {
            Some(backend) => TimerQueue::from_backend(backend)?,
            None => TimerQueue::default(),
        };
        let mut operator = (self.operators.build)(self.subtask);
        operator.open(match &mut backend {
            Some(backend) => Some(backend.as_mut()),
            None => None,
        })?;
        if !snapshots.is_empty() {
            operator.restore_state(&operator_states(snapshots, self.subtask, self.parallelism))?;
        }
        Ok(OperatorHarness {
            operators: self.operators,
            max_parallelism: self.max_parallelism,
            subtask: self.subtask,
            parallelism: self.parallelism,
            key_groups,
            operator,
            backend,
            storage,
            root,
            _work: work,
            outputs: Vec::new(),
            side_outputs: Vec::new(),
            attempt: u32::from(!snapshots.is_empty()),
            timers,
            watermark_ms: i64::MIN,
            now_ms: 0,
        })
    }

    fn create_backend(
        &self,
        key_groups: KeyGroupRange,
        work: &tempfile::TempDir,
        instance: u32,
    ) -> Result<Box<dyn StateBackend>, TestHarnessError> {
        let context = BackendContext {
            task_name: format!("{}-{}", self.operators.name, self.subtask),
            instance: format!("h{instance}"),
            key_groups,
            working_dir: work.path().to_path_buf(),
            // The harness's clock is the caller's: a fresh instance starts at 0.
            created_ms: 0,
        };
        Ok(match &self.backend {
            Backend::Kind(kind) => kind.factory()?.create(context)?,
            Backend::Factory(factory) => factory.create(context)?,
        })
    }
}

/// The operator states a subtask restores, as the engine hands them out: at the parallelism
/// the snapshots were taken at, the subtask's own; after a change, every old subtask's to
/// subtask 0 (in old-subtask order) and none to the others.
fn operator_states(
    snapshots: &[&OperatorSnapshot],
    subtask: u16,
    parallelism: u16,
) -> Vec<Vec<u8>> {
    let rescaled = snapshots.iter().any(|s| s.parallelism != parallelism);
    let mut ordered: Vec<&&OperatorSnapshot> = snapshots.iter().collect();
    ordered.sort_by_key(|s| s.subtask);
    match (rescaled, subtask) {
        (false, own) => ordered
            .iter()
            .filter(|s| s.subtask == own)
            .map(|s| s.operator_state.clone())
            .collect(),
        (true, 0) => ordered.iter().map(|s| s.operator_state.clone()).collect(),
        (true, _) => Vec::new(),
    }
}

fn temp_dir() -> Result<tempfile::TempDir, TestHarnessError> {
    tempfile::tempdir().map_err(|source| TestHarnessError::Io {
        path: std::env::temp_dir(),
        source,
    })
}

/// One operator instance under test; see the module doc.
pub struct OperatorHarness<'a> {
    operators: &'a Operators<'a>,
    max_parallelism: u16,
    subtask: u16,
    parallelism: u16,
    key_groups: KeyGroupRange,
    operator: Box<dyn Operator>,
    backend: Option<Box<dyn StateBackend>>,
    storage: FsCheckpointStorage,
    root: Rc<Root>,
    _work: tempfile::TempDir,
    outputs: Vec<Record>,
    side_outputs: Vec<Record>,
    attempt: u32,
    timers: TimerQueue,
    watermark_ms: i64,
    now_ms: u64,
}

impl<'a> OperatorHarness<'a> {
    /// How to build one for `operators`.
    pub fn builder(operators: &'a Operators<'a>) -> Builder<'a> {
        Builder {
            operators,
            backend: Backend::Kind(BackendKind::Memory),
            max_parallelism: 128,
            parallelism: 1,
            subtask: 0,
        }
    }

    /// Feeds one record; what the operator emits on its main output is appended to
    /// [`OperatorHarness::outputs`] and returned, what it emits on side outputs is kept for
    /// [`OperatorHarness::side_outputs`]. A record whose key this subtask does not own is refused, as the engine's
    /// routing would never deliver it.
    pub fn process_element(&mut self, record: Record) -> Result<&[Record], TestHarnessError> {
        let key_group = record.key.key_group(self.max_parallelism);
        if self.backend.is_some() && !self.key_groups.contains(key_group) {
            return Err(self.not_owned(record.key, key_group));
        }
        let key = record.key.clone();
        let at_ms = record.timestamp_ms;
        let keyed = self.backend.as_deref_mut().map(|backend| {
            KeyedContext::new(backend, key_group, key.as_bytes()).at_time(
                at_ms,
                self.watermark_ms,
                self.now_ms,
            )
        });
        let mut ctx = OperatorContext::new(self.attempt, self.subtask, keyed)
            .at(self.watermark_ms, self.now_ms);
        let mut emitted = Vec::new();
        let result = self.operator.process(record, &mut ctx, &mut emitted);
        for change in ctx.take_timer_changes() {
            self.timers.apply(&key, &change);
        }
        result?;
        Ok(self.keep(emitted))
    }

    /// Keeps what one call emitted; returns its main output.
    fn keep(&mut self, emitted: Vec<Record>) -> &[Record] {
        let before = self.outputs.len();
        for record in emitted {
            match record.side {
                None => self.outputs.push(record),
                Some(_) => self.side_outputs.push(record),
            }
        }
        &self.outputs[before..]
    }

    /// A watermark arrives: the event-time timers at or before it fire, in order (timestamp,
    /// then key), as they would in the engine; returns the main output they emitted. A
    /// watermark not past the current one changes nothing.
    pub fn process_watermark(&mut self, watermark_ms: i64) -> Result<&[Record], TestHarnessError> {
        if watermark_ms <= self.watermark_ms {
            return Ok(&[]);
        }
        self.watermark_ms = watermark_ms;
        self.fire(TimeDomain::EventTime, watermark_ms)
    }

    /// The virtual clock moves to `now_ms` (never back): the processing-time timers due fire.
    pub fn set_processing_time(&mut self, now_ms: u64) -> Result<&[Record], TestHarnessError> {
        self.now_ms = self.now_ms.max(now_ms);
        let due = i64::try_from(self.now_ms).unwrap_or(i64::MAX);
        self.fire(TimeDomain::ProcessingTime, due)
    }

    /// The timers waiting, of both clocks.
    pub fn pending_timers(&self) -> usize {
        self.timers.len()
    }

    fn fire(&mut self, domain: TimeDomain, time_ms: i64) -> Result<&[Record], TestHarnessError> {
        let mut emitted = Vec::new();
        while let Some(timer) = self.timers.pop_due(domain, time_ms) {
            let Some(backend) = self.backend.as_deref_mut() else {
                break;
            };
            let site = TimerSite {
                attempt: self.attempt,
                subtask: self.subtask,
                watermark_ms: self.watermark_ms,
                now_ms: self.now_ms,
                max_parallelism: self.max_parallelism,
            };
            let operator = self.operator.as_mut();
            let timers = &mut self.timers;
            let fired = fire_timer(operator, backend, timers, &timer, site, &mut emitted);
            let failed = match fired {
                Ok(Ok(())) => None,
                Ok(Err(error)) => Some(TestHarnessError::from(error)),
                Err(error) => Some(TestHarnessError::from(error)),
            };
            if let Some(error) = failed {
                // What the timers before it emitted is kept: their cells are gone.
                self.keep(emitted);
                return Err(error);
            }
        }
        Ok(self.keep(emitted))
    }

    /// The values of the main output so far, as `T`s.
    pub fn outputs_as<T: Data>(&self) -> Result<Vec<T>, TestHarnessError> {
        Ok(self
            .outputs
            .iter()
            .map(Record::value_as)
            .collect::<Result<_, DataError>>()?)
    }

    /// The values emitted on side output `tag` so far, in order.
    pub fn side_outputs<T: Data>(&self, tag: &OutputTag<T>) -> Result<Vec<T>, TestHarnessError> {
        Ok(self
            .side_outputs
            .iter()
            .filter(|r| r.side.as_deref() == Some(tag.name()))
            .map(Record::value_as)
            .collect::<Result<_, DataError>>()?)
    }

    fn not_owned(&self, key: Datum, key_group: u16) -> TestHarnessError {
        TestHarnessError::KeyNotOwned {
            key,
            key_group,
            subtask: self.subtask,
            range: self.key_groups,
        }
    }

    /// The main output's records so far, in order (side outputs are kept apart).
    pub fn outputs(&self) -> &[Record] {
        &self.outputs
    }

    /// Takes what was emitted so far, leaving none.
    pub fn take_outputs(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.outputs)
    }

    /// Snapshots the operator as a checkpoint barrier would: its keyed state through the
    /// backend into real files under `chk-{checkpoint_id}` of the harness's checkpoint
    /// directory, and its operator state. Use each id once per instance, as a job does: a
    /// second snapshot under one id writes over the first's files.
    pub fn snapshot(&mut self, checkpoint_id: u64) -> Result<OperatorSnapshot, TestHarnessError> {
        let dir = crate::checkpoint::registry::checkpoint_dir(checkpoint_id);
        self.snapshot_as(checkpoint_id, dir, SnapshotPurpose::Checkpoint)
    }

    /// Takes a savepoint in `format` under `savepoints/sp-{checkpoint_id}`: a canonical one
    /// restores into any backend (timers included), a native one into the backend that wrote
    /// it.
    pub fn savepoint(
        &mut self,
        checkpoint_id: u64,
        format: SavepointFormat,
    ) -> Result<OperatorSnapshot, TestHarnessError> {
        let dir = crate::checkpoint::RelPath::new(&format!("savepoints/sp-{checkpoint_id}"))
            .expect("savepoints/sp-<id> is a valid relative path");
        self.snapshot_as(checkpoint_id, dir, SnapshotPurpose::Savepoint(format))
    }

    fn snapshot_as(
        &mut self,
        checkpoint_id: u64,
        dir: crate::checkpoint::RelPath,
        purpose: SnapshotPurpose,
    ) -> Result<OperatorSnapshot, TestHarnessError> {
        let keyed = match self.backend.as_deref_mut() {
            Some(backend) => {
                let target = SnapshotTarget {
                    checkpoint_id,
                    dir,
                    purpose,
                    compression: Compression::None,
                    now_ms: self.now_ms,
                };
                Some(backend.snapshot(&target, &mut self.storage)?.handle)
            }
            None => None,
        };
        Ok(OperatorSnapshot {
            checkpoint_id,
            key_groups: self.key_groups,
            subtask: self.subtask,
            parallelism: self.parallelism,
            max_parallelism: self.max_parallelism,
            keyed,
            operator_state: self.operator.snapshot_state(),
            root: Rc::clone(&self.root),
        })
    }

    /// Checkpoint `checkpoint_id` completed: an incremental backend may now reuse its files.
    pub fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) {
        if let Some(backend) = self.backend.as_deref_mut() {
            backend.notify_checkpoint_complete(checkpoint_id);
        }
    }

    /// The operator's keyed state now, decoded, under the stage name `operator`: what a read
    /// at the harness's processing time could see (TTL values expired by then left out).
    pub fn state(&self) -> Result<StateView, TestHarnessError> {
        let mut view = StateView::new();
        if let Some(backend) = self.backend.as_deref() {
            let entries = backend.entries()?;
            view.add_live_entries("operator", backend.states(), &entries, self.now_ms)?;
        }
        Ok(view)
    }

    /// The value of `state` for `key`, read through the descriptor as the operator reads it
    /// (a key another subtask owns is refused, as in [`OperatorHarness::process_element`]);
    /// see [`OperatorHarness::state`] for everything at once.
    pub fn get<T: Data, K: serde::Serialize + ?Sized>(
        &mut self,
        state: &ValueState<T>,
        key: &K,
    ) -> Result<Option<T>, TestHarnessError> {
        let key = Datum::of(key)?;
        let key_group = key.key_group(self.max_parallelism);
        match self.backend.as_deref_mut() {
            Some(backend) if backend.key_groups().contains(key_group) => {
                Ok(state.get(&KeyedContext::new(backend, key_group, key.as_bytes()))?)
            }
            Some(_) => Err(self.not_owned(key, key_group)),
            None => Ok(None),
        }
    }

    /// The key groups this subtask owns.
    pub fn key_groups(&self) -> KeyGroupRange {
        self.key_groups
    }

    /// The checkpoint directory snapshots are written to (shared with every instance restored
    /// from them).
    pub fn checkpoint_dir(&self) -> &std::path::Path {
        self.root.dir.path()
    }

    /// The operator driven, by name.
    pub fn operator_name(&self) -> &str {
        &self.operators.name
    }
}
