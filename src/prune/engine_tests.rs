//! Unit tests of the prune engine alone (the interop tests against real borg are in
//! `tests/prune_interop.rs`).

use super::*;

fn archive(n: usize, name: &str, utc: &str) -> PruneArchive {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&(n as u64 + 1).to_be_bytes());
    PruneArchive {
        name: name.to_string(),
        id,
        ts: parse_manifest_time(utc).unwrap(),
    }
}

/// Archives named `b-<time>` at the given UTC times (`YYYY-MM-DDTHH:MM:SS`).
fn set(times: &[&str]) -> Vec<PruneArchive> {
    times
        .iter()
        .enumerate()
        .map(|(n, t)| archive(n, &format!("b-{t}"), t))
        .collect()
}

fn settings(version: BorgVersion, now: &str) -> PruneSettings {
    PruneSettings {
        version,
        zone: LocalZone::utc(),
        now: parse_manifest_time(now).unwrap(),
        filter: ArchiveFilter::All,
    }
}

/// (name without `b-`, reason text or "checkpoint") for every kept archive, newest first.
fn kept(decisions: &[Decision]) -> Vec<(String, String)> {
    decisions
        .iter()
        .filter_map(|d| {
            let name = d.archive.name.trim_start_matches("b-").to_string();
            match d.verdict {
                Verdict::Keep(r) => Some((name, r.to_string())),
                Verdict::KeepCheckpoint => Some((name, "checkpoint".to_string())),
                Verdict::Prune => None,
            }
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// The archive set of the worked example in the spec (archive.md §6).
fn worked_example() -> Vec<PruneArchive> {
    let mut times: Vec<String> = ["2024-06-15", "2024-08-15", "2024-09-30"]
        .iter()
        .map(|d| format!("{d}T12:00:00"))
        .collect();
    let mut day = jiff::civil::date(2024, 12, 1);
    while day <= jiff::civil::date(2025, 2, 24) {
        times.push(format!("{day}T12:00:00"));
        day = day.checked_add(jiff::Span::new().days(5)).unwrap();
    }
    for d in 1..=20 {
        if d != 15 {
            times.push(format!("2025-03-{d:02}T12:00:00"));
        }
    }
    times.push("2025-03-20T10:00:00".into());
    times.push("2025-03-20T18:00:00".into());
    let refs: Vec<&str> = times.iter().map(String::as_str).collect();
    let mut archives = set(&refs);
    let n = archives.len();
    for (k, t) in ["2025-03-05T13:00:00", "2025-03-21T09:00:00"]
        .iter()
        .enumerate()
    {
        archives.push(archive(n + k, &format!("b-{t}.checkpoint"), t));
    }
    archives
}

fn rules(f: impl FnOnce(&mut PruneRules)) -> PruneRules {
    let mut r = PruneRules::default();
    f(&mut r);
    r
}

#[test]
fn worked_example_daily_weekly_monthly() {
    let archives = worked_example();
    let r = rules(|r| {
        r.daily = 7;
        r.weekly = 4;
        r.monthly = 6;
    });
    let d = prune(
        &archives,
        &r,
        &settings(BorgVersion::V1_4_5, "2025-03-22T00:00:00"),
    )
    .unwrap();
    assert_eq!(d.len(), archives.len());
    assert_eq!(
        kept(&d),
        pairs(&[
            ("2025-03-21T09:00:00.checkpoint", "checkpoint"),
            ("2025-03-20T18:00:00", "daily #1"),
            ("2025-03-19T12:00:00", "daily #2"),
            ("2025-03-18T12:00:00", "daily #3"),
            ("2025-03-17T12:00:00", "daily #4"),
            ("2025-03-16T12:00:00", "daily #5"),
            ("2025-03-14T12:00:00", "daily #6"),
            ("2025-03-13T12:00:00", "daily #7"),
            ("2025-03-09T12:00:00", "weekly #1"),
            ("2025-03-02T12:00:00", "weekly #2"),
            ("2025-02-24T12:00:00", "monthly #1"),
            ("2025-02-19T12:00:00", "weekly #3"),
            ("2025-02-14T12:00:00", "weekly #4"),
            ("2025-01-30T12:00:00", "monthly #2"),
            ("2024-12-31T12:00:00", "monthly #3"),
            ("2024-09-30T12:00:00", "monthly #4"),
            ("2024-08-15T12:00:00", "monthly #5"),
            ("2024-06-15T12:00:00", "monthly #6"),
        ])
    );
    let pruned = d.iter().filter(|d| d.verdict == Verdict::Prune).count();
    assert_eq!(pruned, 26); // 25 archives + 1 checkpoint
    let old_checkpoint = d
        .iter()
        .find(|d| d.archive.name == "b-2025-03-05T13:00:00.checkpoint")
        .unwrap();
    assert_eq!(old_checkpoint.verdict, Verdict::Prune);
    // the same with 1.2.4
    let d12 = prune(
        &archives,
        &r,
        &settings(BorgVersion::V1_2_4, "2025-03-22T00:00:00"),
    )
    .unwrap();
    assert_eq!(d12, d);
}

#[test]
fn worked_example_yearly_uses_oldest_fallback() {
    let archives = worked_example();
    let d = prune(
        &archives,
        &rules(|r| r.yearly = 5),
        &settings(BorgVersion::V1_2_4, "2025-03-22T00:00:00"),
    )
    .unwrap();
    assert_eq!(
        kept(&d),
        pairs(&[
            ("2025-03-21T09:00:00.checkpoint", "checkpoint"),
            ("2025-03-20T18:00:00", "yearly #1"),
            ("2024-12-31T12:00:00", "yearly #2"),
            ("2024-06-15T12:00:00", "yearly[oldest] #3"),
        ])
    );
    // borg 1.1 had no fallback
    let d11 = prune(
        &archives,
        &rules(|r| r.yearly = 5),
        &settings(BorgVersion::new(1, 1, 18), "2025-03-22T00:00:00"),
    )
    .unwrap();
    assert_eq!(kept(&d11).len(), 3);
}

#[test]
fn yearly_after_monthly_keeps_nothing_extra() {
    let archives = worked_example();
    let base = rules(|r| {
        r.daily = 7;
        r.weekly = 4;
        r.monthly = 6;
    });
    let with_yearly = PruneRules {
        yearly: 3,
        ..base.clone()
    };
    let s = settings(BorgVersion::V1_4_5, "2025-03-22T00:00:00");
    assert_eq!(
        kept(&prune(&archives, &base, &s).unwrap()),
        kept(&prune(&archives, &with_yearly, &s).unwrap())
    );
}

#[test]
fn keep_last_then_daily_consumes_the_day() {
    let archives = worked_example();
    let d = prune(
        &archives,
        &rules(|r| {
            r.secondly = 3;
            r.daily = 2;
        }),
        &settings(BorgVersion::V1_4_5, "2025-03-22T00:00:00"),
    )
    .unwrap();
    assert_eq!(
        kept(&d),
        pairs(&[
            ("2025-03-21T09:00:00.checkpoint", "checkpoint"),
            ("2025-03-20T18:00:00", "secondly #1"),
            ("2025-03-20T12:00:00", "secondly #2"),
            ("2025-03-20T10:00:00", "secondly #3"),
            ("2025-03-19T12:00:00", "daily #1"),
            ("2025-03-18T12:00:00", "daily #2"),
        ])
    );
}

#[test]
fn quarterly_13weekly_uses_iso_years() {
    let archives = worked_example();
    let d = prune(
        &archives,
        &rules(|r| r.quarterly_13weekly = 4),
        &settings(BorgVersion::V1_4_5, "2025-03-22T00:00:00"),
    )
    .unwrap();
    assert_eq!(
        kept(&d),
        pairs(&[
            ("2025-03-21T09:00:00.checkpoint", "checkpoint"),
            ("2025-03-20T18:00:00", "quarterly_13weekly #1"),
            ("2024-12-26T12:00:00", "quarterly_13weekly #2"),
            ("2024-08-15T12:00:00", "quarterly_13weekly #3"),
            ("2024-06-15T12:00:00", "quarterly_13weekly #4"),
        ])
    );
}

#[test]
fn quarterly_3monthly() {
    let archives = worked_example();
    let d = prune(
        &archives,
        &rules(|r| r.quarterly_3monthly = 4),
        &settings(BorgVersion::V1_4_5, "2025-03-22T00:00:00"),
    )
    .unwrap();
    let names: Vec<String> = kept(&d).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "2025-03-21T09:00:00.checkpoint",
            "2025-03-20T18:00:00",
            "2024-12-31T12:00:00",
            "2024-09-30T12:00:00",
            "2024-06-15T12:00:00"
        ]
    );
}

#[test]
fn keep_within_then_daily() {
    // archives at now - {1, 30, 47, 49, 72, 96, 120} hours
    let now = parse_manifest_time("2025-03-10T12:00:00").unwrap();
    let archives: Vec<PruneArchive> = [1i64, 30, 47, 49, 72, 96, 120]
        .iter()
        .enumerate()
        .map(|(n, h)| {
            let ts = now
                .checked_sub(jiff::SignedDuration::from_hours(*h))
                .unwrap();
            archive(n, &format!("b-minus{h}"), &format_manifest_time(ts))
        })
        .collect();
    let s = PruneSettings {
        now,
        ..settings(BorgVersion::V1_4_5, "2025-03-10T12:00:00")
    };
    let d = prune(
        &archives,
        &rules(|r| {
            r.within_hours = Some(parse_interval("2d").unwrap());
            r.daily = 2;
        }),
        &s,
    )
    .unwrap();
    assert_eq!(
        kept(&d),
        pairs(&[
            ("minus1", "within #1"),
            ("minus30", "within #2"),
            ("minus47", "within #3"),
            ("minus72", "daily #1"),
            ("minus96", "daily #2"),
        ])
    );
    // exactly at the limit is not "within" (strictly newer)
    let edge = vec![archive(0, "edge", "2025-03-08T12:00:00")];
    let d = prune(
        &edge,
        &rules(|r| r.within_hours = Some(48)),
        &settings(BorgVersion::V1_4_5, "2025-03-10T12:00:00"),
    )
    .unwrap();
    assert_eq!(d[0].verdict, Verdict::Prune);
    let d = prune(
        &edge,
        &rules(|r| r.within_hours = Some(48)),
        &settings(BorgVersion::V1_4_5, "2025-03-10T11:59:59.999999"),
    )
    .unwrap();
    assert!(matches!(d[0].verdict, Verdict::Keep(_)));
}

#[test]
fn each_period_rule_keeps_newest_of_each_period() {
    // two archives in each second/minute/hour/... so each rule has to choose
    let archives = set(&[
        "2025-03-10T12:00:00.100000",
        "2025-03-10T12:00:00.200000",
        "2025-03-10T12:00:30",
        "2025-03-10T12:30:00",
        "2025-03-10T14:00:00",
        "2025-03-11T01:00:00",
    ]);
    let s = settings(BorgVersion::V1_4_5, "2025-03-12T00:00:00");
    let check = |r: PruneRules, expected: &[&str]| {
        let d = prune(&archives, &r, &s).unwrap();
        let names: Vec<String> = kept(&d).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, expected, "{r:?}");
    };
    check(
        rules(|r| r.secondly = -1),
        &[
            "2025-03-11T01:00:00",
            "2025-03-10T14:00:00",
            "2025-03-10T12:30:00",
            "2025-03-10T12:00:30",
            "2025-03-10T12:00:00.200000",
        ],
    );
    check(
        rules(|r| r.minutely = -1),
        &[
            "2025-03-11T01:00:00",
            "2025-03-10T14:00:00",
            "2025-03-10T12:30:00",
            "2025-03-10T12:00:30",
        ],
    );
    check(
        rules(|r| r.hourly = -1),
        &[
            "2025-03-11T01:00:00",
            "2025-03-10T14:00:00",
            "2025-03-10T12:30:00",
        ],
    );
    check(
        rules(|r| r.daily = -1),
        &["2025-03-11T01:00:00", "2025-03-10T14:00:00"],
    );
    // a negative count never uses the oldest fallback
    check(rules(|r| r.weekly = -1), &["2025-03-11T01:00:00"]);
    check(
        rules(|r| r.weekly = 2),
        &["2025-03-11T01:00:00", "2025-03-10T12:00:00.100000"],
    );
    check(rules(|r| r.monthly = 1), &["2025-03-11T01:00:00"]);
    check(rules(|r| r.yearly = 1), &["2025-03-11T01:00:00"]);
}

#[test]
fn iso_week_53_and_week_1() {
    // 2020-12-31 (Thu) .. 2021-01-03 (Sun) are all ISO week 2020-W53;
    // 2021-01-04 (Mon) starts 2021-W01; 2019-12-30 (Mon) is 2020-W01.
    let archives = set(&[
        "2019-12-29T12:00:00",
        "2019-12-30T12:00:00",
        "2020-12-28T12:00:00",
        "2020-12-31T12:00:00",
        "2021-01-03T12:00:00",
        "2021-01-04T12:00:00",
    ]);
    let d = prune(
        &archives,
        &rules(|r| r.weekly = -1),
        &settings(BorgVersion::V1_2_4, "2021-02-01T00:00:00"),
    )
    .unwrap();
    let names: Vec<String> = kept(&d).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "2021-01-04T12:00:00",
            "2021-01-03T12:00:00",
            "2019-12-30T12:00:00",
            "2019-12-29T12:00:00"
        ]
    );
    // yearly uses the calendar year instead
    let d = prune(
        &archives,
        &rules(|r| r.yearly = -1),
        &settings(BorgVersion::V1_2_4, "2021-02-01T00:00:00"),
    )
    .unwrap();
    let names: Vec<String> = kept(&d).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "2021-01-04T12:00:00",
            "2020-12-31T12:00:00",
            "2019-12-30T12:00:00"
        ]
    );
}

#[test]
fn oldest_fills_unmet_quota_only_if_not_kept() {
    let archives = set(&[
        "2025-01-01T12:00:00",
        "2025-01-01T13:00:00",
        "2025-01-02T12:00:00",
    ]);
    let s = settings(BorgVersion::V1_4_5, "2025-02-01T00:00:00");
    // daily 5: two days; the oldest (01-01 12:00) is not the newest of its day -> [oldest] #3
    let d = prune(&archives, &rules(|r| r.daily = 5), &s).unwrap();
    assert_eq!(
        kept(&d),
        pairs(&[
            ("2025-01-02T12:00:00", "daily #1"),
            ("2025-01-01T13:00:00", "daily #2"),
            ("2025-01-01T12:00:00", "daily[oldest] #3"),
        ])
    );
    // quota met exactly: no fallback
    let d = prune(&archives, &rules(|r| r.daily = 2), &s).unwrap();
    assert_eq!(kept(&d).len(), 2);
    // each rule may add its own [oldest] only once, and not when the oldest is kept already
    let d = prune(
        &archives,
        &rules(|r| {
            r.daily = 5;
            r.monthly = 5;
        }),
        &s,
    )
    .unwrap();
    assert_eq!(kept(&d).len(), 3);
}

#[test]
fn checkpoints() {
    let mut archives = set(&["2025-01-01T12:00:00", "2025-01-02T12:00:00"]);
    archives.push(archive(10, "x.checkpoint", "2025-01-03T12:00:00"));
    archives.push(archive(11, "x.checkpoint.2", "2025-01-01T18:00:00"));
    let s = settings(BorgVersion::V1_4_5, "2025-02-01T00:00:00");
    let d = prune(&archives, &rules(|r| r.daily = -1), &s).unwrap();
    let verdicts: Vec<(&str, Verdict)> = d
        .iter()
        .map(|d| (d.archive.name.as_str(), d.verdict))
        .collect();
    // the newest checkpoint is the newest candidate: kept; the other checkpoint never counts
    // as the newest of 2025-01-01 and is pruned.
    assert_eq!(verdicts[0], ("x.checkpoint", Verdict::KeepCheckpoint));
    assert_eq!(verdicts[2], ("x.checkpoint.2", Verdict::Prune));
    assert!(matches!(verdicts[3].1, Verdict::Keep(_)));
    // once a complete archive is newer, the checkpoint goes
    archives.push(archive(12, "b-new", "2025-01-04T12:00:00"));
    let d = prune(&archives, &rules(|r| r.daily = -1), &s).unwrap();
    assert!(d
        .iter()
        .filter(|d| d.archive.is_checkpoint())
        .all(|d| d.verdict == Verdict::Prune));
    assert!(is_checkpoint_name("a.checkpoint"));
    assert!(is_checkpoint_name("a.checkpoint.17"));
    assert!(is_checkpoint_name(".checkpoint"));
    assert!(!is_checkpoint_name("a.checkpoint."));
    assert!(!is_checkpoint_name("a.checkpoint.1x"));
    assert!(!is_checkpoint_name("a.checkpoints"));
    assert!(!is_checkpoint_name("a-checkpoint"));
}

#[test]
fn glob_and_prefix_select_candidates() {
    let archives = vec![
        archive(0, "host-1", "2025-01-01T12:00:00"),
        archive(1, "db-1", "2025-01-02T12:00:00"),
        archive(2, "host-1.checkpoint", "2025-01-03T12:00:00"),
    ];
    let mut s = settings(BorgVersion::V1_4_5, "2025-02-01T00:00:00");
    s.filter = ArchiveFilter::Glob("host-*".into());
    let d = prune(&archives, &rules(|r| r.daily = 1), &s).unwrap();
    let names: Vec<&str> = d.iter().map(|d| d.archive.name.as_str()).collect();
    assert_eq!(names, ["host-1.checkpoint", "host-1"]);
    // the checkpoint suffix may follow a glob that does not cover it
    s.filter = ArchiveFilter::Glob("host-1".into());
    assert_eq!(
        prune(&archives, &rules(|r| r.daily = 1), &s).unwrap().len(),
        2
    );
    s.filter = ArchiveFilter::Prefix("db".into());
    let d = prune(&archives, &rules(|r| r.daily = 1), &s).unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].archive.name, "db-1");
}

#[test]
fn equal_timestamps_come_out_in_reverse_manifest_order() {
    let archives = vec![
        archive(0, "a", "2025-01-01T12:00:00"),
        archive(1, "b", "2025-01-01T12:00:00"),
        archive(2, "c", "2025-01-01T11:00:00"),
    ];
    let d = prune(
        &archives,
        &rules(|r| r.daily = 1),
        &settings(BorgVersion::V1_4_5, "2025-02-01T00:00:00"),
    )
    .unwrap();
    let names: Vec<&str> = d.iter().map(|d| d.archive.name.as_str()).collect();
    assert_eq!(names, ["b", "a", "c"]);
    assert!(matches!(d[0].verdict, Verdict::Keep(_)));
}

#[test]
fn no_rule_and_bad_rules_are_errors() {
    let archives = worked_example();
    let s = settings(BorgVersion::V1_4_5, "2025-03-22T00:00:00");
    assert!(matches!(
        prune(&archives, &PruneRules::default(), &s),
        Err(PruneError::NoRule(_))
    ));
    let s12 = settings(BorgVersion::V1_2_4, "2025-03-22T00:00:00");
    assert!(matches!(
        prune(&archives, &rules(|r| r.quarterly_3monthly = 1), &s12),
        Err(PruneError::QuarterlyUnsupported(_))
    ));
}

#[test]
fn list_lines_match_borgs_format() {
    let archives = worked_example();
    let d = prune(
        &archives,
        &rules(|r| r.yearly = 5),
        &settings(BorgVersion::V1_4_5, "2025-03-22T00:00:00"),
    )
    .unwrap();
    let zone = LocalZone::utc();
    let lines = list_lines(&d, &zone, BorgVersion::V1_4_5, true);
    let id_hex = |a: &PruneArchive| hex::encode(a.id);
    assert_eq!(
        lines[0],
        format!(
            "Keeping checkpoint archive:                  b-2025-03-21T09:00:00.checkpoint     \
             Fri, 2025-03-21 09:00:00 [{}]",
            id_hex(&d[0].archive)
        )
    );
    assert_eq!(
        lines[1],
        format!(
            "Keeping archive (rule: yearly #1):           b-2025-03-20T18:00:00                \
             Thu, 2025-03-20 18:00:00 [{}]",
            id_hex(&d[1].archive)
        )
    );
    assert!(lines[2].starts_with("Would prune:                                 b-2025-03-20T12"));
    let lines12 = list_lines(&d, &zone, BorgVersion::V1_2_4, false);
    assert!(lines12[2].starts_with("Pruning archive (1/40):                  b-2025-03-20T12"));
    let last = d.len() - 1;
    assert!(lines12[last].starts_with("Keeping archive (rule: yearly[oldest] #3): b-2024-06-15"));
}

#[test]
fn summary_lines_count_the_manifest_and_the_decisions() {
    let archives = worked_example();
    let d = prune(
        &archives,
        &rules(|r| {
            r.daily = 7;
            r.weekly = 4;
            r.monthly = 6;
        }),
        &settings(BorgVersion::V1_4_5, "2025-03-22T00:00:00"),
    )
    .unwrap();
    assert_eq!(
        summary_lines(&archives, &d, BorgVersion::V1_4_5),
        [
            "Repository contains 42 normal archives and 2 checkpoint archives.",
            "Applying rules to the matching 42 archives and 2 checkpoints...",
            "Keeping 17 archives and 1 checkpoints, pruning 25 archives and 1 checkpoints.",
        ]
    );
    assert!(summary_lines(&archives, &d, BorgVersion::new(1, 4, 4)).is_empty());
    assert!(summary_lines(&archives, &d, BorgVersion::V1_2_4).is_empty());
}
