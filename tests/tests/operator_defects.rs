//! Defects found by running enforcer as a new operator would, each pinned by a test: exit status
//! classes, `--mode auto` on a veth, `explain` naming the sender record, addresses that can never be
//! senders, one-line reasons.

use std::process::{Command, Output, Stdio};

use tests::netns::{Topology, CLIENT_V4};
use tests::process::{cli, enforcer_bin, Daemon, Dirs};

/// An Exchange 2013 hop: end of life, so the sender enters enforcement (stage 1, report only).
const EX2013: &str = "Received: from EX01.corp.example.net (10.1.2.3) by mail.corp.example.net (10.1.2.4) with Microsoft SMTP Server (TLS) id 15.0.1497.48; Tue, 4 Jun 2024 10:11:12 +0000\r\n";

fn code(out: &Output) -> (Option<i32>, String) {
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn run(args: &[&str]) -> Output {
    Command::new(enforcer_bin()).args(args).output().unwrap()
}

fn as_nobody(args: &[&str]) -> Output {
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(enforcer_bin())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn exit_status_classes_are_consistent() {
    // A pin directory that is not on bpffs: 2, and nothing is created there first.
    let tmp = std::env::temp_dir().join(format!("enforcer-notbpf-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let pin = tmp.join("pins");
    let out = run(&[
        "run",
        "--iface",
        "lo",
        "--pin-dir",
        pin.to_str().unwrap(),
        "--state-dir",
        tmp.join("state").to_str().unwrap(),
        "--metrics-addr",
        "127.0.0.1:0",
    ]);
    let (c, err) = code(&out);
    assert_eq!(c, Some(2), "{err}");
    assert!(err.contains("not on a BPF filesystem"), "{err}");
    assert!(
        !pin.join("maps").exists() && !pin.join("links").exists(),
        "maps/ or links/ created off bpffs"
    );
    // A state directory that cannot be created (a file is in the way): 2.
    std::fs::write(tmp.join("file"), b"x").unwrap();
    let out = run(&[
        "run",
        "--iface",
        "lo",
        "--pin-dir",
        "/sys/fs/bpf/enforcer-test-none",
        "--state-dir",
        tmp.join("file/state").to_str().unwrap(),
        "--metrics-addr",
        "127.0.0.1:0",
    ]);
    let (c, err) = code(&out);
    assert_eq!(c, Some(2), "{err}");
    assert!(err.contains("cannot create the state directory"), "{err}");
    assert!(!std::path::Path::new("/sys/fs/bpf/enforcer-test-none").exists());
    // A non-root sender command: the root-only socket is a missing privilege, 2.
    let sock = tmp.join("enforcer.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::fs::set_permissions(&sock, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = as_nobody(&["senders", "--socket", sock.to_str().unwrap()]);
    let (c, err) = code(&out);
    assert_eq!(c, Some(2), "{err}");
    assert!(err.contains("root"), "{err}");
    // The daemon not running is not the operator's input: 1.
    let out = run(&[
        "senders",
        "--socket",
        tmp.join("none.sock").to_str().unwrap(),
    ]);
    let (c, err) = code(&out);
    assert_eq!(c, Some(1), "{err}");
    assert!(err.contains("not running"), "{err}");
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn auto_mode_on_a_veth_picks_a_mode_where_reject_works_and_mode_mismatch_is_2() {
    let t = Topology::new("vau");
    let dirs = Dirs::new("vau");
    let d = Daemon::start(&t.server, &t.server_if, &dirs, &[]);
    let log = d.log_text();
    assert!(
        log.contains(&format!("enforcing on {} (xdp-skb", t.server_if)),
        "auto on a veth must not pick native XDP:\n{log}"
    );
    assert!(d.stop());
    // Restarting with a --mode that does not fit the live attachment: 2, named.
    let out = Command::new("nsenter")
        .arg(format!("--net={}", t.server.path()))
        .arg(enforcer_bin())
        .args([
            "run",
            "--iface",
            &t.server_if,
            "--mode",
            "tc",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .args(dirs.args())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (c, err) = code(&out);
    assert_eq!(c, Some(2), "{err}");
    assert!(err.contains("enforcer detach"), "{err}");
}

#[test]
fn explain_names_the_sender_record_and_addresses_are_checked() {
    let t = Topology::new("exs");
    let dirs = Dirs::new("exs");
    let _d = Daemon::start(&t.server, &t.server_if, &dirs, &[]);
    let socket = dirs.state_dir.join("enforcer.sock");
    let mut ev = Command::new(enforcer_bin())
        .args(["evidence", "198.51.100.7", "-", "--socket"])
        .arg(&socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    ev.stdin
        .take()
        .unwrap()
        .write_all(EX2013.as_bytes())
        .unwrap();
    let out = ev.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Stage 1 is report only: no kernel entry, but explain says there is a sender record.
    let out = cli(&dirs, &["explain", "198.51.100.7"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("sender record 198.51.100.7/32: enforcing, stage 1 (report only)"),
        "{text}"
    );
    let out = cli(&dirs, &["explain", "198.51.100.7", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["sender"]["stage"], 1, "{v}");
    // Addresses that can never be a sender, a default route without --force, a reason with a line
    // break: 2, nothing stored.
    for args in [
        &["block", "0.0.0.0"][..],
        &["block", "255.255.255.255"],
        &["block", "127.0.0.1"],
        &["reject", "::1"],
        &["block", "0.0.0.0/0"],
        &["block", "::/0"],
        &["block", "198.51.100.8", "--reason", "two\nlines"],
        &["block", "198.51.100.8", "--reason", "\u{1b}[2Jcleared"],
    ] {
        let (c, err) = code(&cli(&dirs, args));
        assert_eq!(c, Some(2), "{args:?}: {err}");
    }
    let (c, err) = code(
        &Command::new(enforcer_bin())
            .args(["evidence", "127.0.0.1", "-", "--socket"])
            .arg(&socket)
            .stdin(Stdio::null())
            .output()
            .unwrap(),
    );
    assert_eq!(c, Some(2), "{err}");
    // An IPv4-mapped address is stored as the IPv4 host it is.
    let out = cli(&dirs, &["block", &format!("::ffff:{CLIENT_V4}")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value =
        serde_json::from_slice(&cli(&dirs, &["list", "--json"]).stdout).unwrap();
    let prefixes: Vec<&str> = list["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["prefix"].as_str())
        .collect();
    assert_eq!(prefixes, [format!("{CLIENT_V4}/32")], "{list}");
    // --force allows a default route.
    let out = cli(&dirs, &["block", "0.0.0.0/0", "--force", "--ttl", "1m"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
