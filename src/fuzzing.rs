//! The entry points of the fuzz targets in `fuzz/`, shared with the test that replays every
//! corpus file on stable Rust: each feeds untrusted bytes to one decoder.
//!
//! A decoder must answer anything it does not fully understand with an error: no panic, no
//! allocation sized by an untrusted length, no endless loop. Beyond that, each entry point
//! checks that what a decoder accepts survives a round trip (encode, decode, equal), and panics
//! if not — the one panic a fuzzer should ever report here.
//!
//! ```
//! use faultline::fuzzing::{self, Target};
//!
//! // Garbage is answered with an error, never a panic.
//! assert!(fuzzing::metadata(&[0xff; 64]).is_err());
//! assert!(fuzzing::canonical_snapshot(b"").is_err());
//! for target in Target::ALL {
//!     let _verdict = target.run(&[0xff; 64]);
//! }
//! ```

use std::path::{Path, PathBuf};

use arbitrary::Unstructured;

use crate::campaign::{CaseError, Scenario, ScenarioError};
use crate::check::Verdict;
use crate::checkpoint::channel::{ChannelSide, ChannelState, ChannelStateFile};
use crate::checkpoint::metadata::{decode_keyed_handle, encode_keyed_handle};
use crate::checkpoint::{canonical, inspect, CheckpointMetadata, FormatError, RelPath};
use crate::job::csv::{self, CsvError};
use crate::job::keygroup::MAX_PARALLELISM_LIMIT;
use crate::job::{Origin, Record};
use crate::state::{BackendKind, KeyGroupRange, StateDescriptor, StateEntry, StateKind, ValueType};

/// Why a fuzz target rejected its input: the decoder's own error. A rejection is the answer a
/// decoder must give to bytes it does not fully understand; only a panic is a finding.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Rejected {
    /// A binary format's decoder rejected the bytes.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The bytes are not a usable scenario.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// The bytes are not a transactions CSV.
    #[error(transparent)]
    Csv(#[from] CsvError),
    /// A text target's bytes are not UTF-8.
    #[error("not UTF-8: {0}")]
    NotUtf8(std::str::Utf8Error),
    /// The bytes are not [`pack`]'s format.
    #[error(transparent)]
    Pack(#[from] PackError),
    /// The unpacked savepoint holds no file.
    #[error("no files")]
    NoFiles,
    /// The unpacked savepoint cannot be inspected at all.
    #[error(transparent)]
    Inspect(#[from] inspect::InspectError),
    /// The unpacked savepoint names a file that is missing or damaged.
    #[error("{path}: {problem}")]
    Damaged {
        /// The file, relative to the savepoint.
        path: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The bytes ran out before the round-trip target built its state.
    #[error("{0}")]
    Unstructured(arbitrary::Error),
    /// The savepoint target's temporary directory could not be made (the environment failed,
    /// not the input).
    #[error("temporary directory: {0}")]
    TempDir(std::io::Error),
    /// An unpacked file could not be written into the temporary directory.
    #[error("{path}: {source}")]
    Unpack {
        /// The file, relative to the savepoint.
        path: RelPath,
        /// The error.
        source: std::io::Error,
    },
}

/// Why bytes are not [`pack`]'s format (see [`unpack`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PackError {
    /// A length says more bytes follow than remain.
    #[error("{what}: {wanted} bytes wanted, {remain} remain")]
    Short {
        /// What was being read.
        what: &'static str,
        /// Bytes it needed.
        wanted: usize,
        /// Bytes that were left.
        remain: usize,
    },
    /// More files than a packed directory may hold.
    #[error("more than {max} files")]
    TooManyFiles {
        /// The limit.
        max: usize,
    },
    /// A path that is not UTF-8.
    #[error("path: {0}")]
    PathNotUtf8(std::str::Utf8Error),
    /// A path that is not a safe relative path.
    #[error(transparent)]
    UnsafePath(FormatError),
    /// The same path twice.
    #[error("{path}: packed twice")]
    Duplicate {
        /// The path.
        path: RelPath,
    },
}

/// The seed corpora could not be written (see [`write_seed_corpus`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CorpusError {
    /// A corpus scenario does not parse.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// A temporary directory for a corpus run could not be made.
    #[error("{0}")]
    TempDir(std::io::Error),
    /// A corpus run could not be carried out.
    #[error(transparent)]
    Case(#[from] CaseError),
    /// A corpus run broke a property: its snapshots are no seeds.
    #[error("the {backend} corpus run failed: {verdict}")]
    RunFailed {
        /// The backend of the run.
        backend: BackendKind,
        /// The oracle's findings.
        verdict: Box<Verdict>,
    },
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A seed file could not be written.
    #[error("{name}: {source}")]
    WriteSeed {
        /// The seed's file name in its target's directory.
        name: String,
        /// The error.
        source: std::io::Error,
    },
    /// A corpus run's `_metadata` does not decode.
    #[error(transparent)]
    Metadata(#[from] FormatError),
}

/// One fuzz target: a decoder and the bytes it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Target {
    /// A checkpoint's or savepoint's `_metadata`.
    Metadata,
    /// A canonical full snapshot file (`chk-N/<task>.kv`).
    Canonical,
    /// One subtask's keyed-state handle: for incremental checkpoints, the native file lists.
    NativeHandle,
    /// A savepoint directory holding these bytes as its `_metadata`, loaded and validated.
    Savepoint,
    /// A scenario file (TOML).
    Scenario,
    /// A transactions CSV.
    Csv,
    /// Arbitrary keyed state, encoded in the canonical format and decoded back.
    Roundtrip,
    /// A channel-state file: the records in flight a task's snapshot persists.
    ChannelState,
}

impl Target {
    /// Every target, in the order `fuzz/` lists them.
    pub const ALL: [Target; 8] = [
        Target::Metadata,
        Target::Canonical,
        Target::NativeHandle,
        Target::Savepoint,
        Target::Scenario,
        Target::Csv,
        Target::Roundtrip,
        Target::ChannelState,
    ];

    /// The target's name: its file in `fuzz/fuzz_targets/` and its corpus directory.
    pub fn name(self) -> &'static str {
        match self {
            Target::Metadata => "metadata",
            Target::Canonical => "canonical",
            Target::NativeHandle => "native_handle",
            Target::Savepoint => "savepoint",
            Target::Scenario => "scenario",
            Target::Csv => "csv",
            Target::Roundtrip => "roundtrip",
            Target::ChannelState => "channel_state",
        }
    }

    /// Feeds `data` to the target's decoder: `Ok` if it was accepted, the decoder's error if
    /// not. Panics only if accepted bytes do not survive a round trip.
    pub fn run(self, data: &[u8]) -> Result<(), Rejected> {
        match self {
            Target::Metadata => metadata(data),
            Target::Canonical => canonical_snapshot(data),
            Target::NativeHandle => native_handle(data),
            Target::Savepoint => savepoint(data),
            Target::Scenario => scenario(data),
            Target::Csv => transactions(data),
            Target::Roundtrip => roundtrip(data),
            Target::ChannelState => channel_state(data),
        }
    }
}

/// Decodes `_metadata` bytes; accepted metadata must re-encode to bytes that decode equal.
pub fn metadata(data: &[u8]) -> Result<(), Rejected> {
    let decoded = CheckpointMetadata::decode(data)?;
    let again = CheckpointMetadata::decode(&decoded.encode())
        .expect("re-encoded metadata decodes (round trip)");
    assert_eq!(again, decoded, "metadata round trip");
    Ok(())
}

/// The key groups a canonical file may hold: all of them.
const ALL_KEY_GROUPS: KeyGroupRange = KeyGroupRange {
    start: 0,
    end: MAX_PARALLELISM_LIMIT - 1,
};

/// Decodes a canonical snapshot file; accepted files must re-encode to an equal snapshot.
pub fn canonical_snapshot(data: &[u8]) -> Result<(), Rejected> {
    let decoded = canonical::decode(data, ALL_KEY_GROUPS)?;
    let encoded = canonical::encode(
        &decoded.states,
        decoded.key_groups,
        &decoded.entries,
        canonical::Compression::None,
    );
    let again = canonical::decode(&encoded, ALL_KEY_GROUPS).expect("a re-encoded snapshot decodes");
    assert_eq!(again, decoded, "canonical snapshot round trip");
    Ok(())
}

/// Decodes a channel-state file; accepted files must re-encode to the same bytes.
pub fn channel_state(data: &[u8]) -> Result<(), Rejected> {
    let decoded = ChannelStateFile::decode(data)?;
    assert_eq!(
        decoded.encode(),
        data,
        "the channel-state encoding is canonical: accepted bytes re-encode to themselves"
    );
    Ok(())
}

/// Channel-state seeds: no channel, empty channels, and records with and without event times
/// and side outputs on both sides.
fn channel_state_seeds() -> Vec<Vec<u8>> {
    let mut late = Record::transaction("tx2", "acct-2", -40);
    late.timestamp_ms = Some(1_700_000_000_123);
    late.side = Some("late".into());
    late.origin = Origin {
        partition: 1,
        offset: 9,
    };
    let channel = |side, peer, records| ChannelState {
        side,
        peer,
        records,
    };
    let files = [
        Vec::new(),
        vec![channel(ChannelSide::Input, 0, Vec::new())],
        vec![
            channel(
                ChannelSide::Input,
                0,
                vec![Record::transaction("tx1", "acct-1", 250), late],
            ),
            channel(ChannelSide::Input, 2, Vec::new()),
            channel(
                ChannelSide::Output,
                1,
                vec![Record::transaction("tx3.1", "acct-3", 7)],
            ),
        ],
    ];
    (files.into_iter().enumerate())
        .map(|(id, channels)| {
            ChannelStateFile {
                checkpoint_id: id as u64 + 1,
                subtask: 1,
                channels,
            }
            .encode()
        })
        .collect()
}

/// Decodes a bare keyed-state handle; accepted handles must re-encode to the same bytes.
pub fn native_handle(data: &[u8]) -> Result<(), Rejected> {
    let decoded = decode_keyed_handle(data)?;
    assert_eq!(
        encode_keyed_handle(decoded.as_ref()),
        data,
        "the handle encoding is canonical: accepted bytes re-encode to themselves"
    );
    Ok(())
}

/// Unpacks `data` ([`pack`]'s format) into a fresh savepoint directory and loads it as
/// `inspect` and restore do: decode `_metadata`, then validate every file it names.
pub fn savepoint(data: &[u8]) -> Result<(), Rejected> {
    let temporary = tempfile::tempdir().map_err(Rejected::TempDir)?;
    // One level down: metadata claiming to be a checkpoint is read relative to the parent
    // directory, which must still be this one.
    let dir = temporary.path().join("savepoint");
    for (path, bytes) in unpack(data)? {
        let full = path.under(&dir);
        let environment = |source| Rejected::Unpack {
            path: path.clone(),
            source,
        };
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).map_err(environment)?;
        }
        std::fs::write(&full, bytes).map_err(environment)?;
    }
    if !dir.is_dir() {
        return Err(Rejected::NoFiles);
    }
    let report = inspect::inspect(&dir)?;
    let damaged = report.files.into_iter().find_map(|file| {
        let problem = file.problem?;
        Some(Rejected::Damaged {
            path: file.path,
            problem,
        })
    });
    match damaged {
        Some(rejected) => Err(rejected),
        None => Ok(()),
    }
}

/// Files a packed directory may hold.
const PACKED_FILES_MAX: usize = 64;

/// Packs files (relative path, bytes) into one fuzz input: per file a `u16` path length, the
/// path, a `u32` length and the bytes, all little-endian.
pub fn pack(files: &[(RelPath, Vec<u8>)]) -> Vec<u8> {
    let mut packed = Vec::new();
    for (path, bytes) in files {
        let name = path.as_str().as_bytes();
        // RelPath bounds a path to 255 bytes.
        packed.extend_from_slice(&(name.len() as u16).to_le_bytes());
        packed.extend_from_slice(name);
        packed.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        packed.extend_from_slice(bytes);
    }
    packed
}

/// Reads [`pack`]'s format from untrusted bytes: every path must be a valid [`RelPath`] (so
/// nothing lands outside the directory), no length may exceed what remains, at most 64 files.
pub fn unpack(mut data: &[u8]) -> Result<Vec<(RelPath, &[u8])>, PackError> {
    fn take<'a>(
        data: &mut &'a [u8],
        len: usize,
        what: &'static str,
    ) -> Result<&'a [u8], PackError> {
        if len > data.len() {
            return Err(PackError::Short {
                what,
                wanted: len,
                remain: data.len(),
            });
        }
        let (taken, rest) = data.split_at(len);
        *data = rest;
        Ok(taken)
    }
    let mut files = Vec::new();
    while !data.is_empty() {
        if files.len() == PACKED_FILES_MAX {
            return Err(PackError::TooManyFiles {
                max: PACKED_FILES_MAX,
            });
        }
        let name_len = take(&mut data, 2, "path length")?;
        let name_len = usize::from(u16::from_le_bytes([name_len[0], name_len[1]]));
        let name = take(&mut data, name_len, "path")?;
        let name = std::str::from_utf8(name).map_err(PackError::PathNotUtf8)?;
        let path = RelPath::new(name).map_err(PackError::UnsafePath)?;
        if files.iter().any(|(seen, _)| *seen == path) {
            return Err(PackError::Duplicate { path });
        }
        let len = take(&mut data, 4, "file length")?;
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        files.push((path, take(&mut data, len, "file")?));
    }
    Ok(files)
}

/// Parses a scenario file; accepted scenarios must survive `to_toml` and parse equal.
pub fn scenario(data: &[u8]) -> Result<(), Rejected> {
    let text = std::str::from_utf8(data).map_err(Rejected::NotUtf8)?;
    let parsed = Scenario::from_toml(text, "fuzz")?;
    let again = Scenario::from_toml(&parsed.to_toml(), "fuzz round trip")
        .expect("a re-serialized scenario parses");
    assert_eq!(again, parsed, "scenario round trip");
    Ok(())
}

/// Parses a transactions CSV.
pub fn transactions(data: &[u8]) -> Result<(), Rejected> {
    let text = std::str::from_utf8(data).map_err(Rejected::NotUtf8)?;
    csv::parse_transactions(text)?;
    Ok(())
}

/// Builds keyed state from `data` (states, a key-group range, entries in it), encodes it in
/// the canonical format, with and without compression, and requires the decoder to give back
/// exactly what was encoded.
pub fn roundtrip(data: &[u8]) -> Result<(), Rejected> {
    let mut u = Unstructured::new(data);
    let (states, range, entries) = arbitrary_state(&mut u).map_err(Rejected::Unstructured)?;
    for compression in [canonical::Compression::None, canonical::Compression::Lz4] {
        let encoded = canonical::encode(&states, range, &entries, compression);
        let decoded = canonical::decode(&encoded, range).expect("encoded state decodes");
        assert_eq!(
            decoded.states, states,
            "states round trip ({compression:?})"
        );
        assert_eq!(
            decoded.key_groups, range,
            "range round trip ({compression:?})"
        );
        assert_eq!(
            decoded.entries, entries,
            "entries round trip ({compression:?})"
        );
    }
    Ok(())
}

type ArbitraryState = (Vec<StateDescriptor>, KeyGroupRange, Vec<StateEntry>);

fn arbitrary_state(u: &mut Unstructured<'_>) -> arbitrary::Result<ArbitraryState> {
    let state_count = u.int_in_range(1..=4u8)?;
    let mut states = Vec::new();
    for index in 0..state_count {
        states.push(StateDescriptor {
            name: format!("s{index}"),
            kind: *u.choose(&[StateKind::Value, StateKind::List, StateKind::Map])?,
            value_type: *u.choose(&[
                ValueType::I64,
                ValueType::Text,
                ValueType::Bytes,
                ValueType::Json,
            ])?,
        });
    }
    let start = u.int_in_range(0..=ALL_KEY_GROUPS.end)?;
    let end = u.int_in_range(start..=ALL_KEY_GROUPS.end.min(start.saturating_add(64)))?;
    let range = KeyGroupRange { start, end };
    let mut entries = Vec::new();
    for _ in 0..u.int_in_range(0..=64u8)? {
        let state = u.int_in_range(0..=state_count - 1)?;
        let is_map = states[usize::from(state)].kind == StateKind::Map;
        entries.push(StateEntry {
            key_group: u.int_in_range(start..=end)?,
            state: state.into(),
            key: u.arbitrary::<Vec<u8>>()?,
            user_key: if is_map {
                u.arbitrary::<Vec<u8>>()?
            } else {
                Vec::new()
            },
            value: u.arbitrary::<Vec<u8>>()?,
        });
    }
    // Canonical order, one cell per (key group, state, key, user key).
    entries.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    entries.dedup_by(|a, b| a.sort_key() == b.sort_key());
    Ok((states, range, entries))
}

/// How many seed files [`write_seed_corpus`] wrote for one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedCount {
    /// The target.
    pub target: Target,
    /// Files written (distinct contents).
    pub files: usize,
}

/// Scenario template for the corpus runs: every state kind, two keyed subtasks, retained
/// checkpoints and a canonical savepoint (plus a native one on RocksDB).
const CORPUS_SCENARIO: &str = r#"
name = "corpus"
seed = 11
backend = "BACKEND"
restart = { kind = "none" }
checkpoint = { interval_ms = 6, num_retained = 3, unaligned = "always" }
savepoints = SAVEPOINTS

[job]
name = "corpus"
source = { parallelism = 2, emit_ms = 1 }
sink = { kind = "two-phase-commit" }
stages = [
  { name = "sum", op = { kind = "sum" }, parallelism = 2 },
  { name = "stats", op = { kind = "stats" }, parallelism = 2 },
]

[input]
kind = "generated"
records = 40
keys = 6
min_value = -5
max_value = 50
"#;

/// Regenerates the seed corpora in `out/<target>/` from real checkpoints and savepoints of
/// every built-in backend, the named scenarios in `scenarios_dir`, and the embedded
/// transactions CSV. Files are named by a hash of their contents, so rerunning adds only new
/// seeds. RocksDB files carry unique ids, so native seeds differ from run to run.
pub fn write_seed_corpus(out: &Path, scenarios_dir: &Path) -> Result<Vec<SeedCount>, CorpusError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CorpusError::Io { path, source }
    };
    let mut seeds: Vec<(Target, Vec<u8>)> = Vec::new();
    for backend in crate::state::BackendKind::all() {
        let native = backend != crate::state::BackendKind::Memory;
        let savepoints = if native {
            r#"[{ at_ms = 15, name = "canonical", format = "canonical" }, { at_ms = 25, name = "native", format = "native" }]"#
        } else {
            r#"[{ at_ms = 15, name = "canonical", format = "canonical" }]"#
        };
        let text = CORPUS_SCENARIO
            .replace("BACKEND", backend.name())
            .replace("SAVEPOINTS", savepoints);
        let scenario = Scenario::from_toml(&text, "corpus")?;
        let dir = tempfile::tempdir().map_err(CorpusError::TempDir)?;
        let report = crate::campaign::Case::new(scenario, crate::campaign::Seams::default())
            .run(dir.path(), &crate::campaign::KillMode::Sim)?;
        if !report.verdict.passed() {
            return Err(CorpusError::RunFailed {
                backend,
                verdict: Box::new(report.verdict),
            });
        }
        seeds.push((Target::Scenario, text.into_bytes()));
        collect_snapshot_seeds(&dir.path().join("checkpoints"), &mut seeds)?;
    }
    let mut names: Vec<_> = std::fs::read_dir(scenarios_dir)
        .map_err(io(scenarios_dir))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    names.sort();
    for path in names {
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        seeds.push((Target::Scenario, bytes));
    }
    seeds.push((
        Target::Csv,
        crate::cli::demo::TRANSACTIONS_CSV.as_bytes().to_vec(),
    ));
    seeds.extend((channel_state_seeds().into_iter()).map(|bytes| (Target::ChannelState, bytes)));
    // Round-trip seeds: fixed byte patterns of a few sizes (the target builds state from them).
    for len in [16usize, 64, 256, 1024] {
        let bytes = (0..len).map(|i| (i * 131 % 251) as u8).collect();
        seeds.push((Target::Roundtrip, bytes));
    }

    let mut counts = Vec::new();
    for target in Target::ALL {
        let dir = out.join(target.name());
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut written = std::collections::BTreeSet::new();
        for (_, bytes) in seeds.iter().filter(|(t, _)| *t == target) {
            let name = format!("seed-{:016x}", xxhash_rust::xxh3::xxh3_64(bytes));
            std::fs::write(dir.join(&name), bytes).map_err(|source| CorpusError::WriteSeed {
                name: name.clone(),
                source,
            })?;
            written.insert(name);
        }
        counts.push(SeedCount {
            target,
            files: written.len(),
        });
    }
    Ok(counts)
}

/// Seeds from every retained checkpoint and savepoint in a checkpoint root.
fn collect_snapshot_seeds(
    root: &Path,
    seeds: &mut Vec<(Target, Vec<u8>)>,
) -> Result<(), CorpusError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CorpusError::Io { path, source }
    };
    let read = |path: &Path| std::fs::read(path).map_err(io(path));
    let mut snapshot_dirs = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(root)
        .map_err(io(root))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .collect();
    let savepoints = root.join("savepoints");
    if let Ok(dir) = std::fs::read_dir(&savepoints) {
        entries.extend(dir.filter_map(Result::ok).map(|entry| entry.path()));
    }
    entries.sort();
    for dir in entries {
        if dir.join("_metadata").is_file() {
            snapshot_dirs.push(dir);
        }
    }
    for dir in snapshot_dirs {
        let bytes = read(&dir.join("_metadata"))?;
        let metadata = CheckpointMetadata::decode(&bytes)?;
        for stage in &metadata.stages {
            for subtask in &stage.subtasks {
                seeds.push((
                    Target::NativeHandle,
                    encode_keyed_handle(subtask.keyed.as_ref()),
                ));
            }
        }
        let is_savepoint = metadata.kind == crate::checkpoint::SnapshotKind::Savepoint;
        // A savepoint's paths are relative to its own directory, a checkpoint's to the root.
        let base = if is_savepoint {
            dir.clone()
        } else {
            root.to_path_buf()
        };
        let mut packed = vec![(
            RelPath::new("_metadata").expect("a valid relative path"),
            bytes.clone(),
        )];
        let channel_files: std::collections::BTreeSet<&RelPath> = (metadata.stages.iter())
            .flat_map(|stage| &stage.subtasks)
            .filter_map(|subtask| subtask.channel_state.as_ref())
            .map(|file| &file.path)
            .collect();
        for file in metadata.files() {
            let contents = read(&file.path.under(&base))?;
            if file.path.as_str().ends_with(".kv") {
                seeds.push((Target::Canonical, contents.clone()));
            }
            if channel_files.contains(&file.path) {
                seeds.push((Target::ChannelState, contents.clone()));
            }
            packed.push((file.path.clone(), contents));
        }
        seeds.push((Target::Metadata, bytes));
        if is_savepoint {
            seeds.push((Target::Savepoint, pack(&packed)));
        }
    }
    Ok(())
}
