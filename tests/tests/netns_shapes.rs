//! Issue 7, "no evasion by packet shape", end to end: the real `enforcer run` on the server side of
//! a veth pair in each attach mode (xdp, xdp-skb, tc), and crafted frames sent from the client
//! namespace through a raw AF_PACKET socket: fragments, an IPv6 atomic fragment, long and jumbo
//! extension-header chains, stacked VID-0 VLAN tags. A blocked source gets no SYN-ACK for any of
//! them, while the very same shapes from an unlisted address do get one (so Linux accepts each
//! shape and the test could fail). Run as root:
//! `cargo test -p tests --test netns_shapes -- --test-threads=1`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::time::{Duration, Instant};

use tests::frames::{self, Shape, Tcp};
use tests::netns::{ip, Server, Topology, CLIENT_V4, CLIENT_V6, SERVER_V4, SERVER_V6};
use tests::process::{cli_ok, Daemon, Dirs};
use tests::rawlink::{mac_of, packet_socket, send_frame};

/// The unlisted control source, added to the client side.
const OTHER_V4: &str = "10.200.1.3";
const OTHER_V6: &str = "fd00:200::3";
/// Enough for the 4 KiB-options shape.
const JUMBO_MTU: &str = "9000";
/// A SYN-ACK from a veth neighbour comes within milliseconds; a dropped SYN's never does.
const WAIT_REFUSED: Duration = Duration::from_millis(400);
const WAIT_ANSWERED: Duration = Duration::from_secs(2);

/// A raw socket on the client interface: sends whole frames, reads every frame that arrives.
struct RawLink {
    fd: OwnedFd,
    ifindex: i32,
}

impl RawLink {
    /// Must run inside the client namespace.
    fn open(ifname: &str) -> Self {
        let proto = (libc::ETH_P_ALL as u16).to_be() as i32;
        let (fd, ifindex) = packet_socket(ifname, proto);
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto as u16;
        sll.sll_ifindex = ifindex;
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sll as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(r, 0, "bind AF_PACKET: {}", std::io::Error::last_os_error());
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 50_000,
        };
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        assert_eq!(r, 0);
        Self { fd, ifindex }
    }

    fn send(&self, frame: &[u8]) {
        let n = send_frame(&self.fd, self.ifindex, frame);
        assert_eq!(
            n,
            frame.len() as isize,
            "sending a {}-byte frame: {}",
            frame.len(),
            std::io::Error::last_os_error()
        );
    }

    /// True when a SYN-ACK from the server's port 25 to `dst`:`dport` arrives within `wait`.
    fn syn_ack_within(&self, dst: IpAddr, dport: u16, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
                continue;
            }
            if is_syn_ack(&buf[..n as usize], dst, dport) {
                return true;
            }
        }
        false
    }
}

/// An untagged SYN|ACK from port 25 to `dst`:`dport` (the server's replies carry no tags and no
/// extension headers).
fn is_syn_ack(f: &[u8], dst: IpAddr, dport: u16) -> bool {
    if f.len() < 14 {
        return false;
    }
    let ethertype = u16::from_be_bytes([f[12], f[13]]);
    let (l4, to) = match ethertype {
        0x0800 if f.len() >= 34 && f[23] == 6 => {
            let ihl = (f[14] & 0x0f) as usize * 4;
            let to = IpAddr::from(<[u8; 4]>::try_from(&f[30..34]).unwrap());
            (&f[14 + ihl.min(f.len() - 14)..], to)
        }
        0x86dd if f.len() >= 54 && f[20] == 6 => {
            let to = IpAddr::from(<[u8; 16]>::try_from(&f[38..54]).unwrap());
            (&f[54..], to)
        }
        _ => return false,
    };
    l4.len() >= 14
        && to == dst
        && u16::from_be_bytes([l4[0], l4[1]]) == 25
        && u16::from_be_bytes([l4[2], l4[3]]) == dport
        && l4[13] & (frames::SYN | frames::ACK) == frames::SYN | frames::ACK
}

fn syn(sport: u16) -> Tcp {
    Tcp {
        payload: b"EHLO shapes.example\r\n01234567890123456".to_vec(),
        ..Tcp::syn(sport, 25).with_typical_options()
    }
}

fn v4(a: &str) -> [u8; 4] {
    a.parse::<Ipv4Addr>().unwrap().octets()
}

fn v6(a: &str) -> [u8; 16] {
    a.parse::<Ipv6Addr>().unwrap().octets()
}

/// The shapes of one SYN from `src4`/`src6` (one family or the other per shape), tagged with the
/// source they come from.
fn all_shapes(src4: &str, src6: &str, sport: u16) -> Vec<(Shape, IpAddr)> {
    let mut out: Vec<(Shape, IpAddr)> = frames::shapes_v4(v4(src4), v4(SERVER_V4), &syn(sport))
        .into_iter()
        .map(|s| (s, src4.parse().unwrap()))
        .collect();
    out.extend(
        frames::shapes_v6(v6(src6), v6(SERVER_V6), &syn(sport))
            .into_iter()
            .map(|s| (s, src6.parse().unwrap())),
    );
    out
}

struct Outcome {
    shape: &'static str,
    blocked_answered: bool,
    control_answered: bool,
}

fn run_mode(mode: &str, tag: &str) {
    let t = Topology::new(tag);
    for (ns, ifname) in [(&t.server, &t.server_if), (&t.client, &t.client_if)] {
        ip(&[
            "-n", &ns.name, "link", "set", "dev", ifname, "mtu", JUMBO_MTU,
        ]);
    }
    t.add_client_addr(&format!("{OTHER_V4}/24"));
    t.add_client_addr(&format!("{OTHER_V6}/64"));
    let _server = Server::start(&t.server, &[25]);
    let dirs = Dirs::new(tag);
    let daemon = Daemon::start(&t.server, &t.server_if, &dirs, &["--mode", mode]);
    cli_ok(&dirs, &["block", CLIENT_V4, "--reason", "shape test"]);
    cli_ok(&dirs, &["block", CLIENT_V6, "--reason", "shape test"]);
    let server_mac = mac_of(&t.server.name, &t.server_if);
    let client_mac = mac_of(&t.client.name, &t.client_if);
    let client_if = t.client_if.clone();
    let results: Vec<Outcome> = t.client.run(move || {
        let link = RawLink::open(&client_if);
        // The server's first answer to a new address waits for ARP/ND, hence the longer wait for
        // the control.
        let mut sport = 42_000u16;
        let mut results = Vec::new();
        let blocked = all_shapes(CLIENT_V4, CLIENT_V6, 0);
        for (i, (shape, _)) in blocked.iter().enumerate() {
            let mut answered = [false; 2];
            for (k, (src4, src6)) in [(CLIENT_V4, CLIENT_V6), (OTHER_V4, OTHER_V6)]
                .into_iter()
                .enumerate()
            {
                sport += 1;
                let (s, src) = all_shapes(src4, src6, sport).swap_remove(i);
                assert_eq!(s.name, shape.name);
                for f in &s.frames {
                    link.send(&f.frame_to(server_mac, client_mac));
                }
                let wait = if k == 0 { WAIT_REFUSED } else { WAIT_ANSWERED };
                answered[k] = link.syn_ack_within(src, sport, wait);
            }
            results.push(Outcome {
                shape: shape.name,
                blocked_answered: answered[0],
                control_answered: answered[1],
            });
        }
        results
    });
    let stats: serde_json::Value =
        serde_json::from_str(&cli_ok(&dirs, &["stats", "--json"])).unwrap();
    let counter = |reason: &str| {
        stats["counters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["reason"] == reason && c["mode"] == "enforced")
            .and_then(|c| c["packets"].as_u64())
            .unwrap_or_else(|| panic!("no counter {reason} in {stats}"))
    };
    let report: Vec<String> = results
        .iter()
        .map(|o| {
            format!(
                "{mode}: {}: blocked answered={} control answered={}",
                o.shape, o.blocked_answered, o.control_answered
            )
        })
        .collect();
    let report = report.join("\n");
    eprintln!("{report}");
    assert_eq!(results.len(), 11);
    for o in &results {
        assert!(
            o.control_answered,
            "{mode}: Linux did not answer {:?} from an unlisted source, so the shape proves \
             nothing\n{report}\n{}",
            o.shape,
            daemon.log_text()
        );
        assert!(
            !o.blocked_answered,
            "{mode}: a blocked source got a SYN-ACK with {:?}\n{report}\n{stats}",
            o.shape
        );
    }
    // Fragments and the over-long chain are refused on their source, whole shapes as a block.
    assert!(counter("source_only_refused") >= 4, "{stats}");
    assert!(counter("blocked") >= 4, "{stats}");
    drop(daemon);
}

#[test]
fn evasion_shapes_get_no_syn_ack_in_xdp_mode() {
    run_mode("xdp", "shx");
}

#[test]
fn evasion_shapes_get_no_syn_ack_in_xdp_skb_mode() {
    run_mode("xdp-skb", "shs");
}

#[test]
fn evasion_shapes_get_no_syn_ack_in_tc_mode() {
    run_mode("tc", "sht");
}
