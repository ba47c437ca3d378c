//! `borg compact` (`archiver.py: do_compact`): a repository-level operation that needs no key.
//! The manifest object is read and put back unchanged to open a transaction, then one commit
//! with compaction frees the space of deleted and superseded objects. The repository logs
//! "compaction freed about X repository space." (the server does for a remote repository).

use crate::location::Location;
use crate::repository::{open_repository, AccessSettings, CommitOptions, OpenOptions, MANIFEST_ID};
use crate::rpc::ClientOptions;

use super::CommandError;

/// How to compact.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompactOptions {
    /// Compact a segment only if more than this percentage of it is freeable (borg's default 10).
    pub threshold_percent: f64,
    /// Also remove the commit-only segments borg 1.1 left behind (`--cleanup-commits`).
    pub cleanup_commits: bool,
    /// Do nothing (`--dry-run`, borg 1.2.9+ / 1.4.1+).
    pub dry_run: bool,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions {
            threshold_percent: 10.0,
            cleanup_commits: false,
            dry_run: false,
        }
    }
}

/// Compacts the repository at `location` under an exclusive lock.
pub fn compact(
    location: &Location,
    access: &AccessSettings,
    open: &OpenOptions,
    client: ClientOptions,
    options: &CompactOptions,
) -> Result<(), CommandError> {
    let mut repository = open_repository(location, open, access, client)?;
    let result = (|| -> Result<(), CommandError> {
        if options.dry_run {
            return Ok(());
        }
        let manifest = repository.get(&MANIFEST_ID)?;
        repository.put(&MANIFEST_ID, manifest)?;
        repository.commit(CommitOptions {
            compact: true,
            threshold: options.threshold_percent / 100.0,
            cleanup_commits: options.cleanup_commits,
        })?;
        Ok(())
    })();
    let closed = repository.close();
    result?;
    closed?;
    Ok(())
}
