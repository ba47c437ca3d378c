//! Fuzzes the buzhash chunker against a slow, obviously correct reference implementation, with
//! seed and parameters taken from the input and reads of varying sizes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rborg::chunker::fuzz_against_reference(data);
});
