//! Method: drive one operator through `faultline::testing::OperatorHarness` on every backend —
//! records in, a snapshot through the backend's real files, a restore into fresh instances at
//! another parallelism (split into two subtasks, then merged back into one) — and compare state
//! and outputs with what the records imply; a record routed to the wrong subtask and a snapshot
//! of another maximum parallelism are refused with their reasons.

use faultline::job::{OperatorSpec, Record};
use faultline::state::{BackendKind, ValueState};
use faultline::testing::{OperatorHarness, Operators, TestHarnessError};

/// The built-in sum's state.
const SUM: ValueState<i64> = ValueState::new("sum");

const KEYS: [&str; 6] = ["acct-1", "acct-2", "acct-3", "acct-4", "acct-5", "acct-6"];

fn feed(harness: &mut OperatorHarness<'_>, round: i64) {
    for (i, key) in KEYS.iter().enumerate() {
        let value = round * 100 + i as i64;
        harness
            .process_element(Record::transaction(&format!("r{round}-{i}"), key, value))
            .unwrap();
    }
}

/// Each key's sum after rounds 1..=`rounds`.
fn sum_of(key_index: usize, rounds: i64) -> i64 {
    (1..=rounds)
        .map(|round| round * 100 + key_index as i64)
        .sum()
}

fn split_and_merge(backend: BackendKind) {
    let sum = Operators::built_in(OperatorSpec::Sum);
    let mut harness = OperatorHarness::builder(&sum)
        .backend(backend)
        .open()
        .unwrap();
    feed(&mut harness, 1);
    let first = harness.snapshot(1).unwrap();
    harness.notify_checkpoint_complete(1);
    feed(&mut harness, 2);
    let second = harness.snapshot(2).unwrap();
    assert_eq!(harness.outputs().len(), 2 * KEYS.len());
    assert_ne!(
        first.keyed, second.keyed,
        "{backend:?}: each snapshot its own handle"
    );

    // Split: two subtasks each restore their key groups of the second snapshot.
    let mut halves: Vec<OperatorHarness<'_>> = (0..2)
        .map(|subtask| {
            OperatorHarness::builder(&sum)
                .backend(backend)
                .subtask(subtask, 2)
                .initialize_state(&[&second])
                .unwrap()
        })
        .collect();
    for (i, key) in KEYS.iter().enumerate() {
        let owners: Vec<Option<i64>> = halves
            .iter_mut()
            .map(|h| match h.get(&SUM, key) {
                Err(TestHarnessError::KeyNotOwned { .. }) => None,
                value => value.unwrap(),
            })
            .collect();
        let held: Vec<i64> = owners.into_iter().flatten().collect();
        assert_eq!(held, [sum_of(i, 2)], "{backend:?}: {key} in one half only");
    }

    // Merge: one subtask restores both halves' snapshots, after each half processed a round.

    let snapshots: Vec<_> = halves
        .iter_mut()
        .map(|half| {
            for (i, key) in KEYS.iter().enumerate() {
                let record = Record::transaction(&format!("r3-{i}"), key, 300 + i as i64);
                match half.process_element(record) {
                    Ok(_) | Err(TestHarnessError::KeyNotOwned { .. }) => {}
                    Err(error) => panic!("{backend:?}: {error}"),
                }
            }
            half.snapshot(3).unwrap()
        })
        .collect();
    let refs: Vec<_> = snapshots.iter().collect();
    let mut merged = OperatorHarness::builder(&sum)
        .backend(backend)
        .initialize_state(&refs)
        .unwrap();
    for (i, key) in KEYS.iter().enumerate() {
        assert_eq!(
            merged.get(&SUM, key).unwrap(),
            Some(sum_of(i, 3)),
            "{backend:?}: {key} after the merge"
        );
    }

    // The first snapshot still restores on its own, without the second round.
    let mut early = OperatorHarness::builder(&sum)
        .backend(backend)
        .initialize_state(&[&first])
        .unwrap();
    assert_eq!(early.get(&SUM, "acct-1").unwrap(), Some(sum_of(0, 1)));
}

#[test]
fn an_operator_splits_and_merges_through_memory_snapshots() {
    split_and_merge(BackendKind::Memory);
}

#[test]
fn an_operator_splits_and_merges_through_rocksdb_full_snapshots() {
    split_and_merge(BackendKind::RocksDbFull);
}

#[test]
fn an_operator_splits_and_merges_through_rocksdb_incremental_snapshots() {
    split_and_merge(BackendKind::RocksDbIncremental);
}

#[test]
fn a_record_for_another_subtask_and_a_snapshot_of_another_shape_are_refused() {
    let sum = Operators::built_in(OperatorSpec::Sum);
    let mut harness = OperatorHarness::builder(&sum).subtask(0, 2).open().unwrap();
    let foreign = KEYS
        .iter()
        .map(|key| {
            harness
                .process_element(Record::transaction("r", key, 1))
                .map(|_| ())
        })
        .find_map(Result::err)
        .expect("one of the keys belongs to subtask 1");
    assert!(
        matches!(foreign, TestHarnessError::KeyNotOwned { subtask: 0, .. }),
        "{foreign}"
    );
    let snapshot = harness.snapshot(1).unwrap();
    let refused = OperatorHarness::builder(&sum)
        .max_parallelism(64)
        .initialize_state(&[&snapshot])
        .map(|_| ())
        .unwrap_err();
    assert!(
        refused.to_string().contains("maximum parallelism 128"),
        "{refused}"
    );
}

/// Counts the records it saw in operator (non-keyed) state.
#[derive(Default)]
struct Seen {
    count: u64,
    restored: Vec<u64>,
}

impl faultline::job::Operator for Seen {
    fn process(
        &mut self,
        record: Record,
        _: &mut faultline::job::OperatorContext<'_>,
        out: &mut Vec<Record>,
    ) -> Result<(), faultline::job::OperatorError> {
        self.count += 1;
        out.push(record);
        Ok(())
    }

    fn snapshot_state(&mut self) -> Vec<u8> {
        self.count.to_le_bytes().to_vec()
    }

    fn restore_state(&mut self, states: &[Vec<u8>]) -> Result<(), faultline::job::OperatorError> {
        self.restored = states
            .iter()
            .map(|s| u64::from_le_bytes(s.as_slice().try_into().unwrap()))
            .collect();
        self.count = self.restored.iter().sum();
        Ok(())
    }
}

#[test]
fn operator_state_is_handed_out_as_the_engine_does_and_foreign_snapshots_are_refused() {
    let user = faultline::job::user::UserOperator::new(
        "seen",
        false,
        |_| Box::new(Seen::default()),
        |_: &mut faultline::job::user::ModelState, r: Record| Ok(vec![r]),
    );
    let seen = Operators::user(&user);
    let mut first = OperatorHarness::builder(&seen)
        .subtask(0, 2)
        .open()
        .unwrap();
    for i in 0..3 {
        first
            .process_element(Record::transaction(&format!("a{i}"), "k", 1))
            .unwrap();
    }
    let zero = first.snapshot(1).unwrap();
    // A second subtask restored from the first's snapshot shares its checkpoint directory.
    let mut second = OperatorHarness::builder(&seen)
        .subtask(1, 2)
        .initialize_state(&[&zero])
        .unwrap();
    second
        .process_element(Record::transaction("b", "k", 1))
        .unwrap();
    let mut one = second.snapshot(1).unwrap();
    one.operator_state = 5u64.to_le_bytes().to_vec();
    // Rescaled to one subtask: it gets every old subtask's state, in subtask order.
    let merged = OperatorHarness::builder(&seen)
        .initialize_state(&[&one, &zero])
        .unwrap();
    let mut merged = merged;
    merged
        .process_element(Record::transaction("c", "k", 1))
        .unwrap();
    assert_eq!(
        merged.snapshot(2).unwrap().operator_state,
        9u64.to_le_bytes()
    );
    // At the same parallelism each subtask gets its own.
    let mut again = OperatorHarness::builder(&seen)
        .subtask(1, 2)
        .initialize_state(&[&zero, &one])
        .unwrap();
    assert_eq!(
        again.snapshot(3).unwrap().operator_state,
        5u64.to_le_bytes()
    );
    // Snapshots of two separately opened harnesses have no directory in common.
    let mut other = OperatorHarness::builder(&seen)
        .subtask(1, 2)
        .open()
        .unwrap();
    let foreign = other.snapshot(1).unwrap();
    let refused = OperatorHarness::builder(&seen)
        .initialize_state(&[&zero, &foreign])
        .map(|_| ())
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("different checkpoint directories"),
        "{refused}"
    );
}
