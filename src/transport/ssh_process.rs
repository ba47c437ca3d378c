//! The default transport: the system `ssh` program, started as borg starts it.

use std::time::Duration;

use super::process::ChildProcess;
use super::{
    child_env, shell_split, ServerExit, ServerStreams, SshSettings, Transport, TransportError,
};
use crate::location::Location;

/// A `borg serve` reached through a child `ssh` process.
pub struct SshProcessTransport {
    child: ChildProcess,
}

/// The argv borg runs for a location (`RemoteRepository.ssh_cmd` + `borg_cmd`):
/// `RSH… [-p PORT] [USER@]HOST REMOTE_PATH serve OPTS…`.
pub fn ssh_argv(
    location: &Location,
    settings: &SshSettings,
) -> Result<Vec<String>, TransportError> {
    let rsh = settings.rsh.as_deref().unwrap_or("ssh");
    let mut argv = shell_split(rsh).ok_or_else(|| TransportError::Spawn {
        program: rsh.to_string(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "unbalanced quotes in the ssh command (--rsh / BORG_RSH)",
        ),
    })?;
    if argv.is_empty() {
        argv.push("ssh".to_string());
    }
    if let Some(port) = location.port {
        argv.push("-p".to_string());
        argv.push(port.to_string());
    }
    let host = location.host().unwrap_or_default();
    argv.push(match &location.user {
        Some(user) => format!("{user}@{host}"),
        None => host.to_string(),
    });
    argv.extend(settings.remote_command());
    Ok(argv)
}

impl SshProcessTransport {
    /// Starts ssh to the location's host running `borg serve`.
    pub fn connect(
        location: &Location,
        settings: &SshSettings,
    ) -> Result<SshProcessTransport, TransportError> {
        let argv = ssh_argv(location, settings)?;
        log::debug!("SSH command line: {argv:?}");
        let child = ChildProcess::spawn(argv, &child_env(&settings.env, &settings.borg_version))?;
        Ok(SshProcessTransport { child })
    }

    /// The process id of the ssh child.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Transport for SshProcessTransport {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_like_borg() {
        let loc = Location::parse("ssh://[::1]:99/p", None).unwrap();
        let settings = SshSettings::default();
        assert_eq!(
            ssh_argv(&loc, &settings).unwrap(),
            ["ssh", "-p", "99", "::1", "borg", "serve"]
        );
        let loc = Location::parse("me@h:repo", None).unwrap();
        let settings = SshSettings {
            rsh: Some("ssh -i '/k y' -o BatchMode=yes".into()),
            remote_path: Some("borg --umask 022".into()),
            serve: crate::transport::ServeOptions {
                log_level: crate::transport::ServeLogLevel::Critical,
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            ssh_argv(&loc, &settings).unwrap(),
            [
                "ssh",
                "-i",
                "/k y",
                "-o",
                "BatchMode=yes",
                "me@h",
                "borg --umask 022",
                "serve",
                "--critical"
            ]
        );
    }
}
