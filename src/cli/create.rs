//! `rborg create`: parse borg's options, run [`rborg::commands::create::create`], print
//! `--list`, `--stats`, `--json` and `--progress` as borg does.

use std::io::Write;
use std::time::{Duration, Instant};

use chrono::{DateTime, Local, NaiveDateTime, TimeZone, Utc};
use clap::Args;

use rborg::cache::FilesCacheMode;
use rborg::chunker::{BuzhashParams, ChunkerParams};
use rborg::commands::create::{
    create, CreateOptions, CreateOutput, CreateResult, Progress, StopFlags,
};
use rborg::commands::Session;
use rborg::compress::CompressionSpec;
use rborg::crypto::passphrase::TtyPrompter;
use rborg::fs::{MetadataOptions, WalkOptions};
use rborg::manifest::Operation;
use rborg::patterns::PatternMatcher;
use rborg::rpc::ClientOptions;

use super::{location_arg, CliError, Context, Outcome};

/// Arguments of `rborg create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Name of archive to create: REPOSITORY::ARCHIVE (placeholders allowed).
    #[arg(value_name = "ARCHIVE")]
    archive: String,
    /// Paths to archive; `-` reads stdin.
    #[arg(value_name = "PATH")]
    paths: Vec<String>,
    /// Do not create a backup archive.
    #[arg(short = 'n', long = "dry-run")]
    dry_run: bool,
    /// Print statistics for the created archive.
    #[arg(short = 's', long = "stats")]
    stats: bool,
    /// Output verbose list of items (files, dirs, ...).
    #[arg(long = "list")]
    list: bool,
    /// Only display items with the given status characters.
    #[arg(long = "filter", value_name = "STATUSCHARS")]
    filter: Option<String>,
    /// Output stats as JSON.
    #[arg(long = "json")]
    json: bool,
    /// Use NAME in archive for stdin data.
    #[arg(long = "stdin-name", value_name = "NAME", default_value = "stdin")]
    stdin_name: String,
    /// Exclude paths matching PATTERN.
    #[arg(short = 'e', long = "exclude", value_name = "PATTERN")]
    exclude: Vec<String>,
    /// Read exclude patterns from EXCLUDEFILE, one per line.
    #[arg(long = "exclude-from", value_name = "EXCLUDEFILE")]
    exclude_from: Vec<String>,
    /// Include/exclude paths matching PATTERN.
    #[arg(long = "pattern", value_name = "PATTERN")]
    pattern: Vec<String>,
    /// Read include/exclude patterns from PATTERNFILE, one per line.
    #[arg(long = "patterns-from", value_name = "PATTERNFILE")]
    patterns_from: Vec<String>,
    /// Exclude directories that contain a CACHEDIR.TAG file.
    #[arg(long = "exclude-caches")]
    exclude_caches: bool,
    /// Exclude directories that are tagged by containing a filesystem object with the given NAME.
    #[arg(long = "exclude-if-present", value_name = "NAME")]
    exclude_if_present: Vec<String>,
    /// If tag objects are specified with --exclude-if-present, do not omit the tag objects.
    #[arg(long = "keep-exclude-tags")]
    keep_exclude_tags: bool,
    /// Exclude files flagged NODUMP.
    #[arg(long = "exclude-nodump")]
    exclude_nodump: bool,
    /// Stay in the same file system.
    #[arg(short = 'x', long = "one-file-system")]
    one_file_system: bool,
    /// Only store numeric user and group identifiers.
    #[arg(long = "numeric-ids", alias = "numeric-owner")]
    numeric_ids: bool,
    /// Do store atime into archive.
    #[arg(long = "atime")]
    atime: bool,
    /// Do not store ctime into archive.
    #[arg(long = "noctime")]
    noctime: bool,
    /// Do not store birthtime (creation date) into archive.
    #[arg(long = "nobirthtime")]
    nobirthtime: bool,
    /// Do not read and store flags (e.g. NODUMP, IMMUTABLE) into archive.
    #[arg(long = "noflags", alias = "nobsdflags")]
    noflags: bool,
    /// Do not read and store ACLs into archive.
    #[arg(long = "noacls")]
    noacls: bool,
    /// Do not read and store xattrs into archive.
    #[arg(long = "noxattrs")]
    noxattrs: bool,
    /// Open and read block and char device files as well as FIFOs as if they were regular files.
    #[arg(long = "read-special")]
    read_special: bool,
    /// Detect sparse holes in input (supported only by fixed chunker).
    #[arg(long = "sparse")]
    sparse: bool,
    /// Operate files cache in MODE (default: ctime,size,inode).
    #[arg(
        long = "files-cache",
        value_name = "MODE",
        default_value = "ctime,size,inode"
    )]
    files_cache: String,
    /// Add a comment text to the archive.
    #[arg(long = "comment", value_name = "COMMENT", default_value = "")]
    comment: String,
    /// Manually specify the archive creation date/time (UTC, yyyy-mm-ddThh:mm:ss format), or a
    /// reference file.
    #[arg(long = "timestamp", value_name = "TIMESTAMP")]
    timestamp: Option<String>,
    /// Write checkpoint every SECONDS seconds (Default: 1800).
    #[arg(
        short = 'c',
        long = "checkpoint-interval",
        value_name = "SECONDS",
        default_value_t = 1800
    )]
    checkpoint_interval: u64,
    /// Specify the chunker parameters (ALGO, CHUNK_MIN_EXP, CHUNK_MAX_EXP, HASH_MASK_BITS,
    /// HASH_WINDOW_SIZE).
    #[arg(long = "chunker-params", value_name = "PARAMS")]
    chunker_params: Option<String>,
    /// Select compression algorithm.
    #[arg(
        short = 'C',
        long = "compression",
        value_name = "COMPRESSION",
        default_value = "lz4"
    )]
    compression: String,
}

struct Printer {
    list: bool,
    filter: Option<String>,
    progress: bool,
    last_progress: Instant,
    started: Instant,
    total_hint: u64,
    warnings: usize,
    /// Modern codes of the warnings given (one shared code is the exit code, else 1).
    codes: std::collections::BTreeSet<u8>,
}

impl CreateOutput for Printer {
    fn status(&mut self, status: char, path: &[u8]) {
        if !self.list {
            return;
        }
        if let Some(f) = &self.filter {
            if !f.contains(status) {
                return;
            }
        }
        self.clear_progress();
        eprintln!("{status} {}", rborg::fs::display_path(path));
    }

    fn warning(&mut self, message: &str) {
        self.warnings += 1;
        self.codes
            .insert(rborg::commands::create::warning_code(message));
        self.clear_progress();
        log::warn!("{message}");
    }

    fn progress(&mut self, p: &Progress) {
        if !self.progress || self.last_progress.elapsed() < Duration::from_millis(200) {
            return;
        }
        self.last_progress = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = p.original as f64 / secs;
        let mut line = format!(
            "{} O {} C {} D {} N, {}/s",
            format_size(p.original),
            format_size(p.compressed),
            format_size(p.deduplicated),
            p.nfiles,
            format_size(rate as u64)
        );
        if self.total_hint > p.original && rate > 0.0 {
            let eta = (self.total_hint - p.original) as f64 / rate;
            line.push_str(&format!(", ETA {}", format_duration(eta)));
        }
        eprint!("\r{line:<79}\r");
        let _ = std::io::stderr().flush();
    }
}

impl Printer {
    fn clear_progress(&self) {
        if self.progress {
            eprint!("\r{:79}\r", "");
        }
    }
}

/// borg's `format_file_size`: decimal units, two decimals.
pub fn format_size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = n as f64;
    let mut i = 0;
    while v.abs() >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", units[i])
    }
}

/// borg's `format_timedelta`.
fn format_duration(secs: f64) -> String {
    let s = secs % 60.0;
    let total = secs as u64;
    let (m, h, d) = ((total / 60) % 60, (total / 3600) % 24, total / 86400);
    let mut txt = format!("{s:.2} seconds");
    if m > 0 || h > 0 || d > 0 {
        txt = format!("{m} minutes {txt}");
    }
    if h > 0 || d > 0 {
        txt = format!("{h} hours {txt}");
    }
    if d > 0 {
        txt = format!("{d} days {txt}");
    }
    txt
}

fn parse_timestamp(s: &str) -> Result<DateTime<Utc>, CliError> {
    for fmt in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(Utc.from_utc_datetime(&n));
        }
        if let Ok(d) = chrono::NaiveDate::parse_from_str(s, fmt) {
            if let Some(n) = d.and_hms_opt(0, 0, 0) {
                return Ok(Utc.from_utc_datetime(&n));
            }
        }
    }
    // A reference file: its mtime.
    match std::fs::metadata(s).and_then(|m| m.modified()) {
        Ok(t) => Ok(DateTime::<Utc>::from(t)),
        Err(_) => Err(CliError::usage(format!(
            "argument --timestamp: {s:?}: neither a timestamp (yyyy-mm-ddThh:mm:ss) nor a file"
        ))),
    }
}

fn read_text(path: &str) -> Result<String, CliError> {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| CliError::usage(format!("{path}: {e}")))
}

fn matcher(args: &CreateArgs) -> Result<PatternMatcher, CliError> {
    let bad = |e: rborg::patterns::PatternError| CliError::usage(e.to_string());
    let mut m = PatternMatcher::new();
    for p in &args.exclude {
        m.add_exclude(p).map_err(bad)?;
    }
    for f in &args.exclude_from {
        m.add_exclude_file(&read_text(f)?).map_err(bad)?;
    }
    for p in &args.pattern {
        m.add_pattern_line(p).map_err(bad)?;
    }
    for f in &args.patterns_from {
        m.add_patterns_file(&read_text(f)?).map_err(bad)?;
    }
    Ok(m)
}

/// Runs `rborg create`.
pub fn run(ctx: &Context, args: CreateArgs) -> Result<Outcome, CliError> {
    let location = location_arg(ctx, Some(&args.archive))?;
    let Some(name) = location.archive.clone() else {
        return Err(CliError::usage(
            "argument ARCHIVE: an archive name is required (REPOSITORY::ARCHIVE)",
        ));
    };
    let compression: CompressionSpec = args
        .compression
        .parse()
        .map_err(|e| CliError::usage(format!("argument -C/--compression: {e}")))?;
    let chunker_params = match &args.chunker_params {
        Some(p) => p
            .parse()
            .map_err(|e| CliError::usage(format!("argument --chunker-params: {e}")))?,
        None => ChunkerParams::Buzhash(BuzhashParams::DEFAULT),
    };
    let files_cache_mode = FilesCacheMode::parse(&args.files_cache)
        .map_err(|e| CliError::usage(format!("argument --files-cache: {e}")))?;
    let timestamp = args.timestamp.as_deref().map(parse_timestamp).transpose()?;
    let walk = WalkOptions {
        matcher: matcher(&args)?,
        one_file_system: args.one_file_system,
        exclude_caches: args.exclude_caches,
        exclude_if_present: args
            .exclude_if_present
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect(),
        keep_exclude_tags: args.keep_exclude_tags,
        exclude_nodump: args.exclude_nodump,
        read_special: args.read_special,
        dry_run: args.dry_run,
        skip_inodes: Default::default(),
    };
    let metadata = MetadataOptions {
        atime: args.atime,
        noctime: args.noctime,
        nobirthtime: args.nobirthtime,
        numeric_ids: args.numeric_ids,
        noflags: args.noflags,
        noacls: args.noacls,
        noxattrs: args.noxattrs,
        ..MetadataOptions::default()
    };
    let ttl = ctx
        .env
        .get("BORG_FILES_CACHE_TTL")
        .and_then(|v| v.parse::<u32>().ok())
        .map_or(20, |v| v.min(255) as u8);
    let placeholders = rborg::placeholders::Placeholders::current(&ctx.env);
    let cwd = std::env::current_dir()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let opts = CreateOptions {
        name: name.clone(),
        paths: args.paths.iter().map(|p| p.as_bytes().to_vec()).collect(),
        stdin_name: args.stdin_name.clone(),
        compression,
        chunker_params,
        comment: args.comment.clone(),
        timestamp,
        checkpoint_interval: Duration::from_secs(args.checkpoint_interval),
        dry_run: args.dry_run,
        walk,
        metadata,
        files_cache_mode,
        files_cache_ttl: ttl,
        sparse: args.sparse,
        cmdline: std::env::args().collect(),
        hostname: ctx
            .env
            .get("BORG_HOSTNAME")
            .map_or(placeholders.hostname.clone(), str::to_string),
        username: ctx
            .env
            .get("BORG_USERNAME")
            .map_or(placeholders.user.clone(), str::to_string),
        cwd,
        // RBORG_CREATE_THREADS=1 keeps every file on the calling thread (the sequential
        // reference path); unset or 0: one worker per CPU.
        threads: ctx
            .env
            .get("RBORG_CREATE_THREADS")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    };
    let stop = StopFlags::from_signals().map_err(|e| CliError::error(format!("signals: {e}")))?;
    let access = ctx.common.access(&ctx.env)?;
    let mut session = Session::open(
        &location,
        &access,
        &ctx.common.open_options(!args.dry_run),
        ClientOptions::default(),
        ctx.env.crypto_settings(),
        &mut TtyPrompter,
        &[Operation::Write],
    )?;
    let mut printer = Printer {
        list: args.list,
        filter: args.filter.clone(),
        progress: ctx.common.progress,
        last_progress: Instant::now(),
        started: Instant::now(),
        total_hint: 0,
        warnings: 0,
        codes: Default::default(),
    };
    let result = create(&mut session, &ctx.env, opts, &stop, &mut printer);
    printer.clear_progress();
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = session.close();
            return Err(e.into());
        }
    };
    if !args.dry_run {
        if args.json {
            println!("{}", json_output(&session, &result, ctx)?);
        } else if args.stats {
            eprint!("{}", stats_text(&session, &result));
        }
    }
    session.close()?;
    if printer.warnings > 0 || result.warnings > 0 {
        let code = match printer.codes.len() {
            1 => printer.codes.iter().next().copied().unwrap_or(1),
            _ => 1,
        };
        Ok(Outcome::Warning(code))
    } else {
        Ok(Outcome::Success)
    }
}

fn local_iso(t: &DateTime<Utc>) -> String {
    // borg's to_localtime drops the microseconds.
    t.with_timezone(&Local)
        .format("%Y-%m-%dT%H:%M:%S.000000")
        .to_string()
}

fn json_output(session: &Session, r: &CreateResult, ctx: &Context) -> Result<String, CliError> {
    use serde_json::json;
    let key_type = session.opened.key.key.key_type();
    let mut encryption = json!({ "mode": key_type.mode_name() });
    if let rborg::crypto::open::KeyTarget::File(p) = &session.opened.key.target {
        encryption["keyfile"] = json!(p.to_string_lossy());
    }
    let cache_path = rborg::cache::repository_cache_dir(&ctx.env, session.repository.id())
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let c = &r.cache;
    let last_modified = session
        .opened
        .manifest
        .timestamp
        .as_deref()
        .and_then(rborg::archive::parse_time)
        .map(|t| local_iso(&t))
        .unwrap_or_default();
    let v = json!({
        "archive": {
            "command_line": std::env::args().collect::<Vec<_>>(),
            "duration": r.duration.as_secs_f64(),
            "end": local_iso(&r.end),
            "id": hex::encode(r.id),
            "limits": {"max_archive_size": r.archive_object_size as f64 / rborg::chunker::MAX_DATA_SIZE as f64},
            "name": r.name,
            "start": local_iso(&r.start),
            "stats": {
                "compressed_size": r.stats.csize,
                "deduplicated_size": r.stats.usize,
                "nfiles": r.stats.nfiles,
                "original_size": r.stats.osize,
            },
        },
        "cache": {
            "path": cache_path,
            "stats": {
                "total_chunks": c.total_chunks,
                "total_csize": c.total_csize,
                "total_size": c.total_size,
                "total_unique_chunks": c.total_unique_chunks,
                "unique_csize": c.unique_csize,
                "unique_size": c.unique_size,
            },
        },
        "encryption": encryption,
        "repository": {
            "id": hex::encode(session.repository.id()),
            "last_modified": last_modified,
            "location": session.location.canonical_path(),
        },
        // Beyond borg: how much content was actually read (the files cache skips the rest).
        "rborg": {"files_read": r.files_read, "bytes_read": r.bytes_read},
    });
    serde_json::to_string_pretty(&v).map_err(|e| CliError::error(e.to_string()))
}

fn stats_text(session: &Session, r: &CreateResult) -> String {
    let line = "-".repeat(78);
    let t = |d: &DateTime<Utc>| {
        d.with_timezone(&Local)
            .format("%a, %Y-%m-%d %H:%M:%S")
            .to_string()
    };
    let s = &r.stats;
    let c = &r.cache;
    let util = r.archive_object_size as f64 / rborg::chunker::MAX_DATA_SIZE as f64 * 100.0;
    format!(
        "{line}\n\
         Repository: {repo}\n\
         Archive name: {name}\n\
         Archive fingerprint: {id}\n\
         Time (start): {start}\n\
         Time (end):   {end}\n\
         Duration: {dur}\n\
         Number of files: {nfiles}\n\
         Utilization of max. archive size: {util:.0}%\n\
         Files read: {read} ({bytes})\n\
         {line}\n\
         {h:>20}{o:>20}{cs:>20}{d:>20}\n\
         {a:<20}{so:>20}{sc:>20}{sd:>20}\n\
         {all:<20}{to:>20}{tc:>20}{td:>20}\n\n\
         {h:>20}{u:>20}{tt:>20}\n\
         {ci:<20}{uc:>20}{tcn:>20}\n\
         {line}\n",
        repo = session.location.canonical_path(),
        name = r.name,
        id = hex::encode(r.id),
        start = t(&r.start),
        end = t(&r.end),
        dur = format_duration(r.duration.as_secs_f64()),
        nfiles = s.nfiles,
        read = r.files_read,
        bytes = format_size(r.bytes_read),
        h = "",
        o = "Original size",
        cs = "Compressed size",
        d = "Deduplicated size",
        a = "This archive:",
        so = format_size(s.osize),
        sc = format_size(s.csize),
        sd = format_size(s.usize),
        all = "All archives:",
        to = format_size(c.total_size),
        tc = format_size(c.total_csize),
        td = format_size(c.unique_csize),
        u = "Unique chunks",
        tt = "Total chunks",
        ci = "Chunk index:",
        uc = c.total_unique_chunks,
        tcn = c.total_chunks,
    )
}
