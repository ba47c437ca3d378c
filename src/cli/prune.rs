//! `rborg prune`: borg's retention flags, `--list` lines, `--stats`, `--dry-run`.

use clap::Args;

use rborg::commands::delete::{DeleteOptions, Force};
use rborg::commands::prune::prune_repository;
use rborg::manifest::Operation;
use rborg::prune::{
    list_lines, parse_interval, parse_keep_count, summary_lines, ArchiveFilter, BorgVersion,
    LocalZone, PruneRules, PruneSettings,
};

use super::format;
use super::session;
use super::{CliError, Context, Outcome};

fn keep_count(s: &str) -> Result<i64, String> {
    parse_keep_count(s).map_err(|e| e.to_string())
}

fn keep_within(s: &str) -> Result<u64, String> {
    parse_interval(s).map_err(|e| e.to_string())
}

/// Arguments of `rborg prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// The repository.
    #[arg(value_name = "REPOSITORY", default_value = "")]
    location: String,
    /// Do not change the repository.
    #[arg(short = 'n', long = "dry-run")]
    dry_run: bool,
    /// Force pruning of corrupted archives (as `delete --force`).
    #[arg(long, action = clap::ArgAction::Count)]
    force: u8,
    /// Print statistics for the deleted archive.
    #[arg(short = 's', long)]
    stats: bool,
    /// Output a verbose list of archives it keeps/prunes.
    #[arg(long)]
    list: bool,
    /// Keep all archives within this time interval.
    #[arg(long = "keep-within", value_name = "INTERVAL", value_parser = keep_within)]
    keep_within: Option<u64>,
    /// Number of secondly archives to keep.
    #[arg(long = "keep-last", visible_alias = "keep-secondly", value_parser = keep_count, default_value = "0", allow_hyphen_values = true)]
    keep_secondly: i64,
    /// Number of minutely archives to keep.
    #[arg(long = "keep-minutely", value_parser = keep_count, default_value = "0", allow_hyphen_values = true)]
    keep_minutely: i64,
    /// Number of hourly archives to keep.
    #[arg(short = 'H', long = "keep-hourly", value_parser = keep_count, default_value = "0", allow_hyphen_values = true)]
    keep_hourly: i64,
    /// Number of daily archives to keep.
    #[arg(short = 'd', long = "keep-daily", value_parser = keep_count, default_value = "0", allow_hyphen_values = true)]
    keep_daily: i64,
    /// Number of weekly archives to keep.
    #[arg(short = 'w', long = "keep-weekly", value_parser = keep_count, default_value = "0", allow_hyphen_values = true)]
    keep_weekly: i64,
    /// Number of monthly archives to keep.
    #[arg(short = 'm', long = "keep-monthly", value_parser = keep_count, default_value = "0", allow_hyphen_values = true)]
    keep_monthly: i64,
    /// Number of quarterly archives to keep (13 week strategy).
    #[arg(long = "keep-13weekly", value_parser = keep_count, default_value = "0", allow_hyphen_values = true, conflicts_with = "keep_3monthly")]
    keep_13weekly: i64,
    /// Number of quarterly archives to keep (3 month strategy).
    #[arg(long = "keep-3monthly", value_parser = keep_count, default_value = "0", allow_hyphen_values = true)]
    keep_3monthly: i64,
    /// Number of yearly archives to keep.
    #[arg(short = 'y', long = "keep-yearly", value_parser = keep_count, default_value = "0", allow_hyphen_values = true)]
    keep_yearly: i64,
    /// Write checkpoint every SECONDS seconds (accepted; rborg commits once at the end).
    #[arg(
        short = 'c',
        long = "checkpoint-interval",
        value_name = "SECONDS",
        default_value_t = 1800
    )]
    checkpoint_interval: u64,
    /// Work slower, but using less space (accepted for borg compatibility).
    #[arg(long = "save-space")]
    save_space: bool,
    /// Only consider archive names starting with this prefix (deprecated).
    #[arg(
        short = 'P',
        long,
        value_name = "PREFIX",
        conflicts_with = "glob_archives"
    )]
    prefix: Option<String>,
    /// Only consider archive names matching the glob.
    #[arg(short = 'a', long = "glob-archives", value_name = "GLOB")]
    glob_archives: Option<String>,
}

/// Runs `rborg prune`.
pub fn run(ctx: &Context, args: PruneArgs) -> Result<Outcome, CliError> {
    let rules = PruneRules {
        within_hours: args.keep_within,
        secondly: args.keep_secondly,
        minutely: args.keep_minutely,
        hourly: args.keep_hourly,
        daily: args.keep_daily,
        weekly: args.keep_weekly,
        monthly: args.keep_monthly,
        quarterly_13weekly: args.keep_13weekly,
        quarterly_3monthly: args.keep_3monthly,
        yearly: args.keep_yearly,
    };
    // rborg speaks as borg 1.4.5 does (list column width, summary lines, quarterly rules).
    let version = BorgVersion::V1_4_5;
    rules
        .check(version)
        .map_err(|e| CliError::usage(e.to_string()))?;
    let filter = match (&args.glob_archives, &args.prefix) {
        (Some(g), _) => ArchiveFilter::Glob(g.clone()),
        (None, Some(p)) => ArchiveFilter::Prefix(p.clone()),
        (None, None) => ArchiveFilter::All,
    };
    let zone = LocalZone::from_tz_value(ctx.env.get("TZ"));
    let settings = PruneSettings {
        version,
        zone: zone.clone(),
        now: jiff::Timestamp::now(),
        filter,
    };
    let location = session::parse_location(ctx, &args.location)?;
    let mut session = session::open(ctx, &location, true, &[Operation::Delete])?;
    let result = prune_repository(
        &mut session,
        &ctx.env,
        &rules,
        &settings,
        DeleteOptions {
            dry_run: args.dry_run,
            progress: ctx.common.progress,
            force: Force::from_count(args.force),
            consider_part_files: ctx.common.consider_part_files,
        },
    );
    let closed = session.close();
    let outcome = result?;
    closed?;
    for line in summary_lines(&outcome.all, &outcome.decisions, version) {
        log::info!(target: "borg.archiver", "{line}");
    }
    if args.list {
        for line in list_lines(&outcome.decisions, &zone, version, args.dry_run) {
            log::warn!(target: "borg.output.list", "{line}");
        }
    }
    if args.stats {
        if let Some(report) = &outcome.deleted {
            let s = report.stats;
            let iec = ctx.common.iec;
            let size = |n: u64| format::file_size(-(n as i64), iec);
            log::warn!(target: "borg.output.stats", "{}", "-".repeat(78));
            log::warn!(target: "borg.output.stats", "                       Original size      Compressed size    Deduplicated size");
            log::warn!(
                target: "borg.output.stats",
                "{:15} {:>20} {:>20} {:>20}",
                "Deleted data:",
                size(s.original_size),
                size(s.compressed_size),
                size(s.deduplicated_size)
            );
            log::warn!(target: "borg.output.stats", "{}", "-".repeat(78));
        }
    }
    Ok(Outcome::Success)
}
