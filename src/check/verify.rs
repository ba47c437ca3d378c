//! `check --verify-data`: read every object in on-disk order and open it completely (MAC,
//! decryption, decompression, id hash), spread over all cores (`ArchiveChecker.verify_data`).
//!
//! One thread fetches with the repository's pipelined `get_many` and hands objects through a
//! bounded channel to the workers, so memory stays at a few objects per worker however large
//! the repository is.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::crypto::Key;
use crate::manifest::PayloadCodec;
use crate::repository::{ObjectId, Repository, RepositoryError, MANIFEST_ID};

/// How many ids one `scan` page asks for. Borg asks for 100; a bigger page keeps more
/// requests in flight and the order of objects is the same.
const SCAN_PAGE: u32 = 1000;

/// What the verification found.
#[derive(Debug, Default, Clone)]
pub struct VerifyReport {
    /// Objects read from the segments (borg's `chunks_count_segments`).
    pub verified: u64,
    /// Errors as borg logs them, one line each.
    pub errors: Vec<String>,
    /// Objects that failed an integrity check (candidates for deletion with `--repair`).
    pub defect: Vec<ObjectId>,
}

/// Opens one object completely: envelope, MAC, decompression and, except for the manifest,
/// the id hash. Returns borg's error text on failure.
pub fn verify_object(
    key: &Key,
    codec: &dyn PayloadCodec,
    id: &ObjectId,
    envelope: &[u8],
) -> Result<(), String> {
    let check_id = *id != MANIFEST_ID;
    let payload = key
        .decrypt(check_id.then_some(id), envelope)
        .map_err(|e| e.to_string())?;
    let plaintext = codec.decompress(&payload).map_err(|e| {
        format!(
            "Data integrity error: Chunk {}: decompression failed: {e}",
            hex::encode(id)
        )
    })?;
    if check_id {
        key.assert_id(id, &plaintext).map_err(|e| e.to_string())?;
    }
    Ok(())
}

type Failures = Mutex<Vec<(ObjectId, String)>>;

/// Fetches `ids` with `get_many` and hands them to the workers. An object the repository
/// cannot deliver is reported and the rest of the batch is fetched anew, as borg does.
fn fetch_batch(
    repository: &mut dyn Repository,
    ids: &[ObjectId],
    tx: &crossbeam_channel::Sender<(ObjectId, Vec<u8>)>,
    failures: &Failures,
    fetch_errors: &mut Vec<String>,
) -> Result<(), RepositoryError> {
    let mut start = 0usize;
    while start < ids.len() {
        let batch = &ids[start..];
        let mut next = 0usize;
        let r = repository.get_many(batch, &mut |i, data| {
            next = i + 1;
            tx.send((batch[i], data)).map_err(|_| RepositoryError::Io {
                context: "verify-data".into(),
                source: std::io::Error::other("verification workers stopped"),
            })
        });
        match r {
            Ok(()) => break,
            Err(
                e @ (RepositoryError::ObjectNotFound { .. } | RepositoryError::IntegrityError(_)),
            ) => {
                let Some(failed) = batch.get(next) else {
                    return Err(e);
                };
                fetch_errors.push(format!("chunk {}: {e}", hex::encode(failed)));
                if matches!(e, RepositoryError::IntegrityError(_)) {
                    if let Ok(mut f) = failures.lock() {
                        f.push((*failed, String::new()));
                    }
                }
                start += next + 1;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Verifies every object with `threads` workers (at least one). `all_ids` is the listing of
/// every object id (objects a short scan missed are fetched from it). `progress` is called with the
/// number of objects verified so far after each page.
pub fn verify_data(
    repository: &mut dyn Repository,
    all_ids: &[ObjectId],
    key: &Key,
    codec: &(dyn PayloadCodec + Sync),
    threads: usize,
    progress: &mut dyn FnMut(u64),
) -> Result<VerifyReport, RepositoryError> {
    let threads = threads.max(1);
    let verified = AtomicU64::new(0);
    let failures: Failures = Mutex::new(Vec::new());
    let mut fetch_errors: Vec<String> = Vec::new();
    let mut fetched_total = 0u64;
    let (tx, rx) = crossbeam_channel::bounded::<(ObjectId, Vec<u8>)>(threads * 4);
    let result = std::thread::scope(|scope| -> Result<(), RepositoryError> {
        for _ in 0..threads {
            let rx = rx.clone();
            let failures = &failures;
            let verified = &verified;
            scope.spawn(move || {
                for (id, envelope) in rx {
                    if let Err(e) = verify_object(key, codec, &id, &envelope) {
                        if let Ok(mut f) = failures.lock() {
                            f.push((id, e));
                        }
                    }
                    verified.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        drop(rx);
        let mut marker: Option<ObjectId> = None;
        let mut scanned: HashSet<ObjectId> = HashSet::new();
        let outcome = loop {
            let ids = match repository.scan(Some(SCAN_PAGE), marker.as_ref()) {
                Ok(ids) => ids,
                Err(e) => break Err(e),
            };
            let Some(last) = ids.last() else {
                break Ok(());
            };
            marker = Some(*last);
            fetched_total += ids.len() as u64;
            scanned.extend(ids.iter().copied());
            if let Err(e) = fetch_batch(repository, &ids, &tx, &failures, &mut fetch_errors) {
                break Err(e);
            }
            progress(verified.load(Ordering::Relaxed));
        };
        // A damaged segment can end a repository's scan early; objects the scan did not reach
        // are fetched by id, so that none of them goes unverified.
        let outcome = outcome.and_then(|()| {
            let rest: Vec<ObjectId> = all_ids
                .iter()
                .filter(|id| !scanned.contains(*id))
                .copied()
                .collect();
            fetched_total += rest.len() as u64;
            for page in rest.chunks(SCAN_PAGE as usize) {
                fetch_batch(repository, page, &tx, &failures, &mut fetch_errors)?;
                progress(verified.load(Ordering::Relaxed));
            }
            Ok(())
        });
        drop(tx);
        outcome
    });
    result?;
    let failures = failures.into_inner().unwrap_or_default();
    let mut report = VerifyReport {
        verified: fetched_total,
        errors: fetch_errors,
        defect: Vec::new(),
    };
    for (id, message) in failures {
        if !message.is_empty() {
            report.errors.push(format!(
                "chunk {}, integrity error: {message}",
                hex::encode(id)
            ));
        }
        report.defect.push(id);
    }
    progress(fetched_total);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::key::KeyType;
    use crate::manifest::DefaultCodec;

    #[test]
    fn verify_object_checks_mac_decompression_and_id() {
        let key = Key::generate(KeyType::RepokeyBlake2, &[3; 32]).unwrap();
        let data = b"some chunk data".repeat(50);
        let id = key.id_hash(&data);
        let env = key.encrypt(7, &DefaultCodec.compress(&data));
        assert!(verify_object(&key, &DefaultCodec, &id, &env).is_ok());
        // One flipped ciphertext bit fails the MAC.
        let mut bad = env.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let e = verify_object(&key, &DefaultCodec, &id, &bad).unwrap_err();
        assert!(e.contains("MAC Authentication failed"), "{e}");
        // Stored under another id: the id check fails.
        let e = verify_object(&key, &DefaultCodec, &[9; 32], &env).unwrap_err();
        assert!(
            e.contains("MAC") || e.contains("id verification failed"),
            "{e}"
        );
        let other = key.encrypt(8, &DefaultCodec.compress(b"other"));
        let e = verify_object(&key, &DefaultCodec, &id, &other).unwrap_err();
        assert!(e.contains("id verification failed"), "{e}");
        // Garbage that decrypts but does not decompress.
        let junk = key.encrypt(9, &[9, 9, 9]);
        let e = verify_object(&key, &DefaultCodec, &id, &junk).unwrap_err();
        assert!(e.contains("decompression failed"), "{e}");
        // The manifest has no id check.
        assert!(verify_object(&key, &DefaultCodec, &MANIFEST_ID, &other).is_ok());
    }
}
