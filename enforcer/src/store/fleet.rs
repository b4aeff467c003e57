//! Fleet sync state (issue 13) in the daemon's database, committed with `Durability::Immediate`:
//! - `fleet_known`: what this host knows of each shared sender and operator entry (key
//!   `sender:<prefix>` / `rule:<prefix>`, value the item as JSON), the base every change is joined to;
//! - `fleet_outbox`: changes made here and not yet published (sequence number -> change as JSON),
//!   kept while Redis is unreachable and published in order when it returns;
//! - `fleet_meta`: the last stream id applied, the hybrid logical clock, the Redis data epoch, the
//!   next queue sequence number.

use super::{read_table, Store};
use crate::fleet::codec::{Change, Item};
use anyhow::Context as _;
use redb::{
    Durability, ReadableDatabase as _, ReadableTable as _, ReadableTableMetadata as _,
    TableDefinition,
};

const KNOWN: TableDefinition<&str, &str> = TableDefinition::new("fleet_known");
const OUTBOX: TableDefinition<u64, &str> = TableDefinition::new("fleet_outbox");
const META: TableDefinition<&str, &str> = TableDefinition::new("fleet_meta");

/// `fleet_meta` keys.
pub const META_LAST_ID: &str = "last_id";
pub const META_HLC: &str = "hlc";
pub const META_EPOCH: &str = "epoch";
/// The sequence number the next queued change gets.
const META_NEXT_SEQ: &str = "next_seq";

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
                let mut meta = tx.open_table(META)?;
                // Sequence numbers only grow, also across an emptied queue: the daemon hands the
                // link everything above the last number it handed.
                let after_last = outbox.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
                let next: u64 = meta
                    .get(META_NEXT_SEQ)?
                    .and_then(|v| v.value().parse().ok())
                    .unwrap_or(1);
                let first = after_last.max(next);
                for (seq, json) in (first..).zip(queued.iter()) {
                    outbox.insert(seq, json.as_str())?;
                    seqs.push(seq);
                }
                if !queued.is_empty() {
                    let next = (first + queued.len() as u64).to_string();
                    meta.insert(META_NEXT_SEQ, next.as_str())?;
                }
                for seq in &w.published {
                    outbox.remove(*seq)?;
                }
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
        Ok(self.fleet_known_many(&[key])?.pop().flatten())
    }

    /// What this host knows of each of `keys`, in one read transaction.
    pub fn fleet_known_many<S: AsRef<str>>(&self, keys: &[S]) -> anyhow::Result<Vec<Option<Item>>> {
        self.read(|db| {
            let tx = db.begin_read()?;
            let Some(t) = read_table(&tx, KNOWN)? else {
                return Ok(keys.iter().map(|_| None).collect());
            };
            keys.iter()
                .map(|key| {
                    let key = key.as_ref();
                    Ok(match t.get(key)? {
                        Some(v) => parse(key, v.value()),
                        None => None,
                    })
                })
                .collect()
        })
    }

    /// Up to `limit` known items with keys after `after` (from the first with `None`), in key
    /// order: callers walk everything known a page at a time, never holding all of it.
    pub fn fleet_known_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> anyhow::Result<Vec<(String, Option<Item>)>> {
        self.read(|db| {
            let tx = db.begin_read()?;
            let Some(t) = read_table(&tx, KNOWN)? else {
                return Ok(Vec::new());
            };
            let rows = match after {
                Some(a) => {
                    t.range::<&str>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))?
                }
                None => t.range::<&str>(..)?,
            };
            let mut out = Vec::new();
            for row in rows.take(limit) {
                let (k, v) = row?;
                out.push((k.value().to_string(), parse(k.value(), v.value())));
            }
            Ok(out)
        })
    }

    /// Everything this host knows, in key order (tests and small stores; the daemon pages).
    pub fn fleet_all_known(&self) -> anyhow::Result<Vec<Item>> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.fleet_known_page(after.as_deref(), 4096)?;
            let Some((last, _)) = page.last() else {
                return Ok(out);
            };
            after = Some(last.clone());
            out.extend(page.into_iter().filter_map(|(_, i)| i));
        }
    }

    /// Up to `limit` queued changes with sequence numbers above `after`, oldest first.
    pub fn fleet_outbox_page(
        &self,
        after: u64,
        limit: usize,
    ) -> anyhow::Result<Vec<(u64, Change)>> {
        self.read(|db| {
            let tx = db.begin_read()?;
            let Some(t) = read_table(&tx, OUTBOX)? else {
                return Ok(Vec::new());
            };
            let mut out = Vec::new();
            for row in t.range(after.saturating_add(1)..)?.take(limit) {
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

    /// The queued changes, oldest first (tests; the daemon pages with [`Store::fleet_outbox_page`]).
    pub fn fleet_outbox(&self) -> anyhow::Result<Vec<(u64, Change)>> {
        self.fleet_outbox_page(0, usize::MAX)
    }

    /// How many changes are queued (a counter kept by the table: no scan).
    pub fn fleet_outbox_len(&self) -> anyhow::Result<u64> {
        self.read(|db| {
            let tx = db.begin_read()?;
            match read_table(&tx, OUTBOX)? {
                Some(t) => Ok(t.len()?),
                None => Ok(0),
            }
        })
    }

    pub fn fleet_meta(&self, key: &str) -> anyhow::Result<Option<String>> {
        self.read(|db| {
            let tx = db.begin_read()?;
            let Some(t) = read_table(&tx, META)? else {
                return Ok(None);
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
