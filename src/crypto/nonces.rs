//! The AES-CTR counter and its reservations (`crypto/nonces.py`, `NonceManager`).
//!
//! Counter values must never repeat under one key, across processes, crashes and clients. Borg
//! reserves them in blocks of 2^28 before use, writing the end of the reservation both to the
//! repository (`get_free_nonce`/`commit_nonce_reservation`) and to the client's security dir
//! (`<security dir>/<repo id>/nonce`, 16 hex digits). rborg does the same with the same files,
//! so rborg and Python borg on one host never hand out the same counter value.
//!
//! Unlike borg (spec crypto.md §1.8), the counter here is touched only by encryption:
//! [`NonceManager`] is the one source of counter values in a process and decryption never sees
//! it. A pipeline calls [`NonceManager::allocate`] in order, then encrypts on any thread with
//! [`crate::crypto::Key::encrypt`].

use std::io::Write;
use std::path::{Path, PathBuf};

use super::envelope::{envelope_iv, num_cipher_blocks};
use super::key::Key;
use crate::repository::{Repository, RepositoryError};

/// Counter values reserved per reservation (`NONCE_SPACE_RESERVATION`).
pub const NONCE_SPACE_RESERVATION: u64 = 1 << 28;

/// The largest counter value (`MAX_REPRESENTABLE_NONCE`).
pub const MAX_REPRESENTABLE_NONCE: u64 = u64::MAX;

/// Why no counter value could be reserved.
#[derive(Debug, thiserror::Error)]
pub enum NonceError {
    /// The repository refused or failed the reservation.
    #[error("nonce reservation in the repository failed: {0}")]
    Repository(#[from] RepositoryError),
    /// The local nonce file changed under us (another process reserved at the same time).
    #[error("nonce space reservation with mismatched previous state")]
    Mismatch,
    /// The local nonce file does not hold 16 hex digits (borg 1.4's check).
    #[error("Local security dir has an invalid nonce file: {0}")]
    InvalidLocalFile(String),
    /// Reading or writing the local nonce file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The 64-bit counter space is used up.
    #[error("the AES-CTR nonce space of this key is exhausted")]
    Exhausted,
}

impl NonceError {
    /// Borg 1.4's exit code for this error with `BORG_EXIT_CODES=modern` (legacy: always 2).
    pub fn exit_code(&self) -> i32 {
        2
    }
}

/// The encryption counter of one key in one process, with its reservation.
#[derive(Debug)]
pub struct NonceManager {
    next_iv: u64,
    end_of_reservation: Option<u64>,
    manifest_nonce: u64,
    local_file: Option<PathBuf>,
    repo_supports_nonces: bool,
}

impl NonceManager {
    /// Starts at `manifest_nonce` (see [`manifest_nonce`]); `local_file` is the security-dir
    /// `nonce` file, or `None` to keep no local state.
    pub fn new(manifest_nonce: u64, local_file: Option<PathBuf>) -> NonceManager {
        NonceManager {
            next_iv: manifest_nonce,
            end_of_reservation: None,
            manifest_nonce,
            local_file,
            repo_supports_nonces: true,
        }
    }

    /// The counter value the next allocation starts from (if the reservation allows).
    pub fn next_iv(&self) -> u64 {
        self.next_iv
    }

    /// The end (exclusive) of the current reservation, if there is one.
    pub fn end_of_reservation(&self) -> Option<u64> {
        self.end_of_reservation
    }

    /// Takes `blocks` counter values for one envelope and returns the first, reserving more
    /// from the repository and the security dir first when the reservation is used up. This is
    /// borg's `ensure_reservation(cipher.next_iv(), blocks)` followed by the cipher advancing.
    pub fn allocate(
        &mut self,
        repository: &mut dyn Repository,
        blocks: u64,
    ) -> Result<u64, NonceError> {
        let iv = self.ensure_reservation(repository, self.next_iv, blocks)?;
        self.next_iv = iv.checked_add(blocks).ok_or(NonceError::Exhausted)?;
        Ok(iv)
    }

    /// Takes `blocks` counter values only if the current reservation covers them, without any
    /// I/O. `None` means call [`NonceManager::allocate`].
    pub fn allocate_reserved(&mut self, blocks: u64) -> Option<u64> {
        let end = self.end_of_reservation?;
        let after = self.next_iv.checked_add(blocks)?;
        if after <= end {
            let iv = self.next_iv;
            self.next_iv = after;
            Some(iv)
        } else {
            None
        }
    }

    /// Makes sure `nonce .. nonce + needed` is reserved and returns the counter value to use,
    /// which is `nonce` when the reservation covers it and the start of a new reservation
    /// otherwise (`ensure_reservation`).
    pub fn ensure_reservation(
        &mut self,
        repository: &mut dyn Repository,
        nonce: u64,
        needed: u64,
    ) -> Result<u64, NonceError> {
        if let Some(end) = self.end_of_reservation {
            if nonce.checked_add(needed).is_some_and(|n| n <= end) {
                return Ok(nonce);
            }
        }
        let repo_free = self.repo_free_nonce(repository)?;
        let local_free = self.local_free_nonce()?;
        let start = [
            repo_free,
            local_free,
            Some(self.manifest_nonce),
            self.end_of_reservation,
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0);
        let end = start
            .checked_add(needed)
            .and_then(|n| n.checked_add(NONCE_SPACE_RESERVATION))
            .filter(|n| *n < MAX_REPRESENTABLE_NONCE)
            .ok_or(NonceError::Exhausted)?;
        if self.repo_supports_nonces {
            repository.commit_nonce_reservation(end, repo_free)?;
        }
        self.commit_local(end, local_free)?;
        self.end_of_reservation = Some(end);
        Ok(start)
    }

    fn repo_free_nonce(
        &mut self,
        repository: &mut dyn Repository,
    ) -> Result<Option<u64>, NonceError> {
        if !self.repo_supports_nonces {
            return Ok(None);
        }
        match repository.get_free_nonce() {
            Ok(n) => Ok(n),
            Err(RepositoryError::InvalidRpcMethod(_)) => {
                // Servers older than 1.1 lack the call; borg warns once and goes on with the
                // local state only.
                log::warn!("Please upgrade to borg version 1.1+ on the server for safer AES-CTR nonce handling.");
                self.repo_supports_nonces = false;
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The value in the local nonce file, `None` if there is no file (`get_local_free_nonce`).
    pub fn local_free_nonce(&self) -> Result<Option<u64>, NonceError> {
        let Some(path) = &self.local_file else {
            return Ok(None);
        };
        read_nonce_file(path)
    }

    fn commit_local(&self, next_unreserved: u64, expected: Option<u64>) -> Result<(), NonceError> {
        let Some(path) = &self.local_file else {
            return Ok(());
        };
        if self.local_free_nonce()? != expected {
            return Err(NonceError::Mismatch);
        }
        write_nonce_file(path, next_unreserved)
    }
}

/// The first counter value a key may use after loading, given the manifest envelope it was
/// loaded with: the manifest's IV plus the blocks of the whole envelope, an upper bound on
/// what the manifest used (`init_ciphers`). 0 for a new key or an unencrypted one.
pub fn manifest_nonce(key: &Key, manifest_envelope: Option<&[u8]>) -> u64 {
    match manifest_envelope {
        Some(env) if key.is_encrypted() => envelope_iv(env)
            .unwrap_or(0)
            .saturating_add(num_cipher_blocks(env.len())),
        _ => 0,
    }
}

/// Reads a `nonce` file: 16 hex digits, big-endian. `None` if the file does not exist.
pub fn read_nonce_file(path: &Path) -> Result<Option<u64>, NonceError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(NonceError::Io {
                path: path.to_path_buf(),
                source: e,
            })
        }
    };
    let text = text.trim();
    let bytes =
        hex::decode(text).map_err(|e| NonceError::InvalidLocalFile(format!("{text:?}: {e}")))?;
    let bytes: [u8; 8] = bytes
        .try_into()
        .map_err(|_| NonceError::InvalidLocalFile(format!("{text:?} is not 8 bytes")))?;
    Ok(Some(u64::from_be_bytes(bytes)))
}

/// Writes a `nonce` file the way borg's `SaveFile` does: temp file, fsync, rename.
pub fn write_nonce_file(path: &Path, value: u64) -> Result<(), NonceError> {
    save_file(path, hex::encode(value.to_be_bytes()).as_bytes()).map_err(|e| NonceError::Io {
        path: path.to_path_buf(),
        source: e,
    })
}

/// Writes `data` to `path` atomically (temp file in the same directory, fsync, rename),
/// creating the directory; borg's `SaveFile`. New files are private (0600) and new
/// directories 0700, as borg makes them under its umask of 0077.
pub(crate) fn save_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

impl Key {
    /// Encrypts `payload` with counter values drawn from `nonces` (borg's `key.encrypt`,
    /// minus compression). Unencrypted keys draw nothing.
    pub fn encrypt_next(
        &self,
        nonces: &mut NonceManager,
        repository: &mut dyn Repository,
        payload: &[u8],
    ) -> Result<Vec<u8>, NonceError> {
        let iv = if self.is_encrypted() {
            nonces.allocate(repository, num_cipher_blocks(payload.len()))?
        } else {
            0
        };
        Ok(self.encrypt(iv, payload))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::repository::{CommitOptions, ObjectId};
    use std::collections::BTreeMap;

    /// An in-memory repository for unit tests: objects, a key blob and a nonce, with borg's
    /// compare-and-set rule for `commit_nonce_reservation`.
    #[derive(Default)]
    pub(crate) struct MemRepo {
        pub id: ObjectId,
        pub objects: BTreeMap<ObjectId, Vec<u8>>,
        pub key: Vec<u8>,
        pub nonce: Option<u64>,
        pub no_nonce_rpc: bool,
        pub commits: usize,
        pub calls: Vec<String>,
    }

    impl MemRepo {
        /// `limit` ids after `marker`, in key order: how real repositories page `list`/`scan`.
        fn page(&self, limit: Option<u32>, marker: Option<&ObjectId>) -> Vec<ObjectId> {
            self.objects
                .keys()
                .filter(|k| marker.is_none_or(|m| *k > m))
                .take(limit.map_or(usize::MAX, |l| l as usize))
                .copied()
                .collect()
        }
    }

    impl Repository for MemRepo {
        fn id(&self) -> &ObjectId {
            &self.id
        }
        fn get(&mut self, id: &ObjectId) -> Result<Vec<u8>, RepositoryError> {
            self.calls.push("get".into());
            self.objects
                .get(id)
                .cloned()
                .ok_or_else(|| RepositoryError::ObjectNotFound {
                    id: hex::encode(id),
                    path: "mem".into(),
                })
        }
        fn get_many(
            &mut self,
            ids: &[ObjectId],
            sink: &mut dyn FnMut(usize, Vec<u8>) -> Result<(), RepositoryError>,
        ) -> Result<(), RepositoryError> {
            for (i, id) in ids.iter().enumerate() {
                let d = self.get(id)?;
                sink(i, d)?;
            }
            Ok(())
        }
        fn put(&mut self, id: &ObjectId, data: Vec<u8>) -> Result<(), RepositoryError> {
            self.calls.push("put".into());
            self.objects.insert(*id, data);
            Ok(())
        }
        fn delete(&mut self, id: &ObjectId) -> Result<(), RepositoryError> {
            self.objects.remove(id);
            Ok(())
        }
        fn flush(&mut self) -> Result<(), RepositoryError> {
            Ok(())
        }
        fn commit(&mut self, _o: CommitOptions) -> Result<(), RepositoryError> {
            self.calls.push("commit".into());
            self.commits += 1;
            Ok(())
        }
        fn rollback(&mut self) -> Result<(), RepositoryError> {
            Ok(())
        }
        fn list(
            &mut self,
            limit: Option<u32>,
            marker: Option<&ObjectId>,
        ) -> Result<Vec<ObjectId>, RepositoryError> {
            Ok(self.page(limit, marker))
        }
        fn scan(
            &mut self,
            limit: Option<u32>,
            marker: Option<&ObjectId>,
        ) -> Result<Vec<ObjectId>, RepositoryError> {
            Ok(self.page(limit, marker))
        }
        fn check(&mut self, _r: bool, _d: u64) -> Result<bool, RepositoryError> {
            Ok(true)
        }
        fn object_count(&mut self) -> Result<u64, RepositoryError> {
            Ok(self.objects.len() as u64)
        }
        fn load_key(&mut self) -> Result<Vec<u8>, RepositoryError> {
            self.calls.push("load_key".into());
            Ok(self.key.clone())
        }
        fn save_key(&mut self, keydata: &[u8]) -> Result<(), RepositoryError> {
            self.calls.push("save_key".into());
            self.key = keydata.to_vec();
            Ok(())
        }
        fn get_free_nonce(&mut self) -> Result<Option<u64>, RepositoryError> {
            self.calls.push("get_free_nonce".into());
            if self.no_nonce_rpc {
                return Err(RepositoryError::InvalidRpcMethod("get_free_nonce".into()));
            }
            Ok(self.nonce)
        }
        fn commit_nonce_reservation(
            &mut self,
            next: u64,
            start: Option<u64>,
        ) -> Result<(), RepositoryError> {
            self.calls.push("commit_nonce_reservation".into());
            if self.nonce != start {
                return Err(RepositoryError::Remote {
                    class: "Exception".into(),
                    message: "nonce space reservation with mismatched previous state".into(),
                });
            }
            self.nonce = Some(next);
            Ok(())
        }
        fn break_lock(&mut self) -> Result<(), RepositoryError> {
            Ok(())
        }
        fn destroy(&mut self) -> Result<(), RepositoryError> {
            Ok(())
        }
        fn close(&mut self) -> Result<(), RepositoryError> {
            Ok(())
        }
    }

    #[test]
    fn first_reservation_matches_borg_init() {
        // borg init: no state anywhere, the manifest (28 blocks) at IV 0, reservation 2^28 + 28.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sec/nonce");
        let mut repo = MemRepo::default();
        let mut n = NonceManager::new(0, Some(file.clone()));
        assert_eq!(n.allocate(&mut repo, 28).unwrap(), 0);
        assert_eq!(repo.nonce, Some((1 << 28) + 28));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "000000001000001c");
        // Within the reservation: no I/O, counters follow on.
        repo.calls.clear();
        assert_eq!(n.allocate(&mut repo, 5).unwrap(), 28);
        assert_eq!(n.allocate_reserved(2), Some(33));
        assert!(repo.calls.is_empty());
    }

    #[test]
    fn next_process_starts_past_every_reservation() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nonce");
        write_nonce_file(&file, 5000).unwrap();
        let mut repo = MemRepo {
            nonce: Some(7000),
            ..MemRepo::default()
        };
        let mut n = NonceManager::new(100, Some(file.clone()));
        assert_eq!(n.allocate(&mut repo, 10).unwrap(), 7000);
        assert_eq!(repo.nonce, Some(7000 + 10 + NONCE_SPACE_RESERVATION));
        assert_eq!(read_nonce_file(&file).unwrap(), repo.nonce);
        // The local file ahead of the repository wins too.
        write_nonce_file(&file, 1 << 40).unwrap();
        let mut n = NonceManager::new(0, Some(file.clone()));
        assert_eq!(n.allocate(&mut repo, 1).unwrap(), 1 << 40);
    }

    #[test]
    fn exhausting_a_reservation_reserves_again() {
        let mut repo = MemRepo::default();
        let mut n = NonceManager::new(0, None);
        // The first reservation covers the request plus 2^28 more.
        assert_eq!(n.allocate(&mut repo, NONCE_SPACE_RESERVATION).unwrap(), 0);
        assert_eq!(n.allocate_reserved(NONCE_SPACE_RESERVATION + 1), None);
        let end = repo.nonce.unwrap();
        assert_eq!(end, 2 * NONCE_SPACE_RESERVATION);
        assert_eq!(
            n.allocate(&mut repo, NONCE_SPACE_RESERVATION + 1).unwrap(),
            end
        );
    }

    #[test]
    fn concurrent_writer_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nonce");
        let mut repo = MemRepo::default();
        let mut n = NonceManager::new(0, Some(file.clone()));
        n.allocate(&mut repo, 1).unwrap();
        // Another process moves the repository nonce; our next reservation must not blindly
        // overwrite it, and must start past it.
        let mut n2 = NonceManager::new(0, Some(file.clone()));
        let start2 = n2.allocate(&mut repo, 1).unwrap();
        assert_eq!(start2, NONCE_SPACE_RESERVATION + 1);
        let end2 = repo.nonce.unwrap();
        assert_eq!(end2, start2 + 1 + NONCE_SPACE_RESERVATION);
        // Outgrowing the first reservation, process 1 starts past process 2's reservation.
        assert_eq!(n.allocate(&mut repo, NONCE_SPACE_RESERVATION).unwrap(), 1);
        assert_eq!(n.allocate(&mut repo, 1).unwrap(), end2);
        // A local file changed behind our back (but not the repository) is a mismatch.
        write_nonce_file(&file, 5).unwrap();
        let mut n3 = NonceManager::new(0, Some(file.clone()));
        n3.local_file = None;
        let mut stale = NonceManager {
            local_file: Some(file.clone()),
            ..n3
        };
        stale.end_of_reservation = None;
        assert!(stale.commit_local(10, Some(4)).is_err());
    }

    #[test]
    fn old_servers_and_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nonce");
        let mut repo = MemRepo {
            no_nonce_rpc: true,
            ..MemRepo::default()
        };
        let mut n = NonceManager::new(0, Some(file.clone()));
        assert_eq!(n.allocate(&mut repo, 1).unwrap(), 0);
        assert!(read_nonce_file(&file).unwrap().is_some());
        std::fs::write(&file, "xyz").unwrap();
        let mut n = NonceManager::new(0, Some(file.clone()));
        assert!(matches!(
            n.allocate(&mut MemRepo::default(), 1),
            Err(NonceError::InvalidLocalFile(_))
        ));
        std::fs::write(&file, "0011").unwrap();
        assert!(matches!(
            read_nonce_file(&file),
            Err(NonceError::InvalidLocalFile(_))
        ));
        let mut n = NonceManager::new(u64::MAX - 5, None);
        assert!(matches!(
            n.allocate(&mut MemRepo::default(), 1),
            Err(NonceError::Exhausted)
        ));
    }

    #[test]
    fn pipeline_allocates_in_order_and_encrypts_in_parallel() {
        use crate::crypto::key::KeyType;
        use rayon::prelude::*;
        let key = Key::generate(KeyType::KeyfileBlake2, &[0; 32]).unwrap();
        let mut repo = MemRepo::default();
        let mut n = NonceManager::new(0, None);
        let payloads: Vec<Vec<u8>> = (0..64u32)
            .map(|i| vec![i as u8; 1000 + 37 * i as usize])
            .collect();
        // The ordered stage: one counter range per payload.
        let ivs: Vec<u64> = payloads
            .iter()
            .map(|p| n.allocate(&mut repo, num_cipher_blocks(p.len())).unwrap())
            .collect();
        // The parallel stage: the key is shared by reference across threads.
        let envelopes: Vec<Vec<u8>> = payloads
            .par_iter()
            .zip(ivs.par_iter())
            .map(|(p, iv)| key.encrypt(*iv, p))
            .collect();
        let mut ranges: Vec<(u64, u64)> = envelopes
            .iter()
            .map(|e| {
                let iv = envelope_iv(e).unwrap();
                (iv, iv + num_cipher_blocks(e.len() - 41))
            })
            .collect();
        ranges.sort();
        assert!(
            ranges.windows(2).all(|w| w[0].1 <= w[1].0),
            "counter ranges overlap"
        );
        for (e, p) in envelopes.iter().zip(&payloads) {
            assert_eq!(&key.decrypt(None, e).unwrap(), p);
        }
    }

    #[test]
    fn decrypting_does_not_move_the_counter() {
        use crate::crypto::key::KeyType;
        let key = Key::generate(KeyType::Repokey, &[0; 32]).unwrap();
        let mut repo = MemRepo::default();
        let mut n = NonceManager::new(0, None);
        let a = key.encrypt_next(&mut n, &mut repo, &[1; 1000]).unwrap();
        let b = key.encrypt_next(&mut n, &mut repo, &[2; 1000]).unwrap();
        key.decrypt(None, &a).unwrap();
        let c = key.encrypt_next(&mut n, &mut repo, &[3; 1000]).unwrap();
        let iv = |e: &[u8]| envelope_iv(e).unwrap();
        assert_eq!(iv(&b), iv(&a) + 63);
        assert_eq!(iv(&c), iv(&b) + 63);
        assert_eq!(
            manifest_nonce(&key, Some(&c)),
            iv(&c) + num_cipher_blocks(c.len())
        );
    }
}
