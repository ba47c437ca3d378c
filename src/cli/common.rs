//! Options every borg command takes (borg's `define_common_options`), accepted before or after
//! the command name.

use clap::{ArgAction, Args};
use log::LevelFilter;

use rborg::repository::{AccessSettings, OpenOptions};
use rborg::settings::Environment;
use rborg::transport::{ServeLogLevel, SshKind};

use super::CliError;

/// borg's common options.
#[derive(Debug, Clone, Args)]
pub struct CommonOptions {
    /// Work on log level CRITICAL.
    #[arg(long, global = true)]
    pub critical: bool,
    /// Work on log level ERROR.
    #[arg(long, global = true)]
    pub error: bool,
    /// Work on log level WARNING (the default).
    #[arg(long, global = true)]
    pub warning: bool,
    /// Work on log level INFO.
    #[arg(long, short = 'v', visible_alias = "verbose", global = true)]
    pub info: bool,
    /// Work on log level DEBUG.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Enable TOPIC debugging (forwarded to the server for repository topics).
    #[arg(long = "debug-topic", value_name = "TOPIC", global = true, action = ArgAction::Append)]
    pub debug_topics: Vec<String>,
    /// Show progress information.
    #[arg(long, short = 'p', global = true)]
    pub progress: bool,
    /// Format sizes with IEC units (1 KiB = 1024 B).
    #[arg(long, global = true)]
    pub iec: bool,
    /// Output one JSON object per log line instead of formatted text.
    #[arg(long = "log-json", global = true)]
    pub log_json: bool,
    /// Treat part files like normal files (e.g. to list/extract them). A common option in
    /// borg, accepted by every command; list, extract, info, delete and prune act on it.
    #[arg(long = "consider-part-files", global = true)]
    pub consider_part_files: bool,
    /// Wait at most SECONDS for acquiring a repository/cache lock.
    #[arg(
        long = "lock-wait",
        value_name = "SECONDS",
        default_value_t = 1,
        global = true
    )]
    pub lock_wait: u64,
    /// Do not take any locks (dangerous).
    #[arg(long = "bypass-lock", global = true)]
    pub bypass_lock: bool,
    /// Show/log the rborg version.
    #[arg(long = "show-version", global = true)]
    pub show_version: bool,
    /// Show/log the return code (rc).
    #[arg(long = "show-rc", global = true)]
    pub show_rc: bool,
    /// Set umask to M (local only), octal.
    #[arg(long, value_name = "M", default_value = "0077", global = true)]
    pub umask: String,
    /// Use PATH as borg executable on the remote (default: "borg").
    #[arg(long = "remote-path", value_name = "PATH", global = true)]
    pub remote_path: Option<String>,
    /// Set network upload rate limit in kiByte/s (0 = unlimited).
    #[arg(
        long = "upload-ratelimit",
        visible_alias = "remote-ratelimit",
        value_name = "RATE",
        global = true
    )]
    pub upload_ratelimit: Option<u64>,
    /// Set network upload buffer size in MiB.
    #[arg(
        long = "upload-buffer",
        visible_alias = "remote-buffer",
        value_name = "UPLOAD_BUFFER",
        global = true
    )]
    pub upload_buffer: Option<u64>,
    /// Use this command to connect to the 'borg serve' process (default: 'ssh').
    #[arg(long, value_name = "RSH", global = true)]
    pub rsh: Option<String>,
    /// How to reach a remote repository: `ssh` (the system ssh, borg's way) or `ssh2`
    /// (in-process libssh2).
    #[arg(long, value_name = "KIND", default_value = "ssh", global = true)]
    pub transport: String,
}

impl CommonOptions {
    /// The log level the flags ask for; the most verbose flag given wins.
    pub fn log_level(&self) -> LevelFilter {
        if self.debug {
            LevelFilter::Debug
        } else if self.info {
            LevelFilter::Info
        } else if self.warning {
            LevelFilter::Warn
        } else if self.error || self.critical {
            LevelFilter::Error
        } else {
            LevelFilter::Warn
        }
    }

    /// The log level borg's client passes to `borg serve` (`--debug`, `--info`, …).
    pub fn serve_log_level(&self) -> ServeLogLevel {
        if self.debug {
            ServeLogLevel::Debug
        } else if self.info {
            ServeLogLevel::Info
        } else if self.critical {
            ServeLogLevel::Critical
        } else if self.error {
            ServeLogLevel::Error
        } else {
            ServeLogLevel::Warning
        }
    }

    /// How to reach repositories, from these options and the environment.
    pub fn access(&self, env: &Environment) -> Result<AccessSettings, CliError> {
        let kind = match self.transport.as_str() {
            "ssh" => SshKind::Process,
            "ssh2" | "libssh2" => SshKind::Libssh2,
            other => {
                return Err(CliError::usage(format!(
                    "--transport: unknown transport {other:?} (use ssh or ssh2)"
                )))
            }
        };
        let mut access =
            AccessSettings::from_env(env, self.rsh.clone(), self.remote_path.clone(), kind);
        access.ssh.serve.log_level = self.serve_log_level();
        access.ssh.serve.debug_topics = self.debug_topics.clone();
        Ok(access)
    }

    /// The `lock_wait` of an `open` (`--lock-wait`, seconds).
    pub fn open_options(&self, exclusive: bool) -> OpenOptions {
        OpenOptions {
            lock: !self.bypass_lock,
            exclusive,
            lock_wait: Some(self.lock_wait as f64),
            ..OpenOptions::default()
        }
    }
}
