//! Fuzzes borg-compatible decompression (every algorithm, including the lz4 growth loop and
//! nested obfuscation) and round trips through each compressor.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rborg::compress::fuzz_decompress(data);
});
