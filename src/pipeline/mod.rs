//! The backup hot path: chunk → id hash → dedup → compress → assign IV → seal, in chunk order.
//!
//! The stages are the same in both forms. [`seal_stream`] runs them one chunk at a time on the
//! calling thread. [`seal_stream_parallel`] reads chunks on a producer thread into batches of
//! bounded size, hashes and compresses each batch on a thread pool, assigns IVs sequentially
//! in chunk order (an IV depends on the compressed lengths of all earlier chunks), seals the
//! batch on the pool and hands the results to the sink in chunk order. Memory stays bounded
//! by a few batches.
//!
//! Keys are reached through the small [`ChunkSealer`] trait so this module does not depend on
//! a particular key implementation; [`ReferenceSealer`] implements it for borg's AES-CTR modes.

#[doc(hidden)]
pub mod bench_data;
pub mod files;
mod key;
mod parallel;
mod reference;

pub use parallel::{seal_stream_parallel, ParallelOptions};
pub use reference::{aes256_ctr, blake2b_256, hmac_sha256, HashFamily, ReferenceSealer};

use std::collections::HashSet;
use std::io;

use crate::chunker::{Allocation, ChunkSource};
use crate::compress::{compress, CompressError, CompressionSpec};

/// What the hot path needs from a key.
pub trait ChunkSealer: Sync {
    /// The chunk id of a plaintext chunk (borg's `key.id_hash`).
    fn id_hash(&self, plaintext: &[u8]) -> [u8; 32];
    /// The repository object for a compressed payload encrypted with counter value `iv`
    /// (borg's `key.encrypt` with a given IV).
    fn seal(&self, payload: &[u8], iv: u64) -> Vec<u8>;
    /// How many counter values sealing `payload_len` bytes consumes: `ceil(len / 16)` for the
    /// AES-CTR modes, 0 for modes without encryption.
    fn iv_blocks(&self, payload_len: usize) -> u64;
}

/// One chunk after the hot path, in input order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedChunk {
    /// The chunk id (over the plaintext).
    pub id: [u8; 32],
    /// Plaintext length.
    pub size: usize,
    /// How the chunker found the bytes.
    pub allocation: Allocation,
    /// The sealed object to store, or `None` when the id was already known (from the index
    /// or earlier in this stream) and nothing needs storing.
    pub object: Option<SealedObject>,
}

/// A repository object ready to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedObject {
    /// The counter value the object was encrypted with.
    pub iv: u64,
    /// Length of the compressed payload (borg's `csize` minus the envelope overhead).
    pub compressed_size: usize,
    /// The whole envelope.
    pub data: Vec<u8>,
}

/// Why the hot path stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Reading the input failed.
    #[error("reading input: {0}")]
    Read(#[from] io::Error),
    /// A compressor failed.
    #[error(transparent)]
    Compress(#[from] CompressError),
    /// The sink refused a chunk.
    #[error("storing chunk: {0}")]
    Sink(String),
    /// The worker pool could not be started.
    #[error("starting worker threads: {0}")]
    Pool(String),
}

/// Settings shared by both forms of the hot path.
pub struct HotPath<'a, S: ChunkSealer> {
    /// The key.
    pub sealer: &'a S,
    /// The `--compression` setting.
    pub compression: &'a CompressionSpec,
    /// Ids already in the repository; chunks with these ids are not sealed.
    pub is_known: &'a (dyn Fn(&[u8; 32]) -> bool + Sync),
}

/// Ids of all-zero chunks by size, like borg's `cached_hash`: zero chunks (sparse holes,
/// zeroed regions) repeat with few distinct sizes, so each size is hashed once per stream.
#[derive(Default)]
struct ZeroIds(std::sync::Mutex<std::collections::HashMap<usize, [u8; 32]>>);

impl ZeroIds {
    fn id<S: ChunkSealer>(&self, sealer: &S, size: usize) -> [u8; 32] {
        let cached = self.0.lock().ok().and_then(|m| m.get(&size).copied());
        if let Some(id) = cached {
            return id;
        }
        let id = sealer.id_hash(&vec![0; size]);
        if let Ok(mut m) = self.0.lock() {
            // Bounded: a stream has few distinct zero-chunk sizes, but never keep many.
            if m.len() >= 64 {
                m.clear();
            }
            m.insert(size, id);
        }
        id
    }
}

/// The whole path for a stream, one chunk at a time on the calling thread. `next_iv` is the
/// first counter value to use and is advanced past every sealed object. Returns the number of
/// plaintext bytes processed.
pub fn seal_stream<S, C, F>(
    hot: &HotPath<'_, S>,
    source: &mut C,
    next_iv: &mut u64,
    mut sink: F,
) -> Result<u64, PipelineError>
where
    S: ChunkSealer,
    C: ChunkSource + ?Sized,
    F: FnMut(SealedChunk) -> Result<(), PipelineError>,
{
    let mut seen = HashSet::new();
    let mut total = 0u64;
    let zero_ids = ZeroIds::default();
    let mut zeros: Vec<u8> = Vec::new();
    while let Some(c) = source.read_chunk()? {
        total += c.size as u64;
        let id = match c.data {
            Some(d) => hot.sealer.id_hash(d),
            None => zero_ids.id(hot.sealer, c.size),
        };
        let object = if (hot.is_known)(&id) || !seen.insert(id) {
            None
        } else {
            let data: &[u8] = match c.data {
                Some(d) => d,
                None => {
                    // borg stores zero chunks as normal chunks of zeros.
                    zeros.resize(c.size, 0);
                    &zeros[..c.size]
                }
            };
            let payload = compress(hot.compression, data)?;
            let iv = *next_iv;
            *next_iv += hot.sealer.iv_blocks(payload.len());
            Some(SealedObject {
                iv,
                compressed_size: payload.len(),
                data: hot.sealer.seal(&payload, iv),
            })
        };
        sink(SealedChunk {
            id,
            size: c.size,
            allocation: c.allocation,
            object,
        })?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunker::{BuzhashChunker, BuzhashParams};
    use crate::compress::decompress;

    fn data(n: usize) -> Vec<u8> {
        let mut x: u64 = 42;
        let mut v: Vec<u8> = (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Mostly text-like, with a repeated stretch and a zero stretch.
                if (i / 50_000) % 3 == 0 {
                    b"abcdefgh"[(x >> 61) as usize]
                } else {
                    (x >> 56) as u8
                }
            })
            .collect();
        let (a, b) = v.split_at_mut(n / 2);
        b[..100_000].copy_from_slice(&a[..100_000]);
        v[n - 200_000..].fill(0);
        v
    }

    fn sealer() -> ReferenceSealer {
        ReferenceSealer::repokey([1; 32], [2; 32], [3; 32])
    }

    fn params() -> BuzhashParams {
        BuzhashParams {
            min_exp: 12,
            max_exp: 16,
            mask_bits: 14,
            window_size: 4095,
        }
    }

    #[test]
    fn parallel_equals_sequential_and_unseals() {
        let d = data(3_000_000);
        let s = sealer();
        let spec: CompressionSpec = "auto,zstd,3".parse().unwrap();
        let known_id = s.id_hash(&d[..10]);
        let is_known = |id: &[u8; 32]| *id == known_id;
        let hot = HotPath {
            sealer: &s,
            compression: &spec,
            is_known: &is_known,
        };
        let mut seq = Vec::new();
        let mut iv_a = 1000;
        let mut chunker = BuzhashChunker::new(&d[..], 77, params()).unwrap();
        let n = seal_stream(&hot, &mut chunker, &mut iv_a, |c| {
            seq.push(c);
            Ok(())
        })
        .unwrap();
        assert_eq!(n, d.len() as u64);
        let mut par = Vec::new();
        let mut iv_b = 1000;
        // A small window, so the reader often waits for the sink.
        let opts = ParallelOptions {
            threads: 3,
            window: 2,
        };
        let chunker = BuzhashChunker::new(&d[..], 77, params()).unwrap();
        seal_stream_parallel(&hot, chunker, &mut iv_b, opts, |c| {
            par.push(c);
            Ok(())
        })
        .unwrap();
        assert_eq!(seq, par);
        assert_eq!(iv_a, iv_b);
        // IVs increase in chunk order by each payload's block count; some chunks dedup.
        let mut expect_iv = 1000;
        let mut offset = 0;
        let mut deduped = 0;
        for c in &seq {
            let plain = &d[offset..offset + c.size];
            assert_eq!(c.id, s.id_hash(plain));
            match &c.object {
                Some(o) => {
                    assert_eq!(o.iv, expect_iv);
                    expect_iv += o.compressed_size.div_ceil(16) as u64;
                    let mut body = o.data[41..].to_vec();
                    aes256_ctr(&[1; 32], o.iv, &mut body);
                    assert_eq!(hmac_sha256(&[2; 32], &o.data[33..]), o.data[1..33]);
                    assert_eq!(decompress(&body).unwrap(), plain);
                }
                None => deduped += 1,
            }
            offset += c.size;
        }
        assert_eq!(expect_iv, iv_a);
        assert!(
            deduped > 0,
            "the repeated stretch and the zeros should dedup"
        );
        assert!(seq.iter().any(|c| c.allocation == Allocation::Alloc));
    }

    #[test]
    fn sink_errors_stop_the_parallel_form() {
        let d = data(2_000_000);
        let s = sealer();
        let spec = CompressionSpec::Lz4;
        let hot = HotPath {
            sealer: &s,
            compression: &spec,
            is_known: &|_: &[u8; 32]| false,
        };
        let mut seen = 0;
        let c = BuzhashChunker::new(&d[..], 0, params()).unwrap();
        let mut iv = 0;
        let e = seal_stream_parallel(&hot, c, &mut iv, ParallelOptions::default(), |_| {
            seen += 1;
            if seen == 3 {
                Err(PipelineError::Sink("repository full".into()))
            } else {
                Ok(())
            }
        });
        assert!(matches!(e, Err(PipelineError::Sink(_))));
        assert_eq!(seen, 3);
    }

    #[test]
    fn read_errors_surface() {
        struct Failing;
        impl io::Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let s = sealer();
        let spec = CompressionSpec::Lz4;
        let hot = HotPath {
            sealer: &s,
            compression: &spec,
            is_known: &|_: &[u8; 32]| false,
        };
        let c = BuzhashChunker::new(Failing, 0, params()).unwrap();
        let mut iv = 0;
        let e = seal_stream_parallel(&hot, c, &mut iv, ParallelOptions::default(), |_| Ok(()));
        assert!(matches!(e, Err(PipelineError::Read(_))));
    }
}
