//! Archive name matching for `--glob-archives` / `--prefix`, with borg's shell-pattern rules.
//!
//! borg turns the glob into a regex (`shellpattern.py:translate`): `*` matches any run of
//! characters except `/`, `?` one character except `/`, `**/` zero or more `name/` levels,
//! `[...]` / `[!...]` a character class; everything else is literal. Prune matches the regex
//! from the start of the name and lets the name go on with `.checkpoint` or `.checkpoint.N`
//! after the glob (`do_prune`'s `match_end`). `--prefix P` is the glob `P*`.

use std::collections::HashSet;

use super::PruneError;

/// Which archives a prune run looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ArchiveFilter {
    /// All archives (no `-a` / `-P`).
    #[default]
    All,
    /// `-a/--glob-archives GLOB` (after placeholder expansion, which is the caller's job).
    Glob(String),
    /// `-P/--prefix PREFIX` (deprecated in borg); means the glob `PREFIX*`.
    Prefix(String),
}

impl ArchiveFilter {
    /// The glob borg ends up matching with; an empty glob means `*` as in `Archives.list`.
    pub fn glob(&self) -> String {
        let glob = match self {
            ArchiveFilter::All => String::new(),
            ArchiveFilter::Glob(g) => g.clone(),
            ArchiveFilter::Prefix(p) => format!("{p}*"),
        };
        if glob.is_empty() {
            "*".to_string()
        } else {
            glob
        }
    }

    /// Compile into a matcher for prune candidates.
    pub fn compile(&self) -> Result<CandidateMatcher, PruneError> {
        CandidateMatcher::new(&self.glob())
    }
}

/// One piece of a translated glob.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `?`
    AnyOne,
    /// `*`
    AnyRun,
    /// `**/`
    AnyDirs,
    /// `[...]`
    Class {
        negated: bool,
        items: Vec<(char, char)>,
    },
}

/// A compiled glob that accepts prune candidates: names the glob matches, optionally followed
/// by a checkpoint suffix.
#[derive(Debug, Clone)]
pub struct CandidateMatcher {
    tokens: Vec<Token>,
}

impl CandidateMatcher {
    /// Compile `glob` the way `shellpattern.py:translate` does.
    pub fn new(glob: &str) -> Result<Self, PruneError> {
        Ok(CandidateMatcher {
            tokens: translate(glob)?,
        })
    }

    /// Whether `name` is a prune candidate.
    pub fn matches(&self, name: &str) -> bool {
        let chars: Vec<char> = name.chars().collect();
        let mut failed = HashSet::new();
        match_at(&self.tokens, 0, &chars, 0, &mut failed)
    }
}

/// Whether what follows the glob's match is empty or a checkpoint suffix `.checkpoint(.\d+)?`.
pub(crate) fn checkpoint_suffix_ok(rest: &[char]) -> bool {
    const MARK: &str = ".checkpoint";
    let mark: Vec<char> = MARK.chars().collect();
    if rest.is_empty() {
        return true;
    }
    if !rest.starts_with(&mark) {
        return false;
    }
    let tail = &rest[mark.len()..];
    match tail.split_first() {
        None => true,
        Some(('.', digits)) => !digits.is_empty() && digits.iter().all(char::is_ascii_digit),
        Some(_) => false,
    }
}

/// Backtracking match with a memo of failed (token, position) pairs, so no glob takes
/// exponential time.
fn match_at(
    tokens: &[Token],
    t: usize,
    name: &[char],
    i: usize,
    failed: &mut HashSet<(usize, usize)>,
) -> bool {
    if failed.contains(&(t, i)) {
        return false;
    }
    let result = match tokens.get(t) {
        None => checkpoint_suffix_ok(&name[i..]),
        Some(Token::Literal(c)) => {
            name.get(i) == Some(c) && match_at(tokens, t + 1, name, i + 1, failed)
        }
        Some(Token::AnyOne) => {
            matches!(name.get(i), Some(c) if *c != '/')
                && match_at(tokens, t + 1, name, i + 1, failed)
        }
        Some(Token::Class { negated, items }) => match name.get(i) {
            Some(c) => {
                let inside = items.iter().any(|(lo, hi)| lo <= c && c <= hi);
                inside != *negated && match_at(tokens, t + 1, name, i + 1, failed)
            }
            None => false,
        },
        Some(Token::AnyRun) => {
            let mut j = i;
            loop {
                if match_at(tokens, t + 1, name, j, failed) {
                    break true;
                }
                if j >= name.len() || name[j] == '/' {
                    break false;
                }
                j += 1;
            }
        }
        Some(Token::AnyDirs) => {
            // zero levels, or one `[^/]*/` level and the same token again
            match_at(tokens, t + 1, name, i, failed)
                || name[i..]
                    .iter()
                    .position(|c| *c == '/')
                    .is_some_and(|k| match_at(tokens, t, name, i + k + 1, failed))
        }
    };
    if !result {
        failed.insert((t, i));
    }
    result
}

/// Translate a glob into tokens, following `shellpattern.py:translate` and then how Python's
/// regex compiler reads the character classes it emits.
fn translate(glob: &str) -> Result<Vec<Token>, PruneError> {
    let pat: Vec<char> = glob.chars().collect();
    let n = pat.len();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < n {
        let c = pat[i];
        i += 1;
        match c {
            '*' => {
                if i + 1 < n && pat[i] == '*' && pat[i + 1] == '/' {
                    tokens.push(Token::AnyDirs);
                    i += 2;
                } else {
                    tokens.push(Token::AnyRun);
                }
            }
            '?' => tokens.push(Token::AnyOne),
            '[' => {
                let mut j = i;
                if j < n && pat[j] == '!' {
                    j += 1;
                }
                if j < n && pat[j] == ']' {
                    j += 1;
                }
                while j < n && pat[j] != ']' {
                    j += 1;
                }
                if j >= n {
                    tokens.push(Token::Literal('['));
                } else {
                    let stuff = &pat[i..j];
                    i = j + 1;
                    tokens.push(class(glob, stuff)?);
                }
            }
            other => tokens.push(Token::Literal(other)),
        }
    }
    Ok(tokens)
}

/// Read the inside of `[...]` as Python's `sre_parse` reads `[<stuff>]`: a leading `!`
/// negates (translate turns it into `^`), a leading `^` is literal (translate escapes it),
/// `a-b` is a range, `-` first or last is literal, backslashes are literal.
fn class(glob: &str, stuff: &[char]) -> Result<Token, PruneError> {
    let (negated, body) = match stuff.split_first() {
        Some(('!', rest)) => (true, rest),
        _ => (false, stuff),
    };
    if body.is_empty() {
        // `[!]` cannot occur: translate would have taken `]` as a member; keep it total anyway.
        return Err(PruneError::BadGlob {
            pattern: glob.to_string(),
            reason: "empty character class".to_string(),
        });
    }
    let mut items = Vec::new();
    let mut k = 0;
    while k < body.len() {
        let lo = body[k];
        if k + 2 < body.len() && body[k + 1] == '-' {
            let hi = body[k + 2];
            if hi < lo {
                return Err(PruneError::BadGlob {
                    pattern: glob.to_string(),
                    reason: format!("bad character range {lo}-{hi}"),
                });
            }
            items.push((lo, hi));
            k += 3;
        } else {
            items.push((lo, lo));
            k += 1;
        }
    }
    Ok(Token::Class { negated, items })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(glob: &str, name: &str) -> bool {
        CandidateMatcher::new(glob).unwrap().matches(name)
    }

    #[test]
    fn star_and_question() {
        assert!(m("*", "anything"));
        assert!(m("*", ""));
        assert!(m("host-*", "host-2024"));
        assert!(!m("host-*", "xhost-2024"));
        assert!(!m("*", "a/b"));
        assert!(m("*/*", "a/b"));
        assert!(m("h?st", "host"));
        assert!(!m("h?st", "h/st"));
        assert!(!m("h?st", "hst"));
        assert!(m("*-db", "x-db"));
        assert!(!m("*-db", "x-db-2"));
    }

    #[test]
    fn checkpoint_suffix_is_allowed_after_the_glob() {
        assert!(m("host-*", "host-1.checkpoint"));
        assert!(m("*-db", "x-db.checkpoint"));
        assert!(m("*-db", "x-db.checkpoint.12"));
        assert!(!m("*-db", "x-db.checkpoint."));
        assert!(!m("*-db", "x-db.checkpoint.1a"));
        assert!(!m("*-db", "x-db.checkpointx"));
    }

    #[test]
    fn classes() {
        assert!(m("[ab]x", "ax"));
        assert!(m("[ab]x", "bx"));
        assert!(!m("[ab]x", "cx"));
        assert!(m("[!ab]x", "cx"));
        assert!(!m("[!ab]x", "ax"));
        assert!(m("[a-c]", "b"));
        assert!(m("[a-]", "-"));
        assert!(m("[]a]", "]"));
        assert!(m("[!]a]", "b"));
        assert!(!m("[!]a]", "]"));
        assert!(m("[^a]", "^"));
        assert!(!m("[^a]", "b"));
        assert!(m("[\\]", "\\"));
        assert!(m("[/]", "/"));
        // an unclosed bracket is literal
        assert!(m("a[b", "a[b"));
        assert!(CandidateMatcher::new("[z-a]").is_err());
    }

    #[test]
    fn double_star_dirs() {
        assert!(m("**/x", "x"));
        assert!(m("**/x", "a/x"));
        assert!(m("**/x", "a/b/x"));
        assert!(!m("**/x", "a/b/y"));
        assert!(m("a**", "abc"));
    }

    #[test]
    fn regex_metacharacters_are_literal() {
        assert!(m("a.b", "a.b"));
        assert!(!m("a.b", "axb"));
        assert!(m("a+(b)", "a+(b)"));
    }

    #[test]
    fn no_exponential_blowup() {
        let name = "a".repeat(200);
        assert!(!m("*a*a*a*a*a*a*a*a*b", &name));
    }

    #[test]
    fn filters() {
        assert_eq!(ArchiveFilter::All.glob(), "*");
        assert_eq!(ArchiveFilter::Glob(String::new()).glob(), "*");
        assert_eq!(ArchiveFilter::Prefix("host-".into()).glob(), "host-*");
        assert_eq!(ArchiveFilter::Prefix(String::new()).glob(), "*");
    }
}
