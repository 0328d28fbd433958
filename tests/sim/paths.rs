//! Method: finish a run, plant a canary file outside the checkpoint root, then make the root
//! hostile — a `_metadata` whose file names climb out of the root or are absolute, a checkpoint
//! directory or `shared/` that is a symbolic link to the canary's directory, a state file
//! replaced by a link to the canary, a pipe or a device — and run restore, retention (removing the
//! checkpoint) and garbage collection on it. Each must refuse with an error naming the path, and
//! the canary must survive with its bytes.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::support::{config, fan_in_job, input_for, linear_job, restore_checkpoint, run_on};
use faultline::checkpoint::{
    envelope, metadata, registry, CheckpointStorage, Durability, FsCheckpointStorage, RelPath,
};
use faultline::engine::RunConfig;
use faultline::fault::FaultSchedule;
use faultline::job::{Input, JobSpec};
use faultline::state::BackendKind;

const CANARY: &[u8] = b"outside the root: never read, never deleted";

struct Planted {
    job: JobSpec,
    input: Input,
    config: RunConfig,
    backend: BackendKind,
    _dir: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
    id: u64,
}

impl Planted {
    /// A finished run on `backend` and an empty directory beside its root.
    fn new(backend: BackendKind) -> Self {
        let job = if backend == BackendKind::Memory {
            linear_job()
        } else {
            fan_in_job()
        };
        let input = input_for(&job, 40, 5, 6);
        let config = config(1, 10);
        let (report, dir) = run_on(
            backend,
            &job,
            &input,
            &config,
            &mut FaultSchedule::default(),
        );
        let id = *report
            .outcome
            .retained_checkpoints
            .last()
            .expect("a retained checkpoint");
        let root = dir.path().join("checkpoints");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        Self {
            job,
            input,
            config,
            backend,
            _dir: dir,
            root,
            outside,
            id,
        }
    }

    fn plant(&self, name: &str) -> PathBuf {
        let canary = self.outside.join(name);
        std::fs::write(&canary, CANARY).unwrap();
        canary
    }

    fn restore(&self) -> Result<(), String> {
        restore_checkpoint(
            self.backend,
            &self.job,
            &self.input,
            &self.config,
            &self.root,
            self.id,
        )
        .map(|_| ())
    }

    fn storage(&self) -> FsCheckpointStorage {
        FsCheckpointStorage::new(&self.root, Durability::PageCache).unwrap()
    }

    /// Retention and garbage collection, as after a newer checkpoint subsumed this one.
    fn retain_and_collect(&self) -> Vec<String> {
        let mut storage = self.storage();
        let mut errors = Vec::new();
        if let Err(e) = collect_garbage(&mut storage) {
            errors.push(e.to_string());
        }
        if let Err(e) = storage.remove_dir(&registry::checkpoint_dir(self.id)) {
            errors.push(e.to_string());
        }
        if let Err(e) = collect_garbage(&mut storage) {
            errors.push(e.to_string());
        }
        errors
    }
}

#[track_caller]
fn assert_alive(canary: &Path) {
    assert_eq!(
        std::fs::read(canary).expect("the canary survives"),
        CANARY,
        "the canary is intact"
    );
}

/// The `_metadata` of `planted` with every file path named `victim` replaced by `hostile` (of
/// the same length, so every length field stays right), resealed with a valid checksum: only the
/// path check stands between it and the file system.
fn rewrite_path(planted: &Planted, victim: &str, hostile: &str) {
    assert_eq!(victim.len(), hostile.len());
    let path = planted.root.join(format!("chk-{}/_metadata", planted.id));
    let bytes = std::fs::read(&path).unwrap();
    let payload = envelope::open(
        "checkpoint metadata",
        metadata::MAGIC,
        metadata::VERSION,
        &bytes,
    )
    .unwrap();
    let text = payload
        .windows(victim.len())
        .position(|w| w == victim.as_bytes())
        .expect("the metadata names the victim");
    let mut hostile_payload = payload.to_vec();
    hostile_payload[text..text + victim.len()].copy_from_slice(hostile.as_bytes());
    std::fs::write(
        &path,
        envelope::seal(metadata::MAGIC, metadata::VERSION, &hostile_payload),
    )
    .unwrap();
}

/// The path of one state file the latest checkpoint names.
fn a_state_file(planted: &Planted) -> String {
    let storage = planted.storage();
    let metadata = registry::read_metadata(&storage, planted.id).unwrap();
    metadata.files()[0].path.to_string()
}

#[test]
fn metadata_naming_a_path_outside_the_root_is_refused() {
    #[allow(unused_mut)]
    let mut backends = vec![BackendKind::Memory];
    #[cfg(feature = "rocksdb")]
    backends.push(BackendKind::RocksDbIncremental);
    for backend in backends {
        for escape in ["../", "/"] {
            let planted = Planted::new(backend);
            let victim = a_state_file(&planted);
            let name = "x".repeat(victim.len() - escape.len());
            let canary = planted.plant(&name);
            let hostile = match escape {
                // root/../x... is the canary beside the root.
                "../" => format!("../{name}"),
                _ => format!("/{name}"),
            };
            rewrite_path(&planted, &victim, &hostile);
            let error = planted.restore().expect_err("a hostile path is refused");
            assert!(
                error.contains("unsafe path") || error.contains(&hostile),
                "{backend:?} {escape}: {error}"
            );
            let errors = planted.retain_and_collect();
            assert!(errors.is_empty(), "{errors:?}");
            assert_alive(&canary);
        }
    }
}

#[test]
fn a_checkpoint_directory_linked_out_of_the_root_is_refused_and_unlinked_only() {
    let planted = Planted::new(BackendKind::Memory);
    let chk = planted.root.join(format!("chk-{}", planted.id));
    let moved = planted.outside.join("chk");
    std::fs::rename(&chk, &moved).unwrap();
    symlink(&moved, &chk).unwrap();
    let canary = moved.join("_metadata");
    let pristine = std::fs::read(&canary).unwrap();

    let error = planted
        .restore()
        .expect_err("a linked checkpoint is refused");
    assert!(error.contains("symbolic link"), "{error}");
    let errors = planted.retain_and_collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        std::fs::symlink_metadata(&chk).is_err(),
        "the link itself is removed"
    );
    assert_eq!(
        std::fs::read(&canary).unwrap(),
        pristine,
        "its target is not"
    );
}

#[cfg(feature = "rocksdb")]
#[test]
fn a_shared_directory_linked_out_of_the_root_is_never_collected() {
    let planted = Planted::new(BackendKind::RocksDbIncremental);
    let shared = planted.root.join("shared");
    let moved = planted.outside.join("shared");
    std::fs::rename(&shared, &moved).unwrap();
    symlink(&moved, &shared).unwrap();
    // An unreferenced file in the linked directory is what garbage collection would delete.
    let canary = planted.plant("shared/orphan.sst");
    let kept: Vec<_> = std::fs::read_dir(&moved).unwrap().collect();

    let error = planted
        .restore()
        .expect_err("files behind a link are refused");
    assert!(error.contains("symbolic link"), "{error}");
    let mut storage = planted.storage();
    let error = collect_garbage(&mut storage).expect_err("listing a link is refused");
    assert!(error.to_string().contains("shared"), "{error}");
    assert_alive(&canary);
    assert_eq!(std::fs::read_dir(&moved).unwrap().count(), kept.len());
}

#[test]
fn a_state_file_that_is_a_link_a_pipe_or_a_device_is_refused() {
    let planted = Planted::new(BackendKind::Memory);
    let victim = planted.root.join(a_state_file(&planted));
    let canary = planted.plant("state");

    std::fs::remove_file(&victim).unwrap();
    symlink(&canary, &victim).unwrap();
    let error = planted
        .restore()
        .expect_err("a linked state file is refused");
    assert!(error.contains("symbolic link"), "{error}");

    std::fs::remove_file(&victim).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(&victim)
        .status()
        .expect("mkfifo runs");
    assert!(status.success());
    // Opening a pipe for reading would block forever: the type check comes first.
    let error = planted.restore().expect_err("a pipe is refused");
    assert!(error.contains("device, socket or pipe"), "{error}");

    // A character device (/dev/zero's numbers) where only root may make one; a link to the
    // real /dev/zero everywhere else.
    std::fs::remove_file(&victim).unwrap();
    let made = std::process::Command::new("mknod")
        .arg(&victim)
        .args(["c", "1", "5"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !made {
        symlink("/dev/zero", &victim).unwrap();
    }
    let error = planted.restore().expect_err("a device is refused");
    assert!(
        error.contains("device, socket or pipe") || error.contains("symbolic link"),
        "{error}"
    );

    let errors = planted.retain_and_collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert_alive(&canary);
}

#[test]
fn storage_refuses_every_operation_through_a_linked_directory() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let canary = outside.join("victim");
    std::fs::write(&canary, CANARY).unwrap();
    let root = dir.path().join("root");
    let mut storage = FsCheckpointStorage::new(&root, Durability::PageCache).unwrap();
    symlink(&outside, root.join("chk-1")).unwrap();
    let path = RelPath::new("chk-1/victim").unwrap();

    let read = storage.read(&path).expect_err("read through a link");
    let write = storage
        .write(&path, b"overwritten")
        .expect_err("write through a link");
    let remove = storage
        .remove_file(&path)
        .expect_err("remove through a link");
    let list = storage
        .list(Some(&RelPath::new("chk-1").unwrap()))
        .expect_err("list a link");
    for error in [read, write, remove, list] {
        assert!(error.to_string().contains("chk-1"), "{error}");
    }
    assert!(!storage.exists(&path));
    assert_alive(&canary);

    // A link planted at the temporary name a write goes through is replaced, never followed.
    std::fs::remove_file(root.join("chk-1")).unwrap();
    std::fs::create_dir(root.join("chk-1")).unwrap();
    symlink(&canary, root.join("chk-1/.victim.tmp")).unwrap();
    storage.write(&path, b"inside").unwrap();
    assert_eq!(std::fs::read(root.join("chk-1/victim")).unwrap(), b"inside");
    assert_alive(&canary);
}

/// Garbage collection as the engine runs it, with the references read from the retained
/// checkpoints' metadata in storage and no upload in flight.
fn collect_garbage(
    storage: &mut FsCheckpointStorage,
) -> Result<registry::Collection, faultline::checkpoint::StorageError> {
    let keep = registry::referenced(storage)?;
    registry::collect_garbage(
        storage,
        &keep,
        &faultline::checkpoint::upload::Uploads::new(),
    )
}
