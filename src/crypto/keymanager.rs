//! `borg key export`, `key import` and `key change-passphrase` as functions
//! (`crypto/keymanager.py`, `KeyfileKeyBase.change_passphrase`).
//!
//! The plain export is the key file format for every key type. The paper export is
//! `BORG PAPER KEY v1` with 18 bytes of the binary blob per line and truncated SHA-256
//! checksums, meant to be typed back in.

use sha2::{Digest, Sha256};

use super::key::{KeyStorage, KeyType};
use super::keyblob::{encrypt_key, unwrap_base64, wrap_base64, KeyBlobError};
use super::keyfile::{
    existing_or_new_target, key_file_text, write_key_file, KeyLocation, KeyfileError, FILE_ID,
};
use super::open::{KeyTarget, OpenError, OpenedKey};
use super::passphrase::{new_passphrase, PassphraseError, Prompter};
use super::settings::CryptoSettings;
use crate::repository::{Repository, RepositoryError};

/// Why a key could not be exported, imported or changed. Messages are borg's.
#[derive(Debug, thiserror::Error)]
pub enum KeyManagerError {
    /// Not a key backup (`NotABorgKeyFile`).
    #[error("This file is not a Borg key backup, aborting.")]
    NotABorgKeyFile,
    /// A backup of another repository's key (`RepoIdMismatch`).
    #[error("This key backup seems to be for a different backup repository, aborting.")]
    RepoIdMismatch,
    /// `none` repositories have no key (`UnencryptedRepo`).
    #[error("Key management not available for unencrypted repositories.")]
    UnencryptedRepo,
    /// A paper key line is malformed or its checksum is wrong.
    #[error("paper key line {line}: {reason}")]
    PaperKey {
        /// The line number (0 for the id line).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A related-secrets file is unusable.
    #[error("{0}")]
    RelatedSecrets(String),
    /// The key blob failed.
    #[error(transparent)]
    Blob(#[from] KeyBlobError),
    /// The key file failed.
    #[error(transparent)]
    Keyfile(#[from] KeyfileError),
    /// Opening the key failed.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// No new passphrase.
    #[error(transparent)]
    Passphrase(#[from] PassphraseError),
    /// The repository failed.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

impl KeyManagerError {
    /// Borg 1.4's exit code for this error with `BORG_EXIT_CODES=modern` (legacy: always 2).
    pub fn exit_code(&self) -> i32 {
        match self {
            KeyManagerError::NotABorgKeyFile => 43,
            KeyManagerError::RepoIdMismatch => 45,
            KeyManagerError::UnencryptedRepo => 46,
            KeyManagerError::PaperKey { .. } | KeyManagerError::RelatedSecrets(_) => 2,
            KeyManagerError::Blob(e) => e.exit_code(),
            KeyManagerError::Keyfile(e) => e.exit_code(),
            KeyManagerError::Open(e) => e.exit_code(),
            KeyManagerError::Passphrase(e) => e.exit_code(),
            KeyManagerError::Repository(_) => 2,
        }
    }
}

fn sha256_hex(data: &[u8], n: usize) -> String {
    let mut h = hex::encode(Sha256::digest(data));
    h.truncate(n);
    h
}

/// The plain export (`borg key export`): `BORG_KEY <id>\n` + the blob + `\n`.
pub fn export_plain(repository_id: &[u8; 32], blob: &str) -> String {
    key_file_text(repository_id, blob)
}

fn grouped(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && i % 6 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// The paper export (`borg key export --paper`, `export_paperkey`).
pub fn export_paper(repository_id: &[u8; 32], blob: &str) -> Result<String, KeyManagerError> {
    let binary = unwrap_base64(blob)?;
    let mut out = String::from(
        "To restore key use borg key import --paper /path/to/repo\n\nBORG PAPER KEY v1\n",
    );
    let lines = binary.len().div_ceil(18);
    let repoid = &hex::encode(repository_id)[..18];
    let complete = sha256_hex(&binary, 12);
    let id_sum = sha256_hex(format!("{lines}/{repoid}/{complete}").as_bytes(), 2);
    out.push_str(&format!(
        "id: {lines} / {} / {} - {id_sum}\n",
        grouped(repoid),
        grouped(&complete)
    ));
    for (i, part) in binary.chunks(18).enumerate() {
        let idx = i + 1;
        let mut summed = (idx as u16).to_be_bytes().to_vec();
        summed.extend_from_slice(part);
        out.push_str(&format!(
            "{idx:2}: {} - {}\n",
            grouped(&hex::encode(part)),
            sha256_hex(&summed, 2)
        ));
    }
    Ok(out)
}

/// Reads a plain export and returns the key blob (`import_keyfile`).
pub fn import_plain(repository_id: &[u8; 32], text: &str) -> Result<String, KeyManagerError> {
    let first = format!("{FILE_ID} {}\n", hex::encode(repository_id));
    if !text.starts_with(&first) {
        return Err(if text.starts_with(FILE_ID) {
            KeyManagerError::RepoIdMismatch
        } else {
            KeyManagerError::NotABorgKeyFile
        });
    }
    Ok(text[first.len()..].to_string())
}

/// Reads the lines of a paper key as a user types them (`import_paperkey`): the `id:` line and
/// the numbered data lines; other lines (the heading) are skipped. Returns the blob, wrapped
/// as borg stores it after a paper import.
pub fn import_paper(repository_id: &[u8; 32], text: &str) -> Result<String, KeyManagerError> {
    let err = |line: usize, reason: &str| KeyManagerError::PaperKey {
        line,
        reason: reason.to_string(),
    };
    let mut expected_lines = None;
    let mut complete_sum = String::new();
    let mut result = Vec::new();
    let mut idx = 1usize;
    for raw in text.lines() {
        let Some((label, body)) = raw.split_once(':') else {
            continue;
        };
        let body: String = body.chars().filter(|c| *c != ' ').collect();
        let label = label.trim();
        if label == "id" {
            let (data, sum) = body
                .split_once('-')
                .ok_or_else(|| err(0, "each line must contain exactly one '-'"))?;
            if sha256_hex(data.to_lowercase().as_bytes(), 2) != sum {
                return Err(err(0, "line checksum did not match"));
            }
            let parts: Vec<&str> = data.split('/').collect();
            let [n, repoid, complete] = parts[..] else {
                return Err(err(0, "the id line must contain exactly two '/'"));
            };
            if repoid != &hex::encode(repository_id)[..18] {
                return Err(KeyManagerError::RepoIdMismatch);
            }
            expected_lines = Some(n.parse::<usize>().map_err(|_| err(0, "bad line count"))?);
            complete_sum = complete.to_string();
            continue;
        }
        let Ok(n) = label.parse::<usize>() else {
            continue;
        };
        if expected_lines.is_none() {
            return Err(err(n, "data line before the id line"));
        }
        if n != idx {
            return Err(err(n, &format!("expected line {idx}")));
        }
        let (data, sum) = body
            .split_once('-')
            .ok_or_else(|| err(n, "each line must contain exactly one '-'"))?;
        let part = hex::decode(data)
            .map_err(|_| err(n, "only characters 0-9 and a-f and '-' are valid"))?;
        let mut summed = (idx as u16).to_be_bytes().to_vec();
        summed.extend_from_slice(&part);
        if sha256_hex(&summed, 2) != sum {
            return Err(err(n, "line checksum did not match"));
        }
        result.extend_from_slice(&part);
        idx += 1;
    }
    let Some(lines) = expected_lines else {
        return Err(err(0, "no id line"));
    };
    if idx - 1 != lines {
        return Err(err(
            idx,
            &format!("expected {lines} data lines, got {}", idx - 1),
        ));
    }
    if sha256_hex(&result, 12) != complete_sum {
        return Err(err(0, "The overall checksum did not match"));
    }
    Ok(format!("{}\n", wrap_base64(&result)))
}

/// Stores an imported blob where the key type keeps it (`store_keyblob`): the repository
/// config, or the existing key file / a new one.
pub fn store_key_blob(
    repository: &mut dyn Repository,
    key_type: KeyType,
    blob: &str,
    settings: &CryptoSettings,
    location: &KeyLocation,
) -> Result<KeyTarget, KeyManagerError> {
    let id = *repository.id();
    match key_type.storage() {
        KeyStorage::None => Err(KeyManagerError::UnencryptedRepo),
        KeyStorage::Repo => {
            repository.save_key(blob.as_bytes())?;
            Ok(KeyTarget::Repository)
        }
        KeyStorage::Keyfile => {
            let path = existing_or_new_target(settings, &id, location)?;
            write_key_file(&path, &id, blob, false)?;
            Ok(KeyTarget::File(path))
        }
    }
}

/// The secrets a related repository shares (borg 1.4.5 `key export-related-secrets`): same
/// chunk ids and chunker seed, so archives deduplicate across the two repositories.
#[derive(Clone, PartialEq, Eq)]
pub struct RelatedSecrets {
    /// The `id_key`.
    pub id_key: zeroize::Zeroizing<Vec<u8>>,
    /// The chunker seed.
    pub chunk_seed: i32,
    /// Borg's `NAME` of the key type they came from.
    pub key_name: String,
}

impl std::fmt::Debug for RelatedSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelatedSecrets")
            .field("key_name", &self.key_name)
            .finish_non_exhaustive()
    }
}

impl RelatedSecrets {
    /// The secrets of a key; `None` for `none`.
    pub fn of(key: &super::key::Key) -> Option<RelatedSecrets> {
        let m = key.material()?;
        Some(RelatedSecrets {
            id_key: zeroize::Zeroizing::new(m.id_key.clone()),
            chunk_seed: m.chunk_seed,
            key_name: key.key_type().borg_name().to_string(),
        })
    }

    /// The JSON file borg writes (`json.dump(..., indent=4)` plus a newline).
    pub fn to_json(&self) -> String {
        format!(
            "{{\n    \"version\": 1,\n    \"id_key\": \"{}\",\n    \"chunk_seed\": {},\n    \"key_name\": {}\n}}\n",
            hex::encode(&*self.id_key),
            self.chunk_seed,
            serde_json::Value::String(self.key_name.clone())
        )
    }

    /// Reads the JSON file (`init --import-related-secrets`).
    pub fn from_json(text: &str) -> Result<RelatedSecrets, KeyManagerError> {
        let bad = |m: &str| KeyManagerError::RelatedSecrets(m.to_string());
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|_| bad("Invalid JSON in related secrets file"))?;
        if v.get("version").and_then(serde_json::Value::as_i64) != Some(1) {
            return Err(bad("Unsupported related secrets version"));
        }
        let id_key = v
            .get("id_key")
            .and_then(serde_json::Value::as_str)
            .and_then(|h| hex::decode(h).ok())
            .filter(|k| k.len() == 32 || k.len() == 128)
            .ok_or_else(|| bad("Invalid id_key in related secrets file"))?;
        let chunk_seed = v
            .get("chunk_seed")
            .and_then(serde_json::Value::as_i64)
            .and_then(|s| i32::try_from(s).ok())
            .ok_or_else(|| bad("Invalid chunk_seed in related secrets file"))?;
        let key_name = v
            .get("key_name")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| bad("Invalid key_name in related secrets file"))?
            .to_string();
        Ok(RelatedSecrets {
            id_key: zeroize::Zeroizing::new(id_key),
            chunk_seed,
            key_name,
        })
    }

    /// Whether a new key of `key_type` may reuse these secrets (`uses_same_id_hash`).
    pub fn fits(&self, key_type: KeyType) -> bool {
        let hmac = ["repokey", "key file", "authenticated"];
        let blake2 = [
            "repokey BLAKE2b",
            "key file BLAKE2b",
            "authenticated BLAKE2b",
        ];
        let name = key_type.borg_name();
        (hmac.contains(&self.key_name.as_str()) && hmac.contains(&name))
            || (blake2.contains(&self.key_name.as_str()) && blake2.contains(&name))
    }
}

/// `borg key change-passphrase`: a new passphrase (empty allowed), the same secrets in a new
/// blob with a new salt, stored where the old one was. The caller commits nothing: repokey
/// blobs go through `save_key`, which writes the repository config at once.
pub fn change_passphrase(
    repository: &mut dyn Repository,
    opened: &mut OpenedKey,
    settings: &CryptoSettings,
    prompter: &mut dyn Prompter,
) -> Result<(), KeyManagerError> {
    let Some(material) = opened.key.material() else {
        return Err(KeyManagerError::UnencryptedRepo);
    };
    let passphrase = new_passphrase(settings, prompter, true)?;
    let blob = encrypt_key(material, &passphrase)?;
    match &opened.target {
        KeyTarget::None => return Err(KeyManagerError::UnencryptedRepo),
        KeyTarget::Repository => repository.save_key(blob.as_bytes())?,
        KeyTarget::File(path) => write_key_file(path, &material.repository_id, &blob, false)?,
    }
    opened.logically_encrypted = opened.key.is_encrypted() && !passphrase.is_empty();
    opened.passphrase = passphrase;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob() -> String {
        wrap_base64(&(0..353u32).map(|i| i as u8).collect::<Vec<_>>())
    }

    #[test]
    fn related_secrets_json() {
        let key = crate::crypto::key::Key::generate(KeyType::RepokeyBlake2, &[0; 32]).unwrap();
        let r = RelatedSecrets::of(&key).unwrap();
        let json = r.to_json();
        assert!(json.starts_with("{\n    \"version\": 1,\n    \"id_key\": \""));
        assert!(json.ends_with("\"key_name\": \"repokey BLAKE2b\"\n}\n"));
        let back = RelatedSecrets::from_json(&json).unwrap();
        assert_eq!(back, r);
        assert!(back.fits(KeyType::KeyfileBlake2));
        assert!(!back.fits(KeyType::Repokey));
        assert!(!back.fits(KeyType::Plaintext));
        assert!(RelatedSecrets::from_json("{\"version\": 2}").is_err());
        assert!(RelatedSecrets::from_json("nope").is_err());
    }

    #[test]
    fn plain_roundtrip_and_errors() {
        let id = [0x5a; 32];
        let text = export_plain(&id, &blob());
        assert_eq!(import_plain(&id, &text).unwrap(), format!("{}\n", blob()));
        assert!(matches!(
            import_plain(&[1; 32], &text),
            Err(KeyManagerError::RepoIdMismatch)
        ));
        assert!(matches!(
            import_plain(&id, "hello"),
            Err(KeyManagerError::NotABorgKeyFile)
        ));
    }

    #[test]
    fn paper_roundtrip_and_checksums() {
        let id = [0x5a; 32];
        let paper = export_paper(&id, &blob()).unwrap();
        assert!(paper.contains("BORG PAPER KEY v1\nid: 20 / 5a5a5a 5a5a5a 5a5a5a / "));
        let back = import_paper(&id, &paper).unwrap();
        assert_eq!(
            unwrap_base64(&back).unwrap(),
            unwrap_base64(&blob()).unwrap()
        );
        let bad = paper.replacen(" - ", " - 0", 2);
        assert!(import_paper(&id, &bad).is_err());
        let wrong_digit = paper.replace(" 1: 000102", " 1: 100102");
        assert!(matches!(
            import_paper(&id, &wrong_digit),
            Err(KeyManagerError::PaperKey { line: 1, .. })
        ));
        assert!(matches!(
            import_paper(&[1; 32], &paper),
            Err(KeyManagerError::RepoIdMismatch)
        ));
        let short: String = paper.lines().take(6).map(|l| format!("{l}\n")).collect();
        assert!(import_paper(&id, &short).is_err());
    }
}
