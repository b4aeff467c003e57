//! What the kernel would do with a SYN to a protected port, computed in userspace from the map
//! contents with the kernel's semantics (for `enforcer explain`). Pure: the caller supplies the
//! candidate entries, the rate state and the boot-clock time.

use enforcer_common::policy::{
    emission_interval_ns, PolicyEntry, RateState, ACTION_DROP, ACTION_PASS, ACTION_RATE_LIMIT,
    ACTION_REJECT, ACTION_THROTTLE, ENTRY_FLAG_RST,
};
use enforcer_common::Reason;

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

/// The decision for one SYN: which candidate decided (index into the candidates), why, and what the
/// packet gets. In report-only mode `outcome` is `Pass` and `would` says what enforcement would do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub matched: Option<usize>,
    pub reason: Reason,
    pub outcome: Outcome,
    pub would: Outcome,
}

/// True when the entry has an expiry at or before `now_ns`.
pub fn expired(e: &PolicyEntry, now_ns: u64) -> bool {
    e.expires_ns != 0 && e.expires_ns <= now_ns
}

/// Offset of `now_ns` inside the current throttle period, in ns (anchors may lie in the future).
pub fn period_offset_ns(e: &PolicyEntry, now_ns: u64) -> u64 {
    let period = u64::from(e.period_secs) * 1_000_000_000;
    if period == 0 {
        return 0;
    }
    if now_ns >= e.anchor_ns {
        (now_ns - e.anchor_ns) % period
    } else {
        let back = (e.anchor_ns - now_ns) % period;
        if back == 0 {
            0
        } else {
            period - back
        }
    }
}

/// GCRA: a SYN at `now_ns` is admitted when the bucket's theoretical arrival time, pushed by one
/// emission interval, stays within `burst` intervals of now.
pub fn rate_admits(e: &PolicyEntry, state: Option<RateState>, now_ns: u64) -> bool {
    let t = emission_interval_ns(e.rate_per_min);
    let tat = state.map_or(0, |s| s.tat_ns).max(now_ns);
    let new_tat = tat.saturating_add(t);
    new_tat - now_ns <= t.saturating_mul(u64::from(e.burst.max(1)))
}

/// Decides for a SYN given the candidates, most specific first (host entry, then prefixes by
/// decreasing length). Expired entries are skipped; if every matching entry has expired the reason is
/// `Expired`.
pub fn decide(
    candidates: &[PolicyEntry],
    rate: Option<RateState>,
    now_ns: u64,
    report_only: bool,
) -> Decision {
    let mut reason = Reason::NoEntry;
    let mut matched = None;
    for (i, e) in candidates.iter().enumerate() {
        if expired(e, now_ns) {
            reason = Reason::Expired;
            continue;
        }
        matched = Some(i);
        reason = entry_reason(e, rate, now_ns);
        break;
    }
    let refuse = |e: &PolicyEntry| {
        if e.flags & ENTRY_FLAG_RST != 0 {
            Outcome::Reject
        } else {
            Outcome::Drop
        }
    };
    let would = match (reason, matched) {
        (Reason::Blocked, _) => Outcome::Drop,
        (Reason::Rejected, _) => Outcome::Reject,
        (r, Some(i)) if r.is_refusal() => refuse(&candidates[i]),
        _ => Outcome::Pass,
    };
    Decision {
        matched,
        reason,
        outcome: if report_only { Outcome::Pass } else { would },
        would,
    }
}

fn entry_reason(e: &PolicyEntry, rate: Option<RateState>, now_ns: u64) -> Reason {
    match e.action {
        ACTION_PASS => Reason::Allowed,
        ACTION_DROP => Reason::Blocked,
        ACTION_REJECT => Reason::Rejected,
        ACTION_RATE_LIMIT => {
            if rate_admits(e, rate, now_ns) {
                Reason::RateAllowed
            } else {
                Reason::RateRefused
            }
        }
        ACTION_THROTTLE => {
            let off = period_offset_ns(e, now_ns) / 1_000_000_000;
            let (bo, b) = (u64::from(e.block_offset_secs), u64::from(e.block_secs));
            if off < u64::from(e.throttle_secs) {
                Reason::ThrottleRefused
            } else if b > 0 && off >= bo && off < bo + b {
                Reason::BlockWindowRefused
            } else {
                Reason::ThrottleOutside
            }
        }
        // An action code from a newer writer: the kernel fails open.
        _ => Reason::Allowed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn entry(action: u32) -> PolicyEntry {
        PolicyEntry {
            action,
            ..Default::default()
        }
    }

    #[test]
    fn most_specific_live_entry_wins() {
        let allow = entry(ACTION_PASS);
        let block = entry(ACTION_DROP);
        let d = decide(&[allow, block], None, 10 * S, false);
        assert_eq!(
            (d.matched, d.reason, d.outcome),
            (Some(0), Reason::Allowed, Outcome::Pass)
        );
        let mut old = allow;
        old.expires_ns = 5 * S;
        let d = decide(&[old, block], None, 10 * S, false);
        assert_eq!(
            (d.matched, d.reason, d.outcome),
            (Some(1), Reason::Blocked, Outcome::Drop)
        );
        let d = decide(&[old], None, 10 * S, false);
        assert_eq!(
            (d.matched, d.reason, d.outcome),
            (None, Reason::Expired, Outcome::Pass)
        );
        let d = decide(&[], None, 10 * S, false);
        assert_eq!(d.reason, Reason::NoEntry);
    }

    #[test]
    fn report_only_passes_but_says_what_it_would_do() {
        let d = decide(&[entry(ACTION_REJECT)], None, S, true);
        assert_eq!((d.outcome, d.would), (Outcome::Pass, Outcome::Reject));
    }

    #[test]
    fn throttle_windows() {
        let mut e = entry(ACTION_THROTTLE);
        e.period_secs = 3600;
        e.throttle_secs = 300;
        e.block_offset_secs = 600;
        e.block_secs = 60;
        e.anchor_ns = 1000 * S;
        e.flags = ENTRY_FLAG_RST;
        let at = |secs: u64| decide(&[e], None, secs * S, false);
        assert_eq!(at(1000).reason, Reason::ThrottleRefused);
        assert_eq!(at(1000).outcome, Outcome::Reject);
        assert_eq!(at(1299).reason, Reason::ThrottleRefused);
        assert_eq!(at(1300).reason, Reason::ThrottleOutside);
        assert_eq!(at(1600).reason, Reason::BlockWindowRefused);
        assert_eq!(at(1660).reason, Reason::ThrottleOutside);
        assert_eq!(at(1000 + 3600 + 10).reason, Reason::ThrottleRefused);
        // Anchor in the future: 100 s before it we are at offset 3500 of the previous period.
        assert_eq!(at(900).reason, Reason::ThrottleOutside);
        assert_eq!(period_offset_ns(&e, 900 * S), 3500 * S);
    }

    #[test]
    fn gcra_admits_burst_then_refuses() {
        let mut e = entry(ACTION_RATE_LIMIT);
        e.rate_per_min = 3;
        e.burst = 3;
        let now = 100 * S;
        let mut state = None;
        let mut admitted = 0;
        for _ in 0..10 {
            if rate_admits(&e, state, now) {
                admitted += 1;
                let tat = state.map_or(0, |s: RateState| s.tat_ns).max(now);
                state = Some(RateState {
                    tat_ns: tat + emission_interval_ns(3),
                });
            }
        }
        assert_eq!(admitted, 3);
        // 20 s later one more token is back.
        assert!(rate_admits(&e, state, now + 20 * S));
        assert!(!rate_admits(&e, state, now + 19 * S));
    }
}
