//! The `integrity.N` file and borg's file checksum scheme (`crypto/file_integrity.py`).
//!
//! A running XXH64 (seed 0, never reset) is fed the length-framed file name, then the file
//! bytes; at each named part it is fed the length-framed part name and the decimal file
//! position, and the current digest is recorded as 16 lowercase hex digits (big-endian).
//! `integrity.N` is msgpack `{version: 2, hints: <json>, index: <json>}` with JSON strings
//! `{"algorithm": "XXH64", "digests": {...}}` in Python's default `json.dumps` layout.

use std::hash::Hasher as _;

use sha2::{Digest, Sha512};
use twox_hash::XxHash64;

use crate::msgpack::{self, Value};

/// Why an integrity file or check failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IntegrityFileError {
    /// The integrity data cannot be parsed (borg raises `FileIntegrityError`).
    #[error("File failed integrity check: {0} (integrity data unreadable)")]
    Unparsable(String),
    /// A digest does not match.
    #[error("File failed integrity check: {0}")]
    Mismatch(String),
}

/// The checksum algorithms borg can verify (`SUPPORTED_ALGORITHMS`); it writes only XXH64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// XXH64, seed 0, digest as 16 hex digits (big-endian).
    Xxh64,
    /// SHA-512, digest as 128 hex digits.
    Sha512,
}

enum State {
    Xxh64(XxHash64),
    Sha512(Sha512),
}

impl State {
    fn write(&mut self, data: &[u8]) {
        match self {
            State::Xxh64(h) => h.write(data),
            State::Sha512(h) => h.update(data),
        }
    }

    /// The digest so far; the state keeps running.
    fn hexdigest(&self) -> String {
        match self {
            State::Xxh64(h) => hex::encode(h.finish().to_be_bytes()),
            State::Sha512(h) => hex::encode(h.clone().finalize()),
        }
    }
}

/// Running digests over one file, as `IntegrityCheckedFile` computes them.
pub struct FileHasher {
    state: State,
    digests: Vec<(String, String)>,
}

impl FileHasher {
    /// Starts hashing a file whose final base name is `basename` (e.g. `index.5`).
    pub fn new(algorithm: Algorithm, basename: &str) -> FileHasher {
        let state = match algorithm {
            Algorithm::Xxh64 => State::Xxh64(XxHash64::with_seed(0)),
            Algorithm::Sha512 => State::Sha512(Sha512::new()),
        };
        let mut h = FileHasher {
            state,
            digests: Vec::new(),
        };
        h.feed_framed(basename);
        h
    }

    fn feed_framed(&mut self, name: &str) {
        self.state.write(format!("{:>10}", name.len()).as_bytes());
        self.state.write(name.as_bytes());
    }

    /// Feeds file bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.state.write(data);
    }

    /// Records the digest of a named part, taken at file position `position`.
    pub fn part(&mut self, name: &str, position: u64) {
        self.feed_framed(name);
        self.state.write(position.to_string().as_bytes());
        let digest = self.state.hexdigest();
        self.digests.push((name.to_string(), digest));
    }

    /// Records the `final` part at the file length and returns every digest in order.
    pub fn finish(mut self, file_len: u64) -> Vec<(String, String)> {
        self.part("final", file_len);
        self.digests
    }
}

/// Digests of a whole file held in memory. `header_part` names an intermediate part taken
/// after that many bytes (the index's `HashHeader` after 18 bytes).
pub fn file_digests(
    algorithm: Algorithm,
    basename: &str,
    data: &[u8],
    header_part: Option<(&str, usize)>,
) -> Vec<(String, String)> {
    let mut h = FileHasher::new(algorithm, basename);
    match header_part {
        Some((name, at)) if at <= data.len() => {
            h.update(&data[..at]);
            h.part(name, at as u64);
            h.update(&data[at..]);
        }
        _ => h.update(data),
    }
    h.finish(data.len() as u64)
}

/// The JSON string borg stores for one file (`json.dumps` with default separators).
pub fn digests_json(digests: &[(String, String)]) -> String {
    let inner: Vec<String> = digests
        .iter()
        .map(|(k, v)| format!("{}: {}", json_str(k), json_str(v)))
        .collect();
    format!(
        "{{\"algorithm\": \"XXH64\", \"digests\": {{{}}}}}",
        inner.join(", ")
    )
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// What the integrity data says to verify for one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// Verify these digests (part name → hex) computed with this algorithm.
    Digests(Algorithm, Vec<(String, String)>),
    /// An algorithm borg does not know: it warns and skips the check.
    Unverifiable(String),
}

/// Parses one JSON string (`IntegrityCheckedFile.parse_integrity_data`).
pub fn parse_digests_json(path: &str, json: &str) -> Result<Expected, IntegrityFileError> {
    let bad = || IntegrityFileError::Unparsable(path.to_string());
    let v: serde_json::Value = serde_json::from_str(json).map_err(|_| bad())?;
    let algorithm = v
        .get("algorithm")
        .and_then(|a| a.as_str())
        .ok_or_else(bad)?;
    let digests = v
        .get("digests")
        .and_then(|d| d.as_object())
        .ok_or_else(bad)?;
    if !digests.contains_key("final") {
        return Err(bad());
    }
    let algorithm = match algorithm {
        "XXH64" => Algorithm::Xxh64,
        "SHA512" => Algorithm::Sha512,
        other => return Ok(Expected::Unverifiable(other.to_string())),
    };
    let mut out = Vec::new();
    for (k, d) in digests {
        out.push((k.clone(), d.as_str().ok_or_else(bad)?.to_string()));
    }
    Ok(Expected::Digests(algorithm, out))
}

/// Checks computed digests against expected ones: every computed part must match its expected
/// value (a part missing from the expectation fails, as borg compares against `''`).
pub fn verify(
    path: &str,
    expected: &[(String, String)],
    computed: &[(String, String)],
) -> Result<(), IntegrityFileError> {
    for (name, digest) in computed {
        let want = expected
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d.as_str());
        if want != Some(digest.as_str()) {
            return Err(IntegrityFileError::Mismatch(path.to_string()));
        }
    }
    Ok(())
}

/// The `integrity.N` bytes for the given hints and index JSON strings.
pub fn encode_integrity_file(hints_json: &str, index_json: &str) -> Vec<u8> {
    // write_index fills this dict as version, hints, index.
    super::hints::encode_in_order([
        ("version", Value::Int(2)),
        ("hints", Value::str(hints_json)),
        ("index", Value::str(index_json)),
    ])
}

/// Reads one file's JSON string from `integrity.N` (`Repository._read_integrity`): `None`
/// when the version is not 2 (borg then verifies nothing).
pub fn read_integrity_entry(bytes: &[u8], key: &str) -> Result<Option<String>, IntegrityFileError> {
    let bad = || IntegrityFileError::Unparsable(format!("integrity file ({key})"));
    let v = msgpack::decode(bytes).map_err(|_| bad())?;
    if v.get("version") != Some(&Value::Int(2)) {
        return Ok(None);
    }
    let s = v.get(key).and_then(Value::as_bytes).ok_or_else(bad)?;
    Ok(Some(String::from_utf8_lossy(s).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_uses_ten_wide_lengths() {
        // The digest of an empty hints.1 equals XXH64 over the framing written out by hand.
        let manual = {
            let mut h = XxHash64::with_seed(0);
            h.write(b"         7hints.1         5final0");
            hex::encode(h.finish().to_be_bytes())
        };
        let d = file_digests(Algorithm::Xxh64, "hints.1", b"", None);
        assert_eq!(d, vec![("final".to_string(), manual)]);
    }

    #[test]
    fn json_layout_is_pythons() {
        let d = vec![
            ("HashHeader".to_string(), "00".to_string()),
            ("final".to_string(), "ff".to_string()),
        ];
        let j = digests_json(&d);
        assert_eq!(
            j,
            r#"{"algorithm": "XXH64", "digests": {"HashHeader": "00", "final": "ff"}}"#
        );
        assert_eq!(
            parse_digests_json("x", &j).unwrap(),
            Expected::Digests(Algorithm::Xxh64, d)
        );
    }

    #[test]
    fn sha512_digests_are_running_and_framed() {
        let manual = hex::encode(Sha512::digest(b"         7hints.1abc         5final3"));
        let d = file_digests(Algorithm::Sha512, "hints.1", b"abc", None);
        assert_eq!(d, vec![("final".to_string(), manual)]);
        let j = r#"{"algorithm": "SHA512", "digests": {"final": "00"}}"#;
        assert!(matches!(
            parse_digests_json("x", j),
            Ok(Expected::Digests(Algorithm::Sha512, _))
        ));
        let j = r#"{"algorithm": "MD5", "digests": {"final": "00"}}"#;
        assert_eq!(
            parse_digests_json("x", j),
            Ok(Expected::Unverifiable("MD5".into()))
        );
        assert!(parse_digests_json("x", r#"{"algorithm": "XXH64"}"#).is_err());
    }

    #[test]
    fn verify_detects_changes() {
        let data = b"some index bytes here";
        let good = file_digests(Algorithm::Xxh64, "index.3", data, Some(("HashHeader", 18)));
        let mut changed = data.to_vec();
        changed[20] ^= 1;
        let bad = file_digests(
            Algorithm::Xxh64,
            "index.3",
            &changed,
            Some(("HashHeader", 18)),
        );
        assert!(verify("i", &good, &good).is_ok());
        assert!(verify("i", &good, &bad).is_err());
        // The header digest still matches: only the data after it changed.
        assert_eq!(good[0], bad[0]);
    }
}
