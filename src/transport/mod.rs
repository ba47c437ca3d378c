//! Transports: byte streams to a `borg serve` process.
//!
//! Borg's RPC needs three streams to the server: its stdin (requests), its stdout (responses)
//! and its stderr (log lines and progress). A [`Transport`] hands these out once, as blocking
//! `Read`/`Write` objects, and can later wait for the server to end or stop it. The RPC client
//! reads stdout and stderr on threads of its own, so a server that is busy writing never
//! blocks a client that is busy writing (borg uses non-blocking pipes and `select` for this).
//!
//! Three transports exist:
//! * [`ssh_process`]: the system `ssh` binary, started as borg starts it (the default);
//! * [`ssh2`](mod@ssh2): an in-process ssh connection through libssh2;
//! * [`pipe`]: a local `borg serve` child given as a command line.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::path::PathBuf;
use std::time::Duration;

pub mod pipe;
mod process;
pub mod ssh2;
pub mod ssh_process;

pub use pipe::PipeTransport;
pub use ssh2::Ssh2Transport;
pub use ssh_process::SshProcessTransport;

/// What can go wrong while setting up or tearing down a transport.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The server program (or ssh) could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program that failed to start.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TCP connection to the ssh server failed.
    #[error("cannot connect to {host}:{port}: {source}")]
    Connect {
        /// The host.
        host: String,
        /// The port.
        port: u16,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The ssh server's host key is not in the known_hosts file.
    #[error("host key of {host} is unknown (not in {known_hosts}); refusing to connect")]
    UnknownHostKey {
        /// The host (with `[host]:port` for non-standard ports).
        host: String,
        /// The known_hosts file that was consulted.
        known_hosts: String,
    },
    /// The ssh server's host key differs from the one in the known_hosts file.
    #[error("host key of {host} does not match the one in {known_hosts} (possible man-in-the-middle attack); refusing to connect")]
    HostKeyMismatch {
        /// The host.
        host: String,
        /// The known_hosts file that was consulted.
        known_hosts: String,
    },
    /// The ssh server refused every authentication method we tried.
    #[error("ssh authentication as {user} to {host} failed (tried: {tried})")]
    AuthenticationFailed {
        /// The user name.
        user: String,
        /// The host.
        host: String,
        /// The methods tried.
        tried: String,
    },
    /// Any other ssh protocol failure.
    #[error("ssh to {host}: {message}")]
    Ssh {
        /// The host.
        host: String,
        /// What failed.
        message: String,
    },
    /// The streams were asked for twice.
    #[error("the transport's streams were already taken")]
    StreamsTaken,
    /// An I/O error while managing the transport.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// The three byte streams of a running `borg serve`.
pub struct ServerStreams {
    /// The server's stdin: requests go here. Dropping it closes the server's input, which is
    /// how a borg client ends a session.
    pub stdin: Box<dyn Write + Send>,
    /// The server's stdout: responses come from here.
    pub stdout: Box<dyn Read + Send>,
    /// The server's stderr: log lines and progress come from here.
    pub stderr: Box<dyn Read + Send>,
}

/// How a finished server ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerExit {
    /// It exited with this code.
    Code(i32),
    /// It was ended by a signal (or, over libssh2, the exit status is not known).
    Other,
}

/// A connection to one `borg serve`.
pub trait Transport: Send {
    /// Hands out the server's streams; succeeds once.
    fn take_streams(&mut self) -> Result<ServerStreams, TransportError>;

    /// Waits up to `timeout` for the server side to end (after its stdin was closed).
    /// Returns `None` if it is still running.
    fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ServerExit>, TransportError>;

    /// Stops the connection at once (kills the child process, drops the ssh session).
    fn kill(&mut self);

    /// A short description for messages, e.g. the command line.
    fn describe(&self) -> String;
}

/// Which ssh implementation reaches a remote location.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SshKind {
    /// The system `ssh` program (borg's way, the default).
    #[default]
    Process,
    /// The in-process libssh2 client.
    Libssh2,
}

/// Opens a transport to the `borg serve` of a remote location.
pub fn connect_ssh(
    location: &crate::location::Location,
    settings: &SshSettings,
    kind: SshKind,
) -> Result<Box<dyn Transport>, TransportError> {
    Ok(match kind {
        SshKind::Process => Box::new(SshProcessTransport::connect(location, settings)?),
        SshKind::Libssh2 => Box::new(Ssh2Transport::connect(location, settings)?),
    })
}

/// The log level that `borg serve` is started with (`--debug`, `--info`, …); warning is borg's
/// default and adds no option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServeLogLevel {
    /// `--debug`
    Debug,
    /// `--info`
    Info,
    /// no option
    #[default]
    Warning,
    /// `--error`
    Error,
    /// `--critical`
    Critical,
}

/// The options borg passes to `borg serve` (borg's `RemoteRepository.borg_cmd`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServeOptions {
    /// The client's log level, forwarded so the server logs as much as the client shows.
    pub log_level: ServeLogLevel,
    /// `--debug-topic` values; only topics about the repository are forwarded.
    pub debug_topics: Vec<String>,
    /// `--storage-quota`, only sent by `borg init`.
    pub storage_quota: Option<u64>,
}

impl ServeOptions {
    /// The arguments after `serve`, in borg's order.
    pub fn args(&self) -> Vec<String> {
        let mut opts = Vec::new();
        match self.log_level {
            ServeLogLevel::Debug => opts.push("--debug".to_string()),
            ServeLogLevel::Info => opts.push("--info".to_string()),
            ServeLogLevel::Warning => {}
            ServeLogLevel::Error => opts.push("--error".to_string()),
            ServeLogLevel::Critical => opts.push("--critical".to_string()),
        }
        for topic in &self.debug_topics {
            let topic = if topic.contains('.') {
                topic.clone()
            } else {
                format!("borg.debug.{topic}")
            };
            if topic.contains("repository") {
                opts.push(format!("--debug-topic={topic}"));
            }
        }
        if let Some(quota) = self.storage_quota.filter(|q| *q > 0) {
            opts.push(format!("--storage-quota={quota}"));
        }
        opts
    }
}

/// Settings shared by the ssh transports, read once from the command line and environment by
/// the caller.
#[derive(Debug, Clone, Default)]
pub struct SshSettings {
    /// `--rsh` or `$BORG_RSH`: the ssh command, split like a shell would (default `ssh`).
    pub rsh: Option<String>,
    /// `--remote-path` or `$BORG_REMOTE_PATH`: the borg program on the server (default `borg`).
    pub remote_path: Option<String>,
    /// Options for `borg serve`.
    pub serve: ServeOptions,
    /// The environment the ssh child starts from (usually the client's own environment). The
    /// transport removes `BORG_PASSPHRASE` and adds `BORG_VERSION`, as borg does.
    pub env: Vec<(OsString, OsString)>,
    /// The client version announced to the child as `BORG_VERSION`.
    pub borg_version: String,
    /// For the libssh2 transport: the known_hosts file host keys are checked against.
    pub known_hosts: Option<PathBuf>,
    /// For the libssh2 transport: a private key file to authenticate with.
    pub identity_file: Option<PathBuf>,
    /// For the libssh2 transport: the ssh agent's socket (the caller reads `$SSH_AUTH_SOCK`);
    /// its keys are tried first. Without it no agent is asked.
    pub agent_socket: Option<PathBuf>,
    /// For the libssh2 transport: the user when the location names none.
    pub default_user: Option<String>,
    /// For the libssh2 transport: how long to wait for the TCP connection and handshake.
    pub connect_timeout: Option<Duration>,
}

impl SshSettings {
    /// Settings as borg derives them, looked up in `env` (the client's environment, read once
    /// by the caller): `rsh` (`--rsh`) else `$BORG_RSH`, `remote_path` (`--remote-path`) else
    /// `$BORG_REMOTE_PATH`. For libssh2: the agent at `$SSH_AUTH_SOCK`, `~/.ssh/known_hosts`,
    /// the first of `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa` that exists, and `$USER` (else
    /// `$LOGNAME`) as the default user.
    pub fn from_env(
        env: Vec<(OsString, OsString)>,
        rsh: Option<String>,
        remote_path: Option<String>,
        borg_version: &str,
    ) -> SshSettings {
        let var = |name: &str| {
            env.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        let text = |name: &str| var(name).and_then(|v| v.into_string().ok());
        let ssh_dir = var("HOME").map(|home| PathBuf::from(home).join(".ssh"));
        let identity_file = ssh_dir.as_ref().and_then(|dir| {
            ["id_ed25519", "id_ecdsa", "id_rsa"]
                .iter()
                .map(|name| dir.join(name))
                .find(|path| path.is_file())
        });
        SshSettings {
            rsh: rsh.or_else(|| text("BORG_RSH")),
            remote_path: remote_path.or_else(|| text("BORG_REMOTE_PATH")),
            serve: ServeOptions::default(),
            known_hosts: ssh_dir.map(|dir| dir.join("known_hosts")),
            identity_file,
            agent_socket: var("SSH_AUTH_SOCK").map(PathBuf::from),
            default_user: text("USER").or_else(|| text("LOGNAME")),
            connect_timeout: None,
            borg_version: borg_version.to_string(),
            env,
        }
    }

    /// The remote command words: `REMOTE_PATH serve OPTS…`. REMOTE_PATH stays one word, as in
    /// borg; ssh joins all words with spaces, so it may hold options of its own.
    pub fn remote_command(&self) -> Vec<String> {
        let mut words = vec![
            self.remote_path
                .clone()
                .unwrap_or_else(|| "borg".to_string()),
            "serve".to_string(),
        ];
        words.extend(self.serve.args());
        words
    }
}

/// Splits a command line the way Python's `shlex.split` does in POSIX mode (quotes, backslash
/// escapes; `#` is an ordinary character because borg splits with `comments=False`). Returns `None` for an unclosed
/// quote or a trailing backslash.
pub fn shell_split(text: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        other => word.push(other),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => {
                            let next = chars.next()?;
                            // POSIX shlex escapes only the quote and the backslash here.
                            if !matches!(next, '\\' | '"') {
                                word.push('\\');
                            }
                            word.push(next);
                        }
                        other => word.push(other),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.push(chars.next()?);
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            other => {
                in_word = true;
                word.push(other);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

/// The environment of a child that talks to `borg serve`, as borg's
/// `prepare_subprocess_env(system=True)` builds it: `BORG_PASSPHRASE` removed (borg removes no
/// other variable; `BORG_PASSCOMMAND` and `BORG_PASSPHRASE_FD` are not secrets themselves) and
/// `BORG_VERSION` set.
pub fn child_env(base: &[(OsString, OsString)], borg_version: &str) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = base
        .iter()
        .filter(|(k, _)| k != "BORG_PASSPHRASE" && k != "BORG_VERSION")
        .cloned()
        .collect();
    env.push(("BORG_VERSION".into(), borg_version.into()));
    env
}

/// A close-on-exec OS pipe as (read end, write end). (`std::io::pipe` is newer than our MSRV.)
pub(crate) fn os_pipe() -> std::io::Result<(std::fs::File, std::fs::File)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two new descriptors into the array we pass.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_split_like_shlex() {
        // Python: shlex.split('  a \'b c\'  "d \\" e" f\\ g ') == ['a', 'b c', 'd " e', 'f g'];
        // comments are not stripped (`shlex.split` has comments=False).
        assert_eq!(
            shell_split("  a 'b c'  \"d \\\" e\" f\\ g ").unwrap(),
            ["a", "b c", "d \" e", "f g"]
        );
        assert_eq!(shell_split("x '' y").unwrap(), ["x", "", "y"]);
        assert_eq!(shell_split("a # comment").unwrap(), ["a", "#", "comment"]);
        let s = |t: &str| shell_split(t).unwrap();
        assert_eq!(s("ssh"), ["ssh"]);
        assert_eq!(
            s("ssh -i '/a b/key' -o \"X=1 2\""),
            ["ssh", "-i", "/a b/key", "-o", "X=1 2"]
        );
        assert_eq!(s("a\\ b  c"), ["a b", "c"]);
        assert_eq!(s("\"a\\\"b\\n\""), ["a\"b\\n"]);
        assert_eq!(s("''"), [""]);
        assert_eq!(s("  "), Vec::<String>::new());
        assert!(shell_split("'open").is_none());
        assert!(shell_split("x\\").is_none());
    }

    #[test]
    fn serve_options_like_borg_cmd() {
        let o = ServeOptions {
            log_level: ServeLogLevel::Info,
            debug_topics: vec!["repository.compaction".into(), "files_cache".into()],
            storage_quota: Some(1_000_000_000),
        };
        assert_eq!(
            o.args(),
            [
                "--info",
                "--debug-topic=repository.compaction",
                "--storage-quota=1000000000"
            ]
        );
        assert!(ServeOptions::default().args().is_empty());
        let s = SshSettings {
            remote_path: Some("borg --umask 022".into()),
            ..Default::default()
        };
        assert_eq!(s.remote_command(), ["borg --umask 022", "serve"]);
    }

    #[test]
    fn settings_from_env() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".ssh")).unwrap();
        std::fs::write(home.path().join(".ssh/id_ecdsa"), "key").unwrap();
        let env: Vec<(OsString, OsString)> = vec![
            ("HOME".into(), home.path().into()),
            ("BORG_RSH".into(), "ssh -v".into()),
            ("BORG_REMOTE_PATH".into(), "/opt/borg".into()),
            ("SSH_AUTH_SOCK".into(), "/run/agent".into()),
            ("LOGNAME".into(), "alice".into()),
        ];
        let s = SshSettings::from_env(env.clone(), None, None, "1.4.5");
        assert_eq!(s.rsh.as_deref(), Some("ssh -v"));
        assert_eq!(s.remote_path.as_deref(), Some("/opt/borg"));
        assert_eq!(s.identity_file, Some(home.path().join(".ssh/id_ecdsa")));
        assert_eq!(s.known_hosts, Some(home.path().join(".ssh/known_hosts")));
        assert_eq!(s.agent_socket, Some(PathBuf::from("/run/agent")));
        assert_eq!(s.default_user.as_deref(), Some("alice"));
        let s = SshSettings::from_env(env, Some("myssh".into()), Some("b".into()), "1.4.5");
        assert_eq!(
            (s.rsh.as_deref(), s.remote_path.as_deref()),
            (Some("myssh"), Some("b"))
        );
    }

    #[test]
    fn child_env_drops_the_passphrase() {
        let base = vec![
            ("BORG_PASSPHRASE".into(), "secret".into()),
            ("PATH".into(), "/bin".into()),
            ("BORG_VERSION".into(), "old".into()),
        ];
        let env = child_env(&base, "1.4.5");
        assert_eq!(
            env,
            vec![
                (OsString::from("PATH"), OsString::from("/bin")),
                ("BORG_VERSION".into(), "1.4.5".into())
            ]
        );
    }
}
