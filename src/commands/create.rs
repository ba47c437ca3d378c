//! `create`: back up paths into a new archive (borg's `do_create` with `Archive`,
//! `FilesystemObjectProcessors` and `ChunksProcessor`).
//!
//! The pipeline, one stage per line:
//!
//! ```text
//! walk (fs::Walker, borg's order, patterns, status letters)
//!  → item draft with open fd (fs::FsObjectProcessor)
//!  → files cache: unchanged files are not read, their chunks are incref'd (all must be known)
//!  → read + chunk (chunker::AnyChunker on the fd)
//!  → id hash → dedup lookup → compress → IV (reserved via NonceManager) → seal
//!    (pipeline::seal_stream[_parallel], on all cores for large files, in chunk order)
//!  → put (remote puts are asynchronous; the RPC layer keeps a window)
//!  → item into the item stream buffer (archive::writer::ItemBuffer)
//! end: flush items → archive metadata + TAM → manifest entry → one manifest write + commit
//!      → chunk index, per-archive index and files cache saved.
//! ```
//!
//! Checkpoints (`<name>.checkpoint`) are written between files once `checkpoint_interval` has
//! passed, and on the first SIGINT before stopping; SIGTERM stops without one. A stop before
//! the final commit leaves the repository at its previous commit (or the last checkpoint).
//!
//! While a file's content is read, a checkpoint is also due after a chunk once the interval has
//! passed (borg's `ChunksProcessor.maybe_checkpoint`, the only place borg checkpoints): the
//! content stored so far becomes a part item `<path>.borg_part_N` (`part = N`), the checkpoint
//! archive is committed, and reading goes on. A file cut this way ends with a last part for the
//! rest, the full item as usual, and one more reference per chunk counted as part statistics.

use std::fs::File;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::{CommandError, Session};
use crate::archive::writer::{
    store_archive_metadata, ChunkStore, ItemBuffer, Stats, StreamError, WriteError,
};
use crate::archive::{format_time, ArchiveMetadata, ChunkRef, Item};
use crate::cache::sync::ChunkCache;
use crate::cache::{repository_cache_dir, FileStat, FileStatus, FilesCache, FilesCacheMode};
use crate::chunker::{AnyChunker, ChunkSource, ChunkerParams, FixedChunker};
use crate::compress::CompressionSpec;
use crate::fs::{
    Entry, FsObjectProcessor, MetadataOptions, VisitError, Visitor, WalkOptions, WalkWarning,
    Walker,
};
use crate::msgpack::Value;
use crate::pipeline::ParallelOptions;
use crate::settings::Environment;

mod small;

/// What to back up and how.
#[derive(Debug)]
pub struct CreateOptions {
    /// The archive name (placeholders already expanded).
    pub name: String,
    /// Paths to back up; `-` reads stdin.
    pub paths: Vec<Vec<u8>>,
    /// The item path for stdin (`--stdin-name`).
    pub stdin_name: String,
    /// `--compression`.
    pub compression: CompressionSpec,
    /// `--chunker-params`.
    pub chunker_params: ChunkerParams,
    /// `--comment`.
    pub comment: String,
    /// `--timestamp`.
    pub timestamp: Option<DateTime<Utc>>,
    /// `--checkpoint-interval`.
    pub checkpoint_interval: Duration,
    /// `--dry-run`.
    pub dry_run: bool,
    /// Walk options (patterns, exclusions, `--one-file-system`, `--read-special`).
    pub walk: WalkOptions,
    /// Item metadata options.
    pub metadata: MetadataOptions,
    /// `--files-cache`.
    pub files_cache_mode: FilesCacheMode,
    /// `BORG_FILES_CACHE_TTL`.
    pub files_cache_ttl: u8,
    /// `--sparse` (fixed chunker only, as in borg).
    pub sparse: bool,
    /// The command line, stored in the archive.
    pub cmdline: Vec<String>,
    /// Host name stored in the archive.
    pub hostname: String,
    /// User name stored in the archive.
    pub username: String,
    /// Working directory (stored; also the base of the files cache's path keys).
    pub cwd: String,
    /// Worker threads (0: one per CPU).
    pub threads: usize,
    /// When a file's content is cut into part items with a checkpoint.
    pub part_trigger: PartTrigger,
}

/// When `create` cuts the file it is reading into a `.borg_part_N` item and writes a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PartTrigger {
    /// borg's rule (`ChunksProcessor.maybe_checkpoint`): after a chunk, once more than
    /// `checkpoint_interval` has passed since the last checkpoint (or the start of the run);
    /// a zero interval never cuts.
    #[default]
    Interval,
    /// Once `n` chunks of file content were read since the last checkpoint (or the start),
    /// whatever the time: borg's rule with a clock that ticks once per chunk, so the cuts do
    /// not depend on the machine's speed (tests, experiments). `0` never cuts.
    EveryChunks(u64),
}

/// Progress as the run goes: bytes and files so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// Original bytes processed.
    pub original: u64,
    /// Stored bytes.
    pub compressed: u64,
    /// New stored bytes.
    pub deduplicated: u64,
    /// Files done.
    pub nfiles: u64,
}

/// borg 1.4's modern warning code for a warning message (`BackupOSError` 104 and its
/// `FileNotFound` 107, `Permission` 105, `IOError` 106 subclasses; `FileChangedWarning` 100).
pub fn warning_code(message: &str) -> u8 {
    if message.contains("changed while we backed it up") {
        100
    } else if message.contains("[Errno 2]") {
        107
    } else if message.contains("[Errno 13]") || message.contains("[Errno 1]") {
        105
    } else if message.contains("[Errno 5]") {
        106
    } else {
        104
    }
}

/// Where `create` reports as it goes (the command line prints; tests collect).
pub trait CreateOutput {
    /// A `--list` line.
    fn status(&mut self, status: char, path: &[u8]);
    /// A warning (exit 1 at the end).
    fn warning(&mut self, message: &str);
    /// Called after each chunk and file; the receiver rate-limits its output.
    fn progress(&mut self, _progress: &Progress) {}
    /// The archive path of the item now being made (what borg's progress line shows).
    fn processing(&mut self, _path: &[u8]) {}
}

/// What a finished `create` reports (borg's `--stats` / `--json` data).
#[derive(Debug, Clone)]
pub struct CreateResult {
    /// The archive name.
    pub name: String,
    /// The archive id (zero for `--dry-run`).
    pub id: [u8; 32],
    /// Start time (as stored).
    pub start: DateTime<Utc>,
    /// End time (as stored).
    pub end: DateTime<Utc>,
    /// Wall-clock duration.
    pub duration: Duration,
    /// The archive's statistics.
    pub stats: Stats,
    /// Warnings given.
    pub warnings: usize,
    /// Files whose content was read (not taken from the files cache).
    pub files_read: u64,
    /// Content bytes read.
    pub bytes_read: u64,
    /// The chunk index totals after the run.
    pub cache: crate::cache::ChunkStats,
    /// Size of the archive metadata object (for `limits.max_archive_size`).
    pub archive_object_size: u64,
}

/// Stop requests from signals: SIGINT (checkpoint, then stop) and SIGTERM (stop now).
#[derive(Debug, Clone, Default)]
pub struct StopFlags {
    /// Set by SIGINT.
    pub sigint: Arc<std::sync::atomic::AtomicBool>,
    /// Set by SIGTERM (or SIGHUP).
    pub sigterm: Arc<std::sync::atomic::AtomicBool>,
}

impl StopFlags {
    /// Flags set by the process's SIGINT, SIGTERM and SIGHUP handlers.
    pub fn from_signals() -> std::io::Result<StopFlags> {
        let f = StopFlags::default();
        signal_hook::flag::register(signal_hook::consts::SIGINT, f.sigint.clone())?;
        signal_hook::flag::register(signal_hook::consts::SIGTERM, f.sigterm.clone())?;
        signal_hook::flag::register(signal_hook::consts::SIGHUP, f.sigterm.clone())?;
        Ok(f)
    }
}

fn write_err(e: WriteError) -> CommandError {
    CommandError::other(e.to_string())
}

fn cache_err(e: impl std::fmt::Display) -> CommandError {
    CommandError::other(e.to_string())
}

/// Runs `create` on an open session.
pub fn create(
    session: &mut Session,
    env: &Environment,
    opts: CreateOptions,
    stop: &StopFlags,
    out: &mut dyn CreateOutput,
) -> Result<CreateResult, CommandError> {
    let started = Instant::now();
    // borg makes no Archive on a dry run, so an existing name is no error there.
    if !opts.dry_run && session.opened.manifest.archive(&opts.name).is_some() {
        return Err(crate::manifest::ManifestError::ArchiveExists(opts.name.clone()).into());
    }
    let mut walk = opts.walk;
    walk.dry_run = opts.dry_run;
    let cache_dir = repository_cache_dir(env, session.repository.id()).map_err(cache_err)?;
    if opts.dry_run {
        let mut v = DryRun { out, warnings: 0 };
        Walker::new(walk)
            .walk(&opts.paths, &mut v)
            .map_err(|e| CommandError::other(e.to_string()))?;
        let now = Utc::now();
        return Ok(CreateResult {
            name: opts.name,
            id: [0; 32],
            start: now,
            end: now,
            duration: started.elapsed(),
            stats: Stats::default(),
            warnings: v.warnings,
            files_read: 0,
            bytes_read: 0,
            cache: Default::default(),
            archive_object_size: 0,
        });
    }
    let mut chunk_cache = ChunkCache::load_or_sync(
        session.repository.as_mut(),
        &session.opened.key.key,
        &session.opened.manifest,
        env,
        false,
    )
    .map_err(|e| CommandError::Other {
        message: e.to_string(),
        code: e.exit_code(),
    })?;
    let files_path = cache_dir.join("rborg-files");
    let files_cache =
        match FilesCache::load(&files_path, opts.files_cache_mode, opts.files_cache_ttl) {
            Ok(c) => c,
            Err(e) => {
                log::warn!("{e}; starting with an empty files cache");
                FilesCache::new(opts.files_cache_mode, opts.files_cache_ttl)
            }
        };
    let chunker_value = chunker_params_value(&opts.chunker_params);
    let key = &session.opened.key.key;
    let seed = key.chunk_seed() as i64;
    // A window of one chunk per worker plus two was as fast as larger ones in
    // scripts/bench-create.sh and holds far less in flight than the pipeline's default
    // (peak RSS is a target: no more than borg's).
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let parallel = ParallelOptions {
        threads,
        window: threads + 2,
    };
    // Small files go through the cross-file pool, except with one thread (the sequential
    // path, kept as the reference), with `--sparse` fixed chunking (holes are found by
    // seeking, which the pool's whole-file reads do not do) and with a chunk-counting part
    // trigger (it must see every chunk of every file, as borg's per-chunk checkpoint test
    // does; with the interval rule a file under 1 MiB is only ever checkpointed after it).
    let sparse_fixed = opts.sparse && matches!(opts.chunker_params, ChunkerParams::Fixed { .. });
    let counts_chunks = matches!(opts.part_trigger, PartTrigger::EveryChunks(_));
    let use_pool = threads > 1 && !sparse_fixed && !counts_chunks;
    let mut checkpoints = Checkpoints::new(&session.opened.manifest, &opts.name);
    let mut skip = std::mem::take(&mut walk.skip_inodes);
    if let Ok(st) = crate::fs::stat::lstat(cache_dir.as_os_str().as_encoded_bytes()) {
        skip.insert((st.ino, st.dev));
    }
    walk.skip_inodes = skip;
    // Split borrows: the store writes through the repository, key and nonces of the session;
    // the manifest is changed only at checkpoints and at the end.
    let Session {
        repository, opened, ..
    } = session;
    let manifest = &mut opened.manifest;
    let store = ChunkStore::new(
        repository.as_mut(),
        &opened.key.key,
        &mut opened.nonces,
        &mut chunk_cache.index,
        opts.compression.clone(),
        parallel,
    );
    let warnings = Arc::new(AtomicUsize::new(0));
    let mut state = Run {
        store,
        processor: FsObjectProcessor::new(opts.metadata),
        items: ItemBuffer::new(),
        stats: Stats::default(),
        meta_stats: Stats::default(),
        files_cache,
        chunker_params: opts.chunker_params,
        seed,
        sparse: opts.sparse,
        cwd: opts.cwd.clone().into_bytes(),
        out,
        warnings: warnings.clone(),
        files_read: 0,
        bytes_read: 0,
        progress: Progress::default(),
        stop,
        interrupted: None,
        small: None,
    };
    let base_meta = ArchiveMetadata {
        version: 1,
        name: opts.name.clone(),
        items: vec![],
        cmdline: opts.cmdline.clone(),
        hostname: opts.hostname.clone(),
        username: opts.username.clone(),
        time: String::new(),
        time_end: None,
        comment: opts.comment.clone(),
        chunker_params: Some(chunker_value),
        size: None,
        csize: None,
        nfiles: None,
        size_parts: None,
        csize_parts: None,
        nfiles_parts: None,
        cwd: Some(opts.cwd.clone()),
        other: vec![],
    };
    let mut last_checkpoint = Instant::now();
    let walker = Walker::new(walk);
    // The walk runs one root at a time so that checkpoints can happen between roots as well
    // as between files (inside the visitor).
    let sealer = &opened.key.key;
    let walk_result = std::thread::scope(|scope| {
        if use_pool {
            let pool = crate::pipeline::files::FilePool::start(
                scope,
                crate::pipeline::files::PoolSettings {
                    sealer,
                    compression: &opts.compression,
                    chunker: opts.chunker_params,
                    seed,
                    threads,
                },
            );
            state.small = Some(small::SmallFiles::new(pool));
        }
        let mut chunks_since = 0;
        let mut cp = CheckpointingVisitor {
            run: &mut state,
            cp: Checkpointer {
                manifest,
                checkpoints: &mut checkpoints,
                base: &base_meta,
                interval: opts.checkpoint_interval,
                last: &mut last_checkpoint,
                started,
                timestamp: opts.timestamp,
                files_path: &files_path,
                trigger: opts.part_trigger,
                chunks_since: &mut chunks_since,
            },
        };
        // stdin first, on the calling thread (nothing is in flight yet), then the walk;
        // whatever small files are still in flight at the end are drained into the archive.
        let mut r: Result<(), CommandError> = Ok(());
        let mut fs_paths = Vec::new();
        for p in &opts.paths {
            if p.as_slice() == b"-" {
                if r.is_ok() {
                    r = cp.run.process_stdin(&opts.stdin_name, &mut cp.cp);
                }
            } else {
                fs_paths.push(p.clone());
            }
        }
        if r.is_ok() {
            r = walker
                .walk(&fs_paths, &mut cp)
                .map_err(|e| CommandError::other(e.to_string()));
        }
        if r.is_ok() {
            r = cp
                .run
                .drain_small()
                .map_err(|e| CommandError::other(e.to_string()));
        }
        // Dropping the pool's end stops its workers, also after an error.
        state.small = None;
        r
    });
    // On an error nothing after the last commit (or checkpoint) is committed: the repository
    // stays as it was.
    walk_result?;
    // The final save (`Archive.save`).
    let (meta, start, end) =
        finish_metadata(&base_meta, &opts.name, &mut state, started, opts.timestamp)
            .map_err(write_err)?;
    let (id, packed_len) = store_archive_metadata(&mut state.store, &meta, &mut state.meta_stats)
        .map_err(write_err)?;
    let Run {
        mut store,
        stats,
        files_cache,
        files_read,
        bytes_read,
        ..
    } = state;
    let refs = std::mem::take(&mut store.refs);
    drop(store);
    checkpoints.drop_uncommitted(manifest);
    manifest
        .add_archive(&opts.name, id, &meta.time)
        .map_err(CommandError::from)?;
    session.write_manifest_and_commit()?;
    // Caches after the commit, as borg's `cache.commit()`.
    if let Err(e) = chunk_cache.save(&session.opened.manifest) {
        log::warn!("saving the chunk index failed: {e}");
    }
    if let Err(e) = chunk_cache.save_archive_index(&id, &refs) {
        log::warn!("saving the archive index failed: {e}");
    }
    if let Err(e) = files_cache.save(&files_path) {
        log::warn!("saving the files cache failed: {e}");
    }
    Ok(CreateResult {
        name: opts.name,
        id,
        start,
        end,
        duration: started.elapsed(),
        stats,
        warnings: warnings.load(Ordering::Relaxed),
        files_read,
        bytes_read,
        cache: chunk_cache.index.stats(),
        archive_object_size: packed_len as u64,
    })
}

/// `["buzhash", 19, 23, 21, 4095]` or `["fixed", block, header]`, as borg stores them.
pub fn chunker_params_value(p: &ChunkerParams) -> Value {
    match p {
        ChunkerParams::Buzhash(b) => Value::Array(vec![
            Value::str("buzhash"),
            Value::from(b.min_exp as u64),
            Value::from(b.max_exp as u64),
            Value::from(b.mask_bits as u64),
            Value::from(b.window_size as u64),
        ]),
        ChunkerParams::Fixed {
            block_size,
            header_size,
        } => Value::Array(vec![
            Value::str("fixed"),
            Value::from(*block_size as u64),
            Value::from(*header_size as u64),
        ]),
    }
}

/// Flushes the item stream and builds the metadata for `name` (`Archive.save`'s times:
/// `start = end - duration`, or `--timestamp` and `timestamp + duration`).
fn finish_metadata(
    base: &ArchiveMetadata,
    name: &str,
    run: &mut Run<'_, '_>,
    started: Instant,
    timestamp: Option<DateTime<Utc>>,
) -> Result<(ArchiveMetadata, DateTime<Utc>, DateTime<Utc>), WriteError> {
    run.items.flush(&mut run.store, &mut run.meta_stats, true)?;
    let duration = chrono::Duration::from_std(started.elapsed()).unwrap_or_default();
    let (start, end) = match timestamp {
        None => {
            let end = Utc::now();
            (end - duration, end)
        }
        Some(t) => (t, t + duration),
    };
    let s = &run.stats;
    let meta = ArchiveMetadata {
        name: name.to_string(),
        items: run.items.chunks.clone(),
        time: format_time(&start),
        time_end: Some(format_time(&end)),
        size: Some(s.osize),
        csize: Some(s.csize),
        nfiles: Some(s.nfiles),
        size_parts: Some(s.osize_parts),
        csize_parts: Some(s.csize_parts),
        nfiles_parts: Some(s.nfiles_parts),
        ..base.clone()
    };
    Ok((meta, start, end))
}

/// Checkpoint naming and the uncommitted-undo of the previous checkpoint.
struct Checkpoints {
    name: String,
    /// The archive id of the checkpoint committed last, still listed in the manifest.
    current: Option<[u8; 32]>,
}

impl Checkpoints {
    /// `<name>.checkpoint`, or `.checkpoint.N` with the smallest free N.
    fn new(manifest: &crate::manifest::Manifest, name: &str) -> Self {
        let mut cp = format!("{name}.checkpoint");
        let mut n = 1;
        while manifest.archive(&cp).is_some() {
            cp = format!("{name}.checkpoint.{n}");
            n += 1;
        }
        Checkpoints {
            name: cp,
            current: None,
        }
    }

    /// Removes the committed checkpoint from the manifest (the next commit drops it).
    fn drop_uncommitted(&mut self, manifest: &mut crate::manifest::Manifest) {
        if self.current.take().is_some() {
            let _ = manifest.remove_archive(&self.name);
        }
    }
}

/// The walk's visitor: the run, and apart from it what a checkpoint needs (a separate field,
/// so that reading a file's content can write checkpoints while the run is borrowed).
struct CheckpointingVisitor<'r, 's, 'o, 'm> {
    run: &'r mut Run<'s, 'o>,
    cp: Checkpointer<'m>,
}

/// What writing a checkpoint needs besides the run.
struct Checkpointer<'m> {
    manifest: &'m mut crate::manifest::Manifest,
    checkpoints: &'m mut Checkpoints,
    base: &'m ArchiveMetadata,
    interval: Duration,
    last: &'m mut Instant,
    started: Instant,
    timestamp: Option<DateTime<Utc>>,
    files_path: &'m std::path::Path,
    trigger: PartTrigger,
    /// Chunks of file content read since the last checkpoint (or the start).
    chunks_since: &'m mut u64,
}

impl Checkpointer<'_> {
    /// The rule for cutting the content stream that starts now.
    fn cut_rule(&self, stop: &StopFlags) -> CutRule {
        CutRule {
            since: *self.last,
            interval: self.interval,
            trigger: self.trigger,
            sigint: stop.sigint.clone(),
        }
    }

    /// `write_checkpoint`: save the archive under the checkpoint name, write the manifest and
    /// commit; then, uncommitted, take it out again and drop its metadata reference.
    fn checkpoint(&mut self, run: &mut Run<'_, '_>) -> Result<(), VisitError> {
        // Everything walked so far goes into the checkpoint.
        run.drain_small()?;
        let fatal = |e: String| VisitError::Fatal(e.into());
        self.checkpoints.drop_uncommitted(self.manifest);
        let name = self.checkpoints.name.clone();
        let (mut meta, _, _) = finish_metadata(self.base, &name, run, self.started, self.timestamp)
            .map_err(|e| fatal(e.to_string()))?;
        // borg 1.4.5 writes zero statistics into checkpoint archives.
        meta.size = Some(0);
        meta.csize = Some(0);
        meta.nfiles = Some(0);
        meta.size_parts = Some(0);
        meta.csize_parts = Some(0);
        meta.nfiles_parts = Some(0);
        let mut scratch = Stats::default();
        let (id, _) = store_archive_metadata(&mut run.store, &meta, &mut scratch)
            .map_err(|e| fatal(e.to_string()))?;
        self.manifest
            .add_archive(&name, id, &meta.time)
            .map_err(|e| fatal(e.to_string()))?;
        run.store
            .commit_manifest(self.manifest)
            .map_err(|e| fatal(e.to_string()))?;
        self.checkpoints.current = Some(id);
        // Uncommitted from here: the checkpoint's metadata object loses its reference, so
        // the next commit (checkpoint or final) deletes it.
        let r = ChunkRef {
            id,
            size: 0,
            csize: 0,
        };
        run.store.decref(&[r]).map_err(|e| fatal(e.to_string()))?;
        if let Err(e) = run.files_cache.save(self.files_path) {
            log::warn!("saving the files cache failed: {e}");
        }
        *self.last = Instant::now();
        *self.chunks_since = 0;
        Ok(())
    }
}

impl Visitor for CheckpointingVisitor<'_, '_, '_, '_> {
    fn entry(&mut self, entry: &Entry<'_>) -> Result<Option<char>, VisitError> {
        if self.run.stop.sigterm.load(Ordering::Relaxed) {
            self.run.interrupted = Some("SIGTERM");
            return Err(VisitError::Fatal(
                "Got SIGTERM, stopping without saving.".into(),
            ));
        }
        if self.run.stop.sigint.load(Ordering::Relaxed) {
            self.run.interrupted = Some("SIGINT");
            self.cp.checkpoint(self.run)?;
            return Err(VisitError::Fatal("Got Ctrl-C / SIGINT.".into()));
        }
        let r = self.run.entry(entry, &mut self.cp);
        if matches!(r, Err(VisitError::Fatal(_))) {
            return r;
        }
        if !self.cp.interval.is_zero() && self.cp.last.elapsed() >= self.cp.interval {
            self.cp.checkpoint(self.run)?;
        }
        r
    }

    fn status(&mut self, status: char, path: &[u8]) {
        self.run.emit_status(status, path);
    }

    fn warning(&mut self, warning: WalkWarning) {
        self.run.warnings.fetch_add(1, Ordering::Relaxed);
        match self.run.small.as_mut().filter(|q| q.busy()) {
            Some(q) => q.push_warning(warning),
            None => self.run.out.warning(&warning.to_string()),
        }
    }
}

impl ChunkStore<'_> {
    /// Writes `manifest` and commits (a checkpoint's commit).
    fn commit_manifest(
        &mut self,
        manifest: &mut crate::manifest::Manifest,
    ) -> Result<(), crate::manifest::ManifestError> {
        let (repo, key, nonces) = self.parts();
        manifest.write(repo, key, nonces, &crate::manifest::DefaultCodec)?;
        repo.commit(crate::repository::CommitOptions::default())?;
        Ok(())
    }
}

/// The state of one run.
struct Run<'s, 'o> {
    store: ChunkStore<'s>,
    processor: FsObjectProcessor,
    items: ItemBuffer,
    stats: Stats,
    meta_stats: Stats,
    files_cache: FilesCache,
    chunker_params: ChunkerParams,
    seed: i64,
    sparse: bool,
    cwd: Vec<u8>,
    out: &'o mut dyn CreateOutput,
    warnings: Arc<AtomicUsize>,
    files_read: u64,
    bytes_read: u64,
    progress: Progress,
    stop: &'o StopFlags,
    interrupted: Option<&'static str>,
    /// The cross-file pipeline for small files, while the walk runs.
    small: Option<small::SmallFiles>,
}

fn fatal(e: impl std::fmt::Display) -> VisitError {
    VisitError::Fatal(e.to_string().into())
}

/// A read error, a per-file problem, worded as Python words an OSError ("[Errno 5]
/// Input/output error").
fn read_error(e: std::io::Error) -> VisitError {
    VisitError::Backup(read_error_message(&e))
}

impl Run<'_, '_> {
    fn add_item(&mut self, item: &Item) -> Result<(), VisitError> {
        if let Some(q) = self.small.as_mut().filter(|q| q.busy()) {
            // Behind files still in flight: the item stream stays in walk order.
            q.push_item(item);
            return Ok(());
        }
        self.items
            .add(item, &mut self.store, &mut self.meta_stats)
            .map_err(fatal)
    }

    /// A `--list` line, behind whatever is still in flight.
    fn emit_status(&mut self, status: char, path: &[u8]) {
        match self.small.as_mut().filter(|q| q.busy()) {
            Some(q) => q.push_status(status, path),
            None => self.out.status(status, path),
        }
    }

    /// Waits for every small file in flight and hands on what waited behind them.
    fn drain_small(&mut self) -> Result<(), VisitError> {
        let Some(mut q) = self.small.take() else {
            return Ok(());
        };
        let r = q.drain(self);
        self.small = Some(q);
        r
    }

    fn update_progress(&mut self) {
        self.progress.original = self.stats.osize;
        self.progress.compressed = self.stats.csize;
        self.progress.deduplicated = self.stats.usize;
        self.progress.nfiles = self.stats.nfiles;
        self.out.progress(&self.progress);
    }

    /// Reads a stream into chunks. A read error is a per-file problem. `item` is the file's
    /// item so far (what part items are copied from); `cp` writes the checkpoints that fall
    /// inside this file.
    fn read_content(
        &mut self,
        file: File,
        size: u64,
        special: bool,
        item: &Item,
        cp: &mut Checkpointer<'_>,
    ) -> Result<Vec<ChunkRef>, VisitError> {
        let params = self.chunker_params;
        match params {
            ChunkerParams::Fixed {
                block_size,
                header_size,
            } if self.sparse && !special => {
                let c = FixedChunker::sparse(file, block_size, header_size).map_err(fatal)?;
                self.store_in_parts(c, size, item, cp)
            }
            _ => {
                let c = AnyChunker::new(file, params, self.seed).map_err(fatal)?;
                self.store_in_parts(c, size, item, cp)
            }
        }
    }

    /// borg's `process_file_chunks`: stores the content one segment at a time, a segment
    /// ending where a checkpoint falls due (checked after each chunk read, as borg checks after
    /// each chunk stored). Each cut adds a part item for the chunks since the previous one and
    /// writes a checkpoint. A file that was cut ends with a last part for the rest (so the
    /// parts concatenated are the file) and one more reference to each of its chunks, counted
    /// as part statistics, because the full item references them as well.
    fn store_in_parts<C: ChunkSource + Send>(
        &mut self,
        mut chunker: C,
        size: u64,
        item: &Item,
        cp: &mut Checkpointer<'_>,
    ) -> Result<Vec<ChunkRef>, VisitError> {
        let mut chunks: Vec<ChunkRef> = Vec::new();
        let mut bytes = 0u64;
        let mut from_chunk = 0;
        let mut part_number = 1u32;
        let mut progress = self.progress;
        loop {
            let mut cut = false;
            let result = {
                let source = PartCut {
                    inner: &mut chunker,
                    rule: cp.cut_rule(self.stop),
                    since: &mut *cp.chunks_since,
                    cut: &mut cut,
                };
                let out = &mut *self.out;
                let mut on_chunk = |s: &Stats| {
                    progress.original = s.osize;
                    progress.compressed = s.csize;
                    progress.deduplicated = s.usize;
                    out.progress(&progress);
                };
                // The size left only sizes the nonce reservation and picks the parallel path.
                let left = size.saturating_sub(bytes);
                self.store
                    .store_stream(source, left, &mut self.stats, &mut on_chunk)
            };
            let stored = match result {
                Ok(s) => s,
                // Parts already written stay in the archive with their chunks, as in borg.
                Err(StreamError::Read(e)) => return Err(read_error(e)),
                Err(StreamError::Write(e)) => return Err(fatal(e)),
            };
            bytes += stored.bytes;
            chunks.extend(stored.chunks);
            if !cut {
                break;
            }
            self.write_part(item, &chunks[from_chunk..], part_number, cp)?;
            from_chunk = chunks.len();
            part_number += 1;
            if self.stop.sigint.load(Ordering::Relaxed) {
                // The checkpoint borg writes at the next chunk after a Ctrl-C is written; the
                // rest of the run would not be committed anyway.
                self.interrupted = Some("SIGINT");
                return Err(VisitError::Fatal("Got Ctrl-C / SIGINT.".into()));
            }
        }
        if part_number > 1 {
            if from_chunk < chunks.len() {
                self.write_part(item, &chunks[from_chunk..], part_number, cp)?;
                part_number += 1;
            }
            for c in &chunks {
                self.store.incref(&c.id, &mut self.stats, true);
            }
            self.stats.nfiles_parts += u64::from(part_number - 1);
        }
        self.files_read += 1;
        self.bytes_read += bytes;
        Ok(chunks)
    }

    /// `write_part_file`: the part item for the chunks since the previous part, then a
    /// checkpoint.
    fn write_part(
        &mut self,
        item: &Item,
        chunks: &[ChunkRef],
        number: u32,
        cp: &mut Checkpointer<'_>,
    ) -> Result<(), VisitError> {
        let part = part_item(item, chunks, number);
        self.add_item(&part)?;
        cp.checkpoint(self)
    }

    fn entry(
        &mut self,
        entry: &Entry<'_>,
        cp: &mut Checkpointer<'_>,
    ) -> Result<Option<char>, VisitError> {
        let Some(mut draft) = self.processor.process(entry)? else {
            return Ok(Some('x'));
        };
        for w in &draft.warnings {
            log::warn!("{}: {w}", crate::fs::display_path(&entry.path));
        }
        self.out.processing(&draft.item.path);
        let mut status = draft.status;
        if let Some(fd) = draft.content.take() {
            let st = draft.stat;
            let fstat = FileStat {
                inode: st.ino,
                size: st.size.max(0) as u64,
                ctime: st.ctime_ns,
                mtime: st.mtime_ns,
            };
            let path_hash = (!draft.special).then(|| {
                let abs = crate::fs::path::join(&self.cwd, &entry.path);
                self.store.key().id_hash(&abs)
            });
            let mut chunks = None;
            let letter = match path_hash.map(|h| self.files_cache.lookup(&h, &fstat)) {
                Some(FileStatus::Unchanged(ids)) => {
                    if ids.iter().all(|id| self.store.index.contains(id)) {
                        let mut refs = Vec::with_capacity(ids.len());
                        for id in &ids {
                            if let Some(r) = self.store.incref(id, &mut self.stats, false) {
                                refs.push(r);
                            }
                        }
                        chunks = Some(refs);
                        'U'
                    } else {
                        // The cache says unchanged but a chunk is gone: read it again.
                        'M'
                    }
                }
                Some(FileStatus::Changed) => 'M',
                Some(FileStatus::Unknown) | None => 'A',
            };
            self.emit_status(letter, &entry.path);
            status = None;
            let chunks = match chunks {
                Some(c) => c,
                None if self.small.is_some()
                    && small::SmallFiles::takes(
                        fstat.size,
                        draft.special,
                        draft.hardlink_master,
                    ) =>
                {
                    let Some(mut q) = self.small.take() else {
                        return Ok(None);
                    };
                    // The pool reads this file after the files ahead of it: ask the kernel to
                    // start reading it now, so a cold cache has many reads in flight instead
                    // of one per worker.
                    crate::fs::stat::will_need(std::os::fd::AsFd::as_fd(&fd));
                    let r = q.submit(
                        self,
                        small::NewFile {
                            item: draft.item,
                            file: File::from(fd),
                            fstat,
                            path_hash,
                            path: &entry.path,
                            compress_now: letter == 'A',
                        },
                    );
                    self.small = Some(q);
                    r?;
                    return Ok(None);
                }
                None => {
                    // Read on this thread: the files before it come first.
                    self.drain_small()?;
                    let file = File::from(fd);
                    let probe = file
                        .try_clone()
                        .map_err(|e| VisitError::Backup(format!("open: {e}")))?;
                    let c = self.read_content(file, fstat.size, draft.special, &draft.item, cp)?;
                    // Changed while read? borg compares the ctime of a second fstat.
                    let changed = !draft.special
                        && crate::fs::stat::fstat(std::os::fd::AsFd::as_fd(&probe), &entry.path)
                            .map(|now| now.ctime_ns != st.ctime_ns)
                            .unwrap_or(false);
                    if changed {
                        status = Some('C');
                    } else if let Some(h) = path_hash {
                        self.files_cache
                            .memorize(h, &fstat, c.iter().map(|r| r.id).collect());
                    }
                    c
                }
            };
            draft.item.size = Some(chunks.iter().map(|c| c.size).sum());
            draft.item.chunks = Some(chunks);
            self.stats.nfiles += 1;
        }
        self.add_item(&draft.item)?;
        self.processor.added(&draft);
        self.update_progress();
        Ok(status)
    }

    /// `-`: stdin stored as a regular file (borg's `process_pipe`).
    fn process_stdin(&mut self, name: &str, cp: &mut Checkpointer<'_>) -> Result<(), CommandError> {
        let now = Utc::now().timestamp() * 1_000_000_000;
        // SAFETY: fd 0 stays open for the process; it is duplicated so File owns its own fd.
        let fd = unsafe { libc::dup(0) };
        if fd < 0 {
            return Err(CommandError::other(format!(
                "stdin: {}",
                std::io::Error::last_os_error()
            )));
        }
        // SAFETY: fd is a fresh descriptor we own.
        let file = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let root = Some(Some(b"root".to_vec()));
        // As borg's `process_pipe` has it while chunking (what part items are copied from).
        let mut item = Item {
            path: crate::fs::path::make_path_safe(name.as_bytes()),
            mode: Some(libc::S_IFREG | 0o660),
            uid: Some(0),
            gid: Some(0),
            user: root.clone(),
            group: root,
            mtime: now,
            atime: Some(now),
            ctime: Some(now),
            ..Item::default()
        };
        self.out.processing(&item.path);
        let chunks = self
            .read_content(file, 0, true, &item, cp)
            .map_err(|e| CommandError::other(e.to_string()))?;
        item.size = Some(chunks.iter().map(|c| c.size).sum());
        item.chunks = Some(chunks);
        item.hardlink_master = Some(false);
        self.stats.nfiles += 1;
        self.add_item(&item)
            .map_err(|e| CommandError::other(e.to_string()))?;
        self.out.status('A', &item.path);
        Ok(())
    }
}

/// `write_part_file`'s item: a copy of `item` as borg has it while it chunks the content (the
/// stat attributes, not yet those of `stat_ext_attrs`: flags, xattrs, ACLs) with `chunks`,
/// their size, the `.borg_part_<number>` path and `part = number`.
fn part_item(item: &Item, chunks: &[ChunkRef], number: u32) -> Item {
    let mut path = item.path.clone();
    path.extend_from_slice(format!(".borg_part_{number}").as_bytes());
    Item {
        path,
        part: Some(number),
        size: Some(chunks.iter().map(|c| c.size).sum()),
        chunks: Some(chunks.to_vec()),
        bsdflags: None,
        xattrs: None,
        acl_access: None,
        acl_default: None,
        acl_extended: None,
        acl_nfs4: None,
        ..item.clone()
    }
}

/// When a content stream is cut: the checkpoint rule as it stands at the stream's start.
struct CutRule {
    /// The last checkpoint (or the start of the run).
    since: Instant,
    interval: Duration,
    trigger: PartTrigger,
    sigint: Arc<std::sync::atomic::AtomicBool>,
}

impl CutRule {
    /// Whether a checkpoint is due with `since` chunks read since the last one.
    fn due(&self, since: u64) -> bool {
        if self.sigint.load(Ordering::Relaxed) {
            return true;
        }
        match self.trigger {
            PartTrigger::Interval => {
                !self.interval.is_zero() && self.since.elapsed() > self.interval
            }
            PartTrigger::EveryChunks(n) => n > 0 && since >= n,
        }
    }
}

/// A chunk source that ends early, right after the chunk at which a checkpoint falls due.
/// The chunker itself goes on where it stopped in the next segment.
struct PartCut<'a, C> {
    inner: &'a mut C,
    rule: CutRule,
    /// Chunks read since the last checkpoint, over segments and files.
    since: &'a mut u64,
    /// Set when the segment ended for a checkpoint (not at the end of the content).
    cut: &'a mut bool,
}

impl<C: ChunkSource> ChunkSource for PartCut<'_, C> {
    fn read_chunk(&mut self) -> std::io::Result<Option<crate::chunker::ChunkRef<'_>>> {
        if *self.cut {
            return Ok(None);
        }
        let chunk = self.inner.read_chunk()?;
        if chunk.is_some() {
            *self.since += 1;
            *self.cut = self.rule.due(*self.since);
        }
        Ok(chunk)
    }
}

/// A read error as borg words it (Python's OSError: "[Errno 5] Input/output error").
fn read_error_message(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => format!("read: [Errno {n}] {}", crate::fs::strerror(n)),
        None => format!("read: {e}"),
    }
}

struct DryRun<'o> {
    out: &'o mut dyn CreateOutput,
    warnings: usize,
}

impl Visitor for DryRun<'_> {
    fn entry(&mut self, _entry: &Entry<'_>) -> Result<Option<char>, VisitError> {
        Ok(Some('-'))
    }
    fn status(&mut self, status: char, path: &[u8]) {
        self.out.status(status, path);
    }
    fn warning(&mut self, warning: WalkWarning) {
        self.warnings += 1;
        self.out.warning(&warning.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warning_codes_follow_borg_classes() {
        assert_eq!(
            warning_code("x: stat: [Errno 2] No such file or directory: 'x'"),
            107
        );
        assert_eq!(
            warning_code("x: open: [Errno 13] Permission denied: 'x'"),
            105
        );
        assert_eq!(warning_code("x: read: [Errno 5] Input/output error"), 106);
        assert_eq!(warning_code("x: file changed while we backed it up"), 100);
        assert_eq!(warning_code("x: something else"), 104);
    }

    #[test]
    fn cut_rule_follows_the_trigger_and_ctrl_c() {
        let rule = |trigger, interval, ago: u64| CutRule {
            since: Instant::now() - Duration::from_secs(ago),
            interval,
            trigger,
            sigint: Arc::default(),
        };
        let every3 = rule(PartTrigger::EveryChunks(3), Duration::ZERO, 0);
        assert_eq!(
            (1..=4).map(|n| every3.due(n)).collect::<Vec<_>>(),
            [false, false, true, true]
        );
        assert!(!rule(PartTrigger::EveryChunks(0), Duration::ZERO, 0).due(100));
        // borg: strictly more than the interval since the last checkpoint; 0 never cuts.
        assert!(rule(PartTrigger::Interval, Duration::from_secs(5), 6).due(1));
        assert!(!rule(PartTrigger::Interval, Duration::from_secs(5), 4).due(1));
        assert!(!rule(PartTrigger::Interval, Duration::ZERO, 100).due(1));
        let r = rule(PartTrigger::Interval, Duration::from_secs(1800), 0);
        r.sigint.store(true, Ordering::Relaxed);
        assert!(r.due(1));
    }

    #[test]
    fn part_items_are_the_item_while_chunking_with_its_part() {
        let full = Item {
            path: b"home/f".to_vec(),
            mode: Some(0o100644),
            mtime: 7,
            hardlink_master: Some(true),
            xattrs: Some(vec![(b"user.a".to_vec(), b"1".to_vec())]),
            acl_access: Some(b"user::rw-".to_vec()),
            bsdflags: Some(2),
            ..Item::default()
        };
        let c = |n: u8, size| ChunkRef {
            id: [n; 32],
            size,
            csize: size + 10,
        };
        let p = part_item(&full, &[c(1, 100), c(2, 50)], 3);
        assert_eq!(
            p,
            Item {
                path: b"home/f.borg_part_3".to_vec(),
                mode: Some(0o100644),
                mtime: 7,
                hardlink_master: Some(true),
                size: Some(150),
                chunks: Some(vec![c(1, 100), c(2, 50)]),
                part: Some(3),
                ..Item::default()
            }
        );
    }

    #[test]
    fn chunker_params_as_borg_stores_them() {
        let v = chunker_params_value(&"buzhash,19,23,21,4095".parse().unwrap());
        assert_eq!(
            crate::msgpack::encode(&v),
            crate::msgpack::encode(&Value::Array(vec![
                Value::str("buzhash"),
                19u64.into(),
                23u64.into(),
                21u64.into(),
                4095u64.into()
            ]))
        );
        let v = chunker_params_value(&"fixed,65536".parse().unwrap());
        assert_eq!(
            crate::msgpack::encode(&v),
            crate::msgpack::encode(&Value::Array(vec![
                Value::str("fixed"),
                65536u64.into(),
                0u64.into()
            ]))
        );
    }
}
