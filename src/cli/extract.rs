//! `rborg extract REPO::ARCHIVE [PATH...]`: restores into the current directory, as borg does
//! (`archiver.py: do_extract`).

use std::os::unix::ffi::OsStrExt;

use clap::Args;

use rborg::commands::extract::{extract_archive, ExtractOptions, ExtractTarget};
use rborg::fs::restore::RestoreOptions;
use rborg::manifest::Operation;

use super::format;
use super::patterns::{PathsMode, PatternArgs};
use super::session;
use super::{CliError, Context, Outcome};

/// Arguments of `rborg extract`.
#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// Output a verbose list of items (files, dirs, …).
    #[arg(long)]
    list: bool,
    /// Do not actually change any files.
    #[arg(short = 'n', long = "dry-run")]
    dry_run: bool,
    /// Only obey numeric user and group identifiers.
    #[arg(long = "numeric-ids", visible_alias = "numeric-owner")]
    numeric_ids: bool,
    /// Do not extract/set flags (e.g. NODUMP, IMMUTABLE).
    #[arg(long = "noflags", visible_alias = "nobsdflags")]
    noflags: bool,
    /// Do not extract/set ACLs.
    #[arg(long)]
    noacls: bool,
    /// Do not extract/set xattrs.
    #[arg(long)]
    noxattrs: bool,
    /// Write all extracted data to stdout.
    #[arg(long)]
    stdout: bool,
    /// Create holes in the output sparse file from all-zero chunks.
    #[arg(long)]
    sparse: bool,
    /// Remove the specified number of leading path elements.
    #[arg(long = "strip-components", value_name = "NUMBER", default_value_t = 0)]
    strip_components: usize,
    // Before `paths`: it reads their argument indices, and clap hands the matches to the
    // fields in order, each taking its own values out.
    #[command(flatten)]
    patterns: PatternArgs,
    /// The archive, as REPO::ARCHIVE.
    #[arg(value_name = "ARCHIVE")]
    location: String,
    /// Paths to extract; patterns are supported.
    #[arg(value_name = "PATH")]
    paths: Vec<String>,
}

/// Runs `rborg extract`.
pub fn run(ctx: &Context, args: ExtractArgs) -> Result<Outcome, CliError> {
    let location = session::parse_location(ctx, &args.location)?;
    let Some(archive) = location.archive.clone() else {
        return Err(CliError::usage(format!(
            "{}: an archive is required (REPO::ARCHIVE)",
            args.location
        )));
    };
    let (paths, matcher) = args.patterns.resolve(&args.paths, PathsMode::Replace)?;
    let mut include_paths = rborg::commands::extract::IncludePaths::new(&paths)
        .map_err(|e| CliError::usage(e.to_string()))?;
    let umask = u32::from_str_radix(&ctx.common.umask, 8).map_err(|_| {
        CliError::usage(format!(
            "--umask: {:?} is not an octal mode",
            ctx.common.umask
        ))
    })?;
    let options = ExtractOptions {
        restore: RestoreOptions {
            numeric_ids: args.numeric_ids,
            noacls: args.noacls,
            noxattrs: args.noxattrs,
            noflags: args.noflags,
            strip_components: args.strip_components,
            sparse: args.sparse,
            umask: Some(umask),
            ..RestoreOptions::default()
        },
        dry_run: args.dry_run,
        consider_part_files: ctx.common.consider_part_files,
    };
    let dest =
        std::env::current_dir().map_err(|e| CliError::error(format!("current directory: {e}")))?;
    let mut session = session::open(ctx, &location, false, &[Operation::Read])?;
    let list = args.list;
    let mut out = std::io::stdout().lock();
    let stdout: Option<&mut dyn std::io::Write> = if args.stdout { Some(&mut out) } else { None };
    let result = extract_archive(
        &mut session,
        &archive,
        &matcher,
        &mut include_paths,
        ExtractTarget {
            dest: dest.as_os_str().as_bytes(),
            stdout,
        },
        &options,
        &mut |item| {
            if list {
                eprintln!("{}", format::remove_surrogates(&item.path));
            }
        },
    );
    let _ = std::io::Write::flush(&mut out);
    let _ = session.close();
    let report = result?;
    let mut codes: Vec<u8> = Vec::new();
    for w in &report.warnings {
        log::warn!("{}", w.message);
        codes.push(w.code);
    }
    codes.sort_unstable();
    codes.dedup();
    Ok(match codes.as_slice() {
        [] => Outcome::Success,
        [one] => Outcome::Warning(*one),
        _ => Outcome::Warning(1),
    })
}

#[cfg(test)]
mod tests {
    use super::super::patterns::{assert_r_roots, PathsMode};
    use super::super::Command;

    #[test]
    fn roots_of_r_lines_join_the_paths_in_command_line_order() {
        assert_r_roots("extract", PathsMode::Replace, &["d", "b"], |c| match c {
            Command::Extract(args) => Some((args.patterns, args.paths)),
            _ => None,
        });
    }
}
