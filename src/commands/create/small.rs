//! The cross-file pipeline of `create`: small files in flight on the worker pool while the
//! walk goes on.
//!
//! The walk hands each small regular file (under [`ChunkStore::PARALLEL_MIN`], not a hardlink
//! master, not `--read-special` content) to the pool ([`FilePool`]) and walks on. Everything
//! the walk produces after that file — items, `--list` lines, warnings — waits behind it in
//! one queue, so the archive's item stream and the output come out in walk order, exactly as
//! on the sequential path. On this thread, files are then taken in walk order: the dedup
//! decision (chunk index, or an earlier file of the window storing the same id), the IV from
//! the nonce manager, the seal job; and at the head of the queue the `put`s, the chunk index
//! and statistics, the files cache and the item. The pool only reads, cuts, hashes, compresses
//! and seals. What is in flight is bounded by a window of files and bytes.

use std::collections::{HashMap, HashSet, VecDeque};

use super::{fatal, Run};
use crate::archive::writer::ChunkStore;
use crate::archive::{ChunkRef, Item};
use crate::cache::FileStat;
use crate::crypto::num_cipher_blocks;
use crate::fs::{VisitError, WalkWarning};
use crate::pipeline::files::{Done, FilePool, ReadFile, ReadJob};

/// Files in flight at most (each holds an open descriptor until it is read).
const MAX_FILES: usize = 64;
/// Content bytes (by stat size) in flight at most.
const MAX_BYTES: u64 = 16 << 20;
/// Queue entries (items and output lines behind an unfinished file) at most.
const MAX_SLOTS: usize = 4096;

/// One thing in walk order.
enum Slot {
    Status(char, Vec<u8>),
    Warning(WalkWarning),
    Item(Box<Item>),
    File(u64),
}

/// A file whose content is in the pool.
struct PendingFile {
    item: Item,
    path: Vec<u8>,
    path_hash: Option<[u8; 32]>,
    fstat: FileStat,
    state: FileState,
}

enum FileState {
    Reading,
    Failed(std::io::Error),
    Read(ReadFile),
    /// Dedup decided and IVs assigned; `token` is set for chunks this file stores.
    Assigned {
        chunks: Vec<(usize, [u8; 32], Option<u64>)>,
        changed: bool,
        bytes: u64,
    },
}

/// A small file for the queue: its item so far, the open file and what the files cache needs.
pub(super) struct NewFile<'p> {
    pub(super) item: Item,
    pub(super) file: std::fs::File,
    pub(super) fstat: FileStat,
    pub(super) path_hash: Option<[u8; 32]>,
    pub(super) path: &'p [u8],
    /// Not in the files cache, so its chunks are most likely new: the pool compresses them
    /// while it reads (one round trip less per chunk).
    pub(super) compress_now: bool,
}

/// The queue and the pool.
pub(super) struct SmallFiles {
    pool: FilePool,
    slots: VecDeque<Slot>,
    files: HashMap<u64, PendingFile>,
    next_seq: u64,
    /// The first file whose chunks are not assigned yet.
    assign_seq: u64,
    bytes_in_flight: u64,
    /// Compressed payloads by chunk id (`None` while the pool works on it).
    compressing: HashMap<[u8; 32], Option<Vec<u8>>>,
    /// Ids an assigned file stores but has not put yet.
    storing: HashSet<[u8; 32]>,
    sealed: HashMap<u64, Vec<u8>>,
    next_token: u64,
}

impl SmallFiles {
    pub(super) fn new(pool: FilePool) -> Self {
        SmallFiles {
            pool,
            slots: VecDeque::new(),
            files: HashMap::new(),
            next_seq: 0,
            assign_seq: 0,
            bytes_in_flight: 0,
            compressing: HashMap::new(),
            storing: HashSet::new(),
            sealed: HashMap::new(),
            next_token: 0,
        }
    }

    /// Whether a file of `size` bytes goes through the pool.
    pub(super) fn takes(size: u64, special: bool, hardlink_master: bool) -> bool {
        // A hardlink master must be in the archive before its next link is met (a failed
        // read makes the next link the master), so it stays on the sequential path.
        size < ChunkStore::PARALLEL_MIN && !special && !hardlink_master
    }

    /// Whether anything waits in the queue (new items and output must then queue too).
    pub(super) fn busy(&self) -> bool {
        !self.slots.is_empty()
    }

    pub(super) fn push_status(&mut self, status: char, path: &[u8]) {
        self.slots.push_back(Slot::Status(status, path.to_vec()));
    }

    pub(super) fn push_warning(&mut self, warning: WalkWarning) {
        self.slots.push_back(Slot::Warning(warning));
    }

    pub(super) fn push_item(&mut self, item: &Item) {
        self.slots.push_back(Slot::Item(Box::new(item.clone())));
    }

    /// Hands a file to the pool; its item waits in the queue until its content is stored.
    pub(super) fn submit(
        &mut self,
        run: &mut Run<'_, '_>,
        new: NewFile<'_>,
    ) -> Result<(), VisitError> {
        let NewFile {
            item,
            file,
            fstat,
            path_hash,
            path,
            compress_now,
        } = new;
        // Make room first, so the window bounds descriptors and memory.
        self.pump(run)?;
        while self.files.len() >= MAX_FILES
            || self.slots.len() >= MAX_SLOTS
            || (self.bytes_in_flight > 0 && self.bytes_in_flight + fstat.size > MAX_BYTES)
        {
            self.wait_one(run)?;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pool
            .read(ReadJob {
                seq,
                file,
                size: fstat.size,
                ctime_ns: Some(fstat.ctime),
                compress: compress_now,
            })
            .map_err(fatal)?;
        self.bytes_in_flight += fstat.size;
        self.files.insert(
            seq,
            PendingFile {
                item,
                path: path.to_vec(),
                path_hash,
                fstat,
                state: FileState::Reading,
            },
        );
        self.slots.push_back(Slot::File(seq));
        Ok(())
    }

    /// Finishes everything in the queue (before a checkpoint, a file read on the calling
    /// thread, and at the end).
    pub(super) fn drain(&mut self, run: &mut Run<'_, '_>) -> Result<(), VisitError> {
        self.pump(run)?;
        while self.busy() {
            self.wait_one(run)?;
        }
        Ok(())
    }

    /// Takes whatever results are ready and moves the queue on, without waiting.
    fn pump(&mut self, run: &mut Run<'_, '_>) -> Result<(), VisitError> {
        while let Some(done) = self.pool.try_next() {
            self.handle(run, done)?;
        }
        self.assign(run)?;
        self.flush(run)
    }

    fn wait_one(&mut self, run: &mut Run<'_, '_>) -> Result<(), VisitError> {
        let done = self.pool.next().map_err(fatal)?;
        self.handle(run, done)?;
        self.pump(run)
    }

    fn handle(&mut self, run: &mut Run<'_, '_>, done: Done) -> Result<(), VisitError> {
        match done {
            Done::Read { seq, result } => {
                let Some(f) = self.files.get_mut(&seq) else {
                    return Ok(());
                };
                f.state = match result {
                    Err(e) => FileState::Failed(e),
                    Ok(mut read) => {
                        // Compress now what is not known yet (unless the worker already
                        // did); the decision in walk order comes later and may still find a
                        // chunk stored by an earlier file.
                        let mut payloads = read.payloads.take().map(Vec::into_iter);
                        for &(offset, len, id) in &read.chunks {
                            let payload = payloads.as_mut().and_then(Iterator::next);
                            if run.store.index.contains(&id)
                                || self.storing.contains(&id)
                                || self.compressing.contains_key(&id)
                            {
                                continue;
                            }
                            match payload {
                                Some(p) => {
                                    self.compressing.insert(id, Some(p.map_err(fatal)?));
                                }
                                None => {
                                    self.pool
                                        .compress(id, read.data.clone(), offset, len)
                                        .map_err(fatal)?;
                                    self.compressing.insert(id, None);
                                }
                            }
                        }
                        FileState::Read(read)
                    }
                };
            }
            Done::Compressed { id, result } => {
                let payload = result.map_err(fatal)?;
                if let Some(slot) = self.compressing.get_mut(&id) {
                    *slot = Some(payload);
                }
            }
            Done::Sealed { token, envelope } => {
                self.sealed.insert(token, envelope);
            }
        }
        Ok(())
    }

    /// Dedup decisions and IVs, file by file in walk order, as far as compressed payloads
    /// are there.
    fn assign(&mut self, run: &mut Run<'_, '_>) -> Result<(), VisitError> {
        let encrypted = run.store.key().is_encrypted();
        while let Some(f) = self.files.get_mut(&self.assign_seq) {
            let read = match &f.state {
                FileState::Reading => break,
                FileState::Read(read) => read,
                FileState::Failed(_) | FileState::Assigned { .. } => {
                    self.assign_seq += 1;
                    continue;
                }
            };
            // Every chunk to store must have its payload.
            let mut ready = true;
            for &(offset, len, id) in &read.chunks {
                if run.store.index.contains(&id) || self.storing.contains(&id) {
                    continue;
                }
                match self.compressing.get(&id) {
                    Some(Some(_)) => {}
                    Some(None) => ready = false,
                    None => {
                        // Known when the file was read, gone since: compress it after all.
                        self.pool
                            .compress(id, read.data.clone(), offset, len)
                            .map_err(fatal)?;
                        self.compressing.insert(id, None);
                        ready = false;
                    }
                }
            }
            if !ready {
                break;
            }
            let mut chunks = Vec::with_capacity(read.chunks.len());
            for &(_, len, id) in &read.chunks {
                let token = if run.store.index.contains(&id) || self.storing.contains(&id) {
                    None
                } else {
                    let Some(Some(payload)) = self.compressing.remove(&id) else {
                        return Err(fatal("a compressed chunk went missing"));
                    };
                    let iv = if encrypted {
                        let (repository, _, nonces) = run.store.parts();
                        nonces
                            .allocate(repository, num_cipher_blocks(payload.len()))
                            .map_err(fatal)?
                    } else {
                        0
                    };
                    let token = self.next_token;
                    self.next_token += 1;
                    self.pool.seal(token, iv, payload).map_err(fatal)?;
                    self.storing.insert(id);
                    Some(token)
                };
                chunks.push((len, id, token));
            }
            f.state = FileState::Assigned {
                chunks,
                changed: read.changed,
                bytes: read.data.len() as u64,
            };
            self.assign_seq += 1;
        }
        Ok(())
    }

    /// Hands on, in walk order, everything up to the first unfinished file.
    fn flush(&mut self, run: &mut Run<'_, '_>) -> Result<(), VisitError> {
        while let Some(slot) = self.slots.front() {
            match slot {
                Slot::Status(c, path) => run.out.status(*c, path),
                Slot::Warning(w) => run.out.warning(&w.to_string()),
                Slot::Item(item) => run
                    .items
                    .add(item, &mut run.store, &mut run.meta_stats)
                    .map_err(fatal)?,
                Slot::File(seq) => {
                    let seq = *seq;
                    let finished = match self.files.get(&seq).map(|f| &f.state) {
                        Some(FileState::Failed(_)) => true,
                        Some(FileState::Assigned { chunks, .. }) => chunks
                            .iter()
                            .all(|(_, _, t)| t.map_or(true, |t| self.sealed.contains_key(&t))),
                        _ => false,
                    };
                    if !finished {
                        break;
                    }
                    if let Some(f) = self.files.remove(&seq) {
                        self.bytes_in_flight -= f.fstat.size;
                        self.finish(run, f)?;
                    }
                }
            }
            self.slots.pop_front();
        }
        Ok(())
    }

    /// The head file's puts, index, statistics, files cache and item (or its warning).
    fn finish(&mut self, run: &mut Run<'_, '_>, f: PendingFile) -> Result<(), VisitError> {
        let warn = |run: &mut Run<'_, '_>, message: String, status: char| {
            let w = WalkWarning {
                path: f.path.clone(),
                message,
            };
            run.warnings
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            run.out.warning(&w.to_string());
            run.out.status(status, &f.path);
        };
        let (chunks, changed, bytes) = match f.state {
            FileState::Failed(e) => {
                warn(run, super::read_error_message(&e), 'E');
                return Ok(());
            }
            FileState::Assigned {
                chunks,
                changed,
                bytes,
            } => (chunks, changed, bytes),
            _ => return Err(fatal("a file left the queue unfinished")),
        };
        let mut refs = Vec::with_capacity(chunks.len());
        for (size, id, token) in chunks {
            let (csize, unique) = match token.and_then(|t| self.sealed.remove(&t)) {
                Some(envelope) => {
                    let csize = envelope.len();
                    run.store.repository().put(&id, envelope).map_err(fatal)?;
                    self.storing.remove(&id);
                    (csize as u64, true)
                }
                None => (
                    run.store.index.get(&id).map_or(0, |e| e.csize as u64),
                    false,
                ),
            };
            run.store
                .index
                .add(&id, size as u32, csize as u32)
                .map_err(fatal)?;
            run.store
                .refs
                .add(&id, size as u32, csize as u32)
                .map_err(fatal)?;
            run.stats.update(size as u64, csize, unique, false);
            refs.push(ChunkRef {
                id,
                size: size as u64,
                csize,
            });
        }
        run.files_read += 1;
        run.bytes_read += bytes;
        if !changed {
            if let Some(h) = f.path_hash {
                run.files_cache
                    .memorize(h, &f.fstat, refs.iter().map(|r| r.id).collect());
            }
        }
        let mut item = f.item;
        item.size = Some(refs.iter().map(|c| c.size).sum());
        item.chunks = Some(refs);
        run.stats.nfiles += 1;
        run.items
            .add(&item, &mut run.store, &mut run.meta_stats)
            .map_err(fatal)?;
        run.update_progress();
        if changed {
            warn(run, "file changed while we backed it up".to_string(), 'C');
        }
        Ok(())
    }
}
