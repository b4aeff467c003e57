//! `cargo xtask fuzz`: runs every cargo-fuzz target under `fuzz/` for a bounded time each.
//!
//! cargo-fuzz needs `-Z sanitizer` and friends, i.e. a nightly compiler. A fresh machine is only sure
//! to have the toolchain `rust-toolchain.toml` pins (stable 1.95.0), so the targets are built by that
//! toolchain with `RUSTC_BOOTSTRAP=1` (measured here: the pinned stable builds and runs all targets).
//! cargo-fuzz itself is installed, pinned, with `cargo install --locked` when missing.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context as _, Result};

use crate::util::{cargo, display, output, workspace_root};

const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Installs cargo-fuzz if needed, then fuzzes each target for `seconds_per_target` seconds. Fails on
/// the first target that finds a crash; the crashing input is left in `fuzz/artifacts/<target>/` (turn
/// it into a regression unit test next to the parser it broke).
pub fn run(seconds_per_target: u64) -> Result<()> {
    if seconds_per_target == 0 {
        bail!("fuzzing needs at least 1 second per target");
    }
    ensure_cargo_fuzz()?;
    let root = workspace_root();
    let fuzz_dir = root.join("fuzz");
    let list = output(fuzz_cmd(&root).args(["list", "--fuzz-dir"]).arg(&fuzz_dir))?;
    let targets: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if targets.is_empty() {
        bail!("no fuzz targets found in {}", fuzz_dir.display());
    }
    eprintln!(
        "xtask: fuzzing {} targets for {seconds_per_target}s each: {}",
        targets.len(),
        targets.join(", ")
    );
    for t in &targets {
        let corpus = fuzz_dir.join("corpus").join(t);
        std::fs::create_dir_all(&corpus)
            .with_context(|| format!("creating {}", corpus.display()))?;
        let mut cmd = fuzz_cmd(&root);
        cmd.args(["run", "--fuzz-dir"])
            .arg(&fuzz_dir)
            .arg(t)
            .arg(&corpus);
        let seeds = fuzz_dir.join("seeds").join(t);
        if seeds.is_dir() {
            cmd.arg(&seeds);
        }
        // libFuzzer options: bounded total time, a per-input timeout, a memory ceiling.
        cmd.arg("--")
            .arg(format!("-max_total_time={seconds_per_target}"))
            .args(["-timeout=10", "-rss_limit_mb=2048"]);
        eprintln!("xtask: $ {}", display(&cmd));
        let status = cmd
            .status()
            .with_context(|| format!("failed to start `{}`", display(&cmd)))?;
        if !status.success() {
            bail!(
                "fuzz target `{t}` failed ({status}); the input is in {}: add it as a regression unit test",
                fuzz_dir.join("artifacts").join(t).display()
            );
        }
    }
    eprintln!("xtask: every fuzz target ran {seconds_per_target}s without a crash");
    Ok(())
}

/// `cargo fuzz` with the pinned toolchain allowed to use the nightly-only flags cargo-fuzz passes.
fn fuzz_cmd(root: &Path) -> Command {
    let mut c = cargo();
    c.current_dir(root).env("RUSTC_BOOTSTRAP", "1").arg("fuzz");
    c
}

fn ensure_cargo_fuzz() -> Result<()> {
    let installed = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["fuzz", "--version"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    if installed
        .as_deref()
        .is_some_and(|v| v.contains(CARGO_FUZZ_VERSION))
    {
        return Ok(());
    }
    eprintln!(
        "xtask: installing cargo-fuzz {CARGO_FUZZ_VERSION} (found: {})",
        installed.as_deref().map(str::trim).unwrap_or("none")
    );
    crate::util::run(cargo().args([
        "install",
        "--locked",
        &format!("cargo-fuzz@{CARGO_FUZZ_VERSION}"),
    ]))
}
