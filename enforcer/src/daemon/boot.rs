//! `enforcer run`'s lifecycle: lock the state directory, bind every listener, load and attach the
//! datapath (adopting pinned state), start the engine (which makes the kernel maps equal to the
//! store), tell systemd it is ready, serve until SIGINT/SIGTERM, reload on SIGHUP. Exiting leaves
//! enforcement in place.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use log::{error, info, warn};
use prometheus_client::registry::Registry;
use tokio::task::JoinSet;

use super::listener::{Context, EngineHandle, Shutdown, ShutdownTrigger};
use super::listeners::Listeners;
use super::lock::DaemonLock;
use super::notify;
use super::settings::Settings;
use super::{runner, Engine, EngineMetrics, PinnedKernel};
use crate::datapath::loader::pinned_attachments;
use crate::datapath::metrics::KernelCollector;
use crate::datapath::{Attached, Clock, ControlMaps, Datapath, PinDir, PolicyMaps};
use crate::error::operator_error;
use crate::store::Store;

/// How often attachments are checked for a vanished interface.
const HOUSEKEEPING: Duration = Duration::from_secs(15);

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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(Daemon::new(settings).run())
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
}

impl Daemon {
    pub fn new(settings: Settings) -> Self {
        let mut registry = crate::metrics::registry();
        crate::metrics::register(&mut registry, KernelCollector::new(&settings.pin_dir));
        let engine_metrics = EngineMetrics::default();
        crate::metrics::register(&mut registry, engine_metrics.clone());
        Self {
            settings,
            registry,
            tasks: JoinSet::new(),
            listener_tasks: JoinSet::new(),
            engine_metrics,
        }
    }

    /// Loads (adopting pinned maps), sets ports and mode, reconciles entries, then attaches (adopting
    /// pinned links). Entries are in place before the first packet is judged.
    fn start_datapath(&self) -> anyhow::Result<(Engine<PinnedKernel>, Vec<Attached>)> {
        let s = &self.settings;
        let mut dp = Datapath::load(&s.pin_dir).map_err(operator_error)?;
        let mut control = ControlMaps::open_pinned(&s.pin_dir)?;
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
        let store = Store::open(&s.state_dir)?;
        let maps = PolicyMaps::open_pinned(&s.pin_dir)?;
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
        let mut out = Vec::new();
        for iface in &s.ifaces {
            out.push(dp.attach(iface, s.mode)?);
        }
        Ok((engine, out))
    }

    /// Warns about attachments whose interface disappeared. (Expired operator rules are removed by
    /// the engine at their expiry time.)
    fn housekeeping(&self) -> anyhow::Result<()> {
        for a in pinned_attachments(&PinDir::new(&self.settings.pin_dir))? {
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

    /// Starts the datapath and serves until SIGINT/SIGTERM; SIGHUP reloads the configuration.
    pub async fn run(mut self) -> anyhow::Result<()> {
        // Bind first: a taken address must not leave a half-started datapath behind.
        let listeners = Listeners::bind(&self.settings, &mut self.registry).await?;
        let (engine, attached) = tokio::task::block_in_place(|| self.start_datapath())?;
        for a in &attached {
            info!(
                "enforcing on {} ({}{})",
                a.iface,
                a.kind.as_str(),
                if a.adopted { ", adopted" } else { "" }
            );
        }
        info!(
            "maps and links pinned under {}",
            self.settings.pin_dir.display()
        );
        let (stop, shutdown) = Shutdown::new();
        let (handle, requests) = EngineHandle::channel(ENGINE_QUEUE);
        let (reconfigure, reload_rx) = tokio::sync::mpsc::channel(1);
        let engine_stop = shutdown.clone();
        self.tasks.spawn(async move {
            runner::run_with_reload(engine, requests, reload_rx, engine_stop.wait()).await;
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
            let mut scratch = Registry::default();
            let listeners = match Listeners::bind(&new, &mut scratch).await {
                Ok(l) => Some(l),
                Err(e) => {
                    warn!("reload: {e:#}; listening where it did before");
                    new.metrics_addr = self.settings.metrics_addr;
                    new.socket = self.settings.socket.clone();
                    Listeners::bind(&new, &mut scratch).await.ok()
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
