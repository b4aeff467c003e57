//! Prometheus collector for the kernel counters: read from the pinned `STATS` map at scrape time
//! (nothing is cached, so the numbers are the kernel's own).

use std::path::PathBuf;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::maps::{ControlMaps, StatsMap};
use super::stats;

/// Reads `<pin-dir>/maps/STATS` on every scrape.
#[derive(Debug)]
pub struct KernelCollector {
    pin_dir: PathBuf,
}

impl KernelCollector {
    pub fn new(pin_dir: impl Into<PathBuf>) -> Self {
        Self {
            pin_dir: pin_dir.into(),
        }
    }

    /// Registers under `<prefix>_kernel_`.
    pub fn register(self, registry: &mut Registry) {
        registry
            .sub_registry_with_prefix("kernel")
            .register_collector(Box::new(self));
    }
}

impl Collector for KernelCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // A missing datapath (detached under us) shows as up = 0 rather than a failed scrape.
        let sums = StatsMap::open_pinned(&self.pin_dir).and_then(|m| m.sums());
        let report_only = ControlMaps::open_pinned(&self.pin_dir)
            .and_then(|c| c.report_only())
            .unwrap_or(false);
        let up = ConstGauge::new(i64::from(sums.is_ok()));
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
        let Ok(sums) = sums else { return Ok(()) };
        let mut family = encoder.encode_descriptor(
            "packets",
            "Packets seen by the XDP/TC program, summed over CPUs, by reason, action and mode",
            None,
            MetricType::Counter,
        )?;
        for c in stats::label(&sums) {
            let labels = [("reason", c.reason), ("action", c.action), ("mode", c.mode)];
            ConstCounter::new(c.packets).encode(family.encode_family(&labels)?)?;
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
        KernelCollector::new("/nonexistent/enforcer-pins").register(&mut reg);
        let text = crate::metrics::render(&reg);
        assert!(text.contains("enforcer_kernel_datapath_up 0"), "{text}");
        assert!(!text.contains("enforcer_kernel_packets_total"), "{text}");
    }
}
