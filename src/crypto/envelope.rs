//! Object envelopes and chunk ids: the hot path.
//!
//! Every object in a borg 1.x repository is `TYPE (1) ‖ payload` for the unencrypted types and
//! `TYPE (1) ‖ MAC (32) ‖ IV (8, big-endian) ‖ AES-256-CTR(payload)` for the encrypted ones
//! (`AESKeyBase`, `low_level.pyx AES256_CTR_BASE`). The payload is the compressor's output. The
//! MAC covers `IV ‖ ciphertext` (not the type byte): HMAC-SHA256 with `enc_hmac_key`, or for the
//! BLAKE2b types an unkeyed BLAKE2b-256 over `enc_hmac_key ‖ IV ‖ ciphertext`. The AES counter
//! block is `0^8 ‖ BE64(IV)`, incremented as one 128-bit big-endian number.
//!
//! Encryption and decryption work in slices of 16 KiB, ciphering and MACing each slice
//! while it is in cache, and never touch any counter: the caller passes the IV (see
//! [`crate::crypto::nonces`] for where it comes from).

use aes::cipher::{InnerIvInit, StreamCipher, StreamCipherCoreWrapper};
use blake2::Digest;
use hmac::Mac;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::key::{IdState, Key, MacState};
use crate::repository::ObjectId;

/// Bytes an encrypted envelope adds: type, MAC, IV (`AESKeyBase.PAYLOAD_OVERHEAD`).
pub const ENCRYPTED_OVERHEAD: usize = 1 + 32 + 8;

/// How many bytes are ciphered and MACed together before moving on, so that each slice is
/// still in the L1/L2 cache when the second pass reads it.
const SLICE: usize = 16 * 1024;

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

/// Why an envelope does not open. The messages follow borg's `IntegrityError` texts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The type byte is not this key's, or the envelope is too short to hold its header.
    #[error("Data integrity error: Chunk {0}: Invalid encryption envelope")]
    InvalidEnvelope(String),
    /// The type byte of an unencrypted (authenticated or `none`) envelope is not this key's.
    #[error("Data integrity error: Chunk {0}: Invalid envelope")]
    InvalidPlainEnvelope(String),
    /// The MAC does not match: wrong key, or the object was changed.
    #[error("Data integrity error: Chunk {0}: Could not decrypt [MAC Authentication failed]")]
    MacFailed(String),
    /// The plaintext does not hash to the id it was stored under.
    #[error("Data integrity error: Chunk {0}: id verification failed")]
    IdMismatch(String),
}

impl EnvelopeError {
    /// Borg 1.4's exit code for this error with `BORG_EXIT_CODES=modern` (legacy: always 2).
    pub fn exit_code(&self) -> i32 {
        // All of them are borg IntegrityErrors.
        90
    }
}

/// The number of AES blocks (and so counter values) a payload of `len` bytes uses
/// (`num_cipher_blocks`).
pub fn num_cipher_blocks(len: usize) -> u64 {
    (len as u64).div_ceil(16)
}

/// The IV stored in an encrypted envelope, if the envelope is long enough to hold one.
pub fn envelope_iv(envelope: &[u8]) -> Option<u64> {
    let iv: [u8; 8] = envelope.get(33..41)?.try_into().ok()?;
    Some(u64::from_be_bytes(iv))
}

fn id_text(id: Option<&ObjectId>) -> String {
    id.map_or_else(|| "(unknown)".to_string(), hex::encode)
}

impl Key {
    /// The chunk id of `data` (uncompressed plaintext): SHA-256, HMAC-SHA256 with `id_key`, or
    /// borg's BLAKE2b-256 over `id_key ‖ data`.
    pub fn id_hash(&self, data: &[u8]) -> ObjectId {
        match &self.id {
            IdState::Sha256 => Sha256::digest(data).into(),
            IdState::Hmac(h) => h.clone().chain_update(data).finalize().into_bytes().into(),
            IdState::Blake2(b) => b.clone().chain_update(data).finalize().into(),
        }
    }

    /// Checks that `plaintext` hashes to `id`, in constant time (`assert_id`).
    pub fn assert_id(&self, id: &ObjectId, plaintext: &[u8]) -> Result<(), EnvelopeError> {
        if bool::from(self.id_hash(plaintext).ct_eq(id)) {
            Ok(())
        } else {
            Err(EnvelopeError::IdMismatch(hex::encode(id)))
        }
    }

    /// Seals `payload` (compressor output) into an envelope using counter value `iv`, which
    /// the caller must own (see [`crate::crypto::nonces::NonceManager::allocate`]); the
    /// envelope uses `num_cipher_blocks(payload.len())` counter values from `iv` on.
    /// Unencrypted keys ignore `iv`.
    pub fn encrypt(&self, iv: u64, payload: &[u8]) -> Vec<u8> {
        let overhead = self.envelope_overhead();
        let mut buf = Vec::with_capacity(overhead + payload.len());
        buf.resize(overhead, 0);
        buf.extend_from_slice(payload);
        self.encrypt_in_place(iv, &mut buf);
        buf
    }

    /// Like [`Key::encrypt`], without copying: `buf` holds [`Key::envelope_overhead`] bytes of
    /// room followed by the payload, and becomes the envelope.
    ///
    /// # Panics
    /// If `buf` is shorter than the overhead (a programming error, not a data error).
    pub fn encrypt_in_place(&self, iv: u64, buf: &mut [u8]) {
        let overhead = self.envelope_overhead();
        assert!(buf.len() >= overhead, "no room for the envelope header");
        buf[0] = self.key_type().type_byte();
        let (Some(aes), Some(mac)) = (&self.aes, &self.mac) else {
            return;
        };
        let iv_bytes = iv.to_be_bytes();
        buf[33..41].copy_from_slice(&iv_bytes);
        let mut ctr = new_ctr(aes, iv);
        let mut tag = [0u8; 32];
        match mac {
            MacState::Hmac(h) => {
                let mut h = h.clone();
                h.update(&iv_bytes);
                for slice in buf[41..].chunks_mut(SLICE) {
                    ctr.apply_keystream(slice);
                    h.update(slice);
                }
                tag.copy_from_slice(&h.finalize().into_bytes());
            }
            MacState::Blake2(b) => {
                let mut b = b.clone();
                b.update(iv_bytes);
                for slice in buf[41..].chunks_mut(SLICE) {
                    ctr.apply_keystream(slice);
                    b.update(&*slice);
                }
                tag.copy_from_slice(&b.finalize());
            }
        }
        buf[1..33].copy_from_slice(&tag);
    }

    /// Opens an envelope and returns its payload (still compressed). Checks the type byte and,
    /// for encrypted keys, the MAC (in constant time) before any plaintext is returned. `id`
    /// only names the object in errors; check it with [`Key::assert_id`] after decompressing.
    ///
    /// Decrypting never changes any encryption counter (unlike borg, spec crypto.md §1.8).
    pub fn decrypt(
        &self,
        id: Option<&ObjectId>,
        envelope: &[u8],
    ) -> Result<Vec<u8>, EnvelopeError> {
        let type_ok = envelope
            .first()
            .is_some_and(|t| self.key_type().accepts_envelope_type(*t));
        if !type_ok {
            // Borg words this differently for the unencrypted key classes.
            return Err(if self.is_encrypted() {
                EnvelopeError::InvalidEnvelope(id_text(id))
            } else {
                EnvelopeError::InvalidPlainEnvelope(id_text(id))
            });
        }
        let (Some(aes), Some(mac)) = (&self.aes, &self.mac) else {
            return Ok(envelope[1..].to_vec());
        };
        if envelope.len() < ENCRYPTED_OVERHEAD {
            return Err(EnvelopeError::InvalidEnvelope(id_text(id)));
        }
        let iv = envelope_iv(envelope).unwrap_or_default();
        let ciphertext = &envelope[ENCRYPTED_OVERHEAD..];
        let mut out = vec![0u8; ciphertext.len()];
        let mut ctr = new_ctr(aes, iv);
        // MAC and decrypt each slice together; the plaintext is dropped unless the MAC holds.
        let tag: [u8; 32] = match mac {
            MacState::Hmac(h) => {
                let mut h = h.clone();
                h.update(&envelope[33..41]);
                for (c, o) in ciphertext.chunks(SLICE).zip(out.chunks_mut(SLICE)) {
                    h.update(c);
                    // `c` and `o` have equal lengths by construction.
                    ctr.apply_keystream_b2b(c, o);
                }
                h.finalize().into_bytes().into()
            }
            MacState::Blake2(b) => {
                let mut b = b.clone();
                b.update(&envelope[33..41]);
                for (c, o) in ciphertext.chunks(SLICE).zip(out.chunks_mut(SLICE)) {
                    b.update(c);
                    ctr.apply_keystream_b2b(c, o);
                }
                b.finalize().into()
            }
        };
        if bool::from(tag.ct_eq(&envelope[1..33])) {
            Ok(out)
        } else {
            zeroize::Zeroize::zeroize(&mut out);
            Err(EnvelopeError::MacFailed(id_text(id)))
        }
    }

    /// Opens an envelope and checks the decompressed plaintext against `id`, the whole of
    /// borg's `key.decrypt(id, data)`. `decompress` turns the payload into plaintext.
    pub fn decrypt_and_verify<E>(
        &self,
        id: &ObjectId,
        envelope: &[u8],
        decompress: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>,
    ) -> Result<Vec<u8>, DecryptError<E>> {
        let payload = self
            .decrypt(Some(id), envelope)
            .map_err(DecryptError::Envelope)?;
        let plaintext = decompress(&payload).map_err(DecryptError::Decompress)?;
        self.assert_id(id, &plaintext)
            .map_err(DecryptError::Envelope)?;
        Ok(plaintext)
    }
}

/// An error of [`Key::decrypt_and_verify`]: the envelope or the decompressor.
#[derive(Debug, thiserror::Error)]
pub enum DecryptError<E> {
    /// The envelope did not open or the id did not match.
    #[error(transparent)]
    Envelope(EnvelopeError),
    /// The payload did not decompress.
    #[error("decompression failed: {0}")]
    Decompress(E),
}

fn new_ctr(aes: &aes::Aes256, iv: u64) -> Aes256Ctr {
    let mut block = [0u8; 16];
    block[8..].copy_from_slice(&iv.to_be_bytes());
    StreamCipherCoreWrapper::from_core(ctr::CtrCore::inner_iv_init(aes.clone(), &block.into()))
}

/// The body of the `envelope_decrypt` fuzz target, also replayed over its corpus by
/// `cargo test`: for every key type, opening arbitrary bytes returns a payload or an error,
/// never panics, and an envelope that opens re-seals to the same bytes.
#[doc(hidden)]
pub fn fuzz_decrypt(data: &[u8]) {
    use super::key::{KeyMaterial, KeyType};
    // The keys of crypto_vectors.py, so the vector envelopes in the corpus open.
    let mut seed = [0u8; 100];
    for (i, b) in seed.iter_mut().enumerate() {
        *b = i as u8;
    }
    for key_type in KeyType::INIT_MODES {
        let mut material = KeyMaterial::from_random_data(&seed, &[0; 32]);
        if key_type.is_blake2() {
            material.enc_hmac_key = (100u8..164).chain(std::iter::repeat(0).take(64)).collect();
            material.id_key = (164u8..228).chain(std::iter::repeat(0).take(64)).collect();
        }
        let key = Key::new(key_type, material).expect("valid test key");
        if let Ok(payload) = key.decrypt(None, data) {
            let iv = envelope_iv(data).unwrap_or(0);
            if key.is_encrypted() {
                let again = key.encrypt(iv, &payload);
                assert_eq!(again[1..], data[1..], "re-sealed envelope differs");
            } else {
                assert_eq!(payload, data[1..]);
            }
        }
        let _ = key.id_hash(data);
    }
}

#[cfg(test)]
mod tests {
    use super::super::key::{KeyMaterial, KeyType};
    use super::*;

    const PLAIN: &[u8] = b"hello worldhello worldhello worldhello worldhello worldhello worldhello worldhello worldhello worldhello world";
    const LZ4: &str = "0100bf68656c6c6f20776f726c640b004b50776f726c64";

    fn range(a: u8, b: u8) -> Vec<u8> {
        (a..b).collect()
    }

    /// The keys of `crypto_vectors.py`.
    pub(crate) fn vector_key(key_type: KeyType) -> Key {
        let mut enc_key = [0u8; 32];
        enc_key.copy_from_slice(&range(0, 32));
        let (enc_hmac_key, id_key) = if key_type.is_blake2() {
            (
                [range(100, 164), vec![0; 64]].concat(),
                [range(164, 228), vec![0; 64]].concat(),
            )
        } else {
            (range(32, 64), range(64, 96))
        };
        let m = KeyMaterial {
            enc_key,
            enc_hmac_key,
            id_key,
            chunk_seed: 0,
            repository_id: [0; 32],
            tam_required: true,
        };
        Key::new(key_type, m).unwrap()
    }

    #[test]
    fn plaintext_is_110_bytes() {
        assert_eq!(PLAIN, "hello world".repeat(10).as_bytes());
    }

    #[test]
    fn id_vectors() {
        assert_eq!(
            hex::encode(vector_key(KeyType::Repokey).id_hash(PLAIN)),
            "3c87d6e7490529a44cd348d11e02bd3c34a590c0661fde8378c42d27f2cfe01e"
        );
        assert_eq!(
            hex::encode(vector_key(KeyType::Authenticated).id_hash(PLAIN)),
            "3c87d6e7490529a44cd348d11e02bd3c34a590c0661fde8378c42d27f2cfe01e"
        );
        for t in [
            KeyType::RepokeyBlake2,
            KeyType::KeyfileBlake2,
            KeyType::AuthenticatedBlake2,
        ] {
            assert_eq!(
                hex::encode(vector_key(t).id_hash(PLAIN)),
                "c68f931ff3dcbd7d57b1242d460e3cf11bc4a3ceb41d2c2d21cd6e16deb38548"
            );
        }
        assert_eq!(
            hex::encode(Key::plaintext().id_hash(PLAIN)),
            "98f8892ddbfc92986d180809f0605787c75a5881583e8126746d8271e36cd782"
        );
    }

    #[test]
    fn envelope_vectors() {
        let payload = hex::decode(LZ4).unwrap();
        let body = "32b688b4a257c2c3ed44a2664212b21fc1da0c2813af073e96671709eac8b1a20000000000001234e63062d2e5fe28cab2e6e03e80f344ed7a99efff3c390e";
        let cases = [
            (KeyType::Repokey, format!("03{body}")),
            (KeyType::Keyfile, format!("00{body}")),
            (KeyType::RepokeyBlake2, "05717c0de8e7ff8a3359ccf6be5320f32811b0a745583ddc6602b436600dfa3eb80000000000001234e63062d2e5fe28cab2e6e03e80f344ed7a99efff3c390e".to_string()),
        ];
        for (t, expected) in cases {
            let key = vector_key(t);
            let env = key.encrypt(0x1234, &payload);
            assert_eq!(hex::encode(&env), expected, "{t:?}");
            assert_eq!(key.decrypt(None, &env).unwrap(), payload);
            // next_iv = 4662 in borg: 0x1234 + 2 blocks.
            assert_eq!(0x1234 + num_cipher_blocks(payload.len()), 4662);
        }
    }

    #[test]
    fn unencrypted_envelopes() {
        for t in [
            KeyType::Authenticated,
            KeyType::AuthenticatedBlake2,
            KeyType::Plaintext,
        ] {
            let key = if t == KeyType::Plaintext {
                Key::plaintext()
            } else {
                vector_key(t)
            };
            let env = key.encrypt(99, b"\x00\x00abc");
            assert_eq!(env, [&[t.type_byte()][..], b"\x00\x00abc"].concat());
            assert_eq!(key.decrypt(None, &env).unwrap(), b"\x00\x00abc");
            let mut other = env.clone();
            other[0] = 0x03;
            assert_eq!(
                key.decrypt(None, &other),
                Err(EnvelopeError::InvalidPlainEnvelope("(unknown)".into()))
            );
        }
    }

    #[test]
    fn bad_envelopes_are_typed_errors() {
        let key = vector_key(KeyType::Repokey);
        let env = key.encrypt(7, &[1u8; 100]);
        let id = [0xabu8; 32];
        // Wrong type byte.
        let mut e = env.clone();
        e[0] = 0x05;
        assert_eq!(
            key.decrypt(Some(&id), &e),
            Err(EnvelopeError::InvalidEnvelope(hex::encode(id)))
        );
        // A legacy 0x01 envelope opens with a repokey.
        e[0] = 0x01;
        assert!(key.decrypt(None, &e).is_ok());
        // Flipped ciphertext, MAC or IV bit.
        for pos in [1, 35, 60] {
            let mut e = env.clone();
            e[pos] ^= 1;
            assert!(matches!(
                key.decrypt(None, &e),
                Err(EnvelopeError::MacFailed(_))
            ));
        }
        // Truncated.
        for n in [0, 1, 40] {
            assert!(matches!(
                key.decrypt(None, &env[..n]),
                Err(EnvelopeError::InvalidEnvelope(_))
            ));
        }
        // An empty payload is a valid envelope.
        let empty = key.encrypt(3, &[]);
        assert_eq!(empty.len(), 41);
        assert_eq!(key.decrypt(None, &empty).unwrap(), b"");
        // Id check.
        assert!(key.assert_id(&key.id_hash(b"x"), b"x").is_ok());
        assert_eq!(
            key.assert_id(&id, b"x"),
            Err(EnvelopeError::IdMismatch(hex::encode(id)))
        );
        assert_eq!(
            EnvelopeError::MacFailed("(unknown)".into()).to_string(),
            "Data integrity error: Chunk (unknown): Could not decrypt [MAC Authentication failed]"
        );
    }

    #[test]
    fn large_payloads_match_one_shot_computation() {
        // Crosses slice boundaries and an unaligned tail; compare with a one-pass reference.
        let data: Vec<u8> = (0..100_003u32).map(|i| (i * 7 + 3) as u8).collect();
        for t in [KeyType::Repokey, KeyType::RepokeyBlake2] {
            let key = vector_key(t);
            let iv = u64::MAX - 10; // the 128-bit counter carries past 2^64
            let env = key.encrypt(iv, &data);
            let mut ct = data.clone();
            let mut c = new_ctr(key.aes.as_ref().unwrap(), iv);
            c.apply_keystream(&mut ct);
            assert_eq!(&env[41..], &ct[..]);
            let mac: Vec<u8> = match key.mac.as_ref().unwrap() {
                MacState::Hmac(h) => h
                    .clone()
                    .chain_update(iv.to_be_bytes())
                    .chain_update(&ct)
                    .finalize()
                    .into_bytes()
                    .to_vec(),
                MacState::Blake2(b) => b
                    .clone()
                    .chain_update(iv.to_be_bytes())
                    .chain_update(&ct)
                    .finalize()
                    .to_vec(),
            };
            assert_eq!(&env[1..33], &mac[..]);
            assert_eq!(key.decrypt(None, &env).unwrap(), data);
            let mut in_place = vec![0u8; 41];
            in_place.extend_from_slice(&data);
            key.encrypt_in_place(iv, &mut in_place);
            assert_eq!(in_place, env);
        }
    }

    #[test]
    fn decrypt_and_verify_checks_the_id() {
        let key = vector_key(KeyType::Keyfile);
        let plain = b"some chunk".to_vec();
        let id = key.id_hash(&plain);
        let env = key.encrypt(1, &plain);
        let ok: Result<_, DecryptError<()>> = key.decrypt_and_verify(&id, &env, |p| Ok(p.to_vec()));
        assert_eq!(ok.unwrap(), plain);
        let bad: Result<_, DecryptError<()>> =
            key.decrypt_and_verify(&[0; 32], &env, |p| Ok(p.to_vec()));
        assert!(matches!(
            bad,
            Err(DecryptError::Envelope(EnvelopeError::IdMismatch(_)))
        ));
    }
}
