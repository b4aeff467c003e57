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
}

const _: () = assert!(core::mem::size_of::<PolicyEntry>() == 48);

/// Key of `RATE_STATE`: the source address, IPv4 as IPv4-mapped IPv6 (`::ffff:a.b.c.d`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RateKey {
    pub addr: [u8; 16],
}

const _: () = assert!(core::mem::size_of::<RateKey>() == 16);

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

#[cfg(feature = "user")]
unsafe impl aya::Pod for PolicyEntry {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for RateKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for RateState {}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    #[test]
    fn policy_entry_layout_is_stable() {
        assert_eq!(size_of::<PolicyEntry>(), 48);
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
