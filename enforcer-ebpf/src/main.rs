//! enforcer's kernel programs. Entry points only: both ingress programs run `datapath::run`.
#![no_std]
#![no_main]
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod ctx;
mod datapath;
mod decide;
mod first_seen;
mod maps;
mod parse;
mod reject;
mod stats;
mod steer;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{classifier, sk_lookup, xdp},
    programs::{SkLookupContext, TcContext, XdpContext},
};

/// Ingress XDP program (`enforcer_common::maps::PROG_XDP`). Declared frags-aware so it also attaches
/// natively to jumbo-MTU (multi-buffer) interfaces: headers are read from the first buffer only, and a
/// SYN is always a single buffer.
#[xdp(frags)]
pub fn enforcer_xdp(ctx: XdpContext) -> u32 {
    datapath::run(&ctx)
}

/// Ingress TC program (`enforcer_common::maps::PROG_TC`), for interfaces without XDP.
#[classifier]
pub fn enforcer_tc(ctx: TcContext) -> i32 {
    // A non-linear skb may hold only part of the headers in its linear area; pull the first bytes
    // in (a failure just leaves fewer bytes, which parsing then counts as truncated).
    let want = ctx.len().min(PULL_BYTES);
    if ctx.data_end() - ctx.data() < want as usize {
        let _ = ctx.pull_data(want);
    }
    datapath::run(&ctx) as i32
}

/// Enough for Ethernet, two VLAN tags, IPv6 with a few extension headers and TCP with options.
const PULL_BYTES: u32 = 256;

/// Socket lookup in the MTA's network namespace (`enforcer_common::maps::PROG_SK_LOOKUP`): steers a
/// notice window's SYN to the daemon's responder (`steer::run`).
#[sk_lookup]
pub fn enforcer_sk_lookup(ctx: SkLookupContext) -> u32 {
    steer::run(&ctx)
}

/// Passes everything: the baseline the benchmark subtracts (harness cost). Frags-aware like
/// `enforcer_xdp`, so it can also stand in on jumbo-MTU interfaces.
#[xdp(frags)]
pub fn enforcer_xdp_empty(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// What an operator would otherwise write: IPv4 source looked up in the host hash at fixed offsets,
/// no VLANs, no ports, no counters. Benchmark comparison only; userspace never loads it.
#[xdp]
pub fn enforcer_xdp_hash_only(ctx: XdpContext) -> u32 {
    datapath::hash_only(&ctx)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
