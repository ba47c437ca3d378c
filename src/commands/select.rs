//! Choosing archives by name, glob, order and count (`helpers/manifest.py: Archives.list`).

use regex::Regex;

use crate::manifest::{ArchiveEntry, Manifest, SortBy};

use super::CommandError;

/// Which archives a command works on, as borg's `--glob-archives/--prefix/--sort-by/--first/
/// --last` and `--consider-checkpoints` select them.
#[derive(Debug, Clone, Default)]
pub struct ArchiveSelection {
    /// A shell-style glob over archive names (`-a`); `--prefix P` is the glob `P*`.
    pub glob: Option<String>,
    /// Sort keys, applied as borg does; empty means by timestamp.
    pub sort_by: Vec<SortBy>,
    /// Keep only the first N after sorting.
    pub first: Option<usize>,
    /// Keep only the last N after sorting.
    pub last: Option<usize>,
    /// Include names containing `.checkpoint`.
    pub consider_checkpoints: bool,
}

impl ArchiveSelection {
    /// Whether any filter (glob, first, last) was given; borg's commands change behaviour then.
    pub fn has_filter(&self) -> bool {
        self.glob.is_some() || self.first.is_some() || self.last.is_some()
    }

    /// The selected archives, in order, with their manifest entries.
    pub fn select<'m>(
        &self,
        manifest: &'m Manifest,
    ) -> Result<Vec<(String, &'m ArchiveEntry)>, CommandError> {
        let sort_by = if self.sort_by.is_empty() {
            vec![SortBy::Timestamp]
        } else {
            self.sort_by.clone()
        };
        let mut all = manifest.list(&sort_by, self.consider_checkpoints, None, None, false);
        if let Some(glob) = &self.glob {
            let re = glob_regex(glob)?;
            all.retain(|(name, _)| re.is_match(name));
        }
        if let Some(n) = self.first {
            all.truncate(n);
        } else if let Some(n) = self.last {
            let skip = all.len().saturating_sub(n);
            all.drain(..skip);
        }
        Ok(all)
    }
}

/// Translates a borg shell pattern (`shellpattern.translate` with `match_end=\Z`) to a regex:
/// `**/` spans directories, `*` and `?` stay within one, `[...]` is a character class.
pub fn glob_regex(glob: &str) -> Result<Regex, CommandError> {
    let chars: Vec<char> = glob.chars().collect();
    let mut re = String::from("(?s)^");
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' => {
                if chars.get(i) == Some(&'*') && chars.get(i + 1) == Some(&'/') {
                    re.push_str("(?:[^/]*/)*");
                    i += 2;
                } else {
                    re.push_str("[^/]*");
                }
            }
            '?' => re.push_str("[^/]"),
            '[' => {
                let mut j = i;
                if chars.get(j) == Some(&'!') {
                    j += 1;
                }
                if chars.get(j) == Some(&']') {
                    j += 1;
                }
                while j < chars.len() && chars[j] != ']' {
                    j += 1;
                }
                if j >= chars.len() {
                    re.push_str("\\[");
                } else {
                    let mut body: String = chars[i..j].iter().collect();
                    body = body.replace('\\', "\\\\");
                    i = j + 1;
                    if let Some(rest) = body.strip_prefix('!') {
                        body = format!("^{rest}");
                    } else if body.starts_with('^') {
                        body = format!("\\{body}");
                    }
                    re.push('[');
                    re.push_str(&body);
                    re.push(']');
                }
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    Regex::new(&re).map_err(|e| CommandError::Other {
        message: format!("invalid archive glob {glob:?}: {e}"),
        code: 2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_borg() {
        let re = glob_regex("host-*").expect("glob");
        assert!(re.is_match("host-2024"));
        assert!(!re.is_match("xhost-2024"));
        assert!(!re.is_match("host/x"));
        let re = glob_regex("a?[0-9][!x]").expect("glob");
        assert!(re.is_match("ab1y"));
        assert!(!re.is_match("ab1x"));
        assert!(glob_regex("x[").expect("glob").is_match("x["));
    }
}
