//! Method: run the named unaligned-rescale scenario, which cancels its job at a retained
//! checkpoint and resumes it from there, in each restore mode, and read the checkpoint root it
//! leaves: NO_CLAIM keeps the restored checkpoint intact to the end and no later checkpoint
//! references its files, in both kill modes; CLAIM makes it the job's, so later checkpoints
//! reuse its files and retention subsumes it; the broken twin that hands a NO_CLAIM checkpoint
//! to the backends as claimed is caught by the storage audit, naming the file.

use std::collections::BTreeSet;

use faultline::campaign::{Case, CaseReport, KillMode, Scenario, Seams};
use faultline::check::{Property, Violation};
use faultline::checkpoint::registry::{self, AuditProblem, RunningJob};
use faultline::checkpoint::{Durability, FsCheckpointStorage, RelPath};
use faultline::state::RestoreMode;
use faultline::trace::Event;

/// The named scenario resumed in `mode`, at the parallelisms `parallelism`.
fn scenario(mode: RestoreMode, parallelism: [u16; 2]) -> Scenario {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/scenarios/unaligned-rescale-rocksdb-incremental.toml");
    let mut scenario = Scenario::load(&file).unwrap();
    let rescale = scenario.rescale.as_mut().expect("the scenario rescales");
    rescale.restore_mode = mode;
    rescale.parallelism = parallelism.to_vec();
    scenario
}

/// A case's report with the checkpoint root it left.
struct Ran {
    report: CaseReport,
    storage: FsCheckpointStorage,
    _dir: tempfile::TempDir,
}

fn run(scenario: &Scenario) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let report = Case::new(scenario.clone(), Seams::default())
        .run(dir.path(), &KillMode::Sim)
        .unwrap();
    let root = dir.path().join("checkpoints");
    Ran {
        report,
        storage: FsCheckpointStorage::new(root, Durability::PageCache).unwrap(),
        _dir: dir,
    }
}

/// The checkpoint the first phase was cancelled at, and whether the second phase's first
/// restore of it claimed it.
fn resumed_from(report: &CaseReport) -> (u64, bool) {
    let events = report.outcome.trace.events();
    let (at, checkpoint) = (events.iter().enumerate())
        .find_map(|(at, s)| match s.event {
            Event::JobCancelled { checkpoint } => Some((at, checkpoint)),
            _ => None,
        })
        .expect("the first phase was cancelled at a checkpoint");
    let no_claim = events[at..]
        .iter()
        .find_map(|s| match &s.event {
            Event::Restored(restored) => Some(restored.no_claim),
            _ => None,
        })
        .expect("the second phase restored");
    (checkpoint, !no_claim)
}

fn shared_files(storage: &FsCheckpointStorage, checkpoint: u64) -> BTreeSet<RelPath> {
    registry::read_metadata(storage, checkpoint)
        .unwrap()
        .shared_paths()
}

/// The files the first checkpoint completed after `restored` reused from an earlier one.
fn reused_by_the_next_checkpoint(report: &CaseReport, restored: u64) -> u32 {
    let events = report.outcome.trace.events();
    let next = (events.iter())
        .find_map(|s| match s.event {
            Event::CheckpointCompleted { checkpoint, .. } if checkpoint > restored => {
                Some(checkpoint)
            }
            _ => None,
        })
        .expect("the job checkpointed after the restore");
    (events.iter())
        .filter_map(|s| match &s.event {
            Event::Snapshot {
                checkpoint,
                keyed: Some(keyed),
                ..
            } if *checkpoint == next => Some(keyed.reused),
            _ => None,
        })
        .sum()
}

/// The retained checkpoints after `checkpoint` that reference one of its shared files.
fn sharing_with(storage: &FsCheckpointStorage, checkpoint: u64) -> Vec<u64> {
    let restored = shared_files(storage, checkpoint);
    assert!(!restored.is_empty(), "chk-{checkpoint} has shared files");
    let later = registry::retained(storage).unwrap().into_iter();
    later
        .filter(|retained| retained.id > checkpoint)
        .filter(|retained| !shared_files(storage, retained.id).is_disjoint(&restored))
        .map(|retained| retained.id)
        .collect()
}

#[test]
fn a_checkpoint_restored_no_claim_stays_whole_and_unreferenced_in_both_kill_modes() {
    for parallelism in [[2, 3], [2, 2]] {
        let scenario = scenario(RestoreMode::NoClaim, parallelism);
        let ran = run(&scenario);
        assert!(ran.report.verdict.passed(), "{}", ran.report.verdict);
        let (restored, claimed) = resumed_from(&ran.report);
        assert!(!claimed, "restored NO_CLAIM");
        let retained = registry::retained(&ran.storage).unwrap();
        let ids: Vec<u64> = retained.iter().map(|r| r.id).collect();
        assert!(ids.contains(&restored), "chk-{restored} kept: {ids:?}");
        assert!(ids.iter().any(|id| *id > restored), "the job checkpointed");
        assert_eq!(sharing_with(&ran.storage, restored), Vec::<u64>::new());
        // The first checkpoint after the restore is self-contained.
        assert_eq!(reused_by_the_next_checkpoint(&ran.report, restored), 0);
        let running = RunningJob {
            unclaimed_up_to: Some(restored),
            ..RunningJob::default()
        };
        let audit = registry::audit_running(&ran.storage, &running).unwrap();
        assert_eq!(audit.problems, Vec::new());
    }
    crate::campaign::assert_both_modes_agree(&scenario(RestoreMode::NoClaim, [2, 2]));
}

#[test]
fn a_checkpoint_restored_claim_becomes_the_jobs_own() {
    let ran = run(&scenario(RestoreMode::Claim, [2, 2]));
    assert!(ran.report.verdict.passed(), "{}", ran.report.verdict);
    let (restored, claimed) = resumed_from(&ran.report);
    assert!(claimed, "restored CLAIM");
    let events = ran.report.outcome.trace.events();
    let subsumed = events.iter().any(
        |s| matches!(s.event, Event::CheckpointSubsumed { checkpoint } if checkpoint == restored),
    );
    assert!(subsumed, "{}", ran.report.outcome.trace.render());
    let ids: Vec<u64> = (registry::retained(&ran.storage).unwrap().iter())
        .map(|r| r.id)
        .collect();
    assert!(
        !ids.contains(&restored),
        "chk-{restored} collected: {ids:?}"
    );
    // The incremental backend's next checkpoint reused the claimed checkpoint's files.
    assert!(reused_by_the_next_checkpoint(&ran.report, restored) > 0);
}

#[test]
fn a_no_claim_checkpoint_claimed_by_the_backends_is_caught_naming_the_file() {
    let mut broken = scenario(RestoreMode::NoClaim, [2, 2]);
    broken.sabotage.no_claim_checkpoint_claimed = true;
    let ran = run(&broken);
    let (restored, _) = resumed_from(&ran.report);
    let violations = &ran.report.verdict.violations;
    let caught = violations.iter().any(|violation| {
        matches!(
            violation,
            Violation::Storage {
                problem: AuditProblem::ReferencesUnclaimed { restored: holder, file, .. },
                ..
            } if *holder == format!("chk-{restored}") && file.starts_with("shared/")
        )
    });
    assert!(caught, "{}", ran.report.verdict);
    assert!(violations.iter().all(|v| v.property() == Property::Storage));
    assert!(!sharing_with(&ran.storage, restored).is_empty());
}
