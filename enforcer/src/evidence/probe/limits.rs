//! The probe's hard limits as pure, clock-injected state: a per-address cache with a TTL (never the
//! same host twice within it) and a probes-per-second budget. Times are seconds of a monotonic
//! clock the caller passes in, so the tests step time instead of sleeping.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

/// Addresses probed (or queued) recently, bounded in entries: when full, the oldest are forgotten
/// first (a forgotten address may be probed again, never more often than the TTL allows while
/// remembered).
pub struct Cache {
    ttl: f64,
    max: usize,
    seen: HashMap<IpAddr, f64>,
    order: VecDeque<(IpAddr, f64)>,
}

impl Cache {
    pub fn new(ttl_secs: f64, max: usize) -> Self {
        Self {
            ttl: ttl_secs,
            max: max.max(1),
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// True (and remembered from `now`) when `addr` was not probed within the TTL.
    pub fn admit(&mut self, addr: IpAddr, now: f64) -> bool {
        self.expire(now);
        if self.seen.contains_key(&addr) {
            return false;
        }
        while self.seen.len() >= self.max {
            match self.order.pop_front() {
                Some((a, t)) if self.seen.get(&a) == Some(&t) => {
                    self.seen.remove(&a);
                }
                Some(_) => {}
                None => break,
            }
        }
        self.seen.insert(addr, now);
        self.order.push_back((addr, now));
        true
    }

    /// Whether `addr` was admitted within the TTL before `now`.
    pub fn contains(&mut self, addr: IpAddr, now: f64) -> bool {
        self.expire(now);
        self.seen.contains_key(&addr)
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    fn expire(&mut self, now: f64) {
        while let Some(&(a, t)) = self.order.front() {
            if now - t < self.ttl {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&a) == Some(&t) {
                self.seen.remove(&a);
            }
        }
    }
}

/// A token bucket: `rate` probes per second, bursts of at most `rate` (at least one).
pub struct Rate {
    rate: f64,
    tokens: f64,
    last: f64,
}

impl Rate {
    pub fn new(rate: u32, now: f64) -> Self {
        let rate = f64::from(rate.max(1));
        Self {
            rate,
            tokens: rate,
            last: now,
        }
    }

    /// Takes one token if there is one at `now`.
    pub fn take(&mut self, now: f64) -> bool {
        let dt = (now - self.last).max(0.0);
        self.last = self.last.max(now);
        self.tokens = (self.tokens + dt * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
