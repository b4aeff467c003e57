//! The responder as a daemon listener (`--notice-responder`, `[notice] responder = true`): its two
//! listening sockets are created inside the MTA's namespace at bind, registered in the kernel's
//! `NOTICE_SOCKETS` map when it starts serving (the datapath is loaded by then; a restarted daemon
//! thereby replaces the sockets of the one before), and each steered connection gets one bounded
//! task.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::netns::sockets_in;
use super::session::{Session, Step};
use crate::daemon::gate::{Gate, ListenerMetrics};
use crate::daemon::listener::{Context, Listener};
use crate::daemon::settings::Settings;
use crate::datapath::NoticeSockets;
use crate::evidence::listen::{MtaMetrics, Shared};
use crate::evidence::milter::session::Sighting;
use crate::evidence::Channel;
use enforcer_common::maps::{NOTICE_SLOT_V4, NOTICE_SLOT_V6};

/// Sessions served at once. A steered client is inside its notice budget (a few connections per
/// sender and window), so this is generous; past it a connection is closed at once.
pub const MAX_SESSIONS: usize = 512;
/// Longest wait for the client's next line.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a whole session may last, however the client trickles its bytes.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a write may take.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The responder's own metrics (`enforcer_responder_*`), next to its gate's connection metrics. The
/// kernel's steering decisions are the `notice_steered` / `notice_fallback_*` reasons of
/// `enforcer_kernel_packets_total`.
#[derive(Clone, Default)]
pub struct ResponderMetrics {
    pub replies: Family<Vec<(String, String)>, Counter>,
    pub timeouts: Counter,
}

impl ResponderMetrics {
    fn register(&self, reg: &mut Registry) {
        reg.register(
            "replies",
            "SMTP replies sent, by code (450/550 are the notices)",
            self.replies.clone(),
        );
        reg.register(
            "timeouts",
            "Sessions closed because the client was too slow",
            self.timeouts.clone(),
        );
    }
}

pub struct ResponderListener {
    v4: std::net::TcpListener,
    v6: Option<std::net::TcpListener>,
    gate: Gate,
    metrics: ResponderMetrics,
    mta: MtaMetrics,
}

impl Listener for ResponderListener {
    const NAME: &'static str = "notice responder";
    const PREFIX: &'static str = "responder";
    type Metrics = (ListenerMetrics, ResponderMetrics, MtaMetrics);

    fn register((conns, metrics, mta): &Self::Metrics, reg: &mut Registry) {
        conns.register(reg);
        metrics.register(reg);
        mta.register(reg);
    }

    async fn bind(
        settings: &Settings,
        (conns, metrics, mta): &Self::Metrics,
    ) -> anyhow::Result<Option<Self>> {
        if !settings.mta.notice.responder {
            return Ok(None);
        }
        let netns = settings.mta.notice.netns.clone();
        let socks = tokio::task::spawn_blocking(move || sockets_in(&netns)).await??;
        Ok(Some(ResponderListener {
            v4: socks.v4,
            v6: socks.v6,
            gate: Gate::new("responder", MAX_SESSIONS, conns.clone()),
            metrics: metrics.clone(),
            mta: mta.clone(),
        }))
    }

    fn describe(&self) -> String {
        format!(
            "notice responder on {}{}",
            self.v4
                .local_addr()
                .map_or_else(|_| "?".into(), |a| a.to_string()),
            self.v6
                .as_ref()
                .and_then(|l| l.local_addr().ok())
                .map_or_else(String::new, |a| format!(" and {a}")),
        )
    }

    async fn serve(self, ctx: Context) -> anyhow::Result<()> {
        let mut map = NoticeSockets::open_pinned(&ctx.settings.pin_dir)?;
        map.register(NOTICE_SLOT_V4, &self.v4)?;
        if let Some(v6) = &self.v6 {
            map.register(NOTICE_SLOT_V6, v6)?;
        }
        log::info!("notice responder: sockets registered for the sk_lookup program");
        let v4 = TcpListener::from_std(self.v4)?;
        let v6 = self.v6.map(TcpListener::from_std).transpose()?;
        let shared = Arc::new(Shared::new(&ctx, self.mta));
        let host: Arc<str> = crate::fleet::settings::host_name()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into())
            .into();
        let accept = async {
            loop {
                let (conn, slot) = self.gate.accept(|| accept_either(&v4, v6.as_ref())).await;
                let (stream, peer) = conn;
                let Some(slot) = slot else {
                    log::warn!(
                        "notice responder: {MAX_SESSIONS} sessions open, the limit; closing the connection from {peer}"
                    );
                    continue;
                };
                let (sh, host, m) = (shared.clone(), host.clone(), self.metrics.clone());
                tokio::spawn(async move {
                    session(stream, peer, sh, &host, &m).await;
                    drop(slot);
                });
            }
        };
        tokio::select! {
            _ = accept => {}
            _ = shared.forward() => {}
            _ = ctx.shutdown.wait() => {}
        }
        shared.flush();
        Ok(())
    }
}

async fn accept_either(
    v4: &TcpListener,
    v6: Option<&TcpListener>,
) -> std::io::Result<(TcpStream, IpAddr)> {
    let (s, a) = match v6 {
        Some(v6) => tokio::select! {
            r = v4.accept() => r?,
            r = v6.accept() => r?,
        },
        None => v4.accept().await?,
    };
    let ip = match a.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a.ip(), IpAddr::V4),
        v4 => v4,
    };
    Ok((s, ip))
}

async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    mut sock: S,
    peer: IpAddr,
    sh: Arc<Shared>,
    host: &str,
    m: &ResponderMetrics,
) {
    sh.metrics.sessions.inc();
    let answer = sh.decide(peer);
    let mut s = Session::new(host, &answer);
    log::debug!(
        "notice responder: {peer} steered here, answering {}",
        s.code()
    );
    let deadline = Instant::now() + SESSION_TIMEOUT;
    let mut out = s.greeting().into_bytes();
    let mut buf = BytesMut::with_capacity(1024);
    let mut codes = vec![220u16];
    let mut refused = false;
    loop {
        for c in codes.drain(..) {
            if c == 450 || c == 550 {
                refused = true;
            }
            m.replies
                .get_or_create(&vec![("code".into(), c.to_string())])
                .inc();
        }
        if !out.is_empty() {
            let w = tokio::time::timeout(WRITE_TIMEOUT, sock.write_all(&out)).await;
            out.clear();
            if !matches!(w, Ok(Ok(()))) {
                break;
            }
        }
        let wait = READ_TIMEOUT.min(deadline.saturating_duration_since(Instant::now()));
        match tokio::time::timeout(wait, sock.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => {}
            Err(_) => {
                m.timeouts.inc();
                let _ = tokio::time::timeout(
                    WRITE_TIMEOUT,
                    sock.write_all(b"421 4.4.2 Timeout; closing connection\r\n"),
                )
                .await;
                break;
            }
        }
        if s.feed(&mut buf, &mut out, &mut codes) == Step::Close {
            for c in codes.drain(..) {
                m.replies
                    .get_or_create(&vec![("code".into(), c.to_string())])
                    .inc();
            }
            let _ = tokio::time::timeout(WRITE_TIMEOUT, sock.write_all(&out)).await;
            break;
        }
    }
    if refused {
        sh.metrics.count_answer(&answer, false);
    }
    if let Some(helo) = s.helo() {
        sh.report(
            Sighting {
                addr: peer,
                helo: Some(helo.to_owned()),
                headers: String::new(),
            },
            Channel::Responder,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::Request;
    use crate::evidence::reply::Board;

    fn shared() -> (
        Arc<Shared>,
        tokio::sync::mpsc::Receiver<crate::control::Incoming>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let sh = Shared {
            board: Board::default(),
            engine: tx,
            inbox: crate::evidence::inbox::Inbox::new(Default::default()),
            metrics: MtaMetrics::default(),
            limits: Default::default(),
        };
        (Arc::new(sh), rx)
    }

    /// A client that trickles one byte every 20 s (under the per-line timeout) still loses its slot
    /// when the session's time is up.
    #[tokio::test(start_paused = true)]
    async fn a_slowloris_client_is_closed_when_the_session_time_is_up() {
        let (sh, _rx) = shared();
        let m = ResponderMetrics::default();
        let (mut client, server) = tokio::io::duplex(4096);
        let started = Instant::now();
        let served = sh.metrics.sessions.clone();
        let task = tokio::spawn(async move {
            session(server, "10.200.1.2".parse().unwrap(), sh, "mx.test", &m).await;
            m
        });
        let mut seen = Vec::new();
        let mut buf = [0u8; 512];
        for b in b"EHLO slow.example.org".iter().cycle().take(100) {
            tokio::time::sleep(Duration::from_secs(20)).await;
            if client.write_all(&[*b]).await.is_err() {
                break;
            }
            if task.is_finished() {
                break;
            }
        }
        let m = task.await.unwrap();
        while let Ok(n) = client.read(&mut buf).await {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&seen);
        assert!(text.starts_with("220 mx.test ESMTP"), "{text}");
        assert!(
            text.ends_with("421 4.4.2 Timeout; closing connection\r\n"),
            "{text}"
        );
        let took = started.elapsed();
        assert!(
            took >= SESSION_TIMEOUT && took <= SESSION_TIMEOUT + Duration::from_secs(21),
            "{took:?}"
        );
        assert_eq!(m.timeouts.get(), 1);
        assert_eq!(served.get(), 1);
    }

    /// A silent client is closed after the per-line timeout; the HELO it sent reaches the engine.
    #[tokio::test(start_paused = true)]
    async fn a_silent_client_times_out_and_its_helo_is_evidence() {
        let (sh, mut rx) = shared();
        let m = ResponderMetrics::default();
        let (mut client, server) = tokio::io::duplex(4096);
        client
            .write_all(b"EHLO ex.sender.example\r\n")
            .await
            .unwrap();
        let started = Instant::now();
        session(
            server,
            "10.200.1.2".parse().unwrap(),
            sh.clone(),
            "mx.test",
            &m,
        )
        .await;
        sh.flush();
        assert!(started.elapsed() >= READ_TIMEOUT && started.elapsed() < SESSION_TIMEOUT);
        let mut out = String::new();
        client.read_to_string(&mut out).await.unwrap();
        assert!(
            out.contains("250 mx.test\r\n")
                && out.ends_with("421 4.4.2 Timeout; closing connection\r\n"),
            "{out}"
        );
        let inc = rx.try_recv().expect("the HELO was reported");
        match inc.request {
            Request::MtaEvidenceBatch { sightings } => {
                let [s] = sightings.as_slice() else {
                    panic!("one sighting: {sightings:?}")
                };
                assert_eq!(s.addr.to_string(), "10.200.1.2");
                assert_eq!(s.helo.as_deref(), Some("ex.sender.example"));
                assert_eq!(s.source, Channel::Responder);
            }
            other => panic!("{other:?}"),
        }
    }
}
