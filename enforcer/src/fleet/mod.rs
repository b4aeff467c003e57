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
use codec::Change;
use link::{LinkConfig, ToEngine, ToLink};
pub use metrics::FleetMetrics;
use replica::Replica;
pub use settings::FleetSettings;
use status::{FleetStatus, HostSeen, Shared};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// How often expired tombstones are dropped.
const GC_EVERY_SECS: i64 = 3600;
/// Queued changes handed to the link at a time; the rest waits in the store (a million-entry
/// import is published a window at a time, never held in memory whole).
const WINDOW: usize = 8192;
/// Remote changes applied together (one store transaction, batched kernel writes).
const APPLY_BATCH: usize = 4096;

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
    /// Changes in the store's queue (not yet published), as last read.
    queued: u64,
    /// The highest queued sequence number handed to the link, and how many handed are not yet
    /// published.
    handed_upto: u64,
    in_flight: usize,
    /// A full resync in progress: records received, records that changed something here.
    resync: (usize, usize),
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
        let queued = engine.store().fleet_outbox_len()?;
        metrics.queue.set(queued as i64);
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
            queued
        );
        tokio::spawn(link::run(
            cfg,
            link::Resume { last_id, epoch },
            from_engine,
            to_engine,
            metrics.clone(),
            status.clone(),
        ));
        let mut fleet = Fleet {
            replica,
            rx,
            tx: to_link,
            status,
            metrics,
            redis: settings.display.clone(),
            namespace: settings.namespace.clone(),
            last_gc: 0,
            queued,
            handed_upto: 0,
            in_flight: 0,
            resync: (0, 0),
        };
        fleet.feed_link(engine)?;
        Ok(fleet)
    }

    /// Hands the link the next queued changes, up to [`WINDOW`] unpublished at a time.
    fn feed_link<K: Kernel>(&mut self, engine: &Engine<K>) -> anyhow::Result<()> {
        self.queued = engine.store().fleet_outbox_len()?;
        self.metrics.queue.set(self.queued as i64);
        if self.in_flight >= WINDOW / 2 {
            return Ok(());
        }
        let page = engine
            .store()
            .fleet_outbox_page(self.handed_upto, WINDOW - self.in_flight)?;
        if let Some((last, _)) = page.last() {
            self.handed_upto = *last;
            self.in_flight += page.len();
            let _ = self.tx.send(ToLink::Publish(page));
        }
        Ok(())
    }

    /// The next event from the link.
    pub async fn recv(&mut self) -> Option<ToEngine> {
        self.rx.recv().await
    }

    /// The next event from the link if one is waiting.
    pub fn try_recv(&mut self) -> Option<ToEngine> {
        self.rx.try_recv().ok()
    }

    /// Applies one event from the link, and the ones already waiting behind it (up to
    /// [`APPLY_BATCH`]): consecutive remote changes are applied together. Failures (a store
    /// write) are logged: the change stays in Redis and the stream position is not advanced past
    /// it, so a restart applies it again.
    pub fn handle<K: Kernel>(&mut self, engine: &mut Engine<K>, first: ToEngine) {
        let mut remote: Vec<(String, Change)> = Vec::new();
        let mut next = Some(first);
        let mut budget = APPLY_BATCH;
        while let Some(ev) = next {
            match ev {
                ToEngine::Remote { id, change } => remote.push((id, *change)),
                other => {
                    self.apply_remote(engine, &mut remote);
                    if let Err(e) = self.try_handle(engine, other) {
                        log::error!("fleet: {e:#}");
                    }
                }
            }
            budget -= 1;
            next = if budget > 0 { self.try_recv() } else { None };
        }
        self.apply_remote(engine, &mut remote);
        self.after_local(engine);
    }

    fn apply_remote<K: Kernel>(
        &mut self,
        engine: &mut Engine<K>,
        remote: &mut Vec<(String, Change)>,
    ) {
        let Some((last_id, _)) = remote.last() else {
            return;
        };
        let last_id = last_id.clone();
        let changes: Vec<Change> = remote.drain(..).map(|(_, c)| c).collect();
        if let Err(e) = self
            .replica
            .apply_many(engine, &changes, Some(&last_id), now_ms())
        {
            log::error!(
                "fleet: applying {} changes from other hosts: {e:#}",
                changes.len()
            );
        }
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
            ToEngine::ResyncPart(changes) => {
                self.resync.0 += changes.len();
                self.resync.1 += self.replica.apply_many(engine, &changes, None, now_ms())?;
            }
            ToEngine::Resync { head } => {
                self.replica.set_position(engine, Some(&head), None)?;
                let (total, changed) = std::mem::take(&mut self.resync);
                log::info!(
                    "fleet: resync applied; {changed} of {total} records changed something here"
                );
            }
            ToEngine::Published(seqs) => {
                let n = seqs.len();
                self.replica.published(engine, seqs)?;
                self.in_flight = self.in_flight.saturating_sub(n);
                self.feed_link(engine)?;
            }
            ToEngine::Epoch { epoch, lost } => {
                self.replica.set_position(engine, None, Some(&epoch))?;
                if lost {
                    self.replica.republish_all(engine, now_ms())?;
                    self.feed_link(engine)?;
                }
            }
        }
        Ok(())
    }

    /// Publishes the engine's local changes (call after every request and timer tick).
    pub fn after_local<K: Kernel>(&mut self, engine: &mut Engine<K>) {
        match self.replica.take_local(engine, now_ms()) {
            Ok(0) => {}
            Ok(_) => {
                if let Err(e) = self.feed_link(engine) {
                    log::error!("fleet: reading the queue: {e:#}");
                }
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
        let queued = engine.store().fleet_outbox_len().unwrap_or(self.queued) as usize;
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
