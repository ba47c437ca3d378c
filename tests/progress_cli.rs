//! `rborg create --progress`: borg's progress fields plus a rate and, with the content total
//! counted beside the backup, an ETA, on stderr; `--json` keeps stdout a single clean JSON
//! document; `--log-json` turns progress into borg's `archive_progress` records.

mod common;

use std::fs;
use std::process::{Command, Output, Stdio};

use common::{borg14, borg_ok, pseudo_random, Scratch};

fn rborg(scratch: &Scratch, args: &[&str]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_rborg"))
        .args(args)
        .envs(scratch.borg_env())
        .current_dir(scratch.dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run rborg");
    assert!(
        o.status.success(),
        "rborg {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// A repository and a source tree of 6 MiB of incompressible data.
fn setup() -> (Scratch, String) {
    let scratch = Scratch::new();
    let src = scratch.path("src");
    fs::create_dir_all(src.join("d")).unwrap();
    for i in 0..3 {
        fs::write(src.join(format!("d/f{i}")), pseudo_random(2 << 20, i + 1)).unwrap();
    }
    let repo = scratch.path("repo").to_str().unwrap().to_string();
    borg_ok(&borg14(), &scratch, &["init", "-e", "repokey", &repo]);
    (scratch, repo)
}

#[test]
fn progress_lines_carry_rate_and_eta_and_json_stdout_stays_clean() {
    let (scratch, repo) = setup();
    // lzma at level 6 takes any build (and machine) about a second or more for these 6 MiB,
    // so there are several reports 0.2 s apart, most after the count beside the backup is done.
    let o = rborg(
        &scratch,
        &[
            "create",
            "--progress",
            "--json",
            "-C",
            "lzma,6",
            &format!("{repo}::a"),
            "src",
        ],
    );
    // stdout: exactly the one JSON document.
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("clean JSON stdout");
    assert_eq!(doc["archive"]["name"], "a");
    let total = 3 * (2u64 << 20);
    assert_eq!(doc["archive"]["stats"]["original_size"], total);
    // stderr is not a terminal here: one full line per report, then borg's empty final line.
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.last(), Some(&""), "{err}");
    let reports: Vec<&str> = lines.iter().copied().filter(|l| !l.is_empty()).collect();
    assert!(reports.len() >= 2, "{err}");
    for l in &reports {
        // borg's fields first: `<size> O <size> C <size> D <n> N `, then the rate.
        let f: Vec<&str> = l.split(' ').collect();
        assert_eq!((f[2], f[5], f[8], f[10]), ("O", "C", "D", "N"), "{l}");
        assert!(f[12].ends_with("B/s"), "{l}");
    }
    // Once the count beside the backup is in: a share done and an ETA, then the path.
    let with_eta: Vec<&&str> = reports.iter().filter(|l| l.contains(" ETA ")).collect();
    assert!(!with_eta.is_empty(), "no ETA in:\n{err}");
    for l in with_eta {
        let f: Vec<&str> = l.split(' ').collect();
        let pct: u32 = f[13].trim_end_matches('%').parse().expect(l);
        assert!(pct <= 100 && f[13].ends_with('%'), "{l}");
        assert_eq!(f[14], "ETA");
        let hms: Vec<&str> = f[15].split(':').collect();
        assert_eq!(hms.len(), 3, "{l}");
        assert!(f[16].starts_with("src/d"), "{l}");
    }
    // `--log-json`: borg's `archive_progress` records instead (the same data read again, the
    // files cache off so that it is read; the first report comes at once, the last is the
    // closing record).
    let o = rborg(
        &scratch,
        &[
            "create",
            "--progress",
            "--log-json",
            "--files-cache",
            "disabled",
            &format!("{repo}::b"),
            "src",
        ],
    );
    assert!(o.stdout.is_empty());
    let records: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["type"] == "archive_progress")
        .collect();
    assert!(records.len() >= 2, "{records:?}");
    let (last, rest) = records.split_last().unwrap();
    assert_eq!(last["finished"], true);
    for r in rest {
        assert_eq!(r["finished"], false);
        assert!(r["original_size"].as_u64().is_some(), "{r}");
        assert!(
            r["path"].as_str().is_some_and(|p| p.starts_with("src")),
            "{r}"
        );
        assert!(r["time"].as_f64().is_some(), "{r}");
    }
}
