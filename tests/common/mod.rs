//! The shared interop test rig: real borg peers, a throwaway `sshd` on loopback, and helpers
//! to create and check repositories with real borg.
//!
//! Everything lives in temporary directories owned by the value that made it; `Sshd` and
//! `BorgProcess` kill their processes on drop, so a failing test leaves nothing running.
//! Peers are found through `RBORG_BORG12` / `RBORG_BORG14`; a missing peer fails the test.
#![allow(dead_code)]

pub mod pushgateway;

use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rborg::repository::remote::RemoteRepository;
use rborg::repository::{OpenOptions, RepositoryError};
use rborg::rpc::ClientOptions;
use rborg::transport::{PipeTransport, SshSettings};
use tempfile::TempDir;

/// `n` incompressible, reproducible bytes (xorshift64 from `seed`).
pub fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    rborg::pipeline::bench_data::xorshift_stream(n, seed | 1)
}

/// A real borg to test against.
#[derive(Debug, Clone)]
pub struct Peer {
    /// "1.2" or "1.4".
    pub name: &'static str,
    /// The `borg` executable.
    pub borg: PathBuf,
}

fn find_peer(var: &str, default: &str, name: &'static str) -> Peer {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    assert!(
        path.is_file(),
        "borg {name} peer not found at {} (set {var} to a borg {name} executable)",
        path.display()
    );
    Peer { name, borg: path }
}

/// borg 1.2.4 (`RBORG_BORG12`, default `/usr/bin/borg`).
pub fn borg12() -> Peer {
    find_peer("RBORG_BORG12", "/usr/bin/borg", "1.2")
}

/// borg 1.4.5 (`RBORG_BORG14`, default the peer `scripts/install-peers.sh` builds under
/// `target/peers`).
pub fn borg14() -> Peer {
    find_peer(
        "RBORG_BORG14",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/target/peers/borg-1.4.5/bin/borg"
        ),
        "1.4",
    )
}

/// A scratch area for one test: a temp dir with a borg base dir and a repository path.
pub struct Scratch {
    /// The temporary directory (removed on drop).
    pub dir: TempDir,
}

impl Scratch {
    /// A fresh scratch directory.
    pub fn new() -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix("rborg-test-")
            .tempdir()
            .expect("temp dir");
        fs::create_dir_all(dir.path().join("base")).expect("base dir");
        Scratch { dir }
    }

    /// A path inside the scratch directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `BORG_BASE_DIR` for every borg this test runs, so nothing touches the real home.
    pub fn base_dir(&self) -> PathBuf {
        self.path("base")
    }

    /// The environment for local borg commands of this test.
    pub fn borg_env(&self) -> Vec<(OsString, OsString)> {
        vec![
            ("BORG_BASE_DIR".into(), self.base_dir().into()),
            ("BORG_PASSPHRASE".into(), "rborg-test-passphrase".into()),
            (
                "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK".into(),
                "yes".into(),
            ),
            ("BORG_RELOCATED_REPO_ACCESS_IS_OK".into(), "yes".into()),
            ("BORG_CHECK_I_KNOW_WHAT_I_AM_DOING".into(), "YES".into()),
            ("BORG_DELETE_I_KNOW_WHAT_I_AM_DOING".into(), "YES".into()),
        ]
    }

    /// Writes an executable wrapper around `borg` that records the pid of the `borg serve`
    /// it becomes in `<name>.pid` and uses this test's base dir, plus `extra` arguments after
    /// the borg arguments. Use it as `--remote-path` (ssh) or as the pipe command.
    pub fn serve_wrapper(&self, peer: &Peer, name: &str, extra: &str) -> PathBuf {
        let script = self.path(&format!("{name}.sh"));
        let pid_file = self.path(&format!("{name}.pid"));
        let text = format!(
            "#!/bin/sh\necho $$ > '{}'\nBORG_BASE_DIR='{}'\nexport BORG_BASE_DIR\nexec '{}' \"$@\" {}\n",
            pid_file.display(),
            self.base_dir().display(),
            peer.borg.display(),
            extra
        );
        fs::write(&script, text).expect("write serve wrapper");
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod wrapper");
        script
    }

    /// The pid recorded by the wrapper `name`, once it is there.
    pub fn serve_pid(&self, name: &str) -> i32 {
        let file = self.path(&format!("{name}.pid"));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(text) = fs::read_to_string(&file) {
                if let Ok(pid) = text.trim().parse() {
                    return pid;
                }
            }
            assert!(Instant::now() < deadline, "no pid in {}", file.display());
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Opens `repo` through rborg's `RemoteRepository` over a pipe to `peer`'s `borg serve` (run
/// by the scratch's serve wrapper `serve`), the quickest way to talk RPC to a real borg.
pub fn open_pipe(
    peer: &Peer,
    scratch: &Scratch,
    repo: &Path,
    options: &OpenOptions,
) -> Result<RemoteRepository, RepositoryError> {
    let wrapper = scratch.serve_wrapper(peer, "serve", "");
    let argv = vec![wrapper.to_string_lossy().into_owned(), "serve".to_string()];
    let env: Vec<_> = std::env::vars_os().collect();
    let transport = PipeTransport::spawn(argv, &env, "1.4.5")
        .map_err(|e| RepositoryError::Transport(e.to_string()))?;
    let client = ClientOptions {
        location: repo.display().to_string(),
        ..Default::default()
    };
    RemoteRepository::open(
        Box::new(transport),
        &repo.to_string_lossy(),
        options,
        client,
    )
}

/// Runs `peer`'s borg with `args` in the scratch environment and returns its output.
pub fn borg(peer: &Peer, scratch: &Scratch, args: &[&str]) -> Output {
    Command::new(&peer.borg)
        .args(args)
        .envs(scratch.borg_env())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", peer.borg.display()))
}

/// Runs borg and panics with its output unless it succeeds.
pub fn borg_ok(peer: &Peer, scratch: &Scratch, args: &[&str]) -> Output {
    let out = borg(peer, scratch, args);
    assert!(
        out.status.success(),
        "borg {} {:?} failed ({}):\n{}{}",
        peer.name,
        args,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `borg init -e ENCRYPTION REPO` with the peer.
pub fn borg_init(peer: &Peer, scratch: &Scratch, repo: &Path, encryption: &str) {
    borg_ok(
        peer,
        scratch,
        &["init", "-e", encryption, repo.to_str().expect("utf-8 path")],
    );
}

/// `borg check --repository-only REPO` with the peer; panics unless it passes. (A full check
/// would also judge archives, which repository-level tests do not write.)
pub fn borg_check_repository(peer: &Peer, scratch: &Scratch, repo: &Path) {
    borg_ok(
        peer,
        scratch,
        &[
            "check",
            "--repository-only",
            repo.to_str().expect("utf-8 path"),
        ],
    );
}

/// A borg process running in the background (e.g. `borg with-lock REPO sleep 30`), killed on
/// drop.
pub struct BorgProcess {
    child: Child,
}

impl BorgProcess {
    /// Starts `peer`'s borg with `args`.
    pub fn spawn(peer: &Peer, scratch: &Scratch, args: &[&str]) -> BorgProcess {
        let child = Command::new(&peer.borg)
            .args(args)
            .envs(scratch.borg_env())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", peer.borg.display()));
        BorgProcess { child }
    }

    /// Asks it to stop (SIGTERM, which borg handles by releasing its locks) and waits.
    pub fn terminate(mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for BorgProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits until `path` exists.
pub fn wait_for_path(path: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} did not appear within {timeout:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A throwaway OpenSSH server on a free loopback port (127.0.0.1 and ::1), for root, with its own host key,
/// an authorised client key and a second, unauthorised client key. It offers an ed25519
/// and an ECDSA host key; its known_hosts file lists only the ECDSA one. Killed on drop.
pub struct Sshd {
    child: Child,
    /// The port it listens on (127.0.0.1 only).
    pub port: u16,
    /// Holds the keys, config and known_hosts.
    pub dir: TempDir,
    /// The authorised client private key.
    pub client_key: PathBuf,
    /// A client private key that is not in authorized_keys.
    pub stranger_key: PathBuf,
    /// A known_hosts file with this server's host key.
    pub known_hosts: PathBuf,
    /// A known_hosts file that is empty.
    pub empty_known_hosts: PathBuf,
    /// A known_hosts file listing a different key for this server.
    pub wrong_known_hosts: PathBuf,
}

fn keygen(path: &Path, key_type: &str) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", key_type, "-N", "", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen");
    assert!(status.success(), "ssh-keygen failed for {}", path.display());
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("local addr")
        .port()
}

fn public_key(private: &Path) -> String {
    let text = fs::read_to_string(private.with_extension("pub")).expect("public key");
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

impl Sshd {
    /// Generates keys and a config, starts `/usr/sbin/sshd -D -e -f CONFIG`, and waits until
    /// it answers.
    pub fn start() -> Sshd {
        let dir = tempfile::Builder::new()
            .prefix("rborg-sshd-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        // sshd's privilege separation directory.
        fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        let host_key = d.join("host_ed25519");
        let client_key = d.join("client_ed25519");
        let stranger_key = d.join("stranger_ed25519");
        // Two host key types, of which known_hosts lists only the ECDSA one: a client must ask
        // for the type it knows (OpenSSH does; rborg's libssh2 transport must too, as libssh2
        // would otherwise take the ed25519 key and call it a mismatch).
        let ecdsa_host_key = d.join("host_ecdsa");
        keygen(&host_key, "ed25519");
        keygen(&ecdsa_host_key, "ecdsa");
        keygen(&client_key, "ed25519");
        keygen(&stranger_key, "ed25519");
        fs::write(d.join("authorized_keys"), public_key(&client_key) + "\n").expect("keys");

        for attempt in 0..5 {
            let port = free_port();
            let config = d.join("sshd_config");
            fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nListenAddress [::1]\nHostKey {ek}\nHostKey {hk}\n\
                     PidFile {d}/sshd.pid\n\
                     AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin yes\nStrictModes no\n\
                     PubkeyAuthentication yes\nPasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\nUsePAM no\nLogLevel ERROR\n\
                     MaxStartups 100\nMaxSessions 100\n",
                    hk = host_key.display(),
                    ek = ecdsa_host_key.display(),
                    d = d.display()
                ),
            )
            .expect("sshd config");
            let log = fs::File::create(d.join(format!("sshd-{attempt}.log"))).expect("log");
            let mut child = Command::new("/usr/sbin/sshd")
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start /usr/sbin/sshd");
            if wait_for_banner(port, &mut child) {
                let known_hosts = d.join("known_hosts");
                fs::write(
                    &known_hosts,
                    format!(
                        "[127.0.0.1]:{port} {key}\n[::1]:{port} {key}\n",
                        key = public_key(&ecdsa_host_key)
                    ),
                )
                .expect("known_hosts");
                let wrong_known_hosts = d.join("wrong_known_hosts");
                fs::write(
                    &wrong_known_hosts,
                    format!("[127.0.0.1]:{port} {}\n", public_key(&stranger_key)),
                )
                .expect("known_hosts");
                let empty_known_hosts = d.join("empty_known_hosts");
                fs::write(&empty_known_hosts, "").expect("known_hosts");
                return Sshd {
                    child,
                    port,
                    dir,
                    client_key,
                    stranger_key,
                    known_hosts,
                    empty_known_hosts,
                    wrong_known_hosts,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let logs: Vec<String> = (0..5)
            .filter_map(|a| fs::read_to_string(d.join(format!("sshd-{a}.log"))).ok())
            .collect();
        panic!("sshd did not start:\n{}", logs.join("\n"));
    }

    /// The ssh command for `--rsh`/`BORG_RSH`: this server's port, the given key, only this
    /// known_hosts file, never a prompt.
    pub fn rsh_with_key(&self, key: &Path) -> String {
        format!(
            "ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o IdentityAgent=none \
             -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes \
             -o LogLevel=ERROR -p {}",
            key.display(),
            self.known_hosts.display(),
            self.port
        )
    }

    /// The ssh command with the authorised client key.
    pub fn rsh(&self) -> String {
        self.rsh_with_key(&self.client_key)
    }

    /// Settings for rborg's ssh transports to this server: the `rsh()` command for the system
    /// ssh; known_hosts, the client key and user root for libssh2; `remote_path` as
    /// `--remote-path` (e.g. a `Scratch::serve_wrapper`).
    pub fn settings(&self, remote_path: &str) -> SshSettings {
        SshSettings {
            rsh: Some(self.rsh()),
            remote_path: Some(remote_path.to_string()),
            env: std::env::vars_os().collect(),
            borg_version: "1.4.5".into(),
            known_hosts: Some(self.known_hosts.clone()),
            identity_file: Some(self.client_key.clone()),
            agent_socket: None,
            default_user: Some("root".into()),
            connect_timeout: Some(Duration::from_secs(10)),
            ..Default::default()
        }
    }

    /// An `ssh://` location of `path` on this server.
    pub fn url(&self, path: &Path) -> String {
        format!("ssh://root@127.0.0.1:{}{}", self.port, path.display())
    }

    /// The same location through the IPv6 loopback, `ssh://root@[::1]:PORT/path` (sshd also
    /// listens there; known_hosts lists `[::1]:PORT` too).
    pub fn url_ipv6(&self, path: &Path) -> String {
        format!("ssh://root@[::1]:{}{}", self.port, path.display())
    }
}

fn wait_for_banner(port: u16, child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 8];
            if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"SSH-") {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throwaway `ssh-agent` holding one key, on a socket in its own temp dir. Killed on drop.
pub struct SshAgent {
    child: Child,
    /// The agent's socket (what `SSH_AUTH_SOCK` would be).
    pub socket: PathBuf,
    _dir: TempDir,
}

impl SshAgent {
    /// Starts an agent in the foreground (`ssh-agent -D -a SOCKET`) and adds `key` to it.
    pub fn start_with_key(key: &Path) -> SshAgent {
        let dir = tempfile::Builder::new()
            .prefix("rborg-agent-")
            .tempdir()
            .expect("temp dir");
        let socket = dir.path().join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ssh-agent");
        let agent = SshAgent {
            child,
            socket,
            _dir: dir,
        };
        wait_for_path(&agent.socket, Duration::from_secs(10));
        let status = Command::new("ssh-add")
            .arg("-q")
            .arg(key)
            .env("SSH_AUTH_SOCK", &agent.socket)
            .stdin(Stdio::null())
            .status()
            .expect("ssh-add");
        assert!(status.success(), "ssh-add {} failed", key.display());
        agent
    }
}

impl Drop for SshAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
