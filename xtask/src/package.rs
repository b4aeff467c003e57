//! `cargo xtask package`: a Debian package built with dpkg-deb from the release binary, the systemd
//! unit, the example config (a conffile), man pages and shell completions generated from the
//! binary's own clap definitions, and maintainer scripts that enable but do not start the unit.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};

use crate::util::{cargo, output, run, workspace_root};

#[derive(clap::Args)]
pub struct Args {
    /// Package this binary instead of building `target/release/enforcer` (the tests package the
    /// binary they already built).
    #[arg(long, value_name = "PATH")]
    bin: Option<PathBuf>,
    /// Directory the .deb is written to.
    #[arg(long, value_name = "DIR", default_value = "target/debian")]
    out: PathBuf,
}

const NAME: &str = "enforcer";

pub fn run_package(args: Args) -> Result<()> {
    let root = workspace_root();
    let bin = match args.bin {
        Some(b) => b,
        None => {
            crate::setup::ensure()?;
            run(cargo().args(["build", "--release", "-p", "enforcer"]))?;
            root.join("target/release/enforcer")
        }
    };
    if !bin.exists() {
        bail!("{} does not exist; build it first", bin.display());
    }
    let out = if args.out.is_absolute() {
        args.out
    } else {
        root.join(args.out)
    };
    let deb = build(&root, &bin, &out)?;
    println!("{}", deb.display());
    Ok(())
}

/// Lays out the package tree under `<out>/<name>_<version>_<arch>/` and runs dpkg-deb on it.
fn build(root: &Path, bin: &Path, out: &Path) -> Result<PathBuf> {
    let version = env!("CARGO_PKG_VERSION");
    let arch = output(Command::new("dpkg").arg("--print-architecture"))?
        .trim()
        .to_string();
    let tree = out.join(format!("{NAME}_{version}_{arch}"));
    if tree.exists() {
        fs::remove_dir_all(&tree).with_context(|| format!("clearing {}", tree.display()))?;
    }
    let put = |rel: &str, from: &Path, mode: u32| -> Result<()> {
        let dst = tree.join(rel);
        fs::create_dir_all(dst.parent().unwrap())?;
        fs::copy(from, &dst)
            .with_context(|| format!("copying {} to {}", from.display(), dst.display()))?;
        fs::set_permissions(&dst, fs::Permissions::from_mode(mode))?;
        Ok(())
    };
    let write = |rel: &str, text: &[u8], mode: u32| -> Result<()> {
        let dst = tree.join(rel);
        fs::create_dir_all(dst.parent().unwrap())?;
        fs::write(&dst, text).with_context(|| format!("writing {}", dst.display()))?;
        fs::set_permissions(&dst, fs::Permissions::from_mode(mode))?;
        Ok(())
    };
    put("usr/sbin/enforcer", bin, 0o755)?;
    put(
        "lib/systemd/system/enforcer.service",
        &root.join("deploy/enforcer.service"),
        0o644,
    )?;
    put(
        "etc/enforcer/enforcer.toml",
        &root.join("enforcer.example.toml"),
        0o644,
    )?;
    let doc = "usr/share/doc/enforcer";
    put(&format!("{doc}/README.md"), &root.join("README.md"), 0o644)?;
    for f in [
        "prometheus.yml",
        "enforcer-alerts.yml",
        "grafana-dashboard.json",
    ] {
        put(
            &format!("{doc}/examples/{f}"),
            &root.join("deploy").join(f),
            0o644,
        )?;
    }
    write(
        &format!("{doc}/copyright"),
        b"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: enforcer\n\nFiles: *\nLicense: MIT or Apache-2.0\n",
        0o644,
    )?;
    // Man pages and completions come from the binary itself, so they match its --help.
    let man = tree.join("usr/share/man/man8");
    run(Command::new(bin).arg("manpages").arg(&man))?;
    for e in fs::read_dir(&man)? {
        let p = e?.path();
        run(Command::new("gzip").args(["-9n", "-f"]).arg(&p))?;
    }
    for (shell, rel) in [
        ("bash", "usr/share/bash-completion/completions/enforcer"),
        ("zsh", "usr/share/zsh/vendor-completions/_enforcer"),
        ("fish", "usr/share/fish/vendor_completions.d/enforcer.fish"),
    ] {
        let text = output(Command::new(bin).args(["completions", shell]))?;
        write(rel, text.as_bytes(), 0o644)?;
    }
    for script in ["postinst", "prerm", "postrm"] {
        put(
            &format!("DEBIAN/{script}"),
            &root.join("deploy/debian").join(script),
            0o755,
        )?;
    }
    write("DEBIAN/conffiles", b"/etc/enforcer/enforcer.toml\n", 0o644)?;
    let size_kb = du_kb(&tree)?;
    let control = format!(
        "Package: {NAME}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: enforcer maintainers <root@localhost>\nInstalled-Size: {size_kb}\nDepends: libc6\nSection: net\nPriority: optional\nDescription: progressive enforcement against vulnerable mail servers at XDP speed\n enforcer classifies sending mail servers from SMTP evidence and throttles, then\n blocks, persistently vulnerable ones (end-of-life or unpatched Exchange) with an\n XDP/TC program in front of the MTA, like Exchange Online's progressive enforcement.\n"
    );
    write("DEBIAN/control", control.as_bytes(), 0o644)?;
    let deb = out.join(format!("{NAME}_{version}_{arch}.deb"));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&tree)
        .arg(&deb))?;
    Ok(deb)
}

/// Size of the installed files in KiB (the control file's Installed-Size).
fn du_kb(dir: &Path) -> Result<u64> {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d)? {
            let e = e?;
            let m = e.metadata()?;
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.len();
            }
        }
    }
    Ok(total.div_ceil(1024))
}
