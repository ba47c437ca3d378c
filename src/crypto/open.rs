//! Finding and unlocking the key of an existing repository (`key_factory`, `detect`).

use std::path::PathBuf;

use super::key::{Key, KeyError, KeyStorage, KeyType};
use super::keyblob::{decrypt_key, KeyBlobError};
use super::keyfile::{find_key_file, read_key_file, KeyfileError};
use super::nonces::{manifest_nonce, NonceManager};
use super::passphrase::{unlock_with, Passphrase, PassphraseError, Prompter};
use super::security::SecurityDir;
use super::settings::CryptoSettings;
use crate::repository::{Repository, RepositoryError};

/// Why a repository's key cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The manifest's type byte is unknown.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A repokey repository has no key in its config (`RepoKeyNotFoundError`).
    #[error("No key entry found in the config of repository {0}.")]
    RepoKeyNotFound(String),
    /// The key blob is damaged or of an unsupported kind.
    #[error(transparent)]
    Blob(#[from] KeyBlobError),
    /// The key file is missing, invalid or unsafe.
    #[error(transparent)]
    Keyfile(#[from] KeyfileError),
    /// No passphrase, or a wrong one.
    #[error(transparent)]
    Passphrase(#[from] PassphraseError),
    /// The repository failed.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

impl OpenError {
    /// Borg 1.4's exit code for this error with `BORG_EXIT_CODES=modern` (legacy: always 2).
    pub fn exit_code(&self) -> i32 {
        match self {
            OpenError::Key(e) => e.exit_code(),
            OpenError::RepoKeyNotFound(_) => 44,
            OpenError::Blob(e) => e.exit_code(),
            OpenError::Keyfile(e) => e.exit_code(),
            OpenError::Passphrase(e) => e.exit_code(),
            OpenError::Repository(_) => 2,
        }
    }
}

/// Where a key blob is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyTarget {
    /// No blob (`none`).
    None,
    /// The repository config.
    Repository,
    /// A key file.
    File(PathBuf),
}

/// An unlocked key with what `key change-passphrase` and the security checks need.
#[derive(Debug)]
pub struct OpenedKey {
    /// The key.
    pub key: Key,
    /// The passphrase that opened it (empty for `none`).
    pub passphrase: Passphrase,
    /// Where its blob lives.
    pub target: KeyTarget,
    /// Borg's `logically_encrypted`: false for `none`, the authenticated modes and an empty
    /// passphrase.
    pub logically_encrypted: bool,
}

impl OpenedKey {
    /// The nonce manager for encrypting with this key in this process, starting past the
    /// manifest it was opened with and sharing the security dir's `nonce` file with borg.
    pub fn nonce_manager(
        &self,
        settings: &CryptoSettings,
        manifest_envelope: Option<&[u8]>,
    ) -> NonceManager {
        let dir = SecurityDir::new(settings, &self.repository_id());
        NonceManager::new(
            manifest_nonce(&self.key, manifest_envelope),
            Some(dir.nonce_file()),
        )
    }

    fn repository_id(&self) -> [u8; 32] {
        self.key.material().map_or([0; 32], |m| m.repository_id)
    }
}

/// Reads the key blob text of a repository: from its config for repokey types, from the key
/// file otherwise.
pub fn load_key_blob(
    repository: &mut dyn Repository,
    key_type: KeyType,
    settings: &CryptoSettings,
    location: &str,
) -> Result<(String, KeyTarget), OpenError> {
    match key_type.storage() {
        KeyStorage::None => Ok((String::new(), KeyTarget::None)),
        KeyStorage::Repo => {
            let data = repository.load_key()?;
            let text = String::from_utf8_lossy(&data).trim().to_string();
            if text.is_empty() {
                return Err(OpenError::RepoKeyNotFound(location.to_string()));
            }
            Ok((text, KeyTarget::Repository))
        }
        KeyStorage::Keyfile => {
            let id = *repository.id();
            let path = find_key_file(settings, &id, location)?;
            Ok((read_key_file(&path)?, KeyTarget::File(path)))
        }
    }
}

/// Opens the key of a repository given its manifest envelope (borg's `key_factory`): picks the
/// key class from the type byte, loads the blob, gets a passphrase the way borg does and
/// decrypts. A key without a stored `tam_required` takes it from the security dir.
pub fn open_key(
    repository: &mut dyn Repository,
    manifest_envelope: &[u8],
    location: &str,
    settings: &CryptoSettings,
    prompter: &mut dyn Prompter,
) -> Result<OpenedKey, OpenError> {
    let key_type = KeyType::identify_manifest(manifest_envelope)?;
    if key_type == KeyType::Plaintext {
        return Ok(OpenedKey {
            key: Key::plaintext(),
            passphrase: Passphrase::default(),
            target: KeyTarget::None,
            logically_encrypted: false,
        });
    }
    let (blob, target) = load_key_blob(repository, key_type, settings, location)?;
    let prompt = match &target {
        KeyTarget::File(p) => format!("Enter passphrase for key {}: ", p.display()),
        _ => format!("Enter passphrase for key {location}: "),
    };
    let (decrypted, passphrase) = unlock_with(settings, prompter, &prompt, |p| {
        decrypt_key(&blob, p).map_err(OpenError::from)
    })?;
    let mut material = decrypted.material;
    if !decrypted.tam_required_stored {
        material.tam_required = SecurityDir::new(settings, repository.id()).tam_required();
    }
    let key = Key::new(key_type, material)?;
    let logically_encrypted = key_type.is_encrypted() && !passphrase.is_empty();
    Ok(OpenedKey {
        key,
        passphrase,
        target,
        logically_encrypted,
    })
}
