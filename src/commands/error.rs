//! The error of a command, with borg's exit code.

use crate::repository::RepositoryError;

/// Why a command failed. Every variant knows borg 1.4's modern exit code; the legacy code is
/// 2 for all of them.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The repository failed.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// Opening the key, manifest or security checks failed.
    #[error(transparent)]
    Open(#[from] crate::manifest::OpenRepositoryError),
    /// The manifest could not be read or written.
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
    /// `init` failed.
    #[error(transparent)]
    Init(#[from] crate::crypto::init::InitError),
    /// A key export, import or passphrase change failed.
    #[error(transparent)]
    KeyManager(#[from] crate::crypto::keymanager::KeyManagerError),
    /// Anything else, with its message and modern exit code.
    #[error("{message}")]
    Other {
        /// One line naming what is wrong.
        message: String,
        /// borg 1.4's modern exit code.
        code: i32,
    },
}

impl CommandError {
    /// An error with borg's generic code.
    pub fn other(message: impl Into<String>) -> Self {
        CommandError::Other {
            message: message.into(),
            code: 2,
        }
    }

    /// borg 1.4's exit code for this error with `BORG_EXIT_CODES=modern`.
    pub fn exit_code(&self) -> i32 {
        match self {
            CommandError::Repository(e) => e.exit_code(),
            CommandError::Open(e) => e.exit_code(),
            CommandError::Manifest(e) => e.exit_code(),
            CommandError::Init(e) => e.exit_code(),
            CommandError::KeyManager(e) => e.exit_code(),
            CommandError::Other { code, .. } => *code,
        }
    }
}
