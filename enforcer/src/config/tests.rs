//! One test per class of bad input, each checking the reported line and key.

use super::*;

fn err(src: &str) -> ConfigError {
    FileConfig::parse("t.toml", src).expect_err(src)
}

fn assert_err(src: &str, line: usize, key: &str, says: &str) {
    let e = err(src);
    assert_eq!((e.line, e.key.as_str()), (line, key), "{e}");
    assert!(e.to_string().contains(says), "{e} should say {says:?}");
    assert!(
        e.to_string()
            .starts_with(&format!("t.toml:{line}: `{key}`")),
        "{e}"
    );
}

#[test]
fn example_file_is_valid_and_equals_the_defaults() {
    let cfg = FileConfig::parse(
        "enforcer.example.toml",
        include_str!("../../../enforcer.example.toml"),
    )
    .unwrap();
    assert_eq!(cfg.policy.schedule, Schedule::default());
    assert_eq!(cfg.policy.pause_budget, Policy::default().pause_budget);
    assert_eq!(cfg.ports, Some(vec![25, 465, 587]));
    assert_eq!(cfg.mode.as_deref(), Some("auto"));
    assert_eq!(cfg.probe, crate::evidence::probe::ProbeSettings::default());
    assert_eq!(cfg.socket, Some(PathBuf::from(DEFAULT_SOCKET)));
    assert_eq!(cfg.policy.allow.len(), 2);
}

#[test]
fn empty_file_is_all_defaults() {
    let cfg = FileConfig::parse("t.toml", "").unwrap();
    assert_eq!(cfg, FileConfig::default());
}

#[test]
fn unknown_keys() {
    assert_err(
        "ports = [25]\ninterface = [\"eth0\"]\n",
        2,
        "interface",
        "unknown field",
    );
    assert_err(
        "[enforcement]\npause_budget = \"9d\"\nbudget = 3\n",
        3,
        "enforcement.budget",
        "unknown field",
    );
    assert_err(
        "[[enforcement.stages]]\nafter = \"0s\"\naction = \"report\"\nwindow = \"5m\"\n",
        4,
        "enforcement.stages[1].window",
        "unknown field",
    );
    assert_err("[daemon]\nx = 1\n", 1, "daemon", "unknown field");
}

#[test]
fn bad_durations() {
    assert_err(
        "[enforcement]\npause_budget = \"90\"\n",
        2,
        "enforcement.pause_budget",
        "not a duration",
    );
    assert_err(
        "[[enforcement.stages]]\nafter = \"0s\"\naction = \"report\"\n[[enforcement.stages]]\nafter = \"3x\"\naction = \"block\"\n",
        5,
        "enforcement.stages[2].after",
        "unknown unit",
    );
}

#[test]
fn overlapping_windows() {
    let src = "[[enforcement.stages]]\nafter = \"0s\"\naction = \"windows\"\nperiod = \"1h\"\nthrottle = \"10m\"\nblock_at = \"5m\"\nblock = \"10m\"\n";
    assert_err(
        src,
        6,
        "enforcement.stages[1].block_at",
        "overlaps the throttle window",
    );
}

#[test]
fn window_longer_than_period() {
    let src = "[[enforcement.stages]]\nafter = \"0s\"\naction = \"report\"\n\n[[enforcement.stages]]\nafter = \"10s\"\nperiod = \"4s\"\nthrottle = \"5s\"\n";
    assert_err(
        src,
        8,
        "enforcement.stages[2].throttle",
        "longer than its period",
    );
    let src = "[[enforcement.stages]]\nafter = \"0s\"\nperiod = \"1h\"\nthrottle = \"10m\"\nblock = \"55m\"\n";
    assert_err(
        src,
        5,
        "enforcement.stages[1].block",
        "after the end of its period",
    );
}

#[test]
fn stages_out_of_order_or_not_starting_at_zero() {
    assert_err(
        "[[enforcement.stages]]\nafter = \"1d\"\naction = \"report\"\n",
        2,
        "enforcement.stages[1].after",
        "must start",
    );
    let src = "[[enforcement.stages]]\nafter = \"0s\"\naction = \"report\"\n[[enforcement.stages]]\nafter = \"5d\"\naction = \"block\"\n[[enforcement.stages]]\nafter = \"5d\"\naction = \"block\"\n";
    assert_err(src, 8, "enforcement.stages[3].after", "increasing");
    assert_err(
        "[enforcement]\nstages = []\n",
        2,
        "enforcement.stages",
        "no stages",
    );
}

#[test]
fn bad_stage_shapes() {
    assert_err(
        "[[enforcement.stages]]\nafter = \"0s\"\n",
        1,
        "enforcement.stages[1].action",
        "say what the stage does",
    );
    assert_err(
        "[[enforcement.stages]]\nafter = \"0s\"\naction = \"nap\"\n",
        3,
        "enforcement.stages[1].action",
        "not an action",
    );
    assert_err(
        "[[enforcement.stages]]\nafter = \"0s\"\naction = \"block\"\nperiod = \"1h\"\n",
        1,
        "enforcement.stages[1].action",
        "only apply",
    );
    assert_err(
        "[[enforcement.stages]]\nafter = \"0s\"\nthrottle = \"1m\"\n",
        1,
        "enforcement.stages[1].period",
        "needs `period`",
    );
    assert_err(
        "[[enforcement.stages]]\nafter = \"0s\"\naction = \"block\"\nrefusal = \"rst\"\n",
        4,
        "enforcement.stages[1].refusal",
        "not a refusal",
    );
    assert_err(
        "[[enforcement.stages]]\nafter = \"0s\"\naction = \"windows\"\nperiod = \"1h\"\n",
        1,
        "enforcement.stages[1]",
        "both windows are empty",
    );
}

#[test]
fn bad_scalars() {
    assert_err("ports = [25, 70000]\n", 1, "ports", "not a TCP port");
    assert_err("mode = \"fast\"\n", 1, "mode", "not a mode");
    assert_err(
        "metrics_addr = \"localhost\"\n",
        1,
        "metrics_addr",
        "not an address:port",
    );
    assert_err(
        "interfaces = [\"eth0\", \"a/b\"]\n",
        1,
        "interfaces",
        "not a valid interface name",
    );
    assert_err("report_only = \"yes\"\n", 1, "report_only", "invalid type");
    assert_err(
        "[enforcement]\nallow = [\"10.0.0.0/33\"]\n",
        2,
        "enforcement.allow",
        "prefix length",
    );
    assert_err(
        "[enforcement.aggregation]\nv4 = 16\n",
        2,
        "enforcement.aggregation.v4",
        "use 32",
    );
    assert_err(
        "[classifier.end_of_support]\nexchange-2016 = \"next year\"\n",
        2,
        "classifier.end_of_support.exchange-2016",
        "YYYY-MM-DD",
    );
    assert_err("ports = [25\n", 1, "ports", "");
    assert_err(
        "[classifier.end_of_support]\nexchange-1999 = \"2030-01-01\"\n",
        2,
        "classifier.end_of_support.exchange-1999",
        "unknown Exchange version",
    );
}

#[test]
fn compressed_schedule_parses() {
    let src = r#"
[enforcement]
aggregation = { v4 = 24, v6 = 64 }
pause_budget = "2d"
[[enforcement.stages]]
after = "0s"
action = "report"
[[enforcement.stages]]
after = "4s"
period = "4s"
throttle = "2s"
refusal = "reject"
[[enforcement.stages]]
after = "12s"
action = "block"
[classifier.end_of_support]
exchange-2016 = "2026-10-14"
"#;
    let cfg = FileConfig::parse("t.toml", src).unwrap();
    assert_eq!(cfg.policy.schedule.len(), 3);
    assert_eq!(cfg.policy.schedule.stage(2).refusal, Refusal::Reject);
    assert_eq!(cfg.policy.aggregation, Aggregation { v4: 24, v6: 64 });
    assert_eq!(cfg.end_of_support.len(), 1);
}

#[test]
fn capacity_keys_are_read_and_checked() {
    let cfg = FileConfig::parse(
        "enforcer.example.toml",
        include_str!("../../../enforcer.example.toml"),
    )
    .unwrap();
    assert_eq!(cfg.capacity, crate::datapath::Capacity::default());
    let cfg =
        FileConfig::parse("t.toml", "[capacity]\nv4_hosts = 1000\nrate_state = 4096\n").unwrap();
    assert_eq!(
        (cfg.capacity.v4_hosts, cfg.capacity.rate_state),
        (1000, 4096)
    );
    assert_eq!(
        cfg.capacity.v6_hosts,
        crate::datapath::Capacity::default().v6_hosts
    );
    assert_err(
        "[capacity]\nv4_hosts = 0\n",
        2,
        "capacity.v4_hosts",
        "from 16 to",
    );
    assert_err(
        "[capacity]\n\nrate_state = 8388608\n",
        3,
        "capacity.rate_state",
        "4194304",
    );
    assert_err(
        "[capacity]\nv4_host = 10\n",
        2,
        "capacity.v4_host",
        "unknown",
    );
}

#[test]
fn mta_listeners_replies_and_min_confidence() {
    let cfg = FileConfig::parse(
        "t.toml",
        "[milter]\nlisten = \"unix:/run/enforcer/milter.sock\"\n[policy]\nlisten = \"inet:127.0.0.1:10040\"\n[replies]\nthrottle = \"slow {host}\"\ninfo_url = \"https://x.example\"\n[enforcement]\nmin_confidence = 0.5\n",
    )
    .unwrap();
    assert_eq!(
        cfg.mta.milter,
        Some(Endpoint::Unix("/run/enforcer/milter.sock".into()))
    );
    assert_eq!(
        cfg.mta.policy,
        Some(Endpoint::Inet("127.0.0.1:10040".parse().unwrap()))
    );
    assert_eq!(cfg.mta.texts.throttle, "slow {host}");
    assert_eq!(
        cfg.mta.texts.block,
        crate::evidence::reply::DEFAULT_BLOCK_TEXT
    );
    assert_eq!(cfg.mta.texts.info_url, "https://x.example");
    assert_eq!(cfg.policy.min_confidence, 0.5);
    let example = FileConfig::parse(
        "enforcer.example.toml",
        include_str!("../../../enforcer.example.toml"),
    )
    .unwrap();
    assert_eq!(example.mta, MtaSettings::default());
    assert_eq!(
        example.policy.min_confidence,
        crate::policy::DEFAULT_MIN_CONFIDENCE
    );
    assert_err(
        "[milter]\nlisten = \"127.0.0.1:8895\"\n",
        2,
        "milter.listen",
        "inet:127.0.0.1:8895",
    );
    assert_err(
        "[policy]\nlisten = \"unix:rel\"\n",
        2,
        "policy.listen",
        "absolute",
    );
    assert_err(
        "[replies]\nblock = \"go {away}\"\n",
        2,
        "replies.block",
        "{away}",
    );
    assert_err(
        "[replies]\nthrottle = \" \"\n",
        2,
        "replies.throttle",
        "empty",
    );
    assert_err(
        "[enforcement]\nmin_confidence = 1.5\n",
        2,
        "enforcement.min_confidence",
        "0.0 to 1.0",
    );
    assert_err(
        "[milter]\nlisten_on = \"x\"\n",
        2,
        "milter.listen_on",
        "unknown field",
    );
}

const NOTICE_STAGES: &str = "[[enforcement.stages]]\nafter = \"0s\"\naction = \"report\"\n[[enforcement.stages]]\nafter = \"1d\"\naction = \"block\"\nrefusal = \"notice\"\n";

#[test]
fn notice_refusal_needs_a_channel() {
    // The file alone parses: `enforcer run --milter ...` may still add the channel.
    let cfg = FileConfig::parse("t.toml", NOTICE_STAGES).unwrap();
    let e = cfg.policy_for(&cfg.mta).unwrap_err();
    assert_eq!(
        (e.line, e.key.as_str()),
        (7, "enforcement.stages[2].refusal"),
        "{e}"
    );
    let msg = e.to_string();
    for says in [
        "needs a channel",
        "milter.listen",
        "policy.listen",
        "--milter",
        "notice.responder",
        "refusal = \"drop\"",
    ] {
        assert!(msg.contains(says), "{msg} should say {says:?}");
    }
    // A channel in the file, or one from the flags, satisfies it; the default budget applies.
    let with = FileConfig::parse(
        "t.toml",
        &format!("[policy]\nlisten = \"inet:127.0.0.1:10040\"\n{NOTICE_STAGES}"),
    )
    .unwrap();
    let p = with.policy_for(&with.mta).unwrap();
    assert_eq!(
        p.schedule.stage(2).refusal,
        Refusal::Notice(NoticeRate::DEFAULT)
    );
    let mut flags = cfg.mta.clone();
    flags.milter = Some("inet:127.0.0.1:8895".parse().unwrap());
    assert_eq!(cfg.policy_for(&flags).unwrap().schedule, p.schedule);
}

#[test]
fn notice_responder_is_a_notice_channel_and_its_keys_are_checked() {
    let cfg = FileConfig::parse(
        "t.toml",
        &format!(
            "[notice]\nresponder = true\nnetns = \"mta\"\nfallback = \"pass\"\n{NOTICE_STAGES}"
        ),
    )
    .unwrap();
    let n = &cfg.mta.notice;
    assert!(n.responder);
    assert_eq!(n.netns, PathBuf::from("/run/netns/mta"));
    assert_eq!(n.fallback, crate::evidence::responder::Fallback::Pass);
    assert_eq!(
        cfg.policy_for(&cfg.mta).unwrap().schedule.stage(2).refusal,
        Refusal::Notice(NoticeRate::DEFAULT)
    );
    // The built-in schedule refuses with notice once the responder is on (the flag alike).
    let none = FileConfig::parse("t.toml", "").unwrap();
    assert_eq!(none.mta.notice, Default::default());
    let mut flags = none.mta.clone();
    flags.notice.responder = true;
    assert_eq!(
        none.policy_for(&flags).unwrap().schedule,
        Schedule::exchange_online(Refusal::Notice(NoticeRate::DEFAULT))
    );
    assert_err(
        "[notice]\nresponder = true\nfallback = \"open\"\n",
        3,
        "notice.fallback",
        "use \"drop\" or \"pass\"",
    );
    assert_err(
        "[notice]\nnetns = \"a/b\"\n",
        2,
        "notice.netns",
        "namespace name",
    );
    assert_err(
        "[notice]\nresponders = true\n",
        2,
        "notice.responders",
        "unknown field",
    );
}

#[test]
fn notice_rates_per_stage_and_for_the_whole_schedule() {
    let src = "[milter]\nlisten = \"inet:127.0.0.1:8895\"\n[enforcement]\nnotice_rate = \"1/5m\"\n[[enforcement.stages]]\nafter = \"0s\"\naction = \"block\"\nrefusal = \"notice\"\nnotice_rate = \"3/1h\"\n[[enforcement.stages]]\nafter = \"1d\"\naction = \"block\"\nrefusal = \"notice\"\n";
    let cfg = FileConfig::parse("t.toml", src).unwrap();
    let p = cfg.policy_for(&cfg.mta).unwrap();
    let rate = |s: &str| Refusal::Notice(s.parse().unwrap());
    assert_eq!(p.schedule.stage(1).refusal, rate("3/1h"));
    assert_eq!(p.schedule.stage(2).refusal, rate("1/5m"));
    assert_err(
        "[[enforcement.stages]]\nafter = \"0s\"\naction = \"block\"\nrefusal = \"notice\"\nnotice_rate = \"0/10m\"\n",
        5,
        "enforcement.stages[1].notice_rate",
        "admits no connect",
    );
    assert_err(
        "[[enforcement.stages]]\nafter = \"0s\"\naction = \"block\"\nnotice_rate = \"2/10m\"\n",
        4,
        "enforcement.stages[1].notice_rate",
        "only applies to refusal = \"notice\"",
    );
    assert_err(
        "[enforcement]\nnotice_rate = \"fast\"\n",
        2,
        "enforcement.notice_rate",
        "COUNT/PERIOD, e.g. 2/10m",
    );
    assert_err(
        "[[enforcement.stages]]\nafter = \"0s\"\naction = \"block\"\nrefusal = \"tell\"\n",
        4,
        "enforcement.stages[1].refusal",
        "notice (a few connects reach the MTA",
    );
}

#[test]
fn builtin_schedule_refuses_with_notice_only_when_a_channel_exists() {
    let none = FileConfig::parse("t.toml", "").unwrap();
    assert_eq!(
        none.policy_for(&none.mta).unwrap().schedule,
        Schedule::default()
    );
    let m = FileConfig::parse(
        "t.toml",
        "[milter]\nlisten = \"inet:127.0.0.1:8895\"\n[enforcement]\nnotice_rate = \"1/5m\"\n",
    )
    .unwrap();
    assert_eq!(
        m.policy_for(&m.mta).unwrap().schedule,
        Schedule::exchange_online(Refusal::Notice("1/5m".parse().unwrap()))
    );
    let mut flags = none.mta.clone();
    flags.policy = Some("inet:127.0.0.1:10040".parse().unwrap());
    assert_eq!(
        none.policy_for(&flags).unwrap().schedule,
        Schedule::exchange_online(Refusal::Notice(NoticeRate::DEFAULT))
    );
    // Stages the file lists are kept as written, channel or not.
    let own = FileConfig::parse(
        "t.toml",
        "[milter]\nlisten = \"inet:127.0.0.1:8895\"\n[[enforcement.stages]]\nafter = \"0s\"\naction = \"block\"\n",
    )
    .unwrap();
    assert_eq!(
        own.policy_for(&own.mta).unwrap().schedule.stage(1).refusal,
        Refusal::Drop
    );
}

#[test]
fn probe_section() {
    let cfg = FileConfig::parse(
        "t.toml",
        "[probe]\nenabled = true\nallow_private = true\nehlo_name = \"mx1.example.net\"\nconnect_timeout = \"2s\"\nread_timeout = \"3s\"\nconcurrency = 4\nper_second = 7\ncache_ttl = \"1h\"\ncache_size = 10\nport = 2525\n",
    )
    .unwrap();
    let p = cfg.probe;
    assert!(p.enabled && p.allow_private);
    assert_eq!(p.ehlo_name.as_deref(), Some("mx1.example.net"));
    assert_eq!(
        (
            p.connect_timeout.as_secs(),
            p.read_timeout.as_secs(),
            p.cache_ttl.as_secs()
        ),
        (2, 3, 3600)
    );
    assert_eq!(
        (p.concurrency, p.per_second, p.cache_size, p.port),
        (4, 7, 10, 2525)
    );
    let d = FileConfig::parse("t.toml", "[probe]\n").unwrap().probe;
    assert_eq!(d, crate::evidence::probe::ProbeSettings::default());
    assert!(!d.enabled && !d.allow_private);
    assert_err(
        "[probe]\nenable = true\n",
        2,
        "probe.enable",
        "unknown field",
    );
    assert_err(
        "[probe]\nehlo_name = \"a b\"\n",
        2,
        "probe.ehlo_name",
        "not a name to send with EHLO",
    );
    assert_err(
        "[probe]\nconnect_timeout = \"0s\"\n",
        2,
        "probe.connect_timeout",
        "out of range",
    );
    assert_err(
        "[probe]\nread_timeout = \"1h\"\n",
        2,
        "probe.read_timeout",
        "out of range",
    );
    assert_err(
        "[probe]\ncache_ttl = \"10s\"\n",
        2,
        "probe.cache_ttl",
        "out of range",
    );
    assert_err(
        "[probe]\nconcurrency = 0\n",
        2,
        "probe.concurrency",
        "not a number of probes at once",
    );
    assert_err(
        "[probe]\nper_second = 5000\n",
        2,
        "probe.per_second",
        "not a number of probes per second",
    );
    assert_err("[probe]\nport = 70000\n", 2, "probe.port", "not a TCP port");
    assert_err(
        "[probe]\ncache_size = -1\n",
        2,
        "probe.cache_size",
        "not a number of addresses",
    );
}
