//! The policy service listener: one task per Postfix connection (Postfix keeps it open for many
//! requests). Internal errors answer DUNNO (fail open); a malformed request closes the connection.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use prometheus_client::registry::Registry;

use super::codec::{encode_action, Decoder};
use super::session::answer;
use crate::daemon::gate::{Gate, ListenerMetrics};
use crate::daemon::listener::{Context, Listener};
use crate::daemon::settings::Settings;
use crate::evidence::listen::{Bound, MtaMetrics, Shared, Stream, MAX_SESSIONS};

/// The policy service as a daemon listener (`--policy`, `policy.listen`).
pub struct PolicyListener {
    bound: Bound,
    gate: Gate,
    metrics: MtaMetrics,
}

impl Listener for PolicyListener {
    const NAME: &'static str = "policy";
    const PREFIX: &'static str = "policy";
    type Metrics = (ListenerMetrics, MtaMetrics);

    fn register((conns, mta): &Self::Metrics, reg: &mut Registry) {
        conns.register(reg);
        mta.register(reg);
    }

    async fn bind(
        settings: &Settings,
        (conns, mta): &Self::Metrics,
    ) -> anyhow::Result<Option<Self>> {
        let Some(ep) = &settings.mta.policy else {
            return Ok(None);
        };
        let bound = Bound::bind(ep, "policy service").await?;
        Ok(Some(PolicyListener {
            bound,
            gate: Gate::new("policy", MAX_SESSIONS, conns.clone()),
            metrics: mta.clone(),
        }))
    }

    fn describe(&self) -> String {
        format!("policy service on {}", self.bound.endpoint())
    }

    async fn serve(self, ctx: Context) -> anyhow::Result<()> {
        let shared = Arc::new(Shared::new(&ctx, self.metrics));
        tokio::select! {
            _ = serve(self.bound, shared.clone(), self.gate) => {}
            _ = shared.forward() => {}
            _ = ctx.shutdown.wait() => {}
        }
        shared.flush();
        Ok(())
    }
}

/// Serves the policy delegation protocol on `bound` until dropped.
pub async fn serve(bound: Bound, shared: Arc<Shared>, gate: Gate) {
    bound.serve(shared, gate, session).await
}

async fn session(mut sock: Box<dyn Stream>, peer: String, sh: Arc<Shared>) {
    let dec = Decoder::default();
    let mut buf = BytesMut::with_capacity(1024);
    let mut out = BytesMut::with_capacity(256);
    loop {
        loop {
            let req = match dec.decode(&mut buf) {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    sh.metrics.malformed.inc();
                    log::warn!("policy session from {peer}: {e}; closing this connection");
                    return;
                }
            };
            let report_only = sh.report_only();
            let action = match answer(&req, report_only, |ip| sh.decide(ip)) {
                Ok(o) => {
                    if let Some(a) = &o.answered {
                        sh.metrics.count_answer(a, report_only);
                    }
                    if let Some(s) = o.sighting {
                        sh.report(s, crate::evidence::Channel::Policy);
                    }
                    o.action
                }
                Err(e) => {
                    log::debug!("policy request from {peer}: {e}; answering DUNNO");
                    "DUNNO".to_owned()
                }
            };
            encode_action(&action, &mut out);
        }
        if !out.is_empty() {
            let res = tokio::time::timeout(sh.limits.write, sock.write_all(&out)).await;
            out.clear();
            if !matches!(res, Ok(Ok(()))) {
                return;
            }
        }
        match tokio::time::timeout(sh.limits.idle, sock.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => {}
            Err(_) => {
                log::info!(
                    "policy session from {peer}: idle for {:?}; closing it",
                    sh.limits.idle
                );
                return;
            }
        }
    }
}
