//! The byte codec every snapshot format is built from: a growable encoder and a decoder that
//! checks every length against the bytes that remain before it allocates or reads, so a hostile
//! length field can neither panic the reader nor make it allocate more than the input's size.
//!
//! ```
//! use faultline::checkpoint::codec::{Decoder, Encoder};
//!
//! let mut encoder = Encoder::new();
//! encoder.u32(7).str("keyed0");
//! let bytes = encoder.finish();
//!
//! let mut decoder = Decoder::new(&bytes);
//! assert_eq!(decoder.u32("count")?, 7);
//! assert_eq!(decoder.str("stage name")?, "keyed0");
//! decoder.finish("example")?;
//!
//! // A length field claiming 4 GiB with nothing behind it is an error, not an allocation.
//! let mut hostile = Decoder::new(&[0xff, 0xff, 0xff, 0xff]);
//! assert!(hostile.str("stage name").is_err());
//! # Ok::<(), faultline::checkpoint::FormatError>(())
//! ```

use super::FormatError;

/// Appends little-endian integers and length-prefixed byte strings.
#[derive(Debug, Default, Clone)]
pub struct Encoder {
    bytes: Vec<u8>,
}

impl Encoder {
    /// An empty encoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one byte.
    pub fn u8(&mut self, value: u8) -> &mut Self {
        self.bytes.push(value);
        self
    }

    /// Appends a `u16`.
    pub fn u16(&mut self, value: u16) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// Appends a `u32`.
    pub fn u32(&mut self, value: u32) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// Appends a `u64`.
    pub fn u64(&mut self, value: u64) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// Appends an `i64`.
    pub fn i64(&mut self, value: i64) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// Appends a `u32` length and then the bytes.
    pub fn bytes(&mut self, value: &[u8]) -> &mut Self {
        let len = u32::try_from(value.len()).expect("a snapshot field is under 4 GiB");
        self.u32(len);
        self.bytes.extend_from_slice(value);
        self
    }

    /// Appends a length-prefixed UTF-8 string.
    pub fn str(&mut self, value: &str) -> &mut Self {
        self.bytes(value.as_bytes())
    }

    /// Appends raw bytes with no length (for fixed-size fields such as a magic number).
    pub fn raw(&mut self, value: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(value);
        self
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The encoded bytes.
    pub fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// Reads what an [`Encoder`] wrote, failing on anything short, oversized or malformed.
#[derive(Debug, Clone)]
pub struct Decoder<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Decoder<'a> {
    /// A decoder over `bytes`, starting at the first byte.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, position: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    /// The offset of the next byte to read.
    pub fn position(&self) -> usize {
        self.position
    }

    /// Takes exactly `len` bytes.
    pub fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], FormatError> {
        if len > self.remaining() {
            return Err(FormatError::Truncated {
                what,
                offset: self.position as u64,
                needed: len as u64,
                remaining: self.remaining() as u64,
            });
        }
        let slice = &self.bytes[self.position..self.position + len];
        self.position += len;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], FormatError> {
        let slice = self.take(N, what)?;
        let mut array = [0u8; N];
        array.copy_from_slice(slice);
        Ok(array)
    }

    /// Reads one byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, FormatError> {
        Ok(self.array::<1>(what)?[0])
    }

    /// Reads a `u16`.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, FormatError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    /// Reads a `u32`.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// Reads a `u64`.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Reads an `i64`.
    pub fn i64(&mut self, what: &'static str) -> Result<i64, FormatError> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }

    /// Reads a length-prefixed byte string; the length is checked against the remaining input
    /// before anything is allocated.
    pub fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], FormatError> {
        let len = self.u32(what)? as usize;
        self.take(len, what)
    }

    /// Reads a length-prefixed UTF-8 string.
    pub fn str(&mut self, what: &'static str) -> Result<&'a str, FormatError> {
        let offset = self.position as u64;
        let bytes = self.bytes(what)?;
        std::str::from_utf8(bytes).map_err(|_| FormatError::Invalid {
            what,
            offset,
            reason: "not UTF-8".into(),
        })
    }

    /// Reads a count of items that each take at least `min_item_bytes`, rejecting a count that
    /// the remaining input could not hold (so a hostile count cannot drive a huge allocation or
    /// a long loop).
    pub fn count(
        &mut self,
        what: &'static str,
        min_item_bytes: usize,
    ) -> Result<usize, FormatError> {
        let offset = self.position as u64;
        let count = self.u32(what)? as usize;
        let needed = count.saturating_mul(min_item_bytes.max(1));
        if needed > self.remaining() {
            return Err(FormatError::Invalid {
                what,
                offset,
                reason: format!(
                    "count {count} needs at least {needed} bytes, only {} remain",
                    self.remaining()
                ),
            });
        }
        Ok(count)
    }

    /// Fails unless every byte was read: trailing bytes mean the writer and reader disagree.
    pub fn finish(&self, what: &'static str) -> Result<(), FormatError> {
        if self.remaining() != 0 {
            return Err(FormatError::Invalid {
                what,
                offset: self.position as u64,
                reason: format!("{} trailing bytes", self.remaining()),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut encoder = Encoder::new();
        encoder
            .u8(1)
            .u16(2)
            .u32(3)
            .u64(4)
            .i64(-5)
            .str("six")
            .bytes(&[7, 8]);
        let bytes = encoder.finish();
        let mut decoder = Decoder::new(&bytes);
        assert_eq!(decoder.u8("a").unwrap(), 1);
        assert_eq!(decoder.u16("b").unwrap(), 2);
        assert_eq!(decoder.u32("c").unwrap(), 3);
        assert_eq!(decoder.u64("d").unwrap(), 4);
        assert_eq!(decoder.i64("e").unwrap(), -5);
        assert_eq!(decoder.str("f").unwrap(), "six");
        assert_eq!(decoder.bytes("g").unwrap(), &[7, 8]);
        decoder.finish("end").unwrap();
    }

    #[test]
    fn a_hostile_length_is_an_error_not_an_allocation() {
        let mut encoder = Encoder::new();
        encoder.u32(u32::MAX).raw(b"abc");
        let bytes = encoder.finish();
        assert!(matches!(
            Decoder::new(&bytes).bytes("field"),
            Err(FormatError::Truncated { .. })
        ));
        assert!(matches!(
            Decoder::new(&bytes).count("items", 1),
            Err(FormatError::Invalid { .. })
        ));
    }
}
