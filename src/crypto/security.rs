//! The client's security directory for one repository (`cache.py SecurityManager`).
//!
//! `<security dir>/<repo id hex>/` holds `key-type` (decimal type byte), `location` (canonical
//! repository path), `manifest-timestamp` (newest manifest timestamp seen), `nonce` (see
//! [`crate::crypto::nonces`]) and the empty marker `tam_required`. Borg and rborg share these
//! files, so a replayed manifest or a swapped repository is noticed whichever client saw the
//! newer state.

use std::path::{Path, PathBuf};

use super::key::KeyType;
use super::nonces::save_file;
use super::passphrase::Prompter;
use super::settings::{env_answer, CryptoSettings};

/// Why access to a repository is refused. Messages are borg's.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// The user (or `BORG_RELOCATED_REPO_ACCESS_IS_OK`) declined a moved repository
    /// (`RepositoryAccessAborted`).
    #[error("Repository access aborted")]
    RepositoryAccessAborted,
    /// The user declined an unknown unencrypted repository (`CacheInitAbortedError`).
    #[error("Cache initialization aborted")]
    CacheInitAborted,
    /// The key type differs from the one seen before (`EncryptionMethodMismatch`).
    #[error("Repository encryption method changed since last access, refusing to continue")]
    EncryptionMethodMismatch,
    /// An encrypted repository's manifest is older than one seen before (`RepositoryReplay`).
    #[error("Cache, or information obtained from the security directory is newer than repository - this is either an attack or unsafe (multiple repos with same ID)")]
    RepositoryReplay,
    /// The same for an unencrypted repository (`RepositoryIDNotUnique`).
    #[error("Cache is newer than repository - do you have multiple, independently updated repos with same ID?")]
    RepositoryIdNotUnique,
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl SecurityError {
    /// Borg 1.4's exit code for this error with `BORG_EXIT_CODES=modern` (legacy: always 2).
    pub fn exit_code(&self) -> i32 {
        match self {
            SecurityError::CacheInitAborted => 60,
            SecurityError::EncryptionMethodMismatch => 61,
            SecurityError::RepositoryAccessAborted => 62,
            SecurityError::RepositoryIdNotUnique => 63,
            SecurityError::RepositoryReplay => 64,
            SecurityError::Io { .. } => 2,
        }
    }
}

/// What the local cache remembers about a repository; borg reconciles it with the security
/// dir (`CacheConfig`). The cache module fills this in when a cache exists.
#[derive(Debug, Clone, Default)]
pub struct CacheSecurityState {
    /// `previous_location` of the cache config.
    pub previous_location: Option<String>,
    /// `timestamp` of the cache config (a manifest timestamp).
    pub timestamp: Option<String>,
    /// `key_type` of the cache config (decimal).
    pub key_type: Option<String>,
}

/// One repository's directory in the security dir.
#[derive(Debug, Clone)]
pub struct SecurityDir {
    dir: PathBuf,
}

impl SecurityDir {
    /// The directory for `repository_id` under the settings' security dir.
    pub fn new(settings: &CryptoSettings, repository_id: &[u8; 32]) -> SecurityDir {
        SecurityDir {
            dir: settings.repo_security_dir(repository_id),
        }
    }

    /// A security dir at an explicit path.
    pub fn at(dir: impl Into<PathBuf>) -> SecurityDir {
        SecurityDir { dir: dir.into() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The `nonce` file.
    pub fn nonce_file(&self) -> PathBuf {
        self.dir.join("nonce")
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn read(&self, name: &str) -> Result<Option<String>, SecurityError> {
        let path = self.file(name);
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(SecurityError::Io { path, source: e }),
        }
    }

    fn write(&self, name: &str, text: &str) -> Result<(), SecurityError> {
        let path = self.file(name);
        save_file(&path, text.as_bytes()).map_err(|e| SecurityError::Io { path, source: e })
    }

    /// Whether borg has seen this repository (all of key-type, location and
    /// manifest-timestamp exist).
    pub fn known(&self) -> bool {
        ["key-type", "location", "manifest-timestamp"]
            .iter()
            .all(|n| self.file(n).exists())
    }

    /// The stored location.
    pub fn location(&self) -> Result<Option<String>, SecurityError> {
        self.read("location")
    }

    /// The stored key type (decimal text).
    pub fn key_type(&self) -> Result<Option<String>, SecurityError> {
        self.read("key-type")
    }

    /// The stored manifest timestamp.
    pub fn manifest_timestamp(&self) -> Result<Option<String>, SecurityError> {
        self.read("manifest-timestamp")
    }

    /// Records the repository's location, key type and manifest timestamp
    /// (`SecurityManager.save`).
    pub fn save(
        &self,
        location: &str,
        key_type: KeyType,
        manifest_timestamp: &str,
    ) -> Result<(), SecurityError> {
        self.write("location", location)?;
        self.write("key-type", &key_type.type_byte().to_string())?;
        self.write("manifest-timestamp", manifest_timestamp)
    }

    /// Whether the `tam_required` marker exists.
    pub fn tam_required(&self) -> bool {
        self.file("tam_required").is_file()
    }

    /// Creates or removes the `tam_required` marker.
    pub fn set_tam_required(&self, required: bool) -> Result<(), SecurityError> {
        let path = self.file("tam_required");
        let r = if required {
            save_file(&path, b"")
        } else {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            }
        };
        r.map_err(|e| SecurityError::Io { path, source: e })
    }

    /// Borg's `assert_secure`: asks about an unknown unencrypted repository, then checks the
    /// location, the key type and the manifest timestamp, and remembers a repository seen for
    /// the first time. `logically_encrypted` is false for `none`, the authenticated modes and
    /// keys with an empty passphrase. `warn_if_unencrypted` is false only for `init`.
    #[allow(clippy::too_many_arguments)]
    pub fn assert_secure(
        &self,
        location: &str,
        key_type: KeyType,
        logically_encrypted: bool,
        manifest_timestamp: &str,
        cache: Option<&CacheSecurityState>,
        warn_if_unencrypted: bool,
        settings: &CryptoSettings,
        prompter: &mut dyn Prompter,
    ) -> Result<(), SecurityError> {
        if !logically_encrypted && !self.known() {
            if warn_if_unencrypted {
                let msg = "Warning: Attempting to access a previously unknown unencrypted repository!\nDo you want to continue? [yN] ";
                if !ask(
                    prompter,
                    msg,
                    settings.unknown_unencrypted_repo_access_is_ok.as_deref(),
                ) {
                    prompter.tell("Aborting.");
                    return Err(SecurityError::CacheInitAborted);
                }
            }
            self.save(location, key_type, manifest_timestamp)?;
        }
        self.assert_location_matches(location, cache, settings, prompter)?;
        self.assert_key_type(key_type, cache)?;
        self.assert_no_manifest_replay(key_type, manifest_timestamp, cache)?;
        if !self.known() {
            self.save(location, key_type, manifest_timestamp)?;
        }
        Ok(())
    }

    /// Warns about a moved repository (`assert_location_matches`); accepting updates the
    /// stored location.
    pub fn assert_location_matches(
        &self,
        location: &str,
        cache: Option<&CacheSecurityState>,
        settings: &CryptoSettings,
        prompter: &mut dyn Prompter,
    ) -> Result<(), SecurityError> {
        let mut previous = self.location()?;
        if let Some(cached) = cache.and_then(|c| c.previous_location.clone()) {
            if previous.as_deref() != Some(cached.as_str()) {
                previous = Some(cached);
            }
        }
        match previous {
            Some(prev) if !prev.is_empty() && prev != location => {
                let msg = format!(
                    "Warning: The repository at location {location} was previously located at {prev}\nDo you want to continue? [yN] "
                );
                if !ask(
                    prompter,
                    &msg,
                    settings.relocated_repo_access_is_ok.as_deref(),
                ) {
                    prompter.tell("Aborting.");
                    return Err(SecurityError::RepositoryAccessAborted);
                }
                self.write("location", location)
            }
            _ => Ok(()),
        }
    }

    /// Refuses a changed key type (`assert_key_type`).
    pub fn assert_key_type(
        &self,
        key_type: KeyType,
        cache: Option<&CacheSecurityState>,
    ) -> Result<(), SecurityError> {
        let current = key_type.type_byte().to_string();
        if let Some(cached) = cache.and_then(|c| c.key_type.as_deref()) {
            if cached != current {
                return Err(SecurityError::EncryptionMethodMismatch);
            }
        }
        if self.known() && self.key_type()?.as_deref() != Some(current.as_str()) {
            return Err(SecurityError::EncryptionMethodMismatch);
        }
        Ok(())
    }

    /// Refuses a manifest older than one seen before (`assert_no_manifest_replay`); borg
    /// compares the timestamps as strings.
    pub fn assert_no_manifest_replay(
        &self,
        key_type: KeyType,
        manifest_timestamp: &str,
        cache: Option<&CacheSecurityState>,
    ) -> Result<(), SecurityError> {
        let mut seen = self.manifest_timestamp()?.unwrap_or_default();
        if let Some(t) = cache.and_then(|c| c.timestamp.clone()) {
            seen = seen.max(t);
        }
        if !seen.is_empty() && seen.as_str() > manifest_timestamp {
            return Err(if key_type == KeyType::Plaintext {
                SecurityError::RepositoryIdNotUnique
            } else {
                SecurityError::RepositoryReplay
            });
        }
        Ok(())
    }
}

/// Borg's `yes(..., retry=False, env_var_override=...)`: the variable answers if set (an
/// unknown word counts as no); otherwise the prompter asks; no answer is no.
fn ask(prompter: &mut dyn Prompter, msg: &str, env: Option<&str>) -> bool {
    match env {
        Some(v) => env_answer(v).unwrap_or(false),
        None => prompter.ask_yes_no(msg).unwrap_or(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::passphrase::NoPrompt;

    fn setup() -> (tempfile::TempDir, CryptoSettings, SecurityDir) {
        let t = tempfile::tempdir().unwrap();
        let s = CryptoSettings::under(t.path());
        let d = SecurityDir::new(&s, &[0x11; 32]);
        (t, s, d)
    }

    #[test]
    fn files_look_like_borgs() {
        let (_t, _s, d) = setup();
        assert!(!d.known());
        d.save("/repo", KeyType::Repokey, "2024-01-01T00:00:00.000000")
            .unwrap();
        assert!(d.known());
        assert_eq!(
            std::fs::read_to_string(d.path().join("key-type")).unwrap(),
            "3"
        );
        assert_eq!(
            std::fs::read_to_string(d.path().join("location")).unwrap(),
            "/repo"
        );
        assert!(d
            .path()
            .ends_with("1111111111111111111111111111111111111111111111111111111111111111"));
        d.set_tam_required(true).unwrap();
        assert!(d.tam_required());
        d.set_tam_required(false).unwrap();
        d.set_tam_required(false).unwrap();
        assert!(!d.tam_required());
    }

    #[test]
    fn replay_and_key_type_checks() {
        let (_t, s, d) = setup();
        let ts = "2024-01-01T00:00:00.000002";
        d.assert_secure(
            "/r",
            KeyType::Repokey,
            true,
            ts,
            None,
            true,
            &s,
            &mut NoPrompt,
        )
        .unwrap();
        assert!(d.known());
        // Same or newer manifest: fine. Older: replay.
        d.assert_secure(
            "/r",
            KeyType::Repokey,
            true,
            ts,
            None,
            true,
            &s,
            &mut NoPrompt,
        )
        .unwrap();
        assert!(matches!(
            d.assert_no_manifest_replay(KeyType::Repokey, "2024-01-01T00:00:00.000001", None),
            Err(SecurityError::RepositoryReplay)
        ));
        assert!(matches!(
            d.assert_no_manifest_replay(KeyType::Plaintext, "2023-01-01T00:00:00.000000", None),
            Err(SecurityError::RepositoryIdNotUnique)
        ));
        let cache = CacheSecurityState {
            timestamp: Some("2025".into()),
            ..Default::default()
        };
        assert!(d
            .assert_no_manifest_replay(KeyType::Repokey, ts, Some(&cache))
            .is_err());
        assert!(matches!(
            d.assert_secure(
                "/r",
                KeyType::Keyfile,
                true,
                ts,
                None,
                true,
                &s,
                &mut NoPrompt
            ),
            Err(SecurityError::EncryptionMethodMismatch)
        ));
    }

    #[test]
    fn relocation_needs_consent() {
        let (_t, mut s, d) = setup();
        let ts = "2024-01-01T00:00:00.000000";
        d.save("/old", KeyType::Repokey, ts).unwrap();
        assert!(matches!(
            d.assert_secure(
                "/new",
                KeyType::Repokey,
                true,
                ts,
                None,
                true,
                &s,
                &mut NoPrompt
            ),
            Err(SecurityError::RepositoryAccessAborted)
        ));
        s.relocated_repo_access_is_ok = Some("no".into());
        assert!(d
            .assert_secure(
                "/new",
                KeyType::Repokey,
                true,
                ts,
                None,
                true,
                &s,
                &mut NoPrompt
            )
            .is_err());
        s.relocated_repo_access_is_ok = Some("yes".into());
        d.assert_secure(
            "/new",
            KeyType::Repokey,
            true,
            ts,
            None,
            true,
            &s,
            &mut NoPrompt,
        )
        .unwrap();
        assert_eq!(d.location().unwrap().as_deref(), Some("/new"));
    }

    #[test]
    fn unknown_unencrypted_needs_consent() {
        let (_t, mut s, d) = setup();
        let ts = "2024-01-01T00:00:00.000000";
        assert!(matches!(
            d.assert_secure(
                "/r",
                KeyType::Plaintext,
                false,
                ts,
                None,
                true,
                &s,
                &mut NoPrompt
            ),
            Err(SecurityError::CacheInitAborted)
        ));
        assert!(!d.known());
        // init does not ask.
        d.assert_secure(
            "/r",
            KeyType::Plaintext,
            false,
            ts,
            None,
            false,
            &s,
            &mut NoPrompt,
        )
        .unwrap();
        assert!(d.known());
        let (_t2, _, d2) = setup();
        s.unknown_unencrypted_repo_access_is_ok = Some("y".into());
        d2.assert_secure(
            "/r",
            KeyType::Authenticated,
            false,
            ts,
            None,
            true,
            &s,
            &mut NoPrompt,
        )
        .unwrap();
        assert!(d2.known());
    }
}
