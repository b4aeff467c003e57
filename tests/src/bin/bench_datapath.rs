//! Datapath benchmark (root): ns per packet through BPF_PROG_TEST_RUN for the cases an operator cares
//! about, each next to an empty XDP program timed in the same round, so the harness cost (~26 ns here)
//! can be subtracted. Prints a Markdown section on stdout; progress goes to stderr.
//!
//! Run with `cargo xtask bench datapath` (= `cargo run --release -p tests --bin bench-datapath`).
//! `BENCH_OBJECT=path/to/object` times another build of the eBPF object instead of the embedded one
//! (e.g. to compare codegen options).

use std::{process::ExitCode, time::Instant};

use anyhow::{anyhow, Context as _, Result};
use aya::{
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie},
    programs::{TestRun, TestRunOptions, Xdp},
    Ebpf, EbpfLoader,
};
use enforcer_common::{
    maps,
    policy::{ACTION_DROP, ACTION_RATE_LIMIT},
    PolicyEntry,
};
use tests::frames::{self, Tcp, ACK};

/// The empty program and the plain hash-lookup program shipped in the object for this comparison;
/// userspace never loads them.
const PROG_EMPTY: &str = "enforcer_xdp_empty";
const PROG_HASH_ONLY: &str = "enforcer_xdp_hash_only";

const REPEAT: u32 = 1_000_000;
const ROUNDS: usize = 5;
const HOSTS: u32 = 1_000_000;
const PREFIXES: u32 = 10_000;

const SERVER4: [u8; 4] = [192, 0, 2, 1];
const SERVER6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
/// Not in any map.
const MISS4: [u8; 4] = [198, 51, 100, 7];
/// Inside one of the loaded /24 prefixes, not a host entry.
const PREFIX_HIT4: [u8; 4] = [100, 64, 3, 77];
const RATE4: [u8; 4] = [203, 0, 113, 9];
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
    fill(&mut ebpf)?;
    pin_to_last_cpu();

    let syn = Tcp::syn(40000, 25).with_typical_options();
    let hit4 = host(HOSTS / 2);
    let cases = [
        Case {
            name: "non-SYN pass (ACK to port 25)",
            program: maps::PROG_XDP,
            frame: frames::tcp_v4(&[], hit4, SERVER4, &syn.clone().flags(ACK)),
            target_above_empty: Some(10.0),
        },
        Case {
            name: "SYN to an unprotected port",
            program: maps::PROG_XDP,
            frame: frames::tcp_v4(&[], hit4, SERVER4, &Tcp::syn(40000, 443)),
            target_above_empty: None,
        },
        Case {
            name: "SYN miss, 1M hosts loaded",
            program: maps::PROG_XDP,
            frame: frames::tcp_v4(&[], MISS4, SERVER4, &syn),
            target_above_empty: None,
        },
        Case {
            name: "SYN hit drop, host entry (1M loaded)",
            program: maps::PROG_XDP,
            frame: frames::tcp_v4(&[], hit4, SERVER4, &syn),
            target_above_empty: Some(30.0),
        },
        Case {
            name: "SYN hit drop, prefix entry (10k /24s)",
            program: maps::PROG_XDP,
            frame: frames::tcp_v4(&[], PREFIX_HIT4, SERVER4, &syn),
            target_above_empty: None,
        },
        Case {
            name: "SYN rate-limited (refused)",
            program: maps::PROG_XDP,
            frame: frames::tcp_v4(&[], RATE4, SERVER4, &syn),
            target_above_empty: None,
        },
        Case {
            name: "IPv6 SYN hit drop, host entry",
            program: maps::PROG_XDP,
            frame: frames::tcp_v6(&[], HIT6, SERVER6, &[], &syn),
            target_above_empty: None,
        },
        Case {
            name: "comparison: bare hash lookup, hit",
            program: PROG_HASH_ONLY,
            frame: frames::tcp_v4(&[], hit4, SERVER4, &syn),
            target_above_empty: None,
        },
        Case {
            name: "comparison: bare hash lookup, miss",
            program: PROG_HASH_ONLY,
            frame: frames::tcp_v4(&[], MISS4, SERVER4, &syn),
            target_above_empty: None,
        },
    ];

    let mut rows = Vec::new();
    for case in &cases {
        // Interleave the empty program with the case inside each round, so both see the same
        // machine state; take the median of each.
        let mut empty = Vec::new();
        let mut ours = Vec::new();
        // Warm caches and the map's hot entries before timing.
        time(&ebpf, case.program, &case.frame)?;
        for _ in 0..ROUNDS {
            empty.push(time(&ebpf, PROG_EMPTY, &case.frame)?);
            ours.push(time(&ebpf, case.program, &case.frame)?);
        }
        let (e, o) = (median(&mut empty), median(&mut ours));
        eprintln!("{:<40} {o:>6.1} ns  (empty {e:.1} ns)", case.name);
        rows.push((case, e, o));
    }
    print_markdown(&rows);
    Ok(())
}

/// Loads the maps: 1M IPv4 hosts, 10k /24 prefixes, one rate-limited host already over its rate, one
/// IPv6 host, default ports.
fn fill(ebpf: &mut Ebpf) -> Result<()> {
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
    hosts.insert(
        RATE4,
        PolicyEntry {
            action: ACTION_RATE_LIMIT,
            rate_per_min: 1,
            burst: 1,
            ..Default::default()
        },
        0,
    )?;
    eprintln!("loaded {HOSTS} IPv4 hosts in {:.1?}", started.elapsed());
    let mut prefixes: LpmTrie<_, [u8; 4], PolicyEntry> =
        LpmTrie::try_from(ebpf.map_mut(maps::POLICY_V4_PREFIXES).context("prefixes")?)?;
    for n in 0..PREFIXES {
        let [_, _, a, b] = n.to_be_bytes();
        prefixes.insert(&Key::new(24, [100, 64 + a, b, 0]), drop, 0)?;
    }
    let mut v6: HashMap<_, [u8; 16], PolicyEntry> =
        HashMap::try_from(ebpf.map_mut(maps::POLICY_V6_HOSTS).context("v6 hosts")?)?;
    v6.insert(HIT6, drop, 0)?;
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

fn print_markdown(rows: &[(&Case, f64, f64)]) {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or_else(|| "unknown CPU".into(), |m| m.trim().to_string());
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
         1,000,000 IPv4 host entries and {PREFIXES} /24 prefixes are loaded for every case. \
         The comparison rows run `{PROG_HASH_ONLY}`: a fixed-offset IPv4 source lookup in the same \
         hash map with nothing else (no VLANs, IHL, ports, counters), i.e. the floor of a hash-map \
         blocklist. nftables/iptables sets cannot be timed through PROG_TEST_RUN and are not compared.\n"
    );
    println!("| case | ns/packet | empty program | above empty | target above empty |");
    println!("|---|---:|---:|---:|---|");
    for (case, empty, ours) in rows {
        let above = ours - empty;
        let target = match case.target_above_empty {
            Some(t) if above <= t => format!("<= {t} ns: met"),
            Some(t) => format!("<= {t} ns: **missed**"),
            None => String::new(),
        };
        println!(
            "| {} | {ours:.1} | {empty:.1} | {above:.1} | {target} |",
            case.name
        );
    }
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
