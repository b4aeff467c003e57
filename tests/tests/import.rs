//! `enforcer import`, `block --from`, `unset --from|--list` through the real binary: through the
//! running daemon and with the daemon stopped, line-numbered errors that apply nothing,
//! `--skip-invalid`, atomic replacement of a named list, and afterwards the kernel maps equal to the
//! store (read directly, not through the CLI). Real connects check the batched map writes are the
//! keys the datapath looks up. Run as root:
//! `cargo test -p tests --test import -- --test-threads=1`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use enforcer::datapath::PolicyMaps;
use enforcer::net::Prefix;
use enforcer::store::Store;
use tests::netns::{connect, Connect, Server, Topology, CLIENT_V4, CLIENT_V6, SERVER_V4};
use tests::process::{cli, cli_ok, enforcer_bin, Daemon, Dirs};

const WAIT: Duration = Duration::from_millis(1500);

/// Field order is drop order: daemon, then detach and dirs, then the namespaces.
struct Setup {
    daemon: Option<Daemon>,
    dirs: Dirs,
    _server: Server,
    t: Topology,
}

impl Setup {
    fn new(tag: &str) -> Self {
        let t = Topology::new(tag);
        let server = Server::start(&t.server, &[25]);
        let dirs = Dirs::new(tag);
        let daemon = Daemon::start(&t.server, &t.server_if, &dirs, &[]);
        Self {
            daemon: Some(daemon),
            dirs,
            _server: server,
            t,
        }
    }

    fn file(&self, name: &str, text: &str) -> String {
        std::fs::create_dir_all(&self.dirs.state_dir).unwrap();
        let p: PathBuf = self.dirs.state_dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    fn ok(&self, args: &[&str]) -> String {
        cli_ok(&self.dirs, args)
    }

    /// Exit status 2 with nothing applied; returns stderr.
    fn refused(&self, args: &[&str]) -> String {
        let out = cli(&self.dirs, args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        err
    }

    /// prefix -> (action, list) from `list --json`.
    fn listed(&self, extra: &[&str]) -> BTreeMap<String, (String, Option<String>)> {
        let mut args = vec!["list", "--json"];
        args.extend_from_slice(extra);
        let v: serde_json::Value = serde_json::from_str(&self.ok(&args)).unwrap();
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                assert_eq!(e["in_kernel"], true, "{e}");
                (
                    e["prefix"].as_str().unwrap().to_string(),
                    (
                        e["action"].as_str().unwrap().to_string(),
                        e["list"].as_str().map(str::to_string),
                    ),
                )
            })
            .collect()
    }

    fn connects(&self, src: Option<&str>) -> Connect {
        let dst = format!("{SERVER_V4}:25").parse().unwrap();
        connect(&self.t.client, src.map(|s| s.parse().unwrap()), dst, WAIT)
    }

    /// With no daemon holding the store: the kernel maps and the store hold the same prefixes.
    fn assert_kernel_matches_store(&self) -> Vec<Prefix> {
        let maps = PolicyMaps::open_pinned(&self.dirs.pin_dir).unwrap();
        let kernel: Vec<Prefix> = maps
            .entries()
            .unwrap()
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        let store = Store::open(&self.dirs.state_dir).unwrap();
        let stored: Vec<Prefix> = store
            .rules()
            .unwrap()
            .into_iter()
            .map(|r| r.prefix)
            .collect();
        assert_eq!(kernel, stored, "kernel maps and store disagree");
        // The presence filters and length masks hold exactly the bits of the prefixes left
        // (recomputed after the removals, by the daemon or by the CLI).
        let shorter: Vec<&Prefix> = kernel.iter().filter(|p| !p.is_host()).collect();
        for v4 in [true, false] {
            let want = enforcer::datapath::filter::words_for(shorter.iter().copied(), v4);
            assert!(
                maps.filter(v4).snapshot() == want,
                "the {} presence filter is not exactly the prefixes' bits",
                if v4 { "IPv4" } else { "IPv6" }
            );
            let want = enforcer::datapath::filter::lengths_for(shorter.iter().copied(), v4);
            assert!(
                maps.filter(v4).lengths_snapshot() == want,
                "the {} length masks are not exactly the prefixes' lengths",
                if v4 { "IPv4" } else { "IPv6" }
            );
        }
        kernel
    }
}

fn keys(m: &BTreeMap<String, (String, Option<String>)>) -> Vec<&str> {
    m.keys().map(String::as_str).collect()
}

#[test]
fn import_through_the_daemon_and_without_it() {
    let s = Setup::new("imp");
    assert_eq!(s.connects(None), Connect::Connected);

    // Spamhaus DROP format, both families, hosts and prefixes; the client is inside 10.200.1.0/24.
    let drop1 = s.file(
        "drop1.txt",
        "; Spamhaus DROP List\n; Last-Modified: today\n10.200.1.0/24 ; SBL1\n192.0.2.0/24 ; SBL2\n\
         198.51.100.7 ; SBL3\n2001:db8::/32 ; SBL4\n2001:db8:1::7\n",
    );
    let out = s.ok(&["import", &drop1, "--list", "spamhaus-drop"]);
    assert!(out.contains("imported 5 entries"), "{out}");
    let l = s.listed(&[]);
    assert_eq!(
        keys(&l),
        [
            "10.200.1.0/24",
            "192.0.2.0/24",
            "198.51.100.7/32",
            "2001:db8:1::7/128",
            "2001:db8::/32"
        ]
    );
    assert!(l
        .values()
        .all(|(a, list)| a == "drop" && list.as_deref() == Some("spamhaus-drop")));
    assert_eq!(
        s.connects(None),
        Connect::TimedOut,
        "the imported prefix drops the client"
    );

    // A bad file: every bad line with its number, exit 2, nothing applied.
    let bad = s.file(
        "bad.txt",
        "192.0.2.50\n10.1.2.3/16\nmail.example.com\n# fine\n203.0.113.1 extra words\n",
    );
    let err = s.refused(&["import", &bad, "--list", "spamhaus-drop"]);
    assert!(
        err.contains("line 2: `10.1.2.3/16`") && err.contains("10.1.0.0/16"),
        "{err}"
    );
    assert!(err.contains("line 3: `mail.example.com`"), "{err}");
    assert!(err.contains("line 5:"), "{err}");
    assert!(
        err.contains("3 bad lines (1 good); nothing was applied"),
        "{err}"
    );
    assert_eq!(keys(&s.listed(&[])).len(), 5, "nothing applied");
    let err = s.refused(&["block", "--from", &bad]);
    assert!(err.contains("line 2"), "{err}");

    // The list is replaced in one step: entries no longer in the file go away, the client with them.
    let drop2 = s.file(
        "drop2.txt",
        "192.0.2.0/24\n203.0.113.0/24 ; SBL9\n2001:db8::/32\n",
    );
    let out = s.ok(&["import", &drop2, "--list", "spamhaus-drop"]);
    assert!(out.contains("3 entries no longer in it removed"), "{out}");
    assert_eq!(
        keys(&s.listed(&[])),
        ["192.0.2.0/24", "2001:db8::/32", "203.0.113.0/24"]
    );
    assert_eq!(
        s.connects(None),
        Connect::Connected,
        "left the list, unblocked"
    );

    // block --from stdin with --skip-invalid and a TTL: a second, unnamed set; the client's own
    // host entry (hash map, batched) drops it.
    let mut child = Command::new(enforcer_bin())
        .args(["block", "--from", "-", "--skip-invalid", "--ttl", "1h"])
        .args(s.dirs.args())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{CLIENT_V4}\nnot-an-ip\n{CLIENT_V6}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("stdin: line 2: `not-an-ip`"), "{err}");
    assert!(err.contains("skipped 1 bad line"), "{err}");
    assert_eq!(s.connects(None), Connect::TimedOut);
    let named = s.listed(&["--list", "spamhaus-drop"]);
    assert_eq!(named.len(), 3, "--list shows only that list: {named:?}");

    // unset --from removes what it names and counts what was not there.
    let rm = s.file("rm.txt", &format!("{CLIENT_V4}\n198.18.0.1\n"));
    let out = s.ok(&["unset", "--from", &rm]);
    assert!(out.contains("removed 1 entry; 1 had no entry"), "{out}");
    assert_eq!(s.connects(None), Connect::Connected);

    // With the daemon stopped the same commands write the store and the maps themselves.
    let mut s = s;
    assert!(s.daemon.take().unwrap().stop(), "daemon stops cleanly");
    let drop3 = s.file("drop3.txt", "192.0.2.0/24\n10.200.1.2\n198.51.100.0/24\n");
    let out = s.ok(&[
        "import",
        &drop3,
        "--list",
        "spamhaus-drop",
        "--action",
        "reject",
    ]);
    assert!(out.contains("imported 3 entries (reject)"), "{out}");
    assert!(out.contains("2 entries no longer in it removed"), "{out}");
    assert!(
        matches!(s.connects(None), Connect::Refused(_)),
        "reject answers with RST"
    );
    let kernel = s.assert_kernel_matches_store();
    let shown: Vec<String> = kernel.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        shown,
        [
            "10.200.1.2/32",
            "192.0.2.0/24",
            "198.51.100.0/24",
            "fd00:200::2/128"
        ]
    );
    let err = s.refused(&["import", &bad, "--list", "spamhaus-drop"]);
    assert!(err.contains("nothing was applied"), "{err}");
    assert_eq!(s.assert_kernel_matches_store(), kernel);

    // unset --list takes the whole list away; the unnamed entry stays.
    let out = s.ok(&["unset", "--list", "spamhaus-drop"]);
    assert!(
        out.contains("removed list spamhaus-drop: 3 entries"),
        "{out}"
    );
    let left = s.assert_kernel_matches_store();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].to_string(), "fd00:200::2/128");
    assert_eq!(s.connects(None), Connect::Connected);
    let err = s.refused(&["unset", "--list", "spamhaus-drop"]);
    assert!(err.contains("no list named spamhaus-drop"), "{err}");

    // A daemon started again rebuilds the same maps from the store.
    let d = Daemon::start(&s.t.server, &s.t.server_if, &s.dirs, &[]);
    assert_eq!(keys(&s.listed(&[])), ["fd00:200::2/128"]);
    drop(d);
}

#[test]
fn a_large_list_is_written_in_batches() {
    let s = Setup::new("impbig");
    // 100,000 hosts and 2,000 prefixes: more than one batch per map.
    let mut text = String::new();
    for i in 0..100_000u32 {
        let a = 0x0a00_0000u32 + i;
        text.push_str(&format!("{}\n", std::net::Ipv4Addr::from(a)));
    }
    for i in 0..2_000u32 {
        text.push_str(&format!("172.{}.{}.0/24\n", 16 + i / 256, i % 256));
    }
    let f = s.file("big.txt", &text);
    let out = s.ok(&["import", &f, "--list", "big"]);
    assert!(out.contains("imported 102000 entries"), "{out}");
    let mut s = s;
    assert!(s.daemon.take().unwrap().stop());
    let kernel = s.assert_kernel_matches_store();
    assert_eq!(kernel.len(), 102_000);
    // Half of it again without the daemon: 51,000 leave in the same step.
    let half: String = text.lines().step_by(2).map(|l| format!("{l}\n")).collect();
    let f = s.file("half.txt", &half);
    let out = s.ok(&["import", &f, "--list", "big"]);
    assert!(
        out.contains("51000 entries no longer in it removed"),
        "{out}"
    );
    assert_eq!(s.assert_kernel_matches_store().len(), 51_000);
}
