//! Flood benchmark (root): receiver CPU per SYN while one source floods a mail server's port 25
//! across a veth, for every filter an operator could use in enforcer's place, each as a ratio to the
//! floor (an XDP program that drops everything, on the same link) and to enforcer in native XDP.
//! Prints a Markdown section on stdout; progress goes to stderr.
//!
//! How the receiver's CPU is isolated on a 2-CPU machine: the receiving veth runs threaded NAPI
//! (GRO on, `threaded` = 1), so everything the receiver does with a packet (XDP, tc, netfilter, the
//! TCP stack, the SYN-ACK it sends) runs in one kernel thread, pinned to CPU 1 at SCHED_FIFO; the
//! generator is pinned to CPU 0 at SCHED_FIFO. Receiver CPU per SYN = that thread's run time
//! (`/proc/PID/schedstat`) over the packets it took off the ring (`ethtool -S`,
//! `rx_queue_0_xdp_packets`). Two generators:
//! 1. trafgen (netsniff-ng) through the sender's qdisc: the receiver gets skbs (veth copies each
//!    one into a page before native XDP runs);
//! 2. live XDP frames (`bpf.rs`): BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES and `XDP_TX` on
//!    the sender, so the receiver gets `xdp_frame`s and native XDP runs without an skb, as on a NIC.
//!
//! While each flood runs, a client in the sender's namespace (an address no filter lists) opens
//! TCP connections to the server every 10 ms: p50/p99 connect time under the flood.
//!
//! Every namespace, table, set, rule, program and daemon is removed on drop.
//! Run with `cargo xtask bench flood` (= `cargo run --release -p tests --bin bench-flood`).

#[path = "bench_flood/bpf.rs"]
mod bpf;

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use tests::frames::{tcp_v4, Tcp};
use tests::netns::{Server, Topology, SERVER_V4};
use tests::process::{cli_ok, Daemon, Dirs};

const ROUNDS: usize = 5;
/// SYNs per flood (each generator, each competitor, each round).
const TRAFGEN_PKTS: u64 = 1_000_000;
const LIVE_PKTS: u32 = 2_000_000;
/// The flooding source; listed (blocked / rate-limited) in every filter.
const FLOOD_SRC: [u8; 4] = [10, 201, 0, 7];
/// Other listed IPv4 hosts next to it (xdp-filter's cap is 10,000 entries).
const FILLER: u32 = 9_999;
const GEN_CPU: usize = 0;
const RX_CPU: usize = 1;
const FIFO: i32 = 20;
/// The latency probe preempts the generator on its CPU.
const PROBE_FIFO: i32 = 30;
const PROBE_EVERY: Duration = Duration::from_millis(10);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Connects per second above which iptables hashlimit and enforcer's rate limit refuse.
const RATE_PER_S: u32 = 1_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Competitor {
    Floor,
    NoFilter,
    NftNetdev,
    NftInet,
    IptIpset,
    IptHashlimit,
    XdpFilter,
    EnforcerXdp,
    EnforcerXdpSkb,
    EnforcerTc,
    EnforcerXdpRate,
}

use Competitor::*;

const ALL: [Competitor; 11] = [
    Floor,
    NoFilter,
    NftNetdev,
    NftInet,
    IptIpset,
    IptHashlimit,
    XdpFilter,
    EnforcerXdp,
    EnforcerXdpSkb,
    EnforcerTc,
    EnforcerXdpRate,
];

impl Competitor {
    fn label(self) -> &'static str {
        match self {
            Floor => "floor: XDP drop-all (native)",
            NoFilter => "no filter",
            NftNetdev => "nftables set, netdev ingress",
            NftInet => "nftables set, inet prerouting (raw)",
            IptIpset => "iptables raw + ipset hash:net",
            IptHashlimit => "iptables raw hashlimit (rate)",
            XdpFilter => "xdp-filter (native)",
            EnforcerXdp => "enforcer xdp",
            EnforcerXdpSkb => "enforcer xdp-skb",
            EnforcerTc => "enforcer tc",
            EnforcerXdpRate => "enforcer xdp, rate limit",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Generator {
    Trafgen,
    Live,
}

fn main() -> ExitCode {
    tests::process::bench_main("bench-flood", run)
}

/// Runs `ip netns exec NS tool args`; fails with its output.
fn ns_cmd(ns: &str, tool: &str, args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, tool])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {tool}"))?;
    if !out.status.success() {
        bail!(
            "{tool} {args:?} in {ns}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip netns exec NS tool ARGS FILE` with `text` as FILE.
fn ns_file(ns: &str, tool: &str, args: &[&str], text: &str) -> Result<()> {
    let path = std::env::temp_dir().join(format!(
        "enforcer-bench-flood-{}-{tool}",
        std::process::id()
    ));
    std::fs::write(&path, text)?;
    let path_s = path.display().to_string();
    let mut all = args.to_vec();
    all.push(&path_s);
    let r = ns_cmd(ns, tool, &all);
    let _ = std::fs::remove_file(&path);
    r.map(drop)
}

fn link_info(ns: &str, ifname: &str) -> Result<(u32, [u8; 6])> {
    let out = ns_cmd(ns, "ip", &["-j", "link", "show", "dev", ifname])?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    let ifindex = v[0]["ifindex"].as_u64().context("ifindex")? as u32;
    let mac = v[0]["address"].as_str().context("address")?;
    let mut m = [0u8; 6];
    for (d, s) in m.iter_mut().zip(mac.split(':')) {
        *d = u8::from_str_radix(s, 16)?;
    }
    Ok((ifindex, m))
}

fn mac_text(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The listed hosts besides the flood source: 60.0.x.y (map contents only, never traffic).
fn filler() -> impl Iterator<Item = Ipv4Addr> {
    (1..=FILLER).map(|k| Ipv4Addr::from(u32::from(Ipv4Addr::new(60, 0, 0, 0)) + k))
}

fn flood_src() -> Ipv4Addr {
    Ipv4Addr::from(FLOOD_SRC)
}

/// Pins `pid` (0: the calling thread) to `cpu` at SCHED_FIFO `prio`.
fn pin_fifo(pid: i32, cpu: usize, prio: i32) -> Result<()> {
    // SAFETY: plain data in, return codes checked.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(pid, std::mem::size_of_val(&set), &set) != 0 {
            bail!(
                "pinning {pid} to CPU {cpu}: {}",
                std::io::Error::last_os_error()
            );
        }
        let param = libc::sched_param {
            sched_priority: prio,
        };
        if libc::sched_setscheduler(pid, libc::SCHED_FIFO, &param) != 0 {
            bail!("SCHED_FIFO for {pid}: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Enters `ns` on the calling thread.
fn enter(ns_path: &str) -> Result<()> {
    let f = std::fs::File::open(ns_path).with_context(|| format!("opening {ns_path}"))?;
    // SAFETY: setns on this thread only.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns {ns_path}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// The receiving veth's NAPI kernel thread (`napi/<ifname>-<id>`, cut to 15 bytes like every comm).
fn napi_thread(ifname: &str) -> Result<i32> {
    let want: String = format!("napi/{ifname}-").chars().take(15).collect();
    for e in std::fs::read_dir("/proc")?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) {
            if comm.trim_end().starts_with(&want) {
                return Ok(pid);
            }
        }
    }
    bail!("no threaded NAPI kernel thread for {ifname} ({want})")
}

fn runtime_ns(pid: i32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/schedstat"))?;
    Ok(s.split_whitespace().next().context("schedstat")?.parse()?)
}

/// Packets the receiving veth's NAPI took off its ring (skbs and XDP frames alike).
fn rx_packets(ns: &str, ifname: &str) -> Result<u64> {
    let out = ns_cmd(ns, "ethtool", &["-S", ifname])?;
    out.lines()
        .find_map(|l| l.trim().strip_prefix("rx_queue_0_xdp_packets:"))
        .context("rx_queue_0_xdp_packets missing in ethtool -S")?
        .trim()
        .parse()
        .context("rx_queue_0_xdp_packets")
}

/// TCP segments the server's stack received (`Tcp: InSegs` in its namespace).
fn tcp_in_segs(ns: &str) -> Result<u64> {
    let out = ns_cmd(ns, "cat", &["/proc/net/snmp"])?;
    let mut tcp = out.lines().filter(|l| l.starts_with("Tcp:"));
    let (head, vals) = (tcp.next().context("Tcp:")?, tcp.next().context("Tcp:")?);
    let i = head
        .split_whitespace()
        .position(|h| h == "InSegs")
        .context("InSegs")?;
    Ok(vals.split_whitespace().nth(i).context("InSegs")?.parse()?)
}

/// trafgen needs socket send buffers larger than the default (it raises them itself, but cannot
/// from inside a namespace): raised for the run, restored on drop.
struct WmemGuard {
    old: Vec<(&'static str, String)>,
}

impl WmemGuard {
    fn raise() -> Result<Self> {
        let mut old = Vec::new();
        for f in [
            "/proc/sys/net/core/wmem_max",
            "/proc/sys/net/core/wmem_default",
        ] {
            let cur = std::fs::read_to_string(f)?.trim().to_string();
            if cur.parse::<u64>().unwrap_or(0) < 16 << 20 {
                std::fs::write(f, (16u64 << 20).to_string())?;
                old.push((f, cur));
            }
        }
        Ok(Self { old })
    }
}

impl Drop for WmemGuard {
    fn drop(&mut self) {
        // Default first: it may not exceed the max.
        for (f, v) in self.old.iter().rev() {
            let _ = std::fs::write(f, v);
        }
    }
}

/// What one competitor installed on the receiver; removed on drop.
enum Installed {
    Nothing,
    /// The BPF link (detaches on close) and its program.
    Floor {
        _link: OwnedFd,
        _prog: OwnedFd,
    },
    /// Namespace name and table family.
    Nft(String, &'static str),
    Iptables(String),
    /// Namespace name, interface.
    XdpFilter(String, String),
    /// Daemon first: it is stopped before its pins and state are removed.
    Enforcer {
        _daemon: Daemon,
        _dirs: Dirs,
    },
}

impl Drop for Installed {
    fn drop(&mut self) {
        match self {
            Installed::Nft(ns, family) => {
                let _ = ns_cmd(ns, "nft", &["delete", "table", family, "enfbench"]);
            }
            Installed::Iptables(ns) => {
                let _ = ns_cmd(ns, "iptables", &["-t", "raw", "-F", "PREROUTING"]);
                let _ = ns_cmd(ns, "ipset", &["destroy", "enfbench"]);
            }
            Installed::XdpFilter(ns, ifname) => {
                let _ = ns_cmd(
                    ns,
                    "ip",
                    &["link", "set", "dev", ifname.as_str(), "xdp", "off"],
                );
            }
            Installed::Nothing | Installed::Floor { .. } | Installed::Enforcer { .. } => {}
        }
    }
}

struct Bench {
    topo: Topology,
    _server: Server,
    server_ifindex: u32,
    server_mac: [u8; 6],
    client_ifindex: u32,
    client_mac: [u8; 6],
}

fn install(b: &Bench, c: Competitor) -> Result<Installed> {
    let netns = &b.topo.server;
    let ns = netns.name.as_str();
    let ifname = b.topo.server_if.clone();
    let src = flood_src();
    let listed = || std::iter::once(src).chain(filler());
    Ok(match c {
        NoFilter => Installed::Nothing,
        Floor => {
            let ifindex = b.server_ifindex;
            let (link, prog) = netns.run(move || -> Result<(OwnedFd, OwnedFd)> {
                let prog = bpf::load_verdict(bpf::XDP_DROP, "bench_drop_all")?;
                Ok((bpf::attach_native(&prog, ifindex)?, prog))
            })?;
            Installed::Floor {
                _link: link,
                _prog: prog,
            }
        }
        NftNetdev | NftInet => {
            let elements: Vec<String> = listed().map(|a| a.to_string()).collect();
            let (family, hook) = if c == NftNetdev {
                (
                    "netdev",
                    format!("type filter hook ingress device \"{ifname}\" priority -500;"),
                )
            } else {
                ("inet", "type filter hook prerouting priority raw;".into())
            };
            let text = format!(
                "table {family} enfbench {{\n set blocked {{ type ipv4_addr; elements = {{ {} }} }}\n \
                 chain c {{ {hook} policy accept;\n  ip saddr @blocked tcp flags & (syn | ack) == syn drop\n }}\n}}\n",
                elements.join(", ")
            );
            let guard = Installed::Nft(ns.to_string(), family);
            ns_file(ns, "nft", &["-f"], &text)?;
            guard
        }
        IptIpset | IptHashlimit => {
            let guard = Installed::Iptables(ns.to_string());
            if c == IptIpset {
                let mut text = String::from("create enfbench hash:net family inet\n");
                for a in listed() {
                    let _ = writeln!(text, "add enfbench {a}");
                }
                ns_file(ns, "ipset", &["restore", "-f"], &text)?;
                ns_cmd(
                    ns,
                    "iptables",
                    &[
                        "-t",
                        "raw",
                        "-A",
                        "PREROUTING",
                        "-p",
                        "tcp",
                        "--syn",
                        "-m",
                        "set",
                        "--match-set",
                        "enfbench",
                        "src",
                        "-j",
                        "DROP",
                    ],
                )?;
            } else {
                let rate = format!("{RATE_PER_S}/sec");
                let burst = RATE_PER_S.to_string();
                ns_cmd(
                    ns,
                    "iptables",
                    &[
                        "-t",
                        "raw",
                        "-A",
                        "PREROUTING",
                        "-p",
                        "tcp",
                        "--syn",
                        "-m",
                        "hashlimit",
                        "--hashlimit-above",
                        &rate,
                        "--hashlimit-burst",
                        &burst,
                        "--hashlimit-mode",
                        "srcip",
                        "--hashlimit-name",
                        "enfbench",
                        "-j",
                        "DROP",
                    ],
                )?;
            }
            guard
        }
        XdpFilter => {
            // xdp-filter pins its maps under /sys/fs/bpf/xdp-filter whatever LIBXDP_BPFFS says, so
            // another user of xdp-filter on the machine would share them: it runs in a private
            // mount namespace with its own bpffs, and is detached through netlink afterwards (the
            // attachment outlives the pins).
            let guard = Installed::XdpFilter(ns.to_string(), ifname.clone());
            let script = format!(
                "mount -t bpf bpf /sys/fs/bpf && xdp-filter load -m native {ifname} && xdp-filter ip {src} -m src"
            );
            let out = Command::new("nsenter")
                .arg(format!("--net={}", netns.path()))
                .args(["unshare", "--mount", "--propagation", "private", "sh", "-c"])
                .arg(&script)
                .env("LIBXDP_SKIP_DISPATCHER", "1")
                .output()
                .context("running xdp-filter (Debian package xdp-tools)")?;
            if !out.status.success() {
                bail!(
                    "xdp-filter ({script}): {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            // Its hash lookup costs the same at 1 entry as at its 10,000-entry cap; one process
            // start per entry would take minutes.
            guard
        }
        EnforcerXdp | EnforcerXdpSkb | EnforcerTc | EnforcerXdpRate => {
            let mode = match c {
                EnforcerXdpSkb => "xdp-skb",
                EnforcerTc => "tc",
                _ => "xdp",
            };
            let dirs = Dirs::new("bfl");
            let daemon = Daemon::start(netns, &ifname, &dirs, &["--mode", mode]);
            let list = dirs.state_dir.join("listed.txt");
            let mut text = String::new();
            for a in filler() {
                let _ = writeln!(text, "{a}");
            }
            if c != EnforcerXdpRate {
                let _ = writeln!(text, "{src}");
            }
            std::fs::write(&list, text)?;
            cli_ok(&dirs, &["import", &list.display().to_string()]);
            if c == EnforcerXdpRate {
                let rate = format!("{}/min", RATE_PER_S * 60);
                let burst = RATE_PER_S.to_string();
                cli_ok(
                    &dirs,
                    &[
                        "throttle",
                        &src.to_string(),
                        "--rate",
                        &rate,
                        "--burst",
                        &burst,
                    ],
                );
            }
            Installed::Enforcer {
                _daemon: daemon,
                _dirs: dirs,
            }
        }
    })
}

/// One flood: receiver ns per packet, packets the receiver took, the share that reached TCP, and
/// the probe's connect times (ms) and failures.
struct Sample {
    ns_per_pkt: f64,
    pkts: u64,
    to_tcp: f64,
    connects: Vec<f64>,
    failed: usize,
}

fn flood(b: &Bench, c: Competitor, g: Generator) -> Result<Sample> {
    let rx = napi_thread(&b.topo.server_if)?;
    pin_fifo(rx, RX_CPU, FIFO)?;
    let p0 = rx_packets(&b.topo.server.name, &b.topo.server_if)?;
    let t0 = tcp_in_segs(&b.topo.server.name)?;
    let r0 = runtime_ns(rx)?;
    let stop = Arc::new(AtomicBool::new(false));
    // The floor drops the probe too: nothing to time.
    let probe = (c != Floor).then(|| probe(b.topo.client.path(), stop.clone()));
    let sent = match g {
        Generator::Trafgen => trafgen(b),
        Generator::Live => live(b),
    };
    stop.store(true, Ordering::Relaxed);
    let (connects, failed) = match probe {
        Some(h) => h.join().map_err(|_| anyhow::anyhow!("probe panicked"))??,
        None => (Vec::new(), 0),
    };
    sent?;
    // Let the ring drain.
    std::thread::sleep(Duration::from_millis(50));
    let r1 = runtime_ns(rx)?;
    let p1 = rx_packets(&b.topo.server.name, &b.topo.server_if)?;
    let t1 = tcp_in_segs(&b.topo.server.name)?;
    let pkts = p1.saturating_sub(p0);
    if pkts < 1000 {
        bail!("the receiver took only {pkts} packets off its ring");
    }
    Ok(Sample {
        ns_per_pkt: (r1 - r0) as f64 / pkts as f64,
        pkts,
        to_tcp: t1.saturating_sub(t0) as f64 / pkts as f64,
        connects,
        failed,
    })
}

fn trafgen(b: &Bench) -> Result<()> {
    let conf = std::env::temp_dir().join(format!(
        "enforcer-bench-flood-{}.trafgen",
        std::process::id()
    ));
    let text = format!(
        "{{\n  eth(da={}, sa={}),\n  ipv4(saddr={}, daddr={SERVER_V4}, ttl=64),\n  tcp(sp=drnd(), dp=25, syn, seq=drnd()),\n}}\n",
        mac_text(&b.server_mac),
        mac_text(&b.client_mac),
        flood_src()
    );
    std::fs::write(&conf, text)?;
    let r = ns_cmd(
        &b.topo.client.name,
        "taskset",
        &[
            "-c",
            &GEN_CPU.to_string(),
            "chrt",
            "-f",
            &FIFO.to_string(),
            "trafgen",
            "--dev",
            &b.topo.client_if,
            "--conf",
            &conf.display().to_string(),
            "--cpus",
            "1",
            "--qdisc-path",
            "--num",
            &TRAFGEN_PKTS.to_string(),
        ],
    );
    let _ = std::fs::remove_file(&conf);
    r.map(drop)
}

fn live(b: &Bench) -> Result<()> {
    let mut frame = tcp_v4(
        &[],
        FLOOD_SRC,
        SERVER_V4.parse::<Ipv4Addr>()?.octets(),
        &Tcp::syn(40_000, 25),
    );
    frame[..6].copy_from_slice(&b.server_mac);
    frame[6..12].copy_from_slice(&b.client_mac);
    let ifindex = b.client_ifindex;
    let path = b.topo.client.path();
    std::thread::spawn(move || -> Result<()> {
        enter(&path)?;
        pin_fifo(0, GEN_CPU, FIFO)?;
        let tx = bpf::load_verdict(bpf::XDP_TX, "bench_live_tx")?;
        bpf::live_frames(&tx, ifindex, &frame, LIVE_PKTS)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("generator thread panicked"))?
}

/// Connects from the client namespace's own (unlisted) address every [`PROBE_EVERY`] until
/// `stop`; returns the connect times in ms and how many failed.
fn probe(ns_path: String, stop: Arc<AtomicBool>) -> JoinHandle<Result<(Vec<f64>, usize)>> {
    std::thread::spawn(move || {
        enter(&ns_path)?;
        pin_fifo(0, GEN_CPU, PROBE_FIFO)?;
        let dst: SocketAddr = format!("{SERVER_V4}:25").parse()?;
        let (mut times, mut failed) = (Vec::new(), 0);
        // Bounded: a flood lasts seconds.
        while !stop.load(Ordering::Relaxed) && times.len() + failed < 3_000 {
            let t = Instant::now();
            match TcpStream::connect_timeout(&dst, PROBE_TIMEOUT) {
                Ok(s) => {
                    times.push(t.elapsed().as_secs_f64() * 1e3);
                    drop(s);
                }
                Err(_) => failed += 1,
            }
            std::thread::sleep(PROBE_EVERY);
        }
        Ok((times, failed))
    })
}

fn setup() -> Result<Bench> {
    let topo = Topology::new("bfl");
    let server = Server::start(&topo.server, &[25]);
    let (server_ifindex, server_mac) = link_info(&topo.server.name, &topo.server_if)?;
    let (client_ifindex, client_mac) = link_info(&topo.client.name, &topo.client_if)?;
    // Receiver: NAPI (GRO on makes veth use it without XDP too), threaded so its work is one
    // kernel thread we can pin and time.
    ns_cmd(
        &topo.server.name,
        "ethtool",
        &["-K", &topo.server_if, "gro", "on"],
    )?;
    ns_cmd(
        &topo.server.name,
        "sh",
        &[
            "-c",
            &format!("echo 1 > /sys/class/net/{}/threaded", topo.server_if),
        ],
    )?;
    // Sender: without TSO veth hands trafgen's skbs to the receiver's NAPI ring; a qdisc holds
    // them while the ring is full (backpressure instead of drops). The client end's own NAPI
    // (it runs a pass-all XDP program) is threaded too and kept off the receiver's CPU: otherwise
    // the SYN-ACKs it receives would be processed, and charged, in the receiver's thread.
    ns_cmd(
        &topo.client.name,
        "ethtool",
        &["-K", &topo.client_if, "tso", "off", "gso", "off"],
    )?;
    ns_cmd(
        &topo.client.name,
        "tc",
        &[
            "qdisc",
            "replace",
            "dev",
            &topo.client_if,
            "root",
            "pfifo",
            "limit",
            "4096",
        ],
    )?;
    ns_cmd(
        &topo.client.name,
        "sh",
        &[
            "-c",
            &format!("echo 1 > /sys/class/net/{}/threaded", topo.client_if),
        ],
    )?;
    // Above the generator, like the probe: the probe's SYN-ACKs must not wait for the flood.
    pin_fifo(napi_thread(&topo.client_if)?, GEN_CPU, PROBE_FIFO)?;
    Ok(Bench {
        topo,
        _server: server,
        server_ifindex,
        server_mac,
        client_ifindex,
        client_mac,
    })
}

fn run() -> Result<()> {
    let load_at_start = tests::machine::load_average();
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        bail!("the flood benchmark pins the generator and the receiver to two different CPUs: this machine has one");
    }
    let _wmem = WmemGuard::raise()?;
    let b = setup()?;
    // [competitor][generator] samples.
    let mut samples: Vec<[Vec<Sample>; 2]> = ALL.iter().map(|_| Default::default()).collect();
    for round in 0..ROUNDS {
        for k in 0..ALL.len() {
            // Interleaved: each round starts with another competitor.
            let ci = (round * 3 + k) % ALL.len();
            let c = ALL[ci];
            let installed = install(&b, c).with_context(|| format!("installing {}", c.label()))?;
            for (gi, g) in [Generator::Trafgen, Generator::Live]
                .into_iter()
                .enumerate()
            {
                let s = flood(&b, c, g)
                    .with_context(|| format!("{} under {}", c.label(), gen_label(g)))?;
                eprintln!(
                    "bench-flood: round {} {:<36} {:<8} {:>7.0} ns/SYN over {:>8} pkts, {:>5.1}% reached TCP, connect p50 {:.2} ms ({} ok, {} failed)",
                    round + 1,
                    c.label(),
                    gen_label(g),
                    s.ns_per_pkt,
                    s.pkts,
                    s.to_tcp * 100.0,
                    pct(&s.connects, 50.0),
                    s.connects.len(),
                    s.failed
                );
                if c != NoFilter && s.to_tcp > 0.05 {
                    bail!(
                        "{}: {:.1}% of the flood reached TCP: the filter is not dropping it",
                        c.label(),
                        s.to_tcp * 100.0
                    );
                }
                samples[ci][gi].push(s);
            }
            drop(installed);
        }
    }
    print(&samples, &load_at_start);
    Ok(())
}

fn gen_label(g: Generator) -> &'static str {
    match g {
        Generator::Trafgen => "trafgen",
        Generator::Live => "XDP live frames",
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// `p`-th percentile (nearest rank) of `v`.
fn pct(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn print(samples: &[[Vec<Sample>; 2]], load_at_start: &str) {
    let ns_of =
        |ci: usize, gi: usize| median(samples[ci][gi].iter().map(|s| s.ns_per_pkt).collect());
    let floor = ALL.iter().position(|c| *c == Floor).expect("listed");
    let ours = ALL.iter().position(|c| *c == EnforcerXdp).expect("listed");
    println!("## SYN flood: receiver CPU per SYN (`cargo xtask bench flood`)\n");
    println!(
        "One source floods port 25 of a server (a listening socket in its own namespace) across a veth pair; every filter lists \
         that source among {} IPv4 hosts (xdp-filter: the source alone, its hash lookup costs the same at its 10,000-entry cap) \
         and drops its SYNs (the rate rows refuse SYNs above {RATE_PER_S}/s per source after a burst of {RATE_PER_S}: iptables `hashlimit --hashlimit-mode srcip`, \
         `enforcer throttle --rate {}/min --burst {RATE_PER_S}`). \
         **ns/SYN** is the receiver's CPU time per packet: the receiving veth runs threaded NAPI, so all its work on a packet (XDP, tc, \
         netfilter, the TCP stack and the SYN-ACK it sends) happens in one kernel thread, pinned to CPU {RX_CPU} at SCHED_FIFO; its \
         run time (`/proc/PID/schedstat`) is divided by the packets it took off its ring (`ethtool -S`). The generator runs on CPU \
         {GEN_CPU} at SCHED_FIFO. The machine has 2 CPUs, so that is all the pinning there is room for. \
         Generators: **trafgen** (netsniff-ng, {TRAFGEN_PKTS} SYNs through the sender's qdisc, random source ports): the receiver \
         gets skbs, which veth copies into a page before native XDP runs; **XDP live frames** ({LIVE_PKTS} SYNs: BPF_PROG_RUN with \
         BPF_F_TEST_XDP_LIVE_FRAMES running `XDP_TX` on the sending veth, as xdp-trafficgen does): the receiver gets `xdp_frame`s \
         and native XDP runs without an skb, as it does on a NIC driver. \
         **connect** is the time a client at an unlisted address of the sender's namespace takes to connect to the server while \
         the flood runs (one connect every {} ms, preempting the generator), p50/p99 over the connects of all rounds; the floor \
         drops them too. Median of {ROUNDS} rounds, min–max in brackets; competitors interleaved (each round starts with another); \
         \"÷ floor\" and \"÷ enforcer xdp\" divide medians of the same generator.\n",
        FILLER + 1,
        RATE_PER_S * 60,
        PROBE_EVERY.as_millis()
    );
    for (gi, g) in [Generator::Trafgen, Generator::Live]
        .into_iter()
        .enumerate()
    {
        println!("### {}\n", gen_label(g));
        println!("| filter | ns/SYN | ÷ floor | ÷ enforcer xdp | connect p50 / p99 under flood |");
        println!("|---|---:|---:|---:|---:|");
        let (f, o) = (ns_of(floor, gi), ns_of(ours, gi));
        for (ci, c) in ALL.iter().enumerate() {
            let ss = &samples[ci][gi];
            let v: Vec<f64> = ss.iter().map(|s| s.ns_per_pkt).collect();
            let (min, max) = v
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
                    (a.min(*x), b.max(*x))
                });
            let m = median(v);
            let connects: Vec<f64> = ss.iter().flat_map(|s| s.connects.iter().copied()).collect();
            let failed: usize = ss.iter().map(|s| s.failed).sum();
            let latency = if *c == Floor {
                "— (dropped)".to_string()
            } else {
                let mut l = format!(
                    "{:.2} / {:.2} ms",
                    pct(&connects, 50.0),
                    pct(&connects, 99.0)
                );
                if failed > 0 {
                    let _ = write!(l, " ({failed} of {} timed out)", failed + connects.len());
                }
                l
            };
            println!(
                "| {} | {m:.0} ({min:.0}–{max:.0}) | {:.2} | {:.2} | {latency} |",
                c.label(),
                m / f,
                m / o
            );
        }
        println!();
    }
    let cpu = tests::machine::cpu_model();
    println!(
        "Machine: {cpu}, {} CPUs; kernel {}; {}; {}; {}; {}; {}; 1-minute load average {} at the start, {} at the end (the benchmark's own work included).",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
        tests::machine::tool_version("nft", "--version"),
        tests::machine::tool_version("iptables", "--version"),
        tests::machine::tool_version("ipset", "version"),
        tests::machine::tool_version("trafgen", "--version"),
        tests::machine::tool_version("date", "-u"),
        load_at_start,
        tests::machine::load_average(),
    );
}
