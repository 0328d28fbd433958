//! Method: a catalogue of recovery bug classes, each a deliberately broken implementation
//! plugged into a public seam (`Operator`, `Source`, `Sink`, `StateBackend`) through
//! `faultline::harness::Harness`, or, for the engine's own channel-state restore (dropped on
//! rescale, given to the old subtask index, replayed after new input) and for a NO_CLAIM
//! restore that lets the backends claim the restored files, one of its test-only defect
//! switches (`Sabotage`). Each must be caught within a
//! bounded number of cases (`CASES_MAX`), shrunk to at most three faults, and reported under
//! the property it breaks.
//!
//! The suite runs each class on one seed; `FAULTLINE_CATALOGUE_SEEDS=20` runs twenty and
//! prints the figures (cases until the first failure, shrunk size, properties named) the
//! closing notes report, and `FAULTLINE_CATALOGUE_DEBUG=1` prints each seed's violations.

use std::collections::{BTreeMap, BTreeSet};

use crate::examples::inactivity::inactivity;
use crate::examples::running_total::running_total;
use crate::support::{delegate_cell_access, delegate_sink, delete_cells, TwistedFactory};
use faultline::campaign::{ExploreReport, ReportedViolation};
use faultline::check::Property;
use faultline::checkpoint::{CheckpointStorage, KeyedStateHandle, NamedFile};
use faultline::harness::Harness;
use faultline::job::sink::{ExternalStore, Sink, StoreError, TwoPhaseCommitSink, TxnEvent};
use faultline::job::source::{PartitionReader, Source, SourceInput};
use faultline::job::user::{ModelState, UserOperator};
use faultline::job::window::{window_max_ms, Contents, WINDOWS};
use faultline::job::{
    Datum, Operator, OperatorContext, OperatorError, OperatorSpec, Record, Transaction, WindowShape,
};
use faultline::state::timers::{TimeDomain, Timer};
use faultline::state::ttl::TtlCell;
use faultline::state::{
    BackendContext, CellRef, MemoryBackend, RestoreHandle, RestoreMode, RestoreStats,
    SnapshotPurpose, SnapshotResult, SnapshotTarget, StateBackend, StateBackendFactory,
    StateDescriptor, StateError, StateKind, ValueType,
};

/// An operator that keeps the keys it armed a timer for in a field, and emits from a timer
/// only for keys in it: restored timers fire into an empty field after a restore, and their
/// alerts are dropped. Its own semantics claim the inactivity example's.
struct ArmedInAField {
    inner: Box<dyn Operator>,
    armed: BTreeSet<Datum>,
}

impl Operator for ArmedInAField {
    fn process(
        &mut self,
        record: Record,
        ctx: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        self.armed.insert(record.key.clone());
        self.inner.process(record, ctx, out)
    }

    fn on_timer(
        &mut self,
        timer: &Timer,
        ctx: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        let before = out.len();
        self.inner.on_timer(timer, ctx, out)?;
        if !self.armed.remove(&timer.key) {
            out.truncate(before);
        }
        Ok(())
    }
}

/// The most cases a class may take to be caught.
const CASES_MAX: u64 = 200;

/// 1. A two-phase sink that commits at the barrier instead of on completion: output of a
///    checkpoint that never completes is visible, and replayed after the restore.
struct CommitsInSnapshot(TwoPhaseCommitSink);

impl Sink for CommitsInSnapshot {
    delegate_sink!(0; write, restore);
    fn snapshot(
        &mut self,
        checkpoint_id: u64,
        store: &mut ExternalStore,
    ) -> Result<(Vec<u8>, Vec<TxnEvent>), StoreError> {
        let snapshot = self.0.snapshot(checkpoint_id, store)?;
        self.0.notify_checkpoint_complete(checkpoint_id, store)?;
        Ok(snapshot)
    }
    fn notify_checkpoint_complete(
        &mut self,
        _: u64,
        _: &mut ExternalStore,
    ) -> Result<Vec<TxnEvent>, StoreError> {
        Ok(Vec::new())
    }
}

/// 2. A sink whose commit on restore is not idempotent: it buffers each checkpoint's records
///    in its own state and "commits" by writing them out, on completion and again on restore,
///    without asking the external system whether that checkpoint's batch is already there.
#[derive(Default)]
struct RewritesOnRestore {
    buffer: Vec<Record>,
    pending: BTreeMap<u64, Vec<Record>>,
}

impl Sink for RewritesOnRestore {
    fn write(
        &mut self,
        record: Record,
        _: &mut ExternalStore,
    ) -> Result<Vec<TxnEvent>, StoreError> {
        self.buffer.push(record);
        Ok(Vec::new())
    }
    fn snapshot(
        &mut self,
        checkpoint_id: u64,
        _: &mut ExternalStore,
    ) -> Result<(Vec<u8>, Vec<TxnEvent>), StoreError> {
        self.pending
            .insert(checkpoint_id, std::mem::take(&mut self.buffer));
        let state = serde_json::to_vec(&self.pending).expect("records serialize");
        Ok((state, Vec::new()))
    }
    fn pending_transactions(&self) -> usize {
        self.pending.len()
    }
    fn notify_checkpoint_complete(
        &mut self,
        checkpoint_id: u64,
        store: &mut ExternalStore,
    ) -> Result<Vec<TxnEvent>, StoreError> {
        let done: Vec<u64> = self
            .pending
            .range(..=checkpoint_id)
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            for record in self.pending.remove(&id).expect("listed above") {
                store.print(record);
            }
        }
        Ok(Vec::new())
    }
    fn restore(
        &mut self,
        states: &[Vec<u8>],
        store: &mut ExternalStore,
    ) -> Result<Vec<TxnEvent>, StoreError> {
        for state in states {
            let pending: BTreeMap<u64, Vec<Record>> =
                serde_json::from_slice(state).map_err(|e| StoreError::Unknown(e.to_string()))?;
            // The bug: the batch may already be out (the notification came before the failure).
            for record in pending.into_values().flatten() {
                store.print(record);
            }
        }
        Ok(Vec::new())
    }
}

/// 3. A backend that drops the first key group it owns whenever a restore redistributes key
///    groups (the handles it restores from do not match its own range): a rescale loses state,
///    as if the range were computed exclusive of its start.
static DROPS_KEY_GROUP: TwistedFactory = TwistedFactory {
    name: "drops-key-group-on-rescale",
    after_restore: |backend, handles, _| {
        let own = backend.key_groups();
        if handles.iter().any(|handle| handle.key_groups != own) {
            delete_cells(backend, |entry| entry.key_group == own.start)?;
        }
        Ok(())
    },
};

/// The index of the timer state among `backend`'s states, once it has one.
fn timer_state(backend: &MemoryBackend) -> Option<usize> {
    (backend.states().iter()).position(|s| s.name == faultline::state::timers::TIMER_STATE)
}

/// A backend whose snapshots keep no timers (FLINK-21486's loss, in one backend): after a
/// restore no timer is left, so a window never fires and its contents stay.
static LOSES_TIMERS: TwistedFactory = TwistedFactory {
    name: "loses-timers",
    after_restore: |backend, _, _| match timer_state(backend) {
        Some(timers) => delete_cells(backend, |entry| usize::from(entry.state) == timers),
        None => Ok(()),
    },
};

/// A backend that restores timers only in key groups that hold other keyed state too
/// (FLINK-19741): the timers of a key whose only state is its timers are lost.
static TIMERS_ONLY_WITH_STATE: TwistedFactory = TwistedFactory {
    name: "timers-only-with-state",
    after_restore: |backend, _, _| {
        let Some(timers) = timer_state(backend) else {
            return Ok(());
        };
        let with_state: BTreeSet<u16> = (backend.entries()?.iter())
            .filter(|entry| usize::from(entry.state) != timers)
            .map(|entry| entry.key_group)
            .collect();
        delete_cells(backend, |entry| {
            usize::from(entry.state) == timers && !with_state.contains(&entry.key_group)
        })
    },
};

/// A backend whose restore stamps every TTL value as updated at the restore (as one that
/// rewrote restored values through a write path setting the current time would): a value
/// that had expired while the job was down lives a full TTL again, and every restored one
/// outlives its time.
pub static RESETS_TTL: TwistedFactory = TwistedFactory {
    name: "resets-ttl-on-restore",
    after_restore: |backend, _, restored_ms| {
        let states = backend.states().to_vec();
        for entry in backend.entries()? {
            if states[usize::from(entry.state)].value_type != ValueType::TtlJson {
                continue;
            }
            let cell = TtlCell::decode(&entry.value)?;
            let reset = TtlCell {
                last_access_ms: restored_ms,
                ..cell
            };
            let at = CellRef {
                state: entry.state,
                key_group: entry.key_group,
                key: &entry.key,
                user_key: &entry.user_key,
            };
            backend.put(at, &reset.encode())?;
        }
        Ok(())
    },
};

/// A reminder whose only state is its timers: each transaction sets an event-time timer half
/// a second after it, which emits one reminder for the account.
fn remind(
    ctx: &mut faultline::state::KeyedContext<'_>,
    _: Transaction,
    _: &mut faultline::job::user::Output<Transaction>,
) -> Result<(), OperatorError> {
    if let Some(at_ms) = ctx.timestamp_ms() {
        let due_ms = at_ms.saturating_add(500);
        ctx.register_timer(faultline::state::timers::TimeDomain::EventTime, due_ms, "")?;
    }
    Ok(())
}

fn reminded(
    _: &mut faultline::state::KeyedContext<'_>,
    timer: &Timer,
    out: &mut faultline::job::user::Output<Transaction>,
) -> Result<(), OperatorError> {
    out.emit(&Transaction {
        account: timer.key.get().unwrap_or_else(|_| timer.key.to_string()),
        amount_cents: 1,
    })
}

/// 4. An operator keeping its running total in a plain field instead of keyed state: nothing
///    of it is checkpointed, so a restore starts every total again from zero (the tutorial's
///    `FailingMapFunction` mistake, made with state).
#[derive(Default)]
struct PlainFieldTotal {
    totals: BTreeMap<Datum, i64>,
}

impl Operator for PlainFieldTotal {
    fn process(
        &mut self,
        record: Record,
        _: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        let tx: Transaction = record.value_as()?;
        let total = self.totals.entry(record.key.clone()).or_insert(0);
        *total = total.wrapping_add(tx.amount_cents);
        let amount_cents = *total;
        out.push(record.with_value(&Transaction { amount_cents, ..tx })?);
        Ok(())
    }
}

/// 5. A stateless operator whose output order depends on hash-map iteration order: it splits
///    each record in two and emits the parts in the order a `HashMap` lists them. The output is
///    right as a set, so only the determinism check (the same seed must give the same trace)
///    can see it.
struct HashOrderSplit;

impl Operator for HashOrderSplit {
    // The bug this class is about: iteration order of a std HashMap, seeded per instance.
    #[allow(clippy::disallowed_types)]
    fn process(
        &mut self,
        record: Record,
        _: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        let mut parts = std::collections::HashMap::new();
        for (suffix, value) in split_parts(&record)? {
            parts.insert(
                suffix,
                Record {
                    id: format!("{}.{suffix}", record.id),
                    value,
                    ..record.clone()
                },
            );
        }
        out.extend(parts.into_values());
        Ok(())
    }
}

/// The two parts of a record: the whole amount, and nothing.
fn split_parts(record: &Record) -> Result<[(&'static str, Datum); 2], OperatorError> {
    let tx: Transaction = record.value_as()?;
    let nothing = Transaction {
        amount_cents: 0,
        ..tx.clone()
    };
    Ok([("a", Datum::of(&tx)?), ("b", Datum::of(&nothing)?)])
}

fn split_model(_: &mut ModelState, record: Record) -> Result<Vec<Record>, OperatorError> {
    Ok(split_parts(&record)?
        .into_iter()
        .map(|(suffix, value)| Record {
            id: format!("{}.{suffix}", record.id),
            value,
            ..record.clone()
        })
        .collect())
}

/// 6. A two-phase sink that fails on a notification for a checkpoint it holds nothing for — a
///    late one (a newer notification already covered it) or a duplicate — though notifications
///    may come late, twice, or never.
struct StrictNotifications {
    inner: TwoPhaseCommitSink,
    pending: Vec<u64>,
}

impl Sink for StrictNotifications {
    delegate_sink!(inner; write, pending_transactions);
    fn snapshot(
        &mut self,
        checkpoint_id: u64,
        store: &mut ExternalStore,
    ) -> Result<(Vec<u8>, Vec<TxnEvent>), StoreError> {
        self.pending.push(checkpoint_id);
        self.inner.snapshot(checkpoint_id, store)
    }
    fn notify_checkpoint_complete(
        &mut self,
        checkpoint_id: u64,
        store: &mut ExternalStore,
    ) -> Result<Vec<TxnEvent>, StoreError> {
        if !self.pending.contains(&checkpoint_id) {
            return Err(StoreError::Unknown(format!(
                "notification for checkpoint {checkpoint_id}, which is not pending"
            )));
        }
        self.pending.retain(|id| *id > checkpoint_id);
        self.inner.notify_checkpoint_complete(checkpoint_id, store)
    }
    fn restore(
        &mut self,
        states: &[Vec<u8>],
        store: &mut ExternalStore,
    ) -> Result<Vec<TxnEvent>, StoreError> {
        self.pending.clear();
        self.inner.restore(states, store)
    }
}

fn strict_notifications(subtask: u16) -> Box<dyn Sink> {
    Box::new(StrictNotifications {
        inner: TwoPhaseCommitSink::new(subtask),
        pending: Vec::new(),
    })
}

/// 7. A two-phase sink that, on restore, commits the checkpointed transactions but never aborts
///    the one in progress at the failure (nor any begun later): their records stay in open
///    transactions forever, neither visible nor discarded.
struct SkipsAbortOnRestore(TwoPhaseCommitSink);

impl Sink for SkipsAbortOnRestore {
    delegate_sink!(0; write, snapshot, pending_transactions, notify_checkpoint_complete);
    fn restore(
        &mut self,
        states: &[Vec<u8>],
        store: &mut ExternalStore,
    ) -> Result<Vec<TxnEvent>, StoreError> {
        for state in states {
            let (_in_progress, pending) = TwoPhaseCommitSink::decode(state)?;
            for txn in pending.values() {
                store.commit(txn)?;
            }
            // The bug: `_in_progress` and anything begun after the checkpoint stay open.
        }
        Ok(Vec::new())
    }
}

fn skips_abort_on_restore(subtask: u16) -> Box<dyn Sink> {
    Box::new(SkipsAbortOnRestore(TwoPhaseCommitSink::new(subtask)))
}

/// The sink of class 1 (also the campaign tests' broken sink).
pub(crate) fn commits_in_snapshot(subtask: u16) -> Box<dyn Sink> {
    Box::new(CommitsInSnapshot(TwoPhaseCommitSink::new(subtask)))
}

fn rewrites_on_restore(_: u16) -> Box<dyn Sink> {
    Box::new(RewritesOnRestore::default())
}

/// 8. A source that never updates the positions it stores: every checkpoint holds where the
///    attempt began, so a restore reads again what the restored state already counts.
#[derive(Default)]
struct ForgetsPosition {
    reader: PartitionReader,
    opened_at: BTreeMap<u32, u64>,
}

impl Source for ForgetsPosition {
    fn open(&mut self, positions: &BTreeMap<u32, u64>) {
        self.opened_at = positions.clone();
        self.reader.open(positions);
    }
    fn poll(&mut self, input: &SourceInput<'_>) -> Option<(u32, u64)> {
        self.reader.poll(input)
    }
    fn snapshot(&mut self, _: u64) -> BTreeMap<u32, u64> {
        self.opened_at.clone()
    }
}

/// 9. A source that stores its position as it stands after emitting the next record rather
///    than at the barrier, as a reader that fetches one record ahead and stores its fetch
///    position does: the record emitted just after the barrier is counted in the checkpoint and
///    lost on restore.
#[derive(Default)]
struct StoresPositionAfterEmitting {
    reader: PartitionReader,
    /// Fetched, not yet emitted.
    fetched: Option<(u32, u64)>,
}

impl StoresPositionAfterEmitting {
    fn fetch(&mut self, input: &SourceInput<'_>) {
        if self.fetched.is_none() {
            self.fetched = self.reader.poll(input);
        }
    }
}

impl Source for StoresPositionAfterEmitting {
    fn open(&mut self, positions: &BTreeMap<u32, u64>) {
        self.reader.open(positions);
        self.fetched = None;
    }
    fn poll(&mut self, input: &SourceInput<'_>) -> Option<(u32, u64)> {
        self.fetch(input);
        let next = self.fetched.take();
        self.fetch(input);
        next
    }
    fn snapshot(&mut self, checkpoint_id: u64) -> BTreeMap<u32, u64> {
        // The bug: the fetch position includes the record still to go out after the barrier.
        self.reader.snapshot(checkpoint_id)
    }
}

/// A backend with its own checkpoint format: the memory backend's cells written to one file per
/// snapshot (a native handle) in a plain binary layout, so nothing in the format itself detects
/// damage. Each restore must check the file against the checksum its handle recorded; the
/// engine is told to leave that to the backend ([`Harness::backend_verifies_files`]).
struct OwnFormatFactory {
    name: &'static str,
    /// 12. When false, restore reads the file without checking it.
    verifies: bool,
}

static VERIFIES_ITS_FILES: OwnFormatFactory = OwnFormatFactory {
    name: "own-format-verified",
    verifies: true,
};

static SKIPS_CHECKSUMS: OwnFormatFactory = OwnFormatFactory {
    name: "own-format-unverified",
    verifies: false,
};

impl StateBackendFactory for OwnFormatFactory {
    fn name(&self) -> &'static str {
        self.name
    }
    fn create(&self, context: BackendContext) -> Result<Box<dyn StateBackend>, StateError> {
        Ok(Box::new(OwnFormat {
            inner: MemoryBackend::new(context.task_name.clone(), context.key_groups),
            task_name: context.task_name,
            name: self.name,
            verifies: self.verifies,
        }))
    }
}

struct OwnFormat {
    inner: MemoryBackend,
    task_name: String,
    name: &'static str,
    verifies: bool,
}

impl OwnFormat {
    fn error(&self, reason: impl std::fmt::Display) -> StateError {
        StateError::Backend {
            backend: self.name,
            reason: reason.to_string(),
        }
    }

    /// The format: the state count and each state (name, kind tag, value-type tag), then
    /// cells until the end of the file: key group (2 bytes), state (1), then key, map key and
    /// value, each a one-byte length and its bytes. No checksum, no count of cells.
    fn encode(&self) -> Result<Vec<u8>, StateError> {
        let mut bytes = Vec::new();
        let short = |bytes: &mut Vec<u8>, field: &[u8]| -> Result<(), StateError> {
            let len =
                u8::try_from(field.len()).map_err(|_| self.error("a field over 255 bytes"))?;
            bytes.push(len);
            bytes.extend_from_slice(field);
            Ok(())
        };
        let states = self.inner.states();
        bytes.push(u8::try_from(states.len()).map_err(|_| self.error("over 255 states"))?);
        for descriptor in states {
            short(&mut bytes, descriptor.name.as_bytes())?;
            bytes.push(descriptor.kind.tag());
            bytes.push(descriptor.value_type.tag());
        }
        for entry in self.inner.entries()? {
            bytes.extend_from_slice(&entry.key_group.to_le_bytes());
            bytes.push(u8::try_from(entry.state).map_err(|_| self.error("over 255 states"))?);
            short(&mut bytes, &entry.key)?;
            short(&mut bytes, &entry.user_key)?;
            short(&mut bytes, &entry.value)?;
        }
        Ok(bytes)
    }

    /// Loads the owned cells of one file written by `encode`, reading cells until the bytes
    /// end: lenient, as a reader that trusts its input is.
    fn load(&mut self, bytes: &[u8]) -> Result<u64, StateError> {
        let mut at = 0usize;
        let mut take = |n: usize| -> Option<&[u8]> {
            let field = bytes.get(at..at.checked_add(n)?)?;
            at += n;
            Some(field)
        };
        let backend = self.name;
        let cut = || StateError::Backend {
            backend,
            reason: "the state list is cut short".into(),
        };
        let count = take(1).ok_or_else(cut)?[0];
        let mut descriptors = Vec::new();
        for _ in 0..count {
            let len = usize::from(take(1).ok_or_else(cut)?[0]);
            let name = String::from_utf8_lossy(take(len).ok_or_else(cut)?).into_owned();
            let tags = take(2).ok_or_else(cut)?;
            descriptors.push((name, tags[0], tags[1]));
        }
        let mut cells = Vec::new();
        while let Some(head) = take(3) {
            let (key_group, state) = (u16::from_le_bytes([head[0], head[1]]), head[2]);
            let mut field = || -> Option<Vec<u8>> {
                let len = usize::from(take(1)?[0]);
                take(len).map(<[u8]>::to_vec)
            };
            let (Some(key), Some(user_key), Some(value)) = (field(), field(), field()) else {
                break;
            };
            cells.push((key_group, state, key, user_key, value));
        }
        let mut ids = Vec::new();
        for (name, kind, value_type) in descriptors {
            let descriptor = StateDescriptor {
                name,
                kind: StateKind::from_tag(kind).ok_or_else(|| self.error("bad state kind"))?,
                value_type: ValueType::from_tag(value_type)
                    .ok_or_else(|| self.error("bad value type"))?,
            };
            ids.push(self.inner.register_state(&descriptor)?);
        }
        let owned = self.inner.key_groups();
        let mut loaded = 0;
        for (key_group, state, key, user_key, value) in cells {
            if !owned.contains(key_group) {
                continue;
            }
            let state = *ids
                .get(usize::from(state))
                .ok_or_else(|| self.error("a cell names an undeclared state"))?;
            let cell = CellRef {
                state,
                key_group,
                key: &key,
                user_key: &user_key,
            };
            self.inner.put(cell, &value)?;
            loaded += 1;
        }
        Ok(loaded)
    }
}

impl StateBackend for OwnFormat {
    fn name(&self) -> &'static str {
        self.name
    }
    delegate_cell_access!();
    fn snapshot(
        &mut self,
        target: &SnapshotTarget,
        storage: &mut dyn CheckpointStorage,
    ) -> Result<SnapshotResult, StateError> {
        if target.purpose != SnapshotPurpose::Checkpoint {
            // Savepoints stay canonical, so a rescale can redistribute them.
            return self.inner.snapshot(target, storage);
        }
        let bytes = self.encode()?;
        let path = target
            .dir
            .join(&format!("{}.cells", self.task_name))
            .map_err(|e| self.error(e))?;
        let file = storage.write(&path, &bytes)?;
        Ok(SnapshotResult {
            bytes_written: file.size,
            handle: KeyedStateHandle::Native {
                shared: Vec::new(),
                private: vec![NamedFile {
                    local_name: "cells".into(),
                    file,
                }],
            },
            files_written: 1,
            files_reused: 0,
        })
    }
    fn restore(
        &mut self,
        handles: &[RestoreHandle],
        storage: &dyn CheckpointStorage,
        mode: RestoreMode,
    ) -> Result<RestoreStats, StateError> {
        // Canonical savepoints (all of them at once: the memory backend's restore replaces
        // what it held), then its own files.
        let canonical: Vec<RestoreHandle> = handles
            .iter()
            .filter(|h| matches!(h.handle, KeyedStateHandle::Canonical(_)))
            .cloned()
            .collect();
        let mut stats = self.inner.restore(&canonical, storage, mode)?;
        for handle in handles {
            match &handle.handle {
                KeyedStateHandle::Canonical(_) => {}
                KeyedStateHandle::Native { private, .. } => {
                    let file = &private.first().ok_or_else(|| self.error("no file"))?.file;
                    let bytes = if self.verifies {
                        faultline::state::snapshot::read_verified(storage, file)?
                    } else {
                        // The bug: the bytes are trusted as they are.
                        storage.read(&file.path)?
                    };
                    stats.entries += self.load(&bytes).map_err(|e| StateError::DamagedFile {
                        file: file.path.to_string(),
                        reason: e.to_string(),
                    })?;
                    stats.files += 1;
                }
                _ => return Err(self.error("a keyed-state handle of an unknown kind")),
            }
        }
        Ok(stats)
    }
}

fn forgets_position(_: u16) -> Box<dyn Source> {
    Box::new(ForgetsPosition::default())
}

fn stores_position_after_emitting(_: u16) -> Box<dyn Source> {
    Box::new(StoresPositionAfterEmitting::default())
}

/// What one class found on one seed.
#[derive(Debug)]
struct Caught {
    cases: u64,
    faults: usize,
    records: u32,
    local_minimum: bool,
    violations: Vec<ReportedViolation>,
}

fn caught(report: &ExploreReport) -> Option<Caught> {
    report.failures.first().map(|failure| Caught {
        cases: failure.case + 1,
        faults: failure.faults.1,
        records: failure.records.1,
        local_minimum: failure.local_minimum,
        violations: failure.violations.clone(),
    })
}

fn seeds() -> u64 {
    std::env::var("FAULTLINE_CATALOGUE_SEEDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(1)
}

/// Runs a harness built by `harness` on every seed and checks the catalogue's promises: caught
/// within `CASES_MAX` cases on at least half the seeds (so the median is within it; with one
/// seed, on that seed), every catch shrunk to at most three faults and reported as a violation
/// of one of `properties`.
fn check_class(class: &str, properties: &[Property], harness: impl Fn() -> Harness<'static>) {
    let dir = tempfile::tempdir().unwrap();
    let mut found = Vec::new();
    let mut missed = Vec::new();
    for seed in 1..=seeds() {
        let report = harness()
            .seed(seed)
            .cases(CASES_MAX)
            .failures_dir(dir.path())
            .try_run()
            .unwrap();
        let Some(caught) = caught(&report) else {
            missed.push(seed);
            continue;
        };
        assert!(caught.faults <= 3, "{class}, seed {seed}: {caught:?}");
        assert!(
            caught
                .violations
                .iter()
                .any(|v| properties.contains(&v.property)),
            "{class}, seed {seed}: expected a violation of {properties:?}, got {caught:?}"
        );
        if std::env::var("FAULTLINE_CATALOGUE_DEBUG").is_ok() {
            eprintln!("{class}, seed {seed}: {:?}", caught.violations);
        }
        found.push(caught);
    }
    let mut cases: Vec<u64> = found.iter().map(|c| c.cases).collect();
    // A miss counts as more than CASES_MAX cases.
    cases.extend(missed.iter().map(|_| CASES_MAX + 1));
    cases.sort_unstable();
    let median = cases[cases.len() / 2];
    let faults = found.iter().map(|c| c.faults).max().unwrap_or(0);
    let records: Vec<u32> = found.iter().map(|c| c.records).collect();
    let minimal = found.iter().filter(|c| c.local_minimum).count();
    let mut sizes: Vec<usize> = found
        .iter()
        .map(|c| c.faults + c.records as usize)
        .collect();
    sizes.sort_unstable();
    let size_median = sizes.get(sizes.len() / 2).copied().unwrap_or(0);
    let named: BTreeSet<&str> = found
        .iter()
        .flat_map(|c| &c.violations)
        .map(|v| v.property.name())
        .collect();
    eprintln!(
        "catalogue {class}: {} seeds, caught on {}, cases until caught median {median}, shrunk to <= {faults} faults, records {records:?}, at a local minimum {minimal} of {}, faults + records median {size_median}, missed seeds {missed:?}, properties {named:?}",
        seeds(),
        found.len(),
        found.len(),
    );
    assert!(
        median <= CASES_MAX,
        "{class}: median {median} cases, more than {CASES_MAX} (missed seeds {missed:?})"
    );
}

#[test]
fn a_sink_committing_in_snapshot_is_caught() {
    check_class("commit in snapshot", &[Property::Output], || {
        Harness::new().sink(&commits_in_snapshot)
    });
}

#[test]
fn a_sink_whose_commit_on_restore_is_not_idempotent_is_caught() {
    check_class(
        "non-idempotent commit on restore",
        &[Property::Output],
        || Harness::new().sink(&rewrites_on_restore),
    );
}

#[test]
fn an_operator_keeping_state_in_a_plain_field_is_caught() {
    static OPERATORS: std::sync::OnceLock<[UserOperator; 1]> = std::sync::OnceLock::new();
    let operators = OPERATORS.get_or_init(|| {
        // The semantics the broken operator claims: the example's correct model.
        [UserOperator {
            name: "plain-field-total".into(),
            build: Box::new(|_| Box::new(PlainFieldTotal::default())),
            ..running_total()
        }]
    });
    check_class("state in a plain field", &[Property::State], || {
        Harness::new().operators(operators)
    });
}

#[test]
fn an_operator_keeping_its_timers_in_a_field_is_caught() {
    static OPERATORS: std::sync::OnceLock<[UserOperator; 1]> = std::sync::OnceLock::new();
    let operators = OPERATORS.get_or_init(|| {
        let honest = inactivity();
        [UserOperator {
            name: "armed-in-a-field".into(),
            build: Box::new(|subtask| {
                Box::new(ArmedInAField {
                    inner: (inactivity().build)(subtask),
                    armed: BTreeSet::new(),
                })
            }),
            ..honest
        }]
    });
    check_class("timers kept in a field", &[Property::Output], || {
        Harness::new().operators(operators)
    });
}

#[test]
fn an_operator_depending_on_hash_order_is_caught_by_the_determinism_check() {
    static OPERATORS: std::sync::OnceLock<[UserOperator; 1]> = std::sync::OnceLock::new();
    let operators = OPERATORS.get_or_init(|| {
        [UserOperator::new(
            "hash-order-split",
            false,
            |_| Box::new(HashOrderSplit),
            split_model,
        )]
    });
    // A keyed stage downstream turns the order into different running values, which the
    // output check may see first.
    check_class(
        "output order from hash-map order",
        &[Property::Determinism, Property::Output],
        || Harness::new().operators(operators).check_determinism(),
    );
}

#[test]
fn a_sink_failing_on_a_late_or_duplicated_notification_is_caught() {
    check_class(
        "fails on a late notification",
        &[Property::Notification],
        || {
            Harness::new().sink(&strict_notifications).faults(&[
                "delay-notification",
                "drop-notification",
                "kill",
            ])
        },
    );
}

#[test]
fn a_sink_skipping_the_abort_of_its_transaction_on_restore_is_caught() {
    check_class("skips abort on restore", &[Property::Transactions], || {
        Harness::new().sink(&skips_abort_on_restore)
    });
}

#[test]
fn a_backend_dropping_a_key_group_on_rescale_is_caught() {
    check_class("drops a key group on rescale", &[Property::State], || {
        Harness::new().backend(&DROPS_KEY_GROUP)
    });
}

#[test]
fn a_backend_whose_snapshots_keep_no_timers_is_caught() {
    check_class("snapshots keep no timers", &[Property::State], || {
        Harness::new().backend(&LOSES_TIMERS)
    });
}

#[test]
fn a_backend_restoring_timers_only_with_other_state_is_caught() {
    static OPERATORS: std::sync::OnceLock<[UserOperator; 1]> = std::sync::OnceLock::new();
    let operators = OPERATORS.get_or_init(|| {
        [UserOperator::keyed_with_timers(
            "reminder",
            (remind, reminded),
            (remind, reminded),
        )]
    });
    check_class(
        "timers restored only with other state",
        &[Property::State, Property::Output],
        || {
            Harness::new()
                .backend(&TIMERS_ONLY_WITH_STATE)
                .operators(operators)
        },
    );
}

#[test]
fn a_backend_resetting_ttl_timestamps_on_restore_is_caught() {
    static OPERATORS: std::sync::OnceLock<[UserOperator; 1]> = std::sync::OnceLock::new();
    let operators = OPERATORS.get_or_init(|| [crate::ttl::balance_operator()]);
    check_class("ttl reset on restore", &[Property::State], || {
        Harness::new().backend(&RESETS_TTL).operators(operators)
    });
}

#[test]
fn the_reminder_passes_on_the_built_in_backends() {
    // The class above is the backend's: the same operator passes where timers are restored.
    let operators = [UserOperator::keyed_with_timers(
        "reminder",
        (remind, reminded),
        (remind, reminded),
    )];
    let report = Harness::new().cases(60).operators(&operators).run();
    assert_eq!(report.cases, 60);
    assert!(report.failures.is_empty());
    assert!(report.restores > 0);
}

#[test]
fn a_backend_skipping_checksum_verification_is_caught_by_corruption_faults() {
    check_class(
        "skips checksum verification",
        // Damage restored unnoticed (corruption, state), or damage the backend decodes into
        // an error that names no file, so the job fails without failing loudly (liveness).
        &[Property::Corruption, Property::State, Property::Liveness],
        || {
            Harness::new()
                .backend(&SKIPS_CHECKSUMS)
                .backend_verifies_files()
                .faults(&["corrupt", "panic", "panic-in-snapshot"])
                .records_max(200)
        },
    );
}

#[test]
fn a_backend_verifying_its_own_files_passes_under_corruption_faults() {
    let report = Harness::new()
        .cases(400)
        .backend(&VERIFIES_ITS_FILES)
        .backend_verifies_files()
        .faults(&["corrupt", "panic", "panic-in-snapshot"])
        .records_max(200)
        .run();
    assert_eq!(report.cases, 400);
    assert!(report.failures.is_empty());
    assert!(
        report.loud_failures > 0,
        "corruption reached the backend, which failed loudly on it"
    );
}

#[test]
fn the_built_in_backends_verify_their_own_files_when_the_engine_does_not() {
    let report = Harness::new()
        .cases(300)
        .backend_verifies_files()
        .faults(&["corrupt", "panic", "kill"])
        .run();
    assert_eq!(report.cases, 300);
    assert!(report.failures.is_empty());
    assert!(report.loud_failures > 0);
}

#[test]
fn a_source_not_storing_its_position_is_caught() {
    check_class(
        "source forgets its position",
        &[Property::State, Property::Output],
        || Harness::new().source(&forgets_position),
    );
}

#[test]
fn a_source_storing_its_position_after_emitting_is_caught() {
    check_class(
        "source stores its position after emitting",
        &[Property::State, Property::Output],
        || Harness::new().source(&stores_position_after_emitting),
    );
}

#[test]
fn the_correct_source_passes_the_same_harness() {
    fn correct_source(_: u16) -> Box<dyn Source> {
        Box::new(PartitionReader::default())
    }
    let report = Harness::new().cases(150).source(&correct_source).run();
    assert_eq!(report.cases, 150);
    assert!(report.failures.is_empty());
}

#[test]
fn the_correct_sink_and_backend_pass_the_same_harness() {
    fn correct_sink(subtask: u16) -> Box<dyn Sink> {
        Box::new(TwoPhaseCommitSink::new(subtask))
    }
    static MEMORY: faultline::state::MemoryBackendFactory = faultline::state::MemoryBackendFactory;
    let report = Harness::new()
        .cases(150)
        .sink(&correct_sink)
        .backend(&MEMORY)
        .run();
    assert_eq!(report.cases, 150);
    assert!(report.failures.is_empty());
}

/// A reader that names a record outside its partitions, or stores no positions.
struct Misbehaves {
    names_foreign_record: bool,
}

impl Source for Misbehaves {
    fn open(&mut self, _: &BTreeMap<u32, u64>) {}
    fn poll(&mut self, _: &SourceInput<'_>) -> Option<(u32, u64)> {
        self.names_foreign_record.then_some((u32::MAX, 0))
    }
    fn snapshot(&mut self, _: u64) -> BTreeMap<u32, u64> {
        BTreeMap::new()
    }
}

/// A reader that never reads its last partition, though it stores a position for it: it
/// finishes with records left, which a finished job still owes.
#[derive(Default)]
struct SkipsLastPartition {
    reader: PartitionReader,
    skipped: Option<(u32, u64)>,
}

impl Source for SkipsLastPartition {
    fn open(&mut self, positions: &BTreeMap<u32, u64>) {
        let mut kept = positions.clone();
        self.skipped = kept.pop_last();
        self.reader.open(&kept);
    }
    fn poll(&mut self, input: &SourceInput<'_>) -> Option<(u32, u64)> {
        self.reader.poll(input)
    }
    fn snapshot(&mut self, checkpoint_id: u64) -> BTreeMap<u32, u64> {
        let mut stored = self.reader.snapshot(checkpoint_id);
        stored.extend(self.skipped);
        stored
    }
}

#[test]
fn a_reader_finishing_with_records_unread_is_caught() {
    let source = |_: u16| Box::new(SkipsLastPartition::default()) as Box<dyn Source>;
    let dir = tempfile::tempdir().unwrap();
    let report = Harness::new()
        .cases(CASES_MAX)
        .source(&source)
        .failures_dir(dir.path())
        .try_run()
        .unwrap();
    let failure = report.failures.first().expect("caught");
    assert!(
        failure
            .violations
            .iter()
            .any(|v| v.property == Property::Output || v.property == Property::State),
        "{:?}",
        failure.violations
    );
    assert!(failure.trace.contains("unread"), "{}", failure.trace);
}

#[test]
fn a_reader_breaking_the_source_contract_fails_its_subtask_with_the_reason() {
    for (names_foreign_record, reason) in [
        (
            true,
            "the reader named p4294967295@0, but p4294967295 is not assigned to this subtask",
        ),
        (false, "the reader stored no position for p0"),
    ] {
        let source = move |_: u16| {
            Box::new(Misbehaves {
                names_foreign_record,
            }) as Box<dyn Source>
        };
        let report = Harness::new()
            .cases(1)
            .backends(vec![faultline::state::BackendKind::Memory])
            .source(&source)
            .try_run()
            .unwrap();
        let failure = report.failures.first().expect("the case fails");
        assert!(failure.trace.contains(reason), "{}", failure.trace);
    }
}

/// Broken incremental backends: the built-in RocksDB one with a twist, so only in builds with
/// RocksDB.
#[cfg(feature = "rocksdb")]
mod incremental {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::PathBuf;

    use super::{check_class, Property};
    use crate::support::delegate_cell_access;
    use faultline::checkpoint::CheckpointStorage;
    use faultline::harness::Harness;
    use faultline::state::{
        BackendContext, BackendKind, RestoreHandle, RestoreMode, RestoreStats, RocksDbFactory,
        RocksDbMode, SnapshotResult, SnapshotTarget, StateBackend, StateBackendFactory, StateError,
    };

    /// How a broken incremental backend departs from the built-in one it wraps.
    #[derive(Debug, Clone, Copy)]
    enum IncrementalTwist {
        /// 10. Once a checkpoint completes, deletes the shared files every earlier snapshot of its
        ///     own uploaded, as if each checkpoint owned the files it uploaded: but later
        ///     checkpoints reuse them, so the retained checkpoint now names deleted files.
        DeletesSupersededUploads,
        /// 11. Treats its own snapshot as confirmed as soon as it is taken (and ignores aborts), so
        ///     its next snapshot reuses files of a checkpoint that may never complete.
        ConfirmsItsOwnSnapshots,
    }

    /// The built-in RocksDB incremental backend with one twist.
    struct TwistedIncrementalFactory {
        name: &'static str,
        twist: IncrementalTwist,
    }

    static DELETES_SUPERSEDED_UPLOADS: TwistedIncrementalFactory = TwistedIncrementalFactory {
        name: "deletes-superseded-uploads",
        twist: IncrementalTwist::DeletesSupersededUploads,
    };

    static CONFIRMS_ITS_OWN_SNAPSHOTS: TwistedIncrementalFactory = TwistedIncrementalFactory {
        name: "confirms-its-own-snapshots",
        twist: IncrementalTwist::ConfirmsItsOwnSnapshots,
    };

    impl StateBackendFactory for TwistedIncrementalFactory {
        fn name(&self) -> &'static str {
            self.name
        }
        fn create(&self, context: BackendContext) -> Result<Box<dyn StateBackend>, StateError> {
            Ok(Box::new(TwistedIncremental {
                inner: RocksDbFactory::new(RocksDbMode::Incremental).create(context)?,
                name: self.name,
                twist: self.twist,
                uploads: BTreeMap::new(),
                known: BTreeSet::new(),
            }))
        }
    }

    struct TwistedIncremental {
        inner: Box<dyn StateBackend>,
        name: &'static str,
        twist: IncrementalTwist,
        /// Shared files each of its snapshots uploaded first, by checkpoint, as real paths.
        uploads: BTreeMap<u64, Vec<PathBuf>>,
        /// Every shared file any of its snapshots named.
        known: BTreeSet<PathBuf>,
    }

    impl StateBackend for TwistedIncremental {
        fn name(&self) -> &'static str {
            self.name
        }
        delegate_cell_access!();
        fn snapshot(
            &mut self,
            target: &SnapshotTarget,
            storage: &mut dyn CheckpointStorage,
        ) -> Result<SnapshotResult, StateError> {
            let result = self.inner.snapshot(target, storage)?;
            let root = storage.root().to_path_buf();
            let first: Vec<PathBuf> = result
                .handle
                .shared_files()
                .into_iter()
                .map(|file| root.join(file.path.as_str()))
                .filter(|path| self.known.insert(path.clone()))
                .collect();
            self.uploads.insert(target.checkpoint_id, first);
            if let IncrementalTwist::ConfirmsItsOwnSnapshots = self.twist {
                self.inner.notify_checkpoint_complete(target.checkpoint_id);
            }
            Ok(result)
        }
        fn restore(
            &mut self,
            handles: &[RestoreHandle],
            storage: &dyn CheckpointStorage,
            mode: RestoreMode,
        ) -> Result<RestoreStats, StateError> {
            self.inner.restore(handles, storage, mode)
        }
        fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) {
            if let IncrementalTwist::DeletesSupersededUploads = self.twist {
                let superseded: Vec<u64> = self
                    .uploads
                    .range(..checkpoint_id)
                    .map(|(id, _)| *id)
                    .collect();
                for id in superseded {
                    for path in self.uploads.remove(&id).unwrap_or_default() {
                        // The bug: a later, retained checkpoint may reuse this file.
                        let _ = std::fs::remove_file(path);
                    }
                }
            }
            self.inner.notify_checkpoint_complete(checkpoint_id);
        }
        fn notify_checkpoint_aborted(&mut self, checkpoint_id: u64) {
            if let IncrementalTwist::DeletesSupersededUploads = self.twist {
                self.inner.notify_checkpoint_aborted(checkpoint_id);
            }
        }
    }

    #[test]
    fn a_backend_deleting_files_a_retained_checkpoint_references_is_caught() {
        check_class(
            "deletes shared files still referenced",
            &[Property::Liveness, Property::Storage],
            || {
                Harness::new()
                    .backend(&DELETES_SUPERSEDED_UPLOADS)
                    .backends(vec![BackendKind::RocksDbIncremental])
            },
        );
    }

    #[test]
    fn a_backend_reusing_files_of_an_unconfirmed_checkpoint_is_caught() {
        check_class("reuses unconfirmed files", &[Property::Reuse], || {
            Harness::new()
                .backend(&CONFIRMS_ITS_OWN_SNAPSHOTS)
                .backends(vec![BackendKind::RocksDbIncremental])
        });
    }
}

/// A sink and a reader that panic: each fails its subtask, named in the trace, and the case is
/// reported and shrunk like any other instead of ending the campaign.
struct PanicsOnWrite;

impl Sink for PanicsOnWrite {
    fn write(&mut self, _: Record, _: &mut ExternalStore) -> Result<Vec<TxnEvent>, StoreError> {
        panic!("the sink's disk is on fire")
    }
    fn snapshot(
        &mut self,
        _: u64,
        _: &mut ExternalStore,
    ) -> Result<(Vec<u8>, Vec<TxnEvent>), StoreError> {
        Ok((Vec::new(), Vec::new()))
    }
    fn notify_checkpoint_complete(
        &mut self,
        _: u64,
        _: &mut ExternalStore,
    ) -> Result<Vec<TxnEvent>, StoreError> {
        Ok(Vec::new())
    }
    fn restore(
        &mut self,
        _: &[Vec<u8>],
        _: &mut ExternalStore,
    ) -> Result<Vec<TxnEvent>, StoreError> {
        Ok(Vec::new())
    }
}

struct PanicsOnPoll;

impl Source for PanicsOnPoll {
    fn open(&mut self, _: &BTreeMap<u32, u64>) {}
    fn poll(&mut self, _: &SourceInput<'_>) -> Option<(u32, u64)> {
        panic!("the reader's broker is gone")
    }
    fn snapshot(&mut self, _: u64) -> BTreeMap<u32, u64> {
        BTreeMap::new()
    }
}

#[test]
fn a_panicking_user_sink_or_reader_fails_its_subtask_not_the_campaign() {
    let sink = |_: u16| Box::new(PanicsOnWrite) as Box<dyn Sink>;
    let source = |_: u16| Box::new(PanicsOnPoll) as Box<dyn Source>;
    let dir = tempfile::tempdir().unwrap();
    let memory = || {
        Harness::new()
            .cases(1)
            .backends(vec![faultline::state::BackendKind::Memory])
            .failures_dir(dir.path())
    };
    for (harness, reason) in [
        (memory().sink(&sink), "panicked: the sink's disk is on fire"),
        (
            memory().source(&source),
            "panicked: the reader's broker is gone",
        ),
    ] {
        let report = harness.try_run().unwrap();
        let failure = report.failures.first().expect("the case fails");
        assert!(failure.trace.contains(reason), "{}", failure.trace);
    }
}

/// The class whose backend is RocksDB's, in a build that has it.
#[cfg(feature = "rocksdb")]
mod canonical_timers {
    use super::*;

    /// A RocksDB backend (incremental checkpoints, so its own snapshots are native) whose restore
    /// from canonical files — a canonical savepoint, written by any backend — loses the timers
    /// (FLINK-21486, FLINK-15406: timers dropped when a savepoint moves them between heap and
    /// RocksDB timer storage).
    pub struct DropsTimersFromCanonical;

    static DROPS_CANONICAL_TIMERS: DropsTimersFromCanonical = DropsTimersFromCanonical;

    impl StateBackendFactory for DropsTimersFromCanonical {
        fn name(&self) -> &'static str {
            "drops-canonical-timers"
        }
        fn create(&self, context: BackendContext) -> Result<Box<dyn StateBackend>, StateError> {
            let rocksdb =
                faultline::state::RocksDbFactory::new(faultline::state::RocksDbMode::Incremental);
            Ok(Box::new(DropsCanonicalTimers {
                inner: rocksdb.create(context)?,
            }))
        }
    }

    struct DropsCanonicalTimers {
        inner: Box<dyn StateBackend>,
    }

    impl StateBackend for DropsCanonicalTimers {
        fn name(&self) -> &'static str {
            "drops-canonical-timers"
        }
        delegate_cell_access!();
        fn snapshot(
            &mut self,
            target: &SnapshotTarget,
            storage: &mut dyn CheckpointStorage,
        ) -> Result<SnapshotResult, StateError> {
            self.inner.snapshot(target, storage)
        }
        fn restore(
            &mut self,
            handles: &[RestoreHandle],
            storage: &dyn CheckpointStorage,
            mode: RestoreMode,
        ) -> Result<RestoreStats, StateError> {
            let stats = self.inner.restore(handles, storage, mode)?;
            let canonical =
                (handles.iter()).any(|h| matches!(h.handle, KeyedStateHandle::Canonical(_)));
            let timers = (self.inner.states().iter())
                .position(|s| s.name == faultline::state::timers::TIMER_STATE);
            if let (true, Some(timers)) = (canonical, timers) {
                delete_cells(self.inner.as_mut(), |e| usize::from(e.state) == timers)?;
            }
            Ok(stats)
        }
        fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) {
            self.inner.notify_checkpoint_complete(checkpoint_id);
        }
        fn notify_checkpoint_aborted(&mut self, checkpoint_id: u64) {
            self.inner.notify_checkpoint_aborted(checkpoint_id);
        }
    }

    #[test]
    fn a_backend_losing_timers_restored_from_a_canonical_savepoint_is_caught() {
        static OPERATORS: std::sync::OnceLock<[UserOperator; 1]> = std::sync::OnceLock::new();
        let operators = OPERATORS.get_or_init(|| {
            [UserOperator::keyed_with_timers(
                "reminder",
                (remind, reminded),
                (remind, reminded),
            )]
        });
        check_class(
            "timers lost from a canonical savepoint",
            &[Property::State, Property::Output],
            || {
                Harness::new()
                    .backend(&DROPS_CANONICAL_TIMERS)
                    .operators(operators)
            },
        );
    }
}

/// The built-in window operator of `spec`, or, for an event-time tumbling or sliding window,
/// that operator wrapped by `twist`.
fn twisted_window(
    spec: &OperatorSpec,
    twist: impl FnOnce(Box<dyn Operator>, WindowShape) -> Box<dyn Operator>,
) -> Box<dyn Operator> {
    let built_in = faultline::job::operator::build(spec);
    match spec.window_shape() {
        Some(shape) if shape.gap_ms.is_none() && !shape.processing_time => twist(built_in, shape),
        _ => built_in,
    }
}

/// The start of the window a timer belongs to (its namespace).
fn window_of(timer: &Timer) -> Result<i64, OperatorError> {
    timer
        .namespace
        .parse()
        .map_err(|e| OperatorError::Failed(format!("a window timer's namespace: {e}")))
}

/// A window operator that arms its cleanup in memory and does not re-register it after a
/// restore: a cleanup timer restored for a key this instance has seen no record of clears
/// nothing, so the window's contents outlive it (as restored processing-time timers never
/// re-armed did before apache/flink PR #2602).
struct CleanupNotReRegistered {
    inner: Box<dyn Operator>,
    shape: WindowShape,
    armed: BTreeSet<Datum>,
}

impl Operator for CleanupNotReRegistered {
    fn process(
        &mut self,
        record: Record,
        ctx: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        self.armed.insert(record.key.clone());
        self.inner.process(record, ctx, out)
    }

    fn on_timer(
        &mut self,
        timer: &Timer,
        ctx: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        let start = window_of(timer)?;
        let max_ms = window_max_ms(start, self.shape.size_ms);
        let cleanup = timer.timestamp_ms == max_ms.saturating_add(self.shape.allowed_lateness_ms);
        let kept: Option<Contents> = WINDOWS.get(ctx.keyed()?, &start).map_err(failed)?;
        self.inner.on_timer(timer, ctx, out)?;
        if let (Some(mut contents), true, false) = (kept, cleanup, self.armed.contains(&timer.key))
        {
            contents.fired += i64::from(timer.timestamp_ms == max_ms);
            WINDOWS
                .put(ctx.keyed()?, &start, &contents)
                .map_err(failed)?;
        }
        Ok(())
    }
}

/// A window operator that keeps the watermark it fired up to in a field, which starts from
/// nothing after a restore (FLINK-36663): the first time it sees a key while it knows no
/// watermark, it arms every window the key holds as if none had fired, so a window kept for
/// its allowed lateness fires again.
struct ForgetsItsWatermark {
    inner: Box<dyn Operator>,
    shape: WindowShape,
    rearmed: BTreeSet<Datum>,
}

impl ForgetsItsWatermark {
    fn rearm(&mut self, ctx: &mut OperatorContext<'_>, key: &Datum) -> Result<(), OperatorError> {
        if ctx.watermark_ms != i64::MIN || !self.rearmed.insert(key.clone()) {
            return Ok(());
        }
        let keyed = ctx.keyed()?;
        for (start, _) in WINDOWS.entries(keyed).map_err(failed)? {
            let max_ms = window_max_ms(start, self.shape.size_ms);
            keyed
                .register_timer(TimeDomain::EventTime, max_ms, &start.to_string())
                .map_err(failed)?;
        }
        Ok(())
    }
}

impl Operator for ForgetsItsWatermark {
    fn process(
        &mut self,
        record: Record,
        ctx: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        self.rearm(ctx, &record.key)?;
        self.inner.process(record, ctx, out)
    }

    fn on_timer(
        &mut self,
        timer: &Timer,
        ctx: &mut OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), OperatorError> {
        self.rearm(ctx, &timer.key)?;
        self.inner.on_timer(timer, ctx, out)
    }
}

fn failed(error: StateError) -> OperatorError {
    OperatorError::Failed(error.to_string())
}

fn cleanup_not_re_registered(spec: &OperatorSpec, _: u16) -> Box<dyn Operator> {
    twisted_window(spec, |inner, shape| {
        Box::new(CleanupNotReRegistered {
            inner,
            shape,
            armed: BTreeSet::new(),
        })
    })
}

fn forgets_its_watermark(spec: &OperatorSpec, _: u16) -> Box<dyn Operator> {
    twisted_window(spec, |inner, shape| {
        Box::new(ForgetsItsWatermark {
            inner,
            shape,
            rearmed: BTreeSet::new(),
        })
    })
}

#[test]
fn a_window_not_re_registering_its_cleanup_after_restore_is_caught() {
    check_class(
        "window cleanup not re-registered",
        &[Property::State, Property::Output],
        || Harness::new().windows(&cleanup_not_re_registered),
    );
}

#[test]
fn a_window_forgetting_its_watermark_on_restore_is_caught() {
    check_class(
        "window forgets its watermark (FLINK-36663)",
        &[Property::Output, Property::State],
        || Harness::new().windows(&forgets_its_watermark),
    );
}

#[test]
fn the_built_in_window_passes_through_the_window_seam() {
    // The classes above are the wrappers': the operator they wrap passes where it is built
    // through the same seam, in windowed jobs only.
    let built_in = |spec: &OperatorSpec, _: u16| faultline::job::operator::build(spec);
    let report = Harness::new().cases(80).windows(&built_in).run();
    assert_eq!(report.cases, 80);
    assert!(report.failures.is_empty());
    assert!(report.restores > 0);
}

/// An engine whose restore mishandles channel state, under campaigns of unaligned checkpoints
/// (rescales among them resume from a retained unaligned checkpoint).
fn unaligned_with(break_it: fn(&mut faultline::engine::Sabotage)) -> Harness<'static> {
    let mut sabotage = faultline::engine::Sabotage::default();
    break_it(&mut sabotage);
    Harness::new()
        .checkpointing(faultline::campaign::Checkpointing::Unaligned)
        .sabotage(sabotage)
}

#[test]
fn channel_state_dropped_on_rescale_is_caught() {
    // FLINK-38544's shape: the records in flight of a rescaled unaligned restore are lost.
    check_class(
        "channel state dropped on rescale",
        &[Property::Output, Property::State],
        || unaligned_with(|s| s.channel_state_dropped_on_rescale = true),
    );
}

#[test]
fn channel_state_given_to_the_old_subtask_index_is_caught() {
    check_class(
        "channel state to the old subtask",
        &[Property::Assertion, Property::Output, Property::State],
        || unaligned_with(|s| s.channel_state_to_old_subtask = true),
    );
}

#[test]
fn channel_state_replayed_after_new_input_is_caught() {
    check_class(
        "channel state after new input",
        &[Property::Output, Property::State, Property::Transactions],
        || unaligned_with(|s| s.channel_state_after_new_input = true),
    );
}

#[cfg(feature = "rocksdb")]
#[test]
fn a_no_claim_restore_whose_next_checkpoint_references_the_restored_files_is_caught() {
    // The incremental backend takes a checkpoint restored NO_CLAIM as its base, so the job's
    // next checkpoint shares files with a snapshot that stays the user's to delete.
    check_class(
        "NO_CLAIM's checkpoint references the restored files",
        &[Property::Storage],
        || {
            let sabotage = faultline::engine::Sabotage {
                no_claim_checkpoint_claimed: true,
                ..faultline::engine::Sabotage::default()
            };
            Harness::new()
                .backends(vec![faultline::state::BackendKind::RocksDbIncremental])
                .sabotage(sabotage)
        },
    );
}
