//! Fuzzes the decoding of `borg serve` responses: any byte stream from a server decodes to
//! responses or clean errors, and every remote exception maps to a repository error.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rborg::rpc::fuzz_response(data);
});
