//! Kernel counters summed over CPUs, labelled by reason, action and mode (and, for Prometheus, by
//! interface and address family).

use enforcer_common::counters::{slot, stats_index, ALL_FAMILIES, ALL_REASONS, COUNTER_SLOTS};
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
            | Reason::SourceOnlyRefused
            | Reason::NoticeFallbackDropped,
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
            | Reason::SourceOnlyRefused
            | Reason::NoticeFallbackDropped,
            true,
        ) => "would_drop",
        (Reason::Rejected, true) => "would_reject",
        (Reason::RateRefused | Reason::ThrottleRefused | Reason::BlockWindowRefused, true) => {
            "would_refuse"
        }
        _ => "pass",
    }
}

fn mode_name(report_only: bool) -> &'static str {
    if report_only {
        "report_only"
    } else {
        "enforced"
    }
}

/// Labels every slot of a folded `STATS` read (`sums[slot]`).
pub fn label(sums: &[u64]) -> Vec<Counter> {
    let mut out = Vec::with_capacity(COUNTER_SLOTS as usize);
    for report_only in [false, true] {
        for r in ALL_REASONS {
            out.push(Counter {
                reason: r.name(),
                action: action_of(r, report_only),
                mode: mode_name(report_only),
                packets: sums
                    .get(slot(r, report_only) as usize)
                    .copied()
                    .unwrap_or(0),
            });
        }
    }
    out
}

/// One counter of one interface and address family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfaceCounter {
    /// Interface name, or `other` for slot 0 (interfaces without a slot of their own).
    pub interface: String,
    /// `ipv4`, `ipv6`, or `none` (not parsed as far as IP).
    pub family: &'static str,
    pub reason: &'static str,
    pub action: &'static str,
    pub mode: &'static str,
    pub packets: u64,
}

/// Labels a full `STATS` read (`StatsMap::read_all`) for the interfaces holding a slot (`(slot,
/// name)`) plus slot 0 as `other`. Every combination the datapath can count is listed, zero or not,
/// so a series never disappears.
pub fn label_ifaces(full: &[u64], slots: &[(u32, String)]) -> Vec<IfaceCounter> {
    let mut ifaces = vec![(0u32, "other".to_string())];
    ifaces.extend(slots.iter().cloned());
    let mut out = Vec::new();
    for (slot_no, name) in &ifaces {
        for family in ALL_FAMILIES {
            for report_only in [false, true] {
                for r in ALL_REASONS.into_iter().filter(|r| family.can_count(*r)) {
                    let i = stats_index(*slot_no, family, r, report_only) as usize;
                    out.push(IfaceCounter {
                        interface: name.clone(),
                        family: family.name(),
                        reason: r.name(),
                        action: action_of(r, report_only),
                        mode: mode_name(report_only),
                        packets: full.get(i).copied().unwrap_or(0),
                    });
                }
            }
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
        assert_eq!(find("no_entry", "report_only").action, "pass");
        let t = totals(&c);
        assert_eq!(t["pass"], 100);
        assert_eq!(t["drop"], 7);
        assert_eq!(t["would_drop"], 3);
    }

    #[test]
    fn labels_interfaces_and_families() {
        use enforcer_common::counters::{Family, STATS_SLOTS};
        let mut full = vec![0u64; STATS_SLOTS as usize];
        full[stats_index(2, Family::V6, Reason::Rejected, false) as usize] = 4;
        full[stats_index(0, Family::None, Reason::NotIp, false) as usize] = 9;
        full[stats_index(0, Family::None, Reason::Truncated, true) as usize] = 5;
        full[stats_index(1, Family::V4, Reason::NoEntry, true) as usize] = 2;
        let c = label_ifaces(&full, &[(1, "eth0".into()), (2, "eth1".into())]);
        let get = |iface: &str, family, reason, mode| {
            c.iter()
                .find(|x| {
                    x.interface == iface
                        && x.family == family
                        && x.reason == reason
                        && x.mode == mode
                })
                .map(|x| x.packets)
        };
        assert_eq!(get("eth1", "ipv6", "rejected", "enforced"), Some(4));
        assert_eq!(get("other", "none", "not_ip", "enforced"), Some(9));
        // Packets refused before a source is known count under the mode the datapath is in.
        assert_eq!(get("other", "none", "not_ip", "report_only"), Some(0));
        assert_eq!(get("other", "none", "truncated", "report_only"), Some(5));
        assert_eq!(get("other", "none", "blocked", "report_only"), None);
        assert_eq!(get("eth0", "ipv4", "no_entry", "report_only"), Some(2));
        // Zero series are listed too, impossible ones are not.
        assert_eq!(get("eth0", "ipv6", "blocked", "enforced"), Some(0));
        assert_eq!(get("eth0", "ipv4", "not_ip", "enforced"), None);
        assert_eq!(get("eth0", "none", "blocked", "enforced"), None);
        let names: std::collections::HashSet<_> = c.iter().map(|x| x.interface.as_str()).collect();
        assert_eq!(names.len(), 3);
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
        // In report-only mode every packet is counted under report_only, passes as `pass`.
        assert_eq!(action("notice_admitted", "report_only"), "pass");
    }
}
