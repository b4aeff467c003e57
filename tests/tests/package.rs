//! `cargo xtask package` builds a .deb that installs with `dpkg -i`: the binary runs, the unit passes
//! `systemd-analyze verify`, the config is a conffile, man pages and completions are there, and the unit
//! is enabled but not started. The package is purged afterwards, even when an assertion fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tests::process::enforcer_bin;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn sh(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// dpkg holds a lock while it runs; other test binaries or apt may hold it briefly: retry, bounded.
fn dpkg(args: &[&str]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = Command::new("dpkg").args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || !err.contains("lock") || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Purges the package on drop. Refuses to run over an enforcer installed by someone else.
struct Installed;

impl Installed {
    fn install(deb: &Path) -> Self {
        let status = Command::new("dpkg-query")
            .args(["-W", "-f=${Status}", "enforcer"])
            .output()
            .unwrap();
        assert!(
            !String::from_utf8_lossy(&status.stdout).contains("installed"),
            "an enforcer package is already installed on this machine; the test will not replace it"
        );
        let out = dpkg(&["-i", deb.to_str().unwrap()]);
        let guard = Installed;
        assert!(
            out.status.success(),
            "dpkg -i: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        guard
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = dpkg(&["--purge", "enforcer"]);
    }
}

#[test]
fn deb_installs_runs_and_purges() {
    let out_dir = std::env::temp_dir().join(format!("enforcer-deb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out_dir);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = sh(Command::new(cargo)
        .current_dir(workspace())
        .args(["xtask", "package", "--bin"])
        .arg(enforcer_bin())
        .arg("--out")
        .arg(&out_dir));
    let deb = PathBuf::from(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .lines()
            .last()
            .unwrap(),
    );
    assert!(deb.exists(), "{}", deb.display());

    // What the package holds, before installing it.
    let listing = String::from_utf8_lossy(&sh(Command::new("dpkg-deb").arg("-c").arg(&deb)).stdout)
        .into_owned();
    for path in [
        "./usr/sbin/enforcer",
        "./lib/systemd/system/enforcer.service",
        "./etc/enforcer/enforcer.toml",
        "./usr/share/man/man8/enforcer.8.gz",
        "./usr/share/man/man8/enforcer-run.8.gz",
        "./usr/share/man/man8/enforcer-check-config.8.gz",
        "./usr/share/bash-completion/completions/enforcer",
        "./usr/share/zsh/vendor-completions/_enforcer",
        "./usr/share/fish/vendor_completions.d/enforcer.fish",
        "./usr/share/doc/enforcer/examples/enforcer-alerts.yml",
    ] {
        assert!(
            listing.contains(path),
            "{path} missing from the .deb:\n{listing}"
        );
    }
    let conffiles = String::from_utf8_lossy(
        &sh(Command::new("dpkg-deb")
            .args(["-I"])
            .arg(&deb)
            .arg("conffiles"))
        .stdout,
    )
    .into_owned();
    assert_eq!(conffiles.trim(), "/etc/enforcer/enforcer.toml");

    let _installed = Installed::install(&deb);
    let version = sh(Command::new("/usr/sbin/enforcer").arg("--version"));
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("enforcer {}", env!("CARGO_PKG_VERSION"))
    );
    // The unit is valid (its ExecStart/ExecStartPre exist, its man pages resolve).
    sh(Command::new("systemd-analyze").args(["verify", "/lib/systemd/system/enforcer.service"]));
    // Enabled by postinst (a wants/ link), never started (no daemon appeared).
    assert!(
        Path::new("/etc/systemd/system/multi-user.target.wants/enforcer.service").exists(),
        "postinst did not enable the unit"
    );
    // The installed config passes the unit's ExecStartPre.
    sh(Command::new("/usr/sbin/enforcer").args(["check-config", "/etc/enforcer/enforcer.toml"]));
    // Without --config, `run` reads /etc/enforcer/enforcer.toml: a bad key there stops it (exit 2,
    // naming the file) before anything is touched.
    let conf = std::fs::read_to_string("/etc/enforcer/enforcer.toml").unwrap();
    std::fs::write(
        "/etc/enforcer/enforcer.toml",
        format!("{conf}\nbogus_key = 1\n"),
    )
    .unwrap();
    let run = Command::new("/usr/sbin/enforcer")
        .args(["run", "--pin-dir", "/sys/fs/bpf/enforcer-pkg-test-unused"])
        .args(["--state-dir", "/nonexistent/enforcer-pkg-test"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    assert!(
        err.contains("/etc/enforcer/enforcer.toml") && err.contains("bogus_key"),
        "{err}"
    );
    let man = sh(Command::new("man").args(["-w", "enforcer-run"]));
    assert!(String::from_utf8_lossy(&man.stdout).contains("enforcer-run.8"));
    drop(_installed);
    assert!(
        !Path::new("/usr/sbin/enforcer").exists(),
        "purge left the binary"
    );
    assert!(
        !Path::new("/etc/systemd/system/multi-user.target.wants/enforcer.service").exists(),
        "purge left the unit enabled"
    );
    let _ = std::fs::remove_dir_all(&out_dir);
}
