//! Values that many owners share, each kept once: evidence summaries shared by every sender with the
//! same build, notices shared by every sender at the same stage with the same evidence.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

/// One `Arc<V>` per distinct key: [`Interner::share`] hands out the copy already held.
#[derive(Debug)]
pub struct Interner<K, V> {
    held: HashMap<K, Arc<V>>,
    /// Size after the last [`Interner::prune`], so pruning costs O(1) amortised per insert.
    pruned_at: usize,
}

impl<K, V> Default for Interner<K, V> {
    fn default() -> Self {
        Interner {
            held: HashMap::new(),
            pruned_at: 0,
        }
    }
}

impl<K: Hash + Eq, V> Interner<K, V> {
    /// The value held for `key`, made by `make` the first time.
    pub fn share(&mut self, key: K, make: impl FnOnce(&K) -> V) -> Arc<V> {
        if let Some(held) = self.held.get(&key) {
            return held.clone();
        }
        // Keys come from what senders send: drop what no owner uses any more before the set grows
        // past twice what it held, so a stream of distinct banners cannot grow it for good.
        if self.held.len() >= 2 * self.pruned_at.max(64) {
            self.prune();
        }
        let value = Arc::new(make(&key));
        self.held.insert(key, value.clone());
        value
    }

    /// Forgets values no owner holds any more.
    pub fn prune(&mut self) {
        self.held.retain(|_, v| Arc::strong_count(v) > 1);
        self.pruned_at = self.held.len();
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_shared_and_pruned() {
        let mut s: Interner<String, String> = Interner::default();
        let a = s.share("a".into(), |k| k.clone());
        let b = s.share("a".into(), |_| unreachable!("held already"));
        assert!(Arc::ptr_eq(&a, &b));
        drop(s.share("gone".into(), |k| k.clone()));
        s.prune();
        assert_eq!(s.len(), 1, "only the one still held");
        // Distinct keys nobody keeps never pile up past the pruning bound.
        for n in 0..10_000 {
            drop(s.share(n.to_string(), |k| k.clone()));
        }
        assert!(s.len() <= 129, "{}", s.len());
        drop((a, b));
    }
}
