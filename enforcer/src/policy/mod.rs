//! The progressive enforcement engine: a pure function of sender records, the schedule and a clock.
//! No I/O, no tokio, no clock reads: the daemon passes `now` in, tests pass a fake one.
#![forbid(unsafe_code)]

mod engine;
mod facts;
mod record;
mod schedule;

pub use engine::{
    fmt_time, Aggregation, Policy, PolicyError, Standing, DEFAULT_MIN_CONFIDENCE,
    DEFAULT_PAUSE_BUDGET_DAYS,
};
pub use facts::{Compact, Facts, Held, Summaries, Summary};
pub use record::{Episode, Evidence, Finding, HistoryEntry, Pause, Record, Status, MAX_FINDINGS};
pub use schedule::{Action, Refusal, Schedule, ScheduleError, Stage};

use crate::net::Prefix;

/// What the kernel should hold for one sender at one instant.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub prefix: Prefix,
    /// 1-based stage.
    pub stage: u32,
    pub action: Action,
    pub refusal: Refusal,
    /// Operator-facing reason: stage, evidence, build to upgrade to.
    pub reason: String,
    /// When the sender entered enforcement.
    pub since: i64,
}

impl Policy {
    /// The kernel entries every record needs at `now`: one per sender in an enforcing, non-report stage.
    pub fn desired<'a>(
        &self,
        records: impl IntoIterator<Item = &'a Record>,
        now: i64,
    ) -> Vec<Desired> {
        records
            .into_iter()
            .filter_map(|rec| self.desired_one(rec, now))
            .collect()
    }

    pub fn desired_one(&self, rec: &impl Facts, now: i64) -> Option<Desired> {
        let standing = self.stage_at(rec, now);
        let (action, refusal) = self.effect(standing)?;
        let stage = standing.stage()?;
        Some(Desired {
            prefix: rec.prefix(),
            stage,
            action,
            refusal,
            reason: self.why(rec, stage),
            since: rec.episode().map(|e| e.started_at).unwrap_or(now),
        })
    }

    /// "stage 3 (throttle 10m/1h): exchange 15.0.1497.2 (...), end-of-life; upgrade to ...".
    pub fn why(&self, rec: &impl Facts, stage: u32) -> String {
        let mut s = format!(
            "stage {stage} ({})",
            self.schedule.stage(stage).action.describe()
        );
        if let Some(summary) = rec.evidence_summary() {
            s.push_str(": persistently vulnerable: ");
            s.push_str(&summary);
            if let Some(u) = rec.upgrade_to() {
                s.push_str("; upgrade to ");
                s.push_str(u);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests;
