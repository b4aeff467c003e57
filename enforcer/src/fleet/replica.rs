//! This host's replica of the fleet state: joins local changes and remote ones into what it knows
//! (`fleet_known` in the store), queues local changes durably, and hands merged records to the
//! engine. Synchronous and single-owner like the engine; the tokio shell calls it between requests.

use super::codec::{key_of, Change, Item, VERSION};
use super::hlc::Hlc;
use super::metrics::FleetMetrics;
use super::shared::{RuleState, SenderState};
use crate::daemon::{Engine, Kernel, Touched};
use crate::store::fleet::{FleetWrite, META_EPOCH, META_HLC, META_LAST_ID};
use std::collections::HashMap;

/// Changes joined and queued (or applied) per store transaction: bounds the memory a bulk change
/// takes on its way to the fleet.
pub const CHUNK: usize = 4096;
/// Up to this many remote operator entries in one batch are logged one by one; more, as a count.
const LOG_EACH: usize = 16;

/// What applying a remote change did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The host learned something: records, kernel or operator entries may have changed.
    Changed,
    /// Nothing new (a duplicate, or older than what is known).
    Unchanged,
}

pub struct Replica {
    name: String,
    hlc: Hlc,
    tombstone_ttl: i64,
    metrics: FleetMetrics,
}

impl Replica {
    /// Restores the clock from the store; from now on the engine notes its local changes for it.
    pub fn open<K: Kernel>(
        name: &str,
        engine: &mut Engine<K>,
        tombstone_ttl: i64,
        metrics: FleetMetrics,
    ) -> anyhow::Result<Self> {
        engine.share_changes();
        let last = engine
            .store()
            .fleet_meta(META_HLC)?
            .and_then(|s| {
                let (ms, n) = s.split_once('.')?;
                Some((ms.parse().ok()?, n.parse().ok()?))
            })
            .unwrap_or((0, 0));
        Ok(Replica {
            name: name.to_string(),
            hlc: Hlc::restore(name, last),
            tombstone_ttl,
            metrics,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn hlc_meta(&self) -> (&'static str, String) {
        let (ms, n) = self.hlc.last();
        (META_HLC, format!("{ms}.{n}"))
    }

    /// The last stream id applied and the Redis data epoch, as stored.
    pub fn position<K: Kernel>(
        &self,
        engine: &Engine<K>,
    ) -> anyhow::Result<(Option<String>, Option<String>)> {
        Ok((
            engine.store().fleet_meta(META_LAST_ID)?,
            engine.store().fleet_meta(META_EPOCH)?,
        ))
    }

    /// Joins the engine's local changes into what is known and queues them durably, [`CHUNK`] per
    /// store transaction, so a bulk import of a million entries never exists whole as changes.
    /// Returns how many changes were queued.
    pub fn take_local<K: Kernel>(
        &mut self,
        engine: &mut Engine<K>,
        now_ms: u64,
    ) -> anyhow::Result<usize> {
        let touched = engine.take_touched();
        let now = (now_ms / 1000) as i64;
        let mut queued = 0;
        for chunk in touched.chunks(CHUNK) {
            let mut items = Vec::with_capacity(chunk.len());
            for t in chunk {
                let item = match t {
                    Touched::Sender { prefix, cleared } => match engine.record(prefix)? {
                        Some(rec) => {
                            Item::Sender(SenderState::of_record(&rec, cleared.then_some(now)))
                        }
                        None => continue,
                    },
                    Touched::Forgot { prefix } => {
                        Item::Sender(SenderState::forgotten(*prefix, now))
                    }
                    Touched::Rule { prefix } => Item::Rule(RuleState {
                        prefix: *prefix,
                        stamp: self.hlc.tick(now_ms),
                        rule: engine.operator_rule(prefix),
                    }),
                };
                items.push(item);
            }
            queued += self.queue(engine, items, now_ms, false)?;
        }
        Ok(queued)
    }

    /// Joins `items` into what is known and queues, in one transaction, the ones that add
    /// something (all of them with `all`). A local record that the join changed (another host
    /// knew more) is updated too. Returns how many changes were queued.
    fn queue<K: Kernel>(
        &mut self,
        engine: &mut Engine<K>,
        items: Vec<Item>,
        now_ms: u64,
        all: bool,
    ) -> anyhow::Result<usize> {
        let now = (now_ms / 1000) as i64;
        let mut known_now = Vec::new();
        for (joined, changed) in self.join_known(engine, &items)? {
            if !changed && !all {
                continue;
            }
            if let Item::Sender(s) = &joined {
                let local = engine.record(&s.prefix)?;
                let merged = s.to_record(local.as_ref());
                if merged != local {
                    engine.fleet_sender(
                        s.prefix,
                        merged,
                        "fleet: merged with what other hosts reported",
                        now,
                    )?;
                }
            }
            known_now.push(joined);
        }
        if known_now.is_empty() {
            return Ok(0);
        }
        let changes: Vec<Change> = known_now
            .iter()
            .map(|item| Change {
                v: VERSION,
                origin: self.name.clone(),
                stamp: self.hlc.tick(now_ms),
                item: item.clone(),
            })
            .collect();
        engine.store().fleet_commit(&FleetWrite {
            known: known_now.iter().collect(),
            queue: changes.iter().collect(),
            meta: vec![self.hlc_meta()],
            ..FleetWrite::default()
        })?;
        Ok(changes.len())
    }

    /// Each of `items` joined with what is known (and with the ones before it in `items`: a key
    /// may come twice), and whether that adds anything. One store read for all of them.
    fn join_known<K: Kernel>(
        &self,
        engine: &Engine<K>,
        items: &[Item],
    ) -> anyhow::Result<Vec<(Item, bool)>> {
        let keys: Vec<String> = items.iter().map(Item::key).collect();
        let stored = engine.store().fleet_known_many(&keys)?;
        let mut latest: HashMap<&str, Item> = HashMap::new();
        let mut out = Vec::with_capacity(items.len());
        for ((item, key), stored) in items.iter().zip(&keys).zip(stored) {
            let known = latest.get(key.as_str()).cloned().or(stored);
            let joined = match (known.clone(), item) {
                (Some(Item::Sender(mut k)), Item::Sender(s)) => {
                    k.join(s);
                    Item::Sender(k)
                }
                (Some(Item::Rule(mut k)), Item::Rule(r)) => {
                    k.join(r);
                    Item::Rule(k)
                }
                _ => item.clone(),
            };
            let changed = known.as_ref() != Some(&joined);
            latest.insert(key.as_str(), joined.clone());
            out.push((joined, changed));
        }
        Ok(out)
    }

    /// Applies one validated remote change (`id`: its stream id, remembered as applied).
    pub fn apply<K: Kernel>(
        &mut self,
        engine: &mut Engine<K>,
        change: &Change,
        id: Option<&str>,
        now_ms: u64,
    ) -> anyhow::Result<Applied> {
        let changed = self.apply_many(engine, std::slice::from_ref(change), id, now_ms)?;
        Ok(if changed > 0 {
            Applied::Changed
        } else {
            Applied::Unchanged
        })
    }

    /// Applies validated remote changes in order (`last_id`: the stream id of the last one,
    /// remembered as applied). Operator entries go to the engine as one bulk change (one store
    /// transaction, batched kernel writes), so a host keeps up with another's bulk import.
    /// Returns how many changed something here.
    pub fn apply_many<K: Kernel>(
        &mut self,
        engine: &mut Engine<K>,
        changes: &[Change],
        last_id: Option<&str>,
        now_ms: u64,
    ) -> anyhow::Result<usize> {
        let now = (now_ms / 1000) as i64;
        for change in changes {
            self.hlc.observe(&change.stamp, now_ms);
            if let Item::Rule(r) = &change.item {
                self.hlc.observe(&r.stamp, now_ms);
            }
        }
        let items: Vec<Item> = changes.iter().map(|c| c.item.clone()).collect();
        let joins = self.join_known(engine, &items)?;
        // The last join of each key holds every earlier one.
        let mut last: HashMap<String, usize> = HashMap::new();
        let mut changed = 0;
        for (i, (joined, ch)) in joins.iter().enumerate() {
            if *ch {
                changed += 1;
                last.insert(joined.key(), i);
            }
        }
        self.metrics
            .duplicate
            .inc_by((changes.len() - changed) as u64);
        let mut order: Vec<usize> = last.into_values().collect();
        order.sort_unstable();
        let mut rules = Vec::new();
        for &i in &order {
            match &joins[i].0 {
                Item::Sender(s) => {
                    let local = engine.record(&s.prefix)?;
                    let merged = s.to_record(local.as_ref());
                    if merged != local {
                        let why = format!("fleet: updated from {}", changes[i].origin);
                        engine.fleet_sender(s.prefix, merged, &why, now)?;
                    }
                }
                Item::Rule(r) => {
                    if engine.operator_rule(&r.prefix).as_ref() != r.rule.as_ref() {
                        if order.len() <= LOG_EACH {
                            log::info!(
                                "fleet: operator entry {} {} by {}",
                                r.prefix,
                                r.rule
                                    .as_ref()
                                    .map(|x| x.verdict.describe())
                                    .unwrap_or_else(|| "removed".into()),
                                r.stamp.node
                            );
                        }
                        rules.push((r.prefix, r.rule.clone()));
                    }
                }
            }
        }
        if rules.len() > LOG_EACH {
            log::info!(
                "fleet: {} operator entries set or removed by other hosts",
                rules.len()
            );
        }
        if !rules.is_empty() {
            engine.fleet_rules(rules, now)?;
        }
        let mut meta = vec![self.hlc_meta()];
        if let Some(id) = last_id {
            meta.push((META_LAST_ID, id.to_string()));
        }
        engine.store().fleet_commit(&FleetWrite {
            known: order.iter().map(|&i| &joins[i].0).collect(),
            meta,
            ..FleetWrite::default()
        })?;
        self.metrics.applied.inc_by(changed as u64);
        Ok(changed)
    }

    /// Marks queued changes as published.
    pub fn published<K: Kernel>(&self, engine: &Engine<K>, seqs: Vec<u64>) -> anyhow::Result<()> {
        engine.store().fleet_commit(&FleetWrite {
            published: seqs,
            ..FleetWrite::default()
        })?;
        Ok(())
    }

    pub fn set_position<K: Kernel>(
        &self,
        engine: &Engine<K>,
        last_id: Option<&str>,
        epoch: Option<&str>,
    ) -> anyhow::Result<()> {
        let mut meta = Vec::new();
        meta.extend(last_id.map(|i| (META_LAST_ID, i.to_string())));
        meta.extend(epoch.map(|e| (META_EPOCH, e.to_string())));
        engine.store().fleet_commit(&FleetWrite {
            meta,
            ..FleetWrite::default()
        })?;
        Ok(())
    }

    /// At start-up: local records and operator entries that are not in what is known yet (the
    /// daemon stopped between the engine's commit and the fleet's) are queued now, [`CHUNK`] at a
    /// time. Returns how many changes were queued.
    pub fn catch_up_local<K: Kernel>(
        &mut self,
        engine: &mut Engine<K>,
        now_ms: u64,
    ) -> anyhow::Result<usize> {
        let senders: Vec<Item> = engine
            .records()
            .map(|r| Item::Sender(SenderState::of_record(&r, None)))
            .collect();
        let mut queued = 0;
        for chunk in senders.chunks(CHUNK) {
            queued += self.queue(engine, chunk.to_vec(), now_ms, false)?;
        }
        let prefixes: Vec<_> = engine.operator_prefixes().collect();
        for chunk in prefixes.chunks(CHUNK) {
            let keys: Vec<String> = chunk.iter().map(|p| key_of("rule", p)).collect();
            let known = engine.store().fleet_known_many(&keys)?;
            let mut items = Vec::new();
            for (p, known) in chunk.iter().zip(known) {
                let rule = engine.operator_rule(p);
                let same = matches!(&known, Some(Item::Rule(k)) if k.rule == rule);
                if !same {
                    items.push(Item::Rule(RuleState {
                        prefix: *p,
                        stamp: self.hlc.tick(now_ms),
                        rule,
                    }));
                }
            }
            queued += self.queue(engine, items, now_ms, false)?;
        }
        Ok(queued)
    }

    /// Redis lost its data (restarted without persistence, flushed): everything known is queued
    /// again, a page at a time, so hosts that resync later still find it.
    pub fn republish_all<K: Kernel>(
        &mut self,
        engine: &mut Engine<K>,
        now_ms: u64,
    ) -> anyhow::Result<usize> {
        let mut queued = 0;
        let mut after: Option<String> = None;
        loop {
            let page = engine.store().fleet_known_page(after.as_deref(), CHUNK)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            let items = page.into_iter().filter_map(|(_, i)| i).collect();
            queued += self.queue(engine, items, now_ms, true)?;
        }
        log::info!("fleet: Redis lost its data; queued everything known again ({queued} records)");
        Ok(queued)
    }

    /// Drops tombstones older than the TTL from what is known; returns their keys (to remove from
    /// this host's hash in Redis too).
    pub fn expire_tombstones<K: Kernel>(
        &self,
        engine: &Engine<K>,
        now: i64,
    ) -> anyhow::Result<Vec<String>> {
        let mut gone = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = engine.store().fleet_known_page(after.as_deref(), CHUNK)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for item in page.into_iter().filter_map(|(_, i)| i) {
                let exp = match &item {
                    Item::Sender(s) => s.expires(self.tombstone_ttl),
                    Item::Rule(r) => r.expires(self.tombstone_ttl),
                };
                if exp.is_some_and(|t| t <= now) {
                    gone.push(item.key());
                }
            }
        }
        for keys in gone.chunks(CHUNK) {
            engine.store().fleet_commit(&FleetWrite {
                unknown: keys.to_vec(),
                ..FleetWrite::default()
            })?;
        }
        Ok(gone)
    }
}
