//! The decision pipeline both programs run: parse, check the port, decide, refuse (or, in
//! report-only mode, only count the refusal), and leave through the single exit.

use enforcer_common::{config::CONFIG_FLAG_REPORT_ONLY, counters::Family, Reason};

use crate::{
    ctx::{Outcome, Packet},
    decide::{decide_v4, decide_v6, Refusal},
    maps::{CONFIG, PORTS},
    parse::{parse_frame, L3},
    reject, stats,
};

#[inline(always)]
pub fn run<C: Packet>(ctx: &C) -> u32 {
    // Every packet is counted under the mode the datapath is in, passes included.
    let ro = report_only();
    let syn = match parse_frame(ctx.data(), ctx.data_end()) {
        Ok(syn) => syn,
        Err(reason) => return stats::exit(ctx, reason, Family::None, ro, Outcome::Pass),
    };
    let family = match syn.l3 {
        L3::V4 { .. } => Family::V4,
        L3::V6 { .. } => Family::V6,
    };
    let port = u16::from_be(unsafe { (*syn.tcp).dport }) as u32;
    match PORTS.get(port) {
        Some(&p) if p != 0 => {}
        _ => return stats::exit(ctx, Reason::OtherPort, family, ro, Outcome::Pass),
    }
    let decision = match syn.l3 {
        L3::V4 { ip, .. } => decide_v4(unsafe { &(*ip).src }),
        L3::V6 { ip, .. } => decide_v6(unsafe { &(*ip).src }),
    };
    let mut reason = decision.reason;
    if decision.refusal == Refusal::None {
        return stats::exit(ctx, reason, family, ro, Outcome::Pass);
    }
    let rst = decision.refusal == Refusal::Rst;
    if ro {
        // Count what would have happened, including a reject we could not have answered.
        if rst && !reject::possible(&syn) {
            reason = Reason::RejectFallbackDrop;
        }
        return stats::exit(ctx, reason, family, true, Outcome::Pass);
    }
    if !rst {
        return stats::exit(ctx, reason, family, false, Outcome::Drop);
    }
    match reject::rewrite(ctx, &syn) {
        Ok(()) => stats::exit(ctx, reason, family, false, Outcome::Reply),
        Err(()) => stats::exit(
            ctx,
            Reason::RejectFallbackDrop,
            family,
            false,
            Outcome::Drop,
        ),
    }
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
    // Key straight from the packet, as `decide_v4` does.
    let src: &[u8; 4] = unsafe { &(*ip).src };
    match crate::maps::POLICY_V4_HOSTS.get_ptr(src) {
        Some(_) => xdp_action::XDP_DROP,
        None => xdp_action::XDP_PASS,
    }
}
