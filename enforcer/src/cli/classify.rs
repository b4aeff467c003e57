//! `enforcer classify` (scaffold: its owner replaces this file).

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn execute(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`enforcer classify` is not built yet")
}
