//! Checkpoint storage: the seam through which every checkpoint byte is written and read.
//!
//! [`FsCheckpointStorage`] keeps files in a real directory. A write goes to a temporary name,
//! is synced, renamed into place and the directory synced, so a reader sees either the old file
//! or the whole new one. Reads refuse anything that is not a regular file inside the root.

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

    fn sync_dir(&self, dir: &Path) -> Result<(), StorageError> {
        if self.durability == Durability::Fsync {
            let handle = fs::File::open(dir).map_err(|e| io_error(dir.display(), e))?;
            handle.sync_all().map_err(|e| io_error(dir.display(), e))?;
        }
        Ok(())
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
        let full = path.under(&self.root);
        let dir = full
            .parent()
            .expect("a path under the root has a parent")
            .to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| io_error(path, e))?;
        let temporary = dir.join(format!(
            ".{}.tmp",
            full.file_name()
                .expect("a RelPath ends in a file name")
                .to_string_lossy()
        ));
        {
            let mut file = fs::File::create(&temporary).map_err(|e| io_error(path, e))?;
            file.write_all(bytes).map_err(|e| io_error(path, e))?;
            if self.durability == Durability::Fsync {
                file.sync_all().map_err(|e| io_error(path, e))?;
            }
        }
        fs::rename(&temporary, &full).map_err(|e| io_error(path, e))?;
        self.sync_dir(&dir)?;
        Ok(FileRef {
            path: path.clone(),
            size: bytes.len() as u64,
            checksum: xxhash_rust::xxh3::xxh3_64(bytes),
        })
    }

    fn read(&self, path: &RelPath) -> Result<Vec<u8>, StorageError> {
        let full = path.under(&self.root);
        self.check_regular(path, &full)?;
        fs::read(&full).map_err(|e| io_error(path, e))
    }

    fn exists(&self, path: &RelPath) -> bool {
        fs::symlink_metadata(path.under(&self.root)).is_ok()
    }

    fn list(&self, dir: Option<&RelPath>) -> Result<Vec<String>, StorageError> {
        let full = dir.map_or_else(|| self.root.clone(), |dir| dir.under(&self.root));
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
        match fs::remove_file(path.under(&self.root)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error(path, e)),
            _ => Ok(()),
        }
    }

    fn remove_dir(&mut self, dir: &RelPath) -> Result<(), StorageError> {
        let full = dir.under(&self.root);
        let metadata = match fs::symlink_metadata(&full) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error(dir, e)),
        };
        // A symlinked "directory" is removed as a link: its target, which may lie outside the
        // root, is never walked.
        if metadata.file_type().is_symlink() || !metadata.is_dir() {
            return fs::remove_file(&full).map_err(|e| io_error(dir, e));
        }
        fs::remove_dir_all(&full).map_err(|e| io_error(dir, e))
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
