//! Bulk operator changes in the engine (`import`, `remove_rules`): one store transaction, then batched
//! kernel writes. Same order as every other change: store commit first, then the kernel, then the
//! reply; a failed kernel write is retried by the per-prefix timer like any other.

use std::collections::HashSet;

use super::{written, Engine, Kernel, Touched};
use crate::control::Reply;
use crate::datapath::batch;
use crate::feed::{self, Template};
use crate::net::Prefix;
use crate::rule::{Rule, Verdict};

impl<K: Kernel> Engine<K> {
    pub(super) fn import(
        &mut self,
        verdict: serde_json::Value,
        expires_at: Option<i64>,
        reason: Option<String>,
        list: Option<String>,
        entries: &str,
        now: i64,
    ) -> Reply {
        let verdict: Verdict = match serde_json::from_value(verdict) {
            Ok(v) => v,
            Err(e) => return Reply::usage(format!("bad verdict: {e}")),
        };
        let template = Template {
            verdict,
            expires_at,
            reason,
            created_at: now,
            list,
        };
        if let Err(e) = template.validate() {
            return Reply::usage(e);
        }
        let parsed = feed::parse(entries.as_bytes());
        if !parsed.errors.is_empty() {
            return Reply::usage(parsed.error_report("import"));
        }
        let stale = match &template.list {
            Some(name) => self.operator.stale(name, &parsed.prefixes),
            None => Vec::new(),
        };
        // What does not fit is refused before anything is stored, as a single `block` is.
        let capacity = match self.kernel.capacity() {
            Ok(c) => c,
            Err(err) => return Reply::internal(format!("{err:#} (nothing changed)")),
        };
        if let Some(capacity) = capacity {
            let mut current = [0usize; 4];
            for p in self.applied.keys() {
                current[batch::map_of(p)] += 1;
            }
            let present = |p: &Prefix| self.applied.contains_key(p);
            if let Err(full) =
                batch::check_room(current, present, &parsed.prefixes, &stale, capacity)
            {
                self.metrics.kernel_map_full.inc();
                return Reply::usage(full.to_string());
            }
        }
        // From here on in prefix order (the file's order only mattered for the error above): the
        // engine's ordered maps then take a million inserts in sequence, not at random places.
        let mut prefixes = parsed.prefixes;
        prefixes.sort_unstable();
        let rules: Vec<Rule> = prefixes.iter().map(|p| template.rule(*p)).collect();
        if let Err(err) = self.store.put_and_remove_rules(&rules, &stale) {
            return Reply::internal(format!(
                "could not store the import (nothing changed): {err:#}"
            ));
        }
        for p in &stale {
            self.operator.remove(p);
        }
        // Every rule of an import is the template's: packed once, shared by all.
        let any = Prefix::host(std::net::Ipv4Addr::UNSPECIFIED.into());
        let packed = self.operator.pack(template.rule(any));
        self.operator.insert_packed(&prefixes, packed);
        // Operator entries, shared with the fleet like a single block or unset.
        for p in stale.iter().chain(rules.iter().map(|r| &r.prefix)) {
            self.touch(Touched::Rule { prefix: *p });
        }
        let written = self.apply_bulk(&rules, &stale, now);
        log::info!(
            "imported {} entries{} ({} removed from the list)",
            rules.len(),
            template
                .list
                .as_deref()
                .map(|l| format!(" into list {l}"))
                .unwrap_or_default(),
            stale.len()
        );
        let mut reply = serde_json::json!({
            "imported": rules.len(),
            "removed": stale.len(),
            "list": template.list,
        });
        if let Err(e) = written {
            reply["kernel_error"] = e.into();
        }
        Reply::ok(reply)
    }

    pub(super) fn remove_rules(
        &mut self,
        entries: Option<&str>,
        list: Option<&str>,
        now: i64,
    ) -> Reply {
        let prefixes: Vec<Prefix> = match (entries, list) {
            (Some(text), None) => {
                let parsed = feed::parse(text.as_bytes());
                if !parsed.errors.is_empty() {
                    return Reply::usage(parsed.error_report("unset"));
                }
                parsed.prefixes
            }
            (None, Some(name)) => {
                if let Err(e) = feed::check_list_name(name) {
                    return Reply::usage(e);
                }
                self.operator.stale(name, &[])
            }
            _ => return Reply::usage("remove_rules takes either `entries` or `list`"),
        };
        let removed = match self.store.put_and_remove_rules(&[], &prefixes) {
            Ok(r) => r,
            Err(err) => {
                return Reply::internal(format!(
                    "could not remove the rules (nothing changed): {err:#}"
                ))
            }
        };
        let mut had = 0;
        for p in &prefixes {
            had += usize::from(self.operator.remove(p).is_some());
        }
        // Shared with the fleet like a single unset: also for prefixes this host had no entry for
        // (another host may have one this host has not seen yet).
        for p in &prefixes {
            self.touch(Touched::Rule { prefix: *p });
        }
        let written = self.apply_bulk(&[], &prefixes, now);
        let removed = removed.len().max(had);
        let mut reply = serde_json::json!({
            "removed": removed,
            "missing": prefixes.len() - removed,
            "list": list,
        });
        if let Err(e) = written {
            reply["kernel_error"] = e.into();
        }
        Reply::ok(reply)
    }

    /// Brings the kernel in line after `put` rules were added and `gone` prefixes lost their
    /// operator rule: the new entries in batches, the gone ones removed in batches unless an engine
    /// record takes the prefix back, then every sender record inside a changed prefix.
    pub(super) fn apply_bulk(
        &mut self,
        put: &[Rule],
        gone: &[Prefix],
        now: i64,
    ) -> Result<(), String> {
        let mut result = Ok(());
        // A refreshed feed mostly repeats itself: entries whose kernel form (verdict and expiry)
        // is already there are not written again.
        let mut fresh: Vec<(usize, u64)> = Vec::new();
        for (i, r) in put.iter().enumerate() {
            let fp = written(r);
            if self.applied.get(&r.prefix) != Some(&fp) {
                fresh.push((i, fp));
            }
        }
        if !fresh.is_empty() {
            self.metrics.kernel_writes.inc();
            // A first import writes everything: no copy of a million rules for that.
            let subset: Vec<Rule>;
            let writing = if fresh.len() == put.len() {
                put
            } else {
                subset = fresh.iter().map(|&(i, _)| put[i].clone()).collect();
                &subset
            };
            match self.kernel.upsert_many(writing) {
                Ok(()) => {
                    let run = fresh
                        .into_iter()
                        .map(|(i, fp)| (put[i].prefix, fp))
                        .collect();
                    super::sorted::insert_run(&mut self.applied, run);
                }
                Err(err) => {
                    // Some were written, some not: the per-prefix timers below retry each one.
                    self.metrics.kernel_errors.inc();
                    log::error!("bulk kernel write: {err:#}; retrying entry by entry");
                    result = Err(format!("{err:#}"));
                }
            }
        }
        let mut removals = Vec::new();
        for p in gone {
            if self.desired_for(p, now).is_none() {
                if self.applied.contains_key(p) || !self.records.contains_key(p) {
                    removals.push(*p);
                }
            } else {
                // An engine record (or a covering rule's absence) gives the prefix another entry.
                let _ = self.sync(*p, now);
            }
        }
        if !removals.is_empty() {
            self.metrics.kernel_writes.inc();
            match self.kernel.remove_many(&removals) {
                Ok(()) => {
                    for p in &removals {
                        self.applied.remove(p);
                    }
                }
                Err(err) => {
                    self.metrics.kernel_errors.inc();
                    log::error!("bulk kernel removal: {err:#}; retrying entry by entry");
                    result = Err(format!("{err:#}"));
                }
            }
        }
        for r in put {
            // Nothing to schedule for a rule without expiry whose entry is written, for a prefix
            // without sender record or timer: the usual case of a feed, a million times over.
            let idle = r.expires_at.is_none()
                && !self.records.contains_key(&r.prefix)
                && !self.due.contains_key(&r.prefix)
                && self.applied.get(&r.prefix) == Some(&written(r));
            if !idle {
                self.schedule(r.prefix, now);
            }
        }
        for p in gone {
            self.schedule(*p, now);
        }
        // Sender records inside a changed prefix: an operator rule on a covering prefix hides their
        // entry, removing it brings the entry back.
        if self.records.is_empty() {
            return result;
        }
        let changed: HashSet<&Prefix> = put.iter().map(|r| &r.prefix).chain(gone).collect();
        let inside: Vec<Prefix> = self
            .records
            .keys()
            .filter(|p| {
                (0..p.len()).any(|len| changed.contains(&Prefix::containing(p.addr(), len)))
            })
            .copied()
            .collect();
        for p in inside {
            let _ = self.sync(p, now); // failures are logged and retried
            self.schedule(p, now);
        }
        result
    }
}
