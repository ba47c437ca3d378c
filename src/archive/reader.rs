//! Reading archives from a repository: the archive metadata object (decrypted, its TAM checked
//! with borg's ordinary-read rules), the item-metadata stream, and the content chunks of a file
//! (`archive.py: Archive._load_meta`, `DownloadPipeline.unpack_many / fetch_many`).
//!
//! Every object read here goes through the same steps: `get_many` (so a remote repository keeps
//! many requests in flight), decrypt with the session key, decompress, and check that the
//! plaintext hashes to the id it was stored under.

use crate::crypto::envelope::EnvelopeError;
use crate::crypto::tam::{TamError, TamStatus};
use crate::crypto::Key;
use crate::manifest::{DefaultCodec, PayloadCodec};
use crate::repository::{ObjectId, Repository, RepositoryError};

use super::{ArchiveMetadata, ChunkRef, Item, ItemError, ItemStreamDecoder, StreamError};

/// Why an archive could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The repository failed (including a missing object).
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// An object failed decryption or its id check.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// An object's payload could not be decompressed.
    #[error("Data integrity error: Chunk {id}: {reason}")]
    Decompress {
        /// The object id in hex.
        id: String,
        /// What the decompressor said.
        reason: String,
    },
    /// The archive TAM is invalid (or required and missing).
    #[error(transparent)]
    Tam(#[from] TamError),
    /// The archive metadata dict is malformed.
    #[error("archive metadata is invalid: {0}")]
    Metadata(ItemError),
    /// The archive metadata has a version other than 1.
    #[error("Unknown archive metadata version")]
    Version(u32),
    /// The item stream is malformed.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// A consumer of items or content stopped the reading.
    #[error("{0}")]
    Consumer(String),
}

impl ReadError {
    /// borg 1.4's modern exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            ReadError::Repository(e) => e.exit_code(),
            ReadError::Envelope(e) => e.exit_code(),
            ReadError::Decompress { .. } => 92,
            ReadError::Tam(e) => e.exit_code(),
            ReadError::Metadata(_) | ReadError::Stream(_) | ReadError::Version(_) => 90,
            ReadError::Consumer(_) => 2,
        }
    }
}

/// An archive's metadata as loaded from the repository.
#[derive(Debug, Clone)]
pub struct LoadedArchive {
    /// The archive metadata object's id.
    pub id: ObjectId,
    /// The metadata.
    pub metadata: ArchiveMetadata,
    /// How the archive TAM check came out (a missing TAM is tolerated on ordinary reads).
    pub tam: TamStatus,
    /// Length of the plaintext metadata object (its `size` in the chunk index).
    pub size: u32,
    /// Length of the stored object (its `csize` in the chunk index).
    pub csize: u32,
}

/// Receives each fetched object: its id, plaintext and stored length.
pub type ObjectSink<'a> = dyn FnMut(&ObjectId, Vec<u8>, usize) -> Result<(), ReadError> + 'a;

/// Receives each content chunk of a file with its plaintext.
pub type ContentSink<'a> = dyn FnMut(&ChunkRef, &[u8]) -> Result<(), ReadError> + 'a;

/// Decrypts, decompresses and id-checks one object.
pub fn open_object(key: &Key, id: &ObjectId, envelope: &[u8]) -> Result<Vec<u8>, ReadError> {
    let payload = key.decrypt(Some(id), envelope)?;
    let plaintext = DefaultCodec
        .decompress(&payload)
        .map_err(|reason| ReadError::Decompress {
            id: hex::encode(id),
            reason,
        })?;
    key.assert_id(id, &plaintext)?;
    Ok(plaintext)
}

/// Loads the archive metadata stored under `id` (`Archive._load_meta`). `tam_required` is
/// `false` for ordinary reads (borg 1.2.5+ tolerates a missing archive TAM there but rejects an
/// invalid one) and `key.tam_required()` for `check`.
pub fn load_archive(
    repository: &mut dyn Repository,
    key: &Key,
    id: &ObjectId,
    tam_required: bool,
) -> Result<LoadedArchive, ReadError> {
    let envelope = repository.get(id)?;
    let plaintext = open_object(key, id, &envelope)?;
    let (value, tam) = key.unpack_and_verify_archive(&plaintext, tam_required)?;
    let metadata = ArchiveMetadata::from_value(&value).map_err(ReadError::Metadata)?;
    if metadata.version != 1 {
        return Err(ReadError::Version(metadata.version));
    }
    Ok(LoadedArchive {
        id: *id,
        metadata,
        tam,
        size: plaintext.len() as u32,
        csize: envelope.len() as u32,
    })
}

/// Runs `get_many` over `ids`, handing each object's id, plaintext and stored length to `sink`
/// in order. Errors of `sink` come back unchanged.
pub fn fetch_plaintexts(
    repository: &mut dyn Repository,
    key: &Key,
    ids: &[ObjectId],
    sink: &mut ObjectSink<'_>,
) -> Result<(), ReadError> {
    // `get_many`'s sink can only return a RepositoryError; ours is parked here meanwhile.
    let mut failure: Option<ReadError> = None;
    let result = repository.get_many(ids, &mut |i, envelope| {
        let id = &ids[i];
        let stored_len = envelope.len();
        let step = open_object(key, id, &envelope).and_then(|p| sink(id, p, stored_len));
        step.map_err(|e| {
            failure = Some(e);
            RepositoryError::Transport("reading stopped".into())
        })
    });
    match (result, failure) {
        (_, Some(e)) => Err(e),
        (Err(e), None) => Err(e.into()),
        (Ok(()), None) => Ok(()),
    }
}

/// Visits the raw item stream of an archive: `on_chunk` sees each item-metadata chunk (id,
/// plaintext length, stored length) and `on_item` every item in order, part items included.
pub fn visit_item_stream(
    repository: &mut dyn Repository,
    key: &Key,
    metadata: &ArchiveMetadata,
    on_chunk: &mut dyn FnMut(&ObjectId, usize, usize) -> Result<(), ReadError>,
    on_item: &mut dyn FnMut(Item) -> Result<(), ReadError>,
) -> Result<(), ReadError> {
    let mut decoder = ItemStreamDecoder::new();
    fetch_plaintexts(
        repository,
        key,
        &metadata.items,
        &mut |id, plaintext, stored_len| {
            on_chunk(id, plaintext.len(), stored_len)?;
            for item in decoder.feed(&plaintext)? {
                on_item(item)?;
            }
            Ok(())
        },
    )?;
    decoder.finish()?;
    Ok(())
}

/// Visits an archive's items in order. Part items (`.borg_part_N`) are skipped unless
/// `include_parts`, like borg's `Archive.item_filter` without `--consider-part-files`.
pub fn for_each_item(
    repository: &mut dyn Repository,
    key: &Key,
    metadata: &ArchiveMetadata,
    include_parts: bool,
    on_item: &mut dyn FnMut(Item) -> Result<(), ReadError>,
) -> Result<(), ReadError> {
    visit_item_stream(
        repository,
        key,
        metadata,
        &mut |_, _, _| Ok(()),
        &mut |item| {
            if item.part.is_some() && !include_parts {
                return Ok(());
            }
            on_item(item)
        },
    )
}

/// How many item-metadata chunks [`for_each_item_batch`] reads in one pipelined request.
pub const ITEM_BATCH_CHUNKS: usize = 16;

/// Receives a batch of items together with the repository, free again for reading content.
pub type BatchSink<'a> = dyn FnMut(&mut dyn Repository, Vec<Item>) -> Result<(), ReadError> + 'a;

/// Visits an archive's items in batches (those completed by [`ITEM_BATCH_CHUNKS`] item
/// chunks at a time), handing the repository to `on_batch` between reads so it can fetch the
/// items' content. Memory stays bounded by a batch, not the archive. Part items are skipped
/// unless `include_parts`.
pub fn for_each_item_batch(
    repository: &mut dyn Repository,
    key: &Key,
    metadata: &ArchiveMetadata,
    include_parts: bool,
    on_batch: &mut BatchSink<'_>,
) -> Result<(), ReadError> {
    let mut decoder = ItemStreamDecoder::new();
    for ids in metadata.items.chunks(ITEM_BATCH_CHUNKS) {
        let mut batch = Vec::new();
        fetch_plaintexts(repository, key, ids, &mut |_, plaintext, _| {
            batch.extend(
                decoder
                    .feed(&plaintext)?
                    .into_iter()
                    .filter(|i| include_parts || i.part.is_none()),
            );
            Ok(())
        })?;
        on_batch(repository, batch)?;
    }
    decoder.finish()?;
    Ok(())
}

/// Streams a file's content: each chunk of `chunks` is fetched (pipelined), decrypted,
/// decompressed, id-checked and handed to `sink` in order.
pub fn read_content(
    repository: &mut dyn Repository,
    key: &Key,
    chunks: &[ChunkRef],
    sink: &mut ContentSink<'_>,
) -> Result<(), ReadError> {
    let ids: Vec<ObjectId> = chunks.iter().map(|c| c.id).collect();
    let mut index = 0;
    fetch_plaintexts(repository, key, &ids, &mut |_, plaintext, _| {
        let chunk = &chunks[index];
        index += 1;
        sink(chunk, &plaintext)
    })
}

/// Upper bound on the plaintext bytes a [`ContentCache`] holds for one group of files. 16 MiB
/// keeps peak memory near borg's while a group of small files still costs one round trip.
pub const PREFETCH_BYTES: u64 = 16 * 1024 * 1024;

/// Upper bound on the chunks a [`ContentCache`] fetches in one pipelined request.
pub const PREFETCH_CHUNKS: usize = 8192;

/// Content chunks of a group of small files fetched ahead in one pipelined `get_many`, so
/// that many files do not cost one round trip each (borg's `DownloadPipeline` preloads the
/// chunks of many items the same way). Envelopes are opened in parallel.
#[derive(Debug, Default)]
pub struct ContentCache {
    chunks: std::collections::HashMap<ObjectId, Vec<u8>>,
}

impl ContentCache {
    /// Drops what the cache holds and fetches `ids` (unique, at most [`PREFETCH_BYTES`] of
    /// plaintext). On any failure the cache is left empty: readers then fetch each file on
    /// its own and meet the failure at the same place as without a cache.
    pub fn fill(&mut self, repository: &mut dyn Repository, key: &Key, ids: &[ObjectId]) {
        use rayon::prelude::*;
        self.chunks.clear();
        let mut envelopes: Vec<(usize, Vec<u8>)> = Vec::with_capacity(ids.len());
        if repository
            .get_many(ids, &mut |i, envelope| {
                envelopes.push((i, envelope));
                Ok(())
            })
            .is_err()
        {
            return;
        }
        let opened: Result<Vec<(ObjectId, Vec<u8>)>, ReadError> = envelopes
            .into_par_iter()
            .map(|(i, envelope)| {
                let id = ids.get(i).copied().ok_or_else(|| {
                    ReadError::Consumer(format!("get_many answered unknown index {i}"))
                })?;
                open_object(key, &id, &envelope).map(|p| (id, p))
            })
            .collect();
        if let Ok(opened) = opened {
            self.chunks.extend(opened);
        }
    }

    /// Like [`read_content`], but from the cache when it holds every chunk of the file.
    pub fn read_content(
        &self,
        repository: &mut dyn Repository,
        key: &Key,
        chunks: &[ChunkRef],
        sink: &mut ContentSink<'_>,
    ) -> Result<(), ReadError> {
        if chunks.iter().all(|c| self.chunks.contains_key(&c.id)) {
            for chunk in chunks {
                if let Some(data) = self.chunks.get(&chunk.id) {
                    sink(chunk, data)?;
                }
            }
            return Ok(());
        }
        read_content(repository, key, chunks, sink)
    }
}

/// Splits `items` into groups whose content is prefetched together: each entry is the index
/// of the group's first item and the unique chunk ids of its items for which `wanted` holds.
/// A group holds at most [`PREFETCH_BYTES`] of plaintext and [`PREFETCH_CHUNKS`] chunks; a
/// file larger than that belongs to no group and is streamed on its own.
pub fn plan_prefetch(
    items: &[Item],
    wanted: &dyn Fn(&Item) -> bool,
) -> Vec<(usize, Vec<ObjectId>)> {
    let mut groups = Vec::new();
    let mut ids = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut bytes = 0u64;
    let mut start = 0;
    for (i, item) in items.iter().enumerate() {
        let Some(chunks) = item.chunks.as_ref().filter(|c| !c.is_empty()) else {
            continue;
        };
        if !wanted(item) {
            continue;
        }
        let size: u64 = chunks.iter().map(|c| c.size).sum();
        if size > PREFETCH_BYTES || chunks.len() > PREFETCH_CHUNKS {
            continue;
        }
        if bytes + size > PREFETCH_BYTES || ids.len() + chunks.len() > PREFETCH_CHUNKS {
            groups.push((start, std::mem::take(&mut ids)));
            seen.clear();
            bytes = 0;
            start = i;
        }
        bytes += size;
        ids.extend(chunks.iter().map(|c| c.id).filter(|id| seen.insert(*id)));
    }
    if !ids.is_empty() {
        groups.push((start, ids));
    }
    groups
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::archive::ChunkRef;
    use crate::crypto::tam::TamContext;
    use crate::msgpack::{encode, Value};
    use crate::repository::local::{LocalRepository, LocalSettings};
    use crate::repository::OpenOptions;

    /// A plaintext repository holding one archive "a1": a directory, a file whose two chunks
    /// are `c1 c1`, a part item referencing `c1`, and a file with `c2`; the item stream is cut
    /// into two chunks in the middle of an item.
    pub(crate) struct Fixture {
        pub dir: tempfile::TempDir,
        pub repo: LocalRepository,
        pub key: Key,
        pub archive_id: ObjectId,
        pub item_ids: Vec<ObjectId>,
        pub c1: ObjectId,
        pub c2: ObjectId,
    }

    pub(crate) fn put(repo: &mut LocalRepository, key: &Key, data: &[u8]) -> ObjectId {
        let id = key.id_hash(data);
        repo.put(&id, key.encrypt(0, &DefaultCodec.compress(data)))
            .expect("put");
        id
    }

    pub(crate) fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut repo = LocalRepository::create(
            &dir.path().join("repo"),
            &OpenOptions {
                exclusive: true,
                ..OpenOptions::default()
            },
            &LocalSettings::from_env(&crate::settings::Environment::default()),
        )
        .expect("repository");
        let key = Key::plaintext();
        let c1 = put(&mut repo, &key, &[1u8; 1000]);
        let c2 = put(&mut repo, &key, b"second chunk");
        let r1 = ChunkRef {
            id: c1,
            size: 1000,
            csize: 1010,
        };
        let r2 = ChunkRef {
            id: c2,
            size: 12,
            csize: 22,
        };
        let items = [
            Item {
                path: b"d".to_vec(),
                mode: Some(0o40755),
                mtime: 1,
                ..Item::default()
            },
            Item {
                path: b"d/f".to_vec(),
                mode: Some(0o100644),
                mtime: 2,
                size: Some(2000),
                chunks: Some(vec![r1, r1]),
                ..Item::default()
            },
            Item {
                path: b"d/g.borg_part_1".to_vec(),
                mode: Some(0o100644),
                mtime: 2,
                size: Some(1000),
                chunks: Some(vec![r1]),
                part: Some(1),
                ..Item::default()
            },
            Item {
                path: b"d/g".to_vec(),
                mode: Some(0o100644),
                mtime: 3,
                size: Some(12),
                chunks: Some(vec![r2]),
                ..Item::default()
            },
        ];
        let stream: Vec<u8> = items.iter().flat_map(|i| encode(&i.to_value())).collect();
        let cut = stream.len() / 2;
        let item_ids = vec![
            put(&mut repo, &key, &stream[..cut]),
            put(&mut repo, &key, &stream[cut..]),
        ];
        let meta = crate::archive::ArchiveMetadata {
            version: 1,
            name: "a1".into(),
            items: item_ids.clone(),
            cmdline: vec!["borg".into()],
            hostname: "h".into(),
            username: "u".into(),
            time: "2026-01-01T00:00:00.000000".into(),
            time_end: None,
            comment: String::new(),
            chunker_params: None,
            size: None,
            csize: None,
            nfiles: None,
            size_parts: None,
            csize_parts: None,
            nfiles_parts: None,
            cwd: None,
            other: Vec::new(),
        };
        let data = key
            .pack_and_authenticate(&meta.to_value(), TamContext::Archive)
            .expect("tam");
        let archive_id = put(&mut repo, &key, &data);
        Fixture {
            dir,
            repo,
            key,
            archive_id,
            item_ids,
            c1,
            c2,
        }
    }

    #[test]
    fn archive_items_and_content_are_read() {
        let mut f = fixture();
        let loaded = load_archive(&mut f.repo, &f.key, &f.archive_id, true).expect("loads");
        assert!(loaded.tam.is_verified());
        assert_eq!(loaded.metadata.items, f.item_ids);
        let mut paths = Vec::new();
        for_each_item(&mut f.repo, &f.key, &loaded.metadata, false, &mut |i| {
            paths.push(String::from_utf8_lossy(&i.path).into_owned());
            Ok(())
        })
        .expect("items");
        assert_eq!(paths, ["d", "d/f", "d/g"]);
        let mut all = 0;
        for_each_item(&mut f.repo, &f.key, &loaded.metadata, true, &mut |_| {
            all += 1;
            Ok(())
        })
        .expect("items");
        assert_eq!(all, 4);
        let mut batches = Vec::new();
        for_each_item_batch(
            &mut f.repo,
            &f.key,
            &loaded.metadata,
            false,
            &mut |repo, b| {
                // The repository is usable inside a batch.
                repo.get(&f.c2).map_err(ReadError::from)?;
                batches.push(b.len());
                Ok(())
            },
        )
        .expect("batches");
        assert_eq!(batches, [3]);
        let chunks = [
            ChunkRef {
                id: f.c2,
                size: 12,
                csize: 0,
            },
            ChunkRef {
                id: f.c1,
                size: 1000,
                csize: 0,
            },
        ];
        let mut content = Vec::new();
        read_content(&mut f.repo, &f.key, &chunks, &mut |_, d| {
            content.extend_from_slice(d);
            Ok(())
        })
        .expect("content");
        assert_eq!(&content[..12], b"second chunk");
        assert_eq!(content.len(), 1012);
        // A consumer's error comes back as it was.
        let err = read_content(&mut f.repo, &f.key, &chunks, &mut |_, _| {
            Err(ReadError::Consumer("stop".into()))
        });
        assert!(matches!(err, Err(ReadError::Consumer(m)) if m == "stop"));
    }

    #[test]
    fn prefetched_content_matches_streamed_content() {
        let mut f = fixture();
        let r = |id, size| ChunkRef { id, size, csize: 0 };
        let file = |chunks: Vec<ChunkRef>| Item {
            chunks: Some(chunks),
            ..Item::default()
        };
        let big = PREFETCH_BYTES / 2 + 1;
        let items = [
            Item::default(),
            file(vec![r(f.c1, 1000), r(f.c1, 1000)]),
            file(vec![r(f.c2, 12)]),
            file(vec![r(f.c2, big)]),
            file(vec![r(f.c1, big)]),
            file(vec![r(f.c1, 2 * big)]),
            file(vec![r(f.c2, 12)]),
        ];
        let groups = plan_prefetch(&items, &|_| true);
        // Ids are unique per group; a group ends when the next file does not fit; a file
        // over the budget (item 5) belongs to no group and does not end one.
        assert_eq!(groups, [(0, vec![f.c1, f.c2]), (4, vec![f.c1, f.c2])]);
        assert_eq!(plan_prefetch(&items, &|i| i.chunks.is_none()), []);
        let mut cache = ContentCache::default();
        cache.fill(&mut f.repo, &f.key, &groups[0].1);
        let chunks = [r(f.c2, 12), r(f.c1, 1000)];
        let mut cached = Vec::new();
        cache
            .read_content(&mut f.repo, &f.key, &chunks, &mut |_, d| {
                cached.extend_from_slice(d);
                Ok(())
            })
            .expect("content");
        let mut streamed = Vec::new();
        read_content(&mut f.repo, &f.key, &chunks, &mut |_, d| {
            streamed.extend_from_slice(d);
            Ok(())
        })
        .expect("content");
        assert_eq!(cached, streamed);
        // A chunk the cache lacks is fetched, and its errors come from the fetch.
        let missing = [r(f.c2, 12), r([9u8; 32], 5)];
        let err = cache.read_content(&mut f.repo, &f.key, &missing, &mut |_, _| Ok(()));
        assert!(matches!(err, Err(ReadError::Repository(_))), "{err:?}");
        // A failed fill leaves the cache empty instead of failing.
        cache.fill(&mut f.repo, &f.key, &[f.c1, [9u8; 32]]);
        assert!(cache.chunks.is_empty());
    }

    #[test]
    fn damaged_objects_are_refused() {
        let mut f = fixture();
        // An object stored under the wrong id fails the id check.
        let wrong = f.c1;
        f.repo
            .put(&wrong, f.key.encrypt(0, &DefaultCodec.compress(b"other")))
            .expect("put");
        let err = read_content(
            &mut f.repo,
            &f.key,
            &[ChunkRef {
                id: wrong,
                size: 5,
                csize: 0,
            }],
            &mut |_, _| Ok(()),
        );
        assert!(matches!(err, Err(ReadError::Envelope(_))), "{err:?}");
        // Archive metadata with a broken TAM is refused even on ordinary reads.
        let plain = open_object(
            &f.key,
            &f.archive_id,
            &f.repo.get(&f.archive_id).expect("get"),
        )
        .expect("opens");
        let mut dict = crate::msgpack::decode(&plain).expect("msgpack");
        dict.insert("comment", Value::str("changed"));
        let forged = encode(&dict);
        let forged_id = put(&mut f.repo, &f.key, &forged);
        let err = load_archive(&mut f.repo, &f.key, &forged_id, false);
        assert!(matches!(err, Err(ReadError::Tam(_))), "{err:?}");
        let missing = load_archive(&mut f.repo, &f.key, &[7u8; 32], false);
        assert!(matches!(missing, Err(ReadError::Repository(_))));
    }
}
