//! Kernel counters summed over CPUs, labelled by reason, action and mode.

use enforcer_common::counters::{slot, ALL_REASONS, COUNTER_SLOTS};
use enforcer_common::Reason;
use serde::Serialize;

/// One counter slot summed over CPUs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Counter {
    /// `Reason::name`, e.g. `blocked`, `not_syn`.
    pub reason: &'static str,
    /// What the packet got: `pass`, `drop`, `reject`, `refuse` (drop or reject, as the entry says),
    /// or in report-only mode `would_drop`, `would_reject`, `would_refuse`.
    pub action: &'static str,
    /// `enforced` or `report_only`.
    pub mode: &'static str,
    pub packets: u64,
}

/// Action label of a reason.
pub fn action_of(reason: Reason, report_only: bool) -> &'static str {
    match (reason, report_only) {
        (
            Reason::Blocked
            | Reason::RejectFallbackDrop
            | Reason::NoticeRefused
            | Reason::SourceOnlyRefused,
            false,
        ) => "drop",
        (Reason::Rejected, false) => "reject",
        (Reason::RateRefused | Reason::ThrottleRefused | Reason::BlockWindowRefused, false) => {
            "refuse"
        }
        (
            Reason::Blocked
            | Reason::RejectFallbackDrop
            | Reason::NoticeRefused
            | Reason::SourceOnlyRefused,
            true,
        ) => "would_drop",
        (Reason::Rejected, true) => "would_reject",
        (Reason::RateRefused | Reason::ThrottleRefused | Reason::BlockWindowRefused, true) => {
            "would_refuse"
        }
        _ => "pass",
    }
}

/// Labels every slot of a `STATS` read (`sums[slot]`); slots the kernel never uses in a half (a
/// bypass reason in the report-only half) are left out.
pub fn label(sums: &[u64]) -> Vec<Counter> {
    let mut out = Vec::with_capacity(COUNTER_SLOTS as usize);
    for report_only in [false, true] {
        for r in ALL_REASONS {
            if report_only && !r.is_refusal() {
                continue;
            }
            out.push(Counter {
                reason: r.name(),
                action: action_of(r, report_only),
                mode: if report_only {
                    "report_only"
                } else {
                    "enforced"
                },
                packets: sums
                    .get(slot(r, report_only) as usize)
                    .copied()
                    .unwrap_or(0),
            });
        }
    }
    out
}

/// Packets per action label.
pub fn totals(counters: &[Counter]) -> std::collections::BTreeMap<&'static str, u64> {
    let mut t = std::collections::BTreeMap::new();
    for c in counters {
        *t.entry(c.action).or_insert(0) += c.packets;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_every_used_slot() {
        let mut sums = vec![0u64; COUNTER_SLOTS as usize];
        sums[slot(Reason::Blocked, false) as usize] = 7;
        sums[slot(Reason::Blocked, true) as usize] = 3;
        sums[slot(Reason::NotSyn, false) as usize] = 100;
        let c = label(&sums);
        let find = |reason, mode| {
            c.iter()
                .find(|x| x.reason == reason && x.mode == mode)
                .unwrap()
        };
        assert_eq!(find("blocked", "enforced").packets, 7);
        assert_eq!(find("blocked", "enforced").action, "drop");
        assert_eq!(find("blocked", "report_only").action, "would_drop");
        assert_eq!(find("blocked", "report_only").packets, 3);
        assert!(!c
            .iter()
            .any(|x| x.reason == "not_syn" && x.mode == "report_only"));
        let t = totals(&c);
        assert_eq!(t["pass"], 100);
        assert_eq!(t["drop"], 7);
        assert_eq!(t["would_drop"], 3);
    }

    #[test]
    fn shape_and_notice_reasons_are_labelled() {
        let c = label(&vec![0u64; COUNTER_SLOTS as usize]);
        let action = |reason, mode| {
            c.iter()
                .find(|x| x.reason == reason && x.mode == mode)
                .unwrap_or_else(|| panic!("{reason}/{mode} labelled"))
                .action
        };
        assert_eq!(action("source_only_refused", "enforced"), "drop");
        assert_eq!(action("source_only_refused", "report_only"), "would_drop");
        assert_eq!(action("notice_refused", "enforced"), "drop");
        assert_eq!(action("notice_refused", "report_only"), "would_drop");
        assert_eq!(action("notice_admitted", "enforced"), "pass");
        assert!(!c
            .iter()
            .any(|x| x.reason == "notice_admitted" && x.mode == "report_only"));
    }
}
