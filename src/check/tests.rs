//! The archive checker on an in-memory repository: clean archives, a missing file chunk (zero
//! replacement, `chunks_healthy`, healing), a damaged item chunk in the middle of an item
//! stream (the robust reader resyncs and keeps the items after it), orphans and a lost
//! manifest.

use std::collections::BTreeMap;

use super::*;
use crate::archive::{ChunkRef, Item};
use crate::crypto::key::KeyType;
use crate::crypto::nonces::tests::MemRepo;
use crate::manifest::DefaultCodec;
use crate::msgpack::encode;

struct World {
    repo: MemRepo,
    key: Key,
    iv: u64,
    /// File chunk ids by file name.
    files: BTreeMap<String, ObjectId>,
    item_chunks: Vec<ObjectId>,
}

impl World {
    fn put_plain(&mut self, data: &[u8]) -> ObjectId {
        let id = self.key.id_hash(data);
        let env = self.key.encrypt(self.iv, &DefaultCodec.compress(data));
        self.iv += 1 << 20;
        self.repo.objects.insert(id, env);
        id
    }

    /// One archive with `n` files, each one chunk; the item stream is cut into pieces of
    /// `piece` bytes so items straddle item chunks.
    fn new(n: usize, piece: usize) -> World {
        let key = Key::generate(KeyType::Repokey, &[4; 32]).unwrap();
        let mut w = World {
            repo: MemRepo {
                id: [4; 32],
                ..MemRepo::default()
            },
            key,
            iv: 1,
            files: BTreeMap::new(),
            item_chunks: Vec::new(),
        };
        let mut stream = Vec::new();
        for i in 0..n {
            let content = format!("content of file {i} ").repeat(20).into_bytes();
            let id = w.put_plain(&content);
            let name = format!("f{i:03}");
            w.files.insert(name.clone(), id);
            let item = Item {
                path: name.into_bytes(),
                mtime: 1_700_000_000_000_000_000,
                mode: Some(0o100644),
                size: Some(content.len() as u64),
                chunks: Some(vec![ChunkRef {
                    id,
                    size: content.len() as u64,
                    csize: 0,
                }]),
                ..Item::default()
            };
            stream.extend(encode(&item.to_value()));
        }
        let pieces: Vec<Vec<u8>> = stream.chunks(piece).map(<[u8]>::to_vec).collect();
        for p in pieces {
            let id = w.put_plain(&p);
            w.item_chunks.push(id);
        }
        let meta = Value::map([
            ("version", Value::from(1)),
            ("name", Value::str("arch")),
            (
                "items",
                Value::Array(w.item_chunks.iter().map(|i| Value::bytes(i)).collect()),
            ),
            ("cmdline", Value::Array(vec![Value::str("borg")])),
            ("hostname", Value::str("h")),
            ("username", Value::str("u")),
            ("time", Value::str("2024-01-01T00:00:00.000000")),
        ]);
        let packed = w
            .key
            .pack_and_authenticate(&meta, TamContext::Archive)
            .unwrap();
        let archive_id = w.put_plain(&packed);
        let mut manifest = Manifest::new();
        manifest
            .add_archive("arch", archive_id, "2024-01-01T00:00:00.000000")
            .unwrap();
        let data = manifest.pack(&w.key, std::time::SystemTime::now()).unwrap();
        let env = w.key.encrypt(w.iv, &DefaultCodec.compress(&data));
        w.iv += 1 << 20;
        w.repo.objects.insert(MANIFEST_ID, env);
        w
    }

    fn check(&mut self, repair: bool, verify: bool) -> (ArchiveCheckReport, Option<Manifest>) {
        let ids = list_all_ids(&mut self.repo).unwrap();
        let mut nonces = NonceManager::new(self.iv, None);
        let options = ArchiveCheckOptions {
            repair,
            verify_data: verify,
            threads: 2,
            ..ArchiveCheckOptions::default()
        };
        check_archives(
            &mut self.repo,
            &self.key,
            &DefaultCodec,
            &mut nonces,
            ids,
            &options,
            &mut |_, _, _| {},
        )
        .unwrap()
    }

    fn items(&mut self, manifest: &Manifest) -> Vec<Item> {
        let id = manifest.archive("arch").unwrap().id;
        let env = self.repo.get(&id).unwrap();
        let plain = DefaultCodec
            .decompress(&self.key.decrypt(Some(&id), &env).unwrap())
            .unwrap();
        let meta = crate::msgpack::decode(&plain).unwrap();
        let mut dec = crate::archive::ItemStreamDecoder::new();
        let mut out = Vec::new();
        for v in meta.get("items").unwrap().as_array().unwrap() {
            let cid: ObjectId = v.as_bytes().unwrap().try_into().unwrap();
            let env = self.repo.get(&cid).unwrap();
            let d = DefaultCodec
                .decompress(&self.key.decrypt(Some(&cid), &env).unwrap())
                .unwrap();
            out.extend(dec.feed(&d).unwrap());
        }
        out
    }
}

#[test]
fn clean_archive_is_clean_and_unchanged_by_repair() {
    let mut w = World::new(30, 200);
    let (r, _) = w.check(false, true);
    assert!(!r.error_found, "{r:?}");
    assert_eq!(r.archives_checked, 1);
    assert_eq!(r.chunks_verified as usize, w.repo.objects.len());
    let before: Vec<ObjectId> = w.repo.objects.keys().copied().collect();
    let (r, m) = w.check(true, false);
    assert!(!r.error_found);
    // Only the manifest was rewritten.
    let after: Vec<ObjectId> = w.repo.objects.keys().copied().collect();
    assert_eq!(before, after);
    assert_eq!(w.items(&m.unwrap()).len(), 30);
}

#[test]
fn missing_file_chunk_gets_a_zero_replacement_and_heals() {
    let mut w = World::new(5, 100_000);
    let gone = w.files["f002"];
    let saved = w.repo.objects.remove(&gone).unwrap();
    let (r, _) = w.check(false, false);
    assert!(r.error_found);
    assert_eq!(r.missing_chunks, 1);
    let (r, m) = w.check(true, false);
    assert_eq!(r.missing_chunks, 1);
    let items = w.items(&m.unwrap());
    let f2 = items.iter().find(|i| i.path == b"f002").unwrap();
    let replacement = f2.chunks.as_ref().unwrap()[0];
    assert_ne!(replacement.id, gone);
    assert_eq!(f2.chunks_healthy.as_ref().unwrap()[0].id, gone);
    assert_eq!(
        replacement.id,
        w.key.id_hash(&vec![0u8; replacement.size as usize])
    );
    // A repaired repository checks clean.
    let (r, _) = w.check(false, false);
    assert!(!r.error_found, "{r:?}");
    // The chunk comes back: the next repair heals the file and drops the replacement.
    w.repo.objects.insert(gone, saved);
    let (r, m) = w.check(true, false);
    assert!(!r.error_found);
    let items = w.items(&m.unwrap());
    let f2 = items.iter().find(|i| i.path == b"f002").unwrap();
    assert_eq!(f2.chunks.as_ref().unwrap()[0].id, gone);
    assert!(f2.chunks_healthy.is_none());
    assert!(!w.repo.objects.contains_key(&replacement.id));
    let (r, _) = w.check(false, false);
    assert!(!r.error_found, "{r:?}");
}

#[test]
fn damaged_item_chunk_loses_only_the_items_in_it() {
    let mut w = World::new(200, 60);
    assert!(w.item_chunks.len() > 2 * ITEM_FETCH_WINDOW);
    let victim = w.item_chunks[w.item_chunks.len() / 2];
    w.repo.objects.remove(&victim);
    let (r, _) = w.check(false, false);
    assert!(r.error_found);
    let (_, m) = w.check(true, false);
    let items = w.items(&m.unwrap());
    // Items before and after the hole survive; the ones inside it are gone.
    assert!(items.len() < 200 && items.len() >= 195, "{}", items.len());
    assert_eq!(items[0].path, b"f000");
    assert_eq!(items.last().unwrap().path, b"f199");
    let (r, _) = w.check(false, false);
    assert!(!r.error_found, "{r:?}");
}

#[test]
fn orphans_and_lost_manifest() {
    let mut w = World::new(3, 1000);
    w.put_plain(b"nobody refers to me");
    let (r, _) = w.check(false, false);
    assert_eq!(r.orphans, 1);
    assert!(r.error_found);
    let (_, _) = w.check(true, false);
    let (r, _) = w.check(false, false);
    assert!(!r.error_found, "{r:?}");
    w.repo.objects.remove(&MANIFEST_ID);
    let (r, m) = w.check(false, false);
    assert!(r.error_found && r.manifest_rebuilt);
    assert!(m.unwrap().archive("arch").is_some());
    let (_, _) = w.check(true, false);
    assert!(w.repo.objects.contains_key(&MANIFEST_ID));
    let (r, _) = w.check(false, false);
    assert!(!r.error_found, "{r:?}");
}

#[test]
fn rewritten_item_stream_is_cut_like_borg_create_cuts_it() {
    use crate::archive::writer::{ChunkStore, ItemBuffer, Stats};
    use crate::cache::ChunkIndex;
    use crate::compress::CompressionSpec;
    use crate::pipeline::ParallelOptions;
    let key = Key::generate(KeyType::Repokey, &[3; 32]).unwrap();
    assert_ne!(key.chunk_seed(), 0, "a seeded key, so the seed matters");
    let items: Vec<Item> = (0..230_000u32)
        .map(|i| Item {
            path: format!("home/user/dir-{}/file-{i}", i % 97).into_bytes(),
            mode: Some(0o100644),
            mtime: i as i64 * 1_000_000_007,
            size: Some(i as u64 * 13),
            chunks: Some(vec![]),
            ..Item::default()
        })
        .collect();
    // What `create` stores for these items.
    let mut repo = MemRepo::default();
    let mut nonces = NonceManager::new(0, None);
    let mut index = ChunkIndex::new();
    let mut store = ChunkStore::new(
        &mut repo,
        &key,
        &mut nonces,
        &mut index,
        CompressionSpec::Lz4,
        ParallelOptions::default(),
    );
    let mut buffer = ItemBuffer::new();
    let mut meta = Stats::default();
    for item in &items {
        buffer.add(item, &mut store, &mut meta).unwrap();
    }
    buffer.flush(&mut store, &mut meta, true).unwrap();
    // What repair stores for them.
    let mut chunker = ItemChunker::new(&key);
    let mut pieces = Vec::new();
    for item in &items {
        pieces.extend(chunker.add(item));
    }
    pieces.extend(chunker.finish());
    let ids: Vec<ObjectId> = pieces.iter().map(|p| key.id_hash(p)).collect();
    assert_eq!(ids, buffer.chunks);
    // Over 8 MiB of metadata: cut while adding, in pieces between the items chunker's
    // 32 KiB minimum and 512 KiB maximum rather than fixed 128 KiB pieces.
    let total: usize = pieces.iter().map(Vec::len).sum();
    assert!(total > ITEM_BUFFER_SIZE, "{total}");
    let sizes: HashSet<usize> = pieces.iter().map(Vec::len).collect();
    assert!(sizes.len() > pieces.len() / 2, "sizes vary: {sizes:?}");
    for p in &pieces[..pieces.len() - 1] {
        assert!((1 << 15..=1 << 19).contains(&p.len()), "{}", p.len());
    }
}
