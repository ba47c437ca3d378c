//! The files cache: lets `create` skip reading files that have not changed since the last
//! backup (`cache.py: file_known_and_unchanged`, `memorize_file`, `_write_files_cache`).

use std::path::Path;

use crate::msgpack::{self, Value};
use crate::repository::ObjectId;

use super::table::{IdTable, Vacant};
use super::{read_checked, write_atomically, CacheError};

const MAGIC: &[u8; 8] = b"RBFILES1";

/// What the files cache compares (`--files-cache`), as borg's sorted letter set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilesCacheMode {
    ctime: bool,
    mtime: bool,
    size: bool,
    inode: bool,
    rechunk: bool,
    disabled: bool,
}

impl Default for FilesCacheMode {
    /// `ctime,size,inode`, borg's default.
    fn default() -> Self {
        FilesCacheMode {
            ctime: true,
            mtime: false,
            size: true,
            inode: true,
            rechunk: false,
            disabled: false,
        }
    }
}

impl FilesCacheMode {
    /// Parses `--files-cache` (`ctime,size,inode`, `mtime,size`, `rechunk,ctime`, `disabled`,
    /// …) with borg's set of allowed combinations (`FilesCacheMode`).
    pub fn parse(s: &str) -> Result<FilesCacheMode, CacheError> {
        let mut letters = Vec::new();
        for word in s.trim().split(',') {
            letters.push(match word {
                "ctime" => 'c',
                "mtime" => 'm',
                "size" => 's',
                "inode" => 'i',
                "rechunk" => 'r',
                "disabled" => 'd',
                _ => return Err(CacheError::BadFilesCacheMode(s.to_string())),
            });
        }
        letters.sort_unstable();
        letters.dedup();
        let short: String = letters.iter().collect();
        if !["cis", "ims", "cs", "ms", "cr", "mr", "d", "s"].contains(&short.as_str()) {
            return Err(CacheError::BadFilesCacheMode(s.to_string()));
        }
        let has = |c| letters.contains(&c);
        Ok(FilesCacheMode {
            ctime: has('c'),
            mtime: has('m'),
            size: has('s'),
            inode: has('i'),
            rechunk: has('r'),
            disabled: has('d'),
        })
    }

    /// The files cache is neither read nor written (`disabled`, and every command but create).
    pub fn disabled() -> Self {
        FilesCacheMode {
            ctime: false,
            mtime: false,
            size: false,
            inode: false,
            rechunk: false,
            disabled: true,
        }
    }

    /// Whether the cache is off.
    pub fn is_disabled(&self) -> bool {
        self.disabled
    }
}

/// One remembered file, as the cache file stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCacheEntry {
    /// Backups since the entry was last confirmed (0 = this run).
    pub age: u8,
    /// Inode number.
    pub inode: u64,
    /// Size in bytes.
    pub size: u64,
    /// ctime or mtime in nanoseconds, as the mode says.
    pub cmtime: i64,
    /// The file's chunk ids.
    pub chunk_ids: Vec<ObjectId>,
}

/// The answer of a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileStatus {
    /// Not in the cache (or rechunking/disabled): read it (borg's status `A` when it is new).
    Unknown,
    /// In the cache but changed: read it (status `M`).
    Changed,
    /// Unchanged: these are its chunks. The caller must still check each is in the chunk
    /// index and fall back to reading the file if one is not.
    Unchanged(Vec<ObjectId>),
}

/// The metadata a lookup compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    /// Inode number.
    pub inode: u64,
    /// Size.
    pub size: u64,
    /// ctime in ns.
    pub ctime: i64,
    /// mtime in ns.
    pub mtime: i64,
}

/// One file as the cache keeps it in memory: its chunk ids are a range of the cache's shared
/// id arena, so an entry costs no allocation of its own (a `Vec` per file would add 24 bytes,
/// an allocation and up to 3 ids of spare capacity when decoded from disk).
#[derive(Debug, Clone, Copy)]
struct Slot {
    inode: u64,
    size: u64,
    cmtime: i64,
    /// Index of the first chunk id in the arena.
    start: usize,
    /// Number of chunk ids.
    len: u32,
    age: u8,
}

/// No arena can hold `usize::MAX` ids, so that start marks an empty table slot.
impl Vacant for Slot {
    const VACANT: Slot = Slot {
        inode: 0,
        size: 0,
        cmtime: 0,
        start: usize::MAX,
        len: 0,
        age: 0,
    };
    fn is_vacant(&self) -> bool {
        self.start == usize::MAX
    }
}

/// The files cache, keyed by the id hash of a file's absolute path.
#[derive(Debug, Clone)]
pub struct FilesCache {
    mode: FilesCacheMode,
    ttl: u8,
    entries: IdTable<Slot>,
    /// The chunk ids of all entries, each entry's ids contiguous.
    ids: Vec<ObjectId>,
    /// Ids in the arena that no entry refers to any more (replaced entries).
    garbage: usize,
    newest_cmtime: Option<i64>,
}

/// Arena growth: a quarter of its length at a time (at least this many ids), not the doubling
/// of `Vec::push`, as the arena is most of a big cache's memory.
const MIN_ARENA_GROWTH: usize = 256;

/// Compaction of the arena starts when this many ids are garbage (and they are more than
/// half of it).
const MIN_GARBAGE: usize = 4096;

impl FilesCache {
    /// An empty cache. `ttl` is `BORG_FILES_CACHE_TTL` (borg's default 20).
    pub fn new(mode: FilesCacheMode, ttl: u8) -> Self {
        FilesCache {
            mode,
            ttl,
            entries: IdTable::default(),
            ids: Vec::new(),
            garbage: 0,
            newest_cmtime: None,
        }
    }

    /// Loads the cache; every entry gets one older, as in borg. A missing file gives an empty
    /// cache; a disabled mode does not read at all.
    pub fn load(path: &Path, mode: FilesCacheMode, ttl: u8) -> Result<FilesCache, CacheError> {
        let mut cache = FilesCache::new(mode, ttl);
        if mode.disabled {
            return Ok(cache);
        }
        let Some(payload) = read_checked(path, MAGIC)? else {
            return Ok(cache);
        };
        let corrupt = |reason: &str| CacheError::Corrupt {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        let mut d = msgpack::Decoder::new(&payload);
        while !d.is_empty() {
            let v = d.next_value().map_err(|e| corrupt(&e.to_string()))?;
            let (hash, entry) = decode_pair(&v).ok_or_else(|| corrupt("bad entry"))?;
            cache
                .put(
                    hash,
                    Slot {
                        age: entry.age.saturating_add(1),
                        inode: entry.inode,
                        size: entry.size,
                        cmtime: entry.cmtime,
                        start: 0,
                        len: 0,
                    },
                    &entry.chunk_ids,
                )
                .ok_or_else(|| corrupt("too many chunk ids"))?;
        }
        cache.ids.shrink_to_fit();
        Ok(cache)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.len() == 0
    }

    /// Stores an entry with these chunk ids (replacing any under the same hash). `None` when
    /// a file has more chunk ids than an entry can count (then nothing is stored).
    fn put(&mut self, hash: ObjectId, mut slot: Slot, chunk_ids: &[ObjectId]) -> Option<()> {
        let Ok(len) = u32::try_from(chunk_ids.len()) else {
            if let Some(old) = self.entries.remove(&hash) {
                self.garbage += old.len as usize;
            }
            return None;
        };
        if self.ids.capacity() - self.ids.len() < chunk_ids.len() {
            let grow = chunk_ids
                .len()
                .max(self.ids.len() / 4)
                .max(MIN_ARENA_GROWTH);
            self.ids.reserve_exact(grow);
        }
        slot.start = self.ids.len();
        slot.len = len;
        self.ids.extend_from_slice(chunk_ids);
        if let Some(old) = self.entries.insert(hash, slot) {
            self.garbage += old.len as usize;
            if self.garbage > MIN_GARBAGE && self.garbage > self.ids.len() / 2 {
                self.compact();
            }
        }
        Some(())
    }

    /// Rewrites the arena with only the ids entries refer to.
    fn compact(&mut self) {
        let mut ids = Vec::with_capacity(self.ids.len() - self.garbage);
        for slot in self.entries.values_mut() {
            let start = ids.len();
            ids.extend_from_slice(&self.ids[slot.start..slot.start + slot.len as usize]);
            slot.start = start;
        }
        self.ids = ids;
        self.garbage = 0;
    }

    /// Looks a regular file up (`file_known_and_unchanged`). An unchanged entry is refreshed
    /// (age 0, current inode).
    pub fn lookup(&mut self, path_hash: &ObjectId, st: &FileStat) -> FileStatus {
        let m = self.mode;
        if m.disabled || m.rechunk {
            return FileStatus::Unknown;
        }
        let Some(e) = self.entries.get_mut(path_hash) else {
            return FileStatus::Unknown;
        };
        if (m.size && e.size != st.size)
            || (m.inode && e.inode != st.inode)
            || (m.ctime && e.cmtime != st.ctime)
            || (!m.ctime && m.mtime && e.cmtime != st.mtime)
        {
            return FileStatus::Changed;
        }
        e.inode = st.inode;
        e.age = 0;
        FileStatus::Unchanged(self.ids[e.start..e.start + e.len as usize].to_vec())
    }

    /// Remembers a file after it was read unchanged (`memorize_file`).
    pub fn memorize(&mut self, path_hash: ObjectId, st: &FileStat, chunk_ids: Vec<ObjectId>) {
        if self.mode.disabled {
            return;
        }
        let cmtime = if !self.mode.ctime && self.mode.mtime {
            st.mtime
        } else {
            st.ctime
        };
        let slot = Slot {
            age: 0,
            inode: st.inode,
            size: st.size,
            cmtime,
            start: 0,
            len: 0,
        };
        // A file of more than 2^32 chunks is simply not remembered (it is read next time).
        if self.put(path_hash, slot, &chunk_ids).is_some() {
            self.newest_cmtime = Some(self.newest_cmtime.map_or(cmtime, |n| n.max(cmtime)));
        }
    }

    /// Writes the cache, keeping what borg keeps: entries confirmed this run whose time is
    /// older than the newest one memorized (guarding against coarse timestamps), and older
    /// entries younger than the TTL.
    pub fn save(&self, path: &Path) -> Result<(), CacheError> {
        if self.mode.disabled {
            return Ok(());
        }
        let bound = self.newest_cmtime.unwrap_or(i64::MAX);
        let mut payload = Vec::new();
        for (hash, e) in self.entries.iter() {
            let keep = (e.age == 0 && e.cmtime < bound) || (e.age > 0 && e.age < self.ttl);
            if keep {
                let ids = &self.ids[e.start..e.start + e.len as usize];
                msgpack::encode_into(&encode_pair(hash, e, ids), &mut payload);
            }
        }
        write_atomically(path, MAGIC, &payload)
    }
}

fn encode_pair(hash: &ObjectId, e: &Slot, chunk_ids: &[ObjectId]) -> Value {
    Value::Array(vec![
        Value::bytes(hash),
        Value::Array(vec![
            e.age.into(),
            e.inode.into(),
            e.size.into(),
            e.cmtime.into(),
            Value::Array(chunk_ids.iter().map(|i| Value::bytes(i)).collect()),
        ]),
    ])
}

fn decode_pair(v: &Value) -> Option<(ObjectId, FileCacheEntry)> {
    let [hash, entry] = v.as_array()? else {
        return None;
    };
    let [age, inode, size, cmtime, ids] = entry.as_array()? else {
        return None;
    };
    let hash: ObjectId = hash.as_bytes()?.try_into().ok()?;
    let chunk_ids = ids
        .as_array()?
        .iter()
        .map(|i| i.as_bytes().and_then(|b| b.try_into().ok()))
        .collect::<Option<Vec<ObjectId>>>()?;
    Some((
        hash,
        FileCacheEntry {
            age: u8::try_from(age.as_u64()?).ok()?,
            inode: inode.as_u64()?,
            size: size.as_u64()?,
            cmtime: cmtime.as_i64()?,
            chunk_ids,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(inode: u64, size: u64, ctime: i64, mtime: i64) -> FileStat {
        FileStat {
            inode,
            size,
            ctime,
            mtime,
        }
    }

    #[test]
    fn modes_parse_like_borg() {
        assert_eq!(
            FilesCacheMode::parse("ctime,size,inode").expect("ok"),
            FilesCacheMode::default()
        );
        assert!(FilesCacheMode::parse("mtime,size").is_ok());
        assert!(FilesCacheMode::parse("rechunk,ctime").is_ok());
        assert!(FilesCacheMode::parse("disabled").expect("ok").is_disabled());
        assert!(FilesCacheMode::parse("ctime,mtime").is_err());
        assert!(FilesCacheMode::parse("inode").is_err());
        assert!(FilesCacheMode::parse("bogus").is_err());
    }

    #[test]
    fn lookup_compares_what_the_mode_says() {
        let mut fc = FilesCache::new(FilesCacheMode::default(), 20);
        let h = [1u8; 32];
        assert_eq!(fc.lookup(&h, &st(1, 10, 100, 50)), FileStatus::Unknown);
        fc.memorize(h, &st(1, 10, 100, 50), vec![[9; 32]]);
        assert_eq!(
            fc.lookup(&h, &st(1, 10, 100, 51)),
            FileStatus::Unchanged(vec![[9; 32]])
        );
        assert_eq!(fc.lookup(&h, &st(1, 11, 100, 50)), FileStatus::Changed);
        assert_eq!(fc.lookup(&h, &st(2, 10, 100, 50)), FileStatus::Changed);
        assert_eq!(fc.lookup(&h, &st(1, 10, 101, 50)), FileStatus::Changed);

        let mut fc = FilesCache::new(FilesCacheMode::parse("mtime,size").expect("mode"), 20);
        fc.memorize(h, &st(1, 10, 100, 50), vec![]);
        // Inode and ctime are not compared; the inode is refreshed.
        assert_eq!(
            fc.lookup(&h, &st(7, 10, 999, 50)),
            FileStatus::Unchanged(vec![])
        );
        assert_eq!(fc.lookup(&h, &st(7, 10, 999, 51)), FileStatus::Changed);

        let mut fc = FilesCache::new(FilesCacheMode::parse("rechunk,ctime").expect("mode"), 20);
        fc.memorize(h, &st(1, 10, 100, 50), vec![]);
        assert_eq!(fc.lookup(&h, &st(1, 10, 100, 50)), FileStatus::Unknown);
    }

    #[test]
    fn save_keeps_borgs_generations() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("rborg-files");
        let mut fc = FilesCache::new(FilesCacheMode::default(), 3);
        fc.memorize([1; 32], &st(1, 1, 100, 0), vec![[5; 32]]);
        // The newest ctime of this run is dropped: it may still change within the same tick.
        fc.memorize([2; 32], &st(2, 1, 200, 0), vec![]);
        fc.save(&p).expect("save");
        let mut fc = FilesCache::load(&p, FilesCacheMode::default(), 3).expect("load");
        assert_eq!(fc.len(), 1);
        assert_eq!(
            fc.lookup(&[1; 32], &st(1, 1, 100, 0)),
            FileStatus::Unchanged(vec![[5; 32]])
        );
        // Each load ages an entry by one; one not confirmed for TTL runs is dropped on save.
        for _ in 0..3 {
            FilesCache::load(&p, FilesCacheMode::default(), 3)
                .expect("load")
                .save(&p)
                .expect("save");
        }
        let fc = FilesCache::load(&p, FilesCacheMode::default(), 3).expect("load");
        assert!(fc.is_empty());
        assert!(FilesCache::load(&p, FilesCacheMode::disabled(), 3)
            .expect("load")
            .is_empty());
    }

    #[test]
    fn replaced_entries_keep_their_own_ids_through_compaction() {
        let mut fc = FilesCache::new(FilesCacheMode::default(), 20);
        let ids = |i: u32, round: u32, n: u32| -> Vec<ObjectId> {
            (0..n)
                .map(|j| {
                    let mut id = [0u8; 32];
                    id[..4].copy_from_slice(&i.to_le_bytes());
                    id[4..8].copy_from_slice(&round.to_le_bytes());
                    id[8..12].copy_from_slice(&j.to_le_bytes());
                    id
                })
                .collect()
        };
        let hash = |i: u32| {
            let mut h = [0xffu8; 32];
            h[..4].copy_from_slice(&i.to_le_bytes());
            h
        };
        // Rewrite 1000 files of 1..=5 chunks ten times: the garbage passes MIN_GARBAGE and
        // the arena is compacted on the way.
        for round in 0..10 {
            for i in 0..1000u32 {
                fc.memorize(hash(i), &st(i as u64, 1, 100, 0), ids(i, round, i % 5 + 1));
            }
        }
        assert_eq!(fc.len(), 1000);
        assert!(fc.garbage <= MIN_GARBAGE.max(fc.ids.len() / 2));
        assert!(fc.ids.len() - fc.garbage == (0..1000).map(|i| i % 5 + 1).sum::<u32>() as usize);
        for i in 0..1000u32 {
            assert_eq!(
                fc.lookup(&hash(i), &st(i as u64, 1, 100, 0)),
                FileStatus::Unchanged(ids(i, 9, i % 5 + 1))
            );
        }
        // And through a save and a load (the last entry has the newest ctime: give it a newer
        // one so the others are kept).
        fc.memorize(hash(5000), &st(5000, 1, 200, 0), vec![]);
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("rborg-files");
        fc.save(&p).expect("save");
        let mut fc = FilesCache::load(&p, FilesCacheMode::default(), 20).expect("load");
        assert_eq!(fc.len(), 1000);
        assert_eq!(fc.ids.len(), fc.ids.capacity());
        for i in (0..1000u32).step_by(7) {
            assert_eq!(
                fc.lookup(&hash(i), &st(i as u64, 1, 100, 0)),
                FileStatus::Unchanged(ids(i, 9, i % 5 + 1))
            );
        }
    }
}
