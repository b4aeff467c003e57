//! Userspace side of the XDP/TC datapath: loading and attaching the programs, pinning and adopting
//! maps and links, typed map access, kernel counters and the clock the kernel uses.

pub mod batch;
pub mod capacity;
pub mod clock;
pub mod eval;
pub mod filter;
pub mod kernel_log;
pub mod loader;
pub mod maps;
pub mod metrics;
pub mod stats;
pub mod sys;

pub use capacity::Capacity;
pub use clock::Clock;
pub use loader::{detach, Attached, Datapath, Kind, Mode};
pub use maps::{
    ControlMaps, IfaceSlots, MapFull, NoticeSockets, OpenError, PinDir, PolicyMaps, RateMap,
    StatsMap,
};

/// Default pin directory.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/enforcer";
