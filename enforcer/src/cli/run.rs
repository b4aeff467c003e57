//! `enforcer run` (scaffold: its owner replaces this file).

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn execute(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`enforcer run` is not built yet")
}
