//! The embedded eBPF object declares every map and program userspace names (no privileges needed),
//! with the sizes and capacities of the shared contract.

use aya_obj::{
    generated::bpf_map_type::{
        BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_LRU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY,
        BPF_MAP_TYPE_SOCKMAP,
    },
    maps::PinningType,
    Object,
};
use enforcer_common::{
    counters::{IFINDEX_LIMIT, STATS_SLOTS},
    filter::{FILTER_WORDS, LENGTH_SLOTS_V6, LENGTH_WORDS_V4},
    maps::*,
    GlobalConfig, PolicyEntry, PrefixKeyV4, PrefixKeyV6, RateKey, RateState,
};

const BPF_F_NO_PREALLOC: u32 = 1;
const BPF_F_MMAPABLE: u32 = 1 << 10;

fn object() -> Object {
    Object::parse(enforcer::EBPF_OBJECT).expect("embedded object parses")
}

#[test]
fn every_map_and_program_exists() {
    let obj = object();
    for name in ALL_MAPS {
        assert!(
            obj.maps.contains_key(name),
            "map {name} missing; has {:?}",
            obj.maps.keys()
        );
    }
    for name in ALL_PROGRAMS {
        assert!(
            obj.programs.contains_key(name),
            "program {name} missing; has {:?}",
            obj.programs.keys()
        );
    }
}

#[test]
fn maps_match_the_contract() {
    let obj = object();
    let entry = size_of::<PolicyEntry>() as u32;
    // (name, type, key size, value size, max entries, must not preallocate)
    let want = [
        (
            POLICY_V4_HOSTS,
            BPF_MAP_TYPE_HASH,
            4,
            entry,
            MAX_HOSTS_V4,
            true,
        ),
        (
            POLICY_V4_PREFIXES,
            BPF_MAP_TYPE_HASH,
            size_of::<PrefixKeyV4>() as u32,
            entry,
            MAX_PREFIXES_V4,
            true,
        ),
        (
            POLICY_V6_HOSTS,
            BPF_MAP_TYPE_HASH,
            16,
            entry,
            MAX_HOSTS_V6,
            true,
        ),
        (
            POLICY_V6_PREFIXES,
            BPF_MAP_TYPE_HASH,
            size_of::<PrefixKeyV6>() as u32,
            entry,
            MAX_PREFIXES_V6,
            true,
        ),
        (
            RATE_STATE,
            BPF_MAP_TYPE_LRU_HASH,
            size_of::<RateKey>() as u32,
            size_of::<RateState>() as u32,
            MAX_RATE_STATE,
            false,
        ),
        (PORTS, BPF_MAP_TYPE_ARRAY, 4, 4, PORT_COUNT, false),
        (
            CONFIG,
            BPF_MAP_TYPE_ARRAY,
            4,
            size_of::<GlobalConfig>() as u32,
            1,
            false,
        ),
        (STATS, BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, STATS_SLOTS, false),
        (IFACE_SLOTS, BPF_MAP_TYPE_ARRAY, 4, 4, IFINDEX_LIMIT, false),
        (
            PREFIX_FILTER_V4,
            BPF_MAP_TYPE_ARRAY,
            4,
            8,
            FILTER_WORDS,
            false,
        ),
        (
            PREFIX_FILTER_V6,
            BPF_MAP_TYPE_ARRAY,
            4,
            8,
            FILTER_WORDS,
            false,
        ),
        (
            NOTICE_SOCKETS,
            BPF_MAP_TYPE_SOCKMAP,
            4,
            4,
            NOTICE_SLOTS,
            false,
        ),
        (
            PREFIX_LENGTHS_V4,
            BPF_MAP_TYPE_ARRAY,
            4,
            8,
            LENGTH_WORDS_V4,
            false,
        ),
        (
            PREFIX_LENGTHS_V6,
            BPF_MAP_TYPE_ARRAY,
            4,
            16,
            LENGTH_SLOTS_V6,
            false,
        ),
    ];
    for (name, ty, key, value, max, no_prealloc) in want {
        let m = &obj.maps[name];
        assert_eq!(m.map_type(), ty as u32, "{name}: type");
        assert_eq!(m.key_size(), key, "{name}: key size");
        assert_eq!(m.value_size(), value, "{name}: value size");
        assert_eq!(m.max_entries(), max, "{name}: max entries");
        if no_prealloc {
            assert_ne!(
                m.map_flags() & BPF_F_NO_PREALLOC,
                0,
                "{name}: BPF_F_NO_PREALLOC"
            );
        }
        if [
            PREFIX_FILTER_V4,
            PREFIX_FILTER_V6,
            PREFIX_LENGTHS_V4,
            PREFIX_LENGTHS_V6,
        ]
        .contains(&name)
        {
            // Writers set bits with atomic ORs through mmap.
            assert_ne!(m.map_flags() & BPF_F_MMAPABLE, 0, "{name}: BPF_F_MMAPABLE");
        }
        // Userspace pins through EbpfLoader::map_pin_path; a by-name declaration would make every
        // plain load pin into /sys/fs/bpf.
        assert!(
            matches!(m.pinning(), PinningType::None),
            "{name}: declared unpinned"
        );
    }
}
