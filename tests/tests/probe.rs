//! Issue 11, first-seen events and the greeting probe, end to end as root. The enforcer host (the
//! server namespace, datapath on both its veths) protects port 25; a real Postfix listens in the
//! client namespace (10.200.1.2) and a scripted Exchange 2010 in a third one (10.200.3.2). A SYN
//! from each to the enforcer host makes one first-seen event; the probe (`allow_private = true`:
//! these are RFC 1918 addresses) connects back to each one's port 25 and the sender records show
//! what it read. A flood of SYNs from 10,000 spoofed sources yields a bounded number of events and
//! probes; with `allow_private` off, nothing private is probed. Everything is read from the
//! daemon's counters and its CLI.
//!
//! Run: `cargo test -p tests --test probe -- --test-threads=1` (root; postfix installed by
//! `cargo xtask setup`).

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tests::clock::wait_until;
use tests::frames::{self, Tcp};
use tests::netns::{connect, ip, unique, Netns, Topology, CLIENT_V4, SERVER_V4};
use tests::postfix::Postfix;
use tests::process::{enforcer_bin, scrape, Daemon, Dirs};
use tests::rawlink::{mac_of, RawLink};

const EX_SERVER_SIDE: &str = "10.200.3.1";
const EX_V4: &str = "10.200.3.2";
const FLOOD: u32 = 10_000;

/// Exchange 2010 SP3's greeting and EHLO response (its `X-ANONYMOUSTLS`, `XEXCH50` and `XSHADOW`
/// without the 2013+ `XRDST`/`XSHADOWREQUEST`).
const EX2010_BANNER: &str = "220 ex2010.sender.example Microsoft ESMTP MAIL Service ready at Tue, 1 Dec 2026 10:00:00 +0000\r\n";
const EX2010_EHLO: &str = "250-ex2010.sender.example Hello [10.200.3.1]\r\n250-SIZE 10485760\r\n250-PIPELINING\r\n250-DSN\r\n250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n250-X-ANONYMOUSTLS\r\n250-AUTH NTLM\r\n250-X-EXPS GSSAPI NTLM\r\n250-8BITMIME\r\n250-BINARYMIME\r\n250-CHUNKING\r\n250-XEXCH50\r\n250 XSHADOW\r\n";

/// A scripted SMTP server in a namespace: greeting, EHLO response, `221` to QUIT. Counts sessions
/// and records the EHLO lines it was sent; stops on drop.
struct ScriptedSmtp {
    stop: Arc<AtomicBool>,
    sessions: Arc<AtomicUsize>,
    ehlos: Arc<std::sync::Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl ScriptedSmtp {
    fn start(ns: &Netns, addr: &str) -> Self {
        let bind: SocketAddr = format!("{addr}:25").parse().unwrap();
        let l = ns.run(move || {
            let l = TcpListener::bind(bind).unwrap_or_else(|e| panic!("bind {bind}: {e}"));
            l.set_nonblocking(true).unwrap();
            l
        });
        let stop = Arc::new(AtomicBool::new(false));
        let sessions = Arc::new(AtomicUsize::new(0));
        let ehlos = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s, n, e) = (stop.clone(), sessions.clone(), ehlos.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                while let Ok((c, _)) = l.accept() {
                    n.fetch_add(1, Ordering::Relaxed);
                    c.set_nonblocking(false).unwrap();
                    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let mut w = c.try_clone().unwrap();
                    let mut r = BufReader::new(c);
                    let _ = w.write_all(EX2010_BANNER.as_bytes());
                    // At most a few commands per session: EHLO, QUIT.
                    for _ in 0..4 {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            break;
                        }
                        let cmd = line.trim_end().to_string();
                        if cmd.to_ascii_uppercase().starts_with("EHLO ") {
                            e.lock().unwrap().push(cmd);
                            let _ = w.write_all(EX2010_EHLO.as_bytes());
                        } else if cmd.eq_ignore_ascii_case("QUIT") {
                            let _ =
                                w.write_all(b"221 2.0.0 Service closing transmission channel\r\n");
                            break;
                        } else {
                            let _ = w.write_all(b"500 5.3.3 Unrecognized command\r\n");
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Self {
            stop,
            sessions,
            ehlos,
            thread: Some(thread),
        }
    }
}

impl Drop for ScriptedSmtp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The namespaces, Postfix, the scripted server and the daemon; the processes and servers go
/// before the namespaces they live in.
struct Rig {
    daemon: Option<Daemon>,
    exchange: Option<ScriptedSmtp>,
    postfix: Option<Postfix>,
    dirs: Dirs,
    ex_ns: Netns,
    topo: Topology,
}

impl Rig {
    fn new(tag: &str, allow_private: bool) -> Rig {
        assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root");
        let topo = Topology::new(tag);
        let ex_ns = Netns::new(format!("{}-ex", unique(tag)));
        let ex_if = format!("{}x", unique(tag));
        let ex_peer = format!("{}y", unique(tag));
        ip(&[
            "-n",
            &topo.server.name,
            "link",
            "add",
            &ex_if,
            "type",
            "veth",
            "peer",
            "name",
            &ex_peer,
            "netns",
            &ex_ns.name,
        ]);
        for (ns, ifname, addr) in [
            (&topo.server, &ex_if, EX_SERVER_SIDE),
            (&ex_ns, &ex_peer, EX_V4),
        ] {
            ip(&[
                "-n",
                &ns.name,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                ifname,
            ]);
            ip(&["-n", &ns.name, "link", "set", ifname, "up"]);
        }
        let dirs = Dirs::new(tag);
        std::fs::create_dir_all(&dirs.state_dir).unwrap();
        let cfg = dirs.state_dir.join("enforcer.toml");
        std::fs::write(
            &cfg,
            format!(
                r#"ports = [25]

[probe]
enabled = true
allow_private = {allow_private}
ehlo_name = "probe.enforcer.test"
connect_timeout = "2s"
read_timeout = "3s"
concurrency = 4
per_second = 5
cache_ttl = "1h"
"#
            ),
        )
        .unwrap();
        let cfg = cfg.display().to_string();
        let daemon = Daemon::start_on(
            &topo.server,
            &[&topo.server_if, &ex_if],
            &dirs,
            &["--config", &cfg],
        );
        assert!(
            daemon
                .log_text()
                .contains("greeting probe of first-seen sources"),
            "{}",
            daemon.log_text()
        );
        // Postfix's own banner names it, as its default `smtpd_banner` does.
        let postfix = Postfix::start(
            &topo.client,
            tag,
            &[CLIENT_V4],
            &[(
                "smtpd_banner".to_string(),
                "$myhostname ESMTP $mail_name".to_string(),
            )],
        );
        let exchange = ScriptedSmtp::start(&ex_ns, EX_V4);
        Rig {
            daemon: Some(daemon),
            exchange: Some(exchange),
            postfix: Some(postfix),
            dirs,
            ex_ns,
            topo,
        }
    }

    /// A daemon command (`sender`, `senders`) through the control socket of its state directory.
    fn ask(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(enforcer_bin())
            .args(args)
            .arg("--state-dir")
            .arg(&self.dirs.state_dir)
            .output()
            .expect("running enforcer");
        assert!(
            out.status.success(),
            "enforcer {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().unwrap()
    }

    fn metrics(&self) -> String {
        scrape(&self.topo.server, self.daemon().metrics_addr())
    }

    /// The sum of every sample of `name` (all label sets).
    fn metric(&self, name: &str) -> f64 {
        sum_metric(&self.metrics(), name)
    }

    /// One SYN (a connect attempt to the enforcer host's port 25, where nothing listens).
    fn syn_from(&self, ns: &Netns, dst: &str) {
        let dst: SocketAddr = format!("{dst}:25").parse().unwrap();
        let _ = connect(ns, None, dst, Duration::from_secs(1));
    }

    /// `FLOOD` SYNs to the enforcer host from spoofed sources `10.200.(64+i/256).(i%256)`, sent
    /// as fast as the socket takes them. Returns how many the kernel took and how long it took.
    fn flood(&self) -> (u32, Duration) {
        let dst_mac = mac_of(&self.topo.server.name, &self.topo.server_if);
        let src_mac = mac_of(&self.topo.client.name, &self.topo.client_if);
        let ifname = self.topo.client_if.clone();
        self.topo.client.run(move || {
            let link = RawLink::open(&ifname);
            let server: [u8; 4] = SERVER_V4.parse::<std::net::Ipv4Addr>().unwrap().octets();
            let start = Instant::now();
            let mut sent = 0;
            for i in 0..FLOOD {
                let src = [10, 200, 64 + (i / 256) as u8, (i % 256) as u8];
                let mut f =
                    frames::tcp_v4(&[], src, server, &Tcp::syn(40000 + (i % 20000) as u16, 25));
                f[..6].copy_from_slice(&dst_mac);
                f[6..12].copy_from_slice(&src_mac);
                if link.send(&f) {
                    sent += 1;
                }
            }
            (sent, start.elapsed())
        })
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.daemon.take();
        self.exchange.take();
        self.postfix.take();
        let _ = std::fs::remove_dir_all(&self.dirs.state_dir);
    }
}

fn sum_metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn labelled(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn nproc() -> f64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
}

#[test]
fn probe_reads_new_senders_and_floods_stay_bounded() {
    let rig = Rig::new("pb", true);
    rig.syn_from(&rig.topo.client, SERVER_V4);
    rig.syn_from(&rig.ex_ns, EX_SERVER_SIDE);
    // A second SYN from each is not new: still one event each.
    rig.syn_from(&rig.topo.client, SERVER_V4);
    rig.syn_from(&rig.ex_ns, EX_SERVER_SIDE);
    assert!(
        wait_until(Duration::from_secs(20), || {
            rig.metric("enforcer_probe_succeeded_total") >= 2.0
        }),
        "two probes did not succeed:\n{}\n{}",
        rig.metrics(),
        rig.daemon().log_text()
    );
    let m = rig.metrics();
    assert_eq!(
        sum_metric(&m, "enforcer_probe_first_seen_events_total"),
        2.0,
        "{m}"
    );
    assert_eq!(sum_metric(&m, "enforcer_probe_started_total"), 2.0, "{m}");
    // Both probes land in the duration histogram under their outcome.
    assert_eq!(
        labelled(
            &m,
            "enforcer_probe_duration_seconds_count",
            "outcome=\"succeeded\""
        ),
        2.0,
        "{m}"
    );
    let ex = rig.exchange.as_ref().unwrap();
    assert_eq!(ex.sessions.load(Ordering::Relaxed), 1);
    assert_eq!(
        ex.ehlos.lock().unwrap().as_slice(),
        ["EHLO probe.enforcer.test"]
    );
    assert!(rig
        .postfix
        .as_ref()
        .unwrap()
        .wait_log("connect from", 1, Duration::from_secs(10)));

    // The sender records carry what the greeting and the EHLO keywords tell.
    let mut ex_view = String::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            ex_view = rig.ask(&["sender", EX_V4, "--json"]);
            ex_view.contains("exchange")
        }),
        "{ex_view}"
    );
    let v: serde_json::Value = serde_json::from_str(&ex_view).unwrap();
    let text = v.to_string();
    assert!(text.contains("\"exchange\""), "{text}");
    assert!(text.contains("end-of-life"), "{text}");
    let pf_view = rig.ask(&["sender", CLIENT_V4, "--json"]);
    assert!(!pf_view.contains("\"exchange\""), "{pf_view}");
    assert!(
        pf_view.to_ascii_lowercase().contains("postfix"),
        "{pf_view}"
    );
    let list = rig.ask(&["senders", "--json"]);
    assert!(list.contains(EX_V4) && list.contains(CLIENT_V4), "{list}");

    // 10,000 spoofed sources: bounded events (the kernel's per-CPU budget) and probes (5/s).
    let before = rig.metrics();
    let started_before = sum_metric(&before, "enforcer_probe_started_total");
    let t0 = Instant::now();
    let (sent, took) = rig.flood();
    assert!(sent > FLOOD / 2, "only {sent} of {FLOOD} frames sent");
    // Let the reader drain the ring and fold the kernel's counters (once a second).
    std::thread::sleep(Duration::from_secs(3));
    let m = rig.metrics();
    let elapsed = t0.elapsed().as_secs_f64();
    let events = sum_metric(&m, "enforcer_probe_first_seen_events_total") - 2.0;
    let over = sum_metric(&m, "enforcer_probe_first_seen_over_budget_total");
    let lost = sum_metric(&m, "enforcer_probe_first_seen_lost_total");
    let budget = 256.0 * nproc() * (took.as_secs_f64().ceil() + 1.0);
    assert!(events >= 1.0, "no event from the flood:\n{m}");
    assert!(
        events <= budget,
        "{events} events from {sent} new sources in {took:?} exceed the kernel budget {budget}:\n{m}"
    );
    assert!(
        events + over + lost >= f64::from(sent) * 0.5,
        "the flood's new sources are not all accounted for ({events} events, {over} over budget, {lost} lost, {sent} sent):\n{m}"
    );
    let started = sum_metric(&m, "enforcer_probe_started_total") - started_before;
    assert!(
        started >= 1.0 && started <= 5.0 * (elapsed.ceil() + 1.0),
        "{started} probes in {elapsed:.1} s exceed 5/s:\n{m}"
    );
    let rate_limited = labelled(&m, "enforcer_probe_skipped_total", "rate_limited");
    assert!(rate_limited > 0.0, "{m}");
}

#[test]
fn without_allow_private_no_private_source_is_probed() {
    let rig = Rig::new("pn", false);
    rig.syn_from(&rig.topo.client, SERVER_V4);
    rig.syn_from(&rig.ex_ns, EX_SERVER_SIDE);
    let (sent, _) = rig.flood();
    assert!(sent > FLOOD / 2, "only {sent} of {FLOOD} frames sent");
    assert!(
        wait_until(Duration::from_secs(10), || {
            labelled(&rig.metrics(), "enforcer_probe_skipped_total", "private") >= 3.0
        }),
        "{}",
        rig.metrics()
    );
    std::thread::sleep(Duration::from_secs(2));
    let m = rig.metrics();
    let events = sum_metric(&m, "enforcer_probe_first_seen_events_total");
    assert_eq!(sum_metric(&m, "enforcer_probe_started_total"), 0.0, "{m}");
    assert_eq!(
        labelled(&m, "enforcer_probe_skipped_total", "private"),
        events - labelled(&m, "enforcer_probe_skipped_total", "queue_full"),
        "{m}"
    );
    assert_eq!(
        rig.exchange
            .as_ref()
            .unwrap()
            .sessions
            .load(Ordering::Relaxed),
        0
    );
    let postfix_log = rig.postfix.as_ref().unwrap().maillog();
    assert!(!postfix_log.contains("connect from"), "{postfix_log}");
}
