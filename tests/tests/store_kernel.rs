//! The kernel and the store never silently disagree (issue 7, section 2), through the real binary:
//! a failed start leaves the datapath as it was, an emptied store is refused until
//! `--reset-state`, one daemon per datapath, `detach` refuses under a running daemon, a vanished
//! datapath is noticed, the self-check repairs an entry removed behind the daemon's back, and the
//! store recovers from a full disk. Run as root:
//! `cargo test -p tests --test store_kernel -- --test-threads=1`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use enforcer::datapath::{ControlMaps, PolicyMaps};
use enforcer::net::Prefix;
use tests::netns::{connect, unique, Connect, Netns, Server, Topology, CLIENT_V4, SERVER_V4};
use tests::process::{cli, cli_ok, enforcer_bin, scrape, Daemon, Dirs};

const BLOCKED_WAIT: Duration = Duration::from_millis(1500);

fn to_server(t: &Topology) -> Connect {
    let dst = SocketAddr::new(SERVER_V4.parse().unwrap(), 25);
    connect(&t.client, None, dst, BLOCKED_WAIT)
}

/// `enforcer run` inside `ns` that is expected to fail: runs to completion (killed after 60 s).
fn run_once(ns: &Netns, args: &[String]) -> Output {
    let mut child = Command::new("nsenter")
        .arg(format!("--net={}", ns.path()))
        .arg(enforcer_bin())
        .arg("run")
        .args(args)
        .args(["--metrics-addr", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning nsenter enforcer run");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "enforcer run did not exit: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn args(iface: &str, dirs: &Dirs, extra: &[&str]) -> Vec<String> {
    let mut v = vec!["--iface".to_string(), iface.to_string()];
    v.extend(dirs.args());
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn ports_and_mode(dirs: &Dirs) -> (Vec<u16>, bool) {
    let c = ControlMaps::open_pinned(&dirs.pin_dir).unwrap();
    (c.ports().unwrap(), c.report_only().unwrap())
}

fn entries(pin_dir: &Path) -> Vec<Prefix> {
    PolicyMaps::open_pinned(pin_dir)
        .unwrap()
        .entries()
        .unwrap()
        .into_iter()
        .map(|(p, _)| p)
        .collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Polls `f` every 200 ms for up to `secs` seconds.
fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    f()
}

#[test]
fn a_failed_start_leaves_the_datapath_as_it_was() {
    let t = Topology::new("fst");
    let _server = Server::start(&t.server, &[25]);
    let dirs = Dirs::new("fst");
    let d = Daemon::start(
        &t.server,
        &t.server_if,
        &dirs,
        &["--mode", "tc", "--ports", "25"],
    );
    cli_ok(&dirs, &["block", CLIENT_V4]);
    assert_eq!(to_server(&t), Connect::TimedOut, "blocked");
    assert!(d.stop());
    let kernel = entries(&dirs.pin_dir);
    assert_eq!(kernel.len(), 1);
    let wrong = ["--report-only", "--ports", "2525"];

    // A mode that does not fit the live attachment: refused before anything is written.
    let mut a = args(&t.server_if, &dirs, &["--mode", "xdp-skb"]);
    a.extend(wrong.iter().map(|s| s.to_string()));
    let out = run_once(&t.server, &a);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("already has enforcer attached"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        ports_and_mode(&dirs),
        (vec![25], false),
        "ports and mode kept"
    );
    assert_eq!(entries(&dirs.pin_dir), kernel);
    assert_eq!(to_server(&t), Connect::TimedOut, "still blocked");

    // A store that existed and is now empty: refused naming the file, kernel untouched.
    let db = dirs.state_dir.join("enforcer.redb");
    std::fs::File::create(&db).unwrap();
    let mut a = args(&t.server_if, &dirs, &["--mode", "tc"]);
    a.extend(wrong.iter().map(|s| s.to_string()));
    let out = run_once(&t.server, &a);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&db.display().to_string()) && err.contains("--reset-state"),
        "{err}"
    );
    assert_eq!(ports_and_mode(&dirs), (vec![25], false));
    assert_eq!(entries(&dirs.pin_dir), kernel, "no entry removed");
    assert_eq!(to_server(&t), Connect::TimedOut, "still blocked");
    // The CLI says the same instead of reading an empty store.
    let out = cli(&dirs, &["unset", CLIENT_V4]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("empty"), "{}", stderr(&out));

    // A store file that is gone altogether, while the maps hold entries: refused the same way.
    std::fs::remove_file(&db).unwrap();
    let out = run_once(&t.server, &args(&t.server_if, &dirs, &["--mode", "tc"]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("does not exist") && err.contains("--reset-state"),
        "{err}"
    );
    assert_eq!(entries(&dirs.pin_dir), kernel, "no entry removed");

    // Starting over is explicit: the file is moved aside and the kernel follows the empty store.
    std::fs::File::create(&db).unwrap();
    let d = Daemon::start(
        &t.server,
        &t.server_if,
        &dirs,
        &["--mode", "tc", "--ports", "25", "--reset-state"],
    );
    assert!(std::fs::read_dir(&dirs.state_dir).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("enforcer.redb.reset-")));
    assert!(entries(&dirs.pin_dir).is_empty());
    assert_eq!(to_server(&t), Connect::Connected);
    assert!(std::fs::read_dir(&dirs.state_dir).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("enforcer.redb.reset-")));
    assert!(d.stop());
}

/// A start that fails after it made the maps equal to the store (here: native XDP on loopback,
/// whose driver has none) puts every entry it added, replaced or removed back.
#[test]
fn a_start_failing_after_reconcile_puts_the_entries_back() {
    let t = Topology::new("fsr");
    let dirs = Dirs::new("fsr");
    let d = Daemon::start(
        &t.server,
        &t.server_if,
        &dirs,
        &["--mode", "tc", "--ports", "25"],
    );
    cli_ok(&dirs, &["block", CLIENT_V4]);
    assert!(d.stop());
    // Store and maps disagree (as after a crash between the two writes): a rule only in the
    // store, an entry only in the kernel, and an entry the kernel holds differently.
    {
        let store = enforcer::store::Store::open(&dirs.state_dir).unwrap();
        store.put_rule(&rule(7)).unwrap();
    }
    let mut maps = PolicyMaps::open_pinned(&dirs.pin_dir).unwrap();
    let only_kernel: Prefix = "203.0.113.5".parse().unwrap();
    let drop_entry = maps.entries().unwrap()[0].1;
    maps.upsert(&only_kernel, &drop_entry).unwrap();
    let client: Prefix = CLIENT_V4.parse().unwrap();
    let pass = enforcer::rule::Verdict::Pass;
    let clock = enforcer::datapath::Clock::now();
    let pass_entry = enforcer::rule::Rule {
        prefix: client,
        verdict: pass,
        expires_at: None,
        reason: None,
        created_at: 0,
        source: enforcer::rule::RuleSource::Operator,
        list: None,
    }
    .to_kernel(&clock);
    maps.upsert(&client, &pass_entry).unwrap();
    let sorted = |maps: &PolicyMaps| {
        let mut v = maps.entries().unwrap();
        v.sort_by_key(|(p, _)| *p);
        v
    };
    let before = sorted(&maps);
    assert_eq!(before.len(), 2);

    // Native XDP on the namespace's loopback: every check passes, attaching fails.
    let out = run_once(&t.server, &args("lo", &dirs, &["--mode", "xdp"]));
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("put the 3 kernel entries"), "{err}");
    assert_eq!(sorted(&maps), before, "entries exactly as they were");
    assert_eq!(ports_and_mode(&dirs), (vec![25], false));
}

#[test]
fn one_daemon_per_datapath_and_no_detach_under_it() {
    let t = Topology::new("one");
    let _server = Server::start(&t.server, &[25]);
    let dirs = Dirs::new("one");
    let d = Daemon::start(&t.server, &t.server_if, &dirs, &["--mode", "tc"]);
    cli_ok(&dirs, &["block", CLIENT_V4]);
    assert_eq!(to_server(&t), Connect::TimedOut);
    let other = std::env::temp_dir().join(unique("onestate"));
    let _cleanup = RemoveDir(other.clone());
    let other_args = |cmd: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        v.extend([
            "--pin-dir".into(),
            dirs.pin_dir.display().to_string(),
            "--state-dir".into(),
            other.display().to_string(),
        ]);
        v
    };

    // A second daemon with its own (empty) store on the same datapath is refused, naming the first.
    let out = run_once(
        &t.server,
        &other_args(&["--iface", &t.server_if, "--mode", "tc"]),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("one daemon per datapath") && err.contains("pid ") && err.contains("enforcer"),
        "{err}"
    );
    assert_eq!(
        entries(&dirs.pin_dir).len(),
        1,
        "the first daemon's entry stays"
    );
    assert_eq!(to_server(&t), Connect::TimedOut);

    // Nor may the CLI write behind it with another store.
    let out = Command::new(enforcer_bin())
        .args(other_args(&["block", "10.200.1.99"]))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("another state directory"),
        "{}",
        stderr(&out)
    );
    assert_eq!(entries(&dirs.pin_dir).len(), 1);

    // Detach under the running daemon is refused, naming it; the datapath stays.
    let out = cli(&dirs, &["detach"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("is running the datapath") && err.contains("pid "),
        "{err}"
    );
    assert_eq!(to_server(&t), Connect::TimedOut, "still blocked");
    assert!(d.stop());
    let out = cli_ok(&dirs, &["detach"]);
    assert!(out.contains("detached"), "{out}");
}

struct RemoveDir(PathBuf);
impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_vanished_datapath_is_noticed() {
    let t = Topology::new("van");
    let dirs = Dirs::new("van");
    let d = Daemon::start(&t.server, &t.server_if, &dirs, &["--mode", "tc"]);
    let addr = d.metrics_addr();
    assert!(scrape(&t.server, addr).contains("enforcer_datapath_attached 1"));
    // Removed behind the daemon's back (an old `detach`, an `rm -r`).
    for sub in ["links", "maps"] {
        std::fs::remove_dir_all(dirs.pin_dir.join(sub)).unwrap();
    }
    assert!(
        eventually(20, || scrape(&t.server, addr)
            .contains("enforcer_datapath_attached 0")),
        "{}",
        d.log_text()
    );
    assert!(d.log_text().contains("is gone"), "{}", d.log_text());
    let out = cli(&dirs, &["block", CLIENT_V4]);
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "block claimed success with nothing attached"
    );
    assert!(err.contains("is gone") && err.contains("not made"), "{err}");
    drop(d);
}

#[test]
fn the_self_check_repairs_an_entry_removed_behind_its_back() {
    let t = Topology::new("chk");
    let _server = Server::start(&t.server, &[25]);
    let dirs = Dirs::new("chk");
    let d = Daemon::start(&t.server, &t.server_if, &dirs, &["--mode", "tc"]);
    cli_ok(&dirs, &["block", CLIENT_V4]);
    assert_eq!(to_server(&t), Connect::TimedOut);
    let p: Prefix = CLIENT_V4.parse().unwrap();
    assert!(PolicyMaps::open_pinned(&dirs.pin_dir)
        .unwrap()
        .remove(&p)
        .unwrap());
    assert_eq!(
        to_server(&t),
        Connect::Connected,
        "the entry really is gone"
    );
    // The self-check runs every 30 s.
    assert!(
        eventually(45, || entries(&dirs.pin_dir).contains(&p)),
        "{}",
        d.log_text()
    );
    assert_eq!(to_server(&t), Connect::TimedOut, "blocked again");
    let m = scrape(&t.server, d.metrics_addr());
    assert!(
        m.contains("enforcer_engine_self_check_repairs_total 1"),
        "{m}"
    );
    assert!(d.stop());
}

#[test]
fn the_self_check_restores_a_prefix_hidden_by_its_presence_filter() {
    let t = Topology::new("chkf");
    let _server = Server::start(&t.server, &[25]);
    let dirs = Dirs::new("chkf");
    let d = Daemon::start(&t.server, &t.server_if, &dirs, &["--mode", "tc"]);
    let client: std::net::IpAddr = CLIENT_V4.parse().unwrap();
    let p = Prefix::containing(client, 24);
    cli_ok(&dirs, &["block", &p.to_string()]);
    assert_eq!(to_server(&t), Connect::TimedOut);
    {
        let maps = PolicyMaps::open_pinned(&dirs.pin_dir).unwrap();
        assert!(maps.filtered(&p), "block set the prefix's filter bit");
        // Clear the IPv4 filter behind the daemon's back: the trie still holds the prefix, but
        // the datapath no longer looks there.
        maps.filter(true).rebuild([]);
        assert!(!maps.filtered(&p));
    }
    assert_eq!(
        to_server(&t),
        Connect::Connected,
        "a clear filter bit skips the trie"
    );
    // The self-check runs every 30 s and counts a hidden entry as one to repair.
    assert!(
        eventually(45, || PolicyMaps::open_pinned(&dirs.pin_dir)
            .unwrap()
            .filtered(&p)),
        "{}",
        d.log_text()
    );
    assert_eq!(to_server(&t), Connect::TimedOut, "blocked again");
    assert!(d.stop());
}

/// A small tmpfs mounted for the test; unmounted (lazily, even if busy) and removed on drop.
struct Tmpfs(PathBuf);
impl Tmpfs {
    fn new(tag: &str, size: &str) -> Self {
        let dir = std::env::temp_dir().join(unique(tag));
        std::fs::create_dir_all(&dir).unwrap();
        let m = Tmpfs(dir);
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&m.0)
            .status()
            .unwrap();
        assert!(st.success(), "mounting a tmpfs on {}", m.0.display());
        m
    }
}
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rule(i: u32) -> enforcer::rule::Rule {
    enforcer::rule::Rule {
        prefix: format!("10.201.{}.{}", i / 256, i % 256).parse().unwrap(),
        verdict: enforcer::rule::Verdict::Drop,
        expires_at: None,
        reason: Some(format!("{i}: {}", "filler text ".repeat(20))),
        created_at: 1_700_000_000,
        source: enforcer::rule::RuleSource::Operator,
        list: None,
    }
}

/// After a write fails on a full disk, freeing space is enough: the same open store writes again
/// (redb alone refuses every write after one I/O error until the database is reopened).
#[test]
fn the_store_recovers_from_a_full_disk() {
    use std::io::Write as _;
    let fs = Tmpfs::new("full", "4m");
    let store = enforcer::store::Store::open(&fs.0).unwrap();
    store.put_rule(&rule(0)).unwrap();
    let filler = fs.0.join("filler");
    {
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        for _ in 0..128 {
            if f.write_all(&chunk).is_err() {
                break;
            }
        }
    }
    let mut failure = None;
    for i in 1..3000 {
        if let Err(e) = store.put_rule(&rule(i)) {
            failure = Some(format!("{e:#}"));
            break;
        }
    }
    let failure = failure.expect("the disk filled up");
    assert!(failure.contains(&fs.0.display().to_string()), "{failure}");
    std::fs::remove_file(&filler).unwrap();
    store
        .put_rule(&rule(4000))
        .expect("writes work again once there is space");
    let p: Prefix = rule(4000).prefix;
    assert!(store.rules().unwrap().iter().any(|r| r.prefix == p));
    drop(store);
    // And what was acknowledged is on disk.
    let again = enforcer::store::Store::open(&fs.0).unwrap();
    assert!(again.rules().unwrap().iter().any(|r| r.prefix == p));
}

/// A config file removed on drop.
struct Config(PathBuf);
impl Drop for Config {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One behaviour for a full map whether the daemon runs or not: the entry that does not fit is
/// refused with the same error, and nothing of it is stored.
#[test]
fn a_full_map_refuses_on_both_paths_and_stores_nothing() {
    let t = Topology::new("ful");
    let dirs = Dirs::new("ful");
    let cfg = Config(std::env::temp_dir().join(unique("fulcfg")));
    std::fs::write(&cfg.0, "[capacity]\nv4_hosts = 16\n").unwrap();
    let conf = ["--config", cfg.0.to_str().unwrap(), "--mode", "tc"];
    let d = Daemon::start(&t.server, &t.server_if, &dirs, &conf);
    for i in 1..=16 {
        cli_ok(&dirs, &["block", &format!("198.51.100.{i}")]);
    }
    let refused = |what: &str| {
        let out = cli(&dirs, &["block", "198.51.100.17", "--reason", "no room"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(
            err.contains("is full (16 entries)") && err.contains("nothing was stored"),
            "{what}: {err}"
        );
        assert!(
            !cli_ok(&dirs, &["list"]).contains("198.51.100.17"),
            "{what}"
        );
        err
    };
    let through_daemon = refused("through the daemon");
    let m = scrape(&t.server, d.metrics_addr());
    assert!(m.contains("enforcer_engine_kernel_map_full_total 1"), "{m}");
    assert!(d.stop());
    let direct = refused("without a daemon");
    assert_eq!(through_daemon, direct, "the same error on both paths");
    // Nothing was stored: a restarted daemon puts back exactly the sixteen.
    let d = Daemon::start(&t.server, &t.server_if, &dirs, &conf);
    assert_eq!(entries(&dirs.pin_dir).len(), 16);
    assert!(!d.log_text().contains("198.51.100.17"), "{}", d.log_text());
    assert!(d.stop());
}
