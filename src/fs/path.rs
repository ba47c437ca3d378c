//! Path rules of borg's create: `os.path.normpath`, `make_path_safe` and the 1.4 "slashdot"
//! prefix (`get_strip_prefix`), all on bytes.

/// Python's `posixpath.normpath` on bytes: collapses `//`, `.` and `x/..`, keeps a leading `//`
/// pair, and turns the empty path into `.`.
pub fn normpath(path: &[u8]) -> Vec<u8> {
    if path.is_empty() {
        return b".".to_vec();
    }
    let initial: &[u8] = if path.starts_with(b"//") && !path.starts_with(b"///") {
        b"//"
    } else if path.starts_with(b"/") {
        b"/"
    } else {
        b""
    };
    let mut parts: Vec<&[u8]> = Vec::new();
    for comp in path.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                if initial.is_empty() && (parts.is_empty() || parts.last() == Some(&&b".."[..])) {
                    parts.push(comp);
                } else if !parts.is_empty() {
                    parts.pop();
                }
            }
            _ => parts.push(comp),
        }
    }
    let mut out = initial.to_vec();
    out.extend_from_slice(&parts.join(&b'/'));
    if out.is_empty() {
        b".".to_vec()
    } else {
        out
    }
}

/// `os.path.join(a, b)` for a relative `b`.
pub fn join(a: &[u8], b: &[u8]) -> Vec<u8> {
    if b.starts_with(b"/") {
        return b.to_vec();
    }
    let mut out = a.to_vec();
    if !out.is_empty() && !out.ends_with(b"/") {
        out.push(b'/');
    }
    out.extend_from_slice(b);
    out
}

/// Borg's `make_path_safe`: strips any leading run of `/` and `../`-then-`/` groups (the regex
/// `^((\.\.)?/+)+`), and returns `.` for what is left empty.
pub fn make_path_safe(path: &[u8]) -> Vec<u8> {
    let mut rest = path;
    loop {
        let after_dots = rest.strip_prefix(b"..").unwrap_or(rest);
        let slashes = after_dots.iter().take_while(|&&b| b == b'/').count();
        if slashes == 0 {
            break;
        }
        rest = &after_dots[slashes..];
    }
    if rest.is_empty() {
        b".".to_vec()
    } else {
        rest.to_vec()
    }
}

/// Borg 1.4's `get_strip_prefix`: for a root path like `/srv/./data`, the prefix `/srv/` that
/// is removed from archived paths. `None` when there is no `/./` after the first byte.
pub fn get_strip_prefix(path: &[u8]) -> Option<Vec<u8>> {
    let pos = path.windows(3).position(|w| w == b"/./")?;
    if pos == 0 {
        return None;
    }
    let mut p = normpath(&path[..pos]);
    p.push(b'/');
    Some(p)
}

/// What `create_helper` does with a walked path under a strip prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stripped {
    /// Archive under this path (not yet made safe).
    Keep(Vec<u8>),
    /// A directory level above the kept part: no item, status `x`.
    Skip,
}

/// Applies a strip prefix to a walked path the way borg 1.4's `create_helper` does.
pub fn apply_strip_prefix(path: &[u8], strip_prefix: Option<&[u8]>) -> Stripped {
    let Some(prefix) = strip_prefix else {
        return Stripped::Keep(path.to_vec());
    };
    let mut with_sep = path.to_vec();
    with_sep.push(b'/');
    if with_sep == prefix {
        Stripped::Keep(b".".to_vec())
    } else if prefix.starts_with(&with_sep) {
        Stripped::Skip
    } else {
        Stripped::Keep(path.strip_prefix(prefix).unwrap_or(path).to_vec())
    }
}

/// The archived path of a walked path: strip prefix, then `make_path_safe`.
pub fn archive_path(path: &[u8], strip_prefix: Option<&[u8]>) -> Option<Vec<u8>> {
    match apply_strip_prefix(path, strip_prefix) {
        Stripped::Keep(p) => Some(make_path_safe(&p)),
        Stripped::Skip => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normpath_matches_python() {
        for (i, o) in [
            ("", "."),
            ("/", "/"),
            ("//", "//"),
            ("///a", "/a"),
            ("a/./b/", "a/b"),
            ("a/../..", ".."),
            ("/../a", "/a"),
            ("./", "."),
            ("a//b/../c", "a/c"),
        ] {
            assert_eq!(normpath(i.as_bytes()), o.as_bytes(), "{i}");
        }
    }

    #[test]
    fn make_path_safe_matches_borg() {
        for (i, o) in [
            ("/etc/x", "etc/x"),
            ("../../a", "a"),
            ("//a", "a"),
            ("/", "."),
            ("", "."),
            ("a/../b", "a/../b"),
            ("..a/b", "..a/b"),
            ("../", "."),
            ("/../x", "x"),
        ] {
            assert_eq!(make_path_safe(i.as_bytes()), o.as_bytes(), "{i}");
        }
    }

    #[test]
    fn strip_prefix_is_borg14s_slashdot() {
        assert_eq!(get_strip_prefix(b"/a/b/./c"), Some(b"/a/b/".to_vec()));
        assert_eq!(get_strip_prefix(b"/./c"), None);
        assert_eq!(get_strip_prefix(b"a/c"), None);
        assert_eq!(get_strip_prefix(b"a//./c"), Some(b"a/".to_vec()));
        let p = get_strip_prefix(b"/a/b/./c");
        assert_eq!(
            archive_path(b"/a/b/c/d", p.as_deref()),
            Some(b"c/d".to_vec())
        );
        assert_eq!(archive_path(b"/a/b", p.as_deref()), Some(b".".to_vec()));
        assert_eq!(archive_path(b"/a", p.as_deref()), None);
        assert_eq!(archive_path(b"/x/y", None), Some(b"x/y".to_vec()));
    }
}
