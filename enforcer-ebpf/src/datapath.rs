//! The decision pipeline both programs run: parse, check the port, decide, refuse (or, in
//! report-only mode, only count the refusal), and leave through the single exit.

use enforcer_common::{config::CONFIG_FLAG_REPORT_ONLY, Reason};

use crate::{
    ctx::{Outcome, Packet},
    decide::{decide, Refusal},
    maps::{CONFIG, PORTS},
    parse::{parse_frame, Parsed, Src, Syn, L3},
    reject, stats,
};

#[inline(always)]
pub fn run<C: Packet>(ctx: &C) -> u32 {
    match parse_frame(ctx.data(), ctx.data_end()) {
        Ok(Parsed::Syn(syn)) => judge_syn(ctx, &syn),
        Ok(Parsed::Blind { src, port, pass }) => judge_blind(ctx, src, port, pass),
        Err(reason) => stats::exit(ctx, reason, false, Outcome::Pass),
    }
}

#[inline(always)]
fn judge_syn<C: Packet>(ctx: &C, syn: &Syn) -> u32 {
    let port = u16::from_be(unsafe { (*syn.tcp).dport });
    if !protected(port) {
        return stats::exit(ctx, Reason::OtherPort, false, Outcome::Pass);
    }
    let src = match syn.l3 {
        L3::V4 { ip, .. } => Src::V4(unsafe { core::ptr::addr_of!((*ip).src) }),
        L3::V6 { ip, .. } => Src::V6(unsafe { core::ptr::addr_of!((*ip).src) }),
    };
    let decision = decide(src, true);
    let mut reason = decision.reason;
    if decision.refusal == Refusal::None {
        return stats::exit(ctx, reason, false, Outcome::Pass);
    }
    let rst = decision.refusal == Refusal::Rst;
    if report_only() {
        // Count what would have happened, including a reject we could not have answered.
        if rst && !reject::possible(syn) {
            reason = Reason::RejectFallbackDrop;
        }
        return stats::exit(ctx, reason, true, Outcome::Pass);
    }
    if !rst {
        return stats::exit(ctx, reason, false, Outcome::Drop);
    }
    match reject::rewrite(ctx, syn) {
        Ok(()) => stats::exit(ctx, reason, false, Outcome::Reply),
        Err(()) => stats::exit(ctx, Reason::RejectFallbackDrop, false, Outcome::Drop),
    }
}

/// A packet whose TCP header is not all in view. With its port seen it is judged only when that
/// port is protected; without one (a non-first fragment, a header chain too long to walk) it is
/// judged on its source alone, which is what keeps a fragmented or deeply wrapped SYN from slipping
/// past a refusing entry. A refusal is a drop: there is no whole SYN to answer with a RST.
#[inline(always)]
fn judge_blind<C: Packet>(ctx: &C, src: Src, port: Option<u16>, pass: Reason) -> u32 {
    if let Some(p) = port {
        if !protected(p) {
            return stats::exit(ctx, Reason::OtherPort, false, Outcome::Pass);
        }
    }
    if decide(src, port.is_some()).refusal == Refusal::None {
        return stats::exit(ctx, pass, false, Outcome::Pass);
    }
    if report_only() {
        return stats::exit(ctx, Reason::SourceOnlyRefused, true, Outcome::Pass);
    }
    stats::exit(ctx, Reason::SourceOnlyRefused, false, Outcome::Drop)
}

#[inline(always)]
fn protected(port: u16) -> bool {
    matches!(PORTS.get(port as u32), Some(&p) if p != 0)
}

#[inline(always)]
fn report_only() -> bool {
    matches!(CONFIG.get(0), Some(c) if c.flags & CONFIG_FLAG_REPORT_ONLY != 0)
}

/// The comparison program's body: a fixed-offset IPv4 source lookup in `POLICY_V4_HOSTS`.
#[inline(always)]
pub fn hash_only(ctx: &aya_ebpf::programs::XdpContext) -> u32 {
    use aya_ebpf::bindings::xdp_action;
    let mut c = crate::parse::Cursor::new(ctx.data(), ctx.data_end());
    let (Ok(eth), Ok(ip)) = (
        c.take::<crate::parse::EthHdr>(),
        c.take::<crate::parse::Ipv4Hdr>(),
    ) else {
        return xdp_action::XDP_PASS;
    };
    if unsafe { (*eth).proto } != crate::parse::ETH_P_IPV4.to_be() {
        return xdp_action::XDP_PASS;
    }
    // Key straight from the packet, as `decide` does.
    let src: &[u8; 4] = unsafe { &(*ip).src };
    match crate::maps::POLICY_V4_HOSTS.get_ptr(src) {
        Some(_) => xdp_action::XDP_DROP,
        None => xdp_action::XDP_PASS,
    }
}
