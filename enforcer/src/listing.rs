//! `enforcer list`: what one row says, which rows a filter keeps, and the pages the daemon answers
//! with. A listing never holds more than one page on either side of the control socket, so a million
//! entries cost the same memory as a thousand, and a `--limit` says when rows were left out.
//!
//! A page on the socket is a [`PageHead`] reply line followed by one line of JSON per row: the
//! daemon encodes each row once, and `list --json` copies the lines to its output as they arrive
//! (no tree of values is built on either side).

use serde::{Deserialize, Serialize};

use crate::datapath::eval::expired;
use crate::datapath::Clock;
use crate::net::Prefix;
use crate::rule::{expiry_from_kernel, Rule, RuleSource, Verdict};
use enforcer_common::PolicyEntry;

/// Rows per page of a listing through the daemon: small enough that the engine is never busy with
/// one page for long, large enough that a million rows take a few hundred round trips.
pub const PAGE: u32 = 4096;

/// One row of `list --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub prefix: Prefix,
    /// `pass`, `drop`, `reject`, `rate_limit`, `throttle`.
    pub action: String,
    /// The verdict with its parameters (same shape as in the store).
    pub verdict: Verdict,
    /// Unix seconds; null = never.
    pub expires_at: Option<i64>,
    pub expired: bool,
    /// The entry is in the kernel maps (false: only in the store, e.g. before `enforcer run`).
    pub in_kernel: bool,
    /// `operator`, `engine` or `unknown` (no store record).
    pub source: String,
    pub stage: Option<u32>,
    pub reason: Option<String>,
    pub created_at: Option<i64>,
    /// The named list the entry belongs to (`enforcer import --list NAME`), if any.
    #[serde(default)]
    pub list: Option<String>,
}

/// Which rows `--source` keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Operator,
    Engine,
    Unknown,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Operator => "operator",
            Source::Engine => "engine",
            Source::Unknown => "unknown",
        }
    }
}

/// `--prefix` and `--source`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// Rows for this prefix or inside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<Prefix>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// Only the entries of this named list (`enforcer import --list NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<String>,
}

impl Filter {
    /// Whether `p` lies inside `--prefix`.
    pub fn covers(&self, p: &Prefix) -> bool {
        self.prefix
            .is_none_or(|f| f.len() <= p.len() && f.contains(p.addr()))
    }

    /// In prefix order, no row after `p` can match: `p` starts past the end of `--prefix`.
    pub fn past_end(&self, p: &Prefix) -> bool {
        self.prefix
            .is_some_and(|f| p.addr() > f.addr() && !f.contains(p.addr()))
    }

    pub fn keeps(&self, row: &Row) -> bool {
        self.covers(&row.prefix)
            && self.source.is_none_or(|s| s.as_str() == row.source)
            && self.in_list(row.list.as_deref())
    }

    /// Whether an entry of list `list` (None = of no list) passes `--list`.
    pub fn in_list(&self, list: Option<&str>) -> bool {
        self.list.as_deref().is_none_or(|l| list == Some(l))
    }
}

/// The reply to one `list` request: how many row lines follow it (sorted by prefix), and where
/// the next page starts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PageHead {
    pub rows: u64,
    /// Ask again with `after` = this to get the following rows; `None` = that was the last page.
    pub next: Option<Prefix>,
}

/// Appends a row as one line of a page.
pub fn encode_row(out: &mut String, row: &Row) {
    // A Row always serializes (plain fields, string keys); JSON escapes every newline in strings.
    if let Ok(line) = serde_json::to_string(row) {
        out.push_str(&line);
        out.push('\n');
    }
}

/// Reads a row line of a page.
pub fn decode_row(line: &[u8]) -> Result<Row, String> {
    serde_json::from_slice(line).map_err(|e| {
        format!(
            "the daemon sent a list row that does not parse ({e}): {}",
            String::from_utf8_lossy(&line[..line.len().min(200)])
        )
    })
}

/// A row for `prefix`: the kernel entry (the truth) when there is one, annotated by the stored rule.
pub fn row(
    prefix: Prefix,
    kernel: Option<&PolicyEntry>,
    rule: Option<&Rule>,
    clock: &Clock,
) -> Row {
    let (verdict, expires_at, is_expired) = match (kernel, rule) {
        (Some(e), _) => (
            Verdict::from_kernel(e, clock),
            expiry_from_kernel(e, clock),
            expired(e, clock.boot_ns()),
        ),
        (None, Some(r)) => (
            r.verdict.clone(),
            r.expires_at,
            r.is_expired(clock.unix_secs()),
        ),
        (None, None) => (Verdict::Pass, None, false),
    };
    let (source, stage) = match rule.map(|r| &r.source) {
        Some(RuleSource::Operator) => ("operator", None),
        Some(RuleSource::Engine { stage }) => ("engine", Some(*stage)),
        None => ("unknown", None),
    };
    Row {
        prefix,
        action: verdict.name().to_string(),
        verdict,
        expires_at,
        expired: is_expired,
        in_kernel: kernel.is_some(),
        source: source.to_string(),
        stage,
        reason: rule.and_then(|r| r.reason.clone()),
        created_at: rule.map(|r| r.created_at),
        list: rule.and_then(|r| r.list.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn prefix_filter_covers_and_ends() {
        let f = Filter {
            prefix: Some(p("192.0.2.0/24")),
            source: None,
            list: None,
        };
        assert!(f.covers(&p("192.0.2.0/24")) && f.covers(&p("192.0.2.7")));
        assert!(f.covers(&p("192.0.2.128/25")));
        assert!(!f.covers(&p("192.0.0.0/16")) && !f.covers(&p("192.0.3.1")));
        assert!(!f.covers(&p("2001:db8::1")));
        assert!(!f.past_end(&p("192.0.1.255")) && !f.past_end(&p("192.0.2.255")));
        assert!(f.past_end(&p("192.0.3.0")) && f.past_end(&p("2001:db8::1")));
        assert!(Filter::default().covers(&p("::/0")));
    }

    #[test]
    fn source_filter_and_rows() {
        let clock = Clock::now();
        let rule = Rule {
            prefix: p("192.0.2.7"),
            verdict: Verdict::Drop,
            expires_at: None,
            reason: Some("spam".into()),
            created_at: 5,
            source: RuleSource::Engine { stage: 3 },
            list: None,
        };
        let r = row(rule.prefix, None, Some(&rule), &clock);
        assert_eq!(
            (r.source.as_str(), r.stage, r.in_kernel, r.action.as_str()),
            ("engine", Some(3), false, "drop")
        );
        let engine = Filter {
            prefix: None,
            source: Some(Source::Engine),
            list: None,
        };
        let operator = Filter {
            prefix: None,
            source: Some(Source::Operator),
            list: None,
        };
        assert!(engine.keeps(&r) && !operator.keeps(&r));
        let k = rule.to_kernel(&clock);
        let r = row(rule.prefix, Some(&k), None, &clock);
        assert_eq!((r.source.as_str(), r.in_kernel), ("unknown", true));
        assert_eq!(r.verdict, Verdict::Drop);
    }
}
