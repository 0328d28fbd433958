//! A channel-state file: the records in flight a task's snapshot persists. Errors are fine; a
//! panic, an unbounded allocation or a hang is a finding.
#![no_main]

use faultline::fuzzing::Target;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Target::ChannelState.run(data);
});
