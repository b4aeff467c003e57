//! `enforcer stats`: kernel counters summed over CPUs, by reason, action and mode.

use super::entry::{emit, operator_error, Dirs};
use crate::datapath::stats::{label, totals};
use crate::datapath::{ControlMaps, StatsMap};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON (field names are stable; see the README).
    #[arg(long)]
    pub json: bool,
    /// Also show counters that are zero.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub dirs: Dirs,
}

pub fn execute(args: Args) -> anyhow::Result<()> {
    let stats = StatsMap::open_pinned(&args.dirs.pin_dir).map_err(operator_error)?;
    let control = ControlMaps::open_pinned(&args.dirs.pin_dir).map_err(operator_error)?;
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
    emit(format_args!(
        "mode: {}",
        if report_only {
            "report-only (verdicts counted, every packet passes)"
        } else {
            "enforcing"
        }
    ));
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
