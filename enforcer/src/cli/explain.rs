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
    /// `hosts` (exact address map) or `prefixes` (hash per length and masked address).
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
    /// The progressive-enforcement record covering the address, if the engine has one.
    sender: Option<SenderNote>,
    /// Interfaces where a reject's RST would not reach the sender (native XDP on a veth).
    rst_undelivered: Vec<String>,
}

/// What `explain` says about a sender record (the full record: `enforcer sender IP`).
#[derive(Debug, Serialize)]
struct SenderNote {
    prefix: Prefix,
    /// `clear`, `allow-listed`, `enforcing`, `paused`; `unknown` when the daemon is not running.
    state: String,
    stage: Option<u32>,
    stage_action: Option<String>,
}

/// The sender record covering `ip`: from the running daemon (with its stage), else from the store.
fn sender_note(dirs: &Dirs, ip: IpAddr) -> Option<SenderNote> {
    let socket = dirs.socket();
    if crate::control::client::daemon_owning(&socket, &dirs.state_dir) {
        let v = crate::control::request(
            &socket,
            &crate::control::Request::Sender {
                target: ip.to_string(),
            },
        )
        .ok()?;
        let view: crate::daemon::views::SenderView = serde_json::from_value(v).ok()?;
        return Some(SenderNote {
            prefix: view.prefix,
            state: view.state,
            stage: view.stage,
            stage_action: view.stage_action,
        });
    }
    let store = crate::store::Store::open(&dirs.state_dir).ok()?;
    let recs = store.senders().ok()?;
    recs.into_iter()
        .find(|r| r.prefix.contains(ip))
        .map(|r| SenderNote {
            prefix: r.prefix,
            state: "unknown".into(),
            stage: None,
            stage_action: None,
        })
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
        sender: sender_note(&args.dirs, ip),
        rst_undelivered: crate::datapath::loader::rst_undelivered(&crate::datapath::PinDir::new(
            &args.dirs.pin_dir,
        )),
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
        None if ex.candidates.is_empty() && ex.sender.is_some() => {
            emit(format_args!("{ip}: no kernel entry matches"))
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
    if let Some(s) = &ex.sender {
        let stage = match (s.stage, &s.stage_action) {
            (Some(n), Some(a)) => format!(", stage {n} ({a})"),
            (Some(n), None) => format!(", stage {n}"),
            _ => String::new(),
        };
        let report = if s.stage_action.as_deref() == Some("report only") {
            ": its connects pass and are only reported"
        } else {
            ""
        };
        emit(format_args!(
            "sender record {}: {}{stage}{report}; `enforcer sender {ip}` shows why and what comes next",
            s.prefix,
            if s.state == "unknown" {
                "state unknown (the daemon is not running)"
            } else {
                s.state.as_str()
            },
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
    if ex.would == "reject" && !ex.rst_undelivered.is_empty() {
        emit(format_args!(
            "note: on {} (native XDP on a veth) the RST is not delivered: the SYN is in effect dropped; attach with --mode xdp-skb or tc",
            ex.rst_undelivered.join(", ")
        ));
    }
    Ok(())
}
