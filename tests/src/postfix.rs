//! A real Postfix (Debian's package) run as its own instance for end-to-end tests, and swaks as its
//! SMTP client.
//!
//! The instance has its own `config_directory`, `queue_directory` and `data_directory` in a temp
//! directory (never `/etc/postfix`, never the system MTA), listens only on addresses inside a test
//! namespace, writes its log to a file there (`maillog_file`, no syslog needed) and discards every
//! message it accepts (`local_transport = discard:`, outbound delivery is an error), so nothing
//! leaves the namespace. Every `postfix` command runs inside the namespace: Postfix checks that
//! `inet_interfaces` are local addresses even to stop. The guard stops it (`postfix stop`, then
//! SIGKILL for any process still working in its queue directory: every Postfix daemon chdirs there)
//! and removes the directory, even when the test panics.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::netns::Netns;

/// The domain the instance accepts mail for (and discards).
pub const DOMAIN: &str = "enforcer.test";

/// Runs `cmd` for at most `limit`; killed past it (the output then says so).
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let mut out = child.wait_with_output().unwrap();
            out.stderr
                .extend_from_slice(format!("\n[killed after {limit:?}]").as_bytes());
            return out;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A Postfix instance in a namespace; stopped and removed on drop.
pub struct Postfix {
    ns_path: String,
    pub root: PathBuf,
    pub config_dir: PathBuf,
    pub queue_dir: PathBuf,
}

/// `main.cf` lines that hand every SMTP session to a milter the way README "Connecting your MTA"
/// recommends (enforcer down or slow never stops mail).
pub fn milter_settings(spec: &str) -> Vec<(String, String)> {
    [
        ("smtpd_milters", spec),
        ("milter_protocol", "6"),
        ("milter_default_action", "accept"),
        ("milter_connect_timeout", "10s"),
        ("milter_command_timeout", "10s"),
        ("milter_content_timeout", "30s"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// `main.cf` lines that ask a policy service at RCPT, as README "Connecting your MTA" recommends.
pub fn policy_settings(spec: &str) -> Vec<(String, String)> {
    [
        (
            "smtpd_recipient_restrictions",
            format!("permit_mynetworks, reject_unauth_destination, check_policy_service {spec}"),
        ),
        ("smtpd_policy_service_default_action", "DUNNO".to_string()),
        ("smtpd_policy_service_timeout", "10s".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

impl Postfix {
    /// Writes the instance's configuration, starts it inside `ns` listening on `listen` (port 25)
    /// and returns once the master accepts connections. `settings` are extra `main.cf` lines.
    pub fn start(ns: &Netns, tag: &str, listen: &[&str], settings: &[(String, String)]) -> Self {
        let root =
            std::env::temp_dir().join(format!("enforcer-postfix-{}-{tag}", std::process::id()));
        let pf = Postfix {
            ns_path: ns.path(),
            config_dir: root.join("etc"),
            queue_dir: root.join("queue"),
            root,
        };
        pf.cleanup();
        let data_dir = pf.root.join("data");
        for d in [&pf.config_dir, &pf.queue_dir, &data_dir] {
            std::fs::create_dir_all(d).unwrap();
        }
        // The postfix user must reach the queue and data directories through the temp directory.
        set_mode(&pf.root, 0o755);
        chown_postfix(&data_dir);
        let interfaces: Vec<String> = listen
            .iter()
            .map(|a| {
                if a.contains(':') {
                    format!("[{a}]")
                } else {
                    a.to_string()
                }
            })
            .collect();
        let mut main = format!(
            "# enforcer test instance: nothing here is the system MTA's.
compatibility_level = 3.6
config_directory = {cfg}
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.{DOMAIN}
mydomain = {DOMAIN}
myorigin = $myhostname
mydestination = $myhostname, {DOMAIN}
inet_interfaces = {ifaces}
inet_protocols = all
mynetworks = 127.0.0.0/8
local_recipient_maps =
local_transport = discard:
default_transport = error:no outbound mail from a test instance
relayhost =
alias_maps =
alias_database =
biff = no
smtputf8_enable = no
disable_dns_lookups = yes
smtp_dns_support_level = disabled
smtpd_banner = $myhostname ESMTP
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
maillog_file_prefixes = {root}
maillog_file = {root}/maillog
default_process_limit = 100
",
            cfg = pf.config_dir.display(),
            queue = pf.queue_dir.display(),
            data = data_dir.display(),
            ifaces = interfaces.join(", "),
            root = pf.root.display(),
        );
        for (k, v) in settings {
            main.push_str(&format!("{k} = {v}\n"));
        }
        std::fs::write(pf.config_dir.join("main.cf"), main).unwrap();
        // No chroot (the temp queue directory has no copy of /etc), only the services a
        // receive-and-discard instance needs, and postlogd for maillog_file.
        std::fs::write(pf.config_dir.join("master.cf"), MASTER_CF).unwrap();
        let out = pf.postfix(&["start"]);
        assert!(
            out.status.success(),
            "postfix start failed ({:?}): {}{}\nmaillog:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            pf.maillog()
        );
        pf
    }

    /// Runs `postfix -c <config> <args>` inside the namespace (bounded).
    pub fn postfix(&self, args: &[&str]) -> Output {
        run_bounded(
            Command::new("nsenter")
                .arg(format!("--net={}", self.ns_path))
                .arg("postfix")
                .arg("-c")
                .arg(&self.config_dir)
                .args(args),
            Duration::from_secs(60),
        )
    }

    /// Sets `main.cf` parameters (`postconf -e`) and reloads the instance. Sessions already open
    /// finish with the old settings.
    pub fn set(&self, settings: &[(String, String)]) {
        for (k, v) in settings {
            let out = run_bounded(
                Command::new("postconf")
                    .arg("-c")
                    .arg(&self.config_dir)
                    .arg("-e")
                    .arg(format!("{k} = {v}")),
                Duration::from_secs(30),
            );
            assert!(
                out.status.success(),
                "postconf -e {k}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let out = self.postfix(&["reload"]);
        assert!(
            out.status.success(),
            "postfix reload failed: {}\nmaillog:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.maillog()
        );
    }

    /// The instance's log (every Postfix daemon and the postfix command write there).
    pub fn maillog(&self) -> String {
        std::fs::read_to_string(self.root.join("maillog")).unwrap_or_default()
    }

    /// Waits (bounded) until the log has `n` lines containing `needle`; returns whether it did.
    pub fn wait_log(&self, needle: &str, n: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.maillog().matches(needle).count() >= n {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Process ids of the running processes whose working directory is this instance's queue
    /// directory: the master and every daemon it started.
    pub fn pids(&self) -> Vec<i32> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read_link(format!("/proc/{pid}/cwd"))
                    .is_ok_and(|cwd| cwd.starts_with(&self.queue_dir))
            })
            .collect()
    }

    fn cleanup(&self) {
        if self.config_dir.join("main.cf").exists() {
            let _ = self.postfix(&["stop"]);
        }
        // Anything still running in the queue directory (a stop that failed, a daemon busy with a
        // client) is killed; bounded wait for it to go.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = self.pids();
            if pids.is_empty() || Instant::now() >= deadline {
                break;
            }
            for pid in pids {
                // SAFETY: signalling a process of this instance (its cwd is our queue directory).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        self.cleanup();
    }
}

const MASTER_CF: &str = "\
smtp      inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
";

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown_postfix(p: &Path) {
    let out = Command::new("chown")
        .arg("postfix")
        .arg(p)
        .output()
        .expect("running chown");
    assert!(
        out.status.success(),
        "chown postfix {}: {} (is the postfix package installed? `cargo xtask setup`)",
        p.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test message: `received` fields (newest first, each without CRLF) above a minimal header.
pub fn message(received: &[&str], subject: &str) -> String {
    let mut m = String::new();
    for r in received {
        m.push_str(r);
        m.push_str("\r\n");
    }
    m.push_str(&format!(
        "From: <sender@sender.example>\r\nTo: <user@{DOMAIN}>\r\nSubject: {subject}\r\n\
         Date: Tue, 1 Dec 2026 10:11:12 +0000\r\nMessage-ID: <{}.{}@sender.example>\r\n\r\nhello\r\n",
        std::process::id(),
        subject.replace(' ', "-")
    ));
    m
}

/// What one swaks session got.
#[derive(Debug)]
pub struct Swaks {
    pub code: Option<i32>,
    pub transcript: String,
}

impl Swaks {
    /// The server accepted the message for delivery.
    pub fn accepted(&self) -> bool {
        self.transcript.contains("250 2.0.0 Ok: queued")
    }

    /// The server's reply to the command that starts with `command` (e.g. `MAIL FROM`), as swaks
    /// printed it, without swaks' direction marker.
    pub fn reply_to(&self, command: &str) -> Option<String> {
        let mut lines = self.transcript.lines();
        lines.find(|l| {
            l.trim_start_matches([' ', '-', '>', '~'])
                .starts_with(command)
        })?;
        let mut reply = Vec::new();
        for l in lines {
            let Some(text) = l
                .strip_prefix("<-  ")
                .or_else(|| l.strip_prefix("<** "))
                .or_else(|| l.strip_prefix("<~  "))
                .or_else(|| l.strip_prefix("<~* "))
            else {
                break;
            };
            reply.push(text.to_string());
        }
        (!reply.is_empty()).then(|| reply.join("\n"))
    }
}

/// Runs swaks from `ns` (optionally from source address `from`) against `server` port 25 with
/// `data` as the message; `helo` is the EHLO name. Bounded to 60 s.
pub fn swaks(ns: &Netns, server: &str, from: Option<&str>, helo: &str, data: &str) -> Swaks {
    let file = std::env::temp_dir().join(format!(
        "enforcer-swaks-{}-{}.eml",
        std::process::id(),
        unique_counter()
    ));
    std::fs::write(&file, data).unwrap();
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={}", ns.path()))
        .arg("swaks")
        .args(["--server", server, "--port", "25", "--helo", helo])
        .args(["--from", "sender@sender.example"])
        .args(["--to", &format!("user@{DOMAIN}")])
        .args(["--timeout", "30", "--suppress-data"])
        .arg("--data")
        .arg(format!("@{}", file.display()));
    if let Some(src) = from {
        cmd.args(["--local-interface", src]);
    }
    if server.contains(':') || from.is_some_and(|f| f.contains(':')) {
        cmd.arg("-6");
    }
    let out = run_bounded(&mut cmd, Duration::from_secs(60));
    let _ = std::fs::remove_file(&file);
    Swaks {
        code: out.status.code(),
        transcript: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn unique_counter() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
