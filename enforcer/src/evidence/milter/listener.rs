//! The milter listener: one task per MTA connection drives a [`Session`] over the socket. A slow or
//! stuck peer only holds its own task; a malformed frame ends its session with one log line.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use prometheus_client::registry::Registry;

use super::codec::{Decoder, DEFAULT_MAX_FRAME};
use super::session::{Session, DEFAULT_MAX_HEADER_BYTES};
use crate::daemon::gate::{Gate, ListenerMetrics};
use crate::daemon::listener::{Context, Listener};
use crate::daemon::settings::Settings;
use crate::evidence::listen::{Bound, MtaMetrics, Shared, Stream, MAX_SESSIONS};

/// The milter as a daemon listener (`--milter`, `milter.listen`).
pub struct MilterListener {
    bound: Bound,
    gate: Gate,
    metrics: MtaMetrics,
}

impl Listener for MilterListener {
    const NAME: &'static str = "milter";
    const PREFIX: &'static str = "milter";
    type Metrics = (ListenerMetrics, MtaMetrics);

    fn register((conns, mta): &Self::Metrics, reg: &mut Registry) {
        conns.register(reg);
        mta.register(reg);
    }

    async fn bind(
        settings: &Settings,
        (conns, mta): &Self::Metrics,
    ) -> anyhow::Result<Option<Self>> {
        let Some(ep) = &settings.mta.milter else {
            return Ok(None);
        };
        let bound = Bound::bind(ep, "milter").await?;
        Ok(Some(MilterListener {
            bound,
            gate: Gate::new("milter", MAX_SESSIONS, conns.clone()),
            metrics: mta.clone(),
        }))
    }

    fn describe(&self) -> String {
        format!("milter on {}", self.bound.endpoint())
    }

    async fn serve(self, ctx: Context) -> anyhow::Result<()> {
        let shared = Arc::new(Shared::new(&ctx, self.metrics));
        tokio::select! {
            _ = serve(self.bound, shared.clone(), self.gate, MilterLimits::default()) => {}
            _ = shared.forward() => {}
            _ = ctx.shutdown.wait() => {}
        }
        shared.flush();
        Ok(())
    }
}

/// Per-session memory limits.
#[derive(Clone, Copy, Debug)]
pub struct MilterLimits {
    pub max_frame: usize,
    pub max_header_bytes: usize,
}

impl Default for MilterLimits {
    fn default() -> Self {
        MilterLimits {
            max_frame: DEFAULT_MAX_FRAME,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
        }
    }
}

/// Serves the milter protocol on `bound` until dropped.
pub async fn serve(bound: Bound, shared: Arc<Shared>, gate: Gate, limits: MilterLimits) {
    bound
        .serve(shared, gate, move |s, peer, sh| {
            session(s, peer, sh, limits)
        })
        .await
}

async fn session(mut sock: Box<dyn Stream>, peer: String, sh: Arc<Shared>, limits: MilterLimits) {
    let dec = Decoder::new(limits.max_frame);
    let report_only = sh.report_only();
    let mut sess = Session::new(report_only, limits.max_header_bytes);
    let mut buf = BytesMut::with_capacity(4096);
    let mut out = BytesMut::with_capacity(256);
    loop {
        loop {
            let cmd = match dec.decode(&mut buf) {
                Ok(Some(cmd)) => cmd,
                Ok(None) => break,
                Err(e) => {
                    sh.metrics.malformed.inc();
                    log::warn!("milter session from {peer}: {e}; closing this session");
                    return;
                }
            };
            let step = sess.handle(cmd, |ip| sh.decide(ip));
            if let Some(a) = &step.answered {
                sh.metrics.count_answer(a, report_only);
            }
            if let Some(s) = step.sighting {
                sh.report(s, crate::evidence::Channel::Milter);
            }
            if let Some(r) = step.response {
                r.encode(&mut out);
            }
            if step.close {
                let _ = flush(&mut sock, &mut out, &sh).await;
                return;
            }
        }
        if flush(&mut sock, &mut out, &sh).await.is_err() {
            return;
        }
        // Read exactly what the next frame still needs (at least its length word), so a peer can
        // never make us buffer more than one frame.
        let need = match dec.needed(&buf) {
            Ok(n) => n.max(1),
            Err(e) => {
                sh.metrics.malformed.inc();
                log::warn!("milter session from {peer}: {e}; closing this session");
                return;
            }
        };
        buf.reserve(need.max(4096).min(limits.max_frame + 4));
        match tokio::time::timeout(sh.limits.idle, sock.read_buf(&mut buf)).await {
            Ok(Ok(0)) => {
                if !buf.is_empty() {
                    log::debug!("milter session from {peer}: closed mid-frame");
                }
                return;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                log::debug!("milter session from {peer}: {e}");
                return;
            }
            Err(_) => {
                log::info!(
                    "milter session from {peer}: idle for {:?}; closing it",
                    sh.limits.idle
                );
                return;
            }
        }
    }
}

async fn flush(sock: &mut Box<dyn Stream>, out: &mut BytesMut, sh: &Shared) -> Result<(), ()> {
    if out.is_empty() {
        return Ok(());
    }
    let res = tokio::time::timeout(sh.limits.write, sock.write_all(out)).await;
    out.clear();
    match res {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}
