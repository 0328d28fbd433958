//! Corruption of retained checkpoint files. Positions come from the fault stream and the file's
//! size, never from its bytes: RocksDB files differ between identical runs, and the corruption
//! must replay from the seed.

use serde::{Deserialize, Serialize};

use crate::checkpoint::registry::AuditProblem;
use crate::checkpoint::{registry, CheckpointStorage, FileRef, RelPath};
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
        let dir = registry::checkpoint_dir(self.checkpoint);
        let snapshot_name = dir.as_str();
        let metadata_damaged = self.path == registry::metadata_path(self.checkpoint).as_str();
        match problem {
            // Damaged metadata may name anything (a stale copy names another checkpoint's
            // files), so every complaint about that snapshot comes from the damage.
            AuditProblem::Unreadable { snapshot, .. } | AuditProblem::BadFile { snapshot, .. }
                if snapshot == snapshot_name =>
            {
                true
            }
            AuditProblem::ReferencesUnclaimed { snapshot, .. }
            | AuditProblem::LeftBehind { snapshot, .. }
                if snapshot == snapshot_name && metadata_damaged =>
            {
                true
            }
            AuditProblem::BadFile { file, .. } => *file == self.path,
            // Files the damaged metadata no longer names look unreferenced.
            AuditProblem::Orphan { path } => {
                *path == self.path
                    || (metadata_damaged
                        && std::path::Path::new(path).parent()
                            == Some(std::path::Path::new(snapshot_name)))
            }
            AuditProblem::Incomplete { dir } => metadata_damaged && dir == snapshot_name,
            AuditProblem::ReferencesUnclaimed { restored, .. } => {
                metadata_damaged && restored == snapshot_name
            }
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
    let target = Target::pick(storage, kind, draw)?;
    let corruption = |detail: &str| Corruption {
        attempt: 0,
        checkpoint: target.checkpoint,
        path: target.path.to_string(),
        kind,
        detail: HostDetail(detail.to_string()),
    };
    let mut bytes = storage.read(&target.path).ok()?;
    let detail = match kind {
        CorruptionKind::Delete => {
            storage.remove_file(&target.path).ok()?;
            return Some(corruption("deleted"));
        }
        CorruptionKind::StaleFile => {
            let (stale, detail) = target.stale_bytes(storage, &bytes, draw)?;
            bytes = stale;
            detail
        }
        _ => damage_in_place(kind, &mut bytes, draw)?,
    };
    // Damage that gives back the bytes the metadata records (a block zeroed again, a flip
    // undone, a stale copy of the original) repairs a file an earlier fault damaged: no
    // corruption, and nothing written.
    if repairs(target.recorded.as_ref(), &bytes) {
        return None;
    }
    storage.write(&target.path, &bytes).ok()?;
    Some(corruption(&detail))
}

/// The file a corruption damages, and what a stale copy of it may come from.
struct Target {
    /// The latest retained checkpoint with readable metadata.
    checkpoint: u64,
    /// The file: `_metadata` or one its metadata names.
    path: RelPath,
    /// Every file of the checkpoint, `_metadata` included.
    files: Vec<RelPath>,
    /// The other retained checkpoints.
    older: Vec<u64>,
    /// What the metadata records of the file (`None` for `_metadata` itself).
    recorded: Option<FileRef>,
}

impl Target {
    fn pick(
        storage: &dyn CheckpointStorage,
        kind: CorruptionKind,
        draw: &mut dyn FnMut(u64) -> u64,
    ) -> Option<Self> {
        let retained = registry::retained(storage).ok()?;
        let ids: Vec<u64> = retained.iter().map(|r| r.id).collect();
        let (checkpoint, metadata) = retained
            .into_iter()
            .rev()
            .find_map(|r| r.metadata.ok().map(|m| (r.id, m)))?;
        let older = ids.into_iter().filter(|id| *id != checkpoint).collect();
        let metadata_path = registry::metadata_path(checkpoint);
        let refs: Vec<FileRef> = metadata.files().into_iter().cloned().collect();
        let mut files: Vec<RelPath> = refs.iter().map(|f| f.path.clone()).collect();
        files.push(metadata_path.clone());
        let path = match kind {
            CorruptionKind::TornMetadata => metadata_path,
            _ => files[draw(files.len() as u64) as usize].clone(),
        };
        let recorded = refs.into_iter().find(|f| f.path == path);
        Some(Self {
            checkpoint,
            path,
            files,
            older,
            recorded,
        })
    }

    /// Other bytes for the file: preferably a same-named file of another retained checkpoint
    /// (chk-4/sum-0.kv for chk-5/sum-0.kv), else another file of this one (a misdirected
    /// write). `None` when there is none, or it holds the same bytes.
    fn stale_bytes(
        &self,
        storage: &dyn CheckpointStorage,
        bytes: &[u8],
        draw: &mut dyn FnMut(u64) -> u64,
    ) -> Option<(Vec<u8>, String)> {
        let name = self
            .path
            .as_str()
            .split_once('/')
            .map_or(self.path.as_str(), |(_, rest)| rest);
        let same_named: Vec<RelPath> = self
            .older
            .iter()
            .filter_map(|id| RelPath::new(&format!("chk-{id}/{name}")).ok())
            .filter(|p| storage.exists(p))
            .collect();
        let others: Vec<&RelPath> = if same_named.is_empty() {
            self.files
                .iter()
                .filter(|other| **other != self.path)
                .collect()
        } else {
            same_named.iter().collect()
        };
        if others.is_empty() {
            return None;
        }
        let source = others[draw(others.len() as u64) as usize];
        let stale = storage.read(source).ok()?;
        (stale != bytes).then(|| (stale, format!("replaced by the bytes of {source}")))
    }
}

/// Whether `bytes` are what the metadata records for the file.
fn repairs(recorded: Option<&FileRef>, bytes: &[u8]) -> bool {
    recorded.is_some_and(|file| file.mismatch(bytes).is_none())
}

/// Damages `bytes` in place as `kind` does, and says how; `None` for an empty file or a kind
/// that does not damage in place.
fn damage_in_place(
    kind: CorruptionKind,
    bytes: &mut Vec<u8>,
    draw: &mut dyn FnMut(u64) -> u64,
) -> Option<String> {
    let len = bytes.len() as u64;
    if len == 0 {
        return None;
    }
    match kind {
        CorruptionKind::BitFlip => {
            let position = draw(len);
            let bit = draw(8);
            bytes[position as usize] ^= 1 << bit;
            Some(format!("bit {bit} of byte {position} flipped"))
        }
        CorruptionKind::Truncate | CorruptionKind::TornMetadata => {
            let keep = draw(len);
            bytes.truncate(keep as usize);
            Some(format!("cut to {keep} of {len} bytes"))
        }
        CorruptionKind::ZeroBlock => {
            let start = draw(len);
            let end = (start + 1 + draw(4096)).min(len);
            let block = &mut bytes[start as usize..end as usize];
            if block.iter().all(|b| *b == 0) {
                // Zeros over zeros change nothing: flip the first byte of the block as well.
                block[0] = 0xff;
            } else {
                block.fill(0);
            }
            Some(format!("bytes {start}..{end} zeroed"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_zero_block_can_undo_the_first_and_is_then_no_corruption() {
        // Found by a campaign: a block of zeros but for one 0xff byte was zeroed, then a
        // second fault zeroed that byte's block again, which (zeros over zeros) flips it back.
        let original = vec![0, 0, 0xff, 0, 0, 0, 0, 0];
        let recorded = FileRef::of(RelPath::new("chk-1/sum-0.kv").unwrap(), &original);
        let mut bytes = original.clone();
        let mut first = [0u64, 7].into_iter();
        damage_in_place(CorruptionKind::ZeroBlock, &mut bytes, &mut |_| {
            first.next().unwrap()
        })
        .unwrap();
        assert!(
            !repairs(Some(&recorded), &bytes),
            "the first damages the file"
        );
        let mut second = [2u64, 0].into_iter();
        damage_in_place(CorruptionKind::ZeroBlock, &mut bytes, &mut |_| {
            second.next().unwrap()
        })
        .unwrap();
        assert_eq!(bytes, original);
        assert!(repairs(Some(&recorded), &bytes), "the second repairs it");
        assert!(
            !repairs(None, &bytes),
            "without a record nothing counts as repaired"
        );
    }
}
