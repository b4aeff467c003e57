//! `enforcer detach` (scaffold: its owner replaces this file).

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn execute(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`enforcer detach` is not built yet")
}
