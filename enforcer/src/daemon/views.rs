//! What `enforcer senders` and `enforcer sender` show, built from a record at one instant. These are
//! the JSON objects of `--json` (field names are stable); times are RFC 3339 UTC strings.

use crate::net::Prefix;
use crate::policy::{fmt_time, Policy, Record, Standing};
use crate::rule::Rule;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// One line of `enforcer senders`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SenderView {
    pub prefix: Prefix,
    /// Most recent addresses evidence was fed for.
    pub addresses: Vec<IpAddr>,
    /// `clear` (not in enforcement), `allow-listed`, `enforcing` or `paused`.
    pub state: String,
    /// Current stage (1-based) while enforcing or paused.
    pub stage: Option<u32>,
    /// What the stage does: "report only", "throttle 5m/1h", "block", ...
    pub stage_action: Option<String>,
    pub first_detected: Option<String>,
    /// When the current enforcement episode started.
    pub enforcing_since: Option<String>,
    pub paused_until: Option<String>,
    pub next_stage: Option<u32>,
    /// When the next stage starts (if paused: assuming the pause runs to its end).
    pub next_stage_at: Option<String>,
    pub product: Option<String>,
    pub build: Option<String>,
    /// Support status of the latest evidence: supported, outdated, end-of-life, unknown.
    pub status: Option<String>,
    /// An operator rule for this prefix or a covering one overrides the engine's entry.
    pub operator_rule: Option<String>,
}

/// `enforcer sender <IP>`: the view plus the explanation and the full record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SenderDetail {
    #[serde(flatten)]
    pub view: SenderView,
    /// Why the sender is in enforcement (stage, evidence), if it is.
    pub why: Option<String>,
    /// The build the sender should upgrade to.
    pub upgrade_to: Option<String>,
    /// What a connect from this sender gets right now.
    pub connect_now: String,
    /// Whether a connect right now is refused (or would be, in report-only mode).
    pub refused_now: bool,
    pub pause_used_days: f64,
    pub pause_budget_days: f64,
    /// The stored record: evidence, pauses and audit history (times in Unix seconds).
    pub record: Record,
}

pub fn view(policy: &Policy, rec: &Record, operator: Option<&Rule>, now: i64) -> SenderView {
    let standing = policy.stage_at(rec, now);
    let (state, paused_until) = match standing {
        Standing::Clear => ("clear", None),
        Standing::AllowListed => ("allow-listed", None),
        Standing::Enforcing { .. } => ("enforcing", None),
        Standing::Paused { until, .. } => ("paused", Some(until)),
    };
    let stage = standing.stage();
    let n = policy.schedule.len();
    let next_stage = stage.filter(|s| *s < n).map(|s| s + 1);
    let next_stage_at = next_stage.and_then(|_| match standing {
        Standing::Paused { until, .. } => policy.next_change(rec, until),
        _ => policy.next_change(rec, now),
    });
    let ev = rec.evidence.as_ref();
    SenderView {
        prefix: rec.prefix,
        addresses: rec.addresses.clone(),
        state: state.into(),
        stage,
        stage_action: stage.map(|s| policy.schedule.stage(s).action.describe()),
        first_detected: rec.first_detected.map(fmt_time),
        enforcing_since: rec.episode.as_ref().map(|e| fmt_time(e.started_at)),
        paused_until: paused_until.map(fmt_time),
        next_stage,
        next_stage_at: next_stage_at.map(fmt_time),
        product: ev.map(|e| e.product.clone()),
        build: ev.and_then(|e| e.build.clone().or_else(|| e.version.clone())),
        status: ev.map(|e| {
            serde_json::to_value(e.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        }),
        operator_rule: operator.map(|r| {
            if r.prefix == rec.prefix {
                r.verdict.describe()
            } else {
                format!("{} (on {})", r.verdict.describe(), r.prefix)
            }
        }),
    }
}

pub fn detail(
    policy: &Policy,
    rec: &Record,
    operator: Option<&Rule>,
    report_only: bool,
    now: i64,
) -> SenderDetail {
    let standing = policy.stage_at(rec, now);
    let why = standing.stage().map(|s| policy.why(rec, s));
    let (connect_now, refused_now) = connect_now(policy, operator, standing, report_only, now);
    SenderDetail {
        view: view(policy, rec, operator, now),
        why,
        upgrade_to: rec.evidence.as_ref().and_then(|e| e.upgrade_to.clone()),
        connect_now,
        refused_now,
        pause_used_days: policy.pause_used(rec, now) as f64 / 86_400.0,
        pause_budget_days: policy.pause_budget.secs() as f64 / 86_400.0,
        record: rec.clone(),
    }
}

fn connect_now(
    policy: &Policy,
    operator: Option<&Rule>,
    standing: Standing,
    report_only: bool,
    now: i64,
) -> (String, bool) {
    let ro = |s: String, refused: bool| {
        if refused && report_only {
            (format!("passes: report-only mode (would be {s})"), true)
        } else {
            (s, refused)
        }
    };
    if let Some(r) = operator.filter(|r| !r.is_expired(now)) {
        return (
            format!(
                "operator rule for {} wins over the engine: {}",
                r.prefix,
                r.verdict.describe()
            ),
            !matches!(r.verdict, crate::rule::Verdict::Pass),
        );
    }
    match standing {
        Standing::Clear => ("passes: not in enforcement".into(), false),
        Standing::AllowListed => ("passes: allow-listed".into(), false),
        Standing::Paused { stage, until } => (
            format!(
                "passes: enforcement paused at stage {stage} until {}",
                fmt_time(until)
            ),
            false,
        ),
        Standing::Enforcing { stage } => {
            let st = policy.schedule.stage(stage);
            let how = st.refusal.describe();
            match st.action.refuses_at(now) {
                None if matches!(st.action, crate::policy::Action::Report) => {
                    (format!("passes: stage {stage} is report only"), false)
                }
                None => (
                    format!(
                        "passes: outside the windows of stage {stage} ({})",
                        st.action.describe()
                    ),
                    false,
                ),
                Some(window) => ro(
                    format!("{how}: stage {stage}, {window} ({})", st.action.describe()),
                    true,
                ),
            }
        }
    }
}
