//! Checkpoint storage: the seam through which every checkpoint byte is written and read.
//!
//! [`FsCheckpointStorage`] keeps files in a real directory. A write goes to a temporary name,
//! is synced, renamed into place and the directory synced, so a reader sees either the old file
//! or the whole new one. Reads refuse anything that is not a regular file inside the root, and
//! no operation goes through a directory that is a symbolic link: a planted `shared -> /` must
//! not let a read, a write or a deletion reach outside the root.
//!
//! ```
//! use faultline::checkpoint::{CheckpointStorage, Durability, FsCheckpointStorage, RelPath};
//!
//! let dir = tempfile::tempdir()?;
//! let mut storage = FsCheckpointStorage::new(dir.path().join("checkpoints"), Durability::PageCache)?;
//! let path = RelPath::new("chk-1/state.kv")?;
//! let file = storage.write(&path, b"cells")?;
//! // The reference records size and checksum, which every reader checks.
//! assert_eq!(file.size, 5);
//! assert_eq!(storage.read(&path)?, b"cells");
//! assert_eq!(storage.list(None)?, vec!["chk-1".to_string()]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{FileRef, RelPath, StorageError};

/// Where checkpoint files live. Fault plans wrap this trait to inject I/O errors, kills and
/// corruption; a user's own storage implements it to be tested the same way.
pub trait CheckpointStorage {
    /// The root directory, for messages.
    fn root(&self) -> &Path;
    /// Writes `bytes` to `path` atomically and returns its size and checksum.
    fn write(&mut self, path: &RelPath, bytes: &[u8]) -> Result<FileRef, StorageError>;
    /// [`CheckpointStorage::write`], telling `observer` of each step of the write protocol as
    /// it is taken, so a fault injector can stop the write there (a simulated machine crash).
    /// An error from the observer ends the write with that error. The default writes at once
    /// and reports every step after the fact, so a crash can only follow the whole write.
    fn write_stepped(
        &mut self,
        path: &RelPath,
        bytes: &[u8],
        observer: &mut StepObserver<'_>,
    ) -> Result<FileRef, StorageError> {
        let file = self.write(path, bytes)?;
        let here = StepFiles {
            path,
            temporary: &self.root().join(".unobserved"),
            full: &path.under(self.root()),
        };
        for step in WriteStep::ALL {
            observer(step, &here)?;
        }
        Ok(file)
    }
    /// Reads a whole file.
    fn read(&self, path: &RelPath) -> Result<Vec<u8>, StorageError>;
    /// Whether a file exists.
    fn exists(&self, path: &RelPath) -> bool;
    /// Names in a directory (the root when `dir` is `None`), sorted; empty if it does not exist.
    fn list(&self, dir: Option<&RelPath>) -> Result<Vec<String>, StorageError>;
    /// Removes a file; a missing file is not an error.
    fn remove_file(&mut self, path: &RelPath) -> Result<(), StorageError>;
    /// Removes a directory and everything in it; a missing directory is not an error.
    fn remove_dir(&mut self, dir: &RelPath) -> Result<(), StorageError>;
}

/// How hard a write tries to reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `fsync` the file and its directory: survives power loss. The default for real use.
    Fsync,
    /// Leave the bytes in the page cache: survives a process kill, not a machine crash. Simulated
    /// kills model lost and torn writes themselves, so simulated cases use this for speed.
    PageCache,
}

/// The file-system steps of one [`FsCheckpointStorage`] write, in order. With
/// [`Durability::PageCache`] the two syncs are not made, but an observed write still reports
/// them, so a write always has the same five steps.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum WriteStep {
    /// The temporary file is created (empty).
    Create,
    /// The bytes are written to it.
    Write,
    /// The temporary file is synced.
    SyncFile,
    /// It is renamed over the final name.
    Rename,
    /// The directory is synced, making the rename durable.
    SyncDir,
}

impl WriteStep {
    /// Every step, in the order a write takes them.
    pub const ALL: [WriteStep; 5] = [
        WriteStep::Create,
        WriteStep::Write,
        WriteStep::SyncFile,
        WriteStep::Rename,
        WriteStep::SyncDir,
    ];
}

/// Where the step of a write being observed stands.
#[derive(Debug, Clone, Copy)]
pub struct StepFiles<'a> {
    /// The file being written, relative to the root.
    pub path: &'a RelPath,
    /// Its temporary name while it is written.
    pub temporary: &'a Path,
    /// Its final name.
    pub full: &'a Path,
}

/// Observes each step of a write (see [`CheckpointStorage::write_stepped`]).
pub type StepObserver<'a> = dyn FnMut(WriteStep, &StepFiles<'_>) -> Result<(), StorageError> + 'a;

/// Checkpoint storage in a real directory.
#[derive(Debug)]
pub struct FsCheckpointStorage {
    root: PathBuf,
    durability: Durability,
}

fn io_error(path: impl ToString, source: std::io::Error) -> StorageError {
    StorageError::Io {
        path: path.to_string(),
        source,
    }
}

impl FsCheckpointStorage {
    /// Storage under `root`, which is created if missing.
    pub fn new(root: impl Into<PathBuf>, durability: Durability) -> Result<Self, StorageError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|e| io_error(root.display(), e))?;
        Ok(Self { root, durability })
    }

    /// Creates `dir` and any missing parents inside the root; with `Fsync`, each new directory's
    /// parent is synced, or a crash could lose the entry of a directory full of synced files.
    fn create_dirs(&self, path: &RelPath, dir: &Path) -> Result<(), StorageError> {
        let mut missing = Vec::new();
        let mut current = dir;
        while current != self.root && !current.is_dir() {
            missing.push(current.to_path_buf());
            match current.parent() {
                Some(parent) => current = parent,
                None => break,
            }
        }
        for new in missing.iter().rev() {
            match fs::create_dir(new) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                    return Err(io_error(path, e))
                }
                _ => {}
            }
            if let Some(parent) = new.parent() {
                self.sync_dir(parent)?;
            }
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> Result<(), StorageError> {
        if self.durability == Durability::Fsync {
            let handle = fs::File::open(dir).map_err(|e| io_error(dir.display(), e))?;
            handle.sync_all().map_err(|e| io_error(dir.display(), e))?;
        }
        Ok(())
    }

    /// `path` below the root, after checking that no directory on the way is a symbolic link
    /// (or anything but a directory). Components that do not exist yet are fine: nothing below
    /// them exists either.
    fn contained(&self, path: &RelPath) -> Result<PathBuf, StorageError> {
        let full = path.under(&self.root);
        let mut dir = self.root.clone();
        let components: Vec<&str> = path.as_str().split('/').collect();
        for component in &components[..components.len() - 1] {
            dir.push(component);
            match fs::symlink_metadata(&dir) {
                Ok(metadata) if metadata.is_dir() => {}
                Ok(metadata) => {
                    let kind = if metadata.file_type().is_symlink() {
                        "a directory on its path is a symbolic link"
                    } else {
                        "a directory on its path is not a directory"
                    };
                    return Err(StorageError::NotRegularFile {
                        path: path.to_string(),
                        kind,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => return Err(io_error(path, e)),
            }
        }
        Ok(full)
    }

    /// Fails unless `full` is a regular file (not a symlink, directory or device).
    fn check_regular(&self, path: &RelPath, full: &Path) -> Result<(), StorageError> {
        let metadata = match fs::symlink_metadata(full) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StorageError::Missing {
                    path: path.to_string(),
                })
            }
            Err(e) => return Err(io_error(path, e)),
        };
        let file_type = metadata.file_type();
        let kind = if file_type.is_symlink() {
            "a symbolic link"
        } else if file_type.is_dir() {
            "a directory"
        } else if !file_type.is_file() {
            "a device, socket or pipe"
        } else {
            return Ok(());
        };
        Err(StorageError::NotRegularFile {
            path: path.to_string(),
            kind,
        })
    }
}

impl CheckpointStorage for FsCheckpointStorage {
    fn root(&self) -> &Path {
        &self.root
    }

    fn write(&mut self, path: &RelPath, bytes: &[u8]) -> Result<FileRef, StorageError> {
        self.write_stepped(path, bytes, &mut |_, _| Ok(()))
    }

    fn write_stepped(
        &mut self,
        path: &RelPath,
        bytes: &[u8],
        observer: &mut StepObserver<'_>,
    ) -> Result<FileRef, StorageError> {
        let full = self.contained(path)?;
        let dir = full
            .parent()
            .expect("a path under the root has a parent")
            .to_path_buf();
        self.create_dirs(path, &dir)?;
        let temporary = dir.join(format!(
            ".{}.tmp",
            full.file_name()
                .expect("a RelPath ends in a file name")
                .to_string_lossy()
        ));
        let here = StepFiles {
            path,
            temporary: &temporary,
            full: &full,
        };
        let fsync = self.durability == Durability::Fsync;
        // Whatever sits at the temporary name (a torn leftover, or a planted link or pipe) is
        // removed as itself, and the new file is created exclusively: a write never follows a
        // link out of the root.
        match fs::remove_file(&temporary) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_error(path, e));
            }
            _ => {}
        }
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temporary)
            .map_err(|e| io_error(path, e))?;
        observer(WriteStep::Create, &here)?;
        file.write_all(bytes).map_err(|e| io_error(path, e))?;
        observer(WriteStep::Write, &here)?;
        if fsync {
            file.sync_all().map_err(|e| io_error(path, e))?;
        }
        observer(WriteStep::SyncFile, &here)?;
        drop(file);
        fs::rename(&temporary, &full).map_err(|e| io_error(path, e))?;
        observer(WriteStep::Rename, &here)?;
        self.sync_dir(&dir)?;
        observer(WriteStep::SyncDir, &here)?;
        Ok(FileRef::of(path.clone(), bytes))
    }

    fn read(&self, path: &RelPath) -> Result<Vec<u8>, StorageError> {
        let full = self.contained(path)?;
        self.check_regular(path, &full)?;
        fs::read(&full).map_err(|e| io_error(path, e))
    }

    fn exists(&self, path: &RelPath) -> bool {
        self.contained(path)
            .is_ok_and(|full| fs::symlink_metadata(full).is_ok())
    }

    fn list(&self, dir: Option<&RelPath>) -> Result<Vec<String>, StorageError> {
        let full = match dir {
            None => self.root.clone(),
            Some(dir) => {
                let full = self.contained(dir)?;
                // The listed directory itself must not be a link either.
                if fs::symlink_metadata(&full).is_ok_and(|m| !m.is_dir()) {
                    return Err(StorageError::NotRegularFile {
                        path: dir.to_string(),
                        kind: "not a directory (a symbolic link or a file)",
                    });
                }
                full
            }
        };
        let label = dir.map_or_else(|| ".".to_string(), |dir| dir.to_string());
        let entries = match fs::read_dir(&full) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(label, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error(&label, e))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        // read_dir order is the file system's: sort so nothing downstream depends on it.
        names.sort();
        Ok(names)
    }

    fn remove_file(&mut self, path: &RelPath) -> Result<(), StorageError> {
        // The last component is removed as itself (a link, never its target).
        let full = self.contained(path)?;
        match fs::remove_file(&full) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error(path, e)),
            _ => match full.parent() {
                // With Fsync a deletion is durable too: a crash must not bring the file back.
                Some(parent) => self.sync_dir(parent),
                None => Ok(()),
            },
        }
    }

    fn remove_dir(&mut self, dir: &RelPath) -> Result<(), StorageError> {
        let full = self.contained(dir)?;
        let metadata = match fs::symlink_metadata(&full) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error(dir, e)),
        };
        // A symlinked "directory" is removed as a link: its target, which may lie outside the
        // root, is never walked.
        if metadata.file_type().is_symlink() || !metadata.is_dir() {
            fs::remove_file(&full).map_err(|e| io_error(dir, e))?;
        } else {
            fs::remove_dir_all(&full).map_err(|e| io_error(dir, e))?;
        }
        match full.parent() {
            Some(parent) => self.sync_dir(parent),
            None => Ok(()),
        }
    }
}

/// A read-only view of a directory inside another storage, with paths relative to that
/// directory: how a relocatable savepoint is read where it lies. Writes are refused.
pub struct Subdirectory<'a> {
    inner: &'a dyn CheckpointStorage,
    dir: RelPath,
    root: PathBuf,
}

impl<'a> Subdirectory<'a> {
    /// The view of `dir` inside `inner`.
    pub fn new(inner: &'a dyn CheckpointStorage, dir: RelPath) -> Self {
        let root = dir.under(inner.root());
        Self { inner, dir, root }
    }

    fn inside(&self, path: &RelPath) -> Result<RelPath, StorageError> {
        self.dir
            .join(path.as_str())
            .map_err(|e| StorageError::format(path, e))
    }

    fn refuse(&self, path: &RelPath) -> StorageError {
        let error = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "read-only view");
        io_error(format!("{}/{path}", self.dir), error)
    }
}

impl CheckpointStorage for Subdirectory<'_> {
    fn root(&self) -> &Path {
        &self.root
    }

    fn write(&mut self, path: &RelPath, _bytes: &[u8]) -> Result<FileRef, StorageError> {
        Err(self.refuse(path))
    }

    fn read(&self, path: &RelPath) -> Result<Vec<u8>, StorageError> {
        self.inner.read(&self.inside(path)?)
    }

    fn exists(&self, path: &RelPath) -> bool {
        self.inside(path)
            .is_ok_and(|inside| self.inner.exists(&inside))
    }

    fn list(&self, dir: Option<&RelPath>) -> Result<Vec<String>, StorageError> {
        match dir {
            None => self.inner.list(Some(&self.dir)),
            Some(dir) => self.inner.list(Some(&self.inside(dir)?)),
        }
    }

    fn remove_file(&mut self, path: &RelPath) -> Result<(), StorageError> {
        Err(self.refuse(path))
    }

    fn remove_dir(&mut self, dir: &RelPath) -> Result<(), StorageError> {
        Err(self.refuse(dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let mut storage = FsCheckpointStorage::new(dir.path(), Durability::Fsync).unwrap();
        let path = RelPath::new("chk-1/_metadata").unwrap();
        let written = storage.write(&path, b"abc").unwrap();
        assert_eq!(written.size, 3);
        assert_eq!(written.checksum, xxhash_rust::xxh3::xxh3_64(b"abc"));
        assert_eq!(storage.read(&path).unwrap(), b"abc");
        assert_eq!(storage.list(None).unwrap(), vec!["chk-1".to_string()]);
        let chk = RelPath::new("chk-1").unwrap();
        assert_eq!(
            storage.list(Some(&chk)).unwrap(),
            vec!["_metadata".to_string()]
        );
        storage.remove_dir(&chk).unwrap();
        assert!(!storage.exists(&path));
        assert!(matches!(
            storage.read(&path),
            Err(StorageError::Missing { .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        let storage = FsCheckpointStorage::new(dir.path(), Durability::PageCache).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("link")).unwrap();
        let error = storage.read(&RelPath::new("link").unwrap()).unwrap_err();
        assert!(
            matches!(error, StorageError::NotRegularFile { .. }),
            "{error}"
        );
    }
}
