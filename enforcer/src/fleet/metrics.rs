//! Fleet metrics, registered under the caller's sub-registry (`enforcer_fleet_*`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

type Labels = Vec<(String, String)>;

#[derive(Clone, Default)]
pub struct FleetMetrics {
    /// 1 while connected to Redis.
    pub connected: Gauge,
    /// Changes published to the stream.
    pub sent: Counter,
    /// Remote changes that changed something here.
    pub applied: Counter,
    /// Remote changes that added nothing (already known: a replay, or older than what is known).
    pub duplicate: Counter,
    /// Remote changes refused by validation, by reason.
    pub rejected: Family<Labels, Counter>,
    /// Full resyncs from the keyspace (first start, away longer than the stream keeps, Redis lost data).
    pub resyncs: Counter,
    /// Seconds since this host was last caught up with the change log (0 while it is).
    pub lag: Gauge<f64, AtomicU64>,
    /// Local changes queued and not yet published.
    pub queue: Gauge,
}

impl FleetMetrics {
    pub fn register(&self, reg: &mut Registry) {
        reg.register(
            "connected",
            "1 while connected to the fleet's Redis",
            self.connected.clone(),
        );
        reg.register(
            "changes_sent",
            "Changes published to the fleet",
            self.sent.clone(),
        );
        reg.register(
            "changes_applied",
            "Changes from other hosts that changed something here",
            self.applied.clone(),
        );
        reg.register(
            "changes_duplicate",
            "Changes from other hosts that added nothing (already known)",
            self.duplicate.clone(),
        );
        reg.register(
            "changes_rejected",
            "Changes read from Redis and refused by validation, by reason",
            self.rejected.clone(),
        );
        reg.register(
            "resyncs",
            "Full resyncs from the fleet's current records",
            self.resyncs.clone(),
        );
        reg.register(
            "lag_seconds",
            "Seconds since this host was last caught up with the fleet's change log",
            self.lag.clone(),
        );
        reg.register(
            "queue_length",
            "Local changes queued and not yet published",
            self.queue.clone(),
        );
    }

    pub fn reject(&self, reason: &str) {
        self.rejected
            .get_or_create(&vec![("reason".into(), reason.into())])
            .inc();
    }
}
