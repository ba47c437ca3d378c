//! Borg's pattern language for selecting paths (`--exclude`, `--pattern`, `--patterns-from`,
//! `--exclude-from`, and the paths given to `extract`).
//!
//! Five styles, chosen by a two-letter prefix (`fm:`, `sh:`, `re:`, `pp:`, `pf:`), and pattern
//! lines with a command character: `R` root path, `P` default style, `+` include, `-` exclude,
//! `!` exclude without recursing. Semantics follow `borg/patterns.py` and
//! `borg/shellpattern.py` (identical in 1.2 and 1.4):
//!
//! * paths are matched without their leading `/`;
//! * `fm:` is Python's `fnmatch` (`*` crosses `/`), `sh:` is borg's shell style (`*` stops at `/`,
//!   `**/` spans directories); both match a path or any of its leading directories, and a
//!   trailing `/` means "the contents, not the directory itself";
//! * `pp:` matches a path and everything below it, `pf:` exactly one path;
//! * `re:` is a regular expression searched anywhere in the path. Rust's `regex` syntax is used,
//!   which covers what backup patterns use but has no look-around or back-references;
//! * the first pattern that matches decides; with no match, the matcher's fallback decides.
//!
//! Paths are bytes: a non-UTF-8 byte counts as one character, as it does for borg, which sees it
//! as one surrogate-escaped code point.

use std::collections::HashMap;

use regex::bytes::Regex;

/// Why a pattern or pattern line was refused. The messages are borg's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// A style prefix that does not exist.
    #[error("Unknown pattern style: {0}")]
    UnknownStyle(String),
    /// A `P` line naming a style that does not exist.
    #[error("Invalid pattern style: {0}")]
    InvalidStyle(String),
    /// An empty pattern line.
    #[error("A pattern/command must not be empty.")]
    Empty,
    /// A pattern line without a command character.
    #[error("A pattern/command must start with any of: -, !, +, R, r, P, p")]
    NoCommand,
    /// A command character with nothing after it.
    #[error("A pattern/command must have a value part.")]
    NoValue,
    /// A regular expression that does not compile.
    #[error("Invalid regular expression {pattern:?}: {reason}")]
    BadRegex {
        /// The pattern as given.
        pattern: String,
        /// The compiler's complaint.
        reason: String,
    },
}

/// The five pattern styles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `fm:`: Python's fnmatch.
    Fnmatch,
    /// `sh:`: borg's shell style.
    Shell,
    /// `re:`: a regular expression.
    Regex,
    /// `pp:`: a path prefix.
    PathPrefix,
    /// `pf:`: a full path.
    PathFull,
}

impl Style {
    /// The style for a two-letter prefix.
    pub fn from_prefix(prefix: &str) -> Result<Style, PatternError> {
        Ok(match prefix {
            "fm" => Style::Fnmatch,
            "sh" => Style::Shell,
            "re" => Style::Regex,
            "pp" => Style::PathPrefix,
            "pf" => Style::PathFull,
            other => return Err(PatternError::UnknownStyle(other.to_string())),
        })
    }
}

/// One compiled pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    original: String,
    style: Style,
    /// The normalised pattern text (for `pp:` and `pf:`, the path it compares with).
    text: Vec<u8>,
    regex: Option<Regex>,
    /// Whether a directory excluded by this pattern is still walked for included children.
    recurse_dir: bool,
}

impl Pattern {
    /// Parses `STYLE:pattern`, or `pattern` in the `fallback` style.
    pub fn parse(
        pattern: &str,
        fallback: Style,
        recurse_dir: bool,
    ) -> Result<Pattern, PatternError> {
        let b = pattern.as_bytes();
        // borg: `len(pattern) > 2 and pattern[2] == ":" and pattern[:2].isalnum()`
        let (style, body) =
            if b.len() > 2 && b[2] == b':' && b[..2].iter().all(u8::is_ascii_alphanumeric) {
                (Style::from_prefix(&pattern[..2])?, &pattern[3..])
            } else {
                (fallback, pattern)
            };
        Pattern::new(body, style, recurse_dir)
    }

    /// Compiles `pattern` in the given style.
    pub fn new(pattern: &str, style: Style, recurse_dir: bool) -> Result<Pattern, PatternError> {
        let (text, regex_src) = match style {
            Style::PathFull => (strip_leading_slashes(&normpath(pattern)).to_string(), None),
            Style::PathPrefix => {
                let p = format!("{}/", normpath(pattern).trim_end_matches('/'));
                (strip_leading_slashes(&p).to_string(), None)
            }
            Style::Fnmatch => {
                let p = if pattern.ends_with('/') {
                    format!("{}/*/", normpath(pattern).trim_end_matches('/'))
                } else {
                    format!("{}/*", normpath(pattern))
                };
                let p = strip_leading_slashes(&p).to_string();
                let re = format!("(?s){}\\z", translate_fnmatch(&p));
                (p, Some(re))
            }
            Style::Shell => {
                let p = if pattern.ends_with('/') {
                    format!("{}/**/*/", normpath(pattern).trim_end_matches('/'))
                } else {
                    format!("{}/**/*", normpath(pattern))
                };
                let p = strip_leading_slashes(&p).to_string();
                let re = format!("(?s){}\\z", translate_shell(&p));
                (p, Some(re))
            }
            Style::Regex => (pattern.to_string(), Some(pattern.to_string())),
        };
        let regex = match regex_src {
            Some(src) => {
                // fm/sh must match at the start (Python's re.match); re: searches anywhere.
                let src = if style == Style::Regex {
                    src
                } else {
                    format!("^(?:{src})")
                };
                Some(Regex::new(&src).map_err(|e| PatternError::BadRegex {
                    pattern: pattern.to_string(),
                    reason: e.to_string(),
                })?)
            }
            None => None,
        };
        Ok(Pattern {
            original: pattern.to_string(),
            style,
            text: text.into_bytes(),
            regex,
            recurse_dir,
        })
    }

    /// The pattern as the user wrote it (without the style prefix).
    pub fn original(&self) -> &str {
        &self.original
    }

    /// The pattern's style.
    pub fn style(&self) -> Style {
        self.style
    }

    /// Whether `path` (without a leading `/`) matches.
    pub fn matches(&self, path: &[u8]) -> bool {
        match self.style {
            Style::PathFull => path == self.text.as_slice(),
            Style::PathPrefix => with_slash(path).starts_with(&self.text),
            Style::Fnmatch | Style::Shell => self
                .regex
                .as_ref()
                .is_some_and(|r| r.is_match(&with_slash(path))),
            Style::Regex => self.regex.as_ref().is_some_and(|r| r.is_match(path)),
        }
    }
}

/// What a pattern line does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `+`: include.
    Include,
    /// `-`: exclude, but still walk an excluded directory for included children.
    Exclude,
    /// `!` (and every `--exclude`): exclude and do not walk into it.
    ExcludeNoRecurse,
}

/// A parsed pattern line (`--pattern` or a line of `--patterns-from`).
#[derive(Debug, Clone)]
pub enum PatternLine {
    /// `R path`: a root path to back up.
    Root(String),
    /// `P style`: the default style for the following lines.
    DefaultStyle(Style),
    /// `+`, `-` or `!` with a pattern.
    Rule(Action, Pattern),
}

/// Parses one pattern line; `fallback` is the style for patterns without a prefix (borg's
/// default for pattern lines is `sh:`).
pub fn parse_pattern_line(line: &str, fallback: Style) -> Result<PatternLine, PatternError> {
    let mut chars = line.chars();
    let cmd = chars.next().ok_or(PatternError::Empty)?;
    let rest = chars.as_str().trim_start();
    if !matches!(cmd, '-' | '!' | '+' | 'R' | 'r' | 'P' | 'p') {
        return Err(PatternError::NoCommand);
    }
    if rest.is_empty() {
        return Err(PatternError::NoValue);
    }
    Ok(match cmd {
        'R' | 'r' => PatternLine::Root(rest.to_string()),
        'P' | 'p' => PatternLine::DefaultStyle(
            Style::from_prefix(rest).map_err(|_| PatternError::InvalidStyle(rest.to_string()))?,
        ),
        '+' => PatternLine::Rule(Action::Include, Pattern::parse(rest, fallback, true)?),
        '-' => PatternLine::Rule(Action::Exclude, Pattern::parse(rest, fallback, true)?),
        _ => PatternLine::Rule(
            Action::ExcludeNoRecurse,
            Pattern::parse(rest, fallback, false)?,
        ),
    })
}

/// The lines of a pattern or exclude file that count: stripped, neither empty nor comments
/// (borg's `clean_lines`).
pub fn clean_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

/// The outcome of matching one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchResult {
    /// `Some(true)` include, `Some(false)` exclude, `None` no pattern matched and the matcher
    /// has no fallback.
    pub included: Option<bool>,
    /// Whether to walk into the path if it is a directory.
    pub recurse_dir: bool,
}

/// An ordered list of include/exclude rules (borg's `PatternMatcher`).
#[derive(Debug, Clone, Default)]
pub struct PatternMatcher {
    rules: Vec<(Pattern, Action)>,
    /// `pf:` rules, looked up by path before the others, as borg does; a later rule for the
    /// same path replaces an earlier one (borg keeps them in a dict).
    full_paths: HashMap<Vec<u8>, Action>,
    /// Root paths collected from `R` lines.
    pub roots: Vec<String>,
    /// What `matches` returns when no rule matches.
    pub fallback: Option<bool>,
}

impl PatternMatcher {
    /// An empty matcher with no fallback.
    pub fn new() -> Self {
        PatternMatcher::default()
    }

    /// Adds a rule at the end.
    pub fn add(&mut self, pattern: Pattern, action: Action) {
        if pattern.style == Style::PathFull {
            self.full_paths.insert(pattern.text.clone(), action);
        } else {
            self.rules.push((pattern, action));
        }
    }

    /// Adds an `--exclude` pattern (default style `fm:`, never recursing).
    pub fn add_exclude(&mut self, pattern: &str) -> Result<(), PatternError> {
        let p = Pattern::parse(pattern, Style::Fnmatch, false)?;
        self.add(p, Action::ExcludeNoRecurse);
        Ok(())
    }

    /// Adds the lines of an `--exclude-from` file.
    pub fn add_exclude_file(&mut self, text: &str) -> Result<(), PatternError> {
        for line in clean_lines(text) {
            self.add_exclude(line)?;
        }
        Ok(())
    }

    /// Adds one `--pattern` line. Its patterns default to `sh:`; a `P` line is checked but
    /// changes nothing, because borg's `ArgparsePatternAction` parses every `--pattern` with
    /// the shell style and drops the style a `P` line returns.
    pub fn add_pattern_line(&mut self, line: &str) -> Result<(), PatternError> {
        match parse_pattern_line(line, Style::Shell)? {
            PatternLine::Root(r) => self.roots.push(r),
            PatternLine::DefaultStyle(_) => {}
            PatternLine::Rule(action, p) => self.add(p, action),
        }
        Ok(())
    }

    /// Adds the lines of a `--patterns-from` file. Its `P` lines apply within the file only,
    /// as in borg's `load_pattern_file`.
    pub fn add_patterns_file(&mut self, text: &str) -> Result<(), PatternError> {
        let mut style = Style::Shell;
        for line in clean_lines(text) {
            match parse_pattern_line(line, style)? {
                PatternLine::Root(r) => self.roots.push(r),
                PatternLine::DefaultStyle(s) => style = s,
                PatternLine::Rule(action, p) => self.add(p, action),
            }
        }
        Ok(())
    }

    /// Adds paths given on the command line of `extract`/`list` as `pp:` includes (other
    /// styles by prefix), and sets the fallback to exclude when there is at least one.
    pub fn add_include_paths(&mut self, paths: &[String]) -> Result<(), PatternError> {
        for p in paths {
            let pat = Pattern::parse(p, Style::PathPrefix, true)?;
            self.add(pat, Action::Include);
        }
        self.fallback = Some(paths.is_empty());
        Ok(())
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.full_paths.is_empty()
    }

    /// Matches a path (leading `/` ignored): the first rule that matches decides.
    pub fn matches(&self, path: &[u8]) -> MatchResult {
        let path = strip_leading_slash_bytes(path);
        if let Some(action) = self.full_paths.get(path) {
            return MatchResult {
                included: Some(*action == Action::Include),
                recurse_dir: *action != Action::ExcludeNoRecurse,
            };
        }
        for (pattern, action) in &self.rules {
            if pattern.matches(path) {
                return MatchResult {
                    included: Some(*action == Action::Include),
                    recurse_dir: pattern.recurse_dir,
                };
            }
        }
        MatchResult {
            included: self.fallback,
            recurse_dir: true,
        }
    }
}

fn with_slash(path: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(path.len() + 1);
    p.extend_from_slice(path);
    p.push(b'/');
    p
}

fn strip_leading_slashes(s: &str) -> &str {
    s.trim_start_matches('/')
}

fn strip_leading_slash_bytes(mut p: &[u8]) -> &[u8] {
    while let [b'/', rest @ ..] = p {
        p = rest;
    }
    p
}

/// Python's `os.path.normpath` for POSIX paths: collapses `//`, `.` and `x/..`, keeps a leading
/// `//` pair as Python does, and turns the empty path into `.`.
pub fn normpath(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let initial = if path.starts_with("//") && !path.starts_with("///") {
        "//"
    } else if path.starts_with('/') {
        "/"
    } else {
        ""
    };
    let mut parts: Vec<&str> = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if initial.is_empty() {
                    parts.push("..");
                }
            }
            c => parts.push(c),
        }
    }
    let joined = parts.join("/");
    let out = format!("{initial}{joined}");
    if out.is_empty() {
        ".".to_string()
    } else {
        out
    }
}

/// A regex for one character other than `/`; a lone non-UTF-8 byte counts as a character.
const NOT_SEP: &str = "(?:[^/]|(?-u:[\\x80-\\xff]))";
/// A regex for any one character, including a lone non-UTF-8 byte.
const ANY: &str = "(?:.|(?-u:[\\x80-\\xff]))";

/// borg's `shellpattern.translate`: `**/` is zero or more whole directories, `*` and `?` stay
/// within one path component, `[...]` is a character class.
fn translate_shell(pat: &str) -> String {
    let chars: Vec<char> = pat.chars().collect();
    let mut res = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' => {
                if i + 1 < chars.len() && chars[i] == '*' && chars[i + 1] == '/' {
                    res.push_str(&format!("(?:{NOT_SEP}*/)*"));
                    i += 2;
                } else {
                    res.push_str(NOT_SEP);
                    res.push('*');
                }
            }
            '?' => res.push_str(NOT_SEP),
            '[' => i = translate_class(&chars, i, &mut res),
            c => res.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
        }
    }
    res
}

/// Python's `fnmatch.translate`: `*` is any run of characters (including `/`), `?` any one.
fn translate_fnmatch(pat: &str) -> String {
    let chars: Vec<char> = pat.chars().collect();
    let mut res = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' => {
                while i < chars.len() && chars[i] == '*' {
                    i += 1;
                }
                res.push_str(ANY);
                res.push('*');
            }
            '?' => res.push_str(ANY),
            '[' => i = translate_class(&chars, i, &mut res),
            c => res.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
        }
    }
    res
}

/// Translates a bracket expression that starts after the `[` at `chars[start - 1]`. Returns
/// the index after it. An unclosed `[` is a literal, as in Python.
fn translate_class(chars: &[char], start: usize, res: &mut String) -> usize {
    let n = chars.len();
    let mut j = start;
    if j < n && chars[j] == '!' {
        j += 1;
    }
    if j < n && chars[j] == ']' {
        j += 1;
    }
    while j < n && chars[j] != ']' {
        j += 1;
    }
    if j >= n {
        res.push_str("\\[");
        return start;
    }
    let mut body = &chars[start..j];
    let negate = body.first() == Some(&'!');
    if negate {
        body = &body[1..];
    }
    // Build [a-z] style items, dropping reversed ranges as Python does.
    let mut items = String::new();
    let mut k = 0;
    while k < body.len() {
        let c = body[k];
        if k + 2 < body.len() && body[k + 1] == '-' {
            let hi = body[k + 2];
            if c <= hi {
                items.push_str(&class_char(c));
                items.push('-');
                items.push_str(&class_char(hi));
            }
            k += 3;
        } else {
            items.push_str(&class_char(c));
            k += 1;
        }
    }
    if items.is_empty() {
        // `[!]`-style bodies: an empty set never matches, a negated empty set matches anything.
        res.push_str(if negate { ANY } else { "(?:[a&&b])" });
    } else if negate {
        // A negated class must also match a lone non-UTF-8 byte.
        res.push_str(&format!("(?:[^{items}]|(?-u:[\\x80-\\xff]))"));
    } else {
        res.push_str(&format!("[{items}]"));
    }
    j + 1
}

fn class_char(c: char) -> String {
    match c {
        '\\' | '[' | ']' | '-' | '^' | '&' | '~' => format!("\\{c}"),
        c => c.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, path: &str) -> bool {
        Pattern::parse(pattern, Style::Fnmatch, false)
            .expect("pattern")
            .matches(path.trim_start_matches('/').as_bytes())
    }

    #[test]
    fn fnmatch_style_matches_paths_and_their_contents() {
        assert!(m("/home/user/cache", "/home/user/cache"));
        assert!(m("/home/user/cache", "/home/user/cache/x/y"));
        assert!(!m("/home/user/cache", "/home/user/cachex"));
        assert!(m("*.tmp", "/a/b/c.tmp"));
        assert!(m("/a/*/c", "/a/x/y/c"));
        // A trailing slash excludes the contents but not the directory itself.
        assert!(!m("fm:/a/b/", "/a/b"));
        assert!(m("fm:/a/b/", "/a/b/c"));
        assert!(m("/a/?", "/a/b"));
        assert!(!m("/a/?", "/a/bc"));
        assert!(m("/a/[bc]", "/a/c"));
        assert!(!m("/a/[!bc]", "/a/c"));
        assert!(m("/a/[!bc]", "/a/d"));
        assert!(m("/a/[a-c]x", "/a/bx"));
    }

    #[test]
    fn shell_style_keeps_star_within_a_component() {
        assert!(m("sh:/a/*/c", "/a/x/c"));
        assert!(!m("sh:/a/*/c", "/a/x/y/c"));
        assert!(m("sh:/a/**/c", "/a/x/y/c"));
        assert!(m("sh:/a/**/c", "/a/c"));
        assert!(m("sh:**/*.pyc", "/x/y/z.pyc"));
        assert!(m("sh:/a/b", "/a/b/c/d"));
        assert!(!m("sh:/a/b/", "/a/b"));
        assert!(m("sh:/a/b/", "/a/b/c"));
    }

    #[test]
    fn prefix_full_and_regex_styles() {
        assert!(m("pp:/a/b", "/a/b"));
        assert!(m("pp:/a/b/", "/a/b/c"));
        assert!(!m("pp:/a/b", "/a/bc"));
        assert!(m("pf:/a/b", "/a/b"));
        assert!(!m("pf:/a/b", "/a/b/c"));
        assert!(m("re:\\.tmp$", "/x/y.tmp"));
        assert!(m("re:^a/b", "/a/b/c"));
        assert!(!m("re:^/a/b", "/a/b/c"));
    }

    #[test]
    fn non_utf8_bytes_count_as_one_character() {
        let p = Pattern::parse("sh:/d/?.txt", Style::Fnmatch, false).expect("pattern");
        assert!(p.matches(b"d/\xff.txt"));
        let p = Pattern::parse("fm:/d/*", Style::Fnmatch, false).expect("pattern");
        assert!(p.matches(b"d/\xff\xfe"));
    }

    #[test]
    fn pattern_lines_and_first_match_wins() {
        let mut pm = PatternMatcher::new();
        for line in [
            "R /home",
            "+ /home/user/important",
            "- /home/user/*",
            "! /home/other",
            "- fm:*.tmp",
        ] {
            pm.add_pattern_line(line).expect("line");
        }
        assert_eq!(pm.roots, vec!["/home".to_string()]);
        let r = pm.matches(b"/home/user/important/x");
        assert_eq!(r.included, Some(true));
        let r = pm.matches(b"/home/user/junk");
        assert_eq!((r.included, r.recurse_dir), (Some(false), true));
        let r = pm.matches(b"/home/other");
        assert_eq!((r.included, r.recurse_dir), (Some(false), false));
        assert_eq!(pm.matches(b"/srv/a.tmp").included, Some(false));
        assert_eq!(pm.matches(b"/srv/a.txt").included, None);
    }

    #[test]
    fn a_p_line_on_the_command_line_changes_nothing() {
        let mut pm = PatternMatcher::new();
        pm.add_pattern_line("P fm").expect("line");
        pm.add_pattern_line("- t/*.tmp").expect("line");
        // Still `sh:`: `*` does not cross `/`.
        assert_eq!(pm.matches(b"t/a/x.tmp").included, None);
        assert_eq!(pm.matches(b"t/x.tmp").included, Some(false));
        // In a pattern file a `P` line does change the style of the lines after it.
        let mut pm = PatternMatcher::new();
        pm.add_patterns_file("P fm\n- t/*.tmp\n").expect("file");
        assert_eq!(pm.matches(b"t/a/x.tmp").included, Some(false));
    }

    #[test]
    fn the_last_full_path_rule_for_a_path_wins() {
        let mut pm = PatternMatcher::new();
        pm.add_pattern_line("+ pf:/t/d/l").expect("line");
        pm.add_pattern_line("- pf:/t/d/l").expect("line");
        assert_eq!(pm.matches(b"t/d/l").included, Some(false));
    }

    #[test]
    fn bad_lines_give_borgs_errors() {
        let err = |l: &str| parse_pattern_line(l, Style::Shell).map(|_| ()).unwrap_err();
        assert_eq!(err(""), PatternError::Empty);
        assert_eq!(err("x foo"), PatternError::NoCommand);
        assert_eq!(err("+"), PatternError::NoValue);
        assert_eq!(err("P zz"), PatternError::InvalidStyle("zz".into()));
        assert_eq!(err("- zz:foo"), PatternError::UnknownStyle("zz".into()));
        assert!(matches!(err("- re:("), PatternError::BadRegex { .. }));
    }

    #[test]
    fn include_paths_set_the_fallback() {
        let mut pm = PatternMatcher::new();
        pm.add_include_paths(&["home/user".to_string()])
            .expect("paths");
        assert_eq!(pm.matches(b"home/user/x").included, Some(true));
        assert_eq!(pm.matches(b"home/other").included, Some(false));
        let mut pm = PatternMatcher::new();
        pm.add_include_paths(&[]).expect("paths");
        assert_eq!(pm.matches(b"anything").included, Some(true));
    }

    #[test]
    fn normpath_like_python() {
        for (a, b) in [
            ("", "."),
            ("/", "/"),
            ("//a", "//a"),
            ("///a", "/a"),
            ("a/./b/", "a/b"),
            ("a/../b", "b"),
            ("../a", "../a"),
            ("/../a", "/a"),
            ("a//b", "a/b"),
        ] {
            assert_eq!(normpath(a), b, "normpath({a:?})");
        }
    }
}
