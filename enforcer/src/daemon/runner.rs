//! The tokio shell around the engine: requests from the listeners in (one queue, applied one at a
//! time in arrival order), one timer for the next change.

use super::engine::{Engine, EngineSettings, Reconciled};
use super::kernel::Kernel;
use crate::control::{Incoming, Reply, Request};
use crate::fleet::link::ToEngine;
use crate::fleet::Fleet;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// A reload's new engine settings and where to say how applying them went.
pub type Reconfigure = (EngineSettings, oneshot::Sender<anyhow::Result<Reconciled>>);

/// Longest single sleep: the wake-up time is re-read at least this often, so a wall-clock step
/// (NTP, suspend) delays a change by at most this much. This re-arms one timer; it scans nothing.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// How often the engine compares kernel entries with the store, and how many per round.
const SELF_CHECK: Duration = Duration::from_secs(30);
const SELF_CHECK_BUDGET: usize = 4096;

/// Unix seconds now.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn until(at: i64) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let at = Duration::from_secs(at.max(0) as u64);
    at.saturating_sub(now).min(MAX_SLEEP)
}

/// Runs the engine on the requests from `rx` until `shutdown` completes or every sender is gone.
pub async fn run<K: Kernel>(
    engine: Engine<K>,
    rx: mpsc::Receiver<Incoming>,
    shutdown: impl Future<Output = ()>,
) {
    run_with(engine, rx, None, shutdown).await
}

/// The next event from the fleet link; never, without a fleet.
async fn fleet_event(fleet: &mut Option<Fleet>) -> Option<ToEngine> {
    match fleet {
        Some(f) => f.recv().await,
        None => std::future::pending().await,
    }
}

/// [`run`], with the fleet next to the engine: changes from other hosts are merged in between
/// requests, and local changes are queued for them after each request. (The fleet is not a
/// listener: merging records is not something a request can express.)
pub async fn run_with<K: Kernel>(
    engine: Engine<K>,
    rx: mpsc::Receiver<Incoming>,
    fleet: Option<Fleet>,
    shutdown: impl Future<Output = ()>,
) {
    let (_keep, reload) = mpsc::channel(1);
    run_with_reload(engine, rx, fleet, reload, shutdown).await
}

/// [`run_with`], also applying new settings from a reload (SIGHUP) between two requests.
pub async fn run_with_reload<K: Kernel>(
    mut engine: Engine<K>,
    mut rx: mpsc::Receiver<Incoming>,
    mut fleet: Option<Fleet>,
    mut reload: mpsc::Receiver<Reconfigure>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    engine.tick(unix_now());
    let mut check = tokio::time::interval(SELF_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    check.tick().await;
    loop {
        let clock = crate::datapath::Clock::now();
        engine.check_clock(clock.unix_ns(), clock.boot_ns());
        let sleep = async {
            match engine.next_wakeup() {
                Some(at) => tokio::time::sleep(until(at)).await,
                None => tokio::time::sleep(MAX_SLEEP).await,
            }
        };
        tokio::select! {
            _ = &mut shutdown => break,
            inc = rx.recv() => match inc {
                Some(inc) => {
                    if let (Request::FleetStatus {}, Some(f)) = (&inc.request, &fleet) {
                        let _ = inc.reply.send(Reply::ok(f.status(&engine)));
                        continue;
                    }
                    // A bug reached by one request must not take the control plane down with it;
                    // the store stays the truth, and a restart rebuilds everything from it.
                    let reply = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        engine.handle(inc.request, unix_now())
                    }))
                    .unwrap_or_else(|_| {
                        log::error!("a control request panicked; the daemon carries on");
                        crate::control::Reply::internal("internal error while serving the request (see the daemon log)")
                    });
                    // Queued durably for the fleet before the caller is told.
                    if let Some(f) = fleet.as_mut() {
                        f.after_local(&mut engine);
                    }
                    let _ = inc.reply.send(reply);
                }
                None => break,
            },
            Some((settings, done)) = reload.recv() => {
                let _ = done.send(engine.reconfigure(settings, unix_now()));
                super::boot::return_freed_memory();
            }
            ev = fleet_event(&mut fleet) => match (ev, fleet.as_mut()) {
                (Some(ev), Some(f)) => f.handle(&mut engine, ev),
                // The link only stops when the daemon does.
                _ => {
                    log::error!("fleet: the Redis link stopped; enforcing on without the fleet");
                    fleet = None;
                }
            },
            _ = sleep => engine.tick(unix_now()),
            _ = check.tick() => {
                let repaired = engine.self_check(unix_now(), SELF_CHECK_BUDGET);
                if repaired > 0 {
                    log::warn!("self-check repaired {repaired} kernel entries");
                }
            }
        }
    }
}
