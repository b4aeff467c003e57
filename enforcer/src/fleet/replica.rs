//! This host's replica of the fleet state: joins local changes and remote ones into what it knows
//! (`fleet_known` in the store), queues local changes durably, and hands merged records to the
//! engine. Synchronous and single-owner like the engine; the tokio shell calls it between requests.

use super::codec::{key_of, Change, Item, VERSION};
use super::hlc::Hlc;
use super::metrics::FleetMetrics;
use super::shared::{RuleState, SenderState};
use crate::daemon::{Engine, Kernel, Touched};
use crate::store::fleet::{FleetWrite, META_EPOCH, META_HLC, META_LAST_ID};

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
    /// Restores the clock from the store.
    pub fn open<K: Kernel>(
        name: &str,
        engine: &Engine<K>,
        tombstone_ttl: i64,
        metrics: FleetMetrics,
    ) -> anyhow::Result<Self> {
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

    /// Joins the engine's local changes into what is known and queues them, durably, in one
    /// transaction. Returns the queued changes with their sequence numbers.
    pub fn take_local<K: Kernel>(
        &mut self,
        engine: &mut Engine<K>,
        now_ms: u64,
    ) -> anyhow::Result<Vec<(u64, Change)>> {
        let touched = engine.take_touched();
        if touched.is_empty() {
            return Ok(Vec::new());
        }
        let now = (now_ms / 1000) as i64;
        let mut items = Vec::new();
        for t in touched {
            let item = match t {
                Touched::Sender { prefix, cleared } => match engine.record(&prefix) {
                    Some(rec) => Item::Sender(SenderState::of_record(rec, cleared.then_some(now))),
                    None => continue,
                },
                Touched::Forgot { prefix } => Item::Sender(SenderState::forgotten(prefix, now)),
                Touched::Rule { prefix } => Item::Rule(RuleState {
                    prefix,
                    stamp: self.hlc.tick(now_ms),
                    rule: engine.operator_rule(&prefix),
                }),
            };
            items.push(item);
        }
        self.queue(engine, items, now_ms, "")
    }

    /// Joins `items` into what is known; the ones that add something are queued for publishing.
    /// A local record that the join changed (another host knew more) is updated too.
    fn queue<K: Kernel>(
        &mut self,
        engine: &mut Engine<K>,
        items: Vec<Item>,
        now_ms: u64,
        why: &str,
    ) -> anyhow::Result<Vec<(u64, Change)>> {
        let now = (now_ms / 1000) as i64;
        let mut known_now = Vec::new();
        for item in items {
            let (joined, changed) = self.join_known(engine, &item)?;
            if !changed && why.is_empty() {
                continue;
            }
            if let Item::Sender(s) = &joined {
                let local = engine.record(&s.prefix);
                let merged = s.to_record(local);
                if merged.as_ref() != local {
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
        let changes: Vec<Change> = known_now
            .iter()
            .map(|item| Change {
                v: VERSION,
                origin: self.name.clone(),
                stamp: self.hlc.tick(now_ms),
                item: item.clone(),
            })
            .collect();
        let seqs = engine.store().fleet_commit(&FleetWrite {
            known: known_now.iter().collect(),
            queue: changes.iter().collect(),
            meta: vec![self.hlc_meta()],
            ..FleetWrite::default()
        })?;
        if !why.is_empty() {
            log::info!("fleet: {why}: queued {} records", changes.len());
        }
        Ok(seqs.into_iter().zip(changes).collect())
    }

    /// `item` joined with what is known, and whether that adds anything.
    fn join_known<K: Kernel>(
        &self,
        engine: &Engine<K>,
        item: &Item,
    ) -> anyhow::Result<(Item, bool)> {
        let known = engine.store().fleet_known(&item.key())?;
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
        Ok((joined, changed))
    }

    /// Applies one validated remote change (`id`: its stream id, remembered as applied).
    pub fn apply<K: Kernel>(
        &mut self,
        engine: &mut Engine<K>,
        change: &Change,
        id: Option<&str>,
        now_ms: u64,
    ) -> anyhow::Result<Applied> {
        let now = (now_ms / 1000) as i64;
        self.hlc.observe(&change.stamp, now_ms);
        if let Item::Rule(r) = &change.item {
            self.hlc.observe(&r.stamp, now_ms);
        }
        let (joined, changed) = self.join_known(engine, &change.item)?;
        let mut meta = vec![self.hlc_meta()];
        if let Some(id) = id {
            meta.push((META_LAST_ID, id.to_string()));
        }
        if !changed {
            self.metrics.duplicate.inc();
            engine.store().fleet_commit(&FleetWrite {
                meta,
                ..FleetWrite::default()
            })?;
            return Ok(Applied::Unchanged);
        }
        match &joined {
            Item::Sender(s) => {
                let local = engine.record(&s.prefix);
                let merged = s.to_record(local);
                if merged.as_ref() != local {
                    let why = format!("fleet: updated from {}", change.origin);
                    engine.fleet_sender(s.prefix, merged, &why, now)?;
                }
            }
            Item::Rule(r) => {
                if engine.operator_rule(&r.prefix).as_ref() != r.rule.as_ref() {
                    log::info!(
                        "fleet: operator entry {} {} by {}",
                        r.prefix,
                        r.rule
                            .as_ref()
                            .map(|x| x.verdict.describe())
                            .unwrap_or_else(|| "removed".into()),
                        r.stamp.node
                    );
                    engine.fleet_rule(r.prefix, r.rule.clone(), now)?;
                }
            }
        }
        engine.store().fleet_commit(&FleetWrite {
            known: vec![&joined],
            meta,
            ..FleetWrite::default()
        })?;
        self.metrics.applied.inc();
        Ok(Applied::Changed)
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
    /// daemon stopped between the engine's commit and the fleet's) are queued now.
    pub fn catch_up_local<K: Kernel>(
        &mut self,
        engine: &mut Engine<K>,
        now_ms: u64,
    ) -> anyhow::Result<Vec<(u64, Change)>> {
        let mut items: Vec<Item> = engine
            .records()
            .map(|r| Item::Sender(SenderState::of_record(r, None)))
            .collect();
        for rule in engine.operator_rules().collect::<Vec<_>>() {
            let known = engine.store().fleet_known(&key_of("rule", &rule.prefix))?;
            let same = matches!(&known, Some(Item::Rule(k)) if k.rule.as_ref() == Some(&rule));
            if !same {
                items.push(Item::Rule(RuleState {
                    prefix: rule.prefix,
                    stamp: self.hlc.tick(now_ms),
                    rule: Some(rule),
                }));
            }
        }
        self.queue(engine, items, now_ms, "")
    }

    /// Redis lost its data (restarted without persistence, flushed): everything known is published
    /// again, so hosts that resync later still find it.
    pub fn republish_all<K: Kernel>(
        &mut self,
        engine: &mut Engine<K>,
        now_ms: u64,
    ) -> anyhow::Result<Vec<(u64, Change)>> {
        let items = engine.store().fleet_all_known()?;
        self.queue(
            engine,
            items,
            now_ms,
            "Redis lost its data; publishing everything known again",
        )
    }

    /// Drops tombstones older than the TTL from what is known; returns their keys (to remove from
    /// this host's hash in Redis too).
    pub fn expire_tombstones<K: Kernel>(
        &self,
        engine: &Engine<K>,
        now: i64,
    ) -> anyhow::Result<Vec<String>> {
        let mut gone = Vec::new();
        for item in engine.store().fleet_all_known()? {
            let exp = match &item {
                Item::Sender(s) => s.expires(self.tombstone_ttl),
                Item::Rule(r) => r.expires(self.tombstone_ttl),
            };
            if exp.is_some_and(|t| t <= now) {
                gone.push(item.key());
            }
        }
        if !gone.is_empty() {
            engine.store().fleet_commit(&FleetWrite {
                unknown: gone.clone(),
                ..FleetWrite::default()
            })?;
        }
        Ok(gone)
    }
}
