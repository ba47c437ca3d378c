//! A flat open-addressing hash table keyed by 32-byte ids, for the chunk index and the files
//! cache: one array of (id, value) slots, nothing else per entry.
//!
//! Why not `std::collections::HashMap`: its tables double, so right after a resize they are
//! 44 % full and an entry costs 2.3 times its slot; while resizing, the old and the new table
//! (three times the data) are alive. This table grows by a quarter and is kept between 70 %
//! and 87.5 % full, so an entry costs at most 1.43 slots, and 2.6 slots while it grows.
//!
//! Ids are hash outputs (chunk ids, path hashes), uniformly spread, so a slot's home is taken
//! from the id's first eight bytes, multiplied by a seed of each table's own. The seed
//! matters: a table lists its entries in the order of their homes, and feeding that order
//! into another table with the same homes while it grows piles every entry into one cluster
//! at its start (quadratic; loading a saved cache did exactly that). Collisions are resolved
//! by linear probing with Robin Hood ordering (an entry never sits farther from its home than
//! the entries it passed), which keeps probe sequences short at high load and lets a lookup
//! stop early. Empty slots are marked by
//! a value that no stored entry can have ([`Vacant`]), so no byte per slot is spent on a flag.

use crate::repository::ObjectId;

/// A value type with one bit pattern that real entries never have, used for empty slots.
pub(crate) trait Vacant: Copy {
    /// The value of an empty slot.
    const VACANT: Self;
    /// Whether this is the empty-slot value.
    fn is_vacant(&self) -> bool;
}

/// Fill limit: 7/8 of the slots.
const MAX_LOAD_NUM: usize = 7;
const MAX_LOAD_DEN: usize = 8;
const MIN_SLOTS: usize = 16;

/// The table. [`Vacant::VACANT`] is never stored (`insert` of it removes the id instead).
pub(crate) struct IdTable<V: Vacant> {
    slots: Vec<(ObjectId, V)>,
    len: usize,
    /// Multiplies every home; odd, random per table (kept when the table grows).
    seed: u64,
}

impl<V: Vacant> Default for IdTable<V> {
    fn default() -> Self {
        use std::hash::{BuildHasher, Hasher};
        // std's per-instance random hash keys, as a seed source without a syscall per table
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
            | 1;
        IdTable {
            slots: Vec::new(),
            len: 0,
            seed,
        }
    }
}

impl<V: Vacant> Clone for IdTable<V> {
    /// A copy; an empty table gets a seed of its own (it is about to be filled, perhaps in
    /// the order of the table it was copied from).
    fn clone(&self) -> Self {
        if self.len == 0 {
            return IdTable::default();
        }
        IdTable {
            slots: self.slots.clone(),
            len: self.len,
            seed: self.seed,
        }
    }
}

/// The slot an id would sit in if nothing collided: its first eight bytes times the table's
/// odd seed (a different bijection per table, so one table's order is random to another),
/// scaled to the table size (multiply-shift, so the size need not be a power of two).
fn home(id: &ObjectId, seed: u64, slots: usize) -> usize {
    let mut first = [0u8; 8];
    first.copy_from_slice(&id[..8]);
    let x = u64::from_le_bytes(first).wrapping_mul(seed);
    ((x as u128 * slots as u128) >> 64) as usize
}

/// The slots needed to hold `n` entries under the fill limit.
fn slots_for(n: usize) -> usize {
    (n.saturating_mul(MAX_LOAD_DEN) / MAX_LOAD_NUM + 1).max(MIN_SLOTS)
}

impl<V: Vacant> IdTable<V> {
    /// A table that holds `n` entries without growing.
    pub(crate) fn with_capacity(n: usize) -> Self {
        let mut t = IdTable::default();
        if n > 0 {
            t.slots = vec![([0u8; 32], V::VACANT); slots_for(n)];
        }
        t
    }

    /// The number of entries.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// How far the entry in slot `i` sits from its home.
    fn distance(&self, i: usize) -> usize {
        let n = self.slots.len();
        let h = home(&self.slots[i].0, self.seed, n);
        if i >= h {
            i - h
        } else {
            i + n - h
        }
    }

    /// Where an id is (`Ok(slot)`), or where it would go (`Err((slot, distance))`): the first
    /// empty slot or the first entry nearer its home than the id would be there.
    fn probe(&self, id: &ObjectId) -> Result<usize, (usize, usize)> {
        let n = self.slots.len();
        let mut i = home(id, self.seed, n);
        let mut d = 0;
        loop {
            let (key, value) = &self.slots[i];
            if value.is_vacant() {
                return Err((i, d));
            }
            if key == id {
                return Ok(i);
            }
            // Robin Hood order: had the id been here, it would sit before this entry.
            if self.distance(i) < d {
                return Err((i, d));
            }
            i += 1;
            if i == n {
                i = 0;
            }
            d += 1;
        }
    }

    fn find(&self, id: &ObjectId) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        self.probe(id).ok()
    }

    /// The value of an id.
    pub(crate) fn get(&self, id: &ObjectId) -> Option<&V> {
        self.find(id).map(|i| &self.slots[i].1)
    }

    /// The value of an id, to change in place (it must not be made vacant).
    pub(crate) fn get_mut(&mut self, id: &ObjectId) -> Option<&mut V> {
        self.find(id).map(move |i| &mut self.slots[i].1)
    }

    /// Stores a value, returning the one it replaces. A vacant value is not stored (and the
    /// id is removed), as it would read as an empty slot.
    pub(crate) fn insert(&mut self, id: ObjectId, value: V) -> Option<V> {
        if value.is_vacant() {
            return self.remove(&id);
        }
        let (slot, inserted) = self.get_or_insert(id, value);
        if inserted {
            None
        } else {
            Some(std::mem::replace(slot, value))
        }
    }

    /// The value of an id, after storing `value` for it if it had none (then `true`), in one
    /// probe. `value` must not be vacant.
    pub(crate) fn get_or_insert(&mut self, id: ObjectId, value: V) -> (&mut V, bool) {
        debug_assert!(!value.is_vacant());
        // Grow first (perhaps needlessly, when the id is there): growing moves every slot.
        if (self.len + 1) * MAX_LOAD_DEN > self.slots.len() * MAX_LOAD_NUM {
            self.grow();
        }
        match self.probe(&id) {
            Ok(i) => (&mut self.slots[i].1, false),
            Err((i, d)) => {
                self.place_from(i, d, (id, value));
                self.len += 1;
                (&mut self.slots[i].1, true)
            }
        }
    }

    /// Puts an entry known to be absent into a table with room for it, probing from slot `i`
    /// at distance `d` from its home; displaced entries move on.
    fn place_from(&mut self, mut i: usize, mut d: usize, mut entry: (ObjectId, V)) {
        let n = self.slots.len();
        loop {
            if self.slots[i].1.is_vacant() {
                self.slots[i] = entry;
                return;
            }
            let resident = self.distance(i);
            if resident < d {
                // The resident is nearer its home than we are: it moves on, we stay.
                std::mem::swap(&mut self.slots[i], &mut entry);
                d = resident;
            }
            i += 1;
            if i == n {
                i = 0;
            }
            d += 1;
        }
    }

    /// Grows by a quarter (not doubling: see the module comment).
    fn grow(&mut self) {
        let target = slots_for(self.len + 1).max(self.slots.len() + self.slots.len() / 4);
        let old = std::mem::replace(&mut self.slots, vec![([0u8; 32], V::VACANT); target]);
        for (id, value) in old {
            if !value.is_vacant() {
                let home = home(&id, self.seed, self.slots.len());
                self.place_from(home, 0, (id, value));
            }
        }
    }

    /// Removes an id, returning its value.
    pub(crate) fn remove(&mut self, id: &ObjectId) -> Option<V> {
        let mut i = self.find(id)?;
        let value = self.slots[i].1;
        self.len -= 1;
        // Backward shift: the entries after it that are away from home move up one slot, so
        // no tombstone is left and lookups can still stop at the first empty slot.
        let n = self.slots.len();
        loop {
            let next = if i + 1 == n { 0 } else { i + 1 };
            if self.slots[next].1.is_vacant() || self.distance(next) == 0 {
                self.slots[i] = ([0u8; 32], V::VACANT);
                return Some(value);
            }
            self.slots[i] = self.slots[next];
            i = next;
        }
    }

    /// All entries, in table order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&ObjectId, &V)> {
        self.slots
            .iter()
            .filter(|(_, v)| !v.is_vacant())
            .map(|(k, v)| (k, v))
    }

    /// All values, to change in place (they must not be made vacant).
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.slots
            .iter_mut()
            .filter(|(_, v)| !v.is_vacant())
            .map(|(_, v)| v)
    }
}

impl<V: Vacant + PartialEq> PartialEq for IdTable<V> {
    /// Same entries, whatever the table sizes and slot order.
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl<V: Vacant + Eq> Eq for IdTable<V> {}

impl<V: Vacant + std::fmt::Debug> std::fmt::Debug for IdTable<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(k, v)| (hex::encode(k), v)))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    impl Vacant for u32 {
        const VACANT: u32 = 0;
        fn is_vacant(&self) -> bool {
            *self == 0
        }
    }

    fn id(n: u64) -> ObjectId {
        crate::pipeline::bench_data::spread_id(n)
    }

    /// Checks every invariant: the count, each entry findable, Robin Hood order (an entry's
    /// distance is at most one more than its predecessor's).
    fn check(t: &IdTable<u32>, model: &HashMap<ObjectId, u32>) {
        assert_eq!(t.len(), model.len());
        assert_eq!(t.iter().count(), model.len());
        for (k, v) in model {
            assert_eq!(t.get(k), Some(v));
        }
        let n = t.slots.len();
        for i in 0..n {
            if t.slots[i].1.is_vacant() {
                continue;
            }
            let prev = if i == 0 { n - 1 } else { i - 1 };
            let d = t.distance(i);
            if d > 0 {
                assert!(!t.slots[prev].1.is_vacant(), "gap before a displaced entry");
                assert!(t.distance(prev) + 1 >= d, "Robin Hood order broken at {i}");
            }
        }
        if n > 0 {
            assert!(t.len() * MAX_LOAD_DEN <= n * MAX_LOAD_NUM);
        }
    }

    #[test]
    fn behaves_like_a_map_through_inserts_replaces_and_removes() {
        let mut t = IdTable::<u32>::default();
        let mut model = HashMap::new();
        assert_eq!(t.get(&id(1)), None);
        assert_eq!(t.remove(&id(1)), None);
        let mut x = 7u64;
        for step in 0..40_000u32 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let k = id(x >> 52); // 4096 distinct ids: many hits, replaces and removes
            match x >> 62 {
                0 => assert_eq!(t.remove(&k), model.remove(&k)),
                _ => assert_eq!(t.insert(k, step + 1), model.insert(k, step + 1)),
            }
            if step % 4000 == 0 {
                check(&t, &model);
            }
        }
        check(&t, &model);
        for v in t.values_mut() {
            *v += 1;
        }
        for v in model.values_mut() {
            *v += 1;
        }
        check(&t, &model);
        // Storing the vacant value removes.
        let (k, _) = model
            .iter()
            .next()
            .map(|(k, v)| (*k, *v))
            .expect("an entry");
        t.insert(k, 0);
        model.remove(&k);
        check(&t, &model);
    }

    #[test]
    fn colliding_homes_and_wrap_around() {
        // Ids whose first eight bytes are equal share a home; ones at the very top wrap to
        // the start of the table.
        let mut t = IdTable::<u32>::with_capacity(10);
        let mut model = HashMap::new();
        for i in 0..12u8 {
            let mut k = [0xffu8; 32];
            k[31] = i;
            t.insert(k, i as u32 + 1);
            model.insert(k, i as u32 + 1);
            let mut k = [0u8; 32];
            k[31] = i;
            t.insert(k, i as u32 + 100);
            model.insert(k, i as u32 + 100);
        }
        check(&t, &model);
        for i in (0..12u8).step_by(3) {
            let mut k = [0xffu8; 32];
            k[31] = i;
            assert_eq!(t.remove(&k), model.remove(&k));
            check(&t, &model);
        }
        assert_eq!(t, t.clone());
    }

    #[test]
    fn another_tables_order_does_not_cluster() {
        // A full table's entries, copied in its order into a growing table: with one home
        // function for both, the entries copied since the last growth all have homes in a
        // small part of the table and pile up there (loading 200,000 files took minutes).
        let mut a = IdTable::<u32>::with_capacity(20_000);
        for i in 0..20_000 {
            a.insert(id(i), 1);
        }
        let mut b = IdTable::<u32>::default();
        let longest = |b: &IdTable<u32>| {
            (0..b.slots.len())
                .filter(|&i| !b.slots[i].1.is_vacant())
                .map(|i| b.distance(i))
                .max()
                .unwrap_or(0)
        };
        for (n, (k, v)) in a.iter().enumerate() {
            b.insert(*k, *v);
            if n % 1000 == 999 {
                let l = longest(&b);
                assert!(l < 100, "a probe sequence of {l} after {} entries", n + 1);
            }
        }
        assert_eq!(a, b);
    }

    #[test]
    fn with_capacity_does_not_grow_and_equality_ignores_layout() {
        let mut a = IdTable::<u32>::with_capacity(1000);
        let slots = a.slots.len();
        for i in 0..1000 {
            a.insert(id(i), i as u32 + 1);
        }
        assert_eq!(a.slots.len(), slots);
        let mut b = IdTable::<u32>::default();
        for i in (0..1000).rev() {
            b.insert(id(i), i as u32 + 1);
        }
        assert_eq!(a, b);
        b.insert(id(5), 99);
        assert_ne!(a, b);
    }
}
