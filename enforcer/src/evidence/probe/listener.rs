//! The probe as one daemon component: reads first-seen events from the kernel's ring buffer
//! (readiness through tokio's `AsyncFd`), filters them through the hard limits and probes what is
//! left, feeding each transcript to the engine.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use prometheus_client::registry::Unit;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};

use super::limits::{Cache, Rate};
use super::scope::{canonical, excluded, own_addresses};
use super::session::{Session, Step, Transcript};
use super::ProbeSettings;
use crate::control::Request;
use crate::daemon::listener::{Context, Listener};
use crate::daemon::settings::Settings;
use crate::datapath::maps::{FirstSeenCounts, FirstSeenMaps};
use enforcer_common::first_seen::FirstSeenEvent;

/// New sources waiting for the prober; beyond this the reader counts them as skipped.
const QUEUE: usize = 1024;

type Labels = Vec<(String, String)>;

/// The probe's metrics (`enforcer_probe_*`).
#[derive(Clone)]
pub struct ProbeMetrics {
    pub events: Counter,
    pub events_lost: Counter,
    pub events_over_budget: Counter,
    pub started: Counter,
    pub succeeded: Counter,
    pub failed: Counter,
    pub timed_out: Counter,
    pub skipped: Family<Labels, Counter>,
    /// Seconds from connect to QUIT (or to the failure), by outcome.
    pub duration: Family<Labels, Histogram, fn() -> Histogram>,
}

impl Default for ProbeMetrics {
    fn default() -> Self {
        Self {
            events: Counter::default(),
            events_lost: Counter::default(),
            events_over_budget: Counter::default(),
            started: Counter::default(),
            succeeded: Counter::default(),
            failed: Counter::default(),
            timed_out: Counter::default(),
            skipped: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
        }
    }
}

/// 5 ms to ~10 s: a greeting on a LAN to a tarpitting server near the read timeout.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 12))
}

impl ProbeMetrics {
    fn register(&self, reg: &mut Registry) {
        reg.register(
            "first_seen_events",
            "First-seen events read from the kernel",
            self.events.clone(),
        );
        reg.register(
            "first_seen_lost",
            "First-seen events the kernel lost to a full ring buffer",
            self.events_lost.clone(),
        );
        reg.register(
            "first_seen_over_budget",
            "New sources the kernel did not report because its per-CPU events-per-second budget was spent",
            self.events_over_budget.clone(),
        );
        reg.register("started", "Probes started", self.started.clone());
        reg.register(
            "succeeded",
            "Probes that read a greeting (and the EHLO response)",
            self.succeeded.clone(),
        );
        reg.register(
            "failed",
            "Probes that failed (refused, closed, not SMTP)",
            self.failed.clone(),
        );
        reg.register("timed_out", "Probes that timed out", self.timed_out.clone());
        reg.register_with_unit(
            "duration",
            "How long probes took, from connect to QUIT or failure, by outcome (succeeded, failed, timed_out)",
            Unit::Seconds,
            self.duration.clone(),
        );
        reg.register(
            "skipped",
            "New sources not probed, by reason (private, special, own_address, cached, rate_limited, concurrency, queue_full)",
            self.skipped.clone(),
        );
    }

    fn took(&self, outcome: &str, started: Instant) {
        self.duration
            .get_or_create(&vec![("outcome".to_string(), outcome.to_string())])
            .observe(started.elapsed().as_secs_f64());
    }

    fn skip(&self, reason: &str) {
        self.skipped
            .get_or_create(&vec![("reason".to_string(), reason.to_string())])
            .inc();
    }
}

pub struct ProbeListener {
    settings: ProbeSettings,
    ehlo_name: String,
    metrics: ProbeMetrics,
}

impl Listener for ProbeListener {
    const NAME: &'static str = "probe";
    const PREFIX: &'static str = "probe";
    type Metrics = ProbeMetrics;

    fn register(metrics: &ProbeMetrics, registry: &mut Registry) {
        metrics.register(registry);
    }

    async fn bind(settings: &Settings, metrics: &ProbeMetrics) -> anyhow::Result<Option<Self>> {
        if !settings.probe.enabled {
            return Ok(None);
        }
        let metrics = metrics.clone();
        Ok(Some(Self {
            ehlo_name: settings
                .probe
                .ehlo_name
                .clone()
                .unwrap_or_else(super::default_ehlo_name),
            settings: settings.probe.clone(),
            metrics,
        }))
    }

    fn describe(&self) -> String {
        let s = &self.settings;
        format!(
            "greeting probe of first-seen sources: port {}, EHLO {}, {} at once, {}/s, each address once per {}{}",
            s.port,
            self.ehlo_name,
            s.concurrency,
            s.per_second,
            crate::duration::Span(s.cache_ttl),
            if s.allow_private { ", private ranges allowed" } else { "" }
        )
    }

    async fn serve(self, ctx: Context) -> anyhow::Result<()> {
        let maps = FirstSeenMaps::open_pinned(&ctx.settings.pin_dir)
            .context("opening the first-seen event ring")?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let prober = Prober {
            settings: self.settings,
            ehlo_name: Arc::from(self.ehlo_name.as_str()),
            metrics: self.metrics.clone(),
            ctx: ctx.clone(),
        };
        tokio::select! {
            r = read_events(maps, tx, self.metrics) => r,
            () = prober.run(rx) => Ok(()),
            () = ctx.shutdown.clone().wait() => Ok(()),
        }
    }
}

/// Reads events as the kernel writes them; once a second folds the kernel's loss counters into
/// the metrics.
async fn read_events(
    maps: FirstSeenMaps,
    tx: mpsc::Sender<IpAddr>,
    metrics: ProbeMetrics,
) -> anyhow::Result<()> {
    let FirstSeenMaps { events, state } = maps;
    let counts = FirstSeenMaps::counts_of(&state);
    let mut last = counts.unwrap_or_default();
    // SAFETY: the ring owns its map fd and keeps it open for as long as the AsyncFd holds it.
    let mut ring =
        unsafe { AsyncFd::register_with_interest(events, tokio::io::Interest::READABLE) }
            .context("watching the first-seen event ring")?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.context("waiting for first-seen events")?;
                let rb = guard.get_inner_mut();
                while let Some(item) = rb.next() {
                    let Some(ev) = decode(&item) else { continue };
                    metrics.events.inc();
                    if tx.try_send(ev).is_err() {
                        metrics.skip("queue_full");
                    }
                }
                guard.clear_ready();
            }
            _ = tick.tick() => {
                if let Ok(now) = FirstSeenMaps::counts_of(&state) {
                    fold(&metrics, &last, &now);
                    last = now;
                }
            }
        }
    }
}

fn fold(metrics: &ProbeMetrics, last: &FirstSeenCounts, now: &FirstSeenCounts) {
    metrics
        .events_lost
        .inc_by(now.lost.saturating_sub(last.lost));
    metrics
        .events_over_budget
        .inc_by(now.over_budget.saturating_sub(last.over_budget));
}

/// The source address of one ring record (IPv4 mapped into IPv6, as the kernel keys it).
pub fn decode(bytes: &[u8]) -> Option<IpAddr> {
    if bytes.len() < size_of::<FirstSeenEvent>() {
        return None;
    }
    // SAFETY: the length is checked; the kernel wrote a FirstSeenEvent (repr(C), plain data).
    let ev: FirstSeenEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    Some(canonical(IpAddr::V6(Ipv6Addr::from(ev.addr))))
}

struct Prober {
    settings: ProbeSettings,
    ehlo_name: Arc<str>,
    metrics: ProbeMetrics,
    ctx: Context,
}

impl Prober {
    async fn run(self, mut rx: mpsc::Receiver<IpAddr>) {
        let start = Instant::now();
        let secs = || start.elapsed().as_secs_f64();
        let mut cache = Cache::new(
            self.settings.cache_ttl.as_secs_f64(),
            self.settings.cache_size,
        );
        let mut rate = Rate::new(self.settings.per_second, secs());
        let slots = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        let mut own = own_addresses();
        let mut own_at = Instant::now();
        while let Some(addr) = rx.recv().await {
            if own_at.elapsed() > Duration::from_secs(60) {
                own = own_addresses();
                own_at = Instant::now();
            }
            if let Some(why) = excluded(addr, self.settings.allow_private, &own) {
                self.metrics.skip(why.id());
                continue;
            }
            let now = secs();
            if cache.contains(addr, now) {
                self.metrics.skip("cached");
                continue;
            }
            if !rate.take(now) {
                self.metrics.skip("rate_limited");
                continue;
            }
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                self.metrics.skip("concurrency");
                continue;
            };
            cache.admit(addr, now);
            self.metrics.started.inc();
            let (settings, name, metrics, engine) = (
                self.settings.clone(),
                self.ehlo_name.clone(),
                self.metrics.clone(),
                self.ctx.engine.clone(),
            );
            tokio::spawn(async move {
                let _permit = permit;
                let target = SocketAddr::new(addr, settings.port);
                let began = Instant::now();
                match probe(target, &name, &settings).await {
                    Ok(t) => {
                        metrics.succeeded.inc();
                        metrics.took("succeeded", began);
                        let reply = engine
                            .call(Request::ProbeEvidence {
                                addr,
                                transcript: t.text(),
                            })
                            .await;
                        log::debug!("probe of {addr}: {}", t.text().replace('\n', " | "));
                        if !reply.ok {
                            log::info!(
                                "probe of {addr}: the greeting named no server the classifier knows"
                            );
                        }
                    }
                    Err(Failure::Timeout) => {
                        metrics.timed_out.inc();
                        metrics.took("timed_out", began);
                        log::debug!("probe of {addr}: timed out");
                    }
                    Err(Failure::Failed(e)) => {
                        metrics.failed.inc();
                        metrics.took("failed", began);
                        log::debug!("probe of {addr}: {e}");
                    }
                }
            });
        }
    }
}

pub enum Failure {
    Timeout,
    Failed(String),
}

/// One probe: connect, greeting, EHLO, capabilities, QUIT. Bounded by the connect timeout, a read
/// timeout per read and four read timeouts for the whole dialogue.
pub async fn probe(
    target: SocketAddr,
    ehlo_name: &str,
    s: &ProbeSettings,
) -> Result<Transcript, Failure> {
    let mut stream = match tokio::time::timeout(s.connect_timeout, TcpStream::connect(target)).await
    {
        Err(_) => return Err(Failure::Timeout),
        Ok(Err(e)) => return Err(Failure::Failed(format!("connect: {e}"))),
        Ok(Ok(st)) => st,
    };
    let dialogue = async {
        let mut session = Session::new(ehlo_name);
        let mut buf = [0u8; 4096];
        loop {
            let n = match tokio::time::timeout(s.read_timeout, stream.read(&mut buf)).await {
                Err(_) => return Err(Failure::Timeout),
                Ok(Err(e)) => return Err(Failure::Failed(format!("read: {e}"))),
                Ok(Ok(n)) => n,
            };
            match session.feed(&buf[..n]) {
                Ok(Step::Read) => {}
                Ok(Step::Send(bytes)) => write(&mut stream, &bytes, s.read_timeout).await?,
                Ok(Step::Done(quit, t)) => {
                    // The transcript is complete; a server that does not take the QUIT is its loss.
                    let _ = write(&mut stream, &quit, s.read_timeout).await;
                    return Ok(t);
                }
                Err(e) => return Err(Failure::Failed(e.to_string())),
            }
        }
    };
    match tokio::time::timeout(s.read_timeout * 4, dialogue).await {
        Err(_) => Err(Failure::Timeout),
        Ok(r) => r,
    }
}

async fn write(stream: &mut TcpStream, bytes: &[u8], limit: Duration) -> Result<(), Failure> {
    match tokio::time::timeout(limit, stream.write_all(bytes)).await {
        Err(_) => Err(Failure::Timeout),
        Ok(Err(e)) => Err(Failure::Failed(format!("write: {e}"))),
        Ok(Ok(())) => Ok(()),
    }
}
