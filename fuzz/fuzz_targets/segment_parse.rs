//! Fuzzes segment parsing and salvage of the local repository.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rborg::repository::local::segment::fuzz_segment(data);
});
