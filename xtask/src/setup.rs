//! Prerequisites, checked in well under 5 s when present (docs/TOOLCHAIN.md says why each step is needed):
//! rust-src for the pinned toolchain (the eBPF crate builds core with -Z build-std), Debian's
//! llvm-22-dev, and bpf-linker pinned and built against LLVM 22 (rustc 1.95 uses LLVM 22).

use crate::util::{is_root, run};
use anyhow::{bail, Context as _, Result};
use std::path::Path;
use std::process::Command;

/// Must equal rust-toolchain.toml's channel.
pub const TOOLCHAIN: &str = "1.95.0";
pub const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PACKAGE: &str = "llvm-22-dev";
const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";

pub fn ensure() -> Result<()> {
    ensure_rust_src()?;
    ensure_llvm()?;
    ensure_bpf_linker()?;
    ensure_debian_tools()?;
    ensure_mail_tools()?;
    Ok(())
}

fn ensure_rust_src() -> Result<()> {
    let sysroot = Command::new("rustc")
        .args([&format!("+{TOOLCHAIN}"), "--print", "sysroot"])
        .output()
        .context("rustc (rustup) is not installed; install rustup first")?;
    let missing_toolchain = !sysroot.status.success();
    let src = Path::new(String::from_utf8_lossy(&sysroot.stdout).trim())
        .join("lib/rustlib/src/rust/library/core");
    if missing_toolchain || !src.exists() {
        eprintln!("xtask: installing toolchain {TOOLCHAIN} with rust-src (the eBPF crate builds core from source)");
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            TOOLCHAIN,
            "--profile",
            "minimal",
            "--component",
            "rust-src,rustfmt,clippy",
        ]))?;
    }
    Ok(())
}

fn ensure_llvm() -> Result<()> {
    if Path::new(LLVM_BIN).join("llvm-config").exists() {
        return Ok(());
    }
    if !is_root() {
        bail!("{LLVM_PACKAGE} is missing and installing it needs root: `sudo apt-get install -y {LLVM_PACKAGE}`");
    }
    eprintln!("xtask: installing Debian {LLVM_PACKAGE} (bpf-linker links against LLVM 22)");
    apt_install(&[LLVM_PACKAGE])
}

fn ensure_bpf_linker() -> Result<()> {
    let current = Command::new("bpf-linker").arg("--version").output();
    if let Ok(out) = &current {
        if String::from_utf8_lossy(&out.stdout).contains(BPF_LINKER_VERSION) {
            return Ok(());
        }
    }
    eprintln!(
        "xtask: installing bpf-linker {BPF_LINKER_VERSION} built against LLVM 22 (about a minute)"
    );
    let path = format!("{LLVM_BIN}:{}", std::env::var("PATH").unwrap_or_default());
    run(Command::new("cargo").env("PATH", path).args([
        &format!("+{TOOLCHAIN}"),
        "install",
        &format!("bpf-linker@{BPF_LINKER_VERSION}"),
        "--locked",
        "--force",
        "--no-default-features",
        "--features",
        "llvm-22",
    ]))
}

/// Tools the privileged tests and benchmarks drive: iproute2 for namespaces and veth; redis-server
/// and redis-cli for the fleet tests and benchmark (each starts its own server on its own port);
/// openssl makes the fleet TLS test's certificates; xdp-filter (xdp-tools) and bpftool are the
/// datapath benchmark's peer; ipset, nftables, iptables and trafgen (netsniff-ng) are the load and
/// flood benchmarks' peers and generator; Prometheus and promtool for the monitoring tests; dpkg-deb,
/// systemd-analyze, setpriv and man for the packaging and service tests.
fn ensure_debian_tools() -> Result<()> {
    let wanted = [
        ("ip", "iproute2"),
        ("redis-server", "redis-server"),
        ("redis-cli", "redis-tools"),
        ("openssl", "openssl"),
        // `cargo xtask bench datapath`: xdp-filter is the peer, found and filled with bpftool.
        ("xdp-filter", "xdp-tools"),
        // `cargo xtask bench state`: kernel map memory, the CLI's peak memory.
        ("bpftool", "bpftool"),
        ("time", "time"),
        // `cargo xtask bench load` and `bench flood`: the peers, the SYN generator, CPU pinning and
        // threaded NAPI on the veth.
        ("ipset", "ipset"),
        ("nft", "nftables"),
        ("iptables", "iptables"),
        ("trafgen", "netsniff-ng"),
        ("taskset", "util-linux"),
        ("ethtool", "ethtool"),
        ("prometheus", "prometheus"),
        ("promtool", "prometheus"),
        ("systemd-analyze", "systemd"),
        ("dpkg-deb", "dpkg"),
        ("setpriv", "util-linux"),
        ("man", "man-db"),
        // `cargo xtask bench classify`: instructions per pass (cachegrind), which the load of a shared
        // machine does not move.
        ("valgrind", "valgrind"),
    ];
    let mut missing: Vec<&str> = wanted
        .iter()
        .filter(|(bin, _)| which(bin).is_none() && which_sbin(bin).is_none())
        .map(|(_, pkg)| *pkg)
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!("missing Debian packages {missing:?}; install them as root");
    }
    eprintln!("xtask: installing Debian packages {missing:?}");
    apt_install(&missing)
}

fn apt_install(pkgs: &[&str]) -> Result<()> {
    run(Command::new("apt-get").args(["update", "-q"]))?;
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-q"])
        .args(pkgs))
}

/// Debian puts xdp-filter and bpftool in /usr/sbin, which a non-root PATH may leave out.
fn which_sbin(bin: &str) -> Option<std::path::PathBuf> {
    ["/usr/sbin", "/sbin"]
        .iter()
        .map(|d| std::path::Path::new(d).join(bin))
        .find(|p| p.is_file())
}

pub fn which(bin: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(bin))
            .find(|p| p.is_file())
    })
}

/// The milter/policy tests and `bench milter` run a real Postfix (their own instance in a temp
/// directory), swaks as the SMTP client and Sendmail's miltertest. Postfix is installed with debconf
/// answering "No configuration": no /etc/postfix/main.cf is written, so the system MTA is neither
/// configured nor started (the tests never touch /etc/postfix).
fn ensure_mail_tools() -> Result<()> {
    let wanted = [
        ("/usr/sbin/postfix", "postfix"),
        ("/usr/bin/swaks", "swaks"),
        ("/usr/bin/miltertest", "miltertest"),
    ];
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(path, _)| !Path::new(path).exists())
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!("missing Debian packages {missing:?} (the Postfix tests); install them as root");
    }
    if missing.contains(&"postfix") {
        eprintln!(
            "xtask: preseeding debconf: postfix postfix/main_mailer_type select No configuration"
        );
        let mut child = Command::new("debconf-set-selections")
            .stdin(std::process::Stdio::piped())
            .spawn()
            .context("running debconf-set-selections")?;
        use std::io::Write as _;
        child
            .stdin
            .take()
            .context("debconf-set-selections stdin")?
            .write_all(b"postfix postfix/main_mailer_type select No configuration\n")?;
        if !child.wait()?.success() {
            bail!("debconf-set-selections failed");
        }
    }
    eprintln!("xtask: installing Debian packages {missing:?}");
    apt_install(&missing)
}
