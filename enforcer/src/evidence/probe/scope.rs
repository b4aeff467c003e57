//! Which addresses the probe may connect to. Never: unspecified, broadcast, multicast, documentation,
//! benchmarking, reserved and other special-purpose ranges, nor the host's own addresses. The
//! private class (loopback, RFC 1918, CGNAT, link-local, unique-local) only with
//! `probe.allow_private = true`. IPv4-mapped and IPv4-compatible IPv6 addresses are judged as the
//! IPv4 address they carry.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not probed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Excluded {
    /// Loopback, RFC 1918, CGNAT 100.64/10, link-local, fc00::/7: lifted by `allow_private`.
    Private,
    /// Unspecified, broadcast, multicast, documentation, benchmarking, reserved: never probed.
    Special,
    /// One of this host's own addresses.
    Own,
}

impl Excluded {
    /// The `reason` label of the skipped-probes counter.
    pub fn id(self) -> &'static str {
        match self {
            Excluded::Private => "private",
            Excluded::Special => "special",
            Excluded::Own => "own_address",
        }
    }
}

fn in4(a: Ipv4Addr, net: [u8; 4], len: u32) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(a) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn in6(a: Ipv6Addr, net: [u16; 8], len: u32) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    };
    u128::from(a) & mask == u128::from(Ipv6Addr::from(net)) & mask
}

const PRIVATE_V4: [([u8; 4], u32); 6] = [
    ([127, 0, 0, 0], 8),
    ([10, 0, 0, 0], 8),
    ([172, 16, 0, 0], 12),
    ([192, 168, 0, 0], 16),
    ([100, 64, 0, 0], 10),
    ([169, 254, 0, 0], 16),
];

const SPECIAL_V4: [([u8; 4], u32); 9] = [
    ([0, 0, 0, 0], 8),       // "this network", unspecified
    ([192, 0, 0, 0], 24),    // IETF protocol assignments
    ([192, 0, 2, 0], 24),    // TEST-NET-1
    ([198, 51, 100, 0], 24), // TEST-NET-2
    ([203, 0, 113, 0], 24),  // TEST-NET-3
    ([198, 18, 0, 0], 15),   // benchmarking
    ([192, 88, 99, 0], 24),  // deprecated 6to4 relay anycast
    ([224, 0, 0, 0], 4),     // multicast
    ([240, 0, 0, 0], 4),     // reserved, and 255.255.255.255 broadcast
];

const PRIVATE_V6: [([u16; 8], u32); 3] = [
    ([0, 0, 0, 0, 0, 0, 0, 1], 128), // loopback
    ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
    ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
];

const SPECIAL_V6: [([u16; 8], u32); 9] = [
    ([0, 0, 0, 0, 0, 0, 0, 0], 128),          // unspecified
    ([0x2001, 0x0db8, 0, 0, 0, 0, 0, 0], 32), // documentation
    ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),      // documentation (RFC 9637)
    ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),       // multicast
    ([0x0100, 0, 0, 0, 0, 0, 0, 0], 64),      // discard-only
    ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),      // IETF protocol assignments (Teredo, benchmarking…)
    ([0x2002, 0, 0, 0, 0, 0, 0, 0], 16),      // 6to4: another host's IPv4 inside
    ([0x0064, 0xff9b, 0, 0, 0, 0, 0, 0], 96), // NAT64: another network's IPv4 inside
    ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),      // deprecated site-local
];

/// Why `addr` must not be probed, or `None` when it may be. `own` lists the host's addresses.
pub fn excluded(addr: IpAddr, allow_private: bool, own: &[IpAddr]) -> Option<Excluded> {
    let addr = canonical(addr);
    if own.iter().any(|o| canonical(*o) == addr) {
        return Some(Excluded::Own);
    }
    let (special, private) = match addr {
        IpAddr::V4(a) => (
            SPECIAL_V4.iter().any(|(n, l)| in4(a, *n, *l)),
            PRIVATE_V4.iter().any(|(n, l)| in4(a, *n, *l)),
        ),
        IpAddr::V6(a) => (
            SPECIAL_V6.iter().any(|(n, l)| in6(a, *n, *l))
                // Other IPv4-compatible forms (::/96 beyond :: and ::1) are deprecated.
                || (in6(a, [0; 8], 96) && !private_v6(a)),
            private_v6(a),
        ),
    };
    if special {
        Some(Excluded::Special)
    } else if private && !allow_private {
        Some(Excluded::Private)
    } else {
        None
    }
}

fn private_v6(a: Ipv6Addr) -> bool {
    PRIVATE_V6.iter().any(|(n, l)| in6(a, *n, *l))
}

/// The IPv4 address inside an IPv4-mapped IPv6 address, else the address itself.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(a),
        },
        v4 => v4,
    }
}

/// This host's addresses (every interface of the daemon's network namespace).
pub fn own_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below; every node is read only while it lives.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: the family says which sockaddr type the pointer holds.
            match i32::from(unsafe { (*ifa.ifa_addr).sa_family }) {
                libc::AF_INET => {
                    let sa = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                    out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr))));
                }
                libc::AF_INET6 => {
                    let sa = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                    out.push(IpAddr::V6(Ipv6Addr::from(sa.sin6_addr.s6_addr)));
                }
                _ => {}
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}
