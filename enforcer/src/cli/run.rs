//! `enforcer run`: load and attach the datapath (adopting pinned state), start the progressive
//! enforcement engine (which makes the kernel maps equal to the store: operator rules and sender
//! stages), serve the control socket and metrics until SIGINT/SIGTERM. Exiting leaves enforcement in
//! place.
//!
//! Settings come from the flags, then `--config FILE`, then the defaults, in that order. Everything
//! is validated before anything is attached.

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
use crate::config::FileConfig;
use crate::control::ControlServer;
use crate::daemon::{runner, Engine, EngineMetrics, EngineSettings, PinnedKernel};
use crate::datapath::loader::pinned_attachments;
use crate::datapath::metrics::KernelCollector;
use crate::datapath::{sys, Attached, Clock, ControlMaps, Datapath, Mode, PinDir, PolicyMaps};
use crate::evidence::reply::Board;
use crate::evidence::{MtaListeners, MtaSettings};
use crate::store::Store;
use enforcer_common::maps::DEFAULT_PORTS;
use enforcer_common::PolicyEntry;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// TOML configuration (see enforcer.example.toml); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Interface to protect (repeat for several) [config: interfaces].
    #[arg(long = "iface", value_name = "IFACE")]
    pub ifaces: Vec<String>,
    /// Protected TCP destination ports, comma separated [default: 25,465,587].
    #[arg(long, value_name = "PORTS")]
    pub ports: Option<String>,
    /// auto tries native XDP, then generic XDP, then TC (tcx, or clsact on old kernels) [default: auto].
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Compute and count every verdict but let every packet pass.
    #[arg(long)]
    pub report_only: bool,
    /// Where to serve Prometheus metrics (GET /metrics) [default: 127.0.0.1:9925].
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
    /// bpffs directory holding the pinned maps and links [default: /sys/fs/bpf/enforcer].
    #[arg(long, value_name = "DIR", env = "ENFORCER_PIN_DIR")]
    pub pin_dir: Option<PathBuf>,
    /// Directory of the state database enforcer.redb [default: /var/lib/enforcer].
    #[arg(long, value_name = "DIR", env = "ENFORCER_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Control socket for the CLI [default: /run/enforcer/enforcer.sock, or <state-dir>/enforcer.sock
    /// for another --state-dir].
    #[arg(long, value_name = "PATH", env = "ENFORCER_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Serve the milter protocol for Postfix `smtpd_milters` / Sendmail `INPUT_MAIL_FILTER`:
    /// inet:127.0.0.1:8895 or unix:/run/enforcer/milter.sock [config: milter.listen].
    #[arg(long, value_name = "SPEC")]
    pub milter: Option<String>,
    /// Serve the Postfix policy delegation protocol (`check_policy_service`):
    /// inet:127.0.0.1:10040 or unix:/PATH [config: policy.listen].
    #[arg(long, value_name = "SPEC")]
    pub policy: Option<String>,
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
    pub socket: PathBuf,
    /// Schedule, aggregation, allow-list, pause budget, classifier overrides.
    pub engine: EngineSettings,
    /// Milter and policy service listeners and the reply texts.
    pub mta: MtaSettings,
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
    /// Checks the arguments and the configuration file before anything is touched (exit status 2
    /// on bad input).
    pub fn from_args(a: Args) -> anyhow::Result<Self> {
        let file = match &a.config {
            Some(path) => FileConfig::load(path).map_err(|e| super::UsageError(e.to_string()))?,
            None => FileConfig::default(),
        };
        let ports = match (&a.ports, &file.ports) {
            (Some(p), _) => parse_ports(p)?,
            (None, Some(p)) => {
                parse_ports(&p.iter().map(u16::to_string).collect::<Vec<_>>().join(","))?
            }
            (None, None) => DEFAULT_PORTS.to_vec(),
        };
        let mode = match (a.mode, &file.mode) {
            (Some(m), _) => m,
            (None, Some(m)) => <Mode as clap::ValueEnum>::from_str(m, false)
                .map_err(|e| super::UsageError(format!("config `mode`: {e}")))?,
            (None, None) => Mode::Auto,
        };
        let metrics_addr: SocketAddr = match (&a.metrics_addr, file.metrics_addr) {
            (Some(s), _) => match s.parse() {
                Ok(s) => s,
                Err(_) => {
                    return usage(format!(
                        "--metrics-addr `{s}` is not an address:port like 127.0.0.1:9925"
                    ))
                }
            },
            (None, Some(addr)) => addr,
            (None, None) => crate::metrics::DEFAULT_ADDR.parse()?,
        };
        let requested = if a.ifaces.is_empty() {
            file.interfaces.clone().unwrap_or_default()
        } else {
            a.ifaces
        };
        if requested.is_empty() {
            return usage("no interface to protect: pass --iface IFACE (or set `interfaces` in the config file)");
        }
        let mut ifaces = Vec::new();
        for i in requested {
            if sys::ifindex(&i).is_none() {
                return usage(format!(
                    "unknown interface `{i}`: pass an existing one (see `ip link`)"
                ));
            }
            if !ifaces.contains(&i) {
                ifaces.push(i);
            }
        }
        let state_dir: PathBuf = a
            .state_dir
            .or(file.state_dir.clone())
            .unwrap_or_else(|| crate::store::DEFAULT_STATE_DIR.into());
        let socket = a
            .socket
            .or(file.socket.clone())
            .unwrap_or_else(|| crate::config::default_socket_for(&state_dir));
        let dirs = Dirs {
            socket: Some(socket.clone()),
            pin_dir: a
                .pin_dir
                .or(file.pin_dir.clone())
                .unwrap_or_else(|| crate::datapath::DEFAULT_PIN_DIR.into()),
            state_dir,
        };
        let report_only = a.report_only || file.report_only.unwrap_or(false);
        let mut mta = file.mta.clone();
        for (flag, given, slot) in [
            ("--milter", &a.milter, &mut mta.milter),
            ("--policy", &a.policy, &mut mta.policy),
        ] {
            if let Some(spec) = given {
                *slot = Some(
                    spec.parse()
                        .map_err(|e| super::UsageError(format!("{flag}: {e}")))?,
                );
            }
        }
        let engine = EngineSettings {
            overrides: file.support_overrides().map_err(super::UsageError)?,
            board: Board::new(file.policy.aggregation),
            policy: file.policy,
            report_only,
            state_dir: Some(dirs.state_dir.clone()),
        };
        Ok(Self {
            ifaces,
            ports,
            mode,
            report_only,
            metrics_addr,
            dirs,
            socket,
            engine,
            mta,
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
pub(crate) fn drifted(have: &PolicyEntry, want: &PolicyEntry) -> bool {
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
    /// Built by `start_datapath` (it reconciles the maps before the programs attach).
    engine: Option<Engine<PinnedKernel>>,
    engine_metrics: EngineMetrics,
}

/// How often expired operator rules are pruned from the maps and the store.
const HOUSEKEEPING: Duration = Duration::from_secs(15);

impl Daemon {
    pub fn new(settings: Settings) -> Self {
        let mut registry = crate::metrics::registry();
        KernelCollector::new(&settings.dirs.pin_dir).register(&mut registry);
        let engine_metrics = EngineMetrics::default();
        engine_metrics.register(registry.sub_registry_with_prefix("engine"));
        Self {
            settings,
            registry,
            tasks: JoinSet::new(),
            engine: None,
            engine_metrics,
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
        // The engine owns the store from here on and makes the maps equal to it: rebuilt when the
        // pins were gone (after a reboot), reconciled when they were adopted (after a restart).
        let store = Store::open(&s.dirs.state_dir)?;
        let maps = PolicyMaps::open_pinned(&s.dirs.pin_dir)?;
        let (engine, rep) = Engine::start(
            s.engine.clone(),
            store,
            PinnedKernel(maps),
            self.engine_metrics.clone(),
            Clock::now().unix_secs(),
        )?;
        info!(
            "kernel entries reconciled with the store: {} senders, {} operator rules, {} entries written, {} stale removed{}",
            rep.senders,
            rep.operator_rules,
            rep.written,
            rep.removed,
            if rep.failed > 0 { format!(", {} failed (retrying)", rep.failed) } else { String::new() }
        );
        self.engine = Some(engine);
        let mut out = Vec::new();
        for iface in &s.ifaces {
            out.push(dp.attach(iface, s.mode)?);
        }
        Ok(out)
    }

    /// Warns about attachments whose interface disappeared. (Expired operator rules are removed by
    /// the engine at their expiry time.)
    fn housekeeping(&self) -> anyhow::Result<()> {
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
        let control = ControlServer::bind(&self.settings.socket)
            .map_err(|e| super::UsageError(format!("{e:#}")))?;
        let mta = MtaListeners::bind(&self.settings.mta)
            .await
            .map_err(|e| super::UsageError(format!("{e:#}")))?;
        mta.register(&mut self.registry);
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
        info!("control socket {}", control.path().display());
        for (what, ep) in mta.endpoints() {
            info!("{what} on {ep}");
        }
        let sightings = mta.start(
            self.settings.engine.board.clone(),
            self.settings.report_only,
        );
        if let Some(engine) = self.engine.take() {
            self.tasks.spawn(async move {
                runner::run(engine, control, sightings, std::future::pending()).await;
                Ok(())
            });
        }
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
        let msg = usage_msg(Settings::from_args(run_args(&[])));
        assert!(msg.contains("no interface to protect"), "{msg}");
        assert!(
            Cli::try_parse_from(["enforcer", "run", "--iface", "lo", "--mode", "fast"]).is_err()
        );
    }

    #[test]
    fn config_file_fills_in_and_flags_override() {
        let dir = std::env::temp_dir().join(format!("enforcer-runcfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("enforcer.toml");
        std::fs::write(
            &cfg,
            "interfaces = [\"lo\"]\nports = [2525]\nmode = \"tc\"\nreport_only = true\nsocket = \"/tmp/x.sock\"\nstate_dir = \"/tmp/st\"\n[enforcement]\npause_budget = \"10d\"\n",
        )
        .unwrap();
        let c = cfg.to_str().unwrap();
        let s = Settings::from_args(run_args(&["--config", c])).unwrap();
        assert_eq!(s.ifaces, vec!["lo".to_string()]);
        assert_eq!(s.ports, vec![2525]);
        assert_eq!(s.mode, Mode::Tc);
        assert!(s.report_only && s.engine.report_only);
        assert_eq!(s.socket, PathBuf::from("/tmp/x.sock"));
        assert_eq!(s.dirs.state_dir, PathBuf::from("/tmp/st"));
        assert_eq!(s.engine.policy.pause_budget.secs(), 10 * 86_400);
        let s = Settings::from_args(run_args(&[
            "--config",
            c,
            "--ports",
            "25",
            "--mode",
            "xdp-skb",
            "--socket",
            "/tmp/y.sock",
        ]))
        .unwrap();
        assert_eq!(s.ports, vec![25]);
        assert_eq!(s.mode, Mode::XdpSkb);
        assert_eq!(s.socket, PathBuf::from("/tmp/y.sock"));
        // Without a socket anywhere, it follows the state directory.
        let s =
            Settings::from_args(run_args(&["--iface", "lo", "--state-dir", "/tmp/st2"])).unwrap();
        assert_eq!(s.socket, PathBuf::from("/tmp/st2/enforcer.sock"));
        let s = Settings::from_args(run_args(&["--iface", "lo"])).unwrap();
        assert_eq!(s.socket, PathBuf::from(crate::config::DEFAULT_SOCKET));
        // A bad file stops start-up with file, line and key, exit status 2.
        std::fs::write(&cfg, "interfaces = [\"lo\"]\n[[enforcement.stages]]\nafter = \"0s\"\nperiod = \"1h\"\nthrottle = \"2h\"\n").unwrap();
        let msg = usage_msg(Settings::from_args(run_args(&["--config", c])));
        assert!(
            msg.contains(&format!("{c}:5: `enforcement.stages[1].throttle`")),
            "{msg}"
        );
        let msg = usage_msg(Settings::from_args(run_args(&[
            "--config",
            "/nonexistent/enforcer.toml",
        ])));
        assert!(msg.contains("cannot read"), "{msg}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
