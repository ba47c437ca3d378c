//! `rborg delete`, `delete --force` and `delete --force --force` of a damaged archive do what
//! borg 1.2.4 / 1.4.5 do on the same damage: same exit code, borg's messages, and afterwards
//! `borg check` reports exactly the same (missing blocks, orphan counts) for both copies.
//!
//! The damage (made with borg's own Python on a local repository): the archive metadata
//! object, the first item-metadata chunk, or a content chunk only this archive uses, deleted.

mod borg_python;
mod common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{borg14, Peer, Scratch};

/// Deletes one object of archive `victim` (or the manifest) from the repository at argv[1];
/// argv[2] names it;
/// argv[3] is the base dir, argv[4] the passphrase.
const DAMAGE: &str = r#"
import os, sys
os.environ['BORG_BASE_DIR'] = sys.argv[3]
os.environ['BORG_PASSPHRASE'] = sys.argv[4]
os.environ['BORG_RELOCATED_REPO_ACCESS_IS_OK'] = 'yes'
from borg.logger import setup_logging
setup_logging(level="warning")
from borg.repository import Repository
from borg.helpers import Manifest
from borg.archive import Archive
path, what = sys.argv[1:3]
with Repository(path, exclusive=True) as repo:
    manifest, key = Manifest.load(repo, (Manifest.Operation.READ,))
    info = manifest.archives['victim']
    archive = Archive(repo, key, manifest, 'victim')
    if what == 'manifest':
        target = Manifest.MANIFEST_ID
    elif what == 'meta':
        target = info.id
    elif what == 'items':
        target = archive.metadata.items[0]
    else:
        target = next(i.chunks[0].id for i in archive.iter_items()
                      if 'chunks' in i and i.path.endswith('only.bin'))
    repo.delete(target)
    repo.commit(compact=False)
    print(target.hex())
"#;

fn env_for(scratch: &Scratch, base: &Path) -> Vec<(OsString, OsString)> {
    let mut env = scratch.borg_env();
    env.retain(|(k, _)| k != "BORG_BASE_DIR");
    env.push(("BORG_BASE_DIR".into(), base.into()));
    env
}

fn run(program: &Path, env: &[(OsString, OsString)], cwd: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .envs(env.iter().cloned())
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .expect("run")
}

/// The passphrase `Scratch::borg_env` sets.
fn passphrase(scratch: &Scratch) -> String {
    scratch
        .borg_env()
        .into_iter()
        .find(|(k, _)| k == "BORG_PASSPHRASE")
        .map(|(_, v)| v.to_string_lossy().into_owned())
        .expect("passphrase")
}

/// Runs `args` in a copy of `source` for borg (`peer`) and for rborg, with `answer` to the
/// delete question and `pass` as passphrase; per tool: the messages, the exit code and whether
/// the repository is gone.
fn delete_both(
    scratch: &Scratch,
    peer: &Peer,
    source: &Path,
    label: &str,
    answer: &str,
    pass: &str,
    args: &[&str],
) -> Vec<(Vec<String>, Option<i32>, bool)> {
    let mut outs = Vec::new();
    for (who, program) in [("borg", peer.borg.as_path()), ("rborg", rborg_bin())] {
        let dir = scratch.path(&format!("{label}-{who}"));
        copy_tree(source, &dir);
        let mut env = env_for(scratch, &dir.join("base"));
        env.retain(|(k, _)| k != "BORG_DELETE_I_KNOW_WHAT_I_AM_DOING" && k != "BORG_PASSPHRASE");
        env.push(("BORG_DELETE_I_KNOW_WHAT_I_AM_DOING".into(), answer.into()));
        env.push(("BORG_PASSPHRASE".into(), pass.into()));
        let out = run(program, &env, &dir, args);
        let gone = !dir.join("repo").exists();
        outs.push((messages(&out, &dir), out.status.code(), gone));
    }
    outs
}

fn rborg_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_rborg"))
}

fn copy_tree(from: &Path, to: &Path) {
    let ok = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(ok.success(), "cp -a {} {}", from.display(), to.display());
}

/// stderr lines without the notes about the copy having moved (the two copies have moved
/// differently) and without borg's traceback lines.
fn messages(out: &Output, dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| {
            !l.starts_with("Warning: The repository at location")
                && !l.starts_with("Do you want to continue?")
                && !l.starts_with(' ')
                && !l.starts_with("Traceback")
                && !l.starts_with("borg.repository.Repository.ObjectNotFound")
                && !l.is_empty()
        })
        .map(|l| l.replace(&dir, "DIR"))
        .collect()
}

/// A pristine repository with archives `keep` and `victim`, and a base dir in which both
/// borg's and rborg's chunk caches are in sync with it.
fn pristine(scratch: &Scratch, peer: &Peer) -> PathBuf {
    let dir = scratch.path("pristine");
    let tree = dir.join("t");
    std::fs::create_dir_all(&tree).expect("tree");
    let mut x: u32 = 99;
    let mut noise = |n: usize| {
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) as u8
            })
            .collect::<Vec<u8>>()
    };
    std::fs::write(tree.join("shared.bin"), noise(300_000)).expect("file");
    let env = env_for(scratch, &dir.join("base"));
    let ok = |out: Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ok(run(
        &peer.borg,
        &env,
        &dir,
        &["init", "-e", "repokey", "repo"],
    ));
    ok(run(&peer.borg, &env, &dir, &["create", "repo::keep", "t"]));
    std::fs::write(tree.join("only.bin"), noise(200_000)).expect("file");
    for i in 0..40 {
        std::fs::write(tree.join(format!("f{i}")), format!("file {i}\n")).expect("file");
    }
    // Old enough for `prune --keep-within 1d` to choose it.
    ok(run(
        &peer.borg,
        &env,
        &dir,
        &[
            "create",
            "--timestamp",
            "2020-01-01T00:00:00",
            "repo::victim",
            "t",
        ],
    ));
    // rborg keeps its own chunk cache; `info` builds and saves it.
    ok(run(rborg_bin(), &env, &dir, &["info", "repo"]));
    dir
}

/// A stand-in for ssh that runs the remote command here: `RSH [options] HOST COMMAND...`.
fn fake_ssh(scratch: &Scratch) -> PathBuf {
    let path = scratch.path("fake-ssh");
    std::fs::write(
        &path,
        "#!/bin/sh\nwhile [ \"${1#-}\" != \"$1\" ]; do shift; done\nshift\nexec \"$@\"\n",
    )
    .expect("fake ssh");
    let mut perms = std::fs::metadata(&path).expect("meta").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).expect("chmod");
    path
}

fn scenario(scratch: &Scratch, pristine: &Path, peer: &Peer, what: &str, force: &[&str]) {
    scenario_via(scratch, pristine, peer, what, force, false);
}

/// `prune --keep-within 1d` chooses the damaged (old) archive; `force` as for delete.
fn prune_scenario(scratch: &Scratch, pristine: &Path, peer: &Peer, what: &str, force: &[&str]) {
    let mut args = vec!["prune", "--keep-within", "1d"];
    args.extend_from_slice(force);
    scenario_with(scratch, pristine, peer, what, &args, false);
}

/// One damage and force level; `remote` runs the delete through `borg serve` (ssh:// with a
/// stand-in ssh), where borg's deletes are asynchronous.
fn scenario_via(
    scratch: &Scratch,
    pristine: &Path,
    peer: &Peer,
    what: &str,
    force: &[&str],
    remote: bool,
) {
    let mut args = vec!["delete"];
    args.extend_from_slice(force);
    scenario_with(scratch, pristine, peer, what, &args, remote);
}

/// One damage, then `command` (a delete of `repo::victim` or a prune of `repo`, with its
/// options) by borg and by rborg on copies of the damaged repository.
fn scenario_with(
    scratch: &Scratch,
    pristine: &Path,
    peer: &Peer,
    what: &str,
    command: &[&str],
    remote: bool,
) {
    let label = format!(
        "{what}-{}{}",
        command.join("-").replace(' ', ""),
        if remote { "-remote" } else { "" }
    );
    let damaged = scratch.path(&format!("{label}-damaged"));
    copy_tree(pristine, &damaged);
    let python = &borg_python::peers()[0].1;
    let repo = damaged.join("repo");
    let base = damaged.join("base");
    let passphrase = passphrase(scratch);
    let argv = [
        repo.to_str().expect("utf-8"),
        what,
        base.to_str().expect("utf-8"),
        &passphrase,
    ];
    let target = borg_python::run_python(python, DAMAGE, &argv, b"");
    assert_eq!(
        String::from_utf8_lossy(&target).trim().len(),
        64,
        "damaged one object"
    );

    let mut results = Vec::new();
    for (who, program) in [("borg", peer.borg.as_path()), ("rborg", rborg_bin())] {
        let dir = scratch.path(&format!("{label}-{who}"));
        copy_tree(&damaged, &dir);
        let mut env = env_for(scratch, &dir.join("base"));
        let archive = if command[0] == "delete" {
            "::victim"
        } else {
            ""
        };
        let target = if remote {
            env.push(("BORG_RSH".into(), fake_ssh(scratch).into()));
            env.push(("BORG_REMOTE_PATH".into(), peer.borg.clone().into()));
            format!("ssh://localhost{}/repo{archive}", dir.display())
        } else {
            format!("repo{archive}")
        };
        let mut args = command.to_vec();
        args.push(&target);
        let deleted = run(program, &env, &dir, &args);
        let env = env_for(scratch, &dir.join("base"));
        let checked = run(&peer.borg, &env, &dir, &["check", "repo"]);
        let listed = run(&peer.borg, &env, &dir, &["list", "--short", "repo"]);
        results.push((dir, deleted, checked, listed));
    }
    let (b_dir, b_del, b_check, b_list) = &results[0];
    let (r_dir, r_del, r_check, r_list) = &results[1];
    let case = format!(
        "{command:?} with the {what} object missing, borg {}{}",
        peer.name,
        if remote { " over borg serve" } else { "" }
    );
    assert_eq!(
        b_del.status.code(),
        r_del.status.code(),
        "{case}: exit code\nborg: {}\nrborg: {}",
        String::from_utf8_lossy(&b_del.stderr),
        String::from_utf8_lossy(&r_del.stderr)
    );
    let theirs = messages(b_del, b_dir);
    for line in messages(r_del, r_dir) {
        assert!(
            theirs.contains(&line),
            "{case}: rborg said {line:?}, borg said {theirs:?}"
        );
    }
    assert_eq!(
        b_check.status.code(),
        r_check.status.code(),
        "{case}: check rc"
    );
    let check_lines = messages(b_check, b_dir);
    if remote {
        assert_eq!(b_check.status.code(), Some(0), "{case}: {check_lines:?}");
    } else {
        assert!(
            !check_lines.is_empty(),
            "{case}: borg check found nothing to say"
        );
    }
    assert_eq!(
        check_lines,
        messages(r_check, r_dir),
        "{case}: borg check afterwards"
    );
    assert_eq!(b_list.stdout, r_list.stdout, "{case}: archives afterwards");
}

#[test]
fn forced_delete_of_a_damaged_archive_matches_borg() {
    let scratch = Scratch::new();
    let b14 = borg14();
    let pristine = pristine(&scratch, &b14);
    for what in ["meta", "items", "data"] {
        for force in [&[][..], &["--force"], &["--force", "--force"]] {
            scenario(&scratch, &pristine, &b14, what, force);
        }
    }
    // Over `borg serve` a missing content chunk is answered late; borg goes on dropping the
    // other references, so nothing is left over, and rborg must do the same.
    scenario_via(&scratch, &pristine, &b14, "data", &["--force"], true);
    // prune deletes like delete, and its --force is delete's first level.
    for what in ["items", "data"] {
        for force in [&[][..], &["--force"]] {
            prune_scenario(&scratch, &pristine, &b14, what, force);
        }
    }
}

#[test]
fn forced_delete_matches_borg_12() {
    let scratch = Scratch::new();
    let b12 = common::borg12();
    let pristine = pristine(&scratch, &b12);
    scenario(&scratch, &pristine, &b12, "items", &["--force"]);
    scenario(&scratch, &pristine, &b12, "data", &["--force"]);
    scenario(&scratch, &pristine, &b12, "meta", &["--force", "--force"]);
}

/// Deleting a whole repository: the confirmation text (with and without `--list`), the answer
/// taken from `BORG_DELETE_I_KNOW_WHAT_I_AM_DOING`, the dry-run and abort messages are borg
/// 1.4's, byte for byte; `--force` asks nothing.
#[test]
fn repository_delete_talks_like_borg_14() {
    let scratch = Scratch::new();
    let b14 = borg14();
    let pristine = pristine(&scratch, &b14);
    let cases: [(&str, &[&str], bool); 5] = [
        ("YES", &["delete", "--info", "--dry-run", "repo"], true),
        ("YES", &["delete", "--info", "--list", "repo"], true),
        ("no", &["delete", "repo"], false),
        ("maybe", &["delete", "--list", "repo"], false),
        ("no", &["delete", "--force", "--info", "repo"], true),
    ];
    let pass = passphrase(&scratch);
    for (n, (answer, args, succeeds)) in cases.iter().enumerate() {
        let label = format!("repo-delete-{n}");
        let outs = delete_both(&scratch, &b14, &pristine, &label, answer, &pass, args);
        assert_eq!(
            outs[0], outs[1],
            "{args:?} answered {answer:?}: borg vs rborg"
        );
        assert_eq!(
            outs[0].1 == Some(0),
            *succeeds,
            "{args:?}: borg's exit code"
        );
    }
}

/// A repository whose manifest is gone is still deleted, as by borg 1.4.5: with the "may
/// contain" question and the "no manifest" listing, and with `--force` without a passphrase
/// (borg does not read the key then).
#[test]
fn repository_without_manifest_is_deleted_like_borg_14() {
    let scratch = Scratch::new();
    let b14 = borg14();
    let pristine = pristine(&scratch, &b14);
    let broken = scratch.path("no-manifest");
    copy_tree(&pristine, &broken);
    let passphrase = passphrase(&scratch);
    let (repo, base) = (broken.join("repo"), broken.join("base"));
    let argv = [
        repo.to_str().expect("utf-8"),
        "manifest",
        base.to_str().expect("utf-8"),
        &passphrase,
    ];
    let python = &borg_python::peers()[0].1;
    let target = borg_python::run_python(python, DAMAGE, &argv, b"");
    assert_eq!(String::from_utf8_lossy(&target).trim(), "0".repeat(64));
    let cases: [(&str, &str, &[&str], bool); 3] = [
        (
            "YES",
            &passphrase,
            &["delete", "--info", "--list", "repo"],
            true,
        ),
        ("no", &passphrase, &["delete", "--list", "repo"], false),
        (
            "no",
            "not-the-passphrase",
            &["delete", "--force", "--info", "repo"],
            true,
        ),
    ];
    for (n, (answer, pass, args, succeeds)) in cases.iter().enumerate() {
        let label = format!("no-manifest-{n}");
        let outs = delete_both(&scratch, &b14, &broken, &label, answer, pass, args);
        assert_eq!(
            outs[0], outs[1],
            "{args:?} answered {answer:?}: borg vs rborg"
        );
        assert_eq!(
            outs[0].1 == Some(0),
            *succeeds,
            "{args:?}: borg's exit code"
        );
        assert_eq!(
            outs[0].2, *succeeds,
            "{args:?}: whether borg removed the repository"
        );
    }
}
