//! A local `borg serve` child, started from a command line the caller gives (no ssh).

use std::ffi::OsString;
use std::time::Duration;

use super::process::ChildProcess;
use super::{child_env, ServerExit, ServerStreams, Transport, TransportError};

/// Talks to a `borg serve` started directly as a child process, e.g.
/// `["/usr/bin/borg", "serve", "--restrict-to-path", "/srv"]`.
pub struct PipeTransport {
    child: ChildProcess,
}

impl PipeTransport {
    /// Starts `argv` (the full server command line) with `env` as its environment, minus
    /// `BORG_PASSPHRASE` and plus `BORG_VERSION`, as for ssh.
    pub fn spawn(
        argv: Vec<String>,
        env: &[(OsString, OsString)],
        borg_version: &str,
    ) -> Result<PipeTransport, TransportError> {
        if argv.is_empty() {
            return Err(TransportError::Spawn {
                program: String::new(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command"),
            });
        }
        let child = ChildProcess::spawn(argv, &child_env(env, borg_version))?;
        Ok(PipeTransport { child })
    }

    /// The process id of the server child.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Transport for PipeTransport {
    fn take_streams(&mut self) -> Result<ServerStreams, TransportError> {
        self.child.take_streams()
    }

    fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ServerExit>, TransportError> {
        self.child.wait_timeout(timeout)
    }

    fn kill(&mut self) {
        self.child.kill()
    }

    fn describe(&self) -> String {
        self.child.describe()
    }
}
