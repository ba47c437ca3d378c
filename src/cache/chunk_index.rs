//! The chunk index: chunk id → (reference count, size, stored size), with borg's reference
//! counting rules (`hashindex.pyx: ChunkIndex`).

use std::path::Path;

use crate::repository::ObjectId;

use super::table::{IdTable, Vacant};
use super::{read_checked, write_atomically, CacheError};

/// The reference count at which borg stops counting (`ChunkIndex.MAX_VALUE`, 2^32 − 1025):
/// a saturated entry is never decremented, so its chunk is never deleted.
pub const MAX_REFCOUNT: u32 = u32::MAX - 1024;

const MAGIC: &[u8; 8] = b"RBCHIDX1";
const ENTRY_LEN: usize = 32 + 4 + 4 + 4;

/// One chunk's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkEntry {
    /// How many references the repository's archives hold.
    pub refcount: u32,
    /// Plaintext size.
    pub size: u32,
    /// Stored (compressed, encrypted) size.
    pub csize: u32,
}

/// Totals over the index, as `borg info` reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkStats {
    /// Sum of reference counts.
    pub total_chunks: u64,
    /// Number of distinct chunks.
    pub total_unique_chunks: u64,
    /// Sum of size × refcount.
    pub total_size: u64,
    /// Sum of csize × refcount.
    pub total_csize: u64,
    /// Sum of sizes of distinct chunks.
    pub unique_size: u64,
    /// Sum of stored sizes of distinct chunks.
    pub unique_csize: u64,
}

/// A stored entry always has a reference, so a zero count marks an empty table slot.
impl Vacant for ChunkEntry {
    const VACANT: ChunkEntry = ChunkEntry {
        refcount: 0,
        size: 0,
        csize: 0,
    };
    fn is_vacant(&self) -> bool {
        self.refcount == 0
    }
}

/// The chunk index: a flat table of 44-byte slots (see `table.rs` for why not a `HashMap`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ChunkIndex {
    map: IdTable<ChunkEntry>,
}

/// Two different chunks under one id: in practice a bug, or a key mismatch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("chunk {id}: size {new_size} does not match the indexed size {old_size} (hash collision?)")]
pub struct SizeMismatch {
    /// The chunk id in hex.
    pub id: String,
    /// The size already in the index.
    pub old_size: u32,
    /// The size being added.
    pub new_size: u32,
}

impl ChunkIndex {
    /// An empty index.
    pub fn new() -> Self {
        ChunkIndex::default()
    }

    /// The number of distinct chunks.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// The entry of a chunk.
    pub fn get(&self, id: &ObjectId) -> Option<ChunkEntry> {
        self.map.get(id).copied()
    }

    /// Whether the chunk is known.
    pub fn contains(&self, id: &ObjectId) -> bool {
        self.map.get(id).is_some()
    }

    /// Adds one reference, inserting the chunk with refcount 1 when it is new. Returns the new
    /// refcount.
    pub fn add(&mut self, id: &ObjectId, size: u32, csize: u32) -> Result<u32, SizeMismatch> {
        let new = ChunkEntry {
            refcount: 1,
            size,
            csize,
        };
        let (e, inserted) = self.map.get_or_insert(*id, new);
        if inserted {
            return Ok(1);
        }
        if e.size != size {
            return Err(SizeMismatch {
                id: hex::encode(id),
                old_size: e.size,
                new_size: size,
            });
        }
        // A zero csize comes from an ad-hoc cache; a real one replaces it.
        if e.csize == 0 {
            e.csize = csize;
        }
        if e.refcount < MAX_REFCOUNT {
            e.refcount += 1;
        }
        Ok(e.refcount)
    }

    /// Adds a reference to a known chunk. `None` when the chunk is not in the index.
    pub fn incref(&mut self, id: &ObjectId) -> Option<ChunkEntry> {
        let e = self.map.get_mut(id)?;
        if e.refcount < MAX_REFCOUNT {
            e.refcount += 1;
        }
        Some(*e)
    }

    /// Drops a reference. Returns `Some(true)` when that was the last one: the entry is gone and
    /// the caller must delete the object from the repository. `None` for an unknown chunk.
    pub fn decref(&mut self, id: &ObjectId) -> Option<bool> {
        let e = self.map.get_mut(id)?;
        if e.refcount >= MAX_REFCOUNT {
            return Some(false);
        }
        if e.refcount > 1 {
            e.refcount -= 1;
            Some(false)
        } else {
            self.map.remove(id);
            Some(true)
        }
    }

    /// Adds every reference of `other` to this index (borg merges per-archive indexes so).
    pub fn merge(&mut self, other: &ChunkIndex) {
        for (id, o) in other.map.iter() {
            let (e, inserted) = self.map.get_or_insert(*id, *o);
            if !inserted {
                e.refcount = e.refcount.saturating_add(o.refcount).min(MAX_REFCOUNT);
                if e.csize == 0 {
                    e.csize = o.csize;
                }
            }
        }
    }

    /// Iterates over all entries.
    pub fn iter(&self) -> impl Iterator<Item = (&ObjectId, &ChunkEntry)> {
        self.map.iter()
    }

    /// Totals over the index.
    pub fn stats(&self) -> ChunkStats {
        let mut s = ChunkStats::default();
        for (_, e) in self.map.iter() {
            let r = e.refcount as u64;
            s.total_chunks += r;
            s.total_unique_chunks += 1;
            s.total_size += r * e.size as u64;
            s.total_csize += r * e.csize as u64;
            s.unique_size += e.size as u64;
            s.unique_csize += e.csize as u64;
        }
        s
    }

    /// Writes the index to `path` (crash-safe).
    pub fn save(&self, path: &Path) -> Result<(), CacheError> {
        let mut payload = Vec::with_capacity(8 + self.map.len() * ENTRY_LEN);
        payload.extend_from_slice(&(self.map.len() as u64).to_le_bytes());
        for (id, e) in self.map.iter() {
            payload.extend_from_slice(id);
            payload.extend_from_slice(&e.refcount.to_le_bytes());
            payload.extend_from_slice(&e.size.to_le_bytes());
            payload.extend_from_slice(&e.csize.to_le_bytes());
        }
        write_atomically(path, MAGIC, &payload)
    }

    /// Reads an index written by [`ChunkIndex::save`]; `Ok(None)` when there is none.
    pub fn load(path: &Path) -> Result<Option<ChunkIndex>, CacheError> {
        let Some(payload) = read_checked(path, MAGIC)? else {
            return Ok(None);
        };
        let corrupt = || CacheError::Corrupt {
            path: path.to_path_buf(),
            reason: "wrong entry count".into(),
        };
        let count_bytes: [u8; 8] = payload
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(corrupt)?;
        let count = u64::from_le_bytes(count_bytes) as usize;
        let body = &payload[8..];
        if body.len() != count.checked_mul(ENTRY_LEN).ok_or_else(corrupt)? {
            return Err(corrupt());
        }
        let mut map = IdTable::with_capacity(count);
        for rec in body.chunks_exact(ENTRY_LEN) {
            let mut id = [0u8; 32];
            id.copy_from_slice(&rec[..32]);
            let u = |i: usize| u32::from_le_bytes([rec[i], rec[i + 1], rec[i + 2], rec[i + 3]]);
            let entry = ChunkEntry {
                refcount: u(32),
                size: u(36),
                csize: u(40),
            };
            // save never writes a chunk without references, nor one id twice
            if entry.is_vacant() || map.insert(id, entry).is_some() {
                return Err(CacheError::Corrupt {
                    path: path.to_path_buf(),
                    reason: format!("bad entry for chunk {}", hex::encode(id)),
                });
            }
        }
        Ok(Some(ChunkIndex { map }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ObjectId {
        [n; 32]
    }

    #[test]
    fn reference_counting_like_borg() {
        let mut ix = ChunkIndex::new();
        assert_eq!(ix.add(&id(1), 10, 5), Ok(1));
        assert_eq!(ix.add(&id(1), 10, 5), Ok(2));
        assert!(ix.add(&id(1), 11, 5).is_err());
        assert_eq!(ix.incref(&id(1)).map(|e| e.refcount), Some(3));
        assert_eq!(ix.incref(&id(9)), None);
        assert_eq!(ix.decref(&id(1)), Some(false));
        assert_eq!(ix.decref(&id(1)), Some(false));
        assert_eq!(ix.decref(&id(1)), Some(true));
        assert!(!ix.contains(&id(1)));
        assert_eq!(ix.decref(&id(1)), None);
    }

    #[test]
    fn saturated_entries_are_never_freed() {
        let mut ix = ChunkIndex::new();
        ix.add(&id(2), 1, 1).expect("add");
        let mut other = ChunkIndex::new();
        other.map.insert(
            id(2),
            ChunkEntry {
                refcount: MAX_REFCOUNT,
                size: 1,
                csize: 1,
            },
        );
        ix.merge(&other);
        assert_eq!(ix.get(&id(2)).map(|e| e.refcount), Some(MAX_REFCOUNT));
        assert_eq!(ix.decref(&id(2)), Some(false));
        assert_eq!(ix.get(&id(2)).map(|e| e.refcount), Some(MAX_REFCOUNT));
    }

    #[test]
    fn stats_and_persistence() {
        let mut ix = ChunkIndex::new();
        ix.add(&id(1), 100, 50).expect("add");
        ix.add(&id(1), 100, 50).expect("add");
        ix.add(&id(2), 10, 7).expect("add");
        let s = ix.stats();
        assert_eq!(
            s,
            ChunkStats {
                total_chunks: 3,
                total_unique_chunks: 2,
                total_size: 210,
                total_csize: 107,
                unique_size: 110,
                unique_csize: 57
            }
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("rborg-chunks");
        ix.save(&p).expect("save");
        assert_eq!(ChunkIndex::load(&p).expect("load"), Some(ix));
        assert_eq!(
            ChunkIndex::load(&dir.path().join("none")).expect("load"),
            None
        );
    }
}
