//! `rborg prune` on a borg-made repository with many archives: the same decisions and `--list`
//! lines as borg 1.4.5, the same surviving archives as a real `borg prune` on a copy, exact
//! reference counts (borg's check is clean, before and after `rborg compact`).

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{borg14, borg_init, borg_ok, Scratch};

fn run(program: &Path, scratch: &Scratch, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .envs(scratch.borg_env())
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .output()
        .expect("run")
}

fn rborg(scratch: &Scratch, args: &[&str]) -> Output {
    run(Path::new(env!("CARGO_BIN_EXE_rborg")), scratch, args)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output, what: &str) -> Output {
    assert!(o.status.success(), "{what}: {}\n{}", o.status, text(&o));
    o
}

/// Lines of a `--list` run that describe archives.
fn decision_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| {
            l.starts_with("Keeping") || l.starts_with("Would prune") || l.starts_with("Pruning")
        })
        .map(str::to_string)
        .collect()
}

fn archive_names(scratch: &Scratch, repo: &str) -> Vec<String> {
    let peer = borg14();
    let out = ok(
        run(&peer.borg, scratch, &["list", "--short", repo]),
        "borg list",
    );
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            dir_size(&e.path())
        } else {
            m.len()
        };
    }
    total
}

#[test]
fn prune_matches_borg_and_keeps_refcounts_exact() {
    let peer = borg14();
    let a = Scratch::new();
    let repo_path = a.path("repo");
    borg_init(&peer, &a, &repo_path, "repokey");
    let repo = repo_path.to_string_lossy().into_owned();
    let src = a.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("common"), vec![1u8; 200_000]).unwrap();
    let stamps = [
        "2024-06-15T12:00:00",
        "2024-08-15T12:00:00",
        "2024-09-30T12:00:00",
        "2024-12-26T12:00:00",
        "2024-12-31T12:00:00",
        "2025-01-30T12:00:00",
        "2025-02-14T12:00:00",
        "2025-02-19T12:00:00",
        "2025-02-24T12:00:00",
        "2025-03-02T12:00:00",
        "2025-03-09T12:00:00",
        "2025-03-13T12:00:00",
        "2025-03-14T12:00:00",
        "2025-03-16T12:00:00",
        "2025-03-17T12:00:00",
        "2025-03-18T12:00:00",
        "2025-03-20T10:00:00",
        "2025-03-20T18:00:00",
    ];
    for (i, ts) in stamps.iter().enumerate() {
        // Each archive has a unique file too, so pruning frees chunks of its own.
        let mut unique = Vec::new();
        let mut x = 0x1234_5678_9abc_def0u64 ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for _ in 0..30_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            unique.extend_from_slice(&x.to_le_bytes());
        }
        std::fs::write(src.join("unique"), unique).unwrap();
        ok(
            run(
                &peer.borg,
                &a,
                &[
                    "create",
                    "--timestamp",
                    ts,
                    &format!("{repo}::b-{ts}"),
                    src.to_str().unwrap(),
                ],
            ),
            "borg create",
        );
    }
    ok(
        run(
            &peer.borg,
            &a,
            &[
                "create",
                "--timestamp",
                "2025-03-05T13:00:00",
                &format!("{repo}::b-2025-03-05T13:00:00.checkpoint"),
                src.to_str().unwrap(),
            ],
        ),
        "checkpoint",
    );
    // A copy for borg's own prune, with its own base dir (same repository id).
    let b = Scratch::new();
    let status = Command::new("cp")
        .args(["-a", &repo, b.path("repo").to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let repo_b = b.path("repo").to_string_lossy().into_owned();

    let rules = [
        "--keep-daily",
        "7",
        "--keep-weekly",
        "4",
        "--keep-monthly",
        "6",
    ];
    let mut dry = vec!["prune", "--dry-run", "--list"];
    dry.extend(rules);
    dry.push(&repo);
    let borg_dry = ok(run(&peer.borg, &a, &dry), "borg prune --dry-run");
    let rborg_dry = ok(rborg(&a, &dry), "rborg prune --dry-run");
    let expected = decision_lines(&borg_dry);
    assert_eq!(expected.len(), stamps.len() + 1, "{}", text(&borg_dry));
    assert_eq!(decision_lines(&rborg_dry), expected);

    // No rule: an error, as in borg.
    let o = rborg(&a, &["prune", &repo]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    let mut real = vec!["prune", "--list", "--stats"];
    real.extend(rules);
    real.push(&repo);
    let o = ok(rborg(&a, &real), "rborg prune");
    assert!(text(&o).contains("Deleted data:"), "{}", text(&o));
    let lines = decision_lines(&o);
    assert!(
        lines.iter().any(|l| l.starts_with("Pruning archive (1/")),
        "{lines:?}"
    );
    let mut real_b = vec!["prune"];
    real_b.extend(rules);
    real_b.push(&repo_b);
    ok(run(&peer.borg, &b, &real_b), "borg prune on the copy");
    let names = archive_names(&a, &repo);
    assert_eq!(names.len(), 16, "{names:?}");
    assert_eq!(names, archive_names(&b, &repo_b));

    // Exact refcounts: nothing missing, no orphans.
    ok(
        run(&peer.borg, &a, &["check", &repo]),
        "borg check after rborg prune",
    );
    let before = dir_size(&a.path("repo/data"));
    ok(rborg(&a, &["compact", &repo]), "rborg compact");
    let after = dir_size(&a.path("repo/data"));
    assert!(
        after + 500_000 < before,
        "compact freed too little: {before} -> {after}"
    );
    ok(
        run(&peer.borg, &a, &["check", "--verify-data", &repo]),
        "borg check --verify-data after compact",
    );
    ok(
        rborg(&a, &["check", "--full", &repo]),
        "rborg check --full after compact",
    );
    borg_ok(&peer, &a, &["list", &repo]);
}
