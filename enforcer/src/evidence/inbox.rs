//! Where an MTA listener's sessions leave their evidence for the engine. A session never waits for
//! the engine: it appends to a bounded buffer and goes on answering the MTA. One forwarding task per
//! listener hands everything buffered to the engine as one batch (one engine turn, one store
//! transaction however many messages it holds), after a short linger so a burst travels together.
//! While the engine works on a batch the next one gathers here; only when the buffer is full is
//! evidence dropped, counted and logged (at most one line per [`DROP_LOG_EVERY`]).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, Notify};

use super::listen::MtaMetrics;
use super::milter::session::Sighting;
use super::Channel;
use crate::control::protocol::MtaSighting;
use crate::control::{Incoming, Request};

/// How long the forwarder waits after the first sighting of a batch before handing it over.
pub const LINGER: Duration = Duration::from_millis(100);
/// At most one log line about dropped evidence this often.
pub const DROP_LOG_EVERY: Duration = Duration::from_secs(10);

/// How much evidence may wait for the engine.
#[derive(Clone, Copy, Debug)]
pub struct InboxLimits {
    /// Sightings waiting at once.
    pub sightings: usize,
    /// Header and HELO bytes waiting at once (a milter session keeps at most 64 KiB of headers).
    pub bytes: usize,
}

impl Default for InboxLimits {
    /// About 100 s of mail at 1000 messages/s before anything is dropped, in at most 64 MiB.
    fn default() -> Self {
        InboxLimits {
            sightings: 100_000,
            bytes: 64 << 20,
        }
    }
}

#[derive(Default)]
struct Pending {
    sightings: Vec<MtaSighting>,
    bytes: usize,
    /// Dropped since the last log line, and when that line was written.
    unlogged: u64,
    logged_at: Option<Instant>,
}

/// The buffer between one listener's sessions and the engine.
pub struct Inbox {
    pending: Mutex<Pending>,
    ready: Notify,
    limits: InboxLimits,
}

impl Inbox {
    pub fn new(limits: InboxLimits) -> Self {
        Inbox {
            pending: Mutex::new(Pending::default()),
            ready: Notify::new(),
            limits,
        }
    }

    /// Leaves a sighting for the engine; never waits. False (and counted in `sightings_dropped`)
    /// when the buffer is full.
    pub fn push(&self, s: Sighting, source: Channel, metrics: &MtaMetrics) -> bool {
        let size = s.headers.len() + s.helo.as_ref().map_or(0, String::len);
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.sightings.len() >= self.limits.sightings || p.bytes + size > self.limits.bytes {
            metrics.sightings_dropped.inc();
            p.unlogged += 1;
            let due = p.logged_at.is_none_or(|t| t.elapsed() >= DROP_LOG_EVERY);
            if due {
                log::warn!(
                    "{}: the engine is behind; {} sightings dropped since the last report ({} waiting, \
                     the limit); the mail itself is never held",
                    source.id(),
                    p.unlogged,
                    p.sightings.len()
                );
                p.unlogged = 0;
                p.logged_at = Some(Instant::now());
            }
            return false;
        }
        p.bytes += size;
        p.sightings.push(MtaSighting {
            addr: s.addr,
            helo: s.helo,
            headers: s.headers,
            source,
        });
        drop(p);
        self.ready.notify_one();
        true
    }

    /// Everything waiting, oldest first.
    fn take(&self) -> Vec<MtaSighting> {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.bytes = 0;
        std::mem::take(&mut p.sightings)
    }

    /// Sightings waiting now.
    pub fn waiting(&self) -> usize {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .sightings
            .len()
    }

    /// Hands batches to `engine` until the engine's queue closes: waits for a first sighting,
    /// lingers, sends everything waiting as one request and waits for the engine's reply before the
    /// next batch (so at most one batch per listener is in the engine's queue). Counts what it
    /// hands over in `sightings`.
    pub async fn forward(&self, engine: mpsc::Sender<Incoming>, metrics: MtaMetrics) {
        loop {
            self.ready.notified().await;
            tokio::time::sleep(LINGER).await;
            let sightings = self.take();
            if sightings.is_empty() {
                continue;
            }
            let n = sightings.len() as u64;
            let (reply, answer) = oneshot::channel();
            let request = Request::MtaEvidenceBatch { sightings };
            if engine.send(Incoming { request, reply }).await.is_err() {
                return;
            }
            metrics.sightings.inc_by(n);
            // The reply only says how the batch went; the engine logs failures itself.
            let _ = answer.await;
        }
    }

    /// Hands everything waiting to the engine if its queue has room now; else it is dropped and
    /// counted. For a listener that stops.
    pub fn flush(&self, engine: &mpsc::Sender<Incoming>, metrics: &MtaMetrics) {
        let sightings = self.take();
        if sightings.is_empty() {
            return;
        }
        let n = sightings.len() as u64;
        let (reply, _) = oneshot::channel();
        let request = Request::MtaEvidenceBatch { sightings };
        match engine.try_send(Incoming { request, reply }) {
            Ok(()) => {
                metrics.sightings.inc_by(n);
            }
            Err(_) => {
                metrics.sightings_dropped.inc_by(n);
                log::warn!(
                    "{n} sightings dropped: the listener stopped while the engine was behind"
                );
            }
        }
    }
}
