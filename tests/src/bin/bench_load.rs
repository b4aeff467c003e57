//! Bulk-load benchmark (root): 1,000,000 entries (IPv4 and IPv6 hosts and prefixes of mixed lengths,
//! interleaved as a merged feed would be) loaded end to end by `enforcer import` into a running
//! daemon, next to `ipset restore` and `nft -f` of the same list, in the same rounds. Also the list
//! refreshed (10% of it changed: `import --list` again / `ipset swap` / `nft flush set` + add in one
//! transaction) and removed (`unset --from FILE` / `del` / `delete element`), and `unset --list`.
//! Prints a Markdown section on stdout; progress goes to stderr.
//!
//! Every tool runs in a namespace of its own (the daemon on a veth in one, ipset and nftables each in
//! another), so nothing touches the host's tables; the namespaces, the daemon's pin and state
//! directories and the list files are removed on drop.
//!
//! Run with `cargo xtask bench load` (= `cargo run --release -p tests --bin bench-load`).

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use tests::netns::{unique, Netns, Topology};
use tests::process::{enforcer_bin, Daemon, Dirs};

const N: usize = 1_000_000;
/// Per 100 lines: 60 IPv4 hosts, 30 IPv6 hosts, 6 IPv4 prefixes, 4 IPv6 prefixes (the prefixes
/// stay inside the default `[capacity]` of 65,536 per family).
const MIX: [(Kind, usize); 4] = [
    (Kind::V4Host, 60),
    (Kind::V6Host, 30),
    (Kind::V4Prefix, 6),
    (Kind::V6Prefix, 4),
];
/// The refreshed list drops this many IPv4 hosts of the first and adds as many new ones.
const CHANGED: usize = N / 10;
/// Rounds of a full run; `BENCH_LOAD_ROUNDS` (`cargo xtask bench load --rounds N`) changes it.
const ROUNDS: usize = 3;
const TARGET_S: f64 = 5.0;
/// Mixed prefix lengths, cycled.
const V4_LENS: [u8; 20] = [
    16, 18, 20, 21, 22, 23, 24, 24, 24, 24, 24, 24, 24, 25, 26, 27, 28, 29, 30, 31,
];
const V6_LENS: [u8; 10] = [32, 36, 40, 44, 48, 48, 52, 56, 60, 64];
const LIST: &str = "bench";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    V4Host,
    V6Host,
    V4Prefix,
    V6Prefix,
}

fn main() -> ExitCode {
    tests::process::bench_main("bench-load", run)
}

/// One entry of the list, as `(is_v6, text)`.
type Entry = (bool, String);

/// The benchmark list: `N` distinct, non-overlapping entries (nftables interval sets refuse
/// overlaps), interleaved by [`MIX`]. `new_hosts` numbers the IPv4 hosts from a second range, so two
/// lists can share everything but those.
struct Lists {
    base: Vec<Entry>,
    refreshed: Vec<Entry>,
}

fn lists() -> Lists {
    let mut v4h = (0u32..).map(|k| Ipv4Addr::from(u32::from(Ipv4Addr::new(60, 0, 0, 0)) + k));
    let mut fresh = (0u32..).map(|k| Ipv4Addr::from(u32::from(Ipv4Addr::new(61, 0, 0, 0)) + k));
    let v6_base = u128::from("2001:db8:1::".parse::<Ipv6Addr>().expect("literal"));
    let mut v6h = (0u128..).map(|k| Ipv6Addr::from(v6_base + k));
    // Prefixes: each aligned to its own length after the previous one, so none overlaps another.
    let mut at4 = u64::from(u32::from(Ipv4Addr::new(20, 0, 0, 0)));
    let mut v4p = (0usize..).map(move |i| {
        let len = V4_LENS[i % V4_LENS.len()];
        let size = 1u64 << (32 - len);
        at4 = at4.div_ceil(size) * size;
        let p = format!("{}/{len}", Ipv4Addr::from(at4 as u32));
        at4 += size;
        p
    });
    let mut at6 = u128::from("2a00::".parse::<Ipv6Addr>().expect("literal"));
    let mut v6p = (0usize..).map(move |i| {
        let len = V6_LENS[i % V6_LENS.len()];
        let size = 1u128 << (128 - len);
        at6 = at6.div_ceil(size) * size;
        let p = format!("{}/{len}", Ipv6Addr::from(at6));
        at6 += size;
        p
    });
    let mut base = Vec::with_capacity(N);
    'fill: loop {
        for (kind, n) in MIX {
            for _ in 0..n {
                if base.len() == N {
                    break 'fill;
                }
                base.push(match kind {
                    Kind::V4Host => (false, v4h.next().expect("endless").to_string()),
                    Kind::V6Host => (true, v6h.next().expect("endless").to_string()),
                    Kind::V4Prefix => (false, v4p.next().expect("endless")),
                    Kind::V6Prefix => (true, v6p.next().expect("endless")),
                });
            }
        }
    }
    // The refresh: the first CHANGED IPv4 hosts leave, as many new ones come.
    let mut dropped = 0;
    let mut refreshed: Vec<Entry> = base
        .iter()
        .filter(|(v6, e)| {
            let leave = !v6 && !e.contains('/') && dropped < CHANGED;
            dropped += usize::from(leave);
            !leave
        })
        .cloned()
        .collect();
    refreshed.extend((0..CHANGED).map(|_| (false, fresh.next().expect("endless").to_string())));
    Lists { base, refreshed }
}

/// The files every tool reads, in a private temp directory removed on drop.
struct Files {
    dir: PathBuf,
}

impl Files {
    fn new() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("enforcer-bench-load-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    fn write(&self, name: &str, text: &str) -> Result<PathBuf> {
        let p = self.dir.join(name);
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
        Ok(p)
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A plain list, Spamhaus-style comment header included.
fn plain(entries: &[Entry]) -> String {
    let mut s = String::with_capacity(entries.len() * 24);
    s.push_str("; enforcer bulk-load benchmark list\n");
    for (_, e) in entries {
        s.push_str(e);
        s.push('\n');
    }
    s
}

fn family(entries: &[Entry], v6: bool) -> impl Iterator<Item = &str> {
    entries
        .iter()
        .filter(move |(f, _)| *f == v6)
        .map(|(_, e)| e.as_str())
}

/// `ipset restore` scripts: create + add; the refresh as a new set swapped in and the old one
/// destroyed (how a feed is replaced atomically with ipset); the removal as `del` lines.
fn ipset_scripts(l: &Lists) -> (String, String, String) {
    let create = |name: &str, fam: &str, max: usize| {
        format!(
            "create {name} hash:net family {fam} hashsize {} maxelem {}\n",
            max.next_power_of_two(),
            max.next_power_of_two() * 2
        )
    };
    let (n4, n6) = (
        family(&l.base, false).count(),
        family(&l.base, true).count(),
    );
    let mut load = create("b4", "inet", n4) + &create("b6", "inet6", n6);
    let mut refresh = create("b4new", "inet", n4) + &create("b6new", "inet6", n6);
    let mut unset = String::new();
    for (set, v6) in [("b4", false), ("b6", true)] {
        for e in family(&l.base, v6) {
            let _ = writeln!(load, "add {set} {e}");
        }
        for e in family(&l.refreshed, v6) {
            let _ = writeln!(refresh, "add {set}new {e}");
            let _ = writeln!(unset, "del {set} {e}");
        }
        let _ = writeln!(refresh, "swap {set}new {set}\ndestroy {set}new");
    }
    (load, refresh, unset)
}

/// `nft -f` scripts: a table with one interval set per family and the rules that use them, the
/// elements in the set definitions; the refresh as flush + add in one transaction; the removal as
/// `delete element`.
fn nft_scripts(l: &Lists) -> (String, String, String) {
    let elements = |entries: &[Entry], v6: bool| {
        let mut s = String::with_capacity(entries.len() * 24);
        for e in family(entries, v6) {
            s.push_str(e);
            s.push_str(",\n");
        }
        s
    };
    let load = format!(
        "table inet bench {{\n\
         set b4 {{ type ipv4_addr; flags interval; elements = {{\n{}}} }}\n\
         set b6 {{ type ipv6_addr; flags interval; elements = {{\n{}}} }}\n\
         chain pre {{ type filter hook prerouting priority -300; policy accept;\n\
         ip saddr @b4 tcp flags syn drop\nip6 saddr @b6 tcp flags syn drop\n}}\n}}\n",
        elements(&l.base, false),
        elements(&l.base, true)
    );
    let refresh = format!(
        "flush set inet bench b4\nflush set inet bench b6\n\
         add element inet bench b4 {{\n{}}}\nadd element inet bench b6 {{\n{}}}\n",
        elements(&l.refreshed, false),
        elements(&l.refreshed, true)
    );
    let unset = format!(
        "delete element inet bench b4 {{\n{}}}\ndelete element inet bench b6 {{\n{}}}\n",
        elements(&l.refreshed, false),
        elements(&l.refreshed, true)
    );
    (load, refresh, unset)
}

/// A step slower than this is stopped and reported as slower than it: nft's `delete element` of
/// 1,000,000 interval-set elements ran for over 16 minutes on the loaded VM.
const STEP_LIMIT: Duration = Duration::from_secs(300);

/// Wall time of `cmd` run to completion (infinite when it was stopped at [`STEP_LIMIT`]); fails with
/// its output unless it succeeds. Returns stdout.
fn timed(what: &str, cmd: &mut Command) -> Result<(f64, String)> {
    let t = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {what}"))?;
    // Every tool here prints a line or two: the pipes never fill while we wait.
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if t.elapsed() > STEP_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let s = t.elapsed().as_secs_f64();
    let mut stdout = String::new();
    let mut stderr = String::new();
    use std::io::Read as _;
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut stdout);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    match status {
        None => {
            eprintln!(
                "bench-load: {what} stopped after {} s",
                STEP_LIMIT.as_secs()
            );
            Ok((f64::INFINITY, stdout))
        }
        Some(st) if !st.success() => bail!("{what} failed ({st}): {stdout}{stderr}"),
        Some(_) => Ok((s, stdout)),
    }
}

/// Seconds as a table cell.
fn secs(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2} s")
    } else {
        format!("> {} s (stopped)", STEP_LIMIT.as_secs())
    }
}

fn in_ns(ns: &Netns, tool: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &ns.name, tool]).args(args);
    c
}

/// Seconds for: load, refresh, remove (`unset --from`), and for enforcer `unset --list`.
#[derive(Default)]
struct Times {
    load: Vec<f64>,
    refresh: Vec<f64>,
    remove: Vec<f64>,
    remove_list: Vec<f64>,
}

const TOOLS: [&str; 3] = ["enforcer", "ipset", "nft"];

/// The rounds to run: [`ROUNDS`] unless `BENCH_LOAD_ROUNDS` says otherwise.
fn rounds() -> Result<usize> {
    match std::env::var("BENCH_LOAD_ROUNDS") {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .with_context(|| format!("BENCH_LOAD_ROUNDS={v}: give a number of rounds ≥ 1")),
        Err(_) => Ok(ROUNDS),
    }
}

/// Whether `tool` is timed: every tool unless `BENCH_LOAD_ONLY` (comma-separated, `cargo xtask
/// bench load --only enforcer`) names a subset.
fn timed_tool(tool: &str) -> bool {
    std::env::var("BENCH_LOAD_ONLY")
        .map(|only| only.split(',').any(|t| t.trim() == tool))
        .unwrap_or(true)
}

fn run() -> Result<()> {
    let load_at_start = tests::machine::load_average();
    let t = Instant::now();
    let l = lists();
    let files = Files::new()?;
    let plain_base = files.write("list.txt", &plain(&l.base))?;
    let plain_refreshed = files.write("refreshed.txt", &plain(&l.refreshed))?;
    let (a, b, c) = ipset_scripts(&l);
    let ipset = [
        files.write("ipset-load", &a)?,
        files.write("ipset-refresh", &b)?,
        files.write("ipset-unset", &c)?,
    ];
    let (a, b, c) = nft_scripts(&l);
    let nft = [
        files.write("nft-load", &a)?,
        files.write("nft-refresh", &b)?,
        files.write("nft-unset", &c)?,
    ];
    let count = |v6: bool, prefix: bool| {
        l.base
            .iter()
            .filter(|(f, e)| *f == v6 && e.contains('/') == prefix)
            .count()
    };
    let shape = [
        count(false, false),
        count(true, false),
        count(false, true),
        count(true, true),
    ];
    eprintln!(
        "bench-load: lists written in {:.1} s ({} MB): {shape:?} v4 hosts, v6 hosts, v4 prefixes, v6 prefixes",
        t.elapsed().as_secs_f64(),
        std::fs::metadata(&plain_base)?.len() / 1_000_000
    );
    let mut times: [Times; 3] = Default::default();
    let mut breakdown = Vec::new();
    let rounds = rounds()?;
    for round in 0..rounds {
        // Interleaved: each round starts with another tool.
        for k in 0..TOOLS.len() {
            let tool = (round + k) % TOOLS.len();
            if !timed_tool(TOOLS[tool]) {
                continue;
            }
            let tm = &mut times[tool];
            match TOOLS[tool] {
                "enforcer" => {
                    let b = enforcer_round(&plain_base, &plain_refreshed, &l, tm)?;
                    breakdown.push(b);
                }
                "ipset" => {
                    let ns = Netns::new(unique("blis"));
                    let guard = IpsetGuard(&ns);
                    for (i, file) in ipset.iter().enumerate() {
                        let file = file.display().to_string();
                        let (s, _) = timed(
                            "ipset restore",
                            &mut in_ns(&ns, "ipset", &["restore", "-f", &file]),
                        )?;
                        [&mut tm.load, &mut tm.refresh, &mut tm.remove][i].push(s);
                        if s.is_infinite() {
                            break;
                        }
                    }
                    if tm.remove.last().is_some_and(|s| s.is_finite()) {
                        check_ipset(&ns)?;
                    }
                    drop(guard);
                }
                _ => {
                    let ns = Netns::new(unique("blnf"));
                    let guard = NftGuard(&ns);
                    for (i, file) in nft.iter().enumerate() {
                        let file = file.display().to_string();
                        let (s, _) = timed("nft -f", &mut in_ns(&ns, "nft", &["-f", &file]))?;
                        [&mut tm.load, &mut tm.refresh, &mut tm.remove][i].push(s);
                        if s.is_infinite() {
                            break;
                        }
                    }
                    drop(guard);
                }
            }
            eprintln!(
                "bench-load: round {} {}: load {:.2} s, refresh {:.2} s, remove {:.2} s",
                round + 1,
                TOOLS[tool],
                tm.load.last().unwrap_or(&0.0),
                tm.refresh.last().unwrap_or(&0.0),
                tm.remove.last().unwrap_or(&0.0)
            );
        }
    }
    print(&times, rounds, shape, &breakdown, &load_at_start);
    Ok(())
}

/// Removes the benchmark's sets even if the namespace were to outlive the run.
struct IpsetGuard<'a>(&'a Netns);

impl Drop for IpsetGuard<'_> {
    fn drop(&mut self) {
        for set in ["b4", "b6", "b4new", "b6new"] {
            let _ = in_ns(self.0, "ipset", &["destroy", set]).output();
        }
    }
}

struct NftGuard<'a>(&'a Netns);

impl Drop for NftGuard<'_> {
    fn drop(&mut self) {
        let _ = in_ns(self.0, "nft", &["delete", "table", "inet", "bench"]).output();
    }
}

/// After the removal both sets are empty: every `del` found its entry, so the refresh had put
/// exactly the refreshed list in them.
fn check_ipset(ns: &Netns) -> Result<()> {
    for set in ["b4", "b6"] {
        let out = in_ns(ns, "ipset", &["list", "-t", set]).output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let n = text
            .lines()
            .find_map(|line| line.strip_prefix("Number of entries:"))
            .map(str::trim)
            .unwrap_or("?");
        if n != "0" {
            bail!("ipset {set} holds {n} entries after the removal, not 0");
        }
    }
    Ok(())
}

/// Parse time of the list in this process (the CLI parses it once): how much of `import` is reading
/// text.
struct Breakdown {
    parse_s: f64,
    daemon_log: Vec<String>,
}

fn enforcer_round(base: &Path, refreshed: &Path, l: &Lists, tm: &mut Times) -> Result<Breakdown> {
    let topo = Topology::new("bld");
    let dirs = Dirs::new("bld");
    let daemon = Daemon::start_within(
        &topo.server,
        &[topo.server_if.as_str()],
        &dirs,
        &[],
        Duration::from_secs(120),
    );
    let run = |args: &[&str]| -> Result<(f64, String)> {
        let mut c = Command::new(enforcer_bin());
        c.args(args).args(dirs.args());
        timed(&format!("enforcer {}", args.join(" ")), &mut c)
    };
    let base_s = base.display().to_string();
    let refreshed_s = refreshed.display().to_string();
    let (s, out) = run(&["import", &base_s, "--list", LIST])?;
    ensure_contains(&out, &format!("imported {N} entries"))?;
    tm.load.push(s);
    check_kernel(&dirs, N)?;
    let (s, out) = run(&["import", &refreshed_s, "--list", LIST])?;
    ensure_contains(&out, &format!("{CHANGED} entries no longer in it removed"))?;
    tm.refresh.push(s);
    check_kernel(&dirs, N)?;
    let (s, out) = run(&["unset", "--from", &refreshed_s])?;
    ensure_contains(&out, &format!("removed {N} entries"))?;
    tm.remove.push(s);
    check_kernel(&dirs, 0)?;
    // `unset --list` of the whole list, loaded again first.
    run(&["import", &base_s, "--list", LIST])?;
    let (s, out) = run(&["unset", "--list", LIST])?;
    ensure_contains(&out, &format!("removed list {LIST}: {N} entries"))?;
    tm.remove_list.push(s);
    check_kernel(&dirs, 0)?;
    let t = Instant::now();
    let parsed = enforcer::feed::parse(&std::fs::read(base)?);
    let parse_s = t.elapsed().as_secs_f64();
    if parsed.prefixes.len() != l.base.len() {
        bail!("the list parsed to {} prefixes", parsed.prefixes.len());
    }
    let daemon_log = daemon
        .log_text()
        .lines()
        .filter(|line| line.contains("import") || line.contains("removed"))
        .map(str::to_string)
        .collect();
    drop(daemon);
    Ok(Breakdown {
        parse_s,
        daemon_log,
    })
}

fn ensure_contains(out: &str, want: &str) -> Result<()> {
    if !out.contains(want) {
        bail!("expected `{want}` in the output, got: {out}");
    }
    Ok(())
}

/// The kernel's policy maps hold `n` entries (counted by walking their keys).
fn check_kernel(dirs: &Dirs, n: usize) -> Result<()> {
    let levels = enforcer::datapath::maps::fill_levels(&dirs.pin_dir)?;
    let total: u64 = levels
        .iter()
        .filter(|(name, _, _)| *name != enforcer_common::maps::RATE_STATE)
        .map(|(_, c, _)| c)
        .sum();
    if total != n as u64 {
        bail!("the kernel maps hold {total} entries, expected {n}: {levels:?}");
    }
    Ok(())
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn spread(v: &[f64]) -> String {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{min:.2}–{max:.2}")
}

/// Which times of a tool a table row shows.
type Step = fn(&Times) -> &Vec<f64>;

fn print(
    times: &[Times; 3],
    rounds: usize,
    shape: [usize; 4],
    breakdown: &[Breakdown],
    load_at_start: &str,
) {
    let [v4h, v6h, v4p, v6p] = shape;
    println!("## Bulk loading (`cargo xtask bench load`)\n");
    println!(
        "Wall time of the whole command, median of {rounds} interleaved rounds (each round starts with another tool; min–max in brackets). \
         The list: {N} entries, {v4h} IPv4 hosts, {v6h} IPv6 hosts, {v4p} IPv4 prefixes (/16–/31) and {v6p} IPv6 prefixes (/32–/64), \
         interleaved, one per line. \
         enforcer: `enforcer import FILE --list {LIST}` into a running daemon (`enforcer run` on a veth in a private namespace, its own \
         pin and state directories, default `[capacity]`): the CLI reads and checks the file and sends the daemon the prefixes packed, the daemon stores them in one redb \
         transaction and writes the kernel maps with BPF_MAP_UPDATE_BATCH (the entries new to the kernel while the store commits, \
         removed again if the commit fails); the command returns when both are done. \
         ipset: `ipset restore` creating one `hash:net` set per family and adding every entry. nftables: `nft -f` of a table with one \
         `interval` set per family holding every entry, and the rules that use them. \
         Refresh: the list again with {CHANGED} IPv4 hosts replaced by others (enforcer: the same `import --list`, which \
         replaces the list in one step; ipset: new sets filled and `swap`ped in, old ones destroyed; nftables: `flush set` + \
         `add element` in one transaction). Remove: every entry of the refreshed list (enforcer: `unset --from FILE`; \
         ipset: `del` lines through `ipset restore`; nftables: `delete element`). After each enforcer step the kernel maps \
         are counted; ipset's sets are checked empty after the removal.\n"
    );
    println!(
        "| step | enforcer | ipset restore | nft -f | enforcer ÷ ipset | enforcer ÷ nft | target |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|");
    let steps: [(&str, Step); 3] = [
        ("load 1,000,000", |t| &t.load),
        ("refresh (10% changed)", |t| &t.refresh),
        ("remove 1,000,000", |t| &t.remove),
    ];
    for (name, get) in steps {
        let [e, i, n] = [get(&times[0]), get(&times[1]), get(&times[2])];
        let (me, mi, mn) = (median(e), median(i), median(n));
        let target = if name.starts_with("load") {
            if me <= TARGET_S {
                format!("≤ {TARGET_S:.0} s: met")
            } else {
                format!("≤ {TARGET_S:.0} s: **missed**")
            }
        } else {
            String::new()
        };
        let ratio = |a: f64, b: f64| {
            if a.is_finite() && b.is_finite() {
                format!("{:.2}", a / b)
            } else {
                "n/a".to_string()
            }
        };
        // A tool left out (`--only`) has no times.
        let cell = |v: &[f64], m: f64| {
            if v.is_empty() {
                "not run".to_string()
            } else {
                format!("{} ({})", secs(m), spread(v))
            }
        };
        println!(
            "| {name} | {} | {} | {} | {} | {} | {target} |",
            cell(e, me),
            cell(i, mi),
            cell(n, mn),
            ratio(me, mi),
            ratio(me, mn)
        );
    }
    let rl = &times[0].remove_list;
    println!(
        "| `unset --list {LIST}` (1,000,000) | {:.2} s ({}) | | | | | |",
        median(rl),
        spread(rl)
    );
    let parse: Vec<f64> = breakdown.iter().map(|b| b.parse_s).collect();
    println!(
        "\nParsing the 1,000,000-line file (`feed::parse`, done once, by the CLI, which hands the daemon the checked prefixes in a packed binary form) takes {:.2} s of that (median).",
        median(&parse)
    );
    if let Some(b) = breakdown.first() {
        if !b.daemon_log.is_empty() {
            println!("\nThe daemon's log of the first round:\n\n```");
            for line in &b.daemon_log {
                println!("{line}");
            }
            println!("```");
        }
    }
    let cpu = tests::machine::cpu_model();
    println!(
        "\nMachine: {cpu}, {} CPUs; kernel {}; {}; {}; {}; 1-minute load average {} at the start, {} at the end (the benchmark's own work included).",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
        tests::machine::tool_version("ipset", "version"),
        tests::machine::tool_version("nft", "--version"),
        tests::machine::tool_version("date", "-u"),
        load_at_start,
        tests::machine::load_average(),
    );
}
