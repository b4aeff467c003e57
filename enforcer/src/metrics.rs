//! `/metrics` over HTTP (Prometheus text format). Components register their own metrics in the
//! registry (`registry.sub_registry_with_prefix(..)`) before [`serve`] is started.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use prometheus_client::registry::Registry;

use crate::daemon::gate::Gate;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// Default listen address: loopback only, scrapers on other hosts need an explicit --metrics-addr.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9925";

/// The top-level registry; every metric name starts with `enforcer_`.
pub fn registry() -> Registry {
    Registry::with_prefix("enforcer")
}

/// Renders the registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Encoding into a String cannot fail except on a collector's own error, which we surface inline.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        out.push_str(&format!("# encoding error: {e}\n"));
    }
    out
}

/// Binds `addr` (errors say which address could not be bound).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen for metrics on {addr} (in use? pass another --metrics-addr)")
    })
}

/// Most scrape connections served at once; more get a 503 and are closed. Prometheus opens one per
/// scrape, so this is far above any real use and far below the file-descriptor limit.
pub const MAX_CONNS: usize = 32;

/// Serves `GET /metrics` forever; anything else gets 404. One small request per connection; at most
/// `gate.max_conns()` at once.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>, gate: Gate) {
    loop {
        let ((mut sock, _), slot) = gate.accept(|| listener.accept()).await;
        let Some(slot) = slot else {
            // Never waits: a fresh connection's send buffer has room for one short line.
            let _ = sock.try_write(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            continue;
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            // Read until the end of the request head, bounded by the buffer and a timeout.
            let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while n < buf.len() {
                    match sock.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => n += k,
                    }
                    if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            })
            .await;
            if read.is_err() {
                return;
            }
            let head = String::from_utf8_lossy(&buf[..n]);
            let line = head.lines().next().unwrap_or("");
            let mut parts = line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let (status, ctype, body) =
                if method == "GET" && (path == "/metrics" || path.starts_with("/metrics?")) {
                    let body = tokio::task::spawn_blocking(move || render(&registry))
                        .await
                        .unwrap_or_default();
                    ("200 OK", "text/plain; version=0.0.4; charset=utf-8", body)
                } else {
                    (
                        "404 Not Found",
                        "text/plain",
                        "try GET /metrics\n".to_string(),
                    )
                };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}

/// `/metrics` as a daemon listener.
pub struct MetricsListener(TcpListener, Gate);

impl crate::daemon::listener::Listener for MetricsListener {
    const NAME: &'static str = "metrics";

    async fn bind(
        settings: &crate::daemon::settings::Settings,
        registry: &mut Registry,
    ) -> anyhow::Result<Option<Self>> {
        let listener = bind(settings.metrics_addr).await?;
        let metrics = crate::daemon::gate::ListenerMetrics::default();
        metrics.register(registry.sub_registry_with_prefix("metrics"));
        Ok(Some(Self(
            listener,
            Gate::new("metrics", MAX_CONNS, metrics),
        )))
    }

    fn describe(&self) -> String {
        match self.0.local_addr() {
            Ok(addr) => format!("metrics on http://{addr}/metrics"),
            Err(e) => format!("metrics listener (address unknown: {e})"),
        }
    }

    async fn serve(self, ctx: crate::daemon::listener::Context) -> anyhow::Result<()> {
        tokio::select! {
            _ = serve(self.0, ctx.registry.clone(), self.1) => {}
            _ = ctx.shutdown.wait() => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[tokio::test]
    async fn serves_registered_metrics() {
        let mut reg = registry();
        let c: Counter = Counter::default();
        reg.sub_registry_with_prefix("test")
            .register("things", "Things", c.clone());
        c.inc();
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let gate = Gate::new(
            "metrics",
            2,
            crate::daemon::gate::ListenerMetrics::default(),
        );
        gate.metrics()
            .register(reg.sub_registry_with_prefix("metrics"));
        tokio::spawn(serve(listener, Arc::new(reg), gate));
        let get = |path: &'static str| async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let body = get("/metrics").await;
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        assert!(body.contains("enforcer_test_things_total 1"), "{body}");
        assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
        // Two idle connections fill the cap of 2: the third is answered 503 and closed at once.
        let idle1 = tokio::net::TcpStream::connect(addr).await.unwrap();
        let idle2 = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        // Refused at accept, before the request is read: read without writing (a write could meet a
        // reset socket).
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut third = String::new();
        s.read_to_string(&mut third).await.unwrap();
        assert!(third.starts_with("HTTP/1.1 503"), "{third}");
        drop((idle1, idle2));
        // Slots come back when the idle clients go.
        let mut body = String::new();
        for _ in 0..50 {
            body = get("/metrics").await;
            if body.starts_with("HTTP/1.1 200") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        assert!(
            body.contains("enforcer_metrics_refused_total{why=\"connection_cap\"} 1"),
            "{body}"
        );
    }
}
