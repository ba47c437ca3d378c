//! The process environment, read once.
//!
//! Borg is configured through many `BORG_*` variables. rborg reads the environment a single time,
//! at start-up, into an [`Environment`] value that is passed down to whatever needs it, so library
//! code never reads global state and tests can hand in any environment they like.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

/// A snapshot of environment variables.
#[derive(Clone, Default)]
pub struct Environment {
    vars: BTreeMap<OsString, OsString>,
}

impl std::fmt::Debug for Environment {
    /// Lists the variable names only: values may be passphrases.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.vars.keys()).finish()
    }
}

impl Environment {
    /// Reads the whole process environment.
    pub fn from_process() -> Self {
        Environment {
            vars: std::env::vars_os().collect(),
        }
    }

    /// An environment with just the given variables (for tests and library callers).
    pub fn from_pairs<K: Into<OsString>, V: Into<OsString>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Environment {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The raw value of a variable.
    pub fn get_os(&self, name: &str) -> Option<&OsStr> {
        self.vars.get(OsStr::new(name)).map(OsString::as_os_str)
    }

    /// The value of a variable as UTF-8 text; `None` when unset or not UTF-8.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_os(name).and_then(OsStr::to_str)
    }

    /// The value as a path; `None` when unset or empty.
    pub fn path(&self, name: &str) -> Option<PathBuf> {
        self.get_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    }

    /// Whether a yes/no variable such as `BORG_RELOCATED_REPO_ACCESS_IS_OK` says yes, as borg's
    /// `yes()` helper reads it (`yes`, `y`, `1`, `true`, any case).
    pub fn is_yes(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "yes" | "y" | "1" | "true"
            )
        })
    }

    /// Sets a variable in this snapshot (not in the process).
    pub fn set(&mut self, name: impl Into<OsString>, value: impl Into<OsString>) {
        self.vars.insert(name.into(), value.into());
    }

    /// Removes a variable from this snapshot.
    pub fn remove(&mut self, name: &str) {
        self.vars.remove(OsStr::new(name));
    }

    /// Every variable, for handing to a child process.
    pub fn iter(&self) -> impl Iterator<Item = (&OsStr, &OsStr)> {
        self.vars
            .iter()
            .map(|(k, v)| (k.as_os_str(), v.as_os_str()))
    }

    /// The user's home directory (`HOME`).
    pub fn home(&self) -> Option<PathBuf> {
        self.path("HOME")
    }

    /// Borg's base directory: `BORG_BASE_DIR`, else `HOME` (`helpers/fs.py: get_base_dir`).
    pub fn base_dir(&self) -> Option<PathBuf> {
        self.path("BORG_BASE_DIR").or_else(|| self.home())
    }

    /// Borg's config directory: `BORG_CONFIG_DIR`, else `$XDG_CONFIG_HOME/borg`, else
    /// `<base>/.config/borg` (`helpers/fs.py: get_config_dir`; `XDG_CONFIG_HOME` counts only
    /// when `BORG_BASE_DIR` is unset).
    pub fn config_dir(&self) -> Option<PathBuf> {
        if let Some(p) = self.path("BORG_CONFIG_DIR") {
            return Some(p);
        }
        if self.path("BORG_BASE_DIR").is_none() {
            if let Some(x) = self.path("XDG_CONFIG_HOME") {
                return Some(x.join("borg"));
            }
        }
        self.base_dir().map(|b| b.join(".config").join("borg"))
    }

    /// Borg's cache directory: `BORG_CACHE_DIR`, else `$XDG_CACHE_HOME/borg`, else
    /// `<base>/.cache/borg` (`helpers/fs.py: get_cache_dir`).
    pub fn cache_dir(&self) -> Option<PathBuf> {
        if let Some(p) = self.path("BORG_CACHE_DIR") {
            return Some(p);
        }
        if self.path("BORG_BASE_DIR").is_none() {
            if let Some(x) = self.path("XDG_CACHE_HOME") {
                return Some(x.join("borg"));
            }
        }
        self.base_dir().map(|b| b.join(".cache").join("borg"))
    }

    /// The crypto settings (passphrase sources, keys and security directories) from this
    /// environment.
    pub fn crypto_settings(&self) -> crate::crypto::CryptoSettings {
        crate::crypto::CryptoSettings::from_lookup(|name| {
            self.get_os(name).map(|v| v.to_string_lossy().into_owned())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borg_directories_follow_borgs_precedence() {
        let env = Environment::from_pairs([("HOME", "/home/u")]);
        assert_eq!(
            env.config_dir(),
            Some(PathBuf::from("/home/u/.config/borg"))
        );
        assert_eq!(env.cache_dir(), Some(PathBuf::from("/home/u/.cache/borg")));
        let env = Environment::from_pairs([("HOME", "/home/u"), ("XDG_CONFIG_HOME", "/x")]);
        assert_eq!(env.config_dir(), Some(PathBuf::from("/x/borg")));
        // BORG_BASE_DIR switches XDG_CONFIG_HOME off (`get_config_dir`).
        let env = Environment::from_pairs([
            ("HOME", "/home/u"),
            ("XDG_CONFIG_HOME", "/x"),
            ("BORG_BASE_DIR", "/b"),
        ]);
        assert_eq!(env.config_dir(), Some(PathBuf::from("/b/.config/borg")));
        let env = Environment::from_pairs([("BORG_CONFIG_DIR", "/k"), ("HOME", "/h")]);
        assert_eq!(env.config_dir(), Some(PathBuf::from("/k")));
        let crypto = Environment::from_pairs([("BORG_KEYS_DIR", "/keys")]).crypto_settings();
        assert_eq!(crypto.keys_dir, PathBuf::from("/keys"));
    }

    #[test]
    fn yes_values_and_debug_hides_values() {
        let env =
            Environment::from_pairs([("A", "Yes"), ("B", "no"), ("BORG_PASSPHRASE", "s3cret")]);
        assert!(env.is_yes("A"));
        assert!(!env.is_yes("B"));
        assert!(!env.is_yes("C"));
        assert!(!format!("{env:?}").contains("s3cret"));
    }
}
