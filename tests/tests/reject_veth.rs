//! The RST|ACK the datapath builds works on a real stack, for every attach mode: a client in one
//! network namespace connects across a veth pair to a listening server in another; with a reject
//! entry for the client the connect fails with "connection refused" at once (our RST, since a
//! listener is there), without it the connect succeeds. Runs as root; every namespace it creates is
//! deleted by a guard, even on failure.

use std::{
    io::ErrorKind,
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    process::Command,
    time::{Duration, Instant},
};

use aya::{
    maps::{Array, HashMap, PerCpuArray},
    programs::{tc::TcAttachType, SchedClassifier, Xdp, XdpMode},
    Ebpf, EbpfLoader,
};
use enforcer_common::{
    counters::{fold, slot, STATS_SLOTS},
    maps,
    policy::ACTION_REJECT,
    PolicyEntry, Reason,
};

const SERVER4: [u8; 4] = [10, 200, 99, 1];
const CLIENT4: [u8; 4] = [10, 200, 99, 2];
const SERVER6: [u8; 16] = [0xfd, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const CLIENT6: [u8; 16] = [0xfd, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const PORT: u16 = 25;

#[derive(Clone, Copy, Debug)]
enum Mode {
    XdpSkb,
    XdpNative,
    Tc,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces joined by a veth pair; deleting the namespaces deletes the pair.
struct Topology {
    server_ns: String,
    client_ns: String,
    server_if: String,
    client_if: String,
}

impl Topology {
    fn new(tag: &str, mtu: u32) -> Self {
        let pid = std::process::id();
        let t = Topology {
            server_ns: format!("enf-rs-{pid}-{tag}"),
            client_ns: format!("enf-rc-{pid}-{tag}"),
            server_if: format!("ers{pid}{tag}"),
            client_if: format!("erc{pid}{tag}"),
        };
        assert!(t.server_if.len() <= 15, "interface name too long");
        ip(&["netns", "add", &t.server_ns]);
        let guard = t; // from here on, Drop cleans up whatever was created
        ip(&["netns", "add", &guard.client_ns]);
        ip(&[
            "-n",
            &guard.server_ns,
            "link",
            "add",
            &guard.server_if,
            "type",
            "veth",
            "peer",
            "name",
            &guard.client_if,
            "netns",
            &guard.client_ns,
        ]);
        for (ns, dev, v4, v6) in [
            (
                &guard.server_ns,
                &guard.server_if,
                "10.200.99.1/24",
                "fd00:200::1/64",
            ),
            (
                &guard.client_ns,
                &guard.client_if,
                "10.200.99.2/24",
                "fd00:200::2/64",
            ),
        ] {
            ip(&["-n", ns, "addr", "add", v4, "dev", dev]);
            ip(&["-n", ns, "addr", "add", v6, "dev", dev, "nodad"]);
            ip(&["-n", ns, "link", "set", dev, "mtu", &mtu.to_string()]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        guard
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in [&self.server_ns, &self.client_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Runs `f` on a thread that has entered network namespace `ns` (setns affects only that thread).
fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(format!("/run/netns/{ns}")).expect("open netns");
            // SAFETY: a valid namespace fd; only this thread switches.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("namespace thread panicked")
    })
}

fn load() -> Ebpf {
    let mut ebpf = EbpfLoader::new()
        .load(enforcer::EBPF_OBJECT)
        .expect("load eBPF object");
    let mut ports: Array<_, u32> = Array::try_from(ebpf.map_mut(maps::PORTS).unwrap()).unwrap();
    ports.set(PORT as u32, 1, 0).unwrap();
    ebpf
}

fn set_reject(ebpf: &mut Ebpf, on: bool) {
    let e = PolicyEntry {
        action: ACTION_REJECT,
        ..Default::default()
    };
    let mut v4: HashMap<_, [u8; 4], PolicyEntry> =
        HashMap::try_from(ebpf.map_mut(maps::POLICY_V4_HOSTS).unwrap()).unwrap();
    if on {
        v4.insert(CLIENT4, e, 0).unwrap();
    } else {
        v4.remove(&CLIENT4).unwrap();
    }
    let mut v6: HashMap<_, [u8; 16], PolicyEntry> =
        HashMap::try_from(ebpf.map_mut(maps::POLICY_V6_HOSTS).unwrap()).unwrap();
    if on {
        v6.insert(CLIENT6, e, 0).unwrap();
    } else {
        v6.remove(&CLIENT6).unwrap();
    }
}

fn attach(ebpf: &mut Ebpf, mode: Mode, topo: &Topology) {
    in_ns(&topo.server_ns, || match mode {
        Mode::XdpSkb | Mode::XdpNative => {
            let xdp_mode = if matches!(mode, Mode::XdpSkb) {
                XdpMode::Skb
            } else {
                XdpMode::Driver
            };
            let p: &mut Xdp = ebpf
                .program_mut(maps::PROG_XDP)
                .unwrap()
                .try_into()
                .unwrap();
            p.load().unwrap();
            p.attach(&topo.server_if, xdp_mode).expect("attach XDP");
        }
        Mode::Tc => {
            let p: &mut SchedClassifier =
                ebpf.program_mut(maps::PROG_TC).unwrap().try_into().unwrap();
            p.load().unwrap();
            p.attach(&topo.server_if, TcAttachType::Ingress)
                .expect("attach TC");
        }
    });
    if matches!(mode, Mode::XdpNative) {
        // veth delivers XDP_TX frames to a peer only when the peer runs NAPI, which an XDP program
        // (here the empty one) turns on.
        in_ns(&topo.client_ns, || {
            let p: &mut Xdp = ebpf
                .program_mut("enforcer_xdp_empty")
                .unwrap()
                .try_into()
                .unwrap();
            p.load().unwrap();
            p.attach(&topo.client_if, XdpMode::Driver)
                .expect("attach peer XDP");
        });
    }
}

fn rejected(ebpf: &Ebpf) -> u64 {
    let a: PerCpuArray<_, u64> = PerCpuArray::try_from(ebpf.map(maps::STATS).unwrap()).unwrap();
    let full: Vec<u64> = (0..STATS_SLOTS)
        .map(|i| a.get(&i, 0).unwrap().iter().sum())
        .collect();
    fold(&full)[slot(Reason::Rejected, false) as usize]
}

fn connect(topo: &Topology, to: SocketAddr) -> (std::io::Result<TcpStream>, Duration) {
    in_ns(&topo.client_ns, || {
        let t = Instant::now();
        let r = TcpStream::connect_timeout(&to, Duration::from_secs(3));
        (r, t.elapsed())
    })
}

fn check_mode(mode: Mode, tag: &str, mtu: u32) {
    let topo = Topology::new(tag, mtu);
    let listeners: Vec<TcpListener> = in_ns(&topo.server_ns, || {
        vec![
            TcpListener::bind(("10.200.99.1", PORT)).expect("listen v4"),
            TcpListener::bind(("fd00:200::1", PORT)).expect("listen v6"),
        ]
    });
    let mut ebpf = load();
    attach(&mut ebpf, mode, &topo);
    let targets = [
        SocketAddr::from((SERVER4, PORT)),
        SocketAddr::from((SERVER6, PORT)),
    ];

    set_reject(&mut ebpf, true);
    for to in targets {
        let (r, took) = connect(&topo, to);
        match r {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
            other => panic!("{mode:?} {to}: expected connection refused, got {other:?}"),
        }
        assert!(
            took < Duration::from_millis(500),
            "{mode:?} {to}: refused after {took:?}"
        );
    }
    assert_eq!(
        rejected(&ebpf),
        2,
        "{mode:?}: both SYNs answered by the datapath"
    );

    set_reject(&mut ebpf, false);
    for to in targets {
        let (r, _) = connect(&topo, to);
        r.unwrap_or_else(|e| panic!("{mode:?} {to}: connect without an entry: {e}"));
    }
    drop(listeners);
    drop(ebpf);
}

#[test]
fn reject_with_generic_xdp() {
    check_mode(Mode::XdpSkb, "g", 1500);
}

#[test]
fn reject_with_native_xdp() {
    check_mode(Mode::XdpNative, "n", 1500);
}

#[test]
fn reject_with_tc() {
    check_mode(Mode::Tc, "t", 1500);
}

/// Native XDP on a jumbo-MTU veth needs a frags-aware (multi-buffer) program.
#[test]
fn reject_with_native_xdp_on_jumbo_mtu() {
    check_mode(Mode::XdpNative, "j", 9000);
}
