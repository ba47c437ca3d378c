//! Key types and key material.
//!
//! A borg 1.x key is one of eight classes (`crypto/key.py`, `AVAILABLE_KEY_TYPES`), told apart
//! by the type byte that starts every object envelope. [`KeyType`] names them; [`KeyMaterial`]
//! holds the secrets a key blob stores; [`Key`] is the two together plus the cipher state
//! derived from them, ready to hash, encrypt and decrypt from many threads at once.

use aes::cipher::KeyInit;
use aes::Aes256;
use blake2::{Blake2b256, Digest};
use hmac::Hmac;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::repository::ObjectId;

/// Why a key cannot be built or identified.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The first byte of the manifest names no key type borg 1.x knows
    /// (borg's `UnsupportedPayloadError`).
    #[error(
        "Unsupported payload type {0}. A newer version is required to access this repository."
    )]
    UnsupportedPayload(u8),
    /// The manifest object is empty, so it names no key type.
    #[error("the manifest object is empty")]
    EmptyManifest,
    /// An `-e/--encryption` name borg does not know.
    #[error("invalid encryption mode '{0}' (choose from none, authenticated, authenticated-blake2, repokey, keyfile, repokey-blake2, keyfile-blake2)")]
    UnknownMode(String),
    /// Key material of the wrong size for the key type.
    #[error("{field} is {len} bytes, expected {expected} for a {mode} key")]
    BadLength {
        /// Which secret.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The length this key type needs.
        expected: usize,
        /// The key type's `-e` name.
        mode: &'static str,
    },
    /// The system random number generator failed.
    #[error("cannot get random bytes from the operating system: {0}")]
    Random(String),
}

impl KeyError {
    /// Borg 1.4's exit code for this error with `BORG_EXIT_CODES=modern` (legacy: always 2).
    pub fn exit_code(&self) -> i32 {
        match self {
            KeyError::UnsupportedPayload(_) | KeyError::EmptyManifest => 48,
            KeyError::UnknownMode(_) => 2,
            KeyError::BadLength { .. } => 40,
            KeyError::Random(_) => 2,
        }
    }
}

/// Where a key type keeps its encrypted key blob (borg's `KeyBlobStorage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStorage {
    /// No blob: `none` and the legacy passphrase key.
    None,
    /// A key file in the client's keys directory.
    Keyfile,
    /// The `key` option of the repository config (`load_key`/`save_key`).
    Repo,
}

/// How chunk ids are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdHashKind {
    /// Unkeyed SHA-256 (`none`).
    Sha256,
    /// HMAC-SHA256 with the 32-byte `id_key`.
    HmacSha256,
    /// Unkeyed BLAKE2b-256 over `id_key (128 bytes) ‖ data` (borg's `blake2b_256`).
    Blake2b256,
}

/// The eight key classes of borg 1.x.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// `-e none` (`PlaintextKey`, 0x02).
    Plaintext,
    /// `-e authenticated` (`AuthenticatedKey`, 0x07).
    Authenticated,
    /// `-e authenticated-blake2` (`Blake2AuthenticatedKey`, 0x06).
    AuthenticatedBlake2,
    /// `-e repokey` (`RepoKey`, 0x03).
    Repokey,
    /// `-e keyfile` (`KeyfileKey`, 0x00).
    Keyfile,
    /// `-e repokey-blake2` (`Blake2RepoKey`, 0x05).
    RepokeyBlake2,
    /// `-e keyfile-blake2` (`Blake2KeyfileKey`, 0x04).
    KeyfileBlake2,
    /// The attic-era passphrase key (`PassphraseKey`, 0x01): derived from the passphrase, no
    /// blob. Borg 1.x opens repositories marked 0x01 as repokey (they were migrated with
    /// `borg key migrate-to-repokey`); this variant exists for that derivation.
    LegacyPassphrase,
}

impl KeyType {
    /// Every type `borg init -e` accepts, in borg's order.
    pub const INIT_MODES: [KeyType; 7] = [
        KeyType::Plaintext,
        KeyType::Keyfile,
        KeyType::Repokey,
        KeyType::Authenticated,
        KeyType::KeyfileBlake2,
        KeyType::RepokeyBlake2,
        KeyType::AuthenticatedBlake2,
    ];

    /// The type byte that starts each object envelope and is stored in the security dir.
    pub fn type_byte(self) -> u8 {
        match self {
            KeyType::Keyfile => 0x00,
            KeyType::LegacyPassphrase => 0x01,
            KeyType::Plaintext => 0x02,
            KeyType::Repokey => 0x03,
            KeyType::KeyfileBlake2 => 0x04,
            KeyType::RepokeyBlake2 => 0x05,
            KeyType::AuthenticatedBlake2 => 0x06,
            KeyType::Authenticated => 0x07,
        }
    }

    /// The key class for the first byte of a manifest envelope, as borg's `identify_key`:
    /// 0x01 opens as repokey.
    pub fn identify(type_byte: u8) -> Result<KeyType, KeyError> {
        Ok(match type_byte {
            0x00 => KeyType::Keyfile,
            0x01 | 0x03 => KeyType::Repokey,
            0x02 => KeyType::Plaintext,
            0x04 => KeyType::KeyfileBlake2,
            0x05 => KeyType::RepokeyBlake2,
            0x06 => KeyType::AuthenticatedBlake2,
            0x07 => KeyType::Authenticated,
            other => return Err(KeyError::UnsupportedPayload(other)),
        })
    }

    /// The key class of a manifest envelope (its first byte).
    pub fn identify_manifest(manifest_envelope: &[u8]) -> Result<KeyType, KeyError> {
        match manifest_envelope.first() {
            Some(b) => KeyType::identify(*b),
            None => Err(KeyError::EmptyManifest),
        }
    }

    /// The name `borg init -e` takes (`ARG_NAME`).
    pub fn mode_name(self) -> &'static str {
        match self {
            KeyType::Plaintext => "none",
            KeyType::Authenticated => "authenticated",
            KeyType::AuthenticatedBlake2 => "authenticated-blake2",
            KeyType::Repokey => "repokey",
            KeyType::Keyfile => "keyfile",
            KeyType::RepokeyBlake2 => "repokey-blake2",
            KeyType::KeyfileBlake2 => "keyfile-blake2",
            KeyType::LegacyPassphrase => "passphrase",
        }
    }

    /// The type for a `borg init -e` name.
    pub fn from_mode_name(name: &str) -> Result<KeyType, KeyError> {
        KeyType::INIT_MODES
            .iter()
            .copied()
            .find(|t| t.mode_name() == name)
            .ok_or_else(|| KeyError::UnknownMode(name.to_string()))
    }

    /// Borg's human-readable `NAME` (shown by `borg info`, used by `uses_same_id_hash`).
    pub fn borg_name(self) -> &'static str {
        match self {
            KeyType::Plaintext => "plaintext",
            KeyType::Authenticated => "authenticated",
            KeyType::AuthenticatedBlake2 => "authenticated BLAKE2b",
            KeyType::Repokey => "repokey",
            KeyType::Keyfile => "key file",
            KeyType::RepokeyBlake2 => "repokey BLAKE2b",
            KeyType::KeyfileBlake2 => "key file BLAKE2b",
            KeyType::LegacyPassphrase => "passphrase",
        }
    }

    /// Where the key blob lives.
    pub fn storage(self) -> KeyStorage {
        match self {
            KeyType::Plaintext | KeyType::LegacyPassphrase => KeyStorage::None,
            KeyType::Keyfile | KeyType::KeyfileBlake2 => KeyStorage::Keyfile,
            KeyType::Repokey
            | KeyType::RepokeyBlake2
            | KeyType::Authenticated
            | KeyType::AuthenticatedBlake2 => KeyStorage::Repo,
        }
    }

    /// How chunk ids are computed.
    pub fn id_hash_kind(self) -> IdHashKind {
        match self {
            KeyType::Plaintext => IdHashKind::Sha256,
            KeyType::AuthenticatedBlake2 | KeyType::RepokeyBlake2 | KeyType::KeyfileBlake2 => {
                IdHashKind::Blake2b256
            }
            _ => IdHashKind::HmacSha256,
        }
    }

    /// Whether objects are encrypted (AES-CTR with a MAC) rather than stored in the clear.
    pub fn is_encrypted(self) -> bool {
        matches!(
            self,
            KeyType::Repokey
                | KeyType::Keyfile
                | KeyType::RepokeyBlake2
                | KeyType::KeyfileBlake2
                | KeyType::LegacyPassphrase
        )
    }

    /// Whether the BLAKE2b family (128-byte `id_key` and `enc_hmac_key`).
    pub fn is_blake2(self) -> bool {
        self.id_hash_kind() == IdHashKind::Blake2b256
    }

    /// Whether an envelope with this first byte belongs to this key. The repokey class also
    /// takes 0x01 (`AESKeyBase.decrypt`).
    pub fn accepts_envelope_type(self, type_byte: u8) -> bool {
        type_byte == self.type_byte()
            || (self == KeyType::Repokey && type_byte == KeyType::LegacyPassphrase.type_byte())
    }

    /// Whether both types compute chunk ids the same way (borg's `uses_same_id_hash`).
    pub fn uses_same_id_hash(self, other: KeyType) -> bool {
        let family = |t: KeyType| match t.id_hash_kind() {
            IdHashKind::Sha256 => None,
            kind => Some(kind),
        };
        family(self).is_some() && family(self) == family(other)
    }

    /// The length of `id_key` and `enc_hmac_key` for this type.
    pub fn mac_key_len(self) -> usize {
        if self.is_blake2() {
            128
        } else {
            32
        }
    }
}

/// The secrets of a key, as the decrypted key blob holds them. Zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct KeyMaterial {
    /// AES-256 key for object contents.
    pub enc_key: [u8; 32],
    /// MAC key for envelopes: 32 bytes (HMAC) or 128 bytes (BLAKE2b: 64 random ‖ 64 zero).
    pub enc_hmac_key: Vec<u8>,
    /// Chunk id key: 32 or 128 bytes like `enc_hmac_key`.
    pub id_key: Vec<u8>,
    /// Seed for the buzhash chunker, a signed 32-bit value.
    pub chunk_seed: i32,
    /// The id of the repository this key belongs to.
    pub repository_id: [u8; 32],
    /// Whether the manifest must carry a TAM.
    pub tam_required: bool,
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("repository_id", &hex::encode(self.repository_id))
            .field("tam_required", &self.tam_required)
            .finish_non_exhaustive()
    }
}

impl KeyMaterial {
    /// Fresh random material for a new key of `key_type`, as borg's `init_from_random_data`
    /// (and `ID_BLAKE2b_256.init_from_random_data` for the BLAKE2b types).
    pub fn generate(key_type: KeyType, repository_id: &[u8; 32]) -> Result<KeyMaterial, KeyError> {
        let mut random = zeroize::Zeroizing::new([0u8; 100]);
        fill_random(&mut random[..])?;
        let mut m = KeyMaterial::from_random_data(&random, repository_id);
        if key_type.is_blake2() {
            m.enc_hmac_key = random_blake2b_key()?;
            m.id_key = random_blake2b_key()?;
        }
        m.tam_required = key_type != KeyType::Plaintext;
        Ok(m)
    }

    /// Splits 100 bytes into the secrets as borg's `AESKeyBase.init_from_random_data` does.
    pub fn from_random_data(data: &[u8; 100], repository_id: &[u8; 32]) -> KeyMaterial {
        let mut enc_key = [0u8; 32];
        enc_key.copy_from_slice(&data[0..32]);
        let seed = u32::from_be_bytes([data[96], data[97], data[98], data[99]]);
        KeyMaterial {
            enc_key,
            enc_hmac_key: data[32..64].to_vec(),
            id_key: data[64..96].to_vec(),
            // The bit pattern of the big-endian u32, read as signed.
            chunk_seed: seed as i32,
            repository_id: *repository_id,
            tam_required: true,
        }
    }

    /// The attic-era passphrase key: PBKDF2-HMAC-SHA256 of the passphrase with the
    /// repository id as salt, 100000 rounds, 100 bytes (`PassphraseKey.init`).
    pub fn from_legacy_passphrase(passphrase: &[u8], repository_id: &[u8; 32]) -> KeyMaterial {
        let mut data = zeroize::Zeroizing::new([0u8; 100]);
        pbkdf2::pbkdf2_hmac::<Sha256>(passphrase, repository_id, 100_000, &mut data[..]);
        let mut m = KeyMaterial::from_random_data(&data, repository_id);
        m.tam_required = false;
        m
    }

    /// Checks the secret lengths against a key type.
    pub fn check_lengths(&self, key_type: KeyType) -> Result<(), KeyError> {
        let expected = key_type.mac_key_len();
        for (field, len) in [
            ("enc_hmac_key", self.enc_hmac_key.len()),
            ("id_key", self.id_key.len()),
        ] {
            if len != expected {
                return Err(KeyError::BadLength {
                    field,
                    len,
                    expected,
                    mode: key_type.mode_name(),
                });
            }
        }
        Ok(())
    }
}

/// 64 random bytes followed by 64 zero bytes (`random_blake2b_256_key`).
fn random_blake2b_key() -> Result<Vec<u8>, KeyError> {
    let mut k = vec![0u8; 128];
    fill_random(&mut k[..64])?;
    Ok(k)
}

/// Fills `buf` from the operating system's random source.
pub fn fill_random(buf: &mut [u8]) -> Result<(), KeyError> {
    getrandom::fill(buf).map_err(|e| KeyError::Random(e.to_string()))
}

/// The MAC state of an encrypted key, keyed once and cloned per object.
#[derive(Clone)]
pub(crate) enum MacState {
    /// HMAC-SHA256 keyed with `enc_hmac_key`.
    Hmac(Hmac<Sha256>),
    /// BLAKE2b-256 that has absorbed `enc_hmac_key` (borg's prefix-MAC).
    Blake2(Blake2b256),
}

/// The chunk-id state, keyed once and cloned per chunk.
#[derive(Clone)]
pub(crate) enum IdState {
    /// Unkeyed SHA-256.
    Sha256,
    /// HMAC-SHA256 keyed with `id_key`.
    Hmac(Hmac<Sha256>),
    /// BLAKE2b-256 that has absorbed `id_key`.
    Blake2(Blake2b256),
}

/// A key ready for use: its type, its secrets, and the cipher state derived from them.
///
/// `Key` is `Send + Sync`: hashing, encrypting and decrypting take `&self`, so one key can
/// serve every worker of a pipeline. Encryption never picks its own counter value; see
/// [`crate::crypto::nonces`].
pub struct Key {
    key_type: KeyType,
    material: Option<KeyMaterial>,
    pub(crate) aes: Option<Aes256>,
    pub(crate) mac: Option<MacState>,
    pub(crate) id: IdState,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("key_type", &self.key_type)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// The key of an unencrypted (`none`) repository.
    pub fn plaintext() -> Key {
        Key {
            key_type: KeyType::Plaintext,
            material: None,
            aes: None,
            mac: None,
            id: IdState::Sha256,
        }
    }

    /// Builds a key of `key_type` from its secrets. `Plaintext` ignores `material`.
    pub fn new(key_type: KeyType, material: KeyMaterial) -> Result<Key, KeyError> {
        if key_type == KeyType::Plaintext {
            return Ok(Key::plaintext());
        }
        material.check_lengths(key_type)?;
        let id = match key_type.id_hash_kind() {
            IdHashKind::Sha256 => IdState::Sha256,
            IdHashKind::HmacSha256 => IdState::Hmac(hmac_sha256(&material.id_key)),
            IdHashKind::Blake2b256 => {
                IdState::Blake2(Blake2b256::new().chain_update(&material.id_key))
            }
        };
        let (aes, mac) = if key_type.is_encrypted() {
            let aes = Aes256::new(&material.enc_key.into());
            let mac = if key_type.is_blake2() {
                MacState::Blake2(Blake2b256::new().chain_update(&material.enc_hmac_key))
            } else {
                MacState::Hmac(hmac_sha256(&material.enc_hmac_key))
            };
            (Some(aes), Some(mac))
        } else {
            (None, None)
        };
        Ok(Key {
            key_type,
            material: Some(material),
            aes,
            mac,
            id,
        })
    }

    /// A new key of `key_type` with fresh random secrets for the repository `repository_id`.
    pub fn generate(key_type: KeyType, repository_id: &[u8; 32]) -> Result<Key, KeyError> {
        if key_type == KeyType::Plaintext {
            return Ok(Key::plaintext());
        }
        Key::new(key_type, KeyMaterial::generate(key_type, repository_id)?)
    }

    /// The key type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The secrets; `None` for a plaintext key.
    pub fn material(&self) -> Option<&KeyMaterial> {
        self.material.as_ref()
    }

    /// The chunker seed (0 for a plaintext key).
    pub fn chunk_seed(&self) -> i32 {
        self.material.as_ref().map_or(0, |m| m.chunk_seed)
    }

    /// Whether the manifest must carry a valid TAM (`key.tam_required`): never for
    /// plaintext and legacy keys, otherwise as stored in the key.
    pub fn tam_required(&self) -> bool {
        match self.key_type {
            KeyType::Plaintext | KeyType::LegacyPassphrase => false,
            _ => self.material.as_ref().is_some_and(|m| m.tam_required),
        }
    }

    /// Changes the `tam_required` flag (used when the key blob lacks it and the security dir
    /// decides, and by `upgrade --tam`).
    pub fn set_tam_required(&mut self, required: bool) {
        if let Some(m) = self.material.as_mut() {
            m.tam_required = required;
        }
    }

    /// Whether objects are encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.key_type.is_encrypted()
    }

    /// Bytes an envelope adds to its payload: 41 for encrypted keys, 1 otherwise.
    pub fn envelope_overhead(&self) -> usize {
        if self.is_encrypted() {
            crate::crypto::envelope::ENCRYPTED_OVERHEAD
        } else {
            1
        }
    }
}

/// An HMAC-SHA256 state keyed with `key` (any length is a valid HMAC key).
pub(crate) fn hmac_sha256(key: &[u8]) -> Hmac<Sha256> {
    match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(h) => h,
        // HMAC accepts keys of every length; this arm is never taken.
        Err(_) => unreachable!("HMAC takes keys of any length"),
    }
}

/// The id of the manifest, which is fixed rather than a hash.
pub const MANIFEST_ID: ObjectId = crate::repository::MANIFEST_ID;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_bytes_match_borg() {
        let expected = [
            ("none", 0x02),
            ("authenticated", 0x07),
            ("authenticated-blake2", 0x06),
            ("repokey", 0x03),
            ("keyfile", 0x00),
            ("repokey-blake2", 0x05),
            ("keyfile-blake2", 0x04),
        ];
        for (name, byte) in expected {
            let t = KeyType::from_mode_name(name).unwrap();
            assert_eq!(t.type_byte(), byte, "{name}");
            assert_eq!(KeyType::identify(byte).unwrap(), t);
        }
        assert_eq!(KeyType::identify(0x01).unwrap(), KeyType::Repokey);
        assert!(matches!(
            KeyType::identify(0x08),
            Err(KeyError::UnsupportedPayload(8))
        ));
        assert!(matches!(
            KeyType::identify_manifest(&[]),
            Err(KeyError::EmptyManifest)
        ));
        assert!(KeyType::from_mode_name("passphrase").is_err());
    }

    #[test]
    fn chunk_seed_is_signed_like_borg() {
        let mut data = [0u8; 100];
        data[96..100].copy_from_slice(&[0xf8, 0xa4, 0x32, 0xeb]);
        let m = KeyMaterial::from_random_data(&data, &[0; 32]);
        assert_eq!(m.chunk_seed, -123456789);
        data[96..100].copy_from_slice(&[0x00, 0x00, 0x01, 0x00]);
        assert_eq!(
            KeyMaterial::from_random_data(&data, &[0; 32]).chunk_seed,
            256
        );
    }

    #[test]
    fn generated_blake2_keys_have_zero_tails() {
        let m = KeyMaterial::generate(KeyType::RepokeyBlake2, &[7; 32]).unwrap();
        assert_eq!(m.id_key.len(), 128);
        assert_eq!(m.enc_hmac_key.len(), 128);
        assert!(m.id_key[64..].iter().all(|b| *b == 0));
        assert!(m.id_key[..64].iter().any(|b| *b != 0));
        let a = KeyMaterial::generate(KeyType::Repokey, &[7; 32]).unwrap();
        let b = KeyMaterial::generate(KeyType::Repokey, &[7; 32]).unwrap();
        assert_ne!(a.enc_key, b.enc_key);
        assert_eq!(a.id_key.len(), 32);
    }

    #[test]
    fn wrong_key_lengths_are_refused() {
        let m = KeyMaterial::generate(KeyType::Repokey, &[0; 32]).unwrap();
        assert!(matches!(
            Key::new(KeyType::RepokeyBlake2, m),
            Err(KeyError::BadLength { .. })
        ));
    }

    #[test]
    fn legacy_passphrase_key_derivation() {
        // PBKDF2-HMAC-SHA256("attic", salt = repository id 00..1f, 100000, 100), split as
        // PassphraseKey.init does; expected values from Python's hashlib.
        let mut id = [0u8; 32];
        for (i, b) in id.iter_mut().enumerate() {
            *b = i as u8;
        }
        let m = KeyMaterial::from_legacy_passphrase(b"attic", &id);
        assert_eq!(
            hex::encode(m.enc_key),
            "1db3a1ab4effbf44995e2087c63e8b5ff4c033de9d3bb5feb1365bf5901e56ae"
        );
        assert_eq!(
            hex::encode(&m.enc_hmac_key),
            "3b441164f61a2f6d4bfff59a29efa3871fdbbf1aad2e300e1bd796d94fc6b0b0"
        );
        assert_eq!(
            hex::encode(&m.id_key),
            "95a764e4e4f66da88aeb43f179edb89aba04655956e1d951a0b86f6fbf0c9709"
        );
        assert_eq!(m.chunk_seed, 1363320398);
        let key = Key::new(KeyType::LegacyPassphrase, m).unwrap();
        assert!(!key.tam_required());
        // Its envelopes carry type 0x01, which a repokey also opens.
        let env = key.encrypt(5, b"\x00\x00x");
        assert_eq!(env[0], 0x01);
        assert!(key.decrypt(None, &env).is_ok());
    }

    #[test]
    fn key_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Key>();
    }

    #[test]
    fn same_id_hash_families() {
        assert!(KeyType::Repokey.uses_same_id_hash(KeyType::Authenticated));
        assert!(KeyType::KeyfileBlake2.uses_same_id_hash(KeyType::AuthenticatedBlake2));
        assert!(!KeyType::Repokey.uses_same_id_hash(KeyType::RepokeyBlake2));
        assert!(!KeyType::Plaintext.uses_same_id_hash(KeyType::Plaintext));
    }
}
