//! Adding a large sorted run to a B-tree map. Inserting keys in order leaves every node the split
//! passes about half full (a million rules then cost nearly twice their size); a map built from one
//! sorted sequence has full nodes. So a run that is large next to the map rebuilds it by merging.

use std::collections::BTreeMap;

/// Inserts `run` into `map` as `extend` would (the run's last value wins on equal keys). Meant for
/// runs that are sorted already (then the sort below is one linear pass).
pub fn insert_run<K: Ord, V>(map: &mut BTreeMap<K, V>, mut run: Vec<(K, V)>) {
    // A few inserts into a big map: the merge would copy the whole map for nothing.
    if run.len() < 1024 || run.len() < map.len() / 8 {
        map.extend(run);
        return;
    }
    // Stable: of equal keys the later stays later, and the map keeps the last.
    run.sort_by(|a, b| a.0.cmp(&b.0));
    let old = std::mem::take(map);
    *map = Merge {
        a: old.into_iter().peekable(),
        b: run.into_iter().peekable(),
    }
    .collect();
}

/// Two sorted sequences as one, `b`'s entry winning on equal keys.
struct Merge<A: Iterator, B: Iterator> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
}

impl<K: Ord, V, A, B> Iterator for Merge<A, B>
where
    A: Iterator<Item = (K, V)>,
    B: Iterator<Item = (K, V)>,
{
    type Item = (K, V);

    fn next(&mut self) -> Option<(K, V)> {
        match (self.a.peek(), self.b.peek()) {
            (Some((ka, _)), Some((kb, _))) => match ka.cmp(kb) {
                std::cmp::Ordering::Less => self.a.next(),
                std::cmp::Ordering::Greater => self.b.next(),
                std::cmp::Ordering::Equal => {
                    self.a.next();
                    self.b.next()
                }
            },
            (Some(_), None) => self.a.next(),
            (None, _) => self.b.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Same result as inserting one by one, whatever the sizes.
        #[test]
        fn same_as_inserting(old in proptest::collection::btree_map(0u32..5000, 0u8..4, 0..3000),
                             new in proptest::collection::vec((0u32..5000, 4u8..8), 0..3000)) {
            let mut want = old.clone();
            want.extend(new.clone());
            let mut got = old;
            insert_run(&mut got, new);
            prop_assert_eq!(got, want);
        }
    }
}
