//! `_metadata`: the commit point of a checkpoint or savepoint. It names every file the snapshot
//! needs (by relative path, with size and XXH3-64 checksum: keyed state, and the channel state of
//! an unaligned snapshot) and holds each subtask's operator state (source positions, sink
//! transactions). Written last; a checkpoint without a valid
//! `_metadata` does not exist.
//!
//! ```
//! use faultline::checkpoint::CheckpointMetadata;
//!
//! // `_metadata` is untrusted input: anything but a whole, intact file is an error.
//! assert!(CheckpointMetadata::decode(b"").is_err());
//! assert!(CheckpointMetadata::decode(&[0xff; 64]).is_err());
//! ```

use super::codec::{Decoder, Encoder};
use super::envelope;
use super::{FormatError, RelPath};
use crate::state::KeyGroupRange;

/// The format's magic number.
pub const MAGIC: [u8; 4] = *b"FLTM";
/// The version this build writes and reads.
pub const VERSION: u16 = 3;
const FORMAT: &str = "_metadata";

/// Whether the engine or the user took the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotKind {
    /// Taken by the checkpoint coordinator; subject to retention.
    Checkpoint,
    /// Taken by the user; never deleted by the engine.
    Savepoint,
}

/// A file a snapshot needs, as recorded when it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    /// Where it lives, relative to the root that holds the snapshot.
    pub path: RelPath,
    /// Its size in bytes.
    pub size: u64,
    /// XXH3-64 of its bytes. Not CRC32C: a file that ends with its own CRC32C (every format here
    /// does) has the same CRC32C as every other such file of its length — the CRC residue — so
    /// a CRC32C could not tell a stale or misdirected file from the right one.
    pub checksum: u64,
}

impl FileRef {
    /// The reference of `bytes` stored at `path`: their size and checksum.
    pub fn of(path: RelPath, bytes: &[u8]) -> Self {
        Self {
            path,
            size: bytes.len() as u64,
            checksum: Self::checksum_of(bytes),
        }
    }

    /// The one place a checkpoint file's checksum is computed.
    fn checksum_of(bytes: &[u8]) -> u64 {
        xxhash_rust::xxh3::xxh3_64(bytes)
    }

    /// Why `bytes` are not the file this refers to, if they are not. The reasons carry no sizes
    /// or checksums: they reach traces, and RocksDB files differ in bytes (and, through the host
    /// name they record, in size) between identical runs.
    pub fn mismatch(&self, bytes: &[u8]) -> Option<&'static str> {
        if bytes.len() as u64 != self.size {
            Some("size differs from the one recorded in the metadata")
        } else if Self::checksum_of(bytes) != self.checksum {
            Some("checksum differs from the one recorded in the metadata")
        } else {
            None
        }
    }
}

/// A file of a native snapshot: the name the backend gives it locally, and where it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedFile {
    /// The backend's own file name (`000012.sst`, `MANIFEST-000005`): one plain component.
    pub local_name: String,
    /// Where the bytes are stored.
    pub file: FileRef,
}

/// Where a subtask's keyed state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyedStateHandle {
    /// One file in the canonical full-snapshot format ([`super::canonical`]).
    Canonical(FileRef),
    /// The backend's own files (a RocksDB checkpoint): `shared` files may be referenced by
    /// several checkpoints (they live in `shared/`), `private` ones belong to this snapshot.
    Native {
        /// Immutable data files (SSTs), possibly uploaded by an earlier checkpoint.
        shared: Vec<NamedFile>,
        /// Files written anew for every snapshot (MANIFEST, CURRENT, OPTIONS).
        private: Vec<NamedFile>,
    },
}

impl KeyedStateHandle {
    /// Every file the handle names.
    pub fn files(&self) -> Vec<&FileRef> {
        match self {
            KeyedStateHandle::Canonical(file) => vec![file],
            KeyedStateHandle::Native { shared, private } => shared
                .iter()
                .chain(private)
                .map(|named| &named.file)
                .collect(),
        }
    }

    /// The files under `shared/` the handle references.
    pub fn shared_files(&self) -> Vec<&FileRef> {
        match self {
            KeyedStateHandle::Canonical(_) => Vec::new(),
            KeyedStateHandle::Native { shared, .. } => {
                shared.iter().map(|named| &named.file).collect()
            }
        }
    }

    /// `canonical` or `native`.
    pub fn format(&self) -> &'static str {
        match self {
            KeyedStateHandle::Canonical(_) => "canonical",
            KeyedStateHandle::Native { .. } => "native",
        }
    }
}

/// One subtask's part of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubtaskSnapshot {
    /// The subtask index.
    pub subtask: u16,
    /// The key groups the subtask owned.
    pub key_groups: KeyGroupRange,
    /// Its keyed state, if the operator is keyed.
    pub keyed: Option<KeyedStateHandle>,
    /// Its operator state (source positions, sink transactions), opaque here.
    pub operator_state: Vec<u8>,
    /// The records in flight on its channels that an unaligned snapshot persisted
    /// ([`super::channel`]), if there were any.
    pub channel_state: Option<FileRef>,
}

/// One stage (operator) of the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageSnapshot {
    /// The stage's position in the job.
    pub stage: u16,
    /// The stage's name, checked on restore.
    pub name: String,
    /// Parallelism when the snapshot was taken.
    pub parallelism: u16,
    /// One entry per subtask, in subtask order.
    pub subtasks: Vec<SubtaskSnapshot>,
}

/// The decoded contents of `_metadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointMetadata {
    /// The checkpoint id (for a savepoint, the id of the checkpoint barrier that took it).
    pub checkpoint_id: u64,
    /// Checkpoint or savepoint.
    pub kind: SnapshotKind,
    /// Virtual time at which the checkpoint was triggered.
    pub trigger_time_ms: u64,
    /// Fingerprint of the job's structure; restore refuses a different job.
    pub job_fingerprint: u64,
    /// The job's max parallelism (number of key groups).
    pub max_parallelism: u16,
    /// Name of the state backend that wrote the keyed state.
    pub backend: String,
    /// One entry per stage, in stage order.
    pub stages: Vec<StageSnapshot>,
}

impl CheckpointMetadata {
    /// Every file the snapshot names: keyed state, then channel state.
    pub fn files(&self) -> Vec<&FileRef> {
        let subtasks = || self.stages.iter().flat_map(|stage| &stage.subtasks);
        let keyed = subtasks()
            .filter_map(|subtask| subtask.keyed.as_ref())
            .flat_map(|handle| handle.files());
        let channels = subtasks().filter_map(|subtask| subtask.channel_state.as_ref());
        keyed.chain(channels).collect()
    }

    /// The files under `shared/` the snapshot references.
    pub fn shared_paths(&self) -> std::collections::BTreeSet<RelPath> {
        self.stages
            .iter()
            .flat_map(|stage| &stage.subtasks)
            .filter_map(|subtask| subtask.keyed.as_ref())
            .flat_map(|handle| handle.shared_files())
            .map(|file| file.path.clone())
            .collect()
    }

    /// Encodes into the enveloped `_metadata` bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        e.u64(self.checkpoint_id);
        e.u8(match self.kind {
            SnapshotKind::Checkpoint => 0,
            SnapshotKind::Savepoint => 1,
        });
        e.u64(self.trigger_time_ms)
            .u64(self.job_fingerprint)
            .u16(self.max_parallelism);
        e.str(&self.backend);
        e.u32(self.stages.len() as u32);
        for stage in &self.stages {
            e.u16(stage.stage).str(&stage.name).u16(stage.parallelism);
            e.u32(stage.subtasks.len() as u32);
            for subtask in &stage.subtasks {
                e.u16(subtask.subtask)
                    .u16(subtask.key_groups.start)
                    .u16(subtask.key_groups.end);
                encode_handle(&mut e, subtask.keyed.as_ref());
                e.bytes(&subtask.operator_state);
                match &subtask.channel_state {
                    None => {
                        e.u8(0);
                    }
                    Some(file) => {
                        e.u8(1);
                        encode_file(&mut e, file);
                    }
                }
            }
        }
        let encoded = envelope::seal(MAGIC, VERSION, &e.finish());
        debug_assert_eq!(
            Self::decode(&encoded).as_ref(),
            Ok(self),
            "metadata round trip"
        );
        encoded
    }

    /// Decodes and validates `_metadata` bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let payload = envelope::open(FORMAT, MAGIC, VERSION, bytes)?;
        let mut d = Decoder::new(payload);
        let checkpoint_id = d.u64("checkpoint id")?;
        let kind_offset = d.position() as u64;
        let kind = match d.u8("snapshot kind")? {
            0 => SnapshotKind::Checkpoint,
            1 => SnapshotKind::Savepoint,
            other => {
                return Err(invalid(
                    "snapshot kind",
                    kind_offset,
                    format!("unknown kind {other}"),
                ))
            }
        };
        let trigger_time_ms = d.u64("trigger time")?;
        let job_fingerprint = d.u64("job fingerprint")?;
        let max_parallelism = d.u16("max parallelism")?;
        if max_parallelism == 0 {
            return Err(invalid(
                "max parallelism",
                d.position() as u64,
                "zero".into(),
            ));
        }
        let backend = d.str("backend")?.to_string();
        let stage_count = d.count("stages", 10)?;
        let mut stages = Vec::with_capacity(stage_count);
        for index in 0..stage_count {
            let stage = decode_stage(&mut d, max_parallelism)?;
            if usize::from(stage.stage) != index {
                return Err(invalid(
                    "stage",
                    d.position() as u64,
                    format!("stage {} at position {index}", stage.stage),
                ));
            }
            stages.push(stage);
        }
        d.finish(FORMAT)?;
        Ok(Self {
            checkpoint_id,
            kind,
            trigger_time_ms,
            job_fingerprint,
            max_parallelism,
            backend,
            stages,
        })
    }
}

fn invalid(what: &'static str, offset: u64, reason: String) -> FormatError {
    FormatError::Invalid {
        what,
        offset,
        reason,
    }
}

fn encode_file(e: &mut Encoder, file: &FileRef) {
    e.str(file.path.as_str()).u64(file.size).u64(file.checksum);
}

fn decode_file(d: &mut Decoder<'_>) -> Result<FileRef, FormatError> {
    let path = RelPath::new(d.str("file path")?)?;
    let size = d.u64("file size")?;
    let checksum = d.u64("file checksum")?;
    Ok(FileRef {
        path,
        size,
        checksum,
    })
}

fn decode_named_files(d: &mut Decoder<'_>) -> Result<Vec<NamedFile>, FormatError> {
    let count = d.count("native files", 20)?;
    let mut files: Vec<NamedFile> = Vec::with_capacity(count);
    // A set, so that a hostile list of many names costs n log n, not n².
    let mut names = std::collections::BTreeSet::new();
    for _ in 0..count {
        let offset = d.position() as u64;
        let local_name = d.str("local file name")?;
        if RelPath::new(local_name)?.as_str().contains('/') {
            return Err(invalid(
                "local file name",
                offset,
                format!("{local_name:?} is not one plain name"),
            ));
        }
        if !names.insert(local_name) {
            return Err(invalid(
                "local file name",
                offset,
                format!("{local_name:?} listed twice"),
            ));
        }
        files.push(NamedFile {
            local_name: local_name.to_string(),
            file: decode_file(d)?,
        });
    }
    Ok(files)
}

/// A keyed-state handle: tag 0 (none), 1 (a canonical file) or 2 (the native file lists).
fn encode_handle(e: &mut Encoder, handle: Option<&KeyedStateHandle>) {
    match handle {
        None => {
            e.u8(0);
        }
        Some(KeyedStateHandle::Canonical(file)) => {
            e.u8(1);
            encode_file(e, file);
        }
        Some(KeyedStateHandle::Native { shared, private }) => {
            e.u8(2);
            for list in [shared, private] {
                e.u32(list.len() as u32);
                for named in list {
                    e.str(&named.local_name);
                    encode_file(e, &named.file);
                }
            }
        }
    }
}

fn decode_handle(d: &mut Decoder<'_>) -> Result<Option<KeyedStateHandle>, FormatError> {
    let tag_offset = d.position() as u64;
    Ok(match d.u8("keyed state tag")? {
        0 => None,
        1 => Some(KeyedStateHandle::Canonical(decode_file(d)?)),
        2 => {
            let shared = decode_named_files(d)?;
            let private = decode_named_files(d)?;
            Some(KeyedStateHandle::Native { shared, private })
        }
        other => {
            return Err(invalid(
                "keyed state tag",
                tag_offset,
                format!("unknown tag {other}"),
            ))
        }
    })
}

/// The bare encoding of one subtask's keyed-state handle as `_metadata` embeds it (for an
/// incremental checkpoint: its shared and private file lists), so it can be fuzzed on its own.
pub fn encode_keyed_handle(handle: Option<&KeyedStateHandle>) -> Vec<u8> {
    let mut e = Encoder::new();
    encode_handle(&mut e, handle);
    e.finish()
}

/// Decodes [`encode_keyed_handle`]'s bytes; trailing bytes are an error.
pub fn decode_keyed_handle(bytes: &[u8]) -> Result<Option<KeyedStateHandle>, FormatError> {
    let mut d = Decoder::new(bytes);
    let handle = decode_handle(&mut d)?;
    d.finish("keyed state handle")?;
    Ok(handle)
}

fn decode_stage(d: &mut Decoder<'_>, max_parallelism: u16) -> Result<StageSnapshot, FormatError> {
    let stage = d.u16("stage")?;
    let name = d.str("stage name")?.to_string();
    let parallelism = d.u16("parallelism")?;
    if parallelism == 0 || parallelism > max_parallelism {
        return Err(invalid(
            "parallelism",
            d.position() as u64,
            format!("{parallelism} outside 1..={max_parallelism}"),
        ));
    }
    let subtask_count = d.count("subtasks", 11)?;
    if subtask_count != usize::from(parallelism) {
        return Err(invalid(
            "subtasks",
            d.position() as u64,
            format!("{subtask_count} subtasks for parallelism {parallelism}"),
        ));
    }
    let mut subtasks = Vec::with_capacity(subtask_count);
    for index in 0..subtask_count {
        let offset = d.position() as u64;
        let subtask = d.u16("subtask")?;
        if usize::from(subtask) != index {
            return Err(invalid(
                "subtask",
                offset,
                format!("subtask {subtask} at position {index}"),
            ));
        }
        let start = d.u16("key group start")?;
        let end = d.u16("key group end")?;
        if start > end || end >= max_parallelism {
            return Err(invalid(
                "key groups",
                offset,
                format!("range {start}..={end} with max parallelism {max_parallelism}"),
            ));
        }
        let keyed = decode_handle(d)?;
        let operator_state = d.bytes("operator state")?.to_vec();
        let tag_offset = d.position() as u64;
        let channel_state = match d.u8("channel state tag")? {
            0 => None,
            1 => Some(decode_file(d)?),
            other => {
                return Err(invalid(
                    "channel state tag",
                    tag_offset,
                    format!("unknown tag {other}"),
                ))
            }
        };
        subtasks.push(SubtaskSnapshot {
            subtask,
            key_groups: KeyGroupRange { start, end },
            keyed,
            operator_state,
            channel_state,
        });
    }
    Ok(StageSnapshot {
        stage,
        name,
        parallelism,
        subtasks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> CheckpointMetadata {
        CheckpointMetadata {
            checkpoint_id: 3,
            kind: SnapshotKind::Checkpoint,
            trigger_time_ms: 5000,
            job_fingerprint: 0xfeed,
            max_parallelism: 128,
            backend: "memory".into(),
            stages: vec![StageSnapshot {
                stage: 0,
                name: "sum".into(),
                parallelism: 1,
                subtasks: vec![SubtaskSnapshot {
                    subtask: 0,
                    key_groups: KeyGroupRange { start: 0, end: 127 },
                    keyed: Some(KeyedStateHandle::Canonical(FileRef {
                        path: RelPath::new("chk-3/sum-0.kv").unwrap(),
                        size: 10,
                        checksum: 7,
                    })),
                    operator_state: vec![1, 2, 3],
                    channel_state: Some(FileRef {
                        path: RelPath::new("chk-3/channels-1-0").unwrap(),
                        size: 40,
                        checksum: 9,
                    }),
                }],
            }],
        }
    }

    #[test]
    fn round_trip() {
        let metadata = sample();
        assert_eq!(
            CheckpointMetadata::decode(&metadata.encode()).unwrap(),
            metadata
        );
        let names: Vec<&str> = metadata.files().iter().map(|f| f.path.as_str()).collect();
        assert_eq!(names, ["chk-3/sum-0.kv", "chk-3/channels-1-0"]);
    }

    #[test]
    fn corruption_and_truncation_are_errors() {
        let bytes = sample().encode();
        for index in 0..bytes.len() {
            let mut corrupt = bytes.clone();
            corrupt[index] ^= 0x40;
            assert!(
                CheckpointMetadata::decode(&corrupt).is_err(),
                "flip at {index} passed"
            );
        }
        for len in 0..bytes.len() {
            assert!(
                CheckpointMetadata::decode(&bytes[..len]).is_err(),
                "cut at {len} passed"
            );
        }
    }
}
