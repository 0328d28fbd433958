//! A user-written state backend wrapper, put under faultline's faults.
//!
//! `MeteredBackend` wraps any backend (here the built-in memory backend) and counts the state
//! operations, snapshots and restores that pass through it — the shape of a wrapper that adds
//! metrics, caching or encryption to a backend. The harness plugs it into every case in place
//! of the built-in backend and checks that recovery is still right through it.
//!
//! ```sh
//! cargo run --release --example metered_backend
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

use faultline::checkpoint::CheckpointStorage;
use faultline::harness::Harness;
use faultline::state::{
    BackendContext, CellRef, KeyGroupRange, MemoryBackendFactory, RestoreHandle, RestoreMode,
    RestoreStats, SnapshotResult, SnapshotTarget, StateBackend, StateBackendFactory,
    StateDescriptor, StateEntry, StateError, StateId, UserEntries,
};

/// Counts shared by every backend one factory creates.
#[derive(Debug, Default)]
pub struct Meter {
    /// Reads (`get`, `user_entries`).
    pub reads: AtomicU64,
    /// Writes (`put`, `delete`).
    pub writes: AtomicU64,
    /// Snapshots taken.
    pub snapshots: AtomicU64,
    /// Restores.
    pub restores: AtomicU64,
}

/// The wrapper.
pub struct MeteredBackend<'m> {
    inner: Box<dyn StateBackend>,
    meter: &'m Meter,
}

impl StateBackend for MeteredBackend<'static> {
    fn name(&self) -> &'static str {
        "metered"
    }
    fn key_groups(&self) -> KeyGroupRange {
        self.inner.key_groups()
    }
    fn register_state(&mut self, descriptor: &StateDescriptor) -> Result<StateId, StateError> {
        self.inner.register_state(descriptor)
    }
    fn states(&self) -> &[StateDescriptor] {
        self.inner.states()
    }
    fn get(&self, cell: CellRef<'_>) -> Result<Option<Vec<u8>>, StateError> {
        self.meter.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.get(cell)
    }
    fn put(&mut self, cell: CellRef<'_>, value: &[u8]) -> Result<(), StateError> {
        self.meter.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.put(cell, value)
    }
    fn delete(&mut self, cell: CellRef<'_>) -> Result<(), StateError> {
        self.meter.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.delete(cell)
    }
    fn user_entries(
        &self,
        state: StateId,
        key_group: u16,
        key: &[u8],
    ) -> Result<UserEntries, StateError> {
        self.meter.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.user_entries(state, key_group, key)
    }
    fn entries(&self) -> Result<Vec<StateEntry>, StateError> {
        self.inner.entries()
    }
    fn snapshot(
        &mut self,
        target: &SnapshotTarget,
        storage: &mut dyn CheckpointStorage,
    ) -> Result<SnapshotResult, StateError> {
        self.meter.snapshots.fetch_add(1, Ordering::Relaxed);
        self.inner.snapshot(target, storage)
    }
    fn restore(
        &mut self,
        handles: &[RestoreHandle],
        storage: &dyn CheckpointStorage,
        mode: RestoreMode,
    ) -> Result<RestoreStats, StateError> {
        self.meter.restores.fetch_add(1, Ordering::Relaxed);
        self.inner.restore(handles, storage, mode)
    }
    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) {
        self.inner.notify_checkpoint_complete(checkpoint_id)
    }
    fn notify_checkpoint_aborted(&mut self, checkpoint_id: u64) {
        self.inner.notify_checkpoint_aborted(checkpoint_id)
    }
}

/// Makes metered memory backends that all count into one meter.
pub struct MeteredFactory {
    /// The counts.
    pub meter: &'static Meter,
}

impl StateBackendFactory for MeteredFactory {
    fn name(&self) -> &'static str {
        "metered"
    }
    fn create(&self, context: BackendContext) -> Result<Box<dyn StateBackend>, StateError> {
        Ok(Box::new(MeteredBackend {
            inner: MemoryBackendFactory.create(context)?,
            meter: self.meter,
        }))
    }
}

static METER: Meter = Meter {
    reads: AtomicU64::new(0),
    writes: AtomicU64::new(0),
    snapshots: AtomicU64::new(0),
    restores: AtomicU64::new(0),
};
static FACTORY: MeteredFactory = MeteredFactory { meter: &METER };

/// Runs the campaign through the wrapper and returns its report and the meter.
pub fn run(cases: u64) -> (faultline::campaign::ExploreReport, &'static Meter) {
    let report = Harness::new().cases(cases).backend(&FACTORY).run();
    (report, &METER)
}

#[allow(dead_code)] // Also compiled into the test suite, which calls `run` instead.
fn main() {
    let (report, meter) = run(200);
    print!("{}", report.summary());
    println!(
        "through the wrapper: {} reads, {} writes, {} snapshots, {} restores",
        meter.reads.load(Ordering::Relaxed),
        meter.writes.load(Ordering::Relaxed),
        meter.snapshots.load(Ordering::Relaxed),
        meter.restores.load(Ordering::Relaxed)
    );
}
