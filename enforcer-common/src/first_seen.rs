//! First-seen events: the datapath reports a source it has not seen before on a protected port
//! (only while [`crate::config::CONFIG_FLAG_FIRST_SEEN`] is set), de-duplicated by an LRU map and
//! bounded by a per-CPU budget, so a flood from spoofed sources yields a bounded, counted event rate.

/// One event in [`crate::maps::FIRST_SEEN_EVENTS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FirstSeenEvent {
    /// The source, as a `RateKey` holds it (IPv4 mapped into `::ffff:0:0/96`).
    pub addr: [u8; 16],
    /// `CLOCK_BOOTTIME` of the SYN, nanoseconds.
    pub boot_ns: u64,
    /// Destination port (host order).
    pub port: u16,
    pub _pad: [u8; 6],
}

const _: () = assert!(core::mem::size_of::<FirstSeenEvent>() == 32);

/// Value of [`crate::maps::FIRST_SEEN_STATE`] (per CPU, one element): the budget window and the
/// counters userspace reads (summed over CPUs).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FirstSeenState {
    /// Start of the current one-second budget window (`CLOCK_BOOTTIME`, ns).
    pub window_ns: u64,
    /// Events sent in that window.
    pub used: u64,
    /// Events written to the ring.
    pub sent: u64,
    /// Events lost because the ring was full (the source is forgotten and reported again later).
    pub lost: u64,
    /// New sources not reported because this CPU's budget for the second was spent.
    pub over_budget: u64,
}

const _: () = assert!(core::mem::size_of::<FirstSeenState>() == 40);

/// Events one CPU may send per second: with the ring below, a flood of new sources can never
/// fill memory or the daemon's queue faster than it reads.
pub const BUDGET_PER_CPU_PER_SEC: u64 = 256;
/// Size of the ring buffer in bytes (a power of two, a multiple of the page size).
pub const RING_BYTES: u32 = 256 * 1024;
/// Sources the kernel remembers as seen (an LRU: the oldest are forgotten and reported again).
pub const MAX_SEEN: u32 = 1 << 16;

#[cfg(feature = "user")]
unsafe impl aya::Pod for FirstSeenEvent {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for FirstSeenState {}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    #[test]
    fn layout() {
        assert_eq!(size_of::<FirstSeenEvent>(), 32);
        assert_eq!(align_of::<FirstSeenEvent>(), 8);
        assert_eq!(offset_of!(FirstSeenEvent, boot_ns), 16);
        assert_eq!(offset_of!(FirstSeenEvent, port), 24);
        assert_eq!(size_of::<FirstSeenState>(), 40);
        assert!(RING_BYTES.is_power_of_two() && RING_BYTES.is_multiple_of(4096));
    }
}
