//! What a case's input covers of the key space: the key groups its keys fall in, and the
//! subtask range boundaries it crosses at every parallelism a keyed stage runs at (before and
//! after a rescale). A boundary between two subtasks' key-group ranges is crossed when keys lie
//! in the key groups on both sides of it: a record routed one key group off, or a restore that
//! reads one key group too few, shows only there.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, OnceLock};

use super::scenario::{Scenario, ScenarioError};
use crate::job::keygroup::{key_group_for, key_group_range};

/// A case's key-space coverage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeySpace {
    /// Key groups holding at least one key.
    pub key_groups_touched: u32,
    /// Boundaries between adjacent subtasks' ranges, over every keyed stage's parallelisms.
    pub boundaries: u32,
    /// Of them, crossed: keys on both sides.
    pub boundaries_crossed: u32,
}

/// The key-space coverage of `scenario`'s input.
pub fn key_space(scenario: &Scenario) -> Result<KeySpace, ScenarioError> {
    let max_parallelism = scenario.job.max_parallelism;
    let groups: BTreeSet<u16> = scenario
        .input_records()?
        .iter()
        .map(|r| r.key.key_group(max_parallelism))
        .collect();
    let mut space = KeySpace {
        key_groups_touched: groups.len() as u32,
        ..KeySpace::default()
    };
    for parallelism in keyed_parallelisms(scenario) {
        for subtask in 1..parallelism {
            let start = key_group_range(max_parallelism, parallelism, subtask).start;
            space.boundaries += 1;
            if groups.contains(&start) && groups.contains(&(start - 1)) {
                space.boundaries_crossed += 1;
            }
        }
    }
    Ok(space)
}

/// The distinct parallelisms keyed stages run at, in the first phase and after a rescale.
pub(super) fn keyed_parallelisms(scenario: &Scenario) -> BTreeSet<u16> {
    let stages = &scenario.job.stages;
    let mut parallelisms: BTreeSet<u16> = stages
        .iter()
        .filter(|s| s.op.is_keyed())
        .map(|s| s.parallelism)
        .collect();
    if let Some(rescale) = &scenario.rescale {
        parallelisms.extend(
            stages
                .iter()
                .zip(&rescale.parallelism)
                .filter(|(s, _)| s.op.is_keyed())
                .map(|(_, p)| *p),
        );
    }
    parallelisms
}

/// `keys` keys for `scenario`'s job, boundary keys first: for every subtask range boundary at
/// every keyed parallelism, a key in the last key group before it and one in the first after
/// it, then keys in the first and last key groups, then `k0`, `k1`, ... as needed (fewer
/// boundary keys when `keys` is smaller). Keys are found by trying `k0`, `k1`, ... in order, so
/// the same job always gets the same keys.
pub(super) fn boundary_keys(scenario: &Scenario, keys: u32) -> Vec<String> {
    let max_parallelism = scenario.job.max_parallelism;
    let mut targets = Vec::new();
    for parallelism in keyed_parallelisms(scenario) {
        for subtask in 1..parallelism {
            let start = key_group_range(max_parallelism, parallelism, subtask).start;
            targets.extend([start - 1, start]);
        }
    }
    targets.extend([0, max_parallelism - 1]);
    // In the order found (boundary keys first), each once.
    let mut found: Vec<String> = Vec::new();
    let mut taken = BTreeSet::new();
    let boundary = targets
        .into_iter()
        .filter_map(|target| key_in_group(target, max_parallelism));
    let plain = (0u64..).map(|i| format!("k{i}"));
    for key in boundary.chain(plain) {
        if found.len() as u32 >= keys {
            break;
        }
        if taken.insert(key.clone()) {
            found.push(key);
        }
    }
    found
}

/// Keys found per (maximum parallelism, key group).
type Found = Mutex<BTreeMap<(u16, u16), Option<String>>>;

/// The first of `k0`, `k1`, ... in `key_group`. Every key group holds one well within the
/// tries allowed; one not found by then is left out rather than searched for without end.
/// The search takes thousands of hashes at large maximum parallelisms and every run of a case
/// (shrinking runs one hundreds of times) asks again, so answers are kept: a pure function's,
/// the same in every thread and run.
fn key_in_group(key_group: u16, max_parallelism: u16) -> Option<String> {
    static FOUND: OnceLock<Found> = OnceLock::new();
    let found = FOUND.get_or_init(Mutex::default);
    let lookup = |found: &Found| {
        found
            .lock()
            .map(|map| map.get(&(max_parallelism, key_group)).cloned())
            .ok()
            .flatten()
    };
    if let Some(key) = lookup(found) {
        return key;
    }
    let key = (0..u64::from(max_parallelism) * 64)
        .map(|i| format!("k{i}"))
        .find(|key| key_group_for(key, max_parallelism) == key_group);
    if let Ok(mut map) = found.lock() {
        map.insert((max_parallelism, key_group), key.clone());
    }
    key
}
