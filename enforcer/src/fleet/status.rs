//! What `enforcer fleet status` shows: kept up to date by the link, read by the control socket.

use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The link's view, shared with the daemon's control path.
#[derive(Clone, Debug, Default)]
pub struct LinkStatus {
    pub connected: bool,
    /// Unix time of the last connect or disconnect.
    pub since: Option<u64>,
    pub last_error: Option<String>,
    /// Last stream id read.
    pub last_id: Option<String>,
    pub lag_seconds: f64,
    pub caught_up: Option<Instant>,
    pub sent: u64,
    pub rejected: u64,
    pub resyncs: u64,
    /// Every host's name and the Unix time it was last seen.
    pub hosts: Vec<(String, i64)>,
}

#[derive(Clone, Debug, Default)]
pub struct Shared(Arc<Mutex<LinkStatus>>);

impl Shared {
    pub fn with<T>(&self, f: impl FnOnce(&mut LinkStatus) -> T) -> T {
        // A poisoned lock only means a panic elsewhere mid-update of plain counters: keep going.
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }
}

/// `enforcer fleet status --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FleetStatus {
    pub name: String,
    pub namespace: String,
    /// Where Redis is (no password).
    pub redis: String,
    pub connected: bool,
    pub since: Option<u64>,
    pub last_error: Option<String>,
    pub last_id: Option<String>,
    pub lag_seconds: f64,
    /// Local changes not yet published.
    pub queued: usize,
    pub sent: u64,
    pub applied: u64,
    pub rejected: u64,
    pub resyncs: u64,
    pub hosts: Vec<HostSeen>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostSeen {
    pub name: String,
    pub last_seen: i64,
    pub ago_seconds: i64,
}

impl FleetStatus {
    /// Human-readable form for `enforcer fleet status`.
    pub fn render(&self) -> String {
        let mut s = format!(
            "fleet {} as {} via {}\n",
            self.namespace, self.name, self.redis
        );
        let conn = if self.connected {
            "connected".to_string()
        } else {
            format!(
                "DISCONNECTED{}",
                self.last_error
                    .as_ref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            )
        };
        s.push_str(&format!("connection: {conn}\n"));
        s.push_str(&format!(
            "lag: {:.1}s; last id applied: {}\n",
            self.lag_seconds,
            self.last_id.as_deref().unwrap_or("-")
        ));
        s.push_str(&format!(
            "queued: {}; sent: {}; applied: {}; rejected: {}; full resyncs: {}\n",
            self.queued, self.sent, self.applied, self.rejected, self.resyncs
        ));
        if self.hosts.is_empty() {
            s.push_str("hosts: none seen yet\n");
        } else {
            s.push_str("hosts:\n");
            for h in &self.hosts {
                s.push_str(&format!(
                    "  {:<24} last seen {}s ago{}\n",
                    h.name,
                    h.ago_seconds,
                    if h.name == self.name {
                        " (this host)"
                    } else {
                        ""
                    }
                ));
            }
        }
        s
    }
}
