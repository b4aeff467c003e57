//! `enforcer throttle IP --window … --period … --notice [--notice-rate …]` through the real binary and
//! a running daemon: refused (exit status 2, nothing written) while the daemon serves no notice
//! channel, and with a milter the kernel entry carries the notice flag and budget (read from the
//! pinned map directly, not through the CLI). Run as root:
//! `cargo test -p tests --test throttle_notice -- --test-threads=1`.

use enforcer::datapath::PolicyMaps;
use enforcer::net::Prefix;
use tests::netns::{Topology, CLIENT_V4};
use tests::process::{cli, cli_ok, Daemon, Dirs};

fn entry(dirs: &Dirs, prefix: &Prefix) -> Option<enforcer_common::PolicyEntry> {
    PolicyMaps::open_pinned(&dirs.pin_dir)
        .unwrap()
        .get(prefix)
        .unwrap()
}

#[test]
fn throttle_notice_needs_a_channel_and_writes_the_notice_flag() {
    let t = Topology::new("tn");
    let dirs = Dirs::new("tn");
    let prefix: Prefix = CLIENT_V4.parse().unwrap();
    let throttle = |rate: &[&'static str]| {
        let mut args = vec![
            "throttle", CLIENT_V4, "--window", "5m", "--period", "1h", "--notice",
        ];
        args.extend_from_slice(rate);
        args
    };

    // No milter, no policy service: the daemon refuses, nothing reaches the map.
    let daemon = Daemon::start(&t.server, &t.server_if, &dirs, &[]);
    let args = throttle(&[]);
    let out = cli(&dirs, &args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no notice channel"), "{err}");
    assert!(entry(&dirs, &prefix).is_none());
    drop(daemon);

    // With the milter: written through the daemon, flag and budget in the kernel entry.
    let daemon = Daemon::start(
        &t.server,
        &t.server_if,
        &dirs,
        &["--milter", "inet:127.0.0.1:0"],
    );
    let args = throttle(&["--notice-rate", "3/15m"]);
    let said = cli_ok(&dirs, &args);
    assert!(said.contains("throttling"), "{said}");
    let e = entry(&dirs, &prefix).expect("the notice throttle is in the map");
    assert!(e.is_notice(), "{e:?}");
    assert_eq!((e.notice_count, e.notice_period_secs), (3, 900));
    // A plain window throttle next to it carries no notice flag.
    cli_ok(
        &dirs,
        &["throttle", "10.200.9.9", "--window", "5m", "--period", "1h"],
    );
    let plain = entry(&dirs, &"10.200.9.9".parse().unwrap()).unwrap();
    assert!(!plain.is_notice(), "{plain:?}");
    drop(daemon);
}
