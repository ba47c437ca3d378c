//! `rborg init`: create a repository.

use clap::Args;

use rborg::commands::init::{init, InitRequest};
use rborg::crypto::passphrase::TtyPrompter;
use rborg::crypto::{KeyStorage, KeyType};
use rborg::serve::parse_storage_quota;

use super::{location_arg, CliError, Context, Outcome};

/// Arguments of `rborg init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Repository to create (default: $BORG_REPO).
    #[arg(value_name = "REPOSITORY")]
    repository: Option<String>,
    /// Select encryption key mode: none, authenticated, authenticated-blake2, repokey,
    /// keyfile, repokey-blake2, keyfile-blake2.
    #[arg(short = 'e', long = "encryption", value_name = "MODE", required = true)]
    encryption: String,
    /// Create an append-only mode repository.
    #[arg(long = "append-only")]
    append_only: bool,
    /// Set storage quota of the new repository (e.g. 5G, 1.5T); default: no quota.
    #[arg(long = "storage-quota", value_name = "QUOTA")]
    storage_quota: Option<String>,
    /// Create the parent directories of the repository directory, if they are missing.
    #[arg(long = "make-parent-dirs")]
    make_parent_dirs: bool,
}

/// Creates the repository.
pub fn run(ctx: &Context, args: InitArgs) -> Result<Outcome, CliError> {
    let key_type = KeyType::from_mode_name(&args.encryption).map_err(|_| {
        CliError::usage(format!(
            "argument -e/--encryption: invalid choice: {:?} (choose from none, authenticated, \
             authenticated-blake2, repokey, keyfile, repokey-blake2, keyfile-blake2)",
            args.encryption
        ))
    })?;
    let location = location_arg(ctx, args.repository.as_deref())?;
    let storage_quota = match &args.storage_quota {
        Some(q) => Some(parse_storage_quota(q).map_err(CliError::usage)?).filter(|q| *q > 0),
        None => None,
    };
    let access = ctx.common.access(&ctx.env)?;
    let crypto = ctx.env.crypto_settings();
    let request = InitRequest {
        key_type,
        append_only: args.append_only,
        storage_quota,
        make_parent_dirs: args.make_parent_dirs,
        lock_wait: ctx.common.lock_wait as f64,
    };
    let done = init(&location, &access, &crypto, &mut TtyPrompter, &request)?;
    if let Some(path) = &done.key_file {
        log::info!("Key in \"{}\" created.", path.display());
        log::info!("Keep this key safe. Your data will be inaccessible without it.");
    }
    if key_type.storage() != KeyStorage::None {
        eprintln!(
            "\nIMPORTANT: you will need both KEY AND PASSPHRASE to access this repo!\n\n\
             Key storage location depends on the mode:\n\
             - repokey modes: key is stored in the repository directory.\n\
             - keyfile modes: key is stored in the home directory of this user.\n\n\
             For any mode, you should:\n\
             1. Export the borg key and store the result at a safe place:\n   \
             rborg key export           REPOSITORY encrypted-key-backup\n   \
             rborg key export --paper   REPOSITORY encrypted-key-backup.txt\n\
             2. Write down the borg key passphrase and store it at safe place.\n"
        );
    }
    Ok(Outcome::Success)
}
