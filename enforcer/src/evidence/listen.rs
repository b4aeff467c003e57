//! What both MTA listeners share: where they listen (`inet:HOST:PORT` or `unix:/path`), the state
//! every session reads (board, texts, report-only flag), the way evidence reaches the engine, limits
//! and metrics. Each listener (milter, policy) is one module implementing the daemon's `Listener`;
//! connection caps and accept back-off are the daemon's [`Gate`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::inbox::{Inbox, InboxLimits};
use super::milter::session::Sighting;
use super::reply::{answer, Answer, Board};
use super::Channel;
use crate::control::Incoming;
use crate::daemon::gate::Gate;
use crate::datapath::Clock;

/// Where a listener listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Inet(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Inet(a) => write!(f, "inet:{a}"),
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl std::str::FromStr for Endpoint {
    type Err = String;

    /// `inet:127.0.0.1:8895`, `inet:[::1]:8895` or `unix:/run/enforcer/milter.sock`.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(addr) = s.strip_prefix("inet:") {
            return addr.parse().map(Endpoint::Inet).map_err(|_| {
                format!("`{s}`: `{addr}` is not HOST:PORT (write inet:127.0.0.1:8895 or inet:[::1]:8895)")
            });
        }
        if let Some(path) = s.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(format!("`{s}`: the socket path must be absolute (write unix:/run/enforcer/milter.sock)"));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        Err(format!(
            "`{s}` is not a listen address; write inet:127.0.0.1:8895 or unix:/run/enforcer/milter.sock"
        ))
    }
}

/// Per-session limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// A session that sends no complete frame or request for this long is closed.
    pub idle: Duration,
    /// Writing one answer may take at most this long.
    pub write: Duration,
}

/// Sessions served at once; further connections are closed at once (the MTA's default action then
/// applies: `milter_default_action = accept`). Postfix opens one per smtpd process.
pub const MAX_SESSIONS: usize = 4096;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            idle: Duration::from_secs(600),
            write: Duration::from_secs(30),
        }
    }
}

/// One MTA listener's own metrics (`enforcer_milter_*` or `enforcer_policy_*`), next to the
/// connection metrics of its [`Gate`].
#[derive(Clone, Default)]
pub struct MtaMetrics {
    /// Sessions served (connections accepted within the listener's cap).
    pub sessions: Counter,
    /// Sessions closed for a malformed frame or request.
    pub malformed: Counter,
    /// Answers other than "continue": tempfail, reject, would_tempfail, would_reject.
    pub answers: Family<Vec<(String, String)>, Counter>,
    /// Evidence handed to the engine, and evidence dropped because the engine was so far behind
    /// that the listener's inbox was full.
    pub sightings: Counter,
    pub sightings_dropped: Counter,
}

impl MtaMetrics {
    pub fn register(&self, reg: &mut Registry) {
        reg.register(
            "sessions",
            "Sessions served (connections accepted within the listener's cap)",
            self.sessions.clone(),
        );
        reg.register(
            "malformed",
            "Sessions closed for malformed input",
            self.malformed.clone(),
        );
        reg.register(
            "answers",
            "Refusals answered (tempfail, reject) or, in report-only mode, counted (would_tempfail, would_reject)",
            self.answers.clone(),
        );
        reg.register(
            "sightings",
            "Evidence handed to the engine",
            self.sightings.clone(),
        );
        reg.register(
            "sightings_dropped",
            "Evidence dropped because the engine was behind and the listener's inbox was full",
            self.sightings_dropped.clone(),
        );
    }

    pub fn count_answer(&self, a: &Answer, report_only: bool) {
        let label = match (a, report_only) {
            (Answer::Continue, _) => return,
            (a, true) => a.would().unwrap_or("would_continue"),
            (Answer::Tempfail(_), false) => "tempfail",
            (Answer::Reject(_), false) => "reject",
        };
        self.answers
            .get_or_create(&vec![("answer".into(), label.into())])
            .inc();
    }
}

/// What every session of one listener reads.
pub struct Shared {
    /// Notices, texts and the report-only flag.
    pub board: Board,
    /// The engine's request queue, which [`Shared::forward`] feeds from `inbox`.
    pub engine: mpsc::Sender<Incoming>,
    /// Evidence the sessions left for the engine.
    pub inbox: Inbox,
    pub metrics: MtaMetrics,
    pub limits: Limits,
}

impl Shared {
    /// What the daemon's settings and engine give every session of one listener.
    pub fn new(ctx: &crate::daemon::listener::Context, metrics: MtaMetrics) -> Self {
        Shared {
            board: ctx.settings.engine.board.clone(),
            engine: ctx.engine.sender(),
            inbox: Inbox::new(InboxLimits::default()),
            metrics,
            limits: Limits::default(),
        }
    }

    /// The answer for a connect from `addr` now.
    pub fn decide(&self, addr: std::net::IpAddr) -> Answer {
        answer(
            self.board.lookup(addr).as_ref(),
            addr,
            &Clock::now(),
            &self.board.replies().texts,
        )
    }

    pub fn report_only(&self) -> bool {
        self.board.replies().report_only
    }

    /// Leaves evidence for the engine without waiting for it: the MTA is never held up by the
    /// engine; a full inbox drops it (counted and logged).
    pub fn report(&self, s: Sighting, source: Channel) {
        self.inbox.push(s, source, &self.metrics);
    }

    /// Hands the inbox to the engine in batches. Every listener that reports evidence runs this
    /// next to its accept loop (and [`Shared::flush`] when it stops), or its evidence never leaves
    /// the inbox.
    pub async fn forward(&self) {
        self.inbox
            .forward(self.engine.clone(), self.metrics.clone())
            .await
    }

    /// What is still waiting when the listener stops (shutdown, or a reload that moves it) goes
    /// to the engine if its queue has room.
    pub fn flush(&self) {
        self.inbox.flush(&self.engine, &self.metrics);
    }
}

/// A bound listening socket of either kind.
pub enum Bound {
    Inet(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener, UnixGuard),
}

/// Removes the socket file when the listener goes away.
pub struct UnixGuard(PathBuf);

impl Drop for UnixGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Bound {
    /// Binds `ep`; `what` names the listener in errors ("milter", "policy service").
    pub async fn bind(ep: &Endpoint, what: &str) -> anyhow::Result<Self> {
        match ep {
            Endpoint::Inet(a) => tokio::net::TcpListener::bind(a)
                .await
                .map(Bound::Inet)
                .with_context(|| {
                    format!("cannot listen for the {what} on {ep} (in use? choose another address)")
                }),
            Endpoint::Unix(p) => {
                if let Some(dir) = p.parent() {
                    std::fs::create_dir_all(dir).with_context(|| {
                        format!("creating {} for the {what} socket", dir.display())
                    })?;
                }
                // A socket file left by a daemon that was killed is in the way; a live one is not ours
                // to take over, which connecting tells apart.
                if p.exists() {
                    if std::os::unix::net::UnixStream::connect(p).is_ok() {
                        anyhow::bail!(
                            "cannot listen for the {what} on {ep}: another process serves it"
                        );
                    }
                    let _ = std::fs::remove_file(p);
                }
                let l = tokio::net::UnixListener::bind(p)
                    .with_context(|| format!("cannot listen for the {what} on {ep}"))?;
                // The MTA (user postfix) must be able to connect.
                use std::os::unix::fs::PermissionsExt as _;
                let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o666));
                Ok(Bound::Unix(l, UnixGuard(p.clone())))
            }
        }
    }

    /// The address actually bound (an `inet:` port 0 becomes the chosen port).
    pub fn endpoint(&self) -> Endpoint {
        match self {
            Bound::Inet(l) => {
                Endpoint::Inet(l.local_addr().expect("a bound TCP listener has an address"))
            }
            Bound::Unix(_, g) => Endpoint::Unix(g.0.clone()),
        }
    }

    /// Accepts connections until dropped, each served by `session` in its own task, at most the
    /// gate's cap at once.
    pub async fn serve<F, Fut>(self, shared: Arc<Shared>, gate: Gate, session: F)
    where
        F: Fn(Box<dyn Stream>, String, Arc<Shared>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        loop {
            let ((stream, peer), slot): ((Box<dyn Stream>, String), _) = match &self {
                Bound::Inet(l) => {
                    let ((s, a), slot) = gate.accept(|| l.accept()).await;
                    let _ = s.set_nodelay(true);
                    ((Box::new(s), a.to_string()), slot)
                }
                Bound::Unix(l, _) => {
                    let ((s, _), slot) = gate.accept(|| l.accept()).await;
                    ((Box::new(s), "unix".to_string()), slot)
                }
            };
            let Some(slot) = slot else {
                log::warn!(
                    "{}: {} sessions open, the limit; closing the connection from {peer}",
                    gate.name(),
                    gate.max_conns()
                );
                continue;
            };
            shared.metrics.sessions.inc();
            let fut = session(stream, peer, shared.clone());
            tokio::spawn(async move {
                fut.await;
                drop(slot);
            });
        }
    }
}

/// A connected MTA socket of either kind.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            "inet:127.0.0.1:8895".parse::<Endpoint>(),
            Ok(Endpoint::Inet("127.0.0.1:8895".parse().unwrap()))
        );
        assert_eq!(
            "inet:[::1]:10040".parse::<Endpoint>(),
            Ok(Endpoint::Inet("[::1]:10040".parse().unwrap()))
        );
        assert_eq!(
            "unix:/run/enforcer/milter.sock".parse::<Endpoint>(),
            Ok(Endpoint::Unix("/run/enforcer/milter.sock".into()))
        );
        assert!("inet:8895"
            .parse::<Endpoint>()
            .unwrap_err()
            .contains("HOST:PORT"));
        assert!("unix:rel.sock"
            .parse::<Endpoint>()
            .unwrap_err()
            .contains("absolute"));
        assert!("127.0.0.1:8895".parse::<Endpoint>().is_err());
        assert_eq!(
            "inet:127.0.0.1:8895"
                .parse::<Endpoint>()
                .unwrap()
                .to_string(),
            "inet:127.0.0.1:8895"
        );
    }
}
