//! `enforcer list` at more than one page, as root: 10,000 operator entries listed through a running
//! daemon (pages of 4,096) and without one (the pinned maps and the store) give the same rows, sorted,
//! none lost; `--prefix`, `--source` and `--limit` narrow it, and a limit says that rows were left out.
//!
//! Run: `cargo test -p tests --test list_paged -- --test-threads=1` (root).

use enforcer::datapath::{Clock, Datapath, PolicyMaps};
use enforcer::net::Prefix;
use enforcer::rule::{Rule, RuleSource, Verdict};
use enforcer::store::Store;
use std::net::{IpAddr, Ipv4Addr};
use tests::netns::Topology;
use tests::process::{cli, cli_ok, Daemon, Dirs};

const N: u32 = 10_000;

fn host(n: u32) -> IpAddr {
    let [_, _, b, c] = n.to_be_bytes();
    IpAddr::V4(Ipv4Addr::new(10, 77, b, c))
}

/// The entries as `enforcer block` leaves them with the daemon down.
fn load(dirs: &Dirs) {
    drop(Datapath::load(&dirs.pin_dir).unwrap());
    let mut maps = PolicyMaps::open_pinned(&dirs.pin_dir).unwrap();
    let store = Store::open(&dirs.state_dir).unwrap();
    let clock = Clock::now();
    let rules: Vec<Rule> = (0..N)
        .map(|n| Rule {
            prefix: Prefix::host(host(n)),
            verdict: Verdict::Drop,
            expires_at: None,
            reason: Some(format!("r{n}")),
            created_at: clock.unix_secs(),
            source: RuleSource::Operator,
            list: None,
        })
        .collect();
    store.put_rules(&rules).unwrap();
    for r in &rules {
        maps.upsert(&r.prefix, &r.to_kernel(&clock)).unwrap();
    }
}

fn list(dirs: &Dirs, extra: &[&str]) -> (serde_json::Value, String) {
    let mut args = vec!["list", "--json"];
    args.extend_from_slice(extra);
    let out = cli(dirs, &args);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "list {extra:?}: {err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("list {extra:?} is not one JSON document: {e}"));
    (v, err)
}

fn prefixes(v: &serde_json::Value) -> Vec<String> {
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["prefix"].as_str().unwrap().to_string())
        .collect()
}

fn check_narrowing(dirs: &Dirs, how: &str) {
    let (v, _) = list(dirs, &["--prefix", "10.77.1.0/24"]);
    assert_eq!(prefixes(&v).len(), 256, "{how}: --prefix");
    assert!(
        prefixes(&v).iter().all(|p| p.starts_with("10.77.1.")),
        "{how}"
    );
    let (v, err) = list(dirs, &["--limit", "5"]);
    assert_eq!(prefixes(&v).len(), 5, "{how}: --limit");
    assert_eq!(v["truncated"], true, "{how}");
    assert!(err.contains("only the first 5 entries"), "{how}: {err}");
    let (v, _) = list(dirs, &["--source", "engine"]);
    assert!(prefixes(&v).is_empty(), "{how}: no engine entries");
    let text = cli_ok(dirs, &["list", "--limit", "3", "--prefix", "10.77.0.0/24"]);
    assert_eq!(text.lines().count(), 4, "{how}: header and 3 rows\n{text}");
}

#[test]
fn listing_through_the_daemon_and_without_it_agree() {
    let topo = Topology::new("lsp");
    let dirs = Dirs::new("list-paged");
    load(&dirs);
    let (offline, _) = list(&dirs, &[]);
    assert_eq!(offline["truncated"], false);
    let rows = prefixes(&offline);
    assert_eq!(rows.len(), N as usize);
    let parsed: Vec<Prefix> = rows.iter().map(|p| p.parse().unwrap()).collect();
    assert!(parsed.windows(2).all(|w| w[0] < w[1]), "sorted, no repeats");
    assert!(offline["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["source"] == "operator" && e["in_kernel"] == true && e["reason"].is_string()));
    check_narrowing(&dirs, "without a daemon");

    let daemon = Daemon::start(&topo.server, &topo.server_if, &dirs, &[]);
    let (online, _) = list(&dirs, &[]);
    assert_eq!(
        online, offline,
        "the daemon's pages give the same rows as the maps and the store"
    );
    check_narrowing(&dirs, "through the daemon");
    assert!(daemon.stop(), "the daemon stops cleanly");
}
