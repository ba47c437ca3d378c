//! `rborg break-lock`: remove the repository's lock, whoever holds it (borg's `break-lock`).

use clap::Args;

use rborg::repository::{open_repository, OpenOptions};
use rborg::rpc::ClientOptions;

use super::{location_arg, CliError, Context, Outcome};

/// Arguments of `rborg break-lock`.
#[derive(Debug, Args)]
pub struct BreakLockArgs {
    /// The repository (default: $BORG_REPO).
    #[arg(value_name = "REPOSITORY")]
    repository: Option<String>,
}

/// Breaks the lock. Like borg, this opens the repository without taking a lock.
pub fn run(ctx: &Context, args: BreakLockArgs) -> Result<Outcome, CliError> {
    let location = location_arg(ctx, args.repository.as_deref())?;
    let access = ctx.common.access(&ctx.env)?;
    let open = OpenOptions {
        lock: false,
        ..OpenOptions::default()
    };
    let mut repository = open_repository(&location, &open, &access, ClientOptions::default())?;
    let result = repository.break_lock();
    let _ = repository.close();
    result?;
    Ok(Outcome::Success)
}
