//! Evidence that arrives from the MTA enforcer protects, and the answers the refused sender reads:
//! the milter and the Postfix policy service. Codecs and sessions are sans-IO; `listen` and each
//! `listener` are the thin tokio shell.

mod attribute;
pub mod listen;
pub mod milter;
pub mod policy;
pub mod reply;
pub use attribute::attribute;

use std::sync::Arc;

use tokio::sync::mpsc;

use listen::{Bound, Endpoint, Limits, ListenerMetrics, Shared};
use milter::session::Sighting;
use reply::{Board, Texts};

/// Evidence queued for the engine at most; past this the listeners drop (and count) new evidence
/// rather than wait: the MTA is never held up by the engine.
pub const SIGHTING_QUEUE: usize = 4096;

/// Where the MTA listeners listen and what they answer (flags and `[milter]`, `[policy]`,
/// `[replies]` in the configuration file).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MtaSettings {
    pub milter: Option<Endpoint>,
    pub policy: Option<Endpoint>,
    pub texts: Texts,
}

impl MtaSettings {
    /// True when a channel that can show a refused sender the reply text is configured (a
    /// requirement of the `notice` refusal).
    pub fn has_notice_channel(&self) -> bool {
        self.milter.is_some() || self.policy.is_some()
    }
}

/// The bound MTA listeners, not yet serving.
pub struct MtaListeners {
    milter: Option<Bound>,
    policy: Option<Bound>,
    milter_metrics: ListenerMetrics,
    policy_metrics: ListenerMetrics,
    texts: Texts,
}

impl MtaListeners {
    /// Binds every configured listener (before the datapath starts, so a taken port is a usage error
    /// that leaves nothing half-started).
    pub async fn bind(s: &MtaSettings) -> anyhow::Result<Self> {
        let milter = match &s.milter {
            Some(ep) => Some(Bound::bind(ep, "milter").await?),
            None => None,
        };
        let policy = match &s.policy {
            Some(ep) => Some(Bound::bind(ep, "policy service").await?),
            None => None,
        };
        Ok(MtaListeners {
            milter,
            policy,
            milter_metrics: ListenerMetrics::default(),
            policy_metrics: ListenerMetrics::default(),
            texts: s.texts.clone(),
        })
    }

    /// Registers `enforcer_milter_*` and `enforcer_policy_*`.
    pub fn register(&self, reg: &mut prometheus_client::registry::Registry) {
        if self.milter.is_some() {
            self.milter_metrics
                .register(reg.sub_registry_with_prefix("milter"));
        }
        if self.policy.is_some() {
            self.policy_metrics
                .register(reg.sub_registry_with_prefix("policy"));
        }
    }

    /// The endpoints actually bound, for the start-up log.
    pub fn endpoints(&self) -> Vec<(&'static str, Endpoint)> {
        let mut v = Vec::new();
        if let Some(b) = &self.milter {
            v.push(("milter", b.endpoint()));
        }
        if let Some(b) = &self.policy {
            v.push(("policy service", b.endpoint()));
        }
        v
    }

    /// Starts serving on the current tokio runtime; evidence arrives on the returned receiver (which
    /// never yields when no listener is configured).
    pub fn start(self, board: Board, report_only: bool) -> mpsc::Receiver<Sighting> {
        let (tx, rx) = mpsc::channel(SIGHTING_QUEUE);
        let shared = |metrics: ListenerMetrics| {
            Arc::new(Shared {
                board: board.clone(),
                texts: self.texts.clone(),
                report_only,
                sightings: tx.clone(),
                metrics,
                limits: Limits::default(),
            })
        };
        if let Some(b) = self.milter {
            let sh = shared(self.milter_metrics.clone());
            tokio::spawn(milter::listener::serve(b, sh, Default::default()));
        }
        if let Some(b) = self.policy {
            let sh = shared(self.policy_metrics.clone());
            tokio::spawn(policy::listener::serve(b, sh));
        }
        rx
    }
}

#[cfg(test)]
mod tests;
