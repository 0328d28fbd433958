//! The channel-state file: the records one task's snapshot found in flight on its channels, as
//! an unaligned checkpoint persists them (Flink's channel state): for an input channel, the
//! records that reached the task after its snapshot and before that channel's barrier; for an
//! output channel, the records its barrier overtook. A restore replays them before new input.
//!
//! Layout, little-endian, inside the envelope (`envelope::seal`, magic `FLCS`, version 1, with
//! its length and CRC32C over everything):
//!
//! ```text
//! u64 checkpoint id · u16 subtask · u32 channel count, then per channel, in (side, peer) order:
//!   u8 side (0 input, 1 output) · u16 peer (the subtask at the other end) · u32 record count,
//!   then per record:
//!     str id · str key · str value      (str: u32 length, UTF-8; key and value canonical JSON)
//!     u8 flags (bit 0: an event time follows, bit 1: a side output's tag follows)
//!     [i64 timestamp_ms] [str side] · u32 origin partition · u64 origin offset
//! ```
//!
//! The decoder trusts no length or count (each is checked against the bytes that remain before
//! anything is allocated), refuses a channel listed twice or out of order, unknown flag bits,
//! and keys or values that are not canonical JSON, so every file it accepts re-encodes to the
//! same bytes.
//!
//! ```
//! use faultline::checkpoint::channel::{ChannelSide, ChannelState, ChannelStateFile};
//! use faultline::job::Record;
//!
//! let file = ChannelStateFile {
//!     checkpoint_id: 7,
//!     subtask: 1,
//!     channels: vec![ChannelState {
//!         side: ChannelSide::Input,
//!         peer: 0,
//!         records: vec![Record::transaction("tx1", "acct-1", 250)],
//!     }],
//! };
//! let bytes = file.encode();
//! assert_eq!(ChannelStateFile::decode(&bytes)?, file);
//!
//! // A flipped bit, or bytes cut short, are errors naming the damage, never a panic.
//! let mut damaged = bytes.clone();
//! damaged[20] ^= 0x10;
//! assert!(ChannelStateFile::decode(&damaged).is_err());
//! assert!(ChannelStateFile::decode(&bytes[..bytes.len() - 1]).is_err());
//! # Ok::<(), faultline::checkpoint::FormatError>(())
//! ```

use super::codec::{Decoder, Encoder};
use super::{envelope, FormatError};
use crate::job::{Datum, Origin, Record};

/// The format's magic number.
pub const MAGIC: [u8; 4] = *b"FLCS";
/// The version this build writes and reads.
pub const VERSION: u16 = 1;
const FORMAT: &str = "channel state";

/// The name of the channel-state file of subtask `subtask` of task-order stage `stage`, in its
/// checkpoint's directory.
pub fn file_name(stage: usize, subtask: u16) -> String {
    format!("{FILE_PREFIX}{stage}-{subtask}")
}

/// Whether `name` is a channel-state file's name.
pub fn is_file_name(name: &str) -> bool {
    name.starts_with(FILE_PREFIX)
}

const FILE_PREFIX: &str = "channels-";

/// Flag bit: the record has an event time.
const HAS_TIMESTAMP: u8 = 0b01;
/// Flag bit: the record belongs to a side output.
const HAS_SIDE: u8 = 0b10;
/// The fewest bytes a record takes: three empty strings, the flags and the origin.
const RECORD_BYTES_MIN: usize = 3 * 4 + 1 + 4 + 8;
/// The fewest bytes a channel takes: side, peer and record count.
const CHANNEL_BYTES_MIN: usize = 1 + 2 + 4;

/// Which end of a channel the records were taken at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChannelSide {
    /// An input channel: records that reached the task after its snapshot, before the
    /// channel's barrier.
    Input,
    /// An output channel: records the task's barrier overtook.
    Output,
}

/// The records in flight on one channel of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelState {
    /// The end they were taken at.
    pub side: ChannelSide,
    /// The subtask at the other end: the sender of an input channel, the receiver of an output
    /// channel.
    pub peer: u16,
    /// The records, in channel order.
    pub records: Vec<Record>,
}

/// One task's channel-state file of one checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelStateFile {
    /// The checkpoint.
    pub checkpoint_id: u64,
    /// The subtask that wrote it.
    pub subtask: u16,
    /// Its channels, in (side, peer) order, each once.
    pub channels: Vec<ChannelState>,
}

impl ChannelStateFile {
    /// The file's bytes. Channels are written in (side, peer) order, whatever order they are
    /// held in, so equal state gives equal bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut channels: Vec<&ChannelState> = self.channels.iter().collect();
        channels.sort_by_key(|c| (c.side, c.peer));
        // Each channel once, as the decoder requires: a task has one channel per peer and side.
        debug_assert!(
            channels
                .windows(2)
                .all(|pair| (pair[0].side, pair[0].peer) < (pair[1].side, pair[1].peer)),
            "a channel listed twice"
        );
        let mut encoder = Encoder::new();
        encoder
            .u64(self.checkpoint_id)
            .u16(self.subtask)
            .u32(len_u32(channels.len()));
        for channel in channels {
            let side = match channel.side {
                ChannelSide::Input => 0,
                ChannelSide::Output => 1,
            };
            encoder
                .u8(side)
                .u16(channel.peer)
                .u32(len_u32(channel.records.len()));
            for record in &channel.records {
                encode_record(&mut encoder, record);
            }
        }
        envelope::seal(MAGIC, VERSION, &encoder.finish())
    }

    /// Reads a file written by [`ChannelStateFile::encode`]; anything else is an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let payload = envelope::open(FORMAT, MAGIC, VERSION, bytes)?;
        let mut decoder = Decoder::new(payload);
        let checkpoint_id = decoder.u64("checkpoint id")?;
        let subtask = decoder.u16("subtask")?;
        let count = decoder.count("channel count", CHANNEL_BYTES_MIN)?;
        let mut channels: Vec<ChannelState> = Vec::with_capacity(count);
        for _ in 0..count {
            let channel = decode_channel(&mut decoder)?;
            if let Some(last) = channels.last() {
                if (last.side, last.peer) >= (channel.side, channel.peer) {
                    return Err(invalid(
                        "channel",
                        &decoder,
                        format!(
                            "{:?} channel of peer {} listed twice or out of order",
                            channel.side, channel.peer
                        ),
                    ));
                }
            }
            channels.push(channel);
        }
        decoder.finish(FORMAT)?;
        Ok(Self {
            checkpoint_id,
            subtask,
            channels,
        })
    }
}

/// A length this build wrote: its channels and records are counted in memory, far below
/// `u32::MAX`, which a channel's capacity and a case's bounds keep them under.
fn len_u32(len: usize) -> u32 {
    u32::try_from(len).expect("a channel holds fewer than 2^32 records")
}

fn encode_record(encoder: &mut Encoder, record: &Record) {
    let flags = u8::from(record.timestamp_ms.is_some()) * HAS_TIMESTAMP
        + u8::from(record.side.is_some()) * HAS_SIDE;
    encoder
        .str(&record.id)
        .str(record.key.as_str())
        .str(record.value.as_str())
        .u8(flags);
    if let Some(timestamp_ms) = record.timestamp_ms {
        encoder.i64(timestamp_ms);
    }
    if let Some(side) = &record.side {
        encoder.str(side);
    }
    encoder
        .u32(record.origin.partition)
        .u64(record.origin.offset);
}

fn decode_channel(decoder: &mut Decoder<'_>) -> Result<ChannelState, FormatError> {
    let side = match decoder.u8("channel side")? {
        0 => ChannelSide::Input,
        1 => ChannelSide::Output,
        other => {
            return Err(invalid(
                "channel side",
                decoder,
                format!("{other} is neither input (0) nor output (1)"),
            ))
        }
    };
    let peer = decoder.u16("channel peer")?;
    let count = decoder.count("record count", RECORD_BYTES_MIN)?;
    let mut records = Vec::with_capacity(count);
    for _ in 0..count {
        records.push(decode_record(decoder)?);
    }
    Ok(ChannelState {
        side,
        peer,
        records,
    })
}

fn decode_record(decoder: &mut Decoder<'_>) -> Result<Record, FormatError> {
    let id = decoder.str("record id")?.to_string();
    let key = canonical(decoder, "record key")?;
    let value = canonical(decoder, "record value")?;
    let flags = decoder.u8("record flags")?;
    if flags & !(HAS_TIMESTAMP | HAS_SIDE) != 0 {
        return Err(invalid(
            "record flags",
            decoder,
            format!("unknown flag bits {flags:#04x}"),
        ));
    }
    let timestamp_ms = match flags & HAS_TIMESTAMP {
        0 => None,
        _ => Some(decoder.i64("record event time")?),
    };
    let side = match flags & HAS_SIDE {
        0 => None,
        _ => Some(decoder.str("record side output")?.to_string()),
    };
    let origin = Origin {
        partition: decoder.u32("record origin partition")?,
        offset: decoder.u64("record origin offset")?,
    };
    Ok(Record {
        id,
        key,
        value,
        side,
        timestamp_ms,
        origin,
    })
}

/// A key or value: JSON in the canonical form the engine writes, so that it re-encodes to the
/// same bytes.
fn canonical(decoder: &mut Decoder<'_>, what: &'static str) -> Result<Datum, FormatError> {
    let text = decoder.str(what)?;
    let datum = Datum::parse(text).map_err(|e| invalid(what, decoder, e.to_string()))?;
    if datum.as_str() != text {
        return Err(invalid(what, decoder, "not in canonical form".into()));
    }
    Ok(datum)
}

fn invalid(what: &'static str, decoder: &Decoder<'_>, reason: String) -> FormatError {
    FormatError::Invalid {
        what,
        offset: decoder.position() as u64,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> ChannelStateFile {
        let mut late = Record::transaction("tx2", "acct-2", -40);
        late.timestamp_ms = Some(1_700_000_000_123);
        late.side = Some("late".into());
        late.origin = Origin {
            partition: 3,
            offset: 41,
        };
        ChannelStateFile {
            checkpoint_id: 12,
            subtask: 2,
            channels: vec![
                ChannelState {
                    side: ChannelSide::Output,
                    peer: 1,
                    records: vec![Record::transaction("tx3", "acct-3", 7)],
                },
                ChannelState {
                    side: ChannelSide::Input,
                    peer: 0,
                    records: vec![Record::transaction("tx1", "acct-1", 250), late],
                },
                ChannelState {
                    side: ChannelSide::Input,
                    peer: 4,
                    records: Vec::new(),
                },
            ],
        }
    }

    #[test]
    fn a_file_decodes_to_what_was_encoded_in_channel_order() {
        let original = file();
        let decoded = ChannelStateFile::decode(&original.encode()).unwrap();
        let order: Vec<(ChannelSide, u16)> =
            decoded.channels.iter().map(|c| (c.side, c.peer)).collect();
        assert_eq!(
            order,
            [
                (ChannelSide::Input, 0),
                (ChannelSide::Input, 4),
                (ChannelSide::Output, 1)
            ]
        );
        let records: usize = decoded.channels.iter().map(|c| c.records.len()).sum();
        assert_eq!(records, 3);
        assert_eq!(decoded.encode(), original.encode());
        assert_eq!(decoded.channels[0].records[1].side.as_deref(), Some("late"));
    }

    #[test]
    fn every_truncation_and_every_flipped_bit_is_an_error() {
        let bytes = file().encode();
        for len in 0..bytes.len() {
            assert!(
                ChannelStateFile::decode(&bytes[..len]).is_err(),
                "cut at {len}"
            );
        }
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(ChannelStateFile::decode(&damaged).is_err(), "bit {bit}");
        }
    }

    /// Seals a payload as a valid envelope, so that the payload's own checks are reached.
    fn sealed(payload: &Encoder) -> Vec<u8> {
        envelope::seal(MAGIC, VERSION, &payload.clone().finish())
    }

    #[test]
    fn hostile_counts_duplicates_and_unknown_values_are_refused() {
        let mut hostile = Encoder::new();
        hostile.u64(1).u16(0).u32(u32::MAX);
        let error = ChannelStateFile::decode(&sealed(&hostile)).unwrap_err();
        assert!(matches!(
            error,
            FormatError::Invalid {
                what: "channel count",
                ..
            }
        ));

        let mut twice = Encoder::new();
        twice.u64(1).u16(0).u32(2);
        twice.u8(0).u16(3).u32(0).u8(0).u16(3).u32(0);
        let error = ChannelStateFile::decode(&sealed(&twice)).unwrap_err();
        assert!(matches!(
            error,
            FormatError::Invalid {
                what: "channel",
                ..
            }
        ));

        let mut side = Encoder::new();
        side.u64(1).u16(0).u32(1).u8(2).u16(0).u32(0);
        let error = ChannelStateFile::decode(&sealed(&side)).unwrap_err();
        assert!(matches!(
            error,
            FormatError::Invalid {
                what: "channel side",
                ..
            }
        ));
    }

    #[test]
    fn a_key_not_in_canonical_form_is_refused() {
        let mut spaced = Encoder::new();
        spaced.u64(1).u16(0).u32(1).u8(0).u16(0).u32(1);
        spaced
            .str("tx1")
            .str("{ \"a\": 1 }")
            .str("1")
            .u8(0)
            .u32(0)
            .u64(0);
        let error = ChannelStateFile::decode(&sealed(&spaced)).unwrap_err();
        assert!(matches!(
            error,
            FormatError::Invalid {
                what: "record key",
                ..
            }
        ));

        let mut flags = Encoder::new();
        flags.u64(1).u16(0).u32(1).u8(0).u16(0).u32(1);
        flags
            .str("tx1")
            .str("\"k\"")
            .str("1")
            .u8(0b100)
            .u32(0)
            .u64(0);
        let error = ChannelStateFile::decode(&sealed(&flags)).unwrap_err();
        assert!(matches!(
            error,
            FormatError::Invalid {
                what: "record flags",
                ..
            }
        ));
    }
}
