//! Restore planning: which snapshot an attempt restores, chosen by a pure function from the
//! candidates found in storage (each already validated) and the restore policy. The engine
//! gathers and validates the candidates, asks [`choose_restore`], and applies the plan.
//!
//! ```
//! use faultline::checkpoint::restore::{choose_restore, Candidate, RestoreFailure, RestorePlan, SnapshotRef};
//! use faultline::checkpoint::RestorePolicy;
//!
//! let damaged = Candidate {
//!     snapshot: SnapshotRef::Checkpoint(4),
//!     validated: Err(RestoreFailure {
//!         file: Some("chk-4/_metadata".into()),
//!         detail: "checksum mismatch".into(),
//!     }),
//! };
//! // The default fails loudly, naming the newest snapshot and its damaged file.
//! let plan = choose_restore(vec![damaged], Some(4), RestorePolicy::FailLoudly);
//! let RestorePlan::Fail(failure) = plan else { panic!("{plan:?}") };
//! assert_eq!(failure.file.as_deref(), Some("chk-4/_metadata"));
//! assert_eq!(failure.detail, "chk-4: checksum mismatch");
//! ```

use serde::{Deserialize, Serialize};

use super::{registry, CheckpointMetadata, RestorePolicy};

/// A snapshot a restore may start from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum SnapshotRef {
    /// A retained checkpoint.
    Checkpoint(u64),
    /// A savepoint the job took, in `savepoints/<name>`.
    Savepoint {
        /// Its name.
        name: String,
        /// Its barrier id.
        id: u64,
    },
}

impl SnapshotRef {
    /// Its snapshot id: a checkpoint's id, a savepoint's barrier id.
    pub fn id(&self) -> u64 {
        match self {
            SnapshotRef::Checkpoint(id) | SnapshotRef::Savepoint { id, .. } => *id,
        }
    }

    /// How messages name it: `chk-4`, `savepoint user (chk-3)`.
    pub fn label(&self) -> String {
        match self {
            SnapshotRef::Checkpoint(id) => format!("chk-{id}"),
            SnapshotRef::Savepoint { name, id } => format!("savepoint {name} (chk-{id})"),
        }
    }
}

/// A restore that failed, and the checkpoint file it concerns when one is to blame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreFailure {
    /// The file relative to the checkpoint root (`chk-3/_metadata`, `shared/x.sst`), when the
    /// failure is about one: what "failing loudly, naming the damaged file" is judged by.
    pub file: Option<String>,
    /// What went wrong, naming the snapshot.
    pub detail: String,
}

/// A snapshot found in storage, and what validating it found: its metadata, or why it cannot
/// be restored.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The snapshot.
    pub snapshot: SnapshotRef,
    /// Its metadata, read and checked, or the problem.
    pub validated: Result<CheckpointMetadata, RestoreFailure>,
}

/// What a restore does.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RestorePlan {
    /// No snapshot to restore: start from the configured initial snapshot, or from nothing.
    Nothing,
    /// Restore `snapshot`, after skipping newer unusable ones (only the fallback policy skips).
    Restore {
        /// The snapshot restored.
        snapshot: SnapshotRef,
        /// Its metadata.
        metadata: CheckpointMetadata,
        /// Newer candidates skipped, with why, newest first.
        skipped: Vec<(SnapshotRef, RestoreFailure)>,
    },
    /// Fail the attempt, loudly.
    Fail(RestoreFailure),
}

/// Chooses what to restore: the newest candidate (checkpoint or savepoint), if it is usable.
/// An unusable newest candidate fails the restore, naming it and its damaged file, unless the
/// policy falls back to the newest usable one. Under the default policy a checkpoint that
/// `recorded` says completed must still be there: restoring anything older would replay output
/// its sink transactions already committed.
pub fn choose_restore(
    mut candidates: Vec<Candidate>,
    recorded: Option<u64>,
    policy: RestorePolicy,
) -> RestorePlan {
    if policy == RestorePolicy::FailLoudly {
        if let Some(latest) = recorded {
            let present = candidates
                .iter()
                .any(|c| c.snapshot == SnapshotRef::Checkpoint(latest));
            if !present {
                return RestorePlan::Fail(RestoreFailure {
                    file: Some(registry::metadata_path(latest).to_string()),
                    detail: format!(
                        "chk-{latest}: completed, but chk-{latest}/_metadata is missing"
                    ),
                });
            }
        }
    }
    candidates.sort_by_key(|candidate| std::cmp::Reverse(candidate.snapshot.id()));
    let count = candidates.len();
    let mut skipped = Vec::new();
    for (index, candidate) in candidates.into_iter().enumerate() {
        match candidate.validated {
            Ok(metadata) => {
                return RestorePlan::Restore {
                    snapshot: candidate.snapshot,
                    metadata,
                    skipped,
                }
            }
            Err(problem) if policy == RestorePolicy::FallbackToLatestValid && index + 1 < count => {
                skipped.push((candidate.snapshot, problem));
            }
            Err(problem) => {
                return RestorePlan::Fail(RestoreFailure {
                    file: problem.file,
                    detail: format!("{}: {}", candidate.snapshot.label(), problem.detail),
                })
            }
        }
    }
    RestorePlan::Nothing
}

#[cfg(test)]
mod tests {
    //! Every combination of candidates (none, usable or damaged checkpoints and savepoints, a
    //! recorded completion whose `_metadata` is gone) under both policies.

    use super::*;
    use crate::checkpoint::SnapshotKind;

    fn metadata(id: u64) -> CheckpointMetadata {
        CheckpointMetadata {
            checkpoint_id: id,
            kind: SnapshotKind::Checkpoint,
            trigger_time_ms: 0,
            job_fingerprint: 0,
            max_parallelism: 128,
            backend: "memory".into(),
            stages: Vec::new(),
        }
    }

    fn good(snapshot: SnapshotRef) -> Candidate {
        let id = snapshot.id();
        Candidate {
            snapshot,
            validated: Ok(metadata(id)),
        }
    }

    fn damaged(snapshot: SnapshotRef) -> Candidate {
        let file = format!("chk-{}/x.kv", snapshot.id());
        Candidate {
            snapshot,
            validated: Err(RestoreFailure {
                file: Some(file),
                detail: "checksum differs".into(),
            }),
        }
    }

    fn checkpoint(id: u64) -> SnapshotRef {
        SnapshotRef::Checkpoint(id)
    }

    fn savepoint(id: u64) -> SnapshotRef {
        SnapshotRef::Savepoint {
            name: "user".into(),
            id,
        }
    }

    /// The snapshot a plan restores, the ones it skipped, or the file its failure names.
    fn summary(plan: RestorePlan) -> String {
        match plan {
            RestorePlan::Nothing => "nothing".into(),
            RestorePlan::Restore {
                snapshot, skipped, ..
            } => {
                let skipped: Vec<String> = skipped.iter().map(|(s, _)| s.label()).collect();
                format!("{} skipping [{}]", snapshot.label(), skipped.join(", "))
            }
            RestorePlan::Fail(failure) => {
                format!(
                    "fail {:?}: {}",
                    failure.file.unwrap_or_default(),
                    failure.detail
                )
            }
        }
    }

    /// Candidates, the completion record's latest id, the policy, and the plan's summary.
    type Row = (Vec<Candidate>, Option<u64>, RestorePolicy, &'static str);

    fn check_table(rows: Vec<Row>) {
        for (candidates, recorded, policy, expected) in rows {
            let listed: Vec<String> = candidates.iter().map(|c| c.snapshot.label()).collect();
            let plan = summary(choose_restore(candidates, recorded, policy));
            assert_eq!(
                plan, expected,
                "{listed:?}, recorded {recorded:?}, {policy:?}"
            );
        }
    }

    #[test]
    fn every_checkpoint_and_damage_combination_under_both_policies() {
        use RestorePolicy::{FailLoudly as Loud, FallbackToLatestValid as Fallback};
        check_table(vec![
            (vec![], None, Loud, "nothing"),
            (vec![], None, Fallback, "nothing"),
            (
                vec![good(checkpoint(3))],
                Some(3),
                Loud,
                "chk-3 skipping []",
            ),
            (
                vec![good(checkpoint(2)), good(checkpoint(3))],
                Some(3),
                Loud,
                "chk-3 skipping []",
            ),
            (
                vec![good(checkpoint(2)), damaged(checkpoint(3))],
                Some(3),
                Loud,
                "fail \"chk-3/x.kv\": chk-3: checksum differs",
            ),
            (
                vec![good(checkpoint(2)), damaged(checkpoint(3))],
                Some(3),
                Fallback,
                "chk-2 skipping [chk-3]",
            ),
            (
                vec![damaged(checkpoint(2)), damaged(checkpoint(3))],
                Some(3),
                Fallback,
                "fail \"chk-2/x.kv\": chk-2: checksum differs",
            ),
            (
                vec![damaged(checkpoint(3))],
                Some(3),
                Loud,
                "fail \"chk-3/x.kv\": chk-3: checksum differs",
            ),
        ]);
    }

    #[test]
    fn savepoints_and_a_missing_metadata_under_both_policies() {
        use RestorePolicy::{FailLoudly as Loud, FallbackToLatestValid as Fallback};
        check_table(vec![
            // A savepoint newer than every checkpoint is restored before them (FLINK-10354).
            (
                vec![good(checkpoint(2)), good(savepoint(4))],
                Some(2),
                Loud,
                "savepoint user (chk-4) skipping []",
            ),
            (
                vec![good(checkpoint(5)), good(savepoint(4))],
                Some(5),
                Loud,
                "chk-5 skipping []",
            ),
            (
                vec![good(checkpoint(2)), damaged(savepoint(4))],
                Some(2),
                Loud,
                "fail \"chk-4/x.kv\": savepoint user (chk-4): checksum differs",
            ),
            (
                vec![good(checkpoint(2)), damaged(savepoint(4))],
                Some(2),
                Fallback,
                "chk-2 skipping [savepoint user (chk-4)]",
            ),
            // The record says chk-3 completed, but its `_metadata` is gone: loud, never older.
            (
                vec![good(checkpoint(2))],
                Some(3),
                Loud,
                "fail \"chk-3/_metadata\": chk-3: completed, but chk-3/_metadata is missing",
            ),
            (
                vec![],
                Some(3),
                Loud,
                "fail \"chk-3/_metadata\": chk-3: completed, but chk-3/_metadata is missing",
            ),
            (
                vec![good(checkpoint(2))],
                Some(3),
                Fallback,
                "chk-2 skipping []",
            ),
            (vec![], Some(3), Fallback, "nothing"),
        ]);
    }
}
