//! Command line: one module per subcommand, each with its clap `Args` and an `execute`.

use clap::{Parser, Subcommand};

pub mod catalog;
pub mod check_config;
pub mod classify;
pub mod completions;
pub mod detach;
pub mod entry;
pub mod evidence;
pub mod explain;
pub mod fleet;
pub mod import;
pub mod list;
pub mod pause;
pub mod run;
pub mod sender;
pub mod senders;
pub mod stats;

pub use crate::error::{usage, UsageError, EXIT_USAGE};

#[derive(Debug, Parser)]
#[command(
    name = "enforcer",
    version,
    about = "Throttle, then block, persistently vulnerable mail servers at XDP speed",
    long_about = "enforcer classifies sending mail servers from SMTP evidence (banners, EHLO, replies, \
Received headers), runs Exchange Online-style progressive enforcement (report only, growing throttle \
windows, block) and enforces verdicts on TCP SYNs in an XDP (or TC) program before they reach the MTA."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log line format on stderr: text (no timestamps under systemd, whose journal adds them) or
    /// json (one object per line). Filter with RUST_LOG (e.g. RUST_LOG=debug).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t,
        env = "ENFORCER_LOG_FORMAT"
    )]
    pub log_format: crate::logging::LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load and attach the datapath, then run the daemon (control socket, engine, metrics).
    Run(run::Args),
    /// Remove programs, links and pins.
    Detach(detach::Args),
    /// Drop every SYN from an address or prefix.
    Block(entry::TargetArgs),
    /// Answer every SYN from an address or prefix with a TCP RST (connection refused).
    Reject(entry::TargetArgs),
    /// Rate-limit or duty-cycle SYNs from an address or prefix.
    Throttle(entry::ThrottleArgs),
    /// Always let an address or prefix through (wins inside a blocked prefix).
    Allow(entry::TargetArgs),
    /// Remove the entry for an address or prefix, every entry in a file (--from), or a named list.
    Unset(entry::UnsetArgs),
    /// Apply a list of addresses and prefixes (plain or Spamhaus DROP format) as one change;
    /// with --list NAME, replace that named list atomically.
    Import(import::Args),
    /// List kernel policy entries.
    List(list::Args),
    /// Kernel packet counters summed over CPUs, by action and reason.
    Stats(stats::Args),
    /// Which entry matches an address and what a SYN from it would get right now.
    Explain(explain::Args),
    /// Classify a sending server from a transcript or header block.
    Classify(classify::Args),
    /// Check an operator's Exchange build catalog (`catalog check FILE`).
    Catalog(catalog::Args),
    /// List senders in progressive enforcement.
    Senders(senders::Args),
    /// Show one sender's full record.
    Sender(sender::Args),
    /// Feed evidence (transcript or headers) for a sender to the daemon.
    Evidence(evidence::Args),
    /// Pause enforcement for a sender (like Exchange Online's tenant exemption).
    Pause(pause::PauseArgs),
    /// Resume enforcement for a paused sender at the stage it had reached.
    Resume(pause::AddrArgs),
    /// Delete a sender's record and its kernel entries.
    Forget(pause::AddrArgs),
    /// Validate a configuration file without touching anything (exit status 2 when it is invalid).
    CheckConfig(check_config::Args),
    /// Print shell completions: `enforcer completions bash > /etc/bash_completion.d/enforcer`.
    Completions(completions::Args),
    /// Write the man pages (enforcer.8, one per subcommand) into a directory (used for packaging).
    #[command(hide = true)]
    Manpages(completions::ManArgs),
    /// Several MX hosts sharing senders and verdicts through Redis: `enforcer fleet status`.
    Fleet(fleet::Args),
}

/// Runs one command; the `Err` is printed as one clear line by `main` with exit status 2 when it is a
/// [`UsageError`], 1 otherwise.
pub fn execute(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(a) => run::execute(a),
        Command::Detach(a) => detach::execute(a),
        Command::Block(a) => entry::execute_block(a),
        Command::Reject(a) => entry::execute_reject(a),
        Command::Throttle(a) => entry::execute_throttle(a),
        Command::Allow(a) => entry::execute_allow(a),
        Command::Unset(a) => entry::execute_unset(a),
        Command::Import(a) => import::execute(a),
        Command::List(a) => list::execute(a),
        Command::Stats(a) => stats::execute(a),
        Command::Explain(a) => explain::execute(a),
        Command::Classify(a) => classify::execute(a),
        Command::Catalog(a) => catalog::execute(a),
        Command::Senders(a) => senders::execute(a),
        Command::Sender(a) => sender::execute(a),
        Command::Evidence(a) => evidence::execute(a),
        Command::Pause(a) => pause::execute_pause(a),
        Command::Resume(a) => pause::execute_resume(a),
        Command::Forget(a) => pause::execute_forget(a),
        Command::CheckConfig(a) => check_config::execute(a),
        Command::Completions(a) => completions::execute(a),
        Command::Manpages(a) => completions::execute_man(a),
        Command::Fleet(a) => fleet::execute(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
