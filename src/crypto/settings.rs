//! The part of borg's environment the crypto code reads, read once into a value.
//!
//! Nothing below `settings` looks at the environment: the CLI builds a [`CryptoSettings`] with
//! [`CryptoSettings::from_env`] and passes it down; tests build one by hand.

use std::path::{Path, PathBuf};

use super::passphrase::Passphrase;

/// Paths and answers from `BORG_*` variables that keys, passphrases and the security dir use.
#[derive(Debug, Clone, Default)]
pub struct CryptoSettings {
    /// `BORG_PASSPHRASE` (used as is, even when empty).
    pub passphrase: Option<Passphrase>,
    /// `BORG_PASSCOMMAND`: a command whose stdout is the passphrase.
    pub passcommand: Option<String>,
    /// `BORG_PASSPHRASE_FD`: a file descriptor to read the passphrase from.
    pub passphrase_fd: Option<i32>,
    /// `BORG_NEW_PASSPHRASE`: the passphrase for a new key or a passphrase change.
    pub new_passphrase: Option<Passphrase>,
    /// `BORG_DISPLAY_PASSPHRASE`: the answer to "display the new passphrase?".
    pub display_passphrase: Option<String>,
    /// The keys directory: `BORG_KEYS_DIR`, else `<config dir>/keys`.
    pub keys_dir: PathBuf,
    /// `BORG_KEY_FILE`: use exactly this key file (made absolute).
    pub key_file: Option<PathBuf>,
    /// The security directory (without the repository id): `BORG_SECURITY_DIR`, else
    /// `<config dir>/security`.
    pub security_dir: PathBuf,
    /// `BORG_RELOCATED_REPO_ACCESS_IS_OK`, the answer to "repository moved, continue?".
    pub relocated_repo_access_is_ok: Option<String>,
    /// `BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK`, the answer to "unknown unencrypted
    /// repository, continue?".
    pub unknown_unencrypted_repo_access_is_ok: Option<String>,
    /// `BORG_WORKAROUNDS` contains `ignore_invalid_archive_tam`.
    pub ignore_invalid_archive_tam: bool,
}

impl CryptoSettings {
    /// Reads the process environment.
    pub fn from_env() -> CryptoSettings {
        CryptoSettings::from_lookup(|name| {
            std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
        })
    }

    /// Builds settings from any variable lookup, with borg's rules (`helpers/fs.py`):
    /// the base dir is `BORG_BASE_DIR`, else `HOME`; the config dir is `BORG_CONFIG_DIR`, else
    /// `$XDG_CONFIG_HOME/borg` (only when `BORG_BASE_DIR` is unset), else
    /// `<base>/.config/borg`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> CryptoSettings {
        let base_dir_set = get("BORG_BASE_DIR").filter(|v| !v.is_empty());
        let base = base_dir_set
            .clone()
            .or_else(|| get("HOME").filter(|v| !v.is_empty()))
            .unwrap_or_else(|| "/".to_string());
        let mut config_home = Path::new(&base).join(".config");
        if base_dir_set.is_none() {
            if let Some(xdg) = get("XDG_CONFIG_HOME") {
                config_home = PathBuf::from(xdg);
            }
        }
        let config_dir = get("BORG_CONFIG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| config_home.join("borg"));
        let keys_dir = get("BORG_KEYS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| config_dir.join("keys"));
        let security_dir = get("BORG_SECURITY_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| config_dir.join("security"));
        let key_file = get("BORG_KEY_FILE")
            .filter(|v| !v.is_empty())
            .map(|v| absolute(Path::new(&v)));
        CryptoSettings {
            passphrase: get("BORG_PASSPHRASE").map(Passphrase::new),
            passcommand: get("BORG_PASSCOMMAND"),
            passphrase_fd: get("BORG_PASSPHRASE_FD").and_then(|v| v.trim().parse().ok()),
            new_passphrase: get("BORG_NEW_PASSPHRASE").map(Passphrase::new),
            display_passphrase: get("BORG_DISPLAY_PASSPHRASE"),
            keys_dir,
            key_file,
            security_dir,
            relocated_repo_access_is_ok: get("BORG_RELOCATED_REPO_ACCESS_IS_OK"),
            unknown_unencrypted_repo_access_is_ok: get(
                "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK",
            ),
            ignore_invalid_archive_tam: get("BORG_WORKAROUNDS").is_some_and(|w| {
                w.split(',')
                    .any(|x| x.trim() == "ignore_invalid_archive_tam")
            }),
        }
    }

    /// Settings for tests and embedding: every directory under `root`, no passphrase sources.
    pub fn under(root: &Path) -> CryptoSettings {
        CryptoSettings {
            keys_dir: root.join("keys"),
            security_dir: root.join("security"),
            ..CryptoSettings::default()
        }
    }

    /// `<security dir>/<repository id hex>`.
    pub fn repo_security_dir(&self, repository_id: &[u8; 32]) -> PathBuf {
        self.security_dir.join(hex::encode(repository_id))
    }
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().map_or_else(|_| p.to_path_buf(), |d| d.join(p))
    }
}

/// Borg's answer words for yes/no questions (`helpers/yes_no.py`).
pub(crate) fn env_answer(value: &str) -> Option<bool> {
    match value {
        "y" | "Y" | "yes" | "Yes" | "YES" | "1" => Some(true),
        "n" | "N" | "no" | "No" | "NO" | "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> CryptoSettings {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CryptoSettings::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn directories_follow_borg() {
        let s = settings(&[("HOME", "/h")]);
        assert_eq!(s.keys_dir, PathBuf::from("/h/.config/borg/keys"));
        assert_eq!(s.security_dir, PathBuf::from("/h/.config/borg/security"));
        let s = settings(&[("HOME", "/h"), ("XDG_CONFIG_HOME", "/x")]);
        assert_eq!(s.keys_dir, PathBuf::from("/x/borg/keys"));
        // BORG_BASE_DIR wins over XDG_CONFIG_HOME.
        let s = settings(&[
            ("HOME", "/h"),
            ("XDG_CONFIG_HOME", "/x"),
            ("BORG_BASE_DIR", "/b"),
        ]);
        assert_eq!(s.security_dir, PathBuf::from("/b/.config/borg/security"));
        let s = settings(&[
            ("HOME", "/h"),
            ("BORG_CONFIG_DIR", "/c"),
            ("BORG_KEYS_DIR", "/k"),
        ]);
        assert_eq!(s.keys_dir, PathBuf::from("/k"));
        assert_eq!(s.security_dir, PathBuf::from("/c/security"));
        let s = settings(&[("HOME", "/h"), ("BORG_SECURITY_DIR", "/s")]);
        assert_eq!(
            s.repo_security_dir(&[0xab; 32]),
            PathBuf::from(format!("/s/{}", "ab".repeat(32)))
        );
    }

    #[test]
    fn passphrase_sources_and_answers() {
        let s = settings(&[
            ("BORG_PASSPHRASE", ""),
            ("BORG_PASSPHRASE_FD", "7"),
            ("BORG_WORKAROUNDS", "x,ignore_invalid_archive_tam"),
        ]);
        assert_eq!(s.passphrase.as_ref().map(|p| p.as_str()), Some(""));
        assert_eq!(s.passphrase_fd, Some(7));
        assert!(s.ignore_invalid_archive_tam);
        assert!(!format!("{s:?}").contains("BORG_PASSPHRASE"));
        assert_eq!(env_answer("YES"), Some(true));
        assert_eq!(env_answer("no"), Some(false));
        assert_eq!(env_answer("1"), Some(true));
        assert_eq!(env_answer("ok"), None);
    }
}
