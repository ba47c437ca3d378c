//! The repository abstraction: a key-value store of encrypted objects with transactions.
//!
//! Borg's repository stores opaque objects under 32-byte ids and groups changes into
//! transactions. [`Repository`] is the one interface the rest of rborg uses; it is implemented
//! by the remote repository (borg's RPC over a transport, [`crate::rpc`]) and by the native
//! local repository in borg's on-disk format.

mod error;
pub mod local;
mod open;
pub mod remote;

pub use error::RepositoryError;
pub use open::{open_repository, AccessSettings};

/// A 32-byte object id (a chunk id, an archive id, or the manifest id).
pub type ObjectId = [u8; 32];

/// The id under which the manifest is stored: 32 zero bytes.
pub const MANIFEST_ID: ObjectId = [0u8; 32];

/// The most ids one `list` or `scan` call returns; borg's client asks for this many
/// (`LIST_SCAN_LIMIT`) and a 1.2 client refuses longer replies.
pub const LIST_SCAN_LIMIT: u32 = 100_000;

/// How to open a repository (the arguments of borg's `open` RPC).
#[derive(Debug, Clone, PartialEq)]
pub struct OpenOptions {
    /// Create a new repository at the path (`borg init`).
    pub create: bool,
    /// Take a lock at all (`false` for `break-lock` and `--bypass-lock`).
    pub lock: bool,
    /// Take the exclusive (writer) lock instead of a shared one.
    pub exclusive: bool,
    /// Borg's `exclusive=None`, what a client older than borg 1.0's lock rework sends (or a
    /// client that leaves the argument out): take the shared lock, and upgrade it to the
    /// exclusive one when a transaction starts (`Repository.prepare_txn`). Only meaningful
    /// with `exclusive: false`; without it a write under a shared lock is refused.
    pub upgrade_lock: bool,
    /// Seconds to wait for the lock; `None` waits forever. Borg's default is 1.
    pub lock_wait: Option<f64>,
    /// Make a new repository append-only (`borg init --append-only`).
    pub append_only: bool,
    /// Create missing parent directories of a new repository.
    pub make_parent_dirs: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            create: false,
            lock: true,
            exclusive: false,
            upgrade_lock: false,
            lock_wait: Some(1.0),
            append_only: false,
            make_parent_dirs: false,
        }
    }
}

/// Arguments of `commit`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CommitOptions {
    /// Compact segments as part of the commit (`borg compact`). Borg 1.2+ clients send `false`
    /// for every ordinary commit.
    pub compact: bool,
    /// Minimum fraction of freeable space in a segment before compaction rewrites it (0.1 = 10%).
    pub threshold: f64,
    /// Remove segments that hold only commit tags (`borg compact --cleanup-commits`).
    pub cleanup_commits: bool,
}

impl Default for CommitOptions {
    fn default() -> Self {
        CommitOptions {
            compact: false,
            threshold: 0.1,
            cleanup_commits: false,
        }
    }
}

/// A borg 1.x repository, remote or local.
///
/// Writes (`put`, `delete`) may be asynchronous: an implementation may return before the
/// object is stored and report a failure from a later call. [`Repository::flush`] waits for
/// every outstanding write, and [`Repository::commit`] flushes first.
pub trait Repository: Send {
    /// The repository id from its config, as returned by `open`.
    fn id(&self) -> &ObjectId;

    /// Reads one object.
    fn get(&mut self, id: &ObjectId) -> Result<Vec<u8>, RepositoryError>;

    /// Reads many objects, in the order of `ids`, calling `sink` with each one.
    ///
    /// A remote repository keeps many requests in flight so this is not one round trip per
    /// object. `sink` returning an error stops the reading and returns that error.
    fn get_many(
        &mut self,
        ids: &[ObjectId],
        sink: &mut dyn FnMut(usize, Vec<u8>) -> Result<(), RepositoryError>,
    ) -> Result<(), RepositoryError>;

    /// Stores an object, replacing one with the same id. May complete asynchronously.
    fn put(&mut self, id: &ObjectId, data: Vec<u8>) -> Result<(), RepositoryError>;

    /// Deletes an object. May complete asynchronously. Deleting a missing object is an
    /// [`RepositoryError::ObjectNotFound`].
    fn delete(&mut self, id: &ObjectId) -> Result<(), RepositoryError>;

    /// Waits until every asynchronous `put` and `delete` has been answered, returning the first
    /// error among them.
    fn flush(&mut self) -> Result<(), RepositoryError>;

    /// Commits the current transaction.
    fn commit(&mut self, options: CommitOptions) -> Result<(), RepositoryError>;

    /// Drops the current transaction.
    fn rollback(&mut self) -> Result<(), RepositoryError>;

    /// Lists object ids in index order, `limit` at a time, starting after `marker`.
    fn list(
        &mut self,
        limit: Option<u32>,
        marker: Option<&ObjectId>,
    ) -> Result<Vec<ObjectId>, RepositoryError>;

    /// Lists object ids in on-disk order, `limit` at a time, starting after `marker`.
    fn scan(
        &mut self,
        limit: Option<u32>,
        marker: Option<&ObjectId>,
    ) -> Result<Vec<ObjectId>, RepositoryError>;

    /// Checks (and with `repair`, repairs) the repository's own structure. `max_duration` in
    /// seconds makes a partial check; 0 checks everything. Returns `true` when clean or repaired.
    fn check(&mut self, repair: bool, max_duration: u64) -> Result<bool, RepositoryError>;

    /// The number of objects in the repository.
    fn object_count(&mut self) -> Result<u64, RepositoryError>;

    /// The repokey blob stored in the repository config; empty when there is none.
    fn load_key(&mut self) -> Result<Vec<u8>, RepositoryError>;

    /// Stores a repokey blob in the repository config.
    fn save_key(&mut self, keydata: &[u8]) -> Result<(), RepositoryError>;

    /// The repository's nonce reservation, if it has one.
    fn get_free_nonce(&mut self) -> Result<Option<u64>, RepositoryError>;

    /// Moves the repository's nonce reservation from `start_nonce` to `next_unreserved`.
    fn commit_nonce_reservation(
        &mut self,
        next_unreserved: u64,
        start_nonce: Option<u64>,
    ) -> Result<(), RepositoryError>;

    /// Removes the repository's lock, whoever holds it.
    fn break_lock(&mut self) -> Result<(), RepositoryError>;

    /// Deletes the whole repository.
    fn destroy(&mut self) -> Result<(), RepositoryError>;

    /// Releases the lock and closes the connection. Uncommitted changes are discarded.
    fn close(&mut self) -> Result<(), RepositoryError>;
}
