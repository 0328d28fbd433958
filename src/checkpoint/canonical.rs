//! The canonical full-snapshot format: backend-independent keyed state, one block per key group,
//! so a restore with another parallelism reads only the groups it owns.
//!
//! ```text
//! "FLKV" version:u16 compression:u8      (0 none, 1 LZ4, each block on its own)
//! states:   count:u16, then per state: name:str kind:u8 value_type:u8
//! range:    start:u16 end:u16            (key groups the writer owned, inclusive)
//! table:    count:u32, then per non-empty group:
//!           group:u16 offset:u64 stored_len:u64 raw_len:u64 entries:u32 crc32c:u32
//! blocks:   contiguous, in group order; the CRC covers the stored bytes; once decompressed a
//!           block holds entries state:u16 key:bytes user_key:bytes value:bytes
//! trailer:  crc32c:u32 over every byte before it
//! ```
//!
//! Entries are in canonical order (key group, state, key, user key), so two backends holding the
//! same state write the same bytes.

use super::codec::{Decoder, Encoder};
use super::FormatError;
use crate::state::{KeyGroupRange, StateDescriptor, StateEntry, StateKind, ValueType};

const MAGIC: [u8; 4] = *b"FLKV";
const VERSION: u16 = 1;
const FORMAT: &str = "canonical snapshot";
const HEADER_LEN: usize = 7;
const TABLE_ROW_LEN: usize = 34;
/// LZ4 expands at most 255 times; a block claiming more is corrupt.
const LZ4_RATIO_MAX: u64 = 255;
/// No block decompresses to more than this, whatever its table row says.
const BLOCK_RAW_MAX: u64 = 1 << 30;

/// How blocks are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compression {
    /// As they are.
    #[default]
    None,
    /// LZ4 block compression, each key group on its own so any one can be read alone.
    Lz4,
}
const ENTRY_MIN_LEN: usize = 14;

/// A decoded canonical snapshot, restricted to the key groups asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalSnapshot {
    /// The states, in the writer's order; entries refer to them by index.
    pub states: Vec<StateDescriptor>,
    /// The key groups the writer owned.
    pub key_groups: KeyGroupRange,
    /// Entries of the requested key groups, in canonical order.
    pub entries: Vec<StateEntry>,
}

/// Encodes `entries` (in canonical order, all inside `range`, state ids indexing `states`).
pub fn encode(
    states: &[StateDescriptor],
    range: KeyGroupRange,
    entries: &[StateEntry],
    compression: Compression,
) -> Vec<u8> {
    let mut groups: Vec<(u16, Vec<u8>, u32)> = Vec::new();
    for entry in entries {
        assert!(
            range.contains(entry.key_group),
            "entry outside the writer's key groups"
        );
        assert!(
            usize::from(entry.state) < states.len(),
            "entry names an undeclared state"
        );
        if groups.last().map(|(group, _, _)| *group) != Some(entry.key_group) {
            if let Some((last, _, _)) = groups.last() {
                assert!(
                    *last < entry.key_group,
                    "entries are not in key-group order"
                );
            }
            groups.push((entry.key_group, Vec::new(), 0));
        }
        let (_, block, count) = groups.last_mut().expect("pushed above");
        let mut e = Encoder::new();
        e.u16(entry.state)
            .bytes(&entry.key)
            .bytes(&entry.user_key)
            .bytes(&entry.value);
        block.extend_from_slice(&e.finish());
        *count += 1;
    }
    let stored: Vec<(u16, Vec<u8>, u64, u32)> = groups
        .into_iter()
        .map(|(group, raw, count)| {
            let raw_len = raw.len() as u64;
            let bytes = match compression {
                Compression::None => raw,
                Compression::Lz4 => lz4_flex::block::compress(&raw),
            };
            (group, bytes, raw_len, count)
        })
        .collect();

    let mut e = Encoder::new();
    e.raw(&MAGIC).u16(VERSION).u8(match compression {
        Compression::None => 0,
        Compression::Lz4 => 1,
    });
    e.u16(u16::try_from(states.len()).expect("fewer than 65536 states"));
    for state in states {
        e.str(&state.name)
            .u8(state.kind.tag())
            .u8(state.value_type.tag());
    }
    e.u16(range.start).u16(range.end);
    e.u32(stored.len() as u32);
    let table_end = e.len() + stored.len() * TABLE_ROW_LEN;
    let mut offset = table_end as u64;
    for (group, block, raw_len, count) in &stored {
        e.u16(*group)
            .u64(offset)
            .u64(block.len() as u64)
            .u64(*raw_len)
            .u32(*count)
            .u32(crc32c::crc32c(block));
        offset += block.len() as u64;
    }
    debug_assert_eq!(e.len(), table_end);
    for (_, block, _, _) in &stored {
        e.raw(block);
    }
    let mut bytes = e.finish();
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// Decodes and validates a canonical snapshot, keeping only entries of key groups in `wanted`.
/// Every checksum is verified before any entry is returned, including those of skipped groups'
/// blocks (the whole-file checksum covers them).
pub fn decode(bytes: &[u8], wanted: KeyGroupRange) -> Result<CanonicalSnapshot, FormatError> {
    if bytes.len() < HEADER_LEN + 4 {
        return Err(FormatError::Truncated {
            what: FORMAT,
            offset: 0,
            needed: (HEADER_LEN + 4) as u64,
            remaining: bytes.len() as u64,
        });
    }
    let (body, trailer) = bytes.split_at(bytes.len() - 4);
    let mut d = Decoder::new(body);
    let compression = decode_header(&mut d)?;
    let stored = u32::from_le_bytes(trailer.try_into().expect("split at len - 4"));
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(FormatError::ChecksumMismatch {
            what: FORMAT.to_string(),
            stored,
            computed,
        });
    }
    let states = decode_states(&mut d)?;
    let key_groups = decode_key_groups(&mut d)?;
    let group_count = d.count("key group table", TABLE_ROW_LEN)?;
    let mut expected_offset = (d.position() + group_count * TABLE_ROW_LEN) as u64;
    let mut previous_group: Option<u16> = None;
    let mut entries = Vec::new();
    for _ in 0..group_count {
        let row = TableRow::read(&mut d)?;
        let block = row.check(body, key_groups, previous_group, expected_offset)?;
        previous_group = Some(row.group);
        expected_offset = row.offset + row.len;
        if wanted.contains(row.group) {
            row.decode_block(block, compression, states.len(), &mut entries)?;
        }
    }
    if expected_offset != body.len() as u64 {
        return Err(invalid(
            "blocks",
            expected_offset,
            "bytes after the last block",
        ));
    }
    Ok(CanonicalSnapshot {
        states,
        key_groups,
        entries,
    })
}

/// Magic, version and compression.
fn decode_header(d: &mut Decoder<'_>) -> Result<Compression, FormatError> {
    let magic = d.take(4, "magic")?;
    if magic != MAGIC {
        return Err(FormatError::BadMagic {
            format: FORMAT,
            expected: MAGIC,
            found: magic.to_vec(),
        });
    }
    let version = d.u16("version")?;
    if version != VERSION {
        return Err(FormatError::UnsupportedVersion {
            format: FORMAT,
            found: version,
            supported: VERSION,
        });
    }
    match d.u8("compression")? {
        0 => Ok(Compression::None),
        1 => Ok(Compression::Lz4),
        other => Err(invalid(
            "compression",
            6,
            &format!("unknown compression {other}"),
        )),
    }
}

/// The declared states, each name once.
fn decode_states(d: &mut Decoder<'_>) -> Result<Vec<StateDescriptor>, FormatError> {
    let state_count = d.u16("state count")?;
    let mut states = Vec::with_capacity(usize::from(state_count).min(d.remaining() / 6));
    for _ in 0..state_count {
        let name = d.str("state name")?.to_string();
        let offset = d.position() as u64;
        let kind = StateKind::from_tag(d.u8("state kind")?)
            .ok_or_else(|| invalid("state kind", offset, "unknown kind"))?;
        let value_type = ValueType::from_tag(d.u8("value type")?)
            .ok_or_else(|| invalid("value type", offset + 1, "unknown type"))?;
        if states.iter().any(|s: &StateDescriptor| s.name == name) {
            return Err(invalid("state name", offset, "declared twice"));
        }
        states.push(StateDescriptor {
            name,
            kind,
            value_type,
        });
    }
    Ok(states)
}

/// The writer's key-group range.
fn decode_key_groups(d: &mut Decoder<'_>) -> Result<KeyGroupRange, FormatError> {
    let range_offset = d.position() as u64;
    let key_groups = KeyGroupRange {
        start: d.u16("key group start")?,
        end: d.u16("key group end")?,
    };
    if key_groups.start > key_groups.end {
        return Err(invalid("key groups", range_offset, "start after end"));
    }
    Ok(key_groups)
}

/// One row of the key-group table: where a group's block lies and what it holds.
struct TableRow {
    /// Where the row starts, for errors.
    at: u64,
    group: u16,
    offset: u64,
    len: u64,
    raw_len: u64,
    count: u32,
    crc: u32,
}

impl TableRow {
    fn read(d: &mut Decoder<'_>) -> Result<Self, FormatError> {
        Ok(Self {
            at: d.position() as u64,
            group: d.u16("key group")?,
            offset: d.u64("block offset")?,
            len: d.u64("block length")?,
            raw_len: d.u64("block raw length")?,
            count: d.u32("block entries")?,
            crc: d.u32("block checksum")?,
        })
    }

    /// Checks the row against the range, the row before and the file, and returns its block,
    /// checksum verified.
    fn check<'b>(
        &self,
        body: &'b [u8],
        key_groups: KeyGroupRange,
        previous_group: Option<u16>,
        expected_offset: u64,
    ) -> Result<&'b [u8], FormatError> {
        if !key_groups.contains(self.group) {
            return Err(invalid("key group", self.at, "outside the writer's range"));
        }
        if previous_group.is_some_and(|previous| previous >= self.group) {
            return Err(invalid(
                "key group",
                self.at,
                "table not in increasing group order",
            ));
        }
        if self.offset != expected_offset {
            return Err(invalid(
                "block offset",
                self.at,
                "blocks are not contiguous",
            ));
        }
        let end = self
            .offset
            .checked_add(self.len)
            .filter(|end| *end <= body.len() as u64)
            .ok_or_else(|| {
                invalid(
                    "block length",
                    self.at,
                    "block runs past the end of the file",
                )
            })?;
        let block = &body[self.offset as usize..end as usize];
        let computed = crc32c::crc32c(block);
        if computed != self.crc {
            return Err(FormatError::ChecksumMismatch {
                what: format!("key group {} block", self.group),
                stored: self.crc,
                computed,
            });
        }
        Ok(block)
    }

    /// Decompresses the row's block if it must, never past what its lengths allow, and
    /// decodes its entries.
    fn decode_block(
        &self,
        block: &[u8],
        compression: Compression,
        states: usize,
        entries: &mut Vec<StateEntry>,
    ) -> Result<(), FormatError> {
        match compression {
            Compression::None if self.raw_len == self.len => {
                decode_block(block, self.group, self.count, states, entries)
            }
            Compression::None => Err(invalid(
                "block raw length",
                self.at,
                "differs from the stored length of an uncompressed block",
            )),
            Compression::Lz4 => {
                if self.raw_len > self.len.saturating_mul(LZ4_RATIO_MAX)
                    || self.raw_len > BLOCK_RAW_MAX
                {
                    return Err(invalid(
                        "block raw length",
                        self.at,
                        "more than LZ4 can expand the stored bytes to",
                    ));
                }
                let mut raw = vec![0u8; self.raw_len as usize];
                let written = lz4_flex::block::decompress_into(block, &mut raw)
                    .map_err(|e| invalid("block", self.at, &format!("LZ4: {e}")))?;
                if written as u64 != self.raw_len {
                    return Err(invalid(
                        "block",
                        self.at,
                        "decompressed to another length than recorded",
                    ));
                }
                decode_block(&raw, self.group, self.count, states, entries)
            }
        }
    }
}

fn invalid(what: &'static str, offset: u64, reason: &str) -> FormatError {
    FormatError::Invalid {
        what,
        offset,
        reason: reason.to_string(),
    }
}

fn decode_block(
    block: &[u8],
    group: u16,
    count: u32,
    state_count: usize,
    entries: &mut Vec<StateEntry>,
) -> Result<(), FormatError> {
    let mut d = Decoder::new(block);
    if (count as usize).saturating_mul(ENTRY_MIN_LEN) > block.len() {
        return Err(invalid(
            "block entries",
            0,
            "more entries than the block can hold",
        ));
    }
    let first = entries.len();
    for _ in 0..count {
        let offset = d.position() as u64;
        let state = d.u16("entry state")?;
        if usize::from(state) >= state_count {
            return Err(invalid("entry state", offset, "names an undeclared state"));
        }
        let key = d.bytes("entry key")?.to_vec();
        let user_key = d.bytes("entry user key")?.to_vec();
        let value = d.bytes("entry value")?.to_vec();
        let entry = StateEntry {
            key_group: group,
            state,
            key,
            user_key,
            value,
        };
        if let Some(previous) = entries[first..].last() {
            if previous.sort_key() >= entry.sort_key() {
                return Err(invalid("entry", offset, "entries not in canonical order"));
            }
        }
        entries.push(entry);
    }
    d.finish("key group block")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn states() -> Vec<StateDescriptor> {
        vec![
            StateDescriptor {
                name: "sum".into(),
                kind: StateKind::Value,
                value_type: ValueType::I64,
            },
            StateDescriptor {
                name: "seen".into(),
                kind: StateKind::Map,
                value_type: ValueType::I64,
            },
        ]
    }

    fn entry(group: u16, state: u16, key: &str, user_key: &str, value: i64) -> StateEntry {
        StateEntry {
            key_group: group,
            state,
            key: key.as_bytes().to_vec(),
            user_key: user_key.as_bytes().to_vec(),
            value: value.to_le_bytes().to_vec(),
        }
    }

    fn sample(compression: Compression) -> (Vec<StateEntry>, Vec<u8>) {
        let entries = vec![
            entry(3, 0, "a", "", 5),
            entry(3, 1, "a", "x", 1),
            entry(9, 0, "b", "", 7),
        ];
        let bytes = encode(
            &states(),
            KeyGroupRange { start: 0, end: 15 },
            &entries,
            compression,
        );
        (entries, bytes)
    }

    #[test]
    fn round_trip_and_range_filter() {
        for compression in [Compression::None, Compression::Lz4] {
            let (entries, bytes) = sample(compression);
            let all = decode(&bytes, KeyGroupRange { start: 0, end: 15 }).unwrap();
            assert_eq!(all.entries, entries);
            assert_eq!(all.states, states());
            let some = decode(&bytes, KeyGroupRange { start: 4, end: 15 }).unwrap();
            assert_eq!(some.entries, entries[2..].to_vec());
        }
    }

    #[test]
    fn every_flip_and_cut_is_detected() {
        for compression in [Compression::None, Compression::Lz4] {
            let (_, bytes) = sample(compression);
            let all = KeyGroupRange { start: 0, end: 15 };
            for index in 0..bytes.len() {
                let mut corrupt = bytes.clone();
                corrupt[index] ^= 0x10;
                assert!(
                    decode(&corrupt, all).is_err(),
                    "{compression:?}: flip at {index} passed"
                );
            }
            for len in 0..bytes.len() {
                assert!(
                    decode(&bytes[..len], all).is_err(),
                    "{compression:?}: cut at {len} passed"
                );
            }
        }
    }

    #[test]
    fn compression_shrinks_repetitive_state() {
        let entries: Vec<StateEntry> = (0..200)
            .map(|i| entry(1, 0, &format!("key-{i:04}"), "", 42))
            .collect();
        let range = KeyGroupRange { start: 0, end: 3 };
        let plain = encode(&states(), range, &entries, Compression::None);
        let packed = encode(&states(), range, &entries, Compression::Lz4);
        assert!(
            packed.len() * 2 < plain.len(),
            "{} vs {}",
            packed.len(),
            plain.len()
        );
        assert_eq!(decode(&packed, range).unwrap().entries, entries);
    }

    #[test]
    fn empty_snapshot_round_trips() {
        let bytes = encode(
            &states(),
            KeyGroupRange { start: 0, end: 0 },
            &[],
            Compression::None,
        );
        let decoded = decode(&bytes, KeyGroupRange { start: 0, end: 0 }).unwrap();
        assert!(decoded.entries.is_empty());
    }
}
