//! Where the engine writes kernel entries: the pinned policy maps, or memory in unit tests.

use crate::datapath::{Clock, PolicyMaps};
use crate::net::Prefix;
use crate::rule::Rule;
use enforcer_common::PolicyEntry;
use std::collections::BTreeMap;

/// The policy entries the engine manages, keyed by exact prefix.
pub trait Kernel {
    fn upsert(&mut self, rule: &Rule) -> anyhow::Result<()>;
    fn remove(&mut self, prefix: &Prefix) -> anyhow::Result<bool>;
    /// Every prefix that has an entry.
    fn prefixes(&self) -> anyhow::Result<Vec<Prefix>>;
    /// The entries for `prefixes` (a page of a listing), as the kernel holds them.
    fn lookup(&self, prefixes: &[Prefix]) -> anyhow::Result<Vec<Option<PolicyEntry>>>;
    /// Rewrites the entry if its boot-clock times no longer match the wall clock (after a step of
    /// the wall clock); true when it was rewritten.
    fn realign(&mut self, rule: &Rule) -> anyhow::Result<bool> {
        self.upsert(rule).map(|()| true)
    }
}

/// The pinned maps of a running datapath. Wall-clock times convert to the kernel's boot clock at the
/// moment of each write.
pub struct PinnedKernel(pub PolicyMaps);

impl Kernel for PinnedKernel {
    fn upsert(&mut self, rule: &Rule) -> anyhow::Result<()> {
        self.0.upsert(&rule.prefix, &rule.to_kernel(&Clock::now()))
    }

    fn remove(&mut self, prefix: &Prefix) -> anyhow::Result<bool> {
        self.0.remove(prefix)
    }

    fn prefixes(&self) -> anyhow::Result<Vec<Prefix>> {
        Ok(self.0.entries()?.into_iter().map(|(p, _)| p).collect())
    }

    fn lookup(&self, prefixes: &[Prefix]) -> anyhow::Result<Vec<Option<PolicyEntry>>> {
        self.0.get_many(prefixes)
    }

    fn realign(&mut self, rule: &Rule) -> anyhow::Result<bool> {
        let want = rule.to_kernel(&Clock::now());
        match self.0.get(&rule.prefix)? {
            Some(have) if !crate::cli::run::drifted(&have, &want) => Ok(false),
            _ => self.0.upsert(&rule.prefix, &want).map(|()| true),
        }
    }
}

/// In-memory kernel for tests: the rules as written.
#[derive(Debug, Default)]
pub struct MemKernel {
    pub entries: BTreeMap<Prefix, Rule>,
    pub writes: usize,
    /// When set, every write fails (to test error paths).
    pub fail: bool,
}

impl Kernel for MemKernel {
    fn upsert(&mut self, rule: &Rule) -> anyhow::Result<()> {
        anyhow::ensure!(!self.fail, "injected kernel failure");
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

    fn lookup(&self, prefixes: &[Prefix]) -> anyhow::Result<Vec<Option<PolicyEntry>>> {
        let clock = Clock::now();
        Ok(prefixes
            .iter()
            .map(|p| self.entries.get(p).map(|r| r.to_kernel(&clock)))
            .collect())
    }
}
