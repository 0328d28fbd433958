//! A canonical full snapshot file. Errors are fine; a panic, an unbounded allocation or a hang is a
//! finding.
#![no_main]

use faultline::fuzzing::Target;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Target::Canonical.run(data);
});
