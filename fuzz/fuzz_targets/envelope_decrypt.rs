//! Fuzzes envelope opening for every key type: arbitrary bytes give a payload or an error,
//! never a panic, and an envelope that opens re-seals to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rborg::crypto::envelope::fuzz_decrypt(data);
});
