//! Event times of generated inputs, drawn from their own named stream so that nothing else a
//! case draws moves with them. Record `i` is due at `i * STEP_MS`; most records come up to
//! `DISORDER_MS` earlier than due (bounded out-of-orderness, so every partition's records are
//! too), and one in `LATE_ONE_IN` comes later than that bound allows, up to `LATE_MAX_MS` early:
//! a record a bounded-out-of-orderness watermark of `DISORDER_MS` would already have passed.

use rand::Rng;

use crate::job::InputRecord;
use crate::sim::{RngStreams, StreamName};

/// Milliseconds between the due times of consecutive records.
pub const STEP_MS: i64 = 100;
/// The most a punctual record comes before its due time.
pub const DISORDER_MS: i64 = 400;
/// One record in this many is late.
pub const LATE_ONE_IN: u32 = 20;
/// The most a late record comes before its due time.
pub const LATE_MAX_MS: i64 = 4 * DISORDER_MS;

/// Gives `records` event times drawn from `seed`'s event-time stream.
pub fn assign(records: &mut [InputRecord], seed: u64) {
    let mut rng = RngStreams::new(seed).stream(StreamName::EventTime);
    for (index, record) in records.iter_mut().enumerate() {
        let due = index as i64 * STEP_MS;
        let early = if rng.random_ratio(1, LATE_ONE_IN) {
            rng.random_range(DISORDER_MS + 1..=LATE_MAX_MS)
        } else {
            rng.random_range(0..=DISORDER_MS)
        };
        record.timestamp_ms = Some(due - early);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disorder_is_bounded_except_for_the_late_records() {
        let mut records: Vec<InputRecord> = (0..2000)
            .map(|i| InputRecord::transaction(&format!("r{i}"), "k", 1))
            .collect();
        assign(&mut records, 7);
        let mut late = 0;
        let mut max_seen = i64::MIN / 2;
        for record in &records {
            let at = record.timestamp_ms.expect("every record has a time");
            // Late: behind the latest time seen by more than the bound allows (a punctual
            // record never is: it is due a step after the one before it).
            if at < max_seen - DISORDER_MS {
                late += 1;
            }
            max_seen = max_seen.max(at);
        }
        assert!((20..=200).contains(&late), "{late} late of 2000");
        let again = {
            let mut copy = records.clone();
            assign(&mut copy, 7);
            copy
        };
        assert_eq!(again, records, "the same seed, the same times");
    }
}
