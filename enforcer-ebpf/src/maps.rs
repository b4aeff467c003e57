//! The map statics, named exactly like the constants in `enforcer_common::maps` (the ELF test checks).
//!
//! Maps are declared unpinned on purpose: the daemon pins each one through
//! `EbpfLoader::map_pin_path(NAME, <pin-dir>/maps/NAME)`, which creates-or-adopts the pin and overrides
//! the declared pinning; a by-name declaration would make every plain load (tests, benchmarks) pin into
//! `/sys/fs/bpf` by default.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf, SockMap},
};
use enforcer_common::{
    counters::{IFINDEX_LIMIT, STATS_SLOTS},
    filter::{FILTER_WORDS, LENGTH_SLOTS_V6, LENGTH_WORDS_V4},
    first_seen::{FirstSeenState, MAX_SEEN, RING_BYTES},
    maps::{
        MAX_HOSTS_V4, MAX_HOSTS_V6, MAX_PREFIXES_V4, MAX_PREFIXES_V6, MAX_RATE_STATE, NOTICE_SLOTS,
        PORT_COUNT,
    },
    GlobalConfig, PolicyEntry, PrefixKeyV4, PrefixKeyV6, RateKey, RateState,
};

/// `BPF_F_NO_PREALLOC` for the host maps too: a million-entry preallocated hash would pin ~100 MB of
/// kernel memory on every host whatever the list size.
const NO_PREALLOC: u32 = aya_ebpf::bindings::BPF_F_NO_PREALLOC;

#[map]
pub static POLICY_V4_HOSTS: HashMap<[u8; 4], PolicyEntry> =
    HashMap::with_max_entries(MAX_HOSTS_V4, NO_PREALLOC);

/// Exact hashes keyed by (length, masked address), not an LPM trie: one probe per length the
/// source's slot names costs ~10 ns where a trie walk over 65,536 prefixes cost 100+.
#[map]
pub static POLICY_V4_PREFIXES: HashMap<PrefixKeyV4, PolicyEntry> =
    HashMap::with_max_entries(MAX_PREFIXES_V4, NO_PREALLOC);

#[map]
pub static POLICY_V6_HOSTS: HashMap<[u8; 16], PolicyEntry> =
    HashMap::with_max_entries(MAX_HOSTS_V6, NO_PREALLOC);

#[map]
pub static POLICY_V6_PREFIXES: HashMap<PrefixKeyV6, PolicyEntry> =
    HashMap::with_max_entries(MAX_PREFIXES_V6, NO_PREALLOC);

#[map]
pub static RATE_STATE: LruHashMap<RateKey, RateState> =
    LruHashMap::with_max_entries(MAX_RATE_STATE, 0);

#[map]
pub static PORTS: Array<u32> = Array::with_max_entries(PORT_COUNT, 0);

#[map]
pub static CONFIG: Array<GlobalConfig> = Array::with_max_entries(1, 0);

#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STATS_SLOTS, 0);

/// An array, not a hash: the lookup on every packet is then an inlined bounds check and an add.
#[map]
pub static IFACE_SLOTS: Array<u32> = Array::with_max_entries(IFINDEX_LIMIT, 0);

/// Mmapable so that userspace sets filter bits with atomic ORs in place (no read-modify-write
/// syscalls racing each other); the program's lookup is still the inlined array access.
const MMAPABLE: u32 = aya_ebpf::bindings::BPF_F_MMAPABLE;

/// One bit per IPv4 /24 that some prefix entry intersects (`enforcer_common::filter`).
#[map]
pub static PREFIX_FILTER_V4: Array<u64> = Array::with_max_entries(FILTER_WORDS, MMAPABLE);

/// One bit per hashed IPv6 /32 that some prefix entry intersects.
#[map]
pub static PREFIX_FILTER_V6: Array<u64> = Array::with_max_entries(FILTER_WORDS, MMAPABLE);

/// First-seen events for the daemon (`enforcer_common::first_seen`).
#[map]
pub static FIRST_SEEN_EVENTS: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);

#[map]
pub static FIRST_SEEN: LruHashMap<RateKey, u32> = LruHashMap::with_max_entries(MAX_SEEN, 0);

#[map]
pub static FIRST_SEEN_STATE: PerCpuArray<FirstSeenState> = PerCpuArray::with_max_entries(1, 0);

/// The notice responder's listening sockets, one per address family (`NOTICE_SLOT_V4`/`_V6`).
#[map]
pub static NOTICE_SOCKETS: SockMap = SockMap::with_max_entries(NOTICE_SLOTS, 0);

/// Prefix lengths present per IPv4 /20, two /20s per element (`enforcer_common::filter`).
#[map]
pub static PREFIX_LENGTHS_V4: Array<u64> = Array::with_max_entries(LENGTH_WORDS_V4, MMAPABLE);

/// Prefix lengths present per IPv6 filter word: lengths 0–63 in the first word, 64–127 in the second.
#[map]
pub static PREFIX_LENGTHS_V6: Array<[u64; 2]> = Array::with_max_entries(LENGTH_SLOTS_V6, MMAPABLE);
