//! The manifest: the list of archives, stored under the id of 32 zero bytes
//! (`helpers/manifest.py`, spec archive.md §1).
//!
//! Reading: decrypt the envelope (no id check), decompress, verify the TAM over the received
//! bytes, unpack. Writing: a map with sorted keys `archives, config, item_keys, tam, timestamp,
//! version`, `version` 1, a strictly increasing `timestamp`, `config.tam_required` set for keys
//! that require a TAM, and a fresh TAM on every write.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::compress::CompressionSpec;
use crate::crypto::envelope::EnvelopeError;
use crate::crypto::nonces::{NonceError, NonceManager};
use crate::crypto::security::{SecurityDir, SecurityError};
use crate::crypto::tam::{TamContext, TamError};
use crate::crypto::Key;
use crate::msgpack::Value;
use crate::repository::{ObjectId, Repository, RepositoryError, MANIFEST_ID};

/// Borg 1.x's item keys (`ITEM_KEYS`), the `item_keys` of every manifest it writes.
pub use crate::archive::ITEM_KEYS;

/// Most archives a manifest may list (`MAX_ARCHIVES`).
pub const MAX_ARCHIVES: usize = 400_000;

/// Turns plaintext into an envelope payload and back. The compress module provides the full
/// set (lz4, zstd, zlib, lzma, auto, obfuscate); [`DefaultCodec`] is enough for manifests.
pub trait PayloadCodec {
    /// Compresses `data` into a payload with borg's 2-byte header.
    fn compress(&self, data: &[u8]) -> Vec<u8>;
    /// Decompresses a payload, detecting the compressor from its header.
    fn decompress(&self, payload: &[u8]) -> Result<Vec<u8>, String>;
}

/// Borg's default compression for metadata (lz4 when it saves space, else none) for writing,
/// and every borg 1.x compressor for reading: none, lz4, zstd, zlib, lzma and the obfuscate
/// wrapper (`Compressor.decompress`). A borg command run with `-C zstd` writes its manifest
/// with zstd, so a reader must take all of them (through [`crate::compress::decompress`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct DefaultCodec;

impl PayloadCodec for DefaultCodec {
    fn compress(&self, data: &[u8]) -> Vec<u8> {
        SpecCodec(CompressionSpec::Lz4).compress(data)
    }

    fn decompress(&self, payload: &[u8]) -> Result<Vec<u8>, String> {
        crate::compress::decompress(payload).map_err(|e| e.to_string())
    }
}

/// A codec that writes with a chosen compression (borg writes metadata with the command's
/// `--compression`) and reads every borg compressor.
#[derive(Debug, Clone)]
pub struct SpecCodec(pub CompressionSpec);

impl PayloadCodec for SpecCodec {
    fn compress(&self, data: &[u8]) -> Vec<u8> {
        // Only resource failures inside a compression library can fail here; storing the data
        // uncompressed is then still a valid object borg reads.
        crate::compress::compress(&self.0, data).unwrap_or_else(|_| {
            let mut out = crate::compress::HEADER_NONE.to_vec();
            out.extend_from_slice(data);
            out
        })
    }

    fn decompress(&self, payload: &[u8]) -> Result<Vec<u8>, String> {
        crate::compress::decompress(payload).map_err(|e| e.to_string())
    }
}

/// Why the manifest cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The repository has no manifest (`NoManifestError`).
    #[error("Repository has no manifest.")]
    NoManifest,
    /// The envelope did not open.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The payload did not decompress.
    #[error("manifest: {0}")]
    Decompress(String),
    /// The TAM is missing, invalid or unsupported.
    #[error(transparent)]
    Tam(#[from] TamError),
    /// A field has the wrong type or value.
    #[error("invalid manifest: {0}")]
    Invalid(String),
    /// The repository needs a feature this client lacks (`MandatoryFeatureUnsupported`).
    #[error("Unsupported repository feature(s) {0:?}. A newer version of borg is required to access this repository.")]
    MandatoryFeatureUnsupported(Vec<String>),
    /// An archive of that name exists (`Archive.AlreadyExists`).
    #[error("Archive {0} already exists")]
    ArchiveExists(String),
    /// No archive of that name (`Archive.DoesNotExist`).
    #[error("Archive {0} does not exist")]
    ArchiveNotFound(String),
    /// Too many archives or too long a name for borg's reader.
    #[error("manifest limits exceeded: {0}")]
    Limits(String),
    /// No counter values for the envelope.
    #[error(transparent)]
    Nonce(#[from] NonceError),
    /// The security dir could not be updated.
    #[error(transparent)]
    Security(#[from] SecurityError),
    /// The repository failed.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

impl ManifestError {
    /// Borg 1.4's exit code for this error with `BORG_EXIT_CODES=modern` (legacy: always 2).
    pub fn exit_code(&self) -> i32 {
        match self {
            ManifestError::NoManifest => 26,
            ManifestError::Envelope(e) => e.exit_code(),
            ManifestError::Decompress(_) => 92,
            ManifestError::Tam(e) => e.exit_code(),
            ManifestError::Invalid(_) => 2,
            ManifestError::MandatoryFeatureUnsupported(_) => 25,
            ManifestError::ArchiveExists(_) => 30,
            ManifestError::ArchiveNotFound(_) => 31,
            ManifestError::Limits(_) => 2,
            ManifestError::Nonce(e) => e.exit_code(),
            ManifestError::Security(e) => e.exit_code(),
            ManifestError::Repository(_) => 2,
        }
    }
}

/// The operations a command performs, for the feature-flag check (`Manifest.Operation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Reading archives.
    Read,
    /// Checking.
    Check,
    /// Writing archives.
    Write,
    /// Deleting archives.
    Delete,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Check => "check",
            Operation::Write => "write",
            Operation::Delete => "delete",
        }
    }
}

/// One manifest entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveEntry {
    /// The archive metadata object's id.
    pub id: ObjectId,
    /// The archive's start time, naive UTC `%Y-%m-%dT%H:%M:%S.%f`.
    pub time: String,
}

/// The manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Archives by name (raw bytes, UTF-8 in practice).
    pub archives: BTreeMap<Vec<u8>, ArchiveEntry>,
    /// The timestamp of the last write; `None` before the first.
    pub timestamp: Option<String>,
    /// The `config` map, kept as read so unknown content survives a rewrite.
    pub config: Value,
    /// Item keys known to the repository.
    pub item_keys: BTreeSet<Vec<u8>>,
    /// Whether the last load or write carried a valid TAM.
    pub tam_verified: bool,
    /// `id_hash` of the last plaintext read or written (identifies the manifest version).
    pub id: Option<ObjectId>,
}

impl Default for Manifest {
    fn default() -> Self {
        Manifest::new()
    }
}

/// How to order [`Manifest::list`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    /// By the archive time.
    Timestamp,
    /// By name.
    Name,
    /// By id.
    Id,
}

impl Manifest {
    /// An empty manifest, as `borg init` writes it.
    pub fn new() -> Manifest {
        Manifest {
            archives: BTreeMap::new(),
            timestamp: None,
            config: Value::Map(vec![]),
            item_keys: ITEM_KEYS.iter().map(|k| k.as_bytes().to_vec()).collect(),
            tam_verified: false,
            id: None,
        }
    }

    /// Reads the manifest object from the repository. Returns the envelope too: the nonce
    /// manager starts past it.
    pub fn load(
        repository: &mut dyn Repository,
        key: &Key,
        codec: &dyn PayloadCodec,
        force_tam_not_required: bool,
    ) -> Result<(Manifest, Vec<u8>), ManifestError> {
        let envelope = match repository.get(&MANIFEST_ID) {
            Ok(e) => e,
            Err(RepositoryError::ObjectNotFound { .. }) => return Err(ManifestError::NoManifest),
            Err(e) => return Err(e.into()),
        };
        let m = Manifest::from_envelope(key, &envelope, codec, force_tam_not_required)?;
        Ok((m, envelope))
    }

    /// Opens a manifest envelope.
    pub fn from_envelope(
        key: &Key,
        envelope: &[u8],
        codec: &dyn PayloadCodec,
        force_tam_not_required: bool,
    ) -> Result<Manifest, ManifestError> {
        let payload = key.decrypt(None, envelope)?;
        let plaintext = codec
            .decompress(&payload)
            .map_err(ManifestError::Decompress)?;
        Manifest::from_plaintext(key, &plaintext, force_tam_not_required)
    }

    /// Verifies and reads manifest plaintext (msgpack).
    pub fn from_plaintext(
        key: &Key,
        data: &[u8],
        force_tam_not_required: bool,
    ) -> Result<Manifest, ManifestError> {
        let (dict, status) = key.unpack_and_verify_manifest(data, force_tam_not_required)?;
        let invalid = |m: &str| ManifestError::Invalid(m.to_string());
        match dict.get("version").and_then(Value::as_u64) {
            Some(1 | 2) => {}
            _ => return Err(invalid("Invalid manifest version")),
        }
        let mut archives = BTreeMap::new();
        let raw_archives = dict
            .get("archives")
            .and_then(Value::as_map)
            .ok_or_else(|| invalid("no archives map"))?;
        for (name, entry) in raw_archives {
            let name = name
                .as_bytes()
                .ok_or_else(|| invalid("archive name is not a string"))?;
            let id: ObjectId = entry
                .get("id")
                .and_then(Value::as_bytes)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| invalid("archive id is not 32 bytes"))?;
            let time = entry
                .get("time")
                .and_then(Value::as_bytes)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .ok_or_else(|| invalid("archive time missing"))?;
            archives.insert(name.to_vec(), ArchiveEntry { id, time });
        }
        let config = match dict.get("config") {
            Some(c @ Value::Map(_)) => c.clone(),
            None => Value::Map(vec![]),
            Some(_) => return Err(invalid("config is not a map")),
        };
        let mut item_keys: BTreeSet<Vec<u8>> =
            ITEM_KEYS.iter().map(|k| k.as_bytes().to_vec()).collect();
        if let Some(keys) = dict.get("item_keys").and_then(Value::as_array) {
            item_keys.extend(keys.iter().filter_map(Value::as_bytes).map(<[u8]>::to_vec));
        }
        let timestamp = dict
            .get("timestamp")
            .and_then(Value::as_bytes)
            .map(|b| String::from_utf8_lossy(b).into_owned());
        Ok(Manifest {
            archives,
            timestamp,
            config,
            item_keys,
            tam_verified: status.is_verified(),
            id: Some(key.id_hash(data)),
        })
    }

    /// Refuses operations the repository marks as needing features this client lacks
    /// (`check_repository_compatibility`; borg 1.x supports none).
    pub fn check_repository_compatibility(
        &self,
        operations: &[Operation],
    ) -> Result<(), ManifestError> {
        let Some(flags) = self.config.get("feature_flags") else {
            return Ok(());
        };
        for op in operations {
            if let Some(mandatory) = flags
                .get(op.name())
                .and_then(|r| r.get("mandatory"))
                .and_then(Value::as_array)
            {
                let names: Vec<String> = mandatory
                    .iter()
                    .filter_map(Value::as_bytes)
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .collect();
                if !names.is_empty() {
                    return Err(ManifestError::MandatoryFeatureUnsupported(names));
                }
            }
        }
        Ok(())
    }

    /// After a TAM-verified load, makes the security dir's `tam_required` marker follow
    /// `config.tam_required` (`Manifest.load`).
    pub fn sync_tam_required(&self, security: &SecurityDir) -> Result<(), ManifestError> {
        if !self.tam_verified {
            return Ok(());
        }
        let required = self
            .config
            .get("tam_required")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if required != security.tam_required() {
            security.set_tam_required(required)?;
        }
        Ok(())
    }

    /// The manifest as a msgpack value, without the TAM.
    pub fn to_value(&self) -> Value {
        let archives = self
            .archives
            .iter()
            .map(|(name, e)| {
                (
                    Value::Raw(name.clone()),
                    Value::map([("id", Value::bytes(&e.id)), ("time", Value::str(&e.time))]),
                )
            })
            .collect();
        Value::map([
            ("archives", Value::Map(archives)),
            ("config", self.config.clone()),
            (
                "item_keys",
                Value::Array(
                    self.item_keys
                        .iter()
                        .map(|k| Value::Raw(k.clone()))
                        .collect(),
                ),
            ),
            ("timestamp", Value::from(self.timestamp.clone())),
            ("version", Value::from(1)),
        ])
    }

    /// Advances the timestamp (`Manifest.write`): now on the first write, later
    /// `max(previous + 1 µs, now)` compared as formatted strings.
    pub fn advance_timestamp(&mut self, now: SystemTime) {
        let now_text = format_timestamp(micros_since_epoch(now));
        self.timestamp = Some(match self.timestamp.as_deref().and_then(parse_timestamp) {
            None => now_text,
            Some(prev) => format_timestamp(prev + 1).max(now_text),
        });
    }

    /// Packs the manifest for writing at time `now`: timestamp rule, `tam_required` in config
    /// when the key requires it, limits, and a fresh TAM. Sets `id` and `tam_verified`.
    pub fn pack(&mut self, key: &Key, now: SystemTime) -> Result<Vec<u8>, ManifestError> {
        if key.tam_required() {
            if self.config.as_map().is_none() {
                self.config = Value::Map(vec![]);
            }
            self.config.insert("tam_required", Value::Bool(true));
        }
        self.advance_timestamp(now);
        if self.archives.len() > MAX_ARCHIVES {
            return Err(ManifestError::Limits(format!(
                "{} archives",
                self.archives.len()
            )));
        }
        if let Some(long) = self
            .archives
            .keys()
            .find(|n| String::from_utf8_lossy(n).chars().count() > 255)
        {
            return Err(ManifestError::Limits(format!(
                "archive name of {} bytes",
                long.len()
            )));
        }
        if self.item_keys.len() > 100 {
            return Err(ManifestError::Limits(format!(
                "{} item keys",
                self.item_keys.len()
            )));
        }
        let data = key.pack_and_authenticate(&self.to_value(), TamContext::Manifest)?;
        self.tam_verified = true;
        self.id = Some(key.id_hash(&data));
        Ok(data)
    }

    /// Packs the manifest as it is, with a TAM made with `salt` (no timestamp or config
    /// change). Borg would write the same bytes for the same content and salt.
    pub fn pack_with_salt(&self, key: &Key, salt: &[u8; 64]) -> Vec<u8> {
        key.pack_and_authenticate_with_salt(&self.to_value(), TamContext::Manifest, salt)
    }

    /// Writes the manifest (`Manifest.write`): pack, compress, encrypt with counter values from
    /// `nonces`, and put it under the manifest id. The caller commits.
    pub fn write(
        &mut self,
        repository: &mut dyn Repository,
        key: &Key,
        nonces: &mut NonceManager,
        codec: &dyn PayloadCodec,
    ) -> Result<(), ManifestError> {
        let data = self.pack(key, SystemTime::now())?;
        let payload = codec.compress(&data);
        let envelope = key.encrypt_next(nonces, repository, &payload)?;
        repository.put(&MANIFEST_ID, envelope)?;
        Ok(())
    }

    /// Adds an archive; an existing name is an error.
    pub fn add_archive(
        &mut self,
        name: &str,
        id: ObjectId,
        time: &str,
    ) -> Result<(), ManifestError> {
        if self.archives.contains_key(name.as_bytes()) {
            return Err(ManifestError::ArchiveExists(name.to_string()));
        }
        self.archives.insert(
            name.as_bytes().to_vec(),
            ArchiveEntry {
                id,
                time: time.to_string(),
            },
        );
        Ok(())
    }

    /// Looks an archive up by name.
    pub fn archive(&self, name: &str) -> Option<&ArchiveEntry> {
        self.archives.get(name.as_bytes())
    }

    /// Removes an archive and returns its entry.
    pub fn remove_archive(&mut self, name: &str) -> Result<ArchiveEntry, ManifestError> {
        self.archives
            .remove(name.as_bytes())
            .ok_or_else(|| ManifestError::ArchiveNotFound(name.to_string()))
    }

    /// Renames an archive whose metadata was rewritten under `new_id` (`Archive.set_meta`).
    pub fn rename_archive(
        &mut self,
        old: &str,
        new: &str,
        new_id: ObjectId,
    ) -> Result<(), ManifestError> {
        if self.archives.contains_key(new.as_bytes()) {
            return Err(ManifestError::ArchiveExists(new.to_string()));
        }
        let entry = self.remove_archive(old)?;
        self.archives.insert(
            new.as_bytes().to_vec(),
            ArchiveEntry {
                id: new_id,
                time: entry.time,
            },
        );
        Ok(())
    }

    /// Lists archives (`Archives.list` without the glob): optionally without checkpoints
    /// (names containing `.checkpoint`), sorted, the first or last `n`, optionally reversed.
    pub fn list(
        &self,
        sort_by: &[SortBy],
        consider_checkpoints: bool,
        first: Option<usize>,
        last: Option<usize>,
        reverse: bool,
    ) -> Vec<(String, &ArchiveEntry)> {
        let mut v: Vec<(String, &ArchiveEntry)> = self
            .archives
            .iter()
            .map(|(n, e)| (String::from_utf8_lossy(n).into_owned(), e))
            .filter(|(n, _)| consider_checkpoints || !n.contains(".checkpoint"))
            .collect();
        // Stable sorts applied in reverse key order, as borg does.
        for key in sort_by.iter().rev() {
            match key {
                SortBy::Timestamp => v.sort_by_key(|(_, e)| parse_timestamp(&e.time)),
                SortBy::Name => v.sort_by(|a, b| a.0.cmp(&b.0)),
                SortBy::Id => v.sort_by_key(|(_, e)| e.id),
            }
        }
        if let Some(n) = first {
            v.truncate(n);
        } else if let Some(n) = last {
            let skip = v.len().saturating_sub(n);
            v.drain(..skip);
        }
        if reverse {
            v.reverse();
        }
        v
    }
}

/// What a command holds after opening a repository: the unlocked key, the verified manifest,
/// and the nonce manager for anything it encrypts.
#[derive(Debug)]
pub struct OpenedRepository {
    /// The key.
    pub key: crate::crypto::open::OpenedKey,
    /// The manifest.
    pub manifest: Manifest,
    /// The encryption counter, starting past the manifest envelope.
    pub nonces: NonceManager,
}

impl OpenedRepository {
    /// Writes the manifest, commits the repository, and records the new manifest timestamp
    /// in the security dir (borg does the last part when it commits its cache), so that a
    /// later rollback to an older manifest is noticed.
    pub fn write_manifest_and_commit(
        &mut self,
        repository: &mut dyn Repository,
        location: &str,
        settings: &crate::crypto::CryptoSettings,
        codec: &dyn PayloadCodec,
    ) -> Result<(), ManifestError> {
        self.manifest
            .write(repository, &self.key.key, &mut self.nonces, codec)?;
        repository.commit(crate::repository::CommitOptions::default())?;
        let security = SecurityDir::new(settings, repository.id());
        security.save(
            location,
            self.key.key.key_type(),
            self.manifest.timestamp.as_deref().unwrap_or_default(),
        )?;
        Ok(())
    }
}

/// Why a repository could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenRepositoryError {
    /// The key could not be opened.
    #[error(transparent)]
    Key(#[from] crate::crypto::open::OpenError),
    /// The manifest is missing or bad.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A security check failed.
    #[error(transparent)]
    Security(#[from] SecurityError),
}

impl OpenRepositoryError {
    /// Borg 1.4's exit code for this error with `BORG_EXIT_CODES=modern` (legacy: always 2).
    pub fn exit_code(&self) -> i32 {
        match self {
            OpenRepositoryError::Key(e) => e.exit_code(),
            OpenRepositoryError::Manifest(e) => e.exit_code(),
            OpenRepositoryError::Security(e) => e.exit_code(),
        }
    }
}

/// Opens a repository the way borg's `with_repository(manifest=True)` does: read the
/// manifest envelope, open the key (passphrase as borg gets it), verify the manifest and its
/// TAM, check feature flags, keep the security dir's `tam_required` in step, and run the
/// security checks (location, key type, replay, unknown unencrypted repository).
pub fn open_repository(
    repository: &mut dyn Repository,
    location: &str,
    operations: &[Operation],
    settings: &crate::crypto::CryptoSettings,
    prompter: &mut dyn crate::crypto::passphrase::Prompter,
    codec: &dyn PayloadCodec,
) -> Result<OpenedRepository, OpenRepositoryError> {
    let envelope = match repository.get(&MANIFEST_ID) {
        Ok(e) => e,
        Err(RepositoryError::ObjectNotFound { .. }) => return Err(ManifestError::NoManifest.into()),
        Err(e) => return Err(ManifestError::Repository(e).into()),
    };
    let key = crate::crypto::open::open_key(repository, &envelope, location, settings, prompter)?;
    let manifest = Manifest::from_envelope(&key.key, &envelope, codec, false)?;
    manifest.check_repository_compatibility(operations)?;
    let security = SecurityDir::new(settings, repository.id());
    manifest.sync_tam_required(&security)?;
    security.assert_secure(
        location,
        key.key.key_type(),
        key.logically_encrypted,
        manifest.timestamp.as_deref().unwrap_or_default(),
        None,
        true,
        settings,
        prompter,
    )?;
    let nonces = key.nonce_manager(settings, Some(&envelope));
    Ok(OpenedRepository {
        key,
        manifest,
        nonces,
    })
}

/// Microseconds since the epoch.
pub fn micros_since_epoch(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_micros() as i64,
        Err(e) => -(e.duration().as_micros() as i64),
    }
}

/// Formats microseconds since the epoch as borg's naive UTC `%Y-%m-%dT%H:%M:%S.%f`
/// (through [`crate::archive::format_time`], the one formatter of borg's timestamps).
pub fn format_timestamp(micros: i64) -> String {
    match chrono::DateTime::from_timestamp_micros(micros) {
        Some(t) => crate::archive::format_time(&t),
        // Outside chrono's range (hundreds of thousands of years): clamp, never panic.
        None => crate::archive::format_time(&chrono::DateTime::<chrono::Utc>::MAX_UTC),
    }
}

/// Parses `%Y-%m-%dT%H:%M:%S[.%f]` (naive UTC, at most six fractional digits, as borg writes
/// them) into microseconds since the epoch.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = match s.split_once('.') {
        Some((whole, "")) => whole,
        Some((_, frac)) if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) => {
            return None
        }
        _ => s,
    };
    crate::archive::parse_time(s).map(|t| t.timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::key::KeyType;
    use std::time::Duration;

    #[test]
    fn timestamps() {
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000000");
        let t = "2026-11-26T05:02:59.167445";
        let m = parse_timestamp(t).unwrap();
        assert_eq!(format_timestamp(m), t);
        assert_eq!(
            format_timestamp(parse_timestamp("2024-02-29T23:59:59").unwrap() + 1),
            "2024-02-29T23:59:59.000001"
        );
        assert_eq!(
            parse_timestamp("2024-01-01T00:00:00.5"),
            parse_timestamp("2024-01-01T00:00:00.500000")
        );
        assert!(parse_timestamp("nonsense").is_none());
    }

    #[test]
    fn timestamp_is_strictly_monotonic() {
        let mut m = Manifest::new();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        m.advance_timestamp(t0);
        let first = m.timestamp.clone().unwrap();
        // A clock that went backwards still moves the timestamp forward by 1 µs.
        m.advance_timestamp(t0 - Duration::from_secs(3600));
        assert_eq!(
            m.timestamp.as_deref().unwrap(),
            format_timestamp(parse_timestamp(&first).unwrap() + 1)
        );
        m.advance_timestamp(t0 + Duration::from_secs(10));
        assert_eq!(
            m.timestamp.as_deref().unwrap(),
            "2023-11-14T22:13:30.000000"
        );
    }

    #[test]
    fn pack_and_read_back() {
        let key = Key::generate(KeyType::Repokey, &[1; 32]).unwrap();
        let mut m = Manifest::new();
        m.add_archive("a1", [7; 32], "2024-01-01T00:00:00.000000")
            .unwrap();
        assert!(matches!(
            m.add_archive("a1", [7; 32], "x"),
            Err(ManifestError::ArchiveExists(_))
        ));
        let data = m.pack(&key, SystemTime::now()).unwrap();
        let back = Manifest::from_plaintext(&key, &data, false).unwrap();
        assert!(back.tam_verified);
        assert_eq!(back.archive("a1").unwrap().id, [7; 32]);
        assert_eq!(
            back.config.get("tam_required").and_then(Value::as_bool),
            Some(true)
        );
        assert_eq!(back.item_keys.len(), 23);
        assert_eq!(back.timestamp, m.timestamp);
        // Keys sorted, as borg writes them.
        let v = crate::msgpack::decode(&data).unwrap();
        let keys: Vec<_> = v
            .as_map()
            .unwrap()
            .iter()
            .map(|(k, _)| k.as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            keys,
            [
                "archives",
                "config",
                "item_keys",
                "tam",
                "timestamp",
                "version"
            ]
        );
        // Plaintext key: empty config.
        let p = Key::plaintext();
        let mut m = Manifest::new();
        let data = m.pack(&p, SystemTime::now()).unwrap();
        let v = crate::msgpack::decode(&data).unwrap();
        assert_eq!(v.get("config"), Some(&Value::Map(vec![])));
    }

    #[test]
    fn archive_list_operations() {
        let mut m = Manifest::new();
        m.add_archive("b", [2; 32], "2024-01-02T00:00:00.000000")
            .unwrap();
        m.add_archive("a", [3; 32], "2024-01-03T00:00:00.000000")
            .unwrap();
        m.add_archive("c.checkpoint", [1; 32], "2024-01-01T00:00:00.000000")
            .unwrap();
        let names =
            |v: Vec<(String, &ArchiveEntry)>| v.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        assert_eq!(
            names(m.list(&[SortBy::Timestamp], false, None, None, false)),
            ["b", "a"]
        );
        assert_eq!(
            names(m.list(&[SortBy::Timestamp], true, None, Some(2), true)),
            ["a", "b"]
        );
        assert_eq!(
            names(m.list(&[SortBy::Name], true, Some(1), None, false)),
            ["a"]
        );
        m.rename_archive("a", "z", [9; 32]).unwrap();
        assert_eq!(m.archive("z").unwrap().time, "2024-01-03T00:00:00.000000");
        assert!(matches!(
            m.remove_archive("a"),
            Err(ManifestError::ArchiveNotFound(_))
        ));
    }

    #[test]
    fn feature_flags_and_version() {
        let key = Key::plaintext();
        let mut m = Manifest::new();
        m.config = Value::map([(
            "feature_flags",
            Value::map([(
                "write",
                Value::map([("mandatory", Value::Array(vec![Value::str("x")]))]),
            )]),
        )]);
        let data = m.pack(&key, SystemTime::now()).unwrap();
        let back = Manifest::from_plaintext(&key, &data, false).unwrap();
        assert!(back
            .check_repository_compatibility(&[Operation::Read])
            .is_ok());
        assert!(matches!(
            back.check_repository_compatibility(&[Operation::Write]),
            Err(ManifestError::MandatoryFeatureUnsupported(_))
        ));
        let bad = crate::msgpack::encode(&Value::map([
            ("version", Value::from(3)),
            ("archives", Value::Map(vec![])),
        ]));
        assert!(matches!(
            Manifest::from_plaintext(&key, &bad, false),
            Err(ManifestError::Invalid(_))
        ));
    }

    #[test]
    fn open_repository_runs_borgs_checks() {
        use crate::crypto::init::{init, InitOptions};
        use crate::crypto::keyfile::KeyLocation;
        use crate::crypto::nonces::tests::MemRepo;
        use crate::crypto::passphrase::NoPrompt;
        use crate::crypto::{CryptoSettings, Passphrase};
        let t = tempfile::tempdir().unwrap();
        let mut s = CryptoSettings::under(t.path());
        s.passphrase = Some(Passphrase::new("p"));
        let mut repo = MemRepo {
            id: [8; 32],
            ..MemRepo::default()
        };
        let loc = KeyLocation::local("/r");
        init(
            &mut repo,
            InitOptions::new(KeyType::Repokey, &loc),
            &s,
            &mut NoPrompt,
            &DefaultCodec,
        )
        .unwrap();
        let mut opened = open_repository(
            &mut repo,
            "/r",
            &[Operation::Write],
            &s,
            &mut NoPrompt,
            &DefaultCodec,
        )
        .unwrap();
        assert!(opened.manifest.tam_verified);
        // Write a new manifest with an archive; the counter starts past the old manifest.
        let old_iv = crate::crypto::envelope::envelope_iv(&repo.objects[&MANIFEST_ID]).unwrap();
        opened
            .manifest
            .add_archive("a", [1; 32], "2024-01-01T00:00:00.000000")
            .unwrap();
        opened
            .write_manifest_and_commit(&mut repo, "/r", &s, &DefaultCodec)
            .unwrap();
        let new_iv = crate::crypto::envelope::envelope_iv(&repo.objects[&MANIFEST_ID]).unwrap();
        assert!(new_iv > old_iv);
        let again = open_repository(
            &mut repo,
            "/r",
            &[Operation::Read],
            &s,
            &mut NoPrompt,
            &DefaultCodec,
        )
        .unwrap();
        assert!(again.manifest.archive("a").is_some());
        // The security dir remembers the newer manifest; putting the old one back is a replay.
        let security = SecurityDir::new(&s, &[8; 32]);
        assert_eq!(
            security.manifest_timestamp().unwrap(),
            again.manifest.timestamp
        );
        let mut old = Manifest::from_envelope(
            &again.key.key,
            &repo.objects[&MANIFEST_ID],
            &DefaultCodec,
            false,
        )
        .unwrap();
        old.timestamp = Some("2000-01-01T00:00:00.000000".into());
        let data = old.pack_with_salt(&again.key.key, &[0; 64]);
        let env = again
            .key
            .key
            .encrypt(1 << 40, &DefaultCodec.compress(&data));
        repo.objects.insert(MANIFEST_ID, env);
        assert!(matches!(
            open_repository(
                &mut repo,
                "/r",
                &[Operation::Read],
                &s,
                &mut NoPrompt,
                &DefaultCodec
            ),
            Err(OpenRepositoryError::Security(
                SecurityError::RepositoryReplay
            ))
        ));
        // No manifest at all.
        repo.objects.clear();
        assert!(matches!(
            open_repository(
                &mut repo,
                "/r",
                &[Operation::Read],
                &s,
                &mut NoPrompt,
                &DefaultCodec
            ),
            Err(OpenRepositoryError::Manifest(ManifestError::NoManifest))
        ));
    }

    #[test]
    fn lz4_codec_roundtrip() {
        let c = DefaultCodec;
        let data = b"hello world".repeat(10);
        let p = c.compress(&data);
        assert_eq!(&p[..2], &[1, 0]);
        assert_eq!(c.decompress(&p).unwrap(), data);
        // What borg's liblz4 wrote (crypto.md §5.5) reads back too.
        let borg = hex::decode("0100bf68656c6c6f20776f726c640b004b50776f726c64").unwrap();
        assert_eq!(c.decompress(&borg).unwrap(), data);
        // The other compressors, as borg 1.2.4 and 1.4.5 write them (crypto.md §5.5).
        for hex_payload in [
            "030028b52ffd206e9500005868656c6c6f20776f726c640100c069f102",
            "789ccb48cdc9c95728cf2fca49c9a03d130072d92b99",
            "0200fd377a585a000000ff12d9410200210116000000742fe5a3e0006d00115d00341949ee8de917893a33600971212e3800000000000001256e93297f6206729e7a010000000000595a",
            "0400000000170100bf68656c6c6f20776f726c640b004b50776f726c6400",
        ] {
            assert_eq!(c.decompress(&hex::decode(hex_payload).unwrap()).unwrap(), data, "{hex_payload}");
        }
        let raw: Vec<u8> = (0..=255u8).collect();
        assert_eq!(&c.compress(&raw)[..2], &[0, 0]);
        assert!(c.decompress(&[9, 9]).is_err());
    }
}
