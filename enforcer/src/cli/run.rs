//! `enforcer run`: load and attach the datapath (adopting pinned state), put the store's operator
//! rules into the kernel, serve metrics, and keep entries tidy until SIGINT/SIGTERM. Exiting leaves
//! enforcement in place.
//!
//! Extending: resolve more settings into [`Settings`] (e.g. from `--config`), register metrics in
//! `Daemon::registry` and spawn long-running tasks (control socket, engine) with [`Daemon::spawn`]
//! before [`Daemon::run`]; add engine entries to what [`Daemon::reconcile`] keeps via
//! [`Daemon::desired_entries`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use log::{error, info, warn};
use prometheus_client::registry::Registry;
use tokio::task::JoinSet;

use super::entry::{operator_error, Dirs};
use super::usage;
use crate::datapath::loader::pinned_attachments;
use crate::datapath::metrics::KernelCollector;
use crate::datapath::{sys, Attached, Clock, ControlMaps, Datapath, Mode, PinDir, PolicyMaps};
use crate::net::Prefix;
use crate::store::Store;
use enforcer_common::PolicyEntry;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Interface to protect (repeat for several).
    #[arg(long = "iface", value_name = "IFACE", required = true)]
    pub ifaces: Vec<String>,
    /// Protected TCP destination ports, comma separated.
    #[arg(long, value_name = "PORTS", default_value = "25,465,587")]
    pub ports: String,
    /// auto tries native XDP, then generic XDP, then TC (tcx, or clsact on old kernels).
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    pub mode: Mode,
    /// Compute and count every verdict but let every packet pass.
    #[arg(long)]
    pub report_only: bool,
    /// Where to serve Prometheus metrics (GET /metrics).
    #[arg(long, value_name = "ADDR", default_value = crate::metrics::DEFAULT_ADDR)]
    pub metrics_addr: String,
    #[command(flatten)]
    pub dirs: Dirs,
}

/// Everything `run` needs, resolved and checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub ifaces: Vec<String>,
    pub ports: Vec<u16>,
    pub mode: Mode,
    pub report_only: bool,
    pub metrics_addr: SocketAddr,
    pub dirs: Dirs,
}

/// Parses `--ports 25,465,587`.
pub fn parse_ports(s: &str) -> anyhow::Result<Vec<u16>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.parse::<u16>() {
            Ok(p) if p > 0 => {
                if !out.contains(&p) {
                    out.push(p)
                }
            }
            _ => {
                return usage(format!(
                    "--ports: `{part}` is not a TCP port (1-65535); write e.g. --ports 25,465,587"
                ))
            }
        }
    }
    if out.is_empty() {
        return usage("--ports needs at least one port, e.g. --ports 25,465,587");
    }
    out.sort_unstable();
    Ok(out)
}

impl Settings {
    /// Checks the arguments before anything is touched (exit status 2 on bad input).
    pub fn from_args(a: Args) -> anyhow::Result<Self> {
        let ports = parse_ports(&a.ports)?;
        let metrics_addr: SocketAddr = match a.metrics_addr.parse() {
            Ok(s) => s,
            Err(_) => {
                return usage(format!(
                    "--metrics-addr `{}` is not an address:port like 127.0.0.1:9925",
                    a.metrics_addr
                ))
            }
        };
        let mut ifaces = Vec::new();
        for i in a.ifaces {
            if sys::ifindex(&i).is_none() {
                return usage(format!(
                    "unknown interface `{i}`: pass an existing one (see `ip link`)"
                ));
            }
            if !ifaces.contains(&i) {
                ifaces.push(i);
            }
        }
        Ok(Self {
            ifaces,
            ports,
            mode: a.mode,
            report_only: a.report_only,
            metrics_addr,
            dirs: a.dirs,
        })
    }
}

/// Held for the daemon's lifetime: one `enforcer run` per state directory.
pub struct DaemonLock(#[allow(dead_code)] std::fs::File);

impl DaemonLock {
    pub fn acquire(state_dir: &std::path::Path) -> anyhow::Result<Self> {
        use std::io::{Read as _, Seek as _, Write as _};
        use std::os::fd::AsRawFd as _;
        if let Err(e) = std::fs::create_dir_all(state_dir) {
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                return usage(format!(
                    "permission denied creating {}: `enforcer run` needs root; run it as root",
                    state_dir.display()
                ));
            }
            return Err(anyhow::Error::from(e).context(format!(
                "creating the state directory {} (pass --state-dir to use another)",
                state_dir.display()
            )));
        }
        let path = state_dir.join("daemon.lock");
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::PermissionDenied {
                    usage(format!(
                        "permission denied opening {}: `enforcer run` needs root (CAP_BPF and CAP_NET_ADMIN); run it as root",
                        path.display()
                    ))
                } else {
                    Err(anyhow::Error::from(e).context(format!("opening {}", path.display())))
                }
            })?;
        // SAFETY: flock on a file we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut pid = String::new();
            let _ = f.read_to_string(&mut pid);
            return usage(format!(
                "another `enforcer run` (pid {}) already uses {}; stop it first",
                pid.trim(),
                state_dir.display()
            ));
        }
        f.set_len(0)?;
        f.rewind()?;
        write!(f, "{}", std::process::id())?;
        Ok(Self(f))
    }
}

/// True when two entries for the same rule differ only because the clocks moved apart by more
/// than a second (anchors are compared modulo the period).
fn drifted(have: &PolicyEntry, want: &PolicyEntry) -> bool {
    const SLACK: u64 = 1_000_000_000;
    let same_shape = PolicyEntry {
        anchor_ns: 0,
        expires_ns: 0,
        ..*have
    } == PolicyEntry {
        anchor_ns: 0,
        expires_ns: 0,
        ..*want
    };
    if !same_shape {
        return false;
    }
    let expiry_moved = (have.expires_ns == 0) != (want.expires_ns == 0)
        || have.expires_ns.abs_diff(want.expires_ns) > SLACK;
    let period = u64::from(want.period_secs) * 1_000_000_000;
    let anchor_moved = period > 0 && {
        let d = have.anchor_ns.abs_diff(want.anchor_ns) % period;
        d.min(period - d) > SLACK
    };
    expiry_moved || anchor_moved
}

/// The running daemon.
pub struct Daemon {
    pub settings: Settings,
    /// Top-level metrics registry (`enforcer_` prefix); components add sub-registries.
    pub registry: Registry,
    tasks: JoinSet<anyhow::Result<()>>,
}

/// How often expired operator rules are pruned from the maps and the store.
const HOUSEKEEPING: Duration = Duration::from_secs(15);

impl Daemon {
    pub fn new(settings: Settings) -> Self {
        let mut registry = crate::metrics::registry();
        KernelCollector::new(&settings.dirs.pin_dir).register(&mut registry);
        Self {
            settings,
            registry,
            tasks: JoinSet::new(),
        }
    }

    /// Runs `fut` alongside the daemon; an error from it stops the daemon.
    pub fn spawn(&mut self, fut: impl Future<Output = anyhow::Result<()>> + Send + 'static) {
        self.tasks.spawn(fut);
    }

    /// Loads (adopting pinned maps), sets ports and mode, reconciles entries, then attaches (adopting
    /// pinned links). Entries are in place before the first packet is judged.
    pub fn start_datapath(&mut self) -> anyhow::Result<Vec<Attached>> {
        let s = &self.settings;
        let mut dp = Datapath::load(&s.dirs.pin_dir).map_err(operator_error)?;
        let mut control = ControlMaps::open_pinned(&s.dirs.pin_dir)?;
        control.set_ports(&s.ports)?;
        control.set_report_only(s.report_only)?;
        info!(
            "protecting TCP ports {:?}{}",
            s.ports,
            if s.report_only {
                " in report-only mode (verdicts counted, every packet passes)"
            } else {
                ""
            }
        );
        let (kept, removed) = self.reconcile(&Clock::now())?;
        info!("kernel entries reconciled with the store: {kept} kept, {removed} stale removed");
        let mut out = Vec::new();
        for iface in &s.ifaces {
            out.push(dp.attach(iface, s.mode)?);
        }
        Ok(out)
    }

    /// What the kernel maps should hold: the store's live operator rules. The engine adds its own
    /// entries here.
    pub fn desired_entries(
        &self,
        store: &Store,
        clock: &Clock,
    ) -> anyhow::Result<Vec<(Prefix, PolicyEntry)>> {
        let mut out = Vec::new();
        for r in store.rules()? {
            if r.is_expired(clock.unix_secs()) {
                store.remove_rule(&r.prefix)?;
                info!("dropped expired operator rule for {}", r.prefix);
                continue;
            }
            out.push((r.prefix, r.to_kernel(clock)));
        }
        Ok(out)
    }

    /// Makes the kernel maps equal to [`Self::desired_entries`] (the store wins). Entries are
    /// upserted in place, never removed and re-added, so there is no moment without them.
    pub fn reconcile(&self, clock: &Clock) -> anyhow::Result<(usize, usize)> {
        let store = Store::open(&self.settings.dirs.state_dir)?;
        let desired = self.desired_entries(&store, clock)?;
        drop(store);
        let mut maps = PolicyMaps::open_pinned(&self.settings.dirs.pin_dir)?;
        for (p, e) in &desired {
            maps.upsert(p, e)?;
        }
        let mut removed = 0;
        for (p, _) in maps.entries()? {
            if !desired.iter().any(|(d, _)| *d == p) {
                maps.remove(&p)?;
                removed += 1;
            }
        }
        Ok((desired.len(), removed))
    }

    /// Removes expired operator rules from the store and the maps; warns about attachments whose
    /// interface disappeared.
    fn housekeeping(&self) -> anyhow::Result<()> {
        let clock = Clock::now();
        let store = Store::open(&self.settings.dirs.state_dir)?;
        let mut maps = PolicyMaps::open_pinned(&self.settings.dirs.pin_dir)?;
        for r in store.rules()? {
            if r.is_expired(clock.unix_secs()) {
                maps.remove(&r.prefix)?;
                store.remove_rule(&r.prefix)?;
                info!("operator rule for {} expired and was removed", r.prefix);
                continue;
            }
            // Wall-clock times were converted to CLOCK_BOOTTIME when written; if the wall clock was
            // stepped since (NTP at boot, an operator), re-convert so windows stay on wall-clock
            // boundaries and expiries stay at the stated time.
            let want = r.to_kernel(&clock);
            if let Some(have) = maps.get(&r.prefix)? {
                if drifted(&have, &want) {
                    maps.upsert(&r.prefix, &want)?;
                    info!("re-aligned {} to the wall clock", r.prefix);
                }
            }
        }
        for a in pinned_attachments(&PinDir::new(&self.settings.dirs.pin_dir))? {
            if !a.live {
                warn!(
                    "{}: the {} attachment is no longer live (interface deleted or recreated); restart `enforcer run` to attach again",
                    a.iface,
                    a.kind.as_str()
                );
            }
        }
        Ok(())
    }

    /// Starts the datapath and serves until SIGINT/SIGTERM.
    pub async fn run(mut self) -> anyhow::Result<()> {
        // Bind first: a taken metrics port must not leave a half-started datapath behind.
        let listener = crate::metrics::bind(self.settings.metrics_addr)
            .await
            .map_err(|e| super::UsageError(format!("{e:#}")))?;
        let attached = tokio::task::block_in_place(|| self.start_datapath())?;
        for a in &attached {
            info!(
                "enforcing on {} ({}{})",
                a.iface,
                a.kind.as_str(),
                if a.adopted { ", adopted" } else { "" }
            );
        }
        let metrics_addr = listener.local_addr().unwrap_or(self.settings.metrics_addr);
        info!(
            "metrics on http://{metrics_addr}/metrics; maps and links pinned under {}",
            self.settings.dirs.pin_dir.display()
        );
        let registry = Arc::new(std::mem::take(&mut self.registry));
        self.tasks.spawn(async move {
            crate::metrics::serve(listener, registry).await;
            Ok(())
        });
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        let mut tick = tokio::time::interval(HOUSEKEEPING);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = tick.tick() => {
                    if let Err(e) = tokio::task::block_in_place(|| self.housekeeping()) {
                        warn!("housekeeping: {e:#}");
                    }
                }
                Some(done) = self.tasks.join_next() => {
                    match done {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => { error!("{e:#}"); return Err(e); }
                        Err(e) => return Err(anyhow::anyhow!("a daemon task failed: {e}")),
                    }
                }
            }
        }
        info!(
            "exiting; enforcement stays in place (pinned under {}; `enforcer detach` removes it)",
            self.settings.dirs.pin_dir.display()
        );
        self.tasks.shutdown().await;
        Ok(())
    }
}

pub fn execute(args: Args) -> anyhow::Result<()> {
    let settings = Settings::from_args(args)?;
    let _lock = DaemonLock::acquire(&settings.dirs.state_dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(Daemon::new(settings).run())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command, UsageError};
    use clap::Parser as _;
    use enforcer_common::maps::DEFAULT_PORTS;

    fn run_args(extra: &[&str]) -> Args {
        let argv = ["enforcer", "run"].into_iter().chain(extra.iter().copied());
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Run(a) => a,
            c => panic!("{c:?}"),
        }
    }

    fn usage_msg(r: anyhow::Result<Settings>) -> String {
        let e = r.unwrap_err();
        assert!(e.downcast_ref::<UsageError>().is_some(), "{e:#}");
        e.to_string()
    }

    #[test]
    fn one_daemon_per_state_dir() {
        let dir = std::env::temp_dir().join(format!("enforcer-lock-{}", std::process::id()));
        let a = DaemonLock::acquire(&dir).unwrap();
        let e = DaemonLock::acquire(&dir).err().unwrap();
        assert!(e.downcast_ref::<UsageError>().is_some());
        assert!(
            e.to_string().contains(&std::process::id().to_string()),
            "{e}"
        );
        drop(a);
        drop(DaemonLock::acquire(&dir).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn drift_is_detected_modulo_the_period() {
        let base = PolicyEntry {
            action: enforcer_common::policy::ACTION_THROTTLE,
            period_secs: 3600,
            throttle_secs: 300,
            anchor_ns: 10_000_000_000_000,
            expires_ns: 20_000_000_000_000,
            ..Default::default()
        };
        let s = 1_000_000_000u64;
        let shifted = |a: u64, e: u64| PolicyEntry {
            anchor_ns: a,
            expires_ns: e,
            ..base
        };
        assert!(!drifted(&base, &base));
        // A whole period later is the same alignment.
        assert!(!drifted(
            &base,
            &shifted(base.anchor_ns + 3600 * s, base.expires_ns)
        ));
        assert!(!drifted(
            &base,
            &shifted(base.anchor_ns + s / 2, base.expires_ns)
        ));
        assert!(drifted(
            &base,
            &shifted(base.anchor_ns + 5 * s, base.expires_ns)
        ));
        assert!(drifted(
            &base,
            &shifted(base.anchor_ns, base.expires_ns + 5 * s)
        ));
        // A different rule is not drift: reconcile handles that.
        let other = PolicyEntry {
            throttle_secs: 60,
            ..base
        };
        assert!(!drifted(&base, &other));
    }

    #[test]
    fn ports_parse() {
        assert_eq!(parse_ports("25,465,587").unwrap(), vec![25, 465, 587]);
        assert_eq!(parse_ports("587, 25,25").unwrap(), vec![25, 587]);
        for bad in ["", "0", "70000", "25,smtp", ","] {
            assert!(parse_ports(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn settings_check_everything_first() {
        let s = Settings::from_args(run_args(&["--iface", "lo", "--mode", "tc"])).unwrap();
        assert_eq!(s.ports, DEFAULT_PORTS.to_vec());
        assert_eq!(s.mode, Mode::Tc);
        assert!(!s.report_only);
        let msg = usage_msg(Settings::from_args(run_args(&["--iface", "nosuchif0"])));
        assert!(msg.contains("unknown interface `nosuchif0`"), "{msg}");
        usage_msg(Settings::from_args(run_args(&[
            "--iface", "lo", "--ports", "0",
        ])));
        usage_msg(Settings::from_args(run_args(&[
            "--iface",
            "lo",
            "--metrics-addr",
            "localhost",
        ])));
        assert!(Cli::try_parse_from(["enforcer", "run"]).is_err());
        assert!(
            Cli::try_parse_from(["enforcer", "run", "--iface", "lo", "--mode", "fast"]).is_err()
        );
    }
}
