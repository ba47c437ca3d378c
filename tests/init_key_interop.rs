//! `rborg init` in every mode, over ssh to a real `borg serve` (1.2.4 and 1.4.5) and on local
//! paths, then real borg creates, lists and verifies archives in it; borg-made repositories in
//! every mode open in rborg (`rborg list` over ssh); `rborg key export` equals
//! borg's and crosses both ways; bad passphrases are clear errors that write nothing.

mod common;

use std::fs;
use std::process::{Command, Output};

use common::{borg, borg_ok, Peer, Scratch, Sshd};

const RBORG: &str = env!("CARGO_BIN_EXE_rborg");
const MODES: [&str; 7] = [
    "none",
    "authenticated",
    "authenticated-blake2",
    "repokey",
    "keyfile",
    "repokey-blake2",
    "keyfile-blake2",
];

/// Runs rborg in the scratch environment with `env` on top; a value of `UNSET` removes the
/// variable.
fn rborg(scratch: &Scratch, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(RBORG);
    cmd.args(args)
        .envs(scratch.borg_env())
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        if *v == UNSET {
            cmd.env_remove(k);
        } else {
            cmd.env(k, v);
        }
    }
    cmd.output().expect("run rborg")
}

const UNSET: &str = "\u{0}unset";

fn rborg_ok(scratch: &Scratch, args: &[&str]) -> Output {
    let out = rborg(scratch, args, &[]);
    assert!(
        out.status.success(),
        "rborg {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// rborg initialises, borg uses the repository: create, list, check --verify-data.
fn init_then_borg(peer: &Peer, scratch: &Scratch, repo_arg: &str, extra: &[&str], mode: &str) {
    let mut args = vec!["init", "-e", mode];
    args.extend_from_slice(extra);
    args.push(repo_arg);
    rborg_ok(scratch, &args);
    let src = scratch.path("src");
    fs::create_dir_all(&src).expect("mkdir");
    fs::write(src.join("f"), format!("content for {mode}\n").repeat(1000)).expect("write");
    let archive = format!("{repo_arg}::a-{mode}");
    let mut b = vec!["create"];
    b.extend_from_slice(extra);
    b.push(&archive);
    b.push(src.to_str().expect("utf-8"));
    borg_ok(peer, scratch, &b);
    let mut l = vec!["list", "--short"];
    l.extend_from_slice(extra);
    l.push(repo_arg);
    let out = borg_ok(peer, scratch, &l);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("a-{mode}\n"),
        "{mode}"
    );
    let mut c = vec!["check", "--verify-data"];
    c.extend_from_slice(extra);
    c.push(repo_arg);
    let out = borg_ok(peer, scratch, &c);
    assert!(
        out.stderr.is_empty(),
        "borg {} check printed for {mode}: {}",
        peer.name,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn every_mode_over_ssh(peer: Peer) {
    let sshd = Sshd::start();
    let scratch = Scratch::new();
    let rsh = sshd.rsh();
    let remote = peer.borg.to_str().expect("utf-8").to_string();
    let extra = ["--rsh", rsh.as_str(), "--remote-path", remote.as_str()];
    for mode in MODES {
        let repo = scratch.path(&format!("repo-{mode}"));
        let url = sshd.url(&repo);
        init_then_borg(&peer, &scratch, &url, &extra, mode);
        // The other way round: borg makes the repository and an archive, rborg opens it
        // (key, manifest TAM) over the same ssh and lists the archive.
        let theirs = scratch.path(&format!("borg-{mode}"));
        let their_url = sshd.url(&theirs);
        let mut i = vec!["init", "-e", mode];
        i.extend_from_slice(&extra);
        i.push(&their_url);
        borg_ok(&peer, &scratch, &i);
        let src = scratch.path("src");
        let archive = format!("{their_url}::theirs-{mode}");
        let mut c = vec!["create"];
        c.extend_from_slice(&extra);
        c.push(&archive);
        c.push(src.to_str().expect("utf-8"));
        borg_ok(&peer, &scratch, &c);
        let mut l = vec!["list", "--short"];
        l.extend_from_slice(&extra);
        l.push(&their_url);
        let out = rborg_ok(&scratch, &l);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("theirs-{mode}\n"),
            "{mode}"
        );
        // The repository config is borg's: borg reads it locally too.
        let cfg = fs::read_to_string(repo.join("config")).expect("config");
        assert!(cfg.starts_with("[repository]\nversion = 1\n"), "{cfg}");
        assert_eq!(
            cfg.contains("\nkey = "),
            mode.starts_with("repokey") || mode.starts_with("authenticated"),
            "{mode}: key in config?\n{cfg}"
        );
    }
}

#[test]
fn every_mode_over_ssh_with_borg_1_2_4_serve() {
    every_mode_over_ssh(common::borg12());
}

#[test]
fn every_mode_over_ssh_with_borg_1_4_5_serve() {
    every_mode_over_ssh(common::borg14());
}

#[test]
fn local_init_and_key_export_import_both_ways() {
    for peer in [common::borg12(), common::borg14()] {
        let scratch = Scratch::new();
        for mode in ["repokey", "keyfile-blake2"] {
            let repo = scratch.path(&format!("r-{mode}"));
            let repo_s = repo.to_str().expect("utf-8");
            init_then_borg(&peer, &scratch, repo_s, &[], mode);
            // rborg's export equals borg's, byte for byte, in both formats.
            let ours = scratch.path("ours.key");
            let theirs = scratch.path("theirs.key");
            rborg_ok(
                &scratch,
                &["key", "export", repo_s, ours.to_str().expect("utf-8")],
            );
            borg_ok(
                &peer,
                &scratch,
                &["key", "export", repo_s, theirs.to_str().expect("utf-8")],
            );
            assert_eq!(
                fs::read(&ours).expect("ours"),
                fs::read(&theirs).expect("theirs"),
                "{mode}"
            );
            let paper = rborg_ok(&scratch, &["key", "export", "--paper", repo_s]);
            let borg_paper = borg_ok(&peer, &scratch, &["key", "export", "--paper", repo_s]);
            assert_eq!(paper.stdout, borg_paper.stdout, "{mode} paper");
            // Remove the key, import rborg's export with borg; remove again, import borg's
            // export with rborg; borg still reads the repository.
            let key_file_dir = scratch.base_dir().join(".config/borg/keys");
            let drop_key = || {
                if mode.starts_with("keyfile") {
                    for e in fs::read_dir(&key_file_dir).expect("keys dir") {
                        fs::remove_file(e.expect("entry").path()).expect("rm key");
                    }
                }
            };
            drop_key();
            borg_ok(
                &peer,
                &scratch,
                &["key", "import", repo_s, ours.to_str().expect("utf-8")],
            );
            borg_ok(&peer, &scratch, &["list", repo_s]);
            drop_key();
            rborg_ok(
                &scratch,
                &["key", "import", repo_s, theirs.to_str().expect("utf-8")],
            );
            borg_ok(&peer, &scratch, &["list", repo_s]);
        }
    }
}

#[test]
fn bad_input_is_one_clear_error_and_writes_nothing() {
    let peer = common::borg14();
    let scratch = Scratch::new();
    let repo = scratch.path("repo");
    let repo_s = repo.to_str().expect("utf-8");
    rborg_ok(&scratch, &["init", "-e", "repokey", repo_s]);
    let config_before = fs::read(repo.join("config")).expect("config");

    // Wrong passphrase: exit 2 (modern: 52), borg's message, the key is unchanged.
    let out = rborg(
        &scratch,
        &["key", "change-passphrase", repo_s],
        &[("BORG_PASSPHRASE", "wrong"), ("BORG_NEW_PASSPHRASE", "x")],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is incorrect"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    let out = rborg(
        &scratch,
        &["key", "change-passphrase", repo_s],
        &[
            ("BORG_PASSPHRASE", "wrong"),
            ("BORG_NEW_PASSPHRASE", "x"),
            ("BORG_EXIT_CODES", "modern"),
        ],
    );
    assert_eq!(out.status.code(), Some(52));
    assert_eq!(
        fs::read(repo.join("config")).expect("config"),
        config_before
    );

    // A failing passcommand.
    let out = rborg(
        &scratch,
        &["key", "change-passphrase", repo_s],
        &[("BORG_PASSPHRASE", UNSET), ("BORG_PASSCOMMAND", "false")],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Unknown mode, existing repository, missing parent: exit 2, nothing created.
    let out = rborg(
        &scratch,
        &[
            "init",
            "-e",
            "rot13",
            scratch.path("x").to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(!scratch.path("x").exists());
    let out = rborg(&scratch, &["init", "-e", "repokey", repo_s], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let deep = scratch.path("no/such/parent/repo");
    let out = rborg(
        &scratch,
        &["init", "-e", "none", deep.to_str().expect("utf-8")],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(!scratch.path("no").exists());

    // A new passphrase that cannot be had (no BORG_PASSPHRASE, a failing passcommand, no
    // terminal) must not leave a half-made repository behind.
    let half = scratch.path("half");
    let out = rborg(
        &scratch,
        &["init", "-e", "repokey", half.to_str().expect("utf-8")],
        &[("BORG_PASSPHRASE", UNSET), ("BORG_PASSCOMMAND", "false")],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !half.join("config").exists(),
        "no half-written repository is left"
    );
    // borg still uses the good repository.
    let src = scratch.path("src");
    fs::create_dir(&src).expect("mkdir");
    borg_ok(
        &peer,
        &scratch,
        &[
            "create",
            &format!("{repo_s}::a"),
            src.to_str().expect("utf-8"),
        ],
    );
    let out = borg(&peer, &scratch, &["check", repo_s]);
    assert!(out.status.success());
}
