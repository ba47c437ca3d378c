//! `rborg create`: parse borg's options, run [`rborg::commands::create::create`], print
//! `--list`, `--stats`, `--json` and `--progress` as borg does.

use std::io::Write;
use std::time::{Duration, Instant};

use chrono::{DateTime, Local, NaiveDateTime, TimeZone, Utc};
use clap::Args;

use rborg::cache::FilesCacheMode;
use rborg::chunker::{BuzhashParams, ChunkerParams};
use rborg::commands::content_total::ContentTotal;
use rborg::commands::create::{
    create, CreateOptions, CreateOutput, CreateResult, PartTrigger, Progress, StopFlags,
};
use rborg::commands::Session;
use rborg::compress::CompressionSpec;
use rborg::crypto::passphrase::TtyPrompter;
use rborg::fs::{MetadataOptions, WalkOptions};
use rborg::manifest::Operation;
use rborg::rpc::ClientOptions;

use super::patterns::{PathsMode, PatternArgs};
use super::{format, location_arg, CliError, Context, Outcome};

/// Arguments of `rborg create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    // Before `paths`: it reads their argument indices, and clap hands the matches to the
    // fields in order, each taking its own values out.
    #[command(flatten)]
    patterns: PatternArgs,
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
    /// When the last progress line was shown (the first one is shown at once, as in borg).
    last_progress: Option<Instant>,
    /// When content processing began (the first progress report): the base of the rate.
    started: Option<Instant>,
    /// The content total being counted beside the backup (for the ETA).
    total: Option<ContentTotal>,
    /// How progress is shown: JSON lines, terminal or plain lines.
    style: ProgressStyle,
    iec: bool,
    /// The archive path of the item being made.
    path: Vec<u8>,
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
        let code = rborg::commands::create::warning_code(message);
        self.codes.insert(code);
        self.clear_progress();
        match super::exit::class_name(code) {
            Some(msgid) => log::warn!(msgid; "{message}"),
            None => log::warn!("{message}"),
        }
    }

    fn processing(&mut self, path: &[u8]) {
        if self.progress {
            self.path.clear();
            self.path.extend_from_slice(path);
        }
    }

    fn progress(&mut self, p: &Progress) {
        if !self.progress {
            return;
        }
        // borg's `show_progress(dt=0.2)`.
        let now = Instant::now();
        if self
            .last_progress
            .is_some_and(|t| now - t <= Duration::from_millis(200))
        {
            return;
        }
        self.last_progress = Some(now);
        let started = *self.started.get_or_insert(now);
        let path = rborg::fs::display_path(&self.path);
        let line = match self.style {
            ProgressStyle::Json => json_progress(p, &path),
            ProgressStyle::Lines => {
                let total = self.total.as_ref().and_then(ContentTotal::total);
                progress_message(p, now - started, total, self.iec) + &path
            }
            ProgressStyle::Terminal(columns) => {
                let total = self.total.as_ref().and_then(ContentTotal::total);
                let mut msg = progress_message(p, now - started, total, self.iec);
                let mut space = columns.saturating_sub(msg.chars().count());
                if space < 12 {
                    msg.clear();
                    space = columns;
                }
                if space >= 8 {
                    msg.push_str(&ellipsis_truncate(&path, space));
                }
                eprint!("{msg}\r");
                let _ = std::io::stderr().flush();
                return;
            }
        };
        eprintln!("{line}");
    }
}

/// How `--progress` is shown: borg 1.4's three ways (`Statistics.show_progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProgressStyle {
    /// `--log-json`: one `archive_progress` JSON object per line.
    Json,
    /// stderr is a terminal of this many columns: one line rewritten in place.
    Terminal(usize),
    /// stderr is not a terminal: one full line each time.
    Lines,
}

impl ProgressStyle {
    fn of_stderr(log_json: bool, env: &rborg::settings::Environment) -> ProgressStyle {
        if log_json {
            return ProgressStyle::Json;
        }
        // SAFETY: isatty only inspects the descriptor.
        if unsafe { libc::isatty(2) } != 1 {
            return ProgressStyle::Lines;
        }
        // Python's `shutil.get_terminal_size`: $COLUMNS, then the terminal, then 80.
        let columns = env
            .get("COLUMNS")
            .and_then(|c| c.parse::<usize>().ok())
            .filter(|&c| c > 0)
            .or_else(|| {
                let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
                // SAFETY: TIOCGWINSZ fills the winsize struct passed by pointer.
                let r = unsafe { libc::ioctl(2, libc::TIOCGWINSZ, &mut ws) };
                (r == 0 && ws.ws_col > 0).then_some(ws.ws_col as usize)
            })
            .unwrap_or(80);
        ProgressStyle::Terminal(columns)
    }
}

/// The progress line without the path: borg's `PROGRESS_FMT` (`{O} O {C} C {D} D {N} N `),
/// then, beyond borg, the rate of original bytes per second and, once the content total is
/// known, the share done and an ETA at that rate.
fn progress_message(p: &Progress, elapsed: Duration, total: Option<u64>, iec: bool) -> String {
    let size = |n: u64| format::file_size(n as i64, iec);
    let mut msg = format!(
        "{} O {} C {} D {} N ",
        size(p.original),
        size(p.compressed),
        size(p.deduplicated),
        p.nfiles
    );
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        p.original as f64 / secs
    } else {
        0.0
    };
    msg.push_str(&format!("{}/s ", size(rate as u64)));
    if let Some(total) = total.filter(|&t| t > 0) {
        let done = p.original.min(total);
        msg.push_str(&format!("{:.0}% ", done as f64 * 100.0 / total as f64));
        if rate > 0.0 {
            let eta = (total - done) as f64 / rate;
            msg.push_str(&format!("ETA {} ", clock(eta)));
        }
    }
    msg
}

/// Seconds as `H:MM:SS`.
fn clock(secs: f64) -> String {
    let s = secs.round().max(0.0) as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// borg's `ellipsis_truncate`: the text fitted into `space` columns, its middle replaced by
/// `...` when too long, padded with spaces when short.
fn ellipsis_truncate(text: &str, space: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    if space < 8 {
        return format!("...{}", " ".repeat(space.saturating_sub(3)));
    }
    if chars.len() > space.saturating_sub(3) {
        let head = space / 2 - 3;
        let tail = space.div_ceil(2);
        let h: String = chars[..head.min(chars.len())].iter().collect();
        let t: String = chars[chars.len().saturating_sub(tail)..].iter().collect();
        return format!("{h}...{t}");
    }
    format!("{text}{}", " ".repeat(space - chars.len()))
}

/// borg's `archive_progress` JSON record (`Statistics.show_progress` with `--log-json`).
fn json_progress(p: &Progress, path: &str) -> String {
    serde_json::json!({
        "original_size": p.original,
        "compressed_size": p.compressed,
        "deduplicated_size": p.deduplicated,
        "nfiles": p.nfiles,
        "path": path,
        "time": unix_time(),
        "type": "archive_progress",
        "finished": false,
    })
    .to_string()
}

fn unix_time() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Printer {
    /// Takes the progress line away before other output (terminal style only).
    fn clear_progress(&self) {
        if let (true, ProgressStyle::Terminal(columns)) = (self.progress, self.style) {
            if self.last_progress.is_some() {
                eprint!("{}\r", " ".repeat(columns));
            }
        }
    }

    /// borg's `show_progress(final=True)` at the end of the walk.
    fn finish_progress(&self) {
        if !self.progress {
            return;
        }
        match self.style {
            ProgressStyle::Json => eprintln!(
                "{}",
                serde_json::json!({
                    "time": unix_time(),
                    "type": "archive_progress",
                    "finished": true,
                })
            ),
            ProgressStyle::Lines => eprintln!(),
            ProgressStyle::Terminal(columns) => eprint!("{}\r", " ".repeat(columns)),
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

/// The walk's options from the command line, with the pattern rules already in order.
fn walk_options(args: &CreateArgs, matcher: rborg::patterns::PatternMatcher) -> WalkOptions {
    WalkOptions {
        matcher,
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
    }
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
    let (paths, matcher) = args.patterns.resolve(&args.paths, PathsMode::Extend)?;
    if paths.is_empty() {
        // borg's parser check; `R` lines of the patterns count as paths.
        return Err(CliError::usage("Need at least one PATH argument."));
    }
    // The ETA's counting walk (below) needs the same rules; pattern files are read only once.
    let total_matcher = ctx.common.progress.then(|| matcher.clone());
    let walk = walk_options(&args, matcher);
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
        paths: paths.iter().map(|p| p.as_bytes().to_vec()).collect(),
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
        part_trigger: PartTrigger::Interval,
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
    // The ETA's total is counted beside the backup, and only when progress is shown and no
    // path is stdin (whose size nobody knows).
    let total = match total_matcher {
        Some(matcher) if !args.dry_run && paths.iter().all(|p| p != "-") => {
            ContentTotal::start(opts.paths.clone(), walk_options(&args, matcher)).ok()
        }
        _ => None,
    };
    let mut printer = Printer {
        list: args.list,
        filter: args.filter.clone(),
        progress: ctx.common.progress,
        last_progress: None,
        started: None,
        total,
        style: ProgressStyle::of_stderr(ctx.common.log_json, &ctx.env),
        iec: ctx.common.iec,
        path: Vec::new(),
        warnings: 0,
        codes: Default::default(),
    };
    let result = create(&mut session, &ctx.env, opts, &stop, &mut printer);
    printer.total = None;
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            printer.clear_progress();
            let _ = session.close();
            return Err(e.into());
        }
    };
    printer.finish_progress();
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
    Ok(super::format::json_text(&v))
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

#[cfg(test)]
mod tests {
    use super::super::patterns::{assert_r_roots, PathsMode};
    use super::super::Command;
    use super::*;

    fn progress() -> Progress {
        Progress {
            original: 50_000_000,
            compressed: 20_000_000,
            deduplicated: 10_000_000,
            nfiles: 12,
        }
    }

    #[test]
    fn progress_line_has_borgs_fields_the_rate_and_an_eta() {
        let ten = Duration::from_secs(10);
        assert_eq!(
            progress_message(&progress(), ten, Some(150_000_000), false),
            "50.00 MB O 20.00 MB C 10.00 MB D 12 N 5.00 MB/s 33% ETA 0:00:20 "
        );
        // No total (yet): borg's fields and the rate only.
        assert_eq!(
            progress_message(&progress(), ten, None, false),
            "50.00 MB O 20.00 MB C 10.00 MB D 12 N 5.00 MB/s "
        );
        // More than counted (files grew): done, nothing left.
        assert_eq!(
            progress_message(&progress(), ten, Some(40_000_000), false),
            "50.00 MB O 20.00 MB C 10.00 MB D 12 N 5.00 MB/s 100% ETA 0:00:00 "
        );
        // No time passed: no rate, so no ETA.
        assert_eq!(
            progress_message(&Progress::default(), Duration::ZERO, Some(1000), false),
            "0 B O 0 B C 0 B D 0 N 0 B/s 0% "
        );
        assert_eq!(
            progress_message(&progress(), ten, Some(1 << 30), true),
            "47.68 MiB O 19.07 MiB C 9.54 MiB D 12 N 4.77 MiB/s 5% ETA 0:03:25 "
        );
        let slow = Progress {
            original: 1_000_000,
            ..progress()
        };
        assert_eq!(
            progress_message(&slow, Duration::from_secs(100), Some(38_000_000), false),
            "1.00 MB O 20.00 MB C 10.00 MB D 12 N 10.00 kB/s 3% ETA 1:01:40 "
        );
    }

    #[test]
    fn eta_clock_and_path_truncation_as_borg_fits_it() {
        assert_eq!(clock(0.4), "0:00:00");
        assert_eq!(clock(3725.4), "1:02:05");
        assert_eq!(clock(90061.0), "25:01:01");
        assert_eq!(
            ellipsis_truncate("abcdefghijklmnopqrstuvwxyz", 12),
            "abc...uvwxyz"
        );
        assert_eq!(
            ellipsis_truncate("abcdefghijklmnopqrstuvwxyz", 13),
            "abc...tuvwxyz"
        );
        assert_eq!(ellipsis_truncate("abc", 8), "abc     ");
        assert_eq!(ellipsis_truncate("abcdefgh", 6), "...   ");
    }

    #[test]
    fn json_progress_is_borgs_archive_progress() {
        let v: serde_json::Value =
            serde_json::from_str(&json_progress(&progress(), "src/big")).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "compressed_size",
                "deduplicated_size",
                "finished",
                "nfiles",
                "original_size",
                "path",
                "time",
                "type"
            ]
        );
        assert_eq!(v["type"], "archive_progress");
        assert_eq!(v["original_size"], 50_000_000);
        assert_eq!(v["finished"], false);
        assert!(v["time"].as_f64().unwrap() > 1.7e9);
    }

    #[test]
    fn roots_of_r_lines_join_the_paths_in_command_line_order() {
        assert_r_roots("create", PathsMode::Extend, &["c", "d", "b"], |c| match c {
            Command::Create(args) => Some((args.patterns, args.paths)),
            _ => None,
        });
    }
}
