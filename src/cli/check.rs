//! `rborg check`: borg's flags, plus `--full` (repository + archives + verify-data, the weekly
//! job in one word).

use std::io::{BufRead, IsTerminal, Write};

use clap::Args;

use rborg::check::ArchiveCheckOptions;
use rborg::commands::check::{check, CheckOptions};
use rborg::crypto::passphrase::TtyPrompter;
use rborg::location::Location;
use rborg::manifest::SortBy;
use rborg::rpc::ClientOptions;

use super::{CliError, Context, Outcome};

/// Arguments of `rborg check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The repository, or REPOSITORY::ARCHIVE to check one archive.
    #[arg(value_name = "REPOSITORY_OR_ARCHIVE", default_value = "")]
    location: String,
    /// Only perform repository checks.
    #[arg(long = "repository-only")]
    repository_only: bool,
    /// Only perform archives checks.
    #[arg(long = "archives-only")]
    archives_only: bool,
    /// Perform cryptographic archive data integrity verification (implies archive checks).
    #[arg(long = "verify-data")]
    verify_data: bool,
    /// Repository checks, archive checks and data verification together.
    #[arg(long)]
    full: bool,
    /// Attempt to repair any inconsistencies found.
    #[arg(long)]
    repair: bool,
    /// Work slower, but using less space (accepted for borg compatibility).
    #[arg(long = "save-space")]
    save_space: bool,
    /// Do only a partial repository check for at most SECONDS.
    #[arg(long = "max-duration", value_name = "SECONDS", default_value_t = 0)]
    max_duration: u64,
    /// Consider the first N archives after other filters were applied.
    #[arg(long, value_name = "N")]
    first: Option<usize>,
    /// Consider the last N archives after other filters were applied.
    #[arg(long, value_name = "N")]
    last: Option<usize>,
    /// Only consider archive names starting with this prefix (deprecated).
    #[arg(short = 'P', long, value_name = "PREFIX")]
    prefix: Option<String>,
    /// Only consider archive names matching the glob.
    #[arg(short = 'a', long = "glob-archives", value_name = "GLOB")]
    glob_archives: Option<String>,
    /// Comma-separated list of sorting keys (timestamp, name, id).
    #[arg(long = "sort-by", value_name = "KEYS")]
    sort_by: Option<String>,
    /// Worker threads for data verification (default: all cores).
    #[arg(long, value_name = "N", default_value_t = 0)]
    threads: usize,
}

fn parse_sort(keys: &str) -> Result<Vec<SortBy>, CliError> {
    keys.split(',')
        .map(|k| match k {
            "timestamp" | "ts" => Ok(SortBy::Timestamp),
            "name" | "archive" => Ok(SortBy::Name),
            "id" => Ok(SortBy::Id),
            other => Err(CliError::usage(format!("Invalid sort key: {other}"))),
        })
        .collect()
}

/// borg's `yes()` for the repair question: the environment variable decides when set (only
/// `YES` agrees), else a line read from stdin.
fn confirm_repair(ctx: &Context) -> bool {
    let answer = match ctx.env.get("BORG_CHECK_I_KNOW_WHAT_I_AM_DOING") {
        Some(v) => v.to_string(),
        None => {
            let mut err = std::io::stderr();
            let _ = write!(
                err,
                "This is a potentially dangerous function.\n\
                 check --repair might lead to data loss (for kinds of corruption it is not\n\
                 capable of dealing with). BE VERY CAREFUL!\n\n\
                 Type 'YES' if you understand this and want to continue: "
            );
            let _ = err.flush();
            let mut line = String::new();
            if std::io::stdin().lock().read_line(&mut line).is_err() {
                line.clear();
            }
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    if answer == "YES" {
        return true;
    }
    eprintln!("Aborting.");
    false
}

/// Runs the check and maps the result to borg's exit codes (0 clean, 1 problems, 2 error).
pub fn run(ctx: &Context, args: CheckArgs) -> Result<Outcome, CliError> {
    let verify_data = args.verify_data || args.full;
    if args.repair && !confirm_repair(ctx) {
        return Err(CliError::with_code("Cancelled by user.", 3));
    }
    if args.repository_only
        && (verify_data
            || args.first.is_some()
            || args.last.is_some()
            || args.prefix.is_some()
            || args.glob_archives.is_some())
    {
        return Err(CliError::usage("--repository-only contradicts --first, --last, --glob-archives, --prefix and --verify-data arguments."));
    }
    if args.repair && args.max_duration > 0 {
        return Err(CliError::usage(
            "--repair does not allow --max-duration argument.",
        ));
    }
    if args.max_duration > 0 && !args.repository_only {
        return Err(CliError::usage(
            "--repository-only is required for --max-duration support.",
        ));
    }
    if args.full && (args.repository_only || args.archives_only) {
        return Err(CliError::usage(
            "--full checks everything; it contradicts --repository-only and --archives-only.",
        ));
    }
    let location = Location::parse(&args.location, ctx.env.get("BORG_REPO"))
        .map_err(|e| CliError::usage(e.to_string()))?;
    let glob = match (&args.glob_archives, &args.prefix) {
        (Some(g), _) => Some(g.clone()),
        (None, Some(p)) => Some(format!("{p}*")),
        (None, None) => None,
    };
    let options = CheckOptions {
        repository_only: args.repository_only,
        archives_only: args.archives_only,
        repair: args.repair,
        max_duration: args.max_duration,
        archives: ArchiveCheckOptions {
            repair: args.repair,
            verify_data,
            archive: location.archive.clone(),
            first: args.first,
            last: args.last,
            glob,
            sort_by: parse_sort(args.sort_by.as_deref().unwrap_or("ts"))?,
            threads: args.threads,
        },
    };
    let access = ctx.common.access(&ctx.env)?;
    let open = ctx.common.open_options(true);
    let show_progress = ctx.common.progress;
    let json = ctx.common.log_json;
    let mut client = ClientOptions {
        location: location.canonical_path(),
        ..ClientOptions::default()
    };
    if show_progress {
        client.progress = Some(Box::new(move |p| {
            if let (Some(msg), false) = (&p.message, p.finished) {
                progress_line(
                    json,
                    p.msgid.as_deref().unwrap_or(""),
                    msg,
                    p.current,
                    p.total,
                );
            }
        }));
    }
    let mut progress = |msgid: &str, current: u64, total: u64| {
        if show_progress && total > 0 {
            let pct = current as f64 * 100.0 / total as f64;
            let msg = match msgid {
                "check.verify_data" => format!("Verifying data {pct:6.2}%"),
                _ => format!("Checking archives {pct:3.1}%"),
            };
            progress_line(json, msgid, &msg, Some(current), Some(total));
            if current >= total && json {
                progress_finished(msgid);
            }
        }
    };
    let crypto = ctx.env.crypto_settings();
    let outcome = check(
        &location,
        &access,
        &open,
        client,
        &crypto,
        &mut TtyPrompter,
        &options,
        &mut progress,
    )?;
    if show_progress && !json {
        eprintln!();
    }
    if let Some(a) = &outcome.archives {
        // A run that found problems says so even without --info.
        let level = if a.error_found {
            log::Level::Warn
        } else {
            log::Level::Info
        };
        log::log!(
            target: "borg.check",
            level,
            "Summary: {} archives checked, {} objects verified ({} integrity errors), {} missing file chunks, {} orphaned objects{}{}.",
            a.archives_checked,
            a.chunks_verified,
            a.integrity_errors,
            a.missing_chunks,
            a.orphans,
            if a.manifest_rebuilt { ", manifest rebuilt" } else { "" },
            if a.archives_removed.is_empty() {
                String::new()
            } else {
                format!(", archives removed: {}", a.archives_removed.join(", "))
            }
        );
    }
    if outcome.is_clean(args.repair) {
        Ok(Outcome::Success)
    } else {
        Ok(Outcome::Warning(1))
    }
}

/// The closing record of a progress display, as borg's `ProgressIndicatorPercent.finish`
/// writes it with `--log-json`.
fn progress_finished(msgid: &str) {
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    let line = serde_json::json!({
        "type": "progress_percent",
        "operation": 1,
        "msgid": msgid,
        "finished": true,
        "time": time,
    });
    eprintln!("{line}");
}

fn progress_line(json: bool, msgid: &str, message: &str, current: Option<u64>, total: Option<u64>) {
    let mut err = std::io::stderr().lock();
    if json {
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        let line = serde_json::json!({
            "type": "progress_percent",
            "msgid": msgid,
            "message": message,
            "current": current,
            "total": total,
            "operation": 1,
            "info": serde_json::Value::Null,
            "finished": false,
            "time": time,
        });
        let _ = writeln!(err, "{line}");
    } else if err.is_terminal() {
        let _ = write!(err, "\r{message}");
    } else {
        let _ = writeln!(err, "{message}");
    }
}
