//! Log lines on stderr, filtered like `RUST_LOG` (env_logger syntax, default `info`).
//! `text` is journald-friendly: under systemd (`JOURNAL_STREAM` is set) lines carry no timestamp
//! of their own, since the journal stamps every line; elsewhere they start with an RFC 3339 UTC time.
//! `json` writes one object per line for log shippers: `{"ts","level","target","msg"}`.

use std::io::Write as _;

/// `--log-format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Installs the logger (once per process).
pub fn init(format: LogFormat) {
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let mut b = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    b.format(move |buf, record| {
        let line = render(format, journald, record);
        writeln!(buf, "{line}")
    });
    let _ = b.try_init();
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// One log line (without the newline).
pub fn render(format: LogFormat, journald: bool, record: &log::Record<'_>) -> String {
    match format {
        LogFormat::Json => serde_json::json!({
            "ts": now_rfc3339(),
            "level": record.level().as_str(),
            "target": record.target(),
            "msg": record.args().to_string(),
        })
        .to_string(),
        LogFormat::Text if journald => {
            // <N> is the syslog priority prefix journald reads from a stream (SyslogLevelPrefix).
            let prio = match record.level() {
                log::Level::Error => 3,
                log::Level::Warn => 4,
                log::Level::Info => 6,
                log::Level::Debug | log::Level::Trace => 7,
            };
            format!("<{prio}>{}: {}", record.target(), record.args())
        }
        LogFormat::Text => format!(
            "{} {:<5} {}: {}",
            now_rfc3339(),
            record.level(),
            record.target(),
            record.args()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(format: LogFormat, journald: bool, msg: &str) -> String {
        render(
            format,
            journald,
            &log::Record::builder()
                .args(format_args!("{msg}"))
                .level(log::Level::Warn)
                .target("enforcer::daemon")
                .build(),
        )
    }

    #[test]
    fn formats() {
        assert_eq!(
            line(LogFormat::Text, true, "reload refused"),
            "<4>enforcer::daemon: reload refused"
        );
        let t = line(LogFormat::Text, false, "x");
        assert!(t.ends_with("WARN  enforcer::daemon: x"), "{t}");
        assert!(t.starts_with("20"), "{t}");
        let j: serde_json::Value =
            serde_json::from_str(&line(LogFormat::Json, false, "a \"quoted\"\nline")).unwrap();
        assert_eq!(j["level"], "WARN");
        assert_eq!(j["msg"], "a \"quoted\"\nline");
        assert_eq!(j["target"], "enforcer::daemon");
        assert!(j["ts"].as_str().unwrap().ends_with('Z'));
    }
}
