//! `[capacity]` sizes the kernel maps, as root: a daemon started with `v4_hosts = 64` creates a
//! 64-entry host map that every CLI command still opens; loading the datapath again with another
//! size is refused with the key to change (or `enforcer detach`), and leaves the pinned maps as they
//! were.
//!
//! Run: `cargo test -p tests --test capacity -- --test-threads=1` (root).

use enforcer::datapath::{Capacity, Datapath};
use enforcer_common::maps::POLICY_V4_HOSTS;
use tests::netns::Topology;
use tests::process::{cli_ok, Daemon, Dirs};

/// A config file removed on drop.
struct Config(std::path::PathBuf);
impl Drop for Config {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn v4_hosts_max(dirs: &Dirs) -> u32 {
    let path = dirs.pin_dir.join("maps").join(POLICY_V4_HOSTS);
    aya::maps::MapData::from_pin(&path)
        .unwrap()
        .info()
        .unwrap()
        .max_entries()
}

#[test]
fn capacity_sizes_the_maps_and_a_change_needs_detach() {
    let topo = Topology::new("cap");
    let dirs = Dirs::new("capacity");
    let cfg =
        Config(std::env::temp_dir().join(format!("enforcer-cap-{}.toml", std::process::id())));
    std::fs::write(&cfg.0, "[capacity]\nv4_hosts = 64\nrate_state = 1024\n").unwrap();
    let daemon = Daemon::start(
        &topo.server,
        &topo.server_if,
        &dirs,
        &["--config", cfg.0.to_str().unwrap()],
    );
    assert_eq!(v4_hosts_max(&dirs), 64);
    cli_ok(&dirs, &["block", "192.0.2.7", "--reason", "small map"]);
    assert!(cli_ok(&dirs, &["list"]).contains("small map"));
    assert!(daemon.stop());
    // Without the daemon the CLI opens the 64-entry maps too.
    cli_ok(&dirs, &["block", "192.0.2.8"]);
    let other = Capacity {
        v4_hosts: 128,
        rate_state: 1024,
        ..Capacity::default()
    };
    let err = match Datapath::load_with(&dirs.pin_dir, &other) {
        Ok(_) => panic!("a different capacity must not adopt the pinned maps"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("capacity.v4_hosts") && err.contains("enforcer detach"),
        "{err}"
    );
    assert_eq!(v4_hosts_max(&dirs), 64, "the pinned maps are untouched");
    let listed = cli_ok(&dirs, &["list", "--json"]);
    assert!(
        listed.contains("192.0.2.7/32") && listed.contains("192.0.2.8/32"),
        "{listed}"
    );
}
