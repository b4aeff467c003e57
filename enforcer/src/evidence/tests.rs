//! The listeners over real loopback sockets: a fake MTA speaks the milter and policy protocols.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::inbox::{Inbox, InboxLimits};
use super::listen::{Bound, Endpoint, Limits, MtaMetrics, Shared};
use super::milter::codec::{decode_response, encode_command, Command, Family, Response};
use super::milter::session::Sighting;
use super::reply::{Board, Notice, Texts};
use super::Channel;
use crate::control::{Incoming, Request};
use crate::daemon::gate::{Gate, ListenerMetrics};
use crate::rule::{Rule, RuleSource, Verdict};

/// Both listeners on loopback ports, with the engine's queue read by the test.
struct Running {
    milter: SocketAddr,
    policy: SocketAddr,
    engine: tokio::sync::mpsc::Receiver<Incoming>,
    /// Sightings of a batch the test has received but not yet looked at.
    received: std::collections::VecDeque<(Sighting, Channel)>,
    shared: Arc<Shared>,
    board: Board,
    /// Shared by both listeners here (each has its own in the daemon).
    metrics: MtaMetrics,
}

impl Running {
    async fn sighting(&mut self) -> Sighting {
        self.sighting_from().await.0
    }

    /// The next sighting the listeners handed to the engine (in batches, as in the daemon).
    async fn sighting_from(&mut self) -> (Sighting, Channel) {
        while self.received.is_empty() {
            let inc = tokio::time::timeout(Duration::from_secs(10), self.engine.recv())
                .await
                .expect("evidence reaches the engine in time")
                .unwrap();
            match inc.request {
                Request::MtaEvidenceBatch { sightings } => {
                    self.received.extend(sightings.into_iter().map(|m| {
                        (
                            Sighting {
                                addr: m.addr,
                                helo: m.helo,
                                headers: m.headers,
                            },
                            m.source,
                        )
                    }));
                }
                other => panic!("{other:?}"),
            }
            let _ = inc.reply.send(crate::control::Reply::ok(()));
        }
        self.received.pop_front().unwrap()
    }
}

async fn start(report_only: bool) -> Running {
    start_with(
        report_only,
        1024,
        Limits::default(),
        InboxLimits::default(),
        true,
    )
    .await
}

/// `queue`: the engine's request queue, which only the test reads; `forward`: whether the
/// listeners' inbox is handed to it at all (false: an engine that never takes anything).
async fn start_with(
    report_only: bool,
    queue: usize,
    limits: Limits,
    inbox: InboxLimits,
    forward: bool,
) -> Running {
    let any: Endpoint = "inet:127.0.0.1:0".parse().unwrap();
    let board = Board::default();
    board.set_replies(Texts::default(), report_only);
    let (tx, engine) = tokio::sync::mpsc::channel(queue);
    let metrics = MtaMetrics::default();
    let shared = Arc::new(Shared {
        board: board.clone(),
        engine: tx,
        inbox: Inbox::new(inbox),
        metrics: metrics.clone(),
        limits,
    });
    if forward {
        let sh = shared.clone();
        tokio::spawn(async move { sh.forward().await });
    }
    let gate = |n| Gate::new(n, 1000, ListenerMetrics::default());
    let addr = |b: &Bound| match b.endpoint() {
        Endpoint::Inet(a) => a,
        other => panic!("{other}"),
    };
    let m = Bound::bind(&any, "milter").await.unwrap();
    let p = Bound::bind(&any, "policy").await.unwrap();
    let (milter, policy) = (addr(&m), addr(&p));
    tokio::spawn(super::milter::listener::serve(
        m,
        shared.clone(),
        gate("milter"),
        Default::default(),
    ));
    tokio::spawn(super::policy::listener::serve(
        p,
        shared.clone(),
        gate("policy"),
    ));
    Running {
        milter,
        policy,
        engine,
        received: Default::default(),
        shared,
        board,
        metrics,
    }
}

fn block_notice(prefix: &str) -> Notice {
    Notice {
        rule: Rule {
            prefix: prefix.parse().unwrap(),
            verdict: Verdict::Drop,
            expires_at: None,
            reason: None,
            created_at: 0,
            source: RuleSource::Engine { stage: 8 },
            list: None,
        },
        stage: 8,
        build: Some("15.0.1497.2".into()),
        upgrade_to: None,
    }
}

struct Mta {
    sock: TcpStream,
    buf: BytesMut,
}

impl Mta {
    async fn connect(addr: SocketAddr) -> Self {
        Mta {
            sock: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
        }
    }

    async fn send(&mut self, c: Command) {
        let mut out = BytesMut::new();
        encode_command(&c, &mut out);
        self.sock.write_all(&out).await.unwrap();
    }

    async fn reply(&mut self) -> Option<Response> {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(r) = decode_response(&mut self.buf).unwrap() {
                    return Some(r);
                }
                if self.sock.read_buf(&mut self.buf).await.unwrap_or(0) == 0 {
                    return None;
                }
            }
        })
        .await
        .expect("the milter answers in time")
    }

    /// Option negotiation and connect as Postfix does them.
    async fn open(addr: SocketAddr, client: &str) -> Self {
        let mut m = Mta::connect(addr).await;
        m.send(Command::OptNeg {
            version: 6,
            actions: 0x1ff,
            protocol: 0x1fffff,
        })
        .await;
        assert!(matches!(
            m.reply().await,
            Some(Response::OptNeg { version: 6, .. })
        ));
        m.send(Command::Macros {
            stage: b'C',
            pairs: vec![(Bytes::from_static(b"j"), Bytes::from_static(b"mx.test"))],
        })
        .await;
        m.send(Command::Connect {
            hostname: Bytes::from_static(b"client"),
            family: Family::Inet,
            port: 40000,
            address: Bytes::copy_from_slice(client.as_bytes()),
        })
        .await;
        m.send(Command::Helo(Bytes::from_static(b"ex01.corp.example.net")))
            .await;
        m
    }

    async fn mail(&mut self) -> Option<Response> {
        self.send(Command::Mail(vec![Bytes::from_static(
            b"<a@corp.example.net>",
        )]))
        .await;
        self.reply().await
    }

    async fn message(&mut self, received: &str) {
        self.send(Command::Header {
            name: Bytes::from_static(b"Received"),
            value: Bytes::copy_from_slice(received.as_bytes()),
        })
        .await;
        self.send(Command::EndOfHeaders).await;
        self.send(Command::EndOfMessage).await;
        assert_eq!(self.reply().await, Some(Response::Continue));
    }

    /// True once the server has closed the connection.
    async fn closed(&mut self) -> bool {
        let mut b = [0u8; 64];
        matches!(
            tokio::time::timeout(Duration::from_secs(10), self.sock.read(&mut b)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

const RECEIVED: &str = "from EX01.corp.example.net (10.1.2.3) by mail.corp.example.net (10.1.2.4) with Microsoft SMTP Server (TLS) id 15.0.1497.2; Tue, 4 Jun 2024 10:11:12 +0000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn milter_refuses_at_mail_and_reports_the_header_block() {
    let mut r = start(false).await;
    let mut m = Mta::open(r.milter, "10.200.0.2").await;
    assert_eq!(m.mail().await, Some(Response::Continue));
    m.message(RECEIVED).await;
    let (s, source) = r.sighting_from().await;
    assert_eq!(source, Channel::Milter);
    assert_eq!(s.addr.to_string(), "10.200.0.2");
    assert_eq!(s.helo.as_deref(), Some("ex01.corp.example.net"));
    assert!(s.headers.starts_with("Received: from EX01"));
    r.board.set(
        "10.200.0.2/32".parse().unwrap(),
        Some(std::sync::Arc::new(block_notice("10.200.0.2/32"))),
    );
    let Some(Response::ReplyCode(text)) = m.mail().await else {
        panic!("expected a reply code")
    };
    assert!(
        text.starts_with(
            "550 5.7.230 Connecting server 10.200.0.2 runs an out-of-date version (15.0.1497.2)"
        ),
        "{text}"
    );
    m.send(Command::Quit).await;
    assert!(m.closed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_only_continues() {
    let r = start(true).await;
    r.board.set(
        "10.200.0.2/32".parse().unwrap(),
        Some(std::sync::Arc::new(block_notice("10.200.0.2/32"))),
    );
    let mut m = Mta::open(r.milter, "10.200.0.2").await;
    assert_eq!(m.mail().await, Some(Response::Continue));
    let count = |label: &str| {
        r.metrics
            .answers
            .get_or_create(&vec![("answer".into(), label.into())])
            .get()
    };
    assert_eq!((count("would_reject"), count("reject")), (1, 0));
    let req = b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=10.200.0.2\n\n";
    assert_eq!(policy_exchange(r.policy, req).await, "action=DUNNO\n\n");
    assert_eq!(count("would_reject"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_peers_close_only_their_own_session() {
    let r = start(false).await;
    // A slow peer: half a frame, then nothing.
    let mut slow = Mta::connect(r.milter).await;
    slow.sock
        .write_all(&[0, 0, 0, 13, b'O', 0, 0])
        .await
        .unwrap();
    // Garbage: an unknown command letter. Closed, counted once (with its one log line).
    let mut garbage = Mta::connect(r.milter).await;
    garbage.sock.write_all(&[0, 0, 0, 1, b'z']).await.unwrap();
    assert!(garbage.closed().await);
    assert_eq!(r.metrics.malformed.get(), 1);
    // Oversized: a length past the limit is refused before its bytes arrive.
    let mut big = Mta::connect(r.milter).await;
    big.sock
        .write_all(&(64u32 << 20).to_be_bytes())
        .await
        .unwrap();
    assert!(big.closed().await);
    assert_eq!(r.metrics.malformed.get(), 2);
    // Disconnect in the middle of a message.
    let mut gone = Mta::open(r.milter, "10.200.0.3").await;
    gone.mail().await;
    gone.send(Command::Header {
        name: Bytes::from_static(b"Received"),
        value: Bytes::from_static(b"from x"),
    })
    .await;
    drop(gone);
    // Everyone else is still served, the slow peer notwithstanding.
    let mut fine = Mta::open(r.milter, "10.200.0.4").await;
    assert_eq!(fine.mail().await, Some(Response::Continue));
    drop(slow);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_sessions() {
    let mut r = start(false).await;
    r.board.set(
        "10.200.0.0/32".parse().unwrap(),
        Some(std::sync::Arc::new(block_notice("10.200.0.0/32"))),
    );
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200u32 {
        let addr = r.milter;
        tasks.spawn(async move {
            let client = format!("10.200.{}.{}", i / 250, i % 250);
            let mut m = Mta::open(addr, &client).await;
            let first = m.mail().await;
            m.message(RECEIVED).await;
            m.send(Command::Quit).await;
            (i, first)
        });
    }
    let mut refused = 0;
    while let Some(res) = tasks.join_next().await {
        let (i, first) = res.unwrap();
        match first {
            Some(Response::ReplyCode(_)) => {
                assert_eq!(i, 0);
                refused += 1
            }
            Some(Response::Continue) => {}
            other => panic!("session {i}: {other:?}"),
        }
    }
    assert_eq!(refused, 1);
    for _ in 0..200 {
        r.sighting().await;
    }
}

async fn policy_exchange(addr: SocketAddr, req: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req).await.unwrap();
    let mut out = Vec::new();
    let mut b = [0u8; 1024];
    tokio::time::timeout(Duration::from_secs(10), async {
        while !out.ends_with(b"\n\n") {
            match s.read(&mut b).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&b[..n]),
            }
        }
    })
    .await
    .unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_service_answers_and_closes_on_malformed_requests() {
    let mut r = start(false).await;
    let req = b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=10.200.0.2\nhelo_name=ex01.corp.example.net\n\n";
    assert_eq!(policy_exchange(r.policy, req).await, "action=DUNNO\n\n");
    let (s, source) = r.sighting_from().await;
    assert_eq!(source, Channel::Policy);
    assert_eq!(s.helo.as_deref(), Some("ex01.corp.example.net"));
    r.board.set(
        "10.200.0.2/32".parse().unwrap(),
        Some(std::sync::Arc::new(block_notice("10.200.0.2/32"))),
    );
    let a = policy_exchange(r.policy, req).await;
    assert!(
        a.starts_with("action=550 5.7.230 Connecting server 10.200.0.2 "),
        "{a}"
    );
    // Unknown client: fail open.
    let a = policy_exchange(
        r.policy,
        b"request=smtpd_access_policy\nclient_address=unknown\n\n",
    )
    .await;
    assert_eq!(a, "action=DUNNO\n\n");
    // Malformed: the connection is closed without an answer.
    assert_eq!(policy_exchange(r.policy, b"garbage line\n\n").await, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_peers_are_closed_and_a_stalled_engine_never_holds_up_the_mta() {
    // The engine takes nothing and the inbox holds two sightings: evidence past it is dropped and
    // counted, and every session is still answered at once; the policy service still answers
    // DUNNO (fail open).
    let limits = Limits {
        idle: Duration::from_millis(300),
        write: Duration::from_secs(5),
    };
    let inbox = InboxLimits {
        sightings: 2,
        bytes: 1 << 20,
    };
    let r = start_with(false, 1, limits, inbox, false).await;
    for i in 0..3 {
        let mut m = Mta::open(r.milter, &format!("10.200.0.{}", 10 + i)).await;
        assert_eq!(m.mail().await, Some(Response::Continue));
        m.message(RECEIVED).await;
    }
    let req = b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=10.200.0.20\nhelo_name=ex01.corp.example.net\n\n";
    assert_eq!(policy_exchange(r.policy, req).await, "action=DUNNO\n\n");
    // The policy answer is written before its sighting is left: wait for it (bounded).
    for _ in 0..100 {
        if r.metrics.sightings_dropped.get() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(r.shared.inbox.waiting(), 2);
    assert_eq!(r.metrics.sightings.get(), 0);
    assert_eq!(r.metrics.sightings_dropped.get(), 2);
    // A peer that goes quiet mid-frame is closed after the idle limit, on both listeners.
    let mut slow = Mta::connect(r.milter).await;
    slow.sock.write_all(&[0, 0, 0, 13, b'O']).await.unwrap();
    assert!(slow.closed().await);
    let mut quiet = TcpStream::connect(r.policy).await.unwrap();
    quiet
        .write_all(b"request=smtpd_access_policy\n")
        .await
        .unwrap();
    let mut b = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(10), quiet.read(&mut b)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    assert_eq!(r.metrics.malformed.get(), 0, "idle is not malformed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn texts_and_report_only_change_under_running_listeners() {
    // What a reload does: new texts and flag on the board, no listener restarted.
    let r = start(false).await;
    r.board.set(
        "10.200.0.2/32".parse().unwrap(),
        Some(std::sync::Arc::new(block_notice("10.200.0.2/32"))),
    );
    let mut m = Mta::open(r.milter, "10.200.0.2").await;
    assert!(matches!(m.mail().await, Some(Response::ReplyCode(_))));
    r.board.set_replies(Texts::default(), true);
    let mut m = Mta::open(r.milter, "10.200.0.2").await;
    assert_eq!(m.mail().await, Some(Response::Continue));
    let texts = Texts {
        block: "go away {host}".into(),
        ..Texts::default()
    };
    r.board.set_replies(texts, false);
    let mut m = Mta::open(r.milter, "10.200.0.2").await;
    let Some(Response::ReplyCode(text)) = m.mail().await else {
        panic!("refused again")
    };
    assert!(
        text.starts_with("550 5.7.230 go away 10.200.0.2"),
        "{text:?}"
    );
    let req = b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=10.200.0.2\n\n";
    assert_eq!(
        policy_exchange(r.policy, req).await,
        "action=550 5.7.230 go away 10.200.0.2\n\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_of_many_concurrent_sessions_reaches_a_slow_engine_whole() {
    // 8 MTA connections at once (Postfix's smtpd processes), 400 messages, against an engine whose
    // queue has one slot and that spends 20 ms on each request (a durable store write): every
    // sighting arrives, none is dropped, in far fewer engine turns than messages. (One request
    // per message, as before the inbox, dropped a third of them at this rate.)
    const CLIENTS: usize = 8;
    const EACH: usize = 50;
    let mut r = start_with(false, 1, Limits::default(), InboxLimits::default(), true).await;
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let addr = r.milter;
        clients.spawn(async move {
            for i in 0..EACH {
                let mut m = Mta::open(addr, &format!("10.200.{c}.{i}")).await;
                assert_eq!(m.mail().await, Some(Response::Continue));
                m.message(RECEIVED).await;
                m.send(Command::Quit).await;
            }
        });
    }
    let (mut seen, mut turns) = (0, 0);
    while seen < CLIENTS * EACH {
        let inc = tokio::time::timeout(Duration::from_secs(30), r.engine.recv())
            .await
            .expect("evidence reaches the engine in time")
            .unwrap();
        let Request::MtaEvidenceBatch { sightings } = inc.request else {
            panic!("{:?}", inc.request);
        };
        seen += sightings.len();
        turns += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _ = inc.reply.send(crate::control::Reply::ok(()));
    }
    while let Some(done) = clients.join_next().await {
        done.unwrap();
    }
    assert_eq!(seen, CLIENTS * EACH);
    assert_eq!(r.metrics.sightings.get(), (CLIENTS * EACH) as u64);
    assert_eq!(r.metrics.sightings_dropped.get(), 0);
    assert!(
        turns * 2 < CLIENTS * EACH,
        "{turns} engine turns for {seen} sightings"
    );
}
