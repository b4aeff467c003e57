//! End to end through the real `enforcer` binary: a veth pair between a client and a server network
//! namespace, `enforcer run` attached to the server side, real TCP connects from the client, IPv4 and
//! IPv6. Run as root: `cargo test -p tests --test netns_datapath -- --test-threads=1`.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tests::netns::{
    connect, Connect, Server, Topology, CLIENT_V4, CLIENT_V6, SERVER_V4, SERVER_V6,
};
use tests::process::{cli, cli_as_nobody, cli_ok, scrape, Daemon, Dirs};

const PORTS: [u16; 2] = [25, 587];
/// Long enough for a handshake across a veth, short enough that a dropped SYN is not retransmitted
/// (the first retransmit comes after 1 s).
const SHORT: Duration = Duration::from_millis(400);
const BLOCKED_WAIT: Duration = Duration::from_millis(1500);

fn server(v6: bool, port: u16) -> SocketAddr {
    let ip: IpAddr = if v6 { SERVER_V6 } else { SERVER_V4 }.parse().unwrap();
    SocketAddr::new(ip, port)
}

fn client(v6: bool) -> &'static str {
    if v6 {
        CLIENT_V6
    } else {
        CLIENT_V4
    }
}

/// A topology, a listening server on 25 and 587, unique dirs and a running daemon. Field order is
/// drop order: daemon first, then detach, then the namespaces.
struct Setup {
    daemon: Option<Daemon>,
    dirs: Dirs,
    _server: Server,
    t: Topology,
}

impl Setup {
    fn new(tag: &str, extra: &[&str]) -> Self {
        let t = Topology::new(tag);
        let server = Server::start(&t.server, &PORTS);
        let dirs = Dirs::new(tag);
        let daemon = Daemon::start(&t.server, &t.server_if, &dirs, extra);
        Self {
            daemon: Some(daemon),
            dirs,
            _server: server,
            t,
        }
    }

    fn connect(&self, v6: bool, port: u16, timeout: Duration) -> Connect {
        connect(&self.t.client, None, server(v6, port), timeout)
    }

    fn connect_from(&self, src: &str, v6: bool, timeout: Duration) -> Connect {
        connect(
            &self.t.client,
            Some(src.parse().unwrap()),
            server(v6, 25),
            timeout,
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        cli_ok(&self.dirs, args)
    }

    fn stats(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["stats", "--json"])).unwrap()
    }

    fn list(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["list", "--json"])).unwrap()
    }
}

fn counter(stats: &serde_json::Value, reason: &str, mode: &str) -> u64 {
    stats["counters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["reason"] == reason && c["mode"] == mode)
        .unwrap_or_else(|| panic!("no counter {reason}/{mode} in {stats}"))["packets"]
        .as_u64()
        .unwrap()
}

fn assert_connects(s: &Setup, v6: bool, what: &str) {
    for port in PORTS {
        let r = s.connect(v6, port, BLOCKED_WAIT);
        assert_eq!(
            r,
            Connect::Connected,
            "{what} (v6={v6}, port {port})\n{}",
            s.daemon.as_ref().map(|d| d.log_text()).unwrap_or_default()
        );
    }
}

fn assert_blocked(s: &Setup, v6: bool, what: &str) {
    let r = s.connect(v6, 25, BLOCKED_WAIT);
    assert_eq!(r, Connect::TimedOut, "{what} (v6={v6})");
}

#[test]
fn unlisted_source_connects_and_blocked_source_gets_no_handshake() {
    let s = Setup::new("blk", &[]);
    for v6 in [false, true] {
        assert_connects(&s, v6, "an unlisted source connects");
        s.ok(&["block", client(v6), "--reason", "test block"]);
        assert_blocked(&s, v6, "a blocked source gets no handshake");
        // A port that is not protected is untouched.
        let r = connect(&s.t.client, None, server(v6, 2525), SHORT);
        assert!(
            matches!(r, Connect::Refused(_)),
            "port 2525 has no listener: {r:?}"
        );
        s.ok(&["unset", client(v6)]);
        assert_connects(&s, v6, "unset lifts the block");
    }
    let st = s.stats();
    assert!(counter(&st, "blocked", "enforced") >= 2, "{st}");
    assert!(counter(&st, "no_entry", "enforced") >= 4, "{st}");
}

#[test]
fn rejected_source_is_refused_at_once() {
    let s = Setup::new("rej", &[]);
    for v6 in [false, true] {
        s.ok(&["reject", client(v6)]);
        match s.connect(v6, 25, BLOCKED_WAIT) {
            Connect::Refused(t) => assert!(t < Duration::from_millis(500), "refused after {t:?}"),
            other => panic!("expected connection refused (v6={v6}), got {other:?}"),
        }
    }
    let st = s.stats();
    assert!(counter(&st, "rejected", "enforced") >= 2, "{st}");
}

#[test]
fn rate_limit_lets_exactly_burst_through() {
    let s = Setup::new("rat", &[]);
    for v6 in [false, true] {
        s.ok(&["throttle", client(v6), "--rate", "3/min", "--burst", "3"]);
        let mut connected = 0;
        for _ in 0..10 {
            if s.connect(v6, 25, SHORT) == Connect::Connected {
                connected += 1;
            }
        }
        assert_eq!(
            connected, 3,
            "3/min burst 3 must admit exactly 3 of 10 (v6={v6})"
        );
    }
    let st = s.stats();
    assert_eq!(counter(&st, "rate_allowed", "enforced"), 6, "{st}");
    assert!(counter(&st, "rate_refused", "enforced") >= 14, "{st}");
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn throttle_window_in_force_and_not() {
    let s = Setup::new("thr", &[]);
    for v6 in [false, true] {
        // Phase so that the 30-minute window of every hour started one minute ago: in force.
        let into_hour = unix_now() % 3600;
        let phase = (into_hour + 3600 - 60) % 3600;
        s.ok(&[
            "throttle",
            client(v6),
            "--window",
            "30m",
            "--period",
            "1h",
            "--phase",
            &format!("{phase}s"),
        ]);
        assert_blocked(&s, v6, "inside the throttle window");
        // With --reject the refusal is a RST.
        s.ok(&[
            "throttle",
            client(v6),
            "--window",
            "30m",
            "--period",
            "1h",
            "--phase",
            &format!("{phase}s"),
            "--reject",
        ]);
        assert!(matches!(
            s.connect(v6, 25, BLOCKED_WAIT),
            Connect::Refused(_)
        ));
        // Phase so the window starts ten minutes from now: not in force.
        let phase = (unix_now() % 3600 + 600) % 3600;
        s.ok(&[
            "throttle",
            client(v6),
            "--window",
            "30m",
            "--period",
            "1h",
            "--phase",
            &format!("{phase}s"),
        ]);
        assert_connects(&s, v6, "outside the throttle window");
        let ex: serde_json::Value =
            serde_json::from_str(&s.ok(&["explain", client(v6), "--json"])).unwrap();
        assert_eq!(ex["reason"], "throttle_outside", "{ex}");
        assert_eq!(ex["matched"]["verdict"]["action"], "throttle", "{ex}");
    }
    let st = s.stats();
    assert!(counter(&st, "throttle_refused", "enforced") >= 4, "{st}");
    assert!(counter(&st, "throttle_outside", "enforced") >= 4, "{st}");
}

#[test]
fn ttl_expiry_lifts_the_entry() {
    let s = Setup::new("ttl", &[]);
    for v6 in [false, true] {
        let start = Instant::now();
        s.ok(&["block", client(v6), "--ttl", "2s"]);
        let r = s.connect(v6, 25, SHORT);
        assert!(
            start.elapsed() < Duration::from_millis(1800),
            "too slow to test a 2 s TTL"
        );
        assert_eq!(r, Connect::TimedOut, "blocked before the TTL (v6={v6})");
        std::thread::sleep(Duration::from_millis(2600).saturating_sub(start.elapsed()));
        assert_connects(&s, v6, "after the TTL");
        let ex: serde_json::Value =
            serde_json::from_str(&s.ok(&["explain", client(v6), "--json"])).unwrap();
        assert!(
            ex["reason"] == "expired" || ex["reason"] == "no_entry",
            "{ex}"
        );
    }
}

#[test]
fn allow_inside_a_blocked_prefix() {
    let s = Setup::new("alw", &[]);
    s.t.add_client_addr("10.200.1.3/24");
    s.t.add_client_addr("fd00:200::3/64");
    for (v6, prefix, allowed, other) in [
        (false, "10.200.1.0/24", CLIENT_V4, "10.200.1.3"),
        (true, "fd00:200::/64", CLIENT_V6, "fd00:200::3"),
    ] {
        s.ok(&["block", prefix]);
        s.ok(&["allow", allowed]);
        assert_eq!(
            s.connect_from(allowed, v6, BLOCKED_WAIT),
            Connect::Connected,
            "allowed host inside the blocked prefix"
        );
        assert_eq!(
            s.connect_from(other, v6, BLOCKED_WAIT),
            Connect::TimedOut,
            "another host of the blocked prefix"
        );
        let ex: serde_json::Value =
            serde_json::from_str(&s.ok(&["explain", other, "--json"])).unwrap();
        assert_eq!(ex["matched"]["prefix"], format!("{prefix}"), "{ex}");
        assert_eq!(ex["verdict"], "drop", "{ex}");
        s.ok(&["unset", prefix]);
        s.ok(&["unset", allowed]);
    }
    let st = s.stats();
    assert!(counter(&st, "allowed", "enforced") >= 2, "{st}");
}

#[test]
fn report_only_passes_but_counts() {
    let s = Setup::new("rpo", &["--report-only"]);
    for v6 in [false, true] {
        s.ok(&["block", client(v6)]);
        assert_connects(&s, v6, "report-only lets a blocked source through");
    }
    let st = s.stats();
    assert_eq!(st["report_only"], true, "{st}");
    assert!(counter(&st, "blocked", "report_only") >= 4, "{st}");
    assert_eq!(counter(&st, "blocked", "enforced"), 0, "{st}");
    let ex: serde_json::Value =
        serde_json::from_str(&s.ok(&["explain", CLIENT_V4, "--json"])).unwrap();
    assert_eq!(
        (ex["verdict"].as_str(), ex["would"].as_str()),
        (Some("pass"), Some("drop"))
    );
    // The same counters on /metrics, read from the kernel at scrape time.
    let d = s.daemon.as_ref().unwrap();
    let body = scrape(&s.t.server, d.metrics_addr());
    assert!(body.contains("enforcer_kernel_report_only 1"), "{body}");
    // Counted under the interface it arrived on, per address family.
    let sum = |family: &str| -> u64 {
        let want = format!(
            r#"enforcer_kernel_packets_total{{interface="{}",family="{family}",reason="blocked",action="would_drop",mode="report_only"}} "#,
            s.t.server_if
        );
        let line = body
            .lines()
            .find(|l| l.starts_with(&want))
            .unwrap_or_else(|| panic!("no {want} in\n{body}"));
        line[want.len()..].trim().parse().unwrap()
    };
    assert!(sum("ipv4") >= 1 && sum("ipv6") >= 1, "{body}");
    assert!(sum("ipv4") + sum("ipv6") >= 4, "{body}");
    assert!(
        body.contains(&format!(
            r#"enforcer_kernel_attached{{interface="{}",mode="#,
            s.t.server_if
        )),
        "{body}"
    );
    assert!(
        body.contains(r#"enforcer_kernel_map_capacity{map="policy_v4_hosts"} "#),
        "{body}"
    );
    assert!(
        body.contains(r#"enforcer_kernel_map_entries{map="policy_v4_hosts"} 1"#),
        "{body}"
    );
}

#[test]
fn sigkill_keeps_enforcing_and_restart_adopts() {
    let mut s = Setup::new("sgk", &[]);
    s.ok(&["block", CLIENT_V4, "--reason", "kept"]);
    s.ok(&["reject", CLIENT_V6]);
    s.ok(&[
        "throttle",
        "192.0.2.0/24",
        "--rate",
        "10/min",
        "--ttl",
        "1h",
    ]);
    let before = s.list();
    s.daemon.take().unwrap().kill9();
    assert_blocked(&s, false, "block after SIGKILL");
    assert!(matches!(
        s.connect(true, 25, BLOCKED_WAIT),
        Connect::Refused(_)
    ));
    // Operator commands work on the pinned maps with no daemon running.
    s.ok(&["block", "198.51.100.7"]);
    s.ok(&["unset", "198.51.100.7"]);
    assert_eq!(s.list(), before, "entries without a daemon");
    // Restart while a client keeps trying: the program swap is atomic, so no SYN gets through.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (d, tries, leaks) = std::thread::scope(|sc| {
        let prober = sc.spawn(|| {
            let (mut tries, mut leaks) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && tries < 500 {
                tries += 1;
                if s.connect(false, 25, Duration::from_millis(150)) == Connect::Connected {
                    leaks += 1;
                }
            }
            (tries, leaks)
        });
        let d = Daemon::start(&s.t.server, &s.t.server_if, &s.dirs, &[]);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (tries, leaks) = prober.join().unwrap();
        (d, tries, leaks)
    });
    assert!(
        tries > 2,
        "the prober ran during the restart ({tries} tries)"
    );
    assert_eq!(
        leaks, 0,
        "{leaks} of {tries} connects got through during the restart"
    );
    let log = d.log_text();
    let adopted = format!(
        "adopted {} pinned maps",
        enforcer_common::maps::ALL_MAPS.len()
    );
    assert!(log.contains(&adopted), "{log}");
    assert!(log.contains("adopted the pinned"), "{log}");
    s.daemon = Some(d);
    assert_eq!(
        s.list(),
        before,
        "a restarted daemon lists the same entries"
    );
    assert_blocked(&s, false, "block after restart");
    assert!(matches!(
        s.connect(true, 25, BLOCKED_WAIT),
        Connect::Refused(_)
    ));
    s.ok(&["unset", CLIENT_V4]);
    assert_connects(&s, false, "unset after restart");
    // A clean stop leaves enforcement in place too.
    assert!(s.daemon.take().unwrap().stop(), "daemon exits 0 on SIGTERM");
    assert!(matches!(
        s.connect(true, 25, BLOCKED_WAIT),
        Connect::Refused(_)
    ));
}

#[test]
fn bad_input_exits_2_and_changes_nothing() {
    let s = Setup::new("bad", &[]);
    s.ok(&["block", "192.0.2.0/24", "--reason", "baseline"]);
    let before = s.list();
    let cases: &[&[&str]] = &[
        &["block", "10.0.0.0/33"],
        &["block", "::1/129"],
        &["reject", "300.1.1.1"],
        &["allow", "10.1.2.3/16"],
        &["block", "192.0.2.9", "--ttl", "0s"],
        &["block", "192.0.2.9", "--ttl", "30"],
        &["throttle", "192.0.2.9", "--rate", "0/min"],
        &["throttle", "192.0.2.9", "--rate", "3/min", "--burst", "0"],
        &["throttle", "192.0.2.9", "--window", "2h", "--period", "1h"],
        &[
            "throttle",
            "192.0.2.9",
            "--window",
            "5m",
            "--period",
            "1h",
            "--phase",
            "1h",
        ],
        &["throttle", "192.0.2.9"],
        &["unset", "203.0.113.1"],
        &["explain", "192.0.2.0/24"],
    ];
    for args in cases {
        let out = cli(&s.dirs, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "enforcer {args:?}: {err}");
        assert!(!err.trim().is_empty(), "enforcer {args:?} says why");
        assert_eq!(s.list(), before, "enforcer {args:?} changed the entries");
    }
    // The one-line messages say what is wrong.
    let out = cli(&s.dirs, &["block", "10.0.0.0/33"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("0 to 32"), "{err}");
    // No datapath pinned: exit 2 and the fix.
    let other = Dirs::new("nopin");
    let out = cli(&other, &["block", "192.0.2.1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("enforcer run --iface"), "{err}");
    // Missing privileges: exit 2 and say so, for reads, writes and run.
    for args in [
        &["list"][..],
        &["block", "192.0.2.1"],
        &["run", "--iface", "lo"],
    ] {
        let out = cli_as_nobody(&s.dirs, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "as nobody: enforcer {args:?}: {err}"
        );
        assert!(err.contains("root"), "{err}");
    }
    assert_eq!(s.list(), before);
    // Unknown interface: exit 2 before anything is loaded.
    let out = cli(&other, &["run", "--iface", "nosuchif0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!other.pin_dir.exists(), "nothing was pinned for a bad run");
}

#[test]
fn detach_removes_programs_links_and_pins() {
    let mut s = Setup::new("det", &[]);
    s.ok(&["block", CLIENT_V4]);
    assert_blocked(&s, false, "blocked before detach");
    // A second daemon on the same state directory is refused, and changes nothing.
    let out = cli(&s.dirs, &["run", "--iface", "lo"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("already uses"), "{err}");
    assert_blocked(&s, false, "still blocked");
    assert!(s.daemon.take().unwrap().stop());
    let out = s.ok(&["detach"]);
    assert!(out.contains("detached"), "{out}");
    assert!(!s.dirs.pin_dir.exists(), "pin dir removed");
    assert_connects(&s, false, "nothing enforces after detach");
    let link = std::process::Command::new("ip")
        .args(["-n", &s.t.server.name, "-d", "link", "show", &s.t.server_if])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&link.stdout);
    assert!(
        !text.contains("prog/xdp"),
        "XDP program still attached: {text}"
    );
    // The store keeps the operator entry: the next run restores it.
    let d = Daemon::start(&s.t.server, &s.t.server_if, &s.dirs, &[]);
    s.daemon = Some(d);
    assert_blocked(&s, false, "restored from the store after detach and run");
}

#[test]
fn tc_mode_enforces_too() {
    let s = Setup::new("tcm", &["--mode", "tc"]);
    let log = s.daemon.as_ref().unwrap().log_text();
    assert!(
        log.contains("attached as tcx") || log.contains("attached as clsact"),
        "{log}"
    );
    for v6 in [false, true] {
        s.ok(&["block", client(v6)]);
        assert_blocked(&s, v6, "blocked via TC");
        s.ok(&["reject", client(v6)]);
        assert!(
            matches!(s.connect(v6, 25, BLOCKED_WAIT), Connect::Refused(_)),
            "rejected via TC (v6={v6})"
        );
    }
}

#[test]
fn several_interfaces_are_enforced_and_detached() {
    let mut t = Topology::new("two");
    let (srv2, _cli2) = t.add_second_pair();
    let _server = Server::start(&t.server, &PORTS);
    let dirs = Dirs::new("two");
    let daemon = Daemon::start_on(&t.server, &[&t.server_if, &srv2], &dirs, &[]);
    let dst2: SocketAddr = "10.200.2.1:25".parse().unwrap();
    cli_ok(&dirs, &["block", CLIENT_V4]);
    cli_ok(&dirs, &["block", "10.200.2.2"]);
    assert_eq!(
        connect(&t.client, None, server(false, 25), BLOCKED_WAIT),
        Connect::TimedOut
    );
    assert_eq!(
        connect(&t.client, None, dst2, BLOCKED_WAIT),
        Connect::TimedOut
    );
    assert!(daemon.stop());
    let out = cli_ok(&dirs, &["detach"]);
    assert_eq!(out.matches("detached").count(), 2, "{out}");
    assert_eq!(
        connect(&t.client, None, dst2, BLOCKED_WAIT),
        Connect::Connected
    );
    assert_eq!(
        connect(&t.client, None, server(false, 25), BLOCKED_WAIT),
        Connect::Connected
    );
}
