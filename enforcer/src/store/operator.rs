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
        self.put_and_remove_rules(rules, &[]).map(|_| ())
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
    ///
    /// Both sets go in in key order: redb's B-tree then touches each page once, in sequence, instead
    /// of a random page per row, which with a million rows and the capped write cache (half of
    /// [`super::CACHE_BYTES`]) spilled and re-read pages all through the transaction.
    pub fn put_and_remove_rules(
        &self,
        put: &[Rule],
        remove: &[Prefix],
    ) -> anyhow::Result<Vec<Prefix>> {
        let put_keys = sorted_keys(put.iter().map(|r| &r.prefix));
        self.bulk_change(&put_keys, remove, |i, _, value| {
            serde_json::to_writer(value, &put[i]).map_err(Into::into)
        })
    }

    /// [`Store::put_and_remove_rules`] for an import, where every rule is `template` (its own prefix
    /// ignored) for one prefix of `put`: the rule is serialized once and each row's JSON is that
    /// text with the row's prefix put in (a million `serde_json` runs were a fifth of the store's
    /// time).
    pub fn put_template_and_remove(
        &self,
        template: &Rule,
        put: &[Prefix],
        remove: &[Prefix],
    ) -> anyhow::Result<Vec<Prefix>> {
        let put_keys = sorted_keys(put.iter());
        match Spliced::of(template)? {
            Some(sp) => self.bulk_change(&put_keys, remove, |_, key, value| {
                sp.write(key, value);
                Ok(())
            }),
            None => self.bulk_change(&put_keys, remove, |i, _, value| {
                let mut r = template.clone();
                r.prefix = put[i];
                serde_json::to_writer(value, &r).map_err(Into::into)
            }),
        }
    }

    /// One transaction: the rows of `remove` deleted, then a row per key of `put` with the value
    /// `value(index in the input, key, buffer)` writes.
    fn bulk_change(
        &self,
        put: &SortedKeys,
        remove: &[Prefix],
        value: impl Fn(usize, &str, &mut Vec<u8>) -> anyhow::Result<()>,
    ) -> anyhow::Result<Vec<Prefix>> {
        let remove_keys = sorted_keys(remove.iter());
        self.write(|db| {
            let tx = db.begin_write()?;
            let mut removed = Vec::new();
            {
                let mut t = tx.open_table(TABLE)?;
                for (key, i) in remove_keys.iter() {
                    if t.remove(key)?.is_some() {
                        removed.push(i);
                    }
                }
                let mut buf = Vec::with_capacity(256);
                for (key, i) in put.iter() {
                    buf.clear();
                    value(i, key, &mut buf)?;
                    // serde_json writes UTF-8, and a key is ASCII.
                    let text = std::str::from_utf8(&buf).context("encoding the rule")?;
                    t.insert(key, text)?;
                }
            }
            tx.commit().context("committing the bulk change")?;
            // In the caller's order, as they were given.
            removed.sort_unstable();
            Ok(removed.into_iter().map(|i| remove[i]).collect())
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

/// A rule's JSON split around the text of its prefix: `head`, the prefix, `tail`.
struct Spliced {
    head: String,
    tail: String,
}

impl Spliced {
    /// `None` when the prefix's text is not found exactly once where the field is (it always is:
    /// a string field's quotes are escaped, so `"prefix":"` cannot appear inside another value).
    fn of(template: &Rule) -> anyhow::Result<Option<Self>> {
        let text = serde_json::to_string(template)?;
        let field = format!("\"prefix\":\"{}\"", template.prefix);
        let mut at = text.match_indices(&field);
        let (Some((start, _)), None) = (at.next(), at.next()) else {
            return Ok(None);
        };
        let value_start = start + "\"prefix\":\"".len();
        let value_end = start + field.len() - 1;
        Ok(Some(Self {
            head: text[..value_start].to_string(),
            tail: text[value_end..].to_string(),
        }))
    }

    fn write(&self, key: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(self.head.as_bytes());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(self.tail.as_bytes());
    }
}

/// The store keys of many prefixes, written into one buffer (a million keys without a million
/// allocations), in the store's order.
struct SortedKeys {
    text: String,
    /// `(start, end, index in the input)` of each key in `text`, sorted by key.
    spans: Vec<(u32, u32, u32)>,
}

impl SortedKeys {
    /// `(key, index in the input)` in key order.
    fn iter(&self) -> impl Iterator<Item = (&str, usize)> {
        self.spans
            .iter()
            .map(|&(a, b, i)| (&self.text[a as usize..b as usize], i as usize))
    }
}

fn sorted_keys<'a>(prefixes: impl ExactSizeIterator<Item = &'a Prefix>) -> SortedKeys {
    let mut text = String::with_capacity(prefixes.len() * 20);
    // (first 16 bytes of the key as a big-endian number, start, end, index): most keys differ in
    // their first 16 bytes, so most comparisons are one integer compare instead of two slices'.
    let mut order = Vec::with_capacity(prefixes.len());
    for (i, p) in prefixes.enumerate() {
        let start = text.len();
        write_key(&mut text, p);
        let key = &text.as_bytes()[start..];
        let mut head = [0u8; 16];
        let n = key.len().min(16);
        head[..n].copy_from_slice(&key[..n]);
        // A million keys are ~20 MB: far inside u32.
        order.push((
            u128::from_be_bytes(head),
            start as u32,
            text.len() as u32,
            i as u32,
        ));
    }
    // Keys are ASCII with no NUL, so zero padding sorts a shorter key before its extensions, as
    // string order does.
    order.sort_unstable_by(|x, y| {
        x.0.cmp(&y.0).then_with(|| {
            text.as_bytes()[x.1 as usize..x.2 as usize]
                .cmp(&text.as_bytes()[y.1 as usize..y.2 as usize])
        })
    });
    let spans = order.into_iter().map(|(_, a, b, i)| (a, b, i)).collect();
    SortedKeys { text, spans }
}

/// `p`'s store key (its `Display` form) appended to `text`; IPv4 without the formatting machinery
/// (a million keys).
fn write_key(text: &mut String, p: &Prefix) {
    use std::fmt::Write as _;
    match p.addr() {
        std::net::IpAddr::V4(a) => {
            for (k, octet) in a.octets().into_iter().enumerate() {
                if k > 0 {
                    text.push('.');
                }
                push_decimal(text, octet);
            }
            text.push('/');
            push_decimal(text, p.len());
        }
        std::net::IpAddr::V6(_) => {
            let _ = write!(text, "{p}");
        }
    }
}

fn push_decimal(text: &mut String, n: u8) {
    if n >= 100 {
        text.push(char::from(b'0' + n / 100));
    }
    if n >= 10 {
        text.push(char::from(b'0' + n / 10 % 10));
    }
    text.push(char::from(b'0' + n % 10));
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

    /// The spliced rows are exactly what serializing each rule writes, whatever the reason holds.
    #[test]
    fn keys_are_display_forms_in_string_order() {
        let ps: Vec<Prefix> = [
            "0.0.0.0/0",
            "255.255.255.255",
            "10.0.0.0/8",
            "10.100.200.0/24",
            "1.2.3.4",
            "100.64.0.0/10",
            "2001:db8::1",
            "2001:db8::/32",
            "::/0",
            "10.0.0.0/16",
        ]
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
        let keys = sorted_keys(ps.iter());
        let got: Vec<(String, usize)> = keys.iter().map(|(k, i)| (k.to_string(), i)).collect();
        let mut want: Vec<(String, usize)> = ps
            .iter()
            .enumerate()
            .map(|(i, p)| (p.to_string(), i))
            .collect();
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn template_rows_are_the_rules_json() {
        let dir = tempdir("template");
        let s = Store::open(&dir).unwrap();
        let mut t = rule("0.0.0.0/32", Verdict::Reject);
        t.reason = Some("\"prefix\":\"0.0.0.0/32\" \\ é".into());
        t.list = Some("feed".into());
        let put: Vec<Prefix> = ["192.0.2.0/24", "2001:db8::1", "198.51.100.7"]
            .iter()
            .map(|p| p.parse().unwrap())
            .collect();
        s.put_template_and_remove(&t, &put, &[]).unwrap();
        let mut want: Vec<Rule> = put
            .iter()
            .map(|p| Rule {
                prefix: *p,
                ..t.clone()
            })
            .collect();
        want.sort_by_key(|r| r.prefix.to_string());
        let mut got = s.rules().unwrap();
        got.sort_by_key(|r| r.prefix.to_string());
        assert_eq!(got, want);
        let plain = rule("0.0.0.0/32", Verdict::Drop);
        let sp = Spliced::of(&plain).unwrap().expect("found");
        let mut out = Vec::new();
        sp.write("192.0.2.0/24", &mut out);
        let mut r = plain.clone();
        r.prefix = "192.0.2.0/24".parse().unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            serde_json::to_string(&r).unwrap()
        );
        let _ = std::fs::remove_dir_all(&dir);
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
