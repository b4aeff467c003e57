//! enforcer: classify sending mail servers from SMTP evidence, run Exchange Online–style progressive
//! enforcement, and enforce verdicts on TCP SYNs in XDP/TC.

pub mod classify;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod datapath;
pub mod duration;
pub mod error;
pub mod evidence;
pub mod feed;
pub mod fleet;
pub mod interner;
pub mod listing;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod policy;
pub mod rule;
pub mod smtp;
pub mod store;
mod text_serde;

/// The eBPF object built by `build.rs` from `enforcer-ebpf`.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/enforcer"));
