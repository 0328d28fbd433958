//! A packed savepoint directory, unpacked and loaded as `inspect` and restore load one. Errors are
//! fine; a panic, an unbounded allocation or a hang is a finding.
#![no_main]

use faultline::fuzzing::Target;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Target::Savepoint.run(data);
});
