//! Developer workflows. Every command first ensures the prerequisites (idempotent, prints what it
//! installs), so the README's commands work on a fresh machine.

mod bench;
mod fuzz;
mod package;
mod run;
mod setup;
mod test;
mod util;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "enforcer developer workflows"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building and testing need (rust-src, llvm-22-dev, pinned bpf-linker); idempotent.
    Setup,
    /// Build (release), then run `enforcer` as root with the given arguments: `cargo xtask run -- run --iface eth0`.
    Run(run::Args),
    /// Every test: unprivileged unit tests, then the privileged `tests` crate (root, BPF, netns).
    Test(test::Args),
    /// Benchmarks; results are spliced into BENCHMARKS.md.
    Bench(bench::Args),
    /// Build a Debian package (.deb) into target/debian: binary, systemd unit, example config as a
    /// conffile, man pages, shell completions.
    Package(package::Args),
    /// Fuzz every cargo-fuzz target under fuzz/ for a bounded time (installs cargo-fuzz if missing).
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Setup => setup::ensure(),
        Cmd::Run(a) => run::run(a),
        Cmd::Test(a) => test::run(a),
        Cmd::Bench(a) => bench::run(a),
        Cmd::Fuzz { seconds } => fuzz::run(seconds),
        Cmd::Package(a) => package::run_package(a),
    };
    if let Err(e) = result {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    /// The repository is self-contained: nothing refers to files outside it.
    #[test]
    fn nothing_refers_outside_the_repository() {
        let root = crate::util::workspace_root();
        let needle = concat!("..", "/shared");
        let mut stack = vec![root.clone()];
        let mut hits = Vec::new();
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') && name != ".ci"
                    || name == "target"
                    || name == "artifacts"
                    || name == "corpus"
                {
                    continue;
                }
                if p.is_dir() {
                    stack.push(p);
                } else if let Ok(text) = std::fs::read_to_string(&p) {
                    if text.contains(needle) {
                        hits.push(p.strip_prefix(&root).unwrap().display().to_string());
                    }
                }
            }
        }
        assert!(hits.is_empty(), "files referring to {needle}: {hits:?}");
    }
}
