//! The control socket as a daemon listener: requests go to the engine in arrival order.

use log::info;
use prometheus_client::registry::Registry;

use super::ControlServer;
use crate::daemon::listener::{Context, Listener};
use crate::daemon::settings::Settings;

pub struct ControlListener(ControlServer);

impl Listener for ControlListener {
    const NAME: &'static str = "control";

    async fn bind(settings: &Settings, registry: &mut Registry) -> anyhow::Result<Option<Self>> {
        let metrics = crate::daemon::gate::ListenerMetrics::default();
        metrics.register(registry.sub_registry_with_prefix("control"));
        ControlServer::bind(&settings.socket).map(|s| Some(Self(s.with_metrics(&metrics))))
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
