//! A small, self-contained [`ChunkSealer`] for borg's AES-CTR modes, used by the benchmarks and
//! tests of the pipeline until the crypto module's key types implement the trait themselves.
//! It follows crypto.md §1.3-§1.5 and is checked against the §1.10 vectors.

use aes::Aes256;
use blake2::{Blake2b256, Digest};
use ctr::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroize;

use super::ChunkSealer;

type HmacSha256 = Hmac<Sha256>;
type Aes256Ctr = ctr::Ctr128BE<Aes256>;

/// Which hash family a key uses for chunk ids and envelope MACs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashFamily {
    /// `repokey`/`keyfile`: HMAC-SHA256 ids and MACs.
    HmacSha256,
    /// `repokey-blake2`/`keyfile-blake2`: BLAKE2b-256 over key ‖ data (not keyed BLAKE2b).
    Blake2b,
}

/// Key material of one AES-CTR borg key, enough to compute ids and seal envelopes.
pub struct ReferenceSealer {
    type_byte: u8,
    family: HashFamily,
    enc_key: [u8; 32],
    /// 32 bytes used for HMAC, all 128 for BLAKE2b.
    enc_hmac_key: Vec<u8>,
    id_key: Vec<u8>,
}

impl Drop for ReferenceSealer {
    fn drop(&mut self) {
        self.enc_key.zeroize();
        self.enc_hmac_key.zeroize();
        self.id_key.zeroize();
    }
}

impl ReferenceSealer {
    /// A `repokey` (type byte `0x03`) key: 32-byte `enc_key`, `enc_hmac_key` and `id_key`.
    pub fn repokey(enc_key: [u8; 32], enc_hmac_key: [u8; 32], id_key: [u8; 32]) -> Self {
        ReferenceSealer {
            type_byte: 0x03,
            family: HashFamily::HmacSha256,
            enc_key,
            enc_hmac_key: enc_hmac_key.to_vec(),
            id_key: id_key.to_vec(),
        }
    }

    /// A `repokey-blake2` (type byte `0x05`) key. `enc_hmac_key` and `id_key` are borg's
    /// 128-byte values (64 random bytes, 64 zero bytes).
    pub fn repokey_blake2(enc_key: [u8; 32], enc_hmac_key: [u8; 128], id_key: [u8; 128]) -> Self {
        ReferenceSealer {
            type_byte: 0x05,
            family: HashFamily::Blake2b,
            enc_key,
            enc_hmac_key: enc_hmac_key.to_vec(),
            id_key: id_key.to_vec(),
        }
    }

    /// The same key material under another type byte (e.g. `0x00` keyfile, `0x04`
    /// keyfile-blake2); only the first envelope byte changes.
    pub fn with_type_byte(mut self, type_byte: u8) -> Self {
        self.type_byte = type_byte;
        self
    }

    fn mac(&self, data: &[u8]) -> [u8; 32] {
        match self.family {
            HashFamily::HmacSha256 => hmac_sha256(&self.enc_hmac_key, data),
            HashFamily::Blake2b => blake2b_256(&self.enc_hmac_key, data),
        }
    }
}

/// HMAC-SHA256.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

/// borg's `blake2b_256(key, data)`: unkeyed BLAKE2b-256 over `key ‖ data`.
pub fn blake2b_256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut h = Blake2b256::new();
    h.update(key);
    h.update(data);
    h.finalize().into()
}

/// AES-256-CTR with borg's counter block `0^8 ‖ BE64(iv)`, in place.
pub fn aes256_ctr(key: &[u8; 32], iv: u64, buf: &mut [u8]) {
    let mut block = [0u8; 16];
    block[8..].copy_from_slice(&iv.to_be_bytes());
    let mut c = Aes256Ctr::new(key.into(), (&block).into());
    c.apply_keystream(buf);
}

impl ChunkSealer for ReferenceSealer {
    fn id_hash(&self, plaintext: &[u8]) -> [u8; 32] {
        match self.family {
            HashFamily::HmacSha256 => hmac_sha256(&self.id_key, plaintext),
            HashFamily::Blake2b => blake2b_256(&self.id_key, plaintext),
        }
    }

    fn iv_blocks(&self, payload_len: usize) -> u64 {
        payload_len.div_ceil(16) as u64
    }

    fn seal(&self, payload: &[u8], iv: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(41 + payload.len());
        out.push(self.type_byte);
        out.extend_from_slice(&[0u8; 32]);
        out.extend_from_slice(&iv.to_be_bytes());
        out.extend_from_slice(payload);
        aes256_ctr(&self.enc_key, iv, &mut out[41..]);
        // The MAC covers IV ‖ ciphertext, not the type byte (AES256_CTR_BASE.encrypt).
        let mac = self.mac(&out[33..]);
        out[1..33].copy_from_slice(&mac);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq<const N: usize>(start: u8) -> [u8; N] {
        std::array::from_fn(|i| start.wrapping_add(i as u8))
    }

    fn blake_key(start: u8) -> [u8; 128] {
        let mut k = [0u8; 128];
        k[..64].copy_from_slice(&seq::<64>(start));
        k
    }

    #[test]
    fn crypto_md_vectors() {
        let p = b"hello world".repeat(10);
        let payload = hex::decode("0100bf68656c6c6f20776f726c640b004b50776f726c64").unwrap();
        let repokey = ReferenceSealer::repokey(seq(0x00), seq(0x20), seq(0x40));
        assert_eq!(
            hex::encode(repokey.id_hash(&p)),
            "3c87d6e7490529a44cd348d11e02bd3c34a590c0661fde8378c42d27f2cfe01e"
        );
        assert_eq!(
            hex::encode(repokey.seal(&payload, 0x1234)),
            "0332b688b4a257c2c3ed44a2664212b21fc1da0c2813af073e96671709eac8b1a20000000000001234e63062d2e5fe28cab2e6e03e80f344ed7a99efff3c390e"
        );
        assert_eq!(0x1234 + repokey.iv_blocks(payload.len()), 4662);
        let keyfile = ReferenceSealer::repokey(seq(0x00), seq(0x20), seq(0x40)).with_type_byte(0);
        assert_eq!(keyfile.seal(&payload, 0x1234)[0], 0);
        let b2 = ReferenceSealer::repokey_blake2(seq(0x00), blake_key(0x64), blake_key(0xa4));
        assert_eq!(
            hex::encode(b2.id_hash(&p)),
            "c68f931ff3dcbd7d57b1242d460e3cf11bc4a3ceb41d2c2d21cd6e16deb38548"
        );
        assert_eq!(
            hex::encode(b2.seal(&payload, 0x1234)),
            "05717c0de8e7ff8a3359ccf6be5320f32811b0a745583ddc6602b436600dfa3eb80000000000001234e63062d2e5fe28cab2e6e03e80f344ed7a99efff3c390e"
        );
    }
}
