//! A fleet of edge hosts sharing senders and verdicts through Redis (`[fleet]` in the config).
//!
//! - `shared`: what is shared and the merge (a join semilattice: arrival order never matters);
//! - `hlc`: the hybrid logical clock ordering operator entries;
//! - `codec`: the wire format and the validation of everything read from Redis;
//! - `replica`: this host's copy, the durable outgoing queue, and the hand-over to the engine;
//! - `link`: the Redis connection (stream as change log, per-host hashes for full resync);
//! - `status`, `metrics`: `enforcer fleet status` and `enforcer_fleet_*`.
//!
//! Redis is never on the packet path: the kernel maps are written by the engine from its own store,
//! and the link only exchanges changes with the engine through channels.

pub mod codec;
pub mod hlc;
pub mod link;
pub mod metrics;
pub mod replica;
pub mod settings;
pub mod shared;
pub mod status;

#[cfg(test)]
mod tests;

use crate::daemon::{Engine, Kernel};
use link::{LinkConfig, ToEngine, ToLink};
pub use metrics::FleetMetrics;
use replica::{Applied, Replica};
pub use settings::FleetSettings;
use status::{FleetStatus, HostSeen, Shared};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// How often expired tombstones are dropped.
const GC_EVERY_SECS: i64 = 3600;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The daemon's fleet component: owned by the engine's task, next to the engine.
pub struct Fleet {
    replica: Replica,
    rx: mpsc::Receiver<ToEngine>,
    tx: mpsc::UnboundedSender<ToLink>,
    status: Shared,
    metrics: FleetMetrics,
    redis: String,
    namespace: String,
    last_gc: i64,
}

impl Fleet {
    /// Queues what the store has that the fleet has not seen and starts the link (inside a tokio
    /// runtime). Nothing here waits for Redis.
    pub fn start<K: Kernel>(
        settings: &FleetSettings,
        engine: &mut Engine<K>,
        metrics: FleetMetrics,
    ) -> anyhow::Result<Self> {
        let mut replica = Replica::open(
            &settings.name,
            engine,
            settings.tombstone_ttl.secs() as i64,
            metrics.clone(),
        )?;
        replica.catch_up_local(engine, now_ms())?;
        let outbox = engine.store().fleet_outbox()?;
        metrics.queue.set(outbox.len() as i64);
        let (last_id, epoch) = replica.position(engine)?;
        let (to_link, from_engine) = mpsc::unbounded_channel();
        let (to_engine, rx) = mpsc::channel(1024);
        let status = Shared::default();
        let cfg = LinkConfig {
            target: settings.target.clone(),
            namespace: settings.namespace.clone(),
            name: settings.name.clone(),
            stream_max_len: settings.stream_max_len,
        };
        log::info!(
            "fleet: {} as {} via {} ({} changes queued)",
            settings.namespace,
            settings.name,
            settings.display,
            outbox.len()
        );
        tokio::spawn(link::run(
            cfg,
            link::Resume {
                pending: outbox,
                last_id,
                epoch,
            },
            from_engine,
            to_engine,
            metrics.clone(),
            status.clone(),
        ));
        Ok(Fleet {
            replica,
            rx,
            tx: to_link,
            status,
            metrics,
            redis: settings.display.clone(),
            namespace: settings.namespace.clone(),
            last_gc: 0,
        })
    }

    /// The next event from the link.
    pub async fn recv(&mut self) -> Option<ToEngine> {
        self.rx.recv().await
    }

    /// The next event from the link if one is waiting.
    pub fn try_recv(&mut self) -> Option<ToEngine> {
        self.rx.try_recv().ok()
    }

    /// Applies one event from the link. Failures (a store write) are logged: the change stays in
    /// Redis and the stream position is not advanced past it, so a restart applies it again.
    pub fn handle<K: Kernel>(&mut self, engine: &mut Engine<K>, ev: ToEngine) {
        if let Err(e) = self.try_handle(engine, ev) {
            log::error!("fleet: {e:#}");
        }
        self.after_local(engine);
    }

    fn try_handle<K: Kernel>(
        &mut self,
        engine: &mut Engine<K>,
        ev: ToEngine,
    ) -> anyhow::Result<()> {
        match ev {
            ToEngine::Remote { id, change } => {
                self.replica.apply(engine, &change, Some(&id), now_ms())?;
            }
            ToEngine::Resync { head, changes } => {
                let mut changed = 0;
                for c in &changes {
                    if self.replica.apply(engine, c, None, now_ms())? == Applied::Changed {
                        changed += 1;
                    }
                }
                self.replica.set_position(engine, Some(&head), None)?;
                log::info!(
                    "fleet: resync applied; {changed} of {} records changed something here",
                    changes.len()
                );
            }
            ToEngine::Published(seqs) => self.replica.published(engine, seqs)?,
            ToEngine::Epoch { epoch, lost } => {
                self.replica.set_position(engine, None, Some(&epoch))?;
                if lost {
                    let items = self.replica.republish_all(engine, now_ms())?;
                    let _ = self.tx.send(ToLink::Publish(items));
                }
            }
        }
        Ok(())
    }

    /// Publishes the engine's local changes (call after every request and timer tick).
    pub fn after_local<K: Kernel>(&mut self, engine: &mut Engine<K>) {
        match self.replica.take_local(engine, now_ms()) {
            Ok(items) if items.is_empty() => {}
            Ok(items) => {
                let _ = self.tx.send(ToLink::Publish(items));
            }
            Err(e) => log::error!("fleet: queueing local changes: {e:#}"),
        }
        let now = (now_ms() / 1000) as i64;
        if now - self.last_gc >= GC_EVERY_SECS {
            self.last_gc = now;
            match self.replica.expire_tombstones(engine, now) {
                Ok(keys) if keys.is_empty() => {}
                Ok(keys) => {
                    let _ = self.tx.send(ToLink::Unpublish(keys));
                }
                Err(e) => log::error!("fleet: dropping expired tombstones: {e:#}"),
            }
        }
    }

    /// `enforcer fleet status`.
    pub fn status<K: Kernel>(&self, engine: &Engine<K>) -> FleetStatus {
        let now = (now_ms() / 1000) as i64;
        let queued = engine.store().fleet_outbox().map(|o| o.len()).unwrap_or(0);
        self.status.with(|s| {
            let lag = match (s.connected, s.caught_up) {
                (true, _) => s.lag_seconds,
                (false, Some(t)) => t.elapsed().as_secs_f64(),
                (false, None) => s.lag_seconds,
            };
            FleetStatus {
                name: self.replica.name().to_string(),
                namespace: self.namespace.clone(),
                redis: self.redis.clone(),
                connected: s.connected,
                since: s.since,
                last_error: s.last_error.clone(),
                last_id: s.last_id.clone(),
                lag_seconds: lag,
                queued,
                sent: s.sent,
                applied: self.metrics.applied.get(),
                rejected: s.rejected,
                resyncs: s.resyncs,
                hosts: s
                    .hosts
                    .iter()
                    .map(|(name, t)| HostSeen {
                        name: name.clone(),
                        last_seen: *t,
                        ago_seconds: (now - t).max(0),
                    })
                    .collect(),
            }
        })
    }
}
