//! Prometheus collector for the kernel side: counters read from the pinned `STATS` map at scrape time
//! (nothing is cached, so the numbers are the kernel's own), the attachments, and the maps' fill.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::loader::{pinned_attachments, Kind};
use super::maps::{fill_levels, ControlMaps, IfaceSlots, PinDir, StatsMap};
use super::stats;

/// Counting the entries of a million-entry map takes a syscall per key: do it at most this often.
const FILL_REFRESH: Duration = Duration::from_secs(30);

type Fill = Vec<(&'static str, u64, u32)>;

/// Reads `<pin-dir>/maps/*` and `<pin-dir>/links/*` on every scrape.
#[derive(Debug)]
pub struct KernelCollector {
    pin_dir: PathBuf,
    fill: Mutex<Option<(Instant, Fill)>>,
}

impl KernelCollector {
    pub fn new(pin_dir: impl Into<PathBuf>) -> Self {
        Self {
            pin_dir: pin_dir.into(),
            fill: Mutex::new(None),
        }
    }

    /// Registers under `<prefix>_kernel_` (shorthand for [`crate::metrics::register`]).
    pub fn register(self, registry: &mut Registry) {
        crate::metrics::register(registry, self);
    }

    fn fill(&self) -> Option<Fill> {
        let mut cached = self.fill.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, f)) = cached.as_ref() {
            if at.elapsed() < FILL_REFRESH {
                return Some(f.clone());
            }
        }
        let f = fill_levels(&self.pin_dir).ok()?;
        *cached = Some((Instant::now(), f.clone()));
        Some(f)
    }
}

impl crate::metrics::Component for KernelCollector {
    const PREFIX: &'static str = "kernel";

    fn register(self, reg: &mut Registry) {
        reg.register_collector(Box::new(self));
    }
}

impl Collector for KernelCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // A missing datapath (detached under us) shows as up = 0 rather than a failed scrape.
        let full = StatsMap::open_pinned(&self.pin_dir).and_then(|m| m.read_all());
        let report_only = ControlMaps::open_pinned(&self.pin_dir)
            .and_then(|c| c.report_only())
            .unwrap_or(false);
        let up = ConstGauge::new(i64::from(full.is_ok()));
        up.encode(encoder.encode_descriptor(
            "datapath_up",
            "1 when the pinned datapath maps could be read",
            None,
            up.metric_type(),
        )?)?;
        let ro = ConstGauge::new(i64::from(report_only));
        ro.encode(encoder.encode_descriptor(
            "report_only",
            "1 when the datapath computes and counts verdicts but lets every packet pass",
            None,
            ro.metric_type(),
        )?)?;
        let attachments = pinned_attachments(&PinDir::new(&self.pin_dir)).unwrap_or_default();
        let mut family = encoder.encode_descriptor(
            "attached",
            "1 for the way the datapath is attached to each interface (mode xdp, xdp-skb, tcx, clsact), 0 for the others",
            None,
            MetricType::Gauge,
        )?;
        for a in &attachments {
            for kind in Kind::ALL {
                let v = ConstGauge::new(i64::from(a.live && a.kind == kind));
                let labels = [("interface", a.iface.as_str()), ("mode", kind.as_str())];
                v.encode(family.encode_family(&labels)?)?;
            }
        }
        let Ok(full) = full else { return Ok(()) };
        let slots = IfaceSlots::open_pinned(&self.pin_dir)
            .and_then(|s| s.assigned())
            .unwrap_or_default();
        let mut family = encoder.encode_descriptor(
            "packets",
            "Packets seen by the XDP/TC program, summed over CPUs, by interface, address family, reason, action and mode",
            None,
            MetricType::Counter,
        )?;
        for c in stats::label_ifaces(&full, &slots) {
            let labels = [
                ("interface", c.interface.as_str()),
                ("family", c.family),
                ("reason", c.reason),
                ("action", c.action),
                ("mode", c.mode),
            ];
            ConstCounter::new(c.packets).encode(family.encode_family(&labels)?)?;
        }
        if let Some(fill) = self.fill() {
            let mut entries = encoder.encode_descriptor(
                "map_entries",
                "Entries in each kernel map that fills up (counted at most every 30 s)",
                None,
                MetricType::Gauge,
            )?;
            for (name, n, _) in &fill {
                let labels = [("map", name.to_ascii_lowercase())];
                ConstGauge::new(*n as i64).encode(entries.encode_family(&labels)?)?;
            }
            let mut cap = encoder.encode_descriptor(
                "map_capacity",
                "Maximum entries of each kernel map that fills up",
                None,
                MetricType::Gauge,
            )?;
            for (name, _, max) in &fill {
                let labels = [("map", name.to_ascii_lowercase())];
                ConstGauge::new(i64::from(*max)).encode(cap.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_datapath_scrapes_as_down() {
        let mut reg = crate::metrics::registry();
        crate::metrics::register(&mut reg, KernelCollector::new("/nonexistent/enforcer-pins"));
        let text = crate::metrics::render(&reg);
        assert!(text.contains("enforcer_kernel_datapath_up 0"), "{text}");
        assert!(!text.contains("enforcer_kernel_packets_total"), "{text}");
    }
}
