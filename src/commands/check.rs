//! `borg check`: the repository check (segments, CRCs, index; run where the repository is),
//! then the archive check (`crate::check`), as `archiver.py: do_check` runs them.

use crate::check::{
    check_archives, find_key_envelope, list_all_ids, ArchiveCheckOptions, ArchiveCheckReport,
};
use crate::crypto::passphrase::Prompter;
use crate::crypto::security::SecurityDir;
use crate::crypto::CryptoSettings;
use crate::location::Location;
use crate::manifest::DefaultCodec;
use crate::repository::{
    open_repository, AccessSettings, OpenOptions, RepositoryError, MANIFEST_ID,
};
use crate::rpc::ClientOptions;

use super::CommandError;

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Skip the archive check (`--repository-only`).
    pub repository_only: bool,
    /// Skip the repository check (`--archives-only`).
    pub archives_only: bool,
    /// Repair (`--repair`); the caller has asked for confirmation.
    pub repair: bool,
    /// Partial repository check of at most this many seconds (`--max-duration`; 0 = full).
    pub max_duration: u64,
    /// The archive check's options (including `--verify-data`).
    pub archives: ArchiveCheckOptions,
}

/// How the check went.
#[derive(Debug, Clone, Default)]
pub struct CheckOutcome {
    /// The repository check's verdict, if it ran.
    pub repository_ok: Option<bool>,
    /// The archive check's findings, if it ran.
    pub archives: Option<ArchiveCheckReport>,
}

impl CheckOutcome {
    /// Whether borg would end with rc 0 (a repair run counts as clean, as in borg).
    pub fn is_clean(&self, repair: bool) -> bool {
        if self.repository_ok == Some(false) {
            return false;
        }
        repair || !self.archives.as_ref().is_some_and(|a| a.error_found)
    }
}

/// Runs the check on the repository at `location` with an exclusive lock.
#[allow(clippy::too_many_arguments)]
pub fn check(
    location: &Location,
    access: &AccessSettings,
    open: &OpenOptions,
    client: ClientOptions,
    crypto: &CryptoSettings,
    prompter: &mut dyn Prompter,
    options: &CheckOptions,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<CheckOutcome, CommandError> {
    let mut repository = open_repository(location, open, access, client)?;
    let result = run(
        repository.as_mut(),
        location,
        crypto,
        prompter,
        options,
        progress,
    );
    let closed = repository.close();
    let outcome = result?;
    closed?;
    Ok(outcome)
}

fn run(
    repository: &mut dyn crate::repository::Repository,
    location: &Location,
    crypto: &CryptoSettings,
    prompter: &mut dyn Prompter,
    options: &CheckOptions,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<CheckOutcome, CommandError> {
    let mut outcome = CheckOutcome::default();
    if !options.archives_only {
        let ok = repository.check(options.repair, options.max_duration)?;
        outcome.repository_ok = Some(ok);
        if !ok {
            return Ok(outcome);
        }
    }
    if options.repository_only {
        return Ok(outcome);
    }
    let ids = list_all_ids(repository)?;
    if ids.is_empty() {
        log::error!(target: "borg.check", "Repository contains no apparent data at all, cannot continue check/repair.");
        outcome.archives = Some(ArchiveCheckReport {
            error_found: true,
            ..ArchiveCheckReport::default()
        });
        return Ok(outcome);
    }
    let manifest_envelope = match repository.get(&MANIFEST_ID) {
        Ok(e) => Some(e),
        Err(RepositoryError::ObjectNotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let key_envelope = match &manifest_envelope {
        Some(e) if !e.is_empty() => e.clone(),
        _ => find_key_envelope(repository, &ids).map_err(|e| CommandError::Other {
            message: e.to_string(),
            code: e.exit_code(),
        })?,
    };
    let canonical = location.canonical_path();
    let key =
        crate::crypto::open::open_key(repository, &key_envelope, &canonical, crypto, prompter)
            .map_err(crate::manifest::OpenRepositoryError::from)?;
    let mut nonces = key.nonce_manager(crypto, manifest_envelope.as_deref());
    let mut archive_options = options.archives.clone();
    archive_options.repair = options.repair;
    let (report, manifest) = check_archives(
        repository,
        &key.key,
        &DefaultCodec,
        &mut nonces,
        ids,
        &archive_options,
        progress,
    )
    .map_err(|e| CommandError::Other {
        message: e.to_string(),
        code: e.exit_code(),
    })?;
    if options.repair {
        if let Some(m) = manifest {
            // The new manifest is the newest this client has seen (replay detection).
            let security = SecurityDir::new(crypto, repository.id());
            security
                .save(
                    &canonical,
                    key.key.key_type(),
                    m.timestamp.as_deref().unwrap_or_default(),
                )
                .map_err(crate::manifest::ManifestError::from)?;
        }
    }
    outcome.archives = Some(report);
    Ok(outcome)
}
