//! The envelope every single-payload file uses: magic, version, payload length, payload, and a
//! CRC32C over all of it. `_metadata` and operator-state files are enveloped.
//!
//! ```
//! use faultline::checkpoint::envelope::{open, seal};
//!
//! let bytes = seal(*b"DEMO", 1, b"payload");
//! assert_eq!(open("demo", *b"DEMO", 1, &bytes)?, b"payload");
//!
//! // One flipped bit anywhere fails the checksum; another format's magic or version is refused.
//! let mut damaged = bytes.clone();
//! damaged[14] ^= 0x01;
//! assert!(open("demo", *b"DEMO", 1, &damaged).is_err());
//! assert!(open("demo", *b"OTHR", 1, &bytes).is_err());
//! assert!(open("demo", *b"DEMO", 2, &bytes).is_err());
//! # Ok::<(), faultline::checkpoint::FormatError>(())
//! ```

use super::codec::{Decoder, Encoder};
use super::FormatError;

/// Wraps `payload` in the envelope of the format named by `magic` and `version`.
pub fn seal(magic: [u8; 4], version: u16, payload: &[u8]) -> Vec<u8> {
    let mut encoder = Encoder::new();
    encoder
        .raw(&magic)
        .u16(version)
        .u64(payload.len() as u64)
        .raw(payload);
    let mut bytes = encoder.finish();
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// Checks magic, version, length and checksum, and returns the payload.
pub fn open<'a>(
    format: &'static str,
    magic: [u8; 4],
    version: u16,
    bytes: &'a [u8],
) -> Result<&'a [u8], FormatError> {
    let mut decoder = Decoder::new(bytes);
    let found = decoder
        .take(4, "magic")
        .map_err(|_| FormatError::BadMagic {
            format,
            expected: magic,
            found: bytes.iter().take(4).copied().collect(),
        })?;
    if found != magic {
        return Err(FormatError::BadMagic {
            format,
            expected: magic,
            found: found.to_vec(),
        });
    }
    let found_version = decoder.u16("version")?;
    if found_version != version {
        return Err(FormatError::UnsupportedVersion {
            format,
            found: found_version,
            supported: version,
        });
    }
    let len = decoder.u64("payload length")?;
    let len = usize::try_from(len).map_err(|_| FormatError::Invalid {
        what: "payload length",
        offset: 6,
        reason: format!("{len} does not fit in memory"),
    })?;
    let payload = decoder.take(len, "payload")?;
    let covered = decoder.position();
    let stored = decoder.u32("checksum")?;
    decoder.finish(format)?;
    let computed = crc32c::crc32c(&bytes[..covered]);
    if stored != computed {
        return Err(FormatError::ChecksumMismatch {
            what: format.to_string(),
            stored,
            computed,
        });
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAGIC: [u8; 4] = *b"TEST";

    #[test]
    fn sealed_bytes_open() {
        let sealed = seal(MAGIC, 3, b"payload");
        assert_eq!(open("test", MAGIC, 3, &sealed).unwrap(), b"payload");
    }

    #[test]
    fn every_single_byte_flip_is_detected() {
        let sealed = seal(MAGIC, 3, b"payload");
        for index in 0..sealed.len() {
            let mut corrupt = sealed.clone();
            corrupt[index] ^= 0x01;
            assert!(
                open("test", MAGIC, 3, &corrupt).is_err(),
                "flip at {index} passed"
            );
        }
    }

    #[test]
    fn every_truncation_is_detected() {
        let sealed = seal(MAGIC, 3, b"payload");
        for len in 0..sealed.len() {
            assert!(
                open("test", MAGIC, 3, &sealed[..len]).is_err(),
                "truncation to {len} passed"
            );
        }
    }
}
