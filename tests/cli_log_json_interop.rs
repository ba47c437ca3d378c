//! `--log-json` errors and per-file warnings carry borg's `msgid` (the name of borg's exception
//! class), the same as borg 1.4.5 gives for the same failure, so a tool that reads the JSON
//! log can tell failures apart without parsing messages.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{borg14, borg_init, Scratch};

/// Runs `program` with `args` (and `BORG_PASSPHRASE` = `passphrase`); returns the exit code
/// and the `msgid` of every stderr record at `level`.
fn msgids(
    program: &Path,
    scratch: &Scratch,
    passphrase: &str,
    args: &[&str],
    level: &str,
) -> (i32, Vec<String>) {
    let out = Command::new(program)
        .arg("--log-json")
        .args(args)
        .envs(scratch.borg_env())
        .env("BORG_PASSPHRASE", passphrase)
        .current_dir(scratch.dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut ids = Vec::new();
    for line in stderr.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {line}", program.display()));
        assert_eq!(v["type"], "log_message", "{line}");
        if v["levelname"] == level {
            ids.push(v["msgid"].as_str().unwrap_or("<none>").to_string());
        }
    }
    (out.status.code().unwrap_or(-1), ids)
}

#[test]
fn errors_and_warnings_have_borgs_msgids() {
    let peer = borg14();
    let scratch = Scratch::new();
    let repo = scratch.path("repo");
    borg_init(&peer, &scratch, &repo, "repokey");
    let repo = repo.to_string_lossy().to_string();
    let missing = scratch.path("missing").to_string_lossy().to_string();
    let nothere = scratch.path("nothere").to_string_lossy().to_string();
    let rborg = Path::new(env!("CARGO_BIN_EXE_rborg"));
    // The passphrase `Scratch::borg_env` sets.
    let pass = "rborg-test-passphrase";
    let cases: Vec<(&str, &str, Vec<String>, &str)> = vec![
        ("no repository", pass, vec!["list".into(), missing], "ERROR"),
        (
            "wrong passphrase",
            "wrong",
            vec!["list".into(), repo.clone()],
            "ERROR",
        ),
        (
            "vanished path",
            pass,
            vec![
                "create".into(),
                format!("{repo}::{{now:%Y-%m-%dT%H:%M:%S.%f}}"),
                nothere,
            ],
            "WARNING",
        ),
    ];
    for (what, passphrase, args, level) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let want = msgids(&peer.borg, &scratch, passphrase, &args, level);
        let got = msgids(rborg, &scratch, passphrase, &args, level);
        assert!(!want.1.is_empty(), "{what}: borg logged no {level} record");
        assert_eq!(got, want, "{what}: (rc, msgids) of rborg vs borg 1.4.5");
    }
}
