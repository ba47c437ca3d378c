//! The client-side caches: the chunk index (which chunks the repository holds and how many
//! references each has) and the files cache (which files are unchanged since the last backup).
//!
//! rborg keeps its own cache files (they are not borg's hashindex format), under
//! `<BORG_CACHE_DIR or ~/.cache/rborg>/<repo id hex>/` with names starting `rborg-`, so a cache
//! directory shared with Python borg never mixes the two. Every file is written to a temporary
//! name, synced, and renamed over the old one, and carries a SHA-256 of its contents, so a crash
//! mid-write leaves the previous version and a damaged file is detected and rebuilt.

mod chunk_index;
mod files_cache;
mod store;
pub mod sync;
mod table;

pub use chunk_index::{ChunkEntry, ChunkIndex, ChunkStats, SizeMismatch, MAX_REFCOUNT};
pub use files_cache::{FileCacheEntry, FileStat, FileStatus, FilesCache, FilesCacheMode};
pub use store::{read_checked, write_atomically};
pub use sync::{ChunkCache, SyncError};

use std::path::PathBuf;

use crate::repository::ObjectId;
use crate::settings::Environment;

/// Why a cache file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Reading or writing a cache file failed.
    #[error("cache file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A cache file is damaged (bad checksum, truncated, wrong magic).
    #[error("cache file {path} is damaged: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A `--files-cache` mode borg would refuse.
    #[error("Invalid files cache mode {0:?}: use a comma-separated subset of ctime, mtime, size, inode, rechunk, or disabled")]
    BadFilesCacheMode(String),
    /// No cache directory could be determined (no `HOME`, no `BORG_CACHE_DIR`).
    #[error("cannot determine the cache directory: set BORG_CACHE_DIR or HOME")]
    NoCacheDir,
}

/// The directory of one repository's cache: `BORG_CACHE_DIR/<id>` when set, else
/// `$XDG_CACHE_HOME/rborg/<id>` or `~/.cache/rborg/<id>`.
pub fn repository_cache_dir(
    env: &Environment,
    repository_id: &ObjectId,
) -> Result<PathBuf, CacheError> {
    let base = if let Some(d) = env.path("BORG_CACHE_DIR") {
        d
    } else if let Some(x) = env.path("XDG_CACHE_HOME") {
        x.join("rborg")
    } else {
        env.base_dir()
            .ok_or(CacheError::NoCacheDir)?
            .join(".cache")
            .join("rborg")
    };
    Ok(base.join(hex::encode(repository_id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_dir_precedence() {
        let id = [0xab; 32];
        let env = Environment::from_pairs([("HOME", "/h")]);
        assert_eq!(
            repository_cache_dir(&env, &id).expect("dir"),
            PathBuf::from(format!("/h/.cache/rborg/{}", hex::encode(id)))
        );
        let env = Environment::from_pairs([("HOME", "/h"), ("BORG_CACHE_DIR", "/c")]);
        assert_eq!(
            repository_cache_dir(&env, &id).expect("dir"),
            PathBuf::from(format!("/c/{}", hex::encode(id)))
        );
        assert!(repository_cache_dir(&Environment::default(), &id).is_err());
    }
}
