//! Real borg 1.2.4 and 1.4.5 clients talk to `rborg serve` through a real sshd on loopback
//! (`--remote-path "rborg serve"`): init, create, list, extract, prune, compact and
//! check --verify-data all succeed, and the repository rborg wrote passes borg's own local check.
//! Scripted RPC sessions (rborg's client over a pipe) run against both `rborg serve` and
//! borg 1.4.5's `borg serve` and must see the same outcomes: the old-client lock upgrade
//! (`open` with `exclusive=None`) and `commit` without a transaction.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{borg, borg_ok, open_pipe, Peer, Scratch, Sshd};
use rborg::repository::{CommitOptions, OpenOptions, Repository, RepositoryError};

const RBORG: &str = env!("CARGO_BIN_EXE_rborg");

fn tree(dir: &Path) {
    fs::create_dir_all(dir.join("sub")).expect("mkdir");
    let mut big = Vec::new();
    for i in 0..300_000u32 {
        big.extend_from_slice(format!("line {i} of a file that spans several chunks\n").as_bytes());
    }
    fs::write(dir.join("big.txt"), &big).expect("write");
    fs::write(dir.join("sub/small"), b"small file\n").expect("write");
    fs::write(dir.join("empty"), b"").expect("write");
    std::os::unix::fs::symlink("sub/small", dir.join("link")).expect("symlink");
}

fn remote_args<'a>(sshd: &'a Sshd, remote_path: &'a str) -> Vec<String> {
    vec![
        "--rsh".into(),
        sshd.rsh(),
        "--remote-path".into(),
        remote_path.into(),
    ]
}

fn run(peer: &Peer, scratch: &Scratch, args: &[String]) -> std::process::Output {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    borg_ok(peer, scratch, &refs)
}

fn full_session(peer: Peer) {
    let sshd = Sshd::start();
    let scratch = Scratch::new();
    let src = scratch.path("src");
    tree(&src);
    let repo = scratch.path("repo");
    let url = sshd.url(&repo);
    let remote_path = format!("{RBORG} serve");
    let common = remote_args(&sshd, &remote_path);
    let with = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = extra[..1].iter().map(|s| s.to_string()).collect();
        v.extend(common.iter().cloned());
        v.extend(extra[1..].iter().map(|s| s.to_string()));
        v
    };

    run(&peer, &scratch, &with(&["init", "-e", "repokey", &url]));
    run(
        &peer,
        &scratch,
        &with(&[
            "create",
            &format!("{url}::one"),
            src.to_str().expect("utf-8"),
        ]),
    );
    fs::write(src.join("sub/new"), b"added before the second backup\n").expect("write");
    run(
        &peer,
        &scratch,
        &with(&[
            "create",
            "--stats",
            &format!("{url}::two"),
            src.to_str().expect("utf-8"),
        ]),
    );
    let list = run(&peer, &scratch, &with(&["list", "--short", &url]));
    assert_eq!(
        String::from_utf8_lossy(&list.stdout),
        "one\ntwo\n",
        "borg {}",
        peer.name
    );

    let out = scratch.path("out");
    fs::create_dir(&out).expect("mkdir");
    let args = with(&["extract", &format!("{url}::two")]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let extracted = std::process::Command::new(&peer.borg)
        .args(&refs)
        .envs(scratch.borg_env())
        .current_dir(&out)
        .output()
        .expect("borg extract");
    assert!(
        extracted.status.success(),
        "extract: {}",
        String::from_utf8_lossy(&extracted.stderr)
    );
    let restored = out.join(src.strip_prefix("/").expect("absolute"));
    for f in ["big.txt", "sub/small", "sub/new", "empty"] {
        assert_eq!(
            fs::read(restored.join(f)).expect("restored file"),
            fs::read(src.join(f)).expect("source file"),
            "{f} (borg {})",
            peer.name
        );
    }
    assert_eq!(
        fs::read_link(restored.join("link")).expect("symlink"),
        Path::new("sub/small")
    );

    run(&peer, &scratch, &with(&["prune", "--keep-last", "1", &url]));
    run(&peer, &scratch, &with(&["compact", &url]));
    run(&peer, &scratch, &with(&["check", "--verify-data", &url]));
    let list = run(&peer, &scratch, &with(&["list", "--short", &url]));
    assert_eq!(String::from_utf8_lossy(&list.stdout), "two\n");
    // What rborg serve wrote is a borg repository: borg checks it directly, too.
    borg_ok(
        &peer,
        &scratch,
        &["check", "--verify-data", repo.to_str().expect("utf-8")],
    );
}

#[test]
fn borg_1_2_4_client_through_rborg_serve() {
    full_session(common::borg12());
}

#[test]
fn borg_1_4_5_client_through_rborg_serve() {
    full_session(common::borg14());
}

#[test]
fn restrict_to_path_and_append_only_are_enforced() {
    let peer = common::borg14();
    let sshd = Sshd::start();
    let scratch = Scratch::new();
    let allowed = scratch.path("allowed");
    fs::create_dir(&allowed).expect("mkdir");
    let remote_path = format!("{RBORG} serve --restrict-to-path {}", allowed.display());
    let outside = sshd.url(&scratch.path("outside"));
    let mut args = vec!["init".to_string(), "-e".into(), "none".into()];
    args.extend(remote_args(&sshd, &remote_path));
    args.push(outside);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = borg(&peer, &scratch, &refs);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not allowed"), "{err}");
    assert!(
        !scratch.path("outside").exists(),
        "nothing was created outside"
    );

    // An append-only server refuses to delete archives' data: `borg delete` of an archive
    // goes through but leaves the data; `borg check` stays clean.
    let repo = allowed.join("repo");
    let url = sshd.url(&repo);
    let append_only = format!(
        "{RBORG} serve --append-only --restrict-to-path {}",
        allowed.display()
    );
    let src = scratch.path("src");
    tree(&src);
    for cmd in [vec!["init", "-e", "none"], vec!["create"]] {
        let mut args: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        args.extend(remote_args(&sshd, &append_only));
        if cmd[0] == "create" {
            args.push(format!("{url}::a"));
            args.push(src.to_str().expect("utf-8").into());
        } else {
            args.push(url.clone());
        }
        run(&peer, &scratch, &args);
    }
    let config = fs::read_to_string(repo.join("config")).expect("config");
    assert!(
        config.contains("append_only = 0"),
        "init through an append-only serve is not append-only:\n{config}"
    );
    let segments_before = fs::read_dir(repo.join("data/0")).expect("data").count();
    let mut args = vec!["delete".to_string()];
    args.extend(remote_args(&sshd, &append_only));
    args.push(format!("{url}::a"));
    run(&peer, &scratch, &args);
    assert!(fs::read_dir(repo.join("data/0")).expect("data").count() >= segments_before);
    assert!(
        repo.join("transactions").exists(),
        "append-only mode keeps a transaction log"
    );
    borg_ok(&peer, &scratch, &["check", repo.to_str().expect("utf-8")]);
}

/// The servers a scripted session runs against: borg 1.4.5's own and rborg's.
fn servers() -> Vec<Peer> {
    vec![
        common::borg14(),
        Peer {
            name: "rborg",
            borg: PathBuf::from(RBORG),
        },
    ]
}

/// An outcome as comparable text: "ok", or the error's kind and message.
fn outcome<T>(r: Result<T, RepositoryError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(RepositoryError::LockTimeout(_)) => "LockTimeout".into(),
        Err(RepositoryError::Remote { class, message }) => format!("{class}: {}", message.trim()),
        Err(e) => format!("{e:?}"),
    }
}

/// A borg 1.4.5 process holding a shared lock on `repo` until dropped.
struct SharedLockHolder(std::process::Child);

impl SharedLockHolder {
    fn start(scratch: &Scratch, repo: &Path) -> SharedLockHolder {
        let python = common::borg14().borg.with_file_name("python");
        let script = "import sys\n\
            from borg.logger import setup_logging\n\
            setup_logging()\n\
            from borg.repository import Repository\n\
            r = Repository(sys.argv[1], exclusive=False, lock_wait=5)\n\
            r.__enter__()\n\
            print('held', flush=True)\n\
            sys.stdin.read()\n\
            r.close()\n";
        let mut child = Command::new(&python)
            .args(["-c", script, repo.to_str().expect("utf-8")])
            .envs(scratch.borg_env())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read");
        assert_eq!(line.trim(), "held", "borg could not take the shared lock");
        SharedLockHolder(child)
    }

    fn release(mut self) {
        drop(self.0.stdin.take());
        let status = self.0.wait().expect("wait");
        assert!(status.success(), "lock holder failed: {status}");
    }
}

impl Drop for SharedLockHolder {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Whether borg 1.4.5 can take a shared lock on `repo` within half a second.
fn reader_gets_lock(scratch: &Scratch, repo: &Path) -> bool {
    let out = borg(
        &common::borg14(),
        scratch,
        &["--lock-wait", "0", "list", repo.to_str().expect("utf-8")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || err.contains("Failed to create/acquire the lock"),
        "borg list failed for another reason: {err}"
    );
    out.status.success()
}

/// One old-client session (`exclusive=None`) against `server`; returns the outcomes.
fn old_client_session(server: &Peer) -> Vec<String> {
    let scratch = Scratch::new();
    let repo = scratch.path("repo");
    common::borg_init(&common::borg14(), &scratch, &repo, "none");
    let mut log = Vec::new();
    let old_client = OpenOptions {
        exclusive: false,
        upgrade_lock: true,
        lock_wait: Some(1.0),
        ..OpenOptions::default()
    };
    let id = [0x5a; 32];
    // Another reader holds a shared lock: an old client still opens (shared + shared) ...
    let holder = SharedLockHolder::start(&scratch, &repo);
    let mut r = open_pipe(server, &scratch, &repo, &old_client).expect("open");
    log.push(format!(
        "reader while open: {}",
        reader_gets_lock(&scratch, &repo)
    ));
    // ... but its first write has to upgrade, which waits for the reader and times out.
    log.push(format!(
        "put beside a reader: {}",
        outcome(r.put(&id, b"data".to_vec()).and_then(|_| r.flush()))
    ));
    holder.release();
    log.push(format!(
        "put alone: {}",
        outcome(r.put(&id, b"data".to_vec()).and_then(|_| r.flush()))
    ));
    // Upgraded: readers are locked out until the session ends.
    log.push(format!(
        "reader after upgrade: {}",
        reader_gets_lock(&scratch, &repo)
    ));
    log.push(format!(
        "commit: {}",
        outcome(r.commit(CommitOptions::default()))
    ));
    log.push(format!(
        "reader after commit: {}",
        reader_gets_lock(&scratch, &repo)
    ));
    log.push(format!(
        "get: {}",
        outcome(r.get(&id).map(|d| assert_eq!(d, b"data")))
    ));
    r.close().expect("close");
    log.push(format!(
        "reader after close: {}",
        reader_gets_lock(&scratch, &repo)
    ));
    // A new client asking for a shared lock may not write at all.
    let shared = OpenOptions {
        lock_wait: Some(1.0),
        ..OpenOptions::default()
    };
    let mut r = open_pipe(server, &scratch, &repo, &shared).expect("open");
    log.push(format!(
        "shared put: {}",
        outcome(r.put(&[1; 32], b"x".to_vec()).and_then(|_| r.flush()))
    ));
    r.close().expect("close");
    common::borg_check_repository(&common::borg14(), &scratch, &repo);
    log
}

#[test]
fn old_client_lock_upgrade_matches_borg_serve() {
    let results: Vec<Vec<String>> = servers().iter().map(old_client_session).collect();
    let expected = vec![
        "reader while open: true",
        "put beside a reader: LockTimeout",
        "put alone: ok",
        "reader after upgrade: false",
        "commit: ok",
        "reader after commit: false",
        "get: ok",
        "reader after close: true",
        "shared put: AssertionError: AssertionError: bug in code, exclusive lock should exist here",
    ];
    assert_eq!(results[0], expected, "borg serve");
    assert_eq!(results[1], expected, "rborg serve");
}

/// Bare commits (no put or delete before them) against `server`; returns the outcomes.
fn bare_commit_session(server: &Peer) -> Vec<String> {
    let scratch = Scratch::new();
    let repo = scratch.path("repo");
    common::borg_init(&common::borg14(), &scratch, &repo, "none");
    let exclusive = OpenOptions {
        exclusive: true,
        ..OpenOptions::default()
    };
    let mut r = open_pipe(server, &scratch, &repo, &exclusive).expect("open");
    let mut log = Vec::new();
    let commit = |r: &mut dyn Repository| outcome(r.commit(CommitOptions::default()));
    log.push(format!("fresh: {}", commit(&mut r)));
    let manifest = r.get(&[0; 32]).expect("manifest");
    log.push(format!("after a read: {}", commit(&mut r)));
    r.put(&[0; 32], manifest).expect("put");
    log.push(format!("after a put: {}", commit(&mut r)));
    log.push(format!("again: {}", commit(&mut r)));
    r.close().expect("close");
    common::borg_check_repository(&common::borg14(), &scratch, &repo);
    log
}

#[test]
fn commit_without_transaction_matches_borg_serve() {
    let results: Vec<Vec<String>> = servers().iter().map(bare_commit_session).collect();
    let size = "AttributeError: AttributeError: 'NoneType' object has no attribute 'size'";
    let segments =
        "AttributeError: AttributeError: 'Repository' object has no attribute 'segments'";
    let expected = vec![
        format!("fresh: {size}"),
        format!("after a read: {segments}"),
        "after a put: ok".to_string(),
        format!("again: {size}"),
    ];
    assert_eq!(results[0], expected, "borg serve");
    assert_eq!(results[1], expected, "rborg serve");
}
