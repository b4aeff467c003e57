//! Policy entries (values of the four policy maps) and rate-limiter state.
//!
//! Times are `CLOCK_BOOTTIME` nanoseconds (`bpf_ktime_get_boot_ns` in the kernel,
//! `clock_gettime(CLOCK_BOOTTIME)` in userspace), which keeps counting across suspend and is never
//! stepped by NTP. Userspace converts wall-clock expiries and phases into this clock when it writes an
//! entry; after a reboot the daemon rewrites every entry from its store.

/// Let the SYN through (an allow entry inside a blocked prefix).
pub const ACTION_PASS: u32 = 0;
/// Silently drop every SYN.
pub const ACTION_DROP: u32 = 1;
/// Answer every SYN with a TCP RST|ACK (the sender sees "connection refused").
pub const ACTION_REJECT: u32 = 2;
/// Token bucket per source address: `rate_per_min` with `burst`; over-rate SYNs are refused.
pub const ACTION_RATE_LIMIT: u32 = 3;
/// Duty cycle: SYNs are refused inside the throttle window and the block window of every period.
pub const ACTION_THROTTLE: u32 = 4;
/// One past the largest valid action code.
pub const ACTION_COUNT: u32 = 5;

/// Refuse with a RST instead of a silent drop (rate-limit and throttle entries).
pub const ENTRY_FLAG_RST: u32 = 1 << 0;
/// Throttle entries only (`refusal = "notice"`): inside the throttle and block windows, admit up to
/// `notice_count` SYNs per `notice_period_secs` from each source address (GCRA, state in
/// `RATE_STATE`, as for rate limits) so they reach the MTA, whose milter or policy service answers
/// 450/550 with the reason; SYNs beyond that budget are dropped (never reset). Outside the windows
/// every SYN passes, as for any throttle entry. Without this flag the notice fields are ignored.
pub const ENTRY_FLAG_NOTICE: u32 = 1 << 1;

/// Value of `POLICY_V4_HOSTS`, `POLICY_V4_PREFIXES`, `POLICY_V6_HOSTS` and `POLICY_V6_PREFIXES`.
///
/// Throttle windows are measured from `anchor_ns`: inside period `k` (which starts at
/// `anchor_ns + k * period_secs`), SYNs are refused during `[0, throttle_secs)` (throttle window) and
/// during `[block_offset_secs, block_offset_secs + block_secs)` (block window). A phase is folded into
/// `anchor_ns` by userspace, so "5 minutes at the top of every hour" has an anchor on a wall-clock hour.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyEntry {
    /// `ACTION_*`.
    pub action: u32,
    /// `ENTRY_FLAG_*` bits.
    pub flags: u32,
    /// Rate limit: sustained connects per minute (> 0).
    pub rate_per_min: u32,
    /// Rate limit: connects allowed back to back (>= 1).
    pub burst: u32,
    /// Throttle: period length in seconds (> 0).
    pub period_secs: u32,
    /// Throttle: length of the throttle window at the start of each period.
    pub throttle_secs: u32,
    /// Throttle: start of the block window inside each period.
    pub block_offset_secs: u32,
    /// Throttle: length of the block window (0 = none).
    pub block_secs: u32,
    /// Throttle: CLOCK_BOOTTIME ns at which a period starts (phase included; may be in the future).
    pub anchor_ns: u64,
    /// CLOCK_BOOTTIME ns after which the entry no longer applies; 0 = never expires.
    pub expires_ns: u64,
    /// Notice throttle (`ENTRY_FLAG_NOTICE`): SYNs admitted per source and `notice_period_secs`
    /// inside a window (0 admits none: every SYN in a window is dropped).
    pub notice_count: u32,
    /// Notice throttle: the period of `notice_count`, in seconds (> 0).
    pub notice_period_secs: u32,
    /// Rate limits and notice throttles: the GCRA emission interval in ns, filled in by the writer
    /// ([`PolicyEntry::with_interval`]) so the kernel does not divide on every SYN (a 64-bit
    /// division is the dearest instruction on that path); 0 = the kernel derives it itself.
    pub interval_ns: u64,
    /// Host entries (exact /32 and /128) of rate limits and notice throttles: the source's GCRA
    /// theoretical arrival time, kept in the entry itself so the kernel needs no second lookup
    /// (prefix entries keep one state per source in `RATE_STATE`). Written 0 (a full bucket) for
    /// a new or changed entry; userspace carries it over when it rewrites an unchanged one.
    pub tat_ns: u64,
}

const _: () = assert!(core::mem::size_of::<PolicyEntry>() == 72);

/// Key of `RATE_STATE`: the source address, IPv4 as IPv4-mapped IPv6 (`::ffff:a.b.c.d`). 8-aligned
/// for the same reason as [`PrefixKeyV4`] (same size and bytes as a plain array).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RateKey {
    pub addr: [u8; 16],
}

const _: () = assert!(core::mem::size_of::<RateKey>() == 16);

/// Key of `POLICY_V4_PREFIXES`: the prefix length (host order) and the address with every bit past
/// it cleared (network order). 8-aligned, not packed like an LPM trie key: the kernel builds it on
/// its stack, where the verifier refuses misaligned stores (and the object lets LLVM emit them).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PrefixKeyV4 {
    pub prefix_len: u32,
    pub addr: [u8; 4],
}

const _: () = assert!(core::mem::size_of::<PrefixKeyV4>() == 8);

/// Key of `POLICY_V6_PREFIXES`, like [`PrefixKeyV4`]; the explicit padding keeps the address
/// 8-aligned and every key byte defined.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PrefixKeyV6 {
    pub prefix_len: u32,
    pub _pad: u32,
    pub addr: [u8; 16],
}

const _: () = assert!(core::mem::size_of::<PrefixKeyV6>() == 24);

impl PrefixKeyV4 {
    /// `addr` must already be masked to `prefix_len` bits.
    #[inline(always)]
    pub const fn new(prefix_len: u32, addr: [u8; 4]) -> Self {
        Self { prefix_len, addr }
    }
}

impl PrefixKeyV6 {
    /// `addr` must already be masked to `prefix_len` bits.
    #[inline(always)]
    pub const fn new(prefix_len: u32, addr: [u8; 16]) -> Self {
        Self {
            prefix_len,
            _pad: 0,
            addr,
        }
    }
}

/// Value of `RATE_STATE`: GCRA theoretical arrival time, updated with compare-and-swap so SYNs from one
/// source on several CPUs at once never admit more than the bucket allows.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateState {
    pub tat_ns: u64,
}

const _: () = assert!(core::mem::size_of::<RateState>() == 8);

impl RateKey {
    pub const fn v4(addr: [u8; 4]) -> Self {
        Self {
            addr: [
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, addr[0], addr[1], addr[2], addr[3],
            ],
        }
    }

    pub const fn v6(addr: [u8; 16]) -> Self {
        Self { addr }
    }
}

/// Nanoseconds between admitted SYNs at `rate_per_min` (GCRA emission interval).
pub const fn emission_interval_ns(rate_per_min: u32) -> u64 {
    if rate_per_min == 0 {
        u64::MAX
    } else {
        60_000_000_000 / rate_per_min as u64
    }
}

/// Nanoseconds between admitted SYNs at `count` per `period_secs` (GCRA emission interval of a
/// notice budget); `u64::MAX` when `count` is 0.
pub const fn notice_interval_ns(count: u32, period_secs: u32) -> u64 {
    if count == 0 {
        u64::MAX
    } else {
        period_secs as u64 * NS_PER_SEC / count as u64
    }
}

const NS_PER_SEC: u64 = 1_000_000_000;

/// Where an instant falls in a throttle entry's period (see [`PolicyEntry`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    Outside,
    Throttle,
    Block,
}

impl PolicyEntry {
    /// A notice throttle entry (see [`ENTRY_FLAG_NOTICE`]): `count` SYNs per `period_secs` from
    /// each source pass inside the windows of `throttle`, the rest are dropped. Every other field is
    /// taken from `throttle` (an `ACTION_THROTTLE` entry); `ENTRY_FLAG_RST` is cleared.
    pub const fn notice(throttle: PolicyEntry, count: u32, period_secs: u32) -> PolicyEntry {
        let mut e = throttle;
        e.action = ACTION_THROTTLE;
        e.flags = (e.flags & !ENTRY_FLAG_RST) | ENTRY_FLAG_NOTICE;
        e.notice_count = count;
        e.notice_period_secs = period_secs;
        e.with_interval()
    }

    /// The entry with [`PolicyEntry::interval_ns`] computed from its other fields (rate limits and
    /// notice throttles; 0 for every other entry).
    pub const fn with_interval(self) -> PolicyEntry {
        let mut e = self;
        e.interval_ns = if e.action == ACTION_RATE_LIMIT {
            emission_interval_ns(e.rate_per_min)
        } else if e.is_notice() {
            notice_interval_ns(e.notice_count, e.notice_period_secs)
        } else {
            0
        };
        e
    }

    /// The GCRA emission interval of a rate limit: the stored one, or derived when the writer left
    /// it 0.
    #[inline(always)]
    pub const fn rate_interval_ns(&self) -> u64 {
        if self.interval_ns != 0 {
            self.interval_ns
        } else {
            emission_interval_ns(self.rate_per_min)
        }
    }

    /// The GCRA emission interval of a notice budget: the stored one, or derived when the writer
    /// left it 0.
    #[inline(always)]
    pub const fn notice_interval_ns(&self) -> u64 {
        if self.interval_ns != 0 {
            self.interval_ns
        } else {
            notice_interval_ns(self.notice_count, self.notice_period_secs)
        }
    }

    /// True when `other` meters SYNs with the same token bucket (action, rate or notice budget,
    /// burst, interval): a rewrite from one to the other may keep the source's state
    /// ([`PolicyEntry::tat_ns`]).
    pub const fn same_bucket(&self, other: &PolicyEntry) -> bool {
        let (a, b) = (self, other);
        if a.action == ACTION_RATE_LIMIT && b.action == ACTION_RATE_LIMIT {
            a.rate_per_min == b.rate_per_min
                && a.burst == b.burst
                && a.rate_interval_ns() == b.rate_interval_ns()
        } else if a.is_notice() && b.is_notice() {
            a.notice_count == b.notice_count
                && a.notice_period_secs == b.notice_period_secs
                && a.notice_interval_ns() == b.notice_interval_ns()
        } else {
            false
        }
    }

    /// True for a throttle entry that admits a notice budget inside its windows.
    pub const fn is_notice(&self) -> bool {
        self.action == ACTION_THROTTLE && self.flags & ENTRY_FLAG_NOTICE != 0
    }

    /// One GCRA step of the notice budget for a SYN inside a window: `Some(new_tat)` admits it,
    /// `None` drops it (state unchanged). `notice_count` SYNs pass back to back from a fresh state,
    /// then one every `notice_period_secs / notice_count`. The kernel and `enforcer explain` both
    /// use this.
    pub const fn notice_admit(&self, tat_ns: u64, now_ns: u64) -> Option<u64> {
        gcra_interval(tat_ns, now_ns, self.notice_interval_ns(), self.notice_count)
    }

    /// True once `now_ns` (CLOCK_BOOTTIME) has reached `expires_ns`; 0 never expires.
    pub const fn is_expired(&self, now_ns: u64) -> bool {
        self.expires_ns != 0 && now_ns >= self.expires_ns
    }

    /// The throttle window `now_ns` falls in. Periods repeat in both directions from `anchor_ns`, so an
    /// anchor in the future works too; the block window wins where the two overlap. A zero period never
    /// refuses. The kernel and `enforcer explain` both use this.
    pub const fn window_at(&self, now_ns: u64) -> Window {
        let period = self.period_secs as u64 * NS_PER_SEC;
        if period == 0 {
            return Window::Outside;
        }
        let pos = if now_ns >= self.anchor_ns {
            (now_ns - self.anchor_ns) % period
        } else {
            let before = (self.anchor_ns - now_ns) % period;
            if before == 0 {
                0
            } else {
                period - before
            }
        };
        let block_start = self.block_offset_secs as u64 * NS_PER_SEC;
        let block_end = block_start + self.block_secs as u64 * NS_PER_SEC;
        if pos >= block_start && pos < block_end {
            Window::Block
        } else if pos < self.throttle_secs as u64 * NS_PER_SEC {
            Window::Throttle
        } else {
            Window::Outside
        }
    }
}

/// One GCRA step for a rate-limit entry: given the stored theoretical arrival time (0 for a new
/// source), `Some(new_tat)` admits the SYN and `None` refuses it (the state is then left unchanged).
/// Tolerance is `(burst - 1)` emission intervals, so `burst` SYNs pass back to back. A rate of 0
/// admits nothing (userspace refuses to write one).
pub const fn gcra(tat_ns: u64, now_ns: u64, rate_per_min: u32, burst: u32) -> Option<u64> {
    gcra_interval(tat_ns, now_ns, emission_interval_ns(rate_per_min), burst)
}

/// [`gcra`] with the emission interval given in nanoseconds; `u64::MAX` (a rate of 0) admits
/// nothing.
pub const fn gcra_interval(tat_ns: u64, now_ns: u64, interval: u64, burst: u32) -> Option<u64> {
    if interval == u64::MAX {
        return None;
    }
    let burst = if burst == 0 { 1 } else { burst };
    let tat = if tat_ns > now_ns { tat_ns } else { now_ns };
    if interval == 0 {
        return Some(tat);
    }
    // Refuse when the backlog exceeds the tolerance, `(burst - 1) * interval`. A rate limit's
    // interval is below 2^36, so the product fits u64 for bursts below 2^28, and a notice budget's
    // `(count - 1) * period / count` is below its period; larger ones compare by division instead
    // (BPF has no 128-bit multiply for `saturating_mul`, and a division costs more than the rest).
    let backlog = tat - now_ns;
    let extra = burst as u64 - 1;
    let over = if extra < 1 << 28 {
        backlog > extra * interval
    } else {
        backlog > 0 && (backlog - 1) / interval >= extra
    };
    if over {
        None
    } else {
        Some(tat.saturating_add(interval))
    }
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for PolicyEntry {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for RateKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for PrefixKeyV4 {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for PrefixKeyV6 {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for RateState {}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    #[test]
    fn policy_entry_layout_is_stable() {
        assert_eq!(align_of::<PolicyEntry>(), 8);
        assert_eq!(offset_of!(PolicyEntry, action), 0);
        assert_eq!(offset_of!(PolicyEntry, flags), 4);
        assert_eq!(offset_of!(PolicyEntry, rate_per_min), 8);
        assert_eq!(offset_of!(PolicyEntry, burst), 12);
        assert_eq!(offset_of!(PolicyEntry, period_secs), 16);
        assert_eq!(offset_of!(PolicyEntry, throttle_secs), 20);
        assert_eq!(offset_of!(PolicyEntry, block_offset_secs), 24);
        assert_eq!(offset_of!(PolicyEntry, block_secs), 28);
        assert_eq!(offset_of!(PolicyEntry, anchor_ns), 32);
        assert_eq!(offset_of!(PolicyEntry, expires_ns), 40);
        assert_eq!(offset_of!(PolicyEntry, notice_count), 48);
        assert_eq!(offset_of!(PolicyEntry, notice_period_secs), 52);
        assert_eq!(offset_of!(PolicyEntry, interval_ns), 56);
        assert_eq!(offset_of!(PolicyEntry, tat_ns), 64);
        assert_eq!(size_of::<PolicyEntry>(), 72);
    }

    #[test]
    fn notice_budget() {
        let base = throttle(3600, 300, 0, 0, 0);
        let e = PolicyEntry::notice(
            PolicyEntry {
                flags: ENTRY_FLAG_RST,
                ..base
            },
            2,
            600,
        );
        assert!(e.is_notice());
        assert_eq!(e.flags, ENTRY_FLAG_NOTICE);
        assert_eq!((e.period_secs, e.throttle_secs), (3600, 300));
        assert!(!base.is_notice());
        // 2 per 10 minutes: two back to back, then one every 5 minutes.
        let now = 1_000 * S;
        let t = e.notice_admit(0, now).expect("first");
        let t = e.notice_admit(t, now).expect("second");
        assert_eq!(e.notice_admit(t, now), None);
        assert_eq!(e.notice_admit(t, now + 300 * S - 1), None);
        assert!(e.notice_admit(t, now + 300 * S).is_some());
        // A zero budget admits nothing; a zero period admits everything at once (interval 0).
        assert_eq!(PolicyEntry::notice(base, 0, 600).notice_admit(0, now), None);
        let free = PolicyEntry::notice(base, 3, 0);
        let mut tat = 0;
        for _ in 0..10 {
            tat = free.notice_admit(tat, now).expect("no period, no limit");
        }
        assert_eq!(notice_interval_ns(2, 600), 300 * S);
        assert_eq!(notice_interval_ns(0, 600), u64::MAX);
    }

    #[test]
    fn intervals_are_precomputed_or_derived() {
        let rate = PolicyEntry {
            action: ACTION_RATE_LIMIT,
            rate_per_min: 3,
            burst: 2,
            ..Default::default()
        };
        assert_eq!(rate.interval_ns, 0);
        assert_eq!(rate.rate_interval_ns(), 20 * S, "derived when not stored");
        let stored = rate.with_interval();
        assert_eq!(stored.interval_ns, 20 * S);
        assert_eq!(stored.rate_interval_ns(), 20 * S);
        let notice = PolicyEntry::notice(throttle(3600, 300, 0, 0, 0), 2, 600);
        assert_eq!(notice.interval_ns, 300 * S);
        assert_eq!(notice.notice_interval_ns(), 300 * S);
        assert_eq!(throttle(3600, 300, 0, 0, 0).with_interval().interval_ns, 0);
        // The kernel's state in the entry carries over to an entry with the same bucket only.
        let advanced = PolicyEntry {
            tat_ns: 99,
            expires_ns: 5,
            ..stored
        };
        assert!(advanced.same_bucket(&rate));
        assert!(!stored.same_bucket(&PolicyEntry { burst: 3, ..stored }));
        assert!(!stored.same_bucket(&PolicyEntry {
            rate_per_min: 4,
            ..stored
        }));
        assert!(notice.same_bucket(&notice));
        let plain = throttle(3600, 300, 0, 0, 0);
        assert!(!plain.same_bucket(&plain), "no bucket, nothing to keep");
    }

    #[test]
    fn rate_types_layout() {
        assert_eq!(size_of::<RateKey>(), 16);
        assert_eq!(size_of::<RateState>(), 8);
    }

    #[test]
    fn v4_mapped_key() {
        let k = RateKey::v4([10, 200, 0, 2]);
        assert_eq!(&k.addr[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        assert_eq!(&k.addr[12..], &[10, 200, 0, 2]);
        assert_ne!(k, RateKey::v6([0; 16]));
    }

    #[test]
    fn emission_interval() {
        assert_eq!(emission_interval_ns(60), 1_000_000_000);
        assert_eq!(emission_interval_ns(3), 20_000_000_000);
        assert_eq!(emission_interval_ns(0), u64::MAX);
    }

    fn throttle(period: u32, throttle: u32, off: u32, block: u32, anchor_ns: u64) -> PolicyEntry {
        PolicyEntry {
            action: ACTION_THROTTLE,
            period_secs: period,
            throttle_secs: throttle,
            block_offset_secs: off,
            block_secs: block,
            anchor_ns,
            ..Default::default()
        }
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn window_after_anchor() {
        let e = throttle(3600, 300, 0, 0, 1000 * S);
        assert_eq!(e.window_at(1000 * S), Window::Throttle);
        assert_eq!(e.window_at(1299 * S), Window::Throttle);
        assert_eq!(e.window_at(1300 * S), Window::Outside);
        assert_eq!(e.window_at(4599 * S), Window::Outside);
        assert_eq!(e.window_at(4600 * S), Window::Throttle);
    }

    #[test]
    fn window_before_anchor_uses_modular_arithmetic() {
        // Anchor in the future: the period that contains `now` started at anchor - k * period.
        let e = throttle(3600, 300, 0, 0, 10 * 3600 * S);
        assert_eq!(e.window_at(9 * 3600 * S), Window::Throttle);
        assert_eq!(e.window_at(9 * 3600 * S + 299 * S), Window::Throttle);
        assert_eq!(e.window_at(9 * 3600 * S + 300 * S), Window::Outside);
        assert_eq!(e.window_at(10 * 3600 * S - 1), Window::Outside);
        assert_eq!(e.window_at(0), Window::Throttle);
        assert_eq!(e.window_at(1), Window::Throttle);
    }

    #[test]
    fn block_window_wins_and_zero_period_never_refuses() {
        let e = throttle(600, 60, 30, 120, 0);
        assert_eq!(e.window_at(10 * S), Window::Throttle);
        assert_eq!(e.window_at(30 * S), Window::Block);
        assert_eq!(e.window_at(149 * S), Window::Block);
        assert_eq!(e.window_at(150 * S), Window::Outside);
        assert_eq!(throttle(0, 60, 0, 0, 0).window_at(5), Window::Outside);
        // Extreme values must not overflow.
        let big = throttle(u32::MAX, u32::MAX, u32::MAX, u32::MAX, u64::MAX);
        let _ = big.window_at(0);
        let _ = big.window_at(u64::MAX);
    }

    #[test]
    fn expiry() {
        let mut e = PolicyEntry::default();
        assert!(!e.is_expired(u64::MAX));
        e.expires_ns = 100;
        assert!(!e.is_expired(99));
        assert!(e.is_expired(100));
    }

    #[test]
    fn gcra_burst_then_rate() {
        let now = 1_000 * S;
        let mut tat = 0;
        // 3/min, burst 3: three back to back, then refused until one interval (20 s) has passed.
        for _ in 0..3 {
            tat = gcra(tat, now, 3, 3).expect("within burst");
        }
        assert_eq!(gcra(tat, now, 3, 3), None);
        assert_eq!(gcra(tat, now + 20 * S - 1, 3, 3), None);
        assert!(gcra(tat, now + 20 * S, 3, 3).is_some());
        // Burst 0 behaves like 1; rate 0 admits nothing; huge values saturate instead of wrapping.
        let t = gcra(0, now, 60, 0).unwrap();
        assert_eq!(gcra(t, now, 60, 0), None);
        assert_eq!(gcra(0, now, 0, 5), None);
        let t = gcra(0, u64::MAX - 1, 1, u32::MAX).unwrap();
        assert_eq!(t, u64::MAX);
        // Both sides of the multiply/divide split agree: burst 2^28 + 1 at 60/min tolerates exactly
        // 2^28 one-second intervals of backlog.
        let b = (1u32 << 28) + 1;
        let tol = (1u64 << 28) * S;
        assert!(gcra(now + tol, now, 60, b).is_some());
        assert_eq!(gcra(now + tol + 1, now, 60, b), None);
        assert!(gcra(now + 2 * S, now, 60, 3).is_some());
        assert_eq!(gcra(now + 2 * S + 1, now, 60, 3), None);
    }

    #[test]
    fn action_codes_are_distinct_and_dense() {
        let all = [
            ACTION_PASS,
            ACTION_DROP,
            ACTION_REJECT,
            ACTION_RATE_LIMIT,
            ACTION_THROTTLE,
        ];
        for (i, a) in all.iter().enumerate() {
            assert_eq!(*a as usize, i);
        }
        assert_eq!(ACTION_COUNT as usize, all.len());
    }
}
