//! borg 1.x compression (`compress.pyx`): every compressor's output starts with a 2-byte header
//! naming the algorithm (`00 00` none, `01 00` lz4, `02 00` lzma, `03 00` zstd, `04 00`
//! obfuscate), except legacy zlib, which is recognised by the zlib stream header itself.
//!
//! [`compress`] writes what borg writes for a [`CompressionSpec`], including the fallback to
//! "none" when an algorithm does not shrink the data and the `auto` heuristics.
//! [`decompress`] detects the algorithm like `Compressor.detect` and never allocates more than
//! a fixed bound, whatever the input claims.

mod decompress;
mod lz4_block;
mod spec;

pub use decompress::{decompress, DecompressError, DECOMPRESS_LIMIT};
pub use spec::{CompressionSpec, SpecError};

use std::io::Write;

use crate::chunker::MAX_DATA_SIZE;

/// Header of uncompressed data.
pub const HEADER_NONE: [u8; 2] = [0, 0];
/// Header of a raw LZ4 block.
pub const HEADER_LZ4: [u8; 2] = [1, 0];
/// Header of an .xz container.
pub const HEADER_LZMA: [u8; 2] = [2, 0];
/// Header of a zstd frame.
pub const HEADER_ZSTD: [u8; 2] = [3, 0];
/// Header of size-obfuscated data.
pub const HEADER_OBFUSCATE: [u8; 2] = [4, 0];

/// A compressor failed (only for resource problems inside a library).
#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    /// zstd refused to compress.
    #[error("zstd compression failed: {0}")]
    Zstd(std::io::Error),
    /// liblzma refused to compress.
    #[error("lzma compression failed: {0}")]
    Lzma(String),
    /// zlib refused to compress.
    #[error("zlib compression failed: {0}")]
    Zlib(std::io::Error),
    /// No randomness for size obfuscation.
    #[error("no random numbers for size obfuscation: {0}")]
    Random(String),
}

fn with_header(header: [u8; 2], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 2);
    out.extend_from_slice(&header);
    out.extend_from_slice(body);
    out
}

/// borg's `LZ4.decide_compress`: the LZ4 block if strictly smaller than the input, else the
/// data stored as "none".
fn lz4(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 255 + 32);
    out.extend_from_slice(&HEADER_LZ4);
    match lz4_block::compress_into(data, &mut out) {
        Some(n) if n < data.len() => out,
        _ => with_header(HEADER_NONE, data),
    }
}

thread_local! {
    /// The zstd context of this thread and the level it was made for. A fresh context per
    /// chunk allocates and clears its tables every time, which cost `create` of many small
    /// files a fifth of its CPU in page faults and unmaps; a reused context is reset per frame
    /// and gives the same bytes.
    static ZSTD_CONTEXT: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

/// A vector seen by zstd as the space after its 2-byte borg header: the frame is written in
/// place behind the header instead of into a buffer of its own and then copied.
struct AfterHeader<'a>(&'a mut Vec<u8>);

// SAFETY: the view starts 2 bytes into the vector (which holds the header, see `zstd`) and
// covers the rest of its capacity; `filled_until(n)` sets the length to header + n, the bytes
// zstd reports it wrote there.
unsafe impl zstd::zstd_safe::WriteBuf for AfterHeader<'_> {
    fn as_slice(&self) -> &[u8] {
        &self.0[2..]
    }
    fn capacity(&self) -> usize {
        self.0.capacity() - 2
    }
    fn as_mut_ptr(&mut self) -> *mut u8 {
        // SAFETY: the vector holds at least the 2 header bytes.
        unsafe { self.0.as_mut_ptr().add(2) }
    }
    unsafe fn filled_until(&mut self, n: usize) {
        // SAFETY: zstd wrote `n` bytes behind the header, within the capacity.
        unsafe { self.0.set_len(n + 2) }
    }
}

fn zstd(data: &[u8], level: i32) -> Result<Vec<u8>, CompressError> {
    // One frame with the content size in its header; borg's reader insists on that size.
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(data.len()) + 2);
    out.extend_from_slice(&HEADER_ZSTD);
    let written = ZSTD_CONTEXT
        .with(|cell| {
            let Ok(mut slot) = cell.try_borrow_mut() else {
                return zstd::bulk::Compressor::new(level)?
                    .compress_to_buffer(data, &mut AfterHeader(&mut out));
            };
            if let Some((l, c)) = slot.as_mut() {
                if *l == level {
                    return c.compress_to_buffer(data, &mut AfterHeader(&mut out));
                }
            }
            let mut c = zstd::bulk::Compressor::new(level)?;
            let written = c.compress_to_buffer(data, &mut AfterHeader(&mut out));
            *slot = Some((level, c));
            written
        })
        .map_err(CompressError::Zstd)?;
    Ok(if written < data.len() {
        out
    } else {
        with_header(HEADER_NONE, data)
    })
}

fn lzma(data: &[u8], preset: u32) -> Result<Vec<u8>, CompressError> {
    // Python's lzma.compress(preset=..., check=CHECK_NONE): an .xz stream without a checksum.
    let stream = xz2::stream::Stream::new_easy_encoder(preset, xz2::stream::Check::None)
        .map_err(|e| CompressError::Lzma(e.to_string()))?;
    let mut enc = xz2::write::XzEncoder::new_stream(HEADER_LZMA.to_vec(), stream);
    enc.write_all(data)
        .map_err(|e| CompressError::Lzma(e.to_string()))?;
    let out = enc
        .finish()
        .map_err(|e| CompressError::Lzma(e.to_string()))?;
    Ok(if out.len() - 2 < data.len() {
        out
    } else {
        with_header(HEADER_NONE, data)
    })
}

fn zlib(data: &[u8], level: u32) -> Result<Vec<u8>, CompressError> {
    // No borg header and no fallback to "none": borg's ZLIB.compress is Python's
    // zlib.compress. At level 0 the stored-block boundaries depend on how much output space
    // each deflate() call gets, so hand out space in the block sizes of CPython's output
    // buffer (Modules/_zlibmodule.c, BUFFER_BLOCK_SIZE) to produce the very same bytes.
    const KB: usize = 1024;
    const MB: usize = 1024 * KB;
    const BLOCKS: [usize; 16] = [
        32 * KB,
        64 * KB,
        256 * KB,
        MB,
        4 * MB,
        8 * MB,
        16 * MB,
        16 * MB,
        32 * MB,
        32 * MB,
        32 * MB,
        32 * MB,
        64 * MB,
        64 * MB,
        128 * MB,
        128 * MB,
    ];
    let mut z = flate2::Compress::new(flate2::Compression::new(level), true);
    let mut out: Vec<u8> = Vec::new();
    for block in BLOCKS.iter().chain(std::iter::repeat(&(256 * MB))) {
        let start = out.len();
        out.resize(start + block, 0);
        loop {
            let (in_before, out_before) = (z.total_in() as usize, z.total_out() as usize);
            let status = z
                .compress(
                    &data[in_before..],
                    &mut out[out_before..],
                    flate2::FlushCompress::Finish,
                )
                .map_err(|e| CompressError::Zlib(std::io::Error::other(e)))?;
            let written = z.total_out() as usize;
            if status == flate2::Status::StreamEnd {
                out.truncate(written);
                return Ok(out);
            }
            if written == out.len() {
                break; // output block full: grow by the next block size
            }
            if written == out_before && z.total_in() as usize == in_before {
                return Err(CompressError::Zlib(std::io::Error::other(
                    "deflate made no progress",
                )));
            }
        }
    }
    unreachable!("the block sizes repeat forever")
}

/// A uniform random number in `[0, 1)`, Python's `random.random()` stand-in.
fn random_unit() -> Result<f64, CompressError> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| CompressError::Random(e.to_string()))?;
    Ok((u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64)
}

/// Extra zero bytes borg's Padmé rule (`ObfuscateSize._padme_obfuscate`, 1.4.1+) appends to
/// `n` compressed bytes.
pub fn padme_padding(n: usize) -> usize {
    if n < 2 {
        return 0;
    }
    let e = usize::BITS - 1 - n.leading_zeros(); // floor(log2 n)
    let s = (u32::BITS - 1 - e.leading_zeros()) + 1; // floor(log2 E) + 1
    let last_bits = e - s;
    let mask = (1usize << last_bits) - 1;
    ((n + mask) & !mask) - n
}

fn obfuscate_padding(level: u32, inner_len: usize) -> Result<usize, CompressError> {
    let extra = match level {
        1..=6 => {
            let factor = 0.001 * 10f64.powi(level as i32);
            let r = random_unit()?.max(0.0001);
            (inner_len as f64 * factor / r) as usize
        }
        110..=123 => ((1u64 << (level - 100)) as f64 * random_unit()?) as usize,
        _ => padme_padding(inner_len),
    };
    // Never grow an object beyond what a repository accepts (borg's clamp).
    let room = (MAX_DATA_SIZE - 1024).saturating_sub(inner_len);
    Ok(extra.min(room))
}

/// Compresses `data` as borg does for `spec`: the result carries the algorithm header (none for
/// zlib) and may be stored uncompressed when compression would not make it smaller.
pub fn compress(spec: &CompressionSpec, data: &[u8]) -> Result<Vec<u8>, CompressError> {
    match spec {
        CompressionSpec::None => Ok(with_header(HEADER_NONE, data)),
        CompressionSpec::Lz4 => Ok(lz4(data)),
        CompressionSpec::Zstd(level) => zstd(data, *level),
        CompressionSpec::Lzma(preset) => lzma(data, *preset),
        CompressionSpec::Zlib(level) => zlib(data, *level),
        CompressionSpec::Auto(inner) => {
            // borg's Auto: LZ4 as a cheap redundancy probe. Ratios are computed as borg computes
            // them, header bytes included.
            let cheap = lz4(data);
            let cheap_len = cheap.len();
            let ratio = cheap_len as f64 / (data.len() + 2) as f64;
            if ratio >= 0.97 {
                return Ok(cheap);
            }
            // Only the probe's size decides from here on: free it before the real compressor
            // runs (peak memory), and redo it in the rare case that it is kept after all.
            drop(cheap);
            let expensive = compress(inner, data)?;
            if (expensive.len() as f64 / cheap_len as f64) < 0.99 {
                Ok(expensive)
            } else {
                drop(expensive);
                Ok(lz4(data))
            }
        }
        CompressionSpec::Obfuscate { level, inner } => {
            let compressed = compress(inner, data)?;
            let extra = obfuscate_padding(*level, compressed.len())?;
            let mut out = Vec::with_capacity(6 + compressed.len() + extra);
            out.extend_from_slice(&HEADER_OBFUSCATE);
            out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
            out.extend_from_slice(&compressed);
            out.resize(out.len() + extra, 0);
            Ok(out)
        }
    }
}

/// The body of the `decompress` fuzz target, replayed over its corpus by `cargo test`.
///
/// Any input decompresses or gives an error, never a panic and never more than
/// [`DECOMPRESS_LIMIT`] bytes; whatever decompresses survives an lz4 round trip. Then the
/// input's first byte picks a compression spec, and the rest must round-trip through it.
#[doc(hidden)]
pub fn fuzz_decompress(input: &[u8]) {
    if let Ok(plain) = decompress(input) {
        assert!(plain.len() <= DECOMPRESS_LIMIT);
        let again = compress(&CompressionSpec::Lz4, &plain).expect("lz4 never fails");
        assert_eq!(
            decompress(&again).expect("own lz4 output decompresses"),
            plain
        );
    }
    const SPECS: [&str; 10] = [
        "none",
        "lz4",
        "zstd,1",
        "zstd,3",
        "zlib,0",
        "zlib,6",
        "lzma,0",
        "auto,zstd,3",
        "obfuscate,250,lz4",
        "obfuscate,2,auto,zlib,1",
    ];
    if let Some((&pick, rest)) = input.split_first() {
        let spec: CompressionSpec = SPECS[pick as usize % SPECS.len()]
            .parse()
            .expect("valid spec");
        let packed = compress(&spec, rest).expect("compression of a small input");
        assert_eq!(decompress(&packed).expect("own output decompresses"), rest);
    }
}

#[cfg(test)]
mod tests;
