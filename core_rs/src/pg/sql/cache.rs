//! The classification cache shared by every session of a gateway: statement shape -> class mask.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Class masks of statement shapes (keys from [`super::normalize`]), shared by cloning.
///
/// Bounded at `capacity` entries: inserting a new key into a full cache first clears it (the
/// working set of an application is small and refills at once; no per-entry bookkeeping on the
/// hot path). A capacity of 0 disables the cache. Lookups and inserts take a short lock; the map
/// uses the standard (DoS-resistant) hasher since keys come from clients.
#[derive(Debug, Clone)]
pub struct SqlCache {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    capacity: usize,
    map: Mutex<HashMap<Box<[u8]>, u32>>,
}

impl SqlCache {
    /// A cache holding at most `capacity` shapes (0: disabled).
    pub fn new(capacity: usize) -> Self {
        Self { inner: Arc::new(Shared { capacity, map: Mutex::new(HashMap::new()) }) }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<Box<[u8]>, u32>> {
        // a panic while holding the lock cannot leave the map inconsistent
        self.inner.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The maximum number of entries.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// The class mask of a shape, when cached.
    pub fn get(&self, key: &[u8]) -> Option<u32> {
        if self.inner.capacity == 0 {
            return None;
        }
        self.map().get(key).copied()
    }

    /// Records the class mask of a shape (clearing the cache first when it is full).
    pub fn insert(&self, key: &[u8], mask: u32) {
        if self.inner.capacity == 0 {
            return;
        }
        let mut map = self.map();
        if let Some(m) = map.get_mut(key) {
            *m = mask;
            return;
        }
        if map.len() >= self.inner.capacity {
            map.clear();
        }
        map.insert(Box::from(key), mask);
    }

    /// Number of shapes cached.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every shape (e.g. after the class definitions changed).
    pub fn clear(&self) {
        self.map().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_shared_and_disabled_at_zero() {
        let cache = SqlCache::new(2);
        let other = cache.clone();
        cache.insert(b"a", 1);
        cache.insert(b"b", 2);
        assert_eq!(other.get(b"a"), Some(1));
        cache.insert(b"a", 3);
        assert_eq!((cache.len(), cache.get(b"a")), (2, Some(3)), "update in place");
        cache.insert(b"c", 4);
        assert_eq!((cache.len(), cache.get(b"a"), cache.get(b"c")), (1, None, Some(4)), "full: cleared");
        other.clear();
        assert!(cache.is_empty());
        let off = SqlCache::new(0);
        off.insert(b"a", 1);
        assert_eq!((off.len(), off.get(b"a")), (0, None));
    }
}
