//! Operator rules keyed by prefix (`192.0.2.0/24`), value = the rule as JSON.

use anyhow::Context as _;
use redb::{ReadableDatabase as _, ReadableTable as _, TableDefinition};

use super::Store;
use crate::net::Prefix;
use crate::rule::Rule;

pub(crate) const TABLE: TableDefinition<&str, &str> = TableDefinition::new("operator_rules");

impl Store {
    /// Inserts or replaces the rule for its prefix.
    pub fn put_rule(&self, rule: &Rule) -> anyhow::Result<()> {
        let key = rule.prefix.to_string();
        let value = serde_json::to_string(rule)?;
        self.write(|db| {
            let tx = db.begin_write()?;
            {
                let mut t = tx.open_table(TABLE)?;
                t.insert(key.as_str(), value.as_str())?;
            }
            tx.commit().context("committing the rule")?;
            Ok(())
        })
    }

    /// Inserts or replaces many rules in one transaction (a bulk load: one commit for all).
    pub fn put_rules(&self, rules: &[Rule]) -> anyhow::Result<()> {
        let rows = rules
            .iter()
            .map(|r| Ok((r.prefix.to_string(), serde_json::to_string(r)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        self.write(|db| {
            let tx = db.begin_write()?;
            {
                let mut t = tx.open_table(TABLE)?;
                for (k, v) in &rows {
                    t.insert(k.as_str(), v.as_str())?;
                }
            }
            tx.commit().context("committing the rules")?;
            Ok(())
        })
    }

    /// Removes the rule for exactly `prefix`; returns it if there was one.
    pub fn remove_rule(&self, prefix: &Prefix) -> anyhow::Result<Option<Rule>> {
        let key = prefix.to_string();
        self.write(|db| {
            let tx = db.begin_write()?;
            let old = {
                let mut t = tx.open_table(TABLE)?;
                let old = t.remove(key.as_str())?;
                old.map(|v| serde_json::from_str::<Rule>(v.value()))
                    .transpose()
                    .ok()
                    .flatten()
            };
            tx.commit().context("committing the removal")?;
            Ok(old)
        })
    }

    /// One transaction for a bulk change (`enforcer import`, `unset --from`/`--list`): every prefix
    /// of `remove` loses its rule, then every rule of `put` is inserted or replaced. Returns the
    /// prefixes of `remove` that had a rule.
    pub fn put_and_remove_rules(
        &self,
        put: &[Rule],
        remove: &[Prefix],
    ) -> anyhow::Result<Vec<Prefix>> {
        self.write(|db| {
            let tx = db.begin_write()?;
            let mut removed = Vec::new();
            {
                let mut t = tx.open_table(TABLE)?;
                let mut key = String::with_capacity(48);
                for p in remove {
                    key.clear();
                    use std::fmt::Write as _;
                    let _ = write!(key, "{p}");
                    if t.remove(key.as_str())?.is_some() {
                        removed.push(*p);
                    }
                }
                let mut value = Vec::with_capacity(256);
                for rule in put {
                    key.clear();
                    use std::fmt::Write as _;
                    let _ = write!(key, "{}", rule.prefix);
                    value.clear();
                    serde_json::to_writer(&mut value, rule)?;
                    // serde_json writes UTF-8.
                    let text = std::str::from_utf8(&value).context("encoding the rule")?;
                    t.insert(key.as_str(), text)?;
                }
            }
            tx.commit().context("committing the bulk change")?;
            Ok(removed)
        })
    }

    /// The rule for exactly `prefix`.
    pub fn rule(&self, prefix: &Prefix) -> anyhow::Result<Option<Rule>> {
        let key = prefix.to_string();
        self.read(|db| {
            let tx = db.begin_read()?;
            let t = tx.open_table(TABLE)?;
            Ok(match t.get(key.as_str())? {
                Some(v) => serde_json::from_str(v.value()).ok(),
                None => None,
            })
        })
    }

    /// The prefixes of every operator rule (keys only, unsorted); a row whose key does not parse is
    /// skipped with a warning.
    pub fn rule_prefixes(&self) -> anyhow::Result<Vec<Prefix>> {
        self.read(|db| {
            let tx = db.begin_read()?;
            let t = tx.open_table(TABLE)?;
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, _) = row?;
                match k.value().parse::<Prefix>() {
                    Ok(p) => out.push(p),
                    Err(e) => log::warn!(
                        "skipping operator rule with unreadable key {}: {e}",
                        k.value()
                    ),
                }
            }
            Ok(out)
        })
    }

    /// Hands every operator rule to `f`, one at a time in key order (no copy of the whole table: a
    /// daemon with a million rules starts without holding them twice). A row that no longer parses
    /// is skipped with a warning, as in [`Store::rules`].
    pub fn each_rule(&self, mut f: impl FnMut(Rule)) -> anyhow::Result<()> {
        self.read(|db| {
            let tx = db.begin_read()?;
            let t = tx.open_table(TABLE)?;
            for row in t.iter()? {
                let (k, v) = row?;
                match serde_json::from_str::<Rule>(v.value()) {
                    Ok(r) => f(r),
                    Err(e) => log::warn!("skipping unreadable operator rule {}: {e}", k.value()),
                }
            }
            Ok(())
        })
    }

    /// Every operator rule, sorted by prefix. A row that no longer parses is skipped with a warning
    /// rather than making every command fail.
    pub fn rules(&self) -> anyhow::Result<Vec<Rule>> {
        self.read(|db| {
            let tx = db.begin_read()?;
            let t = tx.open_table(TABLE)?;
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                match serde_json::from_str::<Rule>(v.value()) {
                    Ok(r) => out.push(r),
                    Err(e) => log::warn!("skipping unreadable operator rule {}: {e}", k.value()),
                }
            }
            out.sort_by_key(|a| a.prefix);
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::{RuleSource, Verdict};

    fn rule(p: &str, v: Verdict) -> Rule {
        Rule {
            prefix: p.parse().unwrap(),
            verdict: v,
            expires_at: Some(2_000_000_000),
            reason: Some("test".into()),
            created_at: 1_700_000_000,
            source: RuleSource::Operator,
            list: None,
        }
    }

    fn tempdir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("enforcer-store-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn rules_survive_reopen() {
        let dir = tempdir("reopen");
        {
            let s = Store::open(&dir).unwrap();
            assert!(s.rules().unwrap().is_empty());
            s.put_rule(&rule("192.0.2.0/24", Verdict::Drop)).unwrap();
            s.put_rule(&rule("2001:db8::1", Verdict::Reject)).unwrap();
            s.put_rule(&rule("192.0.2.0/24", Verdict::Pass)).unwrap();
        }
        let s = Store::open(&dir).unwrap();
        let rules = s.rules().unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].verdict, Verdict::Pass);
        let p: Prefix = "2001:db8::1".parse().unwrap();
        assert_eq!(s.rule(&p).unwrap().unwrap().verdict, Verdict::Reject);
        assert!(s.remove_rule(&p).unwrap().is_some());
        assert!(s.remove_rule(&p).unwrap().is_none());
        assert_eq!(s.rules().unwrap().len(), 1);
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bulk_change_is_one_transaction() {
        let dir = tempdir("bulk");
        let s = Store::open(&dir).unwrap();
        s.put_rule(&rule("192.0.2.0/24", Verdict::Drop)).unwrap();
        s.put_rule(&rule("192.0.2.9", Verdict::Drop)).unwrap();
        let put: Vec<Rule> = (1..=3)
            .map(|i| Rule {
                list: Some("feed".into()),
                ..rule(&format!("198.51.100.{i}"), Verdict::Reject)
            })
            .collect();
        let gone = [
            "192.0.2.0/24".parse().unwrap(),
            "203.0.113.1".parse().unwrap(),
        ];
        let removed = s.put_and_remove_rules(&put, &gone).unwrap();
        assert_eq!(removed, vec![gone[0]]);
        let rules = s.rules().unwrap();
        let shown: Vec<String> = rules.iter().map(|r| r.prefix.to_string()).collect();
        assert_eq!(
            shown,
            [
                "192.0.2.9/32",
                "198.51.100.1/32",
                "198.51.100.2/32",
                "198.51.100.3/32"
            ]
        );
        assert_eq!(rules[1].list.as_deref(), Some("feed"));
        assert_eq!(rules[0].list, None);
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn second_open_waits_then_reports_lock() {
        let dir = tempdir("lock");
        let s = Store::open(&dir).unwrap();
        let err = Store::open(&dir).err().unwrap();
        assert!(
            err.downcast_ref::<super::super::Locked>().is_some(),
            "{err:#}"
        );
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
