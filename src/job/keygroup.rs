//! Flink's key-group assignment: a key's group is `murmur(javaHashCode(key)) % max_parallelism`,
//! and group `g` belongs to subtask `g * parallelism / max_parallelism`. Matching Flink exactly
//! means a key lands on the same subtask here as in a Flink job with the same settings
//! (checked against JVM-computed fixtures in `fixtures/key_groups.csv`).
//!
//! ```
//! use faultline::job::keygroup::{key_group_for, key_group_range, subtask_for_key_group};
//!
//! let group = key_group_for("account-1", 128);
//! assert!(group < 128);
//! // The subtask that owns the group is the one whose range contains it.
//! let subtask = subtask_for_key_group(128, 4, group);
//! assert!(key_group_range(128, 4, subtask).contains(group));
//! assert_eq!(key_group_range(128, 2, 0).end, 63);
//! ```

use crate::state::KeyGroupRange;

/// Flink's default max parallelism for small jobs (`computeDefaultMaxParallelism` floors at 128).
pub const DEFAULT_MAX_PARALLELISM: u16 = 128;

/// The largest max parallelism Flink allows (2^15).
pub const MAX_PARALLELISM_LIMIT: u16 = 32768;

/// Java's `String.hashCode`: over UTF-16 code units, wrapping 32-bit arithmetic.
pub fn java_string_hash(key: &str) -> i32 {
    key.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// Flink's `MathUtils.murmurHash(int)`: a non-negative 32-bit mix of `code`.
pub fn murmur_hash(code: i32) -> i32 {
    let mut h = code.wrapping_mul(0xcc9e_2d51_u32 as i32);
    h = h.rotate_left(15);
    h = h.wrapping_mul(0x1b87_3593);
    h = h.rotate_left(13);
    h = h.wrapping_mul(5).wrapping_add(0xe654_6b64_u32 as i32);
    h ^= 4;
    h = bit_mix(h);
    if h >= 0 {
        h
    } else if h != i32::MIN {
        -h
    } else {
        0
    }
}

/// Flink's `MathUtils.bitMix` (the murmur3 finaliser), with Java's unsigned shifts.
fn bit_mix(value: i32) -> i32 {
    let mut v = value as u32;
    v ^= v >> 16;
    v = v.wrapping_mul(0x85eb_ca6b);
    v ^= v >> 13;
    v = v.wrapping_mul(0xc2b2_ae35);
    v ^= v >> 16;
    v as i32
}

/// The key group of `key` (`KeyGroupRangeAssignment.assignToKeyGroup`).
pub fn key_group_for(key: &str, max_parallelism: u16) -> u16 {
    assert!(max_parallelism > 0, "max parallelism is at least 1");
    let group = murmur_hash(java_string_hash(key)) % i32::from(max_parallelism);
    debug_assert!(group >= 0, "murmur_hash is non-negative");
    group as u16
}

/// The subtask that owns `key_group` (`computeOperatorIndexForKeyGroup`).
pub fn subtask_for_key_group(max_parallelism: u16, parallelism: u16, key_group: u16) -> u16 {
    assert!(
        parallelism > 0 && parallelism <= max_parallelism,
        "1 <= parallelism <= max"
    );
    assert!(
        key_group < max_parallelism,
        "key group inside max parallelism"
    );
    (u32::from(key_group) * u32::from(parallelism) / u32::from(max_parallelism)) as u16
}

/// The key groups subtask `index` owns (`computeKeyGroupRangeForOperatorIndex`).
pub fn key_group_range(max_parallelism: u16, parallelism: u16, index: u16) -> KeyGroupRange {
    assert!(
        parallelism > 0 && parallelism <= max_parallelism,
        "1 <= parallelism <= max"
    );
    assert!(index < parallelism, "subtask index inside parallelism");
    let (max, p, i) = (
        u32::from(max_parallelism),
        u32::from(parallelism),
        u32::from(index),
    );
    let start = (i * max).div_ceil(p);
    let end = ((i + 1) * max - 1) / p;
    let range = KeyGroupRange {
        start: start as u16,
        end: end as u16,
    };
    debug_assert_eq!(
        subtask_for_key_group(max_parallelism, parallelism, range.start),
        index
    );
    debug_assert_eq!(
        subtask_for_key_group(max_parallelism, parallelism, range.end),
        index
    );
    range
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_partition_every_group_exactly_once() {
        for max in [1u16, 7, 128, 256] {
            for p in 1..=max.min(9) {
                let mut next = 0u16;
                for index in 0..p {
                    let range = key_group_range(max, p, index);
                    assert_eq!(range.start, next, "max {max} p {p} index {index}");
                    next = range.end + 1;
                }
                assert_eq!(next, max);
            }
        }
    }

    #[test]
    fn java_hash_matches_known_values() {
        // Values of "".hashCode(), "a".hashCode() and "hello".hashCode() on the JVM.
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99_162_322);
    }
}
