//! Socket round trips: a malformed request gets an error reply and the server keeps serving.

use super::*;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;

fn sock_path(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir()
        .join(format!("enforcer-ctl-{}-{tag}", std::process::id()))
        .join("s.sock")
}

#[test]
fn serves_good_and_bad_requests() {
    let path = sock_path("rt");
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(async { ControlServer::bind(&path) }).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // A second daemon on the same socket is refused.
    let second = rt.block_on(async { ControlServer::bind(&path) });
    assert!(second.is_err());
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Incoming>(8);
    let p2 = path.clone();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let handle = std::thread::spawn(move || {
        let _done = done_tx; // dropped when the client is finished, which ends the server loop
                             // Raw client: garbage, then a valid request, on the same connection.
        let mut s = std::os::unix::net::UnixStream::connect(&p2).unwrap();
        s.write_all(b"this is not json\n{\"op\":\"ping\"}\n")
            .unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut l1 = String::new();
        r.read_line(&mut l1).unwrap();
        let mut l2 = String::new();
        r.read_line(&mut l2).unwrap();
        let bad = client::request(
            &p2,
            &Request::Sender {
                target: "nope".into(),
            },
        )
        .unwrap_err();
        let good = client::request(&p2, &Request::Ping {}).unwrap();
        (l1, l2, bad.to_string(), good)
    });
    rt.block_on(async {
        let serve = server.serve(tx);
        let engine = async {
            while let Some(inc) = rx.recv().await {
                let reply = match inc.request {
                    Request::Ping {} => Reply::ok("pong"),
                    Request::Sender { target } => {
                        Reply::usage(format!("`{target}` is not an IP address"))
                    }
                    _ => Reply::internal("unexpected"),
                };
                inc.reply.send(reply).unwrap();
            }
        };
        tokio::select! { _ = serve => {}, _ = engine => {}, _ = done_rx => {} }
    });
    let (l1, l2, bad, good) = handle.join().unwrap();
    assert!(
        l1.contains("\"ok\":false") && l1.contains("bad request"),
        "{l1}"
    );
    assert!(l2.contains("\"ok\":true") && l2.contains("pong"), "{l2}");
    assert!(bad.contains("not an IP address"), "{bad}");
    assert_eq!(good, serde_json::json!("pong"));
    drop(server);
    assert!(!path.exists(), "the socket file is removed on drop");
    assert!(matches!(
        client::request(&path, &Request::Ping {}),
        Err(ClientError::NotRunning(_))
    ));
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// A server on `path` with `limits` whose engine answers every request `pong`; runs until `done`
/// resolves. Returns the listener metrics as text afterwards.
fn with_server(
    tag: &str,
    limits: Limits,
    client: impl FnOnce(&std::path::Path) + Send + 'static,
) -> String {
    let path = sock_path(tag);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let metrics = crate::daemon::gate::ListenerMetrics::default();
    let server = rt
        .block_on(async { ControlServer::bind(&path) })
        .unwrap()
        .with_metrics(&metrics)
        .with_limits(limits);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Incoming>(8);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let p2 = path.clone();
    let handle = std::thread::spawn(move || {
        let _done = done_tx;
        client(&p2);
    });
    rt.block_on(async {
        let serve = server.serve(tx);
        let engine = async {
            while let Some(inc) = rx.recv().await {
                inc.reply.send(Reply::ok("pong")).unwrap();
            }
        };
        tokio::select! { _ = serve => {}, _ = engine => {}, _ = done_rx => {} }
    });
    let res = handle.join();
    drop(server);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
    res.unwrap();
    let mut reg = prometheus_client::registry::Registry::with_prefix("enforcer_control");
    metrics.register(&mut reg);
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
    out
}

fn read_reply(s: &std::os::unix::net::UnixStream) -> String {
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut l = String::new();
    BufReader::new(s).read_line(&mut l).unwrap();
    l
}

#[test]
fn connections_over_the_cap_are_refused_with_a_reason() {
    let limits = Limits {
        max_conns: 2,
        ..Limits::default()
    };
    let metrics = with_server("cap", limits, |p| {
        let a = std::os::unix::net::UnixStream::connect(p).unwrap();
        let b = std::os::unix::net::UnixStream::connect(p).unwrap();
        // Both idle connections hold their slots; a ping shows the first is being served.
        (&a).write_all(b"{\"op\":\"ping\"}\n").unwrap();
        assert!(read_reply(&a).contains("pong"));
        let c = std::os::unix::net::UnixStream::connect(p).unwrap();
        let refused = read_reply(&c);
        assert!(
            refused.contains("maximum of 2 control connections"),
            "{refused}"
        );
        drop((a, b));
        // Slots come back when clients leave.
        let mut last = String::new();
        for _ in 0..100 {
            match client::request(p, &Request::Ping {}) {
                Ok(v) => {
                    assert_eq!(v, serde_json::json!("pong"));
                    return;
                }
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("no slot came back: {last}");
    });
    assert!(
        metrics.contains("enforcer_control_refused_total{why=\"connection_cap\"}"),
        "{metrics}"
    );
}

#[test]
fn unfinished_requests_share_one_buffer_budget() {
    let limits = Limits {
        max_conns: 8,
        max_line: 1 << 20,
        total_buffer: 128 << 10,
    };
    let metrics = with_server("budget", limits, |p| {
        // A holds 150 KiB of an unfinished line: the whole 128 KiB budget beyond its free first chunk.
        let a = std::os::unix::net::UnixStream::connect(p).unwrap();
        (&a).write_all(&vec![b' '; 150 << 10]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        // B's 150 KiB do not fit any more: it is told why and closed.
        let b = std::os::unix::net::UnixStream::connect(p).unwrap();
        let _ = (&b).write_all(&vec![b' '; 150 << 10]);
        let refused = read_reply(&b);
        assert!(
            refused.contains("unfinished requests") && refused.contains("retry"),
            "{refused}"
        );
        // Small requests still go through, and A's request completes once it ends its line.
        assert_eq!(
            client::request(p, &Request::Ping {}).unwrap(),
            serde_json::json!("pong")
        );
        (&a).write_all(b"{\"op\":\"ping\"}\n").unwrap();
        assert!(read_reply(&a).contains("pong"));
    });
    assert!(metrics.contains("why=\"buffer_cap\"} 1"), "{metrics}");
    // One connection alone is held to max_line.
    let limits = Limits {
        max_conns: 8,
        max_line: 100 << 10,
        total_buffer: 1 << 20,
    };
    with_server("long", limits, |p| {
        let c = std::os::unix::net::UnixStream::connect(p).unwrap();
        let _ = (&c).write_all(&vec![b' '; 200 << 10]);
        let long = read_reply(&c);
        assert!(long.contains("request longer than 102400 bytes"), "{long}");
    });
}

/// A fake daemon that reads the request and then does `then` with the connection.
fn fake_daemon(tag: &str, then: fn(std::os::unix::net::UnixStream)) -> std::path::PathBuf {
    let path = sock_path(tag);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        if let Ok((s, _)) = l.accept() {
            let mut line = String::new();
            BufReader::new(&s).read_line(&mut line).unwrap();
            then(s);
        }
    });
    path
}

#[test]
fn a_daemon_dying_mid_request_leaves_the_outcome_unknown() {
    for (tag, then) in [
        ("die0", (|s| drop(s)) as fn(std::os::unix::net::UnixStream)),
        ("die1", |mut s| {
            s.write_all(br#"{"ok":true,"result":{"blo"#).unwrap();
        }),
    ] {
        let path = fake_daemon(tag, then);
        let err = client::request(
            &path,
            &Request::Forget {
                target: "192.0.2.7".into(),
            },
        )
        .unwrap_err();
        assert!(
            matches!(err, ClientError::OutcomeUnknown { .. }),
            "{tag}: {err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("outcome of the request is unknown") && !msg.contains("not valid JSON"),
            "{msg}"
        );
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
