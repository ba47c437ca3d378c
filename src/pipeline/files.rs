//! The cross-file worker pool: many small files in flight at once.
//!
//! One pool serves a whole archive. The caller (the walk, on its own thread) hands each small
//! file to the pool as a [`ReadJob`] and walks on; a worker reads the whole file, cuts it with
//! the archive's chunker and hashes every chunk. Everything that must happen in chunk order —
//! the dedup decision, IV assignment, `put` — stays with the caller, which asks the pool to
//! compress ([`FilePool::compress`]) the chunks it does not know and to seal
//! ([`FilePool::seal`]) the ones it stores, and collects the answers with
//! [`FilePool::try_next`] / [`FilePool::next`]. Workers take compress and seal jobs before new
//! reads: those finish files and free memory. The caller bounds what is in flight.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::sync::Arc;

use crossbeam_channel::{select, unbounded, Receiver, Sender};

use super::ChunkSealer;
use crate::chunker::{AnyChunker, ChunkSource, ChunkerParams, SliceCuts};
use crate::compress::{compress, CompressError, CompressionSpec};

/// A small file to read, cut and hash.
#[derive(Debug)]
pub struct ReadJob {
    /// The caller's number for the file.
    pub seq: u64,
    /// The open file.
    pub file: File,
    /// Its size when stat'ed (sizes the buffer only).
    pub size: u64,
    /// The ctime the file had before it was opened; a different one after the read means the
    /// file changed while it was read (borg compares a second `fstat`). `None`: no check.
    pub ctime_ns: Option<i64>,
    /// Compress every chunk right away as well ([`ReadFile::payloads`]). For a file the files
    /// cache does not know, whose chunks are most likely new: it saves a round trip through
    /// the pool per chunk. A chunk that turns out to be known had its compression wasted.
    pub compress: bool,
}

/// A file read and cut: its bytes and, per chunk, the range and id.
#[derive(Debug)]
pub struct ReadFile {
    /// The whole content.
    pub data: Arc<Vec<u8>>,
    /// `(offset, length, id)` of each chunk, in order.
    pub chunks: Vec<(usize, usize, [u8; 32])>,
    /// The ctime after the read differs from [`ReadJob::ctime_ns`].
    pub changed: bool,
    /// With [`ReadJob::compress`]: each chunk's compressed payload, in chunk order.
    pub payloads: Option<Vec<Result<Vec<u8>, CompressError>>>,
}

/// A result from the pool.
#[derive(Debug)]
pub enum Done {
    /// A [`ReadJob`] finished; an error is a per-file problem.
    Read {
        /// The job's number.
        seq: u64,
        /// The file, or why it could not be read.
        result: io::Result<ReadFile>,
    },
    /// A chunk compressed (the payload to seal).
    Compressed {
        /// The chunk id.
        id: [u8; 32],
        /// The payload.
        result: Result<Vec<u8>, CompressError>,
    },
    /// A payload sealed.
    Sealed {
        /// The caller's number for the seal job.
        token: u64,
        /// The repository object.
        envelope: Vec<u8>,
    },
}

enum Late {
    Compress {
        id: [u8; 32],
        data: Arc<Vec<u8>>,
        offset: usize,
        len: usize,
    },
    Seal {
        token: u64,
        iv: u64,
        payload: Vec<u8>,
    },
}

/// The caller's end of the pool. Dropping it stops the workers.
pub struct FilePool {
    reads: Sender<ReadJob>,
    late: Sender<Late>,
    done: Receiver<Done>,
}

/// What the workers need: the key, the compression and the chunker.
pub struct PoolSettings<'a, S: ChunkSealer> {
    /// The key.
    pub sealer: &'a S,
    /// The `--compression` setting.
    pub compression: &'a CompressionSpec,
    /// The chunker parameters.
    pub chunker: ChunkerParams,
    /// The key's chunk seed.
    pub seed: i64,
    /// Worker threads (at least one).
    pub threads: usize,
}

impl FilePool {
    /// Starts the workers in `scope`; they end when the returned pool is dropped.
    pub fn start<'scope, 'env, S: ChunkSealer>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        settings: PoolSettings<'env, S>,
    ) -> FilePool {
        let (reads, read_rx) = unbounded::<ReadJob>();
        let (late, late_rx) = unbounded::<Late>();
        let (done_tx, done) = unbounded::<Done>();
        let settings = Arc::new(settings);
        for _ in 0..settings.threads.max(1) {
            let (read_rx, late_rx, done_tx) = (read_rx.clone(), late_rx.clone(), done_tx.clone());
            let settings = settings.clone();
            scope.spawn(move || worker(&settings, read_rx, late_rx, done_tx));
        }
        FilePool { reads, late, done }
    }

    /// Queues a file to read, cut and hash.
    pub fn read(&self, job: ReadJob) -> io::Result<()> {
        self.reads.send(job).map_err(|_| stopped())
    }

    /// Queues the compression of `data[offset..offset + len]`, the chunk `id`.
    pub fn compress(
        &self,
        id: [u8; 32],
        data: Arc<Vec<u8>>,
        offset: usize,
        len: usize,
    ) -> io::Result<()> {
        self.late
            .send(Late::Compress {
                id,
                data,
                offset,
                len,
            })
            .map_err(|_| stopped())
    }

    /// Queues the sealing of `payload` with counter value `iv`.
    pub fn seal(&self, token: u64, iv: u64, payload: Vec<u8>) -> io::Result<()> {
        self.late
            .send(Late::Seal { token, iv, payload })
            .map_err(|_| stopped())
    }

    /// A result if one is ready.
    pub fn try_next(&self) -> Option<Done> {
        self.done.try_recv().ok()
    }

    /// The next result, waiting for it.
    pub fn next(&self) -> io::Result<Done> {
        self.done.recv().map_err(|_| stopped())
    }
}

fn stopped() -> io::Error {
    io::Error::other("the file workers stopped unexpectedly")
}

fn worker<S: ChunkSealer>(
    settings: &PoolSettings<'_, S>,
    read_rx: Receiver<ReadJob>,
    late_rx: Receiver<Late>,
    done_tx: Sender<Done>,
) {
    loop {
        let late = match late_rx.try_recv() {
            Ok(job) => job,
            Err(_) => select! {
                recv(late_rx) -> job => match job {
                    Ok(job) => job,
                    Err(_) => return,
                },
                recv(read_rx) -> job => match job {
                    Ok(job) => {
                        let seq = job.seq;
                        let result = read_file(settings, job);
                        if done_tx.send(Done::Read { seq, result }).is_err() {
                            return;
                        }
                        continue;
                    }
                    // No more reads; compress and seal jobs may still come.
                    Err(_) => match late_rx.recv() {
                        Ok(job) => job,
                        Err(_) => return,
                    },
                },
            },
        };
        let msg = match late {
            Late::Compress {
                id,
                data,
                offset,
                len,
            } => Done::Compressed {
                id,
                result: compress(settings.compression, &data[offset..offset + len]),
            },
            Late::Seal { token, iv, payload } => Done::Sealed {
                token,
                envelope: settings.sealer.seal(&payload, iv),
            },
        };
        if done_tx.send(msg).is_err() {
            return;
        }
    }
}

/// Reads the whole file and cuts it where the streaming chunker would (the buzhash chunker
/// only cuts with a full maximum-size window or at EOF, so cutting the whole content at once
/// gives the same chunks).
fn read_file<S: ChunkSealer>(settings: &PoolSettings<'_, S>, job: ReadJob) -> io::Result<ReadFile> {
    let mut file = job.file;
    // One byte more than the stat size, so a file that did not grow needs no second buffer.
    let mut data = Vec::with_capacity(job.size as usize + 1);
    file.read_to_end(&mut data)?;
    let changed = match job.ctime_ns {
        Some(before) => crate::fs::stat::fstat(file.as_fd(), b"")
            .map(|now| now.ctime_ns != before)
            .unwrap_or(false),
        None => false,
    };
    drop(file);
    let mut chunks = Vec::new();
    let mut offset = 0;
    match settings.chunker {
        ChunkerParams::Buzhash(p) => {
            let cuts = SliceCuts::new(&data, settings.seed, p).map_err(io::Error::other)?;
            for len in cuts {
                let id = settings.sealer.id_hash(&data[offset..offset + len]);
                chunks.push((offset, len, id));
                offset += len;
            }
        }
        params @ ChunkerParams::Fixed { .. } => {
            let mut c =
                AnyChunker::new(&data[..], params, settings.seed).map_err(io::Error::other)?;
            while let Some(chunk) = c.read_chunk()? {
                let len = chunk.size;
                let id = settings.sealer.id_hash(&data[offset..offset + len]);
                chunks.push((offset, len, id));
                offset += len;
            }
        }
    }
    let payloads = job.compress.then(|| {
        chunks
            .iter()
            .map(|&(offset, len, _)| compress(settings.compression, &data[offset..offset + len]))
            .collect()
    });
    Ok(ReadFile {
        data: Arc::new(data),
        chunks,
        changed,
        payloads,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunker::{BuzhashChunker, BuzhashParams};
    use crate::pipeline::ReferenceSealer;

    fn data(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 59) as u8
            })
            .collect()
    }

    #[test]
    fn workers_cut_hash_compress_and_seal_like_the_stream_path() {
        let dir = tempfile::tempdir().unwrap();
        let s = ReferenceSealer::repokey([1; 32], [2; 32], [3; 32]);
        let spec: CompressionSpec = "lz4".parse().unwrap();
        let params = BuzhashParams {
            min_exp: 10,
            max_exp: 14,
            mask_bits: 12,
            window_size: 63,
        };
        let files: Vec<Vec<u8>> = (0..20).map(|i| data(i * 3000, i as u64)).collect();
        for (i, f) in files.iter().enumerate() {
            std::fs::write(dir.path().join(i.to_string()), f).unwrap();
        }
        std::thread::scope(|scope| {
            let pool = FilePool::start(
                scope,
                PoolSettings {
                    sealer: &s,
                    compression: &spec,
                    chunker: ChunkerParams::Buzhash(params),
                    seed: 5,
                    threads: 2,
                },
            );
            for i in 0..files.len() {
                let file = File::open(dir.path().join(i.to_string())).unwrap();
                pool.read(ReadJob {
                    seq: i as u64,
                    file,
                    size: 0,
                    ctime_ns: None,
                    // Odd files are compressed by the worker right away.
                    compress: i % 2 == 1,
                })
                .unwrap();
            }
            let mut got = std::collections::BTreeMap::new();
            for _ in 0..files.len() {
                match pool.next().unwrap() {
                    Done::Read { seq, result } => {
                        got.insert(seq, result.unwrap());
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            for (i, f) in files.iter().enumerate() {
                let r = &got[&(i as u64)];
                assert_eq!(&r.data[..], &f[..]);
                let want: Vec<(usize, [u8; 32])> = BuzhashChunker::new(&f[..], 5, params)
                    .unwrap()
                    .map(|c| c.unwrap().into_bytes())
                    .map(|b| (b.len(), s.id_hash(&b)))
                    .collect();
                let have: Vec<(usize, [u8; 32])> =
                    r.chunks.iter().map(|&(_, l, id)| (l, id)).collect();
                assert_eq!(have, want);
                match &r.payloads {
                    None => assert_eq!(i % 2, 0, "file {i} lacks its payloads"),
                    Some(payloads) => {
                        assert_eq!(i % 2, 1, "file {i} was not to be compressed");
                        assert_eq!(payloads.len(), r.chunks.len());
                        for (p, &(off, len, _)) in payloads.iter().zip(&r.chunks) {
                            let want = compress(&spec, &r.data[off..off + len]).unwrap();
                            assert_eq!(p.as_ref().unwrap(), &want);
                        }
                    }
                }
            }
            let r = &got[&19];
            let (off, len, id) = r.chunks[0];
            pool.compress(id, r.data.clone(), off, len).unwrap();
            let Done::Compressed { id: back, result } = pool.next().unwrap() else {
                panic!("expected a compressed chunk");
            };
            assert_eq!(back, id);
            let payload = result.unwrap();
            assert_eq!(payload, compress(&spec, &r.data[off..off + len]).unwrap());
            pool.seal(7, 99, payload.clone()).unwrap();
            let Done::Sealed { token, envelope } = pool.next().unwrap() else {
                panic!("expected a sealed chunk");
            };
            assert_eq!(token, 7);
            assert_eq!(envelope, s.seal(&payload, 99));
        });
    }

    #[test]
    fn read_errors_come_back_per_file() {
        let s = ReferenceSealer::repokey([1; 32], [2; 32], [3; 32]);
        let spec = CompressionSpec::None;
        std::thread::scope(|scope| {
            let pool = FilePool::start(
                scope,
                PoolSettings {
                    sealer: &s,
                    compression: &spec,
                    chunker: "fixed,4096".parse().unwrap(),
                    seed: 0,
                    threads: 1,
                },
            );
            // A directory opens but cannot be read.
            let file = File::open(std::env::temp_dir()).unwrap();
            pool.read(ReadJob {
                seq: 3,
                file,
                size: 0,
                ctime_ns: Some(0),
                compress: false,
            })
            .unwrap();
            match pool.next().unwrap() {
                Done::Read { seq: 3, result } => assert!(result.is_err()),
                other => panic!("unexpected {other:?}"),
            }
        });
    }
}
