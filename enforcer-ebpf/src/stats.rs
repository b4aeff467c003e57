//! The single exit: every packet's reason is counted here exactly once, in a per-CPU slot (a plain
//! increment, no atomics), and turned into the program's return code.

use enforcer_common::{counters::slot, Reason};

use crate::{
    ctx::{Outcome, Packet},
    maps::STATS,
};

#[inline(always)]
pub fn exit<C: Packet>(ctx: &C, reason: Reason, report_only: bool, outcome: Outcome) -> u32 {
    if let Some(count) = STATS.get_ptr_mut(slot(reason, report_only)) {
        // Per-CPU slot: nobody else writes it while this program runs on this CPU.
        unsafe { *count += 1 };
    }
    ctx.outcome(outcome)
}
