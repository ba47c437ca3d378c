//! Writing an archive: storing chunks (deduplicated against the chunk index, compressed,
//! encrypted with counter values reserved through the nonce manager), the item-metadata
//! stream buffer (borg's `ChunkBuffer` / `CacheChunkBuffer`), borg's `Statistics`, and the
//! archive metadata object with its TAM (`Archive.save`).

use std::collections::HashMap;

use crate::archive::{ArchiveMetadata, ChunkRef, Item};
use crate::cache::ChunkIndex;
use crate::chunker::{BuzhashParams, ChunkSource, SliceCuts};
use crate::compress::{compress, CompressionSpec};
use crate::crypto::nonces::NONCE_SPACE_RESERVATION;
use crate::crypto::{num_cipher_blocks, Key, NonceManager, TamContext};
use crate::msgpack;
use crate::pipeline::{seal_stream, seal_stream_parallel, HotPath, ParallelOptions, PipelineError};
use crate::repository::{ObjectId, Repository};

/// borg's `ChunkBuffer.BUFFER_SIZE`: the item stream is chunked once it exceeds this.
pub const ITEM_BUFFER_SIZE: usize = 8 * 1024 * 1024;

/// borg's `MAX_DATA_SIZE`: the largest object a repository accepts.
const MAX_OBJECT_DATA: usize = crate::chunker::MAX_DATA_SIZE;

/// Counter values kept free beyond a stream's estimated need, so a file that grows while it is
/// read still stays inside the reservation (256 MiB of extra ciphertext).
const STREAM_IV_SLACK: u64 = 1 << 24;

/// Why writing failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The repository failed.
    #[error(transparent)]
    Repository(#[from] crate::repository::RepositoryError),
    /// Nonce reservation failed.
    #[error(transparent)]
    Nonce(#[from] crate::crypto::nonces::NonceError),
    /// Compression failed.
    #[error(transparent)]
    Compress(#[from] crate::compress::CompressError),
    /// The chunk index holds another size for an id.
    #[error(transparent)]
    SizeMismatch(#[from] crate::cache::SizeMismatch),
    /// TAM packing failed.
    #[error(transparent)]
    Tam(#[from] crate::crypto::TamError),
    /// The archive metadata object is larger than a repository object may be.
    #[error("archive metadata is {0} bytes - archive too big (issue #1473)!")]
    ArchiveTooBig(usize),
    /// A stream used more counter values than were reserved for it.
    #[error("a stream used counter values beyond its nonce reservation; nothing was committed")]
    NonceOverrun,
}

/// Why storing a file's content failed: reading it (a per-file problem borg warns about) or
/// writing (fatal).
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Reading the input failed.
    #[error("{0}")]
    Read(std::io::Error),
    /// Anything on the write side.
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// borg's `Statistics`: original, stored and deduplicated sizes, and file counts, for normal
/// and for part items.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Original size.
    pub osize: u64,
    /// Stored (compressed, encrypted) size.
    pub csize: u64,
    /// Stored size of chunks new to the repository.
    pub usize: u64,
    /// Regular files.
    pub nfiles: u64,
    /// `osize` of part items.
    pub osize_parts: u64,
    /// `csize` of part items.
    pub csize_parts: u64,
    /// `usize` of part items.
    pub usize_parts: u64,
    /// Part items.
    pub nfiles_parts: u64,
}

impl Stats {
    /// `Statistics.update`.
    pub fn update(&mut self, size: u64, csize: u64, unique: bool, part: bool) {
        if part {
            self.osize_parts += size;
            self.csize_parts += csize;
            if unique {
                self.usize_parts += csize;
            }
        } else {
            self.osize += size;
            self.csize += csize;
            if unique {
                self.usize += csize;
            }
        }
    }
}

/// Stores chunks into the repository, deduplicated against (and recorded in) the chunk index.
/// Every reference taken is also recorded in `refs`, this archive's own contribution to the
/// index (what `cache::sync` keeps per archive).
pub struct ChunkStore<'a> {
    repository: &'a mut dyn Repository,
    key: &'a Key,
    nonces: &'a mut NonceManager,
    /// The repository's chunk index.
    pub index: &'a mut ChunkIndex,
    /// References this archive holds.
    pub refs: ChunkIndex,
    compression: CompressionSpec,
    parallel: ParallelOptions,
}

/// The result of storing one stream.
#[derive(Debug, Default)]
pub struct StoredStream {
    /// The chunk list, in order.
    pub chunks: Vec<ChunkRef>,
    /// Plaintext bytes read.
    pub bytes: u64,
}

impl<'a> ChunkStore<'a> {
    /// A store writing with `compression`; content streams of at least
    /// [`ChunkStore::PARALLEL_MIN`] bytes are hashed, compressed and sealed on `parallel`'s
    /// worker threads.
    pub fn new(
        repository: &'a mut dyn Repository,
        key: &'a Key,
        nonces: &'a mut NonceManager,
        index: &'a mut ChunkIndex,
        compression: CompressionSpec,
        parallel: ParallelOptions,
    ) -> Self {
        ChunkStore {
            repository,
            key,
            nonces,
            index,
            refs: ChunkIndex::new(),
            compression,
            parallel,
        }
    }

    /// Streams at least this long use the worker threads; shorter ones are not worth the
    /// thread start-up.
    pub const PARALLEL_MIN: u64 = 1 << 20;

    /// The repository.
    pub fn repository(&mut self) -> &mut dyn Repository {
        &mut *self.repository
    }

    /// The key.
    pub fn key(&self) -> &Key {
        self.key
    }

    /// The repository, key and nonce manager at once (to write a manifest mid-run).
    pub fn parts(&mut self) -> (&mut dyn Repository, &Key, &mut NonceManager) {
        (&mut *self.repository, self.key, &mut *self.nonces)
    }

    /// Stores one chunk from memory (`cache.add_chunk`), or adds a reference if it is known.
    pub fn add_chunk(&mut self, data: &[u8], stats: &mut Stats) -> Result<ChunkRef, WriteError> {
        let id = self.key.id_hash(data);
        self.add_chunk_with_id(id, data, stats)
    }

    fn add_chunk_with_id(
        &mut self,
        id: ObjectId,
        data: &[u8],
        stats: &mut Stats,
    ) -> Result<ChunkRef, WriteError> {
        if let Some(e) = self.index.incref(&id) {
            self.refs.add(&id, e.size, e.csize)?;
            stats.update(e.size as u64, e.csize as u64, false, false);
            return Ok(ChunkRef {
                id,
                size: e.size as u64,
                csize: e.csize as u64,
            });
        }
        let payload = compress(&self.compression, data)?;
        let iv = if self.key.is_encrypted() {
            self.nonces
                .allocate(&mut *self.repository, num_cipher_blocks(payload.len()))?
        } else {
            0
        };
        let envelope = self.key.encrypt(iv, &payload);
        let csize = envelope.len();
        self.repository.put(&id, envelope)?;
        self.index.add(&id, data.len() as u32, csize as u32)?;
        self.refs.add(&id, data.len() as u32, csize as u32)?;
        stats.update(data.len() as u64, csize as u64, true, false);
        Ok(ChunkRef {
            id,
            size: data.len() as u64,
            csize: csize as u64,
        })
    }

    /// Adds a reference to a chunk the index knows (`chunk_incref`); `None` if it does not.
    pub fn incref(&mut self, id: &ObjectId, stats: &mut Stats, part: bool) -> Option<ChunkRef> {
        let e = self.index.incref(id)?;
        // The same id with the same size: this cannot mismatch.
        let _ = self.refs.add(id, e.size, e.csize);
        stats.update(e.size as u64, e.csize as u64, false, part);
        Some(ChunkRef {
            id: *id,
            size: e.size as u64,
            csize: e.csize as u64,
        })
    }

    /// Drops references taken by [`ChunkStore::incref`] or [`ChunkStore::add_chunk`] (borg's
    /// `chunk_decref`); a chunk whose last reference goes is deleted from the repository.
    pub fn decref(&mut self, chunks: &[ChunkRef]) -> Result<(), WriteError> {
        for c in chunks {
            let _ = self.refs.decref(&c.id);
            if self.index.decref(&c.id) == Some(true) {
                self.repository.delete(&c.id)?;
            }
        }
        Ok(())
    }

    /// Runs a file's content through the hot path (chunk → id → dedup → compress → IV → seal)
    /// and puts the new objects. `expected_size` (0 if unknown) only sizes the nonce
    /// reservation and picks parallel or sequential processing. `on_chunk` sees the statistics
    /// after each chunk (for progress). On a read error nothing of the stream stays referenced
    /// and objects already put are deleted again.
    pub fn store_stream<C: ChunkSource + Send>(
        &mut self,
        source: C,
        expected_size: u64,
        stats: &mut Stats,
        on_chunk: &mut dyn FnMut(&Stats),
    ) -> Result<StoredStream, StreamError> {
        let encrypted = self.key.is_encrypted();
        // Reserve enough counter values for the whole stream up front: the hot path assigns
        // IVs in chunk order from a plain counter, which must stay inside the reservation.
        let need =
            num_cipher_blocks(expected_size as usize) + expected_size / 4096 + STREAM_IV_SLACK;
        let start = if encrypted {
            let next = self.nonces.next_iv();
            self.nonces
                .ensure_reservation(&mut *self.repository, next, need)
                .map_err(WriteError::from)?
        } else {
            0
        };
        let mut iv = start;
        let mut chunks = Vec::new();
        let mut fresh: HashMap<ObjectId, (u32, u32)> = HashMap::new();
        let mut put_error: Option<WriteError> = None;
        let result = {
            let index: &ChunkIndex = self.index;
            let repository = &mut *self.repository;
            let is_known = |id: &[u8; 32]| index.contains(id);
            let hot = HotPath {
                sealer: self.key,
                compression: &self.compression,
                is_known: &is_known,
            };
            let sink = |c: crate::pipeline::SealedChunk| -> Result<(), PipelineError> {
                let (size, csize, unique) = match c.object {
                    Some(o) => {
                        let csize = o.data.len();
                        if let Err(e) = repository.put(&c.id, o.data) {
                            put_error = Some(e.into());
                            return Err(PipelineError::Sink("repository put failed".into()));
                        }
                        fresh.insert(c.id, (c.size as u32, csize as u32));
                        (c.size as u64, csize as u64, true)
                    }
                    None => {
                        let csize = match fresh.get(&c.id) {
                            Some((_, cs)) => *cs,
                            None => index.get(&c.id).map_or(0, |e| e.csize),
                        };
                        (c.size as u64, csize as u64, false)
                    }
                };
                stats.update(size, csize, unique, false);
                on_chunk(stats);
                chunks.push(ChunkRef {
                    id: c.id,
                    size,
                    csize,
                });
                Ok(())
            };
            if expected_size >= Self::PARALLEL_MIN {
                seal_stream_parallel(&hot, source, &mut iv, self.parallel, sink)
            } else {
                let mut source = source;
                seal_stream(&hot, &mut source, &mut iv, sink)
            }
        };
        if encrypted && iv > start {
            // Moves the nonce manager's counter past what the stream used, inside the
            // reservation made above.
            let used = iv - self.nonces.next_iv();
            if self.nonces.allocate_reserved(used).is_none() {
                return Err(WriteError::NonceOverrun.into());
            }
        }
        let bytes = match result {
            Ok(b) => b,
            Err(e) => {
                // Objects put for this stream are unreferenced: take them back out.
                for id in fresh.keys() {
                    self.repository.delete(id).map_err(WriteError::from)?;
                }
                // Undo the statistics of the chunks already counted.
                for c in &chunks {
                    let unique = fresh.contains_key(&c.id);
                    stats.osize -= c.size;
                    stats.csize -= c.csize;
                    if unique {
                        stats.usize -= c.csize;
                        fresh.remove(&c.id);
                    }
                }
                return Err(match (put_error, e) {
                    (Some(w), _) => StreamError::Write(w),
                    (None, PipelineError::Read(r)) => StreamError::Read(r),
                    (None, PipelineError::Compress(c)) => StreamError::Write(c.into()),
                    (None, other) => StreamError::Read(std::io::Error::other(other.to_string())),
                });
            }
        };
        for c in &chunks {
            self.index
                .add(&c.id, c.size as u32, c.csize as u32)
                .map_err(WriteError::from)?;
            self.refs
                .add(&c.id, c.size as u32, c.csize as u32)
                .map_err(WriteError::from)?;
        }
        Ok(StoredStream { chunks, bytes })
    }
}

/// The item-metadata stream (borg's `CacheChunkBuffer`): msgpacked items are appended, and
/// when the buffer exceeds [`ITEM_BUFFER_SIZE`] it is cut with the items chunker seeded with
/// the key's `chunk_seed`; all but the last piece are stored.
#[derive(Debug, Default)]
pub struct ItemBuffer {
    buffer: Vec<u8>,
    /// Ids of the stored stream chunks, in order.
    pub chunks: Vec<ObjectId>,
}

impl ItemBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        ItemBuffer::default()
    }

    /// Appends an item, storing full chunks when the buffer is over its size. Metadata
    /// chunks count in `meta_stats` (borg 1.4.2+ keeps them out of the archive's stats).
    pub fn add(
        &mut self,
        item: &Item,
        store: &mut ChunkStore<'_>,
        meta_stats: &mut Stats,
    ) -> Result<(), WriteError> {
        msgpack::encode_into(&item.to_value(), &mut self.buffer);
        if self.buffer.len() > ITEM_BUFFER_SIZE {
            self.flush(store, meta_stats, false)?;
        }
        Ok(())
    }

    /// `ChunkBuffer.flush`: cuts the buffer and stores the chunks; unless `all`, the last
    /// (partial) piece stays in the buffer, as long as there was more than one.
    pub fn flush(
        &mut self,
        store: &mut ChunkStore<'_>,
        meta_stats: &mut Stats,
        all: bool,
    ) -> Result<(), WriteError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let seed = store.key().chunk_seed() as i64;
        let cuts: Vec<usize> = match SliceCuts::new(&self.buffer, seed, BuzhashParams::ITEMS) {
            Ok(c) => c.collect(),
            // The items parameters are constants borg's checks accept.
            Err(_) => vec![self.buffer.len()],
        };
        let keep_last = !all && cuts.len() > 1;
        let store_n = if keep_last {
            cuts.len() - 1
        } else {
            cuts.len()
        };
        let mut offset = 0;
        for &len in &cuts[..store_n] {
            let c = store.add_chunk(&self.buffer[offset..offset + len], meta_stats)?;
            self.chunks.push(c.id);
            offset += len;
        }
        self.buffer.drain(..offset);
        Ok(())
    }
}

/// Packs `metadata` with an archive TAM and stores it (`Archive.save` up to the manifest).
/// Returns the archive id and the packed length.
pub fn store_archive_metadata(
    store: &mut ChunkStore<'_>,
    metadata: &ArchiveMetadata,
    meta_stats: &mut Stats,
) -> Result<(ObjectId, usize), WriteError> {
    let packed = store
        .key()
        .pack_and_authenticate(&metadata.to_value(), TamContext::Archive)?;
    if packed.len() > MAX_OBJECT_DATA {
        return Err(WriteError::ArchiveTooBig(packed.len()));
    }
    Ok((store.add_chunk(&packed, meta_stats)?.id, packed.len()))
}

/// The counter values a reservation is extended by (re-exported for callers sizing
/// reservations themselves).
pub const RESERVATION: u64 = NONCE_SPACE_RESERVATION;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::ItemStreamDecoder;
    use crate::crypto::KeyType;

    use crate::crypto::nonces::tests::MemRepo as Mem;

    fn data(n: usize, seed: u64) -> Vec<u8> {
        crate::pipeline::bench_data::xorshift_stream(n, seed | 1)
    }

    #[test]
    fn streams_dedup_reserve_nonces_and_decrypt() {
        let key = Key::generate(KeyType::Repokey, &[1; 32]).unwrap();
        let mut repo = Mem::default();
        let mut nonces = NonceManager::new(0, None);
        let mut index = ChunkIndex::new();
        let spec: CompressionSpec = "lz4".parse().unwrap();
        let mut stats = Stats::default();
        let d = data(3 << 20, 5);
        let params = BuzhashParams {
            min_exp: 14,
            max_exp: 18,
            mask_bits: 16,
            window_size: 4095,
        };
        let mut store = ChunkStore::new(
            &mut repo,
            &key,
            &mut nonces,
            &mut index,
            spec,
            ParallelOptions::default(),
        );
        let mk = || {
            crate::chunker::BuzhashChunker::new(&d[..], key.chunk_seed() as i64, params).unwrap()
        };
        let a = store
            .store_stream(mk(), d.len() as u64, &mut stats, &mut |_| {})
            .unwrap();
        assert_eq!(a.bytes, d.len() as u64);
        let unique_after_first = stats.usize;
        // Second time (sequential path): everything dedups.
        let b = store
            .store_stream(mk(), 0, &mut stats, &mut |_| {})
            .unwrap();
        assert_eq!(a.chunks, b.chunks);
        assert_eq!(stats.usize, unique_after_first);
        assert_eq!(stats.osize, 2 * d.len() as u64);
        for c in &a.chunks {
            assert_eq!(store.index.get(&c.id).unwrap().refcount, 2);
        }
        drop(store);
        // Every object decrypts to its chunk, and no IV was used twice.
        let mut ivs = std::collections::HashSet::new();
        let mut off = 0usize;
        for c in &a.chunks {
            let env = &repo.objects[&c.id];
            assert!(ivs.insert(crate::crypto::envelope::envelope_iv(env).unwrap()));
            let plain = crate::archive::reader::open_object(&key, &c.id, env).unwrap();
            assert_eq!(plain, &d[off..off + c.size as usize]);
            off += c.size as usize;
        }
        assert!(nonces.next_iv() > 0);
        assert!(nonces.next_iv() <= nonces.end_of_reservation().unwrap());
        assert!(repo.nonce.unwrap() >= nonces.next_iv());
    }

    #[test]
    fn read_error_leaves_nothing_behind() {
        struct Failing(usize);
        impl std::io::Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0 == 0 {
                    return Err(std::io::Error::other("boom"));
                }
                let n = buf.len().min(self.0);
                for (i, b) in buf[..n].iter_mut().enumerate() {
                    *b = (i * 7 + self.0) as u8;
                }
                self.0 -= n;
                Ok(n)
            }
        }
        let key = Key::generate(KeyType::Repokey, &[1; 32]).unwrap();
        let mut repo = Mem::default();
        let mut nonces = NonceManager::new(0, None);
        let mut index = ChunkIndex::new();
        let mut stats = Stats::default();
        let mut store = ChunkStore::new(
            &mut repo,
            &key,
            &mut nonces,
            &mut index,
            CompressionSpec::None,
            ParallelOptions::default(),
        );
        let params = BuzhashParams {
            min_exp: 10,
            max_exp: 12,
            mask_bits: 11,
            window_size: 63,
        };
        let chunker = crate::chunker::BuzhashChunker::new(Failing(100_000), 0, params).unwrap();
        let r = store.store_stream(chunker, 0, &mut stats, &mut |_| {});
        assert!(matches!(r, Err(StreamError::Read(_))));
        assert!(store.index.is_empty());
        drop(store);
        assert!(repo.objects.is_empty());
        assert_eq!(stats, Stats::default());
    }

    #[test]
    fn item_buffer_cuts_like_borg_and_round_trips() {
        let key = Key::generate(KeyType::Repokey, &[1; 32]).unwrap();
        let mut repo = Mem::default();
        let mut nonces = NonceManager::new(0, None);
        let mut index = ChunkIndex::new();
        let mut store = ChunkStore::new(
            &mut repo,
            &key,
            &mut nonces,
            &mut index,
            CompressionSpec::Lz4,
            ParallelOptions::default(),
        );
        let mut buf = ItemBuffer::new();
        let mut meta = Stats::default();
        let mut items = Vec::new();
        for i in 0..250_000u32 {
            let item = Item {
                path: format!("dir/file-{i}-{}", i * 31).into_bytes(),
                mode: Some(0o100644),
                mtime: i as i64 * 1_000_000_007,
                size: Some(i as u64),
                chunks: Some(vec![]),
                ..Item::default()
            };
            buf.add(&item, &mut store, &mut meta).unwrap();
            items.push(item);
        }
        // Over 8 MiB went through: some chunks were stored before the final flush.
        assert!(!buf.chunks.is_empty());
        buf.flush(&mut store, &mut meta, true).unwrap();
        assert!(buf.buffer.is_empty());
        drop(store);
        let mut dec = ItemStreamDecoder::new();
        let mut back = Vec::new();
        for id in &buf.chunks {
            let plain = crate::archive::reader::open_object(&key, id, &repo.objects[id]).unwrap();
            back.extend(dec.feed(&plain).unwrap());
        }
        dec.finish().unwrap();
        assert_eq!(back, items);
    }
}
