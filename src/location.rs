//! Repository location strings, parsed exactly as borg's `helpers/parseformat.py: Location`.
//!
//! Borg accepts `ssh://[USER@]HOST[:PORT]/PATH[::ARCHIVE]`, scp-style
//! `[USER@]HOST:PATH[::ARCHIVE]`, `file://PATH[::ARCHIVE]` and plain local paths. Borg does this
//! with backtracking regexes; the hand-written parser below gives the same answers (the unit
//! tests pin the cases that matter). Placeholders (`{hostname}`, `{now}`, …) are not expanded
//! here: the caller expands them before parsing, as borg does.

use std::fmt;

/// Why a location string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    /// The text matches none of borg's location forms.
    #[error("Invalid location format: \"{0}\"")]
    Invalid(String),
}

/// Where a repository lives, and optionally which archive in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// `ssh` for a remote repository, `file` for a local one.
    pub proto: Proto,
    /// The ssh user, if one was given.
    pub user: Option<String>,
    /// The host as written, IPv6 addresses keep their brackets (`[::1]`).
    pub raw_host: Option<String>,
    /// The ssh port, if one was given (a port of 0 counts as none, as in borg).
    pub port: Option<u16>,
    /// The repository path; for a remote repository this is exactly what `open` sends.
    pub path: String,
    /// The archive name after `::`, if any.
    pub archive: Option<String>,
}

/// The two kinds of location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// Reached through `borg serve` over ssh.
    Ssh,
    /// A local path.
    File,
}

impl Location {
    /// Parses a location string the way borg's `Location.parse` does.
    ///
    /// When `text` is empty, `::` or `::ARCHIVE`, the repository comes from `borg_repo` (the
    /// value of `$BORG_REPO`, read by the caller) and the archive from `text`.
    pub fn parse(text: &str, borg_repo: Option<&str>) -> Result<Location, LocationError> {
        if let Some(loc) = parse_forms(text) {
            return Ok(loc);
        }
        // borg's `env_re`: "::" alone, or an optional "::ARCHIVE" (archive without '/').
        let env_archive = if text == "::" || text.is_empty() {
            Some(None)
        } else if let Some(archive) = text.strip_prefix("::") {
            (!archive.contains('/')).then(|| Some(archive.to_string()))
        } else {
            None
        };
        let (Some(archive), Some(repo)) = (env_archive, borg_repo) else {
            return Err(LocationError::Invalid(text.to_string()));
        };
        let mut loc = parse_forms(repo).ok_or_else(|| LocationError::Invalid(repo.to_string()))?;
        // borg replaces the archive with the one from the argument, even when that is none.
        loc.archive = archive;
        Ok(loc)
    }

    /// The host without IPv6 brackets, as handed to ssh.
    pub fn host(&self) -> Option<&str> {
        self.raw_host
            .as_deref()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
    }

    /// Whether the repository is reached through `borg serve`.
    pub fn is_remote(&self) -> bool {
        self.proto == Proto::Ssh
    }

    /// The same location with a local path made absolute against the working directory, as
    /// borg's local `Repository` does (`os.path.abspath`); it is what borg records in the
    /// security directory, so both must agree. Remote locations are returned unchanged.
    pub fn absolute(&self) -> Location {
        let mut loc = self.clone();
        if loc.proto == Proto::File && !loc.path.starts_with('/') {
            if let Ok(cwd) = std::env::current_dir() {
                loc.path = posix_normpath(&format!("{}/{}", cwd.display(), loc.path));
            }
        }
        loc
    }

    /// borg's `canonical_path`: the form shown to users (relative remote paths become `/./x`,
    /// home-relative ones `/~x`).
    pub fn canonical_path(&self) -> String {
        match self.proto {
            Proto::File => self.path.clone(),
            Proto::Ssh => {
                let path = if self.path.starts_with('~') {
                    format!("/{}", self.path)
                } else if !self.path.starts_with('/') {
                    format!("/./{}", self.path)
                } else {
                    self.path.clone()
                };
                format!(
                    "ssh://{}{}{}{}",
                    self.user
                        .as_ref()
                        .map(|u| format!("{u}@"))
                        .unwrap_or_default(),
                    self.raw_host.as_deref().unwrap_or(""),
                    self.port.map(|p| format!(":{p}")).unwrap_or_default(),
                    path
                )
            }
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical_path())?;
        if let Some(a) = &self.archive {
            write!(f, "::{a}")?;
        }
        Ok(())
    }
}

/// Tries borg's three regexes in its order: `ssh_re`, `file_re`, `scp_re`.
fn parse_forms(text: &str) -> Option<Location> {
    if let Some(rest) = text.strip_prefix("ssh://") {
        if let Some(loc) = parse_ssh(rest) {
            return Some(loc);
        }
    }
    if let Some(rest) = text.strip_prefix("file://") {
        if let Some(loc) = parse_file(rest) {
            return Some(loc);
        }
    }
    parse_scp(text)
}

/// Splits `PATH[::ARCHIVE]`: the path ends at the first `::`, must be non-empty, and the archive
/// (if the separator is there) must be non-empty and free of `/`.
fn split_archive(text: &str) -> Option<(&str, Option<String>)> {
    match text.find("::") {
        None if !text.is_empty() => Some((text, None)),
        None => None,
        Some(0) => None,
        Some(i) => {
            let archive = &text[i + 2..];
            if archive.is_empty() || archive.contains('/') {
                None
            } else {
                Some((&text[..i], Some(archive.to_string())))
            }
        }
    }
}

/// borg's `optional_user_re`: `USER@` where USER has no `@`, `:` or `/`. Returns the user and
/// the rest.
fn split_user(text: &str) -> (Option<&str>, &str) {
    if let Some(at) = text.find('@') {
        let user = &text[..at];
        if !user.is_empty() && !user.contains([':', '/']) {
            return (Some(user), &text[at + 1..]);
        }
    }
    (None, text)
}

/// borg's `host_re`: a name without `:`/`/` (not starting with `[` nor ending with `]`), or a
/// bracketed IPv6 address. Returns the host and the rest.
fn split_host(text: &str) -> Option<(&str, &str)> {
    if text.starts_with('[') {
        let end = text.find(']')?;
        let inner = &text[1..end];
        if inner.is_empty()
            || !inner
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return None;
        }
        return Some((&text[..=end], &text[end + 1..]));
    }
    let end = text.find([':', '/']).unwrap_or(text.len());
    let host = &text[..end];
    if host.is_empty() || host.ends_with(']') {
        return None;
    }
    Some((host, &text[end..]))
}

fn parse_ssh(text: &str) -> Option<Location> {
    let (user, rest) = split_user(text);
    let (host, mut rest) = split_host(rest)?;
    let mut port = None;
    if let Some(after) = rest.strip_prefix(':') {
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return None;
        }
        // Python's `int(port) or None`: port 0 is no port; an absurd port is no valid location.
        let p: u32 = after[..digits].parse().ok()?;
        port = u16::try_from(p).ok().filter(|p| *p != 0);
        if p > u32::from(u16::MAX) {
            return None;
        }
        rest = &after[digits..];
    }
    // abs_path_re: "/" and at least one more character.
    if !rest.starts_with('/') {
        return None;
    }
    let (path, archive) = split_archive(rest)?;
    if path.len() < 2 {
        return None;
    }
    Some(Location {
        proto: Proto::Ssh,
        user: user.map(str::to_string),
        raw_host: Some(host.to_string()),
        port,
        path: normpath_special(path),
        archive,
    })
}

fn parse_file(text: &str) -> Option<Location> {
    // file_path_re: an optional server name up to the first "/", the "/", then at least one
    // character; the whole is the path.
    let slash = text.find('/')?;
    let (path, archive) = split_archive(text)?;
    if path.len() < slash + 2 {
        return None;
    }
    Some(Location {
        proto: Proto::File,
        user: None,
        raw_host: None,
        port: None,
        path: normpath_special(path),
        archive,
    })
}

fn parse_scp(text: &str) -> Option<Location> {
    // First with the "[USER@]HOST:" prefix, then, as the regex backtracks, without it (a local
    // path).
    let with_prefix = || -> Option<Location> {
        let (user, rest) = split_user(text);
        let (host, rest) = split_host(rest)?;
        let rest = rest.strip_prefix(':')?;
        let (path, archive) = scp_path(rest)?;
        Some(Location {
            proto: Proto::Ssh,
            user: user.map(str::to_string),
            raw_host: Some(host.to_string()),
            port: None,
            path,
            archive,
        })
    };
    if let Some(loc) = with_prefix() {
        return Some(loc);
    }
    let (path, archive) = scp_path(text)?;
    Some(Location {
        proto: Proto::File,
        user: None,
        raw_host: None,
        port: None,
        path,
        archive,
    })
}

/// borg's `scp_path_re` plus the archive: not starting with `:`, `//` or `ssh://`.
fn scp_path(text: &str) -> Option<(String, Option<String>)> {
    if text.starts_with(':') || text.starts_with("//") || text.starts_with("ssh://") {
        return None;
    }
    let (path, archive) = split_archive(text)?;
    Some((normpath_special(path), archive))
}

/// borg's `normpath_special`: `os.path.normpath`, except that a leading `/./` survives.
fn normpath_special(path: &str) -> String {
    let normal = posix_normpath(path);
    if path.starts_with("/./") {
        format!("/.{normal}")
    } else {
        normal
    }
}

/// Python's `posixpath.normpath`, purely lexical.
fn posix_normpath(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let initial_slashes = if path.starts_with("//") && !path.starts_with("///") {
        2
    } else if path.starts_with('/') {
        1
    } else {
        0
    };
    let mut parts: Vec<&str> = Vec::new();
    for comp in path.split('/') {
        if comp.is_empty() || comp == "." {
            continue;
        }
        if comp != ".." || (initial_slashes == 0 && parts.is_empty()) || parts.last() == Some(&"..")
        {
            parts.push(comp);
        } else if !parts.is_empty() {
            parts.pop();
        }
    }
    let joined = format!("{}{}", "/".repeat(initial_slashes), parts.join("/"));
    if joined.is_empty() {
        ".".to_string()
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Location {
        Location::parse(text, None).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn open_paths_from_the_spec_table() {
        let table = [
            ("user@host:relrepo", "relrepo"),
            ("host:~/repo", "~/repo"),
            ("host:~other/repo", "~other/repo"),
            ("ssh://user@host:2222/./rel", "/./rel"),
            ("ssh://host/~/x", "/~/x"),
            ("host:/abs/path", "/abs/path"),
            ("ssh://user@host/abs/path::arch", "/abs/path"),
        ];
        for (text, path) in table {
            let loc = p(text);
            assert_eq!(loc.path, path, "{text}");
            assert_eq!(loc.proto, Proto::Ssh, "{text}");
        }
    }

    #[test]
    fn ssh_urls() {
        let loc = p("ssh://user@host:2222/./rel");
        assert_eq!(loc.user.as_deref(), Some("user"));
        assert_eq!(loc.host(), Some("host"));
        assert_eq!(loc.port, Some(2222));
        let loc = p("ssh://user@host/abs/path::arch");
        assert_eq!(loc.archive.as_deref(), Some("arch"));
        assert_eq!(loc.port, None);
        let loc = p("ssh://[::1]:99/p");
        assert_eq!(loc.raw_host.as_deref(), Some("[::1]"));
        assert_eq!(loc.host(), Some("::1"));
        assert_eq!(loc.port, Some(99));
        assert_eq!(loc.canonical_path(), "ssh://[::1]:99/p");
        let loc = p("ssh://host:0/p");
        assert_eq!(loc.port, None, "borg treats port 0 as no port");
        assert_eq!(p("ssh://h/a//b/../c/").path, "/a/c");
        assert_eq!(p("ssh://h/a:b").path, "/a:b");
        assert_eq!(p("ssh://h/a:::b").archive.as_deref(), Some(":b"));
    }

    #[test]
    fn scp_style_and_local() {
        let loc = p("user@host:relrepo");
        assert_eq!(loc.canonical_path(), "ssh://user@host/./relrepo");
        let loc = p("host:~other/repo");
        assert_eq!(loc.canonical_path(), "ssh://host/~other/repo");
        let loc = p("[fe80::1]:repo::a1");
        assert_eq!(loc.host(), Some("fe80::1"));
        assert_eq!(loc.path, "repo");
        assert_eq!(loc.archive.as_deref(), Some("a1"));
        // No "HOST:" prefix: a local path.
        let loc = p("/tmp/repo::arch");
        assert_eq!((loc.proto, loc.path.as_str()), (Proto::File, "/tmp/repo"));
        let loc = p("relative/../repo");
        assert_eq!((loc.proto, loc.path.as_str()), (Proto::File, "repo"));
        // "host::arch" is the local repository "host" (the scp path may not start with ':').
        let loc = p("host::arch");
        assert_eq!((loc.proto, loc.path.as_str()), (Proto::File, "host"));
        assert_eq!(loc.archive.as_deref(), Some("arch"));
        assert_eq!(p("/./x").path, "/./x");
    }

    #[test]
    fn file_urls() {
        let loc = p("file:///tmp/repo::arch");
        assert_eq!((loc.proto, loc.path.as_str()), (Proto::File, "/tmp/repo"));
        assert_eq!(loc.archive.as_deref(), Some("arch"));
        assert_eq!(p("file://server/path").path, "server/path");
    }

    #[test]
    fn invalid_forms() {
        for text in ["", "::", "::a", "ssh://host/", "/a::b/c", "//x"] {
            assert!(Location::parse(text, None).is_err(), "{text} should fail");
        }
        assert_eq!(
            Location::parse("", None).unwrap_err().to_string(),
            "Invalid location format: \"\""
        );
    }

    #[test]
    fn borg_repo_fallback() {
        let env = Some("ssh://h/envrepo::ignored");
        let loc = Location::parse("", env).unwrap();
        assert_eq!(loc.path, "/envrepo");
        assert_eq!(loc.archive, None, "the argument's (absent) archive wins");
        let loc = Location::parse("::", env).unwrap();
        assert_eq!(loc.archive, None);
        let loc = Location::parse("::arch", env).unwrap();
        assert_eq!(
            (loc.path.as_str(), loc.archive.as_deref()),
            ("/envrepo", Some("arch"))
        );
        // A real location ignores BORG_REPO.
        assert_eq!(Location::parse("h:r", env).unwrap().path, "r");
        assert!(Location::parse("::a/b", env).is_err());
    }

    #[test]
    fn normpath_matches_python() {
        let cases = [
            ("", "."),
            ("/", "/"),
            ("//", "//"),
            ("///a", "/a"),
            ("//a/b", "//a/b"),
            ("a/./b/", "a/b"),
            ("../a", "../a"),
            ("a/../..", ".."),
            ("/../a", "/a"),
            ("a/..", "."),
        ];
        for (input, want) in cases {
            assert_eq!(posix_normpath(input), want, "{input}");
        }
    }
}
