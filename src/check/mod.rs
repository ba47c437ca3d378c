//! `borg check`'s archive consistency check (`archive.py: ArchiveChecker`): every object id is
//! listed, the manifest is loaded (or rebuilt from archive objects found by scanning), each
//! selected archive's metadata and TAM are verified, its item stream is read with a robust
//! reader that resynchronises after damaged item chunks, every file chunk is checked to exist,
//! reference counts are rebuilt, and unreferenced objects are reported as orphans.
//!
//! With `repair` it does what borg repairs client side: damaged archives leave the manifest,
//! damaged items are dropped, missing file chunks get all-zero replacements (remembering the
//! originals in `chunks_healthy`, healing the file when they reappear), orphans are deleted and
//! the manifest is written and committed once.
//!
//! Messages are borg's, logged through `log` (target `borg.check`).

pub mod robust;
pub mod verify;

use std::collections::{HashMap, HashSet};

use crate::archive::writer::ITEM_BUFFER_SIZE;
use crate::archive::{ChunkRef, Item};
use crate::chunker::{BuzhashParams, SliceCuts};
use crate::crypto::nonces::NonceManager;
use crate::crypto::tam::{TamContext, TamStatus};
use crate::crypto::Key;
use crate::manifest::{Manifest, PayloadCodec, SortBy};
use crate::msgpack::Value;
use crate::prune::glob::CandidateMatcher;
use crate::repository::{
    CommitOptions, ObjectId, Repository, RepositoryError, LIST_SCAN_LIMIT, MANIFEST_ID,
};

use robust::{serialized_keys, valid_msgpacked_dict, RobustUnpacker};

const TARGET: &str = "borg.check";

/// Borg's `ARCHIVE_KEYS`: what an archive metadata dict may hold.
const ARCHIVE_KEYS: [&str; 19] = [
    "chunker_params",
    "cmdline",
    "comment",
    "csize",
    "csize_parts",
    "cwd",
    "hostname",
    "items",
    "name",
    "nfiles",
    "nfiles_parts",
    "recreate_args",
    "recreate_cmdline",
    "recreate_partial_chunks",
    "recreate_source_id",
    "size",
    "size_parts",
    "time",
    "time_end",
];

/// Borg's `REQUIRED_ARCHIVE_KEYS`.
const REQUIRED_ARCHIVE_KEYS: [&str; 5] = ["cmdline", "items", "name", "time", "version"];

/// How many item chunks are requested together.
const ITEM_FETCH_WINDOW: usize = 64;

/// The item stream of a repaired archive, cut as borg's `ChunkBuffer` (the same buffer `borg
/// create` uses, [`crate::archive::ItemBuffer`]) cuts it: msgpacked items collect in a buffer;
/// once it holds more than [`ITEM_BUFFER_SIZE`] it is cut with the items chunker
/// (`ITEMS_CHUNKER_PARAMS`, seeded with the key's `chunk_seed`) and all but the last piece are
/// stored; the end cuts and stores everything. So a repaired archive's item chunks are the
/// ones borg's `check --repair` writes for the same items.
struct ItemChunker {
    buffer: Vec<u8>,
    seed: i64,
}

impl ItemChunker {
    fn new(key: &Key) -> Self {
        ItemChunker {
            buffer: Vec::new(),
            seed: key.chunk_seed() as i64,
        }
    }

    /// Appends one item; returns the pieces that are ready to be stored.
    fn add(&mut self, item: &Item) -> Vec<Vec<u8>> {
        crate::msgpack::encode_into(&item.to_value(), &mut self.buffer);
        if self.buffer.len() > ITEM_BUFFER_SIZE {
            self.cut(false)
        } else {
            Vec::new()
        }
    }

    /// The remaining pieces (`flush(flush=True)`).
    fn finish(mut self) -> Vec<Vec<u8>> {
        self.cut(true)
    }

    /// `ChunkBuffer.flush`: unless `all`, the last piece stays buffered when there are
    /// several.
    fn cut(&mut self, all: bool) -> Vec<Vec<u8>> {
        if self.buffer.is_empty() {
            return Vec::new();
        }
        let cuts: Vec<usize> = match SliceCuts::new(&self.buffer, self.seed, BuzhashParams::ITEMS) {
            Ok(c) => c.collect(),
            // The items parameters are constants the chunker accepts.
            Err(_) => vec![self.buffer.len()],
        };
        let store = if !all && cuts.len() > 1 {
            cuts.len() - 1
        } else {
            cuts.len()
        };
        let mut pieces = Vec::with_capacity(store);
        let mut offset = 0;
        for &len in &cuts[..store] {
            pieces.push(self.buffer[offset..offset + len].to_vec());
            offset += len;
        }
        self.buffer.drain(..offset);
        pieces
    }
}

/// Why the archive check could not run to its end (problems it finds are not errors).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The repository failed.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// No object could serve to identify the key.
    #[error("Data integrity error: {0}")]
    NoKey(String),
    /// An archive has a metadata version this client does not know.
    #[error("Unknown archive metadata version")]
    UnknownArchiveVersion,
    /// A repaired object could not be encrypted (no counter values).
    #[error(transparent)]
    Nonce(#[from] crate::crypto::nonces::NonceError),
    /// The repaired manifest could not be written.
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
}

impl CheckError {
    /// borg 1.4's modern exit code.
    pub fn exit_code(&self) -> i32 {
        match self {
            CheckError::Repository(e) => e.exit_code(),
            CheckError::NoKey(_) => 90,
            CheckError::UnknownArchiveVersion => 2,
            CheckError::Nonce(e) => e.exit_code(),
            CheckError::Manifest(e) => e.exit_code(),
        }
    }
}

/// Which archives to check and how.
#[derive(Debug, Clone, Default)]
pub struct ArchiveCheckOptions {
    /// Repair what can be repaired.
    pub repair: bool,
    /// Read and verify every object first (`--verify-data`).
    pub verify_data: bool,
    /// Check only this archive (`REPO::ARCHIVE`).
    pub archive: Option<String>,
    /// Only the first N archives (`--first`).
    pub first: Option<usize>,
    /// Only the last N archives (`--last`).
    pub last: Option<usize>,
    /// Only archives matching this glob (`-a`, or `--prefix P` as `P*`).
    pub glob: Option<String>,
    /// Sort order for `--first/--last` (borg's default `ts`).
    pub sort_by: Vec<SortBy>,
    /// Worker threads for `--verify-data` (0: all cores).
    pub threads: usize,
}

/// What the archive check found.
#[derive(Debug, Clone, Default)]
pub struct ArchiveCheckReport {
    /// Whether any problem was found (borg's `error_found`).
    pub error_found: bool,
    /// Archives checked.
    pub archives_checked: usize,
    /// Objects verified by `--verify-data`.
    pub chunks_verified: u64,
    /// Integrity errors found by `--verify-data`.
    pub integrity_errors: usize,
    /// Orphaned objects (only when all archives were checked).
    pub orphans: usize,
    /// Missing file chunks found.
    pub missing_chunks: usize,
    /// Whether the manifest had to be rebuilt.
    pub manifest_rebuilt: bool,
    /// Archives removed from the manifest (damaged or TAM-less).
    pub archives_removed: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    refcount: u32,
}

/// Progress callback: (message id, current, total).
pub type Progress<'a> = &'a mut dyn FnMut(&str, u64, u64);

/// The checker's state for one run.
struct Checker<'a> {
    repository: &'a mut dyn Repository,
    key: &'a Key,
    codec: &'a (dyn PayloadCodec + Sync),
    nonces: &'a mut NonceManager,
    repair: bool,
    chunks: HashMap<ObjectId, Entry>,
    possibly_superseded: HashSet<ObjectId>,
    report: ArchiveCheckReport,
}

/// Lists every object id in the repository (`init_chunks`), in pages of `LIST_SCAN_LIMIT`.
pub fn list_all_ids(repository: &mut dyn Repository) -> Result<Vec<ObjectId>, RepositoryError> {
    let mut out = Vec::new();
    let mut marker: Option<ObjectId> = None;
    loop {
        let page = repository.list(Some(LIST_SCAN_LIMIT), marker.as_ref())?;
        let Some(last) = page.last() else { break };
        marker = Some(*last);
        out.extend(page);
    }
    Ok(out)
}

/// Finds an object whose envelope type byte names a known key type, to identify the key when
/// the manifest is gone (`make_key`: at most 999 attempts).
pub fn find_key_envelope(
    repository: &mut dyn Repository,
    ids: &[ObjectId],
) -> Result<Vec<u8>, CheckError> {
    let mut attempts = 0;
    for id in ids.iter().take(999) {
        attempts += 1;
        let data = repository.get(id)?;
        if data
            .first()
            .is_some_and(|b| crate::crypto::key::KeyType::identify(*b).is_ok())
        {
            return Ok(data);
        }
    }
    Err(CheckError::NoKey(if attempts == 0 {
        "make_key: repository has no chunks at all!".into()
    } else {
        format!("make_key: failed to create the key (tried {attempts} chunks)")
    }))
}

/// Runs the archive check on an open repository with its key. `ids` is the result of
/// [`list_all_ids`]. `nonces` provides counter values for objects written by a repair.
pub fn check_archives(
    repository: &mut dyn Repository,
    key: &Key,
    codec: &(dyn PayloadCodec + Sync),
    nonces: &mut NonceManager,
    ids: Vec<ObjectId>,
    options: &ArchiveCheckOptions,
    progress: Progress<'_>,
) -> Result<(ArchiveCheckReport, Option<Manifest>), CheckError> {
    log::info!(target: TARGET, "Starting archive consistency check...");
    let check_all = options.archive.is_none()
        && options.first.is_none()
        && options.last.is_none()
        && options.glob.is_none();
    let mut c = Checker {
        repository,
        key,
        codec,
        nonces,
        repair: options.repair,
        chunks: ids.into_iter().map(|id| (id, Entry::default())).collect(),
        possibly_superseded: HashSet::new(),
        report: ArchiveCheckReport::default(),
    };
    if c.chunks.is_empty() {
        log::error!(target: TARGET, "Repository contains no apparent data at all, cannot continue check/repair.");
        c.report.error_found = true;
        return Ok((c.report, None));
    }
    if options.verify_data {
        c.verify_data(options.threads, progress)?;
    }
    let mut manifest = if !c.chunks.contains_key(&MANIFEST_ID) {
        log::error!(target: TARGET, "Repository manifest not found!");
        c.report.error_found = true;
        c.rebuild_manifest()?
    } else {
        match Manifest::load(c.repository, key, codec, false) {
            Ok((m, _)) => m,
            Err(e @ crate::manifest::ManifestError::Repository(_)) => return Err(e.into()),
            Err(e) => {
                log::error!(target: TARGET, "Repository manifest is corrupted: {e}");
                c.report.error_found = true;
                c.chunks.remove(&MANIFEST_ID);
                c.rebuild_manifest()?
            }
        }
    };
    c.rebuild_refcounts(&mut manifest, options, progress)?;
    c.orphan_chunks_check(check_all)?;
    if c.repair {
        log::info!(target: TARGET, "Writing Manifest.");
        manifest.write(c.repository, key, c.nonces, codec)?;
        log::info!(target: TARGET, "Committing repo.");
        c.repository.commit(CommitOptions::default())?;
    }
    if c.report.error_found {
        log::error!(target: TARGET, "Archive consistency check complete, problems found.");
    } else {
        log::info!(target: TARGET, "Archive consistency check complete, no problems found.");
    }
    Ok((c.report, Some(manifest)))
}

/// Whether `name` matches `glob` exactly (borg's `Archives.list(glob=...)`, which, unlike
/// prune, does not let a checkpoint suffix follow the glob).
fn glob_matches(m: &CandidateMatcher, name: &str) -> bool {
    if !m.matches(name) {
        return false;
    }
    // The prune matcher also accepts NAME.checkpoint[.N] for a glob matching NAME; a name the
    // glob matches itself still matches with one more checkpoint suffix appended.
    !crate::prune::is_checkpoint_name(name) || m.matches(&format!("{name}.checkpoint"))
}

impl Checker<'_> {
    fn verify_data(&mut self, threads: usize, progress: Progress<'_>) -> Result<(), CheckError> {
        log::info!(target: TARGET, "Starting cryptographic data integrity verification...");
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        let total = self.chunks.len() as u64;
        let all_ids: Vec<ObjectId> = self.chunks.keys().copied().collect();
        let report = verify::verify_data(
            self.repository,
            &all_ids,
            self.key,
            self.codec,
            threads,
            &mut |n| progress("check.verify_data", n, total),
        )?;
        for e in &report.errors {
            log::error!(target: TARGET, "{e}");
        }
        if !report.errors.is_empty() {
            self.report.error_found = true;
        }
        if report.verified != total {
            log::error!(target: TARGET, "Repo/Chunks index object count vs. segment files object count mismatch.");
            log::error!(target: TARGET, "Repo/Chunks index: {total} objects != segment files: {} objects", report.verified);
        }
        if !report.defect.is_empty() {
            if self.repair {
                log::warn!(target: TARGET, "Found defect chunks. They will be deleted now, so affected files can get repaired now and maybe healed later.");
                for id in &report.defect {
                    // A second read may succeed where the first failed (a flaky disk or link).
                    let again = self
                        .repository
                        .get(id)
                        .map_err(|e| e.to_string())
                        .and_then(|env| verify::verify_object(self.key, self.codec, id, &env));
                    if again.is_err() {
                        self.chunks.remove(id);
                        self.repository.delete(id)?;
                        log::debug!(target: TARGET, "chunk {} deleted.", hex::encode(id));
                    } else {
                        log::warn!(target: TARGET, "chunk {} not deleted, did not consistently fail.", hex::encode(id));
                    }
                }
            } else {
                log::warn!(target: TARGET, "Found defect chunks. With --repair, they would get deleted, so affected files could get repaired then and maybe healed later.");
                for id in &report.defect {
                    log::debug!(target: TARGET, "chunk {} is defect.", hex::encode(id));
                }
            }
        }
        let errors = report.errors.len();
        let line = format!(
            "Finished cryptographic data integrity verification, verified {} chunks with {errors} integrity errors.",
            report.verified
        );
        if errors > 0 {
            log::error!(target: TARGET, "{line}");
        } else {
            log::info!(target: TARGET, "{line}");
        }
        self.report.chunks_verified = report.verified;
        self.report.integrity_errors = errors;
        Ok(())
    }

    fn decrypt(&self, id: &ObjectId, envelope: &[u8]) -> Result<Vec<u8>, String> {
        let payload = self
            .key
            .decrypt(Some(id), envelope)
            .map_err(|e| e.to_string())?;
        let plaintext = self
            .codec
            .decompress(&payload)
            .map_err(|e| format!("Data integrity error: Chunk {}: {e}", hex::encode(id)))?;
        self.key
            .assert_id(id, &plaintext)
            .map_err(|e| e.to_string())?;
        Ok(plaintext)
    }

    /// Scans every object for archive metadata and builds a manifest from the ones whose TAM
    /// verifies (`rebuild_manifest`).
    fn rebuild_manifest(&mut self) -> Result<Manifest, CheckError> {
        log::info!(target: TARGET, "Rebuilding missing manifest, this might take some time...");
        self.report.manifest_rebuilt = true;
        let mut manifest = Manifest::new();
        let archive_keys = serialized_keys(ARCHIVE_KEYS.iter().map(|k| k.as_bytes()));
        let mut ids: Vec<ObjectId> = self.chunks.keys().copied().collect();
        ids.sort();
        for id in ids {
            let envelope = self.repository.get(&id)?;
            let data = match self.decrypt(&id, &envelope) {
                Ok(d) => d,
                Err(e) => {
                    log::error!(target: TARGET, "Skipping corrupted chunk: {e}");
                    self.report.error_found = true;
                    continue;
                }
            };
            if !valid_msgpacked_dict(&data, &archive_keys)
                || !contains(&data, b"cmdline")
                || !contains(&data, b"\xa7version\x01")
            {
                continue;
            }
            let Ok(value) = crate::msgpack::decode(&data) else {
                continue;
            };
            if !REQUIRED_ARCHIVE_KEYS.iter().all(|k| value.get(k).is_some()) {
                continue;
            }
            let dict = match self
                .key
                .unpack_and_verify_archive(&data, self.key.tam_required())
            {
                Ok((d, _)) => d,
                Err(e) => {
                    let name = value
                        .get("name")
                        .and_then(Value::as_bytes)
                        .map_or("<unknown>".into(), |b| {
                            String::from_utf8_lossy(b).into_owned()
                        });
                    log::error!(target: TARGET, "Archive TAM authentication issue for archive {name}: {e}");
                    log::error!(target: TARGET, "This archive will *not* be added to the rebuilt manifest! It will be deleted.");
                    self.report.error_found = true;
                    continue;
                }
            };
            let name = dict
                .get("name")
                .and_then(Value::as_bytes)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            let time = dict
                .get("time")
                .and_then(Value::as_bytes)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            log::info!(target: TARGET, "Found archive {name}");
            let mut stored = name.clone();
            if manifest.archive(&name).is_some() {
                let mut i = 1;
                while manifest.archive(&format!("{name}.{i}")).is_some() {
                    i += 1;
                }
                stored = format!("{name}.{i}");
                log::warn!(target: TARGET, "Duplicate archive name {name}, storing as {stored}");
            }
            manifest.add_archive(&stored, id, &time)?;
        }
        log::info!(target: TARGET, "Manifest rebuild complete.");
        if !self.repair {
            log::warn!(target: TARGET, "The rebuilt manifest will only be committed when using --repair!");
        }
        Ok(manifest)
    }

    fn mark_as_possibly_superseded(&mut self, id: &ObjectId) {
        if self.chunks.get(id).map_or(0, |e| e.refcount) == 0 {
            self.possibly_superseded.insert(*id);
        }
    }

    /// Adds a reference; a new object is stored when repairing (`add_reference`).
    fn add_reference(
        &mut self,
        id: ObjectId,
        size: u64,
        csize: u64,
        envelope: Option<Vec<u8>>,
    ) -> Result<(), CheckError> {
        if let Some(e) = self.chunks.get_mut(&id) {
            e.refcount = e.refcount.saturating_add(1).min(crate::cache::MAX_REFCOUNT);
            return Ok(());
        }
        // Sizes matter to borg's chunk index only; the check needs the count.
        let _ = (size, csize);
        self.chunks.insert(id, Entry { refcount: 1 });
        if self.repair {
            if let Some(envelope) = envelope {
                self.repository.put(&id, envelope)?;
            }
        }
        Ok(())
    }

    /// Compresses and encrypts new plaintext; outside repair mode nothing is encrypted (no
    /// counter values are spent) and only the size is computed.
    fn seal(&mut self, plaintext: &[u8]) -> Result<(usize, Option<Vec<u8>>), CheckError> {
        let payload = self.codec.compress(plaintext);
        if !self.repair {
            return Ok((payload.len() + self.key.envelope_overhead(), None));
        }
        let envelope = self
            .key
            .encrypt_next(self.nonces, self.repository, &payload)?;
        Ok((envelope.len(), Some(envelope)))
    }

    fn replacement_chunk(&mut self, size: u64) -> Result<(ChunkRef, Option<Vec<u8>>), CheckError> {
        let zeros = vec![0u8; size as usize];
        let id = self.key.id_hash(&zeros);
        let (csize, envelope) = self.seal(&zeros)?;
        Ok((
            ChunkRef {
                id,
                size,
                csize: csize as u64,
            },
            envelope,
        ))
    }

    /// Checks an item's chunks exist, replacing missing ones by all-zero chunks and healing
    /// files whose original chunks reappeared (`verify_file_chunks`). Returns whether the item
    /// changed.
    fn verify_file_chunks(&mut self, archive: &str, item: &mut Item) -> Result<bool, CheckError> {
        let path = String::from_utf8_lossy(&item.path).into_owned();
        let current = item.chunks.clone().unwrap_or_default();
        let mut has_healthy = item.chunks_healthy.is_some();
        let mut changed = false;
        let mut healthy = item
            .chunks_healthy
            .clone()
            .unwrap_or_else(|| current.clone());
        if has_healthy && healthy.len() != current.len() {
            let msg = if self.repair {
                "Invalid chunks_healthy metadata removed!"
            } else {
                "Invalid chunks_healthy metadata would be removed with --repair!"
            };
            log::warn!(target: TARGET, "{archive}: {path}: {msg}");
            item.chunks_healthy = None;
            has_healthy = false;
            changed = true;
            healthy = current.clone();
        }
        let mut offset = 0u64;
        let mut list = Vec::with_capacity(current.len());
        let mut replaced = false;
        for (cur, good) in current.iter().zip(healthy.iter()) {
            let (a, b) = (offset, offset + good.size);
            let chosen = if !self.chunks.contains_key(&good.id) {
                if cur == good {
                    let msg = if self.repair {
                        "Replacing with all-zero chunk."
                    } else {
                        "Would replace it with all-zero chunk with --repair."
                    };
                    log::error!(target: TARGET, "{archive}: {path}: New missing file chunk detected (Byte {a}-{b}, Chunk {}). {msg}", hex::encode(good.id));
                    self.report.error_found = true;
                    self.report.missing_chunks += 1;
                    replaced = true;
                    let (r, env) = self.replacement_chunk(good.size)?;
                    self.add_reference(r.id, r.size, r.csize, env)?;
                    r
                } else {
                    log::info!(target: TARGET, "{archive}: {path}: Previously missing file chunk is still missing (Byte {a}-{b}, Chunk {}). It has an all-zero replacement chunk already.", hex::encode(good.id));
                    if self.chunks.contains_key(&cur.id) {
                        self.add_reference(cur.id, cur.size, cur.csize, None)?;
                        *cur
                    } else {
                        let msg = if self.repair {
                            "Generating new replacement chunk."
                        } else {
                            "Would generate new replacement chunk with --repair."
                        };
                        log::warn!(target: TARGET, "{archive}: {path}: Missing all-zero replacement chunk detected (Byte {a}-{b}, Chunk {}). {msg}", hex::encode(cur.id));
                        self.report.error_found = true;
                        replaced = true;
                        let (r, env) = self.replacement_chunk(good.size)?;
                        self.add_reference(r.id, r.size, r.csize, env)?;
                        r
                    }
                }
            } else {
                if cur != good {
                    let msg = if self.repair {
                        "Healed previously missing file chunk!"
                    } else {
                        "Missing file chunk would be healed with --repair!"
                    };
                    log::info!(target: TARGET, "{archive}: {path}: {msg} (Byte {a}-{b}, Chunk {})", hex::encode(good.id));
                    self.mark_as_possibly_superseded(&cur.id);
                }
                self.add_reference(good.id, good.size, good.csize, None)?;
                *good
            };
            list.push(chosen);
            offset += good.size;
        }
        if replaced && !has_healthy {
            item.chunks_healthy = Some(current.clone());
        }
        if has_healthy && list == healthy {
            let msg = if self.repair {
                "Completely healed previously damaged file!"
            } else {
                "Would completely heal damaged file with --repair!"
            };
            log::info!(target: TARGET, "{archive}: {path}: {msg}");
            item.chunks_healthy = None;
            changed = true;
        }
        if list != current {
            changed = true;
        }
        item.chunks = Some(list);
        if let Some(size) = item.size {
            let from_chunks: u64 = item.chunks.iter().flatten().map(|c| c.size).sum();
            if size != from_chunks {
                log::warn!(target: TARGET, "{archive}: {path}: size inconsistency detected: size {size}, chunks size {from_chunks}");
            }
        }
        Ok(changed || replaced)
    }

    /// Reads an archive's items with borg's robust iterator. Returns the valid items and
    /// whether anything was lost on the way.
    fn read_items(
        &mut self,
        item_ids: &[ObjectId],
        keys_serialized: &[Vec<u8>],
        item_keys: &HashSet<Vec<u8>>,
    ) -> Result<(Vec<Item>, bool), CheckError> {
        let mut unpacker = RobustUnpacker::new(keys_serialized.to_vec());
        let mut items = Vec::new();
        let mut damaged = false;
        let mut previous_missing = false;
        let report = |this: &mut Self, msg: &str, id: &ObjectId, no: usize| {
            this.report.error_found = true;
            log::error!(target: TARGET, "{msg} [chunk: {no:06}_{}]", hex::encode(id));
        };
        // Item chunks are fetched a window at a time with the pipelined `get_many` (borg reads
        // them through `get_many` too), so a remote check is not one round trip per chunk.
        let mut fetched: HashMap<usize, Vec<u8>> = HashMap::new();
        for (no, id) in item_ids.iter().enumerate() {
            if no % ITEM_FETCH_WINDOW == 0 {
                let window: Vec<(usize, ObjectId)> = item_ids
                    [no..(no + ITEM_FETCH_WINDOW).min(item_ids.len())]
                    .iter()
                    .enumerate()
                    .filter(|(_, id)| self.chunks.contains_key(*id))
                    .map(|(i, id)| (no + i, *id))
                    .collect();
                let ids: Vec<ObjectId> = window.iter().map(|(_, id)| *id).collect();
                fetched.clear();
                self.repository.get_many(&ids, &mut |i, data| {
                    fetched.insert(window[i].0, data);
                    Ok(())
                })?;
            }
            let missing = !self.chunks.contains_key(id);
            if missing {
                report(self, "item metadata chunk missing", id, no);
                damaged = true;
                previous_missing = true;
                continue;
            }
            if previous_missing {
                // The stream lost bytes: look for the next item start (borg resyncs when a
                // present group of item chunks follows a missing one).
                unpacker.resync();
            }
            previous_missing = false;
            let Some(envelope) = fetched.remove(&no) else {
                return Err(CheckError::Repository(RepositoryError::ObjectNotFound {
                    id: hex::encode(id),
                    path: String::new(),
                }));
            };
            let data = match self.decrypt(id, &envelope) {
                Ok(d) => d,
                Err(e) => {
                    report(self, &e, id, no);
                    damaged = true;
                    continue;
                }
            };
            unpacker.feed(&data);
            loop {
                match unpacker.next_value() {
                    Ok(Some(mut v)) => {
                        v.remove("acl");
                        match valid_item(&v, item_keys) {
                            Ok(item) => items.push(item),
                            Err(reason) => {
                                report(self, &format!("Did not get expected metadata dict when unpacking item metadata ({reason})"), id, no);
                                damaged = true;
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        report(
                            self,
                            "Unpacker crashed while unpacking item metadata, trying to resync...",
                            id,
                            no,
                        );
                        damaged = true;
                        unpacker.resync();
                        break;
                    }
                }
            }
        }
        Ok((items, damaged))
    }

    fn rebuild_refcounts(
        &mut self,
        manifest: &mut Manifest,
        options: &ArchiveCheckOptions,
        progress: Progress<'_>,
    ) -> Result<(), CheckError> {
        self.chunks.remove(&MANIFEST_ID);
        let sort_by = if options.sort_by.is_empty() {
            vec![SortBy::Timestamp]
        } else {
            options.sort_by.clone()
        };
        let selected: Vec<(String, ObjectId, String)> = if let Some(name) = &options.archive {
            match manifest.archive(name) {
                Some(e) => vec![(name.clone(), e.id, e.time.clone())],
                None => {
                    log::error!(target: TARGET, "Archive '{name}' not found.");
                    self.report.error_found = true;
                    return Ok(());
                }
            }
        } else {
            let matcher = match &options.glob {
                Some(g) => Some(CandidateMatcher::new(g).map_err(|e| {
                    CheckError::Repository(RepositoryError::Transport(format!(
                        "--glob-archives: {e}"
                    )))
                })?),
                None => None,
            };
            let mut all: Vec<(String, ObjectId, String)> = manifest
                .list(&sort_by, true, None, None, false)
                .into_iter()
                .filter(|(n, _)| matcher.as_ref().map_or(true, |m| glob_matches(m, n)))
                .map(|(n, e)| (n, e.id, e.time.clone()))
                .collect();
            if let Some(n) = options.first {
                all.truncate(n);
            } else if let Some(n) = options.last {
                let skip = all.len().saturating_sub(n);
                all.drain(..skip);
            }
            if let Some(g) = &options.glob {
                if all.is_empty() {
                    log::warn!(target: TARGET, "--glob-archives {g} does not match any archives");
                }
            }
            if let Some(n) = options.first.filter(|n| all.len() < *n) {
                log::warn!(target: TARGET, "--first {n} archives: only found {} archives", all.len());
            }
            if let Some(n) = options.last.filter(|n| all.len() < *n) {
                log::warn!(target: TARGET, "--last {n} archives: only found {} archives", all.len());
            }
            all
        };
        let item_keys: HashSet<Vec<u8>> = manifest.item_keys.iter().cloned().collect();
        let keys_serialized = serialized_keys(manifest.item_keys.iter().map(Vec::as_slice));
        let total = selected.len();
        for (i, (name, archive_id, ts)) in selected.into_iter().enumerate() {
            progress("check.rebuild_refcounts", i as u64, total as u64);
            log::info!(target: TARGET, "Analyzing archive {name} ({}/{total})", i + 1);
            self.report.archives_checked += 1;
            if !self.chunks.contains_key(&archive_id) {
                log::error!(target: TARGET, "Archive metadata block {} is missing!", hex::encode(archive_id));
                self.report.error_found = true;
                self.remove_archive(manifest, &name);
                continue;
            }
            self.mark_as_possibly_superseded(&archive_id);
            let envelope = self.repository.get(&archive_id)?;
            let data = match self.decrypt(&archive_id, &envelope) {
                Ok(d) => d,
                Err(e) => {
                    log::error!(target: TARGET, "Archive metadata block {} is corrupted: {e}", hex::encode(archive_id));
                    self.report.error_found = true;
                    self.remove_archive(manifest, &name);
                    continue;
                }
            };
            let (mut dict, status) = match self
                .key
                .unpack_and_verify_archive(&data, self.key.tam_required())
            {
                Ok(r) => r,
                Err(e) => {
                    log::error!(target: TARGET, "Archive TAM authentication issue for archive {name}: {e}");
                    log::error!(target: TARGET, "{}", if self.repair {
                        "This archive will be *removed* from the manifest! It will be deleted."
                    } else {
                        "This archive would be *removed* / *deleted* when using --repair!"
                    });
                    self.report.error_found = true;
                    self.remove_archive(manifest, &name);
                    continue;
                }
            };
            if dict.get("version").and_then(Value::as_u64) != Some(1) {
                return Err(CheckError::UnknownArchiveVersion);
            }
            let item_ids: Vec<ObjectId> = dict
                .get("items")
                .and_then(Value::as_array)
                .unwrap_or_default()
                .iter()
                .filter_map(|v| v.as_bytes().and_then(|b| b.try_into().ok()))
                .collect();
            let (mut items, mut changed) =
                self.read_items(&item_ids, &keys_serialized, &item_keys)?;
            for item in items.iter_mut() {
                if item.chunks.is_some() && self.verify_file_chunks(&name, item)? {
                    changed = true;
                }
            }
            if !changed {
                // The items re-serialize to the same stream, so the same item chunks and the
                // same archive id (borg's rewrite is then a no-op).
                for id in &item_ids {
                    self.add_reference(*id, 0, 0, None)?;
                }
                self.add_reference(archive_id, data.len() as u64, envelope.len() as u64, None)?;
                continue;
            }
            let mut chunker = ItemChunker::new(self.key);
            let mut new_item_ids = Vec::new();
            for item in &items {
                for piece in chunker.add(item) {
                    new_item_ids.push(self.write_item_piece(&piece)?);
                }
            }
            for piece in chunker.finish() {
                new_item_ids.push(self.write_item_piece(&piece)?);
            }
            for id in &item_ids {
                self.mark_as_possibly_superseded(id);
            }
            dict.insert(
                "items",
                Value::Array(new_item_ids.iter().map(|id| Value::bytes(id)).collect()),
            );
            let salt: [u8; 64] = match &status {
                TamStatus::Verified { salt } => salt.as_slice().try_into().unwrap_or([0; 64]),
                TamStatus::NotVerified => {
                    let mut s = [0u8; 64];
                    crate::crypto::key::fill_random(&mut s)
                        .map_err(|e| CheckError::NoKey(e.to_string()))?;
                    s
                }
            };
            let packed =
                self.key
                    .pack_and_authenticate_with_salt(&dict, TamContext::Archive, &salt);
            let new_id = self.key.id_hash(&packed);
            let (csize, env) = self.seal(&packed)?;
            self.add_reference(new_id, packed.len() as u64, csize as u64, env)?;
            manifest.archives.insert(
                name.as_bytes().to_vec(),
                crate::manifest::ArchiveEntry {
                    id: new_id,
                    time: ts,
                },
            );
        }
        progress("check.rebuild_refcounts", total as u64, total as u64);
        Ok(())
    }

    /// Stores one piece of a rewritten item stream (borg's `add_callback`); returns its id.
    fn write_item_piece(&mut self, piece: &[u8]) -> Result<ObjectId, CheckError> {
        let id = self.key.id_hash(piece);
        let (csize, env) = self.seal(piece)?;
        self.add_reference(id, piece.len() as u64, csize as u64, env)?;
        Ok(id)
    }

    fn remove_archive(&mut self, manifest: &mut Manifest, name: &str) {
        manifest.archives.remove(name.as_bytes());
        self.report.archives_removed.push(name.to_string());
    }

    fn orphan_chunks_check(&mut self, check_all: bool) -> Result<(), CheckError> {
        if !check_all {
            log::info!(target: TARGET, "Orphaned objects check skipped (needs all archives checked).");
            return Ok(());
        }
        let unused: Vec<ObjectId> = self
            .chunks
            .iter()
            .filter(|(_, e)| e.refcount == 0)
            .map(|(id, _)| *id)
            .collect();
        let orphaned = unused
            .iter()
            .filter(|id| !self.possibly_superseded.contains(*id))
            .count();
        if orphaned > 0 {
            log::error!(target: TARGET, "{orphaned} orphaned objects found!");
            self.report.error_found = true;
            self.report.orphans = orphaned;
        }
        if self.repair && !unused.is_empty() {
            log::info!(target: TARGET, "Deleting {orphaned} orphaned and {} superseded objects...", self.possibly_superseded.len());
            for id in &unused {
                self.repository.delete(id)?;
            }
            log::info!(target: TARGET, "Finished deleting orphaned/superseded objects.");
        }
        Ok(())
    }
}

/// Borg's item validation in the check (`valid_item`): a dict with `path` and `mtime` and only
/// known keys.
fn valid_item(v: &Value, item_keys: &HashSet<Vec<u8>>) -> Result<Item, String> {
    let Some(pairs) = v.as_map() else {
        return Err("not a dictionary".into());
    };
    let keys: Vec<&[u8]> = pairs.iter().filter_map(|(k, _)| k.as_bytes()).collect();
    let missing: Vec<&str> = ["mtime", "path"]
        .into_iter()
        .filter(|r| !keys.contains(&r.as_bytes()))
        .collect();
    if !missing.is_empty() {
        return Err(format!("missing required keys: {}", missing.join(", ")));
    }
    let invalid: Vec<String> = keys
        .iter()
        .filter(|k| !item_keys.contains(**k))
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    if !invalid.is_empty() {
        return Err(format!("invalid keys: {}", invalid.join(", ")));
    }
    Item::from_value(v).map_err(|e| e.to_string())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_glob_excludes_checkpoint_suffix_matches() {
        let m = CandidateMatcher::new("foo").unwrap();
        assert!(glob_matches(&m, "foo"));
        assert!(!glob_matches(&m, "foo.checkpoint"));
        let m = CandidateMatcher::new("foo*").unwrap();
        assert!(glob_matches(&m, "foo.checkpoint"));
        assert!(glob_matches(&m, "foobar"));
    }

    #[test]
    fn item_validation_follows_borg() {
        let keys: HashSet<Vec<u8>> = crate::archive::ITEM_KEYS
            .iter()
            .map(|k| k.as_bytes().to_vec())
            .collect();
        let ok = Value::map([("path", Value::str("a")), ("mtime", Value::from(1))]);
        assert!(valid_item(&ok, &keys).is_ok());
        let no_mtime = Value::map([("path", Value::str("a"))]);
        assert_eq!(
            valid_item(&no_mtime, &keys).unwrap_err(),
            "missing required keys: mtime"
        );
        let odd = Value::map([
            ("path", Value::str("a")),
            ("mtime", Value::from(1)),
            ("zzz", Value::from(1)),
        ]);
        assert_eq!(valid_item(&odd, &keys).unwrap_err(), "invalid keys: zzz");
        assert_eq!(
            valid_item(&Value::from(3), &keys).unwrap_err(),
            "not a dictionary"
        );
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod checker_tests;
