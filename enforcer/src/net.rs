//! Addresses and prefixes as operators type them: `192.0.2.7`, `192.0.2.0/24`, `2001:db8::/32`.
//! A bare address is a host (/32 or /128). Host bits below the prefix length are an error rather than
//! silently masked, so a typo like `10.1.2.3/16` is caught.

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

    /// The prefix of length `len` containing `addr` (host bits cleared).
    pub fn containing(addr: IpAddr, len: u8) -> Self {
        let len = len.min(max_len(&addr));
        Self {
            addr: mask(addr, len),
            len,
        }
    }

    /// A single host (/32 or /128).
    pub fn host(addr: IpAddr) -> Self {
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
        let addr: IpAddr = addr_s
            .parse()
            .map_err(|_| PrefixError::BadAddress(addr_s.to_string()))?;
        let max = max_len(&addr);
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
    fn containing_masks() {
        let p = Prefix::containing("198.51.100.77".parse().unwrap(), 24);
        assert_eq!(p.to_string(), "198.51.100.0/24");
        let p = Prefix::containing("2001:db8:1:2:3::9".parse().unwrap(), 64);
        assert_eq!(p.to_string(), "2001:db8:1:2::/64");
    }
}
