//! Where a repository path sent in `open` points on the server
//! (`RepositoryServer._resolve_path`, protocol.md §1.4).

use std::ffi::CString;
use std::path::{Component, Path, PathBuf};

/// Resolves the path a client sent: `/~/x` and `~/x` are relative to borg's base directory,
/// `/~user/x` and `~user/x` to that user's home, `/./x` to the server's working directory; the
/// result is made absolute with symlinks resolved, like Python's `os.path.realpath`.
pub fn resolve_repository_path(path: &str, base_dir: Option<&Path>) -> PathBuf {
    let base = || {
        base_dir
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"))
    };
    let p: PathBuf = if let Some(rest) = path.strip_prefix("/~/") {
        base().join(rest)
    } else if let Some(rest) = path.strip_prefix("~/") {
        base().join(rest)
    } else if let Some(rest) = path.strip_prefix("/~") {
        expand_user(&format!("~{rest}"), base_dir)
    } else if path.starts_with('~') {
        expand_user(path, base_dir)
    } else if let Some(rest) = path.strip_prefix("/./") {
        PathBuf::from(rest)
    } else {
        PathBuf::from(path)
    };
    realpath(&p)
}

/// Python's `os.path.expanduser` for `~` and `~user` prefixes.
fn expand_user(path: &str, base_dir: Option<&Path>) -> PathBuf {
    let rest = &path[1..];
    let (user, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let home = if user.is_empty() {
        base_dir.map(Path::to_path_buf)
    } else {
        home_of(user)
    };
    match home {
        Some(h) if tail.is_empty() => h,
        Some(h) => h.join(tail),
        None => PathBuf::from(path),
    }
}

fn home_of(user: &str) -> Option<PathBuf> {
    let name = CString::new(user).ok()?;
    // SAFETY: getpwnam_r writes into the buffers we own and sets `result` to null or to `pwd`.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 16384];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwnam_r(
            name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        );
        if rc != 0 || result.is_null() || pwd.pw_dir.is_null() {
            return None;
        }
        let dir = std::ffi::CStr::from_ptr(pwd.pw_dir);
        Some(PathBuf::from(
            std::ffi::OsStr::from_encoded_bytes_unchecked(dir.to_bytes()),
        ))
    }
}

/// Python's `os.path.realpath`: absolute, `.`/`..` resolved, symlinks followed as far as the
/// path exists; a missing tail is kept as written (a repository about to be created).
pub fn realpath(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(path)
    };
    let mut resolved = PathBuf::from("/");
    let mut components = absolute.components().peekable();
    while let Some(c) = components.next() {
        match c {
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
            Component::ParentDir => {
                resolved.pop();
            }
            Component::Normal(name) => {
                let candidate = resolved.join(name);
                match std::fs::canonicalize(&candidate) {
                    Ok(real) => resolved = real,
                    Err(_) => {
                        // The rest does not exist: append it lexically.
                        resolved = candidate;
                        for rest in components.by_ref() {
                            match rest {
                                Component::ParentDir => {
                                    resolved.pop();
                                }
                                Component::Normal(n) => resolved.push(n),
                                _ => {}
                            }
                        }
                        break;
                    }
                }
            }
        }
    }
    resolved
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_borgs_path_forms() {
        let base = Path::new("/home/u");
        assert_eq!(
            resolve_repository_path("/~/repo", Some(base)),
            PathBuf::from("/home/u/repo")
        );
        assert_eq!(
            resolve_repository_path("~/repo", Some(base)),
            PathBuf::from("/home/u/repo")
        );
        assert_eq!(
            resolve_repository_path("/~root/r", Some(base)),
            realpath(Path::new("/root/r"))
        );
        assert_eq!(
            resolve_repository_path("/abs/x/../y", None),
            PathBuf::from("/abs/y")
        );
        let cwd = std::env::current_dir().expect("cwd");
        assert_eq!(
            resolve_repository_path("/./rel", None),
            realpath(&cwd.join("rel"))
        );
        assert_eq!(
            resolve_repository_path("rel", None),
            realpath(&cwd.join("rel"))
        );
    }

    #[test]
    fn realpath_follows_symlinks_of_the_existing_part() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real");
        std::fs::create_dir(&real).expect("mkdir");
        std::os::unix::fs::symlink(&real, dir.path().join("link")).expect("symlink");
        let got = realpath(&dir.path().join("link/new/repo"));
        assert_eq!(got, realpath(&real).join("new/repo"));
    }
}
