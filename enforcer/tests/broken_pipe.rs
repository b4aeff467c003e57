//! A reader that goes away (`enforcer senders | true`, `enforcer classify --json | head -1`) ends the
//! command quietly: no panic, exit status 0. stdout is a pipe whose read end is already closed, so
//! every write fails with EPIPE deterministically.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};

/// Runs the binary with stdout on a pipe nobody reads and `stdin` as its input.
fn run_into_closed_pipe(args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(rd);
    let mut child = Command::new(env!("CARGO_BIN_EXE_enforcer"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::from(wr))
        .stderr(Stdio::piped())
        .spawn()
        .expect("enforcer binary starts");
    let mut pipe = child.stdin.take().unwrap();
    let _ = pipe.write_all(stdin);
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn assert_quiet(what: &str, out: &std::process::Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{what}: {err}");
    assert_eq!(out.status.code(), Some(0), "{what}: {err}");
}

const TRANSCRIPT: &[u8] = b"220 mail.example.com Microsoft ESMTP MAIL Service ready at Tue, 4 Jun 2024 10:11:12 +0000\r\n250-mail.example.com Hello [192.0.2.1]\r\n250-SIZE 37748736\r\n250 XEXCH50\r\n";

#[test]
fn classify_into_a_closed_pipe() {
    for args in [&["classify", "--json", "-"][..], &["classify", "-"]] {
        assert_quiet(&args.join(" "), &run_into_closed_pipe(args, TRANSCRIPT));
    }
}

/// A fake daemon answering every request with `result`.
fn fake_daemon(result: serde_json::Value) -> (std::path::PathBuf, std::thread::JoinHandle<()>) {
    let dir = std::env::temp_dir().join(format!("enforcer-pipe-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.sock");
    let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let line = format!("{}\n", serde_json::json!({"ok": true, "result": result}));
    let h = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut s, _) = l.accept().unwrap();
            let mut req = String::new();
            BufReader::new(&s).read_line(&mut req).unwrap();
            let _ = s.write_all(line.as_bytes());
        }
    });
    (path, h)
}

#[test]
fn senders_into_a_closed_pipe() {
    let view = |i: u32| {
        serde_json::json!({
            "prefix": format!("10.{}.{}.{}/32", i >> 16, (i >> 8) & 255, i & 255),
            "addresses": [], "state": "enforcing", "stage": 2,
            "stage_action": "throttle 5m/1h", "first_detected": "2026-01-01T00:00:00Z",
            "enforcing_since": null, "paused_until": null, "next_stage": 3,
            "next_stage_at": null, "product": "exchange", "build": "15.0.1497.2",
            "status": "end-of-life", "operator_rule": null
        })
    };
    // Far more than a pipe buffer holds, so the write cannot succeed by luck.
    let list: Vec<_> = (0..5000).map(view).collect();
    let (sock, h) = fake_daemon(serde_json::Value::Array(list));
    let s = sock.to_str().unwrap();
    for args in [
        &["senders", "--socket", s][..],
        &["senders", "--json", "--socket", s],
    ] {
        assert_quiet(&args.join(" "), &run_into_closed_pipe(args, b""));
    }
    h.join().unwrap();
    let _ = std::fs::remove_dir_all(sock.parent().unwrap());
}
