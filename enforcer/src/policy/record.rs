//! What enforcer knows about one sender: evidence, enforcement episode, pauses and an audit history.
//! Times are Unix seconds (UTC). Records are stored as JSON, so every field here is part of the
//! `enforcer sender --json` output and of the on-disk format: add fields with `#[serde(default)]`.

use crate::net::Prefix;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Most recent addresses remembered for an aggregated record.
pub const MAX_ADDRESSES: usize = 16;
/// Distinct findings kept per record (the least recently seen is dropped first).
pub const MAX_FINDINGS: usize = 32;
/// Audit entries kept per record (the oldest are dropped, the first one is always kept).
pub const MAX_HISTORY: usize = 256;

/// Support status as the classifier reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Supported,
    Outdated,
    EndOfLife,
    #[serde(other)]
    Unknown,
}

/// The classifier's verdict on one piece of evidence, as the engine keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// When the evidence was fed.
    pub seen_at: i64,
    /// Product id (`exchange`, `postfix`, ... or `unknown`).
    pub product: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub build: Option<String>,
    /// Human name of the build, e.g. "Exchange Server 2013 CU23 Mar23SU".
    #[serde(default)]
    pub label: Option<String>,
    pub status: Status,
    pub persistently_vulnerable: bool,
    #[serde(default)]
    pub confidence: f64,
    /// The build the sender should upgrade to.
    #[serde(default)]
    pub upgrade_to: Option<String>,
    /// One line per finding that led to the verdict.
    #[serde(default)]
    pub findings: Vec<String>,
}

impl Evidence {
    /// True when the evidence identifies a build that is not persistently vulnerable: the only
    /// evidence that takes a sender out of enforcement. Unknown evidence never does.
    pub fn exonerates(&self) -> bool {
        !self.persistently_vulnerable && matches!(self.status, Status::Supported | Status::Outdated)
    }

    /// How much the evidence names: a build beats a version, a version beats a bare product, a bare
    /// product beats nothing. Evidence never replaces evidence that names more.
    pub fn strength(&self) -> u8 {
        if self.build.is_some() {
            3
        } else if self.version.is_some() {
            2
        } else if self.product != "unknown" {
            1
        } else {
            0
        }
    }

    /// "exchange 15.0.1497.48 (Exchange Server 2013 CU23 ...), end-of-life".
    pub fn summary(&self) -> String {
        let mut s = self.product.clone();
        if let Some(b) = self.build.as_ref().or(self.version.as_ref()) {
            s.push(' ');
            s.push_str(b);
        }
        if let Some(l) = &self.label {
            s.push_str(&format!(" ({l})"));
        }
        let status = match self.status {
            Status::Supported => "supported",
            Status::Outdated => "outdated",
            Status::EndOfLife => "end-of-life",
            Status::Unknown => "unknown",
        };
        s.push_str(", ");
        s.push_str(status);
        s
    }
}

/// One distinct finding about a sender, stored once however often it is seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The evidence summary ("exchange 15.0.1497.2 (...), end-of-life").
    pub finding: String,
    pub count: u64,
    pub first_seen: i64,
    pub last_seen: i64,
}

/// One enforcement episode: from detection as persistently vulnerable until a supported build shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Episode {
    /// When the sender was detected as persistently vulnerable; stage progress counts from here.
    pub started_at: i64,
    /// Highest stage (1-based) applied so far: a stage never regresses, even if the clock steps back.
    pub reached: u32,
}

/// An operator pause (like Exchange Online's tenant exemption).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    pub start: i64,
    /// Planned end.
    pub until: i64,
    /// Set when the pause was ended early (`enforcer resume`, recovery, forget).
    #[serde(default)]
    pub ended_at: Option<i64>,
}

impl Pause {
    /// End of the pause as it stands at `now` (never later than `now`).
    pub fn end_by(&self, now: i64) -> i64 {
        self.ended_at.unwrap_or(self.until).min(self.until).min(now)
    }

    pub fn active_at(&self, now: i64) -> bool {
        self.start <= now && now < self.ended_at.unwrap_or(self.until).min(self.until)
    }
}

/// One audit entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: i64,
    pub event: String,
}

/// A sender: one host, or an aggregated /24 or /64 when aggregation is configured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// What the kernel entry covers (host /32 or /128, or the aggregate).
    pub prefix: Prefix,
    /// Most recent addresses evidence was fed for, newest last.
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    /// First time this sender was ever detected as persistently vulnerable.
    #[serde(default)]
    pub first_detected: Option<i64>,
    /// Latest evidence.
    #[serde(default)]
    pub evidence: Option<Evidence>,
    /// The current enforcement episode; `None` when not in enforcement.
    #[serde(default)]
    pub episode: Option<Episode>,
    #[serde(default)]
    pub pauses: Vec<Pause>,
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
    /// Distinct findings, each with how often and when it was seen (at most [`MAX_FINDINGS`]).
    #[serde(default)]
    pub findings: Vec<Finding>,
}

impl Record {
    pub fn new(prefix: Prefix) -> Self {
        Record {
            prefix,
            addresses: Vec::new(),
            first_detected: None,
            evidence: None,
            episode: None,
            pauses: Vec::new(),
            history: Vec::new(),
            findings: Vec::new(),
        }
    }

    /// Appends an audit entry, keeping the first entry and the newest ones.
    pub fn log(&mut self, at: i64, event: impl Into<String>) {
        self.history.push(HistoryEntry {
            at,
            event: event.into(),
        });
        if self.history.len() > MAX_HISTORY {
            self.history.remove(1);
        }
    }

    pub(crate) fn remember(&mut self, addr: IpAddr) {
        self.addresses.retain(|a| *a != addr);
        self.addresses.push(addr);
        if self.addresses.len() > MAX_ADDRESSES {
            self.addresses.remove(0);
        }
    }

    /// Counts one sighting of `finding`: an identical one is bumped, a new one added, and past
    /// [`MAX_FINDINGS`] the least recently seen one is dropped.
    pub fn count_finding(&mut self, finding: &str, now: i64) {
        if let Some(f) = self.findings.iter_mut().find(|f| f.finding == finding) {
            f.count = f.count.saturating_add(1);
            f.last_seen = f.last_seen.max(now);
            return;
        }
        if self.findings.len() >= MAX_FINDINGS {
            if let Some(i) = (0..self.findings.len()).min_by_key(|&i| self.findings[i].last_seen) {
                self.findings.remove(i);
            }
        }
        self.findings.push(Finding {
            finding: finding.to_owned(),
            count: 1,
            first_seen: now,
            last_seen: now,
        });
    }
}
