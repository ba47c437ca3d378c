//! The configuration file of `rborg run`: borgmatic's YAML keys, validated strictly.
//!
//! The layout is borgmatic's flat one (1.8 and later); the older sectioned layout (`location:`,
//! `storage:`, `retention:`, `consistency:`, `hooks:`, `output:`) is flattened first. Every map
//! denies unknown keys, so a typo is an error naming the file, line and key rather than a setting
//! that silently does nothing. `${VAR}` and `${VAR:-default}` in string values are replaced from
//! the environment passed in, as borgmatic does; `\${VAR}` stays literal.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::schedule::{Frequency, Weekdays};

/// What can go wrong loading a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The YAML is malformed or does not fit the schema; names the line when known.
    #[error("{path}{}: {message}", location_suffix(*.line, *.column))]
    Invalid {
        /// The file (or `<string>`).
        path: String,
        /// 1-based line, when the parser knows it.
        line: Option<usize>,
        /// 1-based column, when the parser knows it.
        column: Option<usize>,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A `${VAR}` without a default names an unset variable.
    #[error("{path}{}: key {key}: environment variable {var} is not set (write ${{{var}:-default}} to give a default)", location_suffix(*.line, None))]
    UnsetVariable {
        /// The file.
        path: String,
        /// 1-based line of the first use of the variable.
        line: Option<usize>,
        /// The key whose value refers to it.
        key: String,
        /// The variable.
        var: String,
    },
    /// The passphrase could not be obtained (credential file, passcommand).
    #[error("passphrase: {0}")]
    Passphrase(String),
}

fn location_suffix(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

/// A secret string: zeroized on drop, never shown by `Debug`.
#[derive(Clone, Default)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// The secret text; callers must not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Secret(Zeroizing::new(String::deserialize(d)?)))
    }
}

/// One repository: a plain path string (borgmatic < 1.8) or a map with `path` and options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryConfig {
    /// Where the repository is: a local path or `ssh://user@host:port/path`.
    pub path: String,
    /// A short name used in logs, hooks and metrics (default: the path).
    #[serde(default)]
    pub label: Option<String>,
    /// The command used to reach the repository (overrides the top-level `ssh_command`).
    #[serde(default)]
    pub ssh_command: Option<String>,
    /// The `borg` to start on the server (overrides the top-level `remote_path`).
    #[serde(default)]
    pub remote_path: Option<String>,
    /// Seconds to wait for the repository lock (overrides the top-level `lock_wait`).
    #[serde(default)]
    pub lock_wait: Option<u64>,
    /// Encryption mode for `repo-create` (borgmatic's key; used by init).
    #[serde(default)]
    pub encryption: Option<String>,
    /// Whether the repository is append-only (borgmatic's key; used by init).
    #[serde(default)]
    pub append_only: Option<bool>,
}

impl RepositoryConfig {
    /// The label, or the path when no label is set.
    pub fn name(&self) -> &str {
        self.label.as_deref().unwrap_or(&self.path)
    }
}

/// Accepts a repository as a bare string or as a map, keeping serde's error locations.
fn repository_item<'de, D: Deserializer<'de>>(d: D) -> Result<RepositoryConfig, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = RepositoryConfig;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a repository path or a map with `path`")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<RepositoryConfig, E> {
            Ok(RepositoryConfig {
                path: v.to_string(),
                ..Default::default()
            })
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RepositoryConfig, A::Error> {
            RepositoryConfig::deserialize(de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_any(V)
}

fn repositories<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<RepositoryConfig>, D::Error> {
    struct Item(RepositoryConfig);
    impl<'de> Deserialize<'de> for Item {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            repository_item(d).map(Item)
        }
    }
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<RepositoryConfig>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a non-empty list of repositories")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(Item(r)) = seq.next_element()? {
                if r.path.trim().is_empty() {
                    return Err(de::Error::custom("repository path is empty"));
                }
                out.push(r);
            }
            if out.is_empty() {
                return Err(de::Error::custom(
                    "`repositories` is empty: at least one repository is required",
                ));
            }
            Ok(out)
        }
    }
    d.deserialize_seq(V)
}

/// The kinds of consistency check (borgmatic's check names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckName {
    /// `borg check --repository-only`: segment CRCs and the index.
    Repository,
    /// `borg check --archives-only`: archive metadata, TAMs, missing chunks.
    Archives,
    /// `borg check --verify-data`: decrypt and hash every chunk (implies archives).
    Data,
    /// `borg extract --dry-run` of the latest archive.
    Extract,
    /// borgmatic's sampling comparison against the source files.
    Spot,
    /// No checks at all.
    Disabled,
}

impl CheckName {
    /// The name as written in the configuration and in state files.
    pub fn as_str(&self) -> &'static str {
        match self {
            CheckName::Repository => "repository",
            CheckName::Archives => "archives",
            CheckName::Data => "data",
            CheckName::Extract => "extract",
            CheckName::Spot => "spot",
            CheckName::Disabled => "disabled",
        }
    }
}

fn default_frequency() -> Frequency {
    Frequency::MONTHLY
}

fn weekdays<'de, D: Deserializer<'de>>(d: D) -> Result<Weekdays, D::Error> {
    let days = Vec::<String>::deserialize(d)?;
    Weekdays::parse(&days).map_err(de::Error::custom)
}

/// One entry of `checks:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    /// Which check.
    pub name: CheckName,
    /// How often (default `"1 month"`, borgmatic's default).
    #[serde(default = "default_frequency")]
    pub frequency: Frequency,
    /// Only run on these days (`Sunday`, `weekday`, `weekend`, …); empty means any day.
    #[serde(default, deserialize_with = "weekdays")]
    pub only_run_on: Weekdays,
    /// Stop a repository check after this many seconds (`borg check --max-duration`).
    #[serde(default)]
    pub max_duration: Option<u64>,
}

/// Where a command hook runs (borgmatic 2's `before:`/`after:` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookPoint {
    /// Around each action for each repository.
    Action,
    /// Around all actions of one repository.
    Repository,
    /// Around everything in this configuration file.
    Configuration,
    /// Around the whole run.
    Everything,
    /// After an error (only with `after`).
    Error,
}

/// The outcome an `after` hook is restricted to (borgmatic's `states`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookState {
    /// The scope finished without error.
    Finish,
    /// The scope failed.
    Fail,
}

/// One entry of borgmatic 2's `commands:` list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandHook {
    /// Run before this point.
    #[serde(default)]
    pub before: Option<HookPoint>,
    /// Run after this point.
    #[serde(default)]
    pub after: Option<HookPoint>,
    /// Only for these actions (`create`, `prune`, `compact`, `check`); empty means all.
    #[serde(default)]
    pub when: Vec<String>,
    /// Only after these outcomes; empty means always (a `finally`).
    #[serde(default)]
    pub states: Vec<HookState>,
    /// Shell commands, run in order with `sh -c`; the first failure stops the list.
    pub run: Vec<String>,
    /// Seconds before the command's process group is killed (rborg; default `hook_timeout`).
    #[serde(default)]
    pub timeout: Option<u64>,
}

/// Pushgateway reporting (rborg; borgmatic has no Prometheus hook).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushgatewayConfig {
    /// Base URL, `http://host:9091` (plain HTTP only).
    pub url: String,
    /// The `job` grouping label (default `rborg`).
    #[serde(default)]
    pub job: Option<String>,
    /// The `instance` grouping label (default: this host's name).
    #[serde(default)]
    pub instance: Option<String>,
    /// Basic-auth user.
    #[serde(default)]
    pub username: Option<String>,
    /// Basic-auth password.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Seconds for connect, send and receive (default 10).
    #[serde(default)]
    pub timeout: Option<u64>,
}

/// The monitoring states borgmatic's Healthchecks hook pings for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PingState {
    /// When the run starts (`<ping_url>/start`).
    Start,
    /// When it ends well (`<ping_url>`).
    Finish,
    /// When it fails (`<ping_url>/fail`).
    Fail,
    /// borgmatic's log-only state; accepted and ignored.
    Log,
}

/// Healthchecks-style pings (borgmatic's `healthchecks:`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthchecksConfig {
    /// The check's ping URL (plain HTTP only).
    pub ping_url: String,
    /// Which states to ping (default start, finish, fail).
    #[serde(default)]
    pub states: Vec<PingState>,
    /// Send the run summary as the ping body (default true).
    #[serde(default)]
    pub send_logs: Option<bool>,
    /// Largest body in bytes (default 100 000, borgmatic's).
    #[serde(default)]
    pub ping_body_limit: Option<usize>,
    /// Accepted for borgmatic compatibility; rborg pings over plain HTTP only.
    #[serde(default)]
    pub verify_tls: Option<bool>,
    /// Accepted for borgmatic compatibility; ignored.
    #[serde(default)]
    pub create_slug: Option<bool>,
}

fn healthchecks<'de, D: Deserializer<'de>>(d: D) -> Result<Option<HealthchecksConfig>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<HealthchecksConfig>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a ping URL or a map with `ping_url`")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(HealthchecksConfig {
                ping_url: v.to_string(),
                states: Vec::new(),
                send_logs: None,
                ping_body_limit: None,
                verify_tls: None,
                create_slug: None,
            }))
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            HealthchecksConfig::deserialize(de::value::MapAccessDeserializer::new(map)).map(Some)
        }
    }
    d.deserialize_any(V)
}

/// The whole configuration file, keys named as in borgmatic.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    // ---- sources and repositories
    /// Paths to back up.
    #[serde(default)]
    pub source_directories: Vec<String>,
    /// Fail when a source directory is missing.
    #[serde(default)]
    pub source_directories_must_exist: bool,
    /// The repositories, in the order they are backed up to. Required, non-empty.
    #[serde(deserialize_with = "repositories")]
    pub repositories: Vec<RepositoryConfig>,
    /// Directory to change into before running (and for hooks).
    #[serde(default)]
    pub working_directory: Option<String>,
    /// Stay on the file system of each source directory.
    #[serde(default)]
    pub one_file_system: bool,
    /// Store numeric user and group ids only.
    #[serde(default)]
    pub numeric_ids: bool,
    /// Borg pattern lines (`R /`, `- **/cache`, …).
    #[serde(default)]
    pub patterns: Vec<String>,
    /// Files with pattern lines.
    #[serde(default)]
    pub patterns_from: Vec<String>,
    /// Exclude patterns (borg's `--exclude`).
    #[serde(default)]
    pub exclude_patterns: Vec<String>,
    /// Files with exclude patterns.
    #[serde(default)]
    pub exclude_from: Vec<String>,
    /// Skip directories holding a `CACHEDIR.TAG`.
    #[serde(default)]
    pub exclude_caches: bool,
    /// Skip directories holding any of these files.
    #[serde(default)]
    pub exclude_if_present: Vec<String>,
    /// Keep the tag files of excluded directories.
    #[serde(default)]
    pub keep_exclude_tags: bool,
    /// Skip files with the nodump flag.
    #[serde(default)]
    pub exclude_nodump: bool,

    // ---- borg options
    /// A command whose standard output is the passphrase.
    #[serde(default)]
    pub encryption_passcommand: Option<String>,
    /// The passphrase, or borgmatic's `{credential file PATH}` / `{credential systemd NAME}`.
    #[serde(default)]
    pub encryption_passphrase: Option<Secret>,
    /// Compression spec (`lz4`, `zstd,3`, `auto,zstd`, …).
    #[serde(default)]
    pub compression: Option<String>,
    /// Archive name template (default `{hostname}-{now:%Y-%m-%dT%H:%M:%S.%f}`).
    #[serde(default)]
    pub archive_name_format: Option<String>,
    /// Which archives prune/check consider (borg's `--match-archives`/`--glob-archives`).
    #[serde(default)]
    pub match_archives: Option<String>,
    /// Seconds between checkpoints.
    #[serde(default)]
    pub checkpoint_interval: Option<u64>,
    /// Chunker parameters (`buzhash,19,23,21,4095`).
    #[serde(default)]
    pub chunker_params: Option<String>,
    /// Upload limit in KiB/s.
    #[serde(default)]
    pub upload_rate_limit: Option<u64>,
    /// Attempts after a lost connection (0: none).
    #[serde(default)]
    pub retries: u32,
    /// Seconds before the first retry; each later retry waits twice as long.
    #[serde(default)]
    pub retry_wait: u64,
    /// Temporary directory.
    #[serde(default)]
    pub temporary_directory: Option<String>,
    /// The ssh command (`ssh -i key -p 2222`).
    #[serde(default)]
    pub ssh_command: Option<String>,
    /// Borg base directory.
    #[serde(default)]
    pub borg_base_directory: Option<String>,
    /// Borg config directory.
    #[serde(default)]
    pub borg_config_directory: Option<String>,
    /// Borg cache directory.
    #[serde(default)]
    pub borg_cache_directory: Option<String>,
    /// Borg security directory.
    #[serde(default)]
    pub borg_security_directory: Option<String>,
    /// Borg keys directory.
    #[serde(default)]
    pub borg_keys_directory: Option<String>,
    /// Files cache TTL.
    #[serde(default)]
    pub borg_files_cache_ttl: Option<u64>,
    /// Umask for created files.
    #[serde(default)]
    pub umask: Option<u32>,
    /// Seconds to wait for a repository lock (default 1, borg's).
    #[serde(default)]
    pub lock_wait: Option<u64>,
    /// The local borg executable (accepted for compatibility; rborg is its own borg).
    #[serde(default)]
    pub local_path: Option<String>,
    /// The borg to start on the server.
    #[serde(default)]
    pub remote_path: Option<String>,
    /// Extra options per borg command (accepted; passed to actions as they see fit).
    #[serde(default)]
    pub extra_borg_options: BTreeMap<String, String>,

    // ---- retention
    /// Keep everything within this span (`2d`, `1w`, `6m`).
    #[serde(default)]
    pub keep_within: Option<String>,
    /// Secondly archives to keep.
    #[serde(default)]
    pub keep_secondly: Option<u32>,
    /// Minutely archives to keep.
    #[serde(default)]
    pub keep_minutely: Option<u32>,
    /// Hourly archives to keep.
    #[serde(default)]
    pub keep_hourly: Option<u32>,
    /// Daily archives to keep.
    #[serde(default)]
    pub keep_daily: Option<u32>,
    /// Weekly archives to keep.
    #[serde(default)]
    pub keep_weekly: Option<u32>,
    /// Monthly archives to keep.
    #[serde(default)]
    pub keep_monthly: Option<u32>,
    /// Yearly archives to keep.
    #[serde(default)]
    pub keep_yearly: Option<u32>,
    /// Quarterly archives by 13-week periods.
    #[serde(default)]
    pub keep_13weekly: Option<u32>,
    /// Quarterly archives by 3-month periods.
    #[serde(default)]
    pub keep_3monthly: Option<u32>,
    /// Compact segments with at least this percentage of freeable space (default 10).
    #[serde(default)]
    pub compact_threshold: Option<u32>,

    // ---- consistency
    /// The checks and their frequencies (default: repository and archives, monthly).
    #[serde(default)]
    pub checks: Option<Vec<CheckConfig>>,
    /// Only check the last N archives.
    #[serde(default)]
    pub check_last: Option<u32>,
    /// Only check these repositories (paths or labels).
    #[serde(default)]
    pub check_repositories: Vec<String>,

    // ---- command hooks, borgmatic 2 style
    /// `commands:` entries.
    #[serde(default)]
    pub commands: Vec<CommandHook>,
    // ---- command hooks, borgmatic 1 style (deprecated there, still accepted)
    /// Before all actions of each repository.
    #[serde(default)]
    pub before_actions: Vec<String>,
    /// Before each create.
    #[serde(default)]
    pub before_backup: Vec<String>,
    /// Before each prune.
    #[serde(default)]
    pub before_prune: Vec<String>,
    /// Before each compact.
    #[serde(default)]
    pub before_compact: Vec<String>,
    /// Before each check.
    #[serde(default)]
    pub before_check: Vec<String>,
    /// After all actions of each repository succeeded.
    #[serde(default)]
    pub after_actions: Vec<String>,
    /// After each successful create.
    #[serde(default)]
    pub after_backup: Vec<String>,
    /// After each successful prune.
    #[serde(default)]
    pub after_prune: Vec<String>,
    /// After each successful compact.
    #[serde(default)]
    pub after_compact: Vec<String>,
    /// After each successful check.
    #[serde(default)]
    pub after_check: Vec<String>,
    /// When anything failed.
    #[serde(default)]
    pub on_error: Vec<String>,
    /// Once before the run.
    #[serde(default)]
    pub before_everything: Vec<String>,
    /// Once after a successful run.
    #[serde(default)]
    pub after_everything: Vec<String>,
    /// Once after the run whatever happened (rborg's shorthand for `after: everything` without
    /// `states`): the place for restarting stopped services.
    #[serde(default, rename = "finally")]
    pub finally_commands: Vec<String>,
    /// Seconds before a hook command is killed (rborg; default none).
    #[serde(default)]
    pub hook_timeout: Option<u64>,

    // ---- monitoring
    /// Pushgateway reporting.
    #[serde(default)]
    pub pushgateway: Option<PushgatewayConfig>,
    /// Healthchecks-style pings.
    #[serde(default, deserialize_with = "healthchecks")]
    pub healthchecks: Option<HealthchecksConfig>,

    // ---- output (accepted for compatibility)
    /// Console verbosity.
    #[serde(default)]
    pub verbosity: Option<i32>,
    /// Syslog verbosity.
    #[serde(default)]
    pub syslog_verbosity: Option<i32>,
    /// Verbosity of what monitoring hooks receive.
    #[serde(default)]
    pub monitoring_verbosity: Option<i32>,
    /// Print statistics.
    #[serde(default)]
    pub statistics: Option<bool>,
    /// Print the file list.
    #[serde(default)]
    pub list_details: Option<bool>,
    /// Print progress.
    #[serde(default)]
    pub progress: Option<bool>,
    /// Colour output.
    #[serde(default)]
    pub color: Option<bool>,
    /// Name the host in archives (borg 1.4.5+ placeholder).
    #[serde(default)]
    pub archive_hostname: Option<String>,
}

/// Sections of borgmatic's pre-1.8 layout; their keys move to the top level unchanged.
const SECTIONS: &[&str] = &[
    "location",
    "storage",
    "retention",
    "consistency",
    "hooks",
    "output",
];

impl Config {
    /// Reads, interpolates and validates a configuration file.
    pub fn load(path: &Path, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string(), env)
    }

    /// Parses and validates configuration text; `origin` names it in errors.
    pub fn parse(
        text: &str,
        origin: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        Config::parse_unlocated(text, origin, env).map_err(|e| locate(e, text))
    }

    fn parse_unlocated(
        text: &str,
        origin: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let invalid = |e: serde_norway::Error| {
            let loc = e.location();
            let mut message = e.to_string();
            // serde_norway appends " at line L column C"; we put the location in front instead.
            if let Some(l) = &loc {
                let tail = format!(" at line {} column {}", l.line(), l.column());
                if let Some(stripped) = message.strip_suffix(&tail) {
                    message = stripped.to_string();
                }
            }
            ConfigError::Invalid {
                path: origin.to_string(),
                line: loc.as_ref().map(|l| l.line()),
                column: loc.as_ref().map(|l| l.column()),
                message: shorten_unknown_field(&message),
            }
        };
        let mut config = if is_sectioned(text) {
            let value: serde_norway::Value = serde_norway::from_str(text).map_err(invalid)?;
            let flat = flatten_sections(value).map_err(|message| ConfigError::Invalid {
                path: origin.to_string(),
                line: None,
                column: None,
                message,
            })?;
            Config::deserialize(flat).map_err(invalid)?
        } else {
            let config: Config = serde_norway::from_str(text).map_err(invalid)?;
            config
        };
        config.interpolate(origin, env)?;
        config.check_semantics(origin)?;
        Ok(config)
    }

    fn check_semantics(&self, origin: &str) -> Result<(), ConfigError> {
        let fail = |message: String| ConfigError::Invalid {
            path: origin.to_string(),
            line: None,
            column: None,
            message,
        };
        if let Some(c) = &self.compression {
            validate_compression(c).map_err(|m| fail(format!("compression: {m}")))?;
        }
        if let Some(k) = &self.keep_within {
            parse_keep_within(k).map_err(|m| fail(format!("keep_within: {m}")))?;
        }
        for (i, hook) in self.commands.iter().enumerate() {
            match (hook.before, hook.after) {
                (Some(_), Some(_)) | (None, None) => {
                    return Err(fail(format!(
                        "commands[{i}]: exactly one of `before` and `after` is required"
                    )))
                }
                (Some(HookPoint::Error), None) => {
                    return Err(fail(format!(
                        "commands[{i}]: `error` is only valid with `after`"
                    )))
                }
                (Some(_), None) if !hook.states.is_empty() => {
                    return Err(fail(format!(
                        "commands[{i}]: `states` is only valid with `after`"
                    )))
                }
                _ => {}
            }
            for action in &hook.when {
                if !KNOWN_ACTIONS.contains(&action.as_str()) {
                    return Err(fail(format!(
                        "commands[{i}].when: unknown action {action:?}"
                    )));
                }
            }
        }
        let mut labels = std::collections::BTreeSet::new();
        for r in &self.repositories {
            if !labels.insert(r.name()) {
                return Err(fail(format!(
                    "repositories: label {:?} is used twice",
                    r.name()
                )));
            }
        }
        if let Some(p) = &self.pushgateway {
            if !p.url.starts_with("http://") {
                return Err(fail(format!(
                    "pushgateway.url: {:?} must start with http:// (TLS is not supported)",
                    p.url
                )));
            }
        }
        Ok(())
    }

    /// The checks to consider, with borgmatic's default when none are configured.
    pub fn effective_checks(&self) -> Vec<CheckConfig> {
        match &self.checks {
            Some(list) => {
                if list.iter().any(|c| c.name == CheckName::Disabled) {
                    Vec::new()
                } else {
                    list.clone()
                }
            }
            None => [CheckName::Repository, CheckName::Archives]
                .into_iter()
                .map(|name| CheckConfig {
                    name,
                    frequency: Frequency::MONTHLY,
                    only_run_on: Weekdays::default(),
                    max_duration: None,
                })
                .collect(),
        }
    }

    /// The timeout for hook commands that set none themselves.
    pub fn default_hook_timeout(&self) -> Option<Duration> {
        self.hook_timeout.map(Duration::from_secs)
    }

    /// The lock wait for `repo`: its own, the top-level one, or borg's 1 second.
    pub fn lock_wait(&self, repo: &RepositoryConfig) -> u64 {
        repo.lock_wait.or(self.lock_wait).unwrap_or(1)
    }

    /// The ssh command for `repo`: its own or the top-level one.
    pub fn ssh_command<'a>(&'a self, repo: &'a RepositoryConfig) -> Option<&'a str> {
        repo.ssh_command.as_deref().or(self.ssh_command.as_deref())
    }

    /// The remote borg path for `repo`: its own or the top-level one.
    pub fn remote_path<'a>(&'a self, repo: &'a RepositoryConfig) -> Option<&'a str> {
        repo.remote_path.as_deref().or(self.remote_path.as_deref())
    }

    /// The repository passphrase: `encryption_passphrase` (resolving borgmatic's
    /// `{credential file PATH}` and `{credential systemd NAME}`), else the output of
    /// `encryption_passcommand` (trailing newline removed), else `None`.
    pub fn passphrase(
        &self,
        env: &BTreeMap<String, String>,
    ) -> Result<Option<Zeroizing<String>>, ConfigError> {
        if let Some(p) = &self.encryption_passphrase {
            return resolve_credential(p.expose(), env).map(Some);
        }
        if let Some(cmd) = &self.encryption_passcommand {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::inherit())
                .output()
                .map_err(|e| ConfigError::Passphrase(format!("encryption_passcommand: {e}")))?;
            let stdout = Zeroizing::new(out.stdout);
            if !out.status.success() {
                return Err(ConfigError::Passphrase(format!(
                    "encryption_passcommand exited with {}",
                    out.status
                )));
            }
            let text = String::from_utf8(stdout.to_vec()).map_err(|_| {
                ConfigError::Passphrase("encryption_passcommand printed non-UTF-8".into())
            })?;
            let text = Zeroizing::new(text);
            return Ok(Some(Zeroizing::new(
                text.strip_suffix('\n').unwrap_or(&text).to_string(),
            )));
        }
        Ok(None)
    }

    /// Replaces `${VAR}` in every string value.
    fn interpolate(
        &mut self,
        origin: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<(), ConfigError> {
        let fix = |key: &str, s: &mut String| -> Result<(), ConfigError> {
            *s = interpolate_env(s, env).map_err(|var| ConfigError::UnsetVariable {
                path: origin.to_string(),
                line: None,
                key: key.to_string(),
                var,
            })?;
            Ok(())
        };
        macro_rules! one {
            ($($field:ident),*) => {$(
                if let Some(v) = self.$field.as_mut() { fix(stringify!($field), v)?; }
            )*};
        }
        macro_rules! many {
            ($($field:ident),*) => {$(
                for v in self.$field.iter_mut() { fix(stringify!($field), v)?; }
            )*};
        }
        one!(
            working_directory,
            encryption_passcommand,
            compression,
            archive_name_format,
            match_archives,
            temporary_directory,
            ssh_command,
            borg_base_directory,
            borg_config_directory,
            borg_cache_directory,
            borg_security_directory,
            borg_keys_directory,
            remote_path,
            keep_within,
            archive_hostname
        );
        many!(
            source_directories,
            patterns,
            patterns_from,
            exclude_patterns,
            exclude_from,
            exclude_if_present,
            before_actions,
            before_backup,
            before_prune,
            before_compact,
            before_check,
            after_actions,
            after_backup,
            after_prune,
            after_compact,
            after_check,
            on_error,
            before_everything,
            after_everything,
            finally_commands
        );
        if let Some(p) = self.encryption_passphrase.as_mut() {
            let mut s = p.expose().to_string();
            fix("encryption_passphrase", &mut s)?;
            *p = Secret(Zeroizing::new(s));
        }
        for r in &mut self.repositories {
            fix("repositories.path", &mut r.path)?;
            for (key, v) in [
                ("repositories.label", &mut r.label),
                ("repositories.ssh_command", &mut r.ssh_command),
                ("repositories.remote_path", &mut r.remote_path),
            ] {
                if let Some(v) = v.as_mut() {
                    fix(key, v)?;
                }
            }
        }
        for c in &mut self.commands {
            for v in &mut c.run {
                fix("commands.run", v)?;
            }
        }
        if let Some(p) = self.pushgateway.as_mut() {
            fix("pushgateway.url", &mut p.url)?;
            for (key, v) in [
                ("pushgateway.job", &mut p.job),
                ("pushgateway.instance", &mut p.instance),
                ("pushgateway.username", &mut p.username),
            ] {
                if let Some(v) = v.as_mut() {
                    fix(key, v)?;
                }
            }
            if let Some(pw) = p.password.as_mut() {
                let mut s = pw.expose().to_string();
                fix("pushgateway.password", &mut s)?;
                *pw = Secret(Zeroizing::new(s));
            }
        }
        if let Some(h) = self.healthchecks.as_mut() {
            fix("healthchecks.ping_url", &mut h.ping_url)?;
        }
        Ok(())
    }
}

/// Replaces serde's list of all 100-odd valid keys after an unknown one with a suggestion of the
/// closest valid key, if one is close.
fn shorten_unknown_field(message: &str) -> String {
    let Some((head, list)) = message.split_once(", expected one of ") else {
        return message.to_string();
    };
    let Some(unknown) = head.split('`').nth(1) else {
        return message.to_string();
    };
    let best = list
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|k| (edit_distance(unknown, k), k))
        .min();
    match best {
        Some((d, key)) if d <= 2.max(unknown.len() / 4) => {
            format!("{head} (did you mean `{key}`?)")
        }
        _ => head.to_string(),
    }
}

/// Levenshtein distance over bytes (keys are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Fills in the line of an error the parser could not place (the old sectioned layout, checks
/// after parsing, unset variables) by finding the key or variable it names in the text.
fn locate(error: ConfigError, text: &str) -> ConfigError {
    match error {
        ConfigError::Invalid {
            path,
            line: None,
            column: None,
            message,
        } => {
            let line = guess_key(&message).and_then(|key| find_key_line(text, &key));
            ConfigError::Invalid {
                path,
                line,
                column: None,
                message,
            }
        }
        ConfigError::UnsetVariable {
            path,
            line: None,
            key,
            var,
        } => {
            let plain = format!("${{{var}}}");
            let with_default = format!("${{{var}:");
            let line = text
                .lines()
                .position(|l| l.contains(&plain) || l.contains(&with_default))
                .map(|i| i + 1);
            ConfigError::UnsetVariable {
                path,
                line,
                key,
                var,
            }
        }
        other => other,
    }
}

/// The key an error message is about: "unknown field `x`" or a leading "a.b: …" path.
fn guess_key(message: &str) -> Option<String> {
    if let Some(rest) = message.split("unknown field `").nth(1) {
        return rest.split('`').next().map(str::to_string);
    }
    let (path, _) = message.split_once(": ")?;
    let last = path.rsplit('.').next()?;
    if last.is_empty() || last.contains(['[', ' ']) {
        return None;
    }
    Some(last.to_string())
}

/// The 1-based line where `key:` is first written as a map key.
fn find_key_line(text: &str, key: &str) -> Option<usize> {
    let wanted = format!("{key}:");
    text.lines()
        .position(|l| {
            let t = l.trim_start();
            let t = t.strip_prefix("- ").unwrap_or(t).trim_start();
            t.starts_with(&wanted)
        })
        .map(|i| i + 1)
}

/// Actions a `when:` list may name (borgmatic's names).
const KNOWN_ACTIONS: &[&str] = &[
    "repo-create",
    "transfer",
    "prune",
    "compact",
    "create",
    "recreate",
    "check",
    "delete",
    "extract",
    "config",
    "export-tar",
    "mount",
    "umount",
    "repo-delete",
    "restore",
    "repo-list",
    "list",
    "repo-info",
    "info",
    "break-lock",
    "key",
    "borg",
];

/// Whether the top level of `text` uses one of the old section names as a key.
fn is_sectioned(text: &str) -> bool {
    text.lines().any(|line| {
        SECTIONS.iter().any(|s| {
            line.strip_prefix(s)
                .is_some_and(|rest| rest.starts_with(':'))
        })
    })
}

/// Moves the keys of old-style sections to the top level.
fn flatten_sections(value: serde_norway::Value) -> Result<serde_norway::Value, String> {
    use serde_norway::{Mapping, Value};
    let Value::Mapping(top) = value else {
        return Err("the configuration must be a map of keys".into());
    };
    let mut flat = Mapping::new();
    for (k, v) in top {
        let name = k.as_str().unwrap_or_default().to_string();
        if SECTIONS.contains(&name.as_str()) {
            let Value::Mapping(inner) = v else {
                if v.is_null() {
                    continue;
                }
                return Err(format!("section `{name}` must be a map"));
            };
            for (ik, iv) in inner {
                let iname = ik.as_str().unwrap_or_default().to_string();
                // Old layout: `hooks: healthchecks: URL`, `location: repositories: [paths]` are
                // handled by the flat deserializers; `prefix` is gone in borg 1.2+.
                if flat.insert(ik, iv).is_some() {
                    return Err(format!("key `{iname}` appears in two sections"));
                }
            }
        } else if flat.insert(k, v).is_some() {
            return Err(format!("key `{name}` appears twice"));
        }
    }
    Ok(Value::Mapping(flat))
}

/// Replaces `${VAR}` and `${VAR:-default}`; `\${` stays literal. Returns the unset name on error.
pub fn interpolate_env(text: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("${") {
        if pos > 0 && rest.as_bytes()[pos - 1] == b'\\' {
            out.push_str(&rest[..pos - 1]);
            out.push_str("${");
            rest = &rest[pos + 2..];
            continue;
        }
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[pos..]);
            return Ok(out);
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            out.push_str("${");
            rest = after;
            continue;
        }
        match (env.get(name), default) {
            (Some(v), _) => out.push_str(v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => return Err(name.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Resolves borgmatic's credential references in a passphrase value.
fn resolve_credential(
    value: &str,
    env: &BTreeMap<String, String>,
) -> Result<Zeroizing<String>, ConfigError> {
    let trimmed = value.trim();
    let Some(inner) = trimmed
        .strip_prefix("{credential ")
        .and_then(|s| s.strip_suffix('}'))
    else {
        return Ok(Zeroizing::new(value.to_string()));
    };
    let (kind, arg) = inner.trim().split_once(' ').ok_or_else(|| {
        ConfigError::Passphrase(
            "expected {credential file PATH} or {credential systemd NAME}".into(),
        )
    })?;
    let file: PathBuf = match kind {
        "file" => PathBuf::from(arg.trim()),
        "systemd" => {
            let dir = env.get("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                ConfigError::Passphrase(
                    "{credential systemd ...} needs CREDENTIALS_DIRECTORY (LoadCredential= in the unit)"
                        .into(),
                )
            })?;
            Path::new(dir).join(arg.trim())
        }
        other => {
            return Err(ConfigError::Passphrase(format!(
                "credential type {other:?} is not supported (use file or systemd)"
            )))
        }
    };
    let bytes = Zeroizing::new(
        std::fs::read(&file)
            .map_err(|e| ConfigError::Passphrase(format!("{}: {e}", file.display())))?,
    );
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ConfigError::Passphrase(format!("{} is not UTF-8", file.display())))?;
    Ok(Zeroizing::new(
        text.trim_end_matches(['\n', '\r']).to_string(),
    ))
}

/// Checks a compression spec the way borg's `CompressionSpec` parses it.
pub fn validate_compression(spec: &str) -> Result<(), String> {
    let parts: Vec<&str> = spec.split(',').collect();
    let level = |s: Option<&&str>, lo: i32, hi: i32, name: &str| -> Result<(), String> {
        match s {
            None => Ok(()),
            Some(l) => match l.parse::<i32>() {
                Ok(n) if (lo..=hi).contains(&n) => Ok(()),
                _ => Err(format!("{name} level {l:?} is not in {lo}..{hi}")),
            },
        }
    };
    match parts.as_slice() {
        ["none"] | ["lz4"] => Ok(()),
        ["zstd", rest @ ..] if rest.len() <= 1 => level(rest.first(), 1, 22, "zstd"),
        ["zlib", rest @ ..] if rest.len() <= 1 => level(rest.first(), 0, 9, "zlib"),
        ["lzma", rest @ ..] if rest.len() <= 1 => level(rest.first(), 0, 9, "lzma"),
        ["auto", rest @ ..] if !rest.is_empty() => validate_compression(&rest.join(",")),
        ["obfuscate", n, rest @ ..] if !rest.is_empty() => {
            level(Some(n), 1, 250, "obfuscate")?;
            validate_compression(&rest.join(","))
        }
        _ => Err(format!(
            "{spec:?} is not a compression spec (none, lz4, zstd[,L], zlib[,L], lzma[,L], auto,SPEC)"
        )),
    }
}

/// Parses `keep_within` (`12H`, `2d`, `1w`, `6m`, `1y`; also `S`, `M` on borg 1.4).
pub fn parse_keep_within(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let bad = || format!("{text:?} is not a span such as 2d, 1w, 6m or 1y");
    let unit = t.chars().last().ok_or_else(bad)?;
    let count: u64 = t[..t.len() - unit.len_utf8()].parse().map_err(|_| bad())?;
    let secs = match unit {
        'S' => 1,
        'M' => 60,
        'H' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        'm' => 31 * 86_400,
        'y' => 365 * 86_400,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(count * secs))
}

/// Reads and validates `path`, for `rborg config validate`, with `${VAR}` taken from `env`.
pub fn validate(path: &Path, env: &crate::settings::Environment) -> Result<Config, ConfigError> {
    let env: BTreeMap<String, String> = env
        .iter()
        .filter_map(|(k, v)| Some((k.to_str()?.to_string(), v.to_str()?.to_string())))
        .collect();
    Config::load(path, &env)
}

/// A commented sample configuration, for `rborg config generate`.
pub fn generate_sample() -> &'static str {
    include_str!("sample.yaml")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "test.yaml", &BTreeMap::new())
    }

    #[test]
    fn sample_parses() {
        let env = BTreeMap::from([("HOSTNAME".to_string(), "alpha".to_string())]);
        let c = Config::parse(generate_sample(), "sample", &env).unwrap();
        assert_eq!(
            c.repositories[0].path,
            "ssh://backup@nas.example.org/./backups/alpha"
        );
        assert_eq!(c.keep_daily, Some(7));
        assert_eq!(c.effective_checks().len(), 2);
    }

    #[test]
    fn errors_name_line_and_key() {
        let e = parse("repositories:\n  - path: /r\nkeep_dayly: 7\n").unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("test.yaml:3:"), "{s}");
        assert!(
            s.ends_with("unknown field `keep_dayly` (did you mean `keep_daily`?)"),
            "{s}"
        );
        let e = parse("repositories: [/r]\nfrobnicate: 1\n").unwrap_err();
        assert!(e.to_string().ends_with("unknown field `frobnicate`"), "{e}");

        let e = parse("repositories:\n  - path: /r\n    lock_wait: soon\n").unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("test.yaml:3:"), "{s}");
        assert!(s.contains("lock_wait"), "{s}");

        let e = parse("source_directories: [/etc]\nkeep_daily: 7\n").unwrap_err();
        let s = e.to_string();
        assert!(s.contains("repositories"), "{s}");
        assert!(
            matches!(e, ConfigError::Invalid { line: Some(_), .. }),
            "{s}"
        );

        let e = parse("source_directories: [/etc]\nrepositories: []\n").unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("test.yaml:2:"), "{s}");

        let e = parse("repositories: [/r]\nchecks:\n  - name: data\n    frequency: 1 fortnight\n")
            .unwrap_err();
        let s = e.to_string();
        // The parser reports custom value errors at the start of the enclosing entry.
        assert!(
            s.starts_with("test.yaml:3:") || s.starts_with("test.yaml:4:"),
            "{s}"
        );
        assert!(s.contains("checks[0]") && s.contains("fortnight"), "{s}");
    }

    /// A typical borgmatic 1.8 file, as users write them, parses unchanged.
    #[test]
    fn borgmatic_config_carries_over() {
        let text = r#"
source_directories:
    - /home
    - /etc
repositories:
    - path: ssh://k8pDxu32@k8pDxu32.repo.borgbase.com/./repo
      label: borgbase
    - path: /var/lib/backups/local.borg
      label: local
one_file_system: true
exclude_patterns:
    - '*.pyc'
    - /home/*/.cache
exclude_caches: true
exclude_if_present:
    - .nobackup
encryption_passcommand: secret-tool lookup borg-repository repo-name
compression: lz4
archive_name_format: 'backup-{now}'
ssh_command: ssh -i /path/to/private/key
retries: 1
retry_wait: 10
lock_wait: 5
keep_within: 3H
keep_daily: 7
keep_weekly: 4
keep_monthly: 6
keep_yearly: 1
checks:
    - name: repository
      frequency: 2 weeks
    - name: archives
      frequency: always
    - name: extract
      frequency: disabled
check_last: 3
before_backup:
    - echo Starting a backup.
after_backup:
    - echo Finished a backup.
on_error:
    - echo Error during create/prune/compact/check.
before_everything:
    - echo Starting actions.
healthchecks:
    ping_url: https://hc-ping.com/your-uuid-here
"#;
        let c = parse(text).unwrap();
        assert_eq!(c.repositories[1].name(), "local");
        assert_eq!(
            c.ssh_command(&c.repositories[0]),
            Some("ssh -i /path/to/private/key")
        );
        assert_eq!(c.effective_checks().len(), 3);
        assert_eq!(c.keep_yearly, Some(1));
    }

    #[test]
    fn old_sectioned_layout() {
        let c = parse(
            "location:\n  source_directories: [/etc]\n  repositories: [/r1, /r2]\nretention:\n  keep_daily: 3\nhooks:\n  before_backup: [echo hi]\n  healthchecks: http://h/ping/x\n",
        )
        .unwrap();
        assert_eq!(c.repositories.len(), 2);
        assert_eq!(c.keep_daily, Some(3));
        assert_eq!(c.healthchecks.unwrap().ping_url, "http://h/ping/x");
        let e = parse("location:\n  repositories: [/r]\n  bogus: 1\n").unwrap_err();
        assert!(e.to_string().starts_with("test.yaml:3: "), "{e}");
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn env_interpolation() {
        let env = BTreeMap::from([("PW".to_string(), "s3cret".to_string())]);
        let c = Config::parse(
            "repositories: [/r]\nencryption_passphrase: ${PW}\nsource_directories: ['${HOME_DIR:-/home}', '\\${LITERAL}']\n",
            "t",
            &env,
        )
        .unwrap();
        assert_eq!(c.encryption_passphrase.as_ref().unwrap().expose(), "s3cret");
        assert_eq!(c.source_directories, vec!["/home", "${LITERAL}"]);
        assert!(!format!("{c:?}").contains("s3cret"));
        let e = Config::parse(
            "repositories: [/r]\nsource_directories:\n  - ${NOPE}\n",
            "t",
            &env,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("t:3: "), "{e}");
        assert!(e.to_string().contains("NOPE"), "{e}");
    }

    #[test]
    fn credentials_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "from-file\n").unwrap();
        let text = format!(
            "repositories: [/r]\nencryption_passphrase: \"{{credential file {}}}\"\n",
            dir.path().join("pw").display()
        );
        let c = parse(&text).unwrap();
        assert_eq!(
            &**c.passphrase(&BTreeMap::new()).unwrap().unwrap(),
            "from-file"
        );
        let env = BTreeMap::from([(
            "CREDENTIALS_DIRECTORY".to_string(),
            dir.path().display().to_string(),
        )]);
        let c = parse("repositories: [/r]\nencryption_passphrase: '{credential systemd pw}'\n")
            .unwrap();
        assert_eq!(&**c.passphrase(&env).unwrap().unwrap(), "from-file");
        let c = parse("repositories: [/r]\nencryption_passcommand: printf 'cmd-pw\\n'\n").unwrap();
        assert_eq!(&**c.passphrase(&env).unwrap().unwrap(), "cmd-pw");
    }

    #[test]
    fn semantic_checks() {
        assert!(parse("repositories: [/r]\ncompression: auto,zstd\n").is_ok());
        assert!(parse("repositories: [/r]\ncompression: zstd,3\n").is_ok());
        let e = parse("repositories: [/r]\nkeep_daily: 7\ncompression: zstd,30\n").unwrap_err();
        assert!(
            e.to_string().starts_with("test.yaml:3: compression: "),
            "{e}"
        );
        assert!(parse("repositories: [/r]\ncompression: brotli\n").is_err());
        assert!(parse("repositories: [/r]\nkeep_within: 2d\n").is_ok());
        assert!(parse("repositories: [/r]\nkeep_within: 2 days\n").is_err());
        assert!(parse("repositories: [/r]\ncommands:\n  - run: [x]\n").is_err());
        assert!(parse("repositories: [/r]\ncommands:\n  - before: error\n    run: [x]\n").is_err());
        assert!(parse("repositories: [/r, /r]\n").is_err());
        assert!(parse("repositories: [/r]\npushgateway: {url: 'https://x'}\n").is_err());
        let c = parse("repositories: [/r]\nchecks: [{name: disabled}]\n").unwrap();
        assert!(c.effective_checks().is_empty());
    }
}
