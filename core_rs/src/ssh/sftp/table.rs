//! A bounded map in insertion order: the oldest entry makes room for a new one past the cap.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// Up to `cap` entries; inserting past the cap drops the oldest (counted in [`Table::dropped`]).
#[derive(Debug)]
pub struct Table<K, V> {
    cap: usize,
    next: u64,
    entries: HashMap<K, (u64, V)>,
    order: BTreeMap<u64, K>,
    dropped: u64,
}

impl<K: Hash + Eq + Clone, V> Table<K, V> {
    pub fn new(cap: usize) -> Self {
        Self { cap: cap.max(1), next: 0, entries: HashMap::new(), order: BTreeMap::new(), dropped: 0 }
    }

    /// Insert (a new entry under an existing key replaces it and counts as new); returns the
    /// entry it replaced and the oldest entry dropped for room, if any.
    pub fn insert(&mut self, key: K, value: V) -> (Option<V>, Option<V>) {
        let replaced = self.remove(&key);
        let mut evicted = None;
        if self.entries.len() >= self.cap {
            if let Some((_, old)) = self.order.pop_first() {
                evicted = self.entries.remove(&old).map(|(_, v)| v);
                self.dropped += 1;
            }
        }
        self.next += 1;
        self.order.insert(self.next, key.clone());
        self.entries.insert(key, (self.next, value));
        (replaced, evicted)
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let (seq, value) = self.entries.remove(key)?;
        self.order.remove(&seq);
        Some(value)
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.entries.get_mut(key).map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries dropped to make room so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Every entry, oldest first, leaving the table empty.
    pub fn drain(&mut self) -> Vec<(K, V)> {
        let order = std::mem::take(&mut self.order);
        let mut out = Vec::with_capacity(order.len());
        for key in order.into_values() {
            if let Some((_, v)) = self.entries.remove(&key) {
                out.push((key, v));
            }
        }
        self.entries.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_the_oldest_past_the_cap() {
        let mut t = Table::new(2);
        t.insert(1, "a");
        t.insert(2, "b");
        assert_eq!(t.insert(1, "c"), (Some("a"), None));
        assert_eq!(t.insert(3, "d"), (None, Some("b")));
        assert_eq!(t.dropped(), 1);
        assert_eq!(t.len(), 2);
        assert_eq!(t.drain(), vec![(1, "c"), (3, "d")]);
        assert!(t.is_empty());
    }
}
