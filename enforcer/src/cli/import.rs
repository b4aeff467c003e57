//! `enforcer import FILE|-`, `block|reject|allow --from FILE`, `unset --from FILE|--list NAME`:
//! address lists applied as one change. The list is read and checked here (bad lines are printed
//! with their numbers, and nothing is applied unless every line is good or `--skip-invalid`), then
//! either sent whole to the running daemon over the control socket (it holds the store) or, with no
//! daemon, written here: one store transaction, then batched map writes.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::entry::{emit, fmt_time, open_policy, parse_span, Dirs, EntryOpts};
use super::usage;
use crate::control::Request;
use crate::datapath::{batch, Clock};
use crate::feed::{self, Feed, Template};
use crate::net::Prefix;
use crate::rule::Verdict;
use crate::store::Store;

/// What `import` gives every entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Action {
    /// Drop every SYN (like `enforcer block`).
    #[value(alias = "block")]
    Drop,
    /// Answer every SYN with a TCP RST (like `enforcer reject`).
    Reject,
    /// Always let through (like `enforcer allow`).
    #[value(alias = "allow")]
    Pass,
}

impl Action {
    fn verdict(self) -> Verdict {
        match self {
            Action::Drop => Verdict::Drop,
            Action::Reject => Verdict::Reject,
            Action::Pass => Verdict::Pass,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The list: one IP or CIDR per line, `#` and `;` start comments (plain lists and the Spamhaus
    /// DROP format); `-` reads standard input.
    #[arg(value_name = "FILE|-")]
    pub file: PathBuf,
    /// What every entry of the list gets.
    #[arg(long, value_enum, default_value = "drop")]
    pub action: Action,
    /// Make the entries a named list: importing the same name again replaces the whole list in one
    /// step (entries no longer in the file are removed), so a cron job can refresh a feed.
    #[arg(long, value_name = "NAME")]
    pub list: Option<String>,
    #[command(flatten)]
    pub from: FromOpts,
    #[command(flatten)]
    pub opts: EntryOpts,
}

/// How a list file is taken.
#[derive(Debug, Default, clap::Args)]
pub struct FromOpts {
    /// Apply the good lines and report the bad ones, instead of applying nothing when a line is bad.
    #[arg(long)]
    pub skip_invalid: bool,
}

/// Reads a list from a file or standard input (`-`).
fn read(file: &Path) -> anyhow::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    if file.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .read_to_end(&mut buf)
            .map_err(|e| anyhow::anyhow!("reading the list from standard input: {e}"))?;
        return Ok(("stdin".into(), buf));
    }
    match std::fs::File::open(file).and_then(|mut f| f.read_to_end(&mut buf)) {
        Ok(_) => Ok((file.display().to_string(), buf)),
        Err(e) => usage(format!(
            "cannot read the list {}: {e}; give a readable file, or - for standard input",
            file.display()
        )),
    }
}

/// Reads and checks a list: bad lines go to stderr; unless `skip_invalid`, any bad line is a usage
/// error and nothing is applied.
pub fn load(file: &Path, skip_invalid: bool) -> anyhow::Result<Feed> {
    let (source, bytes) = read(file)?;
    let feed = feed::parse(&bytes);
    if !feed.errors.is_empty() {
        let report = feed.error_report(&source);
        let (lines, summary) = report.rsplit_once('\n').unwrap_or(("", &report));
        if !lines.is_empty() {
            eprintln!("{lines}");
        }
        if !skip_invalid {
            return usage(summary.to_string());
        }
        eprintln!(
            "{source}: skipped {} bad line{} (--skip-invalid)",
            feed.errors.len(),
            if feed.errors.len() == 1 { "" } else { "s" }
        );
    }
    Ok(feed)
}

/// `import` and `block|reject|allow --from`.
pub fn import(
    file: &Path,
    verdict: Verdict,
    list: Option<String>,
    skip_invalid: bool,
    opts: &EntryOpts,
) -> anyhow::Result<()> {
    let clock = Clock::now();
    let now = clock.unix_secs();
    let expires_at = match &opts.ttl {
        None => None,
        Some(t) => {
            let ttl = parse_span("ttl", t)?;
            if ttl.0 == Duration::ZERO {
                return usage("--ttl must be longer than 0s (e.g. --ttl 1d)");
            }
            Some(now + ttl.secs() as i64)
        }
    };
    let template = Template {
        verdict,
        expires_at,
        reason: opts.reason.clone(),
        created_at: now,
        list,
    };
    if let Err(e) = template.validate() {
        return usage(e);
    }
    let feed = load(file, skip_invalid)?;
    if feed.prefixes.is_empty() {
        let hint = match &template.list {
            Some(l) => format!("; to empty the list use `enforcer unset --list {l}`"),
            None => String::new(),
        };
        return usage(format!(
            "{} holds no address or prefix, so nothing was applied{hint}",
            file.display()
        ));
    }
    let req = Request::Import {
        verdict: serde_json::to_value(&template.verdict)?,
        expires_at,
        reason: template.reason.clone(),
        list: template.list.clone(),
        entries: String::new(),
        // Parsed and checked here: the daemon takes the prefixes as they are, not the text again.
        packed: Some(feed::pack(&feed.prefixes)),
    };
    let removed = match super::entry::via_daemon(&opts.dirs, req)? {
        Some(v) => {
            if let Some(e) = v.get("kernel_error").and_then(|e| e.as_str()) {
                eprintln!("warning: the daemon stored the list but some kernel writes failed and are being retried: {e}");
            }
            v.get("removed").and_then(|r| r.as_u64()).unwrap_or(0) as usize
        }
        None => import_direct(&opts.dirs, &template, &feed.prefixes, &clock)?,
    };
    let mut line = format!(
        "imported {} entr{} ({}",
        feed.prefixes.len(),
        if feed.prefixes.len() == 1 { "y" } else { "ies" },
        template.verdict.describe()
    );
    if let Some(exp) = expires_at {
        line.push_str(&format!(" until {}", fmt_time(exp)));
    }
    line.push(')');
    if let Some(l) = &template.list {
        line.push_str(&format!(
            " as list {l}; {removed} entr{} no longer in it removed",
            if removed == 1 { "y" } else { "ies" }
        ));
    }
    if feed.duplicates > 0 {
        line.push_str(&format!("; {} duplicate lines ignored", feed.duplicates));
    }
    emit(format_args!("{line}"));
    Ok(())
}

/// With no daemon: one store transaction, then batched map writes. Returns how many entries of the
/// list were removed because the file no longer has them.
fn import_direct(
    dirs: &Dirs,
    template: &Template,
    prefixes: &[Prefix],
    clock: &Clock,
) -> anyhow::Result<usize> {
    let mut maps = open_policy(dirs)?;
    let store = Store::open(&dirs.state_dir)?;
    let stale = match &template.list {
        Some(name) => feed::stale(store.rules()?.iter(), name, prefixes),
        None => Vec::new(),
    };
    // What does not fit is refused before anything is stored, as a single `block` is.
    let present: std::collections::HashSet<Prefix> =
        maps.entries()?.into_iter().map(|(p, _)| p).collect();
    let mut current = [0usize; 4];
    for p in &present {
        current[batch::map_of(p)] += 1;
    }
    let capacity = maps.capacity()?;
    if let Err(full) =
        batch::check_room(current, |p| present.contains(p), prefixes, &stale, capacity)
    {
        return usage(full.to_string());
    }
    let any = Prefix::host(std::net::Ipv4Addr::UNSPECIFIED.into());
    let rule = template.rule(any);
    store.put_template_and_remove(&rule, prefixes, &stale)?;
    let entry = rule.to_kernel(clock);
    let entries: Vec<_> = prefixes.iter().map(|p| (*p, entry)).collect();
    let kernel = maps
        .upsert_many(&entries)
        .and_then(|()| maps.remove_many(&stale));
    if let Err(e) = kernel {
        return Err(e.context(
            "the list is stored but the kernel maps were only partly written; `enforcer run` makes them match the store when it starts",
        ));
    }
    Ok(stale.len())
}

/// `unset --from FILE` and `unset --list NAME`.
pub fn unset(
    dirs: &Dirs,
    file: Option<&Path>,
    list: Option<&str>,
    skip_invalid: bool,
) -> anyhow::Result<()> {
    let prefixes = match file {
        Some(f) => Some(load(f, skip_invalid)?.prefixes),
        None => None,
    };
    if let Some(name) = list {
        if let Err(e) = feed::check_list_name(name) {
            return usage(e);
        }
    }
    let req = Request::RemoveRules {
        entries: None,
        packed: prefixes.as_deref().map(feed::pack),
        list: list.map(str::to_string),
    };
    let (removed, missing) = match super::entry::via_daemon(dirs, req)? {
        Some(v) => {
            if let Some(e) = v.get("kernel_error").and_then(|e| e.as_str()) {
                eprintln!("warning: the daemon removed the rules but some kernel writes failed and are being retried: {e}");
            }
            let n = |k: &str| v.get(k).and_then(|r| r.as_u64()).unwrap_or(0) as usize;
            (n("removed"), n("missing"))
        }
        None => unset_direct(dirs, prefixes, list)?,
    };
    if let Some(name) = list {
        if removed == 0 {
            return usage(format!(
                "there is no list named {name} (see `enforcer list --json`, field `list`)"
            ));
        }
        emit(format_args!(
            "removed list {name}: {removed} entr{}",
            if removed == 1 { "y" } else { "ies" }
        ));
    } else {
        let mut line = format!(
            "removed {removed} entr{}",
            if removed == 1 { "y" } else { "ies" }
        );
        if missing > 0 {
            line.push_str(&format!("; {missing} had no entry"));
        }
        emit(format_args!("{line}"));
    }
    Ok(())
}

fn unset_direct(
    dirs: &Dirs,
    prefixes: Option<Vec<Prefix>>,
    list: Option<&str>,
) -> anyhow::Result<(usize, usize)> {
    let mut maps = open_policy(dirs)?;
    let store = Store::open(&dirs.state_dir)?;
    let prefixes = match (prefixes, list) {
        (Some(p), _) => p,
        (None, Some(name)) => feed::stale(store.rules()?.iter(), name, &[]),
        (None, None) => return usage("unset needs an address, --from FILE or --list NAME"),
    };
    let in_store = store.put_and_remove_rules(&[], &prefixes)?;
    let in_kernel = maps.remove_many(&prefixes).map_err(|e| {
        e.context("the rules are removed from the store but not every kernel entry could be removed; `enforcer run` makes the maps match the store when it starts")
    })?;
    let removed = in_store.len().max(in_kernel);
    Ok((removed, prefixes.len().saturating_sub(removed)))
}

pub fn execute(a: Args) -> anyhow::Result<()> {
    import(
        &a.file,
        a.action.verdict(),
        a.list,
        a.from.skip_invalid,
        &a.opts,
    )
}
