//! Opening a repository from its location: a local path goes to the native local repository,
//! an `ssh://` or `host:path` location to a `borg serve` through ssh.

use std::path::Path;

use crate::location::{Location, Proto};
use crate::rpc::ClientOptions;
use crate::settings::Environment;
use crate::transport::{SshKind, SshSettings};

use super::local::{LocalRepository, LocalSettings};
use super::remote::RemoteRepository;
use super::{OpenOptions, Repository, RepositoryError};

/// Everything needed to reach a repository, local or remote.
pub struct AccessSettings {
    /// How to start `borg serve` for a remote repository.
    pub ssh: SshSettings,
    /// The system `ssh` or libssh2.
    pub ssh_kind: SshKind,
    /// Settings of the native local repository.
    pub local: LocalSettings,
}

impl AccessSettings {
    /// Settings from the environment and the `--rsh`/`--remote-path` options.
    pub fn from_env(
        env: &Environment,
        rsh: Option<String>,
        remote_path: Option<String>,
        ssh_kind: SshKind,
    ) -> AccessSettings {
        let pairs = env
            .iter()
            .map(|(k, v)| (k.to_os_string(), v.to_os_string()))
            .collect();
        AccessSettings {
            ssh: SshSettings::from_env(pairs, rsh, remote_path, crate::BORG_VERSION_TEXT),
            ssh_kind,
            local: LocalSettings::from_env(env),
        }
    }
}

/// Opens (or with `options.create`, creates) the repository at `location`. `client` (window,
/// progress callback) applies to a remote repository only.
pub fn open_repository(
    location: &Location,
    options: &OpenOptions,
    access: &AccessSettings,
    client: ClientOptions,
) -> Result<Box<dyn Repository>, RepositoryError> {
    match location.proto {
        Proto::File => {
            let repo = LocalRepository::open(Path::new(&location.path), options, &access.local)?;
            Ok(Box::new(repo))
        }
        Proto::Ssh => {
            let repo =
                RemoteRepository::connect(location, &access.ssh, access.ssh_kind, options, client)?;
            Ok(Box::new(repo))
        }
    }
}
