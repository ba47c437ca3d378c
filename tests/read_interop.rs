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
    let a = std::ffi::CString::new(src.join("a.txt").as_os_str().as_bytes()).expect("cstr");
    // SAFETY: NUL-terminated path and name, a valid buffer with its length.
    let rc = unsafe {
        libc::lsetxattr(
            a.as_ptr(),
            c"user.test".as_ptr(),
            b"value".as_ptr().cast(),
            5,
            0,
        )
    };
    assert_eq!(rc, 0, "this test needs user xattrs on the temp file system");
}

/// Runs a command in `dir` with the scratch environment, asserting success.
fn run_in(program: &Path, scratch: &Scratch, dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .envs(scratch.borg_env())
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{} {args:?} failed ({}):\n{}{}",
        program.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Compares two extracted trees with Python's view of them (type, mode, owner, mtime for all
/// but implicit directories, content, link targets, xattrs, hardlink groups, allocated blocks
/// of sparse files).
const COMPARE_TREES: &str = r#"
import os, sys, hashlib, stat
def scan(root, check_dir_times):
    out, inodes = {}, {}
    for dp, dns, fns in os.walk(root):
        for n in dns + fns:
            p = os.path.join(dp, n); rel = os.path.relpath(p, root)
            st = os.lstat(p)
            rec = dict(mode=st.st_mode, uid=st.st_uid, gid=st.st_gid)
            if check_dir_times or not stat.S_ISDIR(st.st_mode):
                rec['mtime'] = st.st_mtime_ns
            if stat.S_ISREG(st.st_mode):
                rec['data'] = hashlib.sha256(open(p, 'rb').read()).hexdigest()
                rec['blocks'] = st.st_blocks
                inodes.setdefault(st.st_ino, []).append(rel)
            if stat.S_ISLNK(st.st_mode):
                rec['target'] = os.readlink(p)
            rec['xattrs'] = sorted((k, os.getxattr(p, k, follow_symlinks=False))
                                   for k in os.listxattr(p, follow_symlinks=False))
            out[rel] = rec
    return out, sorted(sorted(v) for v in inodes.values() if len(v) > 1)
full = sys.argv[3] == 'full'
a, b = scan(sys.argv[1], full), scan(sys.argv[2], full)
if a != b:
    for k in sorted(set(a[0]) | set(b[0])):
        if a[0].get(k) != b[0].get(k):
            print('DIFF', k, a[0].get(k), b[0].get(k))
    print('HARDLINKS', a[1], b[1])
    sys.exit(1)
print(len(a[0]))
"#;

/// Extracts `archive` with borg and with rborg (same arguments) into fresh directories and
/// compares the trees; returns how many entries they hold.
fn compare_extract(
    peer: &Peer,
    scratch: &Scratch,
    tag: &str,
    archive: &str,
    options: &[&str],
    paths: &[&str],
    full: bool,
) -> usize {
    let theirs = scratch.path(&format!("x-borg-{tag}"));
    let ours = scratch.path(&format!("x-rborg-{tag}"));
    std::fs::create_dir_all(&theirs).expect("dir");
    std::fs::create_dir_all(&ours).expect("dir");
    let mut args = vec!["extract"];
    args.extend_from_slice(options);
    args.push(archive);
    args.extend_from_slice(paths);
    run_in(&peer.borg, scratch, &theirs, &args);
    run_in(
        Path::new(env!("CARGO_BIN_EXE_rborg")),
        scratch,
        &ours,
        &args,
    );
    let out = Command::new("/usr/bin/python3")
        .args(["-c", COMPARE_TREES])
        .arg(&theirs)
        .arg(&ours)
        .arg(if full { "full" } else { "partial" })
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "extract {tag} {args:?}, borg {}: trees differ\n{}{}",
        peer.name,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("count")
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
    // An archive with relative paths (created inside the tree), for extract.
    run_in(
        &peer.borg,
        scratch,
        &tree,
        &["create", &format!("{repo}::rel"), "src"],
    );
    let rel = format!("{repo}::rel");
    let n = compare_extract(peer, scratch, "full", &rel, &[], &[], true);
    assert!(n >= 12, "every file type extracted ({n})");
    compare_extract(peer, scratch, "sparse", &rel, &["--sparse"], &[], true);
    compare_extract(
        peer,
        scratch,
        "numeric",
        &rel,
        &["--numeric-ids"],
        &[],
        true,
    );
    // Partial: one hardlink of the pair (whichever is the master), with and without
    // --strip-components, and patterns.
    compare_extract(peer, scratch, "hl1", &rel, &[], &["src/a.txt"], false);
    compare_extract(peer, scratch, "hl2", &rel, &[], &["src/dir/hard"], false);
    compare_extract(
        peer,
        scratch,
        "strip",
        &rel,
        &["--strip-components", "2"],
        &["src/dir"],
        false,
    );
    compare_extract(
        peer,
        scratch,
        "excl",
        &rel,
        &["-e", "*.bin", "--pattern=-src/link"],
        &[],
        false,
    );
    let out = rborg(scratch, &[], &["extract", "--dry-run", "--list", &rel]);
    assert!(out.status.success());
    let listed = String::from_utf8_lossy(&out.stderr);
    assert!(listed.lines().any(|l| l == "src/dir/big.bin"), "{listed}");
    // --stdout: the selected files' content, as borg writes it.
    for paths in [vec!["src/dir/big.bin"], vec!["src/dir", "src/a.txt"]] {
        let mut args = vec!["extract", "--stdout", rel.as_str()];
        args.extend(paths.iter().copied());
        let ours = rborg_ok(scratch, &[], &args).stdout;
        let theirs = borg_ok(peer, scratch, &args).stdout;
        assert!(ours == theirs, "extract --stdout {paths:?} differs");
        assert!(!ours.is_empty());
    }
    let out = rborg(scratch, &[], &["extract", "--dry-run", &rel, "src/nothere"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "Include pattern 'src/nothere' never matched."
    );
    borg_ok(peer, scratch, &["delete", &rel]);
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
    let mut json_cases = vec![
        vec!["list", "--json", repo],
        vec![
            "list",
            "--json",
            "--format",
            "{hostname}{end}{comment}",
            repo,
        ],
    ];
    if peer.name == "1.4" {
        json_cases.push(vec!["list", "--json", "--format", "{tam}", repo]);
    }
    for args in json_cases {
        let ours = stdout_json(&rborg_ok(scratch, none, &args));
        let theirs = stdout_json(&borg_ok(peer, scratch, &args));
        assert_eq!(ours, theirs, "borg {} {args:?}", peer.name);
    }

    // Archive contents.
    let one = format!("{repo}::one");
    for args in [
        vec!["list", one.as_str()],
        vec!["list", "--short", one.as_str(), "-e", "*.bin"],
        vec![
            "list",
            "--format",
            "{path} {num_chunks} {csize} {unique_chunks} {health} {xxh64} {sha256}{NL}",
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
    for (o, t) in ours.iter().zip(&theirs) {
        assert_eq!(o, t, "list --json-lines item, borg {}", peer.name);
    }
    assert_eq!(
        ours.len(),
        theirs.len(),
        "list --json-lines, borg {}",
        peer.name
    );
    assert!(ours.len() >= 10, "the tree has all its items");

    // info --json: statistics from rborg's synced chunk index equal borg's (its refcounts
    // included: total_chunks and total_unique_chunks). borg 1.2 counts metadata chunks into
    // the archive's deduplicated size, 1.4.2+ does not; rborg follows 1.4.
    let mut info_cases = vec![vec!["info", "--json", repo]];
    if peer.name == "1.4" {
        info_cases.push(vec!["info", "--json", one.as_str()]);
        info_cases.push(vec!["info", "--json", "-a", "*", repo]);
        let ours = rborg_ok(scratch, none, &["info", one.as_str()]);
        let theirs = borg_ok(peer, scratch, &["info", one.as_str()]);
        assert_eq!(
            String::from_utf8_lossy(&ours.stdout),
            String::from_utf8_lossy(&theirs.stdout),
            "info text"
        );
    }
    for args in info_cases {
        let mut ours = stdout_json(&rborg_ok(scratch, none, &args));
        let mut theirs = stdout_json(&borg_ok(peer, scratch, &args));
        // Each keeps its own cache directory.
        ours["cache"]["path"] = serde_json::Value::Null;
        theirs["cache"]["path"] = serde_json::Value::Null;
        assert_eq!(ours, theirs, "borg {} {args:?}", peer.name);
    }

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

    // delete --stats prints what borg prints (local copies, each with its own base dir).
    if repo.starts_with('/') {
        let mut outputs = Vec::new();
        for (tag, program) in [
            ("borg", peer.borg.clone()),
            ("rborg", env!("CARGO_BIN_EXE_rborg").into()),
        ] {
            let copy = scratch.path(&format!("copy-{tag}"));
            let base = scratch.path(&format!("base-{tag}"));
            std::fs::create_dir_all(&base).expect("base");
            assert!(Command::new("cp")
                .arg("-a")
                .arg(repo)
                .arg(&copy)
                .status()
                .expect("cp")
                .success());
            let out = Command::new(&program)
                .args(["delete", "--stats", &format!("{}::two", copy.display())])
                .envs(scratch.borg_env())
                .env("BORG_BASE_DIR", &base)
                .stdin(Stdio::null())
                .output()
                .expect("delete --stats");
            assert!(out.status.success(), "{tag} delete --stats");
            // From the table on (borg 1.2 also announces an unknown unencrypted repository).
            let text = String::from_utf8_lossy(&out.stderr).into_owned();
            let table = text.find("-----").map_or(text.as_str(), |i| &text[i..]);
            outputs.push(table.to_string());
        }
        assert_eq!(outputs[0], outputs[1], "delete --stats, borg {}", peer.name);
        assert!(outputs[1].contains("Deleted data:"));
    }

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

    // Bad input for extract and list: one line, borg's exit codes.
    let out = rborg(scratch, none, &["extract", &format!("{repo}::nope")]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "Archive nope does not exist"
    );
    let out = rborg(
        scratch,
        none,
        &["list", "--pattern", "x:bad", &format!("{repo}::again")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim().lines().count(),
        1
    );

    // Deleting the repository asks first; no answer aborts.
    let out = rborg(
        scratch,
        &[("BORG_DELETE_I_KNOW_WHAT_I_AM_DOING", "NO")],
        &["delete", repo],
    );
    assert_eq!(out.status.code(), Some(2));
    borg_ok(peer, scratch, &["list", repo]);
    rborg_ok(scratch, none, &["delete", repo]);
    assert!(!borg(peer, scratch, &["list", repo]).status.success());
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
