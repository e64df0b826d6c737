//! A byte-bounded LRU map, small enough to read: a hash map for lookups and an ordered map of
//! access ticks for eviction.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

#[derive(Debug)]
pub(crate) struct Lru<K, V> {
    capacity_bytes: usize,
    bytes: usize,
    tick: u64,
    entries: HashMap<K, (V, usize, u64)>,
    order: BTreeMap<u64, K>,
}

impl<K: Hash + Eq + Clone, V: Clone> Lru<K, V> {
    pub(crate) fn new(capacity_bytes: usize) -> Self {
        Lru { capacity_bytes, bytes: 0, tick: 0, entries: HashMap::new(), order: BTreeMap::new() }
    }

    pub(crate) fn get(&mut self, key: &K) -> Option<V> {
        let (value, _, tick) = self.entries.get_mut(key)?;
        self.order.remove(tick);
        self.tick += 1;
        *tick = self.tick;
        self.order.insert(self.tick, key.clone());
        Some(value.clone())
    }

    /// Inserts `value` weighing `size` bytes, evicting the least recently used entries to stay
    /// within capacity. An entry larger than the whole capacity is not kept.
    pub(crate) fn insert(&mut self, key: K, value: V, size: usize) {
        self.remove(&key);
        if size > self.capacity_bytes {
            return;
        }
        while self.bytes + size > self.capacity_bytes {
            let Some((_, oldest)) = self.order.pop_first() else { break };
            if let Some((_, s, _)) = self.entries.remove(&oldest) {
                self.bytes -= s;
            }
        }
        self.tick += 1;
        self.order.insert(self.tick, key.clone());
        self.entries.insert(key, (value, size, self.tick));
        self.bytes += size;
    }

    pub(crate) fn remove(&mut self, key: &K) {
        if let Some((_, size, tick)) = self.entries.remove(key) {
            self.order.remove(&tick);
            self.bytes -= size;
        }
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_within_the_byte_budget() {
        let mut lru = Lru::new(10);
        lru.insert("a", 1, 4);
        lru.insert("b", 2, 4);
        assert_eq!(lru.get(&"a"), Some(1));
        lru.insert("c", 3, 4);
        assert_eq!(lru.get(&"b"), None, "b was least recently used");
        assert_eq!((lru.get(&"a"), lru.get(&"c"), lru.bytes()), (Some(1), Some(3), 8));
        lru.insert("huge", 9, 11);
        assert_eq!(lru.get(&"huge"), None);
        assert_eq!(lru.bytes(), 8);
    }
}
