//! Hybrid logical clock: wall-clock milliseconds plus a counter, tie-broken by host name. Operator
//! entries are last-writer-wins by this stamp, so every host orders concurrent changes the same way,
//! and a host whose clock runs behind still orders its change after one it has already seen.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// How far in the future a remote stamp may be before it is refused: a host with a wildly wrong
/// clock must not win every future last-writer-wins race.
pub const MAX_SKEW_MS: u64 = 5 * 60 * 1000;

/// One point in hybrid logical time. Ordered by (`ms`, `n`, `node`): a total order, because two
/// stamps from different hosts always differ in `node`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// Wall-clock Unix milliseconds (or a later time seen from another host).
    pub ms: u64,
    /// Counter within one millisecond.
    pub n: u32,
    /// The host that made the stamp.
    pub node: String,
}

impl Ord for Stamp {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.ms, self.n, &self.node).cmp(&(o.ms, o.n, &o.node))
    }
}

impl PartialOrd for Stamp {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// The local clock. Pure: the caller passes the wall clock in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hlc {
    node: String,
    ms: u64,
    n: u32,
}

impl Hlc {
    pub fn new(node: impl Into<String>) -> Self {
        Hlc {
            node: node.into(),
            ms: 0,
            n: 0,
        }
    }

    /// Continues from a stamp saved before a restart, so stamps stay increasing even when the wall
    /// clock stepped back meanwhile.
    pub fn restore(node: impl Into<String>, last: (u64, u32)) -> Self {
        Hlc {
            node: node.into(),
            ms: last.0,
            n: last.1,
        }
    }

    /// The last stamp issued or observed, as (ms, counter), for saving.
    pub fn last(&self) -> (u64, u32) {
        (self.ms, self.n)
    }

    /// A new stamp for a local change, later than every stamp issued or observed before.
    pub fn tick(&mut self, wall_ms: u64) -> Stamp {
        if wall_ms > self.ms {
            self.ms = wall_ms;
            self.n = 0;
        } else {
            self.bump();
        }
        self.stamp()
    }

    /// Takes a remote stamp into account (the caller has refused stamps too far in the future).
    pub fn observe(&mut self, remote: &Stamp, wall_ms: u64) {
        let top = self.ms.max(remote.ms).max(wall_ms);
        if top == self.ms && top == remote.ms {
            self.n = self.n.max(remote.n);
            self.bump();
        } else if top == self.ms {
            self.bump();
        } else if top == remote.ms {
            self.ms = top;
            self.n = remote.n;
            self.bump();
        } else {
            self.ms = top;
            self.n = 0;
        }
    }

    fn bump(&mut self) {
        match self.n.checked_add(1) {
            Some(n) => self.n = n,
            None => {
                // Four billion changes in one millisecond: borrow the next millisecond.
                self.ms += 1;
                self.n = 0;
            }
        }
    }

    fn stamp(&self) -> Stamp {
        Stamp {
            ms: self.ms,
            n: self.n,
            node: self.node.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_increase_even_when_the_wall_clock_steps_back() {
        let mut c = Hlc::new("mx1");
        let a = c.tick(1000);
        let b = c.tick(1000);
        let d = c.tick(500);
        assert!(a < b && b < d, "{a:?} {b:?} {d:?}");
        assert_eq!(d.ms, 1000);
        let e = c.tick(2000);
        assert_eq!((e.ms, e.n), (2000, 0));
    }

    #[test]
    fn a_stamp_made_after_observing_is_later() {
        let mut slow = Hlc::new("mx2");
        let remote = Stamp {
            ms: 9000,
            n: 7,
            node: "mx1".into(),
        };
        slow.observe(&remote, 1000);
        let mine = slow.tick(1000);
        assert!(mine > remote, "{mine:?} {remote:?}");
        let mut r = Hlc::restore("mx2", slow.last());
        assert!(r.tick(0) > mine);
    }

    #[test]
    fn equal_times_are_ordered_by_host() {
        let a = Stamp {
            ms: 5,
            n: 0,
            node: "mx1".into(),
        };
        let b = Stamp {
            node: "mx2".into(),
            ..a.clone()
        };
        assert!(a < b);
        assert_eq!(a.cmp(&a), Ordering::Equal);
    }
}
