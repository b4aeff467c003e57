//! Merge laws (property tests: arrival order, grouping and repetition never change the result),
//! validation of what Redis hands us, and two engines syncing through their replicas.

use super::codec::{Change, Item, Refused, VERSION};
use super::hlc::{Hlc, Stamp};
use super::replica::{Applied, Replica};
use super::shared::{RuleState, SenderState};
use super::FleetMetrics;
use crate::control::{Reply, Request};
use crate::daemon::{Engine, EngineMetrics, EngineSettings, MemKernel};
use crate::net::Prefix;
use crate::policy::{Action, Evidence, Pause, Policy, Refusal, Schedule, Stage, Status};
use crate::rule::{Rule, RuleSource, Verdict};
use crate::store::Store;
use proptest::prelude::*;

const T0: i64 = 1_795_000_000;
const NOW_MS: u64 = (T0 as u64 + 1000) * 1000;

fn pfx() -> Prefix {
    "192.0.2.7/32".parse().unwrap()
}

fn ev(seen_at: i64, vulnerable: bool, build: &str) -> Evidence {
    Evidence {
        seen_at,
        product: "exchange".into(),
        version: None,
        build: Some(build.into()),
        label: None,
        status: if vulnerable {
            Status::EndOfLife
        } else {
            Status::Supported
        },
        persistently_vulnerable: vulnerable,
        confidence: 1.0,
        upgrade_to: None,
        findings: vec![],
    }
}

fn sender_state() -> impl Strategy<Value = SenderState> {
    let t = || 0i64..40;
    (
        proptest::option::of(t()),
        proptest::option::of(t()),
        proptest::collection::btree_set(t(), 0..3),
        proptest::collection::btree_map(t(), 1u32..5, 0..3),
        proptest::option::of((t(), any::<bool>(), 0u8..3)),
        proptest::collection::btree_map(t(), (1i64..20, proptest::option::of(0i64..20)), 0..3),
    )
        .prop_map(|(forgot, cleared, detected, episodes, evidence, pauses)| {
            let base = T0;
            let mut s = SenderState::empty(pfx());
            s.forgot_at = forgot.map(|t| base + t);
            s.cleared_at = cleared.map(|t| base + t);
            s.detected = detected.into_iter().map(|t| base + t).collect();
            s.episodes = episodes.into_iter().map(|(t, r)| (base + t, r)).collect();
            s.evidence = evidence.map(|(t, v, b)| ev(base + t, v, &format!("15.0.1497.{b}")));
            s.pauses = pauses
                .into_iter()
                .map(|(start, (len, end))| Pause {
                    start: base + start,
                    until: base + start + len,
                    ended_at: end.map(|e| base + start + e),
                })
                .collect();
            // What a host holds is always normalized (it came through `join` or `of_record`).
            let mut n = SenderState::empty(pfx());
            n.join(&s);
            n
        })
}

fn rule_state() -> impl Strategy<Value = RuleState> {
    (0u64..5, 0u32..3, 0usize..3, proptest::option::of(0u8..3)).prop_map(|(ms, n, node, rule)| {
        RuleState {
            prefix: pfx(),
            stamp: Stamp {
                ms,
                n,
                node: ["mx1", "mx2", "mx3"][node].into(),
            },
            rule: rule.map(|v| Rule {
                prefix: pfx(),
                verdict: [Verdict::Drop, Verdict::Reject, Verdict::Pass][v as usize].clone(),
                expires_at: None,
                reason: None,
                created_at: T0,
                source: RuleSource::Operator,
                list: None,
            }),
        }
    })
}

fn fold_sender(items: &[SenderState]) -> SenderState {
    let mut acc = SenderState::empty(pfx());
    for s in items {
        acc.join(s);
    }
    acc
}

fn fold_rule(items: &[RuleState]) -> Option<RuleState> {
    let mut it = items.iter();
    let mut acc = it.next()?.clone();
    for r in it {
        acc.join(r);
    }
    Some(acc)
}

proptest! {
    #[test]
    fn sender_join_is_a_semilattice(a in sender_state(), b in sender_state(), c in sender_state()) {
        let mut ab = a.clone(); ab.join(&b);
        let mut ba = b.clone(); ba.join(&a);
        prop_assert_eq!(&ab, &ba, "commutative");
        let mut ab_c = ab.clone(); ab_c.join(&c);
        let mut bc = b.clone(); bc.join(&c);
        let mut a_bc = a.clone(); a_bc.join(&bc);
        prop_assert_eq!(&ab_c, &a_bc, "associative");
        let mut aa = a.clone(); aa.join(&a);
        prop_assert_eq!(&aa, &a, "idempotent");
    }

    /// Every host ends up with the same record whatever order (and how often) changes arrive.
    #[test]
    fn sender_arrival_order_does_not_matter(
        items in proptest::collection::vec(sender_state(), 1..6),
        seed in any::<u64>(),
    ) {
        let want = fold_sender(&items);
        let mut order: Vec<usize> = (0..items.len()).collect();
        let mut x = seed | 1;
        for i in (1..order.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        // Another host sees them shuffled, with some repeated.
        let mut seen: Vec<SenderState> = order.iter().filter(|i| **i < items.len()).map(|i| items[*i].clone()).collect();
        seen.extend(items.iter().take(2).cloned());
        prop_assert_eq!(fold_sender(&seen), want.clone());
        // A stage never goes down: the merged stage is the highest any surviving episode reached.
        if let Some(ep) = want.episode() {
            for s in &items {
                if let Some(e) = s.episode() {
                    if want.episodes.contains_key(&e.started_at) {
                        prop_assert!(ep.reached >= e.reached);
                    }
                }
            }
        }
    }

    #[test]
    fn operator_entries_converge_last_writer_wins(
        items in proptest::collection::vec(rule_state(), 1..6),
        seed in any::<u64>(),
    ) {
        let want = fold_rule(&items).unwrap();
        let mut shuffled = items.clone();
        let n = shuffled.len();
        for i in 0..n { shuffled.swap(i, (seed as usize).wrapping_add(i * 7) % n); }
        shuffled.push(items[0].clone());
        prop_assert_eq!(fold_rule(&shuffled).unwrap(), want.clone());
        let max = items.iter().map(|r| r.stamp.clone()).max().unwrap();
        prop_assert_eq!(want.stamp, max);
    }

    /// Whatever Redis holds, decoding never panics.
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = Change::decode(&bytes, NOW_MS);
    }
}

#[test]
fn first_detection_is_the_earliest_and_clearance_ends_older_episodes() {
    let mut a = SenderState::empty(pfx());
    a.detected.insert(T0 + 10);
    a.episodes.insert(T0 + 10, 1);
    let mut b = SenderState::empty(pfx());
    b.detected.insert(T0 + 5);
    b.episodes.insert(T0 + 5, 3);
    a.join(&b);
    assert_eq!(a.detected.first(), Some(&(T0 + 5)));
    let ep = a.episode().unwrap();
    assert_eq!((ep.started_at, ep.reached), (T0 + 5, 3));
    // Exonerating evidence seen at T0+20 ends both; a detection after it starts a new episode.
    let mut c = SenderState::empty(pfx());
    c.cleared_at = Some(T0 + 20);
    a.join(&c);
    assert!(a.episode().is_none());
    assert_eq!(
        a.detected.first(),
        Some(&(T0 + 5)),
        "first detection is kept"
    );
    let mut d = SenderState::empty(pfx());
    d.episodes.insert(T0 + 30, 1);
    a.join(&d);
    assert_eq!(a.episode().unwrap().started_at, T0 + 30);
}

#[test]
fn forget_is_a_tombstone_that_late_copies_cannot_undo() {
    let mut old = SenderState::empty(pfx());
    old.detected.insert(T0);
    old.episodes.insert(T0, 2);
    old.evidence = Some(ev(T0, true, "15.0.1497.2"));
    let mut s = SenderState::forgotten(pfx(), T0 + 50);
    s.join(&old);
    assert!(s.is_gone() && s.to_record(None).is_none());
    assert_eq!(s.expires(100), Some(T0 + 150));
    // New evidence after the forget brings the sender back.
    let mut new = SenderState::empty(pfx());
    new.detected.insert(T0 + 60);
    new.episodes.insert(T0 + 60, 1);
    s.join(&new);
    assert_eq!(s.to_record(None).unwrap().first_detected, Some(T0 + 60));
    assert_eq!(s.expires(100), None);
}

#[test]
fn concurrent_pauses_never_count_paused_time_twice() {
    let mut a = SenderState::empty(pfx());
    a.pauses.push(Pause {
        start: T0,
        until: T0 + 86_400,
        ended_at: None,
    });
    let mut b = SenderState::empty(pfx());
    b.pauses.push(Pause {
        start: T0 + 100,
        until: T0 + 2 * 86_400,
        ended_at: None,
    });
    a.join(&b);
    assert_eq!(a.pauses.len(), 2);
    assert_eq!(a.pauses[0].ended_at, Some(T0 + 100));
    assert_eq!(a.pauses[1].ended_at, None);
}

fn change(item: Item) -> Change {
    Change {
        v: VERSION,
        origin: "mx2".into(),
        stamp: Stamp {
            ms: NOW_MS,
            n: 0,
            node: "mx2".into(),
        },
        item,
    }
}

#[test]
fn malformed_changes_are_refused_with_a_reason() {
    let good = {
        let mut s = SenderState::empty(pfx());
        s.detected.insert(T0);
        s.episodes.insert(T0, 2);
        s.evidence = Some(ev(T0, true, "15.0.1497.2"));
        change(Item::Sender(s))
    };
    let json = good.encode();
    assert_eq!(Change::decode(json.as_bytes(), NOW_MS).unwrap(), good);
    let label = |raw: &str| Change::decode(raw.as_bytes(), NOW_MS).unwrap_err().label();
    assert_eq!(label("not json"), "malformed");
    assert_eq!(label(&json.replace("\"v\":1", "\"v\":9")), "version");
    assert_eq!(
        label(&json.replace("192.0.2.7/32", "192.0.2.7/24")),
        "malformed"
    );
    assert_eq!(
        label(&json.replace("192.0.2.7/32", "300.0.2.7/32")),
        "malformed"
    );
    assert_eq!(label(&json.replace("\"mx2\"", "\"mx 2\"")), "origin");
    assert_eq!(
        label(&json.replacen("\"episodes\":[", "\"surprise\":1,\"episodes\":[", 1)),
        "malformed"
    );
    assert_eq!(
        label(&json.replace(&format!("[{T0},2]"), &format!("[{T0},99]"))),
        "invalid"
    );
    assert_eq!(
        label(&json.replace(&format!("[{T0},2]"), &format!("[{T0},0]"))),
        "invalid"
    );
    assert_eq!(
        label(&json.replace("15.0.1497.2", &"9".repeat(5000))),
        "invalid"
    );
    let big = json.replace("15.0.1497.2", &"9".repeat(70_000));
    assert!(matches!(
        Change::decode(big.as_bytes(), NOW_MS),
        Err(Refused::TooLarge(_))
    ));
    let future = json.replace(
        &format!("\"ms\":{NOW_MS}"),
        &format!("\"ms\":{}", NOW_MS + 3_600_000),
    );
    assert_eq!(label(&future), "future");
    // Only operator entries travel; a rule keyed under another prefix is refused.
    let rule = |source: RuleSource, prefix: &str| {
        change(Item::Rule(RuleState {
            prefix: pfx(),
            stamp: Stamp {
                ms: NOW_MS,
                n: 0,
                node: "mx2".into(),
            },
            rule: Some(Rule {
                prefix: prefix.parse().unwrap(),
                verdict: Verdict::Drop,
                expires_at: None,
                reason: None,
                created_at: T0,
                source,
                list: None,
            }),
        }))
        .encode()
    };
    assert!(Change::decode(rule(RuleSource::Operator, "192.0.2.7").as_bytes(), NOW_MS).is_ok());
    assert_eq!(
        label(&rule(RuleSource::Engine { stage: 1 }, "192.0.2.7")),
        "invalid"
    );
    assert_eq!(label(&rule(RuleSource::Operator, "192.0.2.8")), "invalid");
}

struct Host {
    dir: std::path::PathBuf,
    engine: Engine<MemKernel>,
    replica: Replica,
    metrics: FleetMetrics,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn host(name: &str) -> Host {
    let dir = std::env::temp_dir().join(format!("enforcer-fleet-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let policy = Policy {
        schedule: Schedule::new(vec![Stage {
            after: "0s".parse().unwrap(),
            action: Action::Block,
            refusal: Refusal::Drop,
        }])
        .unwrap(),
        ..Policy::default()
    };
    let settings = EngineSettings {
        policy,
        ..EngineSettings::default()
    };
    let (mut engine, _) = Engine::start(
        settings,
        Store::open(&dir).unwrap(),
        MemKernel::default(),
        EngineMetrics::default(),
        T0,
    )
    .unwrap();
    let metrics = FleetMetrics::default();
    let replica = Replica::open(name, &mut engine, 86_400, metrics.clone()).unwrap();
    Host {
        dir,
        engine,
        replica,
        metrics,
    }
}

const EX2013: &str = "Received: from EX01.corp.example.net (10.1.2.3) by mail.corp.example.net (10.1.2.4) with Microsoft SMTP Server (TLS) id 15.0.1497.48; Tue, 4 Jun 2024 10:11:12 +0000\r\n";

/// Queues `h`'s local changes and returns the ones just queued, as the daemon would publish them.
fn take(h: &mut Host, now_ms: u64) -> Vec<(u64, Change)> {
    let before = h
        .engine
        .store()
        .fleet_outbox()
        .unwrap()
        .last()
        .map(|(s, _)| *s)
        .unwrap_or(0);
    let n = h.replica.take_local(&mut h.engine, now_ms).unwrap();
    let out = h
        .engine
        .store()
        .fleet_outbox_page(before, usize::MAX)
        .unwrap();
    assert_eq!(out.len(), n);
    out
}

fn ok(r: Reply) {
    assert!(r.ok, "{:?}", r.error);
}

#[test]
fn evidence_at_one_host_enforces_at_another_once() {
    let mut a = host("a");
    let mut b = host("b");
    ok(a.engine.handle(
        Request::Evidence {
            target: "192.0.2.7".into(),
            text: EX2013.into(),
        },
        T0,
    ));
    let out = take(&mut a, NOW_MS);
    assert_eq!(out.len(), 1);
    // Queued durably until published.
    assert_eq!(a.engine.store().fleet_outbox().unwrap().len(), 1);
    a.replica
        .published(&a.engine, out.iter().map(|(s, _)| *s).collect())
        .unwrap();
    assert!(a.engine.store().fleet_outbox().unwrap().is_empty());
    let c = &out[0].1;
    // Through the wire format, as B reads it.
    let c = Change::decode(c.encode().as_bytes(), NOW_MS).unwrap();
    assert_eq!(
        b.replica
            .apply(&mut b.engine, &c, Some("1-0"), NOW_MS)
            .unwrap(),
        Applied::Changed
    );
    let p = pfx();
    assert_eq!(b.engine.kernel().entries[&p].verdict, Verdict::Drop);
    assert_eq!(
        b.engine.record(&p).unwrap().unwrap().first_detected,
        Some(T0)
    );
    // The same change again (a replay after a reconnect) changes nothing.
    assert_eq!(
        b.replica
            .apply(&mut b.engine, &c, Some("2-0"), NOW_MS)
            .unwrap(),
        Applied::Unchanged
    );
    assert_eq!(b.metrics.applied.get(), 1);
    assert_eq!(b.metrics.duplicate.get(), 1);
    let fleet_lines = b
        .engine
        .record(&p)
        .unwrap()
        .unwrap()
        .history
        .iter()
        .filter(|h| h.event.starts_with("fleet:"))
        .count();
    assert_eq!(fleet_lines, 1, "applied exactly once");
    assert_eq!(
        b.engine.store().fleet_meta("last_id").unwrap().as_deref(),
        Some("2-0")
    );
    // B does not publish what it only applied.
    assert!(take(&mut b, NOW_MS).is_empty());
}

#[test]
fn operator_block_and_unset_travel_and_the_later_one_wins() {
    let mut a = host("ra");
    let mut b = host("rb");
    let rule = serde_json::json!({
        "prefix": "198.51.100.0/24", "verdict": {"action": "drop"}, "expires_at": null,
        "reason": "test", "created_at": T0, "source": {"kind": "operator"}
    });
    ok(b.engine.handle(Request::PutRule { rule }, T0));
    let block = take(&mut b, NOW_MS);
    ok(a.engine.handle(
        Request::RemoveRule {
            prefix: "198.51.100.0/24".into(),
        },
        T0,
    ));
    // A's unset is stamped later (after seeing nothing from B): it wins on both hosts.
    let unset = take(&mut a, NOW_MS + 5);
    let p: Prefix = "198.51.100.0/24".parse().unwrap();
    a.replica
        .apply(&mut a.engine, &block[0].1, None, NOW_MS + 6)
        .unwrap();
    b.replica
        .apply(&mut b.engine, &unset[0].1, None, NOW_MS + 6)
        .unwrap();
    assert!(a.engine.operator_rule(&p).is_none());
    assert!(b.engine.operator_rule(&p).is_none());
    assert!(!b.engine.kernel().entries.contains_key(&p));
    // A block made after B saw the unset wins everywhere.
    ok(b.engine.handle(
        Request::PutRule {
            rule: serde_json::json!({
                "prefix": "198.51.100.0/24", "verdict": {"action": "reject"}, "expires_at": null,
                "reason": null, "created_at": T0, "source": {"kind": "operator"}
            }),
        },
        T0,
    ));
    let again = take(&mut b, NOW_MS);
    assert!(again[0].1.stamp.ms > NOW_MS, "later than the unset it saw");
    a.replica
        .apply(&mut a.engine, &again[0].1, None, NOW_MS + 7)
        .unwrap();
    assert_eq!(a.engine.kernel().entries[&p].verdict, Verdict::Reject);
}

#[test]
fn forget_travels_and_a_stale_copy_does_not_revive() {
    let mut a = host("fa");
    let mut b = host("fb");
    ok(a.engine.handle(
        Request::Evidence {
            target: "192.0.2.7".into(),
            text: EX2013.into(),
        },
        T0,
    ));
    let first = take(&mut a, NOW_MS);
    b.replica
        .apply(&mut b.engine, &first[0].1, None, NOW_MS)
        .unwrap();
    ok(a.engine.handle(
        Request::Forget {
            target: "192.0.2.7".into(),
        },
        T0 + 10,
    ));
    let forget = take(&mut a, NOW_MS + 10_000);
    b.replica
        .apply(&mut b.engine, &forget[0].1, None, NOW_MS + 10_000)
        .unwrap();
    assert!(b.engine.record(&pfx()).unwrap().is_none());
    assert!(b.engine.kernel().entries.is_empty());
    // The first change replayed late (a slow host) does not bring it back.
    assert_eq!(
        b.replica
            .apply(&mut b.engine, &first[0].1, None, NOW_MS + 11_000)
            .unwrap(),
        Applied::Unchanged
    );
    assert!(b.engine.record(&pfx()).unwrap().is_none());
    // The tombstone expires after its TTL (one day here).
    assert!(b
        .replica
        .expire_tombstones(&b.engine, T0 + 100)
        .unwrap()
        .is_empty());
    assert_eq!(
        b.replica
            .expire_tombstones(&b.engine, (NOW_MS / 1000) as i64 + 10 + 86_400)
            .unwrap(),
        vec!["sender:192.0.2.7/32".to_string()]
    );
}

#[test]
fn hlc_survives_restart_through_the_store() {
    let mut a = host("h");
    let mut clock = Hlc::new("h");
    let s = clock.tick(NOW_MS + 99_000);
    let remote = change(Item::Rule(RuleState {
        prefix: pfx(),
        stamp: Stamp {
            node: "mx2".into(),
            ..s
        },
        rule: None,
    }));
    let remote = Change {
        stamp: Stamp {
            ms: NOW_MS + 99_000,
            n: 0,
            node: "mx2".into(),
        },
        ..remote
    };
    a.replica
        .apply(&mut a.engine, &remote, None, NOW_MS)
        .unwrap();
    let again = Replica::open("h", &mut a.engine, 86_400, FleetMetrics::default()).unwrap();
    drop(again);
    ok(a.engine.handle(
        Request::RemoveRule {
            prefix: "192.0.2.7".into(),
        },
        T0,
    ));
    let mine = take(&mut a, NOW_MS);
    assert!(mine[0].1.stamp.ms >= NOW_MS + 99_000);
}

#[test]
fn fleet_config_is_checked_with_line_and_key() {
    use crate::config::FileConfig;
    let f = FileConfig::parse(
        "f.toml",
        "[fleet]\nredis = \"redis://10.0.0.1:6379/0\"\nname = \"mx1\"\n",
    )
    .unwrap()
    .fleet
    .unwrap();
    assert_eq!(f.namespace, "enforcer");
    assert_eq!(f.name.as_deref(), Some("mx1"));
    assert_eq!(f.stream_max_len, super::settings::DEFAULT_STREAM_MAX_LEN);
    let err = |src: &str| FileConfig::parse("f.toml", src).unwrap_err();
    let e = err("[fleet]\nredis = \"http://10.0.0.1\"\n");
    assert_eq!((e.line, e.key.as_str()), (2, "fleet.redis"), "{e}");
    let e = err("[fleet]\nredis = \"redis://h:6379\"\nname = \"mx 1\"\n");
    assert_eq!((e.line, e.key.as_str()), (3, "fleet.name"), "{e}");
    let e = err("[fleet]\nredis = \"redis://h:6379\"\nnamespace = \"a:b\"\n");
    assert_eq!(e.key, "fleet.namespace", "{e}");
    let e = err("[fleet]\nredis = [\"redis://a:26379\", \"redis://b:26379\"]\n");
    assert!(e.message.contains("sentinel_master"), "{e}");
    let e = err("[fleet]\nname = \"mx1\"\n");
    assert_eq!(e.key, "fleet.redis", "{e}");
    let e = err("[fleet]\nredis = \"redis://h:6379\"\nstream_max_len = 0\n");
    assert_eq!(e.key, "fleet.stream_max_len", "{e}");
    let e = err("[fleet]\nredis = \"redis://h:6379\"\nredis_url = \"x\"\n");
    assert_eq!(e.line, 3, "{e}");
    // Sentinel addresses with the master's name.
    let s = FileConfig::parse(
        "f.toml",
        "[fleet]\nredis = [\"redis://a:26379\", \"redis://b:26379\"]\nsentinel_master = \"mymaster\"\nname = \"mx2\"\n",
    )
    .unwrap()
    .fleet
    .unwrap();
    let r = super::FleetSettings::resolve(&s).unwrap();
    assert!(matches!(r.target, super::link::Target::Sentinel { .. }));
    assert!(r.display.contains("master mymaster"), "{}", r.display);
    // Over TLS: the Sentinels' password is the one in their URLs, the file's is the master's.
    let dir = std::env::temp_dir().join(format!("enforcer-fleet-sn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pw = dir.join("pass");
    std::fs::write(&pw, "master-secret\n").unwrap();
    let mut s = s;
    s.redis = vec![
        "rediss://:sentinel-secret@a:26379/3".into(),
        "rediss://b:26379".into(),
    ];
    s.password_file = Some(pw);
    let r = super::FleetSettings::resolve(&s).unwrap();
    match &r.target {
        super::link::Target::Sentinel {
            sentinel_password,
            data,
            tls,
            sentinels,
            ..
        } => {
            assert_eq!(sentinel_password.as_deref(), Some("sentinel-secret"));
            assert_eq!(data.password(), Some("master-secret"));
            assert_eq!(data.db(), 3);
            assert!(*tls);
            assert_eq!(sentinels.len(), 2);
        }
        other => panic!("{other:?}"),
    }
    assert!(!r.display.contains("secret"), "{}", r.display);
    s.redis[1] = "redis://b:26379".into();
    let e = super::FleetSettings::resolve(&s).unwrap_err();
    assert!(e.contains("mixes redis:// and rediss://"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn password_comes_from_a_file_and_never_shows() {
    use super::settings::{redact, FleetFile, FleetSettings};
    let dir = std::env::temp_dir().join(format!("enforcer-fleet-pw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pw = dir.join("pass");
    let mut f = FleetFile {
        redis: vec!["rediss://user:inline@10.0.0.1:6380/2".into()],
        sentinel_master: None,
        password_file: Some(pw.clone()),
        ca_file: None,
        name: Some("mx1".into()),
        namespace: "enforcer".into(),
        stream_max_len: 10,
        tombstone_ttl: crate::duration::Span(std::time::Duration::from_secs(60)),
    };
    let e = FleetSettings::resolve(&f).unwrap_err();
    assert!(e.contains("password_file"), "{e}");
    std::fs::write(&pw, "s3cret\n").unwrap();
    let s = FleetSettings::resolve(&f).unwrap();
    assert!(
        !s.display.contains("inline") && !s.display.contains("s3cret"),
        "{}",
        s.display
    );
    match &s.target {
        super::link::Target::Direct { info, .. } => {
            assert_eq!(info.redis_settings().password(), Some("s3cret"));
            assert_eq!(info.redis_settings().db(), 2);
            assert!(matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }));
        }
        t => panic!("{t:?}"),
    }
    assert_eq!(redact("redis://:pw@h:1/0"), "redis://***@h:1/0");
    f.ca_file = Some(dir.join("missing.pem"));
    assert!(FleetSettings::resolve(&f).unwrap_err().contains("ca_file"));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn import(list: Option<&str>, entries: &str) -> Request {
    Request::Import {
        verdict: serde_json::to_value(Verdict::Drop).unwrap(),
        expires_at: None,
        reason: Some("feed".into()),
        list: list.map(str::to_string),
        entries: entries.into(),
        packed: None,
    }
}

/// `n` distinct /32s in 198.51.100.0/22 and 203.0.113.0/24 style blocks, starting at `from`.
fn feed(from: u32, n: u32) -> String {
    (from..from + n)
        .map(|i| format!("10.{}.{}.{}\n", 100 + i / 65_536, (i / 256) % 256, i % 256))
        .collect()
}

/// Applies `changes` at `h` the way the daemon does: in batches, through `apply_many`.
fn apply_batches(h: &mut Host, changes: &[(u64, Change)], now_ms: u64) -> usize {
    let changes: Vec<Change> = changes.iter().map(|(_, c)| c.clone()).collect();
    changes
        .chunks(super::replica::CHUNK)
        .map(|batch| {
            h.replica
                .apply_many(&mut h.engine, batch, None, now_ms)
                .unwrap()
        })
        .sum()
}

#[test]
fn bulk_import_list_replacement_and_bulk_unset_travel_like_single_entries() {
    let mut a = host("ba");
    let mut b = host("bb");
    // 6,000 entries: more than one chunk on both sides.
    ok(a.engine.handle(import(Some("feed"), &feed(0, 6000)), T0));
    let first = take(&mut a, NOW_MS);
    assert_eq!(first.len(), 6000, "one change per imported entry");
    assert_eq!(apply_batches(&mut b, &first, NOW_MS + 1), 6000);
    assert_eq!(b.engine.kernel().entries.len(), 6000);
    assert_eq!(b.engine.store().rules().unwrap().len(), 6000);
    let p: Prefix = "10.100.0.7/32".parse().unwrap();
    assert_eq!(b.engine.kernel().entries[&p].verdict, Verdict::Drop);
    assert_eq!(
        b.engine.operator_rule(&p).unwrap().list.as_deref(),
        Some("feed"),
        "the list name travels, so a replacement at B would work the same"
    );
    // Replacing the list at A with 1,000 other entries removes all 6,000 at B.
    ok(a.engine
        .handle(import(Some("feed"), &feed(10_000, 1000)), T0 + 1));
    let replaced = take(&mut a, NOW_MS + 1000);
    assert_eq!(replaced.len(), 7000, "6,000 removals and 1,000 new entries");
    apply_batches(&mut b, &replaced, NOW_MS + 1001);
    assert_eq!(b.engine.kernel().entries.len(), 1000);
    assert!(!b.engine.kernel().entries.contains_key(&p));
    assert!(b.engine.operator_rule(&p).is_none());
    // Replaying the whole log again changes nothing (joins are idempotent).
    let before = b.metrics.applied.get();
    apply_batches(&mut b, &first, NOW_MS + 1002);
    apply_batches(&mut b, &replaced, NOW_MS + 1002);
    assert_eq!(b.metrics.applied.get(), before);
    assert_eq!(b.engine.kernel().entries.len(), 1000);
    // `unset --list` at B travels back to A.
    ok(b.engine.handle(
        Request::RemoveRules {
            entries: None,
            packed: None,
            list: Some("feed".into()),
        },
        T0 + 2,
    ));
    let unset = take(&mut b, NOW_MS + 2000);
    assert_eq!(unset.len(), 1000);
    apply_batches(&mut a, &unset, NOW_MS + 2001);
    assert!(a.engine.kernel().entries.is_empty());
    assert!(a.engine.store().rules().unwrap().is_empty());
    // `block --from` then `unset --from` of a few entries.
    ok(a.engine.handle(import(None, &feed(20_000, 3)), T0 + 3));
    apply_batches(&mut b, &take(&mut a, NOW_MS + 3000), NOW_MS + 3001);
    assert_eq!(b.engine.kernel().entries.len(), 3);
    ok(a.engine.handle(
        Request::RemoveRules {
            entries: Some(feed(20_000, 3)),
            packed: None,
            list: None,
        },
        T0 + 4,
    ));
    apply_batches(&mut b, &take(&mut a, NOW_MS + 4000), NOW_MS + 4001);
    assert!(b.engine.kernel().entries.is_empty());
}

#[test]
fn queue_sequence_numbers_grow_across_an_emptied_queue() {
    let mut a = host("sq");
    ok(a.engine.handle(import(None, &feed(0, 2)), T0));
    let first = take(&mut a, NOW_MS);
    a.replica
        .published(&a.engine, first.iter().map(|(s, _)| *s).collect())
        .unwrap();
    assert_eq!(a.engine.store().fleet_outbox_len().unwrap(), 0);
    ok(a.engine.handle(import(None, &feed(5, 1)), T0));
    let next = take(&mut a, NOW_MS + 1);
    assert!(next[0].0 > first[1].0, "{next:?} after {first:?}");
}

#[test]
fn without_a_fleet_the_engine_keeps_no_changes_for_one() {
    let dir = std::env::temp_dir().join(format!("enforcer-fleet-none-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (mut engine, _) = Engine::start(
        EngineSettings::default(),
        Store::open(&dir).unwrap(),
        MemKernel::default(),
        EngineMetrics::default(),
        T0,
    )
    .unwrap();
    ok(engine.handle(import(Some("feed"), &feed(0, 500)), T0));
    ok(engine.handle(
        Request::RemoveRules {
            entries: None,
            packed: None,
            list: Some("feed".into()),
        },
        T0,
    ));
    assert!(engine.take_touched().is_empty(), "nothing piles up");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_host_name_is_the_default_fleet_name() {
    use super::settings::{FleetFile, FleetSettings};
    let f = FleetFile {
        redis: vec!["redis://127.0.0.1:6379/0".into()],
        sentinel_master: None,
        password_file: None,
        ca_file: None,
        name: None,
        namespace: "enforcer".into(),
        stream_max_len: 10,
        tombstone_ttl: crate::duration::Span(std::time::Duration::from_secs(60)),
    };
    // Read the name the way an operator sees it, not through gethostname(2).
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let short = host.trim().split('.').next().unwrap().to_string();
    let usable = !short.is_empty()
        && short.len() <= 64
        && short
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    match FleetSettings::resolve(&f) {
        Ok(s) => assert_eq!(s.name, short),
        Err(e) => {
            assert!(!usable, "host name {short:?} is usable, yet: {e}");
            assert!(e.contains("fleet.name"), "{e}");
        }
    }
}
