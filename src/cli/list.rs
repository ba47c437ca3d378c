//! `rborg list`: the archives of a repository, or the items of one archive, in borg's formats
//! (`archiver.py: _list_repository / _list_archive`, `ArchiveFormatter`, `ItemFormatter`).

use std::io::Write;

use clap::Args;
use serde_json::{json, Map, Value as Json};

use rborg::archive::reader;
use rborg::archive::Item;
use rborg::commands::select::ArchiveSelection;
use rborg::commands::{CommandError, Session};
use rborg::manifest::{ArchiveEntry, Operation, SortBy};
use rborg::placeholders::Placeholders;

use super::format::{self, Field};
use super::item_keys;
use super::patterns::{PathsMode, PatternArgs};
use super::session;
use super::{CliError, Context, Outcome};
use rborg::patterns::PatternMatcher;

/// Archive filters shared by list, info and delete (borg's `define_archive_filters_group`).
#[derive(Debug, Clone, Args)]
pub struct SelectionArgs {
    /// Only consider archive names starting with this prefix (deprecated; use -a).
    #[arg(short = 'P', long = "prefix", value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// Only consider archive names matching the glob (`sh:` style).
    #[arg(short = 'a', long = "glob-archives", value_name = "GLOB")]
    pub glob_archives: Option<String>,
    /// Comma-separated sort keys: timestamp, archive, name, id.
    #[arg(long = "sort-by", value_name = "KEYS", default_value = "timestamp")]
    pub sort_by: String,
    /// Consider the first N archives after the other filters.
    #[arg(long = "first", value_name = "N")]
    pub first: Option<usize>,
    /// Consider the last N archives after the other filters.
    #[arg(long = "last", value_name = "N")]
    pub last: Option<usize>,
}

impl SelectionArgs {
    /// The library's selection; placeholders in the glob are expanded.
    pub fn selection(
        &self,
        ctx: &Context,
        consider_checkpoints: bool,
    ) -> Result<ArchiveSelection, CliError> {
        let placeholders = Placeholders::current(&ctx.env);
        let expand = |s: &str| {
            placeholders
                .replace(s)
                .map_err(|e| CliError::usage(e.to_string()))
        };
        let glob = match (&self.glob_archives, &self.prefix) {
            (Some(g), _) => Some(expand(g)?),
            (None, Some(p)) => Some(format!("{}*", expand(p)?)),
            (None, None) => None,
        };
        let mut sort_by = Vec::new();
        for key in self.sort_by.split(',') {
            sort_by.push(match key {
                "timestamp" => SortBy::Timestamp,
                "archive" | "name" => SortBy::Name,
                "id" => SortBy::Id,
                other => {
                    return Err(CliError::usage(format!(
                        "Invalid sort key {other:?} (use timestamp, archive, name or id)"
                    )))
                }
            });
        }
        Ok(ArchiveSelection {
            glob,
            sort_by,
            first: self.first,
            last: self.last,
            consider_checkpoints,
        })
    }
}

/// Arguments of `rborg list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only print the archive names / file paths.
    #[arg(long)]
    short: bool,
    /// The output format (borg's keys, e.g. "{archive}{NL}" or "{mode} {path}{NL}").
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,
    /// Print the archive list as JSON.
    #[arg(long)]
    json: bool,
    /// Print one JSON object per item of an archive.
    #[arg(long = "json-lines")]
    json_lines: bool,
    /// Show checkpoint archives too.
    #[arg(long = "consider-checkpoints")]
    consider_checkpoints: bool,
    #[command(flatten)]
    selection: SelectionArgs,
    // Before `paths`: it reads their argument indices, and clap hands the matches to the
    // fields in order, each taking its own values out.
    #[command(flatten)]
    patterns: PatternArgs,
    /// The repository, or an archive as REPO::ARCHIVE.
    #[arg(value_name = "REPOSITORY_OR_ARCHIVE", default_value = "")]
    location: String,
    /// Paths to list; patterns are supported.
    #[arg(value_name = "PATH")]
    paths: Vec<String>,
}

/// The JSON borg puts beside every repository-level answer (`basic_json_data`).
pub fn basic_json(session: &Session) -> Map<String, Json> {
    let mut out = Map::new();
    let last_modified = session
        .opened
        .manifest
        .timestamp
        .as_deref()
        .and_then(format::archive_time)
        .map(|t| format::iso_time(&t))
        .unwrap_or_default();
    out.insert(
        "repository".into(),
        json!({
            "id": hex::encode(session.repository.id()),
            "location": session.location.canonical_path(),
            "last_modified": last_modified,
        }),
    );
    let key_type = session.opened.key.key.key_type();
    let mut encryption = json!({ "mode": key_type.mode_name() });
    if let rborg::crypto::open::KeyTarget::File(p) = &session.opened.key.target {
        encryption["keyfile"] = Json::String(p.display().to_string());
    }
    out.insert("encryption".into(), encryption);
    out
}

/// Runs `rborg list`.
pub fn run(ctx: &Context, args: ListArgs) -> Result<Outcome, CliError> {
    let location = session::parse_location(ctx, &args.location)?;
    // Pattern files are read before the repository is opened, as borg's parser reads them.
    let (_, matcher) = args.patterns.resolve(&args.paths, PathsMode::Replace)?;
    let mut session = session::open(ctx, &location, false, &[Operation::Read])?;
    let result = match location.archive.clone() {
        Some(archive) => list_archive(ctx, &mut session, &archive, &args, &matcher),
        None => list_repository(ctx, &mut session, &args),
    };
    let _ = session.close();
    result
}

fn list_repository(
    ctx: &Context,
    session: &mut Session,
    args: &ListArgs,
) -> Result<Outcome, CliError> {
    let template = match (&args.format, args.short) {
        (Some(f), _) => f.clone(),
        (None, true) => "{archive}{NL}".into(),
        (None, false) => "{archive:<36} {time} [{id}]{NL}".into(),
    };
    let used = format::keys(&template);
    let selection = args.selection.selection(ctx, args.consider_checkpoints)?;
    let archives: Vec<(String, ArchiveEntry)> = selection
        .select(&session.opened.manifest)?
        .into_iter()
        .map(|(n, e)| (n, e.clone()))
        .collect();
    let mut json_out = Vec::new();
    let mut stdout = std::io::stdout().lock();
    for (name, entry) in archives {
        let fields = archive_fields(session, &name, &entry, &used, args.json)?;
        if args.json {
            json_out.push(Json::Object(
                fields.into_iter().map(|(k, v)| (k, v.json())).collect(),
            ));
        } else {
            let line = format::render(&template, &mut |k| {
                fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
            })?;
            let _ = stdout.write_all(line.as_bytes());
        }
    }
    if args.json {
        let mut out = basic_json(session);
        out.insert("archives".into(), Json::Array(json_out));
        format::print_json(&Json::Object(out));
    }
    Ok(Outcome::Success)
}

/// An archive's fields for `--format` (`ArchiveFormatter.get_item_data`); metadata is read
/// only when a key needs it. In JSON the fixed set is always there.
fn archive_fields(
    session: &mut Session,
    name: &str,
    entry: &ArchiveEntry,
    used: &[String],
    json: bool,
) -> Result<Vec<(String, Field)>, CliError> {
    let start = format::archive_time(&entry.time).unwrap_or_default();
    let time = if json {
        Field::Text(format::iso_time(&start))
    } else {
        Field::Time(start)
    };
    let mut fields = vec![
        ("name".to_string(), Field::Text(name.into())),
        ("archive".to_string(), Field::Text(name.into())),
        ("barchive".to_string(), Field::Text(name.into())),
        ("id".to_string(), Field::Text(hex::encode(entry.id))),
        ("time".to_string(), time.clone()),
        ("start".to_string(), time),
    ];
    const META_KEYS: [&str; 7] = [
        "hostname",
        "username",
        "comment",
        "bcomment",
        "end",
        "command_line",
        "tam",
    ];
    let wanted: Vec<&str> = META_KEYS
        .iter()
        .copied()
        .filter(|k| used.iter().any(|u| u == k))
        .collect();
    if !wanted.is_empty() {
        let loaded = reader::load_archive(
            session.repository.as_mut(),
            &session.opened.key.key,
            &entry.id,
            false,
        )
        .map_err(|e| CliError::with_code(format!("Archive {name}: {e}"), e.exit_code() as u8))?;
        let m = &loaded.metadata;
        for k in wanted {
            let v = match k {
                "hostname" => Field::Text(m.hostname.clone()),
                "username" => Field::Text(m.username.clone()),
                "comment" | "bcomment" => Field::Text(m.comment.clone()),
                "end" => {
                    let end = m
                        .time_end
                        .as_deref()
                        .and_then(format::archive_time)
                        .unwrap_or(start);
                    if json {
                        Field::Text(format::iso_time(&end))
                    } else {
                        Field::Time(end)
                    }
                }
                "command_line" => Field::CommandLine(m.cmdline.clone()),
                _ => Field::Text(
                    if loaded.tam.is_verified() {
                        "verified"
                    } else {
                        "none"
                    }
                    .into(),
                ),
            };
            fields.push((k.to_string(), v));
        }
    }
    Ok(fields)
}

fn list_archive(
    ctx: &Context,
    session: &mut Session,
    archive: &str,
    args: &ListArgs,
    matcher: &PatternMatcher,
) -> Result<Outcome, CliError> {
    let _ = ctx;
    let template = match (&args.format, args.short) {
        (Some(f), _) => f.clone(),
        (None, true) => "{path}{NL}".into(),
        (None, false) => "{mode} {user:6} {group:6} {size:8} {mtime} {path}{extra}{NL}".into(),
    };
    let used = format::keys(&template);
    let entry = session
        .opened
        .manifest
        .archive(archive)
        .cloned()
        .ok_or_else(|| {
            CliError::from(CommandError::Manifest(
                rborg::manifest::ManifestError::ArchiveNotFound(archive.into()),
            ))
        })?;
    let key = &session.opened.key.key;
    let loaded = reader::load_archive(session.repository.as_mut(), key, &entry.id, false)
        .map_err(|e| CliError::with_code(format!("Archive {archive}: {e}"), e.exit_code() as u8))?;
    let needs_cache = used
        .iter()
        .any(|k| k == "dsize" || k == "dcsize" || k == "unique_chunks");
    let index = if needs_cache {
        Some(
            rborg::cache::ChunkCache::load_or_sync(
                session.repository.as_mut(),
                key,
                &session.opened.manifest,
                &ctx.env,
                false,
            )
            .map_err(|e| CliError::with_code(e.to_string(), e.exit_code() as u8))?
            .index,
        )
    } else {
        None
    };
    let mut stdout = std::io::stdout().lock();
    let mut failure: Option<CliError> = None;
    let archive_id = hex::encode(entry.id);
    let hash_keys = item_keys::hash_keys_used(&used);
    reader::for_each_item_batch(
        session.repository.as_mut(),
        key,
        &loaded.metadata,
        ctx.common.consider_part_files,
        &mut |repository, items| {
            for item in items {
                if matcher.matches(&item.path).included == Some(false) {
                    continue;
                }
                let mut fields = item_fields(
                    &item,
                    &used,
                    args.json_lines,
                    archive,
                    &archive_id,
                    index.as_ref(),
                );
                if !hash_keys.is_empty() {
                    for (h, hex) in item_keys::hash_content(repository, key, &item, &hash_keys)? {
                        fields.push((h.to_string(), Field::Text(hex)));
                    }
                }
                let text = if args.json_lines {
                    item_keys::json_line(&fields, &used)
                } else {
                    match format::render(&template, &mut |k| {
                        fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
                    }) {
                        Ok(t) => t,
                        Err(e) => {
                            failure = Some(e);
                            return Err(reader::ReadError::Consumer("format".into()));
                        }
                    }
                };
                let _ = stdout.write_all(text.as_bytes());
            }
            Ok(())
        },
    )
    .map_err(|e| match failure.take() {
        Some(f) => f,
        None => CliError::with_code(e.to_string(), e.exit_code() as u8),
    })?;
    Ok(Outcome::Success)
}

fn item_fields(
    item: &Item,
    used: &[String],
    json: bool,
    archive: &str,
    archive_id: &str,
    index: Option<&rborg::cache::ChunkIndex>,
) -> Vec<(String, Field)> {
    let text = |b: &[u8]| format::remove_surrogates(b);
    let mode_bits = item.mode.unwrap_or(0);
    let mut mode = format::filemode(mode_bits);
    let item_type = mode.chars().next().unwrap_or('?');
    let source = item.source.as_deref().map(text).unwrap_or_default();
    let mut extra = String::new();
    if !source.is_empty() {
        if item_type == 'l' {
            extra = format!(" -> {source}");
        } else {
            mode = format!("h{}", &mode[1..]);
            extra = format!(" link to {source}");
        }
    }
    let name_or_id = |name: &Option<Option<Vec<u8>>>, id: Option<u32>| match name {
        Some(Some(n)) if !n.is_empty() => Field::Text(text(n)),
        _ => Field::Int(id.unwrap_or(0) as i64),
    };
    let chunks = item.chunks.as_deref().unwrap_or_default();
    let time = |ns: i64| {
        let t = format::ns_time(ns);
        if json {
            Field::Text(format::iso_time(&t))
        } else {
            Field::Time(t)
        }
    };
    // `Item.get_size`: a symlink's size is the length of its target; a hardlink slave has 0.
    let size = if item_type == 'l' && item.chunks.is_none() {
        item.source.as_ref().map_or(0, |s| s.len() as i64)
    } else {
        chunks.iter().map(|c| c.size as i64).sum()
    };
    let mut f: Vec<(String, Field)> = vec![
        ("type".into(), Field::Text(item_type.to_string())),
        ("mode".into(), Field::Text(mode)),
        ("user".into(), name_or_id(&item.user, item.uid)),
        ("group".into(), name_or_id(&item.group, item.gid)),
        ("uid".into(), Field::Int(item.uid.unwrap_or(0) as i64)),
        ("gid".into(), Field::Int(item.gid.unwrap_or(0) as i64)),
        ("path".into(), Field::Text(text(&item.path))),
        ("bpath".into(), Field::Text(text(&item.path))),
        ("extra".into(), Field::Text(extra)),
        (
            "health".into(),
            Field::Text(
                if item.chunks_healthy.is_some() {
                    "broken"
                } else {
                    "healthy"
                }
                .into(),
            ),
        ),
        ("source".into(), Field::Text(source.clone())),
        ("linktarget".into(), Field::Text(source)),
        (
            "flags".into(),
            Field::Int(item.bsdflags.unwrap_or(0) as i64),
        ),
        ("archivename".into(), Field::Text(archive.into())),
        ("archiveid".into(), Field::Text(archive_id.into())),
        ("size".into(), Field::Int(size)),
        (
            "csize".into(),
            Field::Int(if item_type == 'l' && item.chunks.is_none() {
                size
            } else {
                chunks.iter().map(|c| c.csize as i64).sum()
            }),
        ),
        ("num_chunks".into(), Field::Int(chunks.len() as i64)),
        ("mtime".into(), time(item.mtime)),
        ("ctime".into(), time(item.ctime.unwrap_or(item.mtime))),
        ("atime".into(), time(item.atime.unwrap_or(item.mtime))),
        (
            "isomtime".into(),
            Field::Text(format::iso_time(&format::ns_time(item.mtime))),
        ),
        (
            "isoctime".into(),
            Field::Text(format::iso_time(&format::ns_time(
                item.ctime.unwrap_or(item.mtime),
            ))),
        ),
        (
            "isoatime".into(),
            Field::Text(format::iso_time(&format::ns_time(
                item.atime.unwrap_or(item.mtime),
            ))),
        ),
    ];
    if json {
        f.push(("healthy".into(), Field::Bool(item.chunks_healthy.is_none())));
    }
    if let Some(index) = index {
        // A chunk is unique to this file when the file holds all of its references.
        let mut counts = std::collections::HashMap::new();
        for c in chunks {
            *counts.entry(c.id).or_insert(0u32) += 1;
        }
        let unique = |c: &&rborg::archive::ChunkRef| {
            index
                .get(&c.id)
                .is_some_and(|e| e.refcount == counts[&c.id])
        };
        f.push((
            "dsize".into(),
            Field::Int(chunks.iter().filter(unique).map(|c| c.size as i64).sum()),
        ));
        f.push((
            "dcsize".into(),
            Field::Int(chunks.iter().filter(unique).map(|c| c.csize as i64).sum()),
        ));
        f.push((
            "unique_chunks".into(),
            Field::Int(chunks.iter().filter(unique).count() as i64),
        ));
    }
    let _ = used;
    f
}

#[cfg(test)]
mod tests {
    use super::super::patterns::{assert_r_roots, PathsMode};
    use super::super::Command;

    #[test]
    fn roots_of_r_lines_join_the_paths_in_command_line_order() {
        assert_r_roots("list", PathsMode::Replace, &["d", "b"], |c| match c {
            Command::List(args) => Some((args.patterns, args.paths)),
            _ => None,
        });
    }
}
