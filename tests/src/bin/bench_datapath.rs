//! Datapath benchmark (root): ns per packet through BPF_PROG_TEST_RUN for the cases an operator cares
//! about, each next to an empty XDP program timed in the same round, so the harness cost (~26 ns here)
//! can be subtracted. Prints a Markdown section on stdout; progress goes to stderr.
//!
//! Every row also times xdp-filter (Debian's xdp-tools; its default build and its `-f ipv4,ipv6`
//! build, each at its 10,000-entry cap) on the nearest equivalent frame in the same rounds, so
//! every row has a peer ratio (see `xdp_filter.rs`).
//!
//! Run with `cargo xtask bench datapath` (= `cargo run --release -p tests --bin bench-datapath`).
//! `BENCH_OBJECT=path/to/object` times another build of the eBPF object instead of the embedded one
//! (e.g. to compare codegen options).

#[path = "bench_datapath/xdp_filter.rs"]
mod xdp_filter;

use std::{collections::HashSet, process::ExitCode, time::Instant};

use anyhow::{anyhow, Context as _, Result};
use aya::{
    maps::{Array, HashMap},
    programs::{TestRun, TestRunOptions, Xdp},
    Ebpf, EbpfLoader,
};
use enforcer_common::{
    maps,
    policy::{ACTION_DROP, ACTION_RATE_LIMIT},
    PolicyEntry, PrefixKeyV4, PrefixKeyV6,
};
use tests::frames::{self, Tcp, ACK};

/// The empty program and the plain hash-lookup program shipped in the object for this comparison;
/// userspace never loads them.
const PROG_EMPTY: &str = "enforcer_xdp_empty";
const PROG_HASH_ONLY: &str = "enforcer_xdp_hash_only";

const REPEAT: u32 = 1_000_000;
const ROUNDS: usize = 5;
const HOSTS: u32 = 1_000_000;
/// IPv4 and IPv6 prefixes each, of mixed lengths (/8–/31 and /32–/127).
const PREFIXES: usize = 65_536;

const SERVER4: [u8; 4] = [192, 0, 2, 1];
const SERVER6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const RATE4: [u8; 4] = [203, 0, 113, 9];
const RATE_OK4: [u8; 4] = [203, 0, 113, 10];
const HIT6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34,
];

/// The n-th loaded host: 10.x.y.z, spread over the whole hash table.
fn host(n: u32) -> [u8; 4] {
    let [_, a, b, c] = n.to_be_bytes();
    [10, a, b, c]
}

struct Case {
    name: &'static str,
    program: &'static str,
    frame: Vec<u8>,
    target_above_empty: Option<f64>,
    /// The frame xdp-filter gets for this row (same shape, source in or out of its list).
    peer: Peer,
}

#[derive(Clone, Copy)]
enum Peer {
    HitV4,
    MissV4,
    HitV6,
    MissV6,
}

/// splitmix64: a deterministic spread of prefixes over the address space.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// 65,536 distinct IPv4 prefixes: eight each of /8–/15 inside 100.0.0.0/6 … , the rest /16–/31
/// cycling, all inside 96.0.0.0/3 (96–127), away from the hosts (10/8), the rate-limited sources
/// and the unlisted probe.
fn prefixes_v4() -> Vec<([u8; 4], u32)> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(PREFIXES);
    let mut n = 0u64;
    while out.len() < PREFIXES {
        n += 1;
        let len = if out.len() < 64 {
            8 + (out.len() as u32 / 8)
        } else {
            16 + (out.len() as u32 % 16)
        };
        let raw = (mix(n) as u32 & 0x1fff_ffff) | 0x6000_0000;
        let mask = u32::MAX << (32 - len);
        let key = (raw & mask, len);
        if seen.insert(key) {
            out.push((key.0.to_be_bytes(), len));
        }
    }
    out
}

/// 65,536 distinct IPv6 prefixes /32–/127 inside fd00::/8.
fn prefixes_v6() -> Vec<([u8; 16], u32)> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(PREFIXES);
    let mut n = 0u64;
    while out.len() < PREFIXES {
        n += 1;
        let len = 32 + (out.len() as u32 % 96);
        let raw = ((mix(n) as u128) << 64 | mix(n ^ 0xffff) as u128) & !(0xffu128 << 120)
            | (0xfdu128 << 120);
        let mask = u128::MAX << (128 - len);
        let key = (raw & mask, len);
        if seen.insert(key) {
            out.push((key.0.to_be_bytes(), len));
        }
    }
    out
}

/// Seeds of the unlisted probes, far from the prefixes' (which use 1, 2, 3 ...): a probe must not
/// share its bucket with a prefix by construction.
const MISS_SEED: u64 = 1 << 40;

/// How often an unlisted source still probes the prefix hashes: among `SAMPLES` random sources in
/// the populated space that no prefix contains, the share whose presence-filter bit is set (their
/// bucket holds a longer prefix, or a hash collision for IPv6), and how many lengths those probe on
/// average (one hash lookup each: the lengths their slot names).
const SAMPLES: u64 = 20_000;

struct Probes {
    share4: f64,
    share6: f64,
    mean4: f64,
    mean6: f64,
    /// Lengths the prefix-hit rows probe (those at least as long as the match, in its slot).
    hit4: u32,
    hit6: u32,
}

fn probe_share(
    prefixes4: &[([u8; 4], u32)],
    prefixes6: &[([u8; 16], u32)],
    hit4: [u8; 4],
    hit6: [u8; 16],
) -> Probes {
    use enforcer::datapath::filter::{lengths_for, words_for};
    use enforcer::net::Prefix;
    use enforcer_common::filter::{v4_bit, v4_slot, v6_bit, v6_slot, word_of};
    let p4: Vec<Prefix> = prefixes4
        .iter()
        .map(|(a, l)| Prefix::containing((*a).into(), *l as u8))
        .collect();
    let p6: Vec<Prefix> = prefixes6
        .iter()
        .map(|(a, l)| Prefix::containing((*a).into(), *l as u8))
        .collect();
    let (w4, w6) = (words_for(&p4, true), words_for(&p6, false));
    let (l4, l6) = (lengths_for(&p4, true), lengths_for(&p6, false));
    let set4: HashSet<(u32, u32)> = prefixes4
        .iter()
        .map(|(a, l)| (u32::from_be_bytes(*a), *l))
        .collect();
    let set6: HashSet<(u128, u32)> = prefixes6
        .iter()
        .map(|(a, l)| (u128::from_be_bytes(*a), *l))
        .collect();
    let is_set = |w: &[u64], bit: u32| {
        let (i, m) = word_of(bit);
        w[i as usize] & m != 0
    };
    let (mut n4, mut hit4n, mut n6, mut hit6n) = (0u64, 0u64, 0u64, 0u64);
    let (mut probes4, mut probes6) = (0u64, 0u64);
    let mut n = 0u64;
    while n4 < SAMPLES || n6 < SAMPLES {
        n += 1;
        let a = (mix(n | MISS_SEED << 2) as u32 & 0x1fff_ffff) | 0x6000_0000;
        if n4 < SAMPLES
            && !(0..=32)
                .any(|l| set4.contains(&(a & (u32::MAX.checked_shl(32 - l).unwrap_or(0)), l)))
        {
            n4 += 1;
            if is_set(&w4, v4_bit(a.to_be_bytes())) {
                hit4n += 1;
                probes4 += u64::from(l4[v4_slot(a.to_be_bytes()) as usize].count_ones());
            }
        }
        let b = ((mix(n | MISS_SEED << 3) as u128) << 64 | mix(n | MISS_SEED << 4) as u128)
            & !(0xffu128 << 120)
            | (0xfdu128 << 120);
        if n6 < SAMPLES
            && !(0..=128)
                .any(|l| set6.contains(&(b & (u128::MAX.checked_shl(128 - l).unwrap_or(0)), l)))
        {
            n6 += 1;
            if is_set(&w6, v6_bit((b >> 96) as u32)) {
                hit6n += 1;
                probes6 += u64::from(l6[v6_slot((b >> 96) as u32) as usize].count_ones());
            }
        }
    }
    let top6 = u32::from_be_bytes([hit6[0], hit6[1], hit6[2], hit6[3]]);
    Probes {
        share4: 100.0 * hit4n as f64 / n4 as f64,
        share6: 100.0 * hit6n as f64 / n6 as f64,
        mean4: probes4 as f64 / hit4n.max(1) as f64,
        mean6: probes6 as f64 / hit6n.max(1) as f64,
        hit4: (l4[v4_slot(hit4) as usize] >> 20).count_ones(),
        hit6: (l6[v6_slot(top6) as usize] >> 64).count_ones(),
    }
}

fn covered_v4(prefixes: &[([u8; 4], u32)], a: [u8; 4]) -> bool {
    let a = u32::from_be_bytes(a);
    prefixes
        .iter()
        .any(|(p, len)| a & (u32::MAX << (32 - len)) == u32::from_be_bytes(*p))
}

/// An address inside the middle-length prefix nearest to entry `i`, and an unlisted address in
/// the populated part of the space.
fn probes_v4(prefixes: &[([u8; 4], u32)]) -> ([u8; 4], [u8; 4]) {
    let (p, len) = prefixes
        .iter()
        .skip(PREFIXES / 2)
        .find(|(_, l)| *l == 20)
        .copied()
        .expect("a /20");
    let inside = (u32::from_be_bytes(p) | (1 << (32 - len - 1)) | 7).to_be_bytes();
    let mut n = 1u64;
    let miss = loop {
        let a = ((mix(n | MISS_SEED) as u32 & 0x1fff_ffff) | 0x6000_0000).to_be_bytes();
        if !covered_v4(prefixes, a) {
            break a;
        }
        n += 1;
    };
    (inside, miss)
}

/// An IPv6 source inside fd00::/8 (where the prefixes are) that none of them contains.
fn miss_v6(prefixes: &[([u8; 16], u32)]) -> [u8; 16] {
    let mut n = 1u64;
    loop {
        let a = (((mix(n | MISS_SEED) as u128) << 64 | mix(n | MISS_SEED << 1) as u128)
            & !(0xffu128 << 120))
            | (0xfdu128 << 120);
        let covered = prefixes
            .iter()
            .any(|(p, len)| a & (u128::MAX << (128 - len)) == u128::from_be_bytes(*p));
        if !covered {
            return a.to_be_bytes();
        }
        n += 1;
    }
}

fn probe_v6(prefixes: &[([u8; 16], u32)]) -> [u8; 16] {
    let (p, _) = prefixes
        .iter()
        .skip(PREFIXES / 2)
        .find(|(_, l)| *l == 64)
        .copied()
        .expect("a /64");
    let mut a = p;
    a[15] = 0x42;
    a
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-datapath: {e:#}");
            ExitCode::FAILURE
        }
    }
}

struct Row<'a> {
    case: &'a Case,
    empty: f64,
    ours: f64,
    /// xdp-filter default, xdp-filter -f ipv4,ipv6 (ns per packet).
    peers: Vec<f64>,
}

fn run() -> Result<()> {
    let object = std::env::var_os("BENCH_OBJECT")
        .map(std::fs::read)
        .transpose()?;
    let mut ebpf = EbpfLoader::new()
        .load(object.as_deref().unwrap_or(enforcer::EBPF_OBJECT))
        .context("loading the eBPF object (run as root)")?;
    for name in [maps::PROG_XDP, PROG_EMPTY, PROG_HASH_ONLY] {
        let p: &mut Xdp = ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("program {name} missing"))?
            .try_into()?;
        p.load().with_context(|| format!("loading {name}"))?;
    }
    let prefixes4 = prefixes_v4();
    let prefixes6 = prefixes_v6();
    fill(&mut ebpf, &prefixes4, &prefixes6)?;
    pin_to_last_cpu();

    let syn = Tcp::syn(40000, 25).with_typical_options();
    let hit4 = host(HOSTS / 2);
    let (prefix_hit4, miss4) = probes_v4(&prefixes4);
    let prefix_hit6 = probe_v6(&prefixes6);
    let miss6 = miss_v6(&prefixes6);
    let v4 = |src: [u8; 4], t: &Tcp| frames::tcp_v4(&[], src, SERVER4, t);
    let cases = [
        Case {
            name: "non-SYN pass (ACK to port 25)",
            program: maps::PROG_XDP,
            frame: v4(hit4, &syn.clone().flags(ACK)),
            target_above_empty: Some(6.0),
            peer: Peer::MissV4,
        },
        Case {
            name: "SYN to an unprotected port",
            program: maps::PROG_XDP,
            frame: v4(hit4, &Tcp::syn(40000, 443)),
            target_above_empty: None,
            peer: Peer::MissV4,
        },
        Case {
            name: "SYN unlisted (1M hosts + 65,536 prefixes)",
            program: maps::PROG_XDP,
            frame: v4(miss4, &syn),
            target_above_empty: Some(35.0),
            peer: Peer::MissV4,
        },
        Case {
            name: "IPv6 SYN unlisted (65,536 prefixes)",
            program: maps::PROG_XDP,
            frame: frames::tcp_v6(&[], miss6, SERVER6, &[], &syn),
            target_above_empty: Some(35.0),
            peer: Peer::MissV6,
        },
        Case {
            name: "SYN blocked host (1M loaded)",
            program: maps::PROG_XDP,
            frame: v4(hit4, &syn),
            target_above_empty: Some(32.0),
            peer: Peer::HitV4,
        },
        Case {
            name: "SYN inside a blocked IPv4 prefix (/20 of 65,536 mixed)",
            program: maps::PROG_XDP,
            frame: v4(prefix_hit4, &syn),
            target_above_empty: Some(45.0),
            peer: Peer::HitV4,
        },
        Case {
            name: "SYN inside a blocked IPv6 prefix (/64 of 65,536 mixed)",
            program: maps::PROG_XDP,
            frame: frames::tcp_v6(&[], prefix_hit6, SERVER6, &[], &syn),
            target_above_empty: Some(45.0),
            peer: Peer::HitV6,
        },
        Case {
            name: "SYN rate-limited, refused",
            program: maps::PROG_XDP,
            frame: v4(RATE4, &syn),
            target_above_empty: Some(50.0),
            peer: Peer::HitV4,
        },
        Case {
            name: "SYN rate-limited, admitted",
            program: maps::PROG_XDP,
            frame: v4(RATE_OK4, &syn),
            target_above_empty: Some(50.0),
            peer: Peer::HitV4,
        },
        Case {
            name: "IPv6 SYN blocked host",
            program: maps::PROG_XDP,
            frame: frames::tcp_v6(&[], HIT6, SERVER6, &[], &syn),
            target_above_empty: Some(32.0),
            peer: Peer::HitV6,
        },
        Case {
            name: "comparison: bare hash lookup, hit",
            program: PROG_HASH_ONLY,
            frame: v4(hit4, &syn),
            target_above_empty: None,
            peer: Peer::HitV4,
        },
        Case {
            name: "comparison: bare hash lookup, miss",
            program: PROG_HASH_ONLY,
            frame: v4(miss4, &syn),
            target_above_empty: None,
            peer: Peer::MissV4,
        },
    ];
    // xdp-filter's frames: a SYN from one of its 10,000 listed sources, or from none.
    let xf_hosts4: Vec<[u8; 4]> = (0..xdp_filter::CAP).map(host).collect();
    let xf_hosts6: Vec<[u8; 16]> = std::iter::once(HIT6)
        .chain((1..xdp_filter::CAP).map(|n: u32| {
            let mut a = HIT6;
            a[8..12].copy_from_slice(&n.to_be_bytes());
            a
        }))
        .collect();
    let peer_frame = |p: Peer| match p {
        Peer::HitV4 => v4(xf_hosts4[xf_hosts4.len() / 2], &syn),
        Peer::MissV4 => v4(miss4, &syn),
        Peer::HitV6 => frames::tcp_v6(&[], HIT6, SERVER6, &[], &syn),
        Peer::MissV6 => frames::tcp_v6(&[], miss6, SERVER6, &[], &syn),
    };
    eprintln!("loading xdp-filter (default and -f ipv4,ipv6), 10,000 entries each");
    let peers = [
        xdp_filter::XdpFilter::load("xdp-filter", None, &xf_hosts4, &xf_hosts6)?,
        xdp_filter::XdpFilter::load(
            "xdp-filter -f ipv4,ipv6",
            Some("ipv4,ipv6"),
            &xf_hosts4,
            &xf_hosts6,
        )?,
    ];
    for xf in &peers {
        for (p, want) in [
            (Peer::HitV4, 1),
            (Peer::MissV4, 2),
            (Peer::HitV6, 1),
            (Peer::MissV6, 2),
        ] {
            let got = xf.verdict(&peer_frame(p))?;
            anyhow::ensure!(
                got == want,
                "{}: verdict {got} for a {}",
                xf.label,
                match p {
                    Peer::HitV4 => "listed IPv4 source",
                    Peer::MissV4 => "unlisted IPv4 source",
                    Peer::HitV6 => "listed IPv6 source",
                    Peer::MissV6 => "unlisted IPv6 source",
                }
            );
        }
    }

    let mut rows = Vec::new();
    for case in &cases {
        // Interleave the empty program with the case inside each round, so both see the same
        // machine state; take the median of each.
        let mut empty = Vec::new();
        let mut ours = Vec::new();
        let mut theirs = vec![Vec::new(); peers.len()];
        let pf = peer_frame(case.peer);
        // Warm caches and the map's hot entries before timing.
        time(&ebpf, case.program, &case.frame)?;
        for xf in &peers {
            xf.time(&pf, REPEAT)?;
        }
        for _ in 0..ROUNDS {
            empty.push(time(&ebpf, PROG_EMPTY, &case.frame)?);
            ours.push(time(&ebpf, case.program, &case.frame)?);
            for (xf, t) in peers.iter().zip(&mut theirs) {
                t.push(xf.time(&pf, REPEAT)?);
            }
        }
        let (e, o) = (median(&mut empty), median(&mut ours));
        let p: Vec<f64> = theirs.iter_mut().map(|t| median(t)).collect();
        eprintln!(
            "{:<56} {o:>6.1} ns  (empty {e:.1} ns, peers {p:?})",
            case.name
        );
        rows.push(Row {
            case,
            empty: e,
            ours: o,
            peers: p,
        });
    }
    let probes = probe_share(&prefixes4, &prefixes6, prefix_hit4, prefix_hit6);
    print_markdown(&rows, &peers, &probes);
    Ok(())
}

/// Loads the maps: 1M IPv4 hosts, 65,536 IPv4 and 65,536 IPv6 prefixes of mixed lengths, one
/// rate-limited host already over its rate and one that is always admitted, one IPv6 host, the
/// default ports.
fn fill(
    ebpf: &mut Ebpf,
    prefixes4: &[([u8; 4], u32)],
    prefixes6: &[([u8; 16], u32)],
) -> Result<()> {
    let drop = PolicyEntry {
        action: ACTION_DROP,
        ..Default::default()
    };
    let mut ports: Array<_, u32> = Array::try_from(ebpf.map_mut(maps::PORTS).context("PORTS")?)?;
    for p in maps::DEFAULT_PORTS {
        ports.set(p as u32, 1, 0)?;
    }
    let started = Instant::now();
    let mut hosts: HashMap<_, [u8; 4], PolicyEntry> =
        HashMap::try_from(ebpf.map_mut(maps::POLICY_V4_HOSTS).context("hosts")?)?;
    for n in 0..HOSTS {
        hosts.insert(host(n), drop, 0)?;
    }
    // Written as the daemon writes them: with the emission interval precomputed.
    let limited = PolicyEntry {
        action: ACTION_RATE_LIMIT,
        rate_per_min: 1,
        burst: 1,
        ..Default::default()
    }
    .with_interval();
    hosts.insert(RATE4, limited, 0)?;
    // Always within its budget: every run takes the compare-and-swap write path.
    hosts.insert(
        RATE_OK4,
        PolicyEntry {
            rate_per_min: u32::MAX,
            burst: 1 << 27,
            ..limited
        }
        .with_interval(),
        0,
    )?;
    eprintln!("loaded {HOSTS} IPv4 hosts in {:.1?}", started.elapsed());
    // Presence filter bits first, as the daemon's writer does.
    let filter4 = tests::filter::of(ebpf, true);
    let filter6 = tests::filter::of(ebpf, false);
    let as_prefix = |a: std::net::IpAddr, len: u32| enforcer::net::Prefix::containing(a, len as u8);
    let p4: Vec<_> = prefixes4
        .iter()
        .map(|(p, len)| as_prefix((*p).into(), *len))
        .collect();
    let p6: Vec<_> = prefixes6
        .iter()
        .map(|(p, len)| as_prefix((*p).into(), *len))
        .collect();
    filter4.add(&p4);
    filter6.add(&p6);
    let mut map4: HashMap<_, PrefixKeyV4, PolicyEntry> =
        HashMap::try_from(ebpf.map_mut(maps::POLICY_V4_PREFIXES).context("prefixes")?)?;
    for (p, len) in prefixes4 {
        map4.insert(PrefixKeyV4::new(*len, *p), drop, 0)?;
    }
    let mut map6: HashMap<_, PrefixKeyV6, PolicyEntry> = HashMap::try_from(
        ebpf.map_mut(maps::POLICY_V6_PREFIXES)
            .context("v6 prefixes")?,
    )?;
    for (p, len) in prefixes6 {
        map6.insert(PrefixKeyV6::new(*len, *p), drop, 0)?;
    }
    let mut v6: HashMap<_, [u8; 16], PolicyEntry> =
        HashMap::try_from(ebpf.map_mut(maps::POLICY_V6_HOSTS).context("v6 hosts")?)?;
    v6.insert(HIT6, drop, 0)?;
    eprintln!("loaded {} + {} prefixes", prefixes4.len(), prefixes6.len());
    Ok(())
}

/// test_run executes on the calling CPU: staying on one CPU keeps rounds comparable.
fn pin_to_last_cpu() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: cpu_set_t is plain data; affects only this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpus - 1, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) != 0 {
            eprintln!("could not pin to CPU {}: timing on any CPU", cpus - 1);
        }
    }
}

/// Average ns per run of `repeat` runs, as the kernel measured it.
fn time(ebpf: &Ebpf, program: &str, frame: &[u8]) -> Result<f64> {
    let p: &Xdp = ebpf
        .program(program)
        .ok_or_else(|| anyhow!("program {program} missing"))?
        .try_into()?;
    let r = p.test_run(TestRunOptions {
        data_in: Some(frame),
        repeat: REPEAT,
        ..Default::default()
    })?;
    Ok(r.duration.as_nanos() as f64)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn print_markdown(rows: &[Row], peers: &[xdp_filter::XdpFilter], probes: &Probes) {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = tests::machine::cpu_model();
    // Counted from /proc/cpuinfo: this thread's affinity is pinned to one CPU by now.
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let date = command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);

    println!("## Datapath (XDP, BPF_PROG_TEST_RUN)\n");
    println!(
        "ns per packet as the kernel times it, repeat {REPEAT}, median of {ROUNDS} rounds on one pinned CPU after a warm-up run; \"above empty\" \
         subtracts an empty XDP program (`{PROG_EMPTY}`) timed in the same rounds. \
         Loaded for every case: 1,000,000 IPv4 host entries, {PREFIXES} IPv4 prefixes (/8–/31, mostly /16–/31) and \
         {PREFIXES} IPv6 prefixes (/32–/127), two rate-limited hosts. \
         The peers are xdp-filter from Debian's xdp-tools, its default build and its `-f ipv4,ipv6` build, each \
         with 10,000 IPv4 and 10,000 IPv6 source entries (its cap), loaded by `xdp-filter load` and timed through \
         BPF_PROG_TEST_RUN on the program it loaded, in the same rounds, on the nearest frame it can judge: \
         a SYN from one of its listed sources for our refusal rows (it has no prefixes or rate limits), \
         from an unlisted source for our pass rows. \"x peer\" is our cost above empty over the peer's. \
         The comparison rows run `{PROG_HASH_ONLY}`: a fixed-offset IPv4 source lookup in the same \
         hash map with nothing else, the floor of a hash-map blocklist.\n"
    );
    let mut head = String::from("| case | ns/packet | empty | above empty | target |");
    let mut rule = String::from("|---|---:|---:|---:|---|");
    for xf in peers {
        head.push_str(&format!(" {} above empty | x peer |", xf.label));
        rule.push_str("---:|---:|");
    }
    println!("{head}\n{rule}");
    for r in rows {
        let above = r.ours - r.empty;
        let target = match r.case.target_above_empty {
            Some(t) if above <= t => format!("<= {t} ns: met"),
            Some(t) => format!("<= {t} ns: **missed**"),
            None => String::new(),
        };
        let mut line = format!(
            "| {} | {:.1} | {:.1} | {above:.1} | {target} |",
            r.case.name, r.ours, r.empty
        );
        for p in &r.peers {
            let theirs = p - r.empty;
            let ratio = if theirs > 0.5 {
                format!("{:.2}", above / theirs)
            } else {
                "n/a".into()
            };
            line.push_str(&format!(" {theirs:.1} | {ratio} |"));
        }
        println!("{line}");
    }
    println!(
        "\nThe prefixes are exact hash maps keyed by (length, masked address), probed longest first for the \
         lengths the source's slot holds (IPv4 /20, IPv6 64 hashed /32s): the prefix-hit rows probe {} (IPv4) \
         and {} (IPv6) lengths. The unlisted rows are sources whose presence-filter bit is clear (their /24, \
         or hashed IPv6 /32, holds no prefix). Of {SAMPLES} random unlisted sources drawn where the prefixes \
         are (96.0.0.0/3, fd00::/8), {:.1}% (IPv4) and {:.2}% (IPv6) find their bit set and probe {:.1} and \
         {:.1} lengths on average (one hash lookup each).",
        probes.hit4, probes.hit6, probes.share4, probes.share6, probes.mean4, probes.mean6
    );
    println!("\nMachine: {cpu}, {cores} CPUs; kernel {kernel}; {date}.");
}

fn command_line(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
