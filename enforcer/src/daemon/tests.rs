//! Engine tests over an in-memory kernel and a real redb store in a temporary directory, with a
//! compressed schedule and an injected clock.

use super::*;
use crate::control::{Reply, Request};
use crate::duration::Span;
use crate::evidence::Channel;
use crate::net::Prefix;
use crate::policy::{Action, Policy, Refusal, Schedule, Stage};
use crate::rule::{Rule, RuleSource, Verdict};
use crate::store::Store;

/// Exchange 2013 CU23 Mar23SU: end of life.
pub const EX2013: &str = "Received: from EX01.corp.example.net (10.1.2.3) by mail.corp.example.net (10.1.2.4) with Microsoft SMTP Server (TLS) id 15.0.1497.48; Tue, 4 Jun 2024 10:11:12 +0000\r\n";
/// Exchange Server SE RTM Aug26SU: supported.
pub const EXSE: &str = "Received: from EX01.corp.example.net (10.1.2.3) by mail.corp.example.net (10.1.2.4) with Microsoft SMTP Server (TLS) id 15.2.2562.46; Tue, 4 Nov 2026 10:11:12 +0000\r\n";

const T0: i64 = 1_795_000_000; // 2026-11-18

struct TmpDir(std::path::PathBuf);
impl TmpDir {
    fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!("enforcer-engine-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TmpDir(d)
    }
}
impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sp(s: &str) -> Span {
    s.parse().unwrap()
}

/// report 0-10s, throttle 2s of every 4s (RST) 10-30s, block from 30s.
fn policy() -> Policy {
    Policy {
        schedule: Schedule::new(vec![
            Stage {
                after: sp("0s"),
                action: Action::Report,
                refusal: Refusal::Drop,
            },
            Stage {
                after: sp("10s"),
                action: Action::Windows {
                    period: sp("4s"),
                    throttle: sp("2s"),
                    block_at: sp("2s"),
                    block: sp("0s"),
                },
                refusal: Refusal::Reject,
            },
            Stage {
                after: sp("30s"),
                action: Action::Block,
                refusal: Refusal::Drop,
            },
        ])
        .unwrap(),
        pause_budget: sp("2d"),
        ..Policy::default()
    }
}

fn start(dir: &TmpDir, kernel: MemKernel, now: i64) -> (Engine<MemKernel>, Reconciled) {
    let store = Store::open(&dir.0).unwrap();
    let settings = EngineSettings {
        policy: policy(),
        ..EngineSettings::default()
    };
    Engine::start(settings, store, kernel, EngineMetrics::default(), now).unwrap()
}

fn ok(r: Reply) -> serde_json::Value {
    assert!(r.ok, "{:?}", r.error);
    r.result.unwrap()
}

fn usage(r: Reply) -> String {
    assert!(!r.ok && r.usage, "{r:?}");
    r.error.unwrap()
}

fn evidence(addr: &str, text: &str) -> Request {
    Request::Evidence {
        target: addr.into(),
        text: text.into(),
    }
}

fn host(s: &str) -> Prefix {
    s.parse().unwrap()
}

fn entry(e: &Engine<MemKernel>, p: &str) -> Option<Verdict> {
    e.kernel().entries.get(&host(p)).map(|r| r.verdict.clone())
}

#[test]
fn stages_reach_the_kernel_exactly_when_due() {
    let dir = TmpDir::new("stages");
    let (mut e, _) = start(&dir, MemKernel::default(), T0);
    let d = ok(e.handle(evidence("10.200.0.2", EX2013), T0));
    assert_eq!(d["state"], "enforcing");
    assert_eq!(d["stage"], 1);
    assert_eq!(d["product"], "exchange");
    assert_eq!(d["record"]["evidence"]["persistently_vulnerable"], true);
    assert!(d["connect_now"].as_str().unwrap().contains("report only"));
    assert_eq!(entry(&e, "10.200.0.2"), None, "stage 1 is report only");
    assert_eq!(e.next_wakeup(), Some(T0 + 10));
    e.tick(T0 + 9);
    assert_eq!(entry(&e, "10.200.0.2"), None);
    e.tick(T0 + 10);
    match entry(&e, "10.200.0.2") {
        Some(Verdict::Throttle {
            period,
            window,
            rst: true,
            ..
        }) => {
            assert_eq!((period.secs(), window.secs()), (4, 2));
        }
        other => panic!("expected a throttle entry, got {other:?}"),
    }
    let rule = &e.kernel().entries[&host("10.200.0.2")];
    assert_eq!(rule.source, RuleSource::Engine { stage: 2 });
    assert!(rule.reason.as_deref().unwrap().contains("stage 2"));
    assert_eq!(e.next_wakeup(), Some(T0 + 30));
    let writes = e.kernel().writes;
    e.tick(T0 + 29);
    assert_eq!(e.kernel().writes, writes, "nothing due, nothing written");
    e.tick(T0 + 31);
    assert_eq!(entry(&e, "10.200.0.2"), Some(Verdict::Drop));
    assert_eq!(e.next_wakeup(), None, "the last stage never changes");
    let hist: Vec<_> = e
        .records()
        .next()
        .unwrap()
        .history
        .iter()
        .map(|h| h.event.clone())
        .collect();
    assert!(hist.iter().any(|h| h.contains("stage 1 -> 2")), "{hist:?}");
    assert!(hist.iter().any(|h| h.contains("stage 2 -> 3")), "{hist:?}");
}

#[test]
fn restart_keeps_stage_and_reconciles_the_kernel() {
    let dir = TmpDir::new("restart");
    let (mut e, _) = start(&dir, MemKernel::default(), T0);
    ok(e.handle(evidence("10.200.0.2", EX2013), T0));
    ok(e.handle(evidence("2001:db8::25", EX2013), T0 + 5));
    e.tick(T0 + 12);
    assert!(entry(&e, "10.200.0.2").is_some());
    // "kill -9": the engine vanishes without any shutdown step; the kernel maps (pins) survive.
    let mut kernel = std::mem::take(e.kernel_mut_for_test());
    drop(e);
    // A stale entry no store knows about, and a missing one.
    kernel.entries.insert(
        host("10.9.9.9"),
        kernel.entries[&host("10.200.0.2")].clone(),
    );
    let (e2, rep) = start(&dir, kernel, T0 + 20);
    assert_eq!(rep.removed, 1);
    assert_eq!(rep.senders, 2);
    assert!(entry(&e2, "10.9.9.9").is_none());
    assert!(matches!(
        entry(&e2, "10.200.0.2"),
        Some(Verdict::Throttle { .. })
    ));
    assert!(
        matches!(entry(&e2, "2001:db8::25"), Some(Verdict::Throttle { .. })),
        "caught up while down"
    );
    let v4 = e2
        .records()
        .find(|r| r.prefix == host("10.200.0.2"))
        .unwrap();
    assert_eq!(v4.episode.as_ref().unwrap().reached, 2);
    drop(e2);
    // Simulated reboot: pins gone, the maps come back empty and are rebuilt from the store.
    let (e3, rep) = start(&dir, MemKernel::default(), T0 + 40);
    assert_eq!(rep.written, 2);
    assert_eq!(entry(&e3, "10.200.0.2"), Some(Verdict::Drop));
    assert_eq!(entry(&e3, "2001:db8::25"), Some(Verdict::Drop));
}

#[test]
fn operator_rules_win_and_the_engine_entry_returns() {
    let dir = TmpDir::new("operator");
    let (mut e, _) = start(&dir, MemKernel::default(), T0);
    ok(e.handle(evidence("10.200.0.2", EX2013), T0));
    e.tick(T0 + 31);
    assert_eq!(entry(&e, "10.200.0.2"), Some(Verdict::Drop));
    let allow = Rule {
        prefix: host("10.200.0.2"),
        verdict: Verdict::Pass,
        expires_at: Some(T0 + 100),
        reason: Some("vendor upgrade scheduled".into()),
        created_at: T0 + 31,
        source: RuleSource::Operator,
        list: None,
    };
    ok(e.handle(
        Request::PutRule {
            rule: serde_json::to_value(&allow).unwrap(),
        },
        T0 + 31,
    ));
    assert_eq!(entry(&e, "10.200.0.2"), Some(Verdict::Pass));
    let d = ok(e.handle(
        Request::Sender {
            target: "10.200.0.2".into(),
        },
        T0 + 32,
    ));
    assert!(
        d["connect_now"].as_str().unwrap().contains("operator rule"),
        "{d}"
    );
    assert_eq!(
        e.next_wakeup(),
        Some(T0 + 100),
        "the operator expiry is the next change"
    );
    e.tick(T0 + 100);
    assert_eq!(
        entry(&e, "10.200.0.2"),
        Some(Verdict::Drop),
        "expired operator rule gives way"
    );
    // An operator block elsewhere, then unset: the entry goes away entirely.
    let block = Rule {
        prefix: host("192.0.2.0/24"),
        verdict: Verdict::Drop,
        expires_at: None,
        ..allow.clone()
    };
    ok(e.handle(
        Request::PutRule {
            rule: serde_json::to_value(&block).unwrap(),
        },
        T0 + 101,
    ));
    assert_eq!(entry(&e, "192.0.2.0/24"), Some(Verdict::Drop));
    // `rules` lists operator rules and engine entries, so `list` can annotate every kernel entry.
    let rules: Vec<Rule> =
        serde_json::from_value(ok(e.handle(Request::Rules {}, T0 + 101))).unwrap();
    assert_eq!(rules.len(), 2);
    assert!(rules
        .iter()
        .any(|r| r.source == RuleSource::Operator && r.prefix == host("192.0.2.0/24")));
    assert!(rules
        .iter()
        .any(|r| r.source == RuleSource::Engine { stage: 3 }));
    ok(e.handle(
        Request::RemoveRule {
            prefix: "192.0.2.0/24".into(),
        },
        T0 + 102,
    ));
    assert_eq!(entry(&e, "192.0.2.0/24"), None);
    // A rule that does not validate changes nothing.
    let mut bad = serde_json::to_value(&block).unwrap();
    bad["verdict"] = serde_json::json!({"action":"rate_limit","per_min":0,"burst":1,"rst":false});
    let msg = usage(e.handle(Request::PutRule { rule: bad }, T0 + 103));
    assert!(msg.contains("rate"), "{msg}");
    assert_eq!(entry(&e, "192.0.2.0/24"), None);
}

#[test]
fn pause_resume_forget_and_recovery() {
    let dir = TmpDir::new("pause");
    let (mut e, _) = start(&dir, MemKernel::default(), T0);
    ok(e.handle(evidence("10.200.0.2", EX2013), T0));
    e.tick(T0 + 12);
    assert!(entry(&e, "10.200.0.2").is_some());
    let d = ok(e.handle(
        Request::Pause {
            target: "10.200.0.2".into(),
            days: 1,
        },
        T0 + 12,
    ));
    assert_eq!(d["state"], "paused");
    assert_eq!(entry(&e, "10.200.0.2"), None, "paused: connects pass");
    assert_eq!(e.next_wakeup(), Some(T0 + 12 + 86_400));
    let msg = usage(e.handle(
        Request::Pause {
            target: "10.200.0.2".into(),
            days: 3,
        },
        T0 + 13,
    ));
    assert!(msg.contains("budget"), "{msg}");
    ok(e.handle(
        Request::Resume {
            target: "10.200.0.2".into(),
        },
        T0 + 20,
    ));
    assert!(
        matches!(entry(&e, "10.200.0.2"), Some(Verdict::Throttle { .. })),
        "resumed at stage 2"
    );
    // 8 s paused: stage 3 at T0 + 38.
    assert_eq!(e.next_wakeup(), Some(T0 + 38));
    // A supported build takes it out at once, audited.
    let d = ok(e.handle(evidence("10.200.0.2", EXSE), T0 + 21));
    assert_eq!(d["state"], "clear");
    assert_eq!(entry(&e, "10.200.0.2"), None);
    assert!(d["record"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h["event"].as_str().unwrap().starts_with("left enforcement")));
    assert_eq!(e.next_wakeup(), None);
    ok(e.handle(
        Request::Forget {
            target: "10.200.0.2".into(),
        },
        T0 + 22,
    ));
    assert!(e.records().next().is_none());
    usage(e.handle(
        Request::Sender {
            target: "10.200.0.2".into(),
        },
        T0 + 22,
    ));
    // Forgotten for good: not back after a restart.
    drop(e);
    let (e2, _) = start(&dir, MemKernel::default(), T0 + 23);
    assert!(e2.records().next().is_none());
}

#[test]
fn bad_requests_get_clear_errors_and_change_nothing() {
    let dir = TmpDir::new("bad");
    let (mut e, _) = start(&dir, MemKernel::default(), T0);
    assert!(usage(e.handle(evidence("mail.example.com", EX2013), T0)).contains("not an IP address"));
    assert!(
        usage(e.handle(evidence("10.200.0.2", "hello\nworld\n"), T0)).contains("no SMTP evidence")
    );
    assert!(usage(e.handle(
        Request::Sender {
            target: "10.0.0.0/33".into()
        },
        T0
    ))
    .contains("prefix length"));
    assert!(usage(e.handle(
        Request::Pause {
            target: "10.200.0.9".into(),
            days: 1
        },
        T0
    ))
    .contains("no sender record"));
    assert!(usage(e.handle(
        Request::RemoveRule {
            prefix: "300.1.1.1".into()
        },
        T0
    ))
    .contains("not an IPv4"));
    assert!(usage(e.handle(
        Request::PutRule {
            rule: serde_json::json!({"prefix": 5})
        },
        T0
    ))
    .contains("bad rule"));
    assert!(e.records().next().is_none());
    assert!(e.kernel().entries.is_empty());
    // Not vulnerable: a record but no enforcement; pause refused.
    ok(e.handle(evidence("10.200.0.3", EXSE), T0));
    assert!(usage(e.handle(
        Request::Pause {
            target: "10.200.0.3".into(),
            days: 1
        },
        T0
    ))
    .contains("not in enforcement"));
}

#[test]
fn kernel_failures_are_retried() {
    let dir = TmpDir::new("retry");
    let (mut e, _) = start(&dir, MemKernel::default(), T0);
    ok(e.handle(evidence("10.200.0.2", EX2013), T0));
    e.kernel_mut_for_test().fail = true;
    e.tick(T0 + 10);
    assert_eq!(entry(&e, "10.200.0.2"), None);
    assert_eq!(e.next_wakeup(), Some(T0 + 15), "retry armed");
    e.kernel_mut_for_test().fail = false;
    e.tick(T0 + 15);
    assert!(matches!(
        entry(&e, "10.200.0.2"),
        Some(Verdict::Throttle { .. })
    ));
    assert_eq!(e.next_wakeup(), Some(T0 + 30));
}

#[test]
fn aggregated_senders_share_one_entry_and_metrics_count_them() {
    let dir = TmpDir::new("agg");
    let store = Store::open(&dir.0).unwrap();
    let mut pol = policy();
    pol.aggregation = crate::policy::Aggregation { v4: 24, v6: 64 };
    pol.allow = vec![host("10.200.9.0/24")];
    let metrics = EngineMetrics::default();
    let settings = EngineSettings {
        policy: pol,
        ..EngineSettings::default()
    };
    let (mut e, _) =
        Engine::start(settings, store, MemKernel::default(), metrics.clone(), T0).unwrap();
    ok(e.handle(evidence("10.200.1.7", EX2013), T0));
    ok(e.handle(evidence("10.200.1.9", EX2013), T0 + 1));
    let d = ok(e.handle(evidence("10.200.9.9", EX2013), T0 + 1));
    assert_eq!(d["state"], "allow-listed");
    e.tick(T0 + 10);
    assert_eq!(e.kernel().entries.len(), 1);
    assert!(e.kernel().entries.contains_key(&host("10.200.1.0/24")));
    let d = ok(e.handle(
        Request::Sender {
            target: "10.200.1.200".into(),
        },
        T0 + 10,
    ));
    assert_eq!(d["prefix"], "10.200.1.0/24");
    assert_eq!(d["addresses"].as_array().unwrap().len(), 2);
    let list = ok(e.handle(Request::Senders, T0 + 10));
    assert_eq!(list.as_array().unwrap().len(), 2);
    let mut reg = prometheus_client::registry::Registry::default();
    metrics.register(reg.sub_registry_with_prefix("engine"));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    assert!(
        text.contains("engine_senders{state=\"enforcing\",stage=\"2\",stage_action=\"windows\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("engine_senders{state=\"allow-listed\",stage=\"\",stage_action=\"\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("engine_senders{state=\"enforcing\",stage=\"1\",stage_action=\"report\"} 0"),
        "{text}"
    );
    assert!(text.contains("engine_stage_changes_total 1"), "{text}");
    assert!(
        text.contains("engine_evidence_total{source=\"cli\",outcome=\"entered\"} 1"),
        "{text}"
    );
}

/// The engine holds senders compact and reads the whole record from the store: what `sender`
/// shows is the stored record, the series count each sender once through forget and reload, and a
/// sender whose stored record has gone is an error, not a new empty record.
#[test]
fn compact_senders_read_the_store_and_count_once() {
    let dir = TmpDir::new("compact");
    let metrics = EngineMetrics::default();
    let store = Store::open(&dir.0).unwrap();
    let settings = EngineSettings {
        policy: policy(),
        ..EngineSettings::default()
    };
    let (mut e, _) = Engine::start(
        settings.clone(),
        store,
        MemKernel::default(),
        metrics.clone(),
        T0,
    )
    .unwrap();
    for n in 1..=3 {
        ok(e.handle(evidence(&format!("10.200.0.{n}"), EX2013), T0));
    }
    e.tick(T0 + 10);
    // Many sightings of one sender: its history grows in the store, not in the engine.
    for t in 0..15 {
        ok(e.handle(evidence("10.200.0.1", EX2013), T0 + 11 + t));
    }
    let d = ok(e.handle(
        Request::Sender {
            target: "10.200.0.1".into(),
        },
        T0 + 26,
    ));
    assert!(d["record"]["history"].as_array().unwrap().len() > 15, "{d}");
    let enforcing2 = "engine_senders{state=\"enforcing\",stage=\"2\",stage_action=\"windows\"}";
    let text = metrics_text(&metrics);
    assert!(text.contains(&format!("{enforcing2} 3")), "{text}");
    ok(e.handle(
        Request::Forget {
            target: "10.200.0.3".into(),
        },
        T0 + 26,
    ));
    assert!(metrics_text(&metrics).contains(&format!("{enforcing2} 2")));
    e.reconfigure(settings, T0 + 27).unwrap();
    assert!(
        metrics_text(&metrics).contains(&format!("{enforcing2} 2")),
        "a reload counts each once"
    );
    // The record vanishes from the store behind the engine's back: changing it is refused.
    e.store().remove_sender(&host("10.200.0.2")).unwrap();
    let err = internal(e.handle(
        Request::Pause {
            target: "10.200.0.2".into(),
            days: 1,
        },
        T0 + 52,
    ));
    assert!(err.contains("missing from the store"), "{err}");
    assert!(
        e.store().sender(&host("10.200.0.2")).unwrap().is_none(),
        "nothing was written"
    );
    // Senders with the same evidence share one summary.
    assert_eq!(e.summaries_held(), 1);
}

#[test]
fn an_operator_rule_on_a_covering_prefix_wins() {
    let dir = TmpDir::new("covering");
    let (mut e, _) = start(&dir, MemKernel::default(), T0);
    ok(e.handle(evidence("10.200.0.2", EX2013), T0));
    e.tick(T0 + 10);
    assert!(matches!(
        entry(&e, "10.200.0.2"),
        Some(Verdict::Throttle { .. })
    ));
    // The operator blocks the whole /24: the engine's host entry (which the kernel would prefer as
    // the longest match) steps aside so the block applies to this sender too.
    let block = Rule {
        prefix: host("10.200.0.0/24"),
        verdict: Verdict::Drop,
        expires_at: Some(T0 + 20),
        reason: None,
        created_at: T0 + 11,
        source: RuleSource::Operator,
        list: None,
    };
    ok(e.handle(
        Request::PutRule {
            rule: serde_json::to_value(&block).unwrap(),
        },
        T0 + 11,
    ));
    assert_eq!(entry(&e, "10.200.0.2"), None);
    assert_eq!(entry(&e, "10.200.0.0/24"), Some(Verdict::Drop));
    let d = ok(e.handle(
        Request::Sender {
            target: "10.200.0.2".into(),
        },
        T0 + 12,
    ));
    assert!(
        d["connect_now"].as_str().unwrap().contains("10.200.0.0/24"),
        "{d}"
    );
    assert_eq!(d["operator_rule"], "drop (on 10.200.0.0/24)");
    // It expires: the engine entry comes back at once.
    e.tick(T0 + 20);
    assert_eq!(entry(&e, "10.200.0.0/24"), None);
    assert!(matches!(
        entry(&e, "10.200.0.2"),
        Some(Verdict::Throttle { .. })
    ));
    // Removed by the operator: same.
    ok(e.handle(
        Request::PutRule {
            rule: serde_json::to_value(Rule {
                expires_at: None,
                ..block
            })
            .unwrap(),
        },
        T0 + 21,
    ));
    assert_eq!(entry(&e, "10.200.0.2"), None);
    ok(e.handle(
        Request::RemoveRule {
            prefix: "10.200.0.0/24".into(),
        },
        T0 + 22,
    ));
    assert!(matches!(
        entry(&e, "10.200.0.2"),
        Some(Verdict::Throttle { .. })
    ));
}

#[test]
fn a_wall_clock_step_rewrites_every_entry_once() {
    let dir = TmpDir::new("clock");
    let (mut e, _) = start(&dir, MemKernel::default(), T0);
    ok(e.handle(evidence("10.200.0.2", EX2013), T0));
    ok(e.handle(evidence("10.200.0.3", EX2013), T0));
    e.tick(T0 + 10);
    let ns = |s: i64| s as i128 * 1_000_000_000;
    e.check_clock(ns(T0 + 10), 5_000_000_000);
    let w = e.kernel().writes;
    // Both clocks advance together: nothing to do.
    e.check_clock(ns(T0 + 70), 65_000_000_000);
    assert_eq!(e.kernel().writes, w);
    // The wall clock jumps an hour ahead of the boot clock: both entries are rewritten, once.
    e.check_clock(ns(T0 + 3_700), 70_000_000_000);
    assert_eq!(e.kernel().writes, w + 2);
    e.check_clock(ns(T0 + 3_760), 130_000_000_000);
    assert_eq!(e.kernel().writes, w + 2);
}

fn import(list: Option<&str>, entries: &str, verdict: Verdict, expires_at: Option<i64>) -> Request {
    Request::Import {
        verdict: serde_json::to_value(verdict).unwrap(),
        expires_at,
        reason: Some("feed".into()),
        list: list.map(str::to_string),
        entries: entries.into(),
        packed: None,
    }
}

#[test]
fn an_imported_list_is_replaced_in_one_step_and_survives_restart() {
    let dir = TmpDir::new("import");
    let (mut e, _) = start(&dir, MemKernel::default(), T0);
    // A hand-made rule outside the list is never touched by it.
    ok(e.handle(import(None, "203.0.113.9\n", Verdict::Reject, None), T0));
    let r = ok(e.handle(
        import(
            Some("spamhaus-drop"),
            "192.0.2.0/24\n198.51.100.7\n2001:db8::/32\n",
            Verdict::Drop,
            None,
        ),
        T0,
    ));
    assert_eq!(
        (r["imported"].as_u64(), r["removed"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(entry(&e, "192.0.2.0/24"), Some(Verdict::Drop));
    assert_eq!(entry(&e, "2001:db8::/32"), Some(Verdict::Drop));
    let writes = e.kernel().writes;
    // Refresh: one entry leaves, one arrives, one stays.
    let r = ok(e.handle(
        import(
            Some("spamhaus-drop"),
            "192.0.2.0/24\n2001:db8::/32\n10.9.0.0/16\n",
            Verdict::Drop,
            None,
        ),
        T0 + 1,
    ));
    assert_eq!(
        (r["imported"].as_u64(), r["removed"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(
        entry(&e, "198.51.100.7"),
        None,
        "gone from the file, gone from the kernel"
    );
    assert_eq!(entry(&e, "10.9.0.0/16"), Some(Verdict::Drop));
    assert_eq!(entry(&e, "203.0.113.9"), Some(Verdict::Reject));
    // Entries already in the kernel as wanted are not rewritten: 1 new + 1 removed.
    assert_eq!(e.kernel().writes - writes, 2);
    // Restart: the store has exactly the new list.
    drop(e);
    let (e, rep) = start(&dir, MemKernel::default(), T0 + 2);
    assert_eq!(rep.operator_rules, 4);
    let mut listed: Vec<String> = e
        .kernel()
        .entries
        .values()
        .filter(|r| r.list.as_deref() == Some("spamhaus-drop"))
        .map(|r| r.prefix.to_string())
        .collect();
    listed.sort();
    assert_eq!(listed, ["10.9.0.0/16", "192.0.2.0/24", "2001:db8::/32"]);
}

/// A large import writes its new kernel entries while the store commits; when the commit fails
/// they are taken out again, so the kernel, the rules and the reply are as if nothing was tried.
#[test]
fn a_failed_store_commit_of_a_large_import_leaves_the_kernel_as_it_was() {
    let dir = TmpDir::new("importfail");
    let (mut e, _) = start(&dir, MemKernel::default(), T0);
    let hosts = |from: u32, n: u32| -> Vec<Prefix> {
        (from..from + n)
            .map(|k| Prefix::host(std::net::Ipv4Addr::from(0x0a00_0000 + k).into()))
            .collect()
    };
    let packed = |ps: &[Prefix], verdict: Verdict| Request::Import {
        verdict: serde_json::to_value(verdict).unwrap(),
        expires_at: None,
        reason: None,
        list: Some("feed".into()),
        entries: String::new(),
        packed: Some(crate::feed::pack(ps)),
    };
    // Nothing there yet: the failed first import leaves nothing behind.
    e.store().fail_writes(true);
    let r = e.handle(packed(&hosts(0, 6000), Verdict::Drop), T0);
    assert!(!r.ok && !r.usage, "{r:?}");
    assert!(e.kernel().entries.is_empty());
    assert_eq!(e.operator_prefixes().count(), 0);
    // The list stored, then a refresh (half new, half kept, as a reject) that fails to commit.
    e.store().fail_writes(false);
    let r = ok(e.handle(packed(&hosts(0, 6000), Verdict::Drop), T0));
    assert_eq!(r["imported"].as_u64(), Some(6000));
    let before = e.kernel().entries.clone();
    assert_eq!(before.len(), 6000);
    e.store().fail_writes(true);
    let r = e.handle(packed(&hosts(3000, 6000), Verdict::Reject), T0 + 1);
    assert!(!r.ok && !r.usage, "{r:?}");
    assert_eq!(e.kernel().entries, before);
    assert_eq!(e.operator_prefixes().count(), 6000);
    // Once the store works again, the same refresh goes through as one step.
    e.store().fail_writes(false);
    let r = ok(e.handle(packed(&hosts(3000, 6000), Verdict::Reject), T0 + 2));
    assert_eq!(r["removed"].as_u64(), Some(3000));
    let kernel = &e.kernel().entries;
    assert_eq!(kernel.len(), 6000);
    assert!(kernel.values().all(|r| r.verdict == Verdict::Reject));
    assert_eq!(
        kernel.keys().copied().collect::<Vec<_>>(),
        hosts(3000, 6000)
    );
    let rules = e.store().rules().unwrap();
    assert_eq!(rules.len(), 6000);
    assert!(rules.iter().all(|r| r.verdict == Verdict::Reject));
    // What the engine believes it wrote matches the kernel: nothing to retry.
    let writes = e.kernel().writes;
    e.tick(T0 + 60);
    assert_eq!(e.kernel().writes, writes);
}

#[test]
fn bulk_removal_brings_engine_entries_back_and_bad_imports_change_nothing() {
    let dir = TmpDir::new("bulkrm");
    let (mut e, _) = start(&dir, MemKernel::default(), T0);
    ok(e.handle(evidence("10.200.0.2", EX2013), T0));
    e.tick(T0 + 31);
    assert_eq!(entry(&e, "10.200.0.2"), Some(Verdict::Drop));
    // An allow list covering the sender hides its engine entry ...
    ok(e.handle(
        import(
            Some("partners"),
            "10.200.0.0/24\n10.201.0.1\n",
            Verdict::Pass,
            None,
        ),
        T0 + 32,
    ));
    assert_eq!(entry(&e, "10.200.0.2"), None);
    assert_eq!(entry(&e, "10.200.0.0/24"), Some(Verdict::Pass));
    // ... and removing the list brings it back.
    let r = ok(e.handle(
        Request::RemoveRules {
            entries: None,
            packed: None,
            list: Some("partners".into()),
        },
        T0 + 33,
    ));
    assert_eq!(r["removed"].as_u64(), Some(2));
    assert_eq!(entry(&e, "10.200.0.0/24"), None);
    assert_eq!(entry(&e, "10.201.0.1"), None);
    assert_eq!(entry(&e, "10.200.0.2"), Some(Verdict::Drop));
    // unset --from: removed and missing are counted.
    ok(e.handle(
        import(None, "192.0.2.1\n192.0.2.2\n", Verdict::Drop, None),
        T0 + 34,
    ));
    let r = ok(e.handle(
        Request::RemoveRules {
            entries: Some("192.0.2.1\n192.0.2.3\n".into()),
            packed: None,
            list: None,
        },
        T0 + 35,
    ));
    assert_eq!(
        (r["removed"].as_u64(), r["missing"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(entry(&e, "192.0.2.2"), Some(Verdict::Drop));
    // Bad input: line-numbered usage errors and nothing changes.
    let before = e.kernel().entries.clone();
    let msg = usage(e.handle(
        import(Some("x"), "192.0.2.9\n10.1.2.3/16\n", Verdict::Drop, None),
        T0 + 36,
    ));
    assert!(
        msg.contains("line 2") && msg.contains("nothing was applied"),
        "{msg}"
    );
    usage(e.handle(
        import(Some("a b"), "192.0.2.9\n", Verdict::Drop, None),
        T0 + 36,
    ));
    usage(e.handle(
        import(None, "192.0.2.9\n", Verdict::Drop, Some(T0)),
        T0 + 36,
    ));
    usage(e.handle(
        Request::RemoveRules {
            entries: None,
            packed: None,
            list: None,
        },
        T0 + 36,
    ));
    assert_eq!(e.kernel().entries, before);
}

#[test]
fn imported_entries_expire_together() {
    let dir = TmpDir::new("importttl");
    let (mut e, _) = start(&dir, MemKernel::default(), T0);
    ok(e.handle(
        import(
            Some("t"),
            "192.0.2.1\n192.0.2.2\n",
            Verdict::Drop,
            Some(T0 + 60),
        ),
        T0,
    ));
    assert_eq!(e.next_wakeup(), Some(T0 + 60));
    e.tick(T0 + 60);
    assert!(e.kernel().entries.is_empty());
}

fn op_rule(p: &str, verdict: Verdict) -> Request {
    let rule = Rule {
        prefix: host(p),
        verdict,
        expires_at: None,
        reason: Some("test".into()),
        created_at: T0,
        source: RuleSource::Operator,
        list: None,
    };
    Request::PutRule {
        rule: serde_json::to_value(&rule).unwrap(),
    }
}

fn internal(r: Reply) -> String {
    assert!(!r.ok && !r.usage, "{r:?}");
    r.error.unwrap()
}

fn metrics_text(m: &EngineMetrics) -> String {
    let mut reg = prometheus_client::registry::Registry::default();
    m.register(reg.sub_registry_with_prefix("engine"));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    text
}

/// A rule that does not fit is refused with the map-full error and is not stored; a replaced rule
/// that still fits keeps working; the refusal is counted.
#[test]
fn a_full_map_refuses_the_rule_and_stores_nothing() {
    let dir = TmpDir::new("full");
    let metrics = EngineMetrics::default();
    let kernel = MemKernel {
        capacity: Some(2),
        ..MemKernel::default()
    };
    let settings = EngineSettings {
        policy: policy(),
        ..EngineSettings::default()
    };
    let store = Store::open(&dir.0).unwrap();
    let (mut e, _) = Engine::start(settings, store, kernel, metrics.clone(), T0).unwrap();
    ok(e.handle(op_rule("192.0.2.1", Verdict::Drop), T0));
    ok(e.handle(op_rule("192.0.2.2", Verdict::Drop), T0));
    let msg = internal(e.handle(op_rule("192.0.2.3", Verdict::Drop), T0));
    assert!(
        msg.contains("is full") && msg.contains("192.0.2.3"),
        "{msg}"
    );
    // Replacing an entry that exists needs no room.
    ok(e.handle(op_rule("192.0.2.2", Verdict::Reject), T0));
    let rules = ok(e.handle(Request::Rules {}, T0));
    assert_eq!(rules.as_array().unwrap().len(), 2, "{rules}");
    assert_eq!(e.next_wakeup(), None, "nothing left to retry");
    let text = metrics_text(&metrics);
    assert!(text.contains("engine_kernel_map_full_total 1"), "{text}");
    // Not in the store either: a restart brings back exactly the two that fit.
    drop(e);
    let (e, rep) = start(&dir, MemKernel::default(), T0 + 1);
    assert_eq!(rep.operator_rules, 2);
    assert_eq!(entry(&e, "192.0.2.2"), Some(Verdict::Reject));
    assert_eq!(entry(&e, "192.0.2.3"), None);
}

#[test]
fn write_error_lines_are_rate_limited() {
    let mut l = crate::daemon::LogLimit::default();
    assert_eq!(l.allow(100, 60), Some(0));
    for t in 101..160 {
        assert_eq!(l.allow(t, 60), None);
    }
    assert_eq!(
        l.allow(160, 60),
        Some(59),
        "the next line says how many were held back"
    );
    assert_eq!(l.allow(161, 60), None);
}

/// Entries changed, removed or added behind the engine's back are put right by the self-check,
/// which counts them; a clean kernel needs no repair.
#[test]
fn self_check_repairs_drift_and_counts_it() {
    let dir = TmpDir::new("selfcheck");
    let metrics = EngineMetrics::default();
    let settings = EngineSettings {
        policy: policy(),
        ..EngineSettings::default()
    };
    let store = Store::open(&dir.0).unwrap();
    let (mut e, _) =
        Engine::start(settings, store, MemKernel::default(), metrics.clone(), T0).unwrap();
    for i in 1..=5 {
        ok(e.handle(op_rule(&format!("192.0.2.{i}"), Verdict::Drop), T0));
    }
    assert_eq!(e.self_check(T0, 2), 0);
    assert_eq!(e.self_check(T0, 2), 0);
    assert_eq!(e.self_check(T0, 2), 0, "a clean kernel needs nothing");
    {
        let k = e.kernel_mut_for_test();
        k.entries.remove(&host("192.0.2.1"));
        k.entries.get_mut(&host("192.0.2.4")).unwrap().verdict = Verdict::Pass;
        let mut stray = k.entries[&host("192.0.2.5")].clone();
        stray.prefix = host("198.51.100.9");
        k.entries.insert(stray.prefix, stray);
    }
    // Sampled: two per call, strays once per round (after the third call).
    let repaired: usize = (0..3).map(|_| e.self_check(T0, 2)).sum();
    assert_eq!(repaired, 3);
    assert_eq!(entry(&e, "192.0.2.1"), Some(Verdict::Drop));
    assert_eq!(entry(&e, "192.0.2.4"), Some(Verdict::Drop));
    assert_eq!(entry(&e, "198.51.100.9"), None);
    let text = metrics_text(&metrics);
    assert!(text.contains("engine_self_check_repairs_total 3"), "{text}");
    assert!(text.contains("engine_self_checks_total 6"), "{text}");
}

/// While the daemon's housekeeping reports the datapath gone, changes are refused with the reason
/// and nothing is stored; reads still work; once it is back, changes go through.
#[test]
fn changes_are_refused_while_the_datapath_is_gone() {
    let dir = TmpDir::new("gone");
    let health = crate::daemon::DatapathHealth::default();
    let settings = EngineSettings {
        policy: policy(),
        datapath: health.clone(),
        ..EngineSettings::default()
    };
    let store = Store::open(&dir.0).unwrap();
    let (mut e, _) = Engine::start(
        settings,
        store,
        MemKernel::default(),
        EngineMetrics::default(),
        T0,
    )
    .unwrap();
    assert!(health.set(Some("the datapath under /sys/fs/bpf/x is gone".into())));
    let msg = internal(e.handle(op_rule("192.0.2.1", Verdict::Drop), T0));
    assert!(msg.contains("is gone") && msg.contains("not made"), "{msg}");
    let msg = internal(e.handle(evidence("10.200.0.2", EX2013), T0));
    assert!(msg.contains("is gone"), "{msg}");
    ok(e.handle(Request::Senders, T0));
    assert!(e.kernel().entries.is_empty());
    assert!(health.set(None));
    ok(e.handle(op_rule("192.0.2.1", Verdict::Drop), T0));
    assert_eq!(entry(&e, "192.0.2.1"), Some(Verdict::Drop));
}

/// `list` pages: sorted by prefix, operator rule winning over the engine entry of the same prefix,
/// filters by prefix and source, and every row exactly once across pages.
#[test]
fn list_pages_cover_every_entry_once() {
    let dir = TmpDir::new("listpages");
    let (mut e, _) = start(&dir, MemKernel::default(), T0);
    let put = |e: &mut Engine<MemKernel>, p: &str, v: Verdict| {
        let rule = Rule {
            prefix: p.parse().unwrap(),
            verdict: v,
            expires_at: None,
            reason: Some(format!("r {p}")),
            created_at: T0,
            source: RuleSource::Operator,
            list: None,
        };
        ok(e.handle(
            Request::PutRule {
                rule: serde_json::to_value(&rule).unwrap(),
            },
            T0,
        ));
    };
    for i in 0..50u32 {
        put(
            &mut e,
            &format!("10.1.{}.{}", i / 10, i % 10),
            Verdict::Drop,
        );
    }
    put(&mut e, "10.1.0.0/16", Verdict::Reject);
    put(&mut e, "2001:db8::1", Verdict::Pass);
    // An engine entry (sender at stage 3: block).
    ok(e.handle(
        Request::Evidence {
            target: "192.0.2.9".into(),
            text: EX2013.into(),
        },
        T0 - 100,
    ));
    e.tick(T0);
    let page =
        |e: &mut Engine<MemKernel>, after: Option<Prefix>, f: &crate::listing::Filter, limit| {
            list_page(e.handle(
                Request::List {
                    after,
                    prefix: f.prefix,
                    source: f.source,
                    limit: Some(limit),
                    list: None,
                },
                T0,
            ))
        };
    let all = |e: &mut Engine<MemKernel>, f: crate::listing::Filter, limit| {
        let mut rows = Vec::new();
        let mut after = None;
        for _ in 0..1000 {
            let (head, page) = page(e, after, &f, limit);
            rows.extend(page);
            match head.next {
                Some(n) => after = Some(n),
                None => return rows,
            }
        }
        panic!("listing did not end");
    };
    let rows = all(&mut e, Default::default(), 7);
    assert_eq!(
        rows.len(),
        53,
        "50 hosts, a /16, a v6 host, an engine entry"
    );
    assert!(
        rows.windows(2).all(|w| w[0].prefix < w[1].prefix),
        "sorted, no repeats"
    );
    assert!(rows.iter().all(|r| r.in_kernel));
    let engine: Vec<_> = rows.iter().filter(|r| r.source == "engine").collect();
    assert_eq!(engine.len(), 1);
    assert_eq!(
        (engine[0].stage, engine[0].action.as_str()),
        (Some(3), "drop")
    );
    let slash16 = rows.iter().find(|r| r.prefix.len() == 16).unwrap();
    assert_eq!(
        (slash16.action.as_str(), slash16.reason.as_deref()),
        ("reject", Some("r 10.1.0.0/16"))
    );
    use crate::listing::{Filter, Source};
    let inside = all(
        &mut e,
        Filter {
            prefix: Some("10.1.2.0/24".parse().unwrap()),
            source: None,
            list: None,
        },
        3,
    );
    assert_eq!(inside.len(), 10, "10.1.2.0-9");
    let ops = all(
        &mut e,
        Filter {
            prefix: None,
            source: Some(Source::Engine),
            list: None,
        },
        PAGE_MAX,
    );
    assert_eq!(ops.len(), 1);
    // A limit above the page size is capped.
    assert!(page(&mut e, None, &Filter::default(), 1_000_000).1.len() <= PAGE_MAX as usize);
}

const PAGE_MAX: u32 = crate::listing::PAGE;

/// A `list` reply read back as the CLI reads it: the head, then as many row lines as it says.
fn list_page(r: Reply) -> (crate::listing::PageHead, Vec<crate::listing::Row>) {
    let lines = r.lines.clone().unwrap_or_default();
    let head: crate::listing::PageHead = serde_json::from_value(ok(r)).unwrap();
    let rows: Vec<_> = lines
        .lines()
        .map(|l| crate::listing::decode_row(l.as_bytes()).unwrap())
        .collect();
    assert_eq!(rows.len() as u64, head.rows);
    (head, rows)
}

/// A page that stops on its scan budget resumes at the first key it did not look at: the row
/// right after the budget is not lost (it used to be: `next` named a key taken but not examined).
#[test]
fn a_page_stopped_by_the_scan_budget_loses_no_row() {
    let dir = TmpDir::new("listbudget");
    let (mut e, _) = start(&dir, MemKernel::default(), T0 - 100);
    // Exactly one scan budget of operator rules sorts before the only engine entry.
    let budget = 16 * PAGE_MAX;
    let hosts: String = (0..budget)
        .map(|n| format!("10.0.{}.{}\n", n >> 8, n & 0xff))
        .collect();
    ok(e.handle(import(None, &hosts, Verdict::Drop, None), T0 - 100));
    ok(e.handle(evidence("10.1.0.1", EX2013), T0 - 100));
    e.tick(T0);
    let filter = crate::listing::Filter {
        prefix: None,
        source: Some(crate::listing::Source::Engine),
        list: None,
    };
    let mut rows = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages < 10, "listing did not end");
        let (head, page) = list_page(e.handle(
            Request::List {
                after,
                prefix: filter.prefix,
                source: filter.source,
                limit: Some(PAGE_MAX),
                list: None,
            },
            T0,
        ));
        rows.extend(page);
        match head.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(pages, 2, "the first page stops on the budget");
    let got: Vec<String> = rows.iter().map(|r| r.prefix.to_string()).collect();
    assert_eq!(got, ["10.1.0.1/32"]);
}

/// A start that fails after reconciling (attaching failed) puts back every kernel entry the
/// reconciliation added, replaced or removed; a start that completes keeps them.
#[test]
fn a_failed_start_rolls_back_what_reconciliation_changed() {
    let dir = TmpDir::new("rollback");
    let (mut e, _) = start(&dir, MemKernel::default(), T0);
    e.keep_start();
    ok(e.handle(op_rule("198.51.100.1", Verdict::Drop), T0));
    ok(e.handle(op_rule("198.51.100.2", Verdict::Reject), T0));
    ok(e.handle(op_rule("198.51.100.3", Verdict::Drop), T0));
    let mut kernel = std::mem::take(e.kernel_mut_for_test());
    drop(e);
    // The maps as another run left them: an entry the store does not know, one that differs,
    // one missing, one as wanted.
    let stray = Rule {
        prefix: host("203.0.113.9"),
        verdict: Verdict::Drop,
        expires_at: None,
        reason: None,
        created_at: T0,
        source: RuleSource::Operator,
        list: None,
    };
    kernel.entries.insert(stray.prefix, stray);
    kernel
        .entries
        .get_mut(&host("198.51.100.2"))
        .unwrap()
        .verdict = Verdict::Drop;
    kernel.entries.remove(&host("198.51.100.1"));
    let before = kernel.entries.clone();
    let (mut e, rep) = start(&dir, kernel, T0 + 1);
    assert_eq!((rep.removed, rep.written, rep.kept), (1, 2, 1));
    assert_eq!(entry(&e, "198.51.100.2"), Some(Verdict::Reject));
    assert!(entry(&e, "203.0.113.9").is_none());
    assert_eq!(e.roll_back_start(), (3, 0));
    assert_eq!(e.kernel().entries, before, "exactly as it was");
    assert_eq!(e.roll_back_start(), (0, 0), "once");
    // A completed start: nothing to roll back, and the next start finds every entry as wanted.
    let kernel = std::mem::take(e.kernel_mut_for_test());
    drop(e);
    let (mut e, _) = start(&dir, kernel, T0 + 2);
    e.keep_start();
    assert_eq!(e.roll_back_start(), (0, 0));
    let kernel = std::mem::take(e.kernel_mut_for_test());
    let after_start = kernel.entries.clone();
    drop(e);
    let (e, rep) = start(&dir, kernel, T0 + 3);
    assert_eq!((rep.removed, rep.written, rep.kept), (0, 0, 3));
    assert_eq!(e.kernel().entries, after_start);
}

fn sighting(addr: &str, headers: &str) -> crate::evidence::milter::session::Sighting {
    crate::evidence::milter::session::Sighting {
        addr: addr.parse().unwrap(),
        helo: Some("ex01.corp.example.net".into()),
        headers: headers.into(),
    }
}

#[test]
fn mta_sightings_feed_the_engine_and_the_board_follows_the_stage() {
    let dir = TmpDir::new("sightings");
    let store = Store::open(&dir.0).unwrap();
    let board = crate::evidence::reply::Board::default();
    let settings = EngineSettings {
        policy: policy(),
        board: board.clone(),
        ..EngineSettings::default()
    };
    let (mut e, _) = Engine::start(
        settings,
        store,
        MemKernel::default(),
        EngineMetrics::default(),
        T0,
    )
    .unwrap();
    let addr: std::net::IpAddr = "10.200.0.2".parse().unwrap();
    e.sighting(&sighting("10.200.0.2", EX2013), Channel::Milter, T0);
    let rec = e.records().next().unwrap().clone();
    assert_eq!(
        rec.evidence.as_ref().unwrap().build.as_deref(),
        Some("15.0.1497.48")
    );
    assert!(rec.episode.is_some());
    assert_eq!(
        board.lookup(addr),
        None,
        "stage 1 reports only: nothing to answer"
    );
    e.tick(T0 + 10);
    let n = board.lookup(addr).expect("stage 2 throttles");
    assert_eq!(n.stage, 2);
    assert_eq!(n.build.as_deref(), Some("15.0.1497.48"));
    let k = &e.kernel().entries[&host("10.200.0.2")];
    assert_eq!(
        (
            n.rule.prefix,
            &n.rule.verdict,
            n.rule.expires_at,
            &n.rule.source
        ),
        (k.prefix, &k.verdict, k.expires_at, &k.source)
    );
    // The same message again: one finding, counted twice.
    e.sighting(&sighting("10.200.0.2", EX2013), Channel::Milter, T0 + 11);
    let rec = e.records().next().unwrap().clone();
    assert_eq!(rec.findings.len(), 1);
    assert_eq!(rec.findings[0].count, 2);
    // Nothing readable: counted, nothing changes.
    e.sighting(
        &crate::evidence::milter::session::Sighting {
            addr,
            helo: None,
            headers: "Subject: hi\r\n".into(),
        },
        Channel::Milter,
        T0 + 12,
    );
    assert!(board.lookup(addr).is_some());
    // A supported build takes the sender out; the board follows.
    e.sighting(&sighting("10.200.0.2", EXSE), Channel::Milter, T0 + 13);
    assert_eq!(board.lookup(addr), None);
    assert_eq!(entry(&e, "10.200.0.2"), None);
    // An operator rule on the prefix decides instead: no SMTP notice for it.
    e.sighting(&sighting("10.200.0.2", EX2013), Channel::Milter, T0 + 14);
    e.tick(T0 + 30);
    assert!(board.lookup(addr).is_some());
    let rule = Rule {
        prefix: host("10.200.0.2"),
        verdict: Verdict::Pass,
        expires_at: None,
        reason: Some("known good".into()),
        created_at: T0,
        source: RuleSource::Operator,
        list: None,
    };
    let rule = serde_json::to_value(&rule).unwrap();
    ok(e.handle(Request::PutRule { rule }, T0 + 31));
    assert_eq!(board.lookup(addr), None);
}

#[test]
fn a_batch_of_sightings_counts_every_finding_in_one_turn() {
    let dir = TmpDir::new("batch");
    let store = Store::open(&dir.0).unwrap();
    let settings = EngineSettings {
        policy: policy(),
        ..EngineSettings::default()
    };
    let metrics = EngineMetrics::default();
    let (mut e, _) =
        Engine::start(settings, store, MemKernel::default(), metrics.clone(), T0).unwrap();
    // 50 messages from one sender, 3 from another, one unreadable, interleaved as the MTA's
    // sessions left them; handed over as the listeners do, one request.
    let mut batch = Vec::new();
    for i in 0..50 {
        batch.push((sighting("10.200.0.2", EX2013), Channel::Milter));
        if i % 20 == 0 {
            batch.push((sighting("10.200.0.3", EX2013), Channel::Milter));
        }
    }
    batch.push((
        crate::evidence::milter::session::Sighting {
            addr: "10.200.0.4".parse().unwrap(),
            helo: None,
            headers: String::new(),
        },
        Channel::Milter,
    ));
    let sightings = batch
        .into_iter()
        .map(|(s, source)| crate::control::protocol::MtaSighting {
            addr: s.addr,
            helo: s.helo,
            headers: s.headers,
            source,
        })
        .collect();
    let r = ok(e.handle(Request::MtaEvidenceBatch { sightings }, T0));
    assert_eq!(r["sightings"], 54);
    assert_eq!(r["unreadable"], 1, "{r}");
    assert_eq!(r["senders"].as_array().unwrap().len(), 2);
    let count = |ip: &str| {
        let rec = e.records().find(|r| r.prefix == host(ip)).unwrap();
        assert_eq!(rec.findings.len(), 1, "identical findings are stored once");
        assert!(rec.episode.is_some());
        rec.findings[0].count
    };
    assert_eq!((count("10.200.0.2"), count("10.200.0.3")), (50, 3));
    let evidence = |outcome: &str| {
        metrics
            .evidence
            .get_or_create(&EngineMetrics::evidence_label("milter", outcome))
            .get()
    };
    // Every sighting's outcome is counted: two senders entered, the rest changed nothing.
    assert_eq!(evidence("entered"), 2);
    assert_eq!(evidence("unchanged"), 51);
    assert_eq!(evidence("unreadable"), 1);
    // Stored durably: a restart sees the counts.
    drop(e);
    let store = Store::open(&dir.0).unwrap();
    let stored = store.senders().unwrap();
    let rec = stored
        .iter()
        .find(|r| r.prefix == host("10.200.0.2"))
        .unwrap();
    assert_eq!(rec.findings[0].count, 50);
}

#[test]
fn the_board_follows_a_reload_that_changes_the_aggregation() {
    let dir = TmpDir::new("board-agg");
    let store = Store::open(&dir.0).unwrap();
    let board = crate::evidence::reply::Board::default();
    let settings = EngineSettings {
        policy: policy(),
        board: board.clone(),
        ..EngineSettings::default()
    };
    let (mut e, _) = Engine::start(
        settings.clone(),
        store,
        MemKernel::default(),
        EngineMetrics::default(),
        T0,
    )
    .unwrap();
    e.sighting(&sighting("10.200.0.2", EX2013), Channel::Milter, T0);
    e.tick(T0 + 10);
    assert_eq!(
        board
            .lookup("10.200.0.2".parse().unwrap())
            .unwrap()
            .rule
            .prefix,
        host("10.200.0.2")
    );
    // SIGHUP: records of new senders are /24s now (the daemon keeps its board across a reload).
    let mut reloaded = settings;
    reloaded.policy.aggregation.v4 = 24;
    e.reconfigure(reloaded, T0 + 11).unwrap();
    e.sighting(&sighting("10.200.1.7", EX2013), Channel::Milter, T0 + 11);
    e.tick(T0 + 21);
    let n = board
        .lookup("10.200.1.9".parse().unwrap())
        .expect("the new /24 record answers for its neighbours");
    assert_eq!(n.rule.prefix, "10.200.1.0/24".parse().unwrap());
    // The old host record still answers for its host.
    assert_eq!(
        board
            .lookup("10.200.0.2".parse().unwrap())
            .unwrap()
            .rule
            .prefix,
        host("10.200.0.2")
    );
}

#[test]
fn notice_stages_write_notice_entries_and_the_board_answers() {
    use crate::evidence::reply::{answer, Answer, Texts};
    let dir = TmpDir::new("notice");
    let store = Store::open(&dir.0).unwrap();
    let board = crate::evidence::reply::Board::default();
    let rate = crate::rule::NoticeRate {
        count: 2,
        period: sp("10m"),
    };
    let mut pol = policy();
    pol.schedule = Schedule::new(vec![
        Stage {
            after: sp("0s"),
            action: Action::Report,
            refusal: Refusal::Drop,
        },
        Stage {
            after: sp("10s"),
            action: Action::Windows {
                period: sp("4s"),
                throttle: sp("2s"),
                block_at: sp("2s"),
                block: sp("0s"),
            },
            refusal: Refusal::Notice(rate),
        },
        Stage {
            after: sp("30s"),
            action: Action::Block,
            refusal: Refusal::Notice(rate),
        },
    ])
    .unwrap();
    let settings = EngineSettings {
        policy: pol,
        board: board.clone(),
        ..EngineSettings::default()
    };
    let (mut e, _) = Engine::start(
        settings,
        store,
        MemKernel::default(),
        EngineMetrics::default(),
        T0,
    )
    .unwrap();
    let addr: std::net::IpAddr = "10.200.0.2".parse().unwrap();
    e.sighting(&sighting("10.200.0.2", EX2013), Channel::Milter, T0);
    e.tick(T0 + 10);
    let clock = crate::datapath::Clock::now();
    let rule = e.kernel().entries[&host("10.200.0.2")].clone();
    assert!(
        matches!(rule.verdict, Verdict::Throttle { notice: Some(n), rst: false, .. } if n == rate),
        "{rule:?}"
    );
    let k = rule.to_kernel(&clock);
    assert!(k.is_notice());
    assert_eq!((k.notice_count, k.notice_period_secs), (2, 600));
    let n = board.lookup(addr).unwrap().rule;
    assert_eq!(
        (n.prefix, &n.verdict, n.expires_at, &n.source),
        (rule.prefix, &rule.verdict, rule.expires_at, &rule.source),
        "the board answers from the same entry"
    );
    // The full block stage still lets the budget through, and the sender reads 550.
    e.tick(T0 + 30);
    let rule = e.kernel().entries[&host("10.200.0.2")].clone();
    let k = rule.to_kernel(&clock);
    assert!(k.is_notice());
    assert_eq!(
        k.window_at(clock.boot_ns()),
        enforcer_common::policy::Window::Block
    );
    let a = answer(board.lookup(addr).as_ref(), addr, &clock, &Texts::default());
    assert!(matches!(a, Answer::Reject(_)), "{a:?}");
    // A connect in the full block is explained as told why, not as silently dropped.
    let d = ok(e.handle(
        Request::Sender {
            target: "10.200.0.2".into(),
        },
        T0 + 31,
    ));
    assert!(
        d["connect_now"]
            .as_str()
            .unwrap()
            .contains("told why at the SMTP level (2/10m"),
        "{d}"
    );
}

#[test]
fn an_operator_notice_throttle_needs_a_channel_and_is_answered_by_the_board() {
    use crate::evidence::reply::{answer, Answer, Texts};
    let dir = TmpDir::new("op-notice");
    let store = Store::open(&dir.0).unwrap();
    let board = crate::evidence::reply::Board::default();
    let settings = EngineSettings {
        policy: policy(),
        board: board.clone(),
        ..EngineSettings::default()
    };
    let (mut e, _) = Engine::start(
        settings.clone(),
        store,
        MemKernel::default(),
        EngineMetrics::default(),
        T0,
    )
    .unwrap();
    let rate = crate::rule::NoticeRate::DEFAULT;
    // A half-hour window of every hour that began a minute ago (windows follow the wall clock).
    let into_hour = crate::datapath::Clock::now().unix_secs().rem_euclid(3600);
    let phase = sp(&format!("{}s", (into_hour - 60).rem_euclid(3600)));
    let rule = |notice| Rule {
        prefix: host("10.200.0.5"),
        verdict: Verdict::Throttle {
            period: sp("1h"),
            window: sp("30m"),
            phase,
            block_offset: sp("0s"),
            block: sp("0s"),
            rst: false,
            notice,
        },
        expires_at: None,
        reason: None,
        created_at: T0,
        source: RuleSource::Operator,
        list: None,
    };
    let put = |r: Rule| Request::PutRule {
        rule: serde_json::to_value(r).unwrap(),
    };
    // No milter, no policy service: refused, nothing stored or written.
    let msg = usage(e.handle(put(rule(Some(rate))), T0 + 1));
    assert!(msg.contains("no notice channel"), "{msg}");
    assert_eq!(entry(&e, "10.200.0.5"), None);
    // A plain throttle is still fine without one, and the board stays silent for it.
    ok(e.handle(put(rule(None)), T0 + 2));
    assert_eq!(board.lookup("10.200.0.5".parse().unwrap()), None);
    // With a channel (a reload that added --milter): the notice entry reaches the kernel with its
    // flag, and the board answers the admitted SYNs with the text.
    let mut with_channel = settings;
    with_channel.notice_channel = true;
    e.reconfigure(with_channel, T0 + 3).unwrap();
    ok(e.handle(put(rule(Some(rate))), T0 + 4));
    let clock = crate::datapath::Clock::now();
    let k = e.kernel().entries[&host("10.200.0.5")].to_kernel(&clock);
    assert!(k.is_notice());
    assert_eq!((k.notice_count, k.notice_period_secs), (2, 600));
    let addr: std::net::IpAddr = "10.200.0.5".parse().unwrap();
    let n = board
        .lookup(addr)
        .expect("the operator's notice is on the board");
    assert_eq!(n.stage, 0);
    let a = answer(Some(&n), addr, &clock, &Texts::default());
    assert!(
        matches!(&a, Answer::Tempfail(t) if t.contains("10.200.0.5")),
        "{a:?}"
    );
    // Removing the rule takes it off the board.
    ok(e.handle(
        Request::RemoveRule {
            prefix: "10.200.0.5/32".into(),
        },
        T0 + 5,
    ));
    assert_eq!(board.lookup(addr), None);
}
