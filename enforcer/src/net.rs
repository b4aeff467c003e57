//! Addresses and prefixes as operators type them: `192.0.2.7`, `192.0.2.0/24`, `2001:db8::/32`.
//! A bare address is a host (/32 or /128). Host bits below the prefix length are an error rather than
//! silently masked, so a typo like `10.1.2.3/16` is caught. IPv4-mapped IPv6 (`::ffff:192.0.2.7`) is
//! the IPv4 address it maps: the datapath sees an IPv4 SYN from that sender, never an IPv6 one.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IPv4 or IPv6 prefix with no host bits set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("`{0}` is not an IPv4 or IPv6 address (examples: 192.0.2.7, 2001:db8::1)")]
    BadAddress(String),
    #[error("prefix length in `{input}` must be a number from 0 to {max}")]
    BadLength { input: String, max: u8 },
    #[error("`{input}` has host bits set below /{len}; did you mean {suggest}?")]
    HostBits {
        input: String,
        len: u8,
        suggest: String,
    },
}

impl Prefix {
    /// A prefix from an address and length; host bits must be clear.
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, PrefixError> {
        let max = max_len(&addr);
        if len > max {
            return Err(PrefixError::BadLength {
                input: format!("{addr}/{len}"),
                max,
            });
        }
        let masked = mask(addr, len);
        if masked != addr {
            return Err(PrefixError::HostBits {
                input: format!("{addr}/{len}"),
                len,
                suggest: format!("{masked}/{len}"),
            });
        }
        Ok(Self { addr, len })
    }

    /// `0.0.0.0/0`.
    pub const ZERO_V4: Prefix = Prefix {
        addr: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        len: 0,
    };

    /// The prefix of length `len` containing `addr` (host bits cleared).
    pub fn containing(addr: IpAddr, len: u8) -> Self {
        let (addr, len) = canonical(addr, len);
        let len = len.min(max_len(&addr));
        Self {
            addr: mask(addr, len),
            len,
        }
    }

    /// A single host (/32 or /128).
    pub fn host(addr: IpAddr) -> Self {
        let addr = addr.to_canonical();
        Self {
            addr,
            len: max_len(&addr),
        }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits (not a container size, hence no `is_empty`).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u8 {
        self.len
    }

    pub fn is_host(&self) -> bool {
        self.len == max_len(&self.addr)
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// Whether `ip` lies inside this prefix (always false across address families).
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.len) == self.addr
    }
}

/// An IPv4-mapped IPv6 address and a length covering at least its 96-bit mapping prefix, as the
/// IPv4 address and length they stand for; anything else unchanged.
fn canonical(addr: IpAddr, len: u8) -> (IpAddr, u8) {
    match addr {
        IpAddr::V6(v6) if len >= 96 => match v6.to_ipv4_mapped() {
            Some(v4) => (IpAddr::V4(v4), len - 96),
            None => (addr, len),
        },
        _ => (addr, len),
    }
}

/// Why a prefix can never be the source of a SYN from a sending mail server, if so.
fn never_a_sender(p: &Prefix) -> Option<&'static str> {
    let inside = |net: &str| {
        let n: Prefix = net.parse().expect("built-in prefix");
        p.len >= n.len && n.contains(p.addr)
    };
    let ranges: &[(&str, &str)] = match p.addr {
        IpAddr::V4(_) => &[
            ("0.0.0.0/8", "the unspecified / \"this network\" block"),
            ("127.0.0.0/8", "loopback"),
            ("224.0.0.0/4", "multicast"),
            ("255.255.255.255/32", "the broadcast address"),
            ("240.0.0.0/4", "reserved (class E)"),
        ],
        IpAddr::V6(_) => &[
            ("::/128", "the unspecified address"),
            ("::1/128", "loopback"),
            ("ff00::/8", "multicast"),
        ],
    };
    ranges
        .iter()
        .find(|(net, _)| p.len > 0 && inside(net))
        .map(|(_, why)| *why)
}

/// Every address configured on this host's interfaces.
pub fn local_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we walk read-only and free with freeifaddrs.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut p = head;
        while !p.is_null() {
            let sa = (*p).ifa_addr;
            if !sa.is_null() {
                match i32::from((*sa).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(sa as *const libc::sockaddr_in);
                        out.push(IpAddr::from(
                            u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                        ));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(sa as *const libc::sockaddr_in6);
                        out.push(IpAddr::from(sin6.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            p = (*p).ifa_next;
        }
        libc::freeifaddrs(head);
    }
    out
}

/// Checks that `p` could be a sending server (or a block of them) before it gets an entry or
/// evidence: loopback, unspecified, multicast, broadcast and this host's own addresses never send
/// us a SYN from outside; a default route (`0.0.0.0/0`, `::/0`) covers every sender and needs
/// `force`. The error says what is wrong and how to proceed.
pub fn check_sender(p: &Prefix, local: &[IpAddr], force: bool) -> Result<(), String> {
    if let Some(why) = never_a_sender(p) {
        return Err(format!(
            "{p} is {why}: no mail server sends from there; give the sending server's public address or prefix"
        ));
    }
    if p.is_host() && local.contains(&p.addr) {
        return Err(format!(
            "{} is an address of this host: enforcing on it could cut the host off; give the sending server's address",
            p.addr
        ));
    }
    if p.len == 0 && !force {
        return Err(format!(
            "{p} covers every sender on the Internet; pass --force if that is really meant"
        ));
    }
    Ok(())
}

fn max_len(addr: &IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = if len == 0 {
                0
            } else {
                u32::MAX << (32 - len as u32)
            };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len as u32)
            };
            IpAddr::V6((bits & m).into())
        }
    }
}

impl FromStr for Prefix {
    type Err = PrefixError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr_s, len_s) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let parsed: IpAddr = addr_s
            .parse()
            .map_err(|_| PrefixError::BadAddress(addr_s.to_string()))?;
        let max = max_len(&parsed);
        let len = match len_s {
            None => max,
            Some(l) => match l.parse::<u8>() {
                Ok(n) if n <= max && !l.starts_with('+') => n,
                _ => {
                    return Err(PrefixError::BadLength {
                        input: s.to_string(),
                        max,
                    })
                }
            },
        };
        let (addr, len) = canonical(parsed, len);
        Prefix::new(addr, len).map_err(|e| match e {
            PrefixError::HostBits { len, suggest, .. } => PrefixError::HostBits {
                input: s.to_string(),
                len,
                suggest,
            },
            other => other,
        })
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

crate::text_serde::serde_via_str!(Prefix);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_and_prefixes() {
        let p: Prefix = "192.0.2.7".parse().unwrap();
        assert!(p.is_host());
        assert_eq!(p.to_string(), "192.0.2.7/32");
        let p: Prefix = "192.0.2.0/24".parse().unwrap();
        assert_eq!(p.len(), 24);
        assert!(p.contains("192.0.2.200".parse().unwrap()));
        assert!(!p.contains("192.0.3.1".parse().unwrap()));
        assert!(!p.contains("::1".parse().unwrap()));
        let p: Prefix = "2001:db8::/32".parse().unwrap();
        assert!(p.contains("2001:db8:1::5".parse().unwrap()));
        let p: Prefix = "0.0.0.0/0".parse().unwrap();
        assert!(p.contains("203.0.113.9".parse().unwrap()));
    }

    #[test]
    fn rejects_bad_input_with_a_reason() {
        for bad in [
            "10.0.0.0/33",
            "::1/129",
            "300.1.1.1",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "",
            "mx.example.com",
            "10.0.0.0/24/1",
        ] {
            let err = bad.parse::<Prefix>().unwrap_err();
            assert!(!err.to_string().is_empty(), "{bad}");
        }
        let err = "10.1.2.3/16".parse::<Prefix>().unwrap_err();
        assert!(err.to_string().contains("10.1.0.0/16"), "{err}");
    }

    #[test]
    fn ipv4_mapped_addresses_are_ipv4() {
        let p: Prefix = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(p.to_string(), "192.0.2.7/32");
        let p: Prefix = "::ffff:192.0.2.0/120".parse().unwrap();
        assert_eq!(p.to_string(), "192.0.2.0/24");
        assert_eq!(
            Prefix::host("::ffff:198.51.100.1".parse().unwrap()).to_string(),
            "198.51.100.1/32"
        );
        assert_eq!(
            Prefix::containing("::ffff:198.51.100.1".parse().unwrap(), 120).to_string(),
            "198.51.100.0/24"
        );
        // Not mapped: unchanged.
        assert_eq!(
            "2001:db8::/32".parse::<Prefix>().unwrap().to_string(),
            "2001:db8::/32"
        );
    }

    #[test]
    fn what_can_never_be_a_sender_is_refused() {
        let local: Vec<IpAddr> = vec!["203.0.113.25".parse().unwrap()];
        let check = |s: &str, force| check_sender(&s.parse().unwrap(), &local, force);
        for bad in [
            "0.0.0.0",
            "255.255.255.255",
            "127.0.0.1",
            "127.0.0.0/8",
            "224.0.0.5",
            "::",
            "::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "203.0.113.25",
        ] {
            assert!(check(bad, true).is_err(), "{bad}");
        }
        let e = check("0.0.0.0/0", false).unwrap_err();
        assert!(e.contains("--force"), "{e}");
        assert!(check("::/0", false).unwrap_err().contains("--force"));
        assert!(check("0.0.0.0/0", true).is_ok());
        assert!(check("::/0", true).is_ok());
        for good in [
            "198.51.100.7",
            "203.0.113.0/24",
            "2001:db8::25",
            "192.0.2.0/24",
        ] {
            assert!(check(good, false).is_ok(), "{good}");
        }
        let own = local_addresses();
        assert!(own.iter().any(|a| a.is_loopback()), "{own:?}");
    }

    #[test]
    fn containing_masks() {
        let p = Prefix::containing("198.51.100.77".parse().unwrap(), 24);
        assert_eq!(p.to_string(), "198.51.100.0/24");
        let p = Prefix::containing("2001:db8:1:2:3::9".parse().unwrap(), 64);
        assert_eq!(p.to_string(), "2001:db8:1:2::/64");
    }
}
