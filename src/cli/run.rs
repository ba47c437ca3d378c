//! `rborg run`: the daily job from a configuration file — hooks, create, prune, compact, the
//! checks that are due, one summary, Pushgateway metrics — for every configured repository.
//!
//! The runner (`rborg::ops::runner`) owns the order, hooks, retries and reporting. Each action
//! is one `rborg` command run as a child process of this same binary, exactly as borgmatic runs
//! borg: the child parses its own arguments, so `run` stays a thin translation from
//! configuration keys to command-line flags, and a crash in one action cannot take the hooks
//! that restart services down with it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use clap::Args;

use rborg::ops::config::{CheckName, Config, RepositoryConfig};
use rborg::ops::runner::{
    cancel_on_signals, ActionFailure, ActionKind, ActionReport, ActionRequest, Actions,
    ArchiveStats, RunPlan, Runner,
};

use super::{CliError, Context, Outcome};

/// Arguments of `rborg run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The configuration file.
    #[arg(
        short = 'c',
        long = "config",
        value_name = "FILE",
        default_value = "/etc/rborg/config.yaml"
    )]
    config: PathBuf,
    /// Run every configured check now, whether due or not.
    #[arg(long)]
    force: bool,
    /// Only this repository (label or path); repeatable.
    #[arg(long = "repository", value_name = "NAME")]
    repositories: Vec<String>,
    /// Where check schedules are remembered.
    #[arg(
        long = "state-dir",
        value_name = "DIR",
        default_value = "/var/lib/rborg"
    )]
    state_dir: PathBuf,
    /// The actions, in order (default: create prune compact check).
    #[arg(value_name = "ACTION")]
    actions: Vec<String>,
}

/// Runs the configured job.
pub fn run(ctx: &Context, args: RunArgs) -> Result<Outcome, CliError> {
    let config = rborg::ops::config::validate(&args.config, &ctx.env)?;
    let mut plan = RunPlan::new(&args.state_dir);
    if !args.actions.is_empty() {
        plan.actions = args
            .actions
            .iter()
            .map(|a| {
                ActionKind::parse(a).ok_or_else(|| {
                    CliError::usage(format!(
                        "unknown action {a:?} (use create, prune, compact, check)"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
    }
    plan.force_checks = args.force;
    plan.only_repositories = args.repositories;
    plan.config_path = args.config.display().to_string();
    plan.cancel = cancel_on_signals().ok();
    let env: BTreeMap<String, String> = ctx
        .env
        .iter()
        .filter_map(|(k, v)| Some((k.to_str()?.to_string(), v.to_str()?.to_string())))
        .collect();
    let passphrase = config.passphrase(&env)?;
    let exe = std::env::current_exe()
        .map_err(|e| CliError::error(format!("cannot find the rborg executable: {e}")))?;
    let mut actions = ChildActions {
        exe,
        passphrase: passphrase.map(|p| p.to_string()),
    };
    let summary = Runner::new(&config, plan).run(&mut actions);
    eprintln!("{summary}");
    Ok(match summary.exit_code() {
        0 => Outcome::Success,
        1 => Outcome::Warning(1),
        _ => Outcome::Error(2),
    })
}

/// Runs each action as a child `rborg` process.
struct ChildActions {
    exe: PathBuf,
    passphrase: Option<String>,
}

impl Drop for ChildActions {
    fn drop(&mut self) {
        if let Some(p) = self.passphrase.as_mut() {
            zeroize::Zeroize::zeroize(p);
        }
    }
}

impl ChildActions {
    /// The child's command with the repository's connection settings and the passphrase.
    fn command(&self, config: &Config, repo: &RepositoryConfig) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.stdin(Stdio::null());
        if let Some(p) = &self.passphrase {
            cmd.env("BORG_PASSPHRASE", p);
        }
        if let Some(ssh) = config.ssh_command(repo) {
            cmd.env("BORG_RSH", ssh);
        }
        if let Some(rp) = config.remote_path(repo) {
            cmd.env("BORG_REMOTE_PATH", rp);
        }
        for (var, value) in [
            ("BORG_BASE_DIR", &config.borg_base_directory),
            ("BORG_CONFIG_DIR", &config.borg_config_directory),
            ("BORG_CACHE_DIR", &config.borg_cache_directory),
            ("BORG_SECURITY_DIR", &config.borg_security_directory),
            ("BORG_KEYS_DIR", &config.borg_keys_directory),
        ] {
            if let Some(v) = value {
                cmd.env(var, v);
            }
        }
        if let Some(ttl) = config.borg_files_cache_ttl {
            cmd.env("BORG_FILES_CACHE_TTL", ttl.to_string());
        }
        cmd.arg("--lock-wait")
            .arg(config.lock_wait(repo).to_string());
        cmd
    }
}

/// The include/exclude options of `create`, in borgmatic's order (`make_pattern_flags`, then
/// `make_exclude_flags`): `patterns_from` files, `patterns`, `exclude_from` files,
/// `exclude_patterns`. The order matters, because the first matching rule decides.
///
/// borgmatic writes `patterns` and `exclude_patterns` into files, where blank and `#` lines are
/// skipped and a `P` line sets the style of the lines after it. Given as `--pattern`, a `P`
/// line would change nothing, so its style is written into the lines it governs instead.
fn pattern_options(
    patterns_from: &[String],
    patterns: &[String],
    exclude_from: &[String],
    exclude_patterns: &[String],
) -> Vec<String> {
    let mut a = Vec::new();
    let counts = |l: &&String| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#')
    };
    for f in patterns_from {
        a.extend(["--patterns-from".to_string(), f.clone()]);
    }
    let mut style: Option<String> = None;
    for line in patterns.iter().filter(counts) {
        let line = line.trim();
        let mut chars = line.chars();
        let cmd = chars.next().unwrap_or(' ');
        let rest = chars.as_str().trim_start();
        match cmd {
            'P' | 'p' => style = Some(rest.to_string()),
            '+' | '-' | '!' => {
                let b = rest.as_bytes();
                let prefixed =
                    b.len() > 2 && b[2] == b':' && b[..2].iter().all(u8::is_ascii_alphanumeric);
                let text = match (&style, prefixed) {
                    (Some(st), false) => format!("{cmd} {st}:{rest}"),
                    _ => line.to_string(),
                };
                a.extend(["--pattern".to_string(), text]);
            }
            _ => a.extend(["--pattern".to_string(), line.to_string()]),
        }
    }
    for f in exclude_from {
        a.extend(["--exclude-from".to_string(), f.clone()]);
    }
    for p in exclude_patterns.iter().filter(counts) {
        a.extend(["--exclude".to_string(), p.trim().to_string()]);
    }
    a
}

/// The command-line arguments of one action (after the common ones).
fn action_args(request: &ActionRequest<'_>) -> Vec<String> {
    let c = request.config;
    let repo = &request.repository.path;
    let mut a: Vec<String> = Vec::new();
    let flag = |on: bool, name: &str, a: &mut Vec<String>| {
        if on {
            a.push(name.to_string());
        }
    };
    match request.action {
        ActionKind::Create => {
            a.extend(["create".into(), "--json".into()]);
            if let Some(comp) = &c.compression {
                a.extend(["--compression".into(), comp.clone()]);
            }
            if let Some(cp) = &c.chunker_params {
                a.extend(["--chunker-params".into(), cp.clone()]);
            }
            if let Some(ci) = c.checkpoint_interval {
                a.extend(["--checkpoint-interval".into(), ci.to_string()]);
            }
            flag(c.one_file_system, "--one-file-system", &mut a);
            flag(c.numeric_ids, "--numeric-ids", &mut a);
            flag(c.exclude_caches, "--exclude-caches", &mut a);
            flag(c.keep_exclude_tags, "--keep-exclude-tags", &mut a);
            flag(c.exclude_nodump, "--exclude-nodump", &mut a);
            for x in &c.exclude_if_present {
                a.extend(["--exclude-if-present".into(), x.clone()]);
            }
            a.extend(pattern_options(
                &c.patterns_from,
                &c.patterns,
                &c.exclude_from,
                &c.exclude_patterns,
            ));
            let name = c
                .archive_name_format
                .clone()
                .unwrap_or_else(|| "{hostname}-{now:%Y-%m-%dT%H:%M:%S}".to_string());
            a.push(format!("{repo}::{name}"));
            a.extend(c.source_directories.iter().cloned());
        }
        ActionKind::Prune => {
            a.extend(["prune".into(), "--list".into()]);
            if let Some(w) = &c.keep_within {
                a.extend(["--keep-within".into(), w.clone()]);
            }
            for (name, value) in [
                ("--keep-secondly", c.keep_secondly),
                ("--keep-minutely", c.keep_minutely),
                ("--keep-hourly", c.keep_hourly),
                ("--keep-daily", c.keep_daily),
                ("--keep-weekly", c.keep_weekly),
                ("--keep-monthly", c.keep_monthly),
                ("--keep-13weekly", c.keep_13weekly),
                ("--keep-3monthly", c.keep_3monthly),
                ("--keep-yearly", c.keep_yearly),
            ] {
                if let Some(v) = value {
                    a.extend([name.to_string(), v.to_string()]);
                }
            }
            if let Some(g) = &c.match_archives {
                a.extend(["--glob-archives".into(), g.clone()]);
            }
            a.push(repo.clone());
        }
        ActionKind::Compact => {
            a.push("compact".into());
            if let Some(t) = c.compact_threshold {
                a.extend(["--threshold".into(), t.to_string()]);
            }
            a.push(repo.clone());
        }
        ActionKind::Check => {
            a.push("check".into());
            let has = |n: CheckName| request.checks.contains(&n);
            let data = has(CheckName::Data);
            let archives = has(CheckName::Archives) || data;
            let repository = has(CheckName::Repository);
            if repository && !archives {
                a.push("--repository-only".into());
            } else if archives && !repository {
                a.push("--archives-only".into());
            }
            if data {
                a.push("--verify-data".into());
            }
            if let Some(n) = c.check_last {
                if archives {
                    a.extend(["--last".into(), n.to_string()]);
                }
            }
            a.push(repo.clone());
        }
    }
    a
}

/// `create --json`'s `archive.stats`.
fn create_stats(stdout: &[u8]) -> Option<ArchiveStats> {
    let v: serde_json::Value = serde_json::from_slice(stdout).ok()?;
    let s = v.get("archive")?.get("stats")?;
    let n = |k: &str| s.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    Some(ArchiveStats {
        nfiles: n("nfiles"),
        original_size: n("original_size"),
        compressed_size: n("compressed_size"),
        deduplicated_size: n("deduplicated_size"),
    })
}

/// Whether a failed child looks like a lost connection or a held lock: worth a retry.
fn retryable(stderr: &str) -> bool {
    [
        "Connection closed",
        "Broken Pipe",
        "lock",
        "Connection reset",
    ]
    .iter()
    .any(|s| stderr.contains(s))
}

impl Actions for ChildActions {
    fn run(&mut self, request: &ActionRequest<'_>) -> Result<ActionReport, ActionFailure> {
        if request
            .cancel
            .is_some_and(|c| c.load(std::sync::atomic::Ordering::SeqCst))
        {
            return Err(ActionFailure::fatal("cancelled"));
        }
        let mut cmd = self.command(request.config, request.repository);
        cmd.args(action_args(request));
        // The child's log lines go straight to our stderr, as borgmatic shows borg's; we keep
        // a copy for the summary and the on_error hooks.
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let out = cmd
            .output()
            .map_err(|e| ActionFailure::fatal(format!("cannot run rborg: {e}")))?;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        eprint!("{stderr}");
        if request.action != ActionKind::Create {
            print!("{}", String::from_utf8_lossy(&out.stdout));
        }
        let lines: Vec<String> = stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect();
        match out.status.code() {
            Some(0) => Ok(ActionReport {
                warnings: Vec::new(),
                stats: create_stats(&out.stdout),
            }),
            Some(1) => Ok(ActionReport {
                warnings: if lines.is_empty() {
                    vec![format!("{} finished with warnings", request.action)]
                } else {
                    lines
                },
                stats: create_stats(&out.stdout),
            }),
            status => {
                let message = lines.last().cloned().unwrap_or_else(|| {
                    format!("{} failed (exit status {status:?})", request.action)
                });
                Err(ActionFailure {
                    retryable: retryable(&stderr),
                    message,
                    output: stderr,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pattern_options_follow_borgmatic() {
        let got = pattern_options(
            &strings(&["/etc/p1"]),
            &strings(&[
                "R /home",
                "# comment",
                "",
                "+ /home/user/keep",
                "P fm",
                "- /home/*/cache",
                "! re:^/home/tmp",
                "p sh",
                "- /home/**/*.o",
            ]),
            &strings(&["/etc/e1"]),
            &strings(&["  *.tmp ", "#x"]),
        );
        assert_eq!(
            got,
            strings(&[
                "--patterns-from",
                "/etc/p1",
                "--pattern",
                "R /home",
                "--pattern",
                "+ /home/user/keep",
                "--pattern",
                "- fm:/home/*/cache",
                "--pattern",
                "! re:^/home/tmp",
                "--pattern",
                "- sh:/home/**/*.o",
                "--exclude-from",
                "/etc/e1",
                "--exclude",
                "*.tmp",
            ])
        );
    }
}
