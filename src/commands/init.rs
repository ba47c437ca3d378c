//! `init`: create a repository with a key and an empty manifest, as `borg init` does.

use crate::crypto::init::{InitOptions, Initialized};
use crate::crypto::keyfile::KeyLocation;
use crate::crypto::passphrase::Prompter;
use crate::crypto::{CryptoSettings, KeyType};
use crate::location::Location;
use crate::manifest::DefaultCodec;
use crate::repository::{open_repository, AccessSettings, OpenOptions};
use crate::rpc::ClientOptions;

use super::CommandError;

/// What `init` is asked to make.
#[derive(Debug, Clone)]
pub struct InitRequest {
    /// The encryption mode.
    pub key_type: KeyType,
    /// `--append-only`.
    pub append_only: bool,
    /// `--storage-quota` in bytes.
    pub storage_quota: Option<u64>,
    /// `--make-parent-dirs`.
    pub make_parent_dirs: bool,
    /// `--lock-wait` in seconds.
    pub lock_wait: f64,
}

/// The key location of a repository location (what the security dir and key files record).
pub fn key_location(location: &Location) -> KeyLocation {
    let location = location.absolute();
    KeyLocation {
        canonical_path: location.canonical_path(),
        host: location.host().map(str::to_string),
        path: location.path.clone(),
    }
}

/// Creates the repository at `location` and initialises it. If anything fails after the
/// repository was created (a refused passphrase, say), the new repository is removed again, so
/// a failed `init` leaves nothing behind.
pub fn init(
    location: &Location,
    access: &AccessSettings,
    crypto: &CryptoSettings,
    prompter: &mut dyn Prompter,
    request: &InitRequest,
) -> Result<Initialized, CommandError> {
    let location = &location.absolute();
    let mut access = AccessSettings {
        ssh: access.ssh.clone(),
        ssh_kind: access.ssh_kind,
        local: access.local.clone(),
    };
    access.ssh.serve.storage_quota = request.storage_quota;
    access.local.storage_quota = request.storage_quota;
    let open = OpenOptions {
        create: true,
        lock: true,
        exclusive: true,
        upgrade_lock: false,
        lock_wait: Some(request.lock_wait),
        append_only: request.append_only,
        make_parent_dirs: request.make_parent_dirs,
    };
    let mut repository = open_repository(location, &open, &access, ClientOptions::default())?;
    let key_location = key_location(location);
    let result = crate::crypto::init::init(
        repository.as_mut(),
        InitOptions::new(request.key_type, &key_location),
        crypto,
        prompter,
        &DefaultCodec,
    );
    match result {
        Ok(done) => {
            repository.close()?;
            Ok(done)
        }
        Err(e) => {
            if let Err(d) = repository.destroy() {
                log::warn!("could not remove the half-made repository: {d}");
            }
            let _ = repository.close();
            Err(e.into())
        }
    }
}
