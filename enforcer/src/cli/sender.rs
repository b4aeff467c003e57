//! `enforcer sender <IP> [--json]`: one sender's full record, why it is in enforcement, the build it
//! should upgrade to, and what a connect from it gets right now.

use super::senders::SocketArg;
use crate::control::Request;
use crate::daemon::views::SenderDetail;
use crate::policy::fmt_time;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Sender address (or the aggregated prefix of its record).
    #[arg(value_name = "IP")]
    pub target: String,
    #[command(flatten)]
    pub socket: SocketArg,
    /// Print the JSON object (field names are stable).
    #[arg(long)]
    pub json: bool,
}

pub fn execute(args: Args) -> anyhow::Result<()> {
    let v = args.socket.call(&Request::Sender {
        target: args.target,
    })?;
    print_detail(v, args.json)
}

/// Prints a sender detail returned by the daemon (also used by evidence/pause/resume).
pub fn print_detail(v: serde_json::Value, json: bool) -> anyhow::Result<()> {
    if json {
        super::entry::emit_json(&v)?;
        return Ok(());
    }
    let d: SenderDetail = serde_json::from_value(v)?;
    super::entry::emit_text(&render(&d));
    Ok(())
}

pub fn render(d: &SenderDetail) -> String {
    let v = &d.view;
    let mut o = String::new();
    let mut kv = |k: &str, val: String| o.push_str(&format!("{k:<16}{val}\n"));
    kv("sender", v.prefix.to_string());
    if !v.addresses.is_empty() {
        let a: Vec<String> = v.addresses.iter().map(|a| a.to_string()).collect();
        kv("addresses", a.join(", "));
    }
    let state = match (v.stage, &v.stage_action) {
        (Some(s), Some(a)) => format!("{} at stage {s} ({a})", v.state),
        _ => v.state.clone(),
    };
    kv("state", state);
    if let Some(w) = &d.why {
        kv("why", w.clone());
    }
    if let Some(u) = &d.upgrade_to {
        kv("upgrade to", u.clone());
    }
    kv("connect now", d.connect_now.clone());
    if let Some(t) = &v.first_detected {
        kv("first detected", t.clone());
    }
    if let Some(t) = &v.enforcing_since {
        kv("enforcing since", t.clone());
    }
    if let Some(t) = &v.paused_until {
        kv("paused until", t.clone());
    }
    if let (Some(n), Some(t)) = (v.next_stage, &v.next_stage_at) {
        kv("next stage", format!("{n} at {t}"));
    }
    if let Some(r) = &v.operator_rule {
        kv("operator rule", r.clone());
    }
    kv(
        "pause budget",
        format!(
            "{:.1} of {:.0} days used this year",
            d.pause_used_days, d.pause_budget_days
        ),
    );
    if let Some(ev) = &d.record.evidence {
        kv(
            "evidence",
            format!("{} (fed {})", ev.summary(), fmt_time(ev.seen_at)),
        );
        for f in &ev.findings {
            o.push_str(&format!("{:<16}- {f}\n", ""));
        }
    }
    o.push_str("history\n");
    for h in &d.record.history {
        o.push_str(&format!("  {}  {}\n", fmt_time(h.at), h.event));
    }
    o
}
