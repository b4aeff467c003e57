//! What every listener of the daemon (control socket, metrics; milter, policy, responder, fleet) has
//! in common: it claims its address before the datapath is touched, registers its own metrics, and
//! then serves with a shared [`Context`] until shutdown.

use std::future::Future;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use super::settings::Settings;
use crate::control::{Incoming, Reply, Request};

/// A listener of the daemon. [`Listeners`](super::listeners::Listeners) binds every listener first
/// (a taken address stops start-up with nothing changed), then starts them all the same way.
pub trait Listener: Sized + Send + 'static {
    /// Short name for log lines ("control", "metrics").
    const NAME: &'static str;
    /// Its metric names start `enforcer_<PREFIX>_`.
    const PREFIX: &'static str;

    /// The listener's metrics. Made and registered once, when the daemon starts, whether or not the
    /// listener is on, and handed to every bind after that: a reload that moves, starts or stops the
    /// listener keeps its series (zeros while it is off, never a family that appears or vanishes).
    type Metrics: Clone + Default + Send + Sync + 'static;

    /// Registers `metrics` under the listener's own sub-registry.
    fn register(metrics: &Self::Metrics, registry: &mut Registry);

    /// Claims the listener's address or socket. `None` when the settings do not ask for this
    /// listener. Runs before the datapath is touched.
    fn bind(
        settings: &Settings,
        metrics: &Self::Metrics,
    ) -> impl Future<Output = anyhow::Result<Option<Self>>> + Send;

    /// One log line saying where it listens ("control socket /run/enforcer/enforcer.sock").
    fn describe(&self) -> String;

    /// Serves until `ctx.shutdown` fires. An `Err` stops the daemon.
    fn serve(self, ctx: Context) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Starts `listener` as one of the daemon's tasks (after logging where it listens).
pub fn start<L: Listener>(tasks: &mut JoinSet<anyhow::Result<()>>, listener: L, ctx: &Context) {
    log::info!("{}", listener.describe());
    let ctx = ctx.clone();
    tasks.spawn(async move {
        listener
            .serve(ctx)
            .await
            .map_err(|e| e.context(format!("the {} listener failed", L::NAME)))
    });
}

/// What every listener is given.
#[derive(Clone)]
pub struct Context {
    pub settings: Arc<Settings>,
    /// The engine: every change to senders and operator rules goes through it, in arrival order.
    pub engine: EngineHandle,
    /// Every registered metric (read-only once the daemon serves).
    pub registry: Arc<Registry>,
    pub shutdown: Shutdown,
}

/// Sends requests to the engine loop ([`runner::run`](super::runner::run)) and awaits the reply.
#[derive(Clone)]
pub struct EngineHandle(mpsc::Sender<Incoming>);

impl EngineHandle {
    /// A handle and the receiving end the engine loop drains.
    pub fn channel(depth: usize) -> (Self, mpsc::Receiver<Incoming>) {
        let (tx, rx) = mpsc::channel(depth);
        (Self(tx), rx)
    }

    /// The raw queue, for a listener that forwards whole [`Incoming`]s (the control socket).
    pub fn sender(&self) -> mpsc::Sender<Incoming> {
        self.0.clone()
    }

    /// Asks the engine and waits for its reply.
    pub async fn call(&self, request: Request) -> Reply {
        let (tx, rx) = oneshot::channel();
        if self.0.send(Incoming { request, reply: tx }).await.is_err() {
            return Reply::internal("the daemon is shutting down");
        }
        rx.await
            .unwrap_or_else(|_| Reply::internal("the engine dropped the request"))
    }
}

/// Fires once when the daemon stops; every listener and the engine loop watch it.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// The daemon's side of [`Shutdown`].
pub struct ShutdownTrigger(watch::Sender<bool>);

impl Shutdown {
    pub fn new() -> (ShutdownTrigger, Self) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Self(rx))
    }

    /// Completes when shutdown was triggered (or the trigger is gone).
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

impl ShutdownTrigger {
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }
}
