//! `cargo bench -p enforcer --bench fleet`: how many changes per second one host publishes to the
//! fleet and three hosts apply, and the propagation latency (publish stamp at the origin to applied
//! at a receiver) at that load. Three engines (in-memory kernels, real redb stores, each change
//! committed durably as in the daemon) share a redis-server started on a loopback port. Prints a
//! Markdown section on stdout (spliced into BENCHMARKS.md by `cargo xtask bench fleet`).

use enforcer::control::Request;
use enforcer::daemon::{Engine, EngineMetrics, EngineSettings, MemKernel};
use enforcer::fleet::link::ToEngine;
use enforcer::fleet::settings::{FleetFile, DEFAULT_TOMBSTONE_TTL};
use enforcer::fleet::{Fleet, FleetMetrics, FleetSettings};
use enforcer::store::Store;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Changes published by the origin host.
const CHANGES: usize = 2000;

struct Redis(Child, PathBuf);
impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn start_redis(dir: &std::path::Path) -> (Redis, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::create_dir_all(dir).unwrap();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (apt-get install redis-server)");
    let r = Redis(child, dir.to_path_buf());
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (r, port)
}

struct Host {
    engine: Engine<MemKernel>,
    fleet: Fleet,
    metrics: FleetMetrics,
}

fn host(dir: &std::path::Path, name: &str, port: u16, ns: &str) -> Host {
    let state = dir.join(name);
    let (mut engine, _) = Engine::start(
        EngineSettings::default(),
        Store::open(&state).unwrap(),
        MemKernel::default(),
        EngineMetrics::default(),
        now_ms() as i64 / 1000,
    )
    .unwrap();
    let settings = FleetSettings::resolve(&FleetFile {
        redis: vec![format!("redis://127.0.0.1:{port}/0")],
        sentinel_master: None,
        password_file: None,
        ca_file: None,
        name: Some(name.into()),
        namespace: ns.into(),
        stream_max_len: 1_000_000,
        tombstone_ttl: enforcer::duration::Span(DEFAULT_TOMBSTONE_TTL),
    })
    .unwrap();
    let metrics = FleetMetrics::default();
    let fleet = Fleet::start(&settings, &mut engine, metrics.clone()).unwrap();
    Host {
        engine,
        fleet,
        metrics,
    }
}

fn pct(v: &[f64], p: f64) -> f64 {
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let dir = std::env::temp_dir().join(format!("enforcer-bench-fleet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (_redis, port) = start_redis(&dir.join("redis"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ns = format!("bench{}", std::process::id());
    let (publish_secs, apply, lat) = rt.block_on(async {
        let mut hosts: Vec<Host> = ["mx1", "mx2", "mx3"]
            .iter()
            .map(|n| host(&dir, n, port, &ns))
            .collect();
        let mut a = hosts.remove(0);
        // Receivers: apply until they have every change, noting when each arrived.
        let mut receivers = Vec::new();
        for mut h in hosts {
            receivers.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut first = None;
                while (h.metrics.applied.get() as usize) < CHANGES {
                    let ev =
                        match tokio::time::timeout(Duration::from_secs(60), h.fleet.recv()).await {
                            Ok(Some(ev)) => ev,
                            _ => panic!("receiver stalled at {}", h.metrics.applied.get()),
                        };
                    if let ToEngine::Remote { change, .. } = &ev {
                        lat.push(now_ms().saturating_sub(change.stamp.ms) as f64);
                    }
                    h.fleet.handle(&mut h.engine, ev);
                    first.get_or_insert_with(Instant::now);
                }
                (first.unwrap().elapsed().as_secs_f64(), lat)
            }));
        }
        // Let every host connect and finish its first resync.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let start = Instant::now();
        let now = now_ms() as i64 / 1000;
        for i in 0..CHANGES {
            let rule = serde_json::json!({
                "prefix": format!("10.{}.{}.0/24", i / 256, i % 256),
                "verdict": {"action": "drop"}, "expires_at": null, "reason": null,
                "created_at": now, "source": {"kind": "operator"}
            });
            let r = a.engine.handle(Request::PutRule { rule }, now);
            assert!(r.ok, "{:?}", r.error);
            a.fleet.after_local(&mut a.engine);
            while let Some(ev) = a.fleet.try_recv() {
                a.fleet.handle(&mut a.engine, ev);
            }
        }
        while a.metrics.sent.get() < CHANGES as u64 {
            match tokio::time::timeout(Duration::from_secs(60), a.fleet.recv()).await {
                Ok(Some(ev)) => a.fleet.handle(&mut a.engine, ev),
                _ => panic!("publisher stalled at {}", a.metrics.sent.get()),
            }
        }
        let publish_secs = start.elapsed().as_secs_f64();
        let mut apply = Vec::new();
        let mut lat = Vec::new();
        for r in receivers {
            let (secs, l) = r.await.unwrap();
            apply.push(secs);
            lat.extend(l);
        }
        (publish_secs, apply, lat)
    });
    let mut lat = lat;
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let slowest_apply = apply.iter().cloned().fold(0.0, f64::max);
    println!("### Fleet sync (`cargo xtask bench fleet`)\n");
    println!(
        "{CHANGES} operator entries set at one host, each committed durably (engine store, then the fleet queue) and published to a local redis-server; two other hosts apply them (store commit + kernel write into an in-memory kernel).\n"
    );
    println!("| measure | value |\n|---|---|");
    println!(
        "| publish (one host, durable queue -> Redis) | {:.0} changes/s |",
        CHANGES as f64 / publish_secs
    );
    println!(
        "| apply (per receiving host, slowest of two) | {:.0} changes/s |",
        CHANGES as f64 / slowest_apply
    );
    println!(
        "| propagation p50 / p99 / max at that load | {:.0} ms / {:.0} ms / {:.0} ms |",
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        lat[lat.len() - 1]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
