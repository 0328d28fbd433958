//! The in-memory backend: a `BTreeMap` per subtask, so iteration is in canonical order, with
//! canonical full snapshots.
//!
//! ```
//! use faultline::checkpoint::canonical::Compression;
//! use faultline::checkpoint::{Durability, FsCheckpointStorage, RelPath};
//! use faultline::job::Datum;
//! use faultline::state::{
//!     KeyGroupRange, KeyedContext, MemoryBackend, RestoreHandle, RestoreMode, SnapshotPurpose,
//!     SnapshotTarget, StateBackend, ValueState,
//! };
//!
//! let owned = KeyGroupRange { start: 0, end: 127 };
//! let mut backend = MemoryBackend::new("sum-0", owned);
//! const TOTAL: ValueState<i64> = ValueState::new("total");
//! let key = Datum::from("k");
//! let group = key.key_group(128);
//! TOTAL.set(&mut KeyedContext::new(&mut backend, group, key.as_bytes()), &42)?;
//!
//! let dir = tempfile::tempdir()?;
//! let mut storage = FsCheckpointStorage::new(dir.path(), Durability::PageCache)?;
//! let target = SnapshotTarget {
//!     checkpoint_id: 1,
//!     dir: RelPath::new("chk-1")?,
//!     purpose: SnapshotPurpose::Checkpoint,
//!     compression: Compression::None,
//!     now_ms: 0,
//! };
//! let snapshot = backend.snapshot(&target, &mut storage)?;
//!
//! // A fresh backend, as after a restart, restores the cell from the file.
//! let mut restored = MemoryBackend::new("sum-0", owned);
//! let handle = RestoreHandle { key_groups: owned, handle: snapshot.handle };
//! let stats = restored.restore(&[handle], &storage, RestoreMode::Claim)?;
//! assert_eq!(stats.entries, 1);
//! assert_eq!(TOTAL.get(&KeyedContext::new(&mut restored, group, key.as_bytes()))?, Some(42));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;

use super::snapshot::{restore_canonical, write_canonical};
use super::{
    BackendContext, CellRef, KeyGroupRange, RestoreHandle, RestoreMode, RestoreStats,
    SnapshotResult, SnapshotTarget, StateBackend, StateBackendFactory, StateDescriptor, StateEntry,
    StateError, StateId, UserEntries,
};
use crate::checkpoint::CheckpointStorage;

type CellKey = (u16, StateId, Vec<u8>, Vec<u8>);

/// Keyed state held in memory; lost on restart, recovered from checkpoints.
#[derive(Debug)]
pub struct MemoryBackend {
    task_name: String,
    key_groups: KeyGroupRange,
    states: Vec<StateDescriptor>,
    cells: BTreeMap<CellKey, Vec<u8>>,
}

impl MemoryBackend {
    /// An empty backend owning `key_groups`.
    pub fn new(task_name: impl Into<String>, key_groups: KeyGroupRange) -> Self {
        Self {
            task_name: task_name.into(),
            key_groups,
            states: Vec::new(),
            cells: BTreeMap::new(),
        }
    }

    fn owned(&self, cell: &CellRef<'_>) -> Result<(), StateError> {
        if !self.key_groups.contains(cell.key_group) {
            return Err(StateError::KeyGroupNotOwned {
                task: self.task_name.clone(),
                key_group: cell.key_group,
                range: self.key_groups,
            });
        }
        if usize::from(cell.state) >= self.states.len() {
            return Err(StateError::Declaration {
                name: format!("#{}", cell.state),
                reason: "used before it was declared".into(),
            });
        }
        Ok(())
    }

    fn key(cell: &CellRef<'_>) -> CellKey {
        (
            cell.key_group,
            cell.state,
            cell.key.to_vec(),
            cell.user_key.to_vec(),
        )
    }
}

/// Declares `descriptor` in `states`, or returns the id of an identical earlier declaration;
/// shared by every backend that keeps its descriptors in a vector.
pub(crate) fn register_in(
    states: &mut Vec<StateDescriptor>,
    descriptor: &StateDescriptor,
) -> Result<StateId, StateError> {
    if let Some(index) = states.iter().position(|s| s.name == descriptor.name) {
        if states[index] != *descriptor {
            return Err(StateError::Declaration {
                name: descriptor.name.clone(),
                reason: format!("declared as {:?}, now as {:?}", states[index], descriptor),
            });
        }
        return Ok(index as StateId);
    }
    let id = StateId::try_from(states.len()).map_err(|_| StateError::Declaration {
        name: descriptor.name.clone(),
        reason: "more than 65535 states".into(),
    })?;
    states.push(descriptor.clone());
    Ok(id)
}

impl StateBackend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn key_groups(&self) -> KeyGroupRange {
        self.key_groups
    }

    fn register_state(&mut self, descriptor: &StateDescriptor) -> Result<StateId, StateError> {
        register_in(&mut self.states, descriptor)
    }

    fn states(&self) -> &[StateDescriptor] {
        &self.states
    }

    fn get(&self, cell: CellRef<'_>) -> Result<Option<Vec<u8>>, StateError> {
        self.owned(&cell)?;
        Ok(self.cells.get(&Self::key(&cell)).cloned())
    }

    fn put(&mut self, cell: CellRef<'_>, value: &[u8]) -> Result<(), StateError> {
        self.owned(&cell)?;
        self.cells.insert(Self::key(&cell), value.to_vec());
        Ok(())
    }

    fn delete(&mut self, cell: CellRef<'_>) -> Result<(), StateError> {
        self.owned(&cell)?;
        self.cells.remove(&Self::key(&cell));
        Ok(())
    }

    fn user_entries(
        &self,
        state: StateId,
        key_group: u16,
        key: &[u8],
    ) -> Result<UserEntries, StateError> {
        self.owned(&CellRef {
            state,
            key_group,
            key,
            user_key: &[],
        })?;
        let start = (key_group, state, key.to_vec(), Vec::new());
        Ok(self
            .cells
            .range(start..)
            .take_while(|((group, id, k, _), _)| *group == key_group && *id == state && k == key)
            .map(|((_, _, _, user_key), value)| (user_key.clone(), value.clone()))
            .collect())
    }

    fn entries(&self) -> Result<Vec<StateEntry>, StateError> {
        Ok(self
            .cells
            .iter()
            .map(|((key_group, state, key, user_key), value)| StateEntry {
                key_group: *key_group,
                state: *state,
                key: key.clone(),
                user_key: user_key.clone(),
                value: value.clone(),
            })
            .collect())
    }

    fn snapshot(
        &mut self,
        target: &SnapshotTarget,
        storage: &mut dyn CheckpointStorage,
    ) -> Result<SnapshotResult, StateError> {
        // The memory backend's native format is the canonical one, for savepoints too.
        write_canonical(self, &self.task_name, target, storage)
    }

    fn restore(
        &mut self,
        handles: &[RestoreHandle],
        storage: &dyn CheckpointStorage,
        _mode: RestoreMode,
    ) -> Result<RestoreStats, StateError> {
        self.cells.clear();
        restore_canonical(self, handles, storage)
    }
}

/// Makes [`MemoryBackend`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryBackendFactory;

impl StateBackendFactory for MemoryBackendFactory {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn create(&self, context: BackendContext) -> Result<Box<dyn StateBackend>, StateError> {
        Ok(Box::new(MemoryBackend::new(
            context.task_name,
            context.key_groups,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{KeyedContext, ListState, MapState, ValueState};

    #[test]
    fn typed_state_round_trips_and_ownership_is_enforced() {
        let mut backend = MemoryBackend::new("op-0", KeyGroupRange { start: 0, end: 9 });
        let sum = ValueState::<i64>::new("sum");
        let recent = ListState::<i64>::new("recent");
        let seen = MapState::<String, i64>::new("seen");
        {
            let mut ctx = KeyedContext::new(&mut backend, 3, b"a");
            sum.set(&mut ctx, &5).unwrap();
            recent.add(&mut ctx, &1).unwrap();
            recent.add(&mut ctx, &2).unwrap();
            seen.put(&mut ctx, &"x".to_string(), &9).unwrap();
            assert_eq!(sum.get(&ctx).unwrap(), Some(5));
            assert_eq!(recent.get(&ctx).unwrap(), vec![1, 2]);
            assert_eq!(seen.entries(&ctx).unwrap(), vec![("x".to_string(), 9)]);
        }
        let foreign = CellRef {
            state: 0,
            key_group: 10,
            key: b"b",
            user_key: &[],
        };
        assert!(matches!(
            backend.put(foreign, b"1"),
            Err(StateError::KeyGroupNotOwned { .. })
        ));
        assert_eq!(backend.entries().unwrap().len(), 3);
    }
}
