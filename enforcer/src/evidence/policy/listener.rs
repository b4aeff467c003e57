//! The policy service listener: one task per Postfix connection (Postfix keeps it open for many
//! requests). Internal errors answer DUNNO (fail open); a malformed request closes the connection.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::codec::{encode_action, Decoder};
use super::session::answer;
use crate::evidence::listen::{Bound, Shared, Stream};

/// Serves the policy delegation protocol on `bound` forever.
pub async fn serve(bound: Bound, shared: Arc<Shared>) {
    bound.serve(shared, "policy service", session).await
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
            let action = match answer(&req, sh.report_only, |ip| sh.decide(ip)) {
                Ok(o) => {
                    if let Some(a) = &o.answered {
                        sh.metrics.count_answer(a, sh.report_only);
                    }
                    if let Some(s) = o.sighting {
                        sh.report(s);
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
