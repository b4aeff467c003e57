//! `enforcer senders [--json]`: every sender the daemon knows, with its stage and what comes next.

use crate::control::{self, client::to_cli_error, Request};
use crate::daemon::views::SenderView;
use std::path::PathBuf;

/// `--socket` and `--state-dir`, shared by every command that talks to the daemon.
#[derive(Debug, Clone, clap::Args)]
pub struct SocketArg {
    /// Control socket of the running daemon [default: /run/enforcer/enforcer.sock, or
    /// <state-dir>/enforcer.sock when the daemon runs with another --state-dir].
    #[arg(long, value_name = "PATH", env = "ENFORCER_SOCKET")]
    pub socket: Option<PathBuf>,
    /// State directory of the daemon to talk to: its socket follows it unless --socket is given.
    #[arg(long, value_name = "DIR", env = "ENFORCER_STATE_DIR", default_value = crate::store::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
}

impl SocketArg {
    /// The socket: `--socket`, else the one that goes with the state directory.
    pub fn path(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| crate::config::default_socket_for(&self.state_dir))
    }

    /// Sends one request to the daemon; bad input comes back as a usage error (exit 2).
    pub fn call(&self, req: &Request) -> anyhow::Result<serde_json::Value> {
        control::request(&self.path(), req).map_err(to_cli_error)
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub socket: SocketArg,
    /// Print a JSON array (one object per sender; field names are stable).
    #[arg(long)]
    pub json: bool,
}

pub fn execute(args: Args) -> anyhow::Result<()> {
    let v = args.socket.call(&Request::Senders)?;
    if args.json {
        super::entry::emit_json(&v)?;
        return Ok(());
    }
    let list: Vec<SenderView> = serde_json::from_value(v)?;
    super::entry::emit_text(&table(&list));
    Ok(())
}

/// The human table.
pub fn table(list: &[SenderView]) -> String {
    if list.is_empty() {
        return "no senders recorded (feed evidence with `enforcer evidence <IP> FILE`)\n".into();
    }
    let dash = || "-".to_string();
    let rows: Vec<[String; 7]> = list
        .iter()
        .map(|s| {
            [
                s.prefix.to_string(),
                s.state.clone(),
                s.stage
                    .map(|n| format!("{n} {}", s.stage_action.clone().unwrap_or_default()))
                    .unwrap_or_else(dash),
                s.first_detected.clone().unwrap_or_else(dash),
                match (s.next_stage, &s.next_stage_at) {
                    (Some(n), Some(at)) => format!("{n} at {at}"),
                    _ => dash(),
                },
                [s.product.clone(), s.build.clone()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" "),
                s.status.clone().unwrap_or_else(dash),
            ]
        })
        .collect();
    let head = [
        "SENDER",
        "STATE",
        "STAGE",
        "FIRST DETECTED",
        "NEXT STAGE",
        "BUILD",
        "STATUS",
    ];
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(head.to_vec(), &mut out);
    for r in &rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("enforcer").chain(args.iter().copied()))
            .map(|c| c.command)
    }

    #[test]
    fn parses_engine_commands() {
        match parse(&["senders", "--json"]).unwrap() {
            Command::Senders(a) => {
                assert!(a.json);
                assert_eq!(
                    a.socket.path(),
                    std::path::PathBuf::from(crate::config::DEFAULT_SOCKET)
                );
            }
            c => panic!("{c:?}"),
        }
        // The socket follows --state-dir, as the daemon's does.
        for cmd in [
            &["senders", "--state-dir", "/tmp/st"][..],
            &["sender", "192.0.2.7", "--state-dir", "/tmp/st"],
            &["evidence", "192.0.2.7", "-", "--state-dir", "/tmp/st"],
            &[
                "pause",
                "192.0.2.7",
                "--days",
                "1",
                "--state-dir",
                "/tmp/st",
            ],
            &["resume", "192.0.2.7", "--state-dir", "/tmp/st"],
            &["forget", "192.0.2.7", "--state-dir", "/tmp/st"],
        ] {
            let socket = match parse(cmd).unwrap() {
                Command::Senders(a) => a.socket.path(),
                Command::Sender(a) => a.socket.path(),
                Command::Evidence(a) => a.socket.path(),
                Command::Pause(a) => a.socket.path(),
                Command::Resume(a) | Command::Forget(a) => a.socket.path(),
                c => panic!("{c:?}"),
            };
            assert_eq!(
                socket,
                std::path::PathBuf::from("/tmp/st/enforcer.sock"),
                "{cmd:?}"
            );
        }
        match parse(&[
            "pause",
            "192.0.2.7",
            "--days",
            "7",
            "--socket",
            "/tmp/x.sock",
        ])
        .unwrap()
        {
            Command::Pause(a) => {
                assert_eq!((a.target.as_str(), a.days), ("192.0.2.7", 7));
                assert_eq!(a.socket.path(), std::path::PathBuf::from("/tmp/x.sock"));
            }
            c => panic!("{c:?}"),
        }
        assert!(matches!(
            parse(&["evidence", "192.0.2.7", "-"]).unwrap(),
            Command::Evidence(_)
        ));
        assert!(matches!(
            parse(&["sender", "2001:db8::1", "--json"]).unwrap(),
            Command::Sender(_)
        ));
        assert!(matches!(
            parse(&["resume", "192.0.2.7"]).unwrap(),
            Command::Resume(_)
        ));
        assert!(matches!(
            parse(&["forget", "192.0.2.7"]).unwrap(),
            Command::Forget(_)
        ));
    }

    #[test]
    fn rejects_bad_engine_arguments() {
        for bad in [
            &["pause", "192.0.2.7"][..],
            &["pause", "192.0.2.7", "--days", "0"],
            &["pause", "192.0.2.7", "--days", "400"],
            &["pause", "192.0.2.7", "--days", "x"],
            &["evidence", "192.0.2.7"],
            &["sender"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn clear_errors_without_a_daemon_or_with_bad_input() {
        let sock =
            std::env::temp_dir().join(format!("enforcer-nodaemon-{}.sock", std::process::id()));
        let run = |args: &[&str]| {
            let mut v = args.to_vec();
            let s = sock.to_str().unwrap();
            v.extend(["--socket", s]);
            crate::cli::execute(Cli::try_parse_from(std::iter::once("enforcer").chain(v)).unwrap())
        };
        let err = run(&["senders"]).unwrap_err();
        assert!(err.to_string().contains("daemon is not running"), "{err}");
        assert!(err.downcast_ref::<crate::cli::UsageError>().is_none());
        // Bad input is caught before the daemon is asked: exit status 2.
        let err = run(&["evidence", "mail.example.com", "-"]).unwrap_err();
        assert!(
            err.downcast_ref::<crate::cli::UsageError>().is_some(),
            "{err}"
        );
        let err = run(&["evidence", "192.0.2.7", "/nonexistent/transcript.txt"]).unwrap_err();
        assert!(
            err.downcast_ref::<crate::cli::UsageError>().is_some(),
            "{err}"
        );
        assert!(err.to_string().contains("cannot read evidence"), "{err}");
    }
}
