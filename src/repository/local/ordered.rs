//! A map that keeps insertion order as a Python dict does.
//!
//! Borg's hints file is packed from plain dicts (`segments`, `compact`, `shadow_index`), so
//! their keys appear in the order the transaction first touched them. Keeping that order lets
//! rborg write the same bytes as borg for the same operations.

use std::collections::HashMap;
use std::hash::Hash;

/// An insertion-ordered map: updating a key keeps its place, removing and re-adding moves it
/// to the end.
#[derive(Debug, Clone)]
pub struct OrderedMap<K, V> {
    slots: Vec<Option<(K, V)>>,
    pos: HashMap<K, usize>,
}

impl<K, V> Default for OrderedMap<K, V> {
    fn default() -> Self {
        OrderedMap {
            slots: Vec::new(),
            pos: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq + Copy, V: PartialEq> PartialEq for OrderedMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl<K: Hash + Eq + Copy, V: PartialEq> Eq for OrderedMap<K, V> {}

impl<K: Hash + Eq + Copy, V> OrderedMap<K, V> {
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.pos.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.pos.is_empty()
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        self.slots.clear();
        self.pos.clear();
    }

    /// The value of a key.
    pub fn get(&self, key: &K) -> Option<&V> {
        let i = *self.pos.get(key)?;
        self.slots[i].as_ref().map(|(_, v)| v)
    }

    /// Mutable access to the value of a key.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let i = *self.pos.get(key)?;
        self.slots[i].as_mut().map(|(_, v)| v)
    }

    /// Whether the key is present.
    pub fn contains_key(&self, key: &K) -> bool {
        self.pos.contains_key(key)
    }

    /// Sets a value; a new key goes to the end.
    pub fn insert(&mut self, key: K, value: V) {
        match self.pos.get(&key) {
            Some(&i) => self.slots[i] = Some((key, value)),
            None => {
                self.pos.insert(key, self.slots.len());
                self.slots.push(Some((key, value)));
            }
        }
    }

    /// Removes a key, returning its value.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let i = self.pos.remove(key)?;
        let value = self.slots[i].take().map(|(_, v)| v);
        if self.slots.len() > 32 && self.pos.len() < self.slots.len() / 2 {
            self.slots.retain(Option::is_some);
            for (i, slot) in self.slots.iter().enumerate() {
                if let Some((k, _)) = slot {
                    self.pos.insert(*k, i);
                }
            }
        }
        value
    }

    /// Every (key, value) in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (K, &V)> + '_ {
        self.slots.iter().flatten().map(|(k, v)| (*k, v))
    }

    /// Every value, mutably, in insertion order.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> + '_ {
        self.slots.iter_mut().flatten().map(|(_, v)| v)
    }
}

impl<K: Hash + Eq + Copy, V: Default> OrderedMap<K, V> {
    /// The value of a key, inserting a default at the end if missing (`dict.setdefault`,
    /// `defaultdict.__getitem__`).
    pub fn entry_or_default(&mut self, key: K) -> &mut V {
        if !self.pos.contains_key(&key) {
            self.insert(key, V::default());
        }
        let i = self.pos[&key];
        match self.slots[i].as_mut() {
            Some((_, v)) => v,
            None => unreachable!("position map points at a live slot"),
        }
    }
}

impl<K: Hash + Eq + Copy, V> FromIterator<(K, V)> for OrderedMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut m = OrderedMap::default();
        for (k, v) in iter {
            m.insert(k, v);
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_python_dict() {
        let mut m: OrderedMap<u64, i64> = OrderedMap::default();
        *m.entry_or_default(5) += 1;
        m.insert(1, 7);
        *m.entry_or_default(5) += 1;
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![(5, &2), (1, &7)]);
        assert_eq!(m.remove(&5), Some(2));
        m.insert(5, 0);
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![(1, &7), (5, &0)]);
        for n in 100..200 {
            m.insert(n, n as i64);
        }
        for n in 100..190 {
            m.remove(&n);
        }
        assert_eq!(m.len(), 12);
        assert_eq!(m.get(&195), Some(&195));
        assert_eq!(m.iter().next(), Some((1, &7)));
    }
}
