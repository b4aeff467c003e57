//! Waiting in tests: a condition polled within a bound, and the wall clock's phase in a period
//! (the engine's windows are wall-clock phases).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Polls `f` every `every` until it returns true or `limit` passes; returns the time it took.
pub fn poll(limit: Duration, every: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if f() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// [`poll`] every 100 ms: whether `f` came true within `limit`.
pub fn wait_until(limit: Duration, f: impl FnMut() -> bool) -> bool {
    poll(limit, Duration::from_millis(100), f).is_some()
}

/// Seconds since the Unix epoch.
pub fn now_f() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Sleeps until the wall clock is `at` seconds into a period of `period` seconds (less than one
/// period).
pub fn wait_phase(at: f64, period: f64) {
    let wait = (at - now_f() % period).rem_euclid(period);
    std::thread::sleep(Duration::from_secs_f64(wait));
}
