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
