//! The passphrase-encrypted key blob (`KeyfileKeyBase.encrypt_key_file` / `decrypt_key_file`).
//!
//! Outer layer, a msgpack map packed with sorted keys: `algorithm: "sha256"`, `data` =
//! AES-256-CTR(KEK, IV 0, inner), `hash` = HMAC-SHA256(KEK, inner), `iterations`, `salt` (32
//! random bytes), `version: 1`; KEK = PBKDF2-HMAC-SHA256(passphrase, salt, iterations, 32).
//! Inner layer, also sorted: `chunk_seed`, `enc_hmac_key`, `enc_key`, `id_key`,
//! `repository_id`, `tam_required`, `version: 1`. The outer packing is stored as base64 wrapped
//! at 70 columns (`textwrap.wrap`).

use aes::cipher::{KeyIvInit, StreamCipher};
use base64::Engine;
use hmac::Mac;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::key::{fill_random, hmac_sha256, KeyMaterial};
use super::passphrase::Passphrase;
use crate::msgpack::{self, Value};

/// PBKDF2 rounds borg writes (`PBKDF2_ITERATIONS`). Reading uses the stored count.
pub const PBKDF2_ITERATIONS: u32 = 100_000;

/// Base64 lines are this wide (Python's `textwrap.wrap` default).
const LINE_WIDTH: usize = 70;

/// Why a key blob cannot be read. A wrong passphrase is not an error here: decrypting returns
/// `Ok(None)` so the caller can ask again.
#[derive(Debug, thiserror::Error)]
pub enum KeyBlobError {
    /// Fewer than 20 bytes after base64 decoding, or no base64 at all (`KeyfileInvalidError`).
    #[error("the key data is not a borg key (too short or not base64)")]
    NotAKey,
    /// The blob is not msgpack.
    #[error("the key data is corrupted: {0}")]
    Corrupt(String),
    /// A version other than 1.
    #[error("encrypted key version {0} is not supported by this borg version.")]
    UnsupportedVersion(String),
    /// An algorithm other than `sha256`; borg 2's argon2 keys land here.
    #[error("encrypted key algorithm '{0}' is not supported by this borg version.{hint}", hint = if .0.starts_with("argon2") { " This key was written by borg 2; borg 1.x repositories use PBKDF2 (sha256) keys." } else { "" })]
    UnsupportedAlgorithm(String),
    /// The decrypted key has a bad or missing field.
    #[error("the decrypted key is malformed: {0}")]
    BadKey(String),
    /// No random salt could be drawn.
    #[error("cannot get random bytes: {0}")]
    Random(String),
}

impl KeyBlobError {
    /// Borg 1.4's exit code for this error with `BORG_EXIT_CODES=modern` (legacy: always 2).
    pub fn exit_code(&self) -> i32 {
        match self {
            KeyBlobError::NotAKey | KeyBlobError::Corrupt(_) | KeyBlobError::BadKey(_) => 40,
            _ => 2,
        }
    }
}

/// A decrypted key blob.
#[derive(Debug)]
pub struct DecryptedKey {
    /// The secrets; `tam_required` is `true` when the blob does not say.
    pub material: KeyMaterial,
    /// Whether the blob had a `tam_required` field (pre-1.0.9 keys do not; borg then asks the
    /// security dir).
    pub tam_required_stored: bool,
}

/// PBKDF2-HMAC-SHA256 of the passphrase (`Passphrase.kdf`).
pub fn kdf(passphrase: &Passphrase, salt: &[u8], iterations: u32) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(passphrase.as_bytes(), salt, iterations, &mut out[..]);
    out
}

fn ctr_zero_iv(kek: &[u8; 32], data: &mut [u8]) {
    let mut c = ctr::Ctr128BE::<aes::Aes256>::new(kek.into(), &[0u8; 16].into());
    c.apply_keystream(data);
}

/// The inner msgpack of a key (`Key.as_dict()` packed).
pub fn pack_inner(material: &KeyMaterial) -> Zeroizing<Vec<u8>> {
    let v = Value::map([
        ("chunk_seed", Value::from(material.chunk_seed)),
        ("enc_hmac_key", Value::bytes(&material.enc_hmac_key)),
        ("enc_key", Value::bytes(&material.enc_key)),
        ("id_key", Value::bytes(&material.id_key)),
        ("repository_id", Value::bytes(&material.repository_id)),
        ("tam_required", Value::Bool(material.tam_required)),
        ("version", Value::from(1)),
    ]);
    let packed = Zeroizing::new(msgpack::encode(&v));
    zeroize_value(v);
    packed
}

fn zeroize_value(v: Value) {
    if let Value::Map(pairs) = v {
        for (_, mut val) in pairs {
            if let Value::Raw(b) = &mut val {
                zeroize::Zeroize::zeroize(b);
            }
        }
    }
}

/// Encrypts key material into the base64 text borg stores (without a final newline), with a
/// fresh salt and [`PBKDF2_ITERATIONS`].
pub fn encrypt_key(
    material: &KeyMaterial,
    passphrase: &Passphrase,
) -> Result<String, KeyBlobError> {
    let mut salt = [0u8; 32];
    fill_random(&mut salt).map_err(|e| KeyBlobError::Random(e.to_string()))?;
    Ok(encrypt_key_with(
        material,
        passphrase,
        &salt,
        PBKDF2_ITERATIONS,
    ))
}

/// [`encrypt_key`] with a chosen salt and iteration count (deterministic, for tests).
pub fn encrypt_key_with(
    material: &KeyMaterial,
    passphrase: &Passphrase,
    salt: &[u8; 32],
    iterations: u32,
) -> String {
    let inner = pack_inner(material);
    let kek = kdf(passphrase, salt, iterations);
    let mut mac = hmac_sha256(&kek[..]);
    mac.update(&inner);
    let hash = mac.finalize().into_bytes();
    let mut data = inner.to_vec();
    ctr_zero_iv(&kek, &mut data);
    let outer = Value::map([
        ("algorithm", Value::str("sha256")),
        ("data", Value::Raw(data)),
        ("hash", Value::bytes(&hash)),
        ("iterations", Value::from(iterations)),
        ("salt", Value::bytes(salt)),
        ("version", Value::from(1)),
    ]);
    wrap_base64(&msgpack::encode(&outer))
}

/// Base64 wrapped at 70 columns, lines joined with `\n`, no final newline.
pub fn wrap_base64(data: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(LINE_WIDTH)
        // base64 output is ASCII, so every chunk is valid UTF-8.
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    lines.join("\n")
}

/// Decodes base64 the lenient way Python's `a2b_base64` does: characters outside the alphabet
/// (newlines, tabs, spaces) are skipped.
pub fn unwrap_base64(text: &str) -> Result<Vec<u8>, KeyBlobError> {
    let clean: String = text
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
        .collect();
    // Data ends at the first padding character.
    let body = clean.split('=').next().unwrap_or_default();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    engine.decode(body).map_err(|_| KeyBlobError::NotAKey)
}

/// Decrypts the base64 text of a key blob. `Ok(None)` means the passphrase is wrong.
pub fn decrypt_key(
    text: &str,
    passphrase: &Passphrase,
) -> Result<Option<DecryptedKey>, KeyBlobError> {
    let blob = unwrap_base64(text)?;
    if blob.len() < 20 {
        return Err(KeyBlobError::NotAKey);
    }
    let outer = msgpack::decode(&blob).map_err(|e| KeyBlobError::Corrupt(e.to_string()))?;
    if outer.as_map().is_none() {
        return Err(KeyBlobError::Corrupt("the key blob is not a map".into()));
    }
    match outer.get("version") {
        Some(Value::Int(1)) => {}
        Some(v) => return Err(KeyBlobError::UnsupportedVersion(format!("{v:?}"))),
        None => return Err(KeyBlobError::Corrupt("no version".into())),
    }
    let algorithm = outer
        .get("algorithm")
        .and_then(Value::as_bytes)
        .ok_or_else(|| KeyBlobError::Corrupt("no algorithm".into()))?;
    if algorithm != b"sha256" {
        return Err(KeyBlobError::UnsupportedAlgorithm(
            String::from_utf8_lossy(algorithm).into_owned(),
        ));
    }
    let field = |name: &str| {
        outer
            .get(name)
            .and_then(Value::as_bytes)
            .ok_or_else(|| KeyBlobError::Corrupt(format!("missing or non-bytes field {name}")))
    };
    let (salt, data, hash) = (field("salt")?, field("data")?, field("hash")?);
    let iterations = outer
        .get("iterations")
        .and_then(Value::as_u64)
        .and_then(|i| u32::try_from(i).ok())
        .filter(|i| *i > 0)
        .ok_or_else(|| KeyBlobError::Corrupt("bad iterations".into()))?;
    let kek = kdf(passphrase, salt, iterations);
    let mut inner = Zeroizing::new(data.to_vec());
    ctr_zero_iv(&kek, &mut inner);
    let mut mac = hmac_sha256(&kek[..]);
    mac.update(&inner);
    if !bool::from(mac.finalize().into_bytes().as_slice().ct_eq(hash)) {
        return Ok(None);
    }
    parse_inner(&inner).map(Some)
}

/// Reads the inner (decrypted) key dict (`Key(internal_dict=...)`).
pub fn parse_inner(inner: &[u8]) -> Result<DecryptedKey, KeyBlobError> {
    let v = msgpack::decode(inner).map_err(|e| KeyBlobError::BadKey(e.to_string()))?;
    let result = parse_inner_value(&v);
    zeroize_value(v);
    result
}

fn parse_inner_value(v: &Value) -> Result<DecryptedKey, KeyBlobError> {
    let bad = |m: &str| KeyBlobError::BadKey(m.to_string());
    match v.get("version") {
        Some(Value::Int(1)) => {}
        _ => return Err(bad("key version is not 1")),
    }
    let bytes = |name: &str| {
        v.get(name)
            .and_then(Value::as_bytes)
            .ok_or_else(|| bad(&format!("no {name}")))
    };
    let fixed32 = |name: &str| -> Result<[u8; 32], KeyBlobError> {
        bytes(name)?
            .try_into()
            .map_err(|_| bad(&format!("{name} is not 32 bytes")))
    };
    let mac_key = |name: &str| -> Result<Vec<u8>, KeyBlobError> {
        let b = bytes(name)?;
        if b.len() == 32 || b.len() == 128 {
            Ok(b.to_vec())
        } else {
            Err(bad(&format!("{name} is {} bytes", b.len())))
        }
    };
    let chunk_seed = v
        .get("chunk_seed")
        .and_then(Value::as_i64)
        .ok_or_else(|| bad("no chunk_seed"))?;
    let tam = v.get("tam_required").and_then(Value::as_bool);
    Ok(DecryptedKey {
        material: KeyMaterial {
            enc_key: fixed32("enc_key")?,
            enc_hmac_key: mac_key("enc_hmac_key")?,
            id_key: mac_key("id_key")?,
            // Borg writes signed 32-bit seeds; keep the low 32 bits of anything wider.
            chunk_seed: chunk_seed as i32,
            repository_id: fixed32("repository_id")?,
            tam_required: tam.unwrap_or(true),
        },
        tam_required_stored: tam.is_some(),
    })
}

/// The body of the `key_blob` fuzz target, also replayed over its corpus by `cargo test`:
/// arbitrary text never panics the reader, and a blob that opens re-encrypts and opens again
/// to the same secrets. Uses 1 PBKDF2 round whatever the blob says, to stay fast.
#[doc(hidden)]
pub fn fuzz_key_blob(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let pass = Passphrase::new("fuzz");
    if let Ok(Some(k)) = decrypt_key_capped(&text, &pass, 1) {
        let again = encrypt_key_with(&k.material, &pass, &[3; 32], 1);
        let back = decrypt_key(&again, &pass)
            .expect("re-encrypted key must decode")
            .expect("same passphrase must open it");
        assert_eq!(back.material.enc_key, k.material.enc_key);
        assert_eq!(back.material.id_key, k.material.id_key);
    }
    let _ = parse_inner(data);
}

/// [`decrypt_key`] with the PBKDF2 rounds capped (fuzzing only).
fn decrypt_key_capped(
    text: &str,
    passphrase: &Passphrase,
    max_rounds: u32,
) -> Result<Option<DecryptedKey>, KeyBlobError> {
    let blob = unwrap_base64(text)?;
    let mut outer = msgpack::decode(&blob).map_err(|e| KeyBlobError::Corrupt(e.to_string()))?;
    if let Some(i) = outer.get("iterations").and_then(Value::as_u64) {
        outer.insert("iterations", Value::from(i.min(max_rounds as u64)));
    }
    decrypt_key(&wrap_base64(&msgpack::encode(&outer)), passphrase)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INNER_HEX: &str = "87aa6368756e6b5f73656564d2f8a432ebac656e635f686d61635f6b6579da0020202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3fa7656e635f6b6579da0020000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1fa669645f6b6579da0020404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5fad7265706f7369746f72795f6964da00200000000000000000000000000000000000000000000000000000000000000000ac74616d5f7265717569726564c3a776657273696f6e01";
    const BLOB: &str = "hqlhbGdvcml0aG2mc2hhMjU2pGRhdGHaAN7pbjmVtvtHM7//BX0iSiNBfsgZ/G5niwrsct
Zc5sjHr0cPCSTzpNPNrWO2JuLod624TcoP0uQn9CtcXcaVfNs+/xN6g6phJxFpFZPTV3b6
XEzlfQZt7Oxn0DZZVewPitkntPOGdjGpsQC9bsSpL+1HPDQGgDxhAHE7Pyd93wRajSQS1Q
TNUcY6KRFNh4MH7MWHu9tIpnHO9r4v10DBS0vLj7+wrZ9ehAHoNiExkLyf7vTECKG+W46p
swqujU9dSlXp/2RpLb72Qtl/frH0uYGfYbO9F1RXUmilCP+WGCGkaGFzaNoAIK5Bsj5e5m
81LSAN0H8gGwtqfhLwLyiW4k1hcWrxaLpVqml0ZXJhdGlvbnPOAAGGoKRzYWx02gAgAAEC
AwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+ndmVyc2lvbgE=";

    fn material() -> KeyMaterial {
        let mut enc_key = [0u8; 32];
        enc_key.copy_from_slice(&(0u8..32).collect::<Vec<_>>());
        KeyMaterial {
            enc_key,
            enc_hmac_key: (32u8..64).collect(),
            id_key: (64u8..96).collect(),
            chunk_seed: -123456789,
            repository_id: [0; 32],
            tam_required: true,
        }
    }

    fn salt() -> [u8; 32] {
        let mut s = [0u8; 32];
        s.copy_from_slice(&(0u8..32).collect::<Vec<_>>());
        s
    }

    #[test]
    fn kdf_vector() {
        assert_eq!(
            hex::encode(*kdf(&Passphrase::new("pässwörd"), &salt(), 100_000)),
            "5dbc21982f6191edff3de1dfc6501e152e8c8595db44c55544b318f39c9b0a61"
        );
    }

    #[test]
    fn inner_and_blob_vectors() {
        assert_eq!(hex::encode(&*pack_inner(&material())), INNER_HEX);
        let text = encrypt_key_with(&material(), &Passphrase::new("pässwörd"), &salt(), 100_000);
        assert_eq!(text, BLOB);
        let k = decrypt_key(BLOB, &Passphrase::new("pässwörd"))
            .unwrap()
            .unwrap();
        assert_eq!(k.material.chunk_seed, -123456789);
        assert_eq!(k.material.id_key, material().id_key);
        assert!(k.tam_required_stored && k.material.tam_required);
    }

    #[test]
    fn wrong_passphrase_is_none() {
        assert!(decrypt_key(BLOB, &Passphrase::new("wrong"))
            .unwrap()
            .is_none());
    }

    #[test]
    fn damaged_blobs_are_errors() {
        let pass = Passphrase::new("pässwörd");
        // Truncated base64.
        assert!(matches!(
            decrypt_key(&BLOB[..20], &pass),
            Err(KeyBlobError::NotAKey)
        ));
        assert!(matches!(
            decrypt_key(&BLOB[..200], &pass),
            Err(KeyBlobError::Corrupt(_))
        ));
        assert!(matches!(decrypt_key("", &pass), Err(KeyBlobError::NotAKey)));
        // A flipped byte in the encrypted data: looks like a wrong passphrase, as in borg.
        let mut blob = unwrap_base64(BLOB).unwrap();
        blob[40] ^= 1;
        assert!(decrypt_key(&wrap_base64(&blob), &pass).unwrap().is_none());
        // Other algorithm / version.
        let mut outer = msgpack::decode(&unwrap_base64(BLOB).unwrap()).unwrap();
        outer.insert("algorithm", Value::str("argon2 chacha20-poly1305"));
        let e = decrypt_key(&wrap_base64(&msgpack::encode(&outer)), &pass).unwrap_err();
        assert!(
            e.to_string().contains("argon2 chacha20-poly1305") && e.to_string().contains("borg 2"),
            "{e}"
        );
        outer.insert("version", Value::from(2));
        assert!(matches!(
            decrypt_key(&wrap_base64(&msgpack::encode(&outer)), &pass),
            Err(KeyBlobError::UnsupportedVersion(_))
        ));
        // Not a map.
        assert!(matches!(
            decrypt_key(
                &wrap_base64(&msgpack::encode(&Value::str("x".repeat(40).as_str()))),
                &pass
            ),
            Err(KeyBlobError::Corrupt(_))
        ));
    }

    #[test]
    fn old_keys_without_tam_required() {
        let mut v = msgpack::decode(&hex::decode(INNER_HEX).unwrap()).unwrap();
        v.remove("tam_required");
        let k = parse_inner(&msgpack::encode(&v)).unwrap();
        assert!(!k.tam_required_stored);
        v.insert("id_key", Value::bytes(&[1; 5]));
        assert!(matches!(
            parse_inner(&msgpack::encode(&v)),
            Err(KeyBlobError::BadKey(_))
        ));
    }

    #[test]
    fn lenient_base64() {
        let text = "\tAAEC\r\n AwQ=\n";
        assert_eq!(unwrap_base64(text).unwrap(), [0, 1, 2, 3, 4]);
        let long = wrap_base64(&[7u8; 200]);
        assert!(long.lines().all(|l| l.len() <= 70));
        assert_eq!(long.lines().next().unwrap().len(), 70);
    }
}
