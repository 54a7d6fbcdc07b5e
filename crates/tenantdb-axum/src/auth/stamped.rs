//! A cache whose entries are good while the catalog's change stamp has not
//! moved (`Catalog::changes`): any change to users, tokens or memberships,
//! written here or seen by the poller in another process, makes every entry
//! stale at once. The caller reads the stamp *before* it loads, so a change
//! that lands while it loads makes what it stores stale at once too.

use std::hash::Hash;

use dashmap::DashMap;

/// Past this many entries the cache starts over rather than grow.
const MAX_ENTRIES: usize = 100_000;

/// Looked up on every request: foldhash rather than SipHash (the keys are
/// hashes and ids, not attacker-chosen strings that could be made to
/// collide).
type FastMap<K, V> = DashMap<K, V, foldhash::fast::RandomState>;

/// Values by key, each with the stamp it was read at.
#[derive(Debug)]
pub(crate) struct StampedCache<K: Eq + Hash, V> {
    entries: FastMap<K, (u64, V)>,
}

impl<K: Eq + Hash, V: Clone> StampedCache<K, V> {
    pub(crate) fn new() -> Self {
        Self {
            entries: FastMap::default(),
        }
    }

    /// The value stored under `key`, if it was read at `stamp`.
    pub(crate) fn get(&self, key: &K, stamp: u64) -> Option<V> {
        self.entries
            .get(key)
            .filter(|entry| entry.0 == stamp)
            .map(|entry| entry.1.clone())
    }

    /// Stores `value`, read at `stamp`.
    pub(crate) fn insert(&self, key: K, stamp: u64, value: V) {
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.clear();
        }
        self.entries.insert(key, (stamp, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_good_only_at_the_stamp_it_was_read_at() {
        let cache = StampedCache::new();
        cache.insert("a", 1, 10);
        assert_eq!(cache.get(&"a", 1), Some(10));
        assert_eq!(cache.get(&"a", 2), None);
        assert_eq!(cache.get(&"b", 1), None);
        cache.insert("a", 2, 20);
        assert_eq!(cache.get(&"a", 2), Some(20));
    }
}
