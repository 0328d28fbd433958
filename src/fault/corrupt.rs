//! Corruption of retained checkpoint files. Positions come from the fault stream and the file's
//! size, never from its bytes: RocksDB files differ between identical runs, and the corruption
//! must replay from the seed.

use serde::{Deserialize, Serialize};

use crate::checkpoint::registry::AuditProblem;
use crate::checkpoint::{registry, CheckpointStorage, RelPath};
use crate::sim::HostDetail;

/// How a file is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum CorruptionKind {
    /// One bit flipped.
    BitFlip,
    /// Cut short.
    Truncate,
    /// A block of up to 4 KiB overwritten with zeros.
    ZeroBlock,
    /// Deleted.
    Delete,
    /// `_metadata` cut short, as a torn write leaves it.
    TornMetadata,
    /// Replaced by another file's bytes: a same-named file of another checkpoint, or another
    /// file of the same one (a misdirected write).
    StaleFile,
}

/// A corruption that was applied.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Corruption {
    /// The attempt about to restore when the damage was done.
    pub attempt: u32,
    /// The checkpoint whose file was damaged.
    pub checkpoint: u64,
    /// The file, relative to the checkpoint root.
    pub path: String,
    /// How.
    pub kind: CorruptionKind,
    /// What exactly was done: where the damage landed depends on the file's size, which for
    /// RocksDB varies by host.
    pub detail: HostDetail,
}

impl Corruption {
    /// Whether this damage accounts for a problem the storage audit found.
    pub fn explains(&self, problem: &AuditProblem) -> bool {
        let snapshot_name = format!("chk-{}", self.checkpoint);
        let metadata_damaged = self.path == registry::metadata_path(self.checkpoint).as_str();
        match problem {
            // Damaged metadata may name anything (a stale copy names another checkpoint's
            // files), so every complaint about that snapshot comes from the damage.
            AuditProblem::Unreadable { snapshot, .. } | AuditProblem::BadFile { snapshot, .. }
                if *snapshot == snapshot_name =>
            {
                true
            }
            AuditProblem::BadFile { file, .. } => *file == self.path,
            // Files the damaged metadata no longer names look unreferenced.
            AuditProblem::Orphan { path } => {
                *path == self.path
                    || (metadata_damaged
                        && path.rsplit_once('/').map(|(dir, _)| dir) == Some(&snapshot_name))
            }
            AuditProblem::Incomplete { dir } => metadata_damaged && *dir == snapshot_name,
            _ => false,
        }
    }
}

/// Damages one file of the latest readable retained checkpoint; `draw(bound)` gives a number in
/// `0..bound`. Returns `None` when there is no such checkpoint or file.
pub fn corrupt_retained(
    storage: &mut dyn CheckpointStorage,
    kind: CorruptionKind,
    draw: &mut dyn FnMut(u64) -> u64,
) -> Option<Corruption> {
    let retained = registry::retained(storage).ok()?;
    let ids: Vec<u64> = retained.iter().map(|r| r.id).collect();
    let (checkpoint, metadata) = retained
        .into_iter()
        .rev()
        .find_map(|r| r.metadata.ok().map(|m| (r.id, m)))?;
    let older: Vec<u64> = ids.into_iter().filter(|id| *id != checkpoint).collect();
    let metadata_path = registry::metadata_path(checkpoint);
    let mut files: Vec<RelPath> = metadata.files().iter().map(|f| f.path.clone()).collect();
    let path = match kind {
        CorruptionKind::TornMetadata => metadata_path.clone(),
        _ => {
            files.push(metadata_path.clone());
            files[draw(files.len() as u64) as usize].clone()
        }
    };
    let mut bytes = storage.read(&path).ok()?;
    let len = bytes.len() as u64;
    let detail = match kind {
        CorruptionKind::Delete => {
            storage.remove_file(&path).ok()?;
            return Some(Corruption {
                attempt: 0,
                checkpoint,
                path: path.to_string(),
                kind,
                detail: HostDetail("deleted".into()),
            });
        }
        CorruptionKind::BitFlip if len > 0 => {
            let position = draw(len);
            let bit = draw(8);
            bytes[position as usize] ^= 1 << bit;
            format!("bit {bit} of byte {position} flipped")
        }
        CorruptionKind::Truncate | CorruptionKind::TornMetadata if len > 0 => {
            let keep = draw(len);
            bytes.truncate(keep as usize);
            format!("cut to {keep} of {len} bytes")
        }
        CorruptionKind::ZeroBlock if len > 0 => {
            let start = draw(len);
            let end = (start + 1 + draw(4096)).min(len);
            if bytes[start as usize..end as usize].iter().all(|b| *b == 0) {
                // Zeros over zeros change nothing: flip the first byte of the block as well.
                bytes[start as usize] = 0xff;
            } else {
                bytes[start as usize..end as usize].fill(0);
            }
            format!("bytes {start}..{end} zeroed")
        }
        CorruptionKind::StaleFile => {
            // Prefer a same-named file of another retained checkpoint (chk-4/sum-0.kv for
            // chk-5/sum-0.kv); else another file of this one (a misdirected write).
            let name = path
                .as_str()
                .split_once('/')
                .map_or(path.as_str(), |(_, rest)| rest);
            let same_named: Vec<RelPath> = older
                .iter()
                .filter_map(|id| RelPath::new(&format!("chk-{id}/{name}")).ok())
                .filter(|p| storage.exists(p))
                .collect();
            let others: Vec<&RelPath> = if same_named.is_empty() {
                files.iter().filter(|other| **other != path).collect()
            } else {
                same_named.iter().collect()
            };
            if others.is_empty() {
                return None;
            }
            let source = others[draw(others.len() as u64) as usize].clone();
            let stale = storage.read(&source).ok()?;
            if stale == bytes {
                return None;
            }
            bytes = stale;
            format!("replaced by the bytes of {source}")
        }
        _ => return None,
    };
    storage.write(&path, &bytes).ok()?;
    Some(Corruption {
        attempt: 0,
        checkpoint,
        path: path.to_string(),
        kind,
        detail: HostDetail(detail),
    })
}
