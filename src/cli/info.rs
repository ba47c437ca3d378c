//! `rborg info`: repository or archive statistics, as text or `--json`
//! (`archiver.py: do_info / _info_archives / _info_repository`).

use clap::Args;
use serde_json::{json, Value as Json};

use rborg::archive::reader;
use rborg::cache::{ChunkCache, ChunkStats};
use rborg::commands::info::{archive_stats, max_archive_size_ratio, repository_stats};
use rborg::commands::{CommandError, Session};
use rborg::manifest::{ManifestError, Operation};
use rborg::msgpack::Value;

use super::format;
use super::list::{basic_json, SelectionArgs};
use super::session;
use super::{CliError, Context, Outcome};

/// Arguments of `rborg info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Format output as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    selection: SelectionArgs,
    /// The repository, or an archive as REPO::ARCHIVE.
    #[arg(value_name = "REPOSITORY_OR_ARCHIVE", default_value = "")]
    location: String,
}

fn read_error(e: reader::ReadError) -> CliError {
    CliError::with_code(e.to_string(), e.exit_code().clamp(0, 255) as u8)
}

/// Runs `rborg info`.
pub fn run(ctx: &Context, args: InfoArgs) -> Result<Outcome, CliError> {
    let location = session::parse_location(ctx, &args.location)?;
    let mut session = session::open(ctx, &location, false, &[Operation::Read])?;
    let result = info(ctx, &mut session, location.archive.as_deref(), &args);
    let _ = session.close();
    result
}

fn info(
    ctx: &Context,
    session: &mut Session,
    archive: Option<&str>,
    args: &InfoArgs,
) -> Result<Outcome, CliError> {
    let selection = args.selection.selection(ctx, true)?;
    let cache = ChunkCache::load_or_sync(
        session.repository.as_mut(),
        &session.opened.key.key,
        &session.opened.manifest,
        &ctx.env,
        ctx.common.progress,
    )
    .map_err(|e| CliError::with_code(e.to_string(), e.exit_code().clamp(0, 255) as u8))?;
    // The index is exact for this manifest: keep it for the next command.
    if let Err(e) = cache.save(&session.opened.manifest) {
        log::warn!("{e}");
    }
    let stats = repository_stats(
        session.repository.as_mut(),
        &session.opened.key.key,
        &session.opened.manifest,
        &cache.index,
        ctx.common.consider_part_files,
    )
    .map_err(read_error)?;
    let cache_json = json!({
        "path": cache.dir().display().to_string(),
        "stats": {
            "total_chunks": stats.total_chunks,
            "total_csize": stats.total_csize,
            "total_size": stats.total_size,
            "total_unique_chunks": stats.total_unique_chunks,
            "unique_csize": stats.unique_csize,
            "unique_size": stats.unique_size,
        }
    });
    let iec = ctx.common.iec;
    let names: Vec<String> = match archive {
        Some(a) => vec![a.to_string()],
        None if selection.has_filter() => selection
            .select(&session.opened.manifest)?
            .into_iter()
            .map(|(n, _)| n)
            .collect(),
        None => {
            return repository_info(session, args.json, cache_json, &stats, cache.dir(), iec);
        }
    };
    let mut archives_json = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let entry = session
            .opened
            .manifest
            .archive(name)
            .cloned()
            .ok_or_else(|| CommandError::Manifest(ManifestError::ArchiveNotFound(name.clone())))?;
        let key = &session.opened.key.key;
        let loaded = reader::load_archive(session.repository.as_mut(), key, &entry.id, false)
            .map_err(read_error)?;
        let s = archive_stats(
            session.repository.as_mut(),
            key,
            &cache.index,
            &loaded,
            ctx.common.consider_part_files,
        )
        .map_err(read_error)?;
        let m = &loaded.metadata;
        let start = rborg::archive::parse_time(&m.time).unwrap_or_default();
        let end = m
            .time_end
            .as_deref()
            .and_then(rborg::archive::parse_time)
            .unwrap_or(start);
        let duration = (end - start).num_microseconds().unwrap_or(0) as f64 / 1e6;
        let start_s = format::archive_time(&m.time).unwrap_or_default();
        let end_s = m
            .time_end
            .as_deref()
            .and_then(format::archive_time)
            .unwrap_or(start_s);
        let ratio = max_archive_size_ratio(&cache.index, &entry.id);
        if args.json {
            archives_json.push(json!({
                "name": m.name,
                "id": hex::encode(entry.id),
                "start": format::iso_time(&start_s),
                "end": format::iso_time(&end_s),
                "duration": duration,
                "stats": {
                    "original_size": s.original_size,
                    "compressed_size": s.compressed_size,
                    "deduplicated_size": s.deduplicated_size,
                    "nfiles": s.nfiles,
                },
                "limits": { "max_archive_size": ratio },
                "command_line": m.cmdline,
                "cwd": m.cwd.clone().unwrap_or_default(),
                "hostname": m.hostname,
                "username": m.username,
                "comment": m.comment,
                "chunker_params": chunker_params_json(m.chunker_params.as_ref()),
            }));
        } else {
            let size = |n: u64| format::file_size(n as i64, iec);
            let cmdline: Vec<String> = m.cmdline.iter().map(|c| format::shell_quote(c)).collect();
            println!("Archive name: {}", m.name);
            println!("Archive fingerprint: {}", hex::encode(entry.id));
            println!("Comment: {}", m.comment);
            println!("Hostname: {}", m.hostname);
            println!("Username: {}", m.username);
            println!("Time (start): {}", format::text_time(&start_s));
            println!("Time (end): {}", format::text_time(&end_s));
            println!("Duration: {}", format::timedelta(duration));
            println!("Number of files: {}", s.nfiles);
            println!("Working Directory: {}", m.cwd.clone().unwrap_or_default());
            println!("Command line: {}", cmdline.join(" "));
            println!(
                "Utilization of maximum supported archive size: {:.0}%",
                ratio * 100.0
            );
            println!("{}", "-".repeat(78));
            println!("{}", format::STATS_HEADER);
            println!(
                "{:15} {:>20} {:>20} {:>20}",
                "This archive:",
                size(s.original_size),
                size(s.compressed_size),
                size(s.deduplicated_size)
            );
            println!("{}", format::cache_text(&stats, iec));
            if i + 1 < names.len() {
                println!();
            }
        }
    }
    if args.json {
        let mut out = basic_json(session);
        out.insert("cache".into(), cache_json);
        out.insert("archives".into(), Json::Array(archives_json));
        format::print_json(&Json::Object(out));
    }
    Ok(Outcome::Success)
}

fn repository_info(
    session: &Session,
    json: bool,
    cache_json: Json,
    stats: &ChunkStats,
    cache_dir: &std::path::Path,
    iec: bool,
) -> Result<Outcome, CliError> {
    let security_dir = session
        .crypto
        .repo_security_dir(session.repository.id())
        .display()
        .to_string();
    if json {
        let mut out = basic_json(session);
        out.insert("cache".into(), cache_json);
        out.insert("security_dir".into(), Json::String(security_dir));
        format::print_json(&Json::Object(out));
        return Ok(Outcome::Success);
    }
    let key_type = session.opened.key.key.key_type();
    println!("Repository ID: {}", hex::encode(session.repository.id()));
    println!("Location: {}", session.location.canonical_path());
    if key_type.is_encrypted() {
        println!("Encrypted: Yes ({})", key_type.borg_name());
    } else {
        println!("Encrypted: No");
    }
    if let rborg::crypto::open::KeyTarget::File(p) = &session.opened.key.target {
        println!("Key file: {}", p.display());
    }
    println!("Cache: {}", cache_dir.display());
    println!("Security dir: {security_dir}");
    println!("{}", "-".repeat(78));
    println!("{}", format::STATS_HEADER);
    println!("{}", format::cache_text(stats, iec));
    Ok(Outcome::Success)
}

/// `normalize_chunker_params`: old 4-tuples get the `buzhash` name in front.
fn chunker_params_json(v: Option<&Value>) -> Json {
    let Some(Value::Array(a)) = v else {
        return Json::String(String::new());
    };
    let mut out: Vec<Json> = a
        .iter()
        .map(|x| match x {
            Value::Int(i) => Json::from(*i as i64),
            other => Json::String(
                other
                    .as_bytes()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default(),
            ),
        })
        .collect();
    if out.len() == 4 && out.first().is_some_and(Json::is_number) {
        out.insert(0, Json::String("buzhash".into()));
    }
    Json::Array(out)
}
