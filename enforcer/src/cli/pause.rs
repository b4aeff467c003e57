//! `enforcer pause|resume|forget` (scaffold: its owner replaces this file).

#[derive(Debug, clap::Args)]
pub struct PauseArgs {}
#[derive(Debug, clap::Args)]
pub struct AddrArgs {}

pub fn execute_pause(_a: PauseArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
pub fn execute_resume(_a: AddrArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
pub fn execute_forget(_a: AddrArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
