//! What a case's input covers of the key space: the key groups its keys fall in, and the
//! subtask range boundaries it crosses at every parallelism a keyed stage runs at (before and
//! after a rescale). A boundary between two subtasks' key-group ranges is crossed when keys lie
//! in the key groups on both sides of it: a record routed one key group off, or a restore that
//! reads one key group too few, shows only there.

use std::collections::BTreeSet;

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
        .map(|r| key_group_for(&r.key, max_parallelism))
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
