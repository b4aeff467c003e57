//! What every listener (control socket, metrics endpoint, ...) uses so that no client can starve it: a
//! cap on open connections, back-off when `accept` fails (out of file descriptors: without it the
//! accept loop spins at 100% CPU), and the listener's own metrics (`enforcer_<listener>_connections`,
//! `_refused_total{why}`, `_accept_errors_total`), registered by the listener in its `bind`. The soft
//! file-descriptor limit is raised to the hard one when the daemon starts.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

type Labels = Vec<(String, String)>;

/// First pause after a failed accept; doubled per consecutive failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// One listener's connection count and refusals.
#[derive(Clone, Default)]
pub struct ListenerMetrics {
    /// Connections being served now.
    pub open: Gauge,
    /// Connections refused, by why: `connection_cap` (too many open) or `buffer_cap` (too much
    /// request data held across connections).
    pub refused: Family<Labels, Counter>,
    /// `accept` failures (e.g. EMFILE), each followed by a back-off.
    pub accept_errors: Counter,
}

impl ListenerMetrics {
    /// Registers under the listener's own sub-registry (`enforcer_control_*`, `enforcer_metrics_*`).
    pub fn register(&self, reg: &mut Registry) {
        reg.register("connections", "Connections being served", self.open.clone());
        reg.register(
            "refused",
            "Connections refused, by why (connection_cap, buffer_cap)",
            self.refused.clone(),
        );
        reg.register(
            "accept_errors",
            "Failed accepts (e.g. out of file descriptors); each one backs off",
            self.accept_errors.clone(),
        );
    }
}

/// One listener's connection cap and metrics.
#[derive(Clone)]
pub struct Gate {
    name: &'static str,
    max: usize,
    slots: Arc<Semaphore>,
    metrics: ListenerMetrics,
}

/// A connection slot; the open-connections gauge goes down when it is dropped.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    gauge: Gauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

impl Gate {
    pub fn new(name: &'static str, max_conns: usize, metrics: ListenerMetrics) -> Self {
        Self {
            name,
            max: max_conns,
            slots: Arc::new(Semaphore::new(max_conns)),
            metrics,
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn max_conns(&self) -> usize {
        self.max
    }

    pub fn metrics(&self) -> &ListenerMetrics {
        &self.metrics
    }

    /// Counts a refusal (`why`: `connection_cap`, `buffer_cap`).
    pub fn refused(&self, why: &str) {
        self.metrics
            .refused
            .get_or_create(&vec![("why".into(), why.into())])
            .inc();
    }

    /// Waits for the next connection. Failed accepts are counted, logged once per run of failures and
    /// followed by a growing pause, so running out of file descriptors costs no CPU. The slot is
    /// `None` when the listener is at its cap: the caller tells the client so and closes.
    pub async fn accept<T, F, Fut>(&self, mut accept: F) -> (T, Option<Slot>)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::io::Result<T>>,
    {
        let mut backoff = Duration::ZERO;
        let mut failures = 0u64;
        loop {
            match accept().await {
                Ok(conn) => {
                    if failures > 0 {
                        log::warn!(
                            "{} listener: accepting again after {failures} failed accepts",
                            self.name
                        );
                    }
                    return (conn, self.slot());
                }
                Err(e) => {
                    self.metrics.accept_errors.inc();
                    if failures == 0 {
                        log::warn!(
                            "{} listener: accept failed: {e}; backing off (raise the open-files limit if this is EMFILE)",
                            self.name
                        );
                    }
                    failures += 1;
                    backoff = (backoff * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF);
                    tokio::time::sleep(backoff).await;
                }
            }
        }
    }

    fn slot(&self) -> Option<Slot> {
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => {
                let gauge = self.metrics.open.clone();
                gauge.inc();
                Some(Slot {
                    _permit: permit,
                    gauge,
                })
            }
            Err(_) => {
                self.refused("connection_cap");
                None
            }
        }
    }
}

/// Raises the soft open-files limit to the hard one (a daemon serving many connections and map fds
/// should not stop at the usual 1024); returns the (old, new) soft limit.
pub fn raise_fd_limit() -> std::io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let old = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok((old, lim.rlim_cur))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn text(m: &ListenerMetrics) -> String {
        let mut reg = Registry::with_prefix("enforcer_l");
        m.register(&mut reg);
        let mut out = String::new();
        encode(&mut out, &reg).unwrap();
        out
    }

    #[tokio::test(start_paused = true)]
    async fn failed_accepts_back_off_instead_of_spinning() {
        let gate = Gate::new("metrics", 4, ListenerMetrics::default());
        let calls = AtomicU32::new(0);
        let start = tokio::time::Instant::now();
        let (v, slot) = gate
            .accept(|| {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 8 {
                        Err(std::io::Error::from_raw_os_error(libc::EMFILE))
                    } else {
                        Ok(n)
                    }
                }
            })
            .await;
        assert_eq!((v, calls.load(Ordering::SeqCst)), (8, 9));
        assert!(slot.is_some());
        // 10+20+40+...+1000 ms (capped): a spinning loop would not have slept at all.
        let slept = start.elapsed();
        assert!(
            slept >= Duration::from_millis(10 + 20 + 40 + 80 + 160 + 320 + 640 + 1000),
            "{slept:?}"
        );
        let t = text(gate.metrics());
        assert!(t.contains("enforcer_l_accept_errors_total 8"), "{t}");
    }

    #[tokio::test]
    async fn the_cap_refuses_and_frees_slots() {
        let gate = Gate::new("control", 2, ListenerMetrics::default());
        let ok = || async { Ok::<_, std::io::Error>(()) };
        let a = gate.accept(ok).await.1;
        let b = gate.accept(ok).await.1;
        let c = gate.accept(ok).await.1;
        assert!(a.is_some() && b.is_some() && c.is_none());
        let t = text(gate.metrics());
        assert!(t.contains("enforcer_l_connections 2"), "{t}");
        assert!(
            t.contains("enforcer_l_refused_total{why=\"connection_cap\"} 1"),
            "{t}"
        );
        drop(a);
        assert!(gate.accept(ok).await.1.is_some());
    }

    /// The limit is process-wide, so the check runs in a child process started with a low soft limit.
    #[test]
    fn soft_fd_limit_is_raised_to_the_hard_one() {
        const CHILD: &str = "ENFORCER_TEST_FD_LIMIT_CHILD";
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        if std::env::var_os(CHILD).is_some() {
            assert_eq!(lim.rlim_cur, 64, "the parent set the soft limit");
            let (old, new) = raise_fd_limit().unwrap();
            assert_eq!((old, new), (64, lim.rlim_max));
            let mut after = lim;
            assert_eq!(
                unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut after) },
                0
            );
            assert_eq!(after.rlim_cur, lim.rlim_max);
            return;
        }
        if lim.rlim_max <= 64 {
            panic!(
                "the hard open-files limit ({}) is too low to test raising the soft one",
                lim.rlim_max
            );
        }
        use std::os::unix::process::CommandExt as _;
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "daemon::gate::tests::soft_fd_limit_is_raised_to_the_hard_one",
            "--test-threads=1",
        ])
        .env(CHILD, "1");
        // SAFETY: setrlimit is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                let mut l = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
                l.rlim_cur = 64;
                if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("1 passed"),
            "the child ran the test: {stdout}"
        );
    }
}
