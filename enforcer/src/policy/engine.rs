//! Pure stage computation and transitions. Every function takes `now` (Unix seconds): no clock is read
//! here, so tests drive a fake clock across every boundary.
//!
//! Progress in enforcement is wall time since the episode started minus the time spent paused; a
//! stage is reached when progress passes its `after`. A stage never regresses (`Episode::reached`).

use super::facts::Facts;
use super::record::{Episode, Evidence, Pause, Record};
use super::schedule::{Action, Refusal, Schedule};
use crate::duration::Span;
use crate::net::Prefix;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Host aggregation: which prefix a sender's record (and kernel entry) covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aggregation {
    /// 32 = per host; 24 = one record per /24.
    pub v4: u8,
    /// 128 = per host; 64 = one record per /64.
    pub v6: u8,
}

impl Default for Aggregation {
    fn default() -> Self {
        Aggregation { v4: 32, v6: 128 }
    }
}

impl Aggregation {
    pub fn prefix_for(&self, addr: IpAddr) -> Prefix {
        match addr {
            IpAddr::V4(_) => Prefix::containing(addr, self.v4),
            IpAddr::V6(_) => Prefix::containing(addr, self.v6),
        }
    }
}

/// Everything the engine needs besides records and the clock.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub schedule: Schedule,
    pub aggregation: Aggregation,
    /// Addresses and prefixes that never enter enforcement.
    pub allow: Vec<Prefix>,
    /// Pause time allowed per sender per calendar year (UTC).
    pub pause_budget: Span,
    /// Evidence below this confidence never starts enforcement (it is still recorded).
    pub min_confidence: f64,
}

/// Era-only evidence (EHLO keywords, greeting style: 0.7-0.79) that cannot rule out a supported
/// version stays below this; an Exchange build read from a Received field or banner is above it.
pub const DEFAULT_MIN_CONFIDENCE: f64 = 0.8;

/// Exchange Online lets a tenant pause enforcement for up to 90 days per calendar year.
pub const DEFAULT_PAUSE_BUDGET_DAYS: u64 = 90;

impl Default for Policy {
    fn default() -> Self {
        Policy {
            schedule: Schedule::default(),
            aggregation: Aggregation::default(),
            allow: Vec::new(),
            pause_budget: Span(std::time::Duration::from_secs(
                DEFAULT_PAUSE_BUDGET_DAYS * 86_400,
            )),
            min_confidence: DEFAULT_MIN_CONFIDENCE,
        }
    }
}

/// Where a sender stands at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Standing {
    /// Not in enforcement (never detected as persistently vulnerable, or recovered).
    Clear,
    /// Matches the allow-list: never enforced whatever the evidence says.
    AllowListed,
    /// In enforcement at `stage` (1-based).
    Enforcing { stage: u32 },
    /// In enforcement, paused at `stage` until `until`.
    Paused { stage: u32, until: i64 },
}

impl Standing {
    pub fn stage(&self) -> Option<u32> {
        match *self {
            Standing::Enforcing { stage } | Standing::Paused { stage, .. } => Some(stage),
            _ => None,
        }
    }
}

/// Why an operator request on a record was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("{0} is not in enforcement; there is nothing to pause")]
    NotEnforced(Prefix),
    #[error("{0} is allow-listed and never enforced; there is nothing to pause")]
    AllowListed(Prefix),
    #[error("{0} is not paused")]
    NotPaused(Prefix),
    #[error("a pause must last at least one day (got {0} days)")]
    ZeroDays(u64),
    #[error("{prefix}: a pause of {days} days is longer than the yearly pause budget of {budget_days} days; pause for at most {budget_days} days")]
    LongerThanBudget {
        prefix: Prefix,
        days: u64,
        budget_days: String,
    },
    #[error("{prefix}: pausing {days} days would use {need_days} days of the {year} pause budget, but only {left_days} of {budget_days} are left")]
    BudgetExceeded {
        prefix: Prefix,
        days: u64,
        year: i32,
        need_days: String,
        left_days: String,
        budget_days: String,
    },
}

impl Policy {
    pub fn is_allowed(&self, addr: IpAddr) -> bool {
        self.allow.iter().any(|p| p.contains(addr))
    }

    fn prefix_allowed(&self, prefix: &Prefix) -> bool {
        // An aggregate counts as allow-listed only when an allow entry covers all of it.
        self.allow
            .iter()
            .any(|a| a.len() <= prefix.len() && a.contains(prefix.addr()))
    }

    /// Seconds of enforcement progress at `now`: time since the episode started, minus pauses.
    pub fn progress(&self, rec: &impl Facts, now: i64) -> Option<i64> {
        let ep = rec.episode()?;
        Some((now - ep.started_at - paused_secs(rec, ep.started_at, now)).max(0))
    }

    /// The stage a record is at, and whether it is paused or exempt.
    pub fn stage_at(&self, rec: &impl Facts, now: i64) -> Standing {
        if self.prefix_allowed(&rec.prefix()) {
            return Standing::AllowListed;
        }
        let (Some(ep), Some(progress)) = (rec.episode(), self.progress(rec, now)) else {
            return Standing::Clear;
        };
        let stage = self
            .schedule
            .stage_for_progress(progress)
            .max(ep.reached)
            .min(self.schedule.len());
        match rec.active_pause(now) {
            Some(p) => Standing::Paused {
                stage,
                until: p.ended_at.unwrap_or(p.until).min(p.until),
            },
            None => Standing::Enforcing { stage },
        }
    }

    /// When the record's standing next changes by itself (a stage begins or a pause ends), strictly
    /// after `now`; `None` when it never will without new input.
    pub fn next_change(&self, rec: &impl Facts, now: i64) -> Option<i64> {
        match self.stage_at(rec, now) {
            Standing::Paused { until, .. } => Some(until.max(now + 1)),
            Standing::Enforcing { stage } => {
                let next = self.schedule.stages().get(stage as usize)?;
                let ep = rec.episode()?;
                let t =
                    ep.started_at + paused_secs(rec, ep.started_at, now) + next.after.secs() as i64;
                Some(t.max(now + 1))
            }
            Standing::Clear | Standing::AllowListed => None,
        }
    }

    /// The kernel-visible effect of a standing: the stage's action and refusal, or `None` when every
    /// connect passes (not enforced, paused, report-only stage).
    pub fn effect(&self, standing: Standing) -> Option<(Action, Refusal)> {
        let Standing::Enforcing { stage } = standing else {
            return None;
        };
        let st = self.schedule.stage(stage);
        match st.action {
            Action::Report => None,
            a => Some((a, st.refusal)),
        }
    }

    /// Feeds one piece of evidence for `addr`. Starts an episode when the evidence says persistently
    /// vulnerable (with at least `min_confidence`), ends it at once when it shows a supported build,
    /// and otherwise only records it. Evidence weaker than what the record holds (it names less:
    /// no build where one was known, no product where one was known) is counted among the findings but
    /// never replaces the stronger evidence, nor starts or ends an episode.
    pub fn observe(
        &self,
        existing: Option<Record>,
        addr: IpAddr,
        ev: Evidence,
        now: i64,
    ) -> Record {
        let mut rec = existing.unwrap_or_else(|| Record::new(self.aggregation.prefix_for(addr)));
        rec.remember(addr);
        let what = ev.summary();
        rec.count_finding(&what, now);
        let weaker = rec
            .evidence
            .as_ref()
            .is_some_and(|old| ev.strength() < old.strength());
        if weaker {
            rec.log(
                now,
                format!("evidence from {addr}: {what}; weaker than the evidence held, kept as a finding only"),
            );
            return rec;
        }
        if self.is_allowed(addr) || self.prefix_allowed(&rec.prefix) {
            rec.log(
                now,
                format!("evidence from {addr}: {what}; allow-listed, never enforced"),
            );
        } else if ev.persistently_vulnerable && ev.confidence < self.min_confidence {
            rec.log(
                now,
                format!(
                    "evidence from {addr}: {what}; confidence {:.2} is below min_confidence {:.2}, not enforced",
                    ev.confidence, self.min_confidence
                ),
            );
        } else if ev.persistently_vulnerable {
            if rec.episode.is_none() {
                rec.first_detected.get_or_insert(now);
                rec.episode = Some(Episode {
                    started_at: now,
                    reached: 1,
                });
                rec.log(
                    now,
                    format!(
                        "entered enforcement at stage 1 ({}): evidence from {addr}: {what}",
                        self.schedule.stage(1).action.describe()
                    ),
                );
            } else {
                rec.log(
                    now,
                    format!("evidence from {addr}: {what}; still persistently vulnerable"),
                );
            }
        } else if ev.exonerates() && rec.episode.is_some() {
            let stage = self.stage_at(&rec, now).stage().unwrap_or(1);
            rec.episode = None;
            end_pauses(&mut rec, now);
            rec.log(
                now,
                format!("left enforcement at stage {stage}: evidence from {addr} shows a build that is not persistently vulnerable: {what}"),
            );
        } else {
            rec.log(now, format!("evidence from {addr}: {what}"));
        }
        rec.evidence = Some(ev);
        rec
    }

    /// Records reaching a new stage at `now` (called when the timer fires, and at start-up).
    /// Returns `(from, to)` when the stage moved up.
    pub fn advance(&self, rec: &mut Record, now: i64) -> Option<(u32, u32)> {
        let standing = self.stage_at(rec, now);
        let stage = standing.stage()?;
        let ep = rec.episode.as_mut()?;
        if stage <= ep.reached {
            return None;
        }
        let from = ep.reached;
        ep.reached = stage;
        let what = self.schedule.stage(stage).action.describe();
        rec.log(now, format!("stage {from} -> {stage}: {what}"));
        Some((from, stage))
    }

    /// True when catching `rec` up to `now` would change it: a pause's planned end has passed
    /// without being recorded, or the stage the clock says is above the one reached.
    pub fn behind(&self, rec: &impl Facts, now: i64) -> bool {
        let pause_over = rec
            .pauses()
            .iter()
            .any(|p| p.ended_at.is_none() && p.until <= now);
        let stage_up = match (rec.episode(), self.stage_at(rec, now).stage()) {
            (Some(ep), Some(stage)) => stage > ep.reached,
            _ => false,
        };
        pause_over || stage_up
    }

    /// Pauses enforcement for `days` from `now` (extending a running pause), within the yearly budget.
    ///
    /// A pause that crosses New Year is charged to the UTC calendar years its days fall in, each
    /// against that year's budget; and no single pause may be longer than the budget, so a pause can
    /// never spend two years' budgets at once (120 days from 1 December with a 90-day budget is
    /// refused, although only 31 of them fall in December).
    pub fn pause(&self, rec: &mut Record, days: u64, now: i64) -> Result<i64, PolicyError> {
        if days == 0 {
            return Err(PolicyError::ZeroDays(days));
        }
        let budget = self.pause_budget.secs() as i64;
        // Checked before any arithmetic: a huge `days` from the socket must not wrap into a pause
        // that ends before it starts.
        let length = i64::try_from(days)
            .ok()
            .and_then(|d| d.checked_mul(86_400))
            .filter(|l| *l <= budget);
        let Some(length) = length else {
            return Err(PolicyError::LongerThanBudget {
                prefix: rec.prefix,
                days,
                budget_days: fmt_days(budget),
            });
        };
        match self.stage_at(rec, now) {
            Standing::AllowListed => return Err(PolicyError::AllowListed(rec.prefix)),
            Standing::Clear => return Err(PolicyError::NotEnforced(rec.prefix)),
            _ => {}
        }
        let until = now.saturating_add(length);
        // A running pause is cut at `now` and replaced, so its remaining days are not counted twice.
        let mut pauses = rec.pauses.clone();
        if let Some(p) = pauses.iter_mut().rev().find(|p| p.active_at(now)) {
            p.ended_at = Some(now);
        }
        for (year, start, end) in calendar_years(now, until) {
            let used: i64 = pauses
                .iter()
                .map(|p| overlap(p.start, p.end_by(p.until), start, end))
                .sum();
            let need = overlap(now, until, start, end);
            if used + need > budget {
                return Err(PolicyError::BudgetExceeded {
                    prefix: rec.prefix,
                    days,
                    year,
                    need_days: fmt_days(need),
                    left_days: fmt_days((budget - used).max(0)),
                    budget_days: fmt_days(budget),
                });
            }
        }
        let stage = self.stage_at(rec, now).stage().unwrap_or(1);
        pauses.push(Pause {
            start: now,
            until,
            ended_at: None,
        });
        rec.pauses = pauses;
        rec.log(
            now,
            format!(
                "paused at stage {stage} for {days} days, until {}",
                fmt_time(until)
            ),
        );
        Ok(until)
    }

    /// Ends a running pause now; enforcement resumes at the stage it had reached.
    pub fn resume(&self, rec: &mut Record, now: i64) -> Result<u32, PolicyError> {
        if rec.active_pause(now).is_none() {
            return Err(PolicyError::NotPaused(rec.prefix));
        }
        end_pauses(rec, now);
        let stage = self.stage_at(rec, now).stage().unwrap_or(1);
        rec.log(now, format!("resumed at stage {stage}"));
        Ok(stage)
    }

    /// Pause seconds counted against the budget of the calendar year containing `now` (a running
    /// pause counts with its planned length).
    pub fn pause_used(&self, rec: &impl Facts, now: i64) -> i64 {
        let (_, start, end) = calendar_years(now, now + 1)[0];
        rec.pauses()
            .iter()
            .map(|p| overlap(p.start, p.end_by(p.until), start, end))
            .sum()
    }
}

fn end_pauses(rec: &mut Record, now: i64) {
    for p in rec.pauses.iter_mut().filter(|p| p.active_at(now)) {
        p.ended_at = Some(now);
    }
}

/// Seconds paused between `from` and `now`.
fn paused_secs(rec: &impl Facts, from: i64, now: i64) -> i64 {
    rec.pauses()
        .iter()
        .map(|p| overlap(p.start, p.end_by(now), from, now))
        .sum()
}

fn overlap(a0: i64, a1: i64, b0: i64, b1: i64) -> i64 {
    (a1.min(b1) - a0.max(b0)).max(0)
}

/// The UTC calendar years `[from, to)` touches: (year, year start, next year start).
fn calendar_years(from: i64, to: i64) -> Vec<(i32, i64, i64)> {
    let year_of = |t: i64| {
        time::OffsetDateTime::from_unix_timestamp(t)
            .map(|d| d.year())
            .unwrap_or(1970)
    };
    let start_of = |y: i32| {
        time::Date::from_calendar_date(y, time::Month::January, 1)
            .map(|d| d.midnight().assume_utc().unix_timestamp())
            .unwrap_or(i64::MAX)
    };
    let mut out = Vec::new();
    let mut y = year_of(from);
    loop {
        let (s, e) = (start_of(y), start_of(y + 1));
        out.push((y, s, e));
        if e >= to || out.len() > 200 {
            return out;
        }
        y += 1;
    }
}

fn fmt_days(secs: i64) -> String {
    if secs % 86_400 == 0 {
        format!("{}", secs / 86_400)
    } else {
        format!("{:.1}", secs as f64 / 86_400.0)
    }
}

/// RFC 3339 UTC, or the raw number when out of range.
pub fn fmt_time(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}
