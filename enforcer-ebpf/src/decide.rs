//! Policy for a SYN to a protected port: find the source's entry (exact host first, then the
//! longest prefix), apply its action at the current CLOCK_BOOTTIME instant, and name the reason.
//! One decision for every program and every packet shape: a packet judged on its source alone
//! (`attempt == false`: no port seen, so not a connection attempt) takes no rate-limit or notice
//! token and is refused only by entries that refuse every SYN from that source at this instant.

use aya_ebpf::helpers::bpf_ktime_get_boot_ns;
use enforcer_common::{
    filter::{v4_bit, v4_slot, v4_slot_word, v6_bit, v6_slot, word_of},
    policy::{
        gcra_interval, Window, ACTION_DROP, ACTION_PASS, ACTION_RATE_LIMIT, ACTION_REJECT,
        ACTION_THROTTLE, ENTRY_FLAG_NOTICE, ENTRY_FLAG_RST,
    },
    PolicyEntry, PrefixKeyV4, PrefixKeyV6, RateKey, RateState, Reason,
};

use crate::{
    maps::{
        POLICY_V4_HOSTS, POLICY_V4_PREFIXES, POLICY_V6_HOSTS, POLICY_V6_PREFIXES, PREFIX_FILTER_V4,
        PREFIX_FILTER_V6, PREFIX_LENGTHS_V4, PREFIX_LENGTHS_V6, RATE_STATE,
    },
    parse::{Src, Syn, L3},
};

/// How a refused SYN is refused.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    None,
    Drop,
    Rst,
}

#[derive(Clone, Copy)]
pub struct Decision {
    pub reason: Reason,
    pub refusal: Refusal,
}

impl Decision {
    #[inline(always)]
    pub const fn pass(reason: Reason) -> Self {
        Self {
            reason,
            refusal: Refusal::None,
        }
    }
}

/// Compare-and-swap attempts on one source's rate state. A failed attempt means another CPU admitted
/// a SYN from that source in between; running out refuses, so contention can only err toward
/// refusing, never toward admitting more than the bucket allows.
const RATE_CAS_ATTEMPTS: usize = 8;

/// A source address copied out of the packet (network order), so no packet pointer has to stay
/// live across the decision. A struct written whole on both paths, not an enum: an enum's payload
/// lands at an odd stack offset and the path of the other family stores an undefined (possibly
/// pointer) value into it, and the verifier refuses both misaligned and partial pointer stores.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub struct Source {
    /// IPv4: the address in the first four bytes, the rest zero. IPv6: the address.
    words: [u64; 2],
    v6: bool,
}

impl Source {
    #[inline(always)]
    pub fn copy(src: Src) -> Self {
        match src {
            Src::V4(a) => Self::from_v4(unsafe { core::ptr::read_unaligned(a) }),
            Src::V6(a) => Source {
                words: unsafe { core::ptr::read_unaligned(a.cast::<[u64; 2]>()) },
                v6: true,
            },
        }
    }

    /// An IPv4 source from its network-order bytes.
    #[inline(always)]
    pub fn from_v4(a: [u8; 4]) -> Self {
        Source {
            words: [u64::from(u32::from_ne_bytes(a)), 0],
            v6: false,
        }
    }

    /// An IPv6 source from its network-order bytes.
    #[inline(always)]
    pub fn from_v6(a: [u8; 16]) -> Self {
        Source {
            // SAFETY: same size; every bit pattern is a valid [u64; 2].
            words: unsafe { core::mem::transmute::<[u8; 16], [u64; 2]>(a) },
            v6: true,
        }
    }

    #[inline(always)]
    pub fn of(syn: &Syn) -> Self {
        match syn.l3 {
            L3::V4 { ip, .. } => Source::copy(Src::V4(unsafe { core::ptr::addr_of!((*ip).src) })),
            L3::V6 { ip, .. } => Source::copy(Src::V6(unsafe { core::ptr::addr_of!((*ip).src) })),
        }
    }

    #[inline(always)]
    pub fn is_v6(&self) -> bool {
        self.v6
    }

    /// The IPv4 address bytes (meaningful when not `is_v6`).
    #[inline(always)]
    pub fn v4(&self) -> &[u8; 4] {
        // SAFETY: the first four bytes of the words, on a little-endian target the low half of
        // the first word, where `copy` put them.
        unsafe { &*self.words.as_ptr().cast::<[u8; 4]>() }
    }

    /// The IPv6 address bytes (meaningful when `is_v6`).
    #[inline(always)]
    pub fn v6(&self) -> &[u8; 16] {
        // SAFETY: [u64; 2] and [u8; 16] have the same size; bytes have no invalid values.
        unsafe { &*self.words.as_ptr().cast::<[u8; 16]>() }
    }
}

/// Decides for a source. `attempt` is false for a packet without a visible port (judged on its
/// source alone).
#[inline(always)]
pub fn decide(src: &Source, attempt: bool) -> Decision {
    if src.is_v6() {
        decide_v6(src.v6(), attempt)
    } else {
        decide_v4(src.v4(), attempt)
    }
}

/// Decides for an IPv4 source (address bytes in network order, possibly pointing into the packet).
#[inline(always)]
fn decide_v4(src: &[u8; 4], attempt: bool) -> Decision {
    let host = POLICY_V4_HOSTS.get_ptr(src);
    let prefix = || {
        if !filtered(&PREFIX_FILTER_V4, v4_bit(*src)) {
            return None;
        }
        // A missing slot cannot happen (in range by construction): probe every length then.
        let (word, shift) = v4_slot_word(v4_slot(*src));
        let lengths = PREFIX_LENGTHS_V4
            .get(word)
            .map_or(u32::MAX, |w| (*w >> shift) as u32);
        longest_v4(u32::from_be_bytes(*src), lengths)
    };
    apply(host, prefix, || rate_key_v4(src), attempt)
}

/// The bytes of [`RateKey::v4`], built from two words: LLVM lowers that array literal to a call to
/// `memset` for the ten zero bytes.
#[inline(always)]
fn rate_key_v4(src: &[u8; 4]) -> RateKey {
    let mapped = u64::from_ne_bytes([0, 0, 0xff, 0xff, src[0], src[1], src[2], src[3]]);
    // SAFETY: RateKey is a repr(C) 16-byte array of bytes; every bit pattern is valid.
    unsafe { core::mem::transmute::<[u64; 2], RateKey>([0, mapped]) }
}

/// Decides for an IPv6 source.
#[inline(always)]
fn decide_v6(src: &[u8; 16], attempt: bool) -> Decision {
    let host = POLICY_V6_HOSTS.get_ptr(src);
    let prefix = || {
        let top32 = u32::from_be_bytes([src[0], src[1], src[2], src[3]]);
        if !filtered(&PREFIX_FILTER_V6, v6_bit(top32)) {
            return None;
        }
        let lengths = PREFIX_LENGTHS_V6
            .get(v6_slot(top32))
            .map_or([u64::MAX; 2], |m| *m);
        let [hi, lo] = unsafe { core::mem::transmute::<[u8; 16], [u64; 2]>(*src) };
        longest_v6(u64::from_be(hi), u64::from_be(lo), lengths)
    };
    apply(host, prefix, || RateKey::v6(*src), attempt)
}

/// The entry of the longest prefix containing `addr` (host order) among the lengths in `lengths`
/// (bit L = length L), probed longest first: the first hit is the longest match.
#[inline(always)]
fn longest_v4(addr: u32, mut lengths: u32) -> Option<*const PolicyEntry> {
    // Counted, so the verifier sees the bound; a length is cleared per round.
    for _ in 0..32 {
        if lengths == 0 {
            return None;
        }
        let len = 31 - lengths.leading_zeros();
        let key = PrefixKeyV4::new(len, (addr & high_bits32(len)).to_be_bytes());
        if let Some(e) = POLICY_V4_PREFIXES.get_ptr(key) {
            return Some(e);
        }
        lengths &= !(1 << len);
    }
    None
}

/// The IPv6 twin of [`longest_v4`]: `hi`, `lo` = the address halves (host order), `lengths[1]`
/// holds lengths 64–127 (probed first), `lengths[0]` lengths 0–63. The loop finds the length and
/// the entry is looked up once more after it: a map-value pointer carried out of one of 128
/// iterations kept the verifier from merging what follows (it walked the whole decision once per
/// iteration and parse shape, +280k instructions); a scalar length merges.
#[inline(always)]
fn longest_v6(hi: u64, lo: u64, lengths: [u64; 2]) -> Option<*const PolicyEntry> {
    let found = longest_len_v6(hi, lo, lengths)?;
    probe_v6(found, hi, lo)
}

#[inline(always)]
fn longest_len_v6(hi: u64, lo: u64, lengths: [u64; 2]) -> Option<u32> {
    let mut long = lengths[1];
    for _ in 0..64 {
        if long == 0 {
            break;
        }
        let bit = 63 - long.leading_zeros();
        if probe_v6(64 + bit, hi, lo).is_some() {
            return Some(64 + bit);
        }
        long &= !(1 << bit);
    }
    let mut short = lengths[0];
    for _ in 0..64 {
        if short == 0 {
            return None;
        }
        let bit = 63 - short.leading_zeros();
        if probe_v6(bit, hi, lo).is_some() {
            return Some(bit);
        }
        short &= !(1 << bit);
    }
    None
}

/// The entry of exactly `addr/len` (`hi`, `lo` = the address halves, host order; masked here).
#[inline(always)]
fn probe_v6(len: u32, hi: u64, lo: u64) -> Option<*const PolicyEntry> {
    let (hi, lo) = if len >= 64 {
        (hi, lo & high_bits64(len - 64))
    } else {
        (hi & high_bits64(len), 0)
    };
    let data = unsafe { core::mem::transmute::<[u64; 2], [u8; 16]>([hi.to_be(), lo.to_be()]) };
    POLICY_V6_PREFIXES.get_ptr(PrefixKeyV6::new(len, data))
}

/// The top `n` bits of a `u32` set (`n` < 32).
#[inline(always)]
fn high_bits32(n: u32) -> u32 {
    (u64::MAX << (32 - n)) as u32
}

/// The top `n` bits of a `u64` set (`n` < 64), without a shift by 64.
#[inline(always)]
fn high_bits64(n: u32) -> u64 {
    (u64::MAX << (63 - n)) << 1
}

/// True when the presence filter says some prefix may contain the source (a missing word, which
/// cannot happen with an in-range bit, walks the trie too: never skip on doubt).
#[inline(always)]
fn filtered(filter: &aya_ebpf::maps::Array<u64>, bit: u32) -> bool {
    let (word, mask) = word_of(bit);
    match filter.get(word) {
        Some(w) => *w & mask != 0,
        None => true,
    }
}

/// An expired host entry falls through to the prefixes (as if the daemon had already swept it);
/// an expired prefix entry passes the SYN (`Expired`) without consulting shorter prefixes (the
/// longest match decides, as it did when the prefixes were an LPM trie).
#[inline(always)]
fn apply(
    host: Option<*const PolicyEntry>,
    prefix: impl FnOnce() -> Option<*const PolicyEntry>,
    rate_key: impl FnOnce() -> RateKey,
    attempt: bool,
) -> Decision {
    if let Some(ptr) = host {
        let e = unsafe { &*ptr };
        if !expired(e) {
            // A host entry keeps its source's token bucket in itself: no second lookup.
            let tat = unsafe { core::ptr::addr_of!((*ptr).tat_ns) as *mut u64 };
            return act(e, Some(tat), rate_key, attempt);
        }
        return match prefix() {
            Some(p) => judge(unsafe { &*p }, rate_key, attempt),
            None => Decision::pass(Reason::Expired),
        };
    }
    match prefix() {
        Some(p) => judge(unsafe { &*p }, rate_key, attempt),
        None => Decision::pass(Reason::NoEntry),
    }
}

/// Reading the clock costs a helper call: only entries with an expiry (and the timed actions) pay it.
#[inline(always)]
fn expired(e: &PolicyEntry) -> bool {
    e.expires_ns != 0 && e.is_expired(now())
}

#[inline(always)]
fn now() -> u64 {
    unsafe { bpf_ktime_get_boot_ns() }
}

/// A prefix entry's sources keep their state in `RATE_STATE`.
#[inline(always)]
fn judge(e: &PolicyEntry, rate_key: impl FnOnce() -> RateKey, attempt: bool) -> Decision {
    if expired(e) {
        Decision::pass(Reason::Expired)
    } else {
        act(e, None, rate_key, attempt)
    }
}

/// `own_state`: the source's GCRA state inside its host entry (`None` for a prefix entry, whose
/// sources' states are in `RATE_STATE` under `rate_key`).
#[inline(always)]
fn act(
    e: &PolicyEntry,
    own_state: Option<*mut u64>,
    rate_key: impl FnOnce() -> RateKey,
    attempt: bool,
) -> Decision {
    // Only the timed actions read the flags: drop and reject entries skip the load.
    let refusal = || {
        if e.flags & ENTRY_FLAG_RST != 0 {
            Refusal::Rst
        } else {
            Refusal::Drop
        }
    };
    // The token-bucket actions share one GCRA step: (interval, burst, admitted, refused reason,
    // refusal).
    let (interval, burst, admitted, refused, refusal) = match e.action {
        ACTION_PASS => return Decision::pass(Reason::Allowed),
        ACTION_DROP => {
            return Decision {
                reason: Reason::Blocked,
                refusal: Refusal::Drop,
            }
        }
        ACTION_REJECT => {
            return Decision {
                reason: Reason::Rejected,
                refusal: Refusal::Rst,
            }
        }
        ACTION_RATE_LIMIT => (
            e.rate_interval_ns(),
            e.burst,
            Reason::RateAllowed,
            Reason::RateRefused,
            refusal(),
        ),
        ACTION_THROTTLE => match e.window_at(now()) {
            Window::Outside => return Decision::pass(Reason::ThrottleOutside),
            // Inside a notice throttle's window the source's first SYNs up to the budget reach the
            // MTA, the rest are dropped (never reset: the point is that the sender reads the
            // MTA's reply).
            _ if e.flags & ENTRY_FLAG_NOTICE != 0 => (
                e.notice_interval_ns(),
                e.notice_count,
                Reason::NoticeAdmitted,
                Reason::NoticeRefused,
                Refusal::Drop,
            ),
            Window::Throttle => {
                return Decision {
                    reason: Reason::ThrottleRefused,
                    refusal: refusal(),
                }
            }
            Window::Block => {
                return Decision {
                    reason: Reason::BlockWindowRefused,
                    refusal: refusal(),
                }
            }
        },
        // An action this kernel program does not know (newer userspace): fail open.
        _ => return Decision::pass(Reason::NoEntry),
    };
    // A budget counts connection attempts; the rest of an admitted SYN's fragments follow it.
    if !attempt {
        return Decision::pass(admitted);
    }
    let admitted_now = match own_state {
        Some(tat) => gcra_cas(tat, now(), interval, burst),
        None => rate_admit(&rate_key(), now(), interval, burst),
    };
    if admitted_now {
        Decision::pass(admitted)
    } else {
        Decision {
            reason: refused,
            refusal,
        }
    }
}

/// GCRA with the state updated by compare-and-swap, so concurrent SYNs from one source on several
/// CPUs each see and advance the latest theoretical arrival time.
#[inline(always)]
fn rate_admit(key: &RateKey, now: u64, interval: u64, burst: u32) -> bool {
    for _ in 0..RATE_CAS_ATTEMPTS {
        let Some(state) = RATE_STATE.get_ptr_mut(key) else {
            let Some(tat) = gcra_interval(0, now, interval, burst) else {
                return false;
            };
            // BPF_NOEXIST: if another CPU created the state first, go round and race on it instead.
            match RATE_STATE.insert(key, RateState { tat_ns: tat }, BPF_NOEXIST) {
                Ok(()) => return true,
                Err(_) => continue,
            }
        };
        return gcra_cas(
            unsafe { core::ptr::addr_of_mut!((*state).tat_ns) },
            now,
            interval,
            burst,
        );
    }
    false
}

/// One GCRA step on the state at `tat_ptr` (inside a map value), retried while other CPUs move it.
#[inline(always)]
fn gcra_cas(tat_ptr: *mut u64, now: u64, interval: u64, burst: u32) -> bool {
    for _ in 0..RATE_CAS_ATTEMPTS {
        // A plain volatile load: BPF has no atomic load instruction the backend selects here, and
        // the compare-and-swap below catches any value that changed since.
        let old = unsafe { core::ptr::read_volatile(tat_ptr) };
        let Some(new) = gcra_interval(old, now, interval, burst) else {
            return false;
        };
        let (_, swapped) = unsafe {
            core::intrinsics::atomic_cxchg::<
                u64,
                { core::intrinsics::AtomicOrdering::SeqCst },
                { core::intrinsics::AtomicOrdering::SeqCst },
            >(tat_ptr, old, new)
        };
        if swapped {
            return true;
        }
    }
    false
}

const BPF_NOEXIST: u64 = aya_ebpf::bindings::BPF_NOEXIST as u64;
