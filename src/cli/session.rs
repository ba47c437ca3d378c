//! Opening a repository for a command: location (with `BORG_REPO` and `::ARCHIVE`), access
//! settings, lock, key and manifest, as borg's `with_repository` does.

use rborg::commands::Session;
use rborg::crypto::passphrase::TtyPrompter;
use rborg::crypto::CryptoSettings;
use rborg::location::{Location, Proto};
use rborg::manifest::Operation;
use rborg::rpc::ClientOptions;

use super::{CliError, Context};

/// Parses a `REPO[::ARCHIVE]` argument (`BORG_REPO` fills in a missing repository).
pub fn parse_location(ctx: &Context, text: &str) -> Result<Location, CliError> {
    let mut location = Location::parse(text, ctx.env.get("BORG_REPO"))
        .map_err(|e| CliError::usage(format!("{text}: {e}")))?;
    // borg stores and compares the absolute path of a local repository.
    if location.proto == Proto::File && !location.path.starts_with('/') {
        if let Ok(cwd) = std::env::current_dir() {
            let joined = cwd.join(&location.path).display().to_string();
            location.path = rborg::patterns::normpath(&joined);
        }
    }
    Ok(location)
}

/// Opens the repository at `location` for `operations`.
pub fn open(
    ctx: &Context,
    location: &Location,
    exclusive: bool,
    operations: &[Operation],
) -> Result<Session, CliError> {
    let access = ctx.common.access(&ctx.env)?;
    let crypto = CryptoSettings::from_lookup(|n| ctx.env.get(n).map(str::to_string));
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
