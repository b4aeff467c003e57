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

/// Every listener's metrics, registered once at start-up and kept across reloads.
#[derive(Clone, Default)]
pub struct ListenersMetrics {
    metrics: <MetricsListener as Listener>::Metrics,
    control: <ControlListener as Listener>::Metrics,
    milter: <MilterListener as Listener>::Metrics,
    policy: <PolicyListener as Listener>::Metrics,
    probe: <ProbeListener as Listener>::Metrics,
    responder: <ResponderListener as Listener>::Metrics,
}

fn register<L: Listener>(metrics: &L::Metrics, registry: &mut Registry) {
    L::register(metrics, registry.sub_registry_with_prefix(L::PREFIX));
}

impl ListenersMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        register::<MetricsListener>(&m.metrics, registry);
        register::<ControlListener>(&m.control, registry);
        register::<MilterListener>(&m.milter, registry);
        register::<PolicyListener>(&m.policy, registry);
        register::<ProbeListener>(&m.probe, registry);
        register::<ResponderListener>(&m.responder, registry);
        m
    }
}

/// Binds one listener; a failure is the operator's to fix (address taken, socket of another
/// daemon), so it is a usage error naming the listener's own problem.
async fn bind<L: Listener>(settings: &Settings, metrics: &L::Metrics) -> anyhow::Result<Option<L>> {
    L::bind(settings, metrics)
        .await
        .map_err(|e| UsageError(format!("{e:#}")).into())
}

impl Listeners {
    pub async fn bind(settings: &Settings, m: &ListenersMetrics) -> anyhow::Result<Self> {
        Ok(Self {
            metrics: bind(settings, &m.metrics).await?,
            control: bind(settings, &m.control).await?,
            milter: bind(settings, &m.milter).await?,
            policy: bind(settings, &m.policy).await?,
            probe: bind(settings, &m.probe).await?,
            responder: bind(settings, &m.responder).await?,
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
