//! `rborg compact`: free repository space after deletes (borg's flags).

use clap::Args;

use rborg::commands::compact::{compact, CompactOptions};
use rborg::location::Location;
use rborg::rpc::ClientOptions;

use super::{CliError, Context, Outcome};

/// Arguments of `rborg compact`.
#[derive(Debug, Args)]
pub struct CompactArgs {
    /// The repository.
    #[arg(value_name = "REPOSITORY", default_value = "")]
    location: String,
    /// Set minimum threshold for saved space in PERCENT (default: 10).
    #[arg(long, value_name = "PERCENT", default_value_t = 10)]
    threshold: u32,
    /// Cleanup commit-only 17-byte segment files.
    #[arg(long = "cleanup-commits")]
    cleanup_commits: bool,
    /// Do nothing.
    #[arg(short = 'n', long = "dry-run")]
    dry_run: bool,
    /// Work slower, but using less space (accepted for borg compatibility).
    #[arg(long = "save-space")]
    save_space: bool,
}

/// Runs the compaction.
pub fn run(ctx: &Context, args: CompactArgs) -> Result<Outcome, CliError> {
    let location = Location::parse(&args.location, ctx.env.get("BORG_REPO"))
        .map_err(|e| CliError::usage(e.to_string()))?;
    if location.archive.is_some() {
        return Err(CliError::usage(
            "compact takes a repository, not an archive",
        ));
    }
    let access = ctx.common.access(&ctx.env)?;
    let client = ClientOptions {
        location: location.canonical_path(),
        ..ClientOptions::default()
    };
    compact(
        &location,
        &access,
        &ctx.common.open_options(true),
        client,
        &CompactOptions {
            threshold_percent: f64::from(args.threshold),
            cleanup_commits: args.cleanup_commits,
            dry_run: args.dry_run,
        },
    )?;
    Ok(Outcome::Success)
}
