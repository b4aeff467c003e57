//! `enforcer block|reject|throttle|allow|unset` (scaffold: its owner replaces this file).

#[derive(Debug, clap::Args)]
pub struct TargetArgs {}
#[derive(Debug, clap::Args)]
pub struct ThrottleArgs {}
#[derive(Debug, clap::Args)]
pub struct UnsetArgs {}

pub fn execute_block(_a: TargetArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
pub fn execute_reject(_a: TargetArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
pub fn execute_allow(_a: TargetArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
pub fn execute_throttle(_a: ThrottleArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
pub fn execute_unset(_a: UnsetArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
