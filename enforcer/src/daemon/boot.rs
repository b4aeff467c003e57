//! `enforcer run`'s lifecycle: lock the state directory and the pin directory, open the store, bind
//! every listener, load the datapath (adopting pinned state), check every interface's attachment,
//! start the engine (which makes the kernel maps equal to the store), set ports and mode, attach,
//! tell systemd it is ready, serve until SIGINT/SIGTERM, reload on SIGHUP. Exiting leaves
//! enforcement in place.
//!
//! Every check that can fail comes before the first write to live kernel state, and a failure after
//! it puts the ports and report-only flag back: a failed start leaves the datapath as it was.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use log::{error, info, warn};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::task::JoinSet;

use super::listener::{Context, EngineHandle, Shutdown, ShutdownTrigger};
use super::listeners::{Listeners, ListenersMetrics};
use super::lock::{DaemonLock, PinLock};
use super::notify;
use super::settings::Settings;
use super::{runner, Engine, EngineMetrics, PinnedKernel};
use crate::datapath::loader::{detach_sk_lookup, pinned_attachments};
use crate::datapath::metrics::KernelCollector;
use crate::datapath::{Attached, Clock, ControlMaps, Datapath, PinDir, PolicyMaps};
use crate::error::operator_error;
use crate::evidence::responder::Fallback;
use crate::fleet::{Fleet, FleetMetrics};
use crate::store::Store;

/// How often the pins and attachments are checked (a few `stat`s and one `readdir`).
const HOUSEKEEPING: Duration = Duration::from_secs(5);

/// Depth of the engine's request queue (control socket and, later, the other listeners).
const ENGINE_QUEUE: usize = 64;

/// Runs the daemon until SIGINT/SIGTERM: the whole of `enforcer run` after argument parsing.
pub fn run(settings: Settings) -> anyhow::Result<()> {
    let _lock = DaemonLock::acquire(&settings.state_dir)?;
    match super::gate::raise_fd_limit() {
        Ok((old, new)) if new > old => info!("raised the open-files limit from {old} to {new}"),
        Ok(_) => {}
        Err(e) => warn!("could not raise the open-files limit: {e}"),
    }
    let _pins = PinLock::acquire(&settings.pin_dir)?;
    if settings.reset_state {
        if let Some(aside) = Store::reset(&settings.state_dir)? {
            warn!(
                "--reset-state: moved {} aside; starting with an empty store, so every kernel entry is removed",
                aside.display()
            );
        }
    } else {
        refuse_a_vanished_store(&settings)?;
    }
    // A damaged or emptied store stops start-up here, before the kernel is touched.
    let store = Store::open(&settings.state_dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(Daemon::new(settings).run(store))
}

/// The running daemon.
pub struct Daemon {
    pub settings: Settings,
    /// Top-level metrics registry (`enforcer_` prefix); components add sub-registries.
    pub registry: Registry,
    tasks: JoinSet<anyhow::Result<()>>,
    /// The listeners of the current configuration; a reload that moves an address restarts them.
    listener_tasks: JoinSet<anyhow::Result<()>>,
    engine_metrics: EngineMetrics,
    /// 1 while every map pin and every interface's attachment is in place.
    datapath_attached: Gauge,
    /// Registered once; every bind of the listeners, at start and on reloads, uses these.
    listeners_metrics: ListenersMetrics,
}

impl Daemon {
    pub fn new(settings: Settings) -> Self {
        let mut registry = crate::metrics::registry();
        crate::metrics::register(&mut registry, KernelCollector::new(&settings.pin_dir));
        let engine_metrics = EngineMetrics::default();
        crate::metrics::register(&mut registry, engine_metrics.clone());
        let datapath_attached = Gauge::default();
        registry.register(
            "datapath_attached",
            "1 while every map pin and every interface's attachment is in place; 0 once the datapath vanished",
            datapath_attached.clone(),
        );
        let listeners_metrics = ListenersMetrics::register(&mut registry);
        Self {
            settings,
            registry,
            tasks: JoinSet::new(),
            listener_tasks: JoinSet::new(),
            engine_metrics,
            datapath_attached,
            listeners_metrics,
        }
    }

    /// Loads (adopting pinned maps), checks every interface, reconciles entries, sets ports and
    /// mode, then attaches (adopting pinned links). Entries are in place before the first packet is
    /// judged. On failure, maps this call created are removed again.
    fn start_datapath(
        &self,
        store: Store,
    ) -> anyhow::Result<(Engine<PinnedKernel>, Vec<Attached>)> {
        let s = &self.settings;
        let mut dp = Datapath::load_with(&s.pin_dir, &s.capacity).map_err(operator_error)?;
        let res = self.bring_up(&mut dp, store);
        if res.is_ok() {
            if let Some(logger) = dp.kernel_logger() {
                info!(
                    "kernel log records forwarded ({})",
                    crate::datapath::kernel_log::ENV
                );
                crate::datapath::kernel_log::spawn_drain(logger);
            }
        }
        if res.is_err() && !dp.adopted() {
            drop(dp);
            if let Err(e) = crate::datapath::detach(&s.pin_dir) {
                warn!("removing the maps this failed start created: {e:#}");
            }
        }
        res
    }

    fn bring_up(
        &self,
        dp: &mut Datapath,
        store: Store,
    ) -> anyhow::Result<(Engine<PinnedKernel>, Vec<Attached>)> {
        let s = &self.settings;
        for iface in &s.ifaces {
            dp.check_mode(iface, s.mode)?;
        }
        let mut control = ControlMaps::open_pinned(&s.pin_dir)?;
        let before = (control.ports()?, control.report_only()?);
        // The engine reads the whole store first (a damaged record stops it before any write), then
        // makes the maps equal to it: rebuilt when the pins were gone (after a reboot), reconciled
        // when they were adopted (after a restart).
        let maps = PolicyMaps::open_pinned(&s.pin_dir)?;
        let (mut engine, rep) = Engine::start(
            s.engine.clone(),
            store,
            PinnedKernel(maps),
            self.engine_metrics.clone(),
            Clock::now().unix_secs(),
        )?;
        info!(
            "kernel entries reconciled with the store: {} senders, {} operator rules, {} entries written, {} already as wanted, {} stale removed{}",
            rep.senders,
            rep.operator_rules,
            rep.written,
            rep.kept,
            rep.removed,
            if rep.failed > 0 { format!(", {} failed (retrying)", rep.failed) } else { String::new() }
        );
        let mut attach = || -> anyhow::Result<Vec<Attached>> {
            control.set_ports(&s.ports)?;
            control.set_report_only(s.report_only)?;
            // The events feed the greeting probe only: off, the datapath does not produce them.
            control.set_first_seen(s.probe.enabled)?;
            info!(
                "protecting TCP ports {:?}{}",
                s.ports,
                if s.report_only {
                    " in report-only mode (verdicts counted, every packet passes)"
                } else {
                    ""
                }
            );
            let attached = s
                .ifaces
                .iter()
                .map(|i| dp.attach(i, s.mode))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let notice = &s.mta.notice;
            control.set_notice_fallback_pass(notice.fallback == Fallback::Pass)?;
            if notice.responder {
                dp.attach_sk_lookup(&notice.netns)?;
                info!(
                    "notice responder: sk_lookup attached to {} (while no responder is registered, steered SYNs are {})",
                    notice.netns.display(),
                    if notice.fallback == Fallback::Pass { "passed to the MTA" } else { "dropped" }
                );
            } else if detach_sk_lookup(dp.pins())? {
                info!("notice responder off: removed the sk_lookup link of an earlier run");
            }
            Ok(attached)
        };
        match attach() {
            Ok(out) => {
                engine.keep_start();
                return_freed_memory();
                Ok((engine, out))
            }
            Err(e) => {
                // Entries too: a failed start leaves the datapath exactly as it found it.
                let (undone, failed) = engine.roll_back_start();
                if failed > 0 {
                    error!("the failed start could not put {failed} kernel entries back as they were ({undone} were)");
                } else if undone > 0 {
                    info!("the failed start put the {undone} kernel entries it had changed back as they were");
                }
                let restored = control
                    .set_ports(&before.0)
                    .and_then(|()| control.set_report_only(before.1));
                if let Err(r) = restored {
                    error!("putting the protected ports and report-only flag back failed: {r:#}");
                }
                Err(e)
            }
        }
    }

    /// Notices a datapath that vanished under the daemon (pins removed, interface deleted or
    /// recreated): one log line when that changes, the `enforcer_datapath_attached` gauge, and the engine
    /// refuses changes while it lasts.
    fn housekeeping(&self) -> anyhow::Result<()> {
        let problem =
            datapath_problem(&PinDir::new(&self.settings.pin_dir), &self.settings.ifaces)?;
        self.datapath_attached.set(i64::from(problem.is_none()));
        if self.settings.engine.datapath.set(problem.clone()) {
            match problem {
                Some(p) => {
                    error!("{p}; nothing is enforced there: restart `enforcer run` to attach again")
                }
                None => info!("the datapath is complete again"),
            }
        }
        Ok(())
    }

    /// Starts the datapath and serves until SIGINT/SIGTERM; SIGHUP reloads the configuration.
    pub async fn run(mut self, store: Store) -> anyhow::Result<()> {
        // Bind first: a taken address must not leave a half-started datapath behind.
        let listeners = Listeners::bind(&self.settings, &self.listeners_metrics).await?;
        let (mut engine, attached) = tokio::task::block_in_place(|| self.start_datapath(store))?;
        for a in &attached {
            info!(
                "enforcing on {} ({}{})",
                a.iface,
                a.kind.as_str(),
                if a.adopted { ", adopted" } else { "" }
            );
        }
        self.datapath_attached.set(1);
        info!(
            "maps and links pinned under {}",
            self.settings.pin_dir.display()
        );
        let (stop, shutdown) = Shutdown::new();
        let (handle, requests) = EngineHandle::channel(ENGINE_QUEUE);
        let (reconfigure, reload_rx) = tokio::sync::mpsc::channel(1);
        // The fleet runs next to the engine; its Redis link is a task of its own that nothing
        // waits for (Redis is never on the packet path).
        let fleet = match &self.settings.fleet {
            Some(fs) => {
                let metrics = FleetMetrics::default();
                metrics.register(self.registry.sub_registry_with_prefix("fleet"));
                Some(tokio::task::block_in_place(|| {
                    Fleet::start(fs, &mut engine, metrics)
                })?)
            }
            None => None,
        };
        let engine_stop = shutdown.clone();
        self.tasks.spawn(async move {
            runner::run_with_reload(engine, requests, fleet, reload_rx, engine_stop.wait()).await;
            Ok(())
        });
        // Listeners stop with the daemon or, on a reload that moves them, on their own.
        let (mut listeners_stop, listeners_shutdown) = Shutdown::new();
        let mut ctx = Context {
            settings: Arc::new(self.settings.clone()),
            engine: handle,
            registry: Arc::new(std::mem::take(&mut self.registry)),
            shutdown: listeners_shutdown,
        };
        listeners.start(&mut self.listener_tasks, &ctx);
        notify::notify(&format!(
            "READY=1\nSTATUS=enforcing on {}",
            self.settings.ifaces.join(", ")
        ));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("installing the SIGHUP handler")?;
        let mut tick = tokio::time::interval(HOUSEKEEPING);
        tick.tick().await;
        let result = loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break Ok(()),
                _ = term.recv() => break Ok(()),
                _ = hup.recv() => {
                    notify::reloading();
                    self.reload(&reconfigure, &mut ctx, &mut listeners_stop).await;
                    notify::notify("READY=1");
                }
                _ = tick.tick() => {
                    if let Err(e) = tokio::task::block_in_place(|| self.housekeeping()) {
                        warn!("housekeeping: {e:#}");
                    }
                }
                Some(done) = self.tasks.join_next() => {
                    match done {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => { error!("{e:#}"); break Err(e); }
                        Err(e) => break Err(anyhow::anyhow!("a daemon task failed: {e}")),
                    }
                }
                Some(done) = self.listener_tasks.join_next() => {
                    match done {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => { error!("{e:#}"); break Err(e); }
                        Err(e) if e.is_cancelled() => {}
                        Err(e) => break Err(anyhow::anyhow!("a listener failed: {e}")),
                    }
                }
            }
        };
        notify::notify("STOPPING=1");
        if result.is_ok() {
            info!(
                "exiting; enforcement stays in place (pinned under {}; `enforcer detach` removes it)",
                self.settings.pin_dir.display()
            );
        }
        stop.fire();
        listeners_stop.fire();
        self.listener_tasks.shutdown().await;
        self.tasks.shutdown().await;
        result
    }

    /// SIGHUP: the configuration is read and validated in full first; an invalid one changes nothing
    /// (one line says why). A valid one is applied without detaching: ports and report-only in the
    /// kernel maps, schedule, allow-list and the rest in the engine (entries rewritten in place),
    /// listeners bound again where their address changed.
    async fn reload(
        &mut self,
        reconfigure: &tokio::sync::mpsc::Sender<runner::Reconfigure>,
        ctx: &mut Context,
        listeners_stop: &mut ShutdownTrigger,
    ) {
        let new = match Settings::resolve(self.settings.options.clone()) {
            Ok(s) => s,
            Err(e) => {
                warn!("reload refused, the running configuration stays: {e:#}");
                return;
            }
        };
        let mut new = new;
        // The engine keeps publishing to the board it started with; listeners bound again read it too.
        new.engine.board = self.settings.engine.board.clone();
        let fixed = self.settings.restart_only_changes(&new);
        if !fixed.is_empty() {
            warn!(
                "reload: {} changed; that needs a restart (`systemctl restart enforcer`), the running values stay",
                fixed.join(", ")
            );
            new.ifaces = self.settings.ifaces.clone();
            new.mode = self.settings.mode;
            new.pin_dir = self.settings.pin_dir.clone();
            new.state_dir = self.settings.state_dir.clone();
            new.engine.state_dir = self.settings.engine.state_dir.clone();
            new.capacity = self.settings.capacity;
            new.fleet = self.settings.fleet.clone();
            new.probe = self.settings.probe.clone();
            new.mta.notice = self.settings.mta.notice.clone();
        }
        let kernel = tokio::task::block_in_place(|| -> anyhow::Result<()> {
            let mut control = ControlMaps::open_pinned(&new.pin_dir)?;
            control.set_ports(&new.ports)?;
            control.set_report_only(new.report_only)?;
            Ok(())
        });
        if let Err(e) = kernel {
            warn!("reload: could not update ports/report-only in the kernel (the old values stay): {e:#}");
            return;
        }
        new.engine
            .board
            .set_replies(new.mta.texts.clone(), new.report_only);
        let (done, result) = tokio::sync::oneshot::channel();
        if reconfigure.send((new.engine.clone(), done)).await.is_err() {
            warn!("reload: the engine is stopping");
            return;
        }
        match result.await {
            Ok(Ok(rep)) => info!(
                "reload: schedule and policy applied ({} entries written, {} stale removed)",
                rep.written, rep.removed
            ),
            Ok(Err(e)) => {
                warn!("reload: applying the schedule failed, retried at the next change: {e:#}")
            }
            Err(_) => warn!("reload: the engine stopped"),
        }
        if self.settings.listeners_changed(&new) {
            listeners_stop.fire();
            let drained = tokio::time::timeout(Duration::from_secs(5), async {
                while self.listener_tasks.join_next().await.is_some() {}
            })
            .await;
            if drained.is_err() {
                self.listener_tasks.shutdown().await;
            }
            let listeners = match Listeners::bind(&new, &self.listeners_metrics).await {
                Ok(l) => Some(l),
                Err(e) => {
                    warn!("reload: {e:#}; listening where it did before");
                    new.metrics_addr = self.settings.metrics_addr;
                    new.socket = self.settings.socket.clone();
                    new.mta.milter = self.settings.mta.milter.clone();
                    new.mta.policy = self.settings.mta.policy.clone();
                    Listeners::bind(&new, &self.listeners_metrics).await.ok()
                }
            };
            let (trigger, shutdown) = Shutdown::new();
            *listeners_stop = trigger;
            ctx.shutdown = shutdown;
            ctx.settings = Arc::new(new.clone());
            match listeners {
                Some(l) => l.start(&mut self.listener_tasks, ctx),
                None => error!("reload: could not bind the listeners again; control socket and metrics are down until a restart"),
            }
        } else {
            ctx.settings = Arc::new(new.clone());
        }
        info!(
            "reloaded {}: ports {:?}{}",
            new.config
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "(no configuration file)".into()),
            new.ports,
            if new.report_only { ", report-only" } else { "" }
        );
        self.settings = new;
    }
}

/// A store file that is gone while the pinned maps hold entries (deleted, or `--state-dir` points
/// somewhere new): reconciling would remove every entry, so start-up stops and says so.
fn refuse_a_vanished_store(s: &Settings) -> anyhow::Result<()> {
    let db = s.state_dir.join(crate::store::DB_FILE);
    if db.exists() {
        return Ok(());
    }
    let Ok(maps) = PolicyMaps::open_pinned(&s.pin_dir) else {
        return Ok(()); // no datapath yet (first start, after a reboot): nothing to lose
    };
    let held = maps.entries().map(|e| e.len()).unwrap_or(0);
    if held == 0 {
        return Ok(());
    }
    crate::error::usage(format!(
        "the state database {} does not exist, but the datapath pinned at {} holds {held} entries: starting would remove them all. Restore the file (or pass the --state-dir it is in), or start over with `enforcer run --reset-state`",
        db.display(),
        s.pin_dir.display()
    ))
}

/// What is missing from the datapath the daemon runs, if anything.
fn datapath_problem(pins: &PinDir, ifaces: &[String]) -> anyhow::Result<Option<String>> {
    let gone: Vec<&str> = enforcer_common::maps::ALL_MAPS
        .iter()
        .copied()
        .filter(|n| !pins.map(n).exists())
        .collect();
    if !gone.is_empty() {
        return Ok(Some(format!(
            "the datapath under {} is gone (map pins {} removed; detached behind the daemon's back?)",
            pins.root().display(),
            gone.join(", ")
        )));
    }
    let attached = pinned_attachments(pins)?;
    for iface in ifaces {
        if !attached.iter().any(|a| &a.iface == iface && a.live) {
            return Ok(Some(format!(
                "{iface} is no longer enforced (its attachment under {} was removed, or the interface was deleted or recreated)",
                pins.links().display()
            )));
        }
    }
    Ok(None)
}

/// Gives the heap pages freed after a large start or reload back to the kernel. Start-up reads every
/// record whole and keeps a compact copy; glibc would otherwise keep the freed pages resident, and
/// a daemon holding a million senders in 200 MiB would show twice that for good.
pub(super) fn return_freed_memory() {
    // SAFETY: malloc_trim only walks glibc's own heap under its lock; no pointer of ours is involved.
    unsafe {
        libc::malloc_trim(0);
    }
}
