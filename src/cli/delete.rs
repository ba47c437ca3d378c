//! `rborg delete`: archives (by name or filter) or the whole repository
//! (`archiver.py: do_delete`).

use std::io::BufRead;

use clap::Args;

use rborg::commands::delete::{delete_archives_forced, DeleteEvent, DeleteOptions, Force};
use rborg::manifest::Operation;

use super::format;
use super::list::SelectionArgs;
use super::session;
use super::{CliError, Context, Outcome};

/// Arguments of `rborg delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Do not change the repository.
    #[arg(short = 'n', long = "dry-run")]
    dry_run: bool,
    /// Output a verbose list of archives.
    #[arg(long)]
    list: bool,
    /// Print statistics for the deleted archives.
    #[arg(short = 's', long)]
    stats: bool,
    /// Delete only the local cache for the repository.
    #[arg(long = "cache-only")]
    cache_only: bool,
    /// Force deletion of corrupted archives; use `--force --force` in case `--force` does not
    /// work. For a whole repository: do not ask for confirmation.
    #[arg(long = "force", action = clap::ArgAction::Count)]
    force: u8,
    /// Keep the local security info when deleting a repository.
    #[arg(long = "keep-security-info")]
    keep_security_info: bool,
    #[command(flatten)]
    selection: SelectionArgs,
    /// The repository, or an archive as REPO::ARCHIVE.
    #[arg(value_name = "REPOSITORY_OR_ARCHIVE", default_value = "")]
    location: String,
    /// More archive names to delete.
    #[arg(value_name = "ARCHIVE")]
    archives: Vec<String>,
}

fn archive_line(name: &str, entry: &rborg::manifest::ArchiveEntry) -> String {
    // `format_archive`: "%-36s %s [%s]".
    let time = format::archive_time(&entry.time).unwrap_or_default();
    format!(
        "{name:<36} {} [{}]",
        format::text_time(&time),
        hex::encode(entry.id)
    )
}

/// Runs `rborg delete`.
pub fn run(ctx: &Context, args: DeleteArgs) -> Result<Outcome, CliError> {
    let location = session::parse_location(ctx, &args.location)?;
    let selection = args.selection.selection(ctx, true)?;
    if location.archive.is_none() && args.archives.is_empty() && !selection.has_filter() {
        return delete_repository(ctx, &location, &args);
    }
    let mut session = session::open(ctx, &location, true, &[Operation::Delete])?;
    let mut names: Vec<String> = location.archive.iter().cloned().collect();
    names.extend(args.archives.iter().cloned());
    if names.is_empty() {
        names = selection
            .select(&session.opened.manifest)?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        if names.is_empty() {
            let _ = session.close();
            return Ok(Outcome::Success);
        }
    }
    let list = args.list;
    let dry_run = args.dry_run;
    let force = Force::from_count(args.force);
    let mut outcome = Outcome::Success;
    let report = delete_archives_forced(
        &mut session,
        &ctx.env,
        &names,
        DeleteOptions {
            dry_run,
            progress: ctx.common.progress,
            force,
            consider_part_files: ctx.common.consider_part_files,
        },
        &mut |event| match event {
            DeleteEvent::Deleted(name, entry, i, n) if list => {
                // `_delete_archives` words the `forced == 2` lines differently.
                let verb = match (force == Force::ManifestOnly, dry_run) {
                    (true, true) => "Would delete",
                    (true, false) => "Deleted archive",
                    (false, true) => "Would delete archive",
                    (false, false) => "Deleting archive",
                };
                eprintln!("{verb}: {} ({i}/{n})", archive_line(name, entry));
            }
            DeleteEvent::NotFound(name, i, n) => {
                log::warn!("Archive {name} not found ({i}/{n}).");
            }
            DeleteEvent::Corrupted(_) => {
                log::warn!("forced deletion succeeded, but the deleted archive was corrupted.");
                log::warn!("borg check --repair is required to free all space.");
            }
            _ => {}
        },
    );
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            let _ = session.close();
            return Err(e.into());
        }
    };
    if report.has_missing() {
        outcome = Outcome::Warning(1);
    }
    if force == Force::ManifestOnly {
        // These two warnings leave the exit code alone (borg 1.4: `wc=None`).
        if dry_run {
            log::info!("Finished dry-run.");
        } else if report
            .events
            .iter()
            .any(|e| matches!(e, DeleteEvent::Deleted(..)))
        {
            log::warn!("Done. Run \"borg check --repair\" to clean up the mess.");
        } else {
            log::warn!("Aborted.");
        }
        session.close()?;
        return Ok(outcome);
    }
    if args.stats && !dry_run {
        let s = report.stats;
        let iec = ctx.common.iec;
        let size = |n: u64| format::file_size(-(n as i64), iec);
        eprintln!("{}", "-".repeat(78));
        eprintln!("{}", format::STATS_HEADER);
        eprintln!(
            "{:15} {:>20} {:>20} {:>20}",
            "Deleted data:",
            size(s.original_size),
            size(s.compressed_size),
            size(s.deduplicated_size)
        );
        // The saved index is current again, so this loads it without a sync.
        let stats = rborg::cache::ChunkCache::for_session(&mut session, &ctx.env, false)
            .map_err(|e| CliError::error(e.to_string()))
            .and_then(|cache| {
                rborg::commands::info::repository_stats(
                    session.repository.as_mut(),
                    &session.opened.key.key,
                    &session.opened.manifest,
                    &cache.index,
                    ctx.common.consider_part_files,
                )
                .map_err(|e| CliError::error(e.to_string()))
            });
        match stats {
            Ok(stats) => eprintln!("{}", format::cache_text(&stats, iec)),
            Err(e) => log::warn!("{}", e.message),
        }
        eprintln!("{}", "-".repeat(78));
    }
    if dry_run {
        log::info!("Finished dry-run.");
    }
    session.close()?;
    Ok(outcome)
}

fn delete_repository(
    ctx: &Context,
    location: &rborg::location::Location,
    args: &DeleteArgs,
) -> Result<Outcome, CliError> {
    // Like borg, only the repository is opened here (locked); the key and the manifest are
    // read only to show what is deleted, so `--force` needs no passphrase and a repository
    // whose manifest is gone can still be deleted.
    let location = location.absolute();
    let canonical = location.canonical_path();
    let access = ctx.common.access(&ctx.env)?;
    let crypto = ctx.env.crypto_settings();
    let client = rborg::rpc::ClientOptions {
        location: canonical.clone(),
        ..rborg::rpc::ClientOptions::default()
    };
    let mut repository = rborg::repository::open_repository(
        &location,
        &ctx.common.open_options(true),
        &access,
        client,
    )?;
    let repo_id = *repository.id();
    let cache_dir = match rborg::cache::repository_cache_dir(&ctx.env, &repo_id) {
        Ok(dir) => dir,
        Err(e) => {
            let _ = repository.close();
            return Err(CliError::error(e.to_string()));
        }
    };
    if args.cache_only {
        let _ = repository.close();
        if args.dry_run {
            log::info!("Would delete cache.");
        } else {
            remove_dir_if_exists(&cache_dir)?;
            log::info!("Cache deleted.");
        }
        return Ok(Outcome::Success);
    }
    if args.force == 0 {
        // Without --force the user sees what goes and confirms (`_delete_repository`).
        let archives = match rborg::manifest::open_repository(
            repository.as_mut(),
            &canonical,
            &[],
            &crypto,
            &mut rborg::crypto::passphrase::TtyPrompter,
            &rborg::manifest::DefaultCodec,
        ) {
            Ok(opened) => Some(
                opened
                    .manifest
                    .list(
                        &[rborg::manifest::SortBy::Timestamp],
                        true,
                        None,
                        None,
                        false,
                    )
                    .iter()
                    .map(|(name, entry)| archive_line(name, entry))
                    .collect::<Vec<String>>(),
            ),
            Err(rborg::manifest::OpenRepositoryError::Manifest(
                rborg::manifest::ManifestError::NoManifest,
            )) => None,
            Err(e) => {
                let _ = repository.close();
                return Err(rborg::commands::CommandError::from(e).into());
            }
        };
        let mut msg = vec![
            match &archives {
                Some(a) => format!(
                    "You requested to completely DELETE the following repository *including* {} archives it contains:",
                    a.len()
                ),
                None => "You requested to completely DELETE the following repository *including* all archives it may contain:".into(),
            },
            "-".repeat(78),
            format!("Repository ID: {}", hex::encode(repo_id)),
            format!("Location: {canonical}"),
        ];
        if args.list {
            msg.push(String::new());
            msg.push("Archives:".into());
            match &archives {
                Some(a) if a.is_empty() => {
                    msg.push("This repository seems to not have any archives.".into());
                }
                Some(a) => msg.extend(a.iter().cloned()),
                None => msg.push(
                    "This repository seems to have no manifest, so we can't tell anything about its contents."
                        .into(),
                ),
            }
        }
        msg.push("-".repeat(78));
        msg.push("Type 'YES' if you understand this and want to continue: ".into());
        eprint!("{}", msg.join("\n"));
        if let Err(e) = confirm(ctx) {
            let _ = repository.close();
            return Err(e);
        }
    }
    if args.dry_run {
        let _ = repository.close();
        log::info!("Would delete repository.");
        let verb = if args.keep_security_info {
            "keep"
        } else {
            "delete"
        };
        log::info!("Would {verb} security info.");
        log::info!("Would delete cache.");
        return Ok(Outcome::Success);
    }
    repository.destroy()?;
    let _ = repository.close();
    log::info!("Repository deleted.");
    if !args.keep_security_info {
        let security = crypto.repo_security_dir(&repo_id);
        remove_dir_if_exists(&security)?;
    }
    remove_dir_if_exists(&cache_dir)?;
    log::info!("Cache deleted.");
    Ok(Outcome::Success)
}

/// borg's `yes(truish=('YES',), retry=False, env_var_override=...)`: the answer comes from
/// `BORG_DELETE_I_KNOW_WHAT_I_AM_DOING` (echoed after the question) or from stdin.
fn confirm(ctx: &Context) -> Result<(), CliError> {
    const VAR: &str = "BORG_DELETE_I_KNOW_WHAT_I_AM_DOING";
    let answer = match ctx.env.get(VAR) {
        Some(a) => {
            eprintln!("{a} (from {VAR})");
            a.to_string()
        }
        None => {
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    match answer.as_str() {
        "YES" => return Ok(()),
        // borg's default falsish and defaultish answers.
        "" | "No" | "NO" | "no" | "N" | "n" | "0" => eprintln!("Aborting."),
        _ => eprintln!("Invalid answer, aborting."),
    }
    // borg 1.4's `CancelledByUser` (borg 1.2 ends after the line above, also with rc 2).
    Err(CliError::with_code("Cancelled by user.", 3))
}

fn remove_dir_if_exists(p: &std::path::Path) -> Result<(), CliError> {
    match std::fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CliError::error(format!("{}: {e}", p.display()))),
    }
}
