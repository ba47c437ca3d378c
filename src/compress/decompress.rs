//! Decompression with borg's auto-detection (`Compressor.detect`), bounded in memory.

use std::io::Read;

use super::{HEADER_LZ4, HEADER_LZMA, HEADER_NONE, HEADER_OBFUSCATE, HEADER_ZSTD};

/// The most bytes any decompressor here will produce. borg's LZ4 reader gives up once its
/// output buffer would exceed 128 MiB (the next step of its ×1.5 growth is ~150 MiB); the other
/// algorithms get the same ceiling, far above any object a repository holds.
pub const DECOMPRESS_LIMIT: usize = 160 << 20;

/// How deep `obfuscate` wrappers may nest (borg's spec syntax allows two levels).
const MAX_NESTING: usize = 4;

/// Why compressed data could not be decompressed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecompressError {
    /// Fewer than two bytes, or a header no compressor claims.
    #[error("no decompressor for this data found: header {0}")]
    UnknownHeader(String),
    /// The LZ4 block is corrupt or would exceed the output limit.
    #[error("lz4 decompress failed")]
    Lz4,
    /// A zstd frame is corrupt, lacks its content size, or the size does not match.
    #[error("zstd decompress failed: {0}")]
    Zstd(String),
    /// The zlib stream is corrupt or truncated.
    #[error("zlib decompress failed: {0}")]
    Zlib(String),
    /// The xz/lzma stream is corrupt or truncated.
    #[error("lzma decompress failed: {0}")]
    Lzma(String),
    /// The obfuscation wrapper is too short or nested too deep.
    #[error("invalid size-obfuscation wrapper: {0}")]
    Obfuscate(&'static str),
    /// The output would exceed [`DECOMPRESS_LIMIT`].
    #[error("decompressed data would exceed {DECOMPRESS_LIMIT} bytes")]
    TooLarge,
}

/// borg's `ZLIB.detect`: a deflate method nibble and a valid header check value.
fn is_zlib(h: [u8; 2]) -> bool {
    h[0] & 0x0f == 8 && (u32::from(h[0]) * 256 + u32::from(h[1])) % 31 == 0
}

/// Decompresses anything borg 1.x writes, detecting the algorithm from the first two bytes in
/// borg's order (lz4, zstd, none, zlib, lzma, obfuscate).
pub fn decompress(data: &[u8]) -> Result<Vec<u8>, DecompressError> {
    decompress_nested(data, 0)
}

fn decompress_nested(data: &[u8], depth: usize) -> Result<Vec<u8>, DecompressError> {
    if data.len() < 2 {
        return Err(DecompressError::UnknownHeader(hex::encode(data)));
    }
    let header = [data[0], data[1]];
    let body = &data[2..];
    if header == HEADER_LZ4 {
        lz4(body)
    } else if header == HEADER_ZSTD {
        zstd(body)
    } else if header == HEADER_NONE {
        if body.len() > DECOMPRESS_LIMIT {
            return Err(DecompressError::TooLarge);
        }
        Ok(body.to_vec())
    } else if is_zlib(header) {
        zlib(data)
    } else if header == HEADER_LZMA {
        lzma(body)
    } else if header == HEADER_OBFUSCATE {
        if depth >= MAX_NESTING {
            return Err(DecompressError::Obfuscate("nested too deep"));
        }
        if body.len() < 4 {
            return Err(DecompressError::Obfuscate("missing length"));
        }
        let n = u32::from_be_bytes([body[0], body[1], body[2], body[3]]) as usize;
        // borg slices without checking, so a length past the end just means "the rest".
        let inner = &body[4..(4 + n).min(body.len())];
        decompress_nested(inner, depth + 1)
    } else {
        Err(DecompressError::UnknownHeader(hex::encode(header)))
    }
}

/// borg's `LZ4.decompress`: the block carries no size, so try a buffer of
/// `max(1.1 × 8 MiB, 3 × input)` and grow it by half until the block fits or the buffer has
/// passed 128 MiB.
fn lz4(body: &[u8]) -> Result<Vec<u8>, DecompressError> {
    let mut osize = (9_227_468usize).max(body.len().saturating_mul(3));
    loop {
        if osize > DECOMPRESS_LIMIT {
            return Err(DecompressError::TooLarge);
        }
        let mut out = vec![0u8; osize];
        match lz4_flex::block::decompress_into(body, &mut out) {
            Ok(n) => {
                out.truncate(n);
                out.shrink_to_fit();
                return Ok(out);
            }
            Err(lz4_flex::block::DecompressError::OutputTooSmall { .. }) => {
                if osize > 1 << 27 {
                    return Err(DecompressError::Lz4);
                }
                osize = osize * 3 / 2;
            }
            Err(_) => return Err(DecompressError::Lz4),
        }
    }
}

/// borg's `ZSTD.decompress`: the frame must state its content size, and the output must have
/// exactly that size.
fn zstd(body: &[u8]) -> Result<Vec<u8>, DecompressError> {
    let size = match zstd::zstd_safe::get_frame_content_size(body) {
        Ok(Some(n)) => n,
        Ok(None) => return Err(DecompressError::Zstd("original size unknown".into())),
        Err(_) => {
            return Err(DecompressError::Zstd(
                "data was not compressed by zstd".into(),
            ))
        }
    };
    if size > DECOMPRESS_LIMIT as u64 {
        return Err(DecompressError::TooLarge);
    }
    let size = size as usize;
    let out =
        zstd::bulk::decompress(body, size).map_err(|e| DecompressError::Zstd(e.to_string()))?;
    if out.len() != size {
        return Err(DecompressError::Zstd("size mismatch".into()));
    }
    Ok(out)
}

/// Python's `zlib.decompress`: one complete zlib stream; bytes after its end are ignored.
fn zlib(data: &[u8]) -> Result<Vec<u8>, DecompressError> {
    let mut d = flate2::Decompress::new(true);
    let mut out = Vec::with_capacity((data.len() * 4).clamp(64, 1 << 24));
    loop {
        let (before_in, before_out) = (d.total_in(), d.total_out());
        let consumed = before_in as usize;
        let status = d
            .decompress_vec(&data[consumed..], &mut out, flate2::FlushDecompress::Finish)
            .map_err(|e| DecompressError::Zlib(e.to_string()))?;
        if status == flate2::Status::StreamEnd {
            return Ok(out);
        }
        if out.len() == out.capacity() {
            if out.len() >= DECOMPRESS_LIMIT {
                return Err(DecompressError::TooLarge);
            }
            let grow = out.len().clamp(64, DECOMPRESS_LIMIT - out.len());
            out.reserve_exact(grow);
        } else if d.total_in() == before_in && d.total_out() == before_out {
            // Output room left, yet no progress: the input ended before the stream did.
            return Err(DecompressError::Zlib(
                "incomplete or truncated stream".into(),
            ));
        }
    }
}

/// Python's `lzma.decompress` (auto format: .xz or legacy .lzma, concatenated streams).
fn lzma(body: &[u8]) -> Result<Vec<u8>, DecompressError> {
    let stream = xz2::stream::Stream::new_auto_decoder(256 << 20, xz2::stream::CONCATENATED)
        .map_err(|e| DecompressError::Lzma(e.to_string()))?;
    let mut dec = xz2::bufread::XzDecoder::new_stream(body, stream);
    let mut out = Vec::new();
    (&mut dec)
        .take(DECOMPRESS_LIMIT as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| DecompressError::Lzma(e.to_string()))?;
    if out.len() > DECOMPRESS_LIMIT {
        return Err(DecompressError::TooLarge);
    }
    Ok(out)
}
