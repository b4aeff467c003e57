//! The notice responder's steering: at socket lookup for a SYN to a protected port, a source whose
//! entry is inside a notice window (the XDP/TC program already admitted the SYN within the entry's
//! `notice_rate`) is handed to the daemon's responder socket instead of the MTA's listener. Runs
//! once per new connection, never per packet, and takes no token: the decision is `decide` with
//! `attempt == false`, which classifies the entry at this instant without consuming its budget.

use aya_ebpf::programs::SkLookupContext;
use aya_log_ebpf::{info, warn};
use enforcer_common::{
    config::{CONFIG_FLAG_NOTICE_FALLBACK_PASS, CONFIG_FLAG_REPORT_ONLY},
    counters::{stats_index, Family},
    maps::{NOTICE_SLOT_V4, NOTICE_SLOT_V6},
    Reason,
};

use crate::{
    decide::{decide, Source},
    maps::{CONFIG, NOTICE_SOCKETS, PORTS, STATS},
};

const SK_DROP: u32 = 0;
const SK_PASS: u32 = 1;
const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;
const IPPROTO_TCP: u32 = 6;

#[inline(always)]
pub fn run(ctx: &SkLookupContext) -> u32 {
    let l = ctx.lookup;
    // The context allows 4-byte loads at most: read every field on its own.
    let (family, protocol, port) = unsafe {
        (
            core::ptr::read_volatile(core::ptr::addr_of!((*l).family)),
            core::ptr::read_volatile(core::ptr::addr_of!((*l).protocol)),
            core::ptr::read_volatile(core::ptr::addr_of!((*l).local_port)),
        )
    };
    if protocol != IPPROTO_TCP || !matches!(PORTS.get(port), Some(&p) if p != 0) {
        return SK_PASS;
    }
    let (src, fam, slot) = match family {
        AF_INET => {
            let a = unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*l).remote_ip4)) };
            (Source::from_v4(a.to_ne_bytes()), Family::V4, NOTICE_SLOT_V4)
        }
        AF_INET6 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                let w =
                    unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*l).remote_ip6[i])) };
                b[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
            }
            (Source::from_v6(b), Family::V6, NOTICE_SLOT_V6)
        }
        _ => return SK_PASS,
    };
    if decide(&src, false).reason != Reason::NoticeAdmitted {
        return SK_PASS;
    }
    let flags = CONFIG.get(0).map_or(0, |c| c.flags);
    if flags & CONFIG_FLAG_REPORT_ONLY != 0 {
        count(fam, Reason::NoticeSteered, true);
        return SK_PASS;
    }
    if NOTICE_SOCKETS.redirect_sk_lookup(ctx, slot, 0).is_ok() {
        count(fam, Reason::NoticeSteered, false);
        log_source(ctx, &src, port, "steered to the notice responder");
        return SK_PASS;
    }
    if flags & CONFIG_FLAG_NOTICE_FALLBACK_PASS != 0 {
        count(fam, Reason::NoticeFallbackPassed, false);
        warn!(
            ctx,
            "notice responder missing: SYN to port {} passed to the MTA (notice.fallback = pass)",
            port
        );
        SK_PASS
    } else {
        count(fam, Reason::NoticeFallbackDropped, false);
        warn!(
            ctx,
            "notice responder missing: SYN to port {} refused (notice.fallback = drop)", port
        );
        SK_DROP
    }
}

/// A steering decision, for the daemon's log when the kernel log level lets it through (aya-log:
/// the level is fixed at load, off unless `ENFORCER_KERNEL_LOG` asks for it, so the call costs a
/// load and a branch otherwise). Once per connection, never on the XDP/TC path.
#[inline(always)]
fn log_source(ctx: &SkLookupContext, src: &Source, port: u32, what: &str) {
    if src.is_v6() {
        info!(ctx, "sk_lookup: {:i} to port {}: {}", *src.v6(), port, what)
    } else {
        info!(ctx, "sk_lookup: {:i} to port {}: {}", *src.v4(), port, what)
    }
}

/// Counted in interface slot 0: the lookup's ingress interface is only readable on kernels >= 5.17,
/// and the program must load on 5.9.
#[inline(always)]
fn count(family: Family, reason: Reason, report_only: bool) {
    if let Some(c) = STATS.get_ptr_mut(stats_index(0, family, reason, report_only)) {
        unsafe { *c += 1 };
    }
}
