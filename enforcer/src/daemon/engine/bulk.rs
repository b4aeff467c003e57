//! Bulk operator changes in the engine (`import`, `remove_rules`): one store transaction, then batched
//! kernel writes. Same order as every other change: store commit first, then the kernel, then the
//! reply; a failed kernel write is retried by the per-prefix timer like any other.
//!
//! One overlap, for speed: the entries of an import that are new to the kernel (no entry there for
//! their prefix) are written while the store commits, on two cores at once. Until the commit
//! returns they are only extra entries; the reply still waits for both, and when the commit fails
//! they are removed again before the reply, so a failed commit leaves the kernel as it was. A
//! crash (kill -9) between the two leaves entries the store does not know, which the start-up
//! reconciliation removes; nothing the CLI was told is done can be lost.
//!
//! The engine's maps take an import's prefixes sorted, all at once: a merge and one bulk build
//! instead of a million single inserts (see [`insert_sorted`]).

use std::collections::BTreeMap;
use std::time::Instant;

use super::{written, Engine, Kernel, Touched};
use crate::control::Reply;
use crate::datapath::batch;
use crate::feed::{self, Template};
use crate::net::Prefix;
use crate::rule::{Rule, Verdict};

/// Imports with fewer new entries than this write the kernel after the commit, as every other
/// change does: the overlap is for the big ones, where the kernel's part takes a fraction of a
/// second.
const OVERLAP_MIN: usize = 4096;

/// The prefixes of a bulk request, sorted and without repeats: `packed` (what the CLI sends, the
/// list it already parsed and checked) or `entries` text (parsed here; a bad line refuses the
/// request with the line numbers).
pub(super) fn prefixes(
    entries: Option<&str>,
    packed: Option<&str>,
    what: &str,
) -> Result<Vec<Prefix>, Reply> {
    let entries = entries.filter(|e| !e.is_empty());
    match (entries, packed) {
        (Some(_), Some(_)) => Err(Reply::usage(format!(
            "{what}: give the entries either as text or packed, not both"
        ))),
        (_, Some(packed)) => {
            let mut ps = feed::unpack(packed).map_err(|e| Reply::usage(format!("{what}: {e}")))?;
            // The CLI sends them sorted and unique; anyone else gets the same treatment.
            if !ps.windows(2).all(|w| w[0] < w[1]) {
                ps.sort_unstable();
                ps.dedup();
            }
            Ok(ps)
        }
        (text, None) => {
            let parsed = feed::parse(text.unwrap_or_default().as_bytes());
            if !parsed.errors.is_empty() {
                return Err(Reply::usage(parsed.error_report(what)));
            }
            Ok(parsed.prefixes)
        }
    }
}

/// Inserts `value` for every prefix of `sorted` (ascending, unique), replacing what was there. When
/// they are many compared with the map, the map is rebuilt from one merged, ordered pass (the
/// standard library builds a B-tree from sorted input in one sweep) instead of searched from the
/// root a million times.
pub(super) fn insert_sorted<V: Clone>(map: &mut BTreeMap<Prefix, V>, sorted: &[Prefix], value: &V) {
    if sorted.len() < 1024 || sorted.len() < map.len() / 4 {
        for p in sorted {
            map.insert(*p, value.clone());
        }
        return;
    }
    // The old entries are moved into the new map, not copied.
    *map = merge(std::mem::take(map).into_iter(), sorted, value, &[]);
}

/// `map` with `value` for every prefix of `sorted` and without those of `remove` (both ascending,
/// unique), as a new map built in one ordered pass: `map` itself is left as it is, so this can run
/// while the store commits and be thrown away if the commit fails.
pub(super) fn merged<V: Clone>(
    map: &BTreeMap<Prefix, V>,
    sorted: &[Prefix],
    value: &V,
    remove: &[Prefix],
) -> BTreeMap<Prefix, V> {
    merge(
        map.iter().map(|(p, v)| (*p, v.clone())),
        sorted,
        value,
        remove,
    )
}

/// The entries of `old` (ascending) with `value` for every prefix of `sorted` and without those of
/// `remove` (both ascending, unique), built into a map in one ordered pass.
fn merge<V: Clone>(
    old: impl Iterator<Item = (Prefix, V)>,
    sorted: &[Prefix],
    value: &V,
    remove: &[Prefix],
) -> BTreeMap<Prefix, V> {
    use std::cmp::Ordering;
    let mut old = old.peekable();
    let mut new = sorted.iter().peekable();
    let mut remove = remove.iter().peekable();
    let merged = std::iter::from_fn(|| loop {
        let (p, v) = match (old.peek(), new.peek()) {
            (Some((o, _)), Some(n)) => match o.cmp(n) {
                Ordering::Less => old.next()?,
                Ordering::Equal => {
                    old.next();
                    new.next().map(|p| (*p, value.clone()))?
                }
                Ordering::Greater => new.next().map(|p| (*p, value.clone()))?,
            },
            (Some(_), None) => old.next()?,
            (None, _) => new.next().map(|p| (*p, value.clone()))?,
        };
        while remove.next_if(|r| **r < p).is_some() {}
        // A prefix both removed and added stays (with the new value).
        if remove.peek() == Some(&&p) && sorted.binary_search(&p).is_err() {
            continue;
        }
        return Some((p, v));
    });
    merged.collect()
}

/// The value `map` holds for each prefix of `sorted` (ascending): one ordered walk of both when the
/// list is large, lookups when it is small.
fn values_in<'a, V>(map: &'a BTreeMap<Prefix, V>, sorted: &[Prefix]) -> Vec<Option<&'a V>> {
    if map.is_empty() {
        return vec![None; sorted.len()];
    }
    if sorted.len() < map.len() / 16 {
        return sorted.iter().map(|p| map.get(p)).collect();
    }
    let mut entries = map.iter().peekable();
    sorted
        .iter()
        .map(|p| {
            while entries.next_if(|(k, _)| *k < p).is_some() {}
            entries.peek().filter(|(k, _)| *k == p).map(|(_, v)| *v)
        })
        .collect()
}

/// CPU time of the calling thread (what a step cost, whatever else the machine was running).
fn thread_cpu() -> std::time::Duration {
    let ns = crate::datapath::clock::read(libc::CLOCK_THREAD_CPUTIME_ID);
    std::time::Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
}

/// The kernel side of an import (or of a group of the fleet's rules with the same kernel entry), for
/// [`Engine::apply_bulk`].
pub(super) struct BulkPut<'a> {
    /// The import's rule (its prefix ignored).
    pub rule: &'a Rule,
    /// Every prefix of the import, sorted.
    pub all: &'a [Prefix],
    /// Written to the kernel while the store committed (sorted), and how that went.
    pub early: &'a [Prefix],
    pub early_result: Result<(), String>,
    /// Still to write (sorted).
    pub later: &'a [Prefix],
}

impl<K: Kernel> Engine<K> {
    /// `prefixes` sorted and unique ([`prefixes`]).
    pub(super) fn import(
        &mut self,
        verdict: serde_json::Value,
        expires_at: Option<i64>,
        reason: Option<String>,
        list: Option<String>,
        prefixes: Vec<Prefix>,
        now: i64,
    ) -> Reply {
        let started = Instant::now();
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
        let stale = match &template.list {
            Some(name) => self.operator.stale(name, &prefixes),
            None => Vec::new(),
        };
        let there = values_in(&self.applied, &prefixes);
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
            // `check_room` asks about the removed prefixes, then the added ones, each in order.
            let stale_there = values_in(&self.applied, &stale);
            let mut removing = stale.iter().zip(&stale_there).peekable();
            let mut adding = prefixes.iter().zip(&there).peekable();
            let applied = &self.applied;
            let is_present = |p: &Prefix| {
                if let Some((_, v)) = removing.next_if(|(q, _)| *q == p) {
                    return v.is_some();
                }
                if let Some((_, v)) = adding.next_if(|(q, _)| *q == p) {
                    return v.is_some();
                }
                applied.contains_key(p)
            };
            if let Err(full) = batch::check_room(current, is_present, &prefixes, &stale, capacity) {
                self.metrics.kernel_map_full.inc();
                return Reply::usage(full.to_string());
            }
        }
        let any = Prefix::host(std::net::Ipv4Addr::UNSPECIFIED.into());
        let rule = template.rule(any);
        let fp = written(&rule);
        // A refreshed feed mostly repeats itself: entries whose kernel form (verdict and expiry)
        // is already there are not written again. Those with no entry at all are written while the
        // store commits; those replacing another entry after it.
        let (mut fresh_new, mut fresh_replacing) = (Vec::new(), Vec::new());
        if self.applied.is_empty() {
            fresh_new = prefixes.clone();
        } else {
            for (p, v) in prefixes.iter().zip(&there) {
                match v {
                    None => fresh_new.push(*p),
                    Some(&have) if have != fp => fresh_replacing.push(*p),
                    Some(_) => {}
                }
            }
        }
        drop(there);
        // Every rule of an import is the template's: packed once, shared by all.
        let packed = self.operator.pack(rule.clone());
        let checked = started.elapsed();
        let overlap = fresh_new.len() >= OVERLAP_MIN;
        // With an overlap, the engine's maps as they will be after the commit are also built
        // alongside it (when the import is a large part of them), and dropped if it fails.
        let mut next_operator = None;
        let mut next_applied = None;
        let (stored, early_result, kernel_time, store_time) = if overlap {
            let store = &self.store;
            let kernel = &mut self.kernel;
            let operator = &self.operator;
            let applied = &self.applied;
            std::thread::scope(|s| {
                let commit = s.spawn(|| {
                    let cpu = thread_cpu();
                    let r = store.put_template_and_remove(&rule, &prefixes, &stale);
                    (r, thread_cpu() - cpu)
                });
                let cpu = thread_cpu();
                let written = kernel.upsert_same(&rule, &fresh_new);
                let kernel_time = thread_cpu() - cpu;
                if prefixes.len() >= operator.len() / 4 {
                    next_operator = Some(operator.merged(&prefixes, &packed, &stale));
                }
                if written.is_ok() && fresh_new.len() >= applied.len() / 4 {
                    next_applied = Some(merged(applied, &fresh_new, &fp, &[]));
                }
                let (stored, store_time) = commit.join().unwrap_or_else(|_| {
                    (
                        Err(anyhow::anyhow!("the store commit panicked")),
                        Default::default(),
                    )
                });
                (stored, written, kernel_time, store_time)
            })
        } else {
            let cpu = thread_cpu();
            let stored = self.store.put_template_and_remove(&rule, &prefixes, &stale);
            (stored, Ok(()), Default::default(), thread_cpu() - cpu)
        };
        let committed = started.elapsed();
        if let Err(err) = stored {
            if overlap {
                self.roll_back_early(&fresh_new, fp, now);
            }
            return Reply::internal(format!(
                "could not store the import (nothing changed): {err:#}"
            ));
        }
        if overlap {
            self.metrics.kernel_writes.inc();
        }
        let early_result = early_result.map_err(|err| {
            self.metrics.kernel_errors.inc();
            log::error!("bulk kernel write: {err:#}; retrying entry by entry");
            format!("{err:#}")
        });
        match next_operator {
            Some(map) => self.operator.replace(map),
            None => {
                for p in &stale {
                    self.operator.remove(p);
                }
                self.operator.insert_sorted(&prefixes, &packed);
            }
        }
        // Without an overlap every entry is written now; with one, those replacing an entry.
        let later = if overlap {
            fresh_replacing
        } else {
            fresh_new.append(&mut fresh_replacing);
            fresh_new.sort_unstable();
            std::mem::take(&mut fresh_new)
        };
        // The new kernel entries noted as written: in the map built alongside, or now.
        let early: &[Prefix] = match next_applied {
            Some(map) => {
                self.applied = map;
                &[]
            }
            None if overlap => &fresh_new,
            None => &[],
        };
        // Operator entries, shared with the fleet like a single block or unset.
        if self.sharing {
            for p in stale.iter().chain(&prefixes) {
                self.touch(Touched::Rule { prefix: *p });
            }
        }
        let written = self.apply_bulk(
            &[BulkPut {
                rule: &rule,
                all: &prefixes,
                early,
                early_result,
                later: &later,
            }],
            &stale,
            now,
        );
        log::info!(
            "imported {} entries{} ({} removed from the list) in {:.2} s: checked {:.2} s, then {:.2} s for the store commit ({:.2} s CPU) and the new kernel entries alongside ({:.2} s CPU), then {:.2} s for the rest",
            prefixes.len(),
            template
                .list
                .as_deref()
                .map(|l| format!(" into list {l}"))
                .unwrap_or_default(),
            stale.len(),
            started.elapsed().as_secs_f64(),
            checked.as_secs_f64(),
            (committed - checked).as_secs_f64(),
            store_time.as_secs_f64(),
            kernel_time.as_secs_f64(),
            (started.elapsed() - committed).as_secs_f64(),
        );
        let mut reply = serde_json::json!({
            "imported": prefixes.len(),
            "removed": stale.len(),
            "list": template.list,
        });
        if let Err(e) = written {
            reply["kernel_error"] = e.into();
        }
        Reply::ok(reply)
    }

    /// The store commit of an import failed after its new entries were written to the kernel:
    /// they are removed again, so the kernel is as it was. Whatever cannot be removed is noted as
    /// written, which makes its timer remove it again until it is gone.
    fn roll_back_early(&mut self, added: &[Prefix], fp: u64, now: i64) {
        self.metrics.kernel_writes.inc();
        if let Err(err) = self.kernel.remove_many(added) {
            self.metrics.kernel_errors.inc();
            log::error!(
                "the import was not stored; removing its {} kernel entries again failed ({err:#}): retrying entry by entry",
                added.len()
            );
            insert_sorted(&mut self.applied, added, &fp);
            for p in added {
                self.schedule(*p, now);
            }
        }
    }

    /// `prefixes` sorted and unique ([`prefixes`]); `None` with `list`.
    pub(super) fn remove_rules(
        &mut self,
        prefixes: Option<Vec<Prefix>>,
        list: Option<&str>,
        now: i64,
    ) -> Reply {
        let prefixes: Vec<Prefix> = match (prefixes, list) {
            (Some(prefixes), None) => prefixes,
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
        if self.sharing {
            for p in &prefixes {
                self.touch(Touched::Rule { prefix: *p });
            }
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

    /// Brings the kernel in line after the operator rules of `puts` were set and `gone` prefixes
    /// lost theirs: the new entries in batches, the gone ones removed in batches unless an engine
    /// record takes the prefix back, then every sender record inside a changed prefix.
    pub(super) fn apply_bulk(
        &mut self,
        puts: &[BulkPut<'_>],
        gone: &[Prefix],
        now: i64,
    ) -> Result<(), String> {
        let mut result = Ok(());
        for put in puts {
            let fp = written(put.rule);
            match &put.early_result {
                Ok(()) => insert_sorted(&mut self.applied, put.early, &fp),
                Err(e) => result = Err(e.clone()),
            }
            if !put.later.is_empty() {
                self.metrics.kernel_writes.inc();
                match self.kernel.upsert_same(put.rule, put.later) {
                    Ok(()) => insert_sorted(&mut self.applied, put.later, &fp),
                    Err(err) => {
                        // Some were written, some not: the per-prefix timers below retry each one.
                        self.metrics.kernel_errors.inc();
                        log::error!("bulk kernel write: {err:#}; retrying entry by entry");
                        result = Err(format!("{err:#}"));
                    }
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
        for put in puts {
            // Nothing to schedule for a rule without expiry whose entry is written, for a prefix
            // without sender record or timer: the usual case of a feed, a million times over. So
            // only the prefixes with a record or a timer are looked at, unless there is more to do.
            if put.rule.expires_at.is_some() || result.is_err() {
                for p in put.all {
                    self.schedule(*p, now);
                }
            } else {
                let inside = |p: &Prefix| put.all.binary_search(p).is_ok();
                let mut busy: Vec<Prefix> = self
                    .records
                    .keys()
                    .chain(self.due.keys())
                    .filter(|p| inside(p))
                    .copied()
                    .collect();
                busy.sort_unstable();
                busy.dedup();
                for p in busy {
                    self.schedule(p, now);
                }
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
        let mut changed: Vec<Prefix> = puts.iter().flat_map(|p| p.all).copied().collect();
        changed.extend_from_slice(gone);
        changed.sort_unstable();
        let inside: Vec<Prefix> = self
            .records
            .keys()
            .filter(|p| {
                (0..p.len()).any(|len| {
                    changed
                        .binary_search(&Prefix::containing(p.addr(), len))
                        .is_ok()
                })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ps(v: &[&str]) -> Vec<Prefix> {
        let mut out: Vec<Prefix> = v.iter().map(|s| s.parse().unwrap()).collect();
        out.sort_unstable();
        out
    }

    #[test]
    fn sorted_inserts_merge_and_replace() {
        for n in [10, 5000] {
            let old: Vec<Prefix> = (0..n)
                .map(|i| Prefix::host(std::net::Ipv4Addr::from(i as u32 * 2).into()))
                .collect();
            let new: Vec<Prefix> = (0..n)
                .map(|i| Prefix::host(std::net::Ipv4Addr::from(i as u32 * 3).into()))
                .collect();
            let mut map: BTreeMap<Prefix, u32> = old.iter().map(|p| (*p, 1)).collect();
            let mut want = map.clone();
            for p in &new {
                want.insert(*p, 2);
            }
            insert_sorted(&mut map, &new, &2);
            assert_eq!(map, want, "{n}");
            let there = values_in(&map, &ps(&["0.0.0.0", "0.0.0.1", "0.0.0.2", "0.0.0.5"]));
            assert_eq!(there, [Some(&2), None, Some(&1), None]);
            let gone = ps(&["0.0.0.0", "0.0.0.2", "0.0.0.8"]);
            let next = merged(&map, &ps(&["0.0.0.0", "0.0.0.9"]), &3, &gone);
            let mut want = map.clone();
            // Removed unless added again in the same step.
            want.remove(&gone[1]);
            want.remove(&gone[2]);
            want.insert(ps(&["0.0.0.0"])[0], 3);
            want.insert(ps(&["0.0.0.9"])[0], 3);
            assert_eq!(next, want, "{n}");
        }
    }
}
