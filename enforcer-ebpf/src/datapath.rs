//! The decision pipeline both programs run: parse, check the port, decide, refuse (or, in
//! report-only mode, only count the refusal), and leave through the single exit.

use enforcer_common::{
    config::{CONFIG_FLAG_FIRST_SEEN, CONFIG_FLAG_REPORT_ONLY},
    counters::Family,
    Reason,
};

use crate::{
    ctx::{Outcome, Packet},
    decide::{decide, Refusal, Source},
    first_seen,
    maps::{CONFIG, PORTS},
    parse::{parse_frame, Parsed},
    reject, stats,
};

/// Parsing explores one verifier path per packet shape (VLAN depth × extension-header chain ×
/// fragment state); the decision after it must not be verified once per shape. So everything the
/// decision needs is copied out of the packet first (the source address onto the stack, a few
/// scalars), no packet pointer stays live across it, and the verifier's states from every shape
/// meet at `decide` as one. A reject, the only verdict that writes the packet, parses it again.
#[inline(always)]
pub fn run<C: Packet>(ctx: &C) -> u32 {
    // Every packet judged or sent to an unprotected port is counted under the mode the datapath is
    // in, passes included. The flag is read after the parse paths meet, not up front: a 0/1 known
    // before parsing would make the verifier walk every packet shape twice. Packets that never got
    // as far as a source address have no verdict but are counted under the mode too (read only on
    // that terminal path, so the shapes are not doubled), so report-only series hold all traffic.
    let (src, port, blind, answerable) = match parse_frame(ctx.data(), ctx.data_end()) {
        Ok(Parsed::Syn(syn)) => (
            Source::of(&syn),
            Some(u16::from_be(unsafe { (*syn.tcp).dport })),
            None,
            reject::possible(&syn),
        ),
        Ok(Parsed::Blind { src, port, pass }) => (Source::copy(src), port, Some(pass), false),
        Err(reason) => return stats::exit(ctx, reason, Family::None, report_only(), Outcome::Pass),
    };
    let family = if src.is_v6() { Family::V6 } else { Family::V4 };
    // A packet without a visible port (a non-first fragment, a chain too long to walk) is judged on
    // its source alone; one with a port only when that port is protected.
    if let Some(p) = port {
        if !protected(p) {
            return stats::exit(ctx, Reason::OtherPort, family, report_only(), Outcome::Pass);
        }
    }
    let decision = decide(&src, port.is_some());
    let flags = flags();
    let ro = flags & CONFIG_FLAG_REPORT_ONLY != 0;
    // After the decision, where the shapes have met: off, this is one test of a loaded word.
    if flags & CONFIG_FLAG_FIRST_SEEN != 0 && blind.is_none() {
        if let Some(p) = port {
            first_seen::report(&src, p);
        }
    }
    if decision.refusal == Refusal::None {
        return stats::exit(
            ctx,
            blind.unwrap_or(decision.reason),
            family,
            ro,
            Outcome::Pass,
        );
    }
    if blind.is_some() {
        // No whole SYN to answer with a RST: a refusal is a drop.
        let outcome = if ro { Outcome::Pass } else { Outcome::Drop };
        return stats::exit(ctx, Reason::SourceOnlyRefused, family, ro, outcome);
    }
    let rst = decision.refusal == Refusal::Rst;
    if ro {
        // Count what would have happened, including a reject we could not have answered.
        let reason = if rst && !answerable {
            Reason::RejectFallbackDrop
        } else {
            decision.reason
        };
        return stats::exit(ctx, reason, family, true, Outcome::Pass);
    }
    if !rst {
        return stats::exit(ctx, decision.reason, family, false, Outcome::Drop);
    }
    match parse_frame(ctx.data(), ctx.data_end()) {
        Ok(Parsed::Syn(syn)) => match reject::rewrite(ctx, &syn) {
            Ok(()) => stats::exit(ctx, decision.reason, family, false, Outcome::Reply),
            Err(()) => stats::exit(
                ctx,
                Reason::RejectFallbackDrop,
                family,
                false,
                Outcome::Drop,
            ),
        },
        _ => stats::exit(
            ctx,
            Reason::RejectFallbackDrop,
            family,
            false,
            Outcome::Drop,
        ),
    }
}

#[inline(always)]
fn protected(port: u16) -> bool {
    matches!(PORTS.get(port as u32), Some(&p) if p != 0)
}

#[inline(always)]
fn flags() -> u32 {
    CONFIG.get(0).map_or(0, |c| c.flags)
}

#[inline(always)]
fn report_only() -> bool {
    flags() & CONFIG_FLAG_REPORT_ONLY != 0
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
