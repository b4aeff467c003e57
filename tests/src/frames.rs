//! Frame builders for BPF_PROG_TEST_RUN: Ethernet (with VLAN tags), IPv4 (options, fragments), IPv6
//! (extension-header chains), TCP (options, payload), UDP, ICMP and ARP, all with valid checksums; and
//! an independent reader for the RST|ACK the datapath answers with, which re-verifies its checksums.

use std::net::IpAddr;

pub const MAC_CLIENT: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0c];
pub const MAC_SERVER: [u8; 6] = [0x02, 0, 0, 0, 0, 0x5e];
pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;
pub const EXT_HOP_BY_HOP: u8 = 0;
pub const EXT_ROUTING: u8 = 43;
pub const EXT_FRAGMENT: u8 = 44;
pub const EXT_DEST_OPTS: u8 = 60;

/// RFC 1071 one's-complement sum, folded (not inverted).
pub fn ones_sum(data: &[u8], mut sum: u32) -> u32 {
    for chunk in data.chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from_be_bytes([chunk[0], 0])
        };
        sum += word as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

pub fn checksum(data: &[u8]) -> u16 {
    !(ones_sum(data, 0) as u16)
}

fn pseudo_sum(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u32 {
    let mut p = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend(s.octets());
            p.extend(d.octets());
            p.extend([0, proto]);
            p.extend((len as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend(s.octets());
            p.extend(d.octets());
            p.extend((len as u32).to_be_bytes());
            p.extend([0, 0, 0, proto]);
        }
        _ => panic!("mixed address families"),
    }
    ones_sum(&p, 0)
}

/// Transport checksum over pseudo-header + segment (the segment's checksum field included, so a
/// valid segment sums to 0xffff; pass the segment with a zeroed field to compute one).
pub fn l4_checksum(src: IpAddr, dst: IpAddr, proto: u8, segment: &[u8]) -> u16 {
    !(ones_sum(segment, pseudo_sum(src, dst, proto, segment.len())) as u16)
}

/// A TCP segment's fields.
#[derive(Clone, Debug)]
pub struct Tcp {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    /// Raw option bytes, padded by the builder to a multiple of 4.
    pub options: Vec<u8>,
    pub payload: Vec<u8>,
}

impl Tcp {
    pub fn syn(sport: u16, dport: u16) -> Self {
        Self {
            sport,
            dport,
            seq: 0x1234_5678,
            ack: 0,
            flags: SYN,
            options: Vec::new(),
            payload: Vec::new(),
        }
    }

    pub fn flags(mut self, flags: u8) -> Self {
        self.flags = flags;
        self
    }

    /// Typical SYN options: MSS 1460, SACK permitted, timestamps, NOP, window scale 7.
    pub fn with_typical_options(mut self) -> Self {
        self.options = vec![
            2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
        ];
        self
    }

    pub fn encode(&self, src: IpAddr, dst: IpAddr) -> Vec<u8> {
        let mut opts = self.options.clone();
        while !opts.len().is_multiple_of(4) {
            opts.push(0);
        }
        let doff = (20 + opts.len()) / 4;
        let mut s = Vec::new();
        s.extend(self.sport.to_be_bytes());
        s.extend(self.dport.to_be_bytes());
        s.extend(self.seq.to_be_bytes());
        s.extend(self.ack.to_be_bytes());
        s.push((doff as u8) << 4);
        s.push(self.flags);
        s.extend(64240u16.to_be_bytes());
        s.extend([0, 0, 0, 0]);
        s.extend(opts);
        s.extend(&self.payload);
        let c = l4_checksum(src, dst, PROTO_TCP, &s);
        s[16..18].copy_from_slice(&c.to_be_bytes());
        s
    }
}

pub fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut s = Vec::new();
    s.extend(sport.to_be_bytes());
    s.extend(dport.to_be_bytes());
    s.extend(((8 + payload.len()) as u16).to_be_bytes());
    s.extend([0, 0]);
    s.extend(payload);
    let c = l4_checksum(src, dst, PROTO_UDP, &s);
    s[6..8].copy_from_slice(&c.to_be_bytes());
    s
}

/// ICMP (v4) echo request; for ICMPv6 the checksum is left 0 (the datapath never reads it).
pub fn icmp_echo() -> Vec<u8> {
    let mut s = vec![8, 0, 0, 0, 0, 1, 0, 1, b'p', b'i', b'n', b'g'];
    let c = checksum(&s);
    s[2..4].copy_from_slice(&c.to_be_bytes());
    s
}

/// IPv4 header (+ options, padded to 4) and payload, with a valid header checksum.
/// `frag` is the flags+offset field in host order (0x2000 = MF, low 13 bits = offset / 8).
pub fn ipv4(
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    options: &[u8],
    frag: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut opts = options.to_vec();
    while !opts.len().is_multiple_of(4) {
        opts.push(0);
    }
    let hlen = 20 + opts.len();
    let mut h = vec![0x40 | (hlen / 4) as u8, 0];
    h.extend(((hlen + payload.len()) as u16).to_be_bytes());
    h.extend(0x4242u16.to_be_bytes());
    h.extend(frag.to_be_bytes());
    h.push(64);
    h.push(proto);
    h.extend([0, 0]);
    h.extend(src);
    h.extend(dst);
    h.extend(opts);
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend(payload);
    h
}

/// One IPv6 extension header: its type and its body after the 2-byte (next, len) prefix. Bodies are
/// padded so the header is a multiple of 8 bytes (the fragment header is always 8).
#[derive(Clone, Debug)]
pub struct Ext {
    pub kind: u8,
    pub body: Vec<u8>,
}

impl Ext {
    /// A header of `kind` with PadN filling `8 * units` bytes in all.
    pub fn padded(kind: u8, units: usize) -> Self {
        let n = 8 * units - 2;
        let mut body = vec![1, (n - 2) as u8];
        body.resize(n, 0);
        Self { kind, body }
    }

    /// Fragment header: offset in 8-byte units, more-fragments flag.
    pub fn fragment(offset: u16, more: bool) -> Self {
        let field = (offset << 3) | more as u16;
        // After the (next, reserved) prefix: offset/flags and the identification, 8 bytes in all.
        let mut body = field.to_be_bytes().to_vec();
        body.extend(0xabcd_0001u32.to_be_bytes());
        Self {
            kind: EXT_FRAGMENT,
            body,
        }
    }
}

/// IPv6 header, extension-header chain and upper-layer payload (`proto` is the last next-header).
pub fn ipv6(src: [u8; 16], dst: [u8; 16], exts: &[Ext], proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut chain = Vec::new();
    for (i, e) in exts.iter().enumerate() {
        let next = exts.get(i + 1).map_or(proto, |n| n.kind);
        let mut body = e.body.clone();
        while !(body.len() + 2).is_multiple_of(8) {
            body.push(0);
        }
        let len = if e.kind == EXT_FRAGMENT {
            0
        } else {
            ((body.len() + 2) / 8 - 1) as u8
        };
        chain.push(next);
        chain.push(len);
        chain.extend(body);
    }
    let first = exts.first().map_or(proto, |e| e.kind);
    let mut h = vec![0x60, 0, 0, 0];
    h.extend(((chain.len() + payload.len()) as u16).to_be_bytes());
    h.push(first);
    h.push(64);
    h.extend(src);
    h.extend(dst);
    h.extend(chain);
    h.extend(payload);
    h
}

/// Ethernet frame from the client to the server; `vlans` are (TPID, TCI) outermost first.
pub fn ethernet(vlans: &[(u16, u16)], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend(MAC_SERVER);
    f.extend(MAC_CLIENT);
    for (tpid, tci) in vlans {
        f.extend(tpid.to_be_bytes());
        f.extend(tci.to_be_bytes());
    }
    f.extend(ethertype.to_be_bytes());
    f.extend(payload);
    f
}

pub fn arp_request() -> Vec<u8> {
    let mut p = vec![0, 1, 8, 0, 6, 4, 0, 1];
    p.extend(MAC_CLIENT);
    p.extend([10, 200, 0, 2]);
    p.extend([0; 6]);
    p.extend([10, 200, 0, 1]);
    ethernet(&[], ETH_P_ARP, &p)
}

/// A complete TCP frame over IPv4 (no options, not fragmented).
pub fn tcp_v4(vlans: &[(u16, u16)], src: [u8; 4], dst: [u8; 4], tcp: &Tcp) -> Vec<u8> {
    let seg = tcp.encode(src.into(), dst.into());
    ethernet(vlans, ETH_P_IPV4, &ipv4(src, dst, PROTO_TCP, &[], 0, &seg))
}

/// A complete TCP frame over IPv6 with an extension-header chain.
pub fn tcp_v6(
    vlans: &[(u16, u16)],
    src: [u8; 16],
    dst: [u8; 16],
    exts: &[Ext],
    tcp: &Tcp,
) -> Vec<u8> {
    let seg = tcp.encode(src.into(), dst.into());
    ethernet(vlans, ETH_P_IPV6, &ipv6(src, dst, exts, PROTO_TCP, &seg))
}

/// A TCP reply read back from a frame, with its checksums verified independently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub vlans: Vec<(u16, u16)>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub doff: u8,
    pub ip_checksum_ok: bool,
    pub tcp_checksum_ok: bool,
    /// Bytes after the TCP header (options or payload or trailing garbage): the reply has none.
    pub trailing: usize,
}

/// Reads an Ethernet (+VLAN) / IPv4-or-IPv6 (no options or extensions) / TCP frame.
pub fn read_reply(f: &[u8]) -> Result<Reply, String> {
    let need = |n: usize| {
        if f.len() < n {
            Err(format!("frame of {} bytes is shorter than {n}", f.len()))
        } else {
            Ok(())
        }
    };
    need(14)?;
    let mut off = 12;
    let mut vlans = Vec::new();
    let mut ethertype = u16::from_be_bytes([f[off], f[off + 1]]);
    while ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        need(off + 6)?;
        vlans.push((ethertype, u16::from_be_bytes([f[off + 2], f[off + 3]])));
        off += 4;
        ethertype = u16::from_be_bytes([f[off], f[off + 1]]);
    }
    off += 2;
    let (src, dst, ttl, ip_ok, l4_off, l4_len): (IpAddr, IpAddr, u8, bool, usize, usize) =
        match ethertype {
            ETH_P_IPV4 => {
                need(off + 20)?;
                let ip = &f[off..off + 20];
                if ip[0] != 0x45 || ip[9] != PROTO_TCP {
                    return Err(format!("not a plain IPv4/TCP header: {:02x?}", ip));
                }
                let tot = u16::from_be_bytes([ip[2], ip[3]]) as usize;
                let s: [u8; 4] = ip[12..16].try_into().unwrap();
                let d: [u8; 4] = ip[16..20].try_into().unwrap();
                (
                    s.into(),
                    d.into(),
                    ip[8],
                    checksum(ip) == 0,
                    off + 20,
                    tot.saturating_sub(20),
                )
            }
            ETH_P_IPV6 => {
                need(off + 40)?;
                let ip = &f[off..off + 40];
                if ip[0] >> 4 != 6 || ip[6] != PROTO_TCP {
                    return Err(format!("not a plain IPv6/TCP header: {:02x?}", ip));
                }
                let plen = u16::from_be_bytes([ip[4], ip[5]]) as usize;
                let s: [u8; 16] = ip[8..24].try_into().unwrap();
                let d: [u8; 16] = ip[24..40].try_into().unwrap();
                (s.into(), d.into(), ip[7], true, off + 40, plen)
            }
            other => return Err(format!("unexpected EtherType {other:#06x}")),
        };
    need(l4_off + 20)?;
    let t = &f[l4_off..];
    let seg_len = l4_len.min(t.len());
    Ok(Reply {
        dst_mac: f[0..6].try_into().unwrap(),
        src_mac: f[6..12].try_into().unwrap(),
        vlans,
        src,
        dst,
        ttl,
        sport: u16::from_be_bytes([t[0], t[1]]),
        dport: u16::from_be_bytes([t[2], t[3]]),
        seq: u32::from_be_bytes(t[4..8].try_into().unwrap()),
        ack: u32::from_be_bytes(t[8..12].try_into().unwrap()),
        doff: t[12] >> 4,
        flags: t[13],
        ip_checksum_ok: ip_ok,
        tcp_checksum_ok: l4_len >= 20 && l4_checksum(src, dst, PROTO_TCP, &t[..seg_len]) == 0,
        trailing: t.len() - 20,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_frames_have_valid_checksums() {
        let f = tcp_v4(
            &[],
            [10, 200, 0, 2],
            [10, 200, 0, 1],
            &Tcp::syn(40000, 25).with_typical_options(),
        );
        let r = read_reply(&f).unwrap();
        assert!(r.ip_checksum_ok && r.tcp_checksum_ok);
        assert_eq!((r.sport, r.dport, r.flags, r.doff), (40000, 25, SYN, 10));
        let v6 = tcp_v6(
            &[(ETH_P_8021Q, 7)],
            [0xfd; 16],
            [0xfe; 16],
            &[],
            &Tcp::syn(1, 587),
        );
        let r = read_reply(&v6).unwrap();
        assert!(r.tcp_checksum_ok);
        assert_eq!(r.vlans, vec![(ETH_P_8021Q, 7)]);
        let mut bad = f.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(!read_reply(&bad).unwrap().tcp_checksum_ok);
    }

    #[test]
    fn ipv6_chain_links_next_headers() {
        let p = ipv6(
            [1; 16],
            [2; 16],
            &[Ext::padded(EXT_HOP_BY_HOP, 1), Ext::fragment(0, true)],
            PROTO_TCP,
            &[],
        );
        assert_eq!(p[6], EXT_HOP_BY_HOP);
        assert_eq!(p[40], EXT_FRAGMENT);
        assert_eq!(p[41], 0);
        assert_eq!(p[48], PROTO_TCP);
        assert_eq!(u16::from_be_bytes([p[4], p[5]]), 16);
    }
}

impl Ext {
    /// A header of `kind` with `body` after the (next, length) prefix, padded to 8 bytes.
    pub fn raw(kind: u8, body: &[u8]) -> Self {
        Self {
            kind,
            body: body.to_vec(),
        }
    }

    /// A routing header Linux steps over (type 0, segments left 0): `padded` would say
    /// "segments left 4", which Linux answers with an ICMP parameter problem.
    pub fn routing_done() -> Self {
        Self::raw(EXT_ROUTING, &[0, 0, 0, 0, 0, 0])
    }

    /// A hop-by-hop or destination-options header of `8 * units` bytes that Linux accepts at any
    /// size: unknown skippable options (type 0x1e, at most 8 per header as Linux allows) and
    /// PadN no longer than Linux's 7 bytes. `units` up to 256.
    pub fn big_options(kind: u8, units: usize) -> Self {
        let mut n = 8 * units - 2;
        let mut body = Vec::with_capacity(n);
        // Up to 8 options of at most 257 bytes each, the last one taking what is left but for a
        // PadN/Pad1 tail.
        for _ in 0..8 {
            if n < 2 {
                break;
            }
            let len = (n - 2).min(255);
            body.push(0x1e);
            body.push(len as u8);
            body.extend(std::iter::repeat_n(0xaa, len));
            n -= len + 2;
        }
        assert_eq!(n, 0, "{units} units do not fit 8 options");
        Self { kind, body }
    }
}

/// One frame of a packet shape: VLAN tags, EtherType and the network-layer bytes.
#[derive(Clone, Debug)]
pub struct ShapeFrame {
    pub vlans: Vec<(u16, u16)>,
    pub ethertype: u16,
    pub l3: Vec<u8>,
}

impl ShapeFrame {
    /// With the test MACs ([`MAC_SERVER`] ← [`MAC_CLIENT`]).
    pub fn frame(&self) -> Vec<u8> {
        ethernet(&self.vlans, self.ethertype, &self.l3)
    }

    /// With real MACs, for a raw socket.
    pub fn frame_to(&self, dst_mac: [u8; 6], src_mac: [u8; 6]) -> Vec<u8> {
        let mut f = self.frame();
        f[..6].copy_from_slice(&dst_mac);
        f[6..12].copy_from_slice(&src_mac);
        f
    }
}

/// A way of wrapping one SYN that Linux accepts and a datapath may not see through: the frames that
/// together deliver the SYN to the TCP stack.
#[derive(Clone, Debug)]
pub struct Shape {
    pub name: &'static str,
    pub frames: Vec<ShapeFrame>,
    /// Bytes a link must carry (MTU) for the largest frame.
    pub mtu: usize,
}

/// The IPv4 shapes of a SYN from `src` to `dst` (issue 7): fragments (first with the whole TCP
/// header; 8-byte fragments) and VID-0 VLAN stacks (3 and 4 802.1Q, 802.1ad + 2×802.1Q).
/// `syn` should carry a payload so that fragments are possible.
pub fn shapes_v4(src: [u8; 4], dst: [u8; 4], syn: &Tcp) -> Vec<Shape> {
    let seg = syn.encode(src.into(), dst.into());
    let whole = ipv4(src, dst, PROTO_TCP, &[], 0, &seg);
    let frag = |pieces: &[(usize, usize)]| -> Vec<ShapeFrame> {
        pieces
            .iter()
            .map(|&(from, to)| {
                let more = if to < seg.len() { 0x2000 } else { 0 };
                ShapeFrame {
                    vlans: vec![],
                    ethertype: ETH_P_IPV4,
                    l3: ipv4(
                        src,
                        dst,
                        PROTO_TCP,
                        &[],
                        more | (from / 8) as u16,
                        &seg[from..to],
                    ),
                }
            })
            .collect()
    };
    let tcp_len = 20 + syn.options.len().next_multiple_of(4);
    let first = tcp_len.next_multiple_of(8);
    assert!(first < seg.len(), "the SYN needs a payload to fragment");
    let eights: Vec<(usize, usize)> = (0..seg.len())
        .step_by(8)
        .map(|a| (a, (a + 8).min(seg.len())))
        .collect();
    let tagged = |vlans: &[(u16, u16)]| {
        vec![ShapeFrame {
            vlans: vlans.to_vec(),
            ethertype: ETH_P_IPV4,
            l3: whole.clone(),
        }]
    };
    let q = (ETH_P_8021Q, 0);
    vec![
        Shape {
            name: "v4 fragments, first with the whole TCP header",
            frames: frag(&[(0, first), (first, seg.len())]),
            mtu: 1500,
        },
        Shape {
            name: "v4 8-byte fragments",
            frames: frag(&eights),
            mtu: 1500,
        },
        Shape {
            name: "v4 behind 3 VID-0 802.1Q tags",
            frames: tagged(&[q, q, q]),
            mtu: 1500,
        },
        Shape {
            name: "v4 behind 4 VID-0 802.1Q tags",
            frames: tagged(&[q, q, q, q]),
            mtu: 1500,
        },
        Shape {
            name: "v4 behind 802.1ad + 2x802.1Q (VID 0)",
            frames: tagged(&[(ETH_P_8021AD, 0), q, q]),
            mtu: 1500,
        },
    ]
}

/// The IPv6 shapes of a SYN (issue 7): an atomic fragment, the SYN with data in fragments, 8
/// Destination-Options headers, hop-by-hop + routing + 5 Destination-Options, a chain longer than
/// the datapath walks (17 headers), and 4 KiB of options that put TCP beyond the first buffer or
/// the bytes a TC program pulls (needs a jumbo MTU).
pub fn shapes_v6(src: [u8; 16], dst: [u8; 16], syn: &Tcp) -> Vec<Shape> {
    let seg = syn.encode(src.into(), dst.into());
    let one = |exts: &[Ext]| {
        vec![ShapeFrame {
            vlans: vec![],
            ethertype: ETH_P_IPV6,
            l3: ipv6(src, dst, exts, PROTO_TCP, &seg),
        }]
    };
    let tcp_len = 20 + syn.options.len().next_multiple_of(4);
    let first = tcp_len.next_multiple_of(8);
    assert!(first < seg.len(), "the SYN needs a payload to fragment");
    let fragments = vec![
        ShapeFrame {
            vlans: vec![],
            ethertype: ETH_P_IPV6,
            l3: ipv6(
                src,
                dst,
                &[Ext::fragment(0, true)],
                PROTO_TCP,
                &seg[..first],
            ),
        },
        ShapeFrame {
            vlans: vec![],
            ethertype: ETH_P_IPV6,
            l3: ipv6(
                src,
                dst,
                &[Ext::fragment((first / 8) as u16, false)],
                PROTO_TCP,
                &seg[first..],
            ),
        },
    ];
    let dst8 = Ext::padded(EXT_DEST_OPTS, 1);
    let hbh8 = Ext::padded(EXT_HOP_BY_HOP, 1);
    let mut mixed = vec![hbh8, Ext::routing_done()];
    mixed.extend(std::iter::repeat_n(dst8.clone(), 5));
    let big = Ext::big_options(EXT_DEST_OPTS, 256);
    vec![
        Shape {
            name: "v6 atomic fragment",
            frames: one(&[Ext::fragment(0, false)]),
            mtu: 1500,
        },
        Shape {
            name: "v6 SYN with data in fragments",
            frames: fragments,
            mtu: 1500,
        },
        Shape {
            name: "v6 behind 8 Destination-Options headers",
            frames: one(&vec![dst8.clone(); 8]),
            mtu: 1500,
        },
        Shape {
            name: "v6 behind hop-by-hop + routing + 5 Destination-Options",
            frames: one(&mixed),
            mtu: 1500,
        },
        Shape {
            name: "v6 behind 17 Destination-Options headers",
            frames: one(&vec![dst8; 17]),
            mtu: 1500,
        },
        Shape {
            name: "v6 behind 4 KiB of Destination-Options",
            frames: one(&[big.clone(), big]),
            mtu: 40 + 2 * 2048 + seg.len(),
        },
    ]
}
