//! Opening a repository for a command: location (with `BORG_REPO` and `::ARCHIVE`), access
//! settings, lock, key and manifest, as borg's `with_repository` does.

use rborg::commands::Session;
use rborg::crypto::passphrase::TtyPrompter;
use rborg::location::Location;
use rborg::manifest::Operation;
use rborg::rpc::ClientOptions;

use super::{CliError, Context};

/// Parses a `REPO[::ARCHIVE]` argument (`BORG_REPO` fills in a missing repository, placeholders
/// are expanded, a local path is made absolute as borg records it).
pub fn parse_location(ctx: &Context, text: &str) -> Result<Location, CliError> {
    super::location_arg(ctx, Some(text))
}

/// Opens the repository at `location` for `operations`.
pub fn open(
    ctx: &Context,
    location: &Location,
    exclusive: bool,
    operations: &[Operation],
) -> Result<Session, CliError> {
    let access = ctx.common.access(&ctx.env)?;
    let crypto = ctx.env.crypto_settings();
    let client = ClientOptions {
        location: location.canonical_path(),
        ..ClientOptions::default()
    };
    Ok(Session::open(
        location,
        &access,
        &ctx.common.open_options(exclusive),
        client,
        crypto,
        &mut TtyPrompter,
        operations,
    )?)
}
