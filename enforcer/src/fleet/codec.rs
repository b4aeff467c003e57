//! The wire format of one fleet change, as it is written to the Redis stream and to each host's
//! hash of current records, and its validation. Nothing read from Redis is trusted: a change is
//! checked like CLI input (size, host name, prefix, times, stages, string lengths, the rule's own
//! checks) and refused with a reason that is counted (`enforcer_fleet_changes_rejected_total`).

use super::hlc::{Stamp, MAX_SKEW_MS};
use super::shared::{RuleState, SenderState, MAX_DETECTIONS, MAX_PAUSES};
use crate::net::Prefix;
use crate::rule::RuleSource;
use serde::{Deserialize, Serialize};

/// Format version written into every change.
pub const VERSION: u32 = 1;
/// Largest change accepted (a sender with every finding is a few KiB).
pub const MAX_CHANGE_BYTES: usize = 64 * 1024;
/// Longest host name (`fleet.name`).
pub const MAX_NAME: usize = 64;
/// Highest stage a record may claim (no schedule is this long).
pub const MAX_STAGE: u32 = 64;
/// Longest evidence string (product, build, label, upgrade hint, one finding).
pub const MAX_TEXT: usize = 1024;
/// Most findings per evidence.
pub const MAX_FINDINGS: usize = 64;
/// Earliest time accepted in a record (2000-01-01): anything older is a damaged record.
const EARLIEST: i64 = 946_684_800;
/// Longest pause (the yearly budget is at most a year).
const MAX_PAUSE_SECS: i64 = 366 * 86_400;

/// One change: the whole current state of one sender or operator entry as the origin knows it.
/// Applying it is a join, so applying it twice changes nothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    pub v: u32,
    /// `fleet.name` of the host that published it.
    pub origin: String,
    /// When it was published, in hybrid logical time.
    pub stamp: Stamp,
    pub item: Item,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Item {
    Sender(SenderState),
    Rule(RuleState),
}

impl Item {
    pub fn prefix(&self) -> Prefix {
        match self {
            Item::Sender(s) => s.prefix,
            Item::Rule(r) => r.prefix,
        }
    }

    /// The key of this item in the store and in each host's Redis hash: `sender:192.0.2.7/32`.
    pub fn key(&self) -> String {
        key_of(self.kind(), &self.prefix())
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Item::Sender(_) => "sender",
            Item::Rule(_) => "rule",
        }
    }
}

pub fn key_of(kind: &str, prefix: &Prefix) -> String {
    format!("{kind}:{prefix}")
}

/// Why a change was refused; `label()` is the metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("change is {0} bytes, more than the {MAX_CHANGE_BYTES} allowed")]
    TooLarge(usize),
    #[error("change is not a valid JSON change record: {0}")]
    Malformed(String),
    #[error("change has format version {0}; this enforcer reads version {VERSION} (upgrade it)")]
    Version(u32),
    #[error("bad host name `{0}`: 1-{MAX_NAME} characters of A-Z a-z 0-9 . _ -")]
    Origin(String),
    #[error("stamp is from {0}, whose clock is more than 5 minutes ahead of this host")]
    Future(String),
    #[error("{0}")]
    Invalid(String),
}

impl Refused {
    pub fn label(&self) -> &'static str {
        match self {
            Refused::TooLarge(_) => "too_large",
            Refused::Malformed(_) => "malformed",
            Refused::Version(_) => "version",
            Refused::Origin(_) => "origin",
            Refused::Future(_) => "future",
            Refused::Invalid(_) => "invalid",
        }
    }
}

/// Checks a host name (`fleet.name` and every origin read back).
pub fn check_name(name: &str) -> Result<(), Refused> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Refused::Origin(name.chars().take(80).collect()))
    }
}

impl Change {
    pub fn encode(&self) -> String {
        // Plain data (strings, numbers, maps with string keys): serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Decodes and validates one change read from Redis. `now_ms`: this host's wall clock.
    pub fn decode(bytes: &[u8], now_ms: u64) -> Result<Change, Refused> {
        if bytes.len() > MAX_CHANGE_BYTES {
            return Err(Refused::TooLarge(bytes.len()));
        }
        let c: Change = serde_json::from_slice(bytes).map_err(|e| {
            let mut m = e.to_string();
            m.truncate(200);
            Refused::Malformed(m)
        })?;
        c.validate(now_ms)?;
        Ok(c)
    }

    pub fn validate(&self, now_ms: u64) -> Result<(), Refused> {
        if self.v != VERSION {
            return Err(Refused::Version(self.v));
        }
        check_name(&self.origin)?;
        if self.stamp.node != self.origin {
            return Err(Refused::Invalid(format!(
                "stamp names host `{}` but the change comes from `{}`",
                self.stamp.node.chars().take(80).collect::<String>(),
                self.origin
            )));
        }
        if self.stamp.ms > now_ms.saturating_add(MAX_SKEW_MS) {
            return Err(Refused::Future(self.origin.clone()));
        }
        let latest = (now_ms / 1000) as i64 + (MAX_SKEW_MS / 1000) as i64;
        let time = |what: &str, t: i64| -> Result<(), Refused> {
            if (EARLIEST..=latest).contains(&t) {
                Ok(())
            } else {
                Err(Refused::Invalid(format!(
                    "{what} {t} is not a plausible Unix time (2000-01-01 .. now)"
                )))
            }
        };
        match &self.item {
            Item::Sender(s) => check_sender(s, &time),
            Item::Rule(r) => {
                if r.stamp.node.is_empty() || r.stamp.ms > now_ms.saturating_add(MAX_SKEW_MS) {
                    return Err(Refused::Future(r.stamp.node.clone()));
                }
                check_name(&r.stamp.node)?;
                if let Some(rule) = &r.rule {
                    if rule.prefix != r.prefix {
                        return Err(Refused::Invalid(format!(
                            "the rule is for {} but the entry is keyed {}",
                            rule.prefix, r.prefix
                        )));
                    }
                    if rule.source != RuleSource::Operator {
                        return Err(Refused::Invalid(
                            "only operator entries are shared; engine entries are computed by each host"
                                .into(),
                        ));
                    }
                    time("rule created_at", rule.created_at)?;
                    rule.validate().map_err(Refused::Invalid)?;
                }
                Ok(())
            }
        }
    }
}

fn check_sender(
    s: &SenderState,
    time: &dyn Fn(&str, i64) -> Result<(), Refused>,
) -> Result<(), Refused> {
    let bad = |m: String| Err(Refused::Invalid(format!("sender {}: {m}", s.prefix)));
    if let Some(t) = s.forgot_at {
        time("forgot_at", t)?;
    }
    if let Some(t) = s.cleared_at {
        time("cleared_at", t)?;
    }
    if s.detected.len() > MAX_DETECTIONS || s.episodes.len() > MAX_DETECTIONS {
        return bad(format!("more than {MAX_DETECTIONS} detections or episodes"));
    }
    for t in &s.detected {
        time("first_detected", *t)?;
    }
    for (start, reached) in &s.episodes {
        time("episode start", *start)?;
        if *reached == 0 || *reached > MAX_STAGE {
            return bad(format!(
                "stage {reached} is impossible (stages are 1-{MAX_STAGE})"
            ));
        }
    }
    if let Some(ev) = &s.evidence {
        time("evidence seen_at", ev.seen_at)?;
        let texts = [
            Some(&ev.product),
            ev.version.as_ref(),
            ev.build.as_ref(),
            ev.label.as_ref(),
            ev.upgrade_to.as_ref(),
        ];
        if texts.iter().flatten().any(|t| t.len() > MAX_TEXT)
            || ev.findings.len() > MAX_FINDINGS
            || ev.findings.iter().any(|f| f.len() > MAX_TEXT)
        {
            return bad(format!(
                "evidence strings longer than {MAX_TEXT} bytes or more than {MAX_FINDINGS} findings"
            ));
        }
        if !(0.0..=1.0).contains(&ev.confidence) {
            return bad(format!("confidence {} is not in 0..1", ev.confidence));
        }
    }
    if s.pauses.len() > MAX_PAUSES {
        return bad(format!("more than {MAX_PAUSES} pauses"));
    }
    for p in &s.pauses {
        time("pause start", p.start)?;
        if p.until <= p.start || p.until - p.start > MAX_PAUSE_SECS {
            return bad(format!(
                "a pause from {} to {} is not 1 s .. 366 days long",
                p.start, p.until
            ));
        }
        if p.ended_at.is_some_and(|e| e < p.start) {
            return bad("a pause ends before it starts".into());
        }
    }
    if s.pauses.windows(2).any(|w| w[0].start >= w[1].start) {
        return bad("pauses are not sorted by start".into());
    }
    Ok(())
}
