//! How many entries the kernel maps hold (`[capacity]` in the configuration file). The sizes are
//! fixed when the maps are created: a changed capacity applies after `enforcer detach` (the entries
//! come back from the store on the next `enforcer run`).
//!
//! What they cost at start, before any entry exists (measured with `bpftool map show`, see the
//! README): the host hash maps allocate their bucket array up front (about 8 bytes per entry of
//! capacity, rounded up to a power of two) and the rate-limit map is an LRU hash, which the kernel
//! always preallocates (about 100 bytes per entry). Entries themselves take memory only when inserted.

use enforcer_common::maps as names;

/// Capacity of each sizable map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    pub v4_hosts: u32,
    pub v6_hosts: u32,
    pub v4_prefixes: u32,
    pub v6_prefixes: u32,
    pub rate_state: u32,
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity {
            v4_hosts: names::MAX_HOSTS_V4,
            v6_hosts: names::MAX_HOSTS_V6,
            v4_prefixes: names::MAX_PREFIXES_V4,
            v6_prefixes: names::MAX_PREFIXES_V6,
            rate_state: names::MAX_RATE_STATE,
        }
    }
}

/// Smallest and largest accepted capacity of any map.
pub const MIN: u32 = 16;
pub const MAX: u32 = 1 << 24;
/// The rate-limit map is preallocated in full: capped lower.
pub const MAX_RATE_STATE: u32 = 1 << 22;

impl Capacity {
    /// `(config key, map name, value)` of every sizable map.
    pub fn entries(&self) -> [(&'static str, &'static str, u32); 5] {
        [
            ("v4_hosts", names::POLICY_V4_HOSTS, self.v4_hosts),
            ("v6_hosts", names::POLICY_V6_HOSTS, self.v6_hosts),
            ("v4_prefixes", names::POLICY_V4_PREFIXES, self.v4_prefixes),
            ("v6_prefixes", names::POLICY_V6_PREFIXES, self.v6_prefixes),
            ("rate_state", names::RATE_STATE, self.rate_state),
        ]
    }

    /// The capacity of map `name`, if it is sizable.
    pub fn of(&self, name: &str) -> Option<u32> {
        self.entries()
            .into_iter()
            .find(|(_, n, _)| *n == name)
            .map(|(_, _, v)| v)
    }

    /// Checks one key's value; the error says the accepted range.
    pub fn check(key: &str, v: i64) -> Result<u32, String> {
        let max = if key == "rate_state" {
            MAX_RATE_STATE
        } else {
            MAX
        };
        if v < i64::from(MIN) || v > i64::from(max) {
            return Err(format!(
                "capacity must be from {MIN} to {max} entries (got {v})"
            ));
        }
        Ok(v as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sizable_map_has_a_key() {
        let c = Capacity::default();
        assert_eq!(c.of(names::POLICY_V4_HOSTS), Some(names::MAX_HOSTS_V4));
        assert_eq!(c.of(names::RATE_STATE), Some(names::MAX_RATE_STATE));
        assert_eq!(c.of(names::PORTS), None);
        assert!(Capacity::check("v4_hosts", 15).is_err());
        assert!(Capacity::check("v4_hosts", 1 << 25).is_err());
        assert!(Capacity::check("rate_state", 1 << 23).is_err());
        assert_eq!(Capacity::check("v6_hosts", 1000), Ok(1000));
    }
}
