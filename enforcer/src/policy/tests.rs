//! Fake-clock tests: every stage boundary, pauses, yearly pause budget, recovery, allow-list.

use super::*;
use std::net::IpAddr;

const D: i64 = 86_400;
/// 2025-03-01T00:00:00Z: far from a year boundary.
const T0: i64 = 1_740_787_200;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ev(pv: bool, status: Status, at: i64) -> Evidence {
    Evidence {
        seen_at: at,
        product: "exchange".into(),
        version: Some("2013".into()),
        build: Some(if pv { "15.0.1497.2" } else { "15.2.1748.39" }.into()),
        label: None,
        status,
        persistently_vulnerable: pv,
        confidence: 0.9,
        upgrade_to: pv.then(|| "Exchange Server SE".to_string()),
        findings: vec![],
    }
}

fn vulnerable(policy: &Policy, addr: &str, at: i64) -> Record {
    policy.observe(None, ip(addr), ev(true, Status::EndOfLife, at), at)
}

#[test]
fn every_default_stage_boundary() {
    let p = Policy::default();
    let rec = vulnerable(&p, "192.0.2.7", T0);
    let starts = [0, 30, 40, 50, 60, 70, 80, 90];
    for (i, day) in starts.iter().enumerate() {
        let stage = i as u32 + 1;
        let t = T0 + day * D;
        if i > 0 {
            assert_eq!(
                p.stage_at(&rec, t - 1),
                Standing::Enforcing { stage: stage - 1 },
                "one second before day {day}"
            );
            assert_eq!(
                p.next_change(&rec, t - 1),
                Some(t),
                "next change before day {day}"
            );
        }
        assert_eq!(
            p.stage_at(&rec, t),
            Standing::Enforcing { stage },
            "at day {day}"
        );
        let next = p.next_change(&rec, t);
        match starts.get(i + 1) {
            Some(nd) => assert_eq!(next, Some(T0 + nd * D)),
            None => assert_eq!(next, None, "the last stage never changes"),
        }
    }
    assert_eq!(
        p.stage_at(&rec, T0 + 5000 * D),
        Standing::Enforcing { stage: 8 }
    );
}

#[test]
fn effects_per_stage() {
    let p = Policy::default();
    let rec = vulnerable(&p, "192.0.2.7", T0);
    assert!(p.desired([&rec], T0).is_empty(), "stage 1 is report only");
    assert!(p.desired([&rec], T0 + 30 * D - 1).is_empty());
    let d = p.desired([&rec], T0 + 30 * D);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].stage, 2);
    assert_eq!(d[0].prefix.to_string(), "192.0.2.7/32");
    assert_eq!(d[0].action.describe(), "throttle 5m/1h");
    assert!(
        d[0].reason.contains("upgrade to Exchange Server SE"),
        "{}",
        d[0].reason
    );
    assert_eq!(p.desired([&rec], T0 + 90 * D)[0].action, Action::Block);
}

#[test]
fn compressed_schedule_in_seconds() {
    let sp = |s: &str| s.parse::<crate::duration::Span>().unwrap();
    let schedule = Schedule::new(vec![
        Stage {
            after: sp("0s"),
            action: Action::Report,
            refusal: Refusal::Drop,
        },
        Stage {
            after: sp("5s"),
            action: Action::Windows {
                period: sp("4s"),
                throttle: sp("2s"),
                block_at: sp("2s"),
                block: sp("0s"),
            },
            refusal: Refusal::Reject,
        },
        Stage {
            after: sp("15s"),
            action: Action::Block,
            refusal: Refusal::Drop,
        },
    ])
    .unwrap();
    let p = Policy {
        schedule,
        ..Policy::default()
    };
    let rec = vulnerable(&p, "10.200.1.2", 100);
    assert_eq!(p.next_change(&rec, 100), Some(105));
    assert_eq!(p.stage_at(&rec, 104), Standing::Enforcing { stage: 1 });
    assert_eq!(p.stage_at(&rec, 105), Standing::Enforcing { stage: 2 });
    assert_eq!(p.next_change(&rec, 105), Some(115));
    assert_eq!(p.stage_at(&rec, 115), Standing::Enforcing { stage: 3 });
    let d = p.desired_one(&rec, 106).unwrap();
    assert_eq!(d.refusal, Refusal::Reject);
}

#[test]
fn stage_never_regresses() {
    let p = Policy::default();
    let mut rec = vulnerable(&p, "192.0.2.7", T0);
    assert_eq!(p.advance(&mut rec, T0 + 41 * D), Some((1, 3)));
    assert_eq!(p.advance(&mut rec, T0 + 41 * D), None, "idempotent");
    // The wall clock steps back before day 40 (bad NTP, restored VM): the stage stays at 3.
    assert_eq!(
        p.stage_at(&rec, T0 + 35 * D),
        Standing::Enforcing { stage: 3 }
    );
    assert_eq!(p.next_change(&rec, T0 + 35 * D), Some(T0 + 50 * D));
    assert!(rec.history.last().unwrap().event.contains("stage 1 -> 3"));
}

#[test]
fn pause_freezes_progress_and_resumes_at_reached_stage() {
    let p = Policy::default();
    let mut rec = vulnerable(&p, "192.0.2.7", T0);
    let t = T0 + 35 * D; // stage 2
    let until = p.pause(&mut rec, 10, t).unwrap();
    assert_eq!(until, t + 10 * D);
    assert_eq!(p.stage_at(&rec, t), Standing::Paused { stage: 2, until });
    assert!(
        p.desired([&rec], t + D).is_empty(),
        "paused: no kernel entry"
    );
    assert_eq!(
        p.next_change(&rec, t),
        Some(until),
        "the pause end is the next change"
    );
    // Paused until day 45: progress at day 45 is 35 days, stage 3 comes at day 50 instead of 40.
    assert_eq!(p.stage_at(&rec, until), Standing::Enforcing { stage: 2 });
    assert_eq!(p.next_change(&rec, until), Some(T0 + 50 * D));
    assert_eq!(
        p.stage_at(&rec, T0 + 50 * D - 1),
        Standing::Enforcing { stage: 2 }
    );
    assert_eq!(
        p.stage_at(&rec, T0 + 50 * D),
        Standing::Enforcing { stage: 3 }
    );
}

#[test]
fn resume_early_counts_only_the_paused_time() {
    let p = Policy::default();
    let mut rec = vulnerable(&p, "192.0.2.7", T0);
    let t = T0 + 32 * D;
    p.pause(&mut rec, 20, t).unwrap();
    assert_eq!(p.resume(&mut rec, t + 3 * D), Ok(2));
    assert_eq!(
        p.stage_at(&rec, t + 3 * D),
        Standing::Enforcing { stage: 2 }
    );
    // 3 days paused: stage 3 at day 43.
    assert_eq!(p.next_change(&rec, t + 3 * D), Some(T0 + 43 * D));
    assert_eq!(
        p.resume(&mut rec, t + 4 * D),
        Err(PolicyError::NotPaused(rec.prefix))
    );
    assert!(rec
        .history
        .iter()
        .any(|h| h.event.contains("resumed at stage 2")));
}

#[test]
fn pause_in_report_stage_and_extension() {
    let p = Policy::default();
    let mut rec = vulnerable(&p, "192.0.2.7", T0);
    p.pause(&mut rec, 5, T0 + D).unwrap();
    // Extending a running pause replaces it; only the time actually paused plus the new plan count.
    let until = p.pause(&mut rec, 5, T0 + 3 * D).unwrap();
    assert_eq!(until, T0 + 8 * D);
    assert_eq!(p.pause_used(&rec, T0 + 3 * D), 7 * D);
    // Paused days 1..8: stage 2 at day 37.
    assert_eq!(p.next_change(&rec, T0 + 8 * D), Some(T0 + 37 * D));
}

#[test]
fn yearly_pause_budget() {
    let p = Policy::default(); // 90 days
    let mut rec = vulnerable(&p, "192.0.2.7", T0);
    assert_eq!(p.pause(&mut rec, 0, T0), Err(PolicyError::ZeroDays(0)));
    p.pause(&mut rec, 60, T0).unwrap();
    p.resume(&mut rec, T0 + 60 * D).unwrap_or(2); // already ended naturally is fine too
    let err = p.pause(&mut rec, 31, T0 + 61 * D).unwrap_err();
    assert!(
        matches!(err, PolicyError::BudgetExceeded { year: 2025, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("only 30 of 90"), "{err}");
    p.pause(&mut rec, 30, T0 + 61 * D).unwrap();
    p.resume(&mut rec, T0 + 62 * D).unwrap();
    // Resuming early gives back the unused days: 60 + 1 used.
    assert_eq!(p.pause_used(&rec, T0 + 62 * D), 61 * D);
    assert!(p.pause(&mut rec, 30, T0 + 63 * D).is_err());
    p.pause(&mut rec, 29, T0 + 63 * D).unwrap();
}

#[test]
fn budget_splits_at_the_calendar_year() {
    let p = Policy::default();
    // 2025-12-01T00:00:00Z
    let dec1 = 1_764_547_200;
    let mut rec = vulnerable(&p, "192.0.2.7", dec1 - 200 * D);
    p.pause(&mut rec, 80, dec1 - 100 * D).unwrap(); // 80 days of 2025 used
                                                    // 40 days from Dec 1: 31 days in 2025 (80 + 31 > 90: refused) ...
    let err = p.pause(&mut rec, 40, dec1).unwrap_err();
    assert!(
        matches!(err, PolicyError::BudgetExceeded { year: 2025, .. }),
        "{err}"
    );
    // ... but 10 in 2025 and the rest in 2026 fits.
    p.pause(&mut rec, 10, dec1 + 21 * D).unwrap();
    p.pause(&mut rec, 85, dec1 + 31 * D).unwrap(); // a fresh 2026 budget
}

#[test]
fn a_pause_across_new_year_is_charged_to_both_years_and_never_longer_than_the_budget() {
    let p = Policy::default();
    // 2025-12-01T00:00:00Z
    let dec1 = 1_764_547_200;
    let mut rec = vulnerable(&p, "192.0.2.7", dec1 - 10 * D);
    // 120 days from 1 December: only 31 fall in 2025, but one pause may not exceed the 90-day budget.
    let err = p.pause(&mut rec, 120, dec1).unwrap_err();
    assert!(
        matches!(err, PolicyError::LongerThanBudget { days: 120, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("at most 90 days"), "{err}");
    // 90 days fit: 31 charged to 2025, 59 to 2026.
    let until = p.pause(&mut rec, 90, dec1).unwrap();
    assert_eq!(until, dec1 + 90 * D);
    assert_eq!(p.pause_used(&rec, dec1), 31 * D);
    let jan2 = dec1 + 32 * D;
    assert_eq!(p.pause_used(&rec, jan2), 59 * D);
    // The socket's largest number is refused, not wrapped into a pause ending before it starts.
    let before = rec.pauses.len();
    assert!(matches!(
        p.pause(&mut rec, u64::MAX, dec1 + D),
        Err(PolicyError::LongerThanBudget { .. })
    ));
    assert_eq!(rec.pauses.len(), before, "nothing stored");
}

#[test]
fn supported_build_leaves_enforcement_at_once() {
    let p = Policy::default();
    let mut rec = vulnerable(&p, "192.0.2.7", T0);
    p.advance(&mut rec, T0 + 95 * D);
    p.pause(&mut rec, 3, T0 + 95 * D).unwrap();
    let t = T0 + 96 * D;
    let rec = p.observe(
        Some(rec),
        ip("192.0.2.7"),
        ev(false, Status::Supported, t),
        t,
    );
    assert_eq!(p.stage_at(&rec, t), Standing::Clear);
    assert!(p.desired([&rec], t).is_empty());
    assert_eq!(p.next_change(&rec, t), None);
    assert!(
        rec.active_pause(t).is_none(),
        "the pause ended with the episode"
    );
    let last = &rec.history.last().unwrap().event;
    assert!(last.starts_with("left enforcement at stage 8"), "{last}");
    assert_eq!(rec.first_detected, Some(T0));
    // Persistently vulnerable again later: a new episode from stage 1, first detection kept.
    let t2 = t + 10 * D;
    let rec = p.observe(
        Some(rec),
        ip("192.0.2.7"),
        ev(true, Status::EndOfLife, t2),
        t2,
    );
    assert_eq!(p.stage_at(&rec, t2), Standing::Enforcing { stage: 1 });
    assert_eq!(rec.first_detected, Some(T0));
    assert_eq!(rec.episode.as_ref().unwrap().started_at, t2);
}

#[test]
fn unknown_evidence_changes_nothing() {
    let p = Policy::default();
    let rec = vulnerable(&p, "192.0.2.7", T0);
    let t = T0 + 45 * D;
    let mut unknown = ev(false, Status::Unknown, t);
    unknown.product = "unknown".into();
    let rec = p.observe(Some(rec), ip("192.0.2.7"), unknown, t);
    assert_eq!(p.stage_at(&rec, t), Standing::Enforcing { stage: 3 });
    // Evidence that is not vulnerable, for a sender never enforced, creates no episode.
    let clean = p.observe(None, ip("192.0.2.8"), ev(false, Status::Supported, t), t);
    assert_eq!(p.stage_at(&clean, t), Standing::Clear);
    assert_eq!(clean.first_detected, None);
}

#[test]
fn allow_listed_never_enters_enforcement() {
    let p = Policy {
        allow: vec!["192.0.2.0/28".parse().unwrap()],
        ..Policy::default()
    };
    let rec = vulnerable(&p, "192.0.2.7", T0);
    assert!(rec.episode.is_none());
    assert_eq!(p.stage_at(&rec, T0 + 100 * D), Standing::AllowListed);
    assert!(p.desired([&rec], T0 + 100 * D).is_empty());
    let mut rec2 = rec.clone();
    assert_eq!(
        p.pause(&mut rec2, 1, T0),
        Err(PolicyError::AllowListed(rec.prefix))
    );
    // A record already enforced before its prefix was allow-listed stops being enforced.
    let open = Policy::default();
    let enforced = vulnerable(&open, "192.0.2.9", T0);
    assert_eq!(p.stage_at(&enforced, T0 + 95 * D), Standing::AllowListed);
}

#[test]
fn aggregation_shares_one_record() {
    let p = Policy {
        aggregation: Aggregation { v4: 24, v6: 64 },
        ..Policy::default()
    };
    let rec = vulnerable(&p, "198.51.100.7", T0);
    assert_eq!(rec.prefix.to_string(), "198.51.100.0/24");
    let rec = p.observe(
        Some(rec),
        ip("198.51.100.9"),
        ev(true, Status::EndOfLife, T0 + D),
        T0 + D,
    );
    assert_eq!(rec.addresses, vec![ip("198.51.100.7"), ip("198.51.100.9")]);
    assert_eq!(
        rec.episode.as_ref().unwrap().started_at,
        T0,
        "the episode is not restarted"
    );
    let v6 = vulnerable(&p, "2001:db8:1:2::25", T0);
    assert_eq!(v6.prefix.to_string(), "2001:db8:1:2::/64");
    // An allow entry for a single host does not exempt its whole /24.
    let p2 = Policy {
        allow: vec!["198.51.100.7".parse().unwrap()],
        ..p.clone()
    };
    let rec = vulnerable(&p2, "198.51.100.8", T0);
    assert_eq!(p2.stage_at(&rec, T0), Standing::Enforcing { stage: 1 });
}

#[test]
fn record_round_trips_as_json() {
    let p = Policy::default();
    let mut rec = vulnerable(&p, "2001:db8::25", T0);
    p.pause(&mut rec, 2, T0 + D).unwrap();
    let json = serde_json::to_string(&rec).unwrap();
    let back: Record = serde_json::from_str(&json).unwrap();
    assert_eq!(back, rec);
    for _ in 0..(record::MAX_HISTORY + 10) {
        rec.log(T0, "x");
    }
    assert_eq!(rec.history.len(), record::MAX_HISTORY);
    assert!(rec.history[0].event.starts_with("entered enforcement"));
}

#[test]
fn identical_findings_are_counted_once_and_bounded() {
    let p = Policy::default();
    let mut rec = vulnerable(&p, "192.0.2.7", T0);
    for i in 1..=3 {
        rec = p.observe(
            Some(rec),
            ip("192.0.2.7"),
            ev(true, Status::EndOfLife, T0 + i),
            T0 + i,
        );
    }
    assert_eq!(rec.findings.len(), 1);
    let f = &rec.findings[0];
    assert_eq!((f.count, f.first_seen, f.last_seen), (4, T0, T0 + 3));
    // Distinct findings are bounded; the least recently seen goes first.
    for i in 0..(MAX_FINDINGS as i64 + 5) {
        let mut e = ev(true, Status::EndOfLife, T0 + 10 + i);
        e.build = Some(format!("15.0.1497.{}", 100 + i));
        rec = p.observe(Some(rec), ip("192.0.2.7"), e, T0 + 10 + i);
    }
    assert_eq!(rec.findings.len(), MAX_FINDINGS);
    assert!(rec
        .findings
        .iter()
        .all(|f| !f.finding.contains("15.0.1497.2 ")));
    assert!(rec.findings.iter().any(|f| f
        .finding
        .contains(&format!("15.0.1497.{}", 100 + MAX_FINDINGS as i64 + 4))));
}

#[test]
fn weak_evidence_never_replaces_a_build() {
    let p = Policy::default();
    let rec = vulnerable(&p, "192.0.2.7", T0);
    // A Postfix banner (a product, no version) and an empty HELO (nothing) later on.
    let banner = Evidence {
        product: "postfix".into(),
        version: None,
        build: None,
        status: Status::Unknown,
        persistently_vulnerable: false,
        upgrade_to: None,
        ..ev(false, Status::Unknown, T0 + 1)
    };
    let nothing = Evidence {
        product: "unknown".into(),
        ..banner.clone()
    };
    let rec = p.observe(Some(rec), ip("192.0.2.7"), banner, T0 + 1);
    let rec = p.observe(Some(rec), ip("192.0.2.7"), nothing, T0 + 2);
    let held = rec.evidence.as_ref().unwrap();
    assert_eq!(held.build.as_deref(), Some("15.0.1497.2"));
    assert_eq!(held.upgrade_to.as_deref(), Some("Exchange Server SE"));
    assert!(rec.episode.is_some());
    assert_eq!(rec.findings.len(), 3);
    // A supported build (as strong as the held one) still takes the sender out.
    let rec = p.observe(
        Some(rec),
        ip("192.0.2.7"),
        ev(false, Status::Supported, T0 + 3),
        T0 + 3,
    );
    assert!(rec.episode.is_none());
}

#[test]
fn min_confidence_gates_entering_enforcement() {
    let p = Policy::default();
    let mut era_only = ev(true, Status::EndOfLife, T0);
    era_only.build = None;
    era_only.confidence = 0.75;
    let rec = p.observe(None, ip("192.0.2.7"), era_only.clone(), T0);
    assert!(rec.episode.is_none());
    assert!(rec
        .history
        .last()
        .unwrap()
        .event
        .contains("below min_confidence"));
    let lax = Policy {
        min_confidence: 0.5,
        ..Policy::default()
    };
    assert!(lax
        .observe(None, ip("192.0.2.7"), era_only, T0)
        .episode
        .is_some());
}
