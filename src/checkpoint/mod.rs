//! Checkpoint storage and the formats written into it.
//!
//! Layout under a checkpoint root:
//!
//! ```text
//! <root>/
//!   shared/                 files referenced by one or more incremental checkpoints
//!   chk-<id>/_metadata      written last, atomically: the commit point of checkpoint <id>
//!   chk-<id>/...            files private to this checkpoint
//!   savepoints/<name>/      self-contained, relocatable (relative paths only)
//! ```
//!
//! Every format starts with a magic number and a version and carries CRC32C checksums; every
//! decoder validates before it uses a byte and names the file in its error. Nothing read back is
//! trusted, and no path a format names can leave the root ([`RelPath`]).

pub mod canonical;
pub mod channel;
pub mod codec;
mod config;
pub mod coordinator;
pub mod envelope;
pub mod inspect;
pub mod metadata;
pub mod registry;
mod relpath;
pub mod restore;
pub mod storage;
pub mod upload;

pub use config::{CheckpointConfig, CheckpointingMode, RestorePolicy, SavepointRequest, Unaligned};
pub use coordinator::AbortReason;
pub use metadata::{
    CheckpointMetadata, FileRef, KeyedStateHandle, NamedFile, SnapshotKind, StageSnapshot,
    SubtaskSnapshot,
};
pub use relpath::RelPath;
pub use storage::{
    CheckpointStorage, Durability, FsCheckpointStorage, StepFiles, StepObserver, Subdirectory,
    WriteStep,
};

/// A decoder rejected bytes: what field, where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The input ended before a field did.
    #[error("{what}: truncated at byte {offset}: needs {needed} bytes, {remaining} remain")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Where it started.
        offset: u64,
        /// Bytes it needed.
        needed: u64,
        /// Bytes that were left.
        remaining: u64,
    },
    /// The bytes do not start with the format's magic number.
    #[error("bad magic number {found:02x?}, expected {expected:02x?} ({format})")]
    BadMagic {
        /// The format expected.
        format: &'static str,
        /// The magic it starts with.
        expected: [u8; 4],
        /// The magic found.
        found: Vec<u8>,
    },
    /// A version this build does not understand.
    #[error("unsupported {format} version {found} (this build reads version {supported})")]
    UnsupportedVersion {
        /// The format.
        format: &'static str,
        /// The version found.
        found: u16,
        /// The version supported.
        supported: u16,
    },
    /// A checksum did not match: the bytes were changed after they were written. The message
    /// leaves the values out: they reach traces, and a `_metadata` of RocksDB files differs in
    /// bytes between identical runs.
    #[error("checksum mismatch in {what}")]
    ChecksumMismatch {
        /// What the checksum covers.
        what: String,
        /// The stored checksum.
        stored: u32,
        /// The checksum of the bytes read.
        computed: u32,
    },
    /// A field holds a value the format does not allow.
    #[error("{what} at byte {offset}: {reason}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// Where it started.
        offset: u64,
        /// Why it was rejected.
        reason: String,
    },
    /// A path that would leave the checkpoint root, or is not a plain relative path.
    #[error("unsafe path {path:?}: {reason}")]
    UnsafePath {
        /// The path as found (cut to 255 characters).
        path: String,
        /// Why it was rejected.
        reason: String,
    },
}

/// A storage operation failed; the error names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// An I/O error from the file system (or injected by a fault plan).
    #[error("{path}: {source}")]
    Io {
        /// The file or directory, relative to the root.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file's bytes failed validation.
    #[error("{path}: {source}")]
    Format {
        /// The file, relative to the root.
        path: String,
        /// What was wrong.
        source: FormatError,
    },
    /// A file that must exist does not.
    #[error("{path}: missing")]
    Missing {
        /// The file, relative to the root.
        path: String,
    },
    /// A path that is not a regular file inside the root (a symlink, a device, a directory).
    #[error("{path}: not a regular file inside the checkpoint root ({kind})")]
    NotRegularFile {
        /// The path, relative to the root.
        path: String,
        /// What it is instead.
        kind: &'static str,
    },
    /// A file's size or checksum differs from what the metadata recorded.
    #[error("{path}: {reason}")]
    Mismatch {
        /// The file, relative to the root.
        path: String,
        /// What differs.
        reason: String,
    },
}

impl StorageError {
    /// The file or directory the error is about, relative to the storage's root.
    pub fn path(&self) -> &str {
        match self {
            StorageError::Io { path, .. }
            | StorageError::Format { path, .. }
            | StorageError::Missing { path }
            | StorageError::NotRegularFile { path, .. }
            | StorageError::Mismatch { path, .. } => path,
        }
    }

    /// What is wrong, without the path (for reports that print the path themselves).
    pub fn problem(&self) -> String {
        match self {
            StorageError::Io { source, .. } => source.to_string(),
            StorageError::Format { source, .. } => source.to_string(),
            StorageError::Missing { .. } => "missing".to_string(),
            StorageError::NotRegularFile { kind, .. } => {
                format!("not a regular file inside the checkpoint root ({kind})")
            }
            StorageError::Mismatch { reason, .. } => reason.clone(),
        }
    }

    /// Wraps a format error with the file it came from.
    pub fn format(path: &RelPath, source: FormatError) -> Self {
        StorageError::Format {
            path: path.to_string(),
            source,
        }
    }
}
