//! Engine metrics, registered under the caller's sub-registry (`enforcer_engine_*`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub(crate) type Labels = Vec<(String, String)>;

/// Where evidence came from: the label values of `enforcer_engine_evidence_total{source}`.
pub const EVIDENCE_SOURCES: [&str; 5] = ["cli", "milter", "policy", "probe", "responder"];
/// What evidence did to its sender: `enforcer_engine_evidence_total{outcome}`.
pub const EVIDENCE_OUTCOMES: [&str; 5] =
    ["entered", "left", "unchanged", "allow-listed", "unreadable"];

#[derive(Clone, Default)]
pub struct EngineMetrics {
    /// Senders by state (clear, allow-listed, enforcing, paused), stage ("" when none) and what the
    /// stage does (report, windows, block; "" when none).
    pub senders: Family<Labels, Gauge>,
    /// Stage changes applied (a sender moving up the schedule).
    pub stage_changes: Counter,
    /// Evidence fed, by source and outcome.
    pub evidence: Family<Labels, Counter>,
    /// Classifier results of evidence, by product and support status.
    pub classified: Family<Labels, Counter>,
    /// Control requests by op and outcome (ok, usage, error).
    pub requests: Family<Labels, Counter>,
    /// Kernel entry writes and removals, and the ones that failed.
    pub kernel_writes: Counter,
    pub kernel_errors: Counter,
    /// Kernel entry writes refused because the policy map was full.
    pub kernel_map_full: Counter,
    /// Self-check rounds, and the kernel entries they found wrong, missing or unknown and repaired.
    pub self_checks: Counter,
    pub self_check_repairs: Counter,
    /// Unix time of the next scheduled change (0 = none).
    pub next_change: Gauge,
}

impl EngineMetrics {
    pub fn register(&self, reg: &mut Registry) {
        reg.register(
            "senders",
            "Senders by state and stage",
            self.senders.clone(),
        );
        reg.register(
            "stage_changes",
            "Stage changes applied",
            self.stage_changes.clone(),
        );
        reg.register(
            "evidence",
            "Evidence fed to the engine, by source and outcome",
            self.evidence.clone(),
        );
        reg.register(
            "classified",
            "Classifier results of the evidence fed, by product and support status",
            self.classified.clone(),
        );
        reg.register(
            "requests",
            "Control-socket requests by op and outcome",
            self.requests.clone(),
        );
        reg.register(
            "kernel_writes",
            "Kernel policy entry writes and removals",
            self.kernel_writes.clone(),
        );
        reg.register(
            "kernel_errors",
            "Kernel policy entry writes that failed",
            self.kernel_errors.clone(),
        );
        reg.register(
            "kernel_map_full",
            "Kernel policy entry writes refused because the policy map was full",
            self.kernel_map_full.clone(),
        );
        reg.register(
            "self_checks",
            "Self-check rounds comparing the kernel maps with the store",
            self.self_checks.clone(),
        );
        reg.register(
            "self_check_repairs",
            "Kernel entries the self-check found missing, different or unknown, and repaired",
            self.self_check_repairs.clone(),
        );
        reg.register(
            "next_change_timestamp_seconds",
            "Unix time of the next scheduled stage change or pause end (0 = none)",
            self.next_change.clone(),
        );
    }

    pub fn sender_label(state: &str, stage: Option<(u32, &str)>) -> Labels {
        vec![
            ("state".into(), state.into()),
            (
                "stage".into(),
                stage.map(|(s, _)| s.to_string()).unwrap_or_default(),
            ),
            (
                "stage_action".into(),
                stage.map(|(_, a)| a.to_string()).unwrap_or_default(),
            ),
        ]
    }

    pub fn evidence_label(source: &str, outcome: &str) -> Labels {
        vec![
            ("source".into(), source.into()),
            ("outcome".into(), outcome.into()),
        ]
    }

    /// Creates every series that can exist for `stages` (the kind of each stage, in order) at 0, so
    /// dashboards and alerts see 0 rather than no data, and a series never disappears.
    pub fn init(&self, stages: &[&str]) {
        for state in ["clear", "allow-listed"] {
            let _ = self.senders.get_or_create(&Self::sender_label(state, None));
        }
        for (i, kind) in stages.iter().enumerate() {
            for state in ["enforcing", "paused"] {
                let _ = self
                    .senders
                    .get_or_create(&Self::sender_label(state, Some((i as u32 + 1, kind))));
            }
        }
        for source in EVIDENCE_SOURCES {
            for outcome in EVIDENCE_OUTCOMES {
                let _ = self
                    .evidence
                    .get_or_create(&Self::evidence_label(source, outcome));
            }
        }
    }

    pub fn outcome(key: &str, value: &str) -> Labels {
        vec![(key.into(), value.into())]
    }
}

impl crate::metrics::Component for EngineMetrics {
    const PREFIX: &'static str = "engine";

    fn register(self, reg: &mut Registry) {
        EngineMetrics::register(&self, reg);
    }
}
