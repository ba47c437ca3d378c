//! LZ4 block compression through the system liblz4, the library both borg 1.2 and 1.4 link.
//! Using `LZ4_compress_default` itself makes rborg's LZ4 output byte-identical to borg's, and
//! so keeps `auto`'s choices (which compare LZ4 sizes) identical as well.

use std::os::raw::{c_char, c_int};

#[link(name = "lz4")]
extern "C" {
    fn LZ4_compressBound(input_size: c_int) -> c_int;
    fn LZ4_compress_default(
        src: *const c_char,
        dst: *mut c_char,
        src_size: c_int,
        dst_capacity: c_int,
    ) -> c_int;
}

/// liblz4's `LZ4_MAX_INPUT_SIZE`.
const MAX_INPUT: usize = 0x7E00_0000;

/// Appends the raw LZ4 block of `data` to `out` and returns its length, or `None` if liblz4
/// cannot compress it (input too large).
pub(crate) fn compress_into(data: &[u8], out: &mut Vec<u8>) -> Option<usize> {
    if data.len() > MAX_INPUT {
        return None;
    }
    let src_len = data.len() as c_int;
    // SAFETY: pure function of an in-range integer.
    let bound = unsafe { LZ4_compressBound(src_len) };
    if bound <= 0 {
        return None;
    }
    let start = out.len();
    out.reserve(bound as usize);
    // SAFETY: `data` is valid for `src_len` bytes, and `out` has `bound` bytes of spare capacity
    // after `start`; liblz4 writes at most `bound` bytes there and returns how many it wrote.
    let n = unsafe {
        LZ4_compress_default(
            data.as_ptr().cast(),
            out.as_mut_ptr().add(start).cast(),
            src_len,
            bound,
        )
    };
    if n <= 0 {
        return None;
    }
    // SAFETY: liblz4 initialised exactly `n <= bound` bytes after `start`.
    unsafe { out.set_len(start + n as usize) };
    Some(n as usize)
}
