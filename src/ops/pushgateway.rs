//! Reporting a run to a Prometheus Pushgateway in the text exposition format.
//!
//! Every push is a `POST` to `<url>/metrics/job/<job>/instance/<instance>`. A POST replaces only
//! the metric families it carries within that group, whereas a PUT replaces the whole group. That
//! difference is what keeps alerting honest: a failed run pushes `borgmatic_last_run_status 1`
//! but no `borgmatic_last_run_timestamp_seconds`, so the gateway keeps the time of the last
//! success and "last success too old" fires on time; and a backup run that includes no check does
//! not wipe `rborg_last_check_*` pushed by the weekly check run.
//!
//! The `borgmatic_*` names are the ones community borgmatic exporters and dashboards use; the
//! `rborg_*` ones are ours.

use std::fmt::Write as _;
use std::time::Duration;

use super::config::PushgatewayConfig;
use super::http;
use super::runner::{ActionKind, ActionStatus, RunSummary};
use super::schedule::unix_seconds;

/// What can go wrong pushing. A push failure is reported as a warning of the run, never an error.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The HTTP exchange failed.
    #[error("pushgateway: {0}")]
    Http(#[from] http::HttpError),
}

/// The default `job` label.
pub const DEFAULT_JOB: &str = "rborg";

/// One metric family with its samples.
struct Family<'a> {
    name: &'a str,
    help: &'a str,
    samples: Vec<(Vec<(&'a str, String)>, f64)>,
}

/// Escapes a label value for the text format.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Escapes a grouping-key value for a URL path segment (percent-encoding all but unreserved).
fn escape_path_segment(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn render(families: &[Family<'_>]) -> String {
    let mut out = String::new();
    for f in families {
        if f.samples.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} gauge", f.name);
        for (labels, value) in &f.samples {
            out.push_str(f.name);
            if !labels.is_empty() {
                out.push('{');
                for (i, (k, v)) in labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}=\"{}\"", escape_label(v));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {value}");
        }
    }
    out
}

/// The metrics of a finished run, in the text exposition format.
///
/// For a backup run (one whose plan includes `create`): `borgmatic_last_run_status` (0 ok or
/// warnings only, 1 failed), `rborg_last_run_exit_code`, `rborg_last_run_duration_seconds`; on
/// success also `borgmatic_last_run_timestamp_seconds` and, per repository whose create
/// succeeded, the archive's file count and sizes. A run without `create` (the weekly check)
/// says nothing about backups, so it must not refresh the last-success time. When checks ran:
/// `rborg_last_check_status`, and on success `rborg_last_check_timestamp_seconds`.
pub fn exposition(summary: &RunSummary) -> String {
    let succeeded = summary.exit_code() <= 1;
    let finished = unix_seconds(summary.finished) as f64;
    let backup_run = summary.planned_actions.contains(&ActionKind::Create);
    let mut families = Vec::new();
    if backup_run {
        families.extend(backup_families(summary, succeeded, finished));
    }
    families.extend(check_families(summary, finished));
    render(&families)
}

fn backup_families(summary: &RunSummary, succeeded: bool, finished: f64) -> Vec<Family<'_>> {
    let mut families = vec![
        Family {
            name: "borgmatic_last_run_status",
            help: "Outcome of the last backup run: 0 succeeded (possibly with warnings), 1 failed.",
            samples: vec![(vec![], if succeeded { 0.0 } else { 1.0 })],
        },
        Family {
            name: "rborg_last_run_exit_code",
            help: "Exit code of the last run: 0 success, 1 warning, 2 error (borg's codes).",
            samples: vec![(vec![], summary.exit_code() as f64)],
        },
        Family {
            name: "rborg_last_run_duration_seconds",
            help: "Wall-clock duration of the last run, hooks included.",
            samples: vec![(vec![], summary.duration().as_secs_f64())],
        },
    ];
    if succeeded {
        families.push(Family {
            name: "borgmatic_last_run_timestamp_seconds",
            help: "Unix time at which the last successful backup run finished.",
            samples: vec![(vec![], finished)],
        });
        let mut files = Vec::new();
        let mut original = Vec::new();
        let mut compressed = Vec::new();
        let mut deduplicated = Vec::new();
        for repo in &summary.repositories {
            for action in &repo.actions {
                if action.action != ActionKind::Create || !action.status.succeeded() {
                    continue;
                }
                if let Some(s) = &action.stats {
                    let labels = vec![("repository", repo.label.clone())];
                    files.push((labels.clone(), s.nfiles as f64));
                    original.push((labels.clone(), s.original_size as f64));
                    compressed.push((labels.clone(), s.compressed_size as f64));
                    deduplicated.push((labels, s.deduplicated_size as f64));
                }
            }
        }
        families.push(Family {
            name: "rborg_last_archive_files",
            help: "Number of files in the archive the last run created.",
            samples: files,
        });
        families.push(Family {
            name: "rborg_last_archive_original_size_bytes",
            help: "Original size of the archive the last run created.",
            samples: original,
        });
        families.push(Family {
            name: "rborg_last_archive_compressed_size_bytes",
            help: "Compressed size of the archive the last run created.",
            samples: compressed,
        });
        families.push(Family {
            name: "rborg_last_archive_deduplicated_size_bytes",
            help: "Deduplicated size (new data) of the archive the last run created.",
            samples: deduplicated,
        });
    }
    families
}

fn check_families(summary: &RunSummary, finished: f64) -> Vec<Family<'static>> {
    let mut families = Vec::new();
    let checks: Vec<_> = summary
        .repositories
        .iter()
        .flat_map(|r| r.actions.iter())
        .filter(|a| a.action == ActionKind::Check && a.status != ActionStatus::Skipped)
        .collect();
    if !checks.is_empty() {
        // borgmatic treats a check warning (borg rc 1: problems found) as a failure.
        let ok = checks.iter().all(|a| a.status == ActionStatus::Ok);
        families.push(Family {
            name: "rborg_last_check_status",
            help: "Outcome of the last consistency check: 0 passed, 1 failed or found problems.",
            samples: vec![(vec![], if ok { 0.0 } else { 1.0 })],
        });
        if ok {
            families.push(Family {
                name: "rborg_last_check_timestamp_seconds",
                help: "Unix time at which the last passing consistency check finished.",
                samples: vec![(vec![], finished)],
            });
        }
    }
    families
}

/// The grouping-key URL for `config` (`<url>/metrics/job/<job>/instance/<instance>`).
pub fn group_url(config: &PushgatewayConfig, hostname: &str) -> String {
    let job = config.job.as_deref().unwrap_or(DEFAULT_JOB);
    let instance = config.instance.as_deref().unwrap_or(hostname);
    format!(
        "{}/metrics/job/{}/instance/{}",
        config.url.trim_end_matches('/'),
        escape_path_segment(job),
        escape_path_segment(instance)
    )
}

/// POSTs `body` (text exposition) to the group of `config`.
pub fn push(config: &PushgatewayConfig, hostname: &str, body: &str) -> Result<(), PushError> {
    let url = group_url(config, hostname);
    let password = config.password.as_ref().map(|p| p.expose()).unwrap_or("");
    http::send(&http::Request {
        method: "POST",
        url: &url,
        content_type: "text/plain; version=0.0.4; charset=utf-8",
        body: body.as_bytes(),
        basic_auth: config.username.as_deref().map(|u| (u, password)),
        timeout: Duration::from_secs(config.timeout.unwrap_or(10).max(1)),
    })?;
    Ok(())
}

/// This machine's host name (the default `instance`), or `localhost` if it cannot be read.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".to_string();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(s) if !s.is_empty() => s.to_string(),
        _ => "localhost".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(escape_path_segment("host-1.lan"), "host-1.lan");
        assert_eq!(escape_path_segment("a/b c"), "a%2Fb%20c");
        let cfg = PushgatewayConfig {
            url: "http://127.0.0.1:9091/".into(),
            job: None,
            instance: None,
            username: None,
            password: None,
            timeout: None,
        };
        assert_eq!(
            group_url(&cfg, "alpha"),
            "http://127.0.0.1:9091/metrics/job/rborg/instance/alpha"
        );
    }

    fn summary(planned: Vec<ActionKind>, actions: Vec<(ActionKind, ActionStatus)>) -> RunSummary {
        use super::super::runner::{ActionOutcome, RepositoryOutcome, Severity};
        use std::time::UNIX_EPOCH;
        let failed = actions.iter().any(|a| a.1 == ActionStatus::Failed);
        RunSummary {
            started: UNIX_EPOCH + Duration::from_secs(100),
            finished: UNIX_EPOCH + Duration::from_secs(160),
            repositories: vec![RepositoryOutcome {
                label: "nas".into(),
                path: "/r".into(),
                actions: actions
                    .into_iter()
                    .map(|(action, status)| ActionOutcome {
                        action,
                        status,
                        message: None,
                        attempts: 1,
                        duration: Duration::ZERO,
                        stats: None,
                        checks: vec![],
                    })
                    .collect(),
            }],
            errors: vec![],
            warnings: vec![],
            severity: if failed {
                Severity::Error
            } else {
                Severity::Success
            },
            planned_actions: planned,
        }
    }

    #[test]
    fn what_each_kind_of_run_reports() {
        use ActionKind::*;
        let ok = exposition(&summary(
            vec![Create, Check],
            vec![(Create, ActionStatus::Ok), (Check, ActionStatus::Ok)],
        ));
        assert!(
            ok.contains("# TYPE borgmatic_last_run_status gauge\nborgmatic_last_run_status 0\n"),
            "{ok}"
        );
        assert!(
            ok.contains("\nborgmatic_last_run_timestamp_seconds 160\n"),
            "{ok}"
        );
        assert!(
            ok.contains("\nrborg_last_run_duration_seconds 60\n"),
            "{ok}"
        );
        assert!(ok.contains("\nrborg_last_check_status 0\n"), "{ok}");
        let failed = exposition(&summary(vec![Create], vec![(Create, ActionStatus::Failed)]));
        assert!(
            failed.contains("\nborgmatic_last_run_status 1\n"),
            "{failed}"
        );
        assert!(!failed.contains("timestamp"), "{failed}");
        assert!(!failed.contains("check"), "{failed}");
        // A check-only run must not touch the backup metrics.
        let check = exposition(&summary(vec![Check], vec![(Check, ActionStatus::Failed)]));
        assert!(!check.contains("borgmatic_"), "{check}");
        assert!(check.contains("\nrborg_last_check_status 1\n"), "{check}");
        assert!(
            !check.contains("rborg_last_check_timestamp_seconds"),
            "{check}"
        );
        // Nothing to say: nothing to push.
        assert_eq!(
            exposition(&summary(vec![Prune], vec![(Prune, ActionStatus::Ok)])),
            ""
        );
    }

    #[test]
    fn hostname_is_not_empty() {
        assert!(!hostname().is_empty());
    }
}
