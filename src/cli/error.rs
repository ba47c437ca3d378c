//! The one place where library errors become a message and an exit code.

use super::exit::Outcome;

/// A failed command: the one-line message to print and how the process ends.
#[derive(Debug)]
pub struct CliError {
    /// What went wrong, one line, naming the thing that is wrong.
    pub message: String,
    /// Borg's severity and modern exit code.
    pub outcome: Outcome,
}

impl CliError {
    /// An error with borg's generic modern code 2.
    pub fn error(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            outcome: Outcome::Error(2),
        }
    }

    /// An error with a specific modern code.
    pub fn with_code(message: impl Into<String>, code: u8) -> Self {
        CliError {
            message: message.into(),
            outcome: Outcome::Error(code),
        }
    }

    /// A command-line usage error (borg's CommandError, modern code 4).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError::with_code(message, 4)
    }
}

impl From<rborg::repository::RepositoryError> for CliError {
    fn from(e: rborg::repository::RepositoryError) -> Self {
        use rborg::repository::RepositoryError as E;
        // borg 1.4's modern codes (`docs/internals/frontends.rst`, Message IDs).
        let code = match &e {
            E::AlreadyExists(_) => 10,
            E::AtticRepository(_) => 11,
            E::CheckNeeded(_) => 12,
            E::DoesNotExist(_) => 13,
            E::InsufficientFreeSpace { .. } => 14,
            E::InvalidRepository(_) => 15,
            E::InvalidRepositoryConfig { .. } => 16,
            E::ObjectNotFound { .. } => 17,
            E::ParentPathDoesNotExist(_) => 18,
            E::PathAlreadyExists(_) => 19,
            E::StorageQuotaExceeded { .. } => 20,
            E::PathPermissionDenied(_) => 21,
            E::LockTimeout(_) => 73,
            E::LockFailed { .. } => 72,
            E::NotLocked(_) => 74,
            E::NotMyLock(_) => 75,
            E::ConnectionClosed { .. } => 80,
            E::PathNotAllowed(_) => 83,
            E::InvalidRpcMethod(_) => 82,
            E::ServerOutdated { .. } => 84,
            E::UnexpectedRpcData(_) => 86,
            E::IntegrityError(_) => 90,
            _ => 2,
        };
        CliError::with_code(e.to_string(), code)
    }
}

impl From<rborg::ops::config::ConfigError> for CliError {
    fn from(e: rborg::ops::config::ConfigError) -> Self {
        CliError::error(e.to_string())
    }
}
