//! `enforcer fleet status [--json]`: the daemon's connection to the fleet's Redis, lag, queued
//! changes and when the other hosts were last seen.

use super::senders::SocketArg;
use crate::control::Request;
use crate::fleet::status::FleetStatus;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Sub,
}

#[derive(Debug, clap::Subcommand)]
pub enum Sub {
    /// Connection to Redis, lag, queued changes, and the other hosts last seen.
    Status(StatusArgs),
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub socket: SocketArg,
    /// Print the JSON object (field names are stable).
    #[arg(long)]
    pub json: bool,
}

pub fn execute(args: Args) -> anyhow::Result<()> {
    match args.command {
        Sub::Status(a) => {
            let v = a.socket.call(&Request::FleetStatus {})?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let s: FleetStatus = serde_json::from_value(v)?;
                print!("{}", s.render());
            }
            Ok(())
        }
    }
}
