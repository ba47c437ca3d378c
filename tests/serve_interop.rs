//! Real borg 1.2.4 and 1.4.5 clients talk to `rborg serve` through a real sshd on loopback
//! (`--remote-path "rborg serve"`): init, create, list, extract, prune, compact and
//! check --verify-data all succeed, and the repository rborg wrote passes borg's own local check.

mod common;

use std::fs;
use std::path::Path;

use common::{borg, borg_ok, Peer, Scratch, Sshd};

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
