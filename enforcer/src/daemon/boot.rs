//! `enforcer run`'s lifecycle: lock the state directory, bind every listener, load and attach the
//! datapath (adopting pinned state), start the engine (which makes the kernel maps equal to the
//! store), serve until SIGINT/SIGTERM. Exiting leaves enforcement in place.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use log::{error, info, warn};
use prometheus_client::registry::Registry;
use tokio::task::JoinSet;

use super::listener::{Context, EngineHandle, Shutdown};
use super::listeners::Listeners;
use super::lock::DaemonLock;
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
    engine_metrics: EngineMetrics,
}

impl Daemon {
    pub fn new(settings: Settings) -> Self {
        let mut registry = crate::metrics::registry();
        KernelCollector::new(&settings.pin_dir).register(&mut registry);
        let engine_metrics = EngineMetrics::default();
        engine_metrics.register(registry.sub_registry_with_prefix("engine"));
        Self {
            settings,
            registry,
            tasks: JoinSet::new(),
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

    /// Starts the datapath and serves until SIGINT/SIGTERM.
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
        let engine_stop = shutdown.clone();
        self.tasks.spawn(async move {
            runner::run(engine, requests, engine_stop.wait()).await;
            Ok(())
        });
        let ctx = Context {
            settings: Arc::new(self.settings.clone()),
            engine: handle,
            registry: Arc::new(std::mem::take(&mut self.registry)),
            shutdown,
        };
        listeners.start(&mut self.tasks, &ctx);
        drop(ctx);
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
                        Ok(Err(e)) => { error!("{e:#}"); stop.fire(); return Err(e); }
                        Err(e) => { stop.fire(); return Err(anyhow::anyhow!("a daemon task failed: {e}")) }
                    }
                }
            }
        }
        info!(
            "exiting; enforcement stays in place (pinned under {}; `enforcer detach` removes it)",
            self.settings.pin_dir.display()
        );
        stop.fire();
        self.tasks.shutdown().await;
        Ok(())
    }
}
