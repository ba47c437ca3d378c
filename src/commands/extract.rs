//! Extracting an archive below a directory (`archiver.py: do_extract`): items are selected by
//! a pattern matcher, their content comes from the chunk stream, and their metadata is
//! restored by [`crate::fs::restore::Extractor`]. Problems with single items are collected as
//! warnings (borg logs them and ends with rc 1); reading errors end the command.

use crate::archive::reader::{self, ReadError};
use crate::archive::Item;
use crate::fs::restore::{Extractor, RestoreError, RestoreOptions};
use crate::fs::FsError;
use crate::manifest::ManifestError;
use crate::patterns::{Pattern, PatternError, PatternMatcher, Style};

use super::{CommandError, Session};

/// How to extract.
#[derive(Debug, Clone, Default)]
pub struct ExtractOptions {
    /// Restore options (numeric ids, strip components, sparse, …).
    pub restore: RestoreOptions,
    /// Only read the archive (content included, so damage is noticed), write nothing.
    pub dry_run: bool,
    /// Extract part files too.
    pub consider_part_files: bool,
}

/// A problem with one item: its path, the message, and borg 1.4's modern warning code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractWarning {
    /// `path: message`, as borg prints it.
    pub message: String,
    /// 104 for OS errors, 102 for other backup errors.
    pub code: u8,
}

/// What an extraction did.
#[derive(Debug, Clone, Default)]
pub struct ExtractReport {
    /// Items extracted (or visited, in a dry run).
    pub items: u64,
    /// Per-item problems.
    pub warnings: Vec<ExtractWarning>,
}

fn warning(path: &[u8], e: &RestoreError) -> ExtractWarning {
    let code = match e {
        RestoreError::Fs(_) => 104,
        _ => 102,
    };
    ExtractWarning {
        message: format!("{}: {e}", crate::fs::display_path(path)),
        code,
    }
}

/// The `PATH` arguments of an extract, counting which of them selected anything, for borg's
/// "Include pattern '…' never matched." warning (`PatternMatcher.get_unmatched_include_patterns`;
/// `pf:` paths are not counted, as in borg).
#[derive(Debug, Default)]
pub struct IncludePaths {
    patterns: Vec<(Pattern, bool)>,
}

impl IncludePaths {
    /// Parses the paths as `extract` does (`pp:` unless another style is given).
    pub fn new(paths: &[String]) -> Result<IncludePaths, PatternError> {
        let patterns = paths
            .iter()
            .map(|p| Pattern::parse(p, Style::PathPrefix, true).map(|p| (p, false)))
            .collect::<Result<_, _>>()?;
        Ok(IncludePaths { patterns })
    }

    /// Records an extracted item: the first path pattern matching it has matched.
    pub fn observe(&mut self, path: &[u8]) {
        if let Some(entry) = self.patterns.iter_mut().find(|(p, _)| p.matches(path)) {
            entry.1 = true;
        }
    }

    /// The paths that matched nothing.
    pub fn unmatched(&self) -> Vec<String> {
        self.patterns
            .iter()
            .filter(|(p, matched)| !matched && p.style() != Style::PathFull)
            .map(|(p, _)| p.original().to_string())
            .collect()
    }
}

/// Where extracted items go.
pub struct ExtractTarget<'a> {
    /// The directory items are created below (borg uses its working directory).
    pub dest: &'a [u8],
    /// `--stdout`: write the selected files' content here instead of creating anything.
    pub stdout: Option<&'a mut dyn std::io::Write>,
}

/// Extracts archive `name` below `dest`, or with `stdout` writes the selected files' content
/// there instead (`--stdout`). `on_item` sees every selected item (after
/// `--strip-components`) before it is extracted, for `--list`.
pub fn extract_archive(
    session: &mut Session,
    name: &str,
    matcher: &PatternMatcher,
    include_paths: &mut IncludePaths,
    target: ExtractTarget<'_>,
    options: &ExtractOptions,
    on_item: &mut dyn FnMut(&Item),
) -> Result<ExtractReport, CommandError> {
    let ExtractTarget { dest, mut stdout } = target;
    let entry = session
        .opened
        .manifest
        .archive(name)
        .cloned()
        .ok_or_else(|| CommandError::Manifest(ManifestError::ArchiveNotFound(name.into())))?;
    let key = &session.opened.key.key;
    let repository = session.repository.as_mut();
    let read_error = |e: ReadError| CommandError::Other {
        message: e.to_string(),
        code: e.exit_code(),
    };
    let loaded = reader::load_archive(repository, key, &entry.id, false).map_err(read_error)?;
    let mut extractor = Extractor::new(dest, options.restore);
    let selected = |item: &Item| matcher.matches(&item.path).included != Some(false);
    if !matcher.is_empty() || options.restore.strip_components > 0 {
        // A partial extract first notes where every hardlink master's data is, so a selected
        // slave whose master is not extracted still gets the content (borg's pre-pass).
        reader::for_each_item(
            repository,
            key,
            &loaded.metadata,
            options.consider_part_files,
            &mut |item| {
                extractor.peek_hardlink_master(&item, selected(&item));
                Ok(())
            },
        )
        .map_err(read_error)?;
    }
    let mut report = ExtractReport::default();
    // Command-level failures (reading the archive) end the extraction; they are parked here
    // while the batch callback can only return a ReadError.
    let mut fatal: Option<CommandError> = None;
    let outcome = reader::for_each_item_batch(
        repository,
        key,
        &loaded.metadata,
        options.consider_part_files,
        &mut |repository, items| {
            // The content of the batch's small files is fetched a group at a time, in one
            // pipelined request per group, instead of one round trip per file.
            let groups = reader::plan_prefetch(&items, &|item| {
                selected(item) && extractor.strip(&item.path).is_some()
            });
            let mut groups = groups.into_iter().peekable();
            let mut cache = reader::ContentCache::default();
            for (index, item) in items.into_iter().enumerate() {
                if let Some((_, ids)) = groups.next_if(|(start, _)| *start == index) {
                    cache.fill(repository, key, &ids);
                }
                if !selected(&item) {
                    continue;
                }
                include_paths.observe(&item.path);
                let Some(stripped) = extractor.strip(&item.path) else {
                    continue;
                };
                let mut shown = item.clone();
                shown.path = stripped;
                on_item(&shown);
                report.items += 1;
                if let (Some(out), false) = (stdout.as_mut(), options.dry_run) {
                    // `--stdout`: the content of every selected file, concatenated.
                    if let Some(chunks) = &item.chunks {
                        cache.read_content(repository, key, chunks, &mut |_, d| {
                            out.write_all(d)
                                .map_err(|e| ReadError::Consumer(format!("stdout: {e}")))
                        })?;
                    }
                    continue;
                }
                if options.dry_run {
                    if let Some(chunks) = &item.chunks {
                        cache.read_content(repository, key, chunks, &mut |_, _| Ok(()))?;
                    }
                    continue;
                }
                let path = item.path.clone();
                let result = extractor.extract(item, &mut |chunks, file| {
                    cache
                        .read_content(repository, key, chunks, &mut |_, data| {
                            file.write_chunk(data).map_err(|e| {
                                ReadError::Consumer(FsError::new("write", &path, e).to_string())
                            })
                        })
                        .map_err(|e| match e {
                            ReadError::Consumer(m) => RestoreError::Content(m),
                            other => {
                                let message = other.to_string();
                                fatal = Some(read_error(other));
                                RestoreError::Content(message)
                            }
                        })
                });
                if fatal.is_some() {
                    return Err(ReadError::Consumer("stopped".into()));
                }
                if let Err(e) = result {
                    report.warnings.push(warning(&path, &e));
                }
            }
            Ok(())
        },
    );
    if let Some(e) = fatal {
        return Err(e);
    }
    outcome.map_err(read_error)?;
    if !options.dry_run && stdout.is_none() {
        extractor.finish();
        for w in extractor.warnings.drain(..) {
            report.warnings.push(ExtractWarning {
                message: w,
                code: 104,
            });
        }
    }
    for pattern in include_paths.unmatched() {
        report.warnings.push(ExtractWarning {
            message: format!("Include pattern '{pattern}' never matched."),
            code: 101,
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmatched_include_paths_are_reported_like_borg() {
        let paths = ["src/a".to_string(), "pf:src/b".into(), "nothere".into()];
        let mut inc = IncludePaths::new(&paths).expect("patterns");
        inc.observe(b"src/a/x");
        assert_eq!(inc.unmatched(), ["nothere"]);
        assert!(IncludePaths::new(&["zz:bad".to_string()]).is_err());
    }
}
