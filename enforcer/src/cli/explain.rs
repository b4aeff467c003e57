//! `enforcer explain <IP>`: which entry matches a source and what a SYN from it to a protected port
//! would get right now, computed from the pinned maps with the kernel's semantics.

use std::net::IpAddr;

use serde::Serialize;

use super::entry::{emit, fmt_time, open_policy, operator_error, Dirs};
use super::usage;
use crate::datapath::eval::{decide, expired};
use crate::datapath::maps::Table;
use crate::datapath::{Clock, ControlMaps, RateMap};
use crate::net::Prefix;
use crate::rule::{expiry_from_kernel, Verdict};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Source address to explain (a single IPv4 or IPv6 address).
    #[arg(value_name = "IP")]
    pub ip: String,
    /// Print JSON (field names are stable; see the README).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub dirs: Dirs,
}

#[derive(Debug, Serialize)]
struct Candidate {
    prefix: Prefix,
    /// `hosts` (exact address map) or `prefixes` (LPM trie).
    table: &'static str,
    verdict: Verdict,
    expires_at: Option<i64>,
    expired: bool,
    reason: Option<String>,
}

#[derive(Debug, Serialize)]
struct Explanation {
    ip: IpAddr,
    /// The entry that decides, null when none applies.
    matched: Option<Candidate>,
    /// Every entry containing the address, most specific first.
    candidates: Vec<Candidate>,
    /// Counter reason the kernel would record (`Reason::name`).
    reason: &'static str,
    /// What the SYN gets now: `pass`, `drop`, `reject`.
    verdict: &'static str,
    /// What enforcement would do (differs from `verdict` only in report-only mode).
    would: &'static str,
    report_only: bool,
    ports: Vec<u16>,
}

pub fn execute(args: Args) -> anyhow::Result<()> {
    let ip: IpAddr = match args.ip.trim().parse() {
        Ok(ip) => ip,
        Err(_) => {
            return usage(format!(
                "`{}` is not an IPv4 or IPv6 address (explain takes one address, e.g. 192.0.2.7)",
                args.ip
            ))
        }
    };
    let clock = Clock::now();
    let maps = open_policy(&args.dirs)?;
    let control = ControlMaps::open_pinned(&args.dirs.pin_dir).map_err(operator_error)?;
    let rate = RateMap::open_pinned(&args.dirs.pin_dir).map_err(operator_error)?;
    let rules = super::entry::stored_rules(&args.dirs).unwrap_or_default();
    let raw = maps.candidates(ip)?;
    let host = raw.iter().position(|(_, t, _)| *t == Table::Hosts);
    // The kernel consults only the longest prefix.
    let longest = raw.iter().position(|(_, t, _)| *t == Table::Prefixes);
    let report_only = control.report_only()?;
    let d = decide(
        host.map(|i| &raw[i].2),
        longest.map(|i| &raw[i].2),
        rate.get(ip)?,
        clock.boot_ns(),
        report_only,
    );
    let matched = match d.matched {
        Some(Table::Hosts) => host,
        Some(Table::Prefixes) => longest,
        None => None,
    };
    let candidates: Vec<Candidate> = raw
        .iter()
        .map(|(p, t, e)| Candidate {
            prefix: *p,
            table: match t {
                Table::Hosts => "hosts",
                Table::Prefixes => "prefixes",
            },
            verdict: Verdict::from_kernel(e, &clock),
            expires_at: expiry_from_kernel(e, &clock),
            expired: expired(e, clock.boot_ns()),
            reason: rules
                .iter()
                .find(|r| r.prefix == *p)
                .and_then(|r| r.reason.clone()),
        })
        .collect();
    let ex = Explanation {
        ip,
        matched: None,
        reason: d.reason.name(),
        verdict: d.outcome.name(),
        would: d.would.name(),
        report_only,
        ports: control.ports()?,
        candidates,
    };
    let ex = Explanation {
        matched: matched.map(|i| {
            let c = &ex.candidates[i];
            Candidate {
                prefix: c.prefix,
                table: c.table,
                verdict: c.verdict.clone(),
                expires_at: c.expires_at,
                expired: c.expired,
                reason: c.reason.clone(),
            }
        }),
        ..ex
    };
    if args.json {
        emit(format_args!("{}", serde_json::to_string_pretty(&ex)?));
        return Ok(());
    }
    match &ex.matched {
        Some(m) => {
            let mut line = format!("{ip}: matches {} ({})", m.prefix, m.verdict.describe());
            if let Some(t) = m.expires_at {
                line.push_str(&format!(", expires {}", fmt_time(t)));
            }
            if let Some(r) = &m.reason {
                line.push_str(&format!(", reason: {r}"));
            }
            emit(format_args!("{line}"));
        }
        None if ex.candidates.is_empty() => emit(format_args!("{ip}: no entry matches")),
        None => emit(format_args!("{ip}: every matching entry has expired")),
    }
    for c in ex
        .candidates
        .iter()
        .filter(|c| Some(c.prefix) != ex.matched.as_ref().map(|m| m.prefix))
    {
        emit(format_args!(
            "  also inside {} ({}{})",
            c.prefix,
            c.verdict.describe(),
            if c.expired { ", expired" } else { "" }
        ));
    }
    let ports: Vec<String> = ex.ports.iter().map(u16::to_string).collect();
    let mut line = format!(
        "a SYN to port {} now: {} (reason {})",
        ports.join("/"),
        ex.verdict,
        ex.reason
    );
    if ex.report_only && ex.would != ex.verdict {
        line.push_str(&format!(", report-only: would {}", ex.would));
    }
    emit(format_args!("{line}"));
    Ok(())
}
