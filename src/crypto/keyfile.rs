//! Key files in borg's keys directory (`KeyfileKey`).
//!
//! A key file is `BORG_KEY <repository id, 64 lowercase hex>\n`, the wrapped base64 key blob,
//! and a final `\n`. `BORG_KEY_FILE` names the file exactly; otherwise borg scans the keys dir
//! and takes the first file whose header names the repository and whose body looks like a key
//! (`sanity_check`). New files are named after the repository location.

use std::path::{Path, PathBuf};

use super::keyblob::unwrap_base64;
use super::nonces::save_file;
use super::settings::CryptoSettings;

/// The first word of a key file (`FILE_ID`).
pub const FILE_ID: &str = "BORG_KEY";

/// Why a key file cannot be found, read or written. Messages are borg's where borg has one.
#[derive(Debug, thiserror::Error)]
pub enum KeyfileError {
    /// No key file for the repository (`KeyfileNotFoundError`).
    #[error("No key file for repository {location} found in {keys_dir}.")]
    NotFound {
        /// The repository.
        location: String,
        /// Where borg looked.
        keys_dir: String,
    },
    /// The file is not a key file (`KeyfileInvalidError`).
    #[error("Invalid key data for repository {location} found in {path}.")]
    Invalid {
        /// The repository.
        location: String,
        /// The file.
        path: String,
    },
    /// The key file is for another repository (`KeyfileMismatchError`).
    #[error("Mismatch between repository {location} and key file {path}.")]
    Mismatch {
        /// The repository.
        location: String,
        /// The file.
        path: String,
    },
    /// Anyone on the system may read the key file.
    #[error("key file {0} is readable by everyone; run `chmod 600` on it first")]
    WorldReadable(String),
    /// `init` would overwrite another repository's key file (borg issue #6036).
    #[error("Aborting because key in \"{0}\" already exists.")]
    AlreadyExists(String),
    /// An I/O error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

impl KeyfileError {
    /// Borg 1.4's exit code for this error with `BORG_EXIT_CODES=modern` (legacy: always 2).
    pub fn exit_code(&self) -> i32 {
        match self {
            KeyfileError::NotFound { .. } => 42,
            KeyfileError::Invalid { .. } | KeyfileError::WorldReadable(_) => 40,
            KeyfileError::Mismatch { .. } => 41,
            KeyfileError::AlreadyExists(_) | KeyfileError::Io { .. } => 2,
        }
    }
}

/// What key files need to know about a repository location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLocation {
    /// The canonical path (`Location.canonical_path()`): a local path, or
    /// `ssh://user@host:port/path`. Stored in the security dir, shown in messages.
    pub canonical_path: String,
    /// The host for remote repositories.
    pub host: Option<String>,
    /// The repository path as given (`Location.path`).
    pub path: String,
}

impl KeyLocation {
    /// A local repository at `path`.
    pub fn local(path: &str) -> KeyLocation {
        KeyLocation {
            canonical_path: path.to_string(),
            host: None,
            path: path.to_string(),
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyfileError + '_ {
    move |e| KeyfileError::Io {
        path: path.display().to_string(),
        source: e,
    }
}

/// The file name borg gives a new key file (`Location.to_key_filename`): the path with every
/// non-word character replaced by `_`, outer `_` stripped, prefixed by `host__` for remote
/// repositories, cut to 100 characters.
pub fn key_file_name(location: &KeyLocation) -> String {
    let word = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let mut name = word(&location.path).trim_matches('_').to_string();
    if let Some(host) = &location.host {
        name = format!("{}__{}", word(host), name);
    }
    name.chars().take(100).collect()
}

/// Where `init` writes a new key file (`get_new_target`): `BORG_KEY_FILE`, else a free name in
/// the keys dir (`name`, `name.2`, `name.3`, …).
pub fn new_key_file_target(settings: &CryptoSettings, location: &KeyLocation) -> PathBuf {
    if let Some(f) = &settings.key_file {
        return f.clone();
    }
    let base = settings.keys_dir.join(key_file_name(location));
    let mut path = base.clone();
    let mut i = 1;
    while path.exists() {
        i += 1;
        path = PathBuf::from(format!("{}.{i}", base.display()));
    }
    path
}

/// Checks that `path` is a key file for `repository_id` (`sanity_check`).
pub fn sanity_check(
    path: &Path,
    repository_id: &[u8; 32],
    location: &str,
) -> Result<(), KeyfileError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let invalid = || KeyfileError::Invalid {
        location: location.to_string(),
        path: path.display().to_string(),
    };
    let file_id = format!("{FILE_ID} ");
    if !bytes.starts_with(file_id.as_bytes()) {
        return Err(invalid());
    }
    let id_hex = hex::encode(repository_id);
    if !bytes[file_id.len()..].starts_with(id_hex.as_bytes()) {
        return Err(KeyfileError::Mismatch {
            location: location.to_string(),
            path: path.display().to_string(),
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let mut lines = text.split_inclusive('\n');
    let first = lines.next().unwrap_or_default();
    let rest: String = lines.collect();
    if rest.is_empty() || first.trim_end().len() > file_id.len() + id_hex.len() {
        return Err(invalid());
    }
    match unwrap_base64(&rest) {
        Ok(blob) if blob.len() >= 20 => Ok(()),
        _ => Err(invalid()),
    }
}

/// Finds the key file for a repository (`find_key`): `BORG_KEY_FILE` (which must pass the
/// sanity check), else the first file in the keys dir that passes it, in name order.
pub fn find_key_file(
    settings: &CryptoSettings,
    repository_id: &[u8; 32],
    location: &str,
) -> Result<PathBuf, KeyfileError> {
    if let Some(f) = &settings.key_file {
        sanity_check(f, repository_id, location)?;
        return Ok(f.clone());
    }
    if let Some(found) = find_in_keys_dir(settings, repository_id, location)? {
        return Ok(found);
    }
    Err(KeyfileError::NotFound {
        location: location.to_string(),
        keys_dir: settings.keys_dir.display().to_string(),
    })
}

fn find_in_keys_dir(
    settings: &CryptoSettings,
    repository_id: &[u8; 32],
    location: &str,
) -> Result<Option<PathBuf>, KeyfileError> {
    let dir = &settings.keys_dir;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    names.sort();
    Ok(names
        .into_iter()
        .filter(|p| p.is_file())
        .find(|p| sanity_check(p, repository_id, location).is_ok()))
}

/// The key file for a repository if there is one, else a new target (`get_existing_or_new_target`,
/// used by `key import`).
pub fn existing_or_new_target(
    settings: &CryptoSettings,
    repository_id: &[u8; 32],
    location: &KeyLocation,
) -> Result<PathBuf, KeyfileError> {
    if let Some(f) = &settings.key_file {
        return Ok(f.clone());
    }
    if let Some(found) = find_in_keys_dir(settings, repository_id, &location.canonical_path)? {
        return Ok(found);
    }
    Ok(new_key_file_target(settings, location))
}

/// Reads the key blob text (everything after line 1) of a key file, refusing files that
/// everyone may read.
pub fn read_key_file(path: &Path) -> Result<String, KeyfileError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    if meta.permissions().mode() & 0o004 != 0 {
        return Err(KeyfileError::WorldReadable(path.display().to_string()));
    }
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    Ok(blob_of_key_file_text(&text))
}

/// The blob part of key file text: every line after the first, joined as they are.
pub fn blob_of_key_file_text(text: &str) -> String {
    text.split_inclusive('\n').skip(1).collect()
}

/// The text of a key file: header line, blob, final newline.
pub fn key_file_text(repository_id: &[u8; 32], blob: &str) -> String {
    let mut s = format!("{FILE_ID} {}\n{blob}", hex::encode(repository_id));
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// Writes a key file (mode 0600, atomically). With `create`, refuses to replace an existing
/// file.
pub fn write_key_file(
    path: &Path,
    repository_id: &[u8; 32],
    blob: &str,
    create: bool,
) -> Result<(), KeyfileError> {
    if create && path.is_file() {
        return Err(KeyfileError::AlreadyExists(path.display().to_string()));
    }
    save_file(path, key_file_text(repository_id, blob).as_bytes()).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_like_borg() {
        assert_eq!(
            key_file_name(&KeyLocation::local("/tmp/my repo/x")),
            "tmp_my_repo_x"
        );
        let remote = KeyLocation {
            canonical_path: "ssh://u@h.example:22/srv/r".into(),
            host: Some("h.example".into()),
            path: "/srv/r".into(),
        };
        assert_eq!(key_file_name(&remote), "h_example__srv_r");
        assert_eq!(
            key_file_name(&KeyLocation::local(&format!("/{}", "a".repeat(150)))).len(),
            100
        );
    }

    #[test]
    fn write_find_and_read() {
        let t = tempfile::tempdir().unwrap();
        let s = CryptoSettings::under(t.path());
        let loc = KeyLocation::local("/r");
        let id = [0x42; 32];
        let blob = crate::crypto::keyblob::wrap_base64(&[9u8; 300]);
        let target = new_key_file_target(&s, &loc);
        write_key_file(&target, &id, &blob, true).unwrap();
        assert!(matches!(
            write_key_file(&target, &id, &blob, true),
            Err(KeyfileError::AlreadyExists(_))
        ));
        assert_eq!(
            new_key_file_target(&s, &loc),
            PathBuf::from(format!("{}.2", target.display()))
        );
        // A key for another repository and a junk file in the keys dir are skipped.
        write_key_file(&s.keys_dir.join("aaa"), &[1; 32], &blob, true).unwrap();
        std::fs::write(s.keys_dir.join("0junk"), "hello").unwrap();
        assert_eq!(find_key_file(&s, &id, "/r").unwrap(), target);
        let text = std::fs::read_to_string(&target).unwrap();
        assert!(text.starts_with(&format!("BORG_KEY {}\n", "42".repeat(32))));
        assert!(text.ends_with("\n"));
        assert_eq!(read_key_file(&target).unwrap(), format!("{blob}\n"));
        assert!(matches!(
            find_key_file(&s, &[7; 32], "/x"),
            Err(KeyfileError::NotFound { .. })
        ));
        // BORG_KEY_FILE pointing to another repository's key.
        let mut s2 = s.clone();
        s2.key_file = Some(s.keys_dir.join("aaa"));
        assert!(matches!(
            find_key_file(&s2, &id, "/r"),
            Err(KeyfileError::Mismatch { .. })
        ));
        s2.key_file = Some(s.keys_dir.join("0junk"));
        assert!(matches!(
            find_key_file(&s2, &id, "/r"),
            Err(KeyfileError::Invalid { .. })
        ));
    }

    #[test]
    fn world_readable_key_files_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("k");
        write_key_file(&p, &[0; 32], "AAAA", false).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            read_key_file(&p),
            Err(KeyfileError::WorldReadable(_))
        ));
    }
}
