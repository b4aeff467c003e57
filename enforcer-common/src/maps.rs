//! Map and program names. The kernel side names its statics exactly like these constants (the ELF
//! test checks every one exists in the built object); userspace only ever uses the constants.

/// Exact IPv4 hosts: `HashMap<[u8; 4], PolicyEntry>` (key = address bytes in network order).
/// A host entry is the longest possible prefix, so it is consulted before the prefix trie.
pub const POLICY_V4_HOSTS: &str = "POLICY_V4_HOSTS";
/// IPv4 prefixes shorter than /32: `HashMap<PrefixKeyV4, PolicyEntry>` (length and masked
/// address), probed per length (see [`crate::filter`]).
pub const POLICY_V4_PREFIXES: &str = "POLICY_V4_PREFIXES";
/// Exact IPv6 hosts: `HashMap<[u8; 16], PolicyEntry>`.
pub const POLICY_V6_HOSTS: &str = "POLICY_V6_HOSTS";
/// IPv6 prefixes shorter than /128: `HashMap<PrefixKeyV6, PolicyEntry>`, like
/// `POLICY_V4_PREFIXES`.
pub const POLICY_V6_PREFIXES: &str = "POLICY_V6_PREFIXES";
/// Token-bucket (GCRA) state per source address: `LruHashMap<RateKey, RateState>`.
pub const RATE_STATE: &str = "RATE_STATE";
/// Protected destination ports: `Array<u32>` indexed by port (host order), non-zero = protected.
pub const PORTS: &str = "PORTS";
/// Global settings: `Array<GlobalConfig>` with one element at index 0.
pub const CONFIG: &str = "CONFIG";
/// Per-CPU packet counters: `PerCpuArray<u64>` indexed by [`crate::counters::stats_index`].
pub const STATS: &str = "STATS";
/// Interface slot of each ifindex for per-interface counting: `Array<u32>` of
/// [`crate::counters::IFINDEX_LIMIT`] entries, written by userspace when it attaches.
pub const IFACE_SLOTS: &str = "IFACE_SLOTS";

/// Presence filter of `POLICY_V4_PREFIXES`: `Array<u64>` of [`crate::filter::FILTER_WORDS`]
/// words, one bit per /24, mmapable so writers set bits with atomic ORs (see [`crate::filter`]).
pub const PREFIX_FILTER_V4: &str = "PREFIX_FILTER_V4";
/// Presence filter of `POLICY_V6_PREFIXES`: one bit per hashed /32, like `PREFIX_FILTER_V4`.
pub const PREFIX_FILTER_V6: &str = "PREFIX_FILTER_V6";

/// First-seen events: `RingBuf` of [`crate::first_seen::FirstSeenEvent`]s.
pub const FIRST_SEEN_EVENTS: &str = "FIRST_SEEN_EVENTS";
/// Sources already reported: `LruHashMap<RateKey, u32>`.
pub const FIRST_SEEN: &str = "FIRST_SEEN";
/// Per-CPU budget window and counters of the events: `PerCpuArray<FirstSeenState>`, one element.
pub const FIRST_SEEN_STATE: &str = "FIRST_SEEN_STATE";

/// The notice responder's listening sockets: `SockMap` of [`NOTICE_SLOTS`] entries
/// ([`NOTICE_SLOT_V4`], [`NOTICE_SLOT_V6`]), filled by the daemon; the `sk_lookup` program hands a
/// notice window's SYN to the socket of its family. An entry dies with its socket (daemon gone).
pub const NOTICE_SOCKETS: &str = "NOTICE_SOCKETS";
pub const NOTICE_SLOT_V4: u32 = 0;
pub const NOTICE_SLOT_V6: u32 = 1;
pub const NOTICE_SLOTS: u32 = 2;

/// Prefix lengths present per IPv4 /20: `Array<u64>` of [`crate::filter::LENGTH_WORDS_V4`], two
/// slots per element, mmapable like the filters (see [`crate::filter`]).
pub const PREFIX_LENGTHS_V4: &str = "PREFIX_LENGTHS_V4";
/// Prefix lengths present per IPv6 filter word: `Array<[u64; 2]>` of
/// [`crate::filter::LENGTH_SLOTS_V6`].
pub const PREFIX_LENGTHS_V6: &str = "PREFIX_LENGTHS_V6";

/// Every map, in the order userspace lists, pins and checks them.
pub const ALL_MAPS: [&str; 17] = [
    POLICY_V4_HOSTS,
    POLICY_V4_PREFIXES,
    POLICY_V6_HOSTS,
    POLICY_V6_PREFIXES,
    RATE_STATE,
    PORTS,
    CONFIG,
    STATS,
    IFACE_SLOTS,
    PREFIX_FILTER_V4,
    PREFIX_FILTER_V6,
    FIRST_SEEN_EVENTS,
    FIRST_SEEN,
    FIRST_SEEN_STATE,
    NOTICE_SOCKETS,
    PREFIX_LENGTHS_V4,
    PREFIX_LENGTHS_V6,
];

/// XDP ingress program.
pub const PROG_XDP: &str = "enforcer_xdp";
/// TC ingress program (tcx or clsact), same decision code as the XDP one.
pub const PROG_TC: &str = "enforcer_tc";

/// `sk_lookup` program of the notice responder, attached to the MTA's network namespace.
pub const PROG_SK_LOOKUP: &str = "enforcer_sk_lookup";

pub const ALL_PROGRAMS: [&str; 3] = [PROG_XDP, PROG_TC, PROG_SK_LOOKUP];

/// Capacities. Host maps are sized for a million senders; prefixes are operator-made and fewer.
pub const MAX_HOSTS_V4: u32 = 1 << 21;
pub const MAX_HOSTS_V6: u32 = 1 << 20;
pub const MAX_PREFIXES_V4: u32 = 1 << 16;
pub const MAX_PREFIXES_V6: u32 = 1 << 16;
pub const MAX_RATE_STATE: u32 = 1 << 18;
pub const PORT_COUNT: u32 = 1 << 16;

/// Default protected ports: SMTP, submissions (implicit TLS), submission.
pub const DEFAULT_PORTS: [u16; 3] = [25, 465, 587];
