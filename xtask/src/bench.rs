//! `cargo xtask bench datapath|classify|state|fleet|milter|load|flood|all`: each benchmark prints a Markdown section on stdout; it is
//! spliced into BENCHMARKS.md between `<!-- bench:NAME:start -->` and `<!-- bench:NAME:end -->`.

use crate::util::{cargo, output, require_root, workspace_root};
use anyhow::{Context as _, Result};

#[derive(clap::Args)]
pub struct Args {
    #[arg(value_enum)]
    which: Which,
    /// `load` only: this many rounds instead of 3. A run with fewer rounds or `--only` prints its
    /// table without writing it into BENCHMARKS.md (for iterating; the recorded table is a full run).
    #[arg(long, value_name = "N")]
    rounds: Option<u32>,
    /// `load` only: time just these tools (comma-separated: enforcer, ipset, nft), e.g. `--only
    /// enforcer --rounds 1` for a ~1-minute check instead of the ~20-minute full run (nft's removal
    /// of a million interval-set elements dominates it). Not written into BENCHMARKS.md.
    #[arg(long, value_name = "TOOLS", value_delimiter = ',')]
    only: Vec<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Which {
    /// ns/packet of the XDP program via BPF_PROG_TEST_RUN (root).
    Datapath,
    /// Classifier lines/s against a regex::RegexSet baseline.
    Classify,
    /// Daemon memory and `list --json` time with 1,000,000 entries (root).
    State,
    /// Fleet sync through Redis: changes/s published and applied, propagation p50/p99.
    Fleet,
    /// Messages/s through a real Postfix with and without the milter, milter CPU per message (root).
    Milter,
    /// 1,000,000 entries through `enforcer import` into a running daemon, next to `ipset restore`
    /// and `nft -f` of the same list (root).
    Load,
    /// Receiver CPU per SYN under a SYN flood across a veth, enforcer next to nftables, iptables,
    /// ipset, xdp-filter and an XDP drop-all floor; connect latency under the flood (root).
    Flood,
    All,
}

pub fn run(args: Args) -> Result<()> {
    crate::setup::ensure()?;
    if matches!(args.which, Which::Datapath | Which::All) {
        require_root("the datapath benchmark")?;
        let md =
            output(cargo().args(["run", "--release", "-p", "tests", "--bin", "bench-datapath"]))?;
        splice("datapath", &md)?;
    }
    if matches!(args.which, Which::State | Which::All) {
        require_root("the state benchmark")?;
        output(cargo().args(["build", "--release", "-p", "enforcer", "--bin", "enforcer"]))?;
        let md = output(cargo().args(["run", "--release", "-p", "tests", "--bin", "bench-state"]))?;
        splice("state", &md)?;
    }
    if matches!(args.which, Which::Load | Which::All) {
        require_root("the load benchmark")?;
        output(cargo().args(["build", "--release", "-p", "enforcer", "--bin", "enforcer"]))?;
        let mut cmd = cargo();
        cmd.args(["run", "--release", "-p", "tests", "--bin", "bench-load"]);
        if let Some(n) = args.rounds {
            cmd.env("BENCH_LOAD_ROUNDS", n.to_string());
        }
        if !args.only.is_empty() {
            cmd.env("BENCH_LOAD_ONLY", args.only.join(","));
        }
        let md = output(&mut cmd)?;
        if args.rounds.is_some() || !args.only.is_empty() {
            println!("{}", md.trim());
            eprintln!("xtask: a partial run (--rounds/--only): BENCHMARKS.md left as it was");
        } else {
            splice("load", &md)?;
        }
    }
    if matches!(args.which, Which::Flood | Which::All) {
        require_root("the flood benchmark")?;
        output(cargo().args(["build", "--release", "-p", "enforcer", "--bin", "enforcer"]))?;
        let md = output(cargo().args(["run", "--release", "-p", "tests", "--bin", "bench-flood"]))?;
        splice("flood", &md)?;
    }
    if matches!(args.which, Which::Classify | Which::All) {
        let md = output(cargo().args(["bench", "-p", "enforcer", "--bench", "classify"]))?;
        splice("classify", &md)?;
    }
    if matches!(args.which, Which::Fleet | Which::All) {
        let md = output(cargo().args(["bench", "-p", "enforcer", "--bench", "fleet"]))?;
        splice("fleet", &md)?;
    }
    if matches!(args.which, Which::Milter | Which::All) {
        require_root("the milter benchmark")?;
        output(cargo().args(["build", "--release", "-p", "enforcer", "--bin", "enforcer"]))?;
        let md =
            output(cargo().args(["run", "--release", "-p", "tests", "--bin", "bench-milter"]))?;
        splice("milter", &md)?;
    }
    Ok(())
}

fn splice(name: &str, section: &str) -> Result<()> {
    let path = workspace_root().join("BENCHMARKS.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".to_string());
    let start = format!("<!-- bench:{name}:start -->");
    let end = format!("<!-- bench:{name}:end -->");
    let block = format!("{start}\n{}\n{end}", section.trim());
    let new = match (text.find(&start), text.find(&end)) {
        (Some(s), Some(e)) if e > s => format!("{}{block}{}", &text[..s], &text[e + end.len()..]),
        _ => format!("{}\n{block}\n", text.trim_end()),
    };
    std::fs::write(&path, new).with_context(|| format!("writing {}", path.display()))?;
    println!("{}", section.trim());
    eprintln!("xtask: results written to {}", path.display());
    Ok(())
}
