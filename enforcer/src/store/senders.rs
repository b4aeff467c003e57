//! Sender records in the daemon's redb database: table `senders`, key = the record's prefix as text
//! (`192.0.2.7/32`), value = the record as JSON (the `enforcer sender --json` format).
//!
//! Each change is one write transaction committed with `Durability::Immediate` (fsync before the
//! commit returns), and the daemon replies to the CLI only after the commit: a change the CLI was told
//! succeeded survives `kill -9` of the daemon at any moment.

use super::{read_table, Store};
use crate::net::Prefix;
use crate::policy::Record;
use anyhow::Context;
use redb::{Durability, ReadableDatabase, ReadableTable, TableDefinition};

const SENDERS: TableDefinition<&str, &str> = TableDefinition::new("senders");

impl Store {
    /// Stores (inserts or replaces) records in one committed transaction.
    pub fn put_senders<'a>(
        &self,
        recs: impl IntoIterator<Item = &'a Record>,
    ) -> anyhow::Result<()> {
        let rows = recs
            .into_iter()
            .map(|rec| Ok((rec.prefix.to_string(), serde_json::to_string(rec)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        self.write(|db| {
            let mut txn = db
                .begin_write()
                .context("opening a write transaction on the sender table")?;
            txn.set_durability(Durability::Immediate)?;
            {
                let mut table = txn.open_table(SENDERS)?;
                for (key, json) in &rows {
                    table.insert(key.as_str(), json.as_str())?;
                }
            }
            txn.commit().context("committing sender records")?;
            Ok(())
        })
    }

    /// Stores one record durably.
    pub fn put_sender(&self, rec: &Record) -> anyhow::Result<()> {
        self.put_senders([rec])
    }

    /// Deletes a record; returns whether it existed.
    pub fn remove_sender(&self, prefix: &Prefix) -> anyhow::Result<bool> {
        let key = prefix.to_string();
        self.write(|db| {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            let existed = {
                let mut table = txn.open_table(SENDERS)?;
                let old = table.remove(key.as_str())?;
                old.is_some()
            };
            txn.commit()
                .context("committing the removal of a sender record")?;
            Ok(existed)
        })
    }

    /// Every stored record. A record that no longer parses (written by a newer version, damaged) is
    /// skipped with a warning rather than stopping the daemon; it stays in the table untouched.
    pub fn senders(&self) -> anyhow::Result<Vec<Record>> {
        let mut out = Vec::new();
        self.each_sender(|rec| out.push(rec))?;
        Ok(out)
    }

    /// Hands every stored record to `f`, one at a time (a daemon with a million senders starts
    /// without holding them all whole). Unreadable rows are skipped as in [`Store::senders`].
    pub fn each_sender(&self, mut f: impl FnMut(Record)) -> anyhow::Result<()> {
        self.read(|db| {
            let txn = db.begin_read()?;
            let Some(table) = read_table(&txn, SENDERS)? else {
                return Ok(());
            };
            for item in table.iter()? {
                let (k, v) = item?;
                match serde_json::from_str::<Record>(v.value()) {
                    Ok(rec) => f(rec),
                    Err(e) => log::warn!("skipping unreadable sender record {}: {e}", k.value()),
                }
            }
            Ok(())
        })
    }

    /// The stored records of `prefixes`, in their order (`None` where there is none), read in one
    /// transaction. A record that no longer parses is an error here: the caller is about to change
    /// it and must not replace it with a new one unknowingly.
    pub fn senders_of(&self, prefixes: &[Prefix]) -> anyhow::Result<Vec<Option<Record>>> {
        self.read(|db| {
            let txn = db.begin_read()?;
            let Some(table) = read_table(&txn, SENDERS)? else {
                return Ok(prefixes.iter().map(|_| None).collect());
            };
            let mut out = Vec::with_capacity(prefixes.len());
            for p in prefixes {
                let key = p.to_string();
                let rec = match table.get(key.as_str())? {
                    Some(v) => {
                        Some(serde_json::from_str::<Record>(v.value()).with_context(|| {
                            format!("the stored sender record {key} does not parse")
                        })?)
                    }
                    None => None,
                };
                out.push(rec);
            }
            Ok(out)
        })
    }

    /// The stored record of one prefix.
    pub fn sender(&self, prefix: &Prefix) -> anyhow::Result<Option<Record>> {
        Ok(self
            .senders_of(std::slice::from_ref(prefix))?
            .pop()
            .flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Evidence, Policy, Status};

    fn tmpdir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("enforcer-senders-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn put_get_remove_round_trip() {
        let dir = tmpdir("rt");
        let p = Policy::default();
        let ev = Evidence {
            seen_at: 10,
            product: "exchange".into(),
            version: None,
            build: Some("15.0.1497.2".into()),
            label: None,
            status: Status::EndOfLife,
            persistently_vulnerable: true,
            confidence: 1.0,
            upgrade_to: None,
            findings: vec![],
        };
        let a = p.observe(None, "192.0.2.7".parse().unwrap(), ev.clone(), 10);
        let b = p.observe(None, "2001:db8::7".parse().unwrap(), ev, 11);
        {
            let db = Store::open(&dir).unwrap();
            assert!(
                db.senders().unwrap().is_empty(),
                "a fresh database has no sender table yet"
            );
            db.put_senders([&a, &b]).unwrap();
        }
        // Reopened: the records are on disk.
        let db = Store::open(&dir).unwrap();
        let mut all = db.senders().unwrap();
        all.sort_by_key(|r| r.prefix);
        assert_eq!(all, vec![a.clone(), b.clone()]);
        assert!(db.remove_sender(&a.prefix).unwrap());
        assert!(!db.remove_sender(&a.prefix).unwrap());
        assert_eq!(db.senders().unwrap(), vec![b]);
        drop(db);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
