//! What the kernel would do with a SYN to a protected port, computed in userspace from the map
//! contents with the kernel's own rules (for `enforcer explain`): the exact-host entry first (whose
//! rate state is in the entry itself; a prefix's is the source's `RATE_STATE`); if it
//! has expired, the longest prefix; an expired longest prefix passes (`Expired`) without consulting
//! shorter ones, as a single LPM lookup cannot. Throttle windows and GCRA come from
//! `enforcer_common::policy`, the same code the kernel runs.

use enforcer_common::policy::{
    gcra_interval, PolicyEntry, RateState, Window, ACTION_DROP, ACTION_PASS, ACTION_RATE_LIMIT,
    ACTION_REJECT, ACTION_THROTTLE, ENTRY_FLAG_RST,
};
use enforcer_common::Reason;

use super::maps::Table;

/// What happens to the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Drop,
    Reject,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Drop => "drop",
            Outcome::Reject => "reject",
        }
    }
}

/// The decision for one SYN: which entry decided, why, and what the packet gets. In report-only
/// mode `outcome` is `Pass` and `would` says what enforcement would do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub matched: Option<Table>,
    pub reason: Reason,
    pub outcome: Outcome,
    pub would: Outcome,
}

/// True when the entry has an expiry at or before `now_ns`.
pub fn expired(e: &PolicyEntry, now_ns: u64) -> bool {
    e.is_expired(now_ns)
}

/// Decides for a SYN given the source's exact-host entry and its longest-prefix entry.
pub fn decide(
    host: Option<&PolicyEntry>,
    prefix: Option<&PolicyEntry>,
    rate: Option<RateState>,
    now_ns: u64,
    report_only: bool,
) -> Decision {
    let (matched, reason, refusal) = match (host, prefix) {
        (Some(h), _) if !h.is_expired(now_ns) => {
            // A host entry holds its own rate state.
            let (r, o) = act(h, Some(RateState { tat_ns: h.tat_ns }), now_ns);
            (Some(Table::Hosts), r, o)
        }
        (_, Some(p)) if !p.is_expired(now_ns) => {
            let (r, o) = act(p, rate, now_ns);
            (Some(Table::Prefixes), r, o)
        }
        (None, None) => (None, Reason::NoEntry, Outcome::Pass),
        _ => (None, Reason::Expired, Outcome::Pass),
    };
    Decision {
        matched,
        reason,
        outcome: if report_only { Outcome::Pass } else { refusal },
        would: refusal,
    }
}

fn act(e: &PolicyEntry, rate: Option<RateState>, now_ns: u64) -> (Reason, Outcome) {
    let refusal = if e.flags & ENTRY_FLAG_RST != 0 {
        Outcome::Reject
    } else {
        Outcome::Drop
    };
    match e.action {
        ACTION_PASS => (Reason::Allowed, Outcome::Pass),
        ACTION_DROP => (Reason::Blocked, Outcome::Drop),
        ACTION_REJECT => (Reason::Rejected, Outcome::Reject),
        ACTION_RATE_LIMIT => {
            let tat = rate.map_or(0, |s| s.tat_ns);
            match gcra_interval(tat, now_ns, e.rate_interval_ns(), e.burst) {
                Some(_) => (Reason::RateAllowed, Outcome::Pass),
                None => (Reason::RateRefused, refusal),
            }
        }
        ACTION_THROTTLE => match e.window_at(now_ns) {
            Window::Outside => (Reason::ThrottleOutside, Outcome::Pass),
            _ if e.is_notice() => match e.notice_admit(rate.map_or(0, |s| s.tat_ns), now_ns) {
                Some(_) => (Reason::NoticeAdmitted, Outcome::Pass),
                None => (Reason::NoticeRefused, Outcome::Drop),
            },
            Window::Throttle => (Reason::ThrottleRefused, refusal),
            Window::Block => (Reason::BlockWindowRefused, refusal),
        },
        // An action code from a newer writer: the kernel fails open.
        _ => (Reason::NoEntry, Outcome::Pass),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use enforcer_common::policy::emission_interval_ns;

    const S: u64 = 1_000_000_000;

    fn entry(action: u32) -> PolicyEntry {
        PolicyEntry {
            action,
            ..Default::default()
        }
    }

    #[test]
    fn host_first_then_longest_prefix() {
        let allow = entry(ACTION_PASS);
        let block = entry(ACTION_DROP);
        let d = decide(Some(&allow), Some(&block), None, 10 * S, false);
        assert_eq!(
            (d.matched, d.reason, d.outcome),
            (Some(Table::Hosts), Reason::Allowed, Outcome::Pass)
        );
        let mut old = allow;
        old.expires_ns = 5 * S;
        let d = decide(Some(&old), Some(&block), None, 10 * S, false);
        assert_eq!(
            (d.matched, d.reason, d.outcome),
            (Some(Table::Prefixes), Reason::Blocked, Outcome::Drop)
        );
        let d = decide(Some(&old), None, None, 10 * S, false);
        assert_eq!((d.matched, d.reason), (None, Reason::Expired));
        let d = decide(None, Some(&old), None, 10 * S, false);
        assert_eq!((d.matched, d.reason), (None, Reason::Expired));
        assert_eq!(decide(None, None, None, S, false).reason, Reason::NoEntry);
        assert_eq!(
            decide(Some(&entry(99)), None, None, S, false).reason,
            Reason::NoEntry
        );
    }

    #[test]
    fn report_only_passes_but_says_what_it_would_do() {
        let d = decide(Some(&entry(ACTION_REJECT)), None, None, S, true);
        assert_eq!((d.outcome, d.would), (Outcome::Pass, Outcome::Reject));
    }

    #[test]
    fn throttle_refusal_follows_the_rst_flag() {
        let mut e = entry(ACTION_THROTTLE);
        e.period_secs = 3600;
        e.throttle_secs = 300;
        e.anchor_ns = 1000 * S;
        let d = decide(Some(&e), None, None, 1001 * S, false);
        assert_eq!(
            (d.reason, d.outcome),
            (Reason::ThrottleRefused, Outcome::Drop)
        );
        e.flags = ENTRY_FLAG_RST;
        let d = decide(Some(&e), None, None, 1001 * S, false);
        assert_eq!(d.outcome, Outcome::Reject);
        let d = decide(Some(&e), None, None, 1400 * S, false);
        assert_eq!(
            (d.reason, d.outcome),
            (Reason::ThrottleOutside, Outcome::Pass)
        );
    }

    #[test]
    fn notice_follows_the_kernel_budget() {
        let mut t = entry(ACTION_THROTTLE);
        t.period_secs = 3600;
        t.throttle_secs = 300;
        t.anchor_ns = 1000 * S;
        t.flags = ENTRY_FLAG_RST;
        let e = PolicyEntry::notice(t, 2, 600);
        let fresh = decide(Some(&e), None, None, 1001 * S, false);
        assert_eq!(
            (fresh.reason, fresh.outcome),
            (Reason::NoticeAdmitted, Outcome::Pass)
        );
        // Two admitted back to back leave the state 10 minutes ahead: the next one is dropped
        // (a host entry holds its state, a prefix entry's is the source's RATE_STATE).
        let spent_at = 1001 * S + 600 * S;
        let spent = Some(RateState { tat_ns: spent_at });
        let host = PolicyEntry {
            tat_ns: spent_at,
            ..e
        };
        let d = decide(Some(&host), None, None, 1001 * S, false);
        assert_eq!(
            (d.reason, d.outcome),
            (Reason::NoticeRefused, Outcome::Drop)
        );
        let d = decide(None, Some(&e), spent, 1001 * S, false);
        assert_eq!(
            (d.reason, d.outcome),
            (Reason::NoticeRefused, Outcome::Drop)
        );
        let d = decide(Some(&host), None, spent, 1400 * S, false);
        assert_eq!(
            (d.reason, d.outcome),
            (Reason::ThrottleOutside, Outcome::Pass)
        );
    }

    #[test]
    fn rate_state_decides() {
        let mut e = entry(ACTION_RATE_LIMIT);
        e.rate_per_min = 3;
        e.burst = 3;
        let now = 100 * S;
        let full = RateState {
            tat_ns: now + 3 * emission_interval_ns(3),
        };
        assert_eq!(
            decide(Some(&e), None, None, now, false).reason,
            Reason::RateAllowed
        );
        // A prefix entry's state is the source's RATE_STATE.
        assert_eq!(
            decide(None, Some(&e), Some(full), now, false).reason,
            Reason::RateRefused
        );
        // A host entry's state is in the entry; RATE_STATE is not consulted for it.
        assert_eq!(
            decide(Some(&e), None, Some(full), now, false).reason,
            Reason::RateAllowed
        );
        let spent = PolicyEntry {
            tat_ns: full.tat_ns,
            ..e
        };
        assert_eq!(
            decide(Some(&spent), None, None, now, false).reason,
            Reason::RateRefused
        );
        // A stored interval is used as the kernel uses it: 50 s of backlog fits a burst of 3 at
        // 30 s (tolerance 60 s) but not at the 20 s that 3/min derives (tolerance 40 s).
        let slower = PolicyEntry {
            interval_ns: 30 * S,
            tat_ns: now + 50 * S,
            ..e
        };
        assert_eq!(
            decide(Some(&slower), None, None, now, false).reason,
            Reason::RateAllowed
        );
        assert_eq!(
            decide(Some(&slower.with_interval()), None, None, now, false).reason,
            Reason::RateRefused
        );
    }
}
