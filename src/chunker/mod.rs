//! Cutting file contents into chunks exactly where borg cuts them.
//!
//! Deduplication between borg and rborg only works if both produce the same chunk boundaries,
//! so both chunkers here reproduce borg's `chunker.pyx` / `_chunker.c` byte for byte:
//! [`BuzhashChunker`] (content-defined, seeded by the key's `chunk_seed`) and [`FixedChunker`]
//! (fixed blocks after an optional header, optionally sparse-aware). Both stream over any
//! [`std::io::Read`] with a bounded buffer and report each chunk's [`Allocation`] as borg does.

mod buzhash;
mod fixed;
mod params;
mod table;

pub use buzhash::{buzhash, buzhash_update, BuzhashChunker, SliceCuts};
pub use fixed::{sparse_map, FileRange, FixedChunker};
pub use params::{BuzhashParams, ChunkerParams, ChunkerParamsError, MAX_DATA_SIZE};

use std::io;

/// Where a chunk's bytes came from, borg's `CH_DATA` / `CH_ALLOC` / `CH_HOLE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Allocation {
    /// Bytes read from the file that are not all zero (`CH_DATA`).
    Data,
    /// Bytes read from the file that turned out to be all zero (`CH_ALLOC`).
    Alloc,
    /// A sparse-file hole that was skipped without reading (`CH_HOLE`); all zero.
    Hole,
}

/// A chunk borrowed from a chunker's buffer, valid until the next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRef<'a> {
    /// Data, all-zero data, or hole.
    pub allocation: Allocation,
    /// Length of the chunk in bytes.
    pub size: usize,
    /// The bytes for [`Allocation::Data`]; `None` for zero chunks, as borg yields `data=None`.
    pub data: Option<&'a [u8]>,
}

/// An owned chunk, as yielded by the chunkers' `Iterator` implementations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Data, all-zero data, or hole.
    pub allocation: Allocation,
    /// Length of the chunk in bytes.
    pub size: usize,
    /// The bytes for [`Allocation::Data`]; `None` for zero chunks.
    pub data: Option<Vec<u8>>,
}

impl Chunk {
    /// The chunk's plaintext, materialising zeros for `Alloc`/`Hole` chunks.
    pub fn into_bytes(self) -> Vec<u8> {
        match self.data {
            Some(d) => d,
            None => vec![0; self.size],
        }
    }
}

impl ChunkRef<'_> {
    /// Copies the borrowed chunk into an owned one.
    pub fn to_owned_chunk(&self) -> Chunk {
        Chunk {
            allocation: self.allocation,
            size: self.size,
            data: self.data.map(<[u8]>::to_vec),
        }
    }
}

/// Something that yields chunks one at a time from its own buffer.
pub trait ChunkSource {
    /// The next chunk, or `None` at the end of the input. Read errors are passed through.
    fn read_chunk(&mut self) -> io::Result<Option<ChunkRef<'_>>>;
}

/// Either chunker, chosen from [`ChunkerParams`] like borg's `get_chunker`.
pub enum AnyChunker<R: io::Read> {
    /// Content-defined.
    Buzhash(Box<BuzhashChunker<R>>),
    /// Fixed blocks.
    Fixed(FixedChunker<R>),
}

impl<R: io::Read> AnyChunker<R> {
    /// A chunker for `params`; `chunk_seed` is the key's signed seed (used by buzhash only).
    /// Fixed chunking through this constructor never uses sparse seeking; use
    /// [`FixedChunker::sparse`] for that.
    pub fn new(
        reader: R,
        params: ChunkerParams,
        chunk_seed: i64,
    ) -> Result<Self, ChunkerParamsError> {
        Ok(match params {
            ChunkerParams::Buzhash(p) => {
                AnyChunker::Buzhash(Box::new(BuzhashChunker::new(reader, chunk_seed, p)?))
            }
            ChunkerParams::Fixed {
                block_size,
                header_size,
            } => AnyChunker::Fixed(FixedChunker::new(reader, block_size, header_size)?),
        })
    }
}

impl<R: io::Read> ChunkSource for AnyChunker<R> {
    fn read_chunk(&mut self) -> io::Result<Option<ChunkRef<'_>>> {
        match self {
            AnyChunker::Buzhash(c) => c.read_chunk(),
            AnyChunker::Fixed(c) => c.read_chunk(),
        }
    }
}

impl<R: io::Read> Iterator for AnyChunker<R> {
    type Item = io::Result<Chunk>;
    fn next(&mut self) -> Option<Self::Item> {
        self.read_chunk()
            .map(|c| c.map(|c| c.to_owned_chunk()))
            .transpose()
    }
}

/// True if every byte is zero (borg's `zeros.startswith(data)`), fast on long inputs.
pub(crate) fn is_all_zero(data: &[u8]) -> bool {
    // OR-folding fixed blocks vectorises; checking block by block still stops early on data.
    let mut blocks = data.chunks_exact(4096);
    for b in &mut blocks {
        if b.iter().fold(0u8, |a, &x| a | x) != 0 {
            return false;
        }
    }
    blocks.remainder().iter().all(|&x| x == 0)
}

/// The body of the `chunker` fuzz target, replayed over its corpus by `cargo test`: the
/// buzhash chunker, fed through odd-sized reads, must cut exactly where a slow, obviously
/// correct reference cuts, and the fixed chunker must cut header and blocks by definition.
/// The first bytes of the input choose the seed and parameters.
#[doc(hidden)]
pub fn fuzz_against_reference(input: &[u8]) {
    if input.len() < 6 {
        return;
    }
    let seed = i32::from_le_bytes([input[0], input[1], input[2], input[3]]) as i64;
    let min_exp = 6 + u32::from(input[4] % 3); // 6..=8
    let max_exp = min_exp + 1 + u32::from(input[5] % 3);
    let mask_bits = min_exp + u32::from(input[5] / 3) % (max_exp - min_exp + 1);
    let windows = [1usize, 3, 7, 31, 63];
    let window_size = windows[usize::from(input[4] / 3) % windows.len()];
    let params = BuzhashParams {
        min_exp,
        max_exp,
        mask_bits,
        window_size,
    };
    if params.check().is_err() {
        return;
    }
    let data = &input[6..];
    let expected = buzhash::reference_cuts(data, seed, params);
    let reader = buzhash::OddReader::new(data, u64::from(input[0]));
    let mut chunker = BuzhashChunker::new(reader, seed, params).expect("checked params");
    let mut got = Vec::new();
    let mut offset = 0;
    while let Some(c) = chunker.read_chunk().expect("in-memory reads cannot fail") {
        let expect_zero = is_all_zero(&data[offset..offset + c.size]);
        assert_eq!(c.allocation == Allocation::Alloc, expect_zero);
        if let Some(d) = c.data {
            assert_eq!(d, &data[offset..offset + c.size]);
        }
        offset += c.size;
        got.push(c.size);
    }
    assert_eq!(got, expected);

    // The fixed chunker against its definition (borg's ChunkerFixed): the header range, then
    // the rest of the file, each cut into pieces of at most one block, until the data ends.
    let block = 1 + usize::from(input[1]) * 3;
    let header = usize::from(input[2]) * 5;
    let mut expected = Vec::new();
    let mut rest = data.len();
    for range in [header, usize::MAX] {
        let mut left = range;
        while left > 0 && rest > 0 {
            let piece = block.min(left).min(rest);
            expected.push(piece);
            left -= piece;
            rest -= piece;
        }
    }
    let reader = buzhash::OddReader::new(data, u64::from(input[3]));
    let chunks: Vec<Chunk> = FixedChunker::new(reader, block, header)
        .expect("valid sizes")
        .map(|c| c.expect("in-memory reads cannot fail"))
        .collect();
    assert_eq!(chunks.iter().map(|c| c.size).collect::<Vec<_>>(), expected);
    let mut offset = 0;
    for c in &chunks {
        let want = &data[offset..offset + c.size];
        match &c.data {
            Some(d) => assert_eq!(d, want),
            None => assert!(c.allocation == Allocation::Alloc && is_all_zero(want)),
        }
        offset += c.size;
    }
}
