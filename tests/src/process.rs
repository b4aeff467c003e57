//! The real `enforcer` binary for end-to-end tests: found (and built if needed) next to the test
//! executable, run as a daemon inside a namespace, or as a one-shot CLI command.
//!
//! Locating the binary: `$ENFORCER_BIN` if set; otherwise `cargo build -p enforcer --bin enforcer`
//! with the test's own profile and target directory (cheap when up to date), then
//! `<target>/<profile>/enforcer`. `CARGO_BIN_EXE_*` only exists for binaries of the test's own
//! package, which `enforcer` is not.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::netns::Netns;

/// The `main` of a benchmark binary (`cargo xtask bench …`): such a binary lives in
/// `<target>/release/`, not in `deps/` like a test, so it uses the enforcer binary built next to it
/// (xtask builds it first) unless `ENFORCER_BIN` names one; errors are printed with their causes.
pub fn bench_main(name: &str, run: fn() -> anyhow::Result<()>) -> std::process::ExitCode {
    if std::env::var_os("ENFORCER_BIN").is_none() {
        if let Some(bin) = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("enforcer")))
            .filter(|b| b.exists())
        {
            std::env::set_var("ENFORCER_BIN", bin);
        }
    }
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Path of the `enforcer` binary, built once per test process.
pub fn enforcer_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("ENFORCER_BIN") {
            return PathBuf::from(p);
        }
        // <target>/<profile>/deps/<test-exe>
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable lives in <target>/<profile>/deps");
        let target_dir = profile_dir.parent().expect("target dir");
        let profile = profile_dir.file_name().unwrap().to_str().unwrap();
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace)
            .args(["build", "--quiet", "-p", "enforcer", "--bin", "enforcer"])
            .arg("--target-dir")
            .arg(target_dir);
        match profile {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        let status = cmd
            .status()
            .expect("running cargo build for the enforcer binary");
        assert!(status.success(), "building the enforcer binary failed");
        let bin = profile_dir.join("enforcer");
        assert!(bin.exists(), "{} missing after the build", bin.display());
        bin
    })
}

/// A unique pin directory and state directory; on drop the datapath is detached (programs, links,
/// pins) and both directories are removed.
pub struct Dirs {
    pub pin_dir: PathBuf,
    pub state_dir: PathBuf,
}

impl Dirs {
    pub fn new(tag: &str) -> Self {
        let id = format!("enforcer-test-{}-{tag}", std::process::id());
        let d = Self {
            pin_dir: PathBuf::from("/sys/fs/bpf").join(&id),
            state_dir: std::env::temp_dir().join(&id),
        };
        d.cleanup();
        d
    }

    /// `--pin-dir P --state-dir S`.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--pin-dir".into(),
            self.pin_dir.display().to_string(),
            "--state-dir".into(),
            self.state_dir.display().to_string(),
        ]
    }

    fn cleanup(&self) {
        if self.pin_dir.exists() {
            let _ = Command::new(enforcer_bin())
                .arg("detach")
                .args(self.args())
                .output();
            let _ = std::fs::remove_dir_all(&self.pin_dir);
        }
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Runs `enforcer <args> <dirs>` to completion.
pub fn cli(dirs: &Dirs, args: &[&str]) -> Output {
    Command::new(enforcer_bin())
        .args(args)
        .args(dirs.args())
        .output()
        .expect("running enforcer")
}

/// Like [`cli`] but panics unless the command succeeds; returns stdout.
pub fn cli_ok(dirs: &Dirs, args: &[&str]) -> String {
    let out = cli(dirs, args);
    assert!(
        out.status.success(),
        "enforcer {args:?} failed ({:?}): {}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `enforcer run` inside a namespace (entered with `nsenter --net`, which keeps the host's bpffs
/// mount visible, unlike `ip netns exec`). Killed on drop.
pub struct Daemon {
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    /// Starts the daemon on `iface` in `ns` and waits until it reports enforcing.
    pub fn start(ns: &Netns, iface: &str, dirs: &Dirs, extra: &[&str]) -> Self {
        Self::start_on(ns, &[iface], dirs, extra)
    }

    /// Starts the daemon on several interfaces (`--iface A --iface B`) and waits until each one
    /// reports enforcing.
    pub fn start_on(ns: &Netns, ifaces: &[&str], dirs: &Dirs, extra: &[&str]) -> Self {
        Self::start_within(ns, ifaces, dirs, extra, Duration::from_secs(60))
    }

    /// [`Daemon::start_on`], waiting up to `wait` for it to report enforcing (benchmarks start
    /// daemons over a million entries).
    pub fn start_within(
        ns: &Netns,
        ifaces: &[&str],
        dirs: &Dirs,
        extra: &[&str],
        wait: Duration,
    ) -> Self {
        std::fs::create_dir_all(&dirs.state_dir).unwrap();
        let log = dirs.state_dir.join(format!(
            "daemon-{}.log",
            Instant::now().elapsed().as_nanos() ^ u128::from(std::process::id())
        ));
        let logf = std::fs::File::create(&log).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net={}", ns.path()))
            .arg(enforcer_bin())
            .arg("run")
            .args(ifaces.iter().flat_map(|i| ["--iface", i]))
            .args(["--metrics-addr", "127.0.0.1:0"])
            .args(extra)
            .args(dirs.args())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .expect("spawning nsenter enforcer run");
        let mut d = Self {
            child: Some(child),
            log,
        };
        let deadline = Instant::now() + wait;
        loop {
            let text = d.log_text();
            if text.matches("enforcing on").count() >= ifaces.len() && text.contains("metrics on") {
                break;
            }
            if let Some(status) = d.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("enforcer run exited early ({status}):\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "enforcer run not ready after {} s:\n{text}",
                wait.as_secs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    /// The address the daemon serves /metrics on (from its log; `--metrics-addr 127.0.0.1:0`).
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        let log = self.log_text();
        let line = log
            .lines()
            .rev()
            .find_map(|l| l.split("metrics on http://").nth(1))
            .unwrap_or_else(|| panic!("no metrics address in the log:\n{log}"));
        line.split('/').next().unwrap().parse().unwrap()
    }

    /// The daemon's process id (`nsenter` execs it, so it is the child's).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no chance to clean up, like a crash.
    pub fn kill9(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (bounded) for a clean exit; returns whether it exited successfully.
    pub fn stop(mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        // SAFETY: signalling our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(s) = c.try_wait().unwrap() {
                return s.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `GET /metrics` from inside `ns`; returns the body.
pub fn scrape(ns: &Netns, addr: std::net::SocketAddr) -> String {
    ns.run(move || {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .expect("connecting to /metrics");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        out
    })
}

/// Runs `enforcer <args> <dirs>` as the unprivileged user `nobody`.
pub fn cli_as_nobody(dirs: &Dirs, args: &[&str]) -> Output {
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(enforcer_bin())
        .args(args)
        .args(dirs.args())
        .output()
        .expect("running setpriv enforcer")
}
