//! RPC interop with real `borg serve` 1.2.4 and 1.4.5, over the three transports: the system
//! `ssh` and libssh2 (both through the rig's throwaway sshd on loopback) and a local pipe.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    borg12, borg14, borg_check_repository, borg_init, wait_for_path, BorgProcess, Peer, Scratch,
    SshAgent, Sshd,
};
use rborg::location::Location;
use rborg::msgpack::{self, Value};
use rborg::repository::remote::RemoteRepository;
use rborg::repository::{
    CommitOptions, ObjectId, OpenOptions, Repository, RepositoryError, MANIFEST_ID,
};
use rborg::rpc::{ClientOptions, ProgressCallback, RemoteProgress};
use rborg::transport::{PipeTransport, ServeLogLevel, SshKind, SshSettings};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Via {
    Ssh,
    Ssh2,
    Pipe,
}

/// One test's world: its scratch dir, its sshd (for the ssh transports) and its peer.
struct World {
    peer: Peer,
    scratch: Scratch,
    sshd: Option<Sshd>,
    /// Progress records from every server this test talked to.
    progress: Arc<Mutex<Vec<RemoteProgress>>>,
    /// The client's window of requests in flight.
    window: std::cell::Cell<usize>,
    /// Run `borg serve --debug`, so stderr carries a stream of log records.
    debug_serve: std::cell::Cell<bool>,
}

impl World {
    fn new(peer: Peer, with_sshd: bool) -> World {
        World {
            peer,
            scratch: Scratch::new(),
            sshd: with_sshd.then(Sshd::start),
            progress: Arc::default(),
            window: std::cell::Cell::new(rborg::rpc::client::DEFAULT_WINDOW),
            debug_serve: std::cell::Cell::new(false),
        }
    }

    fn sshd(&self) -> &Sshd {
        self.sshd.as_ref().expect("this test started no sshd")
    }

    /// Settings for the ssh transports, with `remote_path` as `--remote-path`.
    fn ssh_settings(&self, remote_path: &str) -> SshSettings {
        self.sshd().settings(remote_path)
    }

    /// Opens `repo` through `via`, with `borg serve` run by a wrapper named `name` (extra
    /// serve arguments in `serve_extra`) so the test can find and kill it.
    fn open_with(
        &self,
        via: Via,
        repo: &Path,
        name: &str,
        serve_extra: &str,
        settings_hook: impl FnOnce(&mut SshSettings),
        options: &OpenOptions,
    ) -> Result<RemoteRepository, RepositoryError> {
        let seen = Arc::clone(&self.progress);
        let progress: ProgressCallback =
            Box::new(move |p: &RemoteProgress| seen.lock().expect("lock").push(p.clone()));
        let wrapper = self.scratch.serve_wrapper(&self.peer, name, serve_extra);
        let wrapper = wrapper.to_str().expect("utf-8").to_string();
        match via {
            Via::Pipe => {
                let env: Vec<_> = std::env::vars_os().collect();
                let mut argv = vec![wrapper, "serve".to_string()];
                if self.debug_serve.get() {
                    argv.push("--debug".into());
                }
                let transport = PipeTransport::spawn(argv, &env, "1.4.5")
                    .map_err(|e| RepositoryError::Transport(e.to_string()))?;
                let client = ClientOptions {
                    location: repo.display().to_string(),
                    progress: Some(progress),
                    window: self.window.get(),
                    ..Default::default()
                };
                RemoteRepository::open(
                    Box::new(transport),
                    repo.to_str().expect("utf-8"),
                    options,
                    client,
                )
            }
            Via::Ssh | Via::Ssh2 => {
                let location = Location::parse(&self.sshd().url(repo), None).expect("location");
                let mut settings = self.ssh_settings(&wrapper);
                if self.debug_serve.get() {
                    settings.serve.log_level = ServeLogLevel::Debug;
                }
                settings_hook(&mut settings);
                let kind = if via == Via::Ssh {
                    SshKind::Process
                } else {
                    SshKind::Libssh2
                };
                RemoteRepository::connect(
                    &location,
                    &settings,
                    kind,
                    options,
                    ClientOptions {
                        progress: Some(progress),
                        window: self.window.get(),
                        ..Default::default()
                    },
                )
            }
        }
    }

    fn open(&self, via: Via, repo: &Path, options: &OpenOptions) -> RemoteRepository {
        self.open_with(via, repo, "serve", "", |_| {}, options)
            .unwrap_or_else(|e| {
                panic!(
                    "open {} via {via:?} with borg {}: {e}",
                    repo.display(),
                    self.peer.name
                )
            })
    }

    fn init(&self, name: &str) -> std::path::PathBuf {
        let repo = self.scratch.path(name);
        borg_init(&self.peer, &self.scratch, &repo, "none");
        repo
    }
}

fn exclusive() -> OpenOptions {
    OpenOptions {
        exclusive: true,
        lock_wait: Some(10.0),
        ..Default::default()
    }
}

/// A small deterministic generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }

    fn id(&mut self) -> ObjectId {
        self.bytes(32).try_into().expect("32 bytes")
    }
}

/// Objects for a test: mostly small, every 25th about 1 MiB.
fn objects(seed: u64, count: usize) -> Vec<(ObjectId, Vec<u8>)> {
    let mut rng = Rng(seed);
    (0..count)
        .map(|i| {
            let size = if i % 25 == 0 {
                1024 * 1024 - (i % 7)
            } else {
                (rng.next() % 8192) as usize
            };
            (rng.id(), rng.bytes(size))
        })
        .collect()
}

fn all_ids(repo: &mut RemoteRepository, scan: bool) -> std::collections::BTreeSet<ObjectId> {
    let mut out = std::collections::BTreeSet::new();
    let mut marker: Option<ObjectId> = None;
    loop {
        let page = if scan {
            repo.scan(Some(100), marker.as_ref())
        } else {
            repo.list(Some(100), marker.as_ref())
        }
        .expect("list/scan");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 100);
        marker = page.last().copied();
        for id in page {
            assert!(out.insert(id), "id listed twice");
        }
    }
    out
}

fn assert_not_found(result: Result<Vec<u8>, RepositoryError>, id: &ObjectId) {
    match result {
        Err(RepositoryError::ObjectNotFound { id: hex_id, .. }) => {
            assert_eq!(hex_id, hex::encode(id))
        }
        other => panic!("expected ObjectNotFound, got {other:?}"),
    }
}

fn data_roundtrip(peer: Peer, via: Via) {
    let started = Instant::now();
    let world = World::new(peer, via != Via::Pipe);
    // A chatty server: debug records stream on stderr while data streams on stdout.
    world.debug_serve.set(true);
    let path = world.init("repo");
    let objs = objects(0x5eed ^ (via as u64), 300);
    let total_bytes: usize = objs.iter().map(|(_, d)| d.len()).sum();

    // Write and commit.
    let mut repo = world.open(via, &path, &exclusive());
    let t = Instant::now();
    for (id, data) in &objs {
        repo.put(id, data.clone()).expect("put");
    }
    repo.commit(CommitOptions::default()).expect("commit");
    let put_time = t.elapsed();
    assert_eq!(repo.object_count().expect("__len__"), objs.len() as u64 + 1);
    repo.close().expect("close");

    // Reopen with a shared lock and read everything back through get_many.
    let mut repo = world.open(via, &path, &OpenOptions::default());
    let ids: Vec<ObjectId> = objs.iter().map(|(id, _)| *id).collect();
    let t = Instant::now();
    let mut seen = 0;
    repo.get_many(&ids, &mut |index, data| {
        assert_eq!(index, seen, "get_many delivers in order");
        assert!(data == objs[index].1, "object {index} differs");
        seen += 1;
        Ok(())
    })
    .expect("get_many");
    let get_time = t.elapsed();
    assert_eq!(seen, objs.len());
    let stats = repo.client().stats();
    assert!(
        stats.max_gets_in_flight > 8,
        "get_many must pipeline: {stats:?}"
    );
    assert!(stats.bytes_received as usize > total_bytes);
    eprintln!("borg {} via {via:?}: {stats:?}", world.peer.name);
    eprintln!(
        "borg {} via {via:?}: put+commit {} objects / {} MiB in {:?}, get_many in {:?} ({:.1} MiB/s)",
        world.peer.name,
        objs.len(),
        total_bytes >> 20,
        put_time,
        get_time,
        total_bytes as f64 / 1048576.0 / get_time.as_secs_f64()
    );

    // list and scan see exactly the objects plus the manifest.
    let mut want: std::collections::BTreeSet<ObjectId> = ids.iter().copied().collect();
    want.insert(MANIFEST_ID);
    assert_eq!(all_ids(&mut repo, false), want);
    assert_eq!(all_ids(&mut repo, true), want);
    assert_eq!(repo.get(&ids[1]).expect("get"), objs[1].1);
    repo.close().expect("close");

    // Delete and roll back, then delete and commit.
    let mut repo = world.open(via, &path, &exclusive());
    let extra = Rng(99).id();
    for id in &ids[..10] {
        repo.delete(id).expect("delete");
    }
    repo.put(&extra, b"rolled back".to_vec()).expect("put");
    repo.rollback().expect("rollback");
    assert_eq!(repo.object_count().expect("__len__"), objs.len() as u64 + 1);
    assert_eq!(repo.get(&ids[0]).expect("get after rollback"), objs[0].1);
    assert_not_found(repo.get(&extra), &extra);
    for id in &ids[..10] {
        repo.delete(id).expect("delete");
    }
    repo.commit(CommitOptions::default()).expect("commit");
    assert_eq!(repo.object_count().expect("__len__"), objs.len() as u64 - 9);
    assert_not_found(repo.get(&ids[3]), &ids[3]);

    // An async delete of a missing object fails on flush, not before.
    repo.delete(&ids[0]).expect("async delete is only queued");
    match repo.flush() {
        Err(RepositoryError::ObjectNotFound { id, .. }) => assert_eq!(id, hex::encode(ids[0])),
        other => panic!("expected ObjectNotFound from flush, got {other:?}"),
    }
    repo.rollback().expect("rollback");

    // Structure check on a clean repository; the server reports its progress on stderr.
    world.progress.lock().expect("lock").clear();
    assert!(repo.check(false, 0).expect("check"));
    // The stderr thread may still be handing over the last records.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let seen = world.progress.lock().expect("lock").clone();
        let check: Vec<_> = seen
            .iter()
            .filter(|p| p.msgid.as_deref() == Some("repository.check"))
            .collect();
        if check.iter().any(|p| p.finished) || Instant::now() > deadline {
            assert!(
                check
                    .iter()
                    .any(|p| p.message.is_some() && p.total.is_some()),
                "no check progress with a message: {seen:?}"
            );
            assert!(
                check.iter().any(|p| p.finished),
                "no final record: {seen:?}"
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // A time-limited (partial) check is allowed by both servers' versions.
    assert!(repo.check(false, 60).expect("partial check"));

    // Keys and nonces.
    assert_eq!(repo.load_key().expect("load_key"), b"");
    repo.save_key(b"rborg key blob").expect("save_key");
    assert_eq!(repo.load_key().expect("load_key"), b"rborg key blob");
    repo.save_key(b"").expect("save_key");
    assert_eq!(repo.get_free_nonce().expect("get_free_nonce"), None);
    repo.commit_nonce_reservation(0x1000, None)
        .expect("reserve");
    assert_eq!(repo.get_free_nonce().expect("nonce"), Some(0x1000));
    repo.commit_nonce_reservation(0x2000, Some(0x1000))
        .expect("reserve");
    assert_eq!(repo.get_free_nonce().expect("nonce"), Some(0x2000));
    match repo.commit_nonce_reservation(0x3000, Some(0x1000)) {
        Err(RepositoryError::Remote { class, message }) => {
            assert_eq!(class, "Exception");
            assert!(message.contains("mismatched previous state"), "{message}");
        }
        other => panic!("expected a mismatched nonce error, got {other:?}"),
    }
    // Methods outside the allow-list.
    match repo.client().call("get_many", vec![]) {
        Err(RepositoryError::InvalidRpcMethod(m)) => assert_eq!(m, "get_many"),
        other => panic!("expected InvalidRpcMethod, got {other:?}"),
    }
    repo.close().expect("close");

    borg_check_repository(&world.peer, &world.scratch, &path);
    eprintln!(
        "borg {} via {via:?}: data test took {:?}",
        world.peer.name,
        started.elapsed()
    );
}

#[test]
fn borg12_data_over_ssh() {
    data_roundtrip(borg12(), Via::Ssh);
}

#[test]
fn borg14_data_over_ssh() {
    data_roundtrip(borg14(), Via::Ssh);
}

#[test]
fn borg12_data_over_libssh2() {
    data_roundtrip(borg12(), Via::Ssh2);
}

#[test]
fn borg14_data_over_libssh2() {
    data_roundtrip(borg14(), Via::Ssh2);
}

#[test]
fn borg12_data_over_pipe() {
    data_roundtrip(borg12(), Via::Pipe);
}

#[test]
fn borg14_data_over_pipe() {
    data_roundtrip(borg14(), Via::Pipe);
}

fn expect_err<T>(result: Result<T, RepositoryError>, what: &str) -> RepositoryError {
    match result {
        Ok(_) => panic!("{what}: expected an error"),
        Err(e) => e,
    }
}

fn error_cases(peer: Peer) {
    let world = World::new(peer, true);
    let name = world.peer.name;
    let path = world.init("repo");

    // Missing repository, and a directory that is no repository.
    let missing = world.scratch.path("nothing-here");
    let e = expect_err(
        world.open_with(Via::Ssh, &missing, "s1", "", |_| {}, &exclusive()),
        "missing repo",
    );
    assert!(
        matches!(e, RepositoryError::DoesNotExist(_)),
        "{name}: {e:?}"
    );
    let empty = world.scratch.path("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let e = expect_err(
        world.open_with(Via::Pipe, &empty, "s2", "", |_| {}, &exclusive()),
        "not a repo",
    );
    assert!(
        matches!(e, RepositoryError::InvalidRepository(_)),
        "{name}: {e:?}"
    );

    // The largest object borg stores goes through in one message each way; one byte more is
    // an IntegrityError, reported when the asynchronous put is flushed.
    const MAX_DATA_SIZE: usize = 20_971_479;
    let mut repo = world.open(Via::Pipe, &path, &exclusive());
    let big = Rng(3).bytes(MAX_DATA_SIZE);
    let big_id = Rng(4).id();
    repo.put(&big_id, big.clone()).expect("put");
    repo.flush().expect("the largest object is accepted");
    assert!(repo.get(&big_id).expect("get") == big);
    repo.put(&Rng(5).id(), vec![0; MAX_DATA_SIZE + 1])
        .expect("queued");
    match repo.flush() {
        Err(RepositoryError::IntegrityError(m)) => {
            assert!(m.contains("More than allowed put data"), "{m}")
        }
        other => panic!("{name}: expected IntegrityError, got {other:?}"),
    }
    repo.rollback().expect("rollback");
    repo.close().expect("close");

    // --restrict-to-path refuses a repository outside the allowed tree.
    let allowed = world.scratch.path("allowed");
    std::fs::create_dir(&allowed).expect("mkdir");
    let restrict = format!("--restrict-to-path {}", allowed.display());
    for via in [Via::Ssh, Via::Pipe] {
        let e = expect_err(
            world.open_with(via, &path, "s3", &restrict, |_| {}, &exclusive()),
            "restricted",
        );
        match e {
            RepositoryError::PathNotAllowed(p) => assert!(p.contains("repo"), "{p}"),
            other => panic!("{name} via {via:?}: expected PathNotAllowed, got {other:?}"),
        }
    }

    // A lock held by another borg process times out.
    let repo_arg = path.to_str().expect("utf-8");
    let holder = BorgProcess::spawn(
        &world.peer,
        &world.scratch,
        &["with-lock", repo_arg, "sleep", "30"],
    );
    wait_for_path(&path.join("lock.exclusive"), Duration::from_secs(20));
    let t = Instant::now();
    let e = expect_err(
        world.open_with(
            Via::Ssh,
            &path,
            "s4",
            "",
            |_| {},
            &OpenOptions {
                exclusive: true,
                lock_wait: Some(0.5),
                ..Default::default()
            },
        ),
        "locked",
    );
    match e {
        RepositoryError::LockTimeout(p) => assert!(p.ends_with("lock.exclusive"), "{p}"),
        other => panic!("{name}: expected LockTimeout, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(15));
    holder.terminate();

    // --remote-path pointing at nothing: the session ends during negotiate.
    for via in [Via::Ssh, Via::Ssh2] {
        let e = expect_err(
            world.open_with(
                via,
                &path,
                "s5",
                "",
                |s| s.remote_path = Some("/nonexistent/borg".into()),
                &exclusive(),
            ),
            "bad remote path",
        );
        match &e {
            RepositoryError::ConnectionClosed { hint: Some(h) } => {
                assert_eq!(h, "Is borg working on the server?")
            }
            other => panic!("{name} via {via:?}: expected ConnectionClosed, got {other:?}"),
        }
    }

    // A key the server does not accept.
    let sshd = world.sshd();
    let stranger = sshd.stranger_key.clone();
    let rsh = sshd.rsh_with_key(&stranger);
    let e = expect_err(
        world.open_with(
            Via::Ssh,
            &path,
            "s6",
            "",
            |s| s.rsh = Some(rsh),
            &exclusive(),
        ),
        "refused key (ssh)",
    );
    assert!(
        matches!(e, RepositoryError::ConnectionClosed { .. }),
        "{name}: {e:?}"
    );
    let e = expect_err(
        world.open_with(
            Via::Ssh2,
            &path,
            "s6",
            "",
            |s| s.identity_file = Some(stranger),
            &exclusive(),
        ),
        "refused key (libssh2)",
    );
    let text = e.to_string();
    assert!(
        matches!(e, RepositoryError::Transport(_)) && text.contains("authentication"),
        "{name}: {text}"
    );

    // libssh2 refuses unknown and changed host keys, naming the host.
    let host = format!("[127.0.0.1]:{}", sshd.port);
    for (file, words) in [
        (sshd.empty_known_hosts.clone(), "is unknown"),
        (sshd.wrong_known_hosts.clone(), "does not match"),
    ] {
        let e = expect_err(
            world.open_with(
                Via::Ssh2,
                &path,
                "s7",
                "",
                |s| s.known_hosts = Some(file),
                &exclusive(),
            ),
            "host key",
        );
        let text = e.to_string();
        assert!(
            text.contains(&host) && text.contains(words),
            "{name}: {text}"
        );
    }

    // The repository survived all of it.
    borg_check_repository(&world.peer, &world.scratch, &path);
}

/// libssh2 authenticates with a key held by an ssh agent (no key file), and falls back to the
/// key file when the agent's key is refused.
#[test]
fn libssh2_agent_authentication() {
    let world = World::new(borg14(), true);
    let path = world.init("repo");
    let sshd = world.sshd();
    let agent = SshAgent::start_with_key(&sshd.client_key);
    let socket = agent.socket.clone();
    let mut repo = world
        .open_with(
            Via::Ssh2,
            &path,
            "agent",
            "",
            |s| {
                s.identity_file = None;
                s.agent_socket = Some(socket);
            },
            &OpenOptions::default(),
        )
        .expect("open with the agent's key");
    assert_eq!(repo.object_count().expect("__len__"), 1);
    repo.close().expect("close");

    let stranger_agent = SshAgent::start_with_key(&sshd.stranger_key);
    let socket = stranger_agent.socket.clone();
    let mut repo = world
        .open_with(
            Via::Ssh2,
            &path,
            "agent",
            "",
            |s| s.agent_socket = Some(socket),
            &OpenOptions::default(),
        )
        .expect("open with the key file after the agent's key was refused");
    repo.close().expect("close");
}

/// An IPv6 location (`ssh://root@[::1]:PORT/path`) works over both ssh transports: the
/// brackets are stripped for ssh and libssh2, and the host key is found as `[::1]:PORT`.
#[test]
fn ipv6_location_over_ssh_and_libssh2() {
    let world = World::new(borg12(), true);
    let path = world.init("repo");
    let location = Location::parse(&world.sshd().url_ipv6(&path), None).expect("location");
    assert_eq!(location.host(), Some("::1"));
    let wrapper = world.scratch.serve_wrapper(&world.peer, "v6", "");
    let settings = world.ssh_settings(wrapper.to_str().expect("utf-8"));
    for kind in [SshKind::Process, SshKind::Libssh2] {
        let mut repo = RemoteRepository::connect(
            &location,
            &settings,
            kind,
            &OpenOptions::default(),
            ClientOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{kind:?} to [::1]: {e}"));
        assert_eq!(repo.object_count().expect("__len__"), 1);
        repo.close().expect("close");
    }
}

#[test]
fn borg12_errors() {
    error_cases(borg12());
}

#[test]
fn borg14_errors() {
    error_cases(borg14());
}

/// Kills `borg serve` while many `get`s are in flight: the client reports ConnectionClosed
/// promptly and the repository stays consistent.
fn killed_server(peer: Peer) {
    let world = World::new(peer, true);
    let path = world.init("repo");
    let objs: Vec<(ObjectId, Vec<u8>)> = {
        let mut rng = Rng(7);
        (0..40)
            .map(|_| (rng.id(), rng.bytes(1024 * 1024)))
            .collect()
    };
    let mut repo = world.open(Via::Pipe, &path, &exclusive());
    for (id, data) in &objs {
        repo.put(id, data.clone()).expect("put");
    }
    repo.commit(CommitOptions::default()).expect("commit");
    repo.close().expect("close");
    let ids: Vec<ObjectId> = objs.iter().map(|(id, _)| *id).collect();

    // A small window: the server can never be more than 8 objects ahead, so the kill always
    // lands with gets in flight and most objects still to come.
    world.window.set(8);
    for via in [Via::Ssh, Via::Ssh2, Via::Pipe] {
        let name = format!("kill-{via:?}");
        let mut repo = world
            .open_with(via, &path, &name, "", |_| {}, &OpenOptions::default())
            .expect("open");
        let pid = world.scratch.serve_pid(&name);
        let t = Instant::now();
        let mut delivered = 0;
        let result = repo.get_many(&ids, &mut |_, _| {
            if delivered == 0 {
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            delivered += 1;
            Ok(())
        });
        match result {
            Err(RepositoryError::ConnectionClosed { .. }) => {}
            other => panic!(
                "borg {} via {via:?}: expected ConnectionClosed, got {other:?}",
                world.peer.name
            ),
        }
        assert!(
            delivered < ids.len(),
            "the kill came too late to test anything"
        );
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "took {:?}",
            t.elapsed()
        );
        // Later calls fail at once, and closing does not hang.
        assert!(matches!(
            repo.get(&ids[0]),
            Err(RepositoryError::ConnectionClosed { .. })
        ));
        let t = Instant::now();
        let _ = repo.close();
        assert!(t.elapsed() < Duration::from_secs(15));
    }

    // Killed while asynchronous puts stream in: a later put or the flush fails, promptly.
    for via in [Via::Ssh, Via::Ssh2, Via::Pipe] {
        let name = format!("kill-put-{via:?}");
        let mut repo = world
            .open_with(via, &path, &name, "", |_| {}, &exclusive())
            .expect("open");
        let pid = world.scratch.serve_pid(&name);
        let t = Instant::now();
        let mut rng = Rng(11);
        let mut failure = None;
        for i in 0..200 {
            if i == 5 {
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            if let Err(e) = repo.put(&rng.id(), rng.bytes(256 * 1024)) {
                failure = Some(e);
                break;
            }
        }
        let failure = failure.or_else(|| repo.flush().err());
        match failure {
            Some(RepositoryError::ConnectionClosed { .. }) => {}
            other => panic!(
                "borg {} via {via:?}: expected ConnectionClosed from put/flush, got {other:?}",
                world.peer.name
            ),
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "took {:?}",
            t.elapsed()
        );
        let _ = repo.close();
    }
    borg_check_repository(&world.peer, &world.scratch, &path);
    // Everything committed is still there (stale locks of the killed servers are cleared).
    let mut repo = common::open_pipe(&world.peer, &world.scratch, &path, &OpenOptions::default())
        .expect("open through the rig's open_pipe");
    let mut n = 0;
    repo.get_many(&ids, &mut |i, data| {
        assert!(data == objs[i].1);
        n += 1;
        Ok(())
    })
    .expect("get_many after the kills");
    assert_eq!(n, ids.len());
    repo.close().expect("close");
}

#[test]
fn borg12_server_killed_mid_transfer() {
    killed_server(borg12());
}

#[test]
fn borg14_server_killed_mid_transfer() {
    killed_server(borg14());
}

/// Splits a recorded request stream into its messages (raw bytes and decoded).
fn split_messages(bytes: &[u8]) -> Vec<(Vec<u8>, Value)> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (value, used) = msgpack::decode_prefix(rest).expect("recorded request decodes");
        out.push((rest[..used].to_vec(), value));
        rest = &rest[used..];
    }
    out
}

fn arg<'a>(request: &'a Value, name: &str) -> &'a Value {
    request
        .get("a")
        .and_then(|a| a.get(name))
        .unwrap_or_else(|| panic!("request lacks argument {name}: {request:?}"))
}

fn id_arg(request: &Value, name: &str) -> ObjectId {
    arg(request, name)
        .as_bytes()
        .expect("raw id")
        .try_into()
        .expect("32 bytes")
}

/// Re-runs a session recorded from the real borg client through rborg's RemoteRepository,
/// method by method, with rborg's requests recorded by the same shim.
fn replay_session(world: &World, shim: &Path, recorded: &[(Vec<u8>, Value)], record_to: &Path) {
    let negotiate = &recorded[0].1;
    let client_version: Vec<i64> = negotiate.as_array().expect("tuple")[3]
        .as_array()
        .expect("args")[0]
        .get("client_version")
        .and_then(Value::as_array)
        .expect("client_version")
        .iter()
        .map(|v| v.as_i64().expect("int"))
        .collect();
    let open = &recorded[1].1;
    assert_eq!(open.get("m").and_then(Value::as_str), Some("open"));
    let options = OpenOptions {
        create: arg(open, "create").as_bool().expect("bool"),
        lock: arg(open, "lock").as_bool().expect("bool"),
        exclusive: arg(open, "exclusive").as_bool().expect("bool"),
        upgrade_lock: false,
        lock_wait: arg(open, "lock_wait").as_f64(),
        append_only: arg(open, "append_only").as_bool().expect("bool"),
        make_parent_dirs: arg(open, "make_parent_dirs").as_bool().expect("bool"),
    };
    let path = arg(open, "path").as_str().expect("path").to_string();
    let mut env = world.scratch.borg_env();
    env.push(("PATH".into(), std::env::var_os("PATH").unwrap_or_default()));
    env.push(("RBORG_REC".into(), record_to.into()));
    let transport = PipeTransport::spawn(
        vec![
            shim.to_str().expect("utf-8").into(),
            "fakehost".into(),
            world.peer.borg.to_str().expect("utf-8").into(),
            "serve".into(),
        ],
        &env,
        "1.4.5",
    )
    .expect("start shim");
    let client = ClientOptions {
        client_version,
        ..Default::default()
    };
    let mut repo =
        RemoteRepository::open(Box::new(transport), &path, &options, client).expect("open");
    for (_, request) in &recorded[2..] {
        let method = request.get("m").and_then(Value::as_str).expect("method");
        match method {
            "save_key" => repo
                .save_key(arg(request, "keydata").as_bytes().expect("raw"))
                .expect("save_key"),
            "load_key" => drop(repo.load_key().expect("load_key")),
            "get_free_nonce" => drop(repo.get_free_nonce().expect("get_free_nonce")),
            "commit_nonce_reservation" => repo
                .commit_nonce_reservation(
                    arg(request, "next_unreserved").as_u64().expect("int"),
                    arg(request, "start_nonce").as_u64(),
                )
                .expect("commit_nonce_reservation"),
            "put" => {
                let data = arg(request, "data").as_bytes().expect("raw").to_vec();
                if request.get("a").and_then(|a| a.get("wait")).is_some() {
                    repo.put_and_wait(&id_arg(request, "id"), data)
                        .expect("put");
                } else {
                    repo.put(&id_arg(request, "id"), data).expect("put");
                    repo.flush().expect("put");
                }
            }
            "get" => drop(repo.get(&id_arg(request, "id")).expect("get")),
            "commit" => repo
                .commit(CommitOptions {
                    compact: arg(request, "compact").as_bool().expect("bool"),
                    threshold: arg(request, "threshold").as_f64().expect("float"),
                    cleanup_commits: arg(request, "cleanup_commits").as_bool().expect("bool"),
                })
                .expect("commit"),
            "check" => {
                assert_eq!(arg(request, "save_space"), &Value::Bool(false));
                let ok = repo
                    .check(
                        arg(request, "repair").as_bool().expect("bool"),
                        arg(request, "max_duration").as_u64().expect("int"),
                    )
                    .expect("check");
                assert!(ok);
            }
            "__len__" => drop(repo.object_count().expect("__len__")),
            "list" => drop(
                repo.list(
                    arg(request, "limit").as_u64().map(|l| l as u32),
                    arg(request, "marker")
                        .as_bytes()
                        .map(|m| m.try_into().expect("32 bytes")),
                )
                .expect("list"),
            ),
            "rollback" => repo.rollback().expect("rollback"),
            other => panic!("the replay does not know {other}; teach it"),
        }
    }
    repo.close().expect("close");
}

/// Records what the real borg client sends for `borg init`, `borg check --repository-only`
/// and `borg list`, replays the same sessions through rborg, and compares the request bytes.
fn requests_match_borg_client(peer: Peer) {
    let world = World::new(peer, false);
    let shim = world.scratch.path("record-shim.sh");
    std::fs::write(
        &shim,
        "#!/bin/sh\n# Called as ssh would be: HOST COMMAND...; records stdin, runs COMMAND.\nshift\ntee -a \"$RBORG_REC\" | \"$@\"\n",
    )
    .expect("shim");
    std::fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let repo_path = world.scratch.path("repo");
    let location = format!("ssh://fakehost{}", repo_path.display());
    let borg_path = world.peer.borg.to_str().expect("utf-8").to_string();
    let sessions: [&[&str]; 3] = [
        &["init", "-e", "repokey"],
        &["check", "--repository-only"],
        &["list"],
    ];
    let mut recorded = Vec::new();
    for (i, args) in sessions.iter().enumerate() {
        let rec = world.scratch.path(&format!("borg-{i}.rec"));
        let out = std::process::Command::new(&world.peer.borg)
            .args(*args)
            .arg(&location)
            .args([
                "--rsh",
                shim.to_str().expect("utf-8"),
                "--remote-path",
                &borg_path,
            ])
            .envs(world.scratch.borg_env())
            .env("RBORG_REC", &rec)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run borg");
        assert!(
            out.status.success(),
            "borg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        recorded.push(split_messages(&std::fs::read(&rec).expect("recording")));
    }
    std::fs::remove_dir_all(&repo_path).expect("remove repo");

    let mut compared = 0;
    for (i, session) in recorded.iter().enumerate() {
        let rec = world.scratch.path(&format!("rborg-{i}.rec"));
        replay_session(&world, &shim, session, &rec);
        let ours = split_messages(&std::fs::read(&rec).expect("recording"));
        assert_eq!(ours.len(), session.len(), "session {i}: number of requests");
        for ((borg_bytes, borg_req), (our_bytes, _)) in session.iter().zip(&ours) {
            assert!(
                borg_bytes == our_bytes,
                "borg {} session {i}: request differs\nborg:  {borg_req:?}\nrborg: {:?}",
                world.peer.name,
                msgpack::decode(our_bytes)
            );
            compared += 1;
        }
    }
    eprintln!(
        "borg {}: {compared} requests byte-identical to the borg client's",
        world.peer.name
    );
    assert!(compared >= 10, "only {compared} requests compared");
    borg_check_repository(&world.peer, &world.scratch, &repo_path);
}

#[test]
fn borg12_requests_match_borg_client() {
    requests_match_borg_client(borg12());
}

#[test]
fn borg14_requests_match_borg_client() {
    requests_match_borg_client(borg14());
}
