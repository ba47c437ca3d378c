//! Fuzzes `rborg serve`'s request handling: any input gives replies or a protocol error.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rborg::serve::fuzz_serve(data);
});
