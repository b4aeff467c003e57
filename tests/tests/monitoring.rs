//! Monitoring as an operator runs it: `promtool check metrics` on a live scrape of the daemon, the
//! OpenMetrics content negotiation, a real Prometheus server (Debian's) scraping the daemon and
//! answering queries for our series, and the deploy/ rules, scrape config and dashboard checked
//! against what the daemon actually exports.

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tests::netns::{Netns, Topology, CLIENT_V4};
use tests::process::{cli_ok, Daemon, Dirs};

/// An Exchange 2013 hop: end of life, so the sender enters enforcement.
const EX2013: &str = "Received: from EX01.corp.example.net (10.1.2.3) by mail.corp.example.net (10.1.2.4) with Microsoft SMTP Server (TLS) id 15.0.1497.48; Tue, 4 Jun 2024 10:11:12 +0000\r\n";

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// `GET path` inside `ns` with an optional Accept header; returns (head, body).
fn get(ns: &Netns, addr: SocketAddr, path: &str, accept: Option<&str>) -> (String, String) {
    let req = format!(
        "GET {path} HTTP/1.0\r\nHost: x\r\n{}Connection: close\r\n\r\n",
        accept
            .map(|a| format!("Accept: {a}\r\n"))
            .unwrap_or_default()
    );
    ns.run(move || {
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .expect("connecting");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        (head.to_string(), body.to_string())
    })
}

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(deploy())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is installed by `cargo xtask setup`");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn deploy_rules_and_scrape_config_pass_promtool() {
    let (ok, out) = promtool(&["check", "rules", "enforcer-alerts.yml"], None);
    assert!(ok, "{out}");
    assert!(out.contains("SUCCESS"), "{out}");
    let (ok, out) = promtool(&["check", "config", "prometheus.yml"], None);
    assert!(ok, "{out}");
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deploy().join("grafana-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is valid JSON");
    assert!(dash["panels"].as_array().is_some_and(|p| p.len() >= 10));
}

/// Every `enforcer_*` metric name an expression in `text` uses.
fn metric_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("enforcer_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out.sort();
    out.dedup();
    out
}

/// Prometheus (the Debian package's server) running inside a namespace; killed on drop, its
/// temporary directory removed.
struct Prometheus {
    child: Child,
    dir: PathBuf,
}

impl Prometheus {
    fn start(ns: &Netns, target: SocketAddr, listen: SocketAddr) -> Self {
        let dir = std::env::temp_dir().join(format!("enforcer-prom-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(
            deploy().join("enforcer-alerts.yml"),
            dir.join("enforcer-alerts.yml"),
        )
        .unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - enforcer-alerts.yml\nscrape_configs:\n  - job_name: enforcer\n    static_configs:\n      - targets: [\"{target}\"]\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net={}", ns.path()))
            .arg("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus (Debian package) is installed by `cargo xtask setup`");
        Self { child, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Percent-encodes a PromQL query for a URL.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Runs an instant query until it returns at least one series (bounded); returns the result array.
fn query_until(ns: &Netns, prom: &Prometheus, api: SocketAddr, q: &str) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok((head, body)) = std::panic::catch_unwind(|| {
            get(ns, api, &format!("/api/v1/query?query={}", encode(q)), None)
        }) {
            if head.split_whitespace().nth(1) == Some("200") {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                if let Some(r) = v["data"]["result"].as_array() {
                    if !r.is_empty() {
                        return r.clone();
                    }
                }
            }
            last = body;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("no result for {q} after 60 s: {last}\n{}", prom.log());
}

#[test]
fn live_scrape_passes_promtool_and_a_real_prometheus_reads_it_back() {
    let t = Topology::new("mon");
    let dirs = Dirs::new("mon");
    let d = Daemon::start(&t.server, &t.server_if, &dirs, &[]);
    cli_ok(&dirs, &["block", CLIENT_V4, "--reason", "monitoring test"]);
    // Evidence from the CLI (the socket follows --state-dir): counted by source, outcome and result.
    let mut ev = Command::new(tests::process::enforcer_bin())
        .args(["evidence", "198.51.100.7", "-", "--state-dir"])
        .arg(&dirs.state_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    ev.stdin
        .take()
        .unwrap()
        .write_all(EX2013.as_bytes())
        .unwrap();
    let out = ev.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let addr = d.metrics_addr();

    // Plain scrape (curl, old scrapers): the Prometheus text format, and promtool accepts it.
    let (head, text) = get(&t.server, addr, "/metrics", None);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    let (ok, out) = promtool(&["check", "metrics"], Some(&text));
    assert!(
        ok && out.trim().is_empty(),
        "promtool check metrics:\n{out}\n{text}"
    );
    // Every family has help text.
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split_whitespace().nth(2).unwrap();
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no HELP"
        );
    }
    assert!(text.contains("enforcer_build_info{version=\""), "{text}");
    for want in [
        r#"enforcer_engine_evidence_total{source="cli",outcome="entered"} 1"#,
        r#"enforcer_engine_evidence_total{source="milter",outcome="entered"} 0"#,
        r#"enforcer_engine_classified_total{product="exchange",status="end-of-life"} 1"#,
        r#"enforcer_engine_senders{state="enforcing",stage="1",stage_action="report"} 1"#,
        r#"enforcer_engine_senders{state="enforcing",stage="8",stage_action="block"} 0"#,
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    // No per-address labels.
    assert!(!text.contains(CLIENT_V4), "{text}");

    // A scraper that asks for OpenMetrics gets it, labelled as such.
    let (head, om) = get(
        &t.server,
        addr,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4"),
    );
    assert!(
        head.contains("Content-Type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(om.trim_end().ends_with("# EOF"), "{om}");

    // The deploy/ dashboard and alert rules only use metrics the daemon exports.
    let dashboard = std::fs::read_to_string(deploy().join("grafana-dashboard.json")).unwrap();
    let rules = std::fs::read_to_string(deploy().join("enforcer-alerts.yml")).unwrap();
    for name in metric_names(&dashboard)
        .into_iter()
        .chain(metric_names(&rules))
    {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&name) || l.starts_with(&format!("# HELP {name} "))),
            "{name} (used in deploy/) is not exported:\n{text}"
        );
    }

    // Debian's Prometheus scrapes the daemon (same namespace, loopback) and answers queries.
    let api: SocketAddr = "127.0.0.1:19090".parse().unwrap();
    let prom = Prometheus::start(&t.server, addr, api);
    let up = query_until(&t.server, &prom, api, "up{job=\"enforcer\"} == 1");
    assert_eq!(up[0]["value"][1], "1", "{up:?}");
    let dp = query_until(&t.server, &prom, api, "enforcer_kernel_datapath_up");
    assert_eq!(dp[0]["value"][1], "1", "{dp:?}");
    let attached = query_until(
        &t.server,
        &prom,
        api,
        &format!(
            "enforcer_kernel_attached{{interface=\"{}\"}} == 1",
            t.server_if
        ),
    );
    assert_eq!(attached.len(), 1, "{attached:?}");
    let entries = query_until(
        &t.server,
        &prom,
        api,
        "enforcer_kernel_map_entries{map=\"policy_v4_hosts\"}",
    );
    assert_eq!(entries[0]["value"][1], "1", "{entries:?}");
    let packets = query_until(
        &t.server,
        &prom,
        api,
        &format!(
            "sum by (interface) (enforcer_kernel_packets_total{{interface=\"{}\"}})",
            t.server_if
        ),
    );
    assert_eq!(packets.len(), 1, "{packets:?}");
    query_until(&t.server, &prom, api, "enforcer_build_info");
    // The alert rules loaded and evaluate without errors.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = get(&t.server, api, "/api/v1/rules", None);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let rules: Vec<&serde_json::Value> = v["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        let evaluated = rules.len() >= 6
            && rules
                .iter()
                .all(|r| r["health"] == "ok" && r["lastEvaluation"] != "0001-01-01T00:00:00Z");
        if evaluated {
            break;
        }
        assert!(Instant::now() < deadline, "rules not healthy: {body}");
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(prom);
    assert!(d.stop());
}
