//! The one source of truth shared by `enforcer-ebpf` (kernel) and `enforcer` (userspace): map names,
//! `#[repr(C)]` keys and values with their sizes asserted, action, flag and counter codes.
//!
//! Addresses are stored as the raw network-order bytes found in the packet, so neither side ever
//! byte-swaps an address.
#![cfg_attr(not(any(test, feature = "user")), no_std)]

pub mod config;
pub mod counters;
pub mod filter;
pub mod first_seen;
pub mod maps;
pub mod policy;

pub use config::GlobalConfig;
pub use counters::Reason;
pub use policy::{PolicyEntry, PrefixKeyV4, PrefixKeyV6, RateKey, RateState};
