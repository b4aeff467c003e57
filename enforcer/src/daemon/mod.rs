//! The daemon (`enforcer run`): its boot and lifecycle ([`boot`]), its settings ([`settings`]), its
//! listeners ([`listeners`]), and the engine that turns sender records into kernel entries and keeps
//! maps, store and clock in step ([`Engine`], driven by [`runner::run`]).
//!
//! Boot order ([`boot::Daemon::run`]): lock the state directory, bind every listener, load and attach
//! the datapath and reconcile the maps with the store, start the engine loop, start the listeners,
//! serve until SIGINT/SIGTERM.
//!
//! # Adding a listener (milter, policy, responder, fleet, ...)
//! 1. Give it one module of its own (e.g. `milter/listener.rs`) with a type implementing
//!    [`listener::Listener`]: its `Metrics` type and `register` (under `enforcer_<PREFIX>_`; the daemon
//!    makes and registers them once at start, listener on or off, and hands the same ones to every
//!    bind, so a reload keeps the series); `bind` claims the address from [`Settings`] (return
//!    `Ok(None)` when the settings do not ask for it); `describe` is the one log line saying where it
//!    listens; `serve` runs until `ctx.shutdown.wait()` completes.
//! 2. Inside `serve`, send work to the engine with `ctx.engine.call(Request::...)`: the engine applies
//!    requests one at a time in arrival order, so a listener holds no state of its own that the
//!    store does not have.
//! 3. Add a field for it to [`listeners::Listeners`] and [`listeners::ListenersMetrics`], one line in
//!    each `bind`, `register` and `start`.
//! 4. Add its options to [`settings::Options`]/[`Settings`] (and the flag to `cli/run.rs`, the key to
//!    `config.rs` and enforcer.example.toml).
//!
//! The fleet (`crate::fleet`, `[fleet]`) is not a listener: it merges other hosts' records into the
//! engine, which no request expresses, so the engine loop drives it ([`runner::run_with`]) and its
//! Redis link is a task of its own that the engine never waits for.
//!
//! Nothing here imports from `cli/`: the command line only parses and prints.

pub mod boot;
mod engine;
pub mod gate;
pub mod kernel;
pub mod listener;
pub mod listeners;
pub mod lock;
pub mod metrics;
pub mod notify;
pub mod runner;
pub mod settings;
pub mod views;

pub use engine::{
    engine_rule, DatapathHealth, Engine, EngineSettings, LogLimit, Reconciled, Touched,
};
pub use kernel::{Kernel, MemKernel, PinnedKernel};
pub use metrics::EngineMetrics;
pub use settings::{Options, Settings};

#[cfg(test)]
mod tests;
