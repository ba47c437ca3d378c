//! rborg's prune engine against real `borg prune --dry-run --list` (borg 1.2.4 and 1.4.5).
//!
//! One repository per borg version gets a few hundred generated archives: one `borg create`,
//! then `prune_data/make_manifest.py`, run by that borg's own Python, rewrites the manifest with
//! copies of that archive under generated names and times (each a real archive object made by
//! borg's code; `--dry-run` prune only reads the manifest). Then, for several rule sets and for
//! `TZ=Europe/Berlin` and `TZ=UTC`, borg's `--list` output must equal rborg's line for line.

use std::path::PathBuf;
use std::process::{Command, Output};

use jiff::{SignedDuration, Timestamp};
use rborg::prune::{
    format_manifest_time, list_lines, parse_interval, parse_keep_count, parse_manifest_time, prune,
    summary_lines, ArchiveFilter, BorgVersion, LocalZone, PruneArchive, PruneError, PruneRules,
    PruneSettings, Verdict,
};

/// A borg peer: its executable and the Python that runs it (from the script's `#!` line).
struct Peer {
    borg: PathBuf,
    python: PathBuf,
    version: BorgVersion,
}

fn peer(env_var: &str, default: &str, version: BorgVersion) -> Peer {
    let borg = PathBuf::from(std::env::var(env_var).unwrap_or_else(|_| default.to_string()));
    assert!(
        borg.is_file(),
        "borg peer {} not found (set {env_var})",
        borg.display()
    );
    let script = std::fs::read_to_string(&borg).expect("borg is a Python script");
    let shebang = script.lines().next().unwrap_or_default();
    let python = shebang
        .strip_prefix("#!")
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("{} has no #! line", borg.display()));
    let out = Command::new(&borg).arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.trim(), format!("borg {version}"), "{}", borg.display());
    Peer {
        borg,
        python: PathBuf::from(python),
        version,
    }
}

fn borg12() -> Peer {
    peer("RBORG_BORG12", "/usr/bin/borg", BorgVersion::V1_2_4)
}

fn borg14() -> Peer {
    let default = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/target/peers/borg-1.4.5/bin/borg"
    );
    peer("RBORG_BORG14", default, BorgVersion::V1_4_5)
}

/// A repository with the generated archives, and those archives as the manifest lists them.
struct Fixture {
    dir: tempfile::TempDir,
    archives: Vec<PruneArchive>,
}

impl Fixture {
    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    fn borg(&self, peer: &Peer, tz: &str) -> Command {
        let mut cmd = Command::new(&peer.borg);
        cmd.env("BORG_BASE_DIR", self.dir.path().join("base"))
            .env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes")
            .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
            .env_remove("BORG_REPO")
            .env_remove("BORG_PASSPHRASE")
            .env("TZ", tz);
        cmd
    }
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// splitmix64: a fixed, seedable sequence so the archive set is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn at(utc: &str) -> Timestamp {
    parse_manifest_time(utc).unwrap()
}

/// Every `--keep-within` value the rule sets use, in hours (archives near their limits are left
/// out, so borg's "now" and ours, a moment apart, give the same answer).
const WITHIN: [&str; 4] = ["3d", "36H", "1m", "2w"];

/// The generated (name, time) list: several years of archives, clusters at the Europe/Berlin
/// DST changes, at year ends / ISO week 53, several per day and per minute, a recent stretch for
/// `--keep-within`, two prefixes, long names, equal timestamps and checkpoints.
fn generate(now: Timestamp) -> Vec<(String, Timestamp)> {
    let mut rng = Rng(0x005e_ed0f_b096);
    let mut times: Vec<Timestamp> = Vec::new();
    let jitter = |rng: &mut Rng| SignedDuration::from_micros(rng.below(86_400_000_000) as i64);
    // roughly every 5 days from 2019 to mid 2025, at a random time of day
    let mut day = at("2019-01-01T00:00:00");
    while day < at("2025-07-01T00:00:00") {
        times.push(day.checked_add(jitter(&mut rng)).unwrap());
        let step = 3 + rng.below(5) as i64;
        day = day
            .checked_add(SignedDuration::from_hours(24 * step))
            .unwrap();
    }
    // Europe/Berlin DST changes (01:00 UTC on the last Sunday of March and October)
    for change in [
        "2021-03-28",
        "2021-10-31",
        "2022-03-27",
        "2022-10-30",
        "2023-03-26",
        "2023-10-29",
        "2024-03-31",
        "2024-10-27",
    ] {
        for minute in [-130i64, -70, -40, -10, 20, 50, 80, 140] {
            let t = at(&format!("{change}T01:00:00"))
                .checked_add(SignedDuration::from_mins(minute))
                .unwrap()
                .checked_add(SignedDuration::from_micros(rng.below(60_000_000) as i64))
                .unwrap();
            times.push(t);
        }
    }
    // year ends: 2020 has an ISO week 53, 2024-12-30/31 are in 2025-W01; archives at 22:30 and
    // 23:30 UTC fall on the next day in Berlin
    for (start, days) in [("2020-12-26", 12), ("2021-12-27", 9), ("2024-12-27", 10)] {
        for d in 0..days {
            for hour in [9i64, 22, 23] {
                let t = at(&format!("{start}T00:00:00"))
                    .checked_add(SignedDuration::from_hours(24 * d + hour))
                    .unwrap()
                    .checked_add(SignedDuration::from_secs(1800 + rng.below(600) as i64))
                    .unwrap();
                times.push(t);
            }
        }
    }
    // a busy week in 2023: four a day
    for d in 0..7i64 {
        for _ in 0..4 {
            let t = at("2023-06-05T00:00:00")
                .checked_add(SignedDuration::from_hours(24 * d))
                .unwrap()
                .checked_add(jitter(&mut rng))
                .unwrap();
            times.push(t);
        }
    }
    // the last 40 days before now: every ~7 hours, plus a burst within one minute
    let mut t = now
        .checked_sub(SignedDuration::from_hours(24 * 40))
        .unwrap();
    while t < now.checked_sub(SignedDuration::from_mins(30)).unwrap() {
        times.push(t);
        t = t
            .checked_add(SignedDuration::from_mins(300 + rng.below(240) as i64))
            .unwrap();
    }
    let burst = now.checked_sub(SignedDuration::from_hours(5)).unwrap();
    let burst = Timestamp::from_second(burst.as_second() / 60 * 60).unwrap();
    for micros in [1_000_000i64, 1_000_500, 1_999_999, 17_000_000, 59_000_000] {
        times.push(
            burst
                .checked_add(SignedDuration::from_micros(micros))
                .unwrap(),
        );
    }
    // keep away from the --keep-within limits
    let limits: Vec<i64> = WITHIN
        .iter()
        .map(|w| now.as_second() - parse_interval(w).unwrap() as i64 * 3600)
        .collect();
    times.retain(|t| limits.iter().all(|l| (t.as_second() - l).abs() > 600));
    // microsecond precision as in the manifest
    let times: Vec<Timestamp> = times
        .into_iter()
        .map(|t| Timestamp::from_microsecond(t.as_microsecond()).unwrap())
        .collect();

    let mut archives: Vec<(String, Timestamp)> = Vec::new();
    for (n, ts) in times.iter().enumerate() {
        let prefix = if rng.below(3) == 0 { "db" } else { "host" };
        let mut name = if rng.below(25) == 0 {
            format!("{prefix}-a-rather-long-archive-name-of-this-host-{n:04}")
        } else {
            format!("{prefix}-{n:04}")
        };
        match rng.below(30) {
            0 => name.push_str(".checkpoint"),
            1 => name.push_str(&format!(".checkpoint.{}", 1 + rng.below(3))),
            _ => {}
        }
        archives.push((name, *ts));
    }
    // equal timestamps: borg orders them by reverse manifest (name) order
    let twin = archives[100].1;
    archives.push(("host-twin-a".to_string(), twin));
    archives.push(("host-twin-b".to_string(), twin));
    // the newest archive is a host checkpoint, so it is kept (for globs that include it)
    let newest = now.checked_sub(SignedDuration::from_mins(10)).unwrap();
    let newest = Timestamp::from_microsecond(newest.as_microsecond()).unwrap();
    archives.push(("host-9999.checkpoint".to_string(), newest));
    archives
}

/// Make the repository for `peer` and fill its manifest with the generated archives.
fn fixture(peer: &Peer, now: Timestamp) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture {
        dir,
        archives: Vec::new(),
    };
    let src = f.dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("file"), b"prune interop\n").unwrap();
    run_ok(
        f.borg(peer, "UTC")
            .args(["init", "-e", "none"])
            .arg(f.repo()),
    );
    run_ok(
        f.borg(peer, "UTC")
            .arg("create")
            .arg(format!("{}::base", f.repo().display()))
            .arg(&src),
    );

    let generated = generate(now);
    let entries: Vec<(String, String)> = generated
        .iter()
        .map(|(name, ts)| (name.clone(), format_manifest_time(*ts)))
        .collect();
    let entries_path = f.dir.path().join("entries.json");
    let out_path = f.dir.path().join("manifest.json");
    std::fs::write(&entries_path, serde_json::to_vec(&entries).unwrap()).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/prune_data/make_manifest.py"
    );
    run_ok(
        Command::new(&peer.python)
            .arg(script)
            .arg(f.repo())
            .arg("base")
            .arg(&entries_path)
            .arg(&out_path)
            .env("BORG_BASE_DIR", f.dir.path().join("base"))
            .env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes"),
    );
    let listed: Vec<(String, String, String)> =
        serde_json::from_slice(&std::fs::read(&out_path).unwrap()).unwrap();
    assert_eq!(listed.len(), generated.len());
    let archives = listed
        .into_iter()
        .map(|(name, id_hex, time)| {
            let id: [u8; 32] = hex::decode(id_hex).unwrap().try_into().unwrap();
            PruneArchive {
                name,
                id,
                ts: parse_manifest_time(&time).unwrap(),
            }
        })
        .collect();
    Fixture { archives, ..f }
}

/// borg's command-line options and the same rules for rborg's engine.
fn rule_set(args: &[&str]) -> (PruneRules, ArchiveFilter) {
    let mut rules = PruneRules::default();
    let mut filter = ArchiveFilter::All;
    let mut it = args.iter();
    while let Some(opt) = it.next() {
        let value = it.next().expect("every option here takes a value");
        let count = || parse_keep_count(value).unwrap();
        match *opt {
            "--keep-within" => rules.within_hours = Some(parse_interval(value).unwrap()),
            "--keep-last" | "--keep-secondly" => rules.secondly = count(),
            "--keep-minutely" => rules.minutely = count(),
            "-H" | "--keep-hourly" => rules.hourly = count(),
            "-d" | "--keep-daily" => rules.daily = count(),
            "-w" | "--keep-weekly" => rules.weekly = count(),
            "-m" | "--keep-monthly" => rules.monthly = count(),
            "--keep-13weekly" => rules.quarterly_13weekly = count(),
            "--keep-3monthly" => rules.quarterly_3monthly = count(),
            "-y" | "--keep-yearly" => rules.yearly = count(),
            "-a" | "--glob-archives" => filter = ArchiveFilter::Glob(value.to_string()),
            "-P" | "--prefix" => filter = ArchiveFilter::Prefix(value.to_string()),
            other => panic!("rule_set does not know {other}"),
        }
    }
    (rules, filter)
}

const COMMON_RULE_SETS: &[&[&str]] = &[
    &["-d", "7", "-w", "4", "-m", "6"],
    &[
        "--keep-last",
        "5",
        "-H",
        "24",
        "-d",
        "14",
        "-w",
        "8",
        "-m",
        "12",
        "-y",
        "-1",
    ],
    &["-y", "10"],
    &["--keep-within", "3d", "-d", "10", "-w", "10"],
    &["--keep-within", "36H", "--keep-minutely", "20", "-H", "30"],
    &["--keep-within", "1m", "-w", "2"],
    &["-a", "db-*", "-d", "5", "-w", "5", "-m", "-1"],
    &["-a", "*-[0-4]???", "--keep-secondly", "40", "-m", "30"],
    &["-P", "host-", "-m", "3", "-y", "3"],
    &["-a", "[!h]*", "--keep-within", "2w", "-H", "10"],
    &["-w", "-1"],
    &["-d", "-1"],
    &["-H", "400"],
];

const QUARTERLY_RULE_SETS: &[&[&str]] = &[
    &["--keep-13weekly", "12", "-d", "3"],
    &["--keep-3monthly", "12", "-w", "5"],
    &["-m", "4", "--keep-13weekly", "-1"],
];

/// Run every rule set in both time zones and compare the `--list` output line for line.
fn compare_with(peer: &Peer) {
    let now = Timestamp::now();
    let fixture = fixture(peer, now);
    assert!(fixture.archives.len() > 500, "{}", fixture.archives.len());
    let mut sets: Vec<&[&str]> = COMMON_RULE_SETS.to_vec();
    if peer.version.has_quarterly_rules() {
        sets.extend_from_slice(QUARTERLY_RULE_SETS);
    }
    let mut compared_lines = 0;
    let mut seen = [false; 3]; // kept by a rule, kept checkpoint, pruned
    let mut rules_seen = std::collections::BTreeSet::new();
    let mut zone_dependent = 0; // decisions that differ between Europe/Berlin and UTC
    for tz in ["Europe/Berlin", "UTC"] {
        let zone = LocalZone::named(tz).unwrap();
        for args in &sets {
            let (rules, filter) = rule_set(args);
            let settings = PruneSettings {
                version: peer.version,
                zone: zone.clone(),
                now: Timestamp::now(),
                filter,
            };
            let out = run_ok(
                fixture
                    .borg(peer, tz)
                    .args(["prune", "--dry-run", "--list"])
                    .args(*args)
                    .arg(fixture.repo()),
            );
            let decisions = prune(&fixture.archives, &rules, &settings).unwrap();
            let other_zone = PruneSettings {
                zone: LocalZone::named(if tz == "UTC" { "Europe/Berlin" } else { "UTC" }).unwrap(),
                ..settings.clone()
            };
            let in_other_zone = prune(&fixture.archives, &rules, &other_zone).unwrap();
            zone_dependent += decisions
                .iter()
                .zip(&in_other_zone)
                .filter(|(a, b)| a.verdict != b.verdict)
                .count();
            for d in &decisions {
                let k = match d.verdict {
                    Verdict::Keep(reason) => {
                        let oldest = if reason.oldest { "[oldest]" } else { "" };
                        rules_seen.insert(format!("{}{oldest}", reason.rule.name()));
                        0
                    }
                    Verdict::KeepCheckpoint => 1,
                    Verdict::Prune => 2,
                };
                seen[k] = true;
            }
            let ours = list_lines(&decisions, &zone, peer.version, true);
            let stderr = String::from_utf8(out.stderr).unwrap();
            let theirs: Vec<&str> = stderr.lines().collect();
            assert!(!theirs.is_empty(), "borg printed nothing for {args:?}");
            if let Some(i) = (0..ours.len().max(theirs.len()))
                .find(|&i| ours.get(i).map(String::as_str) != theirs.get(i).copied())
            {
                let from = i.saturating_sub(2);
                panic!(
                    "borg {} TZ={tz} {args:?}: line {i} differs\nborg:\n{}\nrborg:\n{}",
                    peer.version,
                    theirs[from..theirs.len().min(i + 3)].join("\n"),
                    ours[from.min(ours.len())..ours.len().min(i + 3)].join("\n"),
                );
            }
            compared_lines += ours.len();
        }
    }
    assert_eq!(
        seen, [true; 3],
        "the rule sets must keep, keep checkpoints and prune"
    );
    let mut expected = vec![
        "within",
        "secondly",
        "minutely",
        "hourly",
        "daily",
        "weekly",
        "monthly",
        "yearly",
        "yearly[oldest]",
    ];
    if peer.version.has_quarterly_rules() {
        expected.extend(["quarterly_13weekly", "quarterly_3monthly"]);
    }
    for rule in expected {
        assert!(
            rules_seen.contains(rule),
            "no archive kept by {rule}: {rules_seen:?}"
        );
    }
    assert!(zone_dependent > 0, "the time zone never mattered");
    eprintln!(
        "borg {}: {} archives, {} rule sets x 2 time zones, {compared_lines} --list lines equal, \
         {zone_dependent} decisions depend on the zone, rules seen: {rules_seen:?}",
        peer.version,
        fixture.archives.len(),
        sets.len()
    );

    // no rule at all: borg's error text (1.4 prefixes it with "Command Error: ")
    let out = fixture
        .borg(peer, "UTC")
        .args(["prune", "--dry-run", "--list"])
        .arg(fixture.repo())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let settings = PruneSettings {
        version: peer.version,
        zone: LocalZone::utc(),
        now,
        filter: ArchiveFilter::All,
    };
    let err = prune(&fixture.archives, &PruneRules::default(), &settings).unwrap_err();
    assert!(matches!(err, PruneError::NoRule(_)));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let message = stderr.trim_end().trim_start_matches("Command Error: ");
    assert_eq!(message, err.to_string());

    info_summary(peer, &fixture);
    real_prune(peer, &fixture);
}

/// With `--info`, borg 1.4.5 logs a three-line summary before the list; 1.2.4 logs nothing more.
fn info_summary(peer: &Peer, fixture: &Fixture) {
    let args = ["-a", "host-*", "-d", "9", "-m", "4"];
    let (rules, filter) = rule_set(&args);
    let zone = LocalZone::named("UTC").unwrap();
    let settings = PruneSettings {
        version: peer.version,
        zone: zone.clone(),
        now: Timestamp::now(),
        filter,
    };
    let decisions = prune(&fixture.archives, &rules, &settings).unwrap();
    let out = run_ok(
        fixture
            .borg(peer, "UTC")
            .args(["prune", "--info", "--dry-run", "--list"])
            .args(args)
            .arg(fixture.repo()),
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    let theirs: Vec<&str> = stderr.lines().collect();
    let mut ours = summary_lines(&fixture.archives, &decisions, peer.version);
    assert_eq!(
        ours.len(),
        if peer.version.has_prune_summary() {
            3
        } else {
            0
        }
    );
    ours.extend(list_lines(&decisions, &zone, peer.version, true));
    assert_eq!(theirs, ours, "borg {} --info", peer.version);
}

/// A real prune (no `--dry-run`): the `Pruning archive (i/n):` lines, then the archives left.
fn real_prune(peer: &Peer, fixture: &Fixture) {
    let tz = "Europe/Berlin";
    let args = ["-a", "db-*", "-d", "5", "-w", "6", "-y", "2"];
    let (rules, filter) = rule_set(&args);
    let zone = LocalZone::named(tz).unwrap();
    let settings = PruneSettings {
        version: peer.version,
        zone: zone.clone(),
        now: Timestamp::now(),
        filter,
    };
    let decisions = prune(&fixture.archives, &rules, &settings).unwrap();
    let out = run_ok(
        fixture
            .borg(peer, tz)
            .args(["prune", "--list"])
            .args(args)
            .arg(fixture.repo()),
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    let theirs: Vec<&str> = stderr.lines().collect();
    let ours = list_lines(&decisions, &zone, peer.version, false);
    assert!(ours.iter().any(|l| l.starts_with("Pruning archive (1/")));
    assert_eq!(theirs, ours, "borg {} real prune", peer.version);

    let out = run_ok(
        fixture
            .borg(peer, tz)
            .args(["list", "--short", "--consider-checkpoints"])
            .arg(fixture.repo()),
    );
    let mut left: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let pruned: std::collections::HashSet<&str> = decisions
        .iter()
        .filter(|d| d.verdict == Verdict::Prune)
        .map(|d| d.archive.name.as_str())
        .collect();
    let mut expected: Vec<String> = fixture
        .archives
        .iter()
        .filter(|a| !pruned.contains(a.name.as_str()))
        .map(|a| a.name.clone())
        .collect();
    left.sort();
    expected.sort();
    assert_eq!(
        left, expected,
        "borg {}: archives left after prune",
        peer.version
    );
}

#[test]
fn prune_matches_borg_1_2_4() {
    compare_with(&borg12());
}

#[test]
fn prune_matches_borg_1_4_5() {
    compare_with(&borg14());
}
