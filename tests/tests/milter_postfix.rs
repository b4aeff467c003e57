//! A real Postfix (Debian's) in front of enforcer's milter and policy service, as root: Postfix runs
//! as its own instance (temp config/queue/data directories) in a server namespace, enforcer runs in
//! the same namespace with `--milter inet:127.0.0.1:8895` or `--policy inet:127.0.0.1:10040`, and
//! swaks sends from a client namespace (10.200.1.2, 10.200.1.3, fd00:200::2).
//!
//! The schedule is compressed: one stage from the start, a 20 s period (aligned to the Unix epoch,
//! like the kernel's) with a throttle window over [0 s, 6 s) and a block window over [8 s, 14 s).
//! The datapath protects port 2525 only, so the kernel never drops the SYNs to Postfix's port 25:
//! what these tests see is the SMTP answer alone (the `notice` refusal joins both).
//!
//! Run: `cargo test -p tests --test milter_postfix -- --test-threads=1` (root; postfix and swaks
//! installed by `cargo xtask setup`).

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use tests::clock::{wait_phase, wait_until};
use tests::milter::{self as mc, Client};
use tests::netns::{Topology, CLIENT_V4, CLIENT_V6, SERVER_V4, SERVER_V6};
use tests::postfix::{self, message, milter_settings, policy_settings, swaks, Postfix};
use tests::process::{enforcer_bin, scrape, Daemon, Dirs};

const MILTER: &str = "inet:127.0.0.1:8895";
const MILTER_ADDR: &str = "127.0.0.1:8895";
const POLICY: &str = "inet:127.0.0.1:10040";
/// A second client address: a gateway that relays someone else's Exchange.
const GATEWAY_V4: &str = "10.200.1.3";

const PERIOD: f64 = 20.0;
/// Phases (seconds into a period) well inside each window; a swaks session takes about a second.
const IN_THROTTLE: f64 = 1.0;
const IN_BLOCK: f64 = 9.0;
const OUTSIDE: f64 = 15.0;

const THROTTLE_TEXT: &str = "TEST throttle for {host} running {build}: {minutes} mins/{period}, stage {stage}, upgrade to {upgrade_to}, see {info_url}";
const BLOCK_TEXT: &str =
    "TEST block for {host} running {build}: {minutes} mins/{period}, stage {stage}, see {info_url}";
const INFO_URL: &str = "https://enforcer.test/why";

const EX2013_BUILD: &str = "15.0.1497.2";

/// The newest Received field, written by the sending host itself (`by` names its address): an
/// Exchange 2013 CU23 build.
fn ex2013_by(host_ip: &str) -> String {
    format!(
        "Received: from EX01.sender.example (10.1.2.3) by EX02.sender.example ({host_ip}) with Microsoft SMTP Server (TLS) id {EX2013_BUILD}; Tue, 1 Dec 2026 10:11:12 +0000"
    )
}

/// The same host after its upgrade to Exchange Server SE (supported).
fn exse_by(host_ip: &str) -> String {
    format!(
        "Received: from EX01.sender.example (10.1.2.3) by EX02.sender.example ({host_ip}) with Microsoft SMTP Server (TLS) id 15.2.2562.46; Tue, 1 Dec 2026 11:11:12 +0000"
    )
}

fn config(report_only: bool) -> String {
    format!(
        r#"ports = [2525]
report_only = {report_only}

[[enforcement.stages]]
after = "0s"
action = "windows"
period = "20s"
throttle = "6s"
block_at = "8s"
block = "6s"

[replies]
throttle = "{THROTTLE_TEXT}"
block = "{BLOCK_TEXT}"
info_url = "{INFO_URL}"
"#
    )
}

/// Topology, enforcer and Postfix; dropped Postfix first (it needs the namespace to stop), then the
/// daemon, its directories, and the namespaces.
struct Rig {
    postfix: Option<Postfix>,
    daemon: Option<Daemon>,
    dirs: Dirs,
    topo: Topology,
}

impl Rig {
    /// `listener`: the daemon flags (`--milter SPEC` or `--policy SPEC`); `mta`: Postfix settings.
    fn new(tag: &str, report_only: bool, listener: &[&str], mta: &[(String, String)]) -> Rig {
        Rig::with_config(tag, &config(report_only), listener, Some(mta))
    }

    /// Like [`Rig::new`] with any configuration file; no Postfix when `mta` is `None`.
    fn with_config(
        tag: &str,
        config: &str,
        listener: &[&str],
        mta: Option<&[(String, String)]>,
    ) -> Rig {
        assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root");
        let topo = Topology::new(tag);
        topo.add_client_addr(&format!("{GATEWAY_V4}/24"));
        let dirs = Dirs::new(tag);
        std::fs::create_dir_all(&dirs.state_dir).unwrap();
        let cfg = dirs.state_dir.join("enforcer.toml");
        std::fs::write(&cfg, config).unwrap();
        let cfg = cfg.display().to_string();
        let mut extra = vec!["--config", cfg.as_str()];
        extra.extend_from_slice(listener);
        let daemon = Daemon::start(&topo.server, &topo.server_if, &dirs, &extra);
        let want = if listener.contains(&"--milter") {
            "milter on"
        } else {
            "policy service on"
        };
        assert!(
            wait_until(Duration::from_secs(20), || daemon.log_text().contains(want)),
            "no `{want}` in the daemon log:\n{}",
            daemon.log_text()
        );
        let postfix = mta.map(|s| Postfix::start(&topo.server, tag, &[SERVER_V4, SERVER_V6], s));
        Rig {
            postfix,
            daemon: Some(daemon),
            dirs,
            topo,
        }
    }

    fn postfix(&self) -> &Postfix {
        self.postfix.as_ref().unwrap()
    }

    fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().unwrap()
    }

    /// swaks from `src` (IPv4 or IPv6) with `received` as the message's newest fields.
    fn send(&self, src: &str, received: &[&str], subject: &str) -> postfix::Swaks {
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
            &message(received, subject),
        )
    }

    /// `enforcer sender IP --json`, or `None` when the daemon has no record for it.
    fn sender(&self, ip: &str) -> Option<serde_json::Value> {
        let out = ctl(&self.dirs, &["sender", ip, "--json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).expect("sender --json is JSON"))
    }

    /// Waits (bounded) until the sender's record satisfies `pred`; panics with the last view.
    fn wait_sender(&self, ip: &str, what: &str, pred: impl Fn(&serde_json::Value) -> bool) {
        let mut last = None;
        let ok = wait_until(Duration::from_secs(15), || {
            last = self.sender(ip);
            last.as_ref().is_some_and(&pred)
        });
        assert!(
            ok,
            "{ip}: {what} did not happen within 15 s; last view: {last:#?}\ndaemon log:\n{}",
            self.daemon().log_text()
        );
    }

    fn metrics(&self) -> String {
        scrape(&self.topo.server, self.daemon().metrics_addr())
    }

    /// Runs `f` on a thread inside the server namespace (where the milter listens on loopback).
    fn in_server<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.topo.server.run(f)
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        drop(self.postfix.take());
        drop(self.daemon.take());
    }
}

/// `enforcer <args> --socket <state dir>/enforcer.sock`: a command that talks to the daemon.
fn ctl(dirs: &Dirs, args: &[&str]) -> std::process::Output {
    ctl_cmd(dirs, args).output().expect("running enforcer")
}

fn ctl_cmd(dirs: &Dirs, args: &[&str]) -> Command {
    let mut c = Command::new(enforcer_bin());
    c.args(args)
        .arg("--socket")
        .arg(dirs.state_dir.join("enforcer.sock"));
    c
}

/// Sends at phase `at` and checks the session ended inside the same window (`within` seconds), so
/// a slow machine fails with a clear message instead of a wrong verdict.
fn send_at(
    rig: &Rig,
    at: f64,
    within: f64,
    src: &str,
    received: &[&str],
    subject: &str,
) -> postfix::Swaks {
    wait_phase(at, PERIOD);
    let start = Instant::now();
    let s = rig.send(src, received, subject);
    let took = start.elapsed().as_secs_f64();
    assert!(
        took < within,
        "the swaks session took {took:.1} s, longer than the {within} s the window had left; transcript:\n{}",
        s.transcript
    );
    s
}

/// The value of the sample `name{labels}` (exactly as printed) in a scrape, 0 when absent.
fn sample(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .trim()
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

fn assert_accepted(s: &postfix::Swaks, what: &str, pf: &Postfix) {
    assert!(
        s.accepted(),
        "{what}: the message was not accepted; transcript:\n{}\nmaillog:\n{}",
        s.transcript,
        pf.maillog()
    );
}

/// Sends the Exchange 2013 message from `src` and waits for the record the milter's evidence makes.
fn first_sighting(rig: &Rig, src: &str) {
    let ex = ex2013_by(src);
    let s = rig.send(src, &[&ex], "first");
    assert_accepted(
        &s,
        "the first message of an unknown sender (its evidence arrives after MAIL)",
        rig.postfix(),
    );
    rig.wait_sender(src, "a record with the Exchange 2013 build", |v| {
        v["build"] == EX2013_BUILD && v["state"] == "enforcing"
    });
}

#[test]
fn postfix_milter_attributes_and_answers_per_window() {
    let rig = Rig::new(
        "pmw",
        false,
        &["--milter", MILTER],
        &milter_settings(MILTER),
    );

    // The record appears with that build, attributed to the swaks address (IPv4 and IPv6).
    first_sighting(&rig, CLIENT_V4);
    let v = rig.sender(CLIENT_V4).unwrap();
    assert_eq!(v["prefix"], format!("{CLIENT_V4}/32"), "{v:#}");
    assert_eq!(v["product"], "exchange", "{v:#}");
    assert_eq!(
        v["addresses"],
        serde_json::json!([CLIENT_V4]),
        "attributed to the connecting address: {v:#}"
    );
    first_sighting(&rig, CLIENT_V6);
    assert_eq!(
        rig.sender(CLIENT_V6).unwrap()["prefix"],
        format!("{CLIENT_V6}/128")
    );

    // Exchange only below a non-Exchange connecting hop: not the gateway's build.
    let gw = format!(
        "Received: from EX01.corp.example (10.1.2.3) by gw.relay.example ({GATEWAY_V4}) (Postfix) with ESMTPS id 4Zx9Kq1abcz; Tue, 1 Dec 2026 10:11:13 +0000"
    );
    let inner = "Received: from EX00.corp.example (10.1.2.2) by EX01.corp.example (10.1.2.3) with Microsoft SMTP Server (TLS) id 15.0.1497.2; Tue, 1 Dec 2026 10:11:12 +0000";
    let s = rig.send(GATEWAY_V4, &[&gw, inner], "via gateway");
    assert_accepted(&s, "the gateway's first message", rig.postfix());
    rig.wait_sender(GATEWAY_V4, "a record for the gateway", |_| true);
    let g = rig.sender(GATEWAY_V4).unwrap();
    assert_ne!(
        g["build"], EX2013_BUILD,
        "the Exchange below the gateway was pinned on it: {g:#}"
    );
    assert_ne!(g["product"], "exchange", "{g:#}");
    assert_ne!(g["state"], "enforcing", "{g:#}");

    // Throttle window: 450 4.7.230 and the configured text, at MAIL FROM.
    let s = send_at(&rig, IN_THROTTLE, 4.5, CLIENT_V4, &[], "in throttle");
    let reply = s.reply_to("MAIL FROM").unwrap_or_default();
    eprintln!("MAIL FROM answered: {reply}");
    assert!(
        reply.starts_with(&format!(
            "450 4.7.230 TEST throttle for {CLIENT_V4} running {EX2013_BUILD}: 1 mins/20s, stage 1"
        )) && reply.contains(INFO_URL),
        "throttle window, MAIL FROM answered {reply:?}; transcript:\n{}",
        s.transcript
    );
    assert!(!s.accepted());
    // The gateway is not throttled in the same window.
    let s = send_at(
        &rig,
        IN_THROTTLE,
        4.5,
        GATEWAY_V4,
        &[&gw, inner],
        "gw in throttle",
    );
    assert_accepted(&s, "the gateway inside a throttle window", rig.postfix());

    // Block window: 550 5.7.230 and the configured text.
    let s = send_at(&rig, IN_BLOCK, 4.5, CLIENT_V4, &[], "in block");
    let reply = s.reply_to("MAIL FROM").unwrap_or_default();
    eprintln!("MAIL FROM answered: {reply}");
    assert!(
        reply.starts_with(&format!(
            "550 5.7.230 TEST block for {CLIENT_V4} running {EX2013_BUILD}: 1 mins/20s, stage 1, see {INFO_URL}"
        )),
        "block window, MAIL FROM answered {reply:?}; transcript:\n{}",
        s.transcript
    );
    assert!(!s.accepted());
    // IPv6 sender, block window.
    let s = send_at(&rig, IN_BLOCK, 4.5, CLIENT_V6, &[], "v6 in block");
    let reply = s.reply_to("MAIL FROM").unwrap_or_default();
    eprintln!("MAIL FROM answered: {reply}");
    assert!(
        reply.starts_with(&format!("550 5.7.230 TEST block for {CLIENT_V6} ")),
        "IPv6 block window: {reply:?}; transcript:\n{}",
        s.transcript
    );

    // Outside the windows: accepted (and discarded by the instance).
    let s = send_at(&rig, OUTSIDE, 4.5, CLIENT_V4, &[], "outside");
    assert_accepted(&s, "outside the windows", rig.postfix());
    assert!(
        rig.postfix()
            .wait_log("status=sent", 4, Duration::from_secs(10)),
        "accepted mail was not delivered to the discard transport:\n{}",
        rig.postfix().maillog()
    );

    let m = rig.metrics();
    assert!(
        sample(&m, "enforcer_milter_answers_total{answer=\"tempfail\"}") >= 1.0
            && sample(&m, "enforcer_milter_answers_total{answer=\"reject\"}") >= 2.0,
        "answers not counted:\n{m}"
    );
    // Postfix opens a milter session per SMTP connection: at least one per answer counted above.
    assert!(
        sample(&m, "enforcer_milter_sessions_total") >= 3.0,
        "sessions not counted:\n{m}"
    );

    // A later message whose connecting hop shows a supported build (sent outside the windows, where
    // it reaches the headers) takes the sender out of enforcement: accepted in the next window.
    let se = exse_by(CLIENT_V4);
    let s = send_at(&rig, OUTSIDE, 4.5, CLIENT_V4, &[&se], "upgraded");
    assert_accepted(&s, "the upgraded sender's message", rig.postfix());
    rig.wait_sender(CLIENT_V4, "leaving enforcement after the upgrade", |v| {
        v["state"] == "clear"
    });
    let s = send_at(&rig, IN_THROTTLE, 4.5, CLIENT_V4, &[], "after upgrade");
    assert_accepted(
        &s,
        "an upgraded sender inside a throttle window",
        rig.postfix(),
    );
}

#[test]
fn postfix_milter_report_only_accepts_and_counts() {
    let rig = Rig::new("pmr", true, &["--milter", MILTER], &milter_settings(MILTER));
    first_sighting(&rig, CLIENT_V4);
    let s = send_at(&rig, IN_THROTTLE, 4.5, CLIENT_V4, &[], "report throttle");
    assert_accepted(&s, "report-only, throttle window", rig.postfix());
    let s = send_at(&rig, IN_BLOCK, 4.5, CLIENT_V4, &[], "report block");
    assert_accepted(&s, "report-only, block window", rig.postfix());
    let m = rig.metrics();
    assert!(
        sample(
            &m,
            "enforcer_milter_answers_total{answer=\"would_tempfail\"}"
        ) >= 1.0
            && sample(&m, "enforcer_milter_answers_total{answer=\"would_reject\"}") >= 1.0,
        "report-only answers not counted:\n{m}"
    );
    assert_eq!(
        sample(&m, "enforcer_milter_answers_total{answer=\"tempfail\"}")
            + sample(&m, "enforcer_milter_answers_total{answer=\"reject\"}"),
        0.0,
        "report-only refused something:\n{m}"
    );
}

/// `enforcer evidence IP -` with `text` on stdin, through the daemon's socket.
fn feed_evidence(dirs: &Dirs, ip: &str, text: &str) -> serde_json::Value {
    let mut child = ctl_cmd(dirs, &["evidence", ip, "-", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "enforcer evidence failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn postfix_policy_service_answers_per_window() {
    let rig = Rig::new(
        "pps",
        false,
        &["--policy", POLICY],
        &policy_settings(POLICY),
    );
    // The policy service sees no headers: the evidence comes from the operator here.
    let fed = feed_evidence(
        &rig.dirs,
        CLIENT_V4,
        &format!("{}\r\n", ex2013_by(CLIENT_V4)),
    );
    assert_eq!(fed["state"], "enforcing", "{fed:#}");

    let s = send_at(&rig, IN_THROTTLE, 4.5, CLIENT_V4, &[], "policy throttle");
    let reply = s.reply_to("RCPT TO").unwrap_or_default();
    eprintln!("RCPT TO answered: {reply}");
    assert!(
        reply.starts_with("450 4.7.230 ")
            && reply.contains(&format!(
                "TEST throttle for {CLIENT_V4} running {EX2013_BUILD}: 1 mins/20s, stage 1"
            )),
        "throttle window, RCPT TO answered {reply:?}; transcript:\n{}",
        s.transcript
    );
    assert!(!s.accepted());
    let s = send_at(&rig, IN_BLOCK, 4.5, CLIENT_V4, &[], "policy block");
    let reply = s.reply_to("RCPT TO").unwrap_or_default();
    eprintln!("RCPT TO answered: {reply}");
    assert!(
        reply.starts_with("550 5.7.230 ")
            && reply.contains(&format!(
                "TEST block for {CLIENT_V4} running {EX2013_BUILD}"
            )),
        "block window, RCPT TO answered {reply:?}; transcript:\n{}",
        s.transcript
    );
    let s = send_at(&rig, OUTSIDE, 4.5, CLIENT_V4, &[], "policy outside");
    assert_accepted(&s, "policy service, outside the windows", rig.postfix());
    // A sender the engine does not know: DUNNO, accepted inside a window.
    let s = send_at(&rig, IN_THROTTLE, 4.5, GATEWAY_V4, &[], "policy unknown");
    assert_accepted(&s, "an unknown sender inside a window", rig.postfix());
    let m = rig.metrics();
    assert!(
        sample(&m, "enforcer_policy_answers_total{answer=\"tempfail\"}") >= 1.0
            && sample(&m, "enforcer_policy_answers_total{answer=\"reject\"}") >= 1.0,
        "policy answers not counted:\n{m}"
    );
    assert!(
        sample(&m, "enforcer_policy_sessions_total") >= 1.0,
        "policy sessions not counted:\n{m}"
    );
}

/// A full milter session from `ip` with the Exchange 2013 field; returns the MAIL and EOM replies.
fn milter_message(addr: SocketAddr, ip: IpAddr) -> std::io::Result<(Option<mc::Reply>, mc::Reply)> {
    let mut c = Client::connect(addr)?;
    c.negotiate(mc::proto::ALL)?;
    let rcv = ex2013_by(&ip.to_string());
    let value = rcv.strip_prefix("Received: ").unwrap();
    let r = c.message(
        ip,
        "EX02.sender.example",
        &[("Received", value), ("Subject", "x")],
    );
    let _ = c.quit();
    r
}

#[test]
fn milter_survives_broken_peers_and_postfix_goes_on_without_it() {
    let mut rig = Rig::new(
        "pmb",
        false,
        &["--milter", MILTER],
        &milter_settings(MILTER),
    );
    let addr: SocketAddr = MILTER_ADDR.parse().unwrap();

    let report = rig.in_server(move || {
        let mut notes = Vec::new();
        // Negotiation: only the stages it needs, MAIL always answered.
        let mut c = Client::connect(addr).unwrap();
        let (version, _, protocol) = c.negotiate(mc::proto::ALL).unwrap();
        assert_eq!(version, 6);
        for skipped in [mc::proto::NOBODY, mc::proto::NORCPT, mc::proto::NODATA] {
            assert_ne!(
                protocol & skipped,
                0,
                "stage {skipped:#x} not skipped: {protocol:#x}"
            );
        }
        for no_reply in [
            mc::proto::NR_CONN,
            mc::proto::NR_HELO,
            mc::proto::NR_HDR,
            mc::proto::NR_EOH,
        ] {
            assert_ne!(
                protocol & no_reply,
                0,
                "{no_reply:#x} not no-reply: {protocol:#x}"
            );
        }
        assert_eq!(protocol & mc::proto::NR_MAIL, 0, "MAIL must be answered");

        // A peer that disconnects mid-message (half a header frame).
        c.conn("[198.51.100.7]", "198.51.100.7".parse().unwrap())
            .unwrap();
        c.helo("EX02.sender.example").unwrap();
        assert!(c.mail("<a@sender.example>").unwrap().unwrap().is_continue());
        let half = mc::frame(
            b'L',
            b"Received\0from EX01 by EX02 with Microsoft SMTP Server id 15.0.1497.2\0",
        );
        c.stream.write_all(&half[..half.len() / 2]).unwrap();
        drop(c);

        // A garbage frame: an unknown command byte.
        let mut c = Client::connect(addr).unwrap();
        c.negotiate(mc::proto::ALL).unwrap();
        c.stream.write_all(&mc::frame(b'Z', b"garbage")).unwrap();
        assert!(c.read().is_err(), "the session survived a garbage frame");

        // An oversized frame: 16 MiB announced; closed before we could send it all.
        let mut c = Client::connect(addr).unwrap();
        c.negotiate(mc::proto::ALL).unwrap();
        let mut big = (16u32 << 20).to_be_bytes().to_vec();
        big.push(b'L');
        let _ = c.stream.write_all(&big);
        let mut sent = 0usize;
        let chunk = vec![b'x'; 64 * 1024];
        while sent < 16 << 20 {
            match c.stream.write(&chunk) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        assert!(sent < 16 << 20, "a 16 MiB frame was read whole");
        assert!(c.read().is_err(), "the session survived an oversized frame");

        // 200 concurrent sessions, all open at once, each a whole message from its own address.
        let n = 200;
        let barrier = Arc::new(Barrier::new(n));
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let b = barrier.clone();
                std::thread::spawn(move || {
                    let ip: IpAddr = format!("203.0.113.{}", i + 1).parse().unwrap();
                    let mut c = Client::connect(addr)?;
                    c.negotiate(mc::proto::ALL)?;
                    b.wait();
                    let rcv = ex2013_by(&ip.to_string());
                    let value = rcv.strip_prefix("Received: ").unwrap().to_string();
                    let r = c.message(ip, "EX02.sender.example", &[("Received", &value)]);
                    let _ = c.quit();
                    r
                })
            })
            .collect();
        let mut ok = 0;
        for h in handles {
            let (mail, eom) = h.join().unwrap().expect("a concurrent session failed");
            assert!(mail.is_some_and(|m| m.is_continue()) && eom.is_continue());
            ok += 1;
        }
        notes.push(format!("{ok} concurrent sessions answered"));
        // Still serving: one more session after all that.
        let (mail, eom) = milter_message(addr, "198.51.100.8".parse().unwrap()).unwrap();
        assert!(mail.unwrap().is_continue() && eom.is_continue());
        notes
    });
    eprintln!("{report:?}");

    // Evidence reaches the engine in batches (after the inbox's linger): wait for all of it.
    let mut m = String::new();
    wait_until(Duration::from_secs(15), || {
        m = rig.metrics();
        sample(&m, "enforcer_milter_sightings_total") >= 201.0
    });
    assert!(
        sample(&m, "enforcer_milter_malformed_total") >= 2.0,
        "garbage and oversized frames not counted as malformed:\n{m}"
    );
    // None of the 200 concurrent messages' evidence is lost (the inbox holds far more).
    assert_eq!(
        (
            sample(&m, "enforcer_milter_sightings_total"),
            sample(&m, "enforcer_milter_sightings_dropped_total")
        ),
        (201.0, 0.0),
        "the 200 concurrent messages' evidence (and one more) not all handed on:\n{m}"
    );
    // Every piece of evidence handed on reached the engine: one record per concurrent sender.
    let mut records = 0.0;
    let ok = wait_until(Duration::from_secs(15), || {
        let out = ctl(&rig.dirs, &["senders", "--json"]);
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        records = list.as_array().map_or(0, |l| {
            l.iter()
                .filter(|v| {
                    v["prefix"]
                        .as_str()
                        .is_some_and(|p| p.starts_with("203.0.113."))
                        && v["build"] == EX2013_BUILD
                })
                .count()
        }) as f64;
        records == 200.0
    });
    assert!(ok, "{records} records for the 200 concurrent senders");
    // The daemon still serves Postfix.
    first_sighting(&rig, CLIENT_V4);
    let log = rig.daemon().log_text();
    assert!(
        log.contains("closing this session"),
        "no log line for the malformed sessions:\n{log}"
    );

    // With enforcer stopped, Postfix still accepts mail (milter_default_action = accept), even
    // from a sender the daemon would refuse.
    assert!(
        rig.daemon.take().unwrap().stop(),
        "the daemon did not exit cleanly"
    );
    let s = send_at(&rig, IN_BLOCK, 4.5, CLIENT_V4, &[], "enforcer down");
    assert_accepted(&s, "with enforcer stopped", rig.postfix());
    assert!(
        rig.postfix()
            .maillog()
            .contains("connect to Milter service inet:127.0.0.1:8895"),
        "Postfix did not log the unreachable milter:\n{}",
        rig.postfix().maillog()
    );
}

/// Sendmail's `miltertest` runs tests/milter/protocol.lua against the daemon's milter (no MTA): a
/// schedule that blocks outright, so the script needs no clock.
#[test]
fn miltertest_scripts_exercise_the_protocol() {
    let cfg = r#"ports = [2525]

[[enforcement.stages]]
after = "0s"
action = "block"

[replies]
block = "TEST block for {host}"
"#;
    let rig = Rig::with_config("pmt", cfg, &["--milter", MILTER], None);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("milter/protocol.lua");
    let out = postfix::run_bounded(
        Command::new("nsenter")
            .arg(format!("--net={}", rig.topo.server.path()))
            .arg("miltertest")
            .args(["-D", "MILTER=inet:8895@127.0.0.1"])
            .args(["-D", "IP=198.51.100.25"])
            .args(["-D", "OTHER=203.0.113.25"])
            .arg("-s")
            .arg(&script),
        Duration::from_secs(120),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("miltertest: all checks passed"),
        "miltertest {} failed ({:?}):\n{text}\ndaemon log:\n{}",
        script.display(),
        out.status.code(),
        rig.daemon().log_text()
    );
    let v = rig.sender("198.51.100.25").unwrap();
    assert_eq!(v["build"], EX2013_BUILD, "{v:#}");
    let m = rig.metrics();
    assert!(
        sample(&m, "enforcer_milter_answers_total{answer=\"reject\"}") >= 2.0,
        "{m}"
    );
}

/// The sum of every sample of `name` whose labels contain `label` (e.g. `reason="notice_admitted"`).
fn sum_samples(body: &str, name: &str, label: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `refusal = "notice"` end to end, with the datapath on Postfix's own port 25: inside a throttle
/// window the first `notice_rate` SYNs of the sender reach Postfix and read the milter's text, the
/// next ones are dropped in the kernel, and the kernel's counters show both; outside the windows
/// everything passes.
#[test]
fn postfix_notice_refusal_lets_the_budget_through_and_drops_the_rest() {
    let cfg = format!(
        r#"ports = [25]

[[enforcement.stages]]
after = "0s"
action = "windows"
period = "20s"
throttle = "6s"
block_at = "8s"
block = "6s"
refusal = "notice"
notice_rate = "2/10m"

[replies]
throttle = "{THROTTLE_TEXT}"
block = "{BLOCK_TEXT}"
info_url = "{INFO_URL}"
"#
    );
    let rig = Rig::with_config(
        "pmn",
        &cfg,
        &["--milter", MILTER],
        Some(&milter_settings(MILTER)),
    );
    // Unknown to the engine: no kernel entry, passes whatever the window.
    first_sighting(&rig, CLIENT_V4);

    // Throttle window: two connects pass the kernel and read the text at MAIL FROM...
    wait_phase(IN_THROTTLE - 0.5, PERIOD);
    let start = Instant::now();
    for i in 0..2 {
        let s = rig.send(CLIENT_V4, &[], &format!("notice {i}"));
        let reply = s.reply_to("MAIL FROM").unwrap_or_default();
        eprintln!("notice {i}: MAIL FROM answered: {reply}");
        assert!(
            reply.starts_with(&format!(
                "450 4.7.230 TEST throttle for {CLIENT_V4} running {EX2013_BUILD}"
            )),
            "connect {i} inside the notice budget, MAIL FROM answered {reply:?}; transcript:\n{}",
            s.transcript
        );
    }
    // ...the third is dropped at the SYN (no handshake).
    let server: SocketAddr = format!("{SERVER_V4}:25").parse().unwrap();
    let third = tests::netns::connect(
        &rig.topo.client,
        Some(CLIENT_V4.parse().unwrap()),
        server,
        Duration::from_millis(1500),
    );
    let took = start.elapsed().as_secs_f64();
    assert!(
        took < 5.5,
        "the notice checks took {took:.1} s, longer than the 6 s throttle window"
    );
    assert_eq!(
        third,
        tests::netns::Connect::TimedOut,
        "a connect past the notice budget reached Postfix"
    );
    let m = rig.metrics();
    let admitted = sum_samples(
        &m,
        "enforcer_kernel_packets_total",
        "reason=\"notice_admitted\"",
    );
    let refused = sum_samples(
        &m,
        "enforcer_kernel_packets_total",
        "reason=\"notice_refused\"",
    );
    assert!(
        admitted >= 2.0 && refused >= 1.0,
        "kernel counters: notice_admitted {admitted}, notice_refused {refused}:\n{m}"
    );
    let answered = sample(&m, "enforcer_milter_answers_total{answer=\"tempfail\"}");
    assert!(answered >= 2.0, "milter tempfails {answered}:\n{m}");

    // Outside the windows everything passes, budget or not.
    let s = send_at(&rig, OUTSIDE, 4.5, CLIENT_V4, &[], "notice outside");
    assert_accepted(&s, "outside the windows of a notice stage", rig.postfix());
}
