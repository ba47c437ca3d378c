//! Errors a repository reports, remote or local.
//!
//! The variants are named after borg's exception classes, so a borg user recognises them and the
//! RPC layer can map a server's `exception_class` to a variant one to one.

use std::io;

/// What went wrong in a repository operation.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    /// No object with that id (borg's `ObjectNotFound`).
    #[error("Object with key {id} not found in repository {path}.")]
    ObjectNotFound {
        /// The id in hex.
        id: String,
        /// The repository path.
        path: String,
    },
    /// Stored data failed a CRC, header or size check (borg's `IntegrityError`).
    #[error("Data integrity error: {0}")]
    IntegrityError(String),
    /// The repository does not exist (borg's `DoesNotExist`).
    #[error("Repository {0} does not exist.")]
    DoesNotExist(String),
    /// A repository already exists there (borg's `AlreadyExists`).
    #[error("A repository already exists at {0}.")]
    AlreadyExists(String),
    /// Something other than an empty directory is in the way (borg's `PathAlreadyExists`).
    #[error("There is already something at {0}.")]
    PathAlreadyExists(String),
    /// The parent directory is missing (borg's `ParentPathDoesNotExist`).
    #[error("The parent path of the repo directory [{0}] does not exist.")]
    ParentPathDoesNotExist(String),
    /// Permission denied on the repository path (borg's `PathPermissionDenied`).
    #[error("Permission denied to {0}.")]
    PathPermissionDenied(String),
    /// The path is not a borg repository (borg's `InvalidRepository`).
    #[error("{0} is not a valid repository. Check repo config.")]
    InvalidRepository(String),
    /// The repository config is unreadable or unsupported (borg's `InvalidRepositoryConfig`).
    #[error("{path} does not have a valid configuration. Check repo config [{reason}].")]
    InvalidRepositoryConfig {
        /// The repository path.
        path: String,
        /// What is wrong with the config.
        reason: String,
    },
    /// An Attic repository (borg's `AtticRepository`).
    #[error("Attic repository detected. Please run \"borg upgrade {0}\".")]
    AtticRepository(String),
    /// The repository needs `borg check --repair` (borg's `CheckNeeded`).
    #[error("Inconsistency detected. Please run \"borg check {0}\".")]
    CheckNeeded(String),
    /// The server refused the path (`--restrict-to-path`/`--restrict-to-repository`).
    #[error("Repository path not allowed: {0}")]
    PathNotAllowed(String),
    /// The server does not know the method (borg's `InvalidRPCMethod`).
    #[error("RPC method {0} is not valid")]
    InvalidRpcMethod(String),
    /// The lock could not be taken in time (borg's `LockTimeout`).
    #[error("Failed to create/acquire the lock {0} (timeout).")]
    LockTimeout(String),
    /// Taking the lock failed (borg's `LockFailed`).
    #[error("Failed to create/acquire the lock {path} ({reason}).")]
    LockFailed {
        /// The lock path.
        path: String,
        /// Why it failed.
        reason: String,
    },
    /// The lock is not held (borg's `NotLocked`).
    #[error("Failed to release the lock {0} (was not locked).")]
    NotLocked(String),
    /// The lock is held by someone else (borg's `NotMyLock`).
    #[error("Failed to release the lock {0} (was/is locked, but not by me).")]
    NotMyLock(String),
    /// The storage quota would be exceeded (borg's `StorageQuotaExceeded`).
    #[error("The storage quota ({quota}) has been exceeded ({used}). Try deleting some archives.")]
    StorageQuotaExceeded {
        /// The quota, as the server formats it.
        quota: String,
        /// The space in use, as the server formats it.
        used: String,
    },
    /// Not enough free space (borg's `InsufficientFreeSpaceError`).
    #[error("Insufficient free space to complete transaction (required: {required}, available: {available}).")]
    InsufficientFreeSpace {
        /// Space required.
        required: String,
        /// Space available.
        available: String,
    },
    /// The repository is append-only and the operation would remove data.
    #[error("{0} is in append-only mode")]
    AppendOnly(String),
    /// Any other error the server reported, with its class name and message.
    #[error("{message}")]
    Remote {
        /// The server's exception class (`ValueError`, `AttributeError`, `Error`, …).
        class: String,
        /// The server's short message.
        message: String,
    },
    /// The server's version is too old for a method or argument.
    #[error("Borg server is too old for {method}. Required version {required}")]
    ServerOutdated {
        /// The method.
        method: String,
        /// The minimum server version.
        required: String,
    },
    /// The connection to the server ended.
    #[error("Connection closed by remote host{}", hint.as_ref().map(|h| format!(". {h}")).unwrap_or_default())]
    ConnectionClosed {
        /// What may have caused it.
        hint: Option<String>,
    },
    /// The server sent something that is not a borg RPC message.
    #[error("Got unexpected RPC data format from server:\n{0}")]
    UnexpectedRpcData(String),
    /// The transport could not be set up (ssh not found, authentication refused, host key
    /// unknown, …).
    #[error("{0}")]
    Transport(String),
    /// A local I/O error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl RepositoryError {
    /// borg 1.4's exit code for this error with `BORG_EXIT_CODES=modern` (legacy: always 2;
    /// the table is `docs/internals/frontends.rst`, Message IDs).
    pub fn exit_code(&self) -> i32 {
        use RepositoryError as E;
        match self {
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
            E::LockFailed { .. } => 72,
            E::LockTimeout(_) => 73,
            E::NotLocked(_) => 74,
            E::NotMyLock(_) => 75,
            E::ConnectionClosed { .. } => 80,
            E::InvalidRpcMethod(_) => 82,
            E::PathNotAllowed(_) => 83,
            E::ServerOutdated { .. } => 84,
            E::UnexpectedRpcData(_) => 86,
            E::IntegrityError(_) => 90,
            _ => 2,
        }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        RepositoryError::Io {
            context: context.into(),
            source,
        }
    }
}
