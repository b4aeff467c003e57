//! Per-CPU counter slots. Every packet the programs see ends in exactly one [`Reason`], counted once at
//! the single exit. While the datapath is in report-only mode every packet is counted in the
//! report-only half (a refusal there means "would drop", "would reject" and the packet passed);
//! otherwise in the enforced half.
//!
//! `STATS` holds one block of [`COUNTER_SLOTS`] per (interface slot, address family): interfaces get
//! a slot from userspace in `IFACE_SLOTS` when they are attached (slot 0 = an interface without one),
//! so the datapath counts per interface with a plain per-CPU increment and no atomics.

/// Why a packet got its verdict. The discriminant is the counter slot in the enforced half.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    // Fail-open passes: the packet is not subject to policy.
    NotIp = 0,
    NotTcp,
    NotSyn,
    OtherPort,
    Truncated,
    Fragment,
    Unparsable,
    // A SYN to a protected port was looked up.
    NoEntry,
    Expired,
    Allowed,
    Blocked,
    Rejected,
    RateAllowed,
    RateRefused,
    ThrottleOutside,
    ThrottleRefused,
    BlockWindowRefused,
    /// A reject could not be turned into a RST in place (IPv4 options, IPv6 extension headers,
    /// helper failure): the SYN was dropped instead.
    RejectFallbackDrop,
    /// A notice throttle (`ENTRY_FLAG_NOTICE`) let a SYN inside a window through to the MTA, which
    /// tells the sender why.
    NoticeAdmitted,
    /// A notice throttle's budget was spent: the SYN inside a window was dropped.
    NoticeRefused,
    /// Refused on its source alone: possibly TCP to a protected port, but the TCP header was not
    /// all in view (an IPv4/IPv6 fragment, more extension headers than walked, headers beyond the
    /// bytes in reach), and the source's entry refuses. Always dropped, never reset.
    SourceOnlyRefused,
    /// The `sk_lookup` program handed a notice window's SYN to the daemon's responder socket.
    NoticeSteered,
    /// No responder socket was registered (daemon down or restarting): the steered SYN was dropped
    /// (`notice.fallback = "drop"`).
    NoticeFallbackDropped,
    /// No responder socket was registered: the SYN went to the MTA (`notice.fallback = "pass"`).
    NoticeFallbackPassed,
}

/// Number of reasons (slots in one half of the counter array).
pub const REASON_COUNT: u32 = Reason::NoticeFallbackPassed as u32 + 1;
/// Total slots of `STATS`: enforced half then report-only half.
pub const COUNTER_SLOTS: u32 = 2 * REASON_COUNT;

/// Every reason in slot order.
pub const ALL_REASONS: [Reason; REASON_COUNT as usize] = [
    Reason::NotIp,
    Reason::NotTcp,
    Reason::NotSyn,
    Reason::OtherPort,
    Reason::Truncated,
    Reason::Fragment,
    Reason::Unparsable,
    Reason::NoEntry,
    Reason::Expired,
    Reason::Allowed,
    Reason::Blocked,
    Reason::Rejected,
    Reason::RateAllowed,
    Reason::RateRefused,
    Reason::ThrottleOutside,
    Reason::ThrottleRefused,
    Reason::BlockWindowRefused,
    Reason::RejectFallbackDrop,
    Reason::NoticeAdmitted,
    Reason::NoticeRefused,
    Reason::SourceOnlyRefused,
    Reason::NoticeSteered,
    Reason::NoticeFallbackDropped,
    Reason::NoticeFallbackPassed,
];

/// Counter slot for a reason; `report_only` selects the half where would-be refusals are counted.
pub const fn slot(reason: Reason, report_only: bool) -> u32 {
    reason as u32 + if report_only { REASON_COUNT } else { 0 }
}

/// Interface slots in `STATS`: slot 0 counts interfaces that have none (more than
/// `MAX_IFACE_SLOTS - 1` attached, an ifindex beyond [`IFINDEX_LIMIT`], or a test run).
pub const MAX_IFACE_SLOTS: u32 = 8;
/// Entries of `IFACE_SLOTS` (indexed by ifindex): larger ifindexes count in slot 0.
pub const IFINDEX_LIMIT: u32 = 1 << 16;

/// Address family of a counted packet: `None` when the packet was not parsed as far as IP.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    None = 0,
    V4,
    V6,
}

pub const FAMILY_COUNT: u32 = 3;
pub const ALL_FAMILIES: [Family; FAMILY_COUNT as usize] = [Family::None, Family::V4, Family::V6];

/// Total entries of `STATS`.
pub const STATS_SLOTS: u32 = MAX_IFACE_SLOTS * FAMILY_COUNT * COUNTER_SLOTS;

/// Index into `STATS` for one packet. `iface_slot` is clamped into range so the kernel needs no
/// separate check.
pub const fn stats_index(
    iface_slot: u32,
    family: Family,
    reason: Reason,
    report_only: bool,
) -> u32 {
    let iface = if iface_slot < MAX_IFACE_SLOTS {
        iface_slot
    } else {
        0
    };
    (iface * FAMILY_COUNT + family as u32) * COUNTER_SLOTS + slot(reason, report_only)
}

impl Family {
    /// Prometheus label value.
    pub const fn name(self) -> &'static str {
        match self {
            Family::None => "none",
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }

    /// Whether the datapath can count `reason` with this family: a packet is only judged (or found
    /// to go to an unprotected port) once its IP header was parsed; the earlier bypass reasons have
    /// no family. Used to list every possible series, so none ever disappears.
    pub const fn can_count(self, reason: Reason) -> bool {
        match self {
            Family::None => reason.is_bypass(),
            Family::V4 | Family::V6 => !matches!(reason, Reason::NotIp),
        }
    }
}

/// Sums a full `STATS` read (`STATS_SLOTS` values) into one block of [`COUNTER_SLOTS`] indexed by
/// [`slot`], over every interface and family.
pub fn fold(full: &[u64]) -> [u64; COUNTER_SLOTS as usize] {
    let mut out = [0u64; COUNTER_SLOTS as usize];
    for (i, v) in full.iter().enumerate() {
        let s = i % COUNTER_SLOTS as usize;
        out[s] = out[s].wrapping_add(*v);
    }
    out
}

impl Reason {
    /// Stable snake_case name used by `enforcer stats --json` and Prometheus labels.
    pub const fn name(self) -> &'static str {
        match self {
            Reason::NotIp => "not_ip",
            Reason::NotTcp => "not_tcp",
            Reason::NotSyn => "not_syn",
            Reason::OtherPort => "other_port",
            Reason::Truncated => "truncated",
            Reason::Fragment => "fragment",
            Reason::Unparsable => "unparsable",
            Reason::NoEntry => "no_entry",
            Reason::Expired => "expired",
            Reason::Allowed => "allowed",
            Reason::Blocked => "blocked",
            Reason::Rejected => "rejected",
            Reason::RateAllowed => "rate_allowed",
            Reason::RateRefused => "rate_refused",
            Reason::ThrottleOutside => "throttle_outside",
            Reason::ThrottleRefused => "throttle_refused",
            Reason::BlockWindowRefused => "block_window_refused",
            Reason::RejectFallbackDrop => "reject_fallback_drop",
            Reason::NoticeAdmitted => "notice_admitted",
            Reason::NoticeRefused => "notice_refused",
            Reason::SourceOnlyRefused => "source_only_refused",
            Reason::NoticeSteered => "notice_steered",
            Reason::NoticeFallbackDropped => "notice_fallback_dropped",
            Reason::NoticeFallbackPassed => "notice_fallback_passed",
        }
    }

    /// True when the packet was (or, in report-only mode, would have been) refused.
    pub const fn is_refusal(self) -> bool {
        matches!(
            self,
            Reason::Blocked
                | Reason::Rejected
                | Reason::RateRefused
                | Reason::ThrottleRefused
                | Reason::BlockWindowRefused
                | Reason::RejectFallbackDrop
                | Reason::NoticeRefused
                | Reason::SourceOnlyRefused
                | Reason::NoticeFallbackDropped
        )
    }

    /// True for packets that were never subject to policy (fail open).
    pub const fn is_bypass(self) -> bool {
        (self as u32) < Reason::NoEntry as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_dense_and_named_uniquely() {
        let mut names = std::collections::HashSet::new();
        for (i, r) in ALL_REASONS.iter().enumerate() {
            assert_eq!(*r as usize, i);
            assert!(names.insert(r.name()));
        }
        assert_eq!(COUNTER_SLOTS, 2 * ALL_REASONS.len() as u32);
    }

    #[test]
    fn slots_split_halves() {
        assert_eq!(slot(Reason::NotIp, false), 0);
        assert_eq!(
            slot(Reason::Blocked, true),
            Reason::Blocked as u32 + REASON_COUNT
        );
        assert!(slot(Reason::SourceOnlyRefused, true) < COUNTER_SLOTS);
        assert_eq!(slot(Reason::NoticeFallbackPassed, true), COUNTER_SLOTS - 1);
    }

    #[test]
    fn stats_index_covers_the_map_without_overlap() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..MAX_IFACE_SLOTS {
            for f in ALL_FAMILIES {
                for r in ALL_REASONS {
                    for ro in [false, true] {
                        let x = stats_index(i, f, r, ro);
                        assert!(x < STATS_SLOTS);
                        assert!(seen.insert(x));
                    }
                }
            }
        }
        assert_eq!(seen.len(), STATS_SLOTS as usize);
        assert_eq!(
            stats_index(MAX_IFACE_SLOTS + 3, Family::V4, Reason::Blocked, false),
            stats_index(0, Family::V4, Reason::Blocked, false)
        );
        let mut full = vec![0u64; STATS_SLOTS as usize];
        full[stats_index(2, Family::V6, Reason::Blocked, true) as usize] = 5;
        full[stats_index(0, Family::V4, Reason::Blocked, true) as usize] = 1;
        assert_eq!(fold(&full)[slot(Reason::Blocked, true) as usize], 6);
    }

    #[test]
    fn classes() {
        assert!(Reason::Truncated.is_bypass());
        assert!(!Reason::NoEntry.is_bypass());
        assert!(Reason::ThrottleRefused.is_refusal());
        assert!(!Reason::ThrottleOutside.is_refusal());
        assert!(!Reason::Allowed.is_refusal());
        assert!(Reason::NoticeRefused.is_refusal());
        assert!(!Reason::NoticeAdmitted.is_refusal());
        assert!(Reason::SourceOnlyRefused.is_refusal());
        assert!(!Reason::SourceOnlyRefused.is_bypass());
        assert!(Reason::Fragment.is_bypass());
    }
}
