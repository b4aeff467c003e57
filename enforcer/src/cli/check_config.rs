//! `enforcer check-config [FILE]`: validates a configuration file the way `enforcer run` and a
//! SIGHUP reload do, without touching the kernel, the state or the network.

use std::path::PathBuf;

use super::entry::emit;
use crate::config::{FileConfig, DEFAULT_CONFIG};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The file to check [default: /etc/enforcer/enforcer.toml].
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
}

pub fn execute(args: Args) -> anyhow::Result<()> {
    let path = args.file.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    let summary = check(&path)?;
    emit(format_args!("{}: OK ({summary})", path.display()));
    Ok(())
}

/// Everything `run` checks in a file before it attaches: syntax, keys, durations, the schedule,
/// support overrides. Returns a one-line summary.
pub fn check(path: &std::path::Path) -> anyhow::Result<String> {
    let file = FileConfig::load(path).map_err(|e| super::UsageError(e.to_string()))?;
    file.support_overrides()
        .map_err(|e| super::UsageError(format!("{}: {e}", path.display())))?;
    // The file alone: a notice channel given only as a flag of `enforcer run` is not seen here.
    let policy = file
        .policy_for(&file.mta)
        .map_err(|e| super::UsageError(e.to_string()))?;
    let ifaces = file.interfaces.as_deref().unwrap_or_default();
    Ok(format!(
        "interfaces: {}; {} stages; {} allow-listed prefixes{}",
        if ifaces.is_empty() {
            "none (pass --iface)".to_string()
        } else {
            ifaces.join(", ")
        },
        policy.schedule.stages().len(),
        file.policy.allow.len(),
        if file.report_only == Some(true) {
            "; report-only"
        } else {
            ""
        }
    ))
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
        let s = check(&p).unwrap();
        assert!(s.contains("8 stages"), "{s}");
    }

    #[test]
    fn a_bad_file_is_a_usage_error_naming_line_and_key() {
        let p = write("bad", "ports = [25]\nmode = \"fast\"\n");
        let e = check(&p).unwrap_err();
        assert!(e.downcast_ref::<crate::cli::UsageError>().is_some());
        let msg = e.to_string();
        assert!(msg.contains(":2:") && msg.contains("mode"), "{msg}");
        std::fs::remove_file(&p).unwrap();
        let e = check(std::path::Path::new("/nonexistent/enforcer.toml")).unwrap_err();
        assert!(e.downcast_ref::<crate::cli::UsageError>().is_some());
    }

    #[test]
    fn notice_without_a_channel_in_the_file_is_refused() {
        let stages =
            "[[enforcement.stages]]\nafter = \"0s\"\naction = \"block\"\nrefusal = \"notice\"\n";
        let p = write("notice", stages);
        let e = check(&p).unwrap_err();
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
        assert!(check(&p).is_ok());
        std::fs::remove_file(&p).unwrap();
    }
}
