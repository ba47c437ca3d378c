//! `rborg serve`: borg's RPC server on stdin/stdout over the native local repository, for
//! `--remote-path "rborg serve"` or an `authorized_keys` `command=` line.

use std::os::fd::AsFd;
use std::path::PathBuf;

use clap::Args;

use rborg::repository::local::LocalSettings;
use rborg::serve::{parse_storage_quota, LocalOpener, ServeError, ServeOptions, Server};

use super::{CliError, Context, Outcome};

/// Arguments of `rborg serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Restrict repository access to PATH (repeatable); sub-directories are allowed.
    #[arg(long = "restrict-to-path", value_name = "PATH")]
    restrict_to_paths: Vec<PathBuf>,
    /// Restrict repository access to exactly the repository at PATH (repeatable).
    #[arg(long = "restrict-to-repository", value_name = "PATH")]
    restrict_to_repositories: Vec<PathBuf>,
    /// Only allow appending to repository segment files.
    #[arg(long = "append-only")]
    append_only: bool,
    /// Override the storage quota of the repository (e.g. 5G, 1.5T); 0 = no quota.
    #[arg(long = "storage-quota", value_name = "QUOTA")]
    storage_quota: Option<String>,
    /// A borg client appends `serve` to its `--remote-path`; with `--remote-path "rborg serve"`
    /// the word arrives twice, which is accepted.
    #[arg(hide = true, value_parser = ["serve"])]
    repeated_serve: Option<String>,
}

/// Runs the server until the client closes the connection.
pub fn run(ctx: &Context, args: ServeArgs) -> Result<Outcome, CliError> {
    let umask = u32::from_str_radix(&ctx.common.umask, 8).map_err(|_| {
        CliError::usage(format!(
            "--umask: {:?} is not an octal mode",
            ctx.common.umask
        ))
    })?;
    // SAFETY: umask only sets this process's file mode creation mask.
    unsafe {
        libc::umask(umask as libc::mode_t);
    }
    let storage_quota = match &args.storage_quota {
        Some(q) => Some(parse_storage_quota(q).map_err(CliError::usage)?),
        None => None,
    }
    .filter(|q| *q > 0);
    // Whatever a forced command (`command="rborg serve ..."` in authorized_keys) says wins over
    // the client's own `serve` arguments; those only choose the log level, which this server
    // does not need (borg's `get_args`).
    let options = ServeOptions {
        restrict_to_paths: args.restrict_to_paths,
        restrict_to_repositories: args.restrict_to_repositories,
        append_only: args.append_only,
        storage_quota,
        base_dir: ctx.env.base_dir(),
    };
    let opener = LocalOpener {
        settings: LocalSettings::from_env(&ctx.env),
    };
    // The server reads and writes whole messages itself and flushes after every reply, so
    // it talks to the raw descriptors: std's stdout is line-buffered and would scan each
    // reply (objects of up to 20 MiB) for newlines and split it into several writes.
    let raw = |fd: std::os::fd::BorrowedFd<'_>, what: &str| {
        fd.try_clone_to_owned()
            .map(std::fs::File::from)
            .map_err(|e| CliError::error(format!("serve: cannot use {what}: {e}")))
    };
    let stdin = raw(std::io::stdin().as_fd(), "stdin")?;
    let stdout = raw(std::io::stdout().as_fd(), "stdout")?;
    let stderr = std::io::stderr();
    match Server::new(options, &opener).run(stdin, stdout, stderr) {
        Ok(()) => Ok(Outcome::Success),
        Err(ServeError::UnexpectedData) => Err(CliError::with_code(
            ServeError::UnexpectedData.to_string(),
            85,
        )),
        Err(e) => Err(CliError::error(e.to_string())),
    }
}
