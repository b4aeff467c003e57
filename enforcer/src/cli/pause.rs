//! `enforcer pause <IP> --days N`, `enforcer resume <IP>`, `enforcer forget <IP>`.

use super::senders::SocketArg;
use crate::control::Request;

#[derive(Debug, clap::Args)]
pub struct PauseArgs {
    /// Sender address (or the aggregated prefix of its record).
    #[arg(value_name = "IP")]
    pub target: String,
    /// Days to pause, counted against the sender's yearly pause budget.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=366))]
    pub days: u64,
    #[command(flatten)]
    pub socket: SocketArg,
    /// Print the updated record as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct AddrArgs {
    /// Sender address (or the aggregated prefix of its record).
    #[arg(value_name = "IP")]
    pub target: String,
    #[command(flatten)]
    pub socket: SocketArg,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn execute_pause(a: PauseArgs) -> anyhow::Result<()> {
    let v = a.socket.call(&Request::Pause {
        target: a.target,
        days: a.days,
    })?;
    super::sender::print_detail(v, a.json)
}

pub fn execute_resume(a: AddrArgs) -> anyhow::Result<()> {
    let v = a.socket.call(&Request::Resume { target: a.target })?;
    super::sender::print_detail(v, a.json)
}

pub fn execute_forget(a: AddrArgs) -> anyhow::Result<()> {
    let v = a.socket.call(&Request::Forget {
        target: a.target.clone(),
    })?;
    if a.json {
        super::entry::emit_json(&v)?;
    } else {
        super::entry::emit(format_args!(
            "forgot {}: record deleted, its engine entry removed",
            v.get("forgotten")
                .and_then(|p| p.as_str())
                .unwrap_or(&a.target)
        ));
    }
    Ok(())
}
