//! Harness for the fleet tests (issue 13): a Redis server in its own namespace, and N "hosts", each
//! a namespace with its own enforcer daemon, veth, pin dir, state dir and socket.
//!
//! ```text
//!             client ns (senders 10.200.70.x on lo)
//!            /           |            \
//!   data veth 10.200.6i.1/24 <-> .2   (the daemon protects this one, port 25 server behind it)
//!   host ns 1        host ns 2        host ns 3
//!            \           |            /
//!   mgmt veth 10.200.8i.2/24 <-> .1   (Redis traffic: never on the protected interface)
//!                    hub ns (redis-server on 0.0.0.0:PORT, AUTH required)
//! ```
//! Every namespace, veth, daemon, pin and directory is removed on drop, even when the test fails.

use crate::netns::{ip, unique, Netns, Server};
use crate::process::{enforcer_bin, Daemon, Dirs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "fleet-test-secret";
/// Evidence and connect sources live here, on the client's loopback.
pub fn sender_ip(n: u8) -> String {
    format!("10.200.70.{n}")
}

/// `redis-server` in a namespace, on a port, with its own directory; killed on drop.
pub struct Redis {
    child: Option<Child>,
    ns_path: String,
    pub port: u16,
    dir: PathBuf,
    /// TLS only (no plain port): the CA that signed the server's certificate.
    pub ca: Option<PathBuf>,
}

/// Makes a CA and a server certificate for the Redis addresses the hosts use (IP SANs).
fn make_certs(dir: &Path, ips: &[String]) -> PathBuf {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("running openssl (apt-get install openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=enforcer-test-ca",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=redis",
    ]);
    let san = ips
        .iter()
        .map(|i| format!("IP:{i}"))
        .collect::<Vec<_>>()
        .join(",");
    std::fs::write(dir.join("san.ext"), format!("subjectAltName={san}\n")).unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    dir.join("ca.pem")
}

impl Redis {
    pub fn start(ns: &Netns, port: u16, dir: &Path) -> Self {
        Self::start_tls(ns, port, dir, None)
    }

    /// With `tls_ips`: TLS only, with a certificate for those addresses.
    pub fn start_tls(ns: &Netns, port: u16, dir: &Path, tls_ips: Option<&[String]>) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let ca = tls_ips.map(|ips| make_certs(dir, ips));
        let mut r = Redis {
            child: None,
            ns_path: ns.path(),
            port,
            dir: dir.to_path_buf(),
            ca,
        };
        r.spawn();
        r
    }

    fn port_args(&self) -> Vec<String> {
        match &self.ca {
            None => vec!["--port".into(), self.port.to_string()],
            Some(_) => vec![
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                self.port.to_string(),
                "--tls-cert-file".into(),
                self.dir.join("server.pem").display().to_string(),
                "--tls-key-file".into(),
                self.dir.join("server.key").display().to_string(),
                "--tls-ca-cert-file".into(),
                self.dir.join("ca.pem").display().to_string(),
                "--tls-auth-clients".into(),
                "no".into(),
            ],
        }
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.join("redis.log")).unwrap();
        // No persistence: a restart loses everything, the hardest case for the fleet.
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.ns_path))
            .arg("redis-server")
            .args(self.port_args())
            .args(["--bind", "0.0.0.0"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(["--requirepass", PASSWORD, "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting redis-server (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cli(&["PING"]).trim() != "PONG" {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `redis-cli ARGS` without the password; returns stdout and stderr.
    pub fn cli_no_auth(&self, args: &[&str]) -> String {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.ns_path))
            .args(["redis-cli", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(self.tls_args())
            .args(args)
            .output()
            .expect("running redis-cli");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Kills the server (its data is gone: no persistence).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a Sentinel (the same redis-server binary in sentinel mode) on `port` in the same
    /// namespace, monitoring this server as `mymaster` at `master_ip`; killed on drop. When this
    /// server is TLS-only, so is the Sentinel (same certificate), and it reaches the master over TLS.
    pub fn sentinel(&self, port: u16, master_ip: &str) -> Sentinel {
        let conf = self.dir.join("sentinel.conf");
        let listen = match &self.ca {
            None => format!("port {port}\n"),
            Some(ca) => format!(
                "port 0\ntls-port {port}\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\n\
                 tls-auth-clients no\ntls-replication yes\n",
                self.dir.join("server.pem").display(),
                self.dir.join("server.key").display(),
                ca.display()
            ),
        };
        std::fs::write(
            &conf,
            format!(
                "{listen}bind 0.0.0.0\nprotected-mode no\nsentinel monitor mymaster {master_ip} {} 1\nsentinel auth-pass mymaster {PASSWORD}\n",
                self.port
            ),
        )
        .unwrap();
        let log = std::fs::File::create(self.dir.join("sentinel.log")).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.ns_path))
            .arg("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting redis-server --sentinel");
        let s = Sentinel { child };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new("nsenter")
                .arg(format!("--net={}", self.ns_path))
                .args(["redis-cli", "-h", "127.0.0.1", "-p", &port.to_string()])
                .args(self.tls_args())
                .args(["SENTINEL", "get-master-addr-by-name", "mymaster"])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout).contains(master_ip) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the Sentinel did not start: {}",
                std::fs::read_to_string(self.dir.join("sentinel.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }

    /// redis-cli options for this server's TLS, if any.
    fn tls_args(&self) -> Vec<String> {
        match &self.ca {
            Some(ca) => vec!["--tls".into(), "--cacert".into(), ca.display().to_string()],
            None => vec![],
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// `redis-cli ARGS` against this server; returns stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.ns_path))
            .args(["redis-cli", "--no-auth-warning", "-a", PASSWORD])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(self.tls_args())
            .args(args)
            .output()
            .expect("running redis-cli (apt-get install redis-tools)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A Sentinel process; killed on drop.
pub struct Sentinel {
    child: Child,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One host: namespace, data interface, its daemon's dirs and config.
pub struct Host {
    pub name: String,
    pub ns: Netns,
    pub data_if: String,
    pub server_ip: String,
    pub dirs: Dirs,
    pub config: PathBuf,
    pub daemon: Option<Daemon>,
    _server: Server,
}

impl Host {
    pub fn socket(&self) -> PathBuf {
        self.dirs.state_dir.join("enforcer.sock")
    }

    pub fn start(&mut self) {
        let cfg = self.config.display().to_string();
        self.daemon = Some(Daemon::start(
            &self.ns,
            &self.data_if,
            &self.dirs,
            &["--config", &cfg],
        ));
    }

    /// SIGTERM (the daemon leaves enforcement in place).
    pub fn stop(&mut self) {
        if let Some(d) = self.daemon.take() {
            assert!(d.stop(), "the daemon of {} did not exit cleanly", self.name);
        }
    }

    /// `enforcer ARGS --socket S` (commands that only talk to the daemon).
    pub fn ask(&self, args: &[&str]) -> Output {
        Command::new(enforcer_bin())
            .args(args)
            .arg("--socket")
            .arg(self.socket())
            .output()
            .expect("running enforcer")
    }

    pub fn ask_ok(&self, args: &[&str]) -> String {
        let out = self.ask(args);
        assert!(
            out.status.success(),
            "{}: enforcer {args:?}: {}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Operator commands (`block`, `unset`, ...) through the daemon that owns the state dir.
    pub fn op(&self, args: &[&str]) -> String {
        let out = Command::new(enforcer_bin())
            .args(args)
            .args(self.dirs.args())
            .output()
            .expect("running enforcer");
        assert!(
            out.status.success(),
            "{}: enforcer {args:?}: {}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `enforcer sender IP --json`, or `None` when the host has no record.
    pub fn sender(&self, ip: &str) -> Option<serde_json::Value> {
        let out = self.ask(&["sender", ip, "--json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).unwrap())
    }

    pub fn fleet_status(&self) -> serde_json::Value {
        serde_json::from_str(&self.ask_ok(&["fleet", "status", "--json"])).unwrap()
    }

    /// The kernel entry for exactly `prefix` (`enforcer list --json`), as its action name.
    pub fn entry(&self, prefix: &str) -> Option<String> {
        let out = Command::new(enforcer_bin())
            .args(["list", "--json"])
            .args(self.dirs.args())
            .output()
            .expect("running enforcer list");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["entries"]
            .as_array()?
            .iter()
            .find(|e| e["prefix"].as_str() == Some(prefix))
            .and_then(|e| e["action"].as_str().map(str::to_string))
    }

    pub fn metrics(&self) -> String {
        let d = self.daemon.as_ref().expect("daemon running");
        crate::process::scrape(&self.ns, d.metrics_addr())
    }

    pub fn log_text(&self) -> String {
        self.daemon
            .as_ref()
            .map(|d| d.log_text())
            .unwrap_or_default()
    }
}

/// The value of one sample line of a Prometheus text body (`name{labels} value`), summed when the
/// name matches several label sets.
pub fn metric(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls `f` every 10 ms until it returns true or `limit` passes; returns the time it took.
pub fn wait_for(limit: Duration, f: impl FnMut() -> bool) -> Option<Duration> {
    crate::clock::poll(limit, Duration::from_millis(10), f)
}

/// Redis and N hosts. Fields drop in order: hosts (daemons, pins) first, then Redis, then the
/// namespaces.
pub struct Fleet {
    pub hosts: Vec<Host>,
    pub redis: Redis,
    pub namespace: String,
    pub client: Netns,
    pub hub: Netns,
    dir: PathBuf,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for h in &mut self.hosts {
            h.daemon.take();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Fleet {
    /// `n` hosts named mx1..mxN; `extra_fleet` is appended to every host's `[fleet]` section.
    /// Daemons are not started yet.
    pub fn new(tag: &str, n: u8, extra_fleet: &str) -> Self {
        Self::build(tag, n, extra_fleet, false)
    }

    /// Like [`Fleet::new`], with Redis reachable only over TLS (`rediss://`, the test CA in
    /// `fleet.ca_file`).
    pub fn new_tls(tag: &str, n: u8) -> Self {
        Self::build(tag, n, "", true)
    }

    fn build(tag: &str, n: u8, extra_fleet: &str, tls: bool) -> Self {
        let base = unique(tag);
        let dir = std::env::temp_dir().join(format!("enforcer-fleet-{base}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let client = Netns::new(format!("{base}-cl"));
        let hub = Netns::new(format!("{base}-hub"));
        for s in 1..=40u8 {
            ip(&[
                "-n",
                &client.name,
                "addr",
                "add",
                &format!("{}/32", sender_ip(s)),
                "dev",
                "lo",
            ]);
        }
        // A port from the pid, so test binaries running at once never share a Redis.
        let port = 20_000 + (std::process::id() % 20_000) as u16;
        let ips: Vec<String> = (1..=n)
            .map(|i| format!("10.200.{}.1", 80 + i))
            .chain(["127.0.0.1".to_string()])
            .collect();
        let redis = Redis::start_tls(&hub, port, &dir.join("redis"), tls.then_some(&ips[..]));
        let (scheme, ca_line) = match &redis.ca {
            Some(ca) => ("rediss", format!("ca_file = \"{}\"\n", ca.display())),
            None => ("redis", String::new()),
        };
        let pwfile = dir.join("redis.pass");
        std::fs::write(&pwfile, format!("{PASSWORD}\n")).unwrap();
        let namespace = format!("t{base}");
        let mut hosts = Vec::new();
        for i in 1..=n {
            let name = format!("mx{i}");
            let ns = Netns::new(format!("{base}-h{i}"));
            let (data_if, data_peer) = (format!("{base}d{i}"), format!("{base}D{i}"));
            let (mgmt_if, mgmt_peer) = (format!("{base}m{i}"), format!("{base}M{i}"));
            for (a, b, other) in [
                (&data_if, &data_peer, &client),
                (&mgmt_if, &mgmt_peer, &hub),
            ] {
                ip(&[
                    "-n",
                    &ns.name,
                    "link",
                    "add",
                    a,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    b,
                    "netns",
                    &other.name,
                ]);
            }
            let server_ip = format!("10.200.{}.1", 60 + i);
            let addrs = [
                (&ns, &data_if, format!("{server_ip}/24")),
                (&client, &data_peer, format!("10.200.{}.2/24", 60 + i)),
                (&ns, &mgmt_if, format!("10.200.{}.2/24", 80 + i)),
                (&hub, &mgmt_peer, format!("10.200.{}.1/24", 80 + i)),
            ];
            for (n, ifname, cidr) in &addrs {
                ip(&["-n", &n.name, "addr", "add", cidr, "dev", ifname]);
                ip(&["-n", &n.name, "link", "set", ifname, "up"]);
            }
            ip(&[
                "-n",
                &ns.name,
                "route",
                "add",
                "10.200.70.0/24",
                "via",
                &format!("10.200.{}.2", 60 + i),
            ]);
            let server = Server::start(&ns, &[25]);
            let dirs = Dirs::new(&format!("{base}-{name}"));
            std::fs::create_dir_all(&dirs.state_dir).unwrap();
            let config = dirs.state_dir.join("enforcer.toml");
            std::fs::write(
                &config,
                format!(
                    "ports = [25]\n\
                     [[enforcement.stages]]\nafter = \"0s\"\naction = \"block\"\n\
                     [fleet]\nredis = \"{scheme}://10.200.{}.1:{port}/0\"\npassword_file = \"{}\"\n\
                     {ca_line}name = \"{name}\"\nnamespace = \"{namespace}\"\n{extra_fleet}\n",
                    80 + i,
                    pwfile.display()
                ),
            )
            .unwrap();
            hosts.push(Host {
                name,
                ns,
                data_if,
                server_ip,
                dirs,
                config,
                daemon: None,
                _server: server,
            });
        }
        Fleet {
            hosts,
            redis,
            namespace,
            client,
            hub,
            dir,
        }
    }

    /// Points every host at Sentinels on `port` (reached at the hub's address on each host's link)
    /// that know the master as `mymaster` at 10.200.81.1, which every host can route to; over TLS
    /// (`rediss://`, the test CA) when Redis is TLS-only.
    pub fn use_sentinel(&mut self, port: u16) {
        let scheme = if self.redis.ca.is_some() {
            "rediss"
        } else {
            "redis"
        };
        for (i, h) in self.hosts.iter_mut().enumerate() {
            let n = 81 + i;
            if n != 81 {
                ip(&[
                    "-n",
                    &h.ns.name,
                    "route",
                    "add",
                    "10.200.81.0/24",
                    "via",
                    &format!("10.200.{n}.1"),
                ]);
            }
            let cfg = std::fs::read_to_string(&h.config).unwrap();
            let cfg = cfg
                .lines()
                .map(|l| {
                    if l.starts_with("redis = ") {
                        format!("redis = [\"{scheme}://10.200.{n}.1:{port}\"]\nsentinel_master = \"mymaster\"")
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            std::fs::write(&h.config, cfg + "\n").unwrap();
        }
    }

    pub fn start_all(&mut self) {
        for h in &mut self.hosts {
            h.start();
        }
        // Every host connected before the test acts.
        for h in &self.hosts {
            let ok = wait_for(Duration::from_secs(20), || {
                h.fleet_status()["connected"].as_bool() == Some(true)
            });
            assert!(
                ok.is_some(),
                "{} did not connect:\n{}",
                h.name,
                h.log_text()
            );
        }
    }

    /// Whether a TCP connect from `src` (on the client) to host `i`'s port 25 completes.
    pub fn connects(&self, i: usize, src: &str) -> bool {
        let dst = format!("{}:25", self.hosts[i].server_ip).parse().unwrap();
        matches!(
            crate::netns::connect(
                &self.client,
                Some(src.parse().unwrap()),
                dst,
                Duration::from_millis(700)
            ),
            crate::netns::Connect::Connected
        )
    }
}
