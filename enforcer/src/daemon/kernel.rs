//! Where the engine writes kernel entries: the pinned policy maps, or memory in unit tests.

use crate::datapath::{Clock, MapFull, PolicyMaps};
use crate::net::Prefix;
use crate::rule::Rule;
use enforcer_common::PolicyEntry;
use std::collections::BTreeMap;

/// The policy entries the engine manages, keyed by exact prefix.
pub trait Kernel {
    /// One entry exactly as the kernel holds it, to be put back by [`Kernel::restore`].
    type Saved;
    fn upsert(&mut self, rule: &Rule) -> anyhow::Result<()>;
    fn remove(&mut self, prefix: &Prefix) -> anyhow::Result<bool>;
    /// Every prefix that has an entry.
    fn prefixes(&self) -> anyhow::Result<Vec<Prefix>>;
    /// Whether the kernel holds exactly `rule` (boot-clock times within a second).
    fn holds(&self, rule: &Rule) -> anyhow::Result<bool>;
    /// [`Kernel::holds`] for each of `rules` (the self-check's batch).
    fn holds_many(&self, rules: &[Rule]) -> anyhow::Result<Vec<bool>> {
        rules.iter().map(|r| self.holds(r)).collect()
    }
    /// The entries for `prefixes` (a page of a listing), as the kernel holds them.
    fn lookup(&self, prefixes: &[Prefix]) -> anyhow::Result<Vec<Option<PolicyEntry>>>;
    /// Rewrites the entry if its boot-clock times no longer match the wall clock (after a step of
    /// the wall clock); true when it was rewritten.
    fn realign(&mut self, rule: &Rule) -> anyhow::Result<bool> {
        self.upsert(rule).map(|()| true)
    }
    /// How many entries each policy map holds at most (`datapath::batch::map_of` order); `None`
    /// when unbounded (tests).
    fn capacity(&self) -> anyhow::Result<Option<[u32; 4]>> {
        Ok(None)
    }
    /// `rule`'s entry for each of `prefixes` (its own prefix ignored), many at once (`enforcer
    /// import`); stops at the first failure.
    fn upsert_same(&mut self, rule: &Rule, prefixes: &[Prefix]) -> anyhow::Result<()> {
        let mut r = rule.clone();
        prefixes.iter().try_for_each(|p| {
            r.prefix = *p;
            self.upsert(&r)
        })
    }
    /// Removes many entries at once; missing ones are not an error.
    fn remove_many(&mut self, prefixes: &[Prefix]) -> anyhow::Result<()> {
        prefixes.iter().try_for_each(|p| self.remove(p).map(|_| ()))
    }
    /// The entry for `prefix` as the kernel holds it now, if any.
    fn save(&self, prefix: &Prefix) -> anyhow::Result<Option<Self::Saved>>;
    /// Writes back an entry [`Kernel::save`] returned, unchanged.
    fn restore(&mut self, prefix: &Prefix, saved: &Self::Saved) -> anyhow::Result<()>;
    /// Whether a saved entry is exactly `rule` (boot-clock times within a second), as `holds` says.
    fn is(&self, saved: &Self::Saved, rule: &Rule) -> bool;
    /// Brings derived kernel state (the prefix presence filters) up to date after removals;
    /// `full` recomputes it whatever this process did (after reconciling at start).
    fn settle(&mut self, _full: bool) -> anyhow::Result<()> {
        Ok(())
    }
}

/// The pinned maps of a running datapath. Wall-clock times convert to the kernel's boot clock at the
/// moment of each write.
pub struct PinnedKernel(pub PolicyMaps);

impl Kernel for PinnedKernel {
    type Saved = PolicyEntry;

    fn save(&self, prefix: &Prefix) -> anyhow::Result<Option<PolicyEntry>> {
        self.0.get(prefix)
    }

    fn restore(&mut self, prefix: &Prefix, saved: &PolicyEntry) -> anyhow::Result<()> {
        self.0.upsert(prefix, saved)
    }

    /// An entry the presence filter hides is as good as missing: rewriting it sets the bits.
    fn is(&self, have: &PolicyEntry, rule: &Rule) -> bool {
        let want = rule.to_kernel(&Clock::now());
        same_shape(have, &want) && !moved(have, &want) && self.0.filtered(&rule.prefix)
    }

    fn upsert(&mut self, rule: &Rule) -> anyhow::Result<()> {
        self.0.upsert(&rule.prefix, &rule.to_kernel(&Clock::now()))
    }

    fn remove(&mut self, prefix: &Prefix) -> anyhow::Result<bool> {
        self.0.remove(prefix)
    }

    fn prefixes(&self) -> anyhow::Result<Vec<Prefix>> {
        self.0.prefixes()
    }

    fn capacity(&self) -> anyhow::Result<Option<[u32; 4]>> {
        self.0.capacity().map(Some)
    }

    fn upsert_same(&mut self, rule: &Rule, prefixes: &[Prefix]) -> anyhow::Result<()> {
        // The kernel form depends on the verdict and expiry only: converted once.
        let entry = rule.to_kernel(&Clock::now());
        let entries: Vec<_> = prefixes.iter().map(|p| (*p, entry)).collect();
        self.0.upsert_many(&entries)
    }

    fn remove_many(&mut self, prefixes: &[Prefix]) -> anyhow::Result<()> {
        self.0.remove_many(prefixes).map(|_| ())
    }

    fn settle(&mut self, full: bool) -> anyhow::Result<()> {
        if full {
            self.0.rebuild_filters()
        } else {
            self.0.settle_filters()
        }
    }

    fn holds(&self, rule: &Rule) -> anyhow::Result<bool> {
        Ok(self
            .0
            .get(&rule.prefix)?
            .is_some_and(|have| self.is(&have, rule)))
    }

    /// One exact lookup per rule (the prefix maps are hashes keyed by length and address), plus
    /// the check that the presence filter and length masks show each prefix.
    fn holds_many(&self, rules: &[Rule]) -> anyhow::Result<Vec<bool>> {
        let prefixes: Vec<Prefix> = rules.iter().map(|r| r.prefix).collect();
        let clock = Clock::now();
        Ok(rules
            .iter()
            .zip(self.0.get_many(&prefixes)?)
            .map(|(rule, have)| {
                let want = rule.to_kernel(&clock);
                have.is_some_and(|have| same_shape(&have, &want) && !moved(&have, &want))
                    && self.0.filtered(&rule.prefix)
            })
            .collect())
    }

    fn lookup(&self, prefixes: &[Prefix]) -> anyhow::Result<Vec<Option<PolicyEntry>>> {
        self.0.get_many(prefixes)
    }

    fn realign(&mut self, rule: &Rule) -> anyhow::Result<bool> {
        let want = rule.to_kernel(&Clock::now());
        match self.0.get(&rule.prefix)? {
            Some(have) if !drifted(&have, &want) => Ok(false),
            _ => self.0.upsert(&rule.prefix, &want).map(|()| true),
        }
    }
}

/// True when two entries for the same rule differ only because the clocks moved apart by more
/// than a second (anchors are compared modulo the period).
pub(crate) fn drifted(have: &PolicyEntry, want: &PolicyEntry) -> bool {
    same_shape(have, want) && moved(have, want)
}

/// Equal but for the boot-clock times and the rate state the kernel keeps in host entries.
fn same_shape(have: &PolicyEntry, want: &PolicyEntry) -> bool {
    PolicyEntry {
        anchor_ns: 0,
        expires_ns: 0,
        tat_ns: 0,
        ..*have
    } == PolicyEntry {
        anchor_ns: 0,
        expires_ns: 0,
        tat_ns: 0,
        ..*want
    }
}

/// The boot-clock times differ by more than a second (anchors modulo the period).
fn moved(have: &PolicyEntry, want: &PolicyEntry) -> bool {
    const SLACK: u64 = 1_000_000_000;
    let expiry_moved = (have.expires_ns == 0) != (want.expires_ns == 0)
        || have.expires_ns.abs_diff(want.expires_ns) > SLACK;
    let period = u64::from(want.period_secs) * 1_000_000_000;
    let anchor_moved = period > 0 && {
        let d = have.anchor_ns.abs_diff(want.anchor_ns) % period;
        d.min(period - d) > SLACK
    };
    expiry_moved || anchor_moved
}

/// In-memory kernel for tests: the rules as written.
#[derive(Debug, Default)]
pub struct MemKernel {
    pub entries: BTreeMap<Prefix, Rule>,
    pub writes: usize,
    /// When set, every write fails (to test error paths).
    pub fail: bool,
    /// When set, an upsert of a new prefix beyond this many entries fails as a full map does.
    pub capacity: Option<usize>,
}

impl Kernel for MemKernel {
    type Saved = Rule;

    fn save(&self, prefix: &Prefix) -> anyhow::Result<Option<Rule>> {
        Ok(self.entries.get(prefix).cloned())
    }

    fn restore(&mut self, prefix: &Prefix, saved: &Rule) -> anyhow::Result<()> {
        anyhow::ensure!(!self.fail, "injected kernel failure");
        self.writes += 1;
        self.entries.insert(*prefix, saved.clone());
        Ok(())
    }

    fn is(&self, saved: &Rule, rule: &Rule) -> bool {
        // What the kernel keeps of a rule: reasons and creation times live in the store only.
        (&saved.verdict, saved.expires_at, &saved.source)
            == (&rule.verdict, rule.expires_at, &rule.source)
    }

    fn upsert(&mut self, rule: &Rule) -> anyhow::Result<()> {
        anyhow::ensure!(!self.fail, "injected kernel failure");
        if let Some(max) = self.capacity {
            if !self.entries.contains_key(&rule.prefix) && self.entries.len() >= max {
                return Err(MapFull {
                    prefix: rule.prefix,
                    max: max as u32,
                }
                .into());
            }
        }
        self.writes += 1;
        self.entries.insert(rule.prefix, rule.clone());
        Ok(())
    }

    fn remove(&mut self, prefix: &Prefix) -> anyhow::Result<bool> {
        anyhow::ensure!(!self.fail, "injected kernel failure");
        self.writes += 1;
        Ok(self.entries.remove(prefix).is_some())
    }

    fn prefixes(&self) -> anyhow::Result<Vec<Prefix>> {
        Ok(self.entries.keys().copied().collect())
    }

    fn holds(&self, rule: &Rule) -> anyhow::Result<bool> {
        Ok(self
            .entries
            .get(&rule.prefix)
            .is_some_and(|have| self.is(have, rule)))
    }

    fn lookup(&self, prefixes: &[Prefix]) -> anyhow::Result<Vec<Option<PolicyEntry>>> {
        let clock = Clock::now();
        Ok(prefixes
            .iter()
            .map(|p| self.entries.get(p).map(|r| r.to_kernel(&clock)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_is_detected_modulo_the_period() {
        let base = PolicyEntry {
            action: enforcer_common::policy::ACTION_THROTTLE,
            period_secs: 3600,
            throttle_secs: 300,
            anchor_ns: 10_000_000_000_000,
            expires_ns: 20_000_000_000_000,
            ..Default::default()
        };
        let s = 1_000_000_000u64;
        let shifted = |a: u64, e: u64| PolicyEntry {
            anchor_ns: a,
            expires_ns: e,
            ..base
        };
        assert!(!drifted(&base, &base));
        // A whole period later is the same alignment.
        assert!(!drifted(
            &base,
            &shifted(base.anchor_ns + 3600 * s, base.expires_ns)
        ));
        assert!(!drifted(
            &base,
            &shifted(base.anchor_ns + s / 2, base.expires_ns)
        ));
        assert!(drifted(
            &base,
            &shifted(base.anchor_ns + 5 * s, base.expires_ns)
        ));
        assert!(drifted(
            &base,
            &shifted(base.anchor_ns, base.expires_ns + 5 * s)
        ));
        // A different rule is not drift: reconcile handles that.
        let other = PolicyEntry {
            throttle_secs: 60,
            ..base
        };
        assert!(!drifted(&base, &other));
    }
}
