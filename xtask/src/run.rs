//! `cargo xtask run -- <enforcer args>`: set up, build release, run as root.

use crate::util::{cargo, require_root, run as run_cmd, workspace_root};
use anyhow::Result;
use std::os::unix::process::CommandExt as _;
use std::process::Command;

#[derive(clap::Args)]
pub struct Args {
    /// Arguments for `enforcer`, e.g. `run --iface eth0`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    crate::setup::ensure()?;
    run_cmd(cargo().args(["build", "--release", "-p", "enforcer"]))?;
    let bin = workspace_root().join("target/release/enforcer");
    // Read-only commands (--help, classify) don't need root; enforcer says itself when it does.
    if args.args.first().map(String::as_str) == Some("run") {
        require_root("`enforcer run`")?;
    }
    let err = Command::new(&bin).args(&args.args).exec();
    Err(anyhow::anyhow!("failed to exec {}: {err}", bin.display()))
}
