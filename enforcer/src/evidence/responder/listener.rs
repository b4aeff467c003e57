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
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
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
    pub sessions: Counter,
    pub replies: Family<Vec<(String, String)>, Counter>,
    pub timeouts: Counter,
}

impl ResponderMetrics {
    fn register(&self, reg: &mut Registry) {
        reg.register(
            "sessions",
            "Steered SMTP sessions served",
            self.sessions.clone(),
        );
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

    async fn bind(settings: &Settings, registry: &mut Registry) -> anyhow::Result<Option<Self>> {
        if !settings.mta.notice.responder {
            return Ok(None);
        }
        let netns = settings.mta.notice.netns.clone();
        let socks = tokio::task::spawn_blocking(move || sockets_in(&netns)).await??;
        let reg = registry.sub_registry_with_prefix("responder");
        let conns = ListenerMetrics::default();
        conns.register(reg);
        let metrics = ResponderMetrics::default();
        metrics.register(reg);
        let mta = MtaMetrics::default();
        mta.register(reg);
        Ok(Some(ResponderListener {
            v4: socks.v4,
            v6: socks.v6,
            gate: Gate::new("responder", MAX_SESSIONS, conns),
            metrics,
            mta,
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

async fn session(
    mut sock: TcpStream,
    peer: IpAddr,
    sh: Arc<Shared>,
    host: &str,
    m: &ResponderMetrics,
) {
    m.sessions.inc();
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
