//! State benchmark (root): what 1,000,000 entries cost. For 1M operator host entries and then for 1M
//! senders: the daemon's start-up time and resident memory, and one `enforcer list --json` (wall time,
//! the CLI's peak memory, the daemon's memory after it). Prints a Markdown section on stdout; progress
//! goes to stderr.
//!
//! Run with `cargo xtask bench state` (= `cargo run --release -p tests --bin bench-state`). The entries
//! are written straight into the store and the pinned maps through the library (one transaction, no
//! per-entry fsync): there is no bulk import command yet, and typing a million `enforcer block`s
//! would measure the CLI's start-up, not the state.

use std::io::{BufRead as _, BufReader};
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use enforcer::datapath::{Clock, Datapath, PolicyMaps};
use enforcer::net::Prefix;
use enforcer::policy::{Evidence, Policy, Status};
use enforcer::rule::{Rule, RuleSource, Verdict};
use enforcer::store::Store;
use tests::netns::Topology;
use tests::process::{enforcer_bin, Daemon, Dirs};

const N: u32 = 1_000_000;
const RSS_TARGET_MIB: f64 = 256.0;
const LIST_TARGET_S: f64 = 5.0;

fn main() -> ExitCode {
    tests::process::bench_main("bench-state", run)
}

/// The n-th host: 10.x.y.z.
fn host(n: u32) -> IpAddr {
    let [_, a, b, c] = n.to_be_bytes();
    IpAddr::V4(Ipv4Addr::new(10, a, b, c))
}

struct Measured {
    what: &'static str,
    start_s: f64,
    rss_mib: f64,
    list_s: f64,
    list_rows: u64,
    cli_peak_mib: f64,
    rss_after_mib: f64,
    hwm_mib: f64,
}

/// Kernel memory charged to the pinned maps (`memlock` of `bpftool map show`), in MiB.
fn kernel_maps_mib(dirs: &Dirs) -> Result<f64> {
    let mut total = 0u64;
    for name in enforcer_common::maps::ALL_MAPS {
        let path = dirs.pin_dir.join("maps").join(name);
        let out = Command::new("bpftool")
            .args(["-j", "map", "show", "pinned"])
            .arg(&path)
            .output()
            .context("running bpftool (apt-get install bpftool)")?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("bpftool output for {}", path.display()))?;
        total += v["bytes_memlock"].as_u64().unwrap_or(0);
    }
    Ok(total as f64 / (1 << 20) as f64)
}

fn run() -> Result<()> {
    let topo = Topology::new("bst");
    let mut out = Vec::new();
    let kernel = {
        let dirs = Dirs::new("bst-k");
        drop(Datapath::load(&dirs.pin_dir).context("creating the pinned maps (run as root)")?);
        let empty = kernel_maps_mib(&dirs)?;
        load_operator(&dirs)?;
        let full = kernel_maps_mib(&dirs)?;
        eprintln!("bench-state: kernel maps {empty:.1} MiB empty, {full:.1} MiB with {N} hosts");
        (empty, full)
    };
    for what in ["operator entries", "senders"] {
        let dirs = Dirs::new(if what == "senders" { "bst-s" } else { "bst-o" });
        eprintln!("bench-state: loading {N} {what}");
        let t = Instant::now();
        if what == "senders" {
            load_senders(&dirs)?;
        } else {
            load_operator(&dirs)?;
        }
        eprintln!("bench-state: loaded in {:.1} s", t.elapsed().as_secs_f64());
        out.push(measure(what, &topo, &dirs)?);
    }
    print(&out, kernel);
    Ok(())
}

/// 1M operator drop rules, each with a reason: in the store, and in the pinned maps as `enforcer
/// block` would leave them with the daemon down.
fn load_operator(dirs: &Dirs) -> Result<()> {
    drop(Datapath::load(&dirs.pin_dir).context("creating the pinned maps (run as root)")?);
    let mut maps = PolicyMaps::open_pinned(&dirs.pin_dir)?;
    let store = Store::open(&dirs.state_dir)?;
    let clock = Clock::now();
    let now = clock.unix_secs();
    let rules: Vec<Rule> = (0..N)
        .map(|n| Rule {
            prefix: Prefix::host(host(n)),
            verdict: Verdict::Drop,
            expires_at: None,
            reason: Some(format!("bench {n}")),
            created_at: now,
            source: RuleSource::Operator,
            list: None,
        })
        .collect();
    store.put_rules(&rules)?;
    for r in &rules {
        maps.upsert(&r.prefix, &r.to_kernel(&clock))?;
    }
    Ok(())
}

/// 1M sender records, each detected 100 days ago as an end-of-life Exchange (blocked); the daemon
/// writes their kernel entries when it starts.
fn load_senders(dirs: &Dirs) -> Result<()> {
    drop(Datapath::load(&dirs.pin_dir).context("creating the pinned maps (run as root)")?);
    let store = Store::open(&dirs.state_dir)?;
    let policy = Policy::default();
    // Detected 100 days ago: past the last stage of the default schedule (block at 90 days).
    let now = Clock::now().unix_secs() - 100 * 86_400;
    let ev = Evidence {
        seen_at: now,
        product: "exchange".into(),
        version: None,
        build: Some("15.0.1497.48".into()),
        label: Some("Exchange Server 2013 CU23 Mar23SU".into()),
        status: Status::EndOfLife,
        persistently_vulnerable: true,
        confidence: 1.0,
        upgrade_to: Some("15.2.2562.17".into()),
        findings: vec!["Received: Microsoft SMTP Server id 15.0.1497.48".into()],
    };
    let chunk = 100_000;
    for start in (0..N).step_by(chunk) {
        let recs: Vec<_> = (start..(start + chunk as u32).min(N))
            .map(|n| policy.observe(None, host(n), ev.clone(), now))
            .collect();
        store.put_senders(recs.iter())?;
    }
    Ok(())
}

fn status_kib(pid: u32, key: &str) -> Result<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = s
        .lines()
        .find(|l| l.starts_with(key))
        .with_context(|| format!("{key} missing in /proc/{pid}/status"))?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .unwrap_or("0")
        .parse::<f64>()?)
}

fn measure(what: &'static str, topo: &Topology, dirs: &Dirs) -> Result<Measured> {
    let t = Instant::now();
    let daemon = Daemon::start_within(
        &topo.server,
        &[topo.server_if.as_str()],
        dirs,
        &[],
        Duration::from_secs(900),
    );
    let start_s = t.elapsed().as_secs_f64();
    let pid = daemon.pid();
    // Let the allocator settle after reconciliation.
    std::thread::sleep(Duration::from_secs(2));
    let rss_mib = status_kib(pid, "VmRSS:")? / 1024.0;
    eprintln!("bench-state: {what}: started in {start_s:.1} s, RSS {rss_mib:.0} MiB");
    let t = Instant::now();
    // Peak memory through GNU time: the ru_maxrss of a child spawned from this (large) process would
    // count the pre-exec image it shares with us.
    let peak_file = dirs.state_dir.with_extension("cli-peak");
    let mut child = Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(&peak_file)
        .arg(enforcer_bin())
        .args(["list", "--json"])
        .args(dirs.args())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut rows = 0u64;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        if line?.starts_with("  {\"prefix\"") {
            rows += 1;
        }
    }
    let status = child.wait()?;
    let list_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        status.success(),
        "enforcer list --json exited with {status}"
    );
    let peak =
        std::fs::read_to_string(&peak_file).context("GNU time's output (apt-get install time)")?;
    let _ = std::fs::remove_file(&peak_file);
    let cli_peak_kib: f64 = peak.trim().lines().last().unwrap_or("0").trim().parse()?;
    anyhow::ensure!(rows == u64::from(N), "list printed {rows} rows, not {N}");
    let rss_after_mib = status_kib(pid, "VmRSS:")? / 1024.0;
    let hwm_mib = status_kib(pid, "VmHWM:")? / 1024.0;
    eprintln!("bench-state: {what}: list --json {list_s:.2} s, CLI peak {:.0} MiB, daemon RSS after {rss_after_mib:.0} MiB (peak {hwm_mib:.0})", cli_peak_kib / 1024.0);
    drop(daemon);
    Ok(Measured {
        what,
        start_s,
        rss_mib,
        list_s,
        list_rows: rows,
        cli_peak_mib: cli_peak_kib / 1024.0,
        rss_after_mib,
        hwm_mib,
    })
}

fn verdict(v: f64, target: f64) -> &'static str {
    if v <= target {
        "met"
    } else {
        "**missed**"
    }
}

/// `kernel`: MiB of the pinned maps (empty, with 1M hosts).
fn print(rows: &[Measured], kernel: (f64, f64)) {
    println!("## State at 1,000,000 entries (`cargo xtask bench state`)\n");
    println!(
        "One daemon (`enforcer run` on a veth in a private namespace) over a store and pinned maps holding 1,000,000 IPv4 host entries: first operator `block` entries (each with a reason), then senders in enforcement (end-of-life Exchange detected 100 days earlier, so blocked; the daemon writes their kernel entries at start). The entries are written through the library in one transaction, so that this measures the daemon and not the import path (`cargo xtask bench load` measures `enforcer import`). RSS is the daemon's `VmRSS` two seconds after it reported enforcing; `list --json` is the whole command, its output read and counted by the harness; the CLI peak is its maximum resident set as GNU `time` reports it.\n"
    );
    println!("| 1,000,000 … | daemon start | daemon RSS | target | `list --json` | target | CLI peak RSS | daemon RSS after list (peak) |");
    println!("|---|---:|---:|---|---:|---|---:|---:|");
    for m in rows {
        println!(
            "| {} | {:.1} s | {:.0} MiB | ≤ {RSS_TARGET_MIB:.0} MiB: {} | {:.2} s ({} rows) | < {LIST_TARGET_S:.0} s: {} | {:.0} MiB | {:.0} MiB ({:.0} MiB) |",
            m.what,
            m.start_s,
            m.rss_mib,
            verdict(m.rss_mib, RSS_TARGET_MIB),
            m.list_s,
            m.list_rows,
            verdict(m.list_s, LIST_TARGET_S),
            m.cli_peak_mib,
            m.rss_after_mib,
            m.hwm_mib,
        );
    }
    let (empty, full) = kernel;
    println!(
        "\nKernel memory of the pinned maps with the default `[capacity]` (`bytes_memlock` of `bpftool map show`, all maps): {empty:.1} MiB right after they are created, {full:.1} MiB holding 1,000,000 IPv4 host entries."
    );
    let kernel = std::process::Command::new("uname").arg("-r").output().ok();
    println!(
        "\nMachine: {} CPUs; kernel {}; {}.",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        kernel
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default(),
        today()
    );
}

/// `date -u +%F`: the day of the run.
fn today() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%F"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
