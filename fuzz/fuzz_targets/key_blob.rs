//! Fuzzes the key blob reader: any text decodes or errors without panicking, and a blob that
//! opens re-encrypts to one that opens to the same secrets.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rborg::crypto::keyblob::fuzz_key_blob(data);
});
