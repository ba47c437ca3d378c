//! TAM: the MAC borg puts inside the manifest and every archive's metadata.
//!
//! Writing (`pack_and_authenticate_metadata`): add `tam = {hmac: 64 zero bytes, salt: 64
//! random bytes, type: "HKDF_HMAC_SHA512"}` to the dict, pack it with sorted keys, compute
//! HMAC-SHA512 over the packing with a key from HKDF-SHA512(ikm = id_key ‖ enc_key ‖
//! enc_hmac_key, salt, info = "borg-metadata-authentication-" + context), and put the MAC into
//! `hmac`. Verifying (`unpack_and_verify_manifest` / `_archive`) works on the received bytes:
//! zero the first occurrence of the stored MAC and recompute.

use hmac::{Hmac, Mac};
use sha2::Sha512;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::key::{fill_random, Key, KeyType};
use crate::msgpack::{self, Value};

/// The one TAM suite borg 1.x knows.
pub const TAM_TYPE: &str = "HKDF_HMAC_SHA512";

/// What a TAM authenticates; it selects the HKDF `info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TamContext {
    /// The manifest (`b"manifest"`).
    Manifest,
    /// An archive's metadata (`b"archive"`).
    Archive,
}

impl TamContext {
    fn label(self) -> &'static [u8] {
        match self {
            TamContext::Manifest => b"manifest",
            TamContext::Archive => b"archive",
        }
    }
}

/// Why metadata did not verify. Messages are borg's.
#[derive(Debug, thiserror::Error)]
pub enum TamError {
    /// The data starts with `c1 c1 c1 c1`, borg's marker for a manifest from a future version.
    #[error(
        "Unsupported manifest envelope. A newer version is required to access this repository."
    )]
    UnsupportedManifest,
    /// The data is not one msgpack map.
    #[error("metadata is not valid msgpack: {0}")]
    Unpack(String),
    /// The manifest has no TAM although the key requires one (`TAMRequiredError`).
    #[error("Manifest is unauthenticated, but it is required for this repository.")]
    ManifestTamRequired,
    /// An archive has no TAM although one is required (`ArchiveTAMRequiredError`).
    #[error("Archive '{0}' is unauthenticated, but it is required for this repository.")]
    ArchiveTamRequired(String),
    /// The manifest TAM is malformed or its MAC is wrong (`TAMInvalid`).
    #[error("Data integrity error: Manifest authentication did not verify")]
    ManifestTamInvalid,
    /// An archive TAM is malformed or its MAC is wrong (`ArchiveTAMInvalid`).
    #[error("Data integrity error: Archive authentication did not verify")]
    ArchiveTamInvalid,
    /// The TAM names a suite other than HKDF_HMAC_SHA512 while one is required
    /// (`TAMUnsupportedSuiteError`).
    #[error("Could not verify manifest: Unsupported suite {0}; a newer version is needed.")]
    UnsupportedSuite(String),
    /// No random salt could be drawn.
    #[error("cannot get random bytes: {0}")]
    Random(String),
}

impl TamError {
    /// Borg 1.4's exit code for this error with `BORG_EXIT_CODES=modern` (legacy: always 2).
    pub fn exit_code(&self) -> i32 {
        match self {
            TamError::UnsupportedManifest => 27,
            TamError::Unpack(_) => 90,
            TamError::ManifestTamRequired => 98,
            TamError::ArchiveTamRequired(_) => 96,
            TamError::ManifestTamInvalid => 97,
            TamError::ArchiveTamInvalid => 95,
            TamError::UnsupportedSuite(_) => 99,
            TamError::Random(_) => 2,
        }
    }
}

/// How a TAM check came out when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TamStatus {
    /// A valid TAM; holds its salt (borg reuses an archive's salt when `check --repair`
    /// rewrites it).
    Verified {
        /// The 64-byte salt of the TAM.
        salt: Vec<u8>,
    },
    /// No TAM (or an unknown suite) and none was required.
    NotVerified,
}

impl TamStatus {
    /// Whether the TAM was present and valid.
    pub fn is_verified(&self) -> bool {
        matches!(self, TamStatus::Verified { .. })
    }
}

/// HKDF-SHA512 (RFC 5869) with a 64-byte output, the length borg uses (`hkdf_hmac_sha512`).
pub fn hkdf_sha512_64(ikm: &[u8], salt: &[u8], info: &[u8]) -> Zeroizing<[u8; 64]> {
    let mut extract = new_hmac512(salt);
    extract.update(ikm);
    let mut prk = Zeroizing::new([0u8; 64]);
    prk.copy_from_slice(&extract.finalize().into_bytes());
    // One 64-byte block of output: T(1) = HMAC(PRK, info ‖ 0x01).
    let mut expand = new_hmac512(&prk[..]);
    expand.update(info);
    expand.update(&[1u8]);
    let mut out = Zeroizing::new([0u8; 64]);
    out.copy_from_slice(&expand.finalize().into_bytes());
    out
}

fn new_hmac512(key: &[u8]) -> Hmac<Sha512> {
    match <Hmac<Sha512> as hmac::KeyInit>::new_from_slice(key) {
        Ok(h) => h,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    }
}

impl Key {
    /// The TAM key for `salt` and `context` (`_tam_key`). For a plaintext key it is the public
    /// value `salt ‖ context` (`PlaintextKey._tam_key`).
    pub fn tam_key(&self, salt: &[u8], context: TamContext) -> Zeroizing<Vec<u8>> {
        match self.material() {
            Some(m) if self.key_type() != KeyType::Plaintext => {
                let ikm =
                    Zeroizing::new([&m.id_key[..], &m.enc_key[..], &m.enc_hmac_key[..]].concat());
                let info = [&b"borg-metadata-authentication-"[..], context.label()].concat();
                Zeroizing::new(hkdf_sha512_64(&ikm, salt, &info).to_vec())
            }
            _ => Zeroizing::new([salt, context.label()].concat()),
        }
    }

    /// Packs `metadata` (a map) with a new TAM and a fresh random salt.
    pub fn pack_and_authenticate(
        &self,
        metadata: &Value,
        context: TamContext,
    ) -> Result<Vec<u8>, TamError> {
        let mut salt = [0u8; 64];
        fill_random(&mut salt).map_err(|e| TamError::Random(e.to_string()))?;
        Ok(self.pack_and_authenticate_with_salt(metadata, context, &salt))
    }

    /// Packs `metadata` with a TAM made with the given salt (for tests and for borg's
    /// salt reuse in `check --repair`). Any `tam` already in `metadata` is replaced.
    pub fn pack_and_authenticate_with_salt(
        &self,
        metadata: &Value,
        context: TamContext,
        salt: &[u8; 64],
    ) -> Vec<u8> {
        let mut dict = metadata.clone();
        let tam = |mac: &[u8]| {
            Value::map([
                ("hmac", Value::bytes(mac)),
                ("salt", Value::bytes(salt)),
                ("type", Value::str(TAM_TYPE)),
            ])
        };
        dict.insert("tam", tam(&[0u8; 64]));
        let mut packed = msgpack::encode(&dict);
        let mut h = new_hmac512(&self.tam_key(salt, context));
        h.update(&packed);
        let mac = h.finalize().into_bytes();
        // The MAC replaces the zeros in place: same length, so the same layout as a repack.
        if let Some(pos) = find(&packed, &[0u8; 64]) {
            packed[pos..pos + 64].copy_from_slice(&mac);
        }
        packed
    }

    /// Unpacks and verifies a manifest (`unpack_and_verify_manifest`). The returned map has
    /// the `tam` key removed. `force_tam_not_required` accepts a missing TAM even if the key
    /// requires one (borg's `check` does this to rebuild a manifest).
    pub fn unpack_and_verify_manifest(
        &self,
        data: &[u8],
        force_tam_not_required: bool,
    ) -> Result<(Value, TamStatus), TamError> {
        if data.starts_with(&[0xc1; 4]) {
            return Err(TamError::UnsupportedManifest);
        }
        if force_tam_not_required && self.tam_required() {
            log::warn!("Manifest authentication DISABLED.");
        }
        let required = self.tam_required() && !force_tam_not_required;
        self.unpack_and_verify(data, TamContext::Manifest, required)
    }

    /// Unpacks and verifies an archive's metadata (`unpack_and_verify_archive`), with the
    /// 1.2.5+/1.4 rules: ordinary reads pass `required = false` (a missing TAM is accepted, an
    /// invalid one is an error); `borg check` passes `required = self.tam_required()`.
    pub fn unpack_and_verify_archive(
        &self,
        data: &[u8],
        required: bool,
    ) -> Result<(Value, TamStatus), TamError> {
        self.unpack_and_verify(data, TamContext::Archive, required)
    }

    /// [`Key::unpack_and_verify_archive`] with `BORG_WORKAROUNDS=ignore_invalid_archive_tam`
    /// honoured: an invalid archive TAM then counts as a missing one.
    pub fn unpack_and_verify_archive_with(
        &self,
        data: &[u8],
        required: bool,
        ignore_invalid_tam: bool,
    ) -> Result<(Value, TamStatus), TamError> {
        match self.unpack_and_verify_archive(data, required) {
            Err(TamError::ArchiveTamInvalid) if ignore_invalid_tam => {
                let mut dict =
                    msgpack::decode(data).map_err(|e| TamError::Unpack(e.to_string()))?;
                dict.remove("tam");
                Ok((dict, TamStatus::NotVerified))
            }
            other => other,
        }
    }

    fn unpack_and_verify(
        &self,
        data: &[u8],
        context: TamContext,
        required: bool,
    ) -> Result<(Value, TamStatus), TamError> {
        let invalid = || match context {
            TamContext::Manifest => TamError::ManifestTamInvalid,
            TamContext::Archive => TamError::ArchiveTamInvalid,
        };
        let mut dict = msgpack::decode(data).map_err(|e| TamError::Unpack(e.to_string()))?;
        if dict.as_map().is_none() {
            return Err(TamError::Unpack("metadata is not a map".into()));
        }
        let Some(tam) = dict.remove("tam") else {
            if !required {
                return Ok((dict, TamStatus::NotVerified));
            }
            return Err(match context {
                TamContext::Manifest => TamError::ManifestTamRequired,
                TamContext::Archive => TamError::ArchiveTamRequired(
                    dict.get("name")
                        .and_then(Value::as_bytes)
                        .map_or_else(|| "<unknown>".into(), |b| String::from_utf8_lossy(b).into()),
                ),
            });
        };
        if tam.as_map().is_none() {
            return Err(invalid());
        }
        let suite = tam
            .get("type")
            .and_then(Value::as_bytes)
            .unwrap_or(b"<none>");
        if suite != TAM_TYPE.as_bytes() {
            if required {
                return Err(TamError::UnsupportedSuite(format!(
                    "'{}'",
                    String::from_utf8_lossy(suite)
                )));
            }
            return Ok((dict, TamStatus::NotVerified));
        }
        let (Some(mac), Some(salt)) = (
            tam.get("hmac").and_then(Value::as_bytes),
            tam.get("salt").and_then(Value::as_bytes),
        ) else {
            return Err(invalid());
        };
        if mac.len() != 64 {
            return Err(invalid());
        }
        let Some(pos) = find(data, mac) else {
            return Err(invalid());
        };
        let mut h = new_hmac512(&self.tam_key(salt, context));
        h.update(&data[..pos]);
        h.update(&[0u8; 64]);
        h.update(&data[pos + 64..]);
        let computed = h.finalize().into_bytes();
        if bool::from(computed.as_slice().ct_eq(mac)) {
            Ok((
                dict,
                TamStatus::Verified {
                    salt: salt.to_vec(),
                },
            ))
        } else {
            Err(invalid())
        }
    }
}

/// The first position of `needle` in `haystack` (Python's `bytes.index`).
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::super::key::{KeyMaterial, KeyType};
    use super::*;

    fn vector_key() -> Key {
        let mut enc_key = [0u8; 32];
        enc_key.copy_from_slice(&(0u8..32).collect::<Vec<_>>());
        Key::new(
            KeyType::Repokey,
            KeyMaterial {
                enc_key,
                enc_hmac_key: (32u8..64).collect(),
                id_key: (64u8..96).collect(),
                chunk_seed: 0,
                repository_id: [0; 32],
                tam_required: true,
            },
        )
        .unwrap()
    }

    fn salt() -> [u8; 64] {
        let mut s = [0u8; 64];
        for (i, b) in s.iter_mut().enumerate() {
            *b = i as u8;
        }
        s
    }

    fn manifest_value() -> Value {
        Value::map([
            ("version", Value::from(1)),
            ("archives", Value::Map(vec![])),
            ("timestamp", Value::str("2024-01-01T00:00:00.000000")),
            ("config", Value::Map(vec![])),
            (
                "item_keys",
                Value::Array(vec![Value::str("acl_access"), Value::str("path")]),
            ),
        ])
    }

    const MANIFEST_HEX: &str = "86a8617263686976657380a6636f6e66696780a96974656d5f6b65797392aa61636c5f616363657373a470617468a374616d83a4686d6163da0040ce02b22bb7700d2327abb5fb09a08d52acdf370b11eb166775ca30d23259c7d86c9a35b69a5f3203424b9cb96b6da1997504015db491d123197e835b3564436da473616c74da0040000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3fa474797065b0484b44465f484d41435f534841353132a974696d657374616d70ba323032342d30312d30315430303a30303a30302e303030303030a776657273696f6e01";
    const ARCHIVE_HEX: &str = "86a7636d646c696e6591a4626f7267a56974656d7390a46e616d65a26131a374616d83a4686d6163da004063ba1437e9c90318c9149a82979629c408993ad4338721902416dfa8d55c32af7a45f03c0fad27a8f2175fabf9812befb6ed1d76630e5c7239cf78ad8e44f1e9a473616c74da0040000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3fa474797065b0484b44465f484d41435f534841353132a474696d65ba323032342d30312d30315430303a30303a30302e303030303030a776657273696f6e01";

    #[test]
    fn tam_key_vectors() {
        let k = vector_key();
        assert_eq!(hex::encode(&*k.tam_key(&salt(), TamContext::Manifest)), "71999f1ee8cd5c5d69df732d522be15716fc58a5824c2f069117ddac6d563e04bcad45fc95556f56d2269f468bc723eafb6644827b255b12d6f3532e1ac77274");
        assert_eq!(hex::encode(&*k.tam_key(&salt(), TamContext::Archive)), "d9b0c4fc3431ccd23923ef9c8eddefcbaf0f7fcd1fb25a8a8d1b0000421e165a9c1dbd024261e513ca83ede84afd48703bc28ae07da2efb2fc296a6d938d73f0");
        assert_eq!(
            hex::encode(&*Key::plaintext().tam_key(&salt(), TamContext::Manifest)),
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f6d616e6966657374"
        );
    }

    #[test]
    fn manifest_and_archive_vectors() {
        let k = vector_key();
        let packed =
            k.pack_and_authenticate_with_salt(&manifest_value(), TamContext::Manifest, &salt());
        assert_eq!(hex::encode(&packed), MANIFEST_HEX);
        let (v, status) = k.unpack_and_verify_manifest(&packed, false).unwrap();
        assert!(status.is_verified());
        assert!(v.get("tam").is_none());
        assert_eq!(v.get("version").and_then(Value::as_u64), Some(1));

        let archive = Value::map([
            ("version", Value::from(1)),
            ("name", Value::str("a1")),
            ("items", Value::Array(vec![])),
            ("cmdline", Value::Array(vec![Value::str("borg")])),
            ("time", Value::str("2024-01-01T00:00:00.000000")),
        ]);
        let packed = k.pack_and_authenticate_with_salt(&archive, TamContext::Archive, &salt());
        assert_eq!(hex::encode(&packed), ARCHIVE_HEX);
        let (_, status) = k.unpack_and_verify_archive(&packed, true).unwrap();
        assert_eq!(
            status,
            TamStatus::Verified {
                salt: salt().to_vec()
            }
        );
        // The archive TAM does not verify as a manifest TAM (different HKDF info).
        assert!(matches!(
            k.unpack_and_verify_manifest(&packed, false),
            Err(TamError::ManifestTamInvalid)
        ));
    }

    #[test]
    fn random_salts_differ_and_verify() {
        let k = vector_key();
        let a = k
            .pack_and_authenticate(&manifest_value(), TamContext::Manifest)
            .unwrap();
        let b = k
            .pack_and_authenticate(&manifest_value(), TamContext::Manifest)
            .unwrap();
        assert_ne!(a, b);
        assert!(k
            .unpack_and_verify_manifest(&a, false)
            .unwrap()
            .1
            .is_verified());
        let p = Key::plaintext();
        let c = p
            .pack_and_authenticate(&manifest_value(), TamContext::Manifest)
            .unwrap();
        assert!(p
            .unpack_and_verify_manifest(&c, false)
            .unwrap()
            .1
            .is_verified());
    }

    #[test]
    fn broken_and_missing_tams() {
        let k = vector_key();
        let good = hex::decode(MANIFEST_HEX).unwrap();
        // A flipped bit anywhere outside the MAC.
        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 3] ^= 1;
        assert!(matches!(
            k.unpack_and_verify_manifest(&bad, false),
            Err(TamError::ManifestTamInvalid)
        ));
        // A flipped MAC bit.
        let mut bad = good.clone();
        bad[40] ^= 1;
        assert!(matches!(
            k.unpack_and_verify_manifest(&bad, false),
            Err(TamError::ManifestTamInvalid)
        ));
        assert_eq!(
            k.unpack_and_verify_manifest(&bad, false)
                .unwrap_err()
                .exit_code(),
            97
        );
        // No TAM at all.
        let bare = msgpack::encode(&manifest_value());
        assert!(matches!(
            k.unpack_and_verify_manifest(&bare, false),
            Err(TamError::ManifestTamRequired)
        ));
        assert_eq!(
            k.unpack_and_verify_manifest(&bare, true).unwrap().1,
            TamStatus::NotVerified
        );
        assert_eq!(
            Key::plaintext()
                .unpack_and_verify_manifest(&bare, false)
                .unwrap()
                .1,
            TamStatus::NotVerified
        );
        // Archive rules: missing is fine for reads, an error for check.
        let archive = Value::map([("name", Value::str("a1")), ("version", Value::from(1))]);
        let bare = msgpack::encode(&archive);
        assert_eq!(
            k.unpack_and_verify_archive(&bare, false).unwrap().1,
            TamStatus::NotVerified
        );
        match k.unpack_and_verify_archive(&bare, true) {
            Err(TamError::ArchiveTamRequired(name)) => assert_eq!(name, "a1"),
            other => panic!("{other:?}"),
        }
        // An invalid archive TAM fails even when not required.
        let mut packed = k.pack_and_authenticate_with_salt(&archive, TamContext::Archive, &salt());
        let n = packed.len();
        packed[n - 1] ^= 2;
        assert!(matches!(
            k.unpack_and_verify_archive(&packed, false),
            Err(TamError::ArchiveTamInvalid)
        ));
        let (v, status) = k
            .unpack_and_verify_archive_with(&packed, true, true)
            .unwrap();
        assert_eq!(status, TamStatus::NotVerified);
        assert!(v.get("tam").is_none());
        // Future manifest, garbage, non-map, wrong suite, tam not a map, short hmac.
        assert!(matches!(
            k.unpack_and_verify_manifest(&[0xc1, 0xc1, 0xc1, 0xc1, 0], false),
            Err(TamError::UnsupportedManifest)
        ));
        assert!(matches!(
            k.unpack_and_verify_manifest(&[0x92, 0x01], false),
            Err(TamError::Unpack(_))
        ));
        assert!(matches!(
            k.unpack_and_verify_manifest(&[0x01], false),
            Err(TamError::Unpack(_))
        ));
        let mut m = manifest_value();
        m.insert("tam", Value::map([("type", Value::str("OTHER"))]));
        assert!(matches!(
            k.unpack_and_verify_manifest(&msgpack::encode(&m), false),
            Err(TamError::UnsupportedSuite(_))
        ));
        assert!(!k
            .unpack_and_verify_manifest(&msgpack::encode(&m), true)
            .unwrap()
            .1
            .is_verified());
        m.insert("tam", Value::from(5));
        assert!(matches!(
            k.unpack_and_verify_manifest(&msgpack::encode(&m), false),
            Err(TamError::ManifestTamInvalid)
        ));
        m.insert(
            "tam",
            Value::map([
                ("type", Value::str(TAM_TYPE)),
                ("hmac", Value::bytes(&[1; 10])),
                ("salt", Value::bytes(&[1; 64])),
            ]),
        );
        assert!(matches!(
            k.unpack_and_verify_manifest(&msgpack::encode(&m), false),
            Err(TamError::ManifestTamInvalid)
        ));
    }

    #[test]
    fn hkdf_rfc5869_sha512_shape() {
        // Independent check: HKDF-SHA512 with empty salt equals HMAC over a zero-length key.
        let a = hkdf_sha512_64(b"ikm", b"", b"info");
        let b = hkdf_sha512_64(b"ikm", &[0u8; 128], b"info");
        assert_eq!(*a, *b, "HMAC pads short keys with zeros");
    }
}
