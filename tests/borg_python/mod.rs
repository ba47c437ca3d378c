//! Runs Python snippets inside real borg installations (1.2.4 and 1.4.5) for the chunker and
//! compression interop tests. Each borg's Python is the interpreter named in the shebang of its
//! `borg` script, found through `RBORG_BORG12` / `RBORG_BORG14`. A missing peer fails the test.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The two peers: a label and the Python interpreter that imports that borg.
pub fn peers() -> Vec<(&'static str, PathBuf)> {
    let b12 = std::env::var("RBORG_BORG12").unwrap_or_else(|_| "/usr/bin/borg".into());
    let b14 = std::env::var("RBORG_BORG14")
        .unwrap_or_else(|_| "/work/main/target/peers/borg-1.4.5/bin/borg".into());
    vec![
        ("borg 1.2.4", python_of(&b12)),
        ("borg 1.4.5", python_of(&b14)),
    ]
}

fn python_of(borg: &str) -> PathBuf {
    let script = std::fs::read(borg).unwrap_or_else(|e| {
        panic!("borg peer {borg} is missing ({e}); install it with scripts/install-peers.sh")
    });
    let first = script.split(|&b| b == b'\n').next().unwrap_or_default();
    let shebang = String::from_utf8_lossy(first);
    let interp = shebang
        .strip_prefix("#!")
        .unwrap_or_else(|| panic!("{borg} has no shebang line"))
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("{borg} has an empty shebang line"));
    PathBuf::from(interp)
}

/// Runs `code` with `python`, feeding `stdin`; returns stdout. Panics with stderr on failure.
pub fn run_python(python: &PathBuf, code: &str, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new(python)
        .arg("-c")
        .arg(code)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", python.display()));
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("python output");
    writer.join().expect("stdin writer");
    assert!(
        out.status.success(),
        "{} failed: {}",
        python.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
