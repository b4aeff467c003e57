//! The daemon's listeners, in one place: [`Listeners::bind`] claims every address before the
//! datapath is touched, [`Listeners::start`] starts them all the same way once it is up.

use prometheus_client::registry::Registry;
use tokio::task::JoinSet;

use super::listener::{start, Context, Listener};
use super::settings::Settings;
use crate::control::ControlListener;
use crate::error::UsageError;
use crate::evidence::milter::listener::MilterListener;
use crate::evidence::policy::listener::PolicyListener;
use crate::evidence::probe::listener::ProbeListener;
use crate::evidence::responder::listener::ResponderListener;
use crate::metrics::MetricsListener;

/// Every listener the settings ask for, bound and not yet serving.
pub struct Listeners {
    metrics: Option<MetricsListener>,
    control: Option<ControlListener>,
    milter: Option<MilterListener>,
    policy: Option<PolicyListener>,
    probe: Option<ProbeListener>,
    responder: Option<ResponderListener>,
}

/// Binds one listener; a failure is the operator's to fix (address taken, socket of another
/// daemon), so it is a usage error naming the listener's own problem.
async fn bind<L: Listener>(
    settings: &Settings,
    registry: &mut Registry,
) -> anyhow::Result<Option<L>> {
    L::bind(settings, registry)
        .await
        .map_err(|e| UsageError(format!("{e:#}")).into())
}

impl Listeners {
    pub async fn bind(settings: &Settings, registry: &mut Registry) -> anyhow::Result<Self> {
        Ok(Self {
            metrics: bind(settings, registry).await?,
            control: bind(settings, registry).await?,
            milter: bind(settings, registry).await?,
            policy: bind(settings, registry).await?,
            probe: bind(settings, registry).await?,
            responder: bind(settings, registry).await?,
        })
    }

    pub fn start(self, tasks: &mut JoinSet<anyhow::Result<()>>, ctx: &Context) {
        if let Some(l) = self.metrics {
            start(tasks, l, ctx);
        }
        if let Some(l) = self.control {
            start(tasks, l, ctx);
        }
        if let Some(l) = self.milter {
            start(tasks, l, ctx);
        }
        if let Some(l) = self.policy {
            start(tasks, l, ctx);
        }
        if let Some(l) = self.probe {
            start(tasks, l, ctx);
        }
        if let Some(l) = self.responder {
            start(tasks, l, ctx);
        }
    }
}
