//! `/metrics` over HTTP: OpenMetrics 1.0 to scrapers that ask for it (`Accept:
//! application/openmetrics-text`, as Prometheus does), the Prometheus text format 0.0.4 otherwise,
//! each with its own Content-Type.
//!
//! Components register their own metrics, each under its own prefix, before [`serve`] starts: a
//! component keeps its metrics in a struct, implements [`Component`], and the daemon calls
//! [`register`] with it once at boot (see `daemon::metrics::EngineMetrics` and
//! `datapath::metrics::KernelCollector`). Conventions, checked by `promtool check metrics`: every
//! family has help text; counters are `Counter`s registered without `_total` (the encoder adds it);
//! base units in the name (`_seconds`, `_bytes`); label values from a small fixed set (never an
//! address); a labelled gauge that counts things lists every label combination, zero or not, so a
//! series never disappears.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use prometheus_client::registry::Registry;

use crate::daemon::gate::Gate;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// Default listen address: loopback only, scrapers on other hosts need an explicit --metrics-addr.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9925";

/// A component's metrics: registered under `enforcer_<PREFIX>_`.
pub trait Component {
    /// The component's name prefix (`engine`, `kernel`, `milter`, ...).
    const PREFIX: &'static str;
    /// Registers every metric of the component in `reg` (already prefixed).
    fn register(self, reg: &mut Registry);
}

/// Registers one component under its prefix.
pub fn register<C: Component>(registry: &mut Registry, component: C) {
    component.register(registry.sub_registry_with_prefix(C::PREFIX));
}

/// The top-level registry; every metric name starts with `enforcer_`. Holds
/// `enforcer_build_info{version,target}` from the start.
pub fn registry() -> Registry {
    let mut reg = Registry::with_prefix("enforcer");
    reg.register(
        "build",
        "The running enforcer build (value 1)",
        prometheus_client::metrics::info::Info::new(vec![
            ("version", env!("CARGO_PKG_VERSION")),
            ("target", std::env::consts::ARCH),
        ]),
    );
    reg
}

/// The two exposition formats we serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Text,
}

impl Format {
    /// Chooses by the request's `Accept` header: OpenMetrics when the scraper lists it (with a
    /// non-zero q), the Prometheus text format otherwise (curl, browsers, old scrapers).
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        for item in accept.split(',') {
            let mut parts = item.split(';').map(str::trim);
            let media = parts.next().unwrap_or("");
            let q_zero = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            if media.eq_ignore_ascii_case("application/openmetrics-text") && !q_zero {
                return Format::OpenMetrics;
            }
        }
        Format::Text
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// Renders the registry in OpenMetrics (what prometheus-client encodes).
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Encoding into a String cannot fail except on a collector's own error, which we surface inline.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        out.push_str(&format!("# encoding error: {e}\n"));
    }
    out
}

/// Renders the registry in the requested format.
pub fn render_as(registry: &Registry, format: Format) -> String {
    let om = render(registry);
    match format {
        Format::OpenMetrics => om,
        Format::Text => openmetrics_to_text(&om),
    }
}

/// Rewrites prometheus-client's OpenMetrics into the text format 0.0.4: there a family is named
/// like its samples (`x_total` for a counter, `x_info` for an info metric, which becomes a gauge),
/// and `# UNIT` and `# EOF` do not exist.
pub fn openmetrics_to_text(om: &str) -> String {
    let mut types = std::collections::HashMap::new();
    for line in om.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, ty)) = rest.split_once(' ') {
                types.insert(name.to_string(), ty.to_string());
            }
        }
    }
    let rename = |name: &str| -> (String, Option<&'static str>) {
        match types.get(name).map(String::as_str) {
            Some("counter") => (format!("{name}_total"), None),
            Some("info") => (format!("{name}_info"), Some("gauge")),
            Some("stateset") | Some("unknown") => (name.to_string(), Some("untyped")),
            _ => (name.to_string(), None),
        }
    };
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.push_str(&format!("# HELP {} {help}\n", rename(name).0));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').unwrap_or((rest, ""));
            let (new, new_ty) = rename(name);
            out.push_str(&format!("# TYPE {new} {}\n", new_ty.unwrap_or(ty)));
        } else {
            out.push_str(line);
            out.push('\n');
        }
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
            let accept = head.lines().skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim().eq_ignore_ascii_case("accept").then(|| v.trim())
            });
            let format = Format::negotiate(accept);
            let (status, ctype, body) =
                if method == "GET" && (path == "/metrics" || path.starts_with("/metrics?")) {
                    let body = tokio::task::spawn_blocking(move || render_as(&registry, format))
                        .await
                        .unwrap_or_default();
                    ("200 OK", format.content_type(), body)
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
    const PREFIX: &'static str = "metrics";
    type Metrics = crate::daemon::gate::ListenerMetrics;

    fn register(metrics: &Self::Metrics, registry: &mut Registry) {
        metrics.register(registry);
    }

    async fn bind(
        settings: &crate::daemon::settings::Settings,
        metrics: &Self::Metrics,
    ) -> anyhow::Result<Option<Self>> {
        let listener = bind(settings.metrics_addr).await?;
        Ok(Some(Self(
            listener,
            Gate::new("metrics", MAX_CONNS, metrics.clone()),
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
        let get = |path: &'static str, accept: &'static str| async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n{accept}\r\n").as_bytes())
                .await
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let body = get("/metrics", "").await;
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        assert!(
            body.contains("Content-Type: text/plain; version=0.0.4"),
            "{body}"
        );
        assert!(
            body.contains("# TYPE enforcer_test_things_total counter"),
            "{body}"
        );
        assert!(body.contains("enforcer_test_things_total 1"), "{body}");
        assert!(!body.contains("# EOF"), "{body}");
        let om = get(
            "/metrics",
            "Accept: application/openmetrics-text;version=1.0.0;q=0.5,text/plain;q=0.1\r\n",
        )
        .await;
        assert!(
            om.contains("Content-Type: application/openmetrics-text; version=1.0.0"),
            "{om}"
        );
        assert!(om.contains("# TYPE enforcer_test_things counter"), "{om}");
        assert!(om.trim_end().ends_with("# EOF"), "{om}");
        assert!(get("/nope", "").await.starts_with("HTTP/1.1 404"));
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
            body = get("/metrics", "").await;
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

    #[test]
    fn negotiates_by_accept() {
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;version=1.0.0;q=0.6")),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0,text/plain")),
            Format::Text
        );
    }

    #[test]
    fn text_format_names_families_like_their_samples() {
        let reg = registry();
        let text = render_as(&reg, Format::Text);
        assert!(text.contains("# TYPE enforcer_build_info gauge"), "{text}");
        assert!(text.contains("# HELP enforcer_build_info "), "{text}");
        assert!(text.contains("enforcer_build_info{version=\""), "{text}");
        let om = render_as(&reg, Format::OpenMetrics);
        assert!(om.contains("# TYPE enforcer_build info"), "{om}");
    }
}
