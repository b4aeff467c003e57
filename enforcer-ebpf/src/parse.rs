//! Packet parsing. [`Cursor`] is the only place that compares a packet pointer with the end of the
//! packet; every `parse_*` function takes one fixed-size header through it, checks it, and says what
//! comes next. Anything we cannot follow ends parsing with the [`Reason`] it is counted under (fail open).

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
/// More than this many IPv6 extension headers before TCP is counted as unparsable.
pub const MAX_IPV6_EXT_HEADERS: usize = 6;
/// VLAN tags we look through (802.1Q, and 802.1ad QinQ outside it).
const MAX_VLAN_TAGS: usize = 2;

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

/// Parses a frame up to the TCP flags. `Err` carries the fail-open reason; `Ok` is a SYN whose
/// destination port the caller still has to check.
#[inline(always)]
pub fn parse_frame(start: usize, end: usize) -> Result<Syn, Reason> {
    let mut c = Cursor::new(start, end);
    let (eth, proto) = parse_eth(&mut c)?;
    let l3 = match proto {
        ETH_P_IPV4 => parse_ipv4(&mut c)?,
        ETH_P_IPV6 => parse_ipv6(&mut c)?,
        _ => return Err(Reason::NotIp),
    };
    let tcp = parse_tcp(&mut c)?;
    Ok(Syn { eth, l3, tcp })
}

/// Ethernet and up to two VLAN tags; returns the header and the EtherType after the tags (host order).
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
fn parse_ipv4(c: &mut Cursor) -> Result<L3, Reason> {
    let ip = c.take::<Ipv4Hdr>()?;
    let ver_ihl = unsafe { (*ip).ver_ihl };
    let ihl = (ver_ihl & 0x0f) as usize;
    if ver_ihl >> 4 != 4 || ihl < 5 {
        return Err(Reason::Unparsable);
    }
    // MF set or a non-zero offset: no (complete) TCP header to judge.
    if u16::from_be(unsafe { (*ip).frag_off }) & 0x3fff != 0 {
        return Err(Reason::Fragment);
    }
    if unsafe { (*ip).proto } != IPPROTO_TCP {
        return Err(Reason::NotTcp);
    }
    let options = ihl > 5;
    // Options are rare: the common 20-byte header skips nothing and needs no second bounds check.
    if options {
        c.skip((ihl - 5) * 4)?;
    }
    Ok(L3::V4 { ip, options })
}

#[inline(always)]
fn parse_ipv6(c: &mut Cursor) -> Result<L3, Reason> {
    let ip = c.take::<Ipv6Hdr>()?;
    if unsafe { (*ip).vtc_flow[0] } >> 4 != 6 {
        return Err(Reason::Unparsable);
    }
    let mut next = unsafe { (*ip).next };
    let mut ext = false;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        match next {
            IPPROTO_TCP => return Ok(L3::V6 { ip, ext }),
            IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS => {
                let h = c.take::<Ipv6ExtHdr>()?;
                next = unsafe { (*h).next };
                // (len + 1) * 8 bytes in all, 2 of which were just taken.
                c.skip(unsafe { (*h).len } as usize * 8 + 6)?;
                ext = true;
            }
            IPV6_FRAGMENT => return Err(Reason::Fragment),
            _ => return Err(Reason::NotTcp),
        }
    }
    if next == IPPROTO_TCP {
        Ok(L3::V6 { ip, ext })
    } else {
        Err(Reason::Unparsable)
    }
}

/// TCP header with its options (doff honoured); only a SYN without ACK goes on.
#[inline(always)]
fn parse_tcp(c: &mut Cursor) -> Result<*mut TcpHdr, Reason> {
    let tcp = c.take::<TcpHdr>()?;
    let doff = (unsafe { (*tcp).doff_res } >> 4) as usize;
    if doff < 5 {
        return Err(Reason::Unparsable);
    }
    c.skip((doff - 5) * 4)?;
    if unsafe { (*tcp).flags } & (TCP_SYN | TCP_ACK) != TCP_SYN {
        return Err(Reason::NotSyn);
    }
    Ok(tcp)
}
