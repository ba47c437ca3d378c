//! The command line. It parses arguments, builds the settings, calls one library operation per
//! command, prints what it returns, and maps errors to borg's exit codes. No backup logic lives
//! here.

mod break_lock;
mod check;
mod common;
mod compact;
mod create;
mod delete;
mod error;
mod exit;
mod extract;
mod format;
mod format_spec;
mod info;
mod init;
mod item_keys;
mod key;
mod list;
mod logging;
mod patterns;
mod prune;
mod rename;
mod run;
mod serve;
mod session;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use rborg::settings::Environment;

pub use common::CommonOptions;
pub use error::CliError;
pub use exit::Outcome;

/// What `rborg --version` prints after the program name. The borg version comes first, where
/// borg prints its own (`borg 1.4.5`): borgmatic and other callers take the second word of
/// that line as the borg version and choose their flags by it (borgmatic only runs `compact`
/// for 1.2 and later). rborg's own version follows in parentheses.
const VERSION_TEXT: &str = concat!("1.4.5 (rborg ", env!("CARGO_PKG_VERSION"), ")");

/// rborg: a fast, pure-Rust client for BorgBackup 1.x repositories.
#[derive(Debug, Parser)]
#[command(name = "rborg", version = VERSION_TEXT, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    common: CommonOptions,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Break the repository lock (e.g. in case it was left by a dead process).
    BreakLock(break_lock::BreakLockArgs),
    /// Verify the consistency of a repository and its archives.
    Check(check::CheckArgs),
    /// Compact segment files in the repository.
    Compact(compact::CompactArgs),
    /// Prune repository archives according to specified rules.
    Prune(prune::PruneArgs),
    /// Check or write a configuration file for `rborg run`.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Create a new archive.
    Create(create::CreateArgs),
    /// Initialize an empty repository.
    Init(init::InitArgs),
    /// Manage a keyfile or repokey of a repository.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Run the daily job from a configuration file: hooks, create, prune, compact, the checks
    /// that are due, monitoring.
    Run(run::RunArgs),
    /// Start borg's repository server process (stdin/stdout) over local repositories.
    Serve(serve::ServeArgs),
    /// List archives or the contents of an archive.
    List(list::ListArgs),
    /// Show repository or archive statistics.
    Info(info::InfoArgs),
    /// Extract archive contents into the current directory.
    Extract(extract::ExtractArgs),
    /// Delete archives, or the whole repository.
    Delete(delete::DeleteArgs),
    /// Rename an archive.
    Rename(rename::RenameArgs),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a configuration file; errors name the line.
    Validate {
        /// The configuration file.
        #[arg(
            short = 'c',
            long = "config",
            value_name = "FILE",
            default_value = "/etc/rborg/config.yaml"
        )]
        config: std::path::PathBuf,
    },
    /// Print a commented sample configuration.
    Generate,
}

/// What every command gets besides its own arguments.
pub struct Context {
    /// The common options.
    pub common: CommonOptions,
    /// The environment, read once.
    pub env: Environment,
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse_from(patterns::join_spaced_values(std::env::args_os()));
    let env = Environment::from_process();
    logging::init(cli.common.log_level(), cli.common.log_json);
    let modern = env.get("BORG_EXIT_CODES") == Some("modern");
    if cli.common.show_version {
        log::info!("rborg version {}", env!("CARGO_PKG_VERSION"));
    }
    let show_rc = cli.common.show_rc;
    let ctx = Context {
        common: cli.common,
        env,
    };
    let outcome = match run(&ctx, cli.command) {
        Ok(outcome) => outcome,
        Err(e) => {
            match e.outcome.msgid() {
                Some(msgid) => log::error!(msgid; "{}", e.message),
                None => log::error!("{}", e.message),
            }
            e.outcome
        }
    };
    let code = outcome.code(modern);
    if show_rc {
        let line = format!(
            "terminating with {} status, rc {code}",
            outcome.status_word()
        );
        match outcome {
            Outcome::Success => log::info!("{line}"),
            Outcome::Warning(_) => log::warn!("{line}"),
            Outcome::Error(_) => log::error!("{line}"),
        }
    }
    ExitCode::from(code)
}

fn run(ctx: &Context, command: Command) -> Result<Outcome, CliError> {
    match command {
        Command::Config(ConfigCommand::Validate { config }) => {
            rborg::ops::config::validate(&config, &ctx.env)?;
            println!("{}: valid", config.display());
            Ok(Outcome::Success)
        }
        Command::BreakLock(args) => break_lock::run(ctx, args),
        Command::Create(args) => create::run(ctx, args),
        Command::Init(args) => init::run(ctx, args),
        Command::Key(command) => key::run(ctx, command),
        Command::Run(args) => run::run(ctx, args),
        Command::Serve(args) => serve::run(ctx, args),
        Command::Check(args) => check::run(ctx, args),
        Command::Compact(args) => compact::run(ctx, args),
        Command::Prune(args) => prune::run(ctx, args),
        Command::List(args) => list::run(ctx, args),
        Command::Info(args) => info::run(ctx, args),
        Command::Extract(args) => extract::run(ctx, args),
        Command::Delete(args) => delete::run(ctx, args),
        Command::Rename(args) => rename::run(ctx, args),
        Command::Config(ConfigCommand::Generate) => {
            print!("{}", rborg::ops::config::generate_sample());
            Ok(Outcome::Success)
        }
    }
}

/// The repository location from a positional argument, with borg's `BORG_REPO` fallback and
/// placeholders expanded.
pub fn location_arg(
    ctx: &Context,
    text: Option<&str>,
) -> Result<rborg::location::Location, CliError> {
    let placeholders = rborg::placeholders::Placeholders::current(&ctx.env);
    let expand = |t: &str| {
        placeholders
            .replace(t)
            .map_err(|e| CliError::with_code(e.to_string(), 5))
    };
    let text = expand(text.unwrap_or(""))?;
    let borg_repo = match ctx.env.get("BORG_REPO") {
        Some(r) => Some(expand(r)?),
        None => None,
    };
    rborg::location::Location::parse(&text, borg_repo.as_deref())
        .map(|l| l.absolute())
        .map_err(|e| CliError::usage(e.to_string()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_line_names_the_borg_version_first() {
        let (major, minor, patch) = rborg::BORG_VERSION;
        assert_eq!(rborg::BORG_VERSION_TEXT, format!("{major}.{minor}.{patch}"));
        let second_word = super::VERSION_TEXT.split(' ').next();
        assert_eq!(second_word, Some(rborg::BORG_VERSION_TEXT));
    }
}
