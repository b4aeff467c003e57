//! Control plane: the daemon's Unix socket (default `/run/enforcer/enforcer.sock`, mode 0600, root
//! only) and the CLI client. Wire format in [`protocol`].

pub mod client;
pub mod listener;
pub mod protocol;
pub mod server;

pub use client::{request, ClientError};
pub use listener::ControlListener;
pub use protocol::{Reply, Request};
pub use server::{ControlServer, Incoming, Limits};

#[cfg(test)]
mod tests;
