//! borg version tuples as exchanged in `negotiate` (`version.py: parse_version`).
//!
//! `[major, minor, patch, -1]` for releases, `[major, minor, patch, T, N]` for pre-releases
//! (T = -4 alpha, -3 beta, -2 rc, -9 dev). Python compares them as tuples, element by element
//! and then by length, which is exactly how Rust orders `Vec<i64>`.

use std::fmt;

use crate::msgpack::Value;

/// The server's version from `negotiate`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion(pub Vec<i64>);

/// `scan` exists since 1.1.0b3.
pub const SCAN_SINCE: &[i64] = &[1, 1, 0, -3, 3];
/// `open(make_parent_dirs=True)` since 1.1.9.
pub const MAKE_PARENT_DIRS_SINCE: &[i64] = &[1, 1, 9, -1];
/// `open(append_only=True)` since 1.0.7.
pub const APPEND_ONLY_SINCE: &[i64] = &[1, 0, 7, -1];
/// `check(max_duration=N)` with N > 0 since 1.2.0a4.
pub const MAX_DURATION_SINCE: &[i64] = &[1, 2, 0, -4, 4];

impl ServerVersion {
    /// What borg assumes before negotiate tells otherwise (1.0.8).
    pub fn fallback() -> ServerVersion {
        ServerVersion(vec![1, 0, 8, -1])
    }

    /// Reads a version tuple sent by the server.
    pub fn from_value(value: &Value) -> Option<ServerVersion> {
        let items = value.as_array()?;
        let parts: Option<Vec<i64>> = items.iter().map(Value::as_i64).collect();
        parts.filter(|p| !p.is_empty()).map(ServerVersion)
    }

    /// Whether this version is `required` or newer.
    pub fn at_least(&self, required: &[i64]) -> bool {
        self.0.as_slice() >= required
    }
}

/// Formats a version tuple the way borg writes versions (`1.2.0a4`, `1.4.5`).
pub fn format_version(v: &[i64]) -> String {
    let base: Vec<String> = v.iter().take(3).map(|p| p.to_string()).collect();
    let mut text = base.join(".");
    if v.len() >= 5 {
        let tag = match v[3] {
            -4 => "a",
            -3 => "b",
            -2 => "rc",
            -9 => ".dev",
            _ => "?",
        };
        text.push_str(&format!("{tag}{}", v[4]));
    }
    text
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_version(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering_like_python_tuples() {
        let v124 = ServerVersion(vec![1, 2, 4, -1]);
        assert!(v124.at_least(MAX_DURATION_SINCE));
        assert!(v124.at_least(SCAN_SINCE));
        assert!(!ServerVersion(vec![1, 2, 0, -4, 3]).at_least(MAX_DURATION_SINCE));
        assert!(ServerVersion(vec![1, 2, 0, -4, 4]).at_least(MAX_DURATION_SINCE));
        assert!(ServerVersion(vec![1, 2, 0, -1]).at_least(MAX_DURATION_SINCE));
        assert!(!ServerVersion::fallback().at_least(SCAN_SINCE));
        assert_eq!(format_version(MAX_DURATION_SINCE), "1.2.0a4");
        assert_eq!(v124.to_string(), "1.2.4");
    }
}
