//! rborg's native local repository, in borg 1.x's on-disk format (borg's `repository.py`).
//!
//! The layout (`README`, `config`, `data/<dir>/<segment>`, `index.T`, `hints.T`,
//! `integrity.T`, `nonce`, `lock.*`, `transactions`) is documented in
//! `docs/repository-format.md`. Each file format has its own module; this one holds the
//! transaction logic that ties them together:
//!
//! * the first `put`/`delete` starts a transaction: segments after the last commit are
//!   deleted and the hints of the last commit are loaded (`prepare_txn`);
//! * `commit` writes a COMMIT into a segment of its own, optionally compacts, then writes
//!   hints, index and integrity data atomically (`write_index`);
//! * opening a repository whose index is missing, stale or damaged replays the committed
//!   segments (`check_transaction`, `replay_segments`).

mod check;
pub mod config;
pub mod hashindex;
pub mod hints;
pub mod integrity;
pub mod lock;
pub mod logged_io;
pub mod ordered;
pub mod segment;
#[cfg(test)]
mod tests;

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use self::config::{format_file_size, parse_bool, parse_file_size, parse_int, IniFile};
use self::hashindex::NsIndex;
use self::hints::Hints;
use self::integrity::{Algorithm, Expected, IntegrityFileError};
use self::lock::Lock;
use self::logged_io::{save_file, sync_dir, LoggedIo};
use self::ordered::OrderedMap;
use self::segment::{ATTIC_MAGIC, HEADER_SIZE, MAX_OBJECT_SIZE, PUT_HEADER_SIZE, TAG_COMMIT};
use self::segment::{TAG_DELETE, TAG_PUT};
use super::{CommitOptions, ObjectId, OpenOptions, Repository, RepositoryError};

/// The `README` borg writes into every repository.
pub const REPOSITORY_README: &str =
    "This is a Borg Backup repository.\nSee https://borgbackup.readthedocs.io/\n";
/// Default `segments_per_dir`.
pub const DEFAULT_SEGMENTS_PER_DIR: u64 = 1000;
/// Default `max_segment_size` (500 MiB).
pub const DEFAULT_MAX_SEGMENT_SIZE: u64 = 500 * 1024 * 1024;
/// `max_segment_size` must stay below this (`MAX_SEGMENT_SIZE_LIMIT`).
pub const MAX_SEGMENT_SIZE_LIMIT: u64 = (1 << 32) - MAX_OBJECT_SIZE as u64;

/// Settings of the local repository that come from the environment or the command line,
/// read once by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalSettings {
    /// The host part of lock ids (`BORG_HOST_ID`, else `<fqdn>@<node>`).
    pub host_id: String,
    /// A storage quota overriding the config's (`borg serve --storage-quota`).
    pub storage_quota: Option<u64>,
    /// `max_segment_size` and `segments_per_dir` for a new repository (borg's defaults when
    /// `None`; tests use small segments to exercise rollover).
    pub new_segment_limits: Option<(u64, u64)>,
}

impl LocalSettings {
    /// Settings from the environment: `BORG_HOST_ID`, else borg's computed host id.
    pub fn from_env(env: &crate::settings::Environment) -> LocalSettings {
        let host_id = env
            .get("BORG_HOST_ID")
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .unwrap_or_else(lock::default_host_id);
        LocalSettings {
            host_id,
            storage_quota: None,
            new_segment_limits: None,
        }
    }
}

fn io_err(context: impl Into<String>, e: io::Error) -> RepositoryError {
    RepositoryError::io(context, e)
}

/// An error of the kind borg raises as a plain Python exception (`ValueError`,
/// `AssertionError`, `Exception`).
fn python_error(class: &str, message: impl Into<String>) -> RepositoryError {
    RepositoryError::Remote {
        class: class.to_string(),
        message: message.into(),
    }
}

/// Whether `path` holds a borg repository (`Repository.is_repository`).
pub fn is_repository(path: &Path) -> bool {
    let Ok(bytes) = fs::read(path.join("README")) else {
        return false;
    };
    let head = &bytes[..bytes.len().min(100)];
    let has = |needle: &[u8]| head.windows(needle.len()).any(|w| w == needle);
    has(b"Borg Backup repository") || has(b"Borg repository")
}

/// Why the committed index/hints could not be used.
#[derive(Debug)]
enum LoadError {
    Missing,
    Broken(String),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Missing => write!(f, "file missing"),
            LoadError::Broken(why) => write!(f, "{why}"),
        }
    }
}

/// A borg 1.x repository on a local path.
pub struct LocalRepository {
    path: PathBuf,
    path_str: String,
    config: IniFile,
    id: ObjectId,
    append_only: bool,
    storage_quota: u64,
    additional_free_space: u64,
    max_segment_size: u64,
    lock: Option<Lock>,
    /// The opener passed borg's `exclusive=None`: upgrade a shared lock when a transaction
    /// starts instead of refusing the write.
    upgrade_lock: bool,
    io: Option<LoggedIo>,
    index: Option<NsIndex>,
    active_txn: bool,
    /// Whether a transaction was ever prepared on this handle; borg's `Repository` only has
    /// its `segments` attribute from then on, which decides how a bare `commit` fails.
    txn_prepared: bool,
    segments: OrderedMap<u64, i64>,
    compact: OrderedMap<u64, u64>,
    storage_quota_use: u64,
    shadow_index: OrderedMap<ObjectId, Vec<u64>>,
    transaction_doomed: Option<(String, String)>,
    created: bool,
}

impl std::fmt::Debug for LocalRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LocalRepository({})", self.path_str)
    }
}

impl LocalRepository {
    /// Creates a new repository at `path` (`borg init`) and opens it with `options`.
    pub fn create(
        path: &Path,
        options: &OpenOptions,
        settings: &LocalSettings,
    ) -> Result<LocalRepository, RepositoryError> {
        let shown = path.display().to_string();
        check_can_create_repository(path)?;
        if options.make_parent_dirs {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)
                    .map_err(|e| io_err(format!("create {}", parent.display()), e))?;
            }
        }
        if !path.exists() {
            fs::create_dir(path).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => RepositoryError::ParentPathDoesNotExist(shown.clone()),
                io::ErrorKind::PermissionDenied => {
                    RepositoryError::PathPermissionDenied(shown.clone())
                }
                _ => io_err(format!("create {shown}"), e),
            })?;
        }
        fs::write(path.join("README"), REPOSITORY_README)
            .map_err(|e| io_err(format!("write {shown}/README"), e))?;
        fs::create_dir(path.join("data")).map_err(|e| io_err(format!("create {shown}/data"), e))?;
        let (max_segment_size, segments_per_dir) = settings
            .new_segment_limits
            .unwrap_or((DEFAULT_MAX_SEGMENT_SIZE, DEFAULT_SEGMENTS_PER_DIR));
        let mut id = [0u8; 32];
        getrandom::fill(&mut id)
            .map_err(|e| io_err("random repository id", io::Error::other(e.to_string())))?;
        let mut config = IniFile::default();
        let r = "repository";
        config.set(r, "version", "1");
        config.set(r, "segments_per_dir", &segments_per_dir.to_string());
        config.set(r, "max_segment_size", &max_segment_size.to_string());
        config.set(
            r,
            "append_only",
            if options.append_only { "1" } else { "0" },
        );
        config.set(
            r,
            "storage_quota",
            &settings.storage_quota.unwrap_or(0).to_string(),
        );
        config.set(r, "additional_free_space", "0");
        config.set(r, "id", &hex::encode(id));
        save_config(path, &config)?;
        let mut repo = LocalRepository::open(path, options, settings)?;
        repo.created = true;
        Ok(repo)
    }

    /// Opens the repository at `path`, taking the lock `options` asks for. With
    /// `options.create` this creates it first.
    pub fn open(
        path: &Path,
        options: &OpenOptions,
        settings: &LocalSettings,
    ) -> Result<LocalRepository, RepositoryError> {
        if options.create {
            let mut plain = options.clone();
            plain.create = false;
            return LocalRepository::create(path, &plain, settings);
        }
        let shown = path.display().to_string();
        let meta = fs::metadata(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => RepositoryError::DoesNotExist(shown.clone()),
            io::ErrorKind::PermissionDenied => RepositoryError::PathPermissionDenied(shown.clone()),
            _ => io_err(format!("stat {shown}"), e),
        })?;
        if !meta.is_dir() {
            return Err(RepositoryError::InvalidRepository(shown));
        }
        let mut lock = None;
        if options.lock {
            let mut l = Lock::new(
                path,
                &settings.host_id,
                options.exclusive,
                options.lock_wait,
            );
            l.acquire()?;
            lock = Some(l);
        }
        // From here on the lock is released by Drop if anything fails.
        let bad_config = |reason: String| RepositoryError::InvalidRepositoryConfig {
            path: shown.clone(),
            reason,
        };
        let text = match fs::read_to_string(path.join("config")) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(RepositoryError::InvalidRepository(shown));
            }
            Err(e) => return Err(io_err(format!("read {shown}/config"), e)),
        };
        let config = IniFile::parse(&text).map_err(|e| bad_config(e.to_string()))?;
        let r = "repository";
        if !config.has_section(r) {
            return Err(bad_config("no repository section found".into()));
        }
        let get = |key: &str| {
            config
                .get(r, key)
                .ok_or_else(|| bad_config(format!("no option {key:?}")))
        };
        let version =
            parse_int("version", get("version")?).map_err(|e| bad_config(e.to_string()))?;
        if version != 1 {
            return Err(bad_config(format!(
                "repository version {version} is not supported by this borg version"
            )));
        }
        let max_segment_size = parse_file_size("max_segment_size", get("max_segment_size")?)
            .map_err(|e| bad_config(e.to_string()))?;
        if max_segment_size >= MAX_SEGMENT_SIZE_LIMIT {
            return Err(bad_config(format!(
                "max_segment_size >= {MAX_SEGMENT_SIZE_LIMIT}"
            )));
        }
        let segments_per_dir = parse_int("segments_per_dir", get("segments_per_dir")?)
            .map_err(|e| bad_config(e.to_string()))?;
        let segments_per_dir =
            u64::try_from(segments_per_dir).map_err(|_| bad_config("segments_per_dir".into()))?;
        let fallback = |key: &str| config.get(r, key).unwrap_or("0");
        let additional_free_space =
            parse_file_size("additional_free_space", fallback("additional_free_space"))
                .map_err(|e| bad_config(e.to_string()))?;
        let append_only = options.append_only
            || parse_bool("append_only", fallback("append_only"))
                .map_err(|e| bad_config(e.to_string()))?;
        let storage_quota = match settings.storage_quota {
            Some(q) => q,
            None => parse_file_size("storage_quota", fallback("storage_quota"))
                .map_err(|e| bad_config(e.to_string()))?,
        };
        let id_hex = get("id")?.trim();
        let id: ObjectId = hex::decode(id_hex)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad_config(format!("invalid repository id {id_hex:?}")))?;
        let mut io = LoggedIo::new(path, max_segment_size, segments_per_dir);
        if let Some(latest) = io.latest_segment() {
            if io.segment_magic(latest).ok().as_ref() == Some(ATTIC_MAGIC) {
                return Err(RepositoryError::AtticRepository(shown));
            }
        }
        Ok(LocalRepository {
            path: path.to_path_buf(),
            path_str: shown,
            config,
            id,
            append_only,
            storage_quota,
            additional_free_space,
            max_segment_size,
            lock,
            upgrade_lock: options.upgrade_lock && !options.exclusive,
            io: Some(io),
            index: None,
            active_txn: false,
            txn_prepared: false,
            segments: OrderedMap::default(),
            compact: OrderedMap::default(),
            storage_quota_use: 0,
            shadow_index: OrderedMap::default(),
            transaction_doomed: None,
            created: false,
        })
    }

    /// The repository directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the repository is in append-only mode.
    pub fn append_only(&self) -> bool {
        self.append_only
    }

    fn io(&mut self) -> Result<&mut LoggedIo, RepositoryError> {
        let path = self.path_str.clone();
        self.io
            .as_mut()
            .ok_or_else(|| python_error("Error", format!("repository {path} is closed")))
    }

    fn not_found(&self, id: &ObjectId) -> RepositoryError {
        RepositoryError::ObjectNotFound {
            id: hex::encode(id),
            path: self.path_str.clone(),
        }
    }

    /// The largest N of a non-empty `index.N` (`get_index_transaction_id`).
    fn index_transaction_id(&self) -> Option<u64> {
        let rd = fs::read_dir(&self.path).ok()?;
        rd.flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let n = name.strip_prefix("index.")?;
                if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let len = e.metadata().ok()?.len();
                (len != 0).then(|| n.parse().ok()).flatten()
            })
            .max()
    }

    /// Replays segments when the index lags behind the segments (`check_transaction`).
    fn check_transaction(&mut self) -> Result<(), RepositoryError> {
        let index_tid = self.index_transaction_id();
        let segments_tid = self.io()?.segments_transaction_id();
        match (index_tid, segments_tid) {
            (Some(_), None) => Err(RepositoryError::CheckNeeded(format!(
                "{}\" - although likely this is \"beyond repair",
                self.path_str
            ))),
            (i, Some(s)) if i != Some(s) => {
                let from = match i {
                    Some(i) if i > s => None,
                    other => other,
                };
                self.replay_segments(from, s)
            }
            _ => Ok(()),
        }
    }

    /// The committed transaction id, after any needed replay (`get_transaction_id`).
    fn transaction_id(&mut self) -> Result<Option<u64>, RepositoryError> {
        self.check_transaction()?;
        Ok(self.index_transaction_id())
    }

    fn read_integrity(&self, tid: u64, key: &str) -> Result<Option<Expected>, LoadError> {
        let path = self.path.join(format!("integrity.{tid}"));
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LoadError::Broken(e.to_string())),
        };
        let json = integrity::read_integrity_entry(&bytes, key)
            .map_err(|e| LoadError::Broken(e.to_string()))?;
        match json {
            None => {
                log::warn!("Unknown integrity data version in integrity.{tid}");
                Ok(None)
            }
            Some(j) => integrity::parse_digests_json(&format!("{key}.{tid}"), &j)
                .map(Some)
                .map_err(|e| LoadError::Broken(e.to_string())),
        }
    }

    fn read_checked(
        &self,
        name: &str,
        tid: u64,
        key: &str,
        header_part: Option<(&str, usize)>,
    ) -> Result<Vec<u8>, LoadError> {
        let path = self.path.join(name);
        let expected = self.read_integrity(tid, key)?;
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(LoadError::Missing),
            Err(e) => return Err(LoadError::Broken(e.to_string())),
        };
        match expected {
            Some(Expected::Digests(algorithm, digests)) => {
                let computed = integrity::file_digests(algorithm, name, &bytes, header_part);
                integrity::verify(&path.display().to_string(), &digests, &computed)
                    .map_err(|e: IntegrityFileError| LoadError::Broken(e.to_string()))?;
            }
            Some(Expected::Unverifiable(alg)) => {
                log::warn!("Cannot verify integrity of {name}: Unknown algorithm {alg:?}");
            }
            None => {}
        }
        Ok(bytes)
    }

    /// Reads `index.tid` with its integrity check (`open_index` without recovery).
    fn load_index(&self, tid: u64) -> Result<NsIndex, LoadError> {
        let name = format!("index.{tid}");
        let bytes = self.read_checked(&name, tid, "index", Some(("HashHeader", 18)))?;
        NsIndex::read(&bytes).map_err(|e| LoadError::Broken(e.to_string()))
    }

    fn load_hints(&self, tid: u64) -> Result<Hints, LoadError> {
        let name = format!("hints.{tid}");
        let bytes = self.read_checked(&name, tid, "hints", None)?;
        Hints::decode(&bytes).map_err(|e| LoadError::Broken(e.to_string()))
    }

    fn remove_aux(&self, name: &str) {
        let _ = fs::remove_file(self.path.join(name));
    }

    /// Makes sure the committed index is loaded, replaying segments if it is missing or
    /// damaged (`open_index` with auto-recovery).
    fn ensure_index(&mut self) -> Result<(), RepositoryError> {
        if self.index.is_some() {
            return Ok(());
        }
        let Some(tid) = self.transaction_id()? else {
            self.index = Some(NsIndex::default());
            return Ok(());
        };
        match self.load_index(tid) {
            Ok(index) => {
                self.index = Some(index);
                Ok(())
            }
            Err(e) => {
                log::warn!("Repository index missing or corrupted, trying to recover from: {e}");
                self.remove_aux(&format!("index.{tid}"));
                let segments_tid = self.io()?.segments_transaction_id();
                match segments_tid {
                    Some(s) => self.replay_segments(None, s)?,
                    None => {
                        return Err(RepositoryError::CheckNeeded(self.path_str.clone()));
                    }
                }
                let tid = self.index_transaction_id().unwrap_or(tid);
                let index = self.load_index(tid).map_err(|e| {
                    RepositoryError::IntegrityError(format!("index.{tid} unreadable: {e}"))
                })?;
                self.index = Some(index);
                Ok(())
            }
        }
    }

    fn require_exclusive(&mut self, for_replay: bool) -> Result<(), RepositoryError> {
        if let Some(lock) = self.lock.as_mut() {
            if !lock.got_exclusive_lock() {
                if !for_replay && !self.upgrade_lock {
                    return Err(python_error(
                        "AssertionError",
                        "bug in code, exclusive lock should exist here",
                    ));
                }
                // An old client (`exclusive=None`) expects the shared lock to become exclusive
                // when it starts writing, and replay rewrites the index: both upgrade, as
                // borg's `prepare_txn` does. The upgrade waits for other shared holders to
                // leave (up to lock_wait) and stays exclusive until the repository closes.
                lock.upgrade()?;
            }
        }
        Ok(())
    }

    fn reset_state(&mut self) {
        self.segments.clear();
        self.compact.clear();
        self.storage_quota_use = 0;
        self.shadow_index.clear();
    }

    /// Starts a transaction on top of transaction `tid` (`prepare_txn`).
    fn prepare_txn(
        &mut self,
        tid: Option<u64>,
        do_cleanup: bool,
        for_replay: bool,
    ) -> Result<(), RepositoryError> {
        if let Err(e) = self.require_exclusive(for_replay) {
            self.active_txn = false;
            return Err(e);
        }
        self.active_txn = true;
        self.txn_prepared = true;
        let Some(tid) = tid else {
            self.index = Some(NsIndex::default());
            self.reset_state();
            if do_cleanup {
                self.io()?.cleanup(None)?;
            }
            return Ok(());
        };
        if self.index.is_none() {
            match self.load_index(tid) {
                Ok(index) => self.index = Some(index),
                Err(e) if for_replay => {
                    // The old index is unusable: the caller replays from scratch instead.
                    self.active_txn = false;
                    return Err(RepositoryError::IntegrityError(format!(
                        "index.{tid} unusable: {e:?}"
                    )));
                }
                Err(_) => {
                    self.active_txn = false;
                    self.ensure_index()?;
                    self.active_txn = true;
                }
            }
        }
        if do_cleanup {
            self.io()?.cleanup(Some(tid))?;
        }
        match self.load_hints(tid) {
            Ok(hints) => {
                self.segments = hints.segments;
                self.compact = hints.compact;
                self.storage_quota_use = hints.storage_quota_use;
                self.shadow_index = hints.shadow_index;
                if let Some(v1) = hints.v1_compact {
                    for seg in v1 {
                        self.rebuild_sparse(seg)?;
                    }
                }
            }
            Err(e) => {
                log::warn!("Repository hints file missing or corrupted, trying to recover: {e}");
                self.remove_aux(&format!("hints.{tid}"));
                self.remove_aux(&format!("index.{tid}"));
                self.index = None;
                self.active_txn = false;
                if for_replay {
                    return Err(RepositoryError::IntegrityError(format!(
                        "hints.{tid} unusable: {e:?}"
                    )));
                }
                self.check_transaction()?;
                let tid = self.index_transaction_id();
                return self.prepare_txn(tid, do_cleanup, false);
            }
        }
        for segs in self.shadow_index.values_mut() {
            segs.retain(|s| *s <= tid);
        }
        Ok(())
    }

    /// Recomputes the freeable bytes of one segment against the index (`_rebuild_sparse`).
    fn rebuild_sparse(&mut self, seg: u64) -> Result<(), RepositoryError> {
        if !self.io()?.segment_exists(seg) {
            self.segments.remove(&seg);
            return Ok(());
        }
        let size = self.io()?.segment_size(seg)?;
        if self.segments.get(&seg).copied().unwrap_or(0) == 0 {
            self.compact.insert(seg, size);
            return Ok(());
        }
        let (entries, _) = self.io()?.iter_objects(seg, 0);
        let mut free = 0u64;
        let index = self.index.as_ref();
        for e in entries {
            match e.tag {
                TAG_PUT => {
                    let current = e.key.and_then(|k| index.and_then(|i| i.get(&k)));
                    if current != Some((seg as u32, e.offset as u32)) {
                        free += e.size as u64;
                    }
                }
                TAG_DELETE => free += e.size as u64,
                _ => {}
            }
        }
        self.compact.insert(seg, free);
        Ok(())
    }

    /// Rebuilds index and hints from the committed segments after `index_tid`
    /// (`replay_segments`).
    fn replay_segments(
        &mut self,
        index_tid: Option<u64>,
        segments_tid: u64,
    ) -> Result<(), RepositoryError> {
        self.index = None;
        let from = match self.prepare_txn(index_tid, false, true) {
            Ok(()) => index_tid,
            Err(e) if index_tid.is_some() && !matches!(e, RepositoryError::LockTimeout(_)) => {
                log::warn!("replaying from scratch: {e}");
                self.prepare_txn(None, false, true)?;
                None
            }
            Err(e) => return Err(e),
        };
        log::warn!("Replaying segments. Please wait, this can take a while...");
        let result = (|| {
            let segs = self.io()?.segments();
            for (seg, _) in segs {
                if from.is_some_and(|t| seg <= t) {
                    continue;
                }
                if seg > segments_tid {
                    break;
                }
                let (entries, err) = self.io()?.iter_objects(seg, 0);
                if let Some(e) = err {
                    return Err(e);
                }
                self.update_index(seg, &entries, &mut |msg| {
                    Err(RepositoryError::CheckNeeded(msg))
                })?;
            }
            self.write_index()
        })();
        self.rollback_state();
        result
    }

    /// Applies one segment's entries to the in-memory index and bookkeeping
    /// (`_update_index`, shared by replay and check).
    fn update_index(
        &mut self,
        seg: u64,
        entries: &[segment::Entry],
        report: &mut dyn FnMut(String) -> Result<(), RepositoryError>,
    ) -> Result<(), RepositoryError> {
        self.segments.insert(seg, 0);
        for e in entries {
            match (e.tag, e.key) {
                (TAG_PUT, Some(key)) => {
                    let index = self.index.get_or_insert_with(NsIndex::default);
                    if let Some((s, _)) = index.get(&key) {
                        let s = s as u64;
                        *self.compact.entry_or_default(s) += e.size as u64;
                        *self.segments.entry_or_default(s) -= 1;
                        self.shadow_index.entry_or_default(key).push(s);
                    }
                    index.insert(&key, seg as u32, e.offset as u32);
                    *self.segments.entry_or_default(seg) += 1;
                    self.storage_quota_use += e.size as u64;
                }
                (TAG_DELETE, Some(key)) => {
                    let index = self.index.get_or_insert_with(NsIndex::default);
                    if let Some((s, off)) = index.remove(&key) {
                        let s = s as u64;
                        if self.io()?.segment_exists(s) {
                            *self.segments.entry_or_default(s) -= 1;
                            let (size, _) = self.io()?.read(s, off as u64, &key, false)?;
                            *self.compact.entry_or_default(s) += size as u64;
                            self.shadow_index.entry_or_default(key).push(s);
                        }
                    }
                }
                (TAG_COMMIT, _) => {}
                (tag, _) => report(format!("Unexpected tag {tag} in segment {seg}"))?,
            }
        }
        if self.segments.get(&seg).copied().unwrap_or(0) == 0 {
            let size = self.io()?.segment_size(seg)?;
            self.compact.insert(seg, size);
        }
        Ok(())
    }

    /// Writes hints, index and integrity data for the newest committed segment
    /// (`write_index`).
    fn write_index(&mut self) -> Result<(), RepositoryError> {
        let tid = self.io()?.segments_transaction_id().ok_or_else(|| {
            python_error(
                "AssertionError",
                "no committed segment to write an index for",
            )
        })?;
        if self.append_only {
            let now = utc_now_iso();
            let mut log = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.path.join("transactions"))
                .map_err(|e| io_err("open transactions log", e))?;
            writeln!(log, "transaction {tid}, UTC time {now}")
                .map_err(|e| io_err("write transactions log", e))?;
        }
        let hints = Hints {
            segments: self.segments.clone(),
            compact: self.compact.clone(),
            storage_quota_use: self.storage_quota_use,
            shadow_index: self.shadow_index.clone(),
            v1_compact: None,
        };
        let hints_bytes = hints.encode();
        let hints_name = format!("hints.{tid}");
        let hints_digests =
            integrity::file_digests(Algorithm::Xxh64, &hints_name, &hints_bytes, None);
        let index_bytes = self.index.get_or_insert_with(NsIndex::default).to_bytes();
        let index_name = format!("index.{tid}");
        let index_digests = integrity::file_digests(
            Algorithm::Xxh64,
            &index_name,
            &index_bytes,
            Some(("HashHeader", 18)),
        );
        let integrity_bytes = integrity::encode_integrity_file(
            &integrity::digests_json(&hints_digests),
            &integrity::digests_json(&index_digests),
        );
        let integrity_name = format!("integrity.{tid}");
        write_synced(&self.path.join(format!("{hints_name}.tmp")), &hints_bytes)?;
        write_synced(&self.path.join(format!("{index_name}.tmp")), &index_bytes)?;
        write_synced(
            &self.path.join(format!("{integrity_name}.tmp")),
            &integrity_bytes,
        )?;
        // The integrity file goes first, so hints and index never sit beside integrity data
        // that does not describe them.
        rename_tmp(&self.path, &integrity_name)?;
        sync_dir(&self.path)?;
        rename_tmp(&self.path, &hints_name)?;
        rename_tmp(&self.path, &index_name)?;
        sync_dir(&self.path)?;
        let current = format!(".{tid}");
        let rd = fs::read_dir(&self.path).map_err(|e| io_err("list repository", e))?;
        for entry in rd.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let aux = ["index.", "hints.", "integrity."]
                .iter()
                .any(|p| name.starts_with(p));
            if aux && !name.ends_with(&current) {
                let _ = fs::remove_file(entry.path());
            }
        }
        self.index = None;
        Ok(())
    }

    /// Drops the in-memory transaction (`_rollback(cleanup=False)`). After a segment write
    /// that ran out of space, also deletes the uncommitted segments so the space is free
    /// again (borg's `Repository.__exit__` calls `_rollback(cleanup=True)` for ENOSPC).
    fn rollback_state(&mut self) {
        if let Some(io) = self.io.as_mut() {
            io.abandon();
            if io.take_out_of_space() {
                log::warn!(
                    "No space left on device, cleaning up partial transaction to free space."
                );
                let committed = io.segments_transaction_id();
                if let Err(e) = io.cleanup(committed) {
                    log::warn!("cleaning up the partial transaction failed: {e}");
                }
            }
        }
        self.index = None;
        self.active_txn = false;
        self.transaction_doomed = None;
    }

    /// `commit` when no `put`/`delete` started a transaction. Borg's `Repository.commit` has
    /// no guard: it fails on whatever state is missing, and the client sees that Python error.
    /// Without a loaded index (a fresh handle, or right after a commit or rollback) that is
    /// the index's missing `size`; with an index loaded by a read but no transaction ever
    /// prepared on this handle, the missing `segments` attribute. Both are refused here with
    /// borg's exception. Only when a read loaded the index after an earlier transaction does
    /// borg go on to commit (with that transaction's leftover bookkeeping); this starts a
    /// proper transaction on the committed state instead, which writes the same commit
    /// without reusing stale bookkeeping.
    fn commit_without_transaction(&mut self) -> Result<(), RepositoryError> {
        if self.index.is_none() {
            return Err(python_error(
                "AttributeError",
                "'NoneType' object has no attribute 'size'",
            ));
        }
        if !self.txn_prepared {
            return Err(python_error(
                "AttributeError",
                "'Repository' object has no attribute 'segments'",
            ));
        }
        self.begin_if_needed()
    }

    fn begin_if_needed(&mut self) -> Result<(), RepositoryError> {
        if !self.active_txn {
            let tid = self.transaction_id()?;
            self.prepare_txn(tid, true, false)?;
        }
        Ok(())
    }

    /// Records that the entry at (segment, offset) of `id` is superseded and writes a DELETE
    /// (`_delete`).
    fn delete_entry(
        &mut self,
        id: &ObjectId,
        seg: u64,
        offset: u64,
    ) -> Result<(), RepositoryError> {
        self.shadow_index.entry_or_default(*id).push(seg);
        *self.segments.entry_or_default(seg) -= 1;
        let (size, _) = self.io()?.read(seg, offset, id, false)?;
        *self.compact.entry_or_default(seg) += size as u64;
        let (new_seg, size) = match self.io()?.write_delete(id, false)? {
            Ok(r) => r,
            Err(full) => return Err(unexpected_full(full)),
        };
        *self.compact.entry_or_default(new_seg) += size;
        self.segments.entry_or_default(new_seg);
        Ok(())
    }

    fn check_free_space(&mut self) -> Result<(), RepositoryError> {
        let index_size = self
            .index
            .as_ref()
            .map_or(0, |i| 18 + 40 * i.num_buckets() as u64);
        let mut required = index_size * 4;
        required += self.segments.len() as u64 * 10 + self.compact.len() as u64 * 10 + 4096;
        required += self.additional_free_space;
        if !self.append_only {
            let full_segment = self.max_segment_size + MAX_OBJECT_SIZE as u64;
            if self.compact.len() < 10 {
                let mut working = 0u64;
                let compact: Vec<(u64, u64)> = self.compact.iter().map(|(s, f)| (s, *f)).collect();
                for (seg, free) in compact {
                    if let Ok(size) = self.io()?.segment_size(seg) {
                        working += size.saturating_sub(free);
                    }
                }
                required += working.min(full_segment);
            } else {
                required += full_segment;
            }
        }
        let Some(free) = free_space(&self.path) else {
            log::warn!("Failed to check free space before committing");
            return Ok(());
        };
        if free < required {
            let err = RepositoryError::InsufficientFreeSpace {
                required: format_file_size(required),
                available: format_file_size(free),
            };
            if self.created {
                log::error!("Not enough free space to initialize repository at this location.");
                let _ = self.destroy();
            } else {
                let tid = self.io()?.segments_transaction_id();
                self.io()?.cleanup(tid)?;
                self.rollback_state();
            }
            return Err(err);
        }
        Ok(())
    }

    /// Copies the live entries of sparse segments into new segments and deletes the old
    /// ones (`compact_segments`).
    fn compact_segments(&mut self, threshold: f64) -> Result<(), RepositoryError> {
        if self.compact.is_empty() {
            return Ok(());
        }
        let quota_before = self.storage_quota_use;
        let index_tid = self.index_transaction_id();
        let mut unused: Vec<u64> = Vec::new();
        let mut todo: Vec<(u64, u64)> = self.compact.iter().map(|(s, f)| (s, *f)).collect();
        todo.sort_unstable();
        for (seg, freeable) in todo {
            if !self.io()?.segment_exists(seg) {
                log::warn!("segment {seg} not found, but listed in compaction data");
                self.compact.remove(&seg);
                self.segments.remove(&seg);
                continue;
            }
            let size = self.io()?.segment_size(seg)?;
            let ratio = freeable as f64 / size as f64;
            if ratio <= threshold {
                continue;
            }
            self.segments.entry_or_default(seg);
            // Stream the segment: it may be far larger than what should sit in memory.
            let mut reader = self.io()?.open_reader(seg)?;
            loop {
                let (e, data) = match reader.next_entry() {
                    Ok(Some((e, data))) => (e, data),
                    Ok(None) => break,
                    Err(err) => return Err(RepositoryError::IntegrityError(err.to_string())),
                };
                if e.tag == TAG_COMMIT {
                    continue;
                }
                let Some(key) = e.key else { continue };
                let in_index = self.index.as_ref().and_then(|i| i.get(&key));
                let is_current = in_index == Some((seg as u32, e.offset as u32));
                if e.tag == TAG_PUT && is_current {
                    // `data` borrows the reader's buffer, not the repository.
                    let (new_seg, offset) = match self.io()?.write_put(&key, data, true)? {
                        Ok(r) => r,
                        Err(_) => {
                            self.complete_xfer(&mut unused, true)?;
                            match self.io()?.write_put(&key, data, false)? {
                                Ok(r) => r,
                                Err(full) => return Err(unexpected_full(full)),
                            }
                        }
                    };
                    if let Some(index) = self.index.as_mut() {
                        index.insert(&key, new_seg as u32, offset as u32);
                    }
                    *self.segments.entry_or_default(new_seg) += 1;
                    *self.segments.entry_or_default(seg) -= 1;
                } else if e.tag == TAG_PUT {
                    if let Some(list) = self.shadow_index.get_mut(&key) {
                        if let Some(p) = list.iter().position(|s| *s == seg) {
                            list.remove(p);
                        }
                    }
                    self.storage_quota_use = self.storage_quota_use.saturating_sub(e.size as u64);
                } else if e.tag == TAG_DELETE && in_index.is_none() {
                    let shadow = self.shadow_index.get(&key);
                    let shadowed_put_exists =
                        shadow.map_or(true, |list| list.iter().any(|s| *s < seg));
                    let not_stable = index_tid.map_or(true, |t| seg > t);
                    if shadowed_put_exists || not_stable {
                        let (new_seg, size) = match self.io()?.write_delete(&key, true)? {
                            Ok(r) => r,
                            Err(_) => {
                                self.complete_xfer(&mut unused, true)?;
                                match self.io()?.write_delete(&key, false)? {
                                    Ok(r) => r,
                                    Err(full) => return Err(unexpected_full(full)),
                                }
                            }
                        };
                        *self.compact.entry_or_default(new_seg) += size;
                        self.segments.entry_or_default(new_seg);
                    } else if shadow.is_some_and(|l| l.is_empty()) {
                        self.shadow_index.remove(&key);
                    }
                }
            }
            let left = self.segments.get(&seg).copied().unwrap_or(0);
            if left != 0 {
                log::warn!(
                    "Corrupted segment reference count {left} (expected 0) for segment {seg} - corrupted index or hints"
                );
            }
            unused.push(seg);
        }
        self.complete_xfer(&mut unused, false)?;
        self.io()?.clear_empty_dirs()?;
        log::info!(
            "compaction freed about {} repository space.",
            format_file_size(quota_before.saturating_sub(self.storage_quota_use))
        );
        Ok(())
    }

    /// Commits what compaction copied so far and deletes the emptied segments
    /// (`complete_xfer`).
    fn complete_xfer(
        &mut self,
        unused: &mut Vec<u64>,
        intermediate: bool,
    ) -> Result<(), RepositoryError> {
        let seg = self.io()?.write_commit(intermediate)?;
        self.segments.entry_or_default(seg);
        *self.compact.entry_or_default(seg) += HEADER_SIZE as u64;
        for s in unused.drain(..) {
            let count = self.segments.remove(&s).unwrap_or(0);
            if count != 0 {
                log::warn!(
                    "Corrupted segment reference count {count} (expected 0) for segment {s} - corrupted index or hints"
                );
            }
            self.io
                .as_mut()
                .map(|io| io.delete_segment(s))
                .transpose()?;
            self.compact.remove(&s);
        }
        Ok(())
    }

    fn save_config(&mut self) -> Result<(), RepositoryError> {
        save_config(&self.path, &self.config)
    }

    fn nonce_lock_check(&self) -> Result<(), RepositoryError> {
        match &self.lock {
            Some(l) if !l.got_exclusive_lock() => Err(python_error(
                "AssertionError",
                "bug in code, exclusive lock should exist here",
            )),
            _ => Ok(()),
        }
    }

    fn release(&mut self) -> Result<(), RepositoryError> {
        if let Some(io) = self.io.as_mut() {
            io.abandon();
        }
        self.io = None;
        if let Some(mut lock) = self.lock.take() {
            lock.release()?;
        }
        Ok(())
    }
}

/// `write_put`/`write_delete` only report a full segment when asked to (`raise_full`); should
/// one ever do so otherwise, fail the operation rather than the process.
fn unexpected_full(_: logged_io::SegmentFull) -> RepositoryError {
    RepositoryError::IntegrityError("segment full reported without raise_full".into())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), RepositoryError> {
    let ctx = |e| io_err(format!("write {}", path.display()), e);
    let mut f = fs::File::create(path).map_err(ctx)?;
    f.write_all(bytes).map_err(ctx)?;
    f.sync_all().map_err(ctx)
}

fn rename_tmp(dir: &Path, name: &str) -> Result<(), RepositoryError> {
    let from = dir.join(format!("{name}.tmp"));
    let to = dir.join(name);
    fs::rename(&from, &to).map_err(|e| io_err(format!("rename {}", from.display()), e))
}

fn free_space(path: &Path) -> Option<u64> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statvfs fills the zeroed struct for a valid NUL-terminated path.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return None;
        }
        Some(st.f_bavail as u64 * st.f_frsize as u64)
    }
}

/// Current UTC time as `YYYY-mm-ddTHH:MM:SS.ffffff` (borg's `ISO_FORMAT`).
fn utc_now_iso() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_micros()
    )
}

/// Refuses to create a repository where one (or anything else) already is, or inside another
/// repository (`check_can_create_repository`).
fn check_can_create_repository(path: &Path) -> Result<(), RepositoryError> {
    let shown = path.display().to_string();
    match fs::metadata(path) {
        Ok(meta) => {
            if is_repository(path) {
                return Err(RepositoryError::AlreadyExists(shown));
            }
            if !meta.is_dir() {
                return Err(RepositoryError::PathAlreadyExists(shown));
            }
            let mut rd = fs::read_dir(path).map_err(|e| match e.kind() {
                io::ErrorKind::PermissionDenied => {
                    RepositoryError::PathPermissionDenied(shown.clone())
                }
                _ => io_err(format!("list {shown}"), e),
            })?;
            if rd.next().is_some() {
                return Err(RepositoryError::PathAlreadyExists(shown));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Err(RepositoryError::PathPermissionDenied(shown));
        }
        Err(_) => {}
    }
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    for ancestor in absolute.ancestors().skip(1) {
        if is_repository(ancestor) {
            return Err(RepositoryError::AlreadyExists(
                ancestor.display().to_string(),
            ));
        }
    }
    Ok(())
}

/// Overwrites a file with random bytes, syncs and removes it, so old key material does not
/// linger (`secure_erase`).
fn secure_erase(path: &Path) {
    if let Ok(len) = fs::metadata(path).map(|m| m.len()) {
        if let Ok(mut f) = fs::OpenOptions::new().write(true).open(path) {
            let mut junk = vec![0u8; len as usize];
            let _ = getrandom::fill(&mut junk);
            let _ = f.write_all(&junk);
            let _ = f.sync_all();
        }
    }
    let _ = fs::remove_file(path);
}

/// Writes `config` as borg's `save_config` does: the old file is hard-linked to `config.old`,
/// the new one is written atomically, then `config.old` is securely erased.
fn save_config(repo: &Path, config: &IniFile) -> Result<(), RepositoryError> {
    let path = repo.join("config");
    let old = repo.join("config.old");
    if old.is_file() {
        log::warn!("Old config file not securely erased on previous config update");
        secure_erase(&old);
    }
    let linked = path.is_file() && fs::hard_link(&path, &old).is_ok();
    save_file(&path, config.to_text().as_bytes())?;
    if linked {
        secure_erase(&old);
    }
    Ok(())
}

impl Repository for LocalRepository {
    fn id(&self) -> &ObjectId {
        &self.id
    }

    fn get(&mut self, id: &ObjectId) -> Result<Vec<u8>, RepositoryError> {
        self.ensure_index()?;
        let loc = self.index.as_ref().and_then(|i| i.get(id));
        let Some((seg, offset)) = loc else {
            return Err(self.not_found(id));
        };
        let (_, data) = self.io()?.read(seg as u64, offset as u64, id, true)?;
        Ok(data)
    }

    fn get_many(
        &mut self,
        ids: &[ObjectId],
        sink: &mut dyn FnMut(usize, Vec<u8>) -> Result<(), RepositoryError>,
    ) -> Result<(), RepositoryError> {
        for (i, id) in ids.iter().enumerate() {
            let data = self.get(id)?;
            sink(i, data)?;
        }
        Ok(())
    }

    fn put(&mut self, id: &ObjectId, data: Vec<u8>) -> Result<(), RepositoryError> {
        self.begin_if_needed()?;
        if let Some((seg, offset)) = self.index.as_ref().and_then(|i| i.get(id)) {
            self.delete_entry(id, seg as u64, offset as u64)?;
        }
        let (seg, offset) = match self.io()?.write_put(id, &data, false)? {
            Ok(r) => r,
            Err(full) => return Err(unexpected_full(full)),
        };
        self.storage_quota_use += (data.len() + PUT_HEADER_SIZE) as u64;
        *self.segments.entry_or_default(seg) += 1;
        self.index
            .get_or_insert_with(NsIndex::default)
            .insert(id, seg as u32, offset as u32);
        if self.storage_quota > 0 && self.storage_quota_use > self.storage_quota {
            let quota = format_file_size(self.storage_quota);
            let used = format_file_size(self.storage_quota_use);
            self.transaction_doomed = Some((quota.clone(), used.clone()));
            return Err(RepositoryError::StorageQuotaExceeded { quota, used });
        }
        Ok(())
    }

    fn delete(&mut self, id: &ObjectId) -> Result<(), RepositoryError> {
        self.begin_if_needed()?;
        let loc = self.index.as_mut().and_then(|i| i.remove(id));
        let Some((seg, offset)) = loc else {
            return Err(self.not_found(id));
        };
        self.delete_entry(id, seg as u64, offset as u64)
    }

    fn flush(&mut self) -> Result<(), RepositoryError> {
        // Writes are synchronous; hand buffered segment bytes to the OS so other readers of
        // the files see them. Durability comes with commit.
        match self.io.as_mut() {
            Some(io) => io.flush(),
            None => Ok(()),
        }
    }

    fn commit(&mut self, options: CommitOptions) -> Result<(), RepositoryError> {
        if let Some((quota, used)) = self.transaction_doomed.take() {
            self.rollback_state();
            return Err(RepositoryError::StorageQuotaExceeded { quota, used });
        }
        if !self.active_txn {
            self.commit_without_transaction()?;
        }
        self.check_free_space()?;
        let seg = self.io()?.write_commit(false)?;
        self.segments.entry_or_default(seg);
        *self.compact.entry_or_default(seg) += HEADER_SIZE as u64;
        if options.compact && !self.append_only {
            if options.cleanup_commits {
                let segs = self.io()?.segments();
                for (s, p) in segs {
                    if fs::metadata(&p).is_ok_and(|m| m.len() == 17) {
                        self.segments.insert(s, 0);
                        self.compact.insert(s, HEADER_SIZE as u64);
                    }
                }
            }
            self.compact_segments(options.threshold)?;
        }
        self.write_index()?;
        self.rollback_state();
        Ok(())
    }

    fn rollback(&mut self) -> Result<(), RepositoryError> {
        self.rollback_state();
        Ok(())
    }

    fn list(
        &mut self,
        limit: Option<u32>,
        marker: Option<&ObjectId>,
    ) -> Result<Vec<ObjectId>, RepositoryError> {
        self.ensure_index()?;
        let index = self.index.as_ref().ok_or_else(|| {
            RepositoryError::IntegrityError("repository index unavailable".into())
        })?;
        index
            .list(limit.map(|l| l as usize), marker)
            .map_err(|e| python_error("KeyError", e.to_string()))
    }

    fn scan(
        &mut self,
        limit: Option<u32>,
        marker: Option<&ObjectId>,
    ) -> Result<Vec<ObjectId>, RepositoryError> {
        if limit == Some(0) {
            return Err(python_error(
                "ValueError",
                "please use limit > 0 or limit = None",
            ));
        }
        self.ensure_index()?;
        let (start_seg, mut start_offset) = match marker {
            None => (0u64, 0u64),
            Some(m) => {
                let loc = self.index.as_ref().and_then(|i| i.get(m));
                let (s, o) = loc.ok_or_else(|| self.not_found(m))?;
                (s as u64, o as u64)
            }
        };
        let mut result = Vec::new();
        let segs = self.io()?.segments();
        let index = self.index.as_ref();
        let Some(io) = self.io.as_mut() else {
            return Ok(result);
        };
        for (seg, _) in segs.into_iter().filter(|(s, _)| *s >= start_seg) {
            // Headers only, no CRC checks (borg's `scan`): a damaged payload is still listed; a
            // bad header ends the segment, the entries before it still count. The listing
            // stops as soon as `limit` ids are found.
            let mut full = false;
            let _ = io.visit_objects(seg, start_offset, &mut |e| {
                // Borg drops the marker's entry only once one was read, so a failure right at
                // the marker carries its offset into the next segment.
                if start_offset > 0 {
                    start_offset = 0;
                    return true;
                }
                let Some(key) = e.key else { return true };
                let current = index.and_then(|i| i.get(&key));
                if e.tag == TAG_PUT && current == Some((seg as u32, e.offset as u32)) {
                    result.push(key);
                    if limit.is_some_and(|l| result.len() == l as usize) {
                        full = true;
                        return false;
                    }
                }
                true
            });
            if full {
                return Ok(result);
            }
        }
        Ok(result)
    }

    fn check(&mut self, repair: bool, max_duration: u64) -> Result<bool, RepositoryError> {
        check::check(self, repair, max_duration)
    }

    fn object_count(&mut self) -> Result<u64, RepositoryError> {
        self.ensure_index()?;
        Ok(self.index.as_ref().map_or(0, |i| i.len() as u64))
    }

    fn load_key(&mut self) -> Result<Vec<u8>, RepositoryError> {
        Ok(self
            .config
            .get("repository", "key")
            .unwrap_or("")
            .trim()
            .as_bytes()
            .to_vec())
    }

    fn save_key(&mut self, keydata: &[u8]) -> Result<(), RepositoryError> {
        let text = std::str::from_utf8(keydata)
            .map_err(|_| python_error("UnicodeDecodeError", "key data is not UTF-8"))?;
        self.config.set("repository", "key", text);
        self.save_config()
    }

    fn get_free_nonce(&mut self) -> Result<Option<u64>, RepositoryError> {
        self.nonce_lock_check()?;
        let text = match fs::read_to_string(self.path.join("nonce")) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("read nonce", e)),
        };
        let bytes: [u8; 8] = hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                python_error(
                    "Error",
                    format!("Repository has an invalid nonce file: {:?}", text.trim()),
                )
            })?;
        Ok(Some(u64::from_be_bytes(bytes)))
    }

    fn commit_nonce_reservation(
        &mut self,
        next_unreserved: u64,
        start_nonce: Option<u64>,
    ) -> Result<(), RepositoryError> {
        self.nonce_lock_check()?;
        if self.get_free_nonce()? != start_nonce {
            return Err(python_error(
                "Exception",
                "nonce space reservation with mismatched previous state",
            ));
        }
        save_file(
            &self.path.join("nonce"),
            hex::encode(next_unreserved.to_be_bytes()).as_bytes(),
        )
    }

    fn break_lock(&mut self) -> Result<(), RepositoryError> {
        lock::break_lock(&self.path)
    }

    fn destroy(&mut self) -> Result<(), RepositoryError> {
        if self.append_only {
            return Err(RepositoryError::AppendOnly(self.path_str.clone()));
        }
        self.release()?;
        let config = self.path.join("config");
        fs::remove_file(&config).map_err(|e| io_err(format!("remove {}", config.display()), e))?;
        fs::remove_dir_all(&self.path).map_err(|e| io_err(format!("remove {}", self.path_str), e))
    }

    fn close(&mut self) -> Result<(), RepositoryError> {
        self.rollback_state();
        self.release()
    }
}

impl Drop for LocalRepository {
    fn drop(&mut self) {
        if self.io.as_ref().is_some_and(LoggedIo::is_out_of_space) {
            self.rollback_state();
        }
        let _ = self.release();
    }
}
