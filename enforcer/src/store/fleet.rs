//! Fleet sync state (issue 13) in the daemon's database, committed with `Durability::Immediate`:
//! - `fleet_known`: what this host knows of each shared sender and operator entry (key
//!   `sender:<prefix>` / `rule:<prefix>`, value the item as JSON), the base every change is joined to;
//! - `fleet_outbox`: changes made here and not yet published (sequence number -> change as JSON),
//!   kept while Redis is unreachable and published in order when it returns;
//! - `fleet_meta`: the last stream id applied, the hybrid logical clock, the Redis data epoch.

use super::Store;
use crate::fleet::codec::{Change, Item};
use anyhow::Context as _;
use redb::{Durability, ReadableDatabase as _, ReadableTable as _, TableDefinition};

const KNOWN: TableDefinition<&str, &str> = TableDefinition::new("fleet_known");
const OUTBOX: TableDefinition<u64, &str> = TableDefinition::new("fleet_outbox");
const META: TableDefinition<&str, &str> = TableDefinition::new("fleet_meta");

/// `fleet_meta` keys.
pub const META_LAST_ID: &str = "last_id";
pub const META_HLC: &str = "hlc";
pub const META_EPOCH: &str = "epoch";

/// One write: items now known, changes to queue, meta values to set, keys no longer known, queue
/// entries published. Committed as one transaction.
#[derive(Default)]
pub struct FleetWrite<'a> {
    pub known: Vec<&'a Item>,
    pub queue: Vec<&'a Change>,
    pub meta: Vec<(&'static str, String)>,
    pub unknown: Vec<String>,
    pub published: Vec<u64>,
}

impl Store {
    /// Commits one [`FleetWrite`]; returns the sequence numbers given to the queued changes.
    pub fn fleet_commit(&self, w: &FleetWrite<'_>) -> anyhow::Result<Vec<u64>> {
        let known_rows = w
            .known
            .iter()
            .map(|item| Ok((item.key(), serde_json::to_string(item)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let queued: Vec<String> = w.queue.iter().map(|c| c.encode()).collect();
        self.write(|db| {
            let mut tx = db
                .begin_write()
                .context("opening a write transaction on the fleet tables")?;
            tx.set_durability(Durability::Immediate)?;
            let mut seqs = Vec::new();
            {
                let mut known = tx.open_table(KNOWN)?;
                for (key, json) in &known_rows {
                    known.insert(key.as_str(), json.as_str())?;
                }
                for key in &w.unknown {
                    known.remove(key.as_str())?;
                }
                let mut outbox = tx.open_table(OUTBOX)?;
                let first = outbox.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
                for (seq, json) in (first..).zip(queued.iter()) {
                    outbox.insert(seq, json.as_str())?;
                    seqs.push(seq);
                }
                for seq in &w.published {
                    outbox.remove(*seq)?;
                }
                let mut meta = tx.open_table(META)?;
                for (k, v) in &w.meta {
                    meta.insert(*k, v.as_str())?;
                }
            }
            tx.commit().context("committing fleet state")?;
            Ok(seqs)
        })
    }

    /// What this host knows of one item (`sender:<prefix>` / `rule:<prefix>`).
    pub fn fleet_known(&self, key: &str) -> anyhow::Result<Option<Item>> {
        self.read(|db| {
            let tx = db.begin_read()?;
            let t = match tx.open_table(KNOWN) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(e).context("opening the fleet_known table"),
            };
            Ok(match t.get(key)? {
                Some(v) => parse(key, v.value()),
                None => None,
            })
        })
    }

    /// Everything this host knows, in key order.
    pub fn fleet_all_known(&self) -> anyhow::Result<Vec<Item>> {
        self.read(|db| {
            let tx = db.begin_read()?;
            let t = match tx.open_table(KNOWN) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e).context("opening the fleet_known table"),
            };
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                out.extend(parse(k.value(), v.value()));
            }
            Ok(out)
        })
    }

    /// The queued changes, oldest first.
    pub fn fleet_outbox(&self) -> anyhow::Result<Vec<(u64, Change)>> {
        self.read(|db| {
            let tx = db.begin_read()?;
            let t = match tx.open_table(OUTBOX) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e).context("opening the fleet_outbox table"),
            };
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                match serde_json::from_str::<Change>(v.value()) {
                    Ok(c) => out.push((k.value(), c)),
                    Err(e) => {
                        log::warn!("skipping unreadable queued fleet change {}: {e}", k.value())
                    }
                }
            }
            Ok(out)
        })
    }

    pub fn fleet_meta(&self, key: &str) -> anyhow::Result<Option<String>> {
        self.read(|db| {
            let tx = db.begin_read()?;
            let t = match tx.open_table(META) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(e).context("opening the fleet_meta table"),
            };
            Ok(t.get(key)?.map(|v| v.value().to_string()))
        })
    }
}

fn parse(key: &str, json: &str) -> Option<Item> {
    match serde_json::from_str(json) {
        Ok(i) => Some(i),
        Err(e) => {
            log::warn!("skipping unreadable fleet record {key}: {e}");
            None
        }
    }
}
