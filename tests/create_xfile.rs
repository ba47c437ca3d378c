//! The cross-file pipeline of `rborg create` (small files in flight on the worker pool) against
//! the sequential path (`RBORG_CREATE_THREADS=1`): on copies of one repository (same key, same
//! chunk seed) both write the same item stream — same items in the same order with the same
//! chunk ids and sizes — the same statistics and the same `--list` output and warnings, and
//! borg 1.4.5 checks the result with `--verify-data`.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{borg14, borg_ok, Scratch};

/// Small chunks so that a file of a few dozen KiB is several chunks.
const CHUNKER: &str = "buzhash,10,16,12,4095";

fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Low entropy so compression has something to do.
            b"abcdefghijklmnop"[(x >> 60) as usize]
        })
        .collect()
}

/// Many small files (duplicates among them, empty ones, shared chunks), directories,
/// symlinks, a hardlink pair and one file big enough for the large-file path in the middle.
fn make_tree(root: &Path) {
    for d in 0..12u64 {
        let dir = root.join(format!("d{d}"));
        fs::create_dir_all(dir.join("sub")).unwrap();
        for f in 0..25u64 {
            let n = (d * 25 + f) as usize;
            let content = match n % 5 {
                0 => Vec::new(),
                // The same content in many files: dedup inside the window.
                1 => pseudo_random(20_000, 7),
                // A shared prefix, then a private tail: some chunks shared.
                2 => [pseudo_random(30_000, 9), pseudo_random(n * 97, n as u64)].concat(),
                _ => pseudo_random(n * 311 % 60_000, n as u64 + 100),
            };
            fs::write(dir.join(format!("f{f}")), &content).unwrap();
            if f % 7 == 0 {
                fs::write(
                    dir.join("sub").join(format!("g{f}")),
                    &content[..content.len() / 2],
                )
                .unwrap();
            }
        }
        symlink(format!("f{d}"), dir.join("link")).unwrap();
        if d == 5 {
            fs::write(dir.join("big"), pseudo_random(3 << 20, 55)).unwrap();
            fs::hard_link(dir.join("f3"), dir.join("hard")).unwrap();
        }
    }
    // The files cache keeps no file with the newest ctime (borg's `_newest_cmtime`): let that
    // be this one alone.
    std::thread::sleep(std::time::Duration::from_millis(50));
    fs::write(root.join("newest"), b"newest").unwrap();
}

fn run(scratch: &Scratch, base: &Path, threads: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rborg"))
        .args(args)
        .envs(scratch.borg_env())
        .env("BORG_BASE_DIR", base)
        .env("RBORG_CREATE_THREADS", threads)
        .current_dir(scratch.dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run rborg")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The archive's items as borg 1.4.5 dumps them (with chunk ids and sizes).
fn dumped_items(scratch: &Scratch, archive: &str) -> serde_json::Value {
    let out = scratch.path("dump.json");
    let _ = fs::remove_file(&out);
    borg_ok(
        &borg14(),
        scratch,
        &["debug", "dump-archive", archive, out.to_str().unwrap()],
    );
    let v: serde_json::Value = serde_json::from_slice(&fs::read(&out).unwrap()).unwrap();
    v["_items"].clone()
}

fn copy_dir(from: &Path, to: &Path) {
    let ok = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a failed");
}

#[test]
fn cross_file_pipeline_writes_what_the_sequential_path_writes() {
    let scratch = Scratch::new();
    let peer = borg14();
    let src = scratch.path("src");
    make_tree(&src);
    let repo_a = scratch.path("repo-a");
    let repo_b = scratch.path("repo-b");
    borg_ok(
        &peer,
        &scratch,
        &["init", "-e", "repokey", repo_a.to_str().unwrap()],
    );
    copy_dir(&repo_a, &repo_b);
    let (base_a, base_b) = (scratch.path("base-a"), scratch.path("base-b"));
    let mut outputs = Vec::new();
    for (repo, base, threads) in [(&repo_a, &base_a, "1"), (&repo_b, &base_b, "3")] {
        fs::create_dir_all(base).unwrap();
        let archive = format!("{}::x", repo.display());
        // /proc/self/mem is a small regular file whose read fails (EIO): a warning, status
        // E, exit 1, and the rest is backed up.
        let o = run(
            &scratch,
            base,
            threads,
            &[
                "create",
                "--list",
                "--json",
                "-C",
                "lz4",
                "--chunker-params",
                CHUNKER,
                &archive,
                "src/d0",
                "/proc/self/mem",
                "src",
            ],
        );
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let j: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("bad json ({e}):\n{}", text(&o)));
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(stderr.contains("E /proc/self/mem"), "{stderr}");
        assert!(stderr.contains("A src/d5/big"), "{stderr}");
        assert!(stderr.contains("h src/d5/hard"), "{stderr}");
        outputs.push((
            j["archive"]["stats"].clone(),
            stderr,
            dumped_items(&scratch, &archive),
        ));
    }
    let (stats_a, list_a, items_a) = &outputs[0];
    let (stats_b, list_b, items_b) = &outputs[1];
    assert_eq!(stats_a, stats_b);
    assert_eq!(list_a, list_b);
    assert_eq!(items_a, items_b);
    let items = items_a.as_array().unwrap();
    // 300 files, 24 in sub/, the big file, the hardlink, 12 symlinks, 25 directories (d0
    // is walked once, as the first root).
    assert_eq!(items.len(), 388);
    assert!(items
        .iter()
        .any(|i| i["chunks"].as_array().is_some_and(|c| c.len() > 3)));
    // Objects were really written by the pool's path, and borg reads them all.
    borg_ok(
        &peer,
        &scratch,
        &["check", "--verify-data", repo_b.to_str().unwrap()],
    );
    // The files cache was filled on the pool's path: a re-run reads nothing.
    let o = run(
        &scratch,
        &base_b,
        "3",
        &[
            "create",
            "--list",
            "--json",
            "--chunker-params",
            CHUNKER,
            &format!("{}::y", repo_b.display()),
            "src",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    let read_again: Vec<&str> = stderr.lines().filter(|l| l.starts_with("A ")).collect();
    assert_eq!(read_again, ["A src/newest"], "{stderr}");
    assert!(stderr.contains("U src/d3/f4"), "{stderr}");
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["archive"]["stats"]["deduplicated_size"], 0, "{j}");
}
