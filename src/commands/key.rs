//! `key export`, `key import` and `key change-passphrase`.

use crate::crypto::keymanager;
use crate::crypto::open::load_key_blob;
use crate::crypto::passphrase::Prompter;
use crate::crypto::{CryptoSettings, KeyType};
use crate::location::Location;
use crate::manifest::Operation;
use crate::repository::{open_repository, AccessSettings, OpenOptions, Repository, MANIFEST_ID};
use crate::rpc::ClientOptions;

use super::init::key_location;
use super::{CommandError, Session};

/// The key type of a repository, from its manifest's type byte.
fn repository_key_type(repository: &mut dyn Repository) -> Result<KeyType, CommandError> {
    let envelope = repository.get(&MANIFEST_ID)?;
    KeyType::identify_manifest(&envelope).map_err(|e| CommandError::other(e.to_string()))
}

/// How an exported key is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// borg's `BORG_KEY <id>` file format.
    Plain,
    /// `--paper`: lines with checksums, for typing in by hand.
    Paper,
}

/// Exports the repository's key blob (still encrypted with the passphrase; no passphrase is
/// needed), as `borg key export` does.
pub fn export(
    location: &Location,
    access: &AccessSettings,
    open: &OpenOptions,
    crypto: &CryptoSettings,
    format: ExportFormat,
) -> Result<String, CommandError> {
    let mut repository = open_repository(location, open, access, ClientOptions::default())?;
    let result = (|| {
        let key_type = repository_key_type(repository.as_mut())?;
        if key_type == KeyType::Plaintext {
            return Err(keymanager::KeyManagerError::UnencryptedRepo.into());
        }
        let (blob, _) = load_key_blob(
            repository.as_mut(),
            key_type,
            crypto,
            &location.canonical_path(),
        )
        .map_err(|e| CommandError::Other {
            code: e.exit_code(),
            message: e.to_string(),
        })?;
        let id = *repository.id();
        Ok(match format {
            ExportFormat::Plain => keymanager::export_plain(&id, &blob),
            ExportFormat::Paper => keymanager::export_paper(&id, &blob)?,
        })
    })();
    let _ = repository.close();
    result
}

/// Imports a key exported by `key export` (either format) into the repository, as `borg key
/// import` does.
pub fn import(
    location: &Location,
    access: &AccessSettings,
    open: &OpenOptions,
    crypto: &CryptoSettings,
    text: &str,
    format: ExportFormat,
) -> Result<(), CommandError> {
    let mut repository = open_repository(location, open, access, ClientOptions::default())?;
    let result = (|| {
        let key_type = repository_key_type(repository.as_mut())?;
        let id = *repository.id();
        let blob = match format {
            ExportFormat::Plain => keymanager::import_plain(&id, text)?,
            ExportFormat::Paper => keymanager::import_paper(&id, text)?,
        };
        keymanager::store_key_blob(
            repository.as_mut(),
            key_type,
            &blob,
            crypto,
            &key_location(location),
        )?;
        Ok(())
    })();
    let _ = repository.close();
    result
}

/// Changes the key's passphrase (`BORG_NEW_PASSPHRASE` or a prompt), as `borg key
/// change-passphrase` does.
pub fn change_passphrase(
    location: &Location,
    access: &AccessSettings,
    open: &OpenOptions,
    crypto: CryptoSettings,
    prompter: &mut dyn Prompter,
) -> Result<(), CommandError> {
    let mut session = Session::open(
        location,
        access,
        open,
        ClientOptions::default(),
        crypto,
        prompter,
        &[Operation::Check],
    )?;
    let Session {
        repository,
        opened,
        crypto,
        ..
    } = &mut session;
    keymanager::change_passphrase(repository.as_mut(), &mut opened.key, crypto, prompter)?;
    session.close()
}
