//! Behaviour of `LocalRepository` on its own: errors named as borg's, transactions, replay.
//! Interop with real borg lives in `tests/local_interop.rs`.

use std::fs;

use super::*;
use crate::repository::MANIFEST_ID;

fn settings() -> LocalSettings {
    LocalSettings {
        host_id: "unit-test@1".into(),
        storage_quota: None,
        new_segment_limits: Some((4096, 3)),
    }
}

fn exclusive() -> OpenOptions {
    OpenOptions {
        exclusive: true,
        ..OpenOptions::default()
    }
}

fn id(n: u8) -> ObjectId {
    [n; 32]
}

#[test]
fn errors_are_borgs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    assert!(matches!(
        LocalRepository::open(&path, &exclusive(), &settings()),
        Err(RepositoryError::DoesNotExist(_))
    ));
    fs::create_dir(&path).unwrap();
    assert!(matches!(
        LocalRepository::open(&path, &exclusive(), &settings()),
        Err(RepositoryError::InvalidRepository(_))
    ));
    // The failed open released its lock.
    assert!(!path.join("lock.exclusive").exists());
    let mut repo = LocalRepository::create(&path, &exclusive(), &settings()).unwrap();
    assert!(matches!(
        repo.get(&id(1)),
        Err(RepositoryError::ObjectNotFound { .. })
    ));
    assert!(matches!(
        repo.delete(&id(1)),
        Err(RepositoryError::ObjectNotFound { .. })
    ));
    assert!(matches!(
        repo.put(&id(1), vec![0; segment::MAX_DATA_SIZE + 1]),
        Err(RepositoryError::IntegrityError(_))
    ));
    repo.put(&id(1), vec![0; segment::MAX_DATA_SIZE]).unwrap();
    repo.commit(CommitOptions::default()).unwrap();
    assert!(repo.list(None, Some(&id(9))).is_err());
    assert!(repo.scan(Some(0), None).is_err());
    repo.close().unwrap();
    assert!(matches!(
        LocalRepository::create(&path, &exclusive(), &settings()),
        Err(RepositoryError::AlreadyExists(_))
    ));
    assert!(matches!(
        LocalRepository::create(&path.join("data/inner"), &exclusive(), &settings()),
        Err(RepositoryError::AlreadyExists(_))
    ));
    let other = dir.path().join("not-empty");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("x"), b"x").unwrap();
    assert!(matches!(
        LocalRepository::create(&other, &exclusive(), &settings()),
        Err(RepositoryError::PathAlreadyExists(_))
    ));
    assert!(matches!(
        LocalRepository::create(&dir.path().join("a/b"), &exclusive(), &settings()),
        Err(RepositoryError::ParentPathDoesNotExist(_))
    ));
    let nested = OpenOptions {
        make_parent_dirs: true,
        ..exclusive()
    };
    LocalRepository::create(&dir.path().join("a/b"), &nested, &settings()).unwrap();
    // An unsupported repository version.
    let config = fs::read_to_string(path.join("config")).unwrap();
    fs::write(
        path.join("config"),
        config.replace("version = 1", "version = 2"),
    )
    .unwrap();
    assert!(matches!(
        LocalRepository::open(&path, &exclusive(), &settings()),
        Err(RepositoryError::InvalidRepositoryConfig { .. })
    ));
}

#[test]
fn shared_lock_reads_but_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    let mut repo = LocalRepository::create(&path, &exclusive(), &settings()).unwrap();
    repo.put(&MANIFEST_ID, b"m".to_vec()).unwrap();
    repo.commit(CommitOptions::default()).unwrap();
    repo.close().unwrap();
    let mut a = LocalRepository::open(&path, &OpenOptions::default(), &settings()).unwrap();
    let mut b = LocalRepository::open(&path, &OpenOptions::default(), &settings()).unwrap();
    assert_eq!(a.get(&MANIFEST_ID).unwrap(), b"m");
    assert_eq!(b.object_count().unwrap(), 1);
    assert!(a.put(&id(2), b"x".to_vec()).is_err());
    assert!(a.get_free_nonce().is_err());
    a.close().unwrap();
    b.close().unwrap();
    assert!(!path.join("lock.roster").exists());
}

#[test]
fn rollback_discards_and_rollover_splits_segments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    let mut repo = LocalRepository::create(&path, &exclusive(), &settings()).unwrap();
    for n in 0..30 {
        repo.put(&id(n), vec![n; 1000]).unwrap();
    }
    repo.commit(CommitOptions::default()).unwrap();
    // A 4 KiB segment takes writes while its size is at most 4096: four 1041-byte entries,
    // the fourth taking it past the limit. 30 objects fill 8 segments; the COMMIT is the 9th.
    let segs = repo.io().unwrap().segments();
    assert_eq!(segs.len(), 9, "{segs:?}");
    assert!(path.join("data/2").is_dir());
    repo.put(&id(100), b"gone".to_vec()).unwrap();
    repo.delete(&id(3)).unwrap();
    repo.rollback().unwrap();
    assert!(matches!(
        repo.get(&id(100)),
        Err(RepositoryError::ObjectNotFound { .. })
    ));
    assert_eq!(repo.get(&id(3)).unwrap(), vec![3; 1000]);
    // The next transaction deletes the leftover segment.
    repo.put(&id(101), b"kept".to_vec()).unwrap();
    repo.commit(CommitOptions::default()).unwrap();
    assert_eq!(repo.object_count().unwrap(), 31);
    assert!(repo.check(false, 0).unwrap());
    repo.close().unwrap();
}

#[test]
fn stale_index_is_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    let mut repo = LocalRepository::create(&path, &exclusive(), &settings()).unwrap();
    repo.put(&id(1), b"one".to_vec()).unwrap();
    repo.commit(CommitOptions::default()).unwrap();
    let old_index = fs::read(path.join("index.1")).unwrap();
    repo.put(&id(2), b"two".to_vec()).unwrap();
    repo.delete(&id(1)).unwrap();
    repo.commit(CommitOptions::default()).unwrap();
    repo.close().unwrap();
    // A crash after the COMMIT but before the new index landed: only the old one exists.
    for e in fs::read_dir(&path).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("index.")
            || name.starts_with("hints.")
            || name.starts_with("integrity.")
        {
            fs::remove_file(p).unwrap();
        }
    }
    fs::write(path.join("index.1"), old_index).unwrap();
    let mut repo = LocalRepository::open(&path, &exclusive(), &settings()).unwrap();
    assert_eq!(repo.get(&id(2)).unwrap(), b"two");
    assert!(repo.get(&id(1)).is_err());
    assert!(!path.join("index.1").exists());
    assert!(repo.check(false, 0).unwrap());
    // A damaged index (integrity mismatch) is rebuilt too.
    let tid = repo.index_transaction_id().unwrap();
    let index_path = path.join(format!("index.{tid}"));
    let mut bytes = fs::read(&index_path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&index_path, bytes).unwrap();
    repo.close().unwrap();
    let mut repo = LocalRepository::open(&path, &exclusive(), &settings()).unwrap();
    assert_eq!(repo.get(&id(2)).unwrap(), b"two");
    assert_eq!(repo.object_count().unwrap(), 1);
    repo.close().unwrap();
}

#[test]
fn compaction_frees_space_and_keeps_objects() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    let mut repo = LocalRepository::create(&path, &exclusive(), &settings()).unwrap();
    for n in 0..40 {
        repo.put(&id(n), vec![n; 900]).unwrap();
    }
    repo.commit(CommitOptions::default()).unwrap();
    for n in 0..40 {
        if n % 2 == 0 {
            repo.delete(&id(n)).unwrap();
        }
    }
    repo.commit(CommitOptions::default()).unwrap();
    let size = |repo: &mut LocalRepository| -> u64 {
        let segs = repo.io().unwrap().segments();
        segs.iter()
            .map(|(_, p)| fs::metadata(p).unwrap().len())
            .sum()
    };
    let before = size(&mut repo);
    // As `borg compact` does: a put opens the transaction the compacting commit needs.
    let kept = repo.get(&id(1)).unwrap();
    repo.put(&id(1), kept).unwrap();
    repo.commit(CommitOptions {
        compact: true,
        ..CommitOptions::default()
    })
    .unwrap();
    let after = size(&mut repo);
    assert!(after < before * 2 / 3, "{before} -> {after}");
    for n in 0..40 {
        assert_eq!(repo.get(&id(n)).is_ok(), n % 2 == 1, "object {n}");
    }
    assert!(repo.check(false, 0).unwrap());
    repo.close().unwrap();
}

/// The error class and message of a refused bare commit.
fn python_error_of(r: Result<(), RepositoryError>) -> (String, String) {
    match r {
        Err(RepositoryError::Remote { class, message }) => (class, message),
        other => panic!("expected a Python error, got {other:?}"),
    }
}

#[test]
fn commit_without_a_transaction_fails_as_borgs_does() {
    // Borg 1.4.5's `Repository.commit` on the same sequences (measured with its Python):
    // fresh handle -> AttributeError on the index's `size`; after a read -> AttributeError on
    // `segments`; right after a commit or a rollback -> `size` again; a read after an earlier
    // transaction -> the commit goes through.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    let mut repo = LocalRepository::create(&path, &exclusive(), &settings()).unwrap();
    repo.put(&id(1), b"one".to_vec()).unwrap();
    repo.commit(CommitOptions::default()).unwrap();
    repo.close().unwrap();
    let segments = |r: &mut LocalRepository| r.io().unwrap().segments().len();
    let size_error = (
        "AttributeError".to_string(),
        "'NoneType' object has no attribute 'size'".to_string(),
    );
    let segments_error = (
        "AttributeError".to_string(),
        "'Repository' object has no attribute 'segments'".to_string(),
    );

    let mut repo = LocalRepository::open(&path, &exclusive(), &settings()).unwrap();
    let before = segments(&mut repo);
    assert_eq!(
        python_error_of(repo.commit(CommitOptions::default())),
        size_error
    );
    repo.get(&id(1)).unwrap();
    assert_eq!(
        python_error_of(repo.commit(CommitOptions::default())),
        segments_error
    );
    assert_eq!(
        segments(&mut repo),
        before,
        "a refused commit writes nothing"
    );

    repo.put(&id(2), b"two".to_vec()).unwrap();
    repo.commit(CommitOptions::default()).unwrap();
    assert_eq!(
        python_error_of(repo.commit(CommitOptions::default())),
        size_error
    );
    repo.put(&id(3), b"three".to_vec()).unwrap();
    repo.rollback().unwrap();
    assert_eq!(
        python_error_of(repo.commit(CommitOptions::default())),
        size_error
    );
    // A read after an earlier transaction: borg commits; so does rborg, on the committed
    // state (the rolled-back put of object 3 stays uncommitted and is cleaned up).
    repo.get(&id(1)).unwrap();
    repo.commit(CommitOptions::default()).unwrap();
    assert!(repo.get(&id(2)).is_ok());
    assert!(matches!(
        repo.get(&id(3)),
        Err(RepositoryError::ObjectNotFound { .. })
    ));
    assert!(repo.check(false, 0).unwrap());
    repo.close().unwrap();
}

#[test]
fn partial_check_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    let mut repo = LocalRepository::create(&path, &exclusive(), &settings()).unwrap();
    for n in 0..12 {
        repo.put(&id(n), vec![n; 1500]).unwrap();
    }
    repo.commit(CommitOptions::default()).unwrap();
    let zero = Some(std::time::Duration::ZERO);
    // A zero budget checks one segment per call and records it in the config.
    assert!(check::check_with_budget(&mut repo, false, zero).unwrap());
    assert_eq!(
        repo.config.get("repository", "last_segment_checked"),
        Some("0")
    );
    assert!(check::check_with_budget(&mut repo, false, zero).unwrap());
    assert_eq!(
        repo.config.get("repository", "last_segment_checked"),
        Some("1")
    );
    let on_disk = fs::read_to_string(path.join("config")).unwrap();
    assert!(on_disk.contains("last_segment_checked = 1\n"));
    // Damage in a segment not yet checked is found by the next partial pass.
    let seg3 = repo.io().unwrap().segment_filename(3);
    let mut bytes = fs::read(&seg3).unwrap();
    bytes[60] ^= 1;
    fs::write(&seg3, bytes).unwrap();
    assert!(check::check_with_budget(&mut repo, false, zero).unwrap());
    assert!(!check::check_with_budget(&mut repo, false, zero).unwrap());
    // A full check starts over and clears the position.
    assert!(!repo.check(false, 0).unwrap());
    assert_eq!(repo.config.get("repository", "last_segment_checked"), None);
    assert!(repo.check(true, 0).unwrap());
    assert!(repo.check(false, 0).unwrap());
    assert_eq!(repo.object_count().unwrap(), 11);
    repo.close().unwrap();
}

#[test]
fn commit_without_free_space_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    let mut repo = LocalRepository::create(&path, &exclusive(), &settings()).unwrap();
    repo.put(&id(1), b"one".to_vec()).unwrap();
    repo.commit(CommitOptions::default()).unwrap();
    repo.close().unwrap();
    let config = fs::read_to_string(path.join("config")).unwrap();
    fs::write(
        path.join("config"),
        config.replace("additional_free_space = 0", "additional_free_space = 999P"),
    )
    .unwrap();
    let mut repo = LocalRepository::open(&path, &exclusive(), &settings()).unwrap();
    repo.put(&id(2), b"two".to_vec()).unwrap();
    let segments_before = repo.io().unwrap().segments().len();
    let err = repo.commit(CommitOptions::default()).unwrap_err();
    assert!(
        matches!(err, RepositoryError::InsufficientFreeSpace { .. }),
        "{err}"
    );
    // The uncommitted segment is gone at once and the last commit is intact.
    assert_eq!(repo.io().unwrap().segments().len(), segments_before - 1);
    assert_eq!(repo.object_count().unwrap(), 1);
    assert!(repo.get(&id(2)).is_err());
    repo.close().unwrap();
}

#[test]
fn version_1_hints_are_upgraded() {
    use crate::msgpack::{self, Value};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    let mut repo = LocalRepository::create(&path, &exclusive(), &settings()).unwrap();
    for n in 0..20 {
        repo.put(&id(n), vec![n; 1000]).unwrap();
    }
    repo.commit(CommitOptions::default()).unwrap();
    for n in 0..10 {
        repo.delete(&id(n)).unwrap();
    }
    repo.commit(CommitOptions::default()).unwrap();
    let tid = repo.index_transaction_id().unwrap();
    let hints = repo.load_hints(tid).unwrap();
    repo.close().unwrap();
    // What borg 1.0 wrote: segment refcounts and a plain list of sparse segments.
    let v1 = msgpack::encode(&Value::map([
        ("version", Value::Int(1)),
        (
            "segments",
            Value::Map(
                hints
                    .segments
                    .iter()
                    .map(|(s, n)| (Value::Int(s as i128), Value::Int(*n as i128)))
                    .collect(),
            ),
        ),
        (
            "compact",
            Value::Array(
                hints
                    .compact
                    .iter()
                    .map(|(s, _)| Value::Int(s as i128))
                    .collect(),
            ),
        ),
    ]));
    fs::write(path.join(format!("hints.{tid}")), v1).unwrap();
    fs::remove_file(path.join(format!("integrity.{tid}"))).unwrap();
    let mut repo = LocalRepository::open(&path, &exclusive(), &settings()).unwrap();
    repo.put(&id(50), b"new".to_vec()).unwrap();
    let current = repo.io().unwrap().segment;
    let mut expected_segments = hints.segments.clone();
    *expected_segments.entry_or_default(current) += 1;
    assert_eq!(repo.segments, expected_segments);
    // The freeable bytes are rebuilt from the segments (`_rebuild_sparse`): what was counted,
    // except that a segment without live objects counts whole (commit-only segments: 17).
    for (seg, free) in hints.compact.iter() {
        let want = if hints.segments.get(&seg) == Some(&0) {
            repo.io().unwrap().segment_size(seg).unwrap()
        } else {
            *free
        };
        assert_eq!(repo.compact.get(&seg), Some(&want), "segment {seg}");
    }
    repo.commit(CommitOptions {
        compact: true,
        ..CommitOptions::default()
    })
    .unwrap();
    for n in 0..20 {
        assert_eq!(repo.get(&id(n)).is_ok(), n >= 10);
    }
    assert!(repo.check(false, 0).unwrap());
    repo.close().unwrap();
}

#[test]
fn destroy_and_break_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    let mut repo = LocalRepository::create(&path, &exclusive(), &settings()).unwrap();
    repo.put(&id(1), b"one".to_vec()).unwrap();
    repo.commit(CommitOptions::default()).unwrap();
    // Someone else's lock (another host, presumed alive) is removed by break_lock.
    repo.close().unwrap();
    let mut other = lock::Lock::new(&path, "elsewhere@7", true, Some(0.1));
    other.acquire().unwrap();
    let blocked = OpenOptions {
        lock_wait: Some(0.2),
        ..exclusive()
    };
    assert!(matches!(
        LocalRepository::open(&path, &blocked, &settings()),
        Err(RepositoryError::LockTimeout(_))
    ));
    let unlocked = OpenOptions {
        lock: false,
        ..OpenOptions::default()
    };
    LocalRepository::open(&path, &unlocked, &settings())
        .unwrap()
        .break_lock()
        .unwrap();
    std::mem::forget(other);
    let mut repo = LocalRepository::open(&path, &blocked, &settings()).unwrap();
    repo.destroy().unwrap();
    assert!(!path.exists());
    // A file is not a repository.
    fs::write(&path, b"x").unwrap();
    assert!(matches!(
        LocalRepository::open(&path, &exclusive(), &settings()),
        Err(RepositoryError::InvalidRepository(_))
    ));
}

#[test]
fn scan_lists_entries_with_damaged_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    let mut repo = LocalRepository::create(&path, &exclusive(), &settings()).unwrap();
    for n in 1..=3 {
        repo.put(&id(n), vec![n; 100]).unwrap();
    }
    repo.commit(CommitOptions::default()).unwrap();
    let segs = repo.io().unwrap().segments();
    repo.close().unwrap();
    let (file, at) = segs
        .iter()
        .find_map(|(_, p)| {
            let bytes = fs::read(p).unwrap();
            let at = bytes.windows(32).position(|w| w == id(2))?;
            Some((p.clone(), at - segment::HEADER_SIZE))
        })
        .unwrap();
    let mut bytes = fs::read(&file).unwrap();
    // A flipped payload byte breaks the CRC; borg's scan reads headers only and lists it.
    bytes[at + segment::PUT_HEADER_SIZE + 7] ^= 0x40;
    fs::write(&file, &bytes).unwrap();
    let mut repo = LocalRepository::open(&path, &exclusive(), &settings()).unwrap();
    assert!(matches!(
        repo.get(&id(2)),
        Err(RepositoryError::IntegrityError(_))
    ));
    assert_eq!(repo.scan(None, None).unwrap(), vec![id(1), id(2), id(3)]);
    assert_eq!(repo.scan(Some(1), Some(&id(1))).unwrap(), vec![id(2)]);
    assert_eq!(repo.scan(None, Some(&id(2))).unwrap(), vec![id(3)]);
    repo.close().unwrap();
    // A size field out of bounds cannot be stepped over: the rest of the segment is skipped.
    bytes[at + 4..at + 8].copy_from_slice(&5u32.to_le_bytes());
    fs::write(&file, &bytes).unwrap();
    let mut repo = LocalRepository::open(&path, &exclusive(), &settings()).unwrap();
    assert_eq!(repo.scan(None, None).unwrap(), vec![id(1)]);
    repo.close().unwrap();
}

#[test]
fn scan_pages_stop_at_the_limit_and_resume_after_the_marker() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    // One big segment holding everything, so each page ends in the middle of it.
    let big = LocalSettings {
        new_segment_limits: None,
        ..settings()
    };
    let mut repo = LocalRepository::create(&path, &exclusive(), &big).unwrap();
    for n in 0..60u8 {
        repo.put(&id(n), vec![n; 300 + n as usize]).unwrap();
    }
    // Superseded and deleted entries sit between the current ones and are not listed.
    for n in (0..60u8).step_by(7) {
        repo.put(&id(n), vec![n; 10]).unwrap();
    }
    for n in (3..60u8).step_by(11) {
        repo.delete(&id(n)).unwrap();
    }
    repo.commit(CommitOptions::default()).unwrap();
    let all = repo.scan(None, None).unwrap();
    assert_eq!(all.len(), 60 - (3..60).step_by(11).count());
    for limit in [1u32, 2, 7, 100] {
        let mut paged = Vec::new();
        let mut marker: Option<ObjectId> = None;
        loop {
            let page = repo.scan(Some(limit), marker.as_ref()).unwrap();
            assert!(page.len() <= limit as usize);
            if page.is_empty() {
                break;
            }
            marker = page.last().copied();
            paged.extend(page);
        }
        assert_eq!(paged, all, "pages of {limit}");
    }
    repo.close().unwrap();
}
