//! An in-process ssh transport through libssh2 (the `ssh2` crate).
//!
//! libssh2 serialises every call on one session lock, so a thread blocked reading the channel
//! would stop another thread from writing to it, and client and server could wait on each other
//! for ever. Instead one pump thread owns the non-blocking session: it moves bytes between the
//! channel and three OS pipes, and sleeps in `poll(2)` on the socket and the request pipe when
//! nothing moves. The RPC client sees ordinary blocking pipes, as with a child process.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ssh2::{Channel, CheckResult, KnownHostFileKind, Session};

use super::{os_pipe, ServerExit, ServerStreams, SshSettings, Transport, TransportError};
use crate::location::Location;

/// A `borg serve` reached through an in-process libssh2 session.
pub struct Ssh2Transport {
    streams: Option<ServerStreams>,
    shared: Arc<PumpShared>,
    pump: Option<JoinHandle<()>>,
    socket: TcpStream,
    description: String,
}

/// What the pump thread and the transport share.
struct PumpShared {
    stop: AtomicBool,
    exit: Mutex<Option<ServerExit>>,
    done: AtomicBool,
}

impl Ssh2Transport {
    /// Connects to the location's host and port (default 22), checks the host key against
    /// `settings.known_hosts`, authenticates (the agent at `settings.agent_socket`, then
    /// `settings.identity_file`), and runs
    /// `REMOTE_PATH serve OPTS…` there.
    pub fn connect(
        location: &Location,
        settings: &SshSettings,
    ) -> Result<Ssh2Transport, TransportError> {
        let host = location.host().unwrap_or_default().to_string();
        let port = location.port.unwrap_or(22);
        let display_host = if port == 22 {
            host.clone()
        } else {
            format!("[{host}]:{port}")
        };
        let ssh_err = |message: String| TransportError::Ssh {
            host: display_host.clone(),
            message,
        };
        let user = location
            .user
            .clone()
            .or_else(|| settings.default_user.clone())
            .ok_or_else(|| ssh_err("no user name given and no default user known".into()))?;
        let timeout = settings.connect_timeout.unwrap_or(Duration::from_secs(30));

        let socket = connect_tcp(&host, port, timeout)?;
        let mut session = Session::new().map_err(|e| ssh_err(e.to_string()))?;
        session.set_timeout(u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX));
        let session_socket = socket.try_clone().map_err(|source| TransportError::Io {
            context: "duplicating the ssh socket".into(),
            source,
        })?;
        session.set_tcp_stream(session_socket);
        prefer_known_key_types(&session, &host, port, settings);
        session
            .handshake()
            .map_err(|e| ssh_err(format!("handshake failed: {}", e.message())))?;

        check_host_key(&session, &host, port, &display_host, settings)?;
        authenticate(&session, &user, &display_host, settings)?;

        let mut channel = session
            .channel_session()
            .map_err(|e| ssh_err(format!("cannot open a channel: {}", e.message())))?;
        // ssh joins its command words with spaces; the remote shell splits them again.
        let command = settings.remote_command().join(" ");
        log::debug!("libssh2 exec on {display_host}: {command}");
        channel
            .exec(&command)
            .map_err(|e| ssh_err(format!("cannot run {command}: {}", e.message())))?;
        session.set_blocking(false);

        let pipe = |what: &str| {
            os_pipe().map_err(|source| TransportError::Io {
                context: format!("creating the {what} pipe"),
                source,
            })
        };
        let (stdin_reader, stdin_writer) = pipe("stdin")?;
        let (stdout_reader, stdout_writer) = pipe("stdout")?;
        let (stderr_reader, stderr_writer) = pipe("stderr")?;
        set_nonblocking(stdin_reader.as_raw_fd()).map_err(|source| TransportError::Io {
            context: "making the request pipe non-blocking".into(),
            source,
        })?;

        let shared = Arc::new(PumpShared {
            stop: AtomicBool::new(false),
            exit: Mutex::new(None),
            done: AtomicBool::new(false),
        });
        let pump = Pump {
            session,
            channel,
            socket_fd: socket.as_raw_fd(),
            requests: stdin_reader,
            stdout: Some(stdout_writer),
            stderr: Some(stderr_writer),
            shared: Arc::clone(&shared),
        };
        let handle = std::thread::Builder::new()
            .name("rborg-ssh2-pump".into())
            .spawn(move || pump.run())
            .map_err(|source| TransportError::Io {
                context: "starting the ssh pump thread".into(),
                source,
            })?;
        Ok(Ssh2Transport {
            streams: Some(ServerStreams {
                stdin: Box::new(stdin_writer),
                stdout: Box::new(stdout_reader),
                stderr: Box::new(stderr_reader),
            }),
            shared,
            pump: Some(handle),
            socket,
            description: format!("libssh2 {user}@{display_host}: {command}"),
        })
    }
}

impl Transport for Ssh2Transport {
    fn take_streams(&mut self) -> Result<ServerStreams, TransportError> {
        self.streams.take().ok_or(TransportError::StreamsTaken)
    }

    fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ServerExit>, TransportError> {
        let deadline = Instant::now() + timeout;
        while !self.shared.done.load(Ordering::Acquire) {
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(handle) = self.pump.take() {
            let _ = handle.join();
        }
        let exit = *self.shared.exit.lock().unwrap_or_else(|e| e.into_inner());
        Ok(Some(exit.unwrap_or(ServerExit::Other)))
    }

    fn kill(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        // Wakes a pump blocked in poll(2) or in libssh2.
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
        if let Some(handle) = self.pump.take() {
            let _ = handle.join();
        }
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

impl Drop for Ssh2Transport {
    fn drop(&mut self) {
        if self.pump.is_some() {
            self.kill();
        }
    }
}

fn connect_tcp(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, TransportError> {
    let connect_err = |source| TransportError::Connect {
        host: host.to_string(),
        port,
        source,
    };
    let addrs = (host, port).to_socket_addrs().map_err(connect_err)?;
    let mut last = std::io::Error::new(ErrorKind::NotFound, "no address found");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(connect_err(last))
}

/// Key types listed for the host in an OpenSSH known_hosts text: plain `host` on port 22,
/// `[host]:port` otherwise. Hashed names and wildcard patterns are not matched here (the check
/// itself, by libssh2, still sees them).
fn known_key_types(text: &str, host: &str, port: u16) -> Vec<String> {
    let name = if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    };
    let mut types = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(hosts) = fields.next() else { continue };
        if hosts.starts_with('#') || hosts.starts_with('@') {
            continue;
        }
        let Some(key_type) = fields.next() else {
            continue;
        };
        if hosts.split(',').any(|h| h == name) && !types.iter().any(|t| t == key_type) {
            types.push(key_type.to_string());
        }
    }
    types
}

/// Asks the server for a host key of a type the known_hosts file has for it. libssh2 otherwise
/// picks its own favourite type and then finds "a different key" where the file simply lists
/// another type, which would refuse a perfectly known host.
fn prefer_known_key_types(session: &Session, host: &str, port: u16, settings: &SshSettings) {
    let Some(text) = settings
        .known_hosts
        .as_deref()
        .and_then(|f| std::fs::read_to_string(f).ok())
    else {
        return;
    };
    let supported = session
        .supported_algs(ssh2::MethodType::HostKey)
        .unwrap_or_default();
    let mut methods: Vec<&str> = Vec::new();
    for key_type in known_key_types(&text, host, port) {
        // An RSA key can be used with the SHA-2 signature methods too.
        let candidates: Vec<&str> = if key_type == "ssh-rsa" {
            vec!["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]
        } else {
            vec![key_type.as_str()]
        };
        for method in candidates {
            if let Some(m) = supported.iter().find(|s| **s == method) {
                if !methods.contains(m) {
                    methods.push(m);
                }
            }
        }
    }
    if !methods.is_empty() {
        if let Err(e) = session.method_pref(ssh2::MethodType::HostKey, &methods.join(",")) {
            log::debug!("cannot set host key preference {methods:?}: {e}");
        }
    }
}

fn check_host_key(
    session: &Session,
    host: &str,
    port: u16,
    display_host: &str,
    settings: &SshSettings,
) -> Result<(), TransportError> {
    let ssh_err = |message: String| TransportError::Ssh {
        host: display_host.to_string(),
        message,
    };
    let Some(file) = settings.known_hosts.as_deref() else {
        return Err(ssh_err(
            "no known_hosts file given; the libssh2 transport never trusts an unchecked host key"
                .into(),
        ));
    };
    let known_hosts_name = file.display().to_string();
    let mut known = session.known_hosts().map_err(|e| ssh_err(e.to_string()))?;
    if Path::new(file).exists() {
        known
            .read_file(file, KnownHostFileKind::OpenSSH)
            .map_err(|e| ssh_err(format!("cannot read {known_hosts_name}: {}", e.message())))?;
    }
    let (key, _) = session
        .host_key()
        .ok_or_else(|| ssh_err("the server sent no host key".into()))?;
    match known.check_port(host, port, key) {
        CheckResult::Match => Ok(()),
        CheckResult::NotFound => Err(TransportError::UnknownHostKey {
            host: display_host.to_string(),
            known_hosts: known_hosts_name,
        }),
        CheckResult::Mismatch => Err(TransportError::HostKeyMismatch {
            host: display_host.to_string(),
            known_hosts: known_hosts_name,
        }),
        CheckResult::Failure => Err(ssh_err(format!(
            "checking the host key against {known_hosts_name} failed"
        ))),
    }
}

fn authenticate(
    session: &Session,
    user: &str,
    display_host: &str,
    settings: &SshSettings,
) -> Result<(), TransportError> {
    let mut tried = Vec::new();
    if let Some(socket) = settings.agent_socket.as_deref() {
        tried.push(format!("agent at {}", socket.display()));
        if agent_auth(session, user, socket) {
            return Ok(());
        }
    }
    if let Some(key) = settings.identity_file.as_deref() {
        tried.push(format!("key file {}", key.display()));
        if session.userauth_pubkey_file(user, None, key, None).is_ok() && session.authenticated() {
            return Ok(());
        }
    }
    Err(TransportError::AuthenticationFailed {
        user: user.to_string(),
        host: display_host.to_string(),
        tried: if tried.is_empty() {
            "nothing: neither agent nor key file configured".into()
        } else {
            tried.join(", ")
        },
    })
}

/// Tries every key the agent at `socket` holds. (libssh2's own `userauth_agent` would find the
/// agent through the environment; the socket comes from the settings instead.)
fn agent_auth(session: &Session, user: &str, socket: &Path) -> bool {
    let attempt = || -> Result<bool, ssh2::Error> {
        let mut agent = session.agent()?;
        agent.set_identity_path(socket)?;
        agent.connect()?;
        agent.list_identities()?;
        for identity in agent.identities()? {
            if agent.userauth(user, &identity).is_ok() && session.authenticated() {
                let _ = agent.disconnect();
                return Ok(true);
            }
        }
        let _ = agent.disconnect();
        Ok(false)
    };
    match attempt() {
        Ok(done) => done,
        Err(e) => {
            log::debug!("ssh agent at {}: {e}", socket.display());
            false
        }
    }
}

fn set_nonblocking(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl on a file descriptor we own; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The thread that owns the libssh2 session.
struct Pump {
    session: Session,
    channel: Channel,
    socket_fd: RawFd,
    requests: File,
    stdout: Option<File>,
    stderr: Option<File>,
    shared: Arc<PumpShared>,
}

impl Pump {
    fn run(mut self) {
        if let Err(e) = self.pump() {
            log::debug!("libssh2 transport ended: {e}");
        }
        // Closing our pipe ends tells the RPC client the connection is gone.
        self.stdout = None;
        self.stderr = None;
        let exit = if self.shared.stop.load(Ordering::Acquire) {
            None
        } else {
            self.session.set_blocking(true);
            self.session.set_timeout(5_000);
            let _ = self.channel.close();
            let _ = self.channel.wait_close();
            self.channel.exit_status().ok().map(ServerExit::Code)
        };
        *self.shared.exit.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(exit.unwrap_or(ServerExit::Other));
        self.shared.done.store(true, Ordering::Release);
    }

    fn pump(&mut self) -> std::io::Result<()> {
        let mut pending: Vec<u8> = Vec::new();
        let mut offset = 0;
        let mut requests_done = false;
        let mut eof_sent = false;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            if self.shared.stop.load(Ordering::Acquire) {
                return Ok(());
            }
            let mut progressed = false;
            // Requests: client pipe -> channel.
            if offset == pending.len() && !requests_done {
                pending.clear();
                offset = 0;
                match self.requests.read(&mut buf) {
                    Ok(0) => requests_done = true,
                    Ok(n) => {
                        pending.extend_from_slice(&buf[..n]);
                        progressed = true;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if offset < pending.len() {
                match self.channel.write(&pending[offset..]) {
                    Ok(n) => {
                        offset += n;
                        progressed |= n > 0;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            if requests_done && offset == pending.len() && !eof_sent {
                match self.channel.send_eof() {
                    Ok(()) => {
                        eof_sent = true;
                        progressed = true;
                    }
                    Err(e) if e.code() == ssh2::ErrorCode::Session(-37) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            // Responses and log lines: channel -> client pipes. Reading one stream may pull
            // the other's packets into libssh2's buffer, so repeat until neither moves.
            loop {
                let mut moved = false;
                for stream_id in [0, 1] {
                    let mut stream = self.channel.stream(stream_id);
                    match stream.read(&mut buf) {
                        Ok(0) => {}
                        Ok(n) => {
                            moved = true;
                            let out = if stream_id == 0 {
                                self.stdout.as_mut()
                            } else {
                                self.stderr.as_mut()
                            };
                            if let Some(out) = out {
                                // The client's reader threads always drain these pipes; if the
                                // client is gone, keep draining the channel regardless.
                                let _ = out.write_all(&buf[..n]);
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
                if !moved {
                    break;
                }
                progressed = true;
            }
            if self.channel.eof() {
                return Ok(());
            }
            if !progressed {
                self.wait_for_io(offset == pending.len() && !requests_done);
            }
        }
    }

    /// Sleeps until the socket (in the direction libssh2 is blocked on) or the request pipe is
    /// ready, or 100 ms pass (so a stop request is noticed).
    fn wait_for_io(&self, want_requests: bool) {
        let mut socket_events = libc::POLLIN;
        if matches!(
            self.session.block_directions(),
            ssh2::BlockDirections::Outbound | ssh2::BlockDirections::Both
        ) {
            socket_events |= libc::POLLOUT;
        }
        let mut fds = [
            libc::pollfd {
                fd: self.socket_fd,
                events: socket_events,
                revents: 0,
            },
            libc::pollfd {
                fd: if want_requests {
                    self.requests.as_raw_fd()
                } else {
                    -1
                },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two pollfd structs for the duration of the call.
        unsafe {
            libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 100);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_types_for_the_host_and_port() {
        let text = "\
# comment
[127.0.0.1]:2222 ssh-ed25519 AAAA
127.0.0.1 ssh-rsa BBBB
other,[127.0.0.1]:2222 ecdsa-sha2-nistp256 CCCC
@revoked [127.0.0.1]:2222 ssh-rsa DDDD
|1|hashed= ssh-rsa EEEE
[127.0.0.1]:2222 ssh-ed25519 FFFF
";
        assert_eq!(
            known_key_types(text, "127.0.0.1", 2222),
            ["ssh-ed25519", "ecdsa-sha2-nistp256"]
        );
        assert_eq!(known_key_types(text, "127.0.0.1", 22), ["ssh-rsa"]);
        assert!(known_key_types(text, "elsewhere", 22).is_empty());
    }
}
