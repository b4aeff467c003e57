//! The engine's side of fleet sync (issue 13): it notes which local changes the fleet must publish,
//! and takes merged records and operator entries from the fleet through the same path as a local
//! change (store commit first, then the kernel).

use super::bulk::BulkPut;
use super::{catch_up, written, Engine};
use crate::daemon::kernel::Kernel;
use crate::net::Prefix;
use crate::policy::Record;
use crate::rule::{Rule, RuleSource};
use crate::store::Store;

/// A local change to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Touched {
    /// A sender record changed; `cleared`: it just left enforcement on exonerating evidence.
    Sender { prefix: Prefix, cleared: bool },
    /// `enforcer forget`.
    Forgot { prefix: Prefix },
    /// An operator entry was set or removed.
    Rule { prefix: Prefix },
}

impl<K: Kernel> Engine<K> {
    /// From now on, local changes are noted for [`Engine::take_touched`] (the fleet calls this
    /// when it starts).
    pub fn share_changes(&mut self) {
        self.sharing = true;
    }

    pub(super) fn touch(&mut self, t: Touched) {
        if self.sharing {
            self.touched.push(t);
        }
    }

    /// Local changes since the last call, oldest first.
    pub fn take_touched(&mut self) -> Vec<Touched> {
        std::mem::take(&mut self.touched)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The whole stored record of `p` (`None` when the engine holds no sender there).
    pub fn record(&self, p: &Prefix) -> anyhow::Result<Option<Record>> {
        if !self.records.contains_key(p) {
            return Ok(None);
        }
        self.load(p).map(Some)
    }

    pub fn operator_rule(&self, p: &Prefix) -> Option<Rule> {
        self.operator.get(p)
    }

    /// The prefixes of every operator rule, in order (the rules themselves via `operator_rule`).
    pub fn operator_prefixes(&self) -> impl Iterator<Item = Prefix> + '_ {
        self.operator.keys().copied()
    }

    /// Replaces (or, with `None`, deletes) a sender record with the fleet's merged view. `why` goes
    /// into the record's history. Not published again.
    pub fn fleet_sender(
        &mut self,
        p: Prefix,
        rec: Option<Record>,
        why: &str,
        now: i64,
    ) -> anyhow::Result<()> {
        match rec {
            Some(mut rec) => {
                catch_up(&self.policy, &mut rec, now);
                rec.log(now, why);
                self.store.put_sender(&rec)?;
                self.keep(&rec);
            }
            None => {
                self.store.remove_sender(&p)?;
                if self.drop_record(&p) {
                    log::info!("{why}: sender {p} forgotten");
                }
            }
        }
        let _ = self.sync(p, now); // failures are logged and retried
        self.schedule(p, now);
        self.relabel(p, now);
        Ok(())
    }

    /// Sets (or removes) an operator entry as the fleet decided. Not published again.
    pub fn fleet_rule(&mut self, p: Prefix, rule: Option<Rule>, now: i64) -> anyhow::Result<()> {
        match rule {
            Some(mut rule) => {
                rule.source = RuleSource::Operator;
                self.store.put_rule(&rule)?;
                self.operator.insert(p, rule);
            }
            None => {
                self.store.remove_rule(&p)?;
                self.operator.remove(&p);
            }
        }
        let _ = self.sync(p, now); // failures are logged and retried
        self.schedule(p, now);
        self.relabel(p, now);
        self.resync_under(p, now);
        self.metrics
            .next_change
            .set(self.next_wakeup().unwrap_or(0));
        Ok(())
    }
}

impl<K: Kernel> Engine<K> {
    /// Sets (or removes) many operator entries as the fleet decided, the way `enforcer import`
    /// does: one store transaction, then batched kernel writes. Not published again.
    pub fn fleet_rules(
        &mut self,
        rules: Vec<(Prefix, Option<Rule>)>,
        now: i64,
    ) -> anyhow::Result<()> {
        if rules.len() == 1 {
            let (p, rule) = rules.into_iter().next().expect("one");
            return self.fleet_rule(p, rule, now);
        }
        let mut put = Vec::new();
        let mut gone = Vec::new();
        for (p, rule) in rules {
            match rule {
                Some(mut rule) => {
                    rule.source = RuleSource::Operator;
                    put.push(rule);
                }
                None => gone.push(p),
            }
        }
        self.store.put_and_remove_rules(&put, &gone)?;
        for p in &gone {
            self.operator.remove(p);
        }
        // Grouped by kernel entry (verdict and expiry), each group's prefixes in order; within a
        // group only those whose entry differs are written.
        let mut groups: std::collections::HashMap<u64, (Rule, Vec<Prefix>, Vec<Prefix>)> =
            std::collections::HashMap::new();
        for r in put {
            let fp = written(&r);
            let stale = self.applied.get(&r.prefix) != Some(&fp);
            let p = r.prefix;
            let group = groups
                .entry(fp)
                .or_insert_with(|| (r.clone(), Vec::new(), Vec::new()));
            group.1.push(p);
            if stale {
                group.2.push(p);
            }
            self.operator.insert(p, r);
        }
        for (_, all, later) in groups.values_mut() {
            all.sort_unstable();
            all.dedup();
            later.sort_unstable();
            later.dedup();
        }
        let puts: Vec<BulkPut<'_>> = groups
            .values()
            .map(|(rule, all, later)| BulkPut {
                rule,
                all,
                early: &[],
                early_result: Ok(()),
                later,
            })
            .collect();
        // A failed kernel write is logged there and retried by the per-prefix timers.
        let _ = self.apply_bulk(&puts, &gone, now);
        self.metrics
            .next_change
            .set(self.next_wakeup().unwrap_or(0));
        Ok(())
    }
}
