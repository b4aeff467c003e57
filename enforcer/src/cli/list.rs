//! `enforcer list`: the kernel's policy entries (the truth), annotated from the store (reason,
//! creation time, source), plus store rules missing from the kernel; sorted by prefix.
//!
//! Rows are printed as they are read, a page at a time: from the running daemon (which owns the
//! store) in pages of [`PAGE`], else from the pinned maps and the store in batches of the same size.
//! Neither side ever holds more than one page of rows, and `--limit` says when rows were left out.

use super::entry::{fmt_time, open_policy, parse_target, Dirs};
use crate::control::client::{daemon_owning, request_lines, to_cli_error};
use crate::control::Request;
use crate::datapath::{Clock, PolicyMaps};
use crate::listing::{row, Filter, PageHead, Row, Source, PAGE};
use crate::net::Prefix;
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON (field names are stable; see the README).
    #[arg(long)]
    pub json: bool,
    /// Only entries for this prefix or inside it (e.g. 192.0.2.0/24).
    #[arg(long, value_name = "IP|CIDR")]
    pub prefix: Option<String>,
    /// Only entries made by the operator, by the engine, or unknown to the store.
    #[arg(long, value_enum)]
    pub source: Option<Source>,
    /// Only the entries of this named list (made by `enforcer import --list NAME`).
    #[arg(long, value_name = "NAME")]
    pub list: Option<String>,
    /// Print at most N entries (the output says when more were left out).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    #[command(flatten)]
    pub dirs: Dirs,
}

/// Writes rows as they come and remembers whether `--limit` cut the listing short.
struct Printer<W: std::io::Write> {
    out: W,
    json: bool,
    limit: u64,
    printed: u64,
    truncated: bool,
}

/// The reader went away (`enforcer list | head`): stop quietly.
struct Gone;

impl<W: std::io::Write> Printer<W> {
    fn new(out: W, json: bool, limit: Option<u64>) -> Self {
        Self {
            out,
            json,
            limit: limit.unwrap_or(u64::MAX),
            printed: 0,
            truncated: false,
        }
    }

    fn io<T>(r: std::io::Result<T>) -> Result<T, Gone> {
        r.map_err(|_| Gone)
    }

    fn start(&mut self) -> Result<(), Gone> {
        if self.json {
            Self::io(self.out.write_all(b"{\"entries\": ["))?;
        }
        Ok(())
    }

    /// Prints one row; false once the limit is reached (the row was not printed).
    fn row(&mut self, r: &Row) -> Result<bool, Gone> {
        if self.json {
            let line = serde_json::to_vec(r).map_err(|_| Gone)?;
            return self.json_row(&line);
        }
        self.text_row(r)
    }

    /// Prints a row the daemon encoded (one line of a page): copied as it is in JSON mode.
    fn line(&mut self, line: &[u8]) -> Result<bool, Stop> {
        if self.json {
            return Ok(self.json_row(line)?);
        }
        let r = crate::listing::decode_row(line).map_err(|e| Stop::Failed(anyhow::anyhow!(e)))?;
        Ok(self.text_row(&r)?)
    }

    fn json_row(&mut self, line: &[u8]) -> Result<bool, Gone> {
        if self.printed == self.limit {
            self.truncated = true;
            return Ok(false);
        }
        let sep: &[u8] = if self.printed == 0 { b"\n  " } else { b",\n  " };
        Self::io(self.out.write_all(sep))?;
        Self::io(self.out.write_all(line))?;
        self.printed += 1;
        Ok(true)
    }

    fn text_row(&mut self, r: &Row) -> Result<bool, Gone> {
        if self.printed == self.limit {
            self.truncated = true;
            return Ok(false);
        }
        if self.printed == 0 {
            Self::io(writeln!(
                self.out,
                "{:<28} {:<44} {:<22} {:<9} REASON",
                "PREFIX", "VERDICT", "EXPIRES", "SOURCE"
            ))?;
        }
        let expires = match (r.expires_at, r.expired) {
            (None, _) => "never".to_string(),
            (Some(t), false) => fmt_time(t),
            (Some(t), true) => format!("expired {}", fmt_time(t)),
        };
        let mut verdict = r.verdict.describe();
        if !r.in_kernel {
            verdict.push_str(" [not in kernel]");
        }
        Self::io(writeln!(
            self.out,
            "{:<28} {:<44} {:<22} {:<9} {}",
            r.prefix.to_string(),
            verdict,
            expires,
            r.source,
            r.reason.as_deref().unwrap_or_default()
        ))?;
        self.printed += 1;
        Ok(true)
    }

    fn finish(&mut self, note: Option<&str>) -> Result<(), Gone> {
        if self.json {
            let tail = serde_json::json!({ "truncated": self.truncated, "note": note });
            // `{"entries": [...], "truncated": bool, "note": string|null}`
            let tail = tail.to_string();
            Self::io(write!(self.out, "\n], {}\n", &tail[1..]))?;
        } else if self.printed == 0 {
            Self::io(writeln!(self.out, "no entries"))?;
        }
        Self::io(self.out.flush())
    }
}

pub fn execute(args: Args) -> anyhow::Result<()> {
    if let Some(name) = &args.list {
        if let Err(e) = crate::feed::check_list_name(name) {
            return super::usage(e);
        }
    }
    let filter = Filter {
        prefix: args.prefix.as_deref().map(parse_target).transpose()?,
        source: args.source,
        list: args.list.clone(),
    };
    // Opening the maps first checks privileges and that a datapath is pinned (exit 2 otherwise).
    let maps = open_policy(&args.dirs)?;
    let stdout = std::io::stdout().lock();
    let mut p = Printer::new(std::io::BufWriter::new(stdout), args.json, args.limit);
    let socket = args.dirs.socket();
    let res = if daemon_owning(&socket, &args.dirs.state_dir) {
        through_daemon(&socket, &filter, &mut p).map(|()| None)
    } else {
        from_maps_and_store(&maps, &args.dirs, &filter, &mut p)
    };
    let note = match res {
        Ok(note) => note,
        Err(Stop::Gone) => return Ok(()),
        Err(Stop::Failed(e)) => return Err(e),
    };
    if let Some(n) = &note {
        eprintln!("note: {n}");
    }
    if p.finish(note.as_deref()).is_err() {
        return Ok(());
    }
    if p.truncated {
        eprintln!(
            "note: only the first {} entries are shown (--limit); narrow with --prefix or --source, or raise --limit",
            p.printed
        );
    }
    Ok(())
}

enum Stop {
    Gone,
    Failed(anyhow::Error),
}

impl From<Gone> for Stop {
    fn from(_: Gone) -> Self {
        Stop::Gone
    }
}

impl From<anyhow::Error> for Stop {
    fn from(e: anyhow::Error) -> Self {
        Stop::Failed(e)
    }
}

/// Pages from the daemon until the last one or the limit; each row is printed as it is read.
fn through_daemon<W: std::io::Write>(
    socket: &std::path::Path,
    filter: &Filter,
    p: &mut Printer<W>,
) -> Result<(), Stop> {
    p.start()?;
    let mut after = None;
    loop {
        let (head, mut lines) = request_lines(
            socket,
            &Request::List {
                after,
                prefix: filter.prefix,
                source: filter.source,
                limit: Some(PAGE),
                list: filter.list.clone(),
            },
            |v| v.get("rows").and_then(|n| n.as_u64()).unwrap_or(0),
        )
        .map_err(|e| Stop::Failed(to_cli_error(e)))?;
        let head: PageHead = serde_json::from_value(head).map_err(|e| {
            Stop::Failed(anyhow::anyhow!(
                "the daemon sent a list page that does not parse: {e}"
            ))
        })?;
        while let Some(line) = lines
            .next_line()
            .map_err(|e| Stop::Failed(to_cli_error(e)))?
        {
            if !p.line(line)? {
                return Ok(());
            }
        }
        match head.next {
            Some(n) => after = Some(n),
            None => return Ok(()),
        }
    }
}

/// Without a daemon: the kernel's keys and the store's keys (no rows) are read and sorted, then rows
/// are built a batch at a time. Returns a note when the store could not be read.
fn from_maps_and_store<W: std::io::Write>(
    maps: &PolicyMaps,
    dirs: &Dirs,
    filter: &Filter,
    p: &mut Printer<W>,
) -> Result<Option<String>, Stop> {
    let clock = Clock::now();
    let (store, note) = match Store::open(&dirs.state_dir) {
        Ok(s) => (Some(s), None),
        Err(e) => (
            None,
            Some(format!(
                "store not read ({e:#}); reasons and sources are not shown"
            )),
        ),
    };
    let mut keys: Vec<Prefix> = maps.prefixes()?;
    keys.retain(|k| filter.covers(k));
    if let Some(s) = &store {
        keys.extend(s.rule_prefixes()?.into_iter().filter(|k| filter.covers(k)));
    }
    keys.sort_unstable();
    keys.dedup();
    p.start()?;
    for batch in keys.chunks(PAGE as usize) {
        let entries = maps.get_many(batch)?;
        for (prefix, entry) in batch.iter().zip(&entries) {
            let rule = match &store {
                Some(s) => s.rule(prefix)?,
                None => None,
            };
            if entry.is_none() && rule.is_none() {
                continue; // removed between reading the keys and now
            }
            let r = row(*prefix, entry.as_ref(), rule.as_ref(), &clock);
            if filter.keeps(&r) && !p.row(&r)? {
                return Ok(note);
            }
        }
    }
    Ok(note)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::Verdict;

    fn r(p: &str) -> Row {
        Row {
            prefix: p.parse().unwrap(),
            action: "drop".into(),
            verdict: Verdict::Drop,
            expires_at: None,
            expired: false,
            in_kernel: true,
            source: "operator".into(),
            stage: None,
            reason: Some("why".into()),
            created_at: Some(1),
            list: None,
        }
    }

    fn print(json: bool, limit: Option<u64>, rows: &[Row]) -> (String, bool) {
        let mut buf = Vec::new();
        let mut p = Printer::new(&mut buf, json, limit);
        p.start().ok().unwrap();
        for x in rows {
            if !p.row(x).ok().unwrap() {
                break;
            }
        }
        p.finish(None).ok().unwrap();
        let t = p.truncated;
        (String::from_utf8(buf).unwrap(), t)
    }

    #[test]
    fn json_is_one_document_and_says_when_it_was_cut() {
        let rows = [r("192.0.2.1"), r("192.0.2.2"), r("192.0.2.3")];
        let (out, cut) = print(true, None, &rows);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["entries"].as_array().unwrap().len(), 3);
        assert_eq!((v["truncated"].as_bool(), cut), (Some(false), false));
        assert_eq!(v["entries"][1]["prefix"], "192.0.2.2/32");
        let (out, cut) = print(true, Some(2), &rows);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["entries"].as_array().unwrap().len(), 2);
        assert_eq!((v["truncated"].as_bool(), cut), (Some(true), true));
        // Exactly as many rows as the limit: nothing was left out.
        let (out, cut) = print(true, Some(3), &rows);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!((v["truncated"].as_bool(), cut), (Some(false), false));
        let (out, _) = print(true, None, &[]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert!(v["entries"].as_array().unwrap().is_empty());
    }

    #[test]
    fn text_has_a_header_and_stops_at_the_limit() {
        let rows = [r("192.0.2.1"), r("192.0.2.2")];
        let (out, cut) = print(false, Some(1), &rows);
        assert!(cut);
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(out.starts_with("PREFIX") && out.contains("192.0.2.1/32"));
        assert_eq!(print(false, None, &[]).0, "no entries\n");
    }

    #[test]
    fn a_closed_reader_stops_the_listing() {
        struct Closed;
        impl std::io::Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
        }
        let mut p = Printer::new(Closed, false, None);
        assert!(p.row(&r("192.0.2.1")).is_err());
    }

    #[test]
    fn filters_parse() {
        use crate::cli::{Cli, Command};
        use clap::Parser as _;
        let c = Cli::try_parse_from([
            "enforcer",
            "list",
            "--prefix",
            "192.0.2.0/24",
            "--source",
            "engine",
            "--limit",
            "5",
        ])
        .unwrap();
        let Command::List(a) = c.command else {
            panic!()
        };
        assert_eq!(
            (a.prefix.as_deref(), a.source, a.limit),
            (Some("192.0.2.0/24"), Some(Source::Engine), Some(5))
        );
        for bad in [
            &["list", "--limit", "0"][..],
            &["list", "--source", "kernel"],
            &["list", "--limit", "-1"],
        ] {
            assert!(
                Cli::try_parse_from(std::iter::once("enforcer").chain(bad.iter().copied()))
                    .is_err(),
                "{bad:?}"
            );
        }
    }
}
