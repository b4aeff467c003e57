//! `enforcer block|reject|throttle|allow|unset`: operator entries, written to the pinned maps and the
//! store (the store is what a restarted daemon puts back). Every argument is checked before anything
//! is written, so bad input changes nothing.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use super::usage;
use crate::datapath::{Clock, PolicyMaps, RateMap};
use crate::duration::Span;
use crate::net::Prefix;
use crate::rule::{NoticeRate, Rule, RuleSource, Verdict};
use crate::store::Store;

/// Where the pinned datapath and the state database live (every datapath command takes these).
#[derive(Debug, Clone, clap::Args)]
pub struct Dirs {
    /// bpffs directory holding the pinned maps and links.
    #[arg(long, value_name = "DIR", default_value = crate::datapath::DEFAULT_PIN_DIR, env = "ENFORCER_PIN_DIR")]
    pub pin_dir: PathBuf,
    /// Directory of the state database (enforcer.redb).
    #[arg(long, value_name = "DIR", default_value = crate::store::DEFAULT_STATE_DIR, env = "ENFORCER_STATE_DIR")]
    pub state_dir: PathBuf,
    /// Control socket of a running daemon: while the daemon that owns --state-dir runs, changes go
    /// through it (it holds the database) [default: /run/enforcer/enforcer.sock, or
    /// <state-dir>/enforcer.sock for another --state-dir].
    #[arg(long, value_name = "PATH", env = "ENFORCER_SOCKET")]
    pub socket: Option<PathBuf>,
}

impl Dirs {
    /// The control socket: `--socket`, else the one that goes with the state directory.
    pub fn socket(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| crate::config::default_socket_for(&self.state_dir))
    }
}

#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    /// Source address (a host) or prefix: 192.0.2.7, 192.0.2.0/24, 2001:db8::/32.
    #[arg(
        value_name = "IP|CIDR",
        required_unless_present = "from",
        conflicts_with = "from"
    )]
    pub target: Option<String>,
    /// Apply to every address or prefix in FILE (one per line, `#`/`;` comments, - = stdin), as
    /// one change; like `enforcer import`.
    #[arg(long, value_name = "FILE|-")]
    pub from: Option<PathBuf>,
    #[command(flatten)]
    pub from_opts: super::import::FromOpts,
    #[command(flatten)]
    pub opts: EntryOpts,
}

/// What every entry-making command takes besides its target and verdict.
#[derive(Debug, clap::Args)]
pub struct EntryOpts {
    /// Remove the entry after this long (e.g. 45s, 10m, 1h, 30d).
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<String>,
    /// Free text kept with the entry and shown by `list` and `explain` (one line, printable).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Accept a default route (0.0.0.0/0, ::/0), which covers every sender.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub dirs: Dirs,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("how").required(true).args(["rate", "window"])))]
pub struct ThrottleArgs {
    /// Source address (a host) or prefix: 192.0.2.7, 192.0.2.0/24, 2001:db8::/32.
    #[arg(value_name = "IP|CIDR")]
    pub target: String,
    /// Token bucket per source address: sustained connects per minute, e.g. 3/min.
    #[arg(long, value_name = "N/min", conflicts_with_all = ["window", "period", "phase"])]
    pub rate: Option<String>,
    /// Connects allowed back to back with --rate (default: the per-minute rate).
    #[arg(long, value_name = "N", requires = "rate")]
    pub burst: Option<u32>,
    /// Refuse connects during this long of every --period (e.g. 5m).
    #[arg(long, value_name = "DURATION", requires = "period")]
    pub window: Option<String>,
    /// Length of the duty cycle, aligned to wall-clock multiples since the Unix epoch (1h = every
    /// UTC hour).
    #[arg(long, value_name = "DURATION", requires = "window")]
    pub period: Option<String>,
    /// Start the window this long after each period start (default 0s).
    #[arg(long, value_name = "DURATION", requires = "window")]
    pub phase: Option<String>,
    /// Refuse with a TCP RST (connection refused) instead of a silent drop.
    #[arg(long)]
    pub reject: bool,
    /// Notice instead of a silent refusal: inside the window --notice-rate SYNs per source pass, so
    /// the running daemon's milter or policy service answers them 450/550 with the reason; the
    /// rest are dropped. Needs `enforcer run` with --milter, --policy or --notice-responder.
    #[arg(long, requires = "window", conflicts_with_all = ["reject", "rate"])]
    pub notice: bool,
    /// SYNs per source let through inside the window with --notice, COUNT/PERIOD [default: 2/10m].
    #[arg(long, value_name = "COUNT/PERIOD", requires = "notice")]
    pub notice_rate: Option<String>,
    #[command(flatten)]
    pub opts: EntryOpts,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["target", "from", "list"])))]
pub struct UnsetArgs {
    /// Exactly the address or prefix the entry was made for.
    #[arg(value_name = "IP|CIDR")]
    pub target: Option<String>,
    /// Remove the entries for every address or prefix in FILE (one per line, - = stdin).
    #[arg(long, value_name = "FILE|-")]
    pub from: Option<PathBuf>,
    /// Remove every entry of the named list (made by `enforcer import --list NAME`).
    #[arg(long, value_name = "NAME")]
    pub list: Option<String>,
    #[command(flatten)]
    pub from_opts: super::import::FromOpts,
    #[command(flatten)]
    pub dirs: Dirs,
}

/// Parses an operator target; the error is one line for exit status 2.
pub fn parse_target(s: &str) -> anyhow::Result<Prefix> {
    match s.parse::<Prefix>() {
        Ok(p) => Ok(p),
        Err(e) => usage(format!("invalid address or prefix: {e}")),
    }
}

/// Parses a `--flag DURATION` value.
pub fn parse_span(flag: &str, s: &str) -> anyhow::Result<Span> {
    match s.parse::<Span>() {
        Ok(v) => Ok(v),
        Err(e) => usage(format!("--{flag}: {e}")),
    }
}

/// Parses `--rate N/min`.
pub fn parse_rate(s: &str) -> anyhow::Result<u32> {
    let t = s.trim();
    // A bare number is read per minute too: a rate has no other natural unit here.
    let n = t
        .strip_suffix("/min")
        .or_else(|| t.strip_suffix("/m"))
        .unwrap_or(t);
    match n.parse::<u32>() {
        Ok(0) => {
            usage("--rate must be at least 1/min (to refuse every connect use `enforcer block`)")
        }
        Ok(v) => Ok(v),
        Err(_) => usage(format!(
            "--rate `{s}` must be connects per minute like 3/min"
        )),
    }
}

pub use crate::error::operator_error;

/// Opens the pinned policy maps, with operator-fixable failures as usage errors.
pub fn open_policy(dirs: &Dirs) -> anyhow::Result<PolicyMaps> {
    PolicyMaps::open_pinned(&dirs.pin_dir).map_err(operator_error)
}

/// Writes one line to stdout. When the reader has gone (`enforcer list | head`), stop quietly
/// instead of panicking on the broken pipe.
pub fn emit(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{args}").is_err() {
        std::process::exit(0);
    }
}

/// Writes text as it is (a table that ends in its own newline), like [`emit`].
pub fn emit_text(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if out
        .write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        std::process::exit(0);
    }
}

/// Writes a value as pretty JSON followed by a newline, like [`emit`].
pub fn emit_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    emit(format_args!("{}", serde_json::to_string_pretty(v)?));
    Ok(())
}

/// RFC 3339 UTC time of a Unix timestamp.
pub fn fmt_time(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

struct Common<'a> {
    target: &'a str,
    ttl: Option<&'a str>,
    reason: Option<&'a str>,
    force: bool,
    dirs: &'a Dirs,
}

fn make_rule(c: &Common<'_>, verdict: Verdict, clock: &Clock) -> anyhow::Result<Rule> {
    let prefix = parse_target(c.target)?;
    if let Err(e) = crate::net::check_sender(&prefix, &crate::net::local_addresses(), c.force) {
        return usage(e);
    }
    let now = clock.unix_secs();
    let expires_at = match c.ttl {
        None => None,
        Some(t) => {
            let ttl = parse_span("ttl", t)?;
            if ttl.0 == Duration::ZERO {
                return usage("--ttl must be longer than 0s (e.g. --ttl 1h)");
            }
            Some(now + ttl.secs() as i64)
        }
    };
    let rule = Rule {
        prefix,
        verdict,
        expires_at,
        reason: c.reason.map(str::to_string),
        created_at: now,
        source: RuleSource::Operator,
        list: None,
    };
    if let Err(e) = rule.validate() {
        return usage(e);
    }
    Ok(rule)
}

/// Refuses a direct write (no daemon owns `--state-dir`) while a daemon runs the datapath with
/// another state directory: its store would not know the entry, and its self-check would remove it.
fn no_other_daemon(dirs: &Dirs) -> anyhow::Result<()> {
    match crate::daemon::lock::PinLock::holder(&dirs.pin_dir)? {
        None => Ok(()),
        Some(holder) => usage(format!(
            "`enforcer run` ({holder}) runs the datapath pinned at {} with another state directory than {}: pass its --state-dir (or its --socket) so the change goes through it",
            dirs.pin_dir.display(),
            dirs.state_dir.display()
        )),
    }
}

/// Writes a validated rule to the store and the pinned maps; undoes the store write if the map
/// write fails, so the two never disagree.
pub fn apply(dirs: &Dirs, rule: &Rule, clock: &Clock) -> anyhow::Result<bool> {
    no_other_daemon(dirs)?;
    let mut maps = open_policy(dirs)?;
    let store = Store::open(&dirs.state_dir)?;
    let before = store.rule(&rule.prefix)?;
    let replaced = before.is_some() || maps.get(&rule.prefix)?.is_some();
    store.put_rule(rule)?;
    if let Err(e) = maps.upsert(&rule.prefix, &rule.to_kernel(clock)) {
        let undo = match &before {
            Some(old) => store.put_rule(old),
            None => store.remove_rule(&rule.prefix).map(|_| ()),
        };
        if let Err(u) = undo {
            log::error!("could not undo the store write for {}: {u:#}", rule.prefix);
        }
        return Err(e);
    }
    // A changed rate starts with a full bucket rather than the old entry's debt.
    if matches!(rule.verdict, Verdict::RateLimit { .. }) {
        if let Ok(mut rate) = RateMap::open_pinned(&dirs.pin_dir) {
            let _ = rate.forget_prefix(&rule.prefix);
        }
    }
    Ok(replaced)
}

/// Stores and applies a rule through the running daemon (which holds the database); `None` when no
/// daemon owns the state directory, so the caller writes the maps and the store itself.
pub fn via_daemon(
    dirs: &Dirs,
    req: crate::control::Request,
) -> anyhow::Result<Option<serde_json::Value>> {
    let socket = dirs.socket();
    if !crate::control::client::daemon_owning(&socket, &dirs.state_dir) {
        return Ok(None);
    }
    crate::control::request(&socket, &req)
        .map(Some)
        .map_err(crate::control::client::to_cli_error)
}

/// The stored rules, for annotating kernel entries: from the running daemon that owns the store
/// (operator rules and engine entries), else from the store itself.
pub fn stored_rules(dirs: &Dirs) -> anyhow::Result<Vec<Rule>> {
    match via_daemon(dirs, crate::control::Request::Rules {})? {
        Some(v) => Ok(serde_json::from_value(v)?),
        None => Store::open(&dirs.state_dir)?.rules(),
    }
}

fn run(c: Common<'_>, verdict: Verdict, verb: &str) -> anyhow::Result<()> {
    let clock = Clock::now();
    let rule = make_rule(&c, verdict, &clock)?;
    let req = crate::control::Request::PutRule {
        rule: serde_json::to_value(&rule)?,
    };
    let notice = matches!(
        rule.verdict,
        Verdict::Throttle {
            notice: Some(_),
            ..
        }
    );
    let replaced = match via_daemon(c.dirs, req)? {
        Some(_) => false,
        // Only a daemon with a milter or policy service can tell the admitted SYNs why.
        None if notice => {
            return usage(format!(
                "--notice needs the running daemon that owns {} (with --milter, --policy or --notice-responder): none answers on {}",
                c.dirs.state_dir.display(),
                c.dirs.socket().display()
            ))
        }
        None => apply(c.dirs, &rule, &clock)?,
    };
    let mut line = format!("{verb} {}", rule.prefix);
    if let Verdict::RateLimit { .. } | Verdict::Throttle { .. } = rule.verdict {
        line.push_str(&format!(": {}", rule.verdict.describe()));
    }
    if let Some(exp) = rule.expires_at {
        line.push_str(&format!(" until {}", fmt_time(exp)));
    }
    if replaced {
        line.push_str(" (replaced the previous entry)");
    }
    emit(format_args!("{line}"));
    Ok(())
}

fn common<'a>(target: &'a str, o: &'a EntryOpts) -> Common<'a> {
    Common {
        target,
        ttl: o.ttl.as_deref(),
        reason: o.reason.as_deref(),
        force: o.force,
        dirs: &o.dirs,
    }
}

/// One target, or with `--from FILE` every line of the file as one import.
fn run_target(a: TargetArgs, verdict: Verdict, verb: &str) -> anyhow::Result<()> {
    match (&a.target, &a.from) {
        (_, Some(file)) => {
            super::import::import(file, verdict, None, a.from_opts.skip_invalid, &a.opts)
        }
        (Some(t), None) => run(common(t, &a.opts), verdict, verb),
        (None, None) => usage("give an address or prefix, or --from FILE"),
    }
}

pub fn execute_block(a: TargetArgs) -> anyhow::Result<()> {
    run_target(a, Verdict::Drop, "blocked")
}

pub fn execute_reject(a: TargetArgs) -> anyhow::Result<()> {
    run_target(a, Verdict::Reject, "rejecting")
}

pub fn execute_allow(a: TargetArgs) -> anyhow::Result<()> {
    run_target(a, Verdict::Pass, "allowed")
}

/// The throttle verdict the arguments describe (checked, not yet validated as a rule).
pub fn throttle_verdict(a: &ThrottleArgs) -> anyhow::Result<Verdict> {
    if let Some(rate) = &a.rate {
        let per_min = parse_rate(rate)?;
        let burst = a.burst.unwrap_or(per_min);
        if burst == 0 {
            return usage("--burst must be at least 1");
        }
        return Ok(Verdict::RateLimit {
            per_min,
            burst,
            rst: a.reject,
        });
    }
    let (Some(window), Some(period)) = (&a.window, &a.period) else {
        return usage("throttle needs either --rate N/min or --window DURATION --period DURATION");
    };
    Ok(Verdict::Throttle {
        period: parse_span("period", period)?,
        window: parse_span("window", window)?,
        phase: match &a.phase {
            Some(p) => parse_span("phase", p)?,
            None => Span::default(),
        },
        block_offset: Span::default(),
        block: Span::default(),
        rst: a.reject,
        notice: match (a.notice, &a.notice_rate) {
            (false, _) => None,
            (true, None) => Some(NoticeRate::DEFAULT),
            (true, Some(r)) => match r.parse::<NoticeRate>() {
                Ok(r) => Some(r),
                Err(e) => return usage(format!("--notice-rate: {e}")),
            },
        },
    })
}

pub fn execute_throttle(a: ThrottleArgs) -> anyhow::Result<()> {
    let verdict = throttle_verdict(&a)?;
    run(common(&a.target, &a.opts), verdict, "throttling")
}

pub fn execute_unset(a: UnsetArgs) -> anyhow::Result<()> {
    let Some(target) = &a.target else {
        return super::import::unset(
            &a.dirs,
            a.from.as_deref(),
            a.list.as_deref(),
            a.from_opts.skip_invalid,
        );
    };
    let prefix = parse_target(target)?;
    let req = crate::control::Request::RemoveRule {
        prefix: prefix.to_string(),
    };
    if let Some(v) = via_daemon(&a.dirs, req)? {
        if v.get("removed").is_none_or(|r| r.is_null()) {
            return usage(format!(
                "there is no operator entry for exactly {prefix} (see `enforcer list`)"
            ));
        }
        emit(format_args!("removed the entry for {prefix}"));
        return Ok(());
    }
    no_other_daemon(&a.dirs)?;
    let mut maps = open_policy(&a.dirs)?;
    let store = Store::open(&a.dirs.state_dir)?;
    let in_store = store.remove_rule(&prefix)?.is_some();
    let in_maps = maps
        .remove(&prefix)
        .with_context(|| format!("removing {prefix} from the kernel maps"))?;
    if !in_store && !in_maps {
        return usage(format!(
            "there is no entry for exactly {prefix} (see `enforcer list`)"
        ));
    }
    emit(format_args!("removed the entry for {prefix}"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command, UsageError};
    use clap::Parser as _;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("enforcer").chain(args.iter().copied()))
    }

    fn is_usage(r: anyhow::Result<impl std::fmt::Debug>) -> String {
        let e = r.unwrap_err();
        assert!(e.downcast_ref::<UsageError>().is_some(), "{e:#}");
        let msg = e.to_string();
        assert!(!msg.contains('\n'), "one line: {msg}");
        msg
    }

    #[test]
    fn bad_targets_are_usage_errors() {
        for bad in [
            "10.0.0.0/33",
            "::1/129",
            "300.1.1.1",
            "10.1.2.3/16",
            "mail.example",
        ] {
            let msg = is_usage(parse_target(bad));
            assert!(msg.contains("invalid address or prefix"), "{msg}");
        }
        assert_eq!(parse_target("10.0.0.0/8").unwrap().len(), 8);
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("3/min").unwrap(), 3);
        assert_eq!(parse_rate("60/m").unwrap(), 60);
        assert_eq!(parse_rate("10").unwrap(), 10);
        assert!(is_usage(parse_rate("0/min")).contains("at least 1/min"));
        is_usage(parse_rate("3/hour"));
        is_usage(parse_rate("-1/min"));
        is_usage(parse_rate("x/min"));
    }

    fn throttle_args(args: &[&str]) -> ThrottleArgs {
        match parse(args).unwrap().command {
            Command::Throttle(t) => t,
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn throttle_forms() {
        let t = throttle_args(&[
            "throttle",
            "192.0.2.0/24",
            "--rate",
            "3/min",
            "--burst",
            "5",
        ]);
        assert_eq!(
            throttle_verdict(&t).unwrap(),
            Verdict::RateLimit {
                per_min: 3,
                burst: 5,
                rst: false
            }
        );
        let t = throttle_args(&[
            "throttle",
            "2001:db8::/32",
            "--window",
            "5m",
            "--period",
            "1h",
            "--reject",
        ]);
        let v = throttle_verdict(&t).unwrap();
        assert_eq!(v.describe(), "throttle 5m every 1h phase 0s reject");
        // Rate and window together, neither, or a window without a period: clap refuses (exit 2).
        assert!(parse(&["throttle", "1.2.3.4", "--rate", "3/min", "--window", "5m"]).is_err());
        assert!(parse(&["throttle", "1.2.3.4"]).is_err());
        assert!(parse(&["throttle", "1.2.3.4", "--window", "5m"]).is_err());
        assert!(parse(&["throttle", "1.2.3.4", "--burst", "5"]).is_err());
    }

    #[test]
    fn operator_commands_parse() {
        for cmd in ["block", "reject", "allow"] {
            let c = parse(&[cmd, "192.0.2.0/24", "--ttl", "1h", "--reason", "r"]).unwrap();
            let (Command::Block(a) | Command::Reject(a) | Command::Allow(a)) = c.command else {
                panic!("{cmd}")
            };
            assert_eq!(
                (
                    a.target.as_deref().unwrap(),
                    a.opts.ttl.as_deref(),
                    a.opts.reason.as_deref()
                ),
                ("192.0.2.0/24", Some("1h"), Some("r"))
            );
            assert_eq!(
                a.opts.dirs.pin_dir,
                PathBuf::from(crate::datapath::DEFAULT_PIN_DIR)
            );
            assert!(parse(&[cmd]).is_err(), "{cmd} needs a target");
        }
        let c = parse(&["unset", "2001:db8::1", "--pin-dir", "/sys/fs/bpf/x"]).unwrap();
        let Command::Unset(u) = c.command else {
            panic!()
        };
        assert_eq!(u.dirs.pin_dir, PathBuf::from("/sys/fs/bpf/x"));
        // unset takes no TTL.
        assert!(parse(&["unset", "2001:db8::1", "--ttl", "1h"]).is_err());
        // Lists: exactly one of a target, --from and --list.
        assert!(parse(&["unset"]).is_err());
        assert!(parse(&["unset", "10.0.0.1", "--from", "f"]).is_err());
        assert!(parse(&["unset", "--from", "f", "--list", "l"]).is_err());
        let c = parse(&["unset", "--list", "spamhaus-drop"]).unwrap();
        let Command::Unset(u) = c.command else {
            panic!()
        };
        assert_eq!(u.list.as_deref(), Some("spamhaus-drop"));
        let c = parse(&["block", "--from", "-", "--skip-invalid", "--ttl", "1d"]).unwrap();
        let Command::Block(b) = c.command else {
            panic!()
        };
        assert_eq!(b.from.as_deref(), Some(std::path::Path::new("-")));
        assert!(b.from_opts.skip_invalid && b.target.is_none());
        assert!(parse(&["block", "10.0.0.1", "--from", "f"]).is_err());
        let c = parse(&[
            "import",
            "drop.txt",
            "--list",
            "spamhaus-drop",
            "--action",
            "reject",
        ])
        .unwrap();
        let Command::Import(i) = c.command else {
            panic!()
        };
        assert_eq!(i.action, crate::cli::import::Action::Reject);
        assert_eq!(i.list.as_deref(), Some("spamhaus-drop"));
        let c = parse(&["import", "-", "--action", "block"]).unwrap();
        let Command::Import(i) = c.command else {
            panic!()
        };
        assert_eq!(i.action, crate::cli::import::Action::Drop);
    }

    #[test]
    fn bad_rules_are_usage_errors_before_any_write() {
        // A pin dir that does not exist: if validation did not come first we would see NotPinned.
        let dirs = Dirs {
            pin_dir: "/nonexistent/enforcer-test".into(),
            state_dir: "/nonexistent/enforcer-state".into(),
            socket: None,
        };
        let clock = Clock::now();
        let c = |target, ttl| Common {
            target,
            ttl,
            reason: None,
            force: false,
            dirs: &dirs,
        };
        is_usage(make_rule(&c("10.0.0.0/33", None), Verdict::Drop, &clock));
        for never in [
            "0.0.0.0",
            "255.255.255.255",
            "127.0.0.1",
            "::1",
            "0.0.0.0/0",
            "::/0",
        ] {
            is_usage(make_rule(&c(never, None), Verdict::Drop, &clock));
        }
        let forced = Common {
            force: true,
            ..c("0.0.0.0/0", None)
        };
        assert!(make_rule(&forced, Verdict::Drop, &clock).is_ok());
        let mapped = make_rule(&c("::ffff:198.51.100.7", None), Verdict::Drop, &clock).unwrap();
        assert_eq!(mapped.prefix.to_string(), "198.51.100.7/32");
        let newline = Common {
            reason: Some("a\nb"),
            ..c("198.51.100.7", None)
        };
        assert!(is_usage(make_rule(&newline, Verdict::Drop, &clock)).contains("line break"));
        let t = throttle_args(&["throttle", "10.0.0.1", "--window", "1h", "--period", "1h"]);
        let v = throttle_verdict(&t).unwrap();
        assert!(is_usage(make_rule(&c("10.0.0.1", None), v, &clock)).contains("covers the whole"));
        is_usage(make_rule(&c("10.0.0.1", Some("0s")), Verdict::Drop, &clock));
        is_usage(make_rule(&c("10.0.0.1", Some("30")), Verdict::Drop, &clock));
        let t = throttle_args(&["throttle", "10.0.0.1", "--window", "2h", "--period", "1h"]);
        let v = throttle_verdict(&t).unwrap();
        assert!(
            is_usage(make_rule(&c("10.0.0.1", None), v, &clock)).contains("longer than --period")
        );
        let t = throttle_args(&["throttle", "10.0.0.1", "--rate", "5/min", "--burst", "0"]);
        is_usage(throttle_verdict(&t));
        let t = throttle_args(&["throttle", "10.0.0.1", "--window", "5x", "--period", "1h"]);
        is_usage(throttle_verdict(&t));
    }

    #[test]
    fn missing_datapath_is_a_usage_error_naming_the_fix() {
        let dirs = Dirs {
            pin_dir: std::env::temp_dir().join(format!("enforcer-nopin-{}", std::process::id())),
            state_dir: std::env::temp_dir().join("unused"),
            socket: None,
        };
        let msg = match open_policy(&dirs) {
            Ok(_) => panic!("opened a datapath that does not exist"),
            Err(e) => {
                assert!(e.downcast_ref::<UsageError>().is_some(), "{e:#}");
                e.to_string()
            }
        };
        assert!(msg.contains("enforcer run --iface"), "{msg}");
    }

    #[test]
    fn throttle_notice_flags() {
        let notice = |extra: &[&str]| {
            let mut argv = vec!["throttle", "192.0.2.7", "--window", "5m", "--period", "1h"];
            argv.extend_from_slice(extra);
            throttle_verdict(&throttle_args(&argv))
        };
        let n = |v: Verdict| match v {
            Verdict::Throttle { notice, rst, .. } => {
                assert!(!rst);
                notice
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(n(notice(&[]).unwrap()), None);
        assert_eq!(n(notice(&["--notice"]).unwrap()), Some(NoticeRate::DEFAULT));
        let r = n(notice(&["--notice", "--notice-rate", "3/15m"]).unwrap()).unwrap();
        assert_eq!((r.count, r.period.secs()), (3, 900));
        assert!(is_usage(notice(&["--notice", "--notice-rate", "0/10m"]))
            .starts_with("--notice-rate: "));
        assert!(is_usage(notice(&["--notice", "--notice-rate", "2"])).contains("COUNT/PERIOD"));
        // --notice is a window throttle's refusal: not with --rate, --reject, nor without --window;
        // --notice-rate only with --notice.
        use clap::Parser as _;
        for bad in [
            &["throttle", "192.0.2.7", "--rate", "3/min", "--notice"][..],
            &[
                "throttle",
                "192.0.2.7",
                "--window",
                "5m",
                "--period",
                "1h",
                "--notice",
                "--reject",
            ],
            &[
                "throttle",
                "192.0.2.7",
                "--window",
                "5m",
                "--period",
                "1h",
                "--notice-rate",
                "2/10m",
            ],
        ] {
            let argv = std::iter::once("enforcer").chain(bad.iter().copied());
            assert!(crate::cli::Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
        // Without a running daemon nobody would tell the admitted SYNs why: refused, nothing written.
        let state = std::env::temp_dir().join(format!("enforcer-notice-{}", std::process::id()));
        let mut argv = vec![
            "throttle",
            "192.0.2.7",
            "--window",
            "5m",
            "--period",
            "1h",
            "--notice",
        ];
        let state_arg = state.display().to_string();
        argv.extend_from_slice(&["--state-dir", &state_arg, "--pin-dir", &state_arg]);
        let e = execute_throttle(throttle_args(&argv)).unwrap_err();
        assert!(e.downcast_ref::<UsageError>().is_some(), "{e:#}");
        assert!(
            e.to_string().contains("--notice needs the running daemon"),
            "{e}"
        );
        assert!(!state.exists(), "nothing was written");
    }
}
