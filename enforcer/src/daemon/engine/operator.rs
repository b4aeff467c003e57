//! Operator rules as the engine keeps them in memory. A [`Rule`] is ~190 bytes before its strings
//! (five durations for a throttle, two optional strings); a million imported rules are nearly all
//! plain drops or rejects, so the engine keeps a packed form instead: the verdict in 16 bytes
//! unless it has parameters, the reason as an exact-size string, and each named list's name once.
//! [`OperatorRules::get`] gives the rule back exactly as it was stored.

use std::collections::{BTreeMap, HashSet};
use std::ops::RangeBounds;
use std::sync::Arc;

use crate::net::Prefix;
use crate::rule::{Rule, RuleSource, Verdict};

/// One operator rule without its prefix (the map's key) and source (always the operator).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct OpRule {
    verdict: Packed,
    expires_at: Option<i64>,
    created_at: i64,
    reason: Option<Box<str>>,
    list: Option<Arc<str>>,
}

/// The verdicts without parameters inline; the others (rare: rate limits, throttles) boxed.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Packed {
    Pass,
    Drop,
    Reject,
    Other(Box<Verdict>),
}

impl OpRule {
    pub fn rule(&self, prefix: Prefix) -> Rule {
        Rule {
            prefix,
            verdict: match &self.verdict {
                Packed::Pass => Verdict::Pass,
                Packed::Drop => Verdict::Drop,
                Packed::Reject => Verdict::Reject,
                Packed::Other(v) => (**v).clone(),
            },
            expires_at: self.expires_at,
            reason: self.reason.as_deref().map(str::to_string),
            created_at: self.created_at,
            source: RuleSource::Operator,
            list: self.list.as_deref().map(str::to_string),
        }
    }

    pub fn expires_at(&self) -> Option<i64> {
        self.expires_at
    }

    /// As [`Rule::is_expired`].
    pub fn is_expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }

    pub fn list(&self) -> Option<&str> {
        self.list.as_deref()
    }
}

/// Every operator rule by prefix.
#[derive(Debug, Default)]
pub(super) struct OperatorRules {
    map: BTreeMap<Prefix, OpRule>,
    /// Named-list names, shared by every rule of the list.
    lists: HashSet<Arc<str>>,
}

impl OperatorRules {
    /// Inserts or replaces `rule` for `prefix`; returns the rule it replaced.
    pub fn insert(&mut self, prefix: Prefix, rule: Rule) -> Option<Rule> {
        let packed = self.pack(rule);
        self.map.insert(prefix, packed).map(|old| old.rule(prefix))
    }

    /// Inserts or replaces the rule for every prefix of `sorted` (ascending, unique) with one
    /// [`OperatorRules::pack`] made: a bulk import packs its template once and clones it per
    /// prefix, into the map in one ordered pass.
    pub fn insert_sorted(&mut self, sorted: &[Prefix], rule: &OpRule) {
        super::bulk::insert_sorted(&mut self.map, sorted, rule);
    }

    /// The packed form of `rule` (its prefix is not kept), its list name shared with the rules
    /// already held.
    pub fn pack(&mut self, rule: Rule) -> OpRule {
        let list = rule.list.map(|name| match self.lists.get(name.as_str()) {
            Some(shared) => shared.clone(),
            None => {
                let shared: Arc<str> = name.into();
                self.lists.insert(shared.clone());
                shared
            }
        });
        OpRule {
            verdict: match rule.verdict {
                Verdict::Pass => Packed::Pass,
                Verdict::Drop => Packed::Drop,
                Verdict::Reject => Packed::Reject,
                other => Packed::Other(Box::new(other)),
            },
            expires_at: rule.expires_at,
            created_at: rule.created_at,
            reason: rule.reason.map(String::into_boxed_str),
            list,
        }
    }

    /// The rules as they would be with `rule` for every prefix of `sorted` and none for those of
    /// `remove` (both ascending), as a new map for [`OperatorRules::replace`]; these are unchanged.
    pub fn merged(
        &self,
        sorted: &[Prefix],
        rule: &OpRule,
        remove: &[Prefix],
    ) -> BTreeMap<Prefix, OpRule> {
        super::bulk::merged(&self.map, sorted, rule, remove)
    }

    /// Takes a map [`OperatorRules::merged`] built (its list names come from [`OperatorRules::pack`]).
    pub fn replace(&mut self, map: BTreeMap<Prefix, OpRule>) {
        self.map = map;
    }

    /// Replaces every rule with `rules` (each packed by [`OperatorRules::pack`]), built in one go:
    /// a B-tree filled from a sorted run has full nodes, one filled by inserts in order half-empty
    /// ones.
    pub fn build(&mut self, mut rules: Vec<(Prefix, OpRule)>) {
        rules.sort_unstable_by_key(|(p, _)| *p);
        rules.dedup_by_key(|(p, _)| *p);
        self.map = rules.into_iter().collect();
    }

    pub fn remove(&mut self, prefix: &Prefix) -> Option<Rule> {
        self.map.remove(prefix).map(|old| old.rule(*prefix))
    }

    /// The rule for exactly `prefix`, as stored.
    pub fn get(&self, prefix: &Prefix) -> Option<Rule> {
        self.map.get(prefix).map(|r| r.rule(*prefix))
    }

    /// The packed rule, for what needs only its expiry or list.
    pub fn packed(&self, prefix: &Prefix) -> Option<&OpRule> {
        self.map.get(prefix)
    }

    pub fn contains_key(&self, prefix: &Prefix) -> bool {
        self.map.contains_key(prefix)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn keys(&self) -> impl Iterator<Item = &Prefix> {
        self.map.keys()
    }

    pub fn range(
        &self,
        range: impl RangeBounds<Prefix>,
    ) -> impl Iterator<Item = (&Prefix, &OpRule)> {
        self.map.range(range)
    }

    /// Every rule, rebuilt one at a time (the `rules` request).
    pub fn values(&self) -> impl Iterator<Item = Rule> + '_ {
        self.map.iter().map(|(p, r)| r.rule(*p))
    }

    /// The prefixes of list `name` that are not in `keep` (sorted: what a new import of the list
    /// drops), in order.
    pub fn stale(&self, name: &str, keep: &[Prefix]) -> Vec<Prefix> {
        debug_assert!(keep.windows(2).all(|w| w[0] < w[1]), "keep is sorted");
        // Both in order: one walk along `keep` beside the map's keys.
        let mut keep = keep.iter().peekable();
        self.map
            .iter()
            .filter(|(_, r)| r.list() == Some(name))
            .map(|(p, _)| *p)
            .filter(|p| {
                while keep.next_if(|k| *k < p).is_some() {}
                keep.peek() != Some(&p)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::Span;

    fn rule(p: &str, verdict: Verdict, list: Option<&str>) -> Rule {
        Rule {
            prefix: p.parse().unwrap(),
            verdict,
            expires_at: Some(1_800_000_000),
            reason: Some(format!("why {p}")),
            created_at: 1_700_000_000,
            source: RuleSource::Operator,
            list: list.map(str::to_string),
        }
    }

    #[test]
    fn rules_come_back_exactly_as_stored() {
        let throttle = Verdict::Throttle {
            period: Span(std::time::Duration::from_secs(3600)),
            window: Span(std::time::Duration::from_secs(300)),
            phase: Span::default(),
            block_offset: Span::default(),
            block: Span::default(),
            rst: true,
            notice: None,
        };
        let rules = [
            rule("192.0.2.1", Verdict::Drop, None),
            rule("192.0.2.2", Verdict::Reject, Some("feed")),
            rule("192.0.2.3", Verdict::Pass, Some("feed")),
            rule("2001:db8::/48", throttle, None),
            rule(
                "198.51.100.0/24",
                Verdict::RateLimit {
                    per_min: 3,
                    burst: 5,
                    rst: false,
                },
                Some("other"),
            ),
        ];
        let mut ops = OperatorRules::default();
        for r in &rules {
            assert_eq!(ops.insert(r.prefix, r.clone()), None);
        }
        for r in &rules {
            assert_eq!(ops.get(&r.prefix).as_ref(), Some(r));
        }
        assert_eq!(ops.lists.len(), 2, "each list name kept once");
        let mut none = rules[0].clone();
        none.reason = None;
        none.expires_at = None;
        assert_eq!(
            ops.insert(none.prefix, none.clone()),
            Some(rules[0].clone())
        );
        assert_eq!(ops.get(&none.prefix), Some(none));
        assert_eq!(ops.stale("feed", &[rules[1].prefix]), vec![rules[2].prefix]);
        assert!(ops
            .packed(&rules[1].prefix)
            .unwrap()
            .is_expired(1_800_000_000));
        assert_eq!(ops.remove(&rules[3].prefix), Some(rules[3].clone()));
        assert_eq!(ops.len(), 4);
        let sorted: Vec<Prefix> = ops.values().map(|r| r.prefix).collect();
        assert!(sorted.windows(2).all(|w| w[0] < w[1]));
    }

    /// The packed form is what makes a million rules fit: keep it small.
    #[test]
    fn a_packed_rule_is_small() {
        assert!(
            std::mem::size_of::<OpRule>() <= 72,
            "{}",
            std::mem::size_of::<OpRule>()
        );
    }
}
