//! `enforcer stats`: kernel counters summed over CPUs, by reason, action and mode; `--watch`
//! refreshes a per-second view of the decisions.

use std::time::{Duration, Instant};

use super::entry::{emit, operator_error, Dirs};
use crate::datapath::stats::{label, totals, Counter};
use crate::datapath::{ControlMaps, StatsMap};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON (field names are stable; see the README).
    #[arg(long, conflicts_with = "watch")]
    pub json: bool,
    /// Also show counters that are zero.
    #[arg(long)]
    pub all: bool,
    /// Refresh every second with packets per second by reason until interrupted (Ctrl-C).
    #[arg(long)]
    pub watch: bool,
    /// With --watch: stop after this many refreshes.
    #[arg(long, value_name = "N", requires = "watch")]
    pub count: Option<u64>,
    #[command(flatten)]
    pub dirs: Dirs,
}

pub fn execute(args: Args) -> anyhow::Result<()> {
    let stats = StatsMap::open_pinned(&args.dirs.pin_dir).map_err(operator_error)?;
    let control = ControlMaps::open_pinned(&args.dirs.pin_dir).map_err(operator_error)?;
    if args.watch {
        return watch(&args, &stats, &control);
    }
    let counters = label(&stats.sums()?);
    let totals = totals(&counters);
    let report_only = control.report_only()?;
    if args.json {
        let v = serde_json::json!({
            "report_only": report_only,
            "ports": control.ports()?,
            "totals": totals,
            "counters": counters,
        });
        emit(format_args!("{}", serde_json::to_string_pretty(&v)?));
        return Ok(());
    }
    emit(format_args!("mode: {}", mode_text(report_only)));
    let totals_line: Vec<String> = totals.iter().map(|(k, v)| format!("{k} {v}")).collect();
    emit(format_args!("totals: {}", totals_line.join(", ")));
    emit(format_args!(
        "{:<22} {:<13} {:<12} {:>14}",
        "REASON", "ACTION", "MODE", "PACKETS"
    ));
    for c in counters.iter().filter(|c| args.all || c.packets > 0) {
        emit(format_args!(
            "{:<22} {:<13} {:<12} {:>14}",
            c.reason, c.action, c.mode, c.packets
        ));
    }
    Ok(())
}

fn mode_text(report_only: bool) -> &'static str {
    if report_only {
        "report-only (verdicts counted, every packet passes)"
    } else {
        "enforcing"
    }
}

/// Per-second rates between two reads, one row per counter that moved (or every row with --all).
pub fn rates(before: &[Counter], after: &[Counter], secs: f64) -> Vec<(Counter, f64)> {
    after
        .iter()
        .zip(before)
        .map(|(a, b)| {
            let d = a.packets.saturating_sub(b.packets);
            (a.clone(), d as f64 / secs.max(1e-3))
        })
        .collect()
}

fn watch(args: &Args, stats: &StatsMap, control: &ControlMaps) -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    let tty = std::io::stdout().is_terminal();
    let mut before = label(&stats.sums()?);
    let mut at = Instant::now();
    let mut n = 0u64;
    while args.count.is_none_or(|c| n < c) {
        std::thread::sleep(Duration::from_secs(1).saturating_sub(at.elapsed()));
        let after = label(&stats.sums()?);
        let now = Instant::now();
        let rows = rates(&before, &after, now.duration_since(at).as_secs_f64());
        if tty {
            // Clear the screen and go home: a view refreshed in place, like top.
            print!("\x1b[H\x1b[2J");
        } else if n > 0 {
            emit(format_args!(""));
        }
        let now_utc = time::OffsetDateTime::now_utc();
        emit(format_args!(
            "{} UTC  mode: {}",
            now_utc
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            mode_text(control.report_only().unwrap_or(false))
        ));
        let mut per_action = std::collections::BTreeMap::<&str, f64>::new();
        for (c, r) in &rows {
            *per_action.entry(c.action).or_default() += r;
        }
        let line: Vec<String> = per_action
            .iter()
            .map(|(k, v)| format!("{k} {v:.0}/s"))
            .collect();
        emit(format_args!("{}", line.join(", ")));
        emit(format_args!(
            "{:<22} {:<13} {:<12} {:>12} {:>14}",
            "REASON", "ACTION", "MODE", "PACKETS/S", "TOTAL"
        ));
        for (c, r) in rows
            .iter()
            .filter(|(c, r)| args.all || *r > 0.0 || (c.packets > 0 && c.action != "pass"))
        {
            emit(format_args!(
                "{:<22} {:<13} {:<12} {:>12.0} {:>14}",
                c.reason, c.action, c.mode, r, c.packets
            ));
        }
        before = after;
        at = now;
        n += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use enforcer_common::counters::{slot, COUNTER_SLOTS};
    use enforcer_common::Reason;

    #[test]
    fn rates_are_per_second_differences() {
        let mut a = vec![0u64; COUNTER_SLOTS as usize];
        let mut b = a.clone();
        a[slot(Reason::Blocked, false) as usize] = 10;
        b[slot(Reason::Blocked, false) as usize] = 30;
        let r = rates(&label(&a), &label(&b), 2.0);
        let blocked = r
            .iter()
            .find(|(c, _)| c.reason == "blocked" && c.mode == "enforced")
            .unwrap();
        assert_eq!(blocked.1, 10.0);
        assert_eq!(blocked.0.packets, 30);
        assert!(r
            .iter()
            .filter(|(c, _)| c.reason != "blocked")
            .all(|(_, v)| *v == 0.0));
    }
}
