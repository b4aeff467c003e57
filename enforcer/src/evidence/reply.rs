//! What a refused sender reads at the SMTP level, and when. The window a connect falls in is computed
//! from the kernel entry the engine writes for the sender (`Rule::to_kernel`) with
//! `PolicyEntry::window_at`, the code the XDP/TC program runs, so the milter and policy service answer
//! 450 exactly when the kernel would refuse in a throttle window, and 550 in a block window.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use enforcer_common::policy::Window;

use crate::datapath::Clock;
use crate::duration::Span;
use crate::net::Prefix;
use crate::rule::{Rule, Verdict};

/// Exchange Online's wording ("Connecting Exchange server version is out-of-date; connection to
/// Exchange Online throttled for 5 mins/hr"), naming this service instead.
pub const DEFAULT_THROTTLE_TEXT: &str = "Connecting server {host} runs an out-of-date version ({build}); connection to this server throttled by enforcer for {minutes} mins/{period} (stage {stage}). Upgrade to {upgrade_to}. For more information see {info_url}";
pub const DEFAULT_BLOCK_TEXT: &str = "Connecting server {host} runs an out-of-date version ({build}); connection to this server blocked by enforcer for {minutes} mins/{period} (stage {stage}). Upgrade to {upgrade_to}. For more information see {info_url}";
/// Microsoft's page on why persistently vulnerable Exchange servers are refused.
pub const DEFAULT_INFO_URL: &str = "https://aka.ms/BlockUnsafeExchange";

/// The configured reply texts (`[replies]` in the configuration file). The SMTP codes are fixed:
/// `450 4.7.230` in a throttle window, `550 5.7.230` in a block window or a full block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Texts {
    pub throttle: String,
    pub block: String,
    pub info_url: String,
}

impl Default for Texts {
    fn default() -> Self {
        Texts {
            throttle: DEFAULT_THROTTLE_TEXT.into(),
            block: DEFAULT_BLOCK_TEXT.into(),
            info_url: DEFAULT_INFO_URL.into(),
        }
    }
}

/// The placeholders a text may use.
pub const PLACEHOLDERS: [&str; 7] = [
    "host",
    "stage",
    "minutes",
    "period",
    "build",
    "upgrade_to",
    "info_url",
];

/// Checks that every `{name}` in `text` is a known placeholder; the error names the first unknown one.
pub fn check_template(text: &str) -> Result<(), String> {
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(format!(
                "`{{` without a closing `}}`; placeholders are {{{}}}",
                PLACEHOLDERS.join("}, {")
            ));
        };
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder `{{{name}}}`; use {{{}}}",
                PLACEHOLDERS.join("}, {")
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// What the engine publishes for one sender in an enforcing stage: the kernel rule it wrote (prefix,
/// verdict, expiry, source: what the answer depends on; the reason and creation time stay in the
/// store, so senders at one stage with one build share a notice) and what the texts name.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    pub rule: Rule,
    pub stage: u32,
    pub build: Option<String>,
    pub upgrade_to: Option<String>,
}

/// The answer for one connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Continue,
    /// `450 4.7.230 <text>`.
    Tempfail(String),
    /// `550 5.7.230 <text>`.
    Reject(String),
}

impl Answer {
    /// The whole SMTP reply line, or `None` to let the client go on.
    pub fn smtp(&self) -> Option<String> {
        match self {
            Answer::Continue => None,
            Answer::Tempfail(t) => Some(format!("450 4.7.230 {t}")),
            Answer::Reject(t) => Some(format!("550 5.7.230 {t}")),
        }
    }

    /// `would_tempfail` / `would_reject` for report-only counting.
    pub fn would(&self) -> Option<&'static str> {
        match self {
            Answer::Continue => None,
            Answer::Tempfail(_) => Some("would_tempfail"),
            Answer::Reject(_) => Some("would_reject"),
        }
    }
}

/// The answer for a connect from `host` at `clock`, given the sender's notice (if it is enforced).
pub fn answer(notice: Option<&Notice>, host: IpAddr, clock: &Clock, texts: &Texts) -> Answer {
    let Some(n) = notice else {
        return Answer::Continue;
    };
    let (window, minutes_secs, period) = match &n.rule.verdict {
        Verdict::Drop | Verdict::Reject => (Window::Block, 3600, 3600),
        Verdict::Throttle {
            period,
            window,
            block,
            ..
        } => {
            let entry = n.rule.to_kernel(clock);
            match entry.window_at(clock.boot_ns()) {
                Window::Outside => return Answer::Continue,
                Window::Throttle => (Window::Throttle, window.secs(), period.secs()),
                Window::Block => (Window::Block, block.secs(), period.secs()),
            }
        }
        // The engine writes only the verdicts above; anything else is not a stage we can explain.
        Verdict::Pass | Verdict::RateLimit { .. } => return Answer::Continue,
    };
    let template = if window == Window::Throttle {
        &texts.throttle
    } else {
        &texts.block
    };
    let text = render(template, n, host, minutes_secs, period, &texts.info_url);
    if window == Window::Throttle {
        Answer::Tempfail(text)
    } else {
        Answer::Reject(text)
    }
}

fn render(
    template: &str,
    n: &Notice,
    host: IpAddr,
    window: u64,
    period: u64,
    info_url: &str,
) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            break;
        };
        match &after[..close] {
            "host" => out.push_str(&host.to_string()),
            "stage" => out.push_str(&n.stage.to_string()),
            // Whole minutes, rounded up: a 30 s window of a compressed schedule still reads "1".
            "minutes" => out.push_str(&window.div_ceil(60).to_string()),
            "period" => out.push_str(&period_name(period)),
            "build" => out.push_str(n.build.as_deref().unwrap_or("unknown build")),
            "upgrade_to" => out.push_str(n.upgrade_to.as_deref().unwrap_or("a supported version")),
            "info_url" => out.push_str(info_url),
            other => {
                out.push('{');
                out.push_str(other);
                out.push('}');
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    // One SMTP line: control characters from evidence never split or end the reply.
    out.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `hr` for an hour (as Exchange Online writes "mins/hr"), `day`, else the compact span (`10m`).
fn period_name(secs: u64) -> String {
    match secs {
        3600 => "hr".into(),
        86_400 => "day".into(),
        s => Span(std::time::Duration::from_secs(s)).to_string(),
    }
}

/// The engine's notices, read by every listener session without waiting for the engine, and the
/// reply texts and report-only flag they are answered with (set at start and by a reload, so a
/// reload applies them without restarting the listeners).
#[derive(Clone, Debug, Default)]
pub struct Board {
    inner: Arc<RwLock<BoardInner>>,
}

#[derive(Debug, Default)]
struct BoardInner {
    /// Senders at the same stage with the same evidence share one notice (a million blocked
    /// senders are a million keys and a handful of notices); a B-tree, so a million keys cost
    /// ~30 bytes each rather than a hash table's power-of-two slack.
    senders: BTreeMap<Prefix, Arc<Notice>>,
    /// How many notices there are per (IPv6?, prefix length): a lookup tries each length present,
    /// longest first (as the kernel does: host entries before prefixes). So the board needs no
    /// aggregation setting, and records of an aggregation a reload changed are still found.
    lengths: BTreeMap<(bool, u8), usize>,
    replies: Replies,
}

/// What a session answers with.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Replies {
    pub texts: Arc<Texts>,
    pub report_only: bool,
}

impl Board {
    pub fn set_replies(&self, texts: Texts, report_only: bool) {
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        g.replies = Replies {
            texts: Arc::new(texts),
            report_only,
        };
    }

    pub fn replies(&self) -> Replies {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        g.replies.clone()
    }

    /// Replaces every notice at once (start-up and reloads), from `(prefix, notice)` pairs sorted
    /// by prefix.
    pub fn replace_all(&self, notices: Vec<(Prefix, Arc<Notice>)>) {
        let mut lengths: BTreeMap<(bool, u8), usize> = BTreeMap::new();
        for (p, _) in &notices {
            *lengths.entry((p.addr().is_ipv6(), p.len())).or_default() += 1;
        }
        let senders: BTreeMap<Prefix, Arc<Notice>> = notices.into_iter().collect();
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        g.senders = senders;
        g.lengths = lengths;
    }

    /// Sets (or with `None` clears) the notice of one sender record.
    pub fn set(&self, prefix: Prefix, notice: Option<Arc<Notice>>) {
        // A poisoned lock only means a panic elsewhere mid-update; the map itself is still whole.
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let length = (prefix.addr().is_ipv6(), prefix.len());
        match notice {
            Some(n) => {
                if g.senders.insert(prefix, n).is_none() {
                    *g.lengths.entry(length).or_default() += 1;
                }
            }
            None => {
                if g.senders.remove(&prefix).is_some() {
                    if let Some(c) = g.lengths.get_mut(&length) {
                        *c -= 1;
                        if *c == 0 {
                            g.lengths.remove(&length);
                        }
                    }
                }
            }
        }
    }

    /// The notice of the most specific record `addr` belongs to (its rule's prefix is that record's).
    pub fn lookup(&self, addr: IpAddr) -> Option<Notice> {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let v6 = addr.is_ipv6();
        g.lengths
            .keys()
            .rev()
            .filter(|(is_v6, _)| *is_v6 == v6)
            .find_map(|&(_, len)| {
                let p = Prefix::containing(addr, len);
                g.senders.get(&p).map(|n| (p, n))
            })
            .map(|(p, n)| {
                let mut n = Notice::clone(n);
                n.rule.prefix = p;
                n
            })
    }

    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .senders
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
