//! `enforcer list`: the kernel's policy entries (the truth), annotated from the store (reason,
//! creation time, source) when it can be read, plus store rules missing from the kernel.

use serde::Serialize;

use super::entry::{emit, fmt_time, open_policy, Dirs};
use crate::datapath::eval::expired;
use crate::datapath::Clock;
use crate::net::Prefix;
use crate::rule::{expiry_from_kernel, Rule, RuleSource, Verdict};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON (field names are stable; see the README).
    #[arg(long)]
    pub json: bool,
    /// Only the entries of this named list (made by `enforcer import --list NAME`).
    #[arg(long, value_name = "NAME")]
    pub list: Option<String>,
    #[command(flatten)]
    pub dirs: Dirs,
}

/// One row of `list --json`.
#[derive(Debug, Serialize)]
pub struct Row {
    pub prefix: Prefix,
    /// `pass`, `drop`, `reject`, `rate_limit`, `throttle`.
    pub action: &'static str,
    /// The verdict with its parameters (same shape as in the store).
    pub verdict: Verdict,
    /// Unix seconds; null = never.
    pub expires_at: Option<i64>,
    pub expired: bool,
    /// The entry is in the kernel maps (false: only in the store, e.g. before `enforcer run`).
    pub in_kernel: bool,
    /// `operator`, `engine` or `unknown` (no store record).
    pub source: &'static str,
    pub stage: Option<u32>,
    pub reason: Option<String>,
    pub created_at: Option<i64>,
    /// The named list the entry belongs to (`enforcer import --list NAME`), if any.
    pub list: Option<String>,
}

/// Builds the rows: every kernel entry, then store rules the kernel lacks.
pub fn rows(dirs: &Dirs, clock: &Clock) -> anyhow::Result<(Vec<Row>, Option<String>)> {
    let maps = open_policy(dirs)?;
    let entries = maps.entries()?;
    let (rules, note) = match super::entry::stored_rules(dirs) {
        Ok(r) => (r, None),
        Err(e) => (
            Vec::new(),
            Some(format!(
                "store not read ({e:#}); reasons and sources are not shown"
            )),
        ),
    };
    let by_prefix: std::collections::HashMap<Prefix, &Rule> =
        rules.iter().map(|r| (r.prefix, r)).collect();
    let find = |p: &Prefix| by_prefix.get(p).copied();
    let mut out = Vec::new();
    for (prefix, e) in &entries {
        let verdict = Verdict::from_kernel(e, clock);
        out.push(row(
            *prefix,
            verdict,
            expiry_from_kernel(e, clock),
            expired(e, clock.boot_ns()),
            true,
            find(prefix),
        ));
    }
    let in_kernel: std::collections::HashSet<Prefix> = entries.iter().map(|(p, _)| *p).collect();
    for r in &rules {
        if !in_kernel.contains(&r.prefix) {
            out.push(row(
                r.prefix,
                r.verdict.clone(),
                r.expires_at,
                r.is_expired(clock.unix_secs()),
                false,
                Some(r),
            ));
        }
    }
    out.sort_by_key(|a| a.prefix);
    Ok((out, note))
}

fn row(
    prefix: Prefix,
    verdict: Verdict,
    expires_at: Option<i64>,
    expired: bool,
    in_kernel: bool,
    rule: Option<&Rule>,
) -> Row {
    let (source, stage) = match rule.map(|r| &r.source) {
        Some(RuleSource::Operator) => ("operator", None),
        Some(RuleSource::Engine { stage }) => ("engine", Some(*stage)),
        None => ("unknown", None),
    };
    Row {
        prefix,
        action: verdict.name(),
        verdict,
        expires_at,
        expired,
        in_kernel,
        source,
        stage,
        reason: rule.and_then(|r| r.reason.clone()),
        created_at: rule.map(|r| r.created_at),
        list: rule.and_then(|r| r.list.clone()),
    }
}

pub fn execute(args: Args) -> anyhow::Result<()> {
    let clock = Clock::now();
    let (mut rows, note) = rows(&args.dirs, &clock)?;
    if let Some(name) = &args.list {
        if let Err(e) = crate::feed::check_list_name(name) {
            return super::usage(e);
        }
        rows.retain(|r| r.list.as_deref() == Some(name.as_str()));
    }
    if args.json {
        emit(format_args!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "entries": rows }))?
        ));
        return Ok(());
    }
    if let Some(n) = note {
        eprintln!("note: {n}");
    }
    if rows.is_empty() {
        emit(format_args!("no entries"));
        return Ok(());
    }
    emit(format_args!(
        "{:<28} {:<44} {:<22} {:<9} REASON",
        "PREFIX", "VERDICT", "EXPIRES", "SOURCE"
    ));
    for r in rows {
        let expires = match (r.expires_at, r.expired) {
            (None, _) => "never".to_string(),
            (Some(t), false) => fmt_time(t),
            (Some(t), true) => format!("expired {}", fmt_time(t)),
        };
        let mut verdict = r.verdict.describe();
        if !r.in_kernel {
            verdict.push_str(" [not in kernel]");
        }
        emit(format_args!(
            "{:<28} {:<44} {:<22} {:<9} {}",
            r.prefix.to_string(),
            verdict,
            expires,
            r.source,
            r.reason.unwrap_or_default()
        ));
    }
    Ok(())
}
