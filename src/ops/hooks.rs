//! Running command hooks: `sh -c` with a timeout, variables describing the run, and borgmatic's
//! `{name}` interpolation.
//!
//! Each command runs in a process group of its own so a timeout can end the shell and everything
//! it started (a `podman volume export` left running would keep a volume busy). Standard input is
//! empty; standard output and error go where rborg's go (the journal under systemd).

use std::collections::BTreeMap;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The exit status with which a `before` hook asks to skip the rest of the repository without an
/// error (borgmatic's "soft failure", `EX_TEMPFAIL`).
pub const SOFT_FAILURE_EXIT: i32 = 75;

/// How a hook command failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// The command exited non-zero.
    #[error("hook command {command:?} failed with exit status {status}")]
    Failed {
        /// The command as configured.
        command: String,
        /// Its exit status.
        status: i32,
    },
    /// The command was killed by a signal.
    #[error("hook command {command:?} was killed by signal {signal}")]
    Signalled {
        /// The command as configured.
        command: String,
        /// The signal number.
        signal: i32,
    },
    /// The command ran past its timeout; its process group was killed.
    #[error("hook command {command:?} timed out after {seconds} s and was killed")]
    TimedOut {
        /// The command as configured.
        command: String,
        /// The timeout in seconds.
        seconds: u64,
    },
    /// `sh` could not be started.
    #[error("hook command {command:?} could not start: {reason}")]
    Spawn {
        /// The command as configured.
        command: String,
        /// Why.
        reason: String,
    },
    /// The command exited with [`SOFT_FAILURE_EXIT`]: skip the rest without an error.
    #[error("hook command {command:?} asked to skip the rest (soft failure, exit 75)")]
    SoftFailure {
        /// The command as configured.
        command: String,
    },
}

/// What a hook is told about the run: environment variables (`RBORG_*`) and the values of
/// borgmatic's `{repository}`, `{repository_label}`, `{error}`, `{output}`,
/// `{configuration_filename}` placeholders.
#[derive(Debug, Clone, Default)]
pub struct HookContext {
    /// Placeholder name to value (`repository`, `error`, …).
    pub values: BTreeMap<String, String>,
}

impl HookContext {
    /// Sets a value; returns `self` for chaining.
    pub fn with(mut self, name: &str, value: impl Into<String>) -> HookContext {
        self.values.insert(name.to_string(), value.into());
        self
    }

    /// The environment variables a hook sees: `RBORG_<NAME>` for each value, upper-cased.
    pub fn environment(&self) -> Vec<(String, String)> {
        self.values
            .iter()
            .map(|(k, v)| (format!("RBORG_{}", k.to_ascii_uppercase()), v.clone()))
            .collect()
    }
}

/// Quotes `s` for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@,+%".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Replaces `{name}` for the names in `values` with the shell-quoted value (borgmatic quotes
/// interpolated values so an error message cannot inject commands). Other braces stay.
pub fn interpolate(command: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(command.len());
    let mut rest = command;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) if values.contains_key(&after[..close]) => {
                out.push_str(&shell_quote(&values[&after[..close]]));
                rest = &after[close + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Runs hook commands.
#[derive(Debug, Clone, Default)]
pub struct HookRunner {
    /// Directory to run commands in (`working_directory`), or rborg's own.
    pub working_directory: Option<PathBuf>,
    /// Timeout for commands that set none (`hook_timeout`).
    pub default_timeout: Option<Duration>,
    /// Extra environment for every command (set before the `RBORG_*` variables).
    pub environment: BTreeMap<String, String>,
}

impl HookRunner {
    /// Runs `commands` in order; the first failure stops the list and is returned.
    pub fn run_all(
        &self,
        commands: &[String],
        context: &HookContext,
        timeout: Option<Duration>,
    ) -> Result<(), HookError> {
        for command in commands {
            self.run_one(command, context, timeout.or(self.default_timeout))?;
        }
        Ok(())
    }

    /// Runs one command with `sh -c` in its own process group.
    pub fn run_one(
        &self,
        command: &str,
        context: &HookContext,
        timeout: Option<Duration>,
    ) -> Result<(), HookError> {
        let script = interpolate(command, &context.values);
        log::info!("running hook: {command}");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(&script)
            .stdin(Stdio::null())
            .envs(&self.environment)
            .envs(context.environment())
            .process_group(0);
        if let Some(dir) = &self.working_directory {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().map_err(|e| HookError::Spawn {
            command: command.to_string(),
            reason: e.to_string(),
        })?;
        let pgid = child.id() as libc::pid_t;
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {}
                Err(e) => {
                    kill_group(pgid, &mut child);
                    return Err(HookError::Spawn {
                        command: command.to_string(),
                        reason: e.to_string(),
                    });
                }
            }
            if let Some(limit) = timeout {
                if started.elapsed() >= limit {
                    kill_group(pgid, &mut child);
                    return Err(HookError::TimedOut {
                        command: command.to_string(),
                        seconds: limit.as_secs(),
                    });
                }
            }
            // Short polls keep quick hooks quick; a hook taking minutes costs a few wake-ups.
            let waited = started.elapsed();
            std::thread::sleep(if waited < Duration::from_secs(1) {
                Duration::from_millis(5)
            } else {
                Duration::from_millis(100)
            });
        };
        match (status.code(), status.signal()) {
            (Some(0), _) => Ok(()),
            (Some(SOFT_FAILURE_EXIT), _) => Err(HookError::SoftFailure {
                command: command.to_string(),
            }),
            (Some(code), _) => Err(HookError::Failed {
                command: command.to_string(),
                status: code,
            }),
            (None, Some(signal)) => Err(HookError::Signalled {
                command: command.to_string(),
                signal,
            }),
            (None, None) => Err(HookError::Failed {
                command: command.to_string(),
                status: -1,
            }),
        }
    }
}

/// Ends a process group: SIGTERM, a short grace period, then SIGKILL.
fn kill_group(pgid: libc::pid_t, child: &mut std::process::Child) {
    // SAFETY: kill(2) with a negative pid signals the process group we created for the hook;
    // it touches no memory of ours.
    unsafe {
        libc::kill(-pgid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        // Reap the shell so its zombie does not count as a live member of the group.
        let _ = child.try_wait();
        // SAFETY: signal 0 only probes whether any process of the group is left.
        let alive = unsafe { libc::kill(-pgid, 0) } == 0;
        if !alive {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: as above.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_interpolation() {
        assert_eq!(shell_quote("abc/d.e"), "abc/d.e");
        assert_eq!(shell_quote("it's; rm -rf /"), "'it'\\''s; rm -rf /'");
        assert_eq!(shell_quote(""), "''");
        let values = BTreeMap::from([
            ("repository".to_string(), "/r x".to_string()),
            ("error".to_string(), "$(boom)".to_string()),
        ]);
        assert_eq!(
            interpolate("notify {repository} {error} {unknown} ${HOME}", &values),
            "notify '/r x' '$(boom)' {unknown} ${HOME}"
        );
    }

    #[test]
    fn exit_statuses() {
        let r = HookRunner::default();
        let ctx = HookContext::default();
        assert!(r.run_one("true", &ctx, None).is_ok());
        assert_eq!(
            r.run_one("exit 3", &ctx, None),
            Err(HookError::Failed {
                command: "exit 3".into(),
                status: 3
            })
        );
        assert!(matches!(
            r.run_one("exit 75", &ctx, None),
            Err(HookError::SoftFailure { .. })
        ));
        assert!(matches!(
            r.run_one("kill -9 $$", &ctx, None),
            Err(HookError::Signalled { signal: 9, .. })
        ));
        // The first failure stops the list.
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("m");
        let cmds = vec!["false".to_string(), format!("touch {}", marker.display())];
        assert!(r.run_all(&cmds, &ctx, None).is_err());
        assert!(!marker.exists());
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let r = HookRunner::default();
        // The grandchild would outlive a kill of the shell alone.
        let cmd = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let started = Instant::now();
        let err = r
            .run_one(
                &cmd,
                &HookContext::default(),
                Some(Duration::from_millis(300)),
            )
            .unwrap_err();
        assert!(matches!(err, HookError::TimedOut { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The grandchild is gone (or a zombie already reaped by init).
        std::thread::sleep(Duration::from_millis(100));
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z "),
            "sleep survived: {stat}"
        );
    }

    #[test]
    fn environment_reaches_the_hook() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env");
        let ctx = HookContext::default()
            .with("repository", "/r")
            .with("action", "create");
        HookRunner::default()
            .run_one(
                &format!(
                    "echo \"$RBORG_REPOSITORY $RBORG_ACTION\" > {}",
                    out.display()
                ),
                &ctx,
                None,
            )
            .unwrap();
        assert_eq!(std::fs::read_to_string(out).unwrap(), "/r create\n");
    }
}
