//! Network namespaces, veth pairs and TCP endpoints for end-to-end tests. Every name carries the
//! process id and a per-test tag so test binaries never collide, and every guard removes what it
//! made on drop, even when the test panics. Traffic only ever goes to addresses inside namespaces
//! created here (10.200.x.y, fd00:200::/64).

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd as _;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Runs `ip` with `args`; panics with the command and its stderr on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A named network namespace, deleted on drop (which also deletes every interface inside it).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: String) -> Self {
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        let ns = Self { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// `/var/run/netns/<name>`, for `nsenter --net=`.
    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }

    /// Runs `f` on a thread that has entered this namespace (sockets made there stay in it).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = self.path();
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: setns on this thread only (network namespaces are per thread).
            let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns {path}: {}", io::Error::last_os_error());
            f()
        })
        .join()
        .expect("namespace thread panicked")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Short unique names: interface names are limited to 15 bytes.
pub fn unique(tag: &str) -> String {
    format!("e{}{}", std::process::id() % 100_000, tag)
}

/// Server and client namespaces joined by a veth pair, dual stack:
/// server 10.200.1.1/24 + fd00:200::1/64 on `server_if`, client 10.200.1.2/24 + fd00:200::2/64 (and
/// any extra addresses) on `client_if`.
pub struct Topology {
    /// Declared first so it is dropped (detached) before the namespaces go.
    _peer_xdp: Option<aya::Ebpf>,
    _peer_xdp2: Option<aya::Ebpf>,
    pub server: Netns,
    pub client: Netns,
    pub server_if: String,
    pub client_if: String,
}

pub const SERVER_V4: &str = "10.200.1.1";
pub const CLIENT_V4: &str = "10.200.1.2";
pub const SERVER_V6: &str = "fd00:200::1";
pub const CLIENT_V6: &str = "fd00:200::2";

/// A veth pair from `server` to `client`. It is created inside the server namespace, so nothing is
/// ever left in the root one, and it goes away with the namespaces.
fn veth_pair(server: &Netns, client: &Netns, server_if: &str, client_if: &str) {
    assert!(
        server_if.len() <= 15,
        "interface name too long: {server_if}"
    );
    ip(&[
        "-n",
        &server.name,
        "link",
        "add",
        server_if,
        "type",
        "veth",
        "peer",
        "name",
        client_if,
        "netns",
        &client.name,
    ]);
}

impl Topology {
    /// `tag`: a few characters unique to the test.
    pub fn new(tag: &str) -> Self {
        let base = unique(tag);
        let server = Netns::new(format!("{base}-srv"));
        let client = Netns::new(format!("{base}-cli"));
        let server_if = format!("{base}s");
        let client_if = format!("{base}c");
        veth_pair(&server, &client, &server_if, &client_if);
        for (ns, ifname, v4, v6) in [
            (&server, &server_if, SERVER_V4, SERVER_V6),
            (&client, &client_if, CLIENT_V4, CLIENT_V6),
        ] {
            ip(&[
                "-n",
                &ns.name,
                "addr",
                "add",
                &format!("{v4}/24"),
                "dev",
                ifname,
            ]);
            ip(&[
                "-n",
                &ns.name,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                ifname,
                "nodad",
            ]);
            ip(&["-n", &ns.name, "link", "set", ifname, "up"]);
        }
        // XDP_TX on a native-XDP veth hands the frame to the peer's NAPI ring, which exists only
        // when the peer runs an XDP program (GRO alone does not do it on this kernel): without one
        // the RST of a reject is silently lost. Any program that passes RSTs will do; ours, with
        // empty private maps, passes everything.
        let ifname = client_if.clone();
        let peer = client.run(move || attach_pass_xdp(&ifname));
        Self {
            _peer_xdp: Some(peer),
            _peer_xdp2: None,
            server,
            client,
            server_if,
            client_if,
        }
    }

    /// A second veth pair between the same namespaces (server 10.200.2.1, client 10.200.2.2),
    /// with a pass-everything XDP program on its client end like the first. Returns
    /// `(server_if, client_if)`; the pair goes away with the namespaces.
    pub fn add_second_pair(&mut self) -> (String, String) {
        let server_if = format!("{}2", self.server_if);
        let client_if = format!("{}2", self.client_if);
        veth_pair(&self.server, &self.client, &server_if, &client_if);
        for (ns, ifname, addr) in [
            (&self.server, &server_if, "10.200.2.1/24"),
            (&self.client, &client_if, "10.200.2.2/24"),
        ] {
            ip(&["-n", &ns.name, "addr", "add", addr, "dev", ifname]);
            ip(&["-n", &ns.name, "link", "set", ifname, "up"]);
        }
        let ifname = client_if.clone();
        self._peer_xdp2 = Some(self.client.run(move || attach_pass_xdp(&ifname)));
        (server_if, client_if)
    }

    /// Adds another client address (for sources inside/outside a prefix).
    pub fn add_client_addr(&self, cidr: &str) {
        let mut args = vec![
            "-n",
            &self.client.name,
            "addr",
            "add",
            cidr,
            "dev",
            &self.client_if,
        ];
        if cidr.contains(':') {
            args.push("nodad");
        }
        ip(&args);
    }
}

/// Loads the embedded object privately (nothing pinned) and attaches its XDP program to `ifname`
/// in native mode; detached when the returned `Ebpf` is dropped.
fn attach_pass_xdp(ifname: &str) -> aya::Ebpf {
    let mut ebpf = aya::Ebpf::load(enforcer::EBPF_OBJECT).expect("loading the eBPF object");
    let prog: &mut aya::programs::Xdp = ebpf
        .program_mut(enforcer_common::maps::PROG_XDP)
        .expect("XDP program")
        .try_into()
        .expect("an XDP program");
    prog.load().expect("loading the XDP program");
    prog.attach(ifname, aya::programs::XdpMode::Driver)
        .unwrap_or_else(|e| panic!("attaching XDP to the client veth {ifname}: {e}"));
    ebpf
}

/// What a TCP connect attempt got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connect {
    Connected,
    /// A RST came back (connection refused), after this long.
    Refused(Duration),
    /// No handshake within the timeout.
    TimedOut,
    Other(io::ErrorKind),
}

/// Connects from `ns` to `dst`, optionally from source address `src`.
pub fn connect(ns: &Netns, src: Option<IpAddr>, dst: SocketAddr, timeout: Duration) -> Connect {
    ns.run(move || {
        let start = Instant::now();
        let r = match src {
            None => TcpStream::connect_timeout(&dst, timeout),
            Some(src) => connect_from(src, dst, timeout),
        };
        match r {
            Ok(_) => Connect::Connected,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                Connect::Refused(start.elapsed())
            }
            Err(e)
                if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock =>
            {
                Connect::TimedOut
            }
            Err(e) => Connect::Other(e.kind()),
        }
    })
}

/// A connect bound to a source address (std has no bind-before-connect): a socket, bind, then a
/// non-blocking connect polled for `timeout`.
fn connect_from(src: IpAddr, dst: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    use std::os::fd::FromRawFd as _;
    let (fam, sa, len) = sockaddr(SocketAddr::new(src, 0));
    // SAFETY: raw socket calls on a socket we own; the sockaddr buffers outlive the calls.
    unsafe {
        let fd = libc::socket(
            fam,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        if libc::bind(fd, sa.as_ptr().cast(), len) != 0 {
            return Err(io::Error::last_os_error());
        }
        let (_, da, dlen) = sockaddr(dst);
        if libc::connect(fd, da.as_ptr().cast(), dlen) != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(e);
            }
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        };
        let n = libc::poll(&mut pfd, 1, timeout.as_millis() as i32);
        if n == 0 {
            return Err(io::ErrorKind::TimedOut.into());
        }
        if let Some(e) = stream.take_error()? {
            return Err(e);
        }
        Ok(stream)
    }
}

fn sockaddr(a: SocketAddr) -> (libc::c_int, Vec<u8>, libc::socklen_t) {
    match a {
        SocketAddr::V4(v4) => {
            let sa = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            let bytes = unsafe {
                std::slice::from_raw_parts(
                    (&sa as *const libc::sockaddr_in).cast::<u8>(),
                    size_of_val(&sa),
                )
            }
            .to_vec();
            (libc::AF_INET, bytes, size_of_val(&sa) as u32)
        }
        SocketAddr::V6(v6) => {
            let sa = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as u16,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            let bytes = unsafe {
                std::slice::from_raw_parts(
                    (&sa as *const libc::sockaddr_in6).cast::<u8>(),
                    size_of_val(&sa),
                )
            }
            .to_vec();
            (libc::AF_INET6, bytes, size_of_val(&sa) as u32)
        }
    }
}

/// TCP listeners on `[::]:port` (dual stack) in a namespace, accepting and closing connections on a
/// background thread until dropped.
pub struct Server {
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(ns: &Netns, ports: &[u16]) -> Self {
        let ports = ports.to_vec();
        let listeners: Vec<TcpListener> = ns.run(move || {
            ports
                .iter()
                .map(|p| {
                    let l = TcpListener::bind(("::", *p))
                        .unwrap_or_else(|e| panic!("bind [::]:{p}: {e}"));
                    l.set_nonblocking(true).unwrap();
                    l
                })
                .collect()
        });
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (s, a) = (stop.clone(), accepted.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                for l in &listeners {
                    while let Ok((c, _)) = l.accept() {
                        a.fetch_add(1, Ordering::Relaxed);
                        drop(c);
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Self {
            stop,
            accepted,
            thread: Some(thread),
        }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
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
