//! Packet parsing. [`Cursor`] is the only place that compares a packet pointer with the end of the
//! packet; every `parse_*` function takes one fixed-size header through it, checks it, and says what
//! comes next. A packet we cannot follow before its source address is known ends parsing with the
//! [`Reason`] it is counted under (fail open). Once the source is known, a packet that may be TCP but
//! whose TCP header is not all in view (a fragment, a header chain longer than we walk, headers past
//! the bytes in reach) is [`Parsed::Blind`]: it is judged on its source alone, so no packet shape
//! hides a SYN from a refusing entry.

use core::mem::size_of;

use enforcer_common::Reason;

pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
pub const IPPROTO_TCP: u8 = 6;
const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_DEST_OPTS: u8 = 60;
/// IPv6 extension headers we walk before TCP. Linux sets no limit short of the packet size; a
/// longer chain is judged on its source alone ([`Parsed::Blind`]). The verifier walks every chain
/// length for every VLAN depth: 8 headers and 4 tags verify in about a quarter of its 1M
/// instruction budget, twice that doubles it.
pub const MAX_IPV6_EXT_HEADERS: usize = 8;
/// VLAN tags we look through (802.1Q and 802.1ad, in any order). Linux strips any number of VID-0
/// tags and stacked VLAN devices go as deep as configured; a frame with more tags than this passes
/// as `Unparsable` (its source is out of reach).
pub const MAX_VLAN_TAGS: usize = 4;
/// IPv4 fragment offset (8-byte units) and more-fragments bits of `frag_off`.
const IPV4_OFFSET: u16 = 0x1fff;
const IPV4_MF: u16 = 0x2000;

pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

#[repr(C)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    /// Network order.
    pub proto: u16,
}

#[repr(C)]
pub struct VlanHdr {
    pub tci: u16,
    /// Network order: the EtherType of what follows the tag.
    pub proto: u16,
}

#[repr(C)]
pub struct Ipv4Hdr {
    pub ver_ihl: u8,
    pub tos: u8,
    pub tot_len: u16,
    pub id: u16,
    pub frag_off: u16,
    pub ttl: u8,
    pub proto: u8,
    pub check: u16,
    pub src: [u8; 4],
    pub dst: [u8; 4],
}

#[repr(C)]
pub struct Ipv6Hdr {
    pub vtc_flow: [u8; 4],
    pub payload_len: u16,
    pub next: u8,
    pub hop_limit: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

/// The common start of hop-by-hop, routing and destination-options headers; `len` counts 8-byte
/// units beyond the first 8.
#[repr(C)]
pub struct Ipv6ExtHdr {
    pub next: u8,
    pub len: u8,
}

/// IPv6 Fragment header.
#[repr(C)]
pub struct Ipv6FragHdr {
    pub next: u8,
    pub reserved: u8,
    /// Network order: offset in 8-byte units (high 13 bits) and the M flag (bit 0).
    pub frag_off: u16,
    pub id: u32,
}

/// The first four bytes of TCP: all a fragment may show.
#[repr(C)]
pub struct TcpPorts {
    pub sport: u16,
    pub dport: u16,
}

#[repr(C)]
pub struct TcpHdr {
    pub sport: u16,
    pub dport: u16,
    pub seq: [u8; 4],
    pub ack: [u8; 4],
    /// Data offset in the high nibble.
    pub doff_res: u8,
    pub flags: u8,
    pub window: u16,
    pub check: u16,
    pub urg: u16,
}

const _: () = assert!(size_of::<EthHdr>() == 14);
const _: () = assert!(size_of::<VlanHdr>() == 4);
const _: () = assert!(size_of::<Ipv4Hdr>() == 20);
const _: () = assert!(size_of::<Ipv6Hdr>() == 40);
const _: () = assert!(size_of::<TcpHdr>() == 20);
const _: () = assert!(size_of::<Ipv6FragHdr>() == 8);
const _: () = assert!(size_of::<TcpPorts>() == 4);

/// Walks a packet front to back. Holds raw packet addresses so the verifier keeps seeing packet
/// pointers; every access goes through [`Cursor::take`], which is where the bounds check lives.
pub struct Cursor {
    pos: usize,
    end: usize,
}

impl Cursor {
    #[inline(always)]
    pub fn new(start: usize, end: usize) -> Self {
        Self { pos: start, end }
    }

    /// The next `T` in the packet, or `Truncated` when the packet ends first.
    #[inline(always)]
    pub fn take<T>(&mut self) -> Result<*mut T, Reason> {
        let at = self.pos;
        if at + size_of::<T>() > self.end {
            return Err(Reason::Truncated);
        }
        self.pos = at + size_of::<T>();
        Ok(at as *mut T)
    }

    /// The next `T` if it is all there, without moving.
    #[inline(always)]
    pub fn peek<T>(&self) -> Option<*const T> {
        if self.pos + size_of::<T>() > self.end {
            return None;
        }
        Some(self.pos as *const T)
    }

    /// Skips `len` bytes (options, extension-header bodies), which must be present. `len` is masked
    /// by the caller to a small bound, so the verifier can follow the variable offset.
    #[inline(always)]
    pub fn skip(&mut self, len: usize) -> Result<(), Reason> {
        let at = self.pos + len;
        if at > self.end {
            return Err(Reason::Truncated);
        }
        self.pos = at;
        Ok(())
    }
}

/// The network header of a SYN.
#[derive(Clone, Copy)]
pub enum L3 {
    /// `options` is true when IHL > 5.
    V4 { ip: *mut Ipv4Hdr, options: bool },
    /// `ext` is true when extension headers sit between the IPv6 and TCP headers.
    V6 { ip: *mut Ipv6Hdr, ext: bool },
}

/// A TCP SYN (without ACK) to a protected port: the only kind of packet policy applies to.
#[derive(Clone, Copy)]
pub struct Syn {
    pub eth: *mut EthHdr,
    pub l3: L3,
    pub tcp: *mut TcpHdr,
}

/// A source address, pointing into the packet.
#[derive(Clone, Copy)]
pub enum Src {
    V4(*const [u8; 4]),
    V6(*const [u8; 16]),
}

/// What parsing found.
#[derive(Clone, Copy)]
pub enum Parsed {
    /// A whole SYN (not fragmented, or an IPv6 atomic fragment): judged in full.
    Syn(Syn),
    /// Possibly TCP from `src`, but the TCP header is not all in view. `port` is the destination port
    /// when it was seen (host order): then the packet is judged only when that port is protected, and
    /// it may be a connection attempt (it takes a rate-limit or notice token). Without a port (a
    /// non-first fragment, a chain we stopped walking) it is judged on the source alone. `pass` is
    /// the reason it is counted under when the source's entry does not refuse it.
    Blind {
        src: Src,
        port: Option<u16>,
        pass: Reason,
    },
}

impl Parsed {
    #[inline(always)]
    fn blind(src: Src, port: Option<u16>, pass: Reason) -> Self {
        Parsed::Blind { src, port, pass }
    }
}

/// Parses a frame up to the TCP flags. `Err` carries the fail-open reason; `Ok` is a SYN or a blind
/// packet whose destination port (if any) the caller still has to check.
#[inline(always)]
pub fn parse_frame(start: usize, end: usize) -> Result<Parsed, Reason> {
    let mut c = Cursor::new(start, end);
    let (eth, proto) = parse_eth(&mut c)?;
    match proto {
        ETH_P_IPV4 => parse_ipv4(&mut c, eth),
        ETH_P_IPV6 => parse_ipv6(&mut c, eth),
        ETH_P_8021Q | ETH_P_8021AD => Err(Reason::Unparsable),
        _ => Err(Reason::NotIp),
    }
}

/// Ethernet and up to [`MAX_VLAN_TAGS`] VLAN tags; returns the header and the EtherType after the
/// tags (host order), still a VLAN TPID when there were more tags than we walk.
#[inline(always)]
fn parse_eth(c: &mut Cursor) -> Result<(*mut EthHdr, u16), Reason> {
    let eth = c.take::<EthHdr>()?;
    let mut proto = u16::from_be(unsafe { (*eth).proto });
    for _ in 0..MAX_VLAN_TAGS {
        if proto != ETH_P_8021Q && proto != ETH_P_8021AD {
            break;
        }
        let vlan = c.take::<VlanHdr>()?;
        proto = u16::from_be(unsafe { (*vlan).proto });
    }
    Ok((eth, proto))
}

#[inline(always)]
fn parse_ipv4(c: &mut Cursor, eth: *mut EthHdr) -> Result<Parsed, Reason> {
    let ip = c.take::<Ipv4Hdr>()?;
    let ver_ihl = unsafe { (*ip).ver_ihl };
    let ihl = (ver_ihl & 0x0f) as usize;
    // Linux drops these before any protocol sees them.
    if ver_ihl >> 4 != 4 || ihl < 5 {
        return Err(Reason::Unparsable);
    }
    let frag = u16::from_be(unsafe { (*ip).frag_off });
    if unsafe { (*ip).proto } != IPPROTO_TCP {
        return Err(if frag & (IPV4_MF | IPV4_OFFSET) != 0 {
            Reason::Fragment
        } else {
            Reason::NotTcp
        });
    }
    let src = Src::V4(unsafe { core::ptr::addr_of!((*ip).src) });
    // A non-first fragment carries no TCP header at all.
    if frag & IPV4_OFFSET != 0 {
        return Ok(Parsed::blind(src, None, Reason::Fragment));
    }
    let options = ihl > 5;
    // Options are rare: the common 20-byte header skips nothing and needs no second bounds check.
    if options && c.skip((ihl - 5) * 4).is_err() {
        return Ok(Parsed::blind(src, None, Reason::Truncated));
    }
    let pass = if frag & IPV4_MF != 0 {
        Reason::Fragment
    } else {
        Reason::Truncated
    };
    parse_tcp(
        c,
        eth,
        L3::V4 { ip, options },
        src,
        frag & IPV4_MF != 0,
        pass,
    )
}

#[inline(always)]
fn parse_ipv6(c: &mut Cursor, eth: *mut EthHdr) -> Result<Parsed, Reason> {
    let ip = c.take::<Ipv6Hdr>()?;
    if unsafe { (*ip).vtc_flow[0] } >> 4 != 6 {
        return Err(Reason::Unparsable);
    }
    let src = Src::V6(unsafe { core::ptr::addr_of!((*ip).src) });
    let mut next = unsafe { (*ip).next };
    let mut ext = false;
    // Set by a first fragment (offset 0, M = 1): the TCP header is seen but the SYN is incomplete.
    let mut first_fragment = false;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        match next {
            IPPROTO_TCP => {
                let pass = if first_fragment {
                    Reason::Fragment
                } else {
                    Reason::Truncated
                };
                return parse_tcp(c, eth, L3::V6 { ip, ext }, src, first_fragment, pass);
            }
            IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS => {
                let Ok(h) = c.take::<Ipv6ExtHdr>() else {
                    return Ok(Parsed::blind(src, None, Reason::Truncated));
                };
                next = unsafe { (*h).next };
                // (len + 1) * 8 bytes in all, 2 of which were just taken.
                if c.skip(unsafe { (*h).len } as usize * 8 + 6).is_err() {
                    return Ok(Parsed::blind(src, None, Reason::Truncated));
                }
                ext = true;
            }
            IPV6_FRAGMENT => {
                let Ok(h) = c.take::<Ipv6FragHdr>() else {
                    return Ok(Parsed::blind(src, None, Reason::Truncated));
                };
                next = unsafe { (*h).next };
                let off = u16::from_be(unsafe { (*h).frag_off });
                if off & !7 != 0 {
                    // A non-first fragment: its headers are in the first one. Only a fragment
                    // whose payload may be (or lead to) TCP is judged.
                    return match next {
                        IPPROTO_TCP | IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS => {
                            Ok(Parsed::blind(src, None, Reason::Fragment))
                        }
                        _ => Err(Reason::Fragment),
                    };
                }
                // Offset 0: a first fragment when M is set; an atomic fragment (RFC 6946) is a
                // whole packet, as Linux treats it.
                if off & 1 != 0 {
                    first_fragment = true;
                }
                ext = true;
            }
            _ => return Err(Reason::NotTcp),
        }
    }
    if next == IPPROTO_TCP {
        let pass = if first_fragment {
            Reason::Fragment
        } else {
            Reason::Truncated
        };
        return parse_tcp(c, eth, L3::V6 { ip, ext }, src, first_fragment, pass);
    }
    // A chain longer than we walk: whatever follows may be TCP.
    Ok(Parsed::blind(src, None, Reason::Unparsable))
}

/// The TCP header. Flags are checked before the options are skipped, so anything but a SYN without
/// ACK passes at the cost of one bounds check. A SYN in a first fragment, or whose header is not all
/// there, is blind with its port known.
#[inline(always)]
fn parse_tcp(
    c: &mut Cursor,
    eth: *mut EthHdr,
    l3: L3,
    src: Src,
    fragment: bool,
    pass: Reason,
) -> Result<Parsed, Reason> {
    let Ok(tcp) = c.take::<TcpHdr>() else {
        let port = c
            .peek::<TcpPorts>()
            .map(|p| u16::from_be(unsafe { (*p).dport }));
        return Ok(Parsed::blind(src, port, pass));
    };
    if unsafe { (*tcp).flags } & (TCP_SYN | TCP_ACK) != TCP_SYN {
        return Err(Reason::NotSyn);
    }
    let doff = (unsafe { (*tcp).doff_res } >> 4) as usize;
    if doff < 5 {
        return Err(Reason::Unparsable);
    }
    let port = Some(u16::from_be(unsafe { (*tcp).dport }));
    if fragment || c.skip((doff - 5) * 4).is_err() {
        return Ok(Parsed::blind(src, port, pass));
    }
    Ok(Parsed::Syn(Syn { eth, l3, tcp }))
}
