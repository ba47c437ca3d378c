//! `borg prune` (`archiver.py: do_prune`): the rule engine ([`crate::prune`]) decides, then the
//! archives to prune are deleted newest first with exact reference counts and one commit
//! ([`super::delete::delete_archives_forced`]).

use crate::prune::{
    parse_manifest_time, prune, Decision, PruneArchive, PruneRules, PruneSettings, Verdict,
};
use crate::settings::Environment;

use super::delete::{delete_archives_forced, DeleteOptions, DeleteReport, Force};
use super::{CommandError, Session};

/// What a prune run decided and did.
#[derive(Debug, Clone)]
pub struct PruneOutcome {
    /// Every manifest archive, as the engine saw it.
    pub all: Vec<PruneArchive>,
    /// The decisions for the candidates, newest first (borg's `--list` order).
    pub decisions: Vec<Decision>,
    /// What the deletion released (`None` in a dry run or when nothing was pruned).
    pub deleted: Option<DeleteReport>,
}

/// The manifest's archives as prune candidates, in manifest order.
pub fn prune_archives_of(session: &Session) -> Result<Vec<PruneArchive>, CommandError> {
    session
        .opened
        .manifest
        .archives
        .iter()
        .map(|(name, entry)| {
            Ok(PruneArchive {
                name: String::from_utf8_lossy(name).into_owned(),
                id: entry.id,
                ts: parse_manifest_time(&entry.time)
                    .map_err(|e| CommandError::other(e.to_string()))?,
            })
        })
        .collect()
}

/// Decides with `rules` and, unless `options.dry_run`, deletes what is pruned in one
/// transaction, as [`delete_archives_forced`] does. borg's `prune --force` deletes damaged
/// archives like `delete --force` ([`Force::Damaged`]); a second `--force` adds nothing.
pub fn prune_repository(
    session: &mut Session,
    env: &Environment,
    rules: &PruneRules,
    settings: &PruneSettings,
    options: DeleteOptions,
) -> Result<PruneOutcome, CommandError> {
    let all = prune_archives_of(session)?;
    let decisions = prune(&all, rules, settings).map_err(|e| CommandError::Other {
        message: e.to_string(),
        code: 4,
    })?;
    let names: Vec<String> = decisions
        .iter()
        .filter(|d| d.verdict == Verdict::Prune)
        .map(|d| d.archive.name.clone())
        .collect();
    let deleted = if options.dry_run || names.is_empty() {
        None
    } else {
        let force = match options.force {
            Force::No => Force::No,
            Force::Damaged | Force::ManifestOnly => Force::Damaged,
        };
        let options = DeleteOptions { force, ..options };
        Some(delete_archives_forced(
            session,
            env,
            &names,
            options,
            &mut |_| {},
        )?)
    };
    Ok(PruneOutcome {
        all,
        decisions,
        deleted,
    })
}
