//! Turns a SYN into the TCP RST|ACK a closed port would send (RFC 9293 3.10.7.1: seq 0, ack = the
//! SYN's sequence number plus its segment length), in place: MACs, addresses and ports swapped, TCP
//! options stripped, VLAN tags kept, both checksums computed from scratch over fixed-size headers.

use core::mem::size_of;

use crate::{
    ctx::Packet,
    parse::{Ipv4Hdr, Syn, TcpHdr, IPPROTO_TCP, L3, TCP_ACK, TCP_RST},
};

const REPLY_TTL: u8 = 64;
const IPV4_DF: u16 = 0x4000;

/// True when [`rewrite`] can build the reply: no IPv4 options and no IPv6 extension headers (the
/// reply would have to drop them and move the TCP header, which needs variable-length copies).
#[inline(always)]
pub fn possible(syn: &Syn) -> bool {
    match syn.l3 {
        L3::V4 { options, .. } => !options,
        L3::V6 { ext, .. } => !ext,
    }
}

/// Rewrites the SYN into its RST|ACK and cuts the frame after the TCP header. On `Err` the frame may
/// be half rewritten: the caller must drop it.
#[inline(always)]
pub fn rewrite<C: Packet>(ctx: &C, syn: &Syn) -> Result<(), ()> {
    if !possible(syn) {
        return Err(());
    }
    let tcp = unsafe { &mut *syn.tcp };
    let doff = (tcp.doff_res >> 4) as u32 * 4;
    // Segment length of the SYN: its payload (TCP Fast Open data) plus one for the SYN flag.
    let payload = match syn.l3 {
        L3::V4 { ip, .. } => (u16::from_be(unsafe { (*ip).tot_len }) as u32)
            .saturating_sub(size_of::<Ipv4Hdr>() as u32 + doff),
        L3::V6 { ip, .. } => {
            (u16::from_be(unsafe { (*ip).payload_len }) as u32).saturating_sub(doff)
        }
    };
    let ack = u32::from_be_bytes(tcp.seq)
        .wrapping_add(1)
        .wrapping_add(payload);

    let eth = unsafe { &mut *syn.eth };
    core::mem::swap(&mut eth.src, &mut eth.dst);

    core::mem::swap(&mut tcp.sport, &mut tcp.dport);
    tcp.seq = [0; 4];
    tcp.ack = ack.to_be_bytes();
    tcp.doff_res = 5 << 4;
    tcp.flags = TCP_RST | TCP_ACK;
    tcp.window = 0;
    tcp.check = 0;
    tcp.urg = 0;
    let tcp_len = size_of::<TcpHdr>() as u16;

    let pseudo = match syn.l3 {
        L3::V4 { ip, .. } => {
            let ip = unsafe { &mut *ip };
            core::mem::swap(&mut ip.src, &mut ip.dst);
            ip.ver_ihl = 0x45;
            ip.tos = 0;
            ip.tot_len = (size_of::<Ipv4Hdr>() as u16 + tcp_len).to_be();
            ip.id = 0;
            ip.frag_off = IPV4_DF.to_be();
            ip.ttl = REPLY_TTL;
            ip.proto = IPPROTO_TCP;
            ip.check = 0;
            ip.check = fold(sum_words::<{ size_of::<Ipv4Hdr>() / 2 }>(
                ip as *const _ as usize,
            ));
            sum_words::<2>(ip.src.as_ptr() as usize)
                + sum_words::<2>(ip.dst.as_ptr() as usize)
                + be_word(IPPROTO_TCP as u16)
                + be_word(tcp_len)
        }
        L3::V6 { ip, .. } => {
            let ip = unsafe { &mut *ip };
            core::mem::swap(&mut ip.src, &mut ip.dst);
            ip.vtc_flow = [0x60, 0, 0, 0];
            ip.payload_len = tcp_len.to_be();
            ip.next = IPPROTO_TCP;
            ip.hop_limit = REPLY_TTL;
            sum_words::<8>(ip.src.as_ptr() as usize)
                + sum_words::<8>(ip.dst.as_ptr() as usize)
                + be_word(IPPROTO_TCP as u16)
                + be_word(tcp_len)
        }
    };
    tcp.check = fold(pseudo + sum_words::<{ size_of::<TcpHdr>() / 2 }>(syn.tcp as usize));

    let len = syn.tcp as usize + size_of::<TcpHdr>() - ctx.data();
    ctx.truncate(len)
}

/// Sum of `N` 16-bit words read in memory order. Summing native-order words and storing the folded
/// result natively gives the right bytes on either endianness (RFC 1071).
#[inline(always)]
fn sum_words<const N: usize>(at: usize) -> u32 {
    let mut sum = 0u32;
    for i in 0..N {
        sum += unsafe { core::ptr::read_unaligned((at + 2 * i) as *const u16) } as u32;
    }
    sum
}

/// A host-order value as the native-order word it is in network byte order.
#[inline(always)]
fn be_word(v: u16) -> u32 {
    u16::from_ne_bytes(v.to_be_bytes()) as u32
}

#[inline(always)]
fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}
