//! Reports a source not seen before (`enforcer_common::first_seen`). Runs after the decision, only
//! while the daemon asked for it, never blocks: a full ring or a spent budget is counted and the
//! packet goes on.

use aya_ebpf::helpers::bpf_ktime_get_boot_ns;
use enforcer_common::{
    first_seen::{FirstSeenEvent, BUDGET_PER_CPU_PER_SEC},
    RateKey,
};

use crate::{
    decide::Source,
    maps::{FIRST_SEEN, FIRST_SEEN_EVENTS, FIRST_SEEN_STATE},
};

const SECOND_NS: u64 = 1_000_000_000;

#[inline(always)]
pub fn report(src: &Source, port: u16) {
    let key = if src.is_v6() {
        RateKey::v6(*src.v6())
    } else {
        RateKey::v4(*src.v4())
    };
    if FIRST_SEEN.get_ptr(key).is_some() {
        return;
    }
    let Some(state) = FIRST_SEEN_STATE.get_ptr_mut(0) else {
        return;
    };
    // Per-CPU element: nothing else writes it while this program runs on this CPU.
    let state = unsafe { &mut *state };
    let now = unsafe { bpf_ktime_get_boot_ns() };
    if now.wrapping_sub(state.window_ns) >= SECOND_NS {
        state.window_ns = now;
        state.used = 0;
    }
    if state.used >= BUDGET_PER_CPU_PER_SEC {
        // Not marked seen: the source is reported when it comes back after the budget refills.
        state.over_budget += 1;
        return;
    }
    let event = FirstSeenEvent {
        addr: key.addr,
        boot_ns: now,
        port,
        _pad: [0; 6],
    };
    if FIRST_SEEN_EVENTS
        .output::<FirstSeenEvent>(&event, 0)
        .is_err()
    {
        state.lost += 1;
        return;
    }
    state.used += 1;
    state.sent += 1;
    let _ = FIRST_SEEN.insert(key, 1u32, 0);
}
