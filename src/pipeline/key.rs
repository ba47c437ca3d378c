//! The production sealer: borg's real [`Key`] behind the hot path's [`ChunkSealer`] trait.

use super::ChunkSealer;
use crate::crypto::envelope::num_cipher_blocks;
use crate::crypto::Key;

impl ChunkSealer for Key {
    fn id_hash(&self, plaintext: &[u8]) -> [u8; 32] {
        Key::id_hash(self, plaintext)
    }

    fn seal(&self, payload: &[u8], iv: u64) -> Vec<u8> {
        self.encrypt(iv, payload)
    }

    fn iv_blocks(&self, payload_len: usize) -> u64 {
        if self.is_encrypted() {
            num_cipher_blocks(payload_len)
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KeyType;

    #[test]
    fn key_sealer_matches_key_encrypt() {
        let key = Key::generate(KeyType::Repokey, &[7; 32]).unwrap();
        let payload = vec![5u8; 100];
        assert_eq!(
            ChunkSealer::seal(&key, &payload, 9),
            key.encrypt(9, &payload)
        );
        assert_eq!(key.iv_blocks(100), 7);
        assert_eq!(Key::plaintext().iv_blocks(100), 0);
        assert_eq!(ChunkSealer::id_hash(&key, b"x"), Key::id_hash(&key, b"x"));
    }
}
