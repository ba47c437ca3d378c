//! The include/exclude options `create`, `extract` and `list` share (borg's
//! `define_exclude_and_patterns`): `-e/--exclude`, `--exclude-from`, `--pattern`,
//! `--patterns-from`.
//!
//! borg's argparse actions append every one of them to a single list while the command line
//! is parsed, so the matcher sees them in command-line order and, the first matching rule
//! deciding, that order changes results when rules overlap. clap keeps each option's values
//! apart, so this module implements `clap::Args` by hand and puts the values back into
//! command-line order with their argument indices. The `R` lines of `--pattern` and
//! `--patterns-from` are root paths; where they go relative to the positional `PATH`s follows
//! argparse too (see [`PatternArgs::paths`]).

use std::ffi::OsString;

use clap::{Arg, ArgAction, ArgMatches, Command};

use rborg::patterns::{PatternError, PatternMatcher};

use super::CliError;

/// One include/exclude option, as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternOption {
    /// `-e/--exclude PATTERN`.
    Exclude(String),
    /// `--exclude-from EXCLUDEFILE`.
    ExcludeFrom(String),
    /// `--pattern PATTERN`.
    Pattern(String),
    /// `--patterns-from PATTERNFILE`.
    PatternsFrom(String),
}

/// How a command's positional `PATH`s combine with the roots of `R` lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathsMode {
    /// `create` (argparse `action='extend'`): all of them, in command-line order.
    Extend,
    /// `extract`, `list` (argparse's default store action): the positional paths, when there
    /// are any, replace the roots given before them; later roots are appended.
    Replace,
}

/// Builds a [`PatternOption`] from an option's value.
type MakeOption = fn(String) -> PatternOption;

/// The include/exclude options of one command, in command-line order.
#[derive(Debug, Clone, Default)]
pub struct PatternArgs {
    /// Each option with its argument index.
    options: Vec<(usize, PatternOption)>,
    /// The argument indices of the command's positional `PATH`s (argument id `paths`).
    path_indices: Vec<usize>,
}

/// clap argument ids; one command must not use them for anything else.
const EXCLUDE: &str = "exclude";
const EXCLUDE_FROM: &str = "exclude_from";
const PATTERN: &str = "pattern";
const PATTERNS_FROM: &str = "patterns_from";
/// The id of the positional paths of `create`, `extract` and `list`.
const PATHS: &str = "paths";

impl clap::Args for PatternArgs {
    fn augment_args(cmd: Command) -> Command {
        let opt =
            |id: &'static str, long: &'static str, value: &'static str, help: &'static str| {
                Arg::new(id)
                    .long(long)
                    .value_name(value)
                    .action(ArgAction::Append)
                    .num_args(1)
                    .help(help)
                    .help_heading("Include/Exclude options")
            };
        cmd.arg(
            opt(
                EXCLUDE,
                "exclude",
                "PATTERN",
                "Exclude paths matching PATTERN",
            )
            .short('e'),
        )
        .arg(opt(
            EXCLUDE_FROM,
            "exclude-from",
            "EXCLUDEFILE",
            "Read exclude patterns from EXCLUDEFILE, one per line",
        ))
        .arg(opt(
            PATTERN,
            "pattern",
            "PATTERN",
            "Include/exclude paths matching PATTERN",
        ))
        .arg(opt(
            PATTERNS_FROM,
            "patterns-from",
            "PATTERNFILE",
            "Read include/exclude patterns from PATTERNFILE, one per line",
        ))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl clap::FromArgMatches for PatternArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut args = PatternArgs::default();
        args.update_from_arg_matches(matches)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        let mut options = Vec::new();
        let kinds: [(&str, MakeOption); 4] = [
            (EXCLUDE, PatternOption::Exclude),
            (EXCLUDE_FROM, PatternOption::ExcludeFrom),
            (PATTERN, PatternOption::Pattern),
            (PATTERNS_FROM, PatternOption::PatternsFrom),
        ];
        for (id, make) in kinds {
            let values = matches.get_many::<String>(id).into_iter().flatten();
            let indices = matches.indices_of(id).into_iter().flatten();
            options.extend(indices.zip(values.cloned().map(make)));
        }
        options.sort_by_key(|(index, _)| *index);
        self.options = options;
        // The positional paths belong to the command, not to this group; their indices are
        // only read to place the roots of `R` lines as argparse does.
        self.path_indices = match matches.try_contains_id(PATHS) {
            Ok(true) => matches.indices_of(PATHS).into_iter().flatten().collect(),
            _ => Vec::new(),
        };
        Ok(())
    }
}

/// The option strings that take a pattern (or pattern file) as their value.
const VALUE_OPTIONS: [&str; 5] = [
    "-e",
    "--exclude",
    "--exclude-from",
    "--pattern",
    "--patterns-from",
];

/// argparse takes a word that starts with `-` as a value when it contains a space
/// (`--pattern '- *.tmp'`); clap would take it for an option. Joins such a word to the
/// pattern option before it (`--pattern=- *.tmp`), leaving everything else, so a word like
/// `--dry-run` after `--pattern` is still refused as argparse refuses it.
pub fn join_spaced_values(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out: Vec<OsString> = Vec::new();
    for arg in args {
        let spaced_dash = arg
            .to_str()
            .is_some_and(|a| a.starts_with('-') && a.contains(' '));
        let after_option = out
            .last()
            .and_then(|l| l.to_str())
            .is_some_and(|l| VALUE_OPTIONS.contains(&l));
        if spaced_dash && after_option {
            if let Some(last) = out.last_mut() {
                last.push("=");
                last.push(&arg);
                continue;
            }
        }
        out.push(arg);
    }
    out
}

fn read_text(path: &str) -> Result<String, CliError> {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| CliError::error(python_os_error(&e, path)))
}

/// An `OSError` as borg's pattern-file actions report it: `raise Error(str(e))`, and borg's
/// `Error` reads "Error: {}".
fn python_os_error(e: &std::io::Error, path: &str) -> String {
    match e.raw_os_error() {
        Some(code) => {
            let text = e.to_string();
            let text = text.trim_end_matches(&format!(" (os error {code})"));
            format!("Error: [Errno {code}] {text}: '{path}'")
        }
        None => format!("Error: {e}: '{path}'"),
    }
}

fn bad(e: PatternError) -> CliError {
    CliError::usage(e.to_string())
}

impl PatternArgs {
    /// The options in command-line order.
    #[cfg(test)]
    pub fn options(&self) -> impl Iterator<Item = &PatternOption> {
        self.options.iter().map(|(_, o)| o)
    }

    /// The include/exclude rules in command-line order (borg's `args.patterns`), without
    /// include paths, and the roots of `R` lines, each with the argument index it came from.
    fn rules(&self) -> Result<(PatternMatcher, Vec<(usize, String)>), CliError> {
        let mut m = PatternMatcher::new();
        let mut roots = Vec::new();
        for (index, option) in &self.options {
            match option {
                PatternOption::Exclude(p) => m.add_exclude(p).map_err(bad)?,
                PatternOption::ExcludeFrom(f) => m.add_exclude_file(&read_text(f)?).map_err(bad)?,
                PatternOption::Pattern(p) => m.add_pattern_line(p).map_err(bad)?,
                PatternOption::PatternsFrom(f) => {
                    m.add_patterns_file(&read_text(f)?).map_err(bad)?
                }
            }
            roots.extend(m.roots.drain(..).map(|r| (*index, r)));
        }
        Ok((m, roots))
    }

    /// Reads the pattern files (once: one may be a pipe) and returns the command's paths and
    /// matcher. The paths are the positional `paths` (given at `path_indices`) combined with
    /// the roots of `R` lines as argparse combines them for `mode`. For
    /// [`PathsMode::Replace`] (`extract`, `list`) the matcher is borg's `build_matcher`: the
    /// rules in command-line order, then the paths as `pp:` includes; for `create` it is the
    /// rules alone.
    pub fn resolve(
        &self,
        positional: &[String],
        mode: PathsMode,
    ) -> Result<(Vec<String>, PatternMatcher), CliError> {
        let (mut matcher, roots) = self.rules()?;
        let paths = merge_paths(positional, &self.path_indices, &roots, mode);
        if mode == PathsMode::Replace {
            matcher.add_include_paths(&paths).map_err(bad)?;
        }
        Ok((paths, matcher))
    }
}

/// Places roots among positional paths by argument index.
fn merge_paths(
    positional: &[String],
    path_indices: &[usize],
    roots: &[(usize, String)],
    mode: PathsMode,
) -> Vec<String> {
    let mut all: Vec<(usize, &String)> = roots.iter().map(|(i, r)| (*i, r)).collect();
    let first_path = path_indices.first().copied();
    if mode == PathsMode::Replace {
        if let Some(first) = first_path {
            all.retain(|(i, _)| *i > first);
        }
    }
    // Without indices (not parsed from a command line) the positional paths come first.
    all.extend(
        positional
            .iter()
            .enumerate()
            .map(|(k, p)| (path_indices.get(k).copied().unwrap_or(k), p)),
    );
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, p)| p.clone()).collect()
}

/// For the commands' tests: parses `rborg COMMAND --pattern 'R c' r::a d --pattern 'R b'`,
/// takes the pattern options and positional paths out of it with `pick`, and asserts the paths
/// `resolve` gives in `mode`.
#[cfg(test)]
pub(super) fn assert_r_roots(
    command: &str,
    mode: PathsMode,
    expected: &[&str],
    pick: impl FnOnce(super::Command) -> Option<(PatternArgs, Vec<String>)>,
) {
    use clap::Parser;
    let argv = [
        "rborg",
        command,
        "--pattern",
        "R c",
        "r::a",
        "d",
        "--pattern",
        "R b",
    ];
    let cli = super::Cli::try_parse_from(argv).expect("the command line parses");
    let Some((patterns, positional)) = pick(cli.command) else {
        panic!("{command} parses as another command");
    };
    let (paths, _) = patterns.resolve(&positional, mode).expect("paths");
    assert_eq!(paths, expected);
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Probe {
        #[command(flatten)]
        patterns: PatternArgs,
        #[arg(short = 'x')]
        flag: bool,
        location: String,
        paths: Vec<String>,
    }

    fn parse(argv: &[&str]) -> Probe {
        let argv = std::iter::once("probe")
            .chain(argv.iter().copied())
            .map(OsString::from);
        Probe::try_parse_from(join_spaced_values(argv)).expect("parses")
    }

    #[test]
    fn options_keep_command_line_order() {
        let p = parse(&[
            "--pattern",
            "+ a/b",
            "-e",
            "a",
            "-x",
            "--exclude-from",
            "f",
            "--pattern",
            "- c",
            "--patterns-from",
            "g",
            "--exclude=-d",
            "repo::arch",
        ]);
        let got: Vec<_> = p.patterns.options().cloned().collect();
        assert_eq!(
            got,
            vec![
                PatternOption::Pattern("+ a/b".into()),
                PatternOption::Exclude("a".into()),
                PatternOption::ExcludeFrom("f".into()),
                PatternOption::Pattern("- c".into()),
                PatternOption::PatternsFrom("g".into()),
                PatternOption::Exclude("-d".into()),
            ]
        );
        assert!(p.flag);
        assert_eq!(p.location, "repo::arch");
    }

    #[test]
    fn a_missing_pattern_file_is_reported_like_borg() {
        let p = parse(&["--patterns-from", "/nonexistent/pat.txt", "r::a"]);
        let err = p
            .patterns
            .resolve(&[], PathsMode::Replace)
            .expect_err("missing file");
        assert_eq!(
            err.message,
            "Error: [Errno 2] No such file or directory: '/nonexistent/pat.txt'"
        );
    }

    #[test]
    fn only_spaced_values_after_a_pattern_option_are_joined() {
        let joined = join_spaced_values(
            [
                "--pattern",
                "- a b",
                "-e",
                "-x y",
                "--list",
                "- c d",
                "--exclude",
                "--dry-run",
            ]
            .map(OsString::from),
        );
        let joined: Vec<&str> = joined.iter().filter_map(|a| a.to_str()).collect();
        assert_eq!(
            joined,
            [
                "--pattern=- a b",
                "-e=-x y",
                "--list",
                "- c d",
                "--exclude",
                "--dry-run"
            ]
        );
        let p = parse(&["-e", "-x y", "--pattern", "- a b", "r::a"]);
        let got: Vec<_> = p.patterns.options().cloned().collect();
        assert_eq!(
            got,
            [
                PatternOption::Exclude("-x y".into()),
                PatternOption::Pattern("- a b".into())
            ]
        );
        // As argparse: an option-like word is not taken as the pattern.
        let argv = ["probe", "--exclude", "-x", "r::a"].map(OsString::from);
        assert!(Probe::try_parse_from(join_spaced_values(argv)).is_err());
    }

    #[test]
    fn the_first_matching_rule_is_the_first_given() {
        let p = parse(&["--pattern", "+ t/a/b", "--exclude", "t/a", "r::a"]);
        let (_, m) = p
            .patterns
            .resolve(&[], PathsMode::Replace)
            .expect("matcher");
        assert_eq!(m.matches(b"t/a/b/z").included, Some(true));
        let p = parse(&["--exclude", "t/a", "--pattern", "+ t/a/b", "r::a"]);
        let (_, m) = p
            .patterns
            .resolve(&[], PathsMode::Replace)
            .expect("matcher");
        assert_eq!(m.matches(b"t/a/b/z").included, Some(false));
    }

    #[test]
    fn roots_join_the_paths_as_argparse_puts_them() {
        let argv = ["--pattern", "R c", "r::a", "d", "e", "--pattern", "R b"];
        let p = parse(&argv);
        let extend = p
            .patterns
            .resolve(&p.paths, PathsMode::Extend)
            .expect("paths")
            .0;
        assert_eq!(extend, ["c", "d", "e", "b"]);
        let replace = p
            .patterns
            .resolve(&p.paths, PathsMode::Replace)
            .expect("paths")
            .0;
        assert_eq!(replace, ["d", "e", "b"]);
        // Without positional paths the roots are the paths.
        let p = parse(&["--pattern", "R c", "r::a"]);
        let replace = p
            .patterns
            .resolve(&p.paths, PathsMode::Replace)
            .expect("paths")
            .0;
        assert_eq!(replace, ["c"]);
    }
}
