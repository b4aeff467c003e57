//! `enforcer classify [FILE|-] [--connecting-ip IP] [--as-of YYYY-MM-DD] [--json]`: classify a sending
//! server from a transcript or header block and print the verdict.

use std::io::Read;
use std::path::PathBuf;

use crate::classify::{
    classify_bytes, classify_connecting, parse_iso, Classification, SupportOverrides,
};
use crate::cli::usage;

/// Input larger than this is refused: evidence is a transcript or a header block, not a mailbox.
const MAX_INPUT: u64 = 64 * 1024 * 1024;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "The input may mix server greetings (220 ...), EHLO/HELO lines, EHLO responses \
(250-...), other replies and mail header blocks (Received: ...); transcript and log prefixes such as `S: `, \
`C: `, `<- `, ` -> `, `[S] `, `Out: `, time stamps and tab-separated log fields are skipped; lines may end in \
CRLF, LF or CR. A header block is attributed to the sending organisation's newest hop below the receiving \
side's hand-off (README, \"Which Received hop\"); with --connecting-ip, only to the fields that address wrote. \
Exit status: 0 classified (even as unknown), 2 no SMTP evidence at all, unreadable input or bad arguments."
)]
pub struct Args {
    /// Transcript or header file; `-` or nothing reads standard input.
    pub file: Option<PathBuf>,
    /// Judge support status as of this date (YYYY-MM-DD, UTC) instead of today.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub as_of: Option<String>,
    /// Print one JSON object (product, version, build, label, status, persistently_vulnerable,
    /// confidence, evidence[kind,text,finding], upgrade_to) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Extend an Exchange version's end of support, e.g. for paid Extended Security Updates
    /// (VERSION=YYYY-MM-DD, e.g. 2016=2026-10-13; repeatable).
    #[arg(long = "support-until", value_name = "VERSION=DATE")]
    pub support_until: Vec<String>,
    /// The address the message came from: attribute only the newest Received field(s) written by the
    /// server at this address (the MTA's own field naming it is skipped), never an older hop.
    #[arg(long = "connecting-ip", value_name = "IP")]
    pub connecting_ip: Option<String>,
    /// Lay an operator's build catalog (CSV, the format of enforcer/data/exchange-builds.csv) over the
    /// built-in one, as `classifier.catalog` does for the daemon.
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,
}

pub fn execute(args: Args) -> anyhow::Result<()> {
    let as_of = match &args.as_of {
        Some(s) => match parse_iso(s) {
            Some(d) => d,
            None => {
                return usage(format!(
                    "--as-of {s:?} is not a date: use YYYY-MM-DD, e.g. --as-of 2025-11-01"
                ))
            }
        },
        None => time::OffsetDateTime::now_utc().date(),
    };
    let mut overrides = SupportOverrides::new();
    for spec in &args.support_until {
        if let Err(e) = overrides.set_from_str(spec) {
            return usage(format!("--support-until: {e}"));
        }
    }
    let connecting = match args.connecting_ip.as_deref().map(|s| s.trim().parse::<std::net::IpAddr>()) {
        None => None,
        Some(Ok(ip)) => Some(ip),
        Some(Err(_)) => {
            return usage(format!(
                "--connecting-ip {:?} is not an IP address: give the address the message came from, e.g. --connecting-ip 192.0.2.7",
                args.connecting_ip.unwrap_or_default()
            ))
        }
    };
    if let Some(path) = &args.catalog {
        if let Err(e) = crate::classify::install_operator_catalog(path) {
            return usage(format!("--catalog: {e}"));
        }
    }
    let (name, input) = match read_input(args.file.as_ref()) {
        Ok(x) => x,
        Err(e) => return usage(e),
    };
    let classified = match connecting {
        Some(ip) => classify_connecting(&input, ip, as_of, &overrides),
        None => classify_bytes(&input, as_of, &overrides),
    };
    let c = match classified {
        Ok(c) => c,
        Err(e) => return usage(format!("{name}: {e}")),
    };
    if args.json {
        super::entry::emit_json(&c)?;
    } else {
        super::entry::emit_text(&render_text(&c, as_of));
    }
    Ok(())
}

fn read_input(file: Option<&PathBuf>) -> Result<(String, Vec<u8>), String> {
    let mut buf = Vec::new();
    match file.filter(|p| p.as_os_str() != "-") {
        None => {
            std::io::stdin()
                .take(MAX_INPUT + 1)
                .read_to_end(&mut buf)
                .map_err(|e| format!("cannot read standard input: {e}"))?;
            check_size("standard input", &buf)?;
            Ok(("standard input".into(), buf))
        }
        Some(p) => {
            let name = p.display().to_string();
            let f = std::fs::File::open(p).map_err(|e| format!("cannot open {name}: {e} (give a transcript or header file, or - for standard input)"))?;
            f.take(MAX_INPUT + 1)
                .read_to_end(&mut buf)
                .map_err(|e| format!("cannot read {name}: {e}"))?;
            check_size(&name, &buf)?;
            Ok((name, buf))
        }
    }
}

fn check_size(name: &str, buf: &[u8]) -> Result<(), String> {
    if buf.len() as u64 > MAX_INPUT {
        return Err(format!(
            "{name} is larger than {} MiB: give one transcript or header block",
            MAX_INPUT / 1024 / 1024
        ));
    }
    Ok(())
}

/// The human-readable form: one verdict line, details, then the evidence.
pub fn render_text(c: &Classification, as_of: time::Date) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let mut what = c.product.name().to_string();
    if let Some(v) = &c.version {
        let _ = write!(what, " {v}");
    }
    let _ = writeln!(
        s,
        "{what}: {} as of {as_of}{}",
        c.status.id(),
        if c.persistently_vulnerable {
            " (persistently vulnerable)"
        } else {
            ""
        }
    );
    let _ = writeln!(s, "  product:     {}", c.product.id());
    if let Some(b) = &c.build {
        let _ = writeln!(s, "  build:       {b}");
    }
    if let Some(l) = &c.label {
        let _ = writeln!(s, "  label:       {l}");
    }
    let _ = writeln!(s, "  confidence:  {:.2}", c.confidence);
    if let Some(u) = &c.upgrade_to {
        let _ = writeln!(s, "  upgrade to:  {u}");
    }
    if !c.evidence.is_empty() {
        let _ = writeln!(s, "evidence:");
        for e in &c.evidence {
            let kind = serde_json::to_value(e.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let _ = writeln!(s, "  - [{kind}] {}", e.finding);
            if !e.text.is_empty() {
                let _ = writeln!(s, "      {}", e.text);
            }
        }
    }
    s
}
