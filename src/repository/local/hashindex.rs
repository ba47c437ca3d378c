//! Borg's `NSIndex`: the hash table in `index.N`, mapping an object id to the segment and
//! offset of its current PUT (`_hashindex.c`, `hashindex.pyx`).
//!
//! The file is the in-memory table verbatim: an 18-byte header (`BORG_IDX`, entry count,
//! bucket count, key size 32, value size 8), then every bucket as `key (32) | segment (u32 LE)
//! | offset (u32 LE)`. A segment word of `0xffffffff` marks an empty bucket, `0xfffffffe` a
//! deleted one. Keys live at `u32 LE of key[0..4] % num_buckets`, with linear probing. This
//! module reproduces the table's growth, shrinking and tombstone rules so that the bucket
//! order (which `list` exposes) behaves as borg's does.

use crate::repository::ObjectId;

/// The file magic.
pub const MAGIC: &[u8; 8] = b"BORG_IDX";
/// Length of the file header.
pub const HEADER_SIZE: usize = 18;
const KEY_SIZE: usize = 32;
const VALUE_SIZE: usize = 8;
const BUCKET_SIZE: usize = KEY_SIZE + VALUE_SIZE;
const EMPTY: u32 = 0xffff_ffff;
const DELETED: u32 = 0xffff_fffe;
/// Largest segment number an index value can hold (`_MAX_VALUE`).
pub const MAX_VALUE: u32 = 0xffff_fbff;

/// The table sizes borg uses (`hash_sizes[]`).
const HASH_SIZES: &[u32] = &[
    1031, 2053, 4099, 8209, 16411, 32771, 65537, 131101, 262147, 445649, 757607, 1287917, 2189459,
    3065243, 4291319, 6007867, 8410991, 11775359, 16485527, 23079703, 27695653, 33234787, 39881729,
    47858071, 57429683, 68915617, 82698751, 99238507, 119086189, 144378011, 157223263, 173476439,
    190253911, 209915011, 230493629, 253169431, 278728861, 306647623, 337318939, 370742809,
    408229973, 449387209, 493428073, 543105119, 596976533, 657794869, 722676499, 795815791,
    874066969, 962279771, 1057701643, 1164002657, 1280003147, 1407800297, 1548442699, 1703765389,
    1873768367, 2062383853,
];
const MIN_LOAD: f64 = 0.25;
const MAX_LOAD: f64 = 0.75;
const MAX_EFF_LOAD: f64 = 0.93;

/// Why an index file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HashIndexError {
    /// The file is shorter than its header.
    #[error("index file is too short for its header")]
    ShortHeader,
    /// Wrong magic.
    #[error("unknown index file magic")]
    BadMagic,
    /// Key or value size is not 32/8.
    #[error("index has key size {0} and value size {1}, expected 32 and 8")]
    BadSizes(u8, u8),
    /// Counts out of range.
    #[error("index header has {0} entries in {1} buckets")]
    BadCounts(i32, i32),
    /// File length disagrees with the bucket count.
    #[error("index file has {actual} bytes, the header promises {expected}")]
    BadLength {
        /// Length from the header.
        expected: u64,
        /// Real length.
        actual: u64,
    },
    /// `list` was given a marker that is not in the index.
    #[error("marker not found")]
    MarkerNotFound,
}

#[derive(Clone, Copy)]
struct Bucket {
    key: ObjectId,
    segment: u32,
    offset: u32,
}

const EMPTY_BUCKET: Bucket = Bucket {
    key: [0; 32],
    segment: EMPTY,
    offset: 0,
};

impl Bucket {
    fn is_used(&self) -> bool {
        self.segment != EMPTY && self.segment != DELETED
    }
}

/// The repository index: object id → (segment, offset).
#[derive(Clone)]
pub struct NsIndex {
    buckets: Vec<Bucket>,
    num_entries: usize,
    num_empty: usize,
}

fn size_idx(size: usize) -> usize {
    HASH_SIZES
        .iter()
        .position(|&s| s as usize >= size)
        .unwrap_or(HASH_SIZES.len() - 1)
}

fn fit_size(size: usize) -> usize {
    HASH_SIZES[size_idx(size)] as usize
}

fn grow_size(current: usize) -> usize {
    HASH_SIZES[(size_idx(current) + 1).min(HASH_SIZES.len() - 1)] as usize
}

fn shrink_size(current: usize) -> usize {
    HASH_SIZES[size_idx(current).saturating_sub(1)] as usize
}

fn lower_limit(num_buckets: usize) -> usize {
    if num_buckets <= HASH_SIZES[0] as usize {
        0
    } else {
        (num_buckets as f64 * MIN_LOAD) as usize
    }
}

fn upper_limit(num_buckets: usize) -> usize {
    if num_buckets >= *HASH_SIZES.last().unwrap_or(&0) as usize {
        num_buckets
    } else {
        (num_buckets as f64 * MAX_LOAD) as usize
    }
}

fn min_empty(num_buckets: usize) -> usize {
    1 + (num_buckets as f64 * (1.0 - MAX_EFF_LOAD)) as usize
}

impl Default for NsIndex {
    fn default() -> Self {
        NsIndex::with_capacity(0)
    }
}

impl std::fmt::Debug for NsIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "NsIndex({} entries in {} buckets)",
            self.num_entries,
            self.buckets.len()
        )
    }
}

impl NsIndex {
    /// An empty index with room for at least `capacity` buckets (rounded up to borg's sizes).
    pub fn with_capacity(capacity: usize) -> NsIndex {
        let n = fit_size(capacity);
        NsIndex {
            buckets: vec![EMPTY_BUCKET; n],
            num_entries: 0,
            num_empty: n,
        }
    }

    /// Number of objects.
    pub fn len(&self) -> usize {
        self.num_entries
    }

    /// Whether there are no objects.
    pub fn is_empty(&self) -> bool {
        self.num_entries == 0
    }

    /// Number of buckets (for the file size).
    pub fn num_buckets(&self) -> usize {
        self.buckets.len()
    }

    fn home(&self, key: &ObjectId) -> usize {
        u32::from_le_bytes([key[0], key[1], key[2], key[3]]) as usize % self.buckets.len()
    }

    /// Finds `key`; on a miss returns the first tombstone or empty bucket seen, where an insert
    /// belongs (`hashindex_lookup`). A hit is moved into an earlier tombstone, as borg does.
    fn lookup(&mut self, key: &ObjectId) -> Result<usize, usize> {
        let n = self.buckets.len();
        let start = self.home(key);
        let mut idx = start;
        let mut deleted: Option<usize> = None;
        loop {
            let b = self.buckets[idx];
            if b.segment == EMPTY {
                break;
            }
            if b.segment == DELETED {
                deleted.get_or_insert(idx);
            } else if &b.key == key {
                if let Some(d) = deleted {
                    self.buckets[d] = b;
                    self.buckets[idx].segment = DELETED;
                    return Ok(d);
                }
                return Ok(idx);
            }
            idx = (idx + 1) % n;
            if idx == start {
                break;
            }
        }
        Err(deleted.unwrap_or(idx))
    }

    /// The (segment, offset) of an object.
    pub fn get(&self, key: &ObjectId) -> Option<(u32, u32)> {
        let n = self.buckets.len();
        let start = self.home(key);
        let mut idx = start;
        loop {
            let b = &self.buckets[idx];
            if b.segment == EMPTY {
                return None;
            }
            if b.segment != DELETED && &b.key == key {
                return Some((b.segment, b.offset));
            }
            idx = (idx + 1) % n;
            if idx == start {
                return None;
            }
        }
    }

    /// Whether the object is present.
    pub fn contains(&self, key: &ObjectId) -> bool {
        self.get(key).is_some()
    }

    fn resize(&mut self, capacity: usize) {
        let mut new = NsIndex::with_capacity(capacity);
        for b in self.buckets.iter().filter(|b| b.is_used()) {
            new.insert(&b.key, b.segment, b.offset);
        }
        *self = new;
    }

    /// Sets the location of an object (`hashindex_set`).
    pub fn insert(&mut self, key: &ObjectId, segment: u32, offset: u32) {
        match self.lookup(key) {
            Ok(idx) => {
                self.buckets[idx].segment = segment;
                self.buckets[idx].offset = offset;
            }
            Err(mut idx) => {
                let n = self.buckets.len();
                if self.num_entries > upper_limit(n) {
                    let next = grow_size(n);
                    if next != n {
                        self.resize(next);
                        idx = match self.lookup(key) {
                            Ok(i) | Err(i) => i,
                        };
                    }
                }
                if self.buckets[idx].segment == EMPTY {
                    if self.num_empty <= min_empty(self.buckets.len()) {
                        let same = self.buckets.len();
                        self.resize(same);
                        idx = match self.lookup(key) {
                            Ok(i) | Err(i) => i,
                        };
                    }
                    self.num_empty -= 1;
                }
                self.buckets[idx] = Bucket {
                    key: *key,
                    segment,
                    offset,
                };
                self.num_entries += 1;
            }
        }
    }

    /// Removes an object, returning where it was (`hashindex_delete`).
    pub fn remove(&mut self, key: &ObjectId) -> Option<(u32, u32)> {
        let idx = self.lookup(key).ok()?;
        let b = self.buckets[idx];
        self.buckets[idx].segment = DELETED;
        self.num_entries -= 1;
        if self.num_entries < lower_limit(self.buckets.len()) {
            let smaller = shrink_size(self.buckets.len());
            self.resize(smaller);
        }
        Some((b.segment, b.offset))
    }

    /// Every (id, segment, offset) in bucket order.
    pub fn iter(&self) -> impl Iterator<Item = (ObjectId, u32, u32)> + '_ {
        self.buckets
            .iter()
            .filter(|b| b.is_used())
            .map(|b| (b.key, b.segment, b.offset))
    }

    /// Up to `limit` ids in bucket order, starting after the bucket holding `marker`
    /// (`NSIndex.iteritems(marker=...)`).
    pub fn list(
        &self,
        limit: Option<usize>,
        marker: Option<&ObjectId>,
    ) -> Result<Vec<ObjectId>, HashIndexError> {
        let start = match marker {
            None => 0,
            Some(m) => {
                let pos = self
                    .buckets
                    .iter()
                    .position(|b| b.is_used() && &b.key == m)
                    .ok_or(HashIndexError::MarkerNotFound)?;
                pos + 1
            }
        };
        Ok(self.buckets[start..]
            .iter()
            .filter(|b| b.is_used())
            .take(limit.unwrap_or(usize::MAX))
            .map(|b| b.key)
            .collect())
    }

    /// Parses an `index.N` file (`hashindex_read`).
    pub fn read(bytes: &[u8]) -> Result<NsIndex, HashIndexError> {
        if bytes.len() < HEADER_SIZE {
            return Err(HashIndexError::ShortHeader);
        }
        if &bytes[..8] != MAGIC {
            return Err(HashIndexError::BadMagic);
        }
        let num_entries = i32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        let num_buckets = i32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
        let (key_size, value_size) = (bytes[16], bytes[17]);
        if key_size as usize != KEY_SIZE || value_size as usize != VALUE_SIZE {
            return Err(HashIndexError::BadSizes(key_size, value_size));
        }
        if num_buckets < 1 || num_entries < 0 || num_entries > num_buckets {
            return Err(HashIndexError::BadCounts(num_entries, num_buckets));
        }
        let expected = HEADER_SIZE as u64 + num_buckets as u64 * BUCKET_SIZE as u64;
        if bytes.len() as u64 != expected {
            return Err(HashIndexError::BadLength {
                expected,
                actual: bytes.len() as u64,
            });
        }
        let mut buckets = Vec::with_capacity(num_buckets as usize);
        let mut used = 0usize;
        let mut empty = 0usize;
        for raw in bytes[HEADER_SIZE..].chunks_exact(BUCKET_SIZE) {
            let mut key = [0u8; 32];
            key.copy_from_slice(&raw[..KEY_SIZE]);
            let segment = u32::from_le_bytes([raw[32], raw[33], raw[34], raw[35]]);
            let offset = u32::from_le_bytes([raw[36], raw[37], raw[38], raw[39]]);
            let b = Bucket {
                key,
                segment,
                offset,
            };
            if b.is_used() {
                used += 1;
            } else if segment == EMPTY {
                empty += 1;
            }
            buckets.push(b);
        }
        if used != num_entries as usize {
            // A structurally corrupt index: borg's resize would refuse it.
            return Err(HashIndexError::BadCounts(num_entries, num_buckets));
        }
        let mut index = NsIndex {
            buckets,
            num_entries: used,
            num_empty: empty,
        };
        if index.num_empty < min_empty(index.buckets.len()) {
            let same = index.buckets.len();
            index.resize(same);
        }
        Ok(index)
    }

    /// The `index.N` file bytes (`hashindex_write`).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_SIZE + self.buckets.len() * BUCKET_SIZE);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.num_entries as i32).to_le_bytes());
        out.extend_from_slice(&(self.buckets.len() as i32).to_le_bytes());
        out.push(KEY_SIZE as u8);
        out.push(VALUE_SIZE as u8);
        for b in &self.buckets {
            out.extend_from_slice(&b.key);
            out.extend_from_slice(&b.segment.to_le_bytes());
            out.extend_from_slice(&b.offset.to_le_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> ObjectId {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&n.wrapping_mul(2654435761).to_le_bytes());
        k[4..8].copy_from_slice(&n.to_le_bytes());
        k
    }

    #[test]
    fn empty_index_is_41258_bytes() {
        let idx = NsIndex::default();
        let bytes = idx.to_bytes();
        assert_eq!(bytes.len(), 41258);
        assert_eq!(&bytes[..8], MAGIC);
        // An empty bucket: zero key, segment word 0xffffffff, offset 0.
        assert_eq!(
            &bytes[18 + 32..18 + 40],
            &[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]
        );
    }

    #[test]
    fn keys_sit_in_their_home_bucket() {
        let mut idx = NsIndex::default();
        let mut k = [0u8; 32];
        k[0] = 5;
        idx.insert(&k, 3, 8);
        let bytes = idx.to_bytes();
        let b = 18 + 5 * 40;
        assert_eq!(&bytes[b..b + 32], &k);
        assert_eq!(&bytes[b + 32..b + 40], &[3, 0, 0, 0, 8, 0, 0, 0]);
    }

    #[test]
    fn grows_shrinks_and_roundtrips() {
        let mut idx = NsIndex::default();
        for n in 0..5000 {
            idx.insert(&key(n), n, n + 8);
        }
        assert_eq!(idx.len(), 5000);
        assert!(idx.num_buckets() > 5000);
        let back = NsIndex::read(&idx.to_bytes()).unwrap();
        assert_eq!(back.len(), 5000);
        for n in 0..5000 {
            assert_eq!(back.get(&key(n)), Some((n, n + 8)));
        }
        for n in 0..4990 {
            assert_eq!(idx.remove(&key(n)), Some((n, n + 8)));
        }
        assert_eq!(idx.remove(&key(1)), None);
        assert_eq!(idx.len(), 10);
        assert_eq!(idx.num_buckets(), 1031);
        for n in 4990..5000 {
            assert_eq!(idx.get(&key(n)), Some((n, n + 8)));
        }
    }

    #[test]
    fn tombstones_do_not_hide_keys() {
        let mut idx = NsIndex::default();
        for n in 0..2000 {
            idx.insert(&key(n), 1, 1);
            if n % 3 == 0 {
                idx.remove(&key(n));
            }
        }
        for n in 0..2000 {
            assert_eq!(idx.contains(&key(n)), n % 3 != 0, "key {n}");
        }
    }

    #[test]
    fn list_pages_through_bucket_order() {
        let mut idx = NsIndex::default();
        for n in 0..100 {
            idx.insert(&key(n), 0, 8);
        }
        let all = idx.list(None, None).unwrap();
        let mut paged = Vec::new();
        let mut marker = None;
        loop {
            let page = idx.list(Some(7), marker.as_ref()).unwrap();
            if page.is_empty() {
                break;
            }
            marker = page.last().copied();
            paged.extend(page);
        }
        assert_eq!(all, paged);
        assert_eq!(all.len(), 100);
        assert_eq!(
            idx.list(None, Some(&[9; 32])),
            Err(HashIndexError::MarkerNotFound)
        );
    }

    #[test]
    fn bad_files_are_refused() {
        let bytes = NsIndex::default().to_bytes();
        assert_eq!(
            NsIndex::read(&bytes[..100]).unwrap_err(),
            HashIndexError::BadLength {
                expected: 41258,
                actual: 100
            }
        );
        let mut b = bytes.clone();
        b[0] = b'X';
        assert_eq!(NsIndex::read(&b).unwrap_err(), HashIndexError::BadMagic);
    }
}
