//! End to end, as root: progressive enforcement of one sender across a veth pair between two network
//! namespaces this test creates, with a schedule compressed into seconds.
//!
//! Evidence of an Exchange 2013 build is fed for the client's address. Its connects pass (stage 1,
//! report only), then are refused only inside the throttle windows (stage 2: 2 s of every 4 s), then
//! always (stage 3). The daemon is killed with SIGKILL midway and restarted: no stage regresses, no
//! record is lost. Then the pins are removed (`enforcer detach`, as after a reboot) and a new daemon
//! rebuilds the maps from the store. Finally a supported build takes the sender out at once.
//!
//! Run: `cargo test -p tests --test engine_e2e -- --test-threads=1` (root). The test builds the
//! `enforcer` binary with cargo (same profile) unless `ENFORCER_BIN` names one.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tests::clock::now_f;
const SERVER_IP: &str = "10.200.44.1";
const CLIENT_IP: &str = "10.200.44.2";
const SERVER_V6: &str = "fd00:200::1";
const CLIENT_V6: &str = "fd00:200::2";
const PORT: u16 = 25;
/// Stage 2 refuses during [0, 2 s) of every 4 s period (periods aligned to the Unix epoch).
const PERIOD: f64 = 4.0;
const WINDOW: f64 = 2.0;
const STAGE2_AT: u64 = 8;
const STAGE3_AT: u64 = 36;

const EX2013: &str = "Received: from EX01.corp.example.net (10.1.2.3) by mail.corp.example.net (10.1.2.4) with Microsoft SMTP Server (TLS) id 15.0.1497.48; Tue, 4 Jun 2024 10:11:12 +0000\r\n";
const EXSE: &str = "Received: from EX01.corp.example.net (10.1.2.3) by mail.corp.example.net (10.1.2.4) with Microsoft SMTP Server (TLS) id 15.2.2562.46; Tue, 4 Nov 2026 10:11:12 +0000\r\n";

fn sh(args: &[&str]) -> std::process::Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    out
}

fn must(args: &[&str]) {
    let out = sh(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces joined by a veth pair; everything is removed on drop (deleting a namespace deletes
/// its veth end, which deletes the pair).
struct Net {
    server: String,
    client: String,
    server_if: String,
}

impl Net {
    fn new(tag: &str) -> Net {
        let pid = std::process::id();
        let n = Net {
            server: format!("enf-{tag}-s-{pid}"),
            client: format!("enf-{tag}-c-{pid}"),
            server_if: format!("e{pid}s"),
        };
        let client_if = format!("e{pid}c");
        must(&["ip", "netns", "add", &n.server]);
        must(&["ip", "netns", "add", &n.client]);
        must(&[
            "ip",
            "link",
            "add",
            &n.server_if,
            "type",
            "veth",
            "peer",
            "name",
            &client_if,
        ]);
        must(&["ip", "link", "set", &n.server_if, "netns", &n.server]);
        must(&["ip", "link", "set", &client_if, "netns", &n.client]);
        for (ns, ifname, ip, ip6) in [
            (&n.server, &n.server_if, SERVER_IP, SERVER_V6),
            (&n.client, &client_if, CLIENT_IP, CLIENT_V6),
        ] {
            must(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                ifname,
            ]);
            must(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{ip6}/64"),
                "dev",
                ifname,
                "nodad",
            ]);
            must(&["ip", "-n", ns, "link", "set", ifname, "up"]);
            must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        n
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.server]);
        let _ = sh(&["ip", "netns", "del", &self.client]);
    }
}

/// Moves the calling thread into a named network namespace.
fn enter_netns(name: &str) -> std::io::Result<()> {
    let f = std::fs::File::open(format!("/var/run/netns/{name}"))?;
    use std::os::fd::AsRawFd;
    // SAFETY: setns on a valid namespace fd affects only the calling thread.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// TCP listeners on port 25 (IPv4 and IPv6) inside the server namespace that accept and close,
/// until dropped.
struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(ns: &str) -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let ns = ns.to_string();
        let s2 = stop.clone();
        let thread = std::thread::spawn(move || {
            enter_netns(&ns).unwrap();
            let v4 = TcpListener::bind((SERVER_IP, PORT)).unwrap();
            let v6 = TcpListener::bind(format!("[{SERVER_V6}]:{PORT}")).unwrap();
            v4.set_nonblocking(true).unwrap();
            v6.set_nonblocking(true).unwrap();
            tx.send(()).unwrap();
            while !s2.load(Ordering::Relaxed) {
                let mut idle = true;
                for l in [&v4, &v6] {
                    if let Ok((s, _)) = l.accept() {
                        drop(s);
                        idle = false;
                    }
                }
                if idle {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("server listening");
        Server {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Connect {
    Passed,
    Refused,
}

/// One connect from the client namespace. A RST ("connection refused") or no answer both count as a
/// refusal; a completed handshake as passed.
fn connect(client_ns: &str) -> Connect {
    connect_to(client_ns, format!("{SERVER_IP}:{PORT}"))
}

/// The same over IPv6.
fn connect6(client_ns: &str) -> Connect {
    connect_to(client_ns, format!("[{SERVER_V6}]:{PORT}"))
}

fn connect_to(client_ns: &str, addr: String) -> Connect {
    let ns = client_ns.to_string();
    std::thread::spawn(move || {
        enter_netns(&ns).unwrap();
        let addr: SocketAddr = addr.parse().unwrap();
        match TcpStream::connect_timeout(&addr, Duration::from_millis(600)) {
            Ok(_) => Connect::Passed,
            Err(_) => Connect::Refused,
        }
    })
    .join()
    .unwrap()
}

/// Sleeps until the wall clock is at `offset` seconds into a throttle period (and at least `after`).
fn at_phase(offset: f64, after: f64) {
    let deadline = now_f().max(after) + 2.0 * PERIOD;
    loop {
        assert!(now_f() < deadline, "clock wait overran");
        let t = now_f();
        if t >= after && ((t % PERIOD) - offset).abs() < 0.05 {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A unique bpffs pin dir and state dir; removed on drop (after `enforcer detach`).
struct Dirs {
    pin: PathBuf,
    state: PathBuf,
    socket: PathBuf,
    config: PathBuf,
}

impl Dirs {
    fn new(tag: &str) -> Dirs {
        let pid = std::process::id();
        let root = std::env::temp_dir().join(format!("enforcer-{tag}-{pid}"));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        Dirs {
            pin: PathBuf::from(format!("/sys/fs/bpf/enforcer-{tag}-{pid}")),
            state: root.join("state"),
            socket: root.join("enforcer.sock"),
            config: root.join("enforcer.toml"),
        }
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        let _ = Command::new(enforcer_bin())
            .args(["detach", "--pin-dir"])
            .arg(&self.pin)
            .output();
        let _ = std::fs::remove_dir_all(&self.pin);
        if let Some(root) = self.state.parent() {
            let _ = std::fs::remove_dir_all(root);
        }
    }
}

/// The `enforcer` binary of this build profile (built on first use).
fn enforcer_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("ENFORCER_BIN") {
            return PathBuf::from(p);
        }
        // target/<profile>/deps/engine_e2e-* -> target/<profile>/enforcer
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ws = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut cmd = Command::new(cargo);
        cmd.current_dir(ws)
            .args(["build", "-p", "enforcer", "--bin", "enforcer"]);
        if release {
            cmd.arg("--release");
        }
        let st = cmd
            .status()
            .expect("running cargo build for the enforcer binary");
        assert!(st.success(), "cargo build -p enforcer failed");
        profile_dir.join("enforcer")
    })
    .clone()
}

/// A running `enforcer run` inside the server namespace; SIGKILLed on drop.
struct Daemon(Child);

impl Daemon {
    fn start(net: &Net, d: &Dirs) -> Daemon {
        let ns = net.server.clone();
        let mut cmd = Command::new(enforcer_bin());
        cmd.args(["run", "--iface", &net.server_if, "--config"])
            .arg(&d.config)
            .arg("--pin-dir")
            .arg(&d.pin)
            .arg("--state-dir")
            .arg(&d.state)
            .arg("--socket")
            .arg(&d.socket)
            .args(["--metrics-addr", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Ok(mode) = std::env::var("ENFORCER_E2E_MODE") {
            cmd.args(["--mode", &mode]);
        }
        // Only the network namespace changes: the daemon keeps this mount namespace and so /sys/fs/bpf.
        // SAFETY: setns is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let path = std::ffi::CString::new(format!("/var/run/netns/{ns}")).unwrap();
                let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                if fd < 0 || libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawning enforcer run");
        let daemon = Daemon(child);
        // Ready when the control socket answers.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = cli(d, &["senders", "--json"]);
            if out.status.success() {
                return daemon;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not come up: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn kill9(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cli(d: &Dirs, args: &[&str]) -> std::process::Output {
    Command::new(enforcer_bin())
        .args(args)
        .arg("--socket")
        .arg(&d.socket)
        .output()
        .unwrap()
}

fn cli_stdin(d: &Dirs, args: &[&str], input: &str) -> std::process::Output {
    let mut child = Command::new(enforcer_bin())
        .args(args)
        .arg("--socket")
        .arg(&d.socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn json(out: std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "enforcer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sender(d: &Dirs) -> serde_json::Value {
    json(cli(d, &["sender", CLIENT_IP, "--json"]))
}

#[test]
fn progressive_enforcement_end_to_end() {
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root");
    let net = Net::new("e2e");
    let d = Dirs::new("e2e");
    std::fs::write(
        &d.config,
        format!(
            r#"
[[enforcement.stages]]
after = "0s"
action = "report"

[[enforcement.stages]]
after = "{STAGE2_AT}s"
action = "windows"
period = "{PERIOD}s"
throttle = "{WINDOW}s"
refusal = "reject"

[[enforcement.stages]]
after = "{STAGE3_AT}s"
action = "block"
refusal = "reject"
"#
        ),
    )
    .unwrap();
    let _server = Server::start(&net.server);
    let daemon = Daemon::start(&net, &d);
    assert_eq!(
        connect(&net.client),
        Connect::Passed,
        "an unknown sender connects"
    );

    // Stage 1: detected, report only.
    let fed = json(cli_stdin(
        &d,
        &["evidence", CLIENT_IP, "-", "--json"],
        EX2013,
    ));
    assert_eq!(fed["state"], "enforcing", "{fed}");
    assert_eq!(fed["stage"], 1);
    assert_eq!(
        fed["record"]["evidence"]["persistently_vulnerable"], true,
        "{fed}"
    );
    let start = fed["record"]["episode"]["started_at"].as_f64().unwrap();
    let stage2 = start + STAGE2_AT as f64;
    let stage3 = start + STAGE3_AT as f64;
    // The same build seen from an IPv6 sender: a second record, one second later at most.
    let fed6 = json(cli_stdin(
        &d,
        &["evidence", CLIENT_V6, "-", "--json"],
        EX2013,
    ));
    assert_eq!(fed6["prefix"], format!("{CLIENT_V6}/128"), "{fed6}");
    let stage3_v6 = fed6["record"]["episode"]["started_at"].as_f64().unwrap() + STAGE3_AT as f64;
    assert_eq!(
        connect6(&net.client),
        Connect::Passed,
        "IPv6: stage 1 is report only"
    );
    for _ in 0..3 {
        assert!(now_f() < stage2 - 0.5);
        assert_eq!(
            connect(&net.client),
            Connect::Passed,
            "stage 1 is report only"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // Stage 2: refused inside the throttle window only.
    at_phase(WINDOW / 2.0, stage2 + 0.3);
    assert_eq!(sender(&d)["stage"], 2);
    assert_eq!(
        connect(&net.client),
        Connect::Refused,
        "inside the throttle window"
    );
    at_phase(WINDOW + (PERIOD - WINDOW) / 2.0, stage2);
    assert_eq!(
        connect(&net.client),
        Connect::Passed,
        "outside the throttle window"
    );

    // kill -9 midway: the pinned datapath keeps enforcing without the daemon.
    let history_before = sender(&d)["record"]["history"].as_array().unwrap().len();
    daemon.kill9();
    at_phase(WINDOW / 2.0, 0.0);
    assert_eq!(
        connect(&net.client),
        Connect::Refused,
        "still throttled with the daemon dead"
    );
    let daemon = Daemon::start(&net, &d);
    let s = sender(&d);
    assert_eq!(s["stage"], 2, "no stage regressed: {s}");
    assert!(
        s["record"]["history"].as_array().unwrap().len() >= history_before,
        "no history lost"
    );
    assert_eq!(s["first_detected"], fed["first_detected"]);
    assert!(
        now_f() < stage3 - 9.0,
        "the test ran too slowly to see stage 2 after the restart"
    );
    // An operator entry made while the daemon runs goes through its socket (it holds the store).
    let out = cli(
        &d,
        &[
            "block",
            "10.200.44.77",
            "--reason",
            "e2e",
            "--pin-dir",
            d.pin.to_str().unwrap(),
            "--state-dir",
            d.state.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "block while the daemon runs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    at_phase(WINDOW + (PERIOD - WINDOW) / 2.0, 0.0);
    assert_eq!(
        connect(&net.client),
        Connect::Passed,
        "outside the window after the restart"
    );
    at_phase(WINDOW / 2.0, 0.0);
    assert_eq!(
        connect(&net.client),
        Connect::Refused,
        "inside the window after the restart"
    );

    // Stage 3: always refused.
    at_phase(WINDOW + (PERIOD - WINDOW) / 2.0, stage3 + 0.3);
    assert_eq!(sender(&d)["stage"], 3);
    assert_eq!(
        connect(&net.client),
        Connect::Refused,
        "blocked outside the window too"
    );
    at_phase(WINDOW / 2.0, 0.0);
    assert_eq!(connect(&net.client), Connect::Refused, "blocked");
    at_phase(WINDOW + (PERIOD - WINDOW) / 2.0, stage3_v6 + 0.3);
    assert_eq!(connect6(&net.client), Connect::Refused, "IPv6: blocked");

    // Simulated reboot: daemon gone, programs, links and pins removed; a new daemon rebuilds the maps.
    daemon.kill9();
    let out = Command::new(enforcer_bin())
        .args(["detach", "--pin-dir"])
        .arg(&d.pin)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "detach: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!d.pin.join("maps").exists(), "pins removed");
    assert_eq!(
        connect(&net.client),
        Connect::Passed,
        "nothing enforces without the datapath"
    );
    let daemon = Daemon::start(&net, &d);
    assert_eq!(sender(&d)["stage"], 3);
    let listed = cli(
        &d,
        &[
            "list",
            "--json",
            "--pin-dir",
            d.pin.to_str().unwrap(),
            "--state-dir",
            d.state.to_str().unwrap(),
        ],
    );
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    for p in [
        format!("{CLIENT_IP}/32"),
        format!("{CLIENT_V6}/128"),
        "10.200.44.77/32".to_string(),
    ] {
        assert!(listed.contains(&p), "the rebuilt maps hold {p}: {listed}");
    }
    assert_eq!(
        connect(&net.client),
        Connect::Refused,
        "blocked again from the store"
    );
    assert_eq!(
        connect6(&net.client),
        Connect::Refused,
        "IPv6: blocked again"
    );

    // A supported build leaves enforcement at once.
    let fed = json(cli_stdin(&d, &["evidence", CLIENT_IP, "-", "--json"], EXSE));
    assert_eq!(fed["state"], "clear", "{fed}");
    assert_eq!(
        connect(&net.client),
        Connect::Passed,
        "a supported build connects again"
    );

    // A change the CLI was told succeeded survives kill -9 right after the reply.
    let out = cli(&d, &["forget", CLIENT_V6]);
    assert!(
        out.status.success(),
        "forget: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    daemon.kill9();
    let daemon = Daemon::start(&net, &d);
    let all = json(cli(&d, &["senders", "--json"]));
    let prefixes: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["prefix"].as_str().unwrap())
        .collect();
    assert_eq!(prefixes, vec![format!("{CLIENT_IP}/32")], "{all}");
    assert_eq!(
        connect6(&net.client),
        Connect::Passed,
        "IPv6: forgotten, connects"
    );
    drop(daemon);
}
