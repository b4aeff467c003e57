//! `enforcer run`: the daemon's flags. Everything after parsing (settings, lock, listeners, datapath,
//! engine) lives in [`crate::daemon`].

use std::path::PathBuf;

use crate::daemon::{Options, Settings};
use crate::datapath::Mode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// TOML configuration (see enforcer.example.toml); flags override it [default:
    /// /etc/enforcer/enforcer.toml when it exists]. SIGHUP re-reads it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Interface to protect (repeat for several) [config: interfaces].
    #[arg(long = "iface", value_name = "IFACE")]
    pub ifaces: Vec<String>,
    /// Protected TCP destination ports, comma separated [default: 25,465,587].
    #[arg(long, value_name = "PORTS")]
    pub ports: Option<String>,
    /// auto tries native XDP, then generic XDP, then TC (tcx, or clsact on old kernels) [default: auto].
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Compute and count every verdict but let every packet pass.
    #[arg(long)]
    pub report_only: bool,
    /// Where to serve Prometheus metrics (GET /metrics) [default: 127.0.0.1:9925].
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
    /// bpffs directory holding the pinned maps and links [default: /sys/fs/bpf/enforcer].
    #[arg(long, value_name = "DIR", env = "ENFORCER_PIN_DIR")]
    pub pin_dir: Option<PathBuf>,
    /// Directory of the state database enforcer.redb [default: /var/lib/enforcer].
    #[arg(long, value_name = "DIR", env = "ENFORCER_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Control socket for the CLI [default: /run/enforcer/enforcer.sock, or <state-dir>/enforcer.sock
    /// for another --state-dir].
    #[arg(long, value_name = "PATH", env = "ENFORCER_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Serve the milter protocol for Postfix `smtpd_milters` / Sendmail `INPUT_MAIL_FILTER`:
    /// inet:127.0.0.1:8895 or unix:/run/enforcer/milter.sock [config: milter.listen].
    #[arg(long, value_name = "SPEC")]
    pub milter: Option<String>,
    /// Serve the Postfix policy delegation protocol (`check_policy_service`):
    /// inet:127.0.0.1:10040 or unix:/PATH [config: policy.listen].
    #[arg(long, value_name = "SPEC")]
    pub policy: Option<String>,
    /// Answer senders inside a `notice` window from the daemon itself: an sk_lookup program steers
    /// their SYNs to a tiny SMTP responder in the MTA's network namespace, which replies with the
    /// stage's 450/550 text; works with any MTA [config: notice.responder; notice.netns,
    /// notice.fallback]. ENFORCER_KERNEL_LOG=info logs its kernel-side decisions.
    #[arg(long)]
    pub notice_responder: bool,
    /// Start over with an empty state database: the current enforcer.redb (damaged, emptied, or
    /// just unwanted) is moved aside to enforcer.redb.reset-<time>, and every kernel entry it held
    /// is removed.
    #[arg(long)]
    pub reset_state: bool,
}

impl From<Args> for Options {
    fn from(a: Args) -> Self {
        Options {
            config: a.config,
            ifaces: a.ifaces,
            ports: a.ports,
            mode: a.mode,
            report_only: a.report_only,
            metrics_addr: a.metrics_addr,
            pin_dir: a.pin_dir,
            state_dir: a.state_dir,
            socket: a.socket,
            milter: a.milter,
            policy: a.policy,
            notice_responder: a.notice_responder,
            reset_state: a.reset_state,
        }
    }
}

pub fn execute(args: Args) -> anyhow::Result<()> {
    crate::daemon::boot::run(Settings::resolve(args.into())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command, UsageError};
    use clap::Parser as _;
    use enforcer_common::maps::DEFAULT_PORTS;

    fn run_args(extra: &[&str]) -> Options {
        let argv = ["enforcer", "run"].into_iter().chain(extra.iter().copied());
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Run(a) => a.into(),
            c => panic!("{c:?}"),
        }
    }

    fn usage_msg(r: anyhow::Result<Settings>) -> String {
        let e = r.unwrap_err();
        assert!(e.downcast_ref::<UsageError>().is_some(), "{e:#}");
        e.to_string()
    }

    #[test]
    fn settings_check_everything_first() {
        let s = Settings::resolve(run_args(&["--iface", "lo", "--mode", "tc"])).unwrap();
        assert_eq!(s.ports, DEFAULT_PORTS.to_vec());
        assert_eq!(s.mode, Mode::Tc);
        assert!(!s.report_only);
        let msg = usage_msg(Settings::resolve(run_args(&["--iface", "nosuchif0"])));
        assert!(msg.contains("unknown interface `nosuchif0`"), "{msg}");
        usage_msg(Settings::resolve(run_args(&[
            "--iface", "lo", "--ports", "0",
        ])));
        usage_msg(Settings::resolve(run_args(&[
            "--iface",
            "lo",
            "--metrics-addr",
            "localhost",
        ])));
        let msg = usage_msg(Settings::resolve(run_args(&[])));
        assert!(msg.contains("no interface to protect"), "{msg}");
        assert!(
            Cli::try_parse_from(["enforcer", "run", "--iface", "lo", "--mode", "fast"]).is_err()
        );
    }

    #[test]
    fn milter_and_policy_flags() {
        let s = Settings::resolve(run_args(&[
            "--iface",
            "lo",
            "--milter",
            "inet:127.0.0.1:8895",
            "--policy",
            "unix:/run/enforcer/policy.sock",
        ]))
        .unwrap();
        assert_eq!(s.mta.milter.unwrap().to_string(), "inet:127.0.0.1:8895");
        assert_eq!(
            s.mta.policy.unwrap().to_string(),
            "unix:/run/enforcer/policy.sock"
        );
        let msg = usage_msg(Settings::resolve(run_args(&[
            "--iface", "lo", "--milter", "8895",
        ])));
        assert!(
            msg.starts_with("--milter: `8895` is not a listen address"),
            "{msg}"
        );
        let msg = usage_msg(Settings::resolve(run_args(&[
            "--iface",
            "lo",
            "--policy",
            "inet:localhost",
        ])));
        assert!(msg.contains("--policy"), "{msg}");
    }

    #[test]
    fn notice_responder_flag() {
        let s = Settings::resolve(run_args(&["--iface", "lo"])).unwrap();
        assert!(!s.mta.notice.responder);
        let s = Settings::resolve(run_args(&["--iface", "lo", "--notice-responder"])).unwrap();
        assert!(s.mta.notice.responder && s.mta.has_notice_channel());
        assert_eq!(
            s.mta.notice.netns,
            PathBuf::from(crate::evidence::responder::DEFAULT_NETNS)
        );
    }

    #[test]
    fn config_file_fills_in_and_flags_override() {
        let dir = std::env::temp_dir().join(format!("enforcer-runcfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("enforcer.toml");
        std::fs::write(
            &cfg,
            "interfaces = [\"lo\"]\nports = [2525]\nmode = \"tc\"\nreport_only = true\nsocket = \"/tmp/x.sock\"\nstate_dir = \"/tmp/st\"\n[enforcement]\npause_budget = \"10d\"\n",
        )
        .unwrap();
        let c = cfg.to_str().unwrap();
        let s = Settings::resolve(run_args(&["--config", c])).unwrap();
        assert_eq!(s.ifaces, vec!["lo".to_string()]);
        assert_eq!(s.ports, vec![2525]);
        assert_eq!(s.mode, Mode::Tc);
        assert!(s.report_only && s.engine.report_only);
        assert_eq!(s.socket, PathBuf::from("/tmp/x.sock"));
        assert_eq!(s.state_dir, PathBuf::from("/tmp/st"));
        assert_eq!(s.engine.policy.pause_budget.secs(), 10 * 86_400);
        let s = Settings::resolve(run_args(&[
            "--config",
            c,
            "--ports",
            "25",
            "--mode",
            "xdp-skb",
            "--socket",
            "/tmp/y.sock",
        ]))
        .unwrap();
        assert_eq!(s.ports, vec![25]);
        assert_eq!(s.mode, Mode::XdpSkb);
        assert_eq!(s.socket, PathBuf::from("/tmp/y.sock"));
        // Without a socket anywhere, it follows the state directory.
        let s = Settings::resolve(run_args(&["--iface", "lo", "--state-dir", "/tmp/st2"])).unwrap();
        assert_eq!(s.socket, PathBuf::from("/tmp/st2/enforcer.sock"));
        let s = Settings::resolve(run_args(&["--iface", "lo"])).unwrap();
        assert_eq!(s.socket, PathBuf::from(crate::config::DEFAULT_SOCKET));
        // A bad file stops start-up with file, line and key, exit status 2.
        std::fs::write(&cfg, "interfaces = [\"lo\"]\n[[enforcement.stages]]\nafter = \"0s\"\nperiod = \"1h\"\nthrottle = \"2h\"\n").unwrap();
        let msg = usage_msg(Settings::resolve(run_args(&["--config", c])));
        assert!(
            msg.contains(&format!("{c}:5: `enforcement.stages[1].throttle`")),
            "{msg}"
        );
        let msg = usage_msg(Settings::resolve(run_args(&[
            "--config",
            "/nonexistent/enforcer.toml",
        ])));
        assert!(msg.contains("cannot read"), "{msg}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
