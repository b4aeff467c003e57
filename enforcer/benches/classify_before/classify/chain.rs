//! The Received chain: which hop is the sending organisation's outbound server.
//!
//! Received fields are newest first: our own edge's hop is at the top. Walking from the oldest hop up,
//! the sending organisation's Microsoft hops form a run; the run ends where the message was handed to a
//! `by` that is not Exchange (our edge, a filtering service). The last hop of the first run that ends in
//! such a hand-off is the outbound server, and the build in its `id` is that server's build. A run that
//! reaches the top without a hand-off is taken only when it starts at the oldest hop (a header block
//! pasted from the sender's side); a run that starts above a non-Exchange hop and reaches the top is the
//! receiving side and never attributed. When the run's last hop is Exchange Online (hybrid, or a tenant
//! sending from Microsoft 365), Exchange Online is what talks to the next organisation and is reported,
//! with any on-premises builds seen earlier in the run listed in the evidence.

use std::fmt::Write;

use super::build::Build;
use super::scan::{iis_era, Candidate, ERA_2007_ON};
use super::signature::{self, is_exchange_online_host};
use super::{evidence_text, EvidenceItem, EvidenceKind, Product};
use crate::smtp::{ClauseKind, TokensView};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HopKind {
    /// `with Microsoft SMTP Server` / `with mapi` on an on-premises `by`.
    OnPrem,
    /// The same on an Exchange Online `by` (or a 15.20+ build).
    Online,
    /// `with Microsoft SMTPSVC(…)`: the IIS SMTP service (Exchange 2000/2003, or plain IIS).
    Iis,
    Other,
}

#[derive(Clone, Debug)]
pub(crate) struct Hop {
    pub kind: HopKind,
    pub by: Option<String>,
    pub from: Option<String>,
    /// Exchange build in `id` (on-premises and online hops), or the IIS version in `SMTPSVC(…)`.
    pub build: Option<Build>,
    /// A product named by the hop's `by` comments, `with` clause or qmail preamble.
    pub hint: Option<(Product, Option<String>)>,
    pub text: String,
}

fn host(r: &TokensView<'_>, k: ClauseKind) -> Option<String> {
    r.words(r.clause(k)).next().map(|h| {
        std::str::from_utf8(h)
            .map_or_else(|_| String::from_utf8_lossy(h).into_owned(), str::to_string)
    })
}

pub(crate) fn hop(r: &TokensView<'_>, raw: &[u8]) -> Hop {
    let by = host(r, ClauseKind::By);
    let from = host(r, ClauseKind::From);
    let with = r.clause(ClauseKind::With);
    let with_words = r.words(with);
    let with_first = with_words.clone().next().unwrap_or_default();
    let microsoft = with_first.eq_ignore_ascii_case(b"Microsoft");
    let iis = microsoft
        && with_words
            .clone()
            .any(|w| w.len() >= 7 && w[..7].eq_ignore_ascii_case(b"SMTPSVC"));
    let ms_smtp = microsoft && !iis && with_words.clone().any(|w| w.eq_ignore_ascii_case(b"SMTP"));
    let mapi = with_first.eq_ignore_ascii_case(b"mapi") && with_words.clone().count() == 1;
    let id_build = r
        .words(r.clause(ClauseKind::Id))
        .next()
        .and_then(Build::parse)
        .filter(|b| (4..=15).contains(&b.major()) && b.len() >= 3);
    let online_host = by
        .as_deref()
        .is_some_and(|h| is_exchange_online_host(h.as_bytes()));
    let (kind, build) = if iis {
        let v = r
            .comments(with)
            .next()
            .and_then(|c| Build::parse(c.trim_ascii()));
        (HopKind::Iis, v)
    } else if ms_smtp || mapi {
        let online = online_host || id_build.is_some_and(|b| b.major() == 15 && b.minor() >= 20);
        (
            if online {
                HopKind::Online
            } else {
                HopKind::OnPrem
            },
            id_build,
        )
    } else {
        (HopKind::Other, None)
    };
    let mut hint = None;
    if kind == HopKind::Other {
        for t in r
            .comments(r.clause(ClauseKind::By))
            .chain(with_words)
            .chain(r.comments(with))
            .chain(r.preamble())
        {
            if let Some(h) = signature::scan(t).filter(|h| h.ms.is_none()) {
                hint = Some((h.product, h.version));
                break;
            }
            if let Some(v) = signature::sendmail_by_comment(t) {
                hint = Some((Product::Sendmail, Some(v)));
                break;
            }
        }
    }
    Hop {
        kind,
        by,
        from,
        build,
        hint,
        text: evidence_text(raw),
    }
}

fn is_ms(h: &Hop) -> bool {
    h.kind != HopKind::Other
}

/// Whether `next` (the later hop) is still inside `prev`'s organisation: Exchange handing mail to
/// another organisation's Exchange is a hand-off too. Host names are compared by their registrable
/// domain (the last two labels, three under a short second level such as `co.uk`); single-label names
/// (`EX01`, `Pickup`) and address literals never split a run. Exchange Online continues any run: a
/// hybrid organisation relays through its own tenant.
fn same_org(prev: &Hop, next: &Hop) -> bool {
    if next.kind == HopKind::Online {
        return true;
    }
    match (
        prev.by.as_deref().and_then(org_domain),
        next.by.as_deref().and_then(org_domain),
    ) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        _ => true,
    }
}

pub(crate) fn org_domain(host: &str) -> Option<&str> {
    let host = host.trim_end_matches('.');
    // Only hex digits, dots and colons can make an address: skip the parse for names.
    let may_be_ip = host
        .bytes()
        .all(|b| b.is_ascii_hexdigit() || b == b'.' || b == b':');
    if host.starts_with('[') || (may_be_ip && host.parse::<std::net::IpAddr>().is_ok()) {
        return None;
    }
    // The last three labels (the third holds the rest of the name when there are only three).
    let mut labels = host.rsplitn(4, '.');
    let last = labels.next()?;
    let second = labels.next()?;
    let cut = match labels.next() {
        // example.co.uk, example.com.au
        Some(third) if second.len() <= 3 && last.len() == 2 => {
            last.len() + second.len() + third.len() + 2
        }
        _ => last.len() + second.len() + 1,
    };
    Some(&host[host.len() - cut..])
}

fn name(h: &Option<String>) -> &str {
    h.as_deref().unwrap_or("an unnamed host")
}

/// Candidates from the chain, plus notes on the hops that were not attributed.
pub(crate) fn attribute(hops: &[Hop]) -> Vec<Candidate> {
    let mut out = Vec::with_capacity(hops.len() + 1);
    if hops.is_empty() {
        return out;
    }
    // Oldest first.
    let chrono: Vec<&Hop> = hops.iter().rev().collect();
    let mut runs: Vec<(usize, usize)> = Vec::with_capacity(hops.len()); // [start, end] in chrono, inclusive
    let mut i = 0;
    while i < chrono.len() {
        if is_ms(chrono[i]) {
            let start = i;
            while i + 1 < chrono.len() && is_ms(chrono[i + 1]) && same_org(chrono[i], chrono[i + 1])
            {
                i += 1;
            }
            runs.push((start, i));
        }
        i += 1;
    }
    let handed_off = runs.iter().find(|(_, end)| end + 1 < chrono.len());
    let chosen = handed_off.map(|r| (*r, true)).or_else(|| {
        runs.iter()
            .find(|(start, _)| *start == 0)
            .map(|r| (*r, false))
    });
    // Receiving-side runs (at the top, above a non-Exchange hop) are skipped; say so.
    for (start, end) in &runs {
        if Some((*start, *end)) != chosen.map(|c| c.0) && *end + 1 == chrono.len() && *start > 0 {
            let h = chrono[*end];
            out.push(note(h, format!("Exchange hop at the top of the chain (by {}) belongs to the receiving side: not attributed", name(&h.by))));
        }
    }
    match chosen {
        Some(((start, end), handoff)) => {
            let h = chrono[end];
            let next = chrono.get(end + 1);
            // Findings are written into strings sized up front: formatting them is a large part of
            // classifying a header block, and growing them as they are written costs as much again.
            let why_buf: Option<String> = next.map(|n| {
                let mut b = String::with_capacity(128);
                let _ = write!(b, "last Exchange hop before the hand-off to {} (not Exchange): the sending organisation's outbound server", name(&n.by));
                b
            });
            let why: &str = why_buf.as_deref().unwrap_or(
                "no hand-off to another organisation is visible; taken as the sender's own hop",
            );
            let finding = || String::with_capacity(why.len() + 96);
            let penalty = if handoff { 0.0 } else { 0.15 };
            match h.kind {
                HopKind::Online => {
                    let earlier: Vec<String> = chrono[start..end]
                        .iter()
                        .filter(|x| x.kind == HopKind::OnPrem)
                        .filter_map(|x| x.build.map(|b| format!("{} ({b})", name(&x.by))))
                        .collect();
                    let mut f = finding();
                    let _ = write!(f, "{} is Exchange Online; {why}", name(&h.by));
                    if !earlier.is_empty() {
                        f.push_str(&format!(
                            "; on-premises Exchange earlier in the route relays through it: {}",
                            earlier.join(", ")
                        ));
                    }
                    out.push(candidate(
                        h,
                        Product::ExchangeOnline,
                        h.build,
                        0,
                        0.9 - penalty,
                        f,
                    ));
                }
                HopKind::OnPrem => match h.build {
                    Some(b) => {
                        let mut f = finding();
                        let _ = write!(f, "{} runs Exchange build {b}; {why}", name(&h.by));
                        out.push(candidate(
                            h,
                            Product::Exchange,
                            Some(b),
                            0,
                            0.95 - penalty,
                            f,
                        ));
                    }
                    None => {
                        let mut f = finding();
                        let _ = write!(
                            f,
                            "{} is Exchange 2007 or later (no build in `id`); {why}",
                            name(&h.by)
                        );
                        out.push(candidate(
                            h,
                            Product::Exchange,
                            None,
                            ERA_2007_ON,
                            0.7 - penalty,
                            f,
                        ));
                    }
                },
                HopKind::Iis => {
                    let v = h.build.map(|b| format!(" {b}")).unwrap_or_default();
                    let mut f = finding();
                    let _ = write!(f, "{} runs the Windows IIS SMTP service{v} (Exchange 2000/2003 or plain IIS); {why}", name(&h.by));
                    let mut c = candidate(
                        h,
                        Product::IisSmtp,
                        h.build,
                        iis_era(h.build),
                        0.7 - penalty,
                        f,
                    );
                    c.version = h.build.map(|b| b.to_string());
                    out.push(c);
                }
                HopKind::Other => {}
            }
            for x in chrono[start..end].iter().rev() {
                if let Some(b) = x.build.filter(|_| x.kind != HopKind::Iis) {
                    out.push(note(x, format!("internal hop by {} (build {b}) before the outbound one: not attributed", name(&x.by))));
                }
            }
        }
        None => out.extend(non_exchange(hops, &runs, chrono.len())),
    }
    out
}

/// No Exchange route: the sender's outbound server is the `from` of our edge's hop, and its own stamp is
/// the hop below. Our edge is the top hop, or the first hop under a receiving-side Exchange run.
fn non_exchange(hops: &[Hop], runs: &[(usize, usize)], n: usize) -> Vec<Candidate> {
    let mut out = Vec::new();
    let ours_top = runs
        .iter()
        .find(|(_, end)| end + 1 == n)
        .map_or(0, |(start, end)| end - start + 1);
    let Some(edge) = hops.get(ours_top) else {
        return out;
    };
    if let Some(f) = edge
        .from
        .as_deref()
        .filter(|f| is_exchange_online_host(f.as_bytes()))
    {
        let msg = format!(
            "our edge ({}) received the message from {f}, an Exchange Online host",
            name(&edge.by)
        );
        out.push(candidate(edge, Product::ExchangeOnline, None, 0, 0.75, msg));
        return out;
    }
    let (sender, weight, why) = match hops.get(ours_top + 1) {
        Some(s) => (
            s,
            0.6,
            format!(
                "the hop below our edge's ({}) is the sender's outbound server's own stamp",
                name(&edge.by)
            ),
        ),
        None => (
            edge,
            0.45,
            "only one Received hop: it may be our own".to_string(),
        ),
    };
    if let Some((p, v)) = &sender.hint {
        let ver = v.as_ref().map(|v| format!(" {v}")).unwrap_or_default();
        let f = format!("{} names {}{ver}; {why}", name(&sender.by), p.name());
        let mut c = candidate(sender, *p, None, 0, weight, f);
        c.version = v.clone();
        out.push(c);
    }
    out
}

fn candidate(
    h: &Hop,
    product: Product,
    build: Option<Build>,
    era: u16,
    weight: f64,
    finding: String,
) -> Candidate {
    Candidate {
        product,
        version: None,
        build,
        era,
        weight,
        evidence: EvidenceItem {
            kind: EvidenceKind::Received,
            text: h.text.clone(),
            finding,
        },
    }
}

/// Evidence that explains a decision without voting (weight 0).
fn note(h: &Hop, finding: String) -> Candidate {
    candidate(h, Product::Unknown, None, 0, 0.0, finding)
}
