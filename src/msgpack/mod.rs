//! Borg-flavoured msgpack.
//!
//! Borg 1.x packs with msgpack-python's `use_bin_type=False` and unpacks with `raw=True`
//! (`borg/helpers/msgpack.py`). That gives a dialect with three rules that generic msgpack
//! crates do not follow, and which other borg code depends on:
//!
//! * every string, text or bytes, is written as the old *raw* family: fixstr for lengths up to
//!   31, then `0xda` (raw16), then `0xdb` (raw32); never `0xd9` (str8) and never bin;
//! * integers take their smallest encoding;
//! * maps written by borg come from `StableDict`, so their keys are sorted bytewise.
//!
//! The decoder accepts everything borg reads: raw/str of all widths, bin (read as bytes), every
//! integer width, floats, nil and booleans. Extension types are refused. The decoder never
//! allocates more than the input could hold, so hostile lengths cannot exhaust memory.

mod decode;
mod encode;
mod value;

pub use decode::{decode, decode_prefix, DecodeError, Decoder};
pub use encode::{encode, encode_into, encode_unsorted_into};
pub use value::Value;

#[cfg(test)]
mod tests;

/// The body of the `msgpack_decode` fuzz target, also replayed over its corpus by `cargo test`:
/// decoding never panics, and a decoded value survives an encode/decode round trip.
#[doc(hidden)]
pub fn fuzz_roundtrip(data: &[u8]) {
    let mut d = Decoder::new(data);
    while let Ok(v) = d.next_value() {
        let again = decode(&encode(&v)).expect("re-encoded value must decode");
        // NaN is the one value not equal to itself; compare the encodings instead.
        assert_eq!(encode(&again), encode(&v));
    }
}
