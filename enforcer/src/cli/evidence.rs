//! `enforcer evidence <IP> FILE|-`: feed a transcript or header block for a sender to the daemon,
//! which classifies it and updates the sender's record (entering or leaving enforcement).

use super::senders::SocketArg;
use crate::control::protocol::MAX_LINE;
use crate::control::Request;
use std::io::Read;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Sending host the evidence is about: the connecting address. Only the Received field(s) that host
    /// wrote (the newest ones) are attributed to it, never an older hop.
    #[arg(value_name = "IP")]
    pub target: String,
    /// SMTP transcript, EHLO response or header block; `-` reads standard input.
    #[arg(value_name = "FILE|-")]
    pub file: PathBuf,
    #[command(flatten)]
    pub socket: SocketArg,
    /// Print the updated record as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn execute(args: Args) -> anyhow::Result<()> {
    let Ok(ip) = args.target.trim().parse::<std::net::IpAddr>() else {
        return super::usage(format!(
            "`{}` is not an IP address; give the sending host's address (e.g. 192.0.2.7)",
            args.target
        ));
    };
    let host = crate::net::Prefix::host(ip);
    if let Err(e) = crate::net::check_sender(&host, &crate::net::local_addresses(), false) {
        return super::usage(e);
    }
    let bytes = read_input(&args.file)?;
    let v = args.socket.call(&Request::Evidence {
        // IPv4-mapped IPv6 is sent as the IPv4 address it stands for.
        target: host.addr().to_string(),
        text: String::from_utf8_lossy(&bytes).into_owned(),
    })?;
    super::sender::print_detail(v, args.json)
}

fn read_input(file: &PathBuf) -> anyhow::Result<Vec<u8>> {
    let limit = (MAX_LINE / 2) as u64;
    let mut buf = Vec::new();
    let res = if file.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .take(limit + 1)
            .read_to_end(&mut buf)
    } else {
        std::fs::File::open(file).and_then(|f| f.take(limit + 1).read_to_end(&mut buf))
    };
    if let Err(e) = res {
        return super::usage(format!(
            "cannot read evidence from {}: {e}; give a readable file or `-` for standard input",
            file.display()
        ));
    }
    if buf.len() as u64 > limit {
        return super::usage(format!(
            "{} is larger than {limit} bytes; feed only the transcript or the header block",
            file.display()
        ));
    }
    Ok(buf)
}
