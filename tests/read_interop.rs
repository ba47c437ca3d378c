//! rborg list / delete / rename against repositories written by real borg 1.2.4 and 1.4.5,
//! checked by those borgs (`list`, `check`), locally and over sshd with `borg serve`.

mod common;

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{borg, borg12, borg14, borg_ok, Peer, Scratch, Sshd};

fn rborg(scratch: &Scratch, extra_env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rborg"))
        .args(args)
        .envs(scratch.borg_env())
        .envs(extra_env.iter().map(|(k, v)| (*k, *v)))
        .stdin(Stdio::null())
        .output()
        .expect("run rborg")
}

fn rborg_ok(scratch: &Scratch, extra_env: &[(&str, &str)], args: &[&str]) -> Output {
    let out = rborg(scratch, extra_env, args);
    assert!(
        out.status.success(),
        "rborg {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A tree with a file, an empty file, a multi-chunk file, a sparse file, a symlink, a
/// hardlink pair, a fifo, xattrs and unicode / non-UTF-8 names.
fn make_tree(root: &Path) {
    let src = root.join("src");
    std::fs::create_dir_all(src.join("dir/ünïcode")).expect("dirs");
    std::fs::write(src.join("a.txt"), b"hello\n").expect("file");
    std::fs::write(src.join("empty"), b"").expect("file");
    let mut big = Vec::with_capacity(3 << 20);
    let mut x: u32 = 12345;
    for _ in 0..(3 << 20) {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        big.push((x >> 16) as u8);
    }
    std::fs::write(src.join("dir/big.bin"), &big).expect("big");
    let sparse = std::fs::File::create(src.join("sparse")).expect("sparse");
    sparse.set_len(1 << 20).expect("sparse len");
    std::os::unix::fs::symlink("a.txt", src.join("link")).expect("symlink");
    std::fs::hard_link(src.join("a.txt"), src.join("dir/hard")).expect("hardlink");
    let name = std::ffi::OsStr::from_bytes(b"raw-\xff-name");
    std::fs::write(src.join(name), b"x").expect("non-utf8 name");
    std::fs::write(src.join("dir/ünïcode/ö.txt"), b"umlaut").expect("unicode");
    let fifo = std::ffi::CString::new(src.join("fifo").as_os_str().as_bytes()).expect("cstr");
    // SAFETY: mkfifo on a path we own.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let _ = Command::new("setfattr")
        .args(["-n", "user.test", "-v", "value"])
        .arg(src.join("a.txt"))
        .status();
}

fn json_lines(out: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

fn stdout_json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).expect("json output")
}

fn check_repo_with(peer: &Peer, scratch: &Scratch, repo: &str, mode: &str) {
    let tree = scratch.path("tree");
    make_tree(&tree);
    let src = tree.join("src");
    let src = src.to_str().expect("utf-8");
    borg_ok(peer, scratch, &["init", "-e", mode, repo]);
    for name in ["one", "two", "three.checkpoint", "four"] {
        borg_ok(
            peer,
            scratch,
            &["create", "--comment", "c", &format!("{repo}::{name}"), src],
        );
    }
    let none = &[][..];
    // Archive list: text, short, --format, --json, checkpoints.
    for args in [
        vec!["list", repo],
        vec!["list", "--short", repo],
        vec!["list", "--consider-checkpoints", repo],
        vec!["list", "--last", "2", repo],
        vec!["list", "-a", "t*", "--consider-checkpoints", repo],
        vec![
            "list",
            "--format",
            "{name} {hostname} {username} {comment} {end}{NL}",
            repo,
        ],
    ] {
        let ours = rborg_ok(scratch, none, &args);
        let theirs = borg_ok(peer, scratch, &args);
        assert_eq!(
            String::from_utf8_lossy(&ours.stdout),
            String::from_utf8_lossy(&theirs.stdout),
            "borg {} {args:?}",
            peer.name
        );
    }
    let ours = stdout_json(&rborg_ok(scratch, none, &["list", "--json", repo]));
    let theirs = stdout_json(&borg_ok(peer, scratch, &["list", "--json", repo]));
    assert_eq!(ours, theirs, "list --json, borg {}", peer.name);

    // Archive contents.
    let one = format!("{repo}::one");
    for args in [
        vec!["list", one.as_str()],
        vec!["list", "--short", one.as_str(), "-e", "*.bin"],
        vec![
            "list",
            "--format",
            "{path} {num_chunks} {csize} {unique_chunks} {health}{NL}",
            one.as_str(),
        ],
    ] {
        let ours = rborg_ok(scratch, none, &args);
        let theirs = borg_ok(peer, scratch, &args);
        assert_eq!(
            String::from_utf8_lossy(&ours.stdout),
            String::from_utf8_lossy(&theirs.stdout),
            "borg {} {args:?}",
            peer.name
        );
    }
    let ours = json_lines(&rborg_ok(scratch, none, &["list", "--json-lines", &one]).stdout);
    let theirs = json_lines(&borg_ok(peer, scratch, &["list", "--json-lines", &one]).stdout);
    assert_eq!(ours, theirs, "list --json-lines, borg {}", peer.name);
    assert!(ours.len() >= 10, "the tree has all its items");

    // Bad input: one clear line each.
    let out = rborg(scratch, none, &["list", &format!("{repo}::nope")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Archive nope does not exist"), "{err}");
    let out = rborg(
        scratch,
        &[("BORG_EXIT_CODES", "modern")],
        &["list", &format!("{repo}::nope")],
    );
    assert_eq!(out.status.code(), Some(31));
    if mode != "none" {
        let out = rborg(scratch, &[("BORG_PASSPHRASE", "wrong")], &["list", repo]);
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).trim().lines().count(),
            1
        );
    }

    // Rename: new id with a valid TAM, borg lists and checks it.
    rborg_ok(scratch, none, &["rename", &one, "uno"]);
    let listed =
        String::from_utf8_lossy(&borg_ok(peer, scratch, &["list", "--short", repo]).stdout)
            .into_owned();
    assert_eq!(listed, "uno\ntwo\nfour\n");
    borg_ok(peer, scratch, &["check", "--archives-only", repo]);

    // Delete one, with --list; a missing name is a warning (rc 1).
    let out = rborg_ok(
        scratch,
        none,
        &["delete", "--list", &format!("{repo}::two")],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Deleting archive: two"));
    let out = rborg(scratch, none, &["delete", &format!("{repo}::nope")]);
    assert_eq!(out.status.code(), Some(1));
    // borg check finds neither missing chunks (deleted too much) nor orphans (too little).
    borg_ok(peer, scratch, &["check", repo]);
    let listed =
        String::from_utf8_lossy(&borg_ok(peer, scratch, &["list", "--short", repo]).stdout)
            .into_owned();
    assert_eq!(listed, "uno\nfour\n");
    // borg still writes into it, and rborg's cached index notices the new manifest.
    borg_ok(peer, scratch, &["create", &format!("{repo}::five"), src]);
    // Delete the rest with a glob (checkpoints included, as borg does).
    rborg_ok(scratch, none, &["delete", "-a", "*", repo]);
    borg_ok(peer, scratch, &["check", repo]);
    assert_eq!(
        borg_ok(peer, scratch, &["list", "--short", repo]).stdout,
        b""
    );
    borg_ok(peer, scratch, &["create", &format!("{repo}::again"), src]);
    borg_ok(peer, scratch, &["check", repo]);
}

#[test]
fn borg14_repokey_local() {
    let scratch = Scratch::new();
    let repo = scratch.path("repo");
    check_repo_with(
        &borg14(),
        &scratch,
        repo.to_str().expect("utf-8"),
        "repokey",
    );
}

#[test]
fn borg12_none_local() {
    let scratch = Scratch::new();
    let repo = scratch.path("repo");
    check_repo_with(&borg12(), &scratch, repo.to_str().expect("utf-8"), "none");
}

#[test]
fn borg14_blake2_over_sshd() {
    let scratch = Scratch::new();
    let peer = borg14();
    let sshd = Sshd::start();
    let wrapper = scratch.serve_wrapper(&peer, "serve", "");
    let repo = sshd.url(&scratch.path("repo"));
    // Both rborg and borg reach the repository through the rig's sshd.
    let rsh = sshd.rsh();
    let wrapper = wrapper.to_str().expect("utf-8").to_string();
    std::env::set_var("BORG_RSH", &rsh);
    std::env::set_var("BORG_REMOTE_PATH", &wrapper);
    check_repo_with(&peer, &scratch, &repo, "repokey-blake2");
    let _ = borg(&peer, &scratch, &["--version"]);
}
