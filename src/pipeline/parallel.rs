//! The parallel form of the hot path, as a stream without batch barriers.
//!
//! ```text
//! reader thread ──stage jobs──▶ workers ──results──▶ sequencer (calling thread) ──▶ sink
//!      ▲                          ▲                        │
//!      └──── window tokens ───────┼────────────────────────┤ (one per emitted chunk)
//!                                 └────── seal jobs ───────┘ (IVs assigned in chunk order)
//! ```
//!
//! The reader copies each chunk out of the chunker and hands it to the workers, who hash and
//! compress it. The sequencer takes the results in chunk order, drops what is known or repeated,
//! assigns IVs from the counter, and sends seal jobs back to the workers, who prefer them over
//! new chunks. Sealed chunks go to the sink in chunk order. The reader may run at most `window`
//! chunks ahead of the sink, which bounds memory; no worker waits for another except through
//! that window.

use std::collections::{BTreeMap, HashSet};
use std::io;

use crossbeam_channel::{bounded, select, unbounded, Receiver, Sender};

use super::{ChunkSealer, HotPath, PipelineError, SealedChunk, SealedObject, ZeroIds};
use crate::chunker::{Allocation, ChunkSource};
use crate::compress::{compress, CompressError};

/// Tuning of [`seal_stream_parallel`]; the default (all zero) picks both from the CPU count.
#[derive(Debug, Clone, Copy, Default)]
pub struct ParallelOptions {
    /// Worker threads for hashing, compressing and sealing (0: one per CPU).
    pub threads: usize,
    /// How many chunks may be between the chunker and the sink at once (0: four per worker
    /// plus four). Each holds at most one maximum-size chunk of plaintext, payload and
    /// envelope.
    pub window: usize,
}

struct StageJob {
    seq: u64,
    size: usize,
    allocation: Allocation,
    /// The plaintext for data chunks; zero chunks carry nothing.
    data: Option<Vec<u8>>,
}

struct SealJob {
    seq: u64,
    iv: u64,
    payload: Vec<u8>,
}

enum Msg {
    Staged {
        seq: u64,
        id: [u8; 32],
        size: usize,
        allocation: Allocation,
        payload: Option<Vec<u8>>,
    },
    Sealed {
        seq: u64,
        data: Vec<u8>,
    },
    Failed(PipelineError),
    ReadDone {
        chunks: u64,
        bytes: u64,
    },
}

/// A chunk between staging and the sink.
struct Entry {
    id: [u8; 32],
    size: usize,
    allocation: Allocation,
    /// Set when the chunk is to be stored: its IV and payload length.
    iv: Option<(u64, usize)>,
    sealed: Option<Vec<u8>>,
}

/// The whole path for a stream on worker threads, with the same output as
/// [`super::seal_stream`] (same ids, same IVs, same order). The source is read on its own
/// thread.
pub fn seal_stream_parallel<S, C, F>(
    hot: &HotPath<'_, S>,
    source: C,
    next_iv: &mut u64,
    opts: ParallelOptions,
    mut sink: F,
) -> Result<u64, PipelineError>
where
    S: ChunkSealer,
    C: ChunkSource + Send,
    F: FnMut(SealedChunk) -> Result<(), PipelineError>,
{
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let window = match opts.window {
        0 => 4 * threads + 4,
        n => n,
    };
    let (stage_tx, stage_rx) = unbounded::<StageJob>();
    let (seal_tx, seal_rx) = unbounded::<SealJob>();
    let (msg_tx, msg_rx) = unbounded::<Msg>();
    let (token_tx, token_rx) = bounded::<()>(window);
    let zero_ids = ZeroIds::default();
    let mut source = source;
    std::thread::scope(|scope| {
        let reader_msgs = msg_tx.clone();
        scope.spawn(move || {
            let mut seq = 0u64;
            let mut bytes = 0u64;
            loop {
                // One token per chunk in flight; blocks while the window is full.
                if token_tx.send(()).is_err() {
                    return;
                }
                match source.read_chunk() {
                    Ok(Some(c)) => {
                        bytes += c.size as u64;
                        // An exact-size copy: buffers kept for reuse would grow to the
                        // largest chunk seen and hold that much each (peak RSS).
                        let data = c.data.map(<[u8]>::to_vec);
                        let job = StageJob {
                            seq,
                            size: c.size,
                            allocation: c.allocation,
                            data,
                        };
                        if stage_tx.send(job).is_err() {
                            return;
                        }
                        seq += 1;
                    }
                    Ok(None) => {
                        let _ = reader_msgs.send(Msg::ReadDone { chunks: seq, bytes });
                        return;
                    }
                    Err(e) => {
                        let _ = reader_msgs.send(Msg::Failed(e.into()));
                        return;
                    }
                }
            }
        });
        for _ in 0..threads {
            let (stage_rx, seal_rx, msg_tx) = (stage_rx.clone(), seal_rx.clone(), msg_tx.clone());
            let zero_ids = &zero_ids;
            scope.spawn(move || worker(hot, zero_ids, stage_rx, seal_rx, msg_tx));
        }
        drop((stage_rx, seal_rx, msg_tx));
        let result = sequence(hot, &msg_rx, &seal_tx, &token_rx, next_iv, &mut sink);
        // Closing these stops the reader and the workers, also after an error.
        drop((seal_tx, token_rx, msg_rx));
        result
    })
}

fn worker<S: ChunkSealer>(
    hot: &HotPath<'_, S>,
    zero_ids: &ZeroIds,
    stage_rx: Receiver<StageJob>,
    seal_rx: Receiver<SealJob>,
    msg_tx: Sender<Msg>,
) {
    let mut staging_open = true;
    loop {
        // Seal jobs first: they finish chunks and free memory.
        let seal = match seal_rx.try_recv() {
            Ok(job) => Some(job),
            Err(_) if staging_open => {
                select! {
                    recv(seal_rx) -> job => match job {
                        Ok(job) => Some(job),
                        Err(_) => return,
                    },
                    recv(stage_rx) -> job => match job {
                        Ok(job) => {
                            let msg = stage(hot, zero_ids, job);
                            if msg_tx.send(msg).is_err() {
                                return;
                            }
                            None
                        }
                        Err(_) => {
                            staging_open = false;
                            None
                        }
                    },
                }
            }
            Err(_) => match seal_rx.recv() {
                Ok(job) => Some(job),
                Err(_) => return,
            },
        };
        if let Some(job) = seal {
            let data = hot.sealer.seal(&job.payload, job.iv);
            if msg_tx.send(Msg::Sealed { seq: job.seq, data }).is_err() {
                return;
            }
        }
    }
}

fn stage<S: ChunkSealer>(hot: &HotPath<'_, S>, zero_ids: &ZeroIds, job: StageJob) -> Msg {
    let id = match &job.data {
        Some(d) => hot.sealer.id_hash(d),
        None => zero_ids.id(hot.sealer, job.size),
    };
    let payload = if (hot.is_known)(&id) {
        Ok(None)
    } else {
        match &job.data {
            Some(d) => compress(hot.compression, d).map(Some),
            None => compress(hot.compression, &vec![0; job.size]).map(Some),
        }
    };
    match payload {
        Ok(payload) => Msg::Staged {
            seq: job.seq,
            id,
            size: job.size,
            allocation: job.allocation,
            payload,
        },
        Err(e) => Msg::Failed(PipelineError::from(e as CompressError)),
    }
}

/// The calling thread's part: IVs in chunk order, dedup within the stream, and the sink.
fn sequence<S, F>(
    hot: &HotPath<'_, S>,
    msgs: &Receiver<Msg>,
    seal_tx: &Sender<SealJob>,
    tokens: &Receiver<()>,
    next_iv: &mut u64,
    sink: &mut F,
) -> Result<u64, PipelineError>
where
    S: ChunkSealer,
    F: FnMut(SealedChunk) -> Result<(), PipelineError>,
{
    let mut staged: BTreeMap<u64, Msg> = BTreeMap::new();
    let mut entries: BTreeMap<u64, Entry> = BTreeMap::new();
    let mut seen = HashSet::new();
    let (mut next_stage, mut next_emit) = (0u64, 0u64);
    let mut done: Option<(u64, u64)> = None;
    loop {
        if let Some((chunks, bytes)) = done {
            if next_emit == chunks {
                return Ok(bytes);
            }
        }
        let msg = msgs.recv().map_err(|_| {
            PipelineError::Read(io::Error::other("a hot-path worker stopped unexpectedly"))
        })?;
        match msg {
            Msg::Failed(e) => return Err(e),
            Msg::ReadDone { chunks, bytes } => done = Some((chunks, bytes)),
            Msg::Sealed { seq, data } => {
                if let Some(e) = entries.get_mut(&seq) {
                    e.sealed = Some(data);
                }
            }
            m @ Msg::Staged { .. } => {
                if let Msg::Staged { seq, .. } = &m {
                    staged.insert(*seq, m);
                }
                // IVs strictly in chunk order: take staged chunks as long as the next is there.
                while let Some(Msg::Staged {
                    seq,
                    id,
                    size,
                    allocation,
                    payload,
                }) = staged.remove(&next_stage)
                {
                    let mut entry = Entry {
                        id,
                        size,
                        allocation,
                        iv: None,
                        sealed: None,
                    };
                    if let Some(payload) = payload {
                        if seen.insert(id) {
                            let iv = *next_iv;
                            *next_iv += hot.sealer.iv_blocks(payload.len());
                            entry.iv = Some((iv, payload.len()));
                            seal_tx.send(SealJob { seq, iv, payload }).map_err(|_| {
                                PipelineError::Read(io::Error::other(
                                    "the hot-path workers stopped unexpectedly",
                                ))
                            })?;
                        }
                    }
                    entries.insert(seq, entry);
                    next_stage += 1;
                }
            }
        }
        // Emit in order whatever is complete.
        while entries
            .get(&next_emit)
            .is_some_and(|e| e.iv.is_none() || e.sealed.is_some())
        {
            let Some(e) = entries.remove(&next_emit) else {
                break;
            };
            let object = match (e.iv, e.sealed) {
                (Some((iv, compressed_size)), Some(data)) => Some(SealedObject {
                    iv,
                    compressed_size,
                    data,
                }),
                _ => None,
            };
            sink(SealedChunk {
                id: e.id,
                size: e.size,
                allocation: e.allocation,
                object,
            })?;
            next_emit += 1;
            // Let the reader take one more chunk.
            let _ = tokens.recv();
        }
    }
}
