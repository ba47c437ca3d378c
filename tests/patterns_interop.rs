//! borg's own pattern code (borg 1.2.4 and 1.4.5, run through their Python) and rborg's
//! `patterns` module decide the same for a table of patterns and paths.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use rborg::patterns::{Pattern, PatternMatcher, Style};

/// The Python interpreter that has borg's modules for one peer.
fn borg_python(var: &str, default_borg: &str, python_in_dir: bool) -> PathBuf {
    let borg = PathBuf::from(std::env::var(var).unwrap_or_else(|_| default_borg.to_string()));
    assert!(
        borg.exists(),
        "{var}: borg peer {} is missing; run scripts/install-peers.sh",
        borg.display()
    );
    if python_in_dir {
        borg.with_file_name("python")
    } else {
        PathBuf::from("/usr/bin/python3")
    }
}

/// Runs `script` with borg's Python, `input` as JSON on stdin, and parses its JSON answer.
fn ask_borg<T: serde::de::DeserializeOwned>(
    python: &PathBuf,
    script: &str,
    input: &impl serde::Serialize,
) -> T {
    let mut child = Command::new(python)
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start borg's python");
    let input = serde_json::to_vec(input).expect("json");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&input)
        .expect("write");
    let out = child.wait_with_output().expect("borg's python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("borg's answer")
}

const PATTERNS: &[&str] = &[
    "/home/user/cache",
    "*.tmp",
    "/a/*/c",
    "fm:/a/b/",
    "/a/?",
    "/a/[bc]",
    "/a/[!bc]",
    "/a/[a-c]x",
    "/a/[c-a]x",
    "/a/[]]x",
    "/a/[!]x",
    "/a/[x",
    "sh:/a/*/c",
    "sh:/a/**/c",
    "sh:**/*.pyc",
    "sh:/a/b/",
    "sh:/a/b",
    "sh:a/**/",
    "pp:/a/b",
    "pp:/a/b/",
    "pf:/a/b",
    "pf:a//b/../b",
    "re:\\.tmp$",
    "re:^a/b",
    "re:^/a/b",
    "fm:a/./b",
    "sh:/a/[!x]*",
    "fm:*/ü*",
];

const PATHS: &[&str] = &[
    "/home/user/cache",
    "/home/user/cache/x/y",
    "/home/user/cachex",
    "/a/b/c.tmp",
    "/a/x/y/c",
    "/a/x/c",
    "/a/c",
    "/a/b",
    "/a/b/c",
    "/a/bc",
    "/a/d",
    "/a/bx",
    "/a/]x",
    "/a/[x",
    "/a/!x",
    "/x/y/z.pyc",
    "/a/b/c/d",
    "/x/y.tmp",
    "/q/über",
    "a/b",
    "/a",
];

#[test]
fn shell_fnmatch_regex_prefix_styles_match_borg() {
    for (var, default, venv) in [
        ("RBORG_BORG12", "/usr/bin/borg", false),
        (
            "RBORG_BORG14",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/target/peers/borg-1.4.5/bin/borg"
            ),
            true,
        ),
    ] {
        let python = borg_python(var, default, venv);
        let script = r#"
import sys, json
from borg.patterns import parse_pattern, FnmatchPattern
pats, paths = json.load(sys.stdin)
out = []
for p in pats:
    pat = parse_pattern(p, FnmatchPattern)
    out.append([bool(pat.match(x.lstrip('/'))) for x in paths])
print(json.dumps(out))
"#;
        let borg: Vec<Vec<bool>> = ask_borg(&python, script, &(PATTERNS, PATHS));
        for (pi, p) in PATTERNS.iter().enumerate() {
            let ours = Pattern::parse(p, Style::Fnmatch, false).expect("pattern");
            for (xi, x) in PATHS.iter().enumerate() {
                let path = x.trim_start_matches('/').as_bytes();
                assert_eq!(
                    ours.matches(path),
                    borg[pi][xi],
                    "{var}: pattern {p:?} on path {x:?}"
                );
            }
        }
    }
}

#[test]
fn pattern_files_decide_like_borg() {
    let lines = "# comment\nR /home\n+ /home/user/important\n- /home/user/*\n! /home/other\nP fm\n- *.tmp\n+ re:keep\n- /srv\n";
    let paths = [
        "/home/user/important/x",
        "/home/user/junk",
        "/home/other/x",
        "/srv/a.tmp",
        "/srv/keep.txt",
        "/srv/a.txt",
        "/opt/a",
    ];
    for (var, default, venv) in [
        ("RBORG_BORG12", "/usr/bin/borg", false),
        (
            "RBORG_BORG14",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/target/peers/borg-1.4.5/bin/borg"
            ),
            true,
        ),
    ] {
        let python = borg_python(var, default, venv);
        let script = r#"
import sys, json, io
from borg.patterns import load_pattern_file, PatternMatcher
text, paths = json.load(sys.stdin)
roots, cmds = [], []
load_pattern_file(io.StringIO(text), roots, cmds)
m = PatternMatcher(fallback=None)
m.add_inclexcl(cmds)
out = []
for p in paths:
    r = m.match(p)
    out.append([r, m.recurse_dir])
print(json.dumps([roots, out]))
"#;
        let (roots, decisions): (Vec<String>, Vec<(Option<bool>, bool)>) =
            ask_borg(&python, script, &(lines, paths));
        let mut pm = PatternMatcher::new();
        pm.add_patterns_file(lines).expect("patterns");
        assert_eq!(pm.roots, roots, "{var}: roots");
        for (path, want) in paths.iter().zip(decisions) {
            let r = pm.matches(path.as_bytes());
            assert_eq!((r.included, r.recurse_dir), want, "{var}: {path}");
        }
    }
}
