//! `rborg key export|import|change-passphrase`.

use std::io::Read;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use rborg::commands::key::{change_passphrase, export, import, ExportFormat};
use rborg::crypto::passphrase::TtyPrompter;

use super::{location_arg, CliError, Context, Outcome};

/// `rborg key` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Export the repository key for backup.
    Export(ExportArgs),
    /// Import the repository key from backup.
    Import(ImportArgs),
    /// Change the repository key's passphrase.
    ChangePassphrase(RepoArg),
}

/// A repository argument alone.
#[derive(Debug, Args)]
pub struct RepoArg {
    /// The repository (default: $BORG_REPO).
    #[arg(value_name = "REPOSITORY")]
    repository: Option<String>,
}

/// Arguments of `key export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The repository (default: $BORG_REPO).
    #[arg(value_name = "REPOSITORY")]
    repository: Option<String>,
    /// Where to write the key (default or `-`: standard output).
    #[arg(value_name = "PATH")]
    path: Option<PathBuf>,
    /// Create an export suitable for printing and later type-in.
    #[arg(long)]
    paper: bool,
    /// Create an HTML file with a QR code (not supported by rborg).
    #[arg(long = "qr-html")]
    qr_html: bool,
}

/// Arguments of `key import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The repository (default: $BORG_REPO).
    #[arg(value_name = "REPOSITORY")]
    repository: Option<String>,
    /// The exported key (`-` for standard input).
    #[arg(value_name = "PATH")]
    path: Option<PathBuf>,
    /// The key was exported with --paper: read its lines (from PATH or standard input).
    #[arg(long)]
    paper: bool,
}

/// Runs a `key` subcommand.
pub fn run(ctx: &Context, command: KeyCommand) -> Result<Outcome, CliError> {
    let access = ctx.common.access(&ctx.env)?;
    let crypto = ctx.env.crypto_settings();
    match command {
        KeyCommand::Export(args) => {
            if args.qr_html {
                return Err(CliError::usage(
                    "key export: --qr-html is not supported by rborg",
                ));
            }
            let location = location_arg(ctx, args.repository.as_deref())?;
            let format = if args.paper {
                ExportFormat::Paper
            } else {
                ExportFormat::Plain
            };
            let text = export(
                &location,
                &access,
                &ctx.common.open_options(false),
                &crypto,
                format,
            )?;
            match args.path.filter(|p| p.as_os_str() != "-") {
                Some(path) => std::fs::write(&path, text.as_bytes())
                    .map_err(|e| CliError::error(format!("{}: {e}", path.display())))?,
                None => print!("{text}"),
            }
            Ok(Outcome::Success)
        }
        KeyCommand::Import(args) => {
            let location = location_arg(ctx, args.repository.as_deref())?;
            let text = match args.path.filter(|p| p.as_os_str() != "-") {
                Some(path) => std::fs::read_to_string(&path)
                    .map_err(|e| CliError::error(format!("{}: {e}", path.display())))?,
                None => {
                    let mut s = String::new();
                    std::io::stdin()
                        .read_to_string(&mut s)
                        .map_err(|e| CliError::error(format!("standard input: {e}")))?;
                    s
                }
            };
            let format = if args.paper {
                ExportFormat::Paper
            } else {
                ExportFormat::Plain
            };
            import(
                &location,
                &access,
                &ctx.common.open_options(true),
                &crypto,
                &text,
                format,
            )?;
            Ok(Outcome::Success)
        }
        KeyCommand::ChangePassphrase(args) => {
            let location = location_arg(ctx, args.repository.as_deref())?;
            change_passphrase(
                &location,
                &access,
                &ctx.common.open_options(true),
                crypto,
                &mut TtyPrompter,
            )?;
            log::info!("Key updated");
            Ok(Outcome::Success)
        }
    }
}
