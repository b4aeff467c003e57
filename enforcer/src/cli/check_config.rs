//! `enforcer check-config [FILE]`: validates a configuration file the way `enforcer run` and a
//! SIGHUP reload do, without touching the kernel, the state or the network.

use std::path::PathBuf;

use super::entry::emit;
use crate::config::{FileConfig, DEFAULT_CONFIG};
use crate::daemon::settings::resolve_channels;
use crate::daemon::Options;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The file to check [default: /etc/enforcer/enforcer.toml].
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Check as `enforcer run --milter SPEC` would run it (a notice channel given on the command line).
    #[arg(long, value_name = "SPEC")]
    pub milter: Option<String>,
    /// Check as `enforcer run --policy SPEC` would run it.
    #[arg(long, value_name = "SPEC")]
    pub policy: Option<String>,
    /// Check as `enforcer run --notice-responder` would run it.
    #[arg(long)]
    pub notice_responder: bool,
}

pub fn execute(args: Args) -> anyhow::Result<()> {
    let path = args.file.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    let flags = Options {
        milter: args.milter,
        policy: args.policy,
        notice_responder: args.notice_responder,
        ..Options::default()
    };
    let summary = check(&path, &flags)?;
    emit(format_args!("{}: OK ({summary})", path.display()));
    Ok(())
}

/// Everything `run` checks in a file before it attaches: syntax, keys, durations, the schedule
/// against the notice channels (the file's and those in `flags`, resolved as `run` resolves them),
/// support overrides. Returns a one-line summary.
pub fn check(path: &std::path::Path, flags: &Options) -> anyhow::Result<String> {
    let file = FileConfig::load(path).map_err(|e| super::UsageError(e.to_string()))?;
    file.support_overrides()
        .map_err(|e| super::UsageError(format!("{}: {e}", path.display())))?;
    let (mta, policy) = resolve_channels(&file, flags)?;
    let ifaces = file.interfaces.as_deref().unwrap_or_default();
    Ok(format!(
        "interfaces: {}; {}; {} stages; {} allow-listed prefixes{}",
        if ifaces.is_empty() {
            "none (pass --iface)".to_string()
        } else {
            ifaces.join(", ")
        },
        channels(&mta),
        policy.schedule.stages().len(),
        file.policy.allow.len(),
        if file.report_only == Some(true) {
            "; report-only"
        } else {
            ""
        }
    ))
}

/// The notice channels `run` would serve: "milter inet:127.0.0.1:8895, policy ..." or "no notice channel".
fn channels(mta: &crate::evidence::MtaSettings) -> String {
    let mut list: Vec<String> = [("milter", &mta.milter), ("policy", &mta.policy)]
        .into_iter()
        .filter_map(|(name, ep)| ep.as_ref().map(|ep| format!("{name} {ep}")))
        .collect();
    if mta.notice.responder {
        list.push("notice responder".into());
    }
    if list.is_empty() {
        "no notice channel".into()
    } else {
        list.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let p =
            std::env::temp_dir().join(format!("enforcer-cc-{}-{name}.toml", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn the_example_config_passes() {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../enforcer.example.toml");
        let s = check(&p, &Options::default()).unwrap();
        assert!(s.contains("8 stages"), "{s}");
    }

    #[test]
    fn a_bad_file_is_a_usage_error_naming_line_and_key() {
        let p = write("bad", "ports = [25]\nmode = \"fast\"\n");
        let e = check(&p, &Options::default()).unwrap_err();
        assert!(e.downcast_ref::<crate::cli::UsageError>().is_some());
        let msg = e.to_string();
        assert!(msg.contains(":2:") && msg.contains("mode"), "{msg}");
        std::fs::remove_file(&p).unwrap();
        let e = check(
            std::path::Path::new("/nonexistent/enforcer.toml"),
            &Options::default(),
        )
        .unwrap_err();
        assert!(e.downcast_ref::<crate::cli::UsageError>().is_some());
    }

    #[test]
    fn notice_without_a_channel_in_the_file_is_refused() {
        let stages =
            "[[enforcement.stages]]\nafter = \"0s\"\naction = \"block\"\nrefusal = \"notice\"\n";
        let p = write("notice", stages);
        let e = check(&p, &Options::default()).unwrap_err();
        assert!(e.downcast_ref::<crate::cli::UsageError>().is_some());
        let msg = e.to_string();
        assert!(
            msg.contains(":4:") && msg.contains("enforcement.stages[1].refusal"),
            "{msg}"
        );
        std::fs::write(
            &p,
            format!("[milter]\nlisten = \"inet:127.0.0.1:8895\"\n{stages}"),
        )
        .unwrap();
        assert!(check(&p, &Options::default()).is_ok());
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn channel_flags_count_as_run_counts_them() {
        use crate::cli::{Cli, Command};
        use clap::Parser as _;
        let stages =
            "[[enforcement.stages]]\nafter = \"0s\"\naction = \"block\"\nrefusal = \"notice\"\n";
        let p = write("flags", stages);
        let parse = |extra: &[&str]| {
            let argv = ["enforcer", "check-config", p.to_str().unwrap()]
                .into_iter()
                .chain(extra.iter().copied());
            match Cli::try_parse_from(argv).unwrap().command {
                Command::CheckConfig(a) => a,
                c => panic!("{c:?}"),
            }
        };
        // Without a channel: refused, as `run` refuses it.
        let e = execute(parse(&[])).unwrap_err();
        assert!(e.downcast_ref::<crate::cli::UsageError>().is_some());
        assert!(e.to_string().contains("refusal"), "{e}");
        // A channel on the command line: accepted, and the summary names it.
        for (flags, named) in [
            (
                &["--milter", "inet:127.0.0.1:8895"][..],
                "milter inet:127.0.0.1:8895",
            ),
            (
                &["--policy", "unix:/run/enforcer/policy.sock"][..],
                "policy unix:/run/enforcer/policy.sock",
            ),
            (&["--notice-responder"][..], "notice responder"),
        ] {
            let a = parse(flags);
            let opts = Options {
                milter: a.milter.clone(),
                policy: a.policy.clone(),
                notice_responder: a.notice_responder,
                ..Options::default()
            };
            let s = check(&p, &opts).unwrap();
            assert!(s.contains(named), "{s}");
            execute(a).unwrap();
        }
        // A bad channel spec is a usage error naming the flag, as in `run`.
        let e = execute(parse(&["--milter", "8895"])).unwrap_err();
        assert!(e.downcast_ref::<crate::cli::UsageError>().is_some());
        assert!(e.to_string().starts_with("--milter: "), "{e}");
        // `run` resolves the same file and flags to the same policy.
        let opts = Options {
            config: Some(p.clone()),
            milter: Some("inet:127.0.0.1:8895".into()),
            ..Options::default()
        };
        let file = FileConfig::load(&p).unwrap();
        let (mta, policy) = resolve_channels(&file, &opts).unwrap();
        assert_eq!(mta.milter.unwrap().to_string(), "inet:127.0.0.1:8895");
        assert_eq!(policy.schedule.stages().len(), 1);
        std::fs::remove_file(&p).unwrap();
    }
}
