//! The single exit: every packet's reason is counted here exactly once, in a per-CPU slot of its
//! interface and address family (a plain increment, no atomics), and turned into the program's
//! return code.

use enforcer_common::{
    counters::{stats_index, Family},
    Reason,
};

use crate::{
    ctx::{Outcome, Packet},
    maps::{IFACE_SLOTS, STATS},
};

#[inline(always)]
pub fn exit<C: Packet>(
    ctx: &C,
    reason: Reason,
    family: Family,
    report_only: bool,
    outcome: Outcome,
) -> u32 {
    // Interfaces userspace has not given a slot (and ifindexes beyond the array) count in slot 0.
    let iface = IFACE_SLOTS.get(ctx.ifindex()).copied().unwrap_or(0);
    if let Some(count) = STATS.get_ptr_mut(stats_index(iface, family, reason, report_only)) {
        // Per-CPU slot: nobody else writes it while this program runs on this CPU.
        unsafe { *count += 1 };
    }
    ctx.outcome(outcome)
}
