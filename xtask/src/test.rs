//! `cargo xtask test`: every test. Unprivileged first (fast feedback), then the privileged `tests`
//! crate as root, one test at a time because those tests share kernel state (bpffs, XDP attach points).

use crate::util::{cargo, require_root, run as run_cmd};
use anyhow::Result;

#[derive(clap::Args)]
pub struct Args {
    /// Only run privileged tests whose name contains this filter.
    filter: Option<String>,
    /// Skip the unprivileged unit tests.
    #[arg(long)]
    privileged_only: bool,
}

pub fn run_all(args: &Args) -> Result<()> {
    if !args.privileged_only {
        run_cmd(cargo().args([
            "test",
            "--workspace",
            "--exclude",
            "enforcer-ebpf",
            "--exclude",
            "tests",
        ]))?;
    }
    require_root("the privileged tests")?;
    let mut c = cargo();
    c.args(["test", "-p", "tests", "--", "--test-threads=1"]);
    if let Some(f) = &args.filter {
        c.arg(f);
    }
    run_cmd(&mut c)
}

pub fn run(args: Args) -> Result<()> {
    crate::setup::ensure()?;
    run_all(&args)
}
