//! Commands as plain library functions over an opened repository.
//!
//! Each command module (`init`, `list`, `create`, …) takes a [`Session`] (or, for `init`, a bare
//! repository) and returns a value; printing belongs to the command line. [`Session::open`] does
//! what every borg command does first: reach the repository (local or over ssh), open the key
//! (asking for the passphrase as borg does), verify the manifest and its TAM, and run the
//! security checks.

pub mod check;
pub mod compact;
pub mod content_total;
pub mod create;
pub mod delete;
pub mod error;
pub mod extract;
pub mod info;
pub mod init;
pub mod key;
pub mod prune;
pub mod rename;
pub mod select;

pub use error::CommandError;

use crate::crypto::passphrase::Prompter;
use crate::crypto::CryptoSettings;
use crate::location::Location;
use crate::manifest::{DefaultCodec, OpenedRepository, Operation};
use crate::repository::{open_repository, AccessSettings, OpenOptions, Repository};
use crate::rpc::ClientOptions;

/// An open repository with its key and manifest, ready for a command.
pub struct Session {
    /// Where the repository is.
    pub location: Location,
    /// The repository.
    pub repository: Box<dyn Repository>,
    /// The key, the verified manifest and the nonce manager.
    pub opened: OpenedRepository,
    /// The crypto settings it was opened with (security dir, keys dir).
    pub crypto: CryptoSettings,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("location", &self.location)
            .field("repository_id", &hex::encode(self.repository.id()))
            .finish()
    }
}

impl Session {
    /// Opens the repository at `location` for `operations`, with the lock `open` asks for.
    pub fn open(
        location: &Location,
        access: &AccessSettings,
        open: &OpenOptions,
        client: ClientOptions,
        crypto: CryptoSettings,
        prompter: &mut dyn Prompter,
        operations: &[Operation],
    ) -> Result<Session, CommandError> {
        let location = &location.absolute();
        let mut repository = open_repository(location, open, access, client)?;
        let opened = match crate::manifest::open_repository(
            repository.as_mut(),
            &location.canonical_path(),
            operations,
            &crypto,
            prompter,
            &DefaultCodec,
        ) {
            Ok(o) => o,
            Err(e) => {
                let _ = repository.close();
                return Err(e.into());
            }
        };
        Ok(Session {
            location: location.clone(),
            repository,
            opened,
            crypto,
        })
    }

    /// Writes the manifest and commits (once per changing command, as borg does).
    pub fn write_manifest_and_commit(&mut self) -> Result<(), CommandError> {
        let location = self.location.canonical_path();
        self.opened.write_manifest_and_commit(
            self.repository.as_mut(),
            &location,
            &self.crypto,
            &DefaultCodec,
        )?;
        Ok(())
    }

    /// Closes the repository, releasing its lock. Uncommitted changes are dropped.
    pub fn close(mut self) -> Result<(), CommandError> {
        self.repository.close()?;
        Ok(())
    }
}
