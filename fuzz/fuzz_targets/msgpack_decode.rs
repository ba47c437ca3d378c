//! Fuzzes borg's msgpack decoder: any input decodes or errors, and what decodes re-encodes to
//! something that decodes to the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rborg::msgpack::fuzz_roundtrip(data);
});
