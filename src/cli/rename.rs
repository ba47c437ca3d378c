//! `rborg rename REPO::ARCHIVE NEWNAME` (`archiver.py: do_rename`).

use clap::Args;

use rborg::manifest::Operation;
use rborg::placeholders::Placeholders;

use super::session;
use super::{CliError, Context, Outcome};

/// Arguments of `rborg rename`.
#[derive(Debug, Args)]
pub struct RenameArgs {
    /// The archive to rename, as REPO::ARCHIVE.
    #[arg(value_name = "ARCHIVE")]
    location: String,
    /// The new archive name (placeholders are expanded).
    #[arg(value_name = "NEWNAME")]
    name: String,
}

/// Runs `rborg rename`.
pub fn run(ctx: &Context, args: RenameArgs) -> Result<Outcome, CliError> {
    let location = session::parse_location(ctx, &args.location)?;
    let Some(old) = location.archive.clone() else {
        return Err(CliError::usage(format!(
            "{}: an archive is required (REPO::ARCHIVE)",
            args.location
        )));
    };
    let new = Placeholders::current(&ctx.env)
        .replace(&args.name)
        .map_err(|e| CliError::usage(e.to_string()))?;
    if new.contains('/') || new.len() > 255 || new.is_empty() {
        return Err(CliError::usage(format!("Invalid archive name: {new:?}")));
    }
    let mut session = session::open(ctx, &location, true, &[Operation::Check])?;
    let result = rborg::commands::rename::rename_archive(&mut session, &ctx.env, &old, &new);
    match result {
        Ok(_) => {
            session.close()?;
            Ok(Outcome::Success)
        }
        Err(e) => {
            let _ = session.close();
            Err(e.into())
        }
    }
}
