//! The RocksDB key layout: `key_group (u16 BE) ‖ escape(key) ‖ 00 00 ‖ user_key`, where escape
//! doubles each `00` as `00 FF`. Byte order of encoded keys equals the canonical order of
//! (key group, key, user key); decoding rejects anything else.

use crate::state::StateError;

/// Encodes a cell address.
pub fn encode(key_group: u16, key: &[u8], user_key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + key.len() + user_key.len() + key.len() / 8);
    out.extend_from_slice(&key_group.to_be_bytes());
    for &byte in key {
        out.push(byte);
        if byte == 0 {
            out.push(0xff);
        }
    }
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(user_key);
    out
}

/// Decodes what [`encode`] wrote.
pub fn decode(bytes: &[u8]) -> Result<(u16, Vec<u8>, Vec<u8>), StateError> {
    let bad = |why: &str| StateError::Backend {
        backend: "rocksdb",
        reason: format!("malformed key: {why}"),
    };
    let [high, low, rest @ ..] = bytes else {
        return Err(bad("shorter than a key group"));
    };
    let key_group = u16::from_be_bytes([*high, *low]);
    let mut key = Vec::new();
    let mut index = 0;
    loop {
        match (rest.get(index), rest.get(index + 1)) {
            (Some(0), Some(0)) => return Ok((key_group, key, rest[index + 2..].to_vec())),
            (Some(0), Some(0xff)) => {
                key.push(0);
                index += 2;
            }
            (Some(0), _) => return Err(bad("a 00 byte that is neither escaped nor a terminator")),
            (Some(&byte), _) => {
                key.push(byte);
                index += 1;
            }
            (None, _) => return Err(bad("no terminator")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_order() {
        let cells: Vec<(u16, &[u8], &[u8])> = vec![
            (1, b"", b""),
            (1, b"", b"x"),
            (1, b"\x00", b""),
            (1, b"\x00\x00", b""),
            (1, b"\x00a", b""),
            (1, b"a", b""),
            (1, b"a", b"\x00"),
            (1, b"a\x00", b""),
            (1, b"ab", b""),
            (2, b"", b""),
        ];
        let encoded: Vec<Vec<u8>> = cells.iter().map(|(g, k, u)| encode(*g, k, u)).collect();
        for (cell, bytes) in cells.iter().zip(&encoded) {
            let (group, key, user_key) = decode(bytes).unwrap();
            assert_eq!((group, key.as_slice(), user_key.as_slice()), *cell);
        }
        let mut sorted = encoded.clone();
        sorted.sort();
        assert_eq!(sorted, encoded, "byte order is the canonical order");
    }

    #[test]
    fn malformed_keys_are_errors() {
        for bad in [&b""[..], b"\x00", b"\x00\x01a", b"\x00\x01a\x00b"] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }
}
