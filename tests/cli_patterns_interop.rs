//! The include/exclude options in command-line order: for option orders where the order
//! changes the result, `rborg create --dry-run --list`, `rborg extract --dry-run --list` and
//! `rborg list --short` select exactly what borg 1.2.4 and 1.4.5 select.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{borg12, borg14, borg_init, Peer, Scratch};

fn run(program: &Path, scratch: &Scratch, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .envs(scratch.borg_env())
        .current_dir(scratch.dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run")
}

fn rborg_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_rborg"))
}

/// A small tree where includes and excludes overlap.
fn make_tree(root: &Path) {
    for d in ["t/a/b", "t/a/c", "t/d"] {
        std::fs::create_dir_all(root.join(d)).expect("dir");
    }
    for f in [
        "t/a/x.tmp",
        "t/a/b/y.tmp",
        "t/a/b/z.txt",
        "t/a/c/w",
        "t/d/k.tmp",
        "t/d/l",
        "t/top.tmp",
    ] {
        std::fs::write(root.join(f), f.as_bytes()).expect("file");
    }
}

/// Option sequences; `ARCH` stands for the archive argument. Each pair differs only in order.
fn cases() -> Vec<Vec<&'static str>> {
    vec![
        vec!["--pattern", "+ t/a/b", "--exclude", "t/a", "ARCH", "t"],
        vec!["--exclude", "t/a", "--pattern", "+ t/a/b", "ARCH", "t"],
        vec![
            "--exclude-from",
            "ex.txt",
            "--pattern",
            "+ t/a/b",
            "ARCH",
            "t",
        ],
        vec![
            "--pattern",
            "+ t/a/b",
            "--exclude-from",
            "ex.txt",
            "ARCH",
            "t",
        ],
        vec![
            "-e",
            "t/a/b/z.txt",
            "--patterns-from",
            "pat.txt",
            "ARCH",
            "t",
        ],
        vec![
            "--patterns-from",
            "pat.txt",
            "-e",
            "t/a/b/z.txt",
            "ARCH",
            "t",
        ],
        vec![
            "--pattern",
            "- t/d",
            "-e",
            "*.tmp",
            "--pattern",
            "+ t/d/k.tmp",
            "ARCH",
            "t",
        ],
        vec![
            "--pattern",
            "+ t/d/k.tmp",
            "-e",
            "*.tmp",
            "--pattern",
            "- t/d",
            "ARCH",
            "t",
        ],
        // borg ignores a `P` line given with --pattern: the next line stays `sh:`.
        vec!["--pattern", "P fm", "--pattern", "- t/*.tmp", "ARCH", "t"],
        // For one full path, the last pf: rule wins.
        vec![
            "--pattern",
            "+ pf:t/d/l",
            "--pattern",
            "- pf:t/d/l",
            "ARCH",
            "t",
        ],
        vec![
            "--pattern",
            "- pf:t/d/l",
            "--pattern",
            "+ pf:t/d/l",
            "ARCH",
            "t",
        ],
        // Roots of `R` lines among positional paths.
        vec![
            "--pattern",
            "R t/a/c",
            "ARCH",
            "t/d",
            "--pattern",
            "R t/a/b",
        ],
        vec!["--patterns-from", "roots.txt", "ARCH"],
        vec!["ARCH", "t/d", "--pattern", "R t/a/c", "--exclude", "t/d/l"],
    ]
}

fn with_archive(case: &[&str], archive: &str) -> Vec<String> {
    case.iter()
        .map(|a| {
            if *a == "ARCH" {
                archive.to_string()
            } else {
                a.to_string()
            }
        })
        .collect()
}

fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Runs `command` with the case's options through borg and rborg and compares the selection.
fn compare(peer: &Peer, scratch: &Scratch, command: &[&str], case: &[&str], stdout: bool) {
    let mut args: Vec<String> = command.iter().map(|s| s.to_string()).collect();
    // A dry-run create of an existing name is an error for rborg but not for borg, which
    // only checks the name when it really creates; a fresh name keeps that apart.
    let archive = if command[0] == "create" {
        "repo::new"
    } else {
        "repo::arch"
    };
    args.extend(with_archive(case, archive));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let theirs = run(&peer.borg, scratch, &args);
    let ours = run(rborg_bin(), scratch, &args);
    assert_eq!(
        theirs.status.code(),
        ours.status.code(),
        "exit code of {args:?}, borg {}:\n{}\n{}",
        peer.name,
        String::from_utf8_lossy(&theirs.stderr),
        String::from_utf8_lossy(&ours.stderr)
    );
    let pick = |o: &Output| lines(if stdout { &o.stdout } else { &o.stderr });
    let (t, o) = (pick(&theirs), pick(&ours));
    assert!(
        !t.is_empty(),
        "borg {} selected nothing for {args:?}",
        peer.name
    );
    assert_eq!(t, o, "selection of {args:?}, borg {} vs rborg", peer.name);
}

#[test]
fn include_exclude_options_apply_in_command_line_order() {
    let scratch = Scratch::new();
    let root = scratch.dir.path();
    make_tree(root);
    std::fs::write(root.join("ex.txt"), "# excludes\nt/a\n").expect("exclude file");
    std::fs::write(root.join("pat.txt"), "P fm\n+ t/a/b\n- t/a\n").expect("pattern file");
    std::fs::write(root.join("roots.txt"), "R t/d\nR t/a/b\n- *.tmp\n").expect("roots file");
    let repo = root.join("repo");
    let b14 = borg14();
    borg_init(&b14, &scratch, &repo, "none");
    let made = run(&b14.borg, &scratch, &["create", "repo::arch", "t"]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );

    // Every case must matter: the two orders of each pair select different things.
    let order_matters = |a: &[&str], b: &[&str]| {
        let sel = |case: &[&str]| {
            let mut args = vec!["extract", "--dry-run", "--list"];
            let c = with_archive(case, "repo::arch");
            args.extend(c.iter().map(String::as_str));
            lines(&run(&b14.borg, &scratch, &args).stderr)
        };
        assert_ne!(sel(a), sel(b), "{a:?} and {b:?} select the same");
    };
    let all = cases();
    for pair in [0, 2, 4, 6, 9] {
        order_matters(&all[pair], &all[pair + 1]);
    }

    // No PATH and no `R` line: borg's parser refuses, and so does rborg.
    for program in [borg14().borg.as_path(), rborg_bin()] {
        let out = run(program, &scratch, &["create", "--dry-run", "repo::new"]);
        assert_eq!(out.status.code(), Some(2), "{}", program.display());
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(text.contains("Need at least one PATH argument."), "{text}");
    }

    // A pattern file that is not there: borg's message and exit code.
    for args in [
        ["list", "--patterns-from", "nope.txt", "repo::arch"],
        ["extract", "--exclude-from", "nope.txt", "repo::arch"],
        ["create", "--exclude-from", "nope.txt", "repo::new"],
    ] {
        let theirs = run(&borg14().borg, &scratch, &args);
        let ours = run(rborg_bin(), &scratch, &args);
        assert_eq!(theirs.status.code(), ours.status.code(), "{args:?}");
        assert_eq!(
            String::from_utf8_lossy(&theirs.stderr),
            String::from_utf8_lossy(&ours.stderr),
            "{args:?}"
        );
    }

    for peer in [borg12(), borg14()] {
        for case in &all {
            compare(
                &peer,
                &scratch,
                &["create", "--dry-run", "--list"],
                case,
                false,
            );
            // extract and list take archive paths: the positional `t` is a path prefix there.
            compare(
                &peer,
                &scratch,
                &["extract", "--dry-run", "--list"],
                case,
                false,
            );
            compare(&peer, &scratch, &["list", "--short"], case, true);
        }
    }
}
