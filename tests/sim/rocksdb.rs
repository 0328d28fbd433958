//! Method: drive the RocksDB backend directly to count what each incremental checkpoint uploads
//! and to declare states before and after the database opens;
//! run jobs on real checkpoint roots and audit them after retention and subsumption; chain runs
//! through savepoints (stop-with-savepoint, relocation, deletion, another backend, another
//! parallelism) and let the oracle check every restore; damage each kind of checkpoint file and
//! require an error naming it; and open native checkpoints with plain RocksDB.

use std::path::Path;

use crate::support::{
    assert_passed, config, fan_in_job, input_for, kills, restore_checkpoint, run_on,
};
use faultline::campaign::CaseReport;
use faultline::checkpoint::canonical::Compression;
use faultline::checkpoint::{registry, Durability, FsCheckpointStorage, KeyedStateHandle};
use faultline::checkpoint::{CheckpointConfig, SavepointRequest};
use faultline::engine::{JobStatus, RunConfig};
use faultline::fault::FaultSchedule;
use faultline::job::{ExternalStore, Input, JobSpec, RestartStrategy};
use faultline::model;
use faultline::state::{
    BackendContext, BackendKind, CompactionPolicy, KeyGroupRange, KeyedContext, RocksDbFactory,
    RocksDbMode, SavepointFormat, SnapshotPurpose, SnapshotResult, SnapshotTarget, StateBackend,
    StateBackendFactory, ValueState,
};

fn ssts(result: &SnapshotResult) -> usize {
    match &result.handle {
        KeyedStateHandle::Native { shared, .. } => shared.len(),
        KeyedStateHandle::Canonical(_) => 0,
        other => panic!("an unknown handle {other:?}"),
    }
}

#[test]
fn an_incremental_checkpoint_uploads_only_new_ssts_of_confirmed_bases() {
    let work = tempfile::tempdir().unwrap();
    let mut storage =
        FsCheckpointStorage::new(work.path().join("checkpoints"), Durability::PageCache).unwrap();
    let factory = RocksDbFactory {
        mode: RocksDbMode::Incremental,
        compaction: CompactionPolicy::never(),
    };
    let range = KeyGroupRange { start: 0, end: 127 };
    let context = BackendContext {
        task_name: "sum-0".into(),
        instance: "a0".into(),
        key_groups: range,
        working_dir: work.path().join("db"),
        created_ms: 0,
    };
    let mut backend = factory.create(context).unwrap();
    let state = ValueState::<i64>::new("sum");
    state.declare(backend.as_mut()).unwrap();
    let write = |backend: &mut dyn StateBackend, from: i64, to: i64, value: i64| {
        for i in from..to {
            let key = faultline::job::Datum::from(format!("k{i}").as_str());
            let group = key.key_group(128);
            state
                .set(
                    &mut KeyedContext::new(backend, group, key.as_bytes()),
                    &value,
                )
                .unwrap();
        }
    };
    let mut snapshot = |backend: &mut dyn StateBackend, id: u64| {
        let target = SnapshotTarget {
            checkpoint_id: id,
            dir: registry::checkpoint_dir(id),
            purpose: SnapshotPurpose::Checkpoint,
            compression: Compression::None,
            now_ms: 0,
        };
        backend.snapshot(&target, &mut storage).unwrap()
    };

    write(backend.as_mut(), 0, 500, 1);
    let first = snapshot(backend.as_mut(), 1);
    assert_eq!(first.files_reused, 0, "nothing to reuse at first");
    let base = ssts(&first);
    assert!(base >= 1);
    backend.notify_checkpoint_complete(1);

    write(backend.as_mut(), 0, 5, 2);
    let second = snapshot(backend.as_mut(), 2);
    assert_eq!(
        second.files_reused as usize, base,
        "every SST of the confirmed checkpoint is reused"
    );
    assert_eq!(ssts(&second), base + 1, "one new SST for the small change");
    let private = second.files_written as usize - 1;
    assert!(
        private >= 2,
        "MANIFEST, CURRENT and OPTIONS are written every time"
    );

    // Checkpoint 2 is never confirmed: its SST must be stored again, not trusted.
    write(backend.as_mut(), 5, 10, 3);
    let third = snapshot(backend.as_mut(), 3);
    assert_eq!(
        third.files_reused as usize, base,
        "only the confirmed base is reused"
    );
    assert_eq!(
        third.files_written as usize,
        2 + private,
        "checkpoint 2's SST and the new one"
    );

    // An aborted checkpoint's uploads are forgotten; a later confirmation covers earlier ones.
    backend.notify_checkpoint_aborted(3);
    backend.notify_checkpoint_complete(3);
    write(backend.as_mut(), 10, 15, 4);
    let fourth = snapshot(backend.as_mut(), 4);
    assert_eq!(
        fourth.files_reused as usize, base,
        "an aborted checkpoint never becomes a base"
    );
}

#[test]
fn states_declared_before_and_after_the_first_write_snapshot_and_restore() {
    let work = tempfile::tempdir().unwrap();
    let mut storage =
        FsCheckpointStorage::new(work.path().join("checkpoints"), Durability::PageCache).unwrap();
    let range = KeyGroupRange { start: 0, end: 127 };
    let context = |dir: &str| BackendContext {
        task_name: "sum-0".into(),
        instance: dir.into(),
        key_groups: range,
        working_dir: work.path().join(dir),
        created_ms: 0,
    };
    let key = "k1";
    let group = faultline::job::keygroup::key_group_for(key, 128);
    for mode in [RocksDbMode::Full, RocksDbMode::Incremental] {
        let factory = RocksDbFactory {
            mode,
            compaction: CompactionPolicy::never(),
        };
        let mut backend = factory.create(context(&format!("{mode:?}"))).unwrap();
        let early = ValueState::<i64>::new("early");
        early.declare(backend.as_mut()).unwrap();
        ValueState::<i64>::new("unused")
            .declare(backend.as_mut())
            .unwrap();
        let ctx = KeyedContext::new(backend.as_mut(), group, key.as_bytes());
        assert_eq!(early.get(&ctx).unwrap(), None, "nothing written yet");
        early
            .set(
                &mut KeyedContext::new(backend.as_mut(), group, key.as_bytes()),
                &7,
            )
            .unwrap();
        // Declared once the database is open: its column family is created on the spot.
        let late = ValueState::<i64>::new("late");
        late.declare(backend.as_mut()).unwrap();
        late.set(
            &mut KeyedContext::new(backend.as_mut(), group, key.as_bytes()),
            &9,
        )
        .unwrap();
        let id = if mode == RocksDbMode::Full { 1 } else { 2 };
        let target = SnapshotTarget {
            checkpoint_id: id,
            dir: registry::checkpoint_dir(id),
            purpose: SnapshotPurpose::Checkpoint,
            compression: Compression::None,
            now_ms: 0,
        };
        let result = backend.snapshot(&target, &mut storage).unwrap();

        let mut restored = factory
            .create(context(&format!("{mode:?}-restored")))
            .unwrap();
        restored
            .restore(
                &[faultline::state::RestoreHandle {
                    key_groups: range,
                    handle: result.handle,
                }],
                &storage,
                faultline::state::RestoreMode::Claim,
            )
            .unwrap();
        let mut names: Vec<_> = restored.states().iter().map(|s| s.name.clone()).collect();
        names.sort();
        assert_eq!(names, ["early", "late", "unused"], "{mode:?}");
        let early = ValueState::<i64>::new("early");
        early.declare(restored.as_mut()).unwrap();
        let late = ValueState::<i64>::new("late");
        late.declare(restored.as_mut()).unwrap();
        let unused = ValueState::<i64>::new("unused");
        unused.declare(restored.as_mut()).unwrap();
        let ctx = KeyedContext::new(restored.as_mut(), group, key.as_bytes());
        assert_eq!(early.get(&ctx).unwrap(), Some(7), "{mode:?}");
        assert_eq!(late.get(&ctx).unwrap(), Some(9), "{mode:?}");
        assert_eq!(unused.get(&ctx).unwrap(), None, "{mode:?}");
    }
}

fn incremental_config(seed: u64, num_retained: u32) -> RunConfig {
    let mut config = config(seed, 10);
    config.checkpoint = config.checkpoint.with_num_retained(num_retained);
    config
}

#[test]
fn shared_holds_exactly_the_files_retained_checkpoints_reference() {
    let job = fan_in_job();
    let input = input_for(&job, 160, 12, 3);
    for num_retained in [1, 3] {
        let (report, dir) = run_on(
            BackendKind::RocksDbIncremental,
            &job,
            &input,
            &incremental_config(2, num_retained),
            &mut kills(&[150]),
        );
        assert_passed(&report);
        assert_eq!(
            report.outcome.retained_checkpoints.len(),
            num_retained as usize
        );
        assert!(
            report.outcome.stats.files_reused > 0,
            "incremental checkpoints reused files"
        );
        let trace = report.outcome.trace.render();
        assert!(trace.contains("subsumed"), "retention subsumed checkpoints");
        let storage =
            FsCheckpointStorage::new(dir.path().join("checkpoints"), Durability::PageCache)
                .unwrap();
        let audit = registry::audit(&storage).unwrap();
        assert_eq!(
            audit.problems,
            vec![],
            "num_retained {num_retained}: no orphan, nothing missing"
        );
        assert_eq!(audit.checkpoints, report.outcome.retained_checkpoints);
        let shared = std::fs::read_dir(dir.path().join("checkpoints/shared"))
            .unwrap()
            .count();
        assert!(shared > 0, "shared files exist");
    }
}

fn savepoint_config(seed: u64, at_ms: u64, format: SavepointFormat) -> RunConfig {
    let mut config = incremental_config(seed, 1);
    config.savepoints = vec![SavepointRequest {
        at_ms,
        name: "sp".into(),
        format,
        stop: true,
    }];
    config
}

fn with_parallelism(mut job: JobSpec, sum: u16, stats: u16) -> JobSpec {
    job.stages[1].parallelism = sum;
    job.stages[2].parallelism = stats;
    job
}

/// Runs a case against an existing external store (what earlier runs wrote).
fn run_chained(
    backend: BackendKind,
    job: &JobSpec,
    input: &Input,
    config: &RunConfig,
    store: ExternalStore,
) -> (CaseReport, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let factory = backend.factory().unwrap();
    let report = crate::support::run_phase(
        job,
        input,
        config,
        factory.as_ref(),
        &mut FaultSchedule::default(),
        dir.path(),
        store,
    );
    (report, dir)
}

/// Runs until the savepoint stops the job, moves the savepoint to `to`, and returns the external
/// store for the next run.
fn take_savepoint(
    backend: BackendKind,
    job: &JobSpec,
    input: &Input,
    config: &RunConfig,
    to: &Path,
    store: ExternalStore,
) -> ExternalStore {
    let (report, dir) = run_chained(backend, job, input, config, store);
    assert_passed(&report);
    assert_eq!(
        report.outcome.status,
        JobStatus::Stopped {
            savepoint: "sp".into()
        }
    );
    std::fs::rename(dir.path().join("checkpoints/savepoints/sp"), to).unwrap();
    report.outcome.store
}

#[test]
fn checkpoints_after_a_savepoint_restore_never_depend_on_its_files() {
    let job = fan_in_job();
    let input = input_for(&job, 150, 10, 4);
    let place = tempfile::tempdir().unwrap();
    let savepoint = place.path().join("relocated-sp");
    let config = savepoint_config(1, 40, SavepointFormat::Native);
    let store = take_savepoint(
        BackendKind::RocksDbIncremental,
        &job,
        &input,
        &config,
        &savepoint,
        ExternalStore::new(),
    );

    let mut config = incremental_config(1, 1);
    config.initial_snapshot = Some(savepoint.clone());
    let (report, dir) = run_chained(
        BackendKind::RocksDbIncremental,
        &job,
        &input,
        &config,
        store,
    );
    assert_passed(&report);
    assert!(
        report.outcome.restores[0].positions.total() > 0,
        "started from the savepoint, not from scratch"
    );
    assert!(
        report.outcome.trace.events().iter().any(|stamped| matches!(
            &stamped.event,
            faultline::trace::Event::Restored(restored) if restored.no_claim
        )),
        "restored in NO_CLAIM mode"
    );

    std::fs::remove_dir_all(&savepoint).unwrap();
    let latest = *report.outcome.retained_checkpoints.last().unwrap();
    let root = dir.path().join("checkpoints");
    let restored = restore_checkpoint(
        BackendKind::RocksDbIncremental,
        &job,
        &input,
        &config,
        &root,
        latest,
    )
    .unwrap();
    assert_eq!(
        model::evaluate(&job, &input, &restored.positions)
            .state
            .differences(&restored.state),
        vec![]
    );
}

#[test]
fn a_canonical_savepoint_switches_backends_and_rescales_one_three_two() {
    let job = fan_in_job();
    let input = input_for(&job, 200, 15, 5);
    let place = tempfile::tempdir().unwrap();
    let (first, second) = (place.path().join("first"), place.path().join("second"));
    // Parallelism 1 on RocksDB -> 3 in memory -> 2 back on RocksDB, through canonical savepoints.
    let config = savepoint_config(1, 60, SavepointFormat::Canonical);
    let store = take_savepoint(
        BackendKind::RocksDbIncremental,
        &with_parallelism(job.clone(), 1, 1),
        &input,
        &config,
        &first,
        ExternalStore::new(),
    );
    let mut config = savepoint_config(1, 200, SavepointFormat::Canonical);
    config.initial_snapshot = Some(first.clone());
    let store = take_savepoint(
        BackendKind::Memory,
        &with_parallelism(job.clone(), 3, 3),
        &input,
        &config,
        &second,
        store,
    );
    let mut config = incremental_config(1, 1);
    config.initial_snapshot = Some(second.clone());
    let (report, _dir) = run_chained(
        BackendKind::RocksDbFull,
        &with_parallelism(job.clone(), 2, 2),
        &input,
        &config,
        store,
    );
    assert_passed(&report);
    let restored = &report.outcome.restores[0];
    assert!(
        restored.positions.total() > 0 && !restored.state.is_empty(),
        "state came from the savepoint"
    );
    assert_eq!(report.outcome.status, JobStatus::Finished);
}

#[test]
fn a_native_savepoint_rescales_on_rocksdb_and_is_refused_by_memory() {
    let job = fan_in_job();
    let input = input_for(&job, 120, 9, 6);
    let place = tempfile::tempdir().unwrap();
    let savepoint = place.path().join("native");
    let config = savepoint_config(2, 50, SavepointFormat::Native);
    let store = take_savepoint(
        BackendKind::RocksDbIncremental,
        &job,
        &input,
        &config,
        &savepoint,
        ExternalStore::new(),
    );
    let mut config = incremental_config(2, 1);
    config.initial_snapshot = Some(savepoint.clone());
    let rescaled = with_parallelism(job.clone(), 1, 4);
    let (report, _dir) = run_chained(
        BackendKind::RocksDbIncremental,
        &rescaled,
        &input,
        &config,
        store.clone(),
    );
    assert_passed(&report);

    let mut config = RunConfig::new(2, CheckpointConfig::every(10), RestartStrategy::None);
    config.initial_snapshot = Some(savepoint);
    let (report, _dir) = run_chained(BackendKind::Memory, &job, &input, &config, store);
    let failure = &report.outcome.failures[0];
    assert!(
        failure
            .cause
            .to_string()
            .contains("a native snapshot restores only into the backend that wrote it"),
        "{failure:?}"
    );
}

fn corrupt(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn damage_to_each_kind_of_file_is_detected_and_named() {
    let job = fan_in_job();
    let input = input_for(&job, 80, 8, 7);
    let config = incremental_config(3, 1);
    for backend in [BackendKind::RocksDbIncremental, BackendKind::RocksDbFull] {
        let (report, dir) = run_on(
            backend,
            &job,
            &input,
            &config,
            &mut FaultSchedule::default(),
        );
        assert_passed(&report);
        let root = dir.path().join("checkpoints");
        let id = *report.outcome.retained_checkpoints.last().unwrap();
        let metadata = registry::read_metadata(
            &FsCheckpointStorage::new(&root, Durability::PageCache).unwrap(),
            id,
        )
        .unwrap();
        let files: Vec<String> = metadata
            .files()
            .iter()
            .map(|f| f.path.to_string())
            .collect();
        let mut victims: Vec<String> = Vec::new();
        let mut pick = |pattern: &str| {
            let found = files
                .iter()
                .find(|f| f.contains(pattern))
                .unwrap_or_else(|| panic!("{backend}: no {pattern} in {files:?}"))
                .clone();
            victims.push(found);
        };
        match backend {
            BackendKind::RocksDbIncremental => {
                pick(".sst");
                pick("MANIFEST");
            }
            _ => pick(".kv"),
        }
        victims.push(format!("chk-{id}/_metadata"));
        for victim in victims {
            let path = root.join(&victim);
            let pristine = std::fs::read(&path).unwrap();
            corrupt(&path);
            let error = restore_checkpoint(backend, &job, &input, &config, &root, id)
                .expect_err("damage is detected");
            assert!(error.contains(&victim), "{backend}: {victim}: {error}");
            std::fs::write(&path, pristine).unwrap();
        }
        restore_checkpoint(backend, &job, &input, &config, &root, id)
            .expect("pristine files restore again");
    }
}

#[test]
fn native_checkpoints_open_with_plain_rocksdb() {
    use faultline::rocksdb::{Options, DB};
    let job = crate::support::linear_job();
    let input = input_for(&job, 60, 7, 8);
    let (report, dir) = run_on(
        BackendKind::RocksDbIncremental,
        &job,
        &input,
        &incremental_config(4, 1),
        &mut FaultSchedule::default(),
    );
    assert_passed(&report);
    let root = dir.path().join("checkpoints");
    let id = *report.outcome.retained_checkpoints.last().unwrap();
    let metadata = registry::read_metadata(
        &FsCheckpointStorage::new(&root, Durability::PageCache).unwrap(),
        id,
    )
    .unwrap();
    let handle = metadata.stages[1].subtasks[0]
        .keyed
        .clone()
        .expect("sum is keyed");
    let KeyedStateHandle::Native { shared, private } = handle else {
        panic!("incremental checkpoints are native")
    };
    let copy = tempfile::tempdir().unwrap();
    for named in shared.iter().chain(&private) {
        std::fs::copy(
            root.join(named.file.path.as_str()),
            copy.path().join(&named.local_name),
        )
        .unwrap();
    }
    let families = DB::list_cf(&Options::default(), copy.path()).unwrap();
    let db = DB::open_cf_for_read_only(&Options::default(), copy.path(), &families, false).unwrap();
    let cf = db
        .cf_handle("state-sum")
        .expect("a column family per state");
    let mut found = std::collections::BTreeMap::new();
    for item in db.iterator_cf(cf, faultline::rocksdb::IteratorMode::Start) {
        let (key, value) = item.unwrap();
        // key_group (2 bytes) ‖ key ‖ 00 00: keys here hold no 00 bytes.
        let name = String::from_utf8(key[2..key.len() - 2].to_vec()).unwrap();
        let value = faultline::job::Datum::parse(std::str::from_utf8(&value).unwrap()).unwrap();
        found.insert(name, value.get::<i64>().unwrap());
    }
    let expected: std::collections::BTreeMap<String, i64> =
        model::evaluate(&job, &input, &input.end_positions())
            .state
            .0
            .into_iter()
            .map(|(addr, value)| (addr.key.as_str().to_string(), value.get::<i64>().unwrap()))
            .collect();
    assert_eq!(found, expected);
}
