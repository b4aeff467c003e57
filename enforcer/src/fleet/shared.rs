//! What the fleet shares, and how two views of it are merged. Every state here is a join
//! semilattice: [`SenderState::join`] and [`RuleState::join`] are commutative, associative and
//! idempotent, so every host that has seen the same changes holds the same state, whatever order
//! they arrived in and however often (tests/prop: `fleet::tests`).
//!
//! Sender records: first detection = the earliest any host saw; a stage never goes down (the
//! highest stage any host reached for the running episode); evidence = the newest; pauses = the
//! union (an early end wins). Leaving enforcement (exonerating evidence) and `forget` are times:
//! everything they cover is dropped, so a late copy from a host that had not seen them cannot bring
//! the sender back. Operator entries are last-writer-wins by hybrid logical clock; an unset is a
//! tombstone. Tombstones are dropped after a TTL (the only non-lattice step, on each host's own
//! copy; the TTL must be longer than any host stays away).
//!
//! Not shared: kernel counters, rate-limit buckets and the audit history; each host keeps its own.

use super::hlc::Stamp;
use crate::net::Prefix;
use crate::policy::{Episode, Evidence, Pause, Record};
use crate::rule::Rule;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Detection times kept per sender (one per host that detected it independently; a fleet larger
/// than this keeps the earliest ones).
pub const MAX_DETECTIONS: usize = 64;
/// Pauses kept per sender (the yearly budget keeps real ones far fewer).
pub const MAX_PAUSES: usize = 64;

/// A sender as the fleet knows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SenderState {
    pub prefix: Prefix,
    /// `enforcer forget`: everything at or before this time is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forgot_at: Option<i64>,
    /// Latest time a host saw evidence that took the sender out of enforcement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleared_at: Option<i64>,
    /// First-detection times reported by hosts; the earliest is the record's first detection.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub detected: BTreeSet<i64>,
    /// Enforcement episodes still running: start time -> highest stage reached. The episode is the
    /// earliest start with the highest stage of any.
    /// On the wire: `[[start, reached], ...]` (JSON object keys would be strings).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", with = "pairs")]
    pub episodes: BTreeMap<i64, u32>,
    /// The newest evidence (by `seen_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
    /// Sorted by start, one per start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pauses: Vec<Pause>,
}

/// An operator entry (block/reject/throttle/rate-limit/allow) or its removal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleState {
    pub prefix: Prefix,
    /// When the operator made the change, in hybrid logical time: the latest change wins.
    pub stamp: Stamp,
    /// `None`: the entry was removed (a tombstone).
    pub rule: Option<Rule>,
}

impl SenderState {
    pub fn empty(prefix: Prefix) -> Self {
        SenderState {
            prefix,
            forgot_at: None,
            cleared_at: None,
            detected: BTreeSet::new(),
            episodes: BTreeMap::new(),
            evidence: None,
            pauses: Vec::new(),
        }
    }

    /// What a host's own record contributes. `cleared_at`: the record just left enforcement.
    pub fn of_record(rec: &Record, cleared_at: Option<i64>) -> Self {
        let mut s = SenderState::empty(rec.prefix);
        s.cleared_at = cleared_at;
        s.detected.extend(rec.first_detected);
        if let Some(ep) = &rec.episode {
            s.episodes.insert(ep.started_at, ep.reached);
        }
        s.evidence = rec.evidence.clone();
        s.pauses = rec.pauses.clone();
        s.pauses.sort_by_key(|p| p.start);
        s.pauses.dedup_by_key(|p| p.start);
        s.normalize();
        s
    }

    /// A `forget` at `at`.
    pub fn forgotten(prefix: Prefix, at: i64) -> Self {
        SenderState {
            forgot_at: Some(at),
            ..SenderState::empty(prefix)
        }
    }

    /// True when nothing is left but tombstones: the sender has no record.
    pub fn is_gone(&self) -> bool {
        self.detected.is_empty()
            && self.episodes.is_empty()
            && self.evidence.is_none()
            && self.pauses.is_empty()
    }

    /// Merges `other` into `self` (same prefix).
    pub fn join(&mut self, other: &SenderState) {
        debug_assert_eq!(self.prefix, other.prefix);
        self.forgot_at = self.forgot_at.max(other.forgot_at);
        self.cleared_at = self.cleared_at.max(other.cleared_at);
        self.detected.extend(other.detected.iter().copied());
        for (start, reached) in &other.episodes {
            let r = self.episodes.entry(*start).or_insert(0);
            *r = (*r).max(*reached);
        }
        if let Some(theirs) = &other.evidence {
            let newer = match &self.evidence {
                None => true,
                Some(mine) => later(theirs, mine),
            };
            if newer {
                self.evidence = Some(theirs.clone());
            }
        }
        let mut by_start: BTreeMap<i64, Pause> =
            self.pauses.drain(..).map(|p| (p.start, p)).collect();
        for p in &other.pauses {
            by_start
                .entry(p.start)
                .and_modify(|q| {
                    q.until = q.until.max(p.until);
                    q.ended_at = earliest(q.ended_at, p.ended_at);
                })
                .or_insert_with(|| p.clone());
        }
        self.pauses = by_start.into_values().collect();
        self.normalize();
    }

    /// Drops what a forget or a clearance covers and bounds the sets. Idempotent, and it commutes
    /// with `join` (every step is a filter by a maximum, or a minimum).
    fn normalize(&mut self) {
        let cut = self.forgot_at;
        let keep = |t: i64| cut.is_none_or(|c| t > c);
        self.detected.retain(|t| keep(*t));
        while self.detected.len() > MAX_DETECTIONS {
            self.detected.pop_last();
        }
        let ended = self.forgot_at.max(self.cleared_at);
        self.episodes
            .retain(|start, _| ended.is_none_or(|c| *start > c));
        if self.evidence.as_ref().is_some_and(|e| !keep(e.seen_at)) {
            self.evidence = None;
        }
        self.pauses.retain(|p| keep(p.start));
        // Two hosts pausing at once: the earlier pause ends where the next begins, so paused time
        // is never counted twice.
        let starts: Vec<i64> = self.pauses.iter().map(|p| p.start).collect();
        for (i, p) in self.pauses.iter_mut().enumerate() {
            if let Some(next) = starts.get(i + 1) {
                p.ended_at = earliest(p.ended_at, Some(*next));
            }
        }
        while self.pauses.len() > MAX_PAUSES {
            self.pauses.remove(0);
        }
    }

    /// The running episode: the earliest start, at the highest stage any host reached.
    pub fn episode(&self) -> Option<Episode> {
        let (start, _) = self.episodes.first_key_value()?;
        Some(Episode {
            started_at: *start,
            reached: self.episodes.values().copied().max().unwrap_or(1).max(1),
        })
    }

    /// The host's record after merging: the fleet's view of everything shared, the host's own
    /// addresses and history. `None` when the sender has no record any more.
    pub fn to_record(&self, local: Option<&Record>) -> Option<Record> {
        if self.is_gone() {
            return None;
        }
        let mut rec = local.cloned().unwrap_or_else(|| {
            let mut r = Record::new(self.prefix);
            if self.prefix.is_host() {
                r.addresses.push(self.prefix.addr());
            }
            r
        });
        rec.first_detected = self.detected.first().copied();
        rec.evidence = self.evidence.clone();
        rec.episode = self.episode();
        rec.pauses = self.pauses.clone();
        Some(rec)
    }

    /// When a tombstone-only state may be dropped.
    pub fn expires(&self, ttl_secs: i64) -> Option<i64> {
        if !self.is_gone() {
            return None;
        }
        let t = self.forgot_at.max(self.cleared_at)?;
        Some(t.saturating_add(ttl_secs))
    }
}

impl RuleState {
    /// Last writer wins; equal stamps (only from one buggy host) are decided by content.
    pub fn join(&mut self, other: &RuleState) {
        debug_assert_eq!(self.prefix, other.prefix);
        let take = match other.stamp.cmp(&self.stamp) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => json(&other.rule) > json(&self.rule),
        };
        if take {
            *self = other.clone();
        }
    }

    /// When an unset may be dropped.
    pub fn expires(&self, ttl_secs: i64) -> Option<i64> {
        if self.rule.is_some() {
            return None;
        }
        Some(((self.stamp.ms / 1000) as i64).saturating_add(ttl_secs))
    }
}

/// Newer evidence wins; evidence from the same second is decided by content, the same everywhere.
fn later(a: &Evidence, b: &Evidence) -> bool {
    match a.seen_at.cmp(&b.seen_at) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => json(a) > json(b),
    }
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// A map with integer keys as a list of pairs.
mod pairs {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer>(m: &BTreeMap<i64, u32>, s: S) -> Result<S::Ok, S::Error> {
        m.iter().collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<i64, u32>, D::Error> {
        let v: Vec<(i64, u32)> = Vec::deserialize(d)?;
        let n = v.len();
        let m: BTreeMap<i64, u32> = v.into_iter().collect();
        if m.len() != n {
            return Err(serde::de::Error::custom("an episode start appears twice"));
        }
        Ok(m)
    }
}
