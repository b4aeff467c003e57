//! The daemon's engine: turns sender records into kernel entries and keeps maps, store and clock in
//! step. `enforcer run` builds an [`Engine`] over the pinned maps after attaching, then drives it with
//! [`runner::run`] next to the control socket.

mod engine;
pub mod kernel;
pub mod metrics;
pub mod runner;
pub mod views;

pub use engine::{engine_rule, Engine, EngineSettings, Reconciled, Touched};
pub use kernel::{Kernel, MemKernel, PinnedKernel};
pub use metrics::EngineMetrics;

#[cfg(test)]
mod tests;
