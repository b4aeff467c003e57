//! The kernel-steered notice responder against a real Postfix, as root: Postfix (no milter, no
//! policy service: the MTA knows nothing of enforcer) listens on port 25 in a server namespace;
//! enforcer runs there with `--notice-responder`, its `sk_lookup` program attached to that namespace
//! (`notice.netns = "<name>"`); swaks sends from a client namespace.
//!
//! Compressed schedule as in `milter_postfix`: a 20 s period with a throttle window over [0 s, 6 s)
//! and a block window over [8 s, 14 s), `refusal = "notice"`. A sender inside a window reads the
//! responder's `450 4.7.230`/`550 5.7.230` text and never reaches Postfix; outside the windows, and
//! for a source without an entry, Postfix answers.
//!
//! Run: `cargo test -p tests --test responder -- --test-threads=1` (root; postfix and swaks
//! installed by `cargo xtask setup`).

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tests::clock::{wait_phase, wait_until};
use tests::netns::{connect, Connect, Topology, CLIENT_V4, CLIENT_V6, SERVER_V4, SERVER_V6};
use tests::postfix::{self, message, swaks, Postfix};
use tests::process::{enforcer_bin, scrape, Daemon, Dirs};

/// A second client address without any entry.
const OTHER_V4: &str = "10.200.1.3";

const PERIOD: f64 = 20.0;
const IN_THROTTLE: f64 = 1.0;
const IN_BLOCK: f64 = 9.0;
const OUTSIDE: f64 = 15.0;

const THROTTLE_TEXT: &str =
    "TEST throttle for {host} running {build}: {minutes} mins/{period}, stage {stage}";
const BLOCK_TEXT: &str =
    "TEST block for {host} running {build}: {minutes} mins/{period}, stage {stage}";
const EX2013_BUILD: &str = "15.0.1497.2";

fn ex2013_by(host_ip: &str) -> String {
    format!(
        "Received: from EX01.sender.example (10.1.2.3) by EX02.sender.example ({host_ip}) with Microsoft SMTP Server (TLS) id {EX2013_BUILD}; Tue, 1 Dec 2026 10:11:12 +0000"
    )
}

fn config(netns: &str, notice_rate: &str, fallback: &str) -> String {
    format!(
        r#"ports = [25]

[[enforcement.stages]]
after = "0s"
action = "windows"
period = "20s"
throttle = "6s"
block_at = "8s"
block = "6s"
refusal = "notice"
notice_rate = "{notice_rate}"

[notice]
responder = true
netns = "{netns}"
fallback = "{fallback}"

[replies]
throttle = "{THROTTLE_TEXT}"
block = "{BLOCK_TEXT}"
"#
    )
}

/// Postfix first on drop (it needs the namespace), then the daemon, the directories (detach: links
/// including the sk_lookup one, pins) and the namespaces.
struct Rig {
    postfix: Option<Postfix>,
    daemon: Option<Daemon>,
    dirs: Dirs,
    topo: Topology,
}

impl Rig {
    fn new(tag: &str, notice_rate: &str, fallback: &str) -> Rig {
        assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root");
        let topo = Topology::new(tag);
        topo.add_client_addr(&format!("{OTHER_V4}/24"));
        let dirs = Dirs::new(tag);
        let mut rig = Rig {
            postfix: None,
            daemon: None,
            dirs,
            topo,
        };
        rig.write_config(notice_rate, fallback);
        rig.start_daemon();
        rig.postfix = Some(Postfix::start(
            &rig.topo.server,
            tag,
            &[SERVER_V4, SERVER_V6],
            &[],
        ));
        rig
    }

    fn write_config(&self, notice_rate: &str, fallback: &str) {
        std::fs::create_dir_all(&self.dirs.state_dir).unwrap();
        std::fs::write(
            self.dirs.state_dir.join("enforcer.toml"),
            config(&self.topo.server.name, notice_rate, fallback),
        )
        .unwrap();
    }

    fn start_daemon(&mut self) {
        let cfg = self.dirs.state_dir.join("enforcer.toml");
        let cfg = cfg.display().to_string();
        let d = Daemon::start(
            &self.topo.server,
            &self.topo.server_if,
            &self.dirs,
            &["--config", &cfg, "--notice-responder"],
        );
        assert!(
            wait_until(Duration::from_secs(20), || d
                .log_text()
                .contains("sockets registered")),
            "the responder never registered its sockets:\n{}",
            d.log_text()
        );
        self.daemon = Some(d);
    }

    fn postfix(&self) -> &Postfix {
        self.postfix.as_ref().unwrap()
    }

    fn send(&self, src: &str, subject: &str) -> postfix::Swaks {
        let server = if src.contains(':') {
            SERVER_V6
        } else {
            SERVER_V4
        };
        swaks(
            &self.topo.client,
            server,
            Some(src),
            "EX02.sender.example",
            &message(&[], subject),
        )
    }

    /// A bare TCP connect from `src` to Postfix's port, with a short timeout.
    fn connect(&self, src: &str) -> Connect {
        let server: SocketAddr = if src.contains(':') {
            format!("[{SERVER_V6}]:25")
        } else {
            format!("{SERVER_V4}:25")
        }
        .parse()
        .unwrap();
        connect(
            &self.topo.client,
            Some(src.parse().unwrap()),
            server,
            Duration::from_millis(1500),
        )
    }

    fn metrics(&self) -> String {
        let d = self.daemon.as_ref().unwrap();
        scrape(&self.topo.server, d.metrics_addr())
    }

    /// Makes `ip` an enforced Exchange 2013 sender through `enforcer evidence`, and waits for it.
    fn enforce(&self, ip: &str) {
        let mut child = Command::new(enforcer_bin())
            .args(["evidence", ip, "-", "--json", "--socket"])
            .arg(self.dirs.state_dir.join("enforcer.sock"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{}\r\n\r\n", ex2013_by(ip)).as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "enforcer evidence {ip} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ok = wait_until(Duration::from_secs(15), || {
            let out = Command::new(enforcer_bin())
                .args(["sender", ip, "--json", "--socket"])
                .arg(self.dirs.state_dir.join("enforcer.sock"))
                .output()
                .unwrap();
            out.status.success()
                && serde_json::from_slice::<serde_json::Value>(&out.stdout)
                    .is_ok_and(|v| v["state"] == "enforcing")
        });
        assert!(ok, "{ip} never became an enforced sender");
    }

    /// Postfix's log lines about a connection from `ip`.
    fn postfix_saw(&self, ip: &str) -> bool {
        self.postfix().maillog().contains(&format!("[{ip}]"))
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        drop(self.postfix.take());
        drop(self.daemon.take());
    }
}

/// Fails when a check that had to happen inside one window ran past it (a slow machine).
fn assert_within(start: Instant, limit: f64, what: &str) {
    let took = start.elapsed().as_secs_f64();
    assert!(
        took < limit,
        "{what} took {took:.1} s, longer than the window had left"
    );
}

/// The sum of every sample of `name` whose labels contain `label`.
fn sum_samples(body: &str, name: &str, label: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn kernel(body: &str, reason: &str) -> f64 {
    sum_samples(
        body,
        "enforcer_kernel_packets_total",
        &format!("reason=\"{reason}\""),
    )
}

fn assert_notice(s: &postfix::Swaks, want: &str, what: &str, rig: &Rig) {
    let reply = s.reply_to("MAIL FROM").unwrap_or_default();
    assert!(
        reply.starts_with(want),
        "{what}: MAIL FROM answered {reply:?}, want {want:?}; transcript:\n{}\ndaemon log:\n{}",
        s.transcript,
        rig.daemon.as_ref().unwrap().log_text()
    );
    assert!(
        s.transcript.contains("220 ") && s.transcript.contains("ESMTP enforcer notice service"),
        "{what}: the greeting was not the responder's:\n{}",
        s.transcript
    );
}

fn assert_postfix_answered(s: &postfix::Swaks, what: &str, rig: &Rig) {
    assert!(
        s.accepted(),
        "{what}: Postfix did not accept the message; transcript:\n{}\nmaillog:\n{}",
        s.transcript,
        rig.postfix().maillog()
    );
}

#[test]
fn responder_answers_senders_in_notice_windows_and_postfix_everyone_else() {
    // The steering decisions reach the daemon's log through aya-log when asked for (the daemon
    // inherits the variable; tests run one at a time).
    // SAFETY: no other thread reads the environment now (--test-threads=1).
    unsafe { std::env::set_var("ENFORCER_KERNEL_LOG", "info") };
    let rig = Rig::new("rsp", "2/10m", "drop");
    unsafe { std::env::remove_var("ENFORCER_KERNEL_LOG") };
    rig.enforce(CLIENT_V4);
    rig.enforce(CLIENT_V6);

    // Throttle window: the enforced sender reads the throttle text from the responder, twice (its
    // budget), the third SYN is dropped in the kernel; a source without an entry talks to Postfix.
    wait_phase(IN_THROTTLE - 0.5, PERIOD);
    let start = Instant::now();
    let want_v4 = format!("450 4.7.230 TEST throttle for {CLIENT_V4} running {EX2013_BUILD}");
    for i in 0..2 {
        let s = rig.send(CLIENT_V4, &format!("throttle {i}"));
        assert_notice(
            &s,
            &want_v4,
            &format!("IPv4 connect {i} in the throttle window"),
            &rig,
        );
    }
    let s = rig.send(CLIENT_V6, "throttle v6");
    let want_v6 = format!("450 4.7.230 TEST throttle for {CLIENT_V6} running {EX2013_BUILD}");
    assert_notice(&s, &want_v6, "IPv6 connect in the throttle window", &rig);
    assert_eq!(
        rig.connect(CLIENT_V4),
        Connect::TimedOut,
        "an IPv4 SYN past the notice budget was not dropped"
    );
    let s = rig.send(OTHER_V4, "no entry");
    assert_within(start, 5.5, "the throttle-window checks");
    assert_postfix_answered(
        &s,
        "a source without an entry, in the throttle window",
        &rig,
    );
    assert!(
        !rig.postfix_saw(CLIENT_V4) && !rig.postfix_saw(CLIENT_V6),
        "Postfix saw a connection from a steered sender:\n{}",
        rig.postfix().maillog()
    );

    // Block window: the IPv6 sender has one token left and reads the block text.
    wait_phase(IN_BLOCK, PERIOD);
    let start = Instant::now();
    let s = rig.send(CLIENT_V6, "block v6");
    assert_within(start, 4.5, "the block-window check");
    let want = format!("550 5.7.230 TEST block for {CLIENT_V6} running {EX2013_BUILD}");
    assert_notice(&s, &want, "IPv6 connect in the block window", &rig);
    assert!(!rig.postfix_saw(CLIENT_V6), "Postfix saw the IPv6 sender");

    let m = rig.metrics();
    assert!(
        kernel(&m, "notice_steered") >= 4.0 && kernel(&m, "notice_refused") >= 1.0,
        "kernel counters: steered {}, refused {}:\n{m}",
        kernel(&m, "notice_steered"),
        kernel(&m, "notice_refused")
    );
    assert_eq!(kernel(&m, "notice_fallback_dropped"), 0.0, "{m}");
    let log = rig.daemon.as_ref().unwrap().log_text();
    for src in [CLIENT_V4, CLIENT_V6] {
        let line = format!("sk_lookup: {src} to port 25: steered to the notice responder");
        assert!(log.contains(&line), "no kernel log line {line:?}:\n{log}");
    }
    let replies = |code: &str| {
        sum_samples(
            &m,
            "enforcer_responder_replies_total",
            &format!("code=\"{code}\""),
        )
    };
    assert!(
        replies("450") >= 3.0 && replies("550") >= 1.0 && replies("221") >= 4.0,
        "responder replies:\n{m}"
    );

    // Outside the windows the sender talks to Postfix again.
    wait_phase(OUTSIDE, PERIOD);
    let start = Instant::now();
    let s = rig.send(CLIENT_V4, "outside");
    assert_within(start, 4.5, "the outside check");
    assert_postfix_answered(&s, "the enforced sender outside its windows", &rig);
    assert!(rig.postfix_saw(CLIENT_V4));
}

#[test]
fn responder_fallback_holds_while_the_daemon_is_down_and_a_restart_notices_again() {
    let mut rig = Rig::new("rsf", "20/10m", "drop");
    rig.enforce(CLIENT_V4);
    let want = format!("450 4.7.230 TEST throttle for {CLIENT_V4} running {EX2013_BUILD}");

    // Daemon killed: the pinned sk_lookup link stays, its socket is gone: fallback "drop".
    rig.daemon.take().unwrap().kill9();
    wait_phase(IN_THROTTLE, PERIOD);
    let start = Instant::now();
    // The failed socket lookup makes TCP refuse the SYN (a RST: "connection refused"); the sender
    // never reaches Postfix and retries later.
    let c = rig.connect(CLIENT_V4);
    assert!(
        matches!(c, Connect::Refused(_) | Connect::TimedOut),
        "with the daemon down and fallback = drop, a SYN in the window connected: {c:?}"
    );
    let s = rig.send(OTHER_V4, "no entry, daemon down");
    assert_within(start, 5.5, "the fallback-drop checks");
    assert_postfix_answered(
        &s,
        "a source without an entry while the daemon is down",
        &rig,
    );
    assert!(
        !rig.postfix_saw(CLIENT_V4),
        "Postfix saw the dropped sender"
    );

    // Restarted: notices again, and the kernel counted the fallback drop.
    rig.start_daemon();
    let m = rig.metrics();
    assert!(kernel(&m, "notice_fallback_dropped") >= 1.0, "{m}");
    wait_phase(IN_THROTTLE, PERIOD);
    let start = Instant::now();
    let s = rig.send(CLIENT_V4, "after restart");
    assert_within(start, 5.5, "the restart check");
    assert_notice(&s, &want, "after a restart", &rig);
    let log = rig.daemon.as_ref().unwrap().log_text();
    assert!(
        !log.contains("sk_lookup:"),
        "kernel logging is off by default, yet:\n{log}"
    );

    // fallback = "pass": with the daemon down, Postfix answers the sender.
    rig.daemon.take().unwrap().stop();
    rig.write_config("20/10m", "pass");
    rig.start_daemon();
    rig.daemon.take().unwrap().kill9();
    wait_phase(IN_THROTTLE, PERIOD);
    let start = Instant::now();
    let s = rig.send(CLIENT_V4, "daemon down, pass");
    assert_within(start, 5.5, "the fallback-pass check");
    assert_postfix_answered(&s, "fallback = pass with the daemon down", &rig);
    assert!(rig.postfix_saw(CLIENT_V4));
}
