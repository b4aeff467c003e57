//! The control socket as a daemon listener: requests go to the engine in arrival order.

use log::info;
use prometheus_client::registry::Registry;

use super::ControlServer;
use crate::daemon::gate::ListenerMetrics;
use crate::daemon::listener::{Context, Listener};
use crate::daemon::settings::Settings;

pub struct ControlListener(ControlServer);

impl Listener for ControlListener {
    const NAME: &'static str = "control";

    const PREFIX: &'static str = "control";
    type Metrics = ListenerMetrics;

    fn register(metrics: &ListenerMetrics, registry: &mut Registry) {
        metrics.register(registry);
    }

    async fn bind(settings: &Settings, metrics: &ListenerMetrics) -> anyhow::Result<Option<Self>> {
        ControlServer::bind(&settings.socket).map(|s| Some(Self(s.with_metrics(metrics))))
    }

    fn describe(&self) -> String {
        format!("control socket {}", self.0.path().display())
    }

    async fn serve(self, ctx: Context) -> anyhow::Result<()> {
        tokio::select! {
            _ = self.0.serve(ctx.engine.sender()) => {}
            _ = ctx.shutdown.wait() => {}
        }
        // Dropping the server removes the socket file.
        info!("control socket closed");
        Ok(())
    }
}
