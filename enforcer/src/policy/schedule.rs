//! The progressive schedule: stages entered after a time in enforcement, each with what a connect gets.
//!
//! Window placement inside each period (periods start at every wall-clock multiple of `period` since the
//! Unix epoch, so `1h` periods start at the top of every UTC hour): the throttle window covers
//! `[0, throttle)` and the block window `[block_at, block_at + block)`, where `block_at` defaults to the end
//! of the throttle window. Exchange Online's stage 5 "throttle 30 min/hr and block 5 min/hr" is therefore
//! refused during minutes 0–35 of every hour: 0–30 as throttle, 30–35 as block.

use crate::duration::Span;
use crate::rule::NoticeRate;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How a refused SYN is refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Refusal {
    /// Silently drop the SYN: the sender retries with TCP back-off, then queues.
    #[default]
    Drop,
    /// Answer with a TCP RST: the sender sees "connection refused" at once and queues.
    Reject,
    /// Let this many SYNs per source through inside the windows, so the MTA's milter or policy
    /// service answers 450/550 with the reason; the rest are dropped. Needs such a channel.
    Notice(NoticeRate),
}

impl Refusal {
    /// What happens to a refused connect, for `enforcer sender`.
    pub fn describe(&self) -> String {
        match self {
            Refusal::Drop => "dropped".into(),
            Refusal::Reject => "rejected (TCP RST)".into(),
            Refusal::Notice(n) => format!(
                "told why at the SMTP level ({n} per source reach the MTA, the rest dropped)"
            ),
        }
    }
}

/// What a stage does to the sender's connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Action {
    /// Recorded and reported only; every connect passes.
    Report,
    /// Refused inside the throttle window and the block window of every period.
    Windows {
        period: Span,
        throttle: Span,
        block_at: Span,
        block: Span,
    },
    /// Every connect refused.
    Block,
}

/// One stage: entered once the sender has spent `after` in enforcement (paused time excluded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    pub after: Span,
    pub action: Action,
    pub refusal: Refusal,
}

/// An ordered, validated list of stages. Stage numbers shown to operators are 1-based.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    stages: Vec<Stage>,
}

/// Why a schedule is invalid; `stage` is 1-based.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("the schedule has no stages; give at least one")]
    Empty,
    #[error("stage 1 must start at `after = \"0s\"` (enforcement starts when the sender is first detected), not {0}")]
    FirstNotZero(Span),
    #[error("stage {stage} starts at {after}, not after stage {prev_stage} ({prev_after}); list stages in increasing `after` order")]
    NotIncreasing {
        stage: usize,
        after: Span,
        prev_stage: usize,
        prev_after: Span,
    },
    #[error("stage {stage}: the period must be longer than 0s")]
    ZeroPeriod { stage: usize },
    #[error("stage {stage}: the throttle window ({window}) is longer than its period ({period})")]
    ThrottleLongerThanPeriod {
        stage: usize,
        window: Span,
        period: Span,
    },
    #[error(
        "stage {stage}: the block window ends at {end}, after the end of its period ({period})"
    )]
    BlockBeyondPeriod {
        stage: usize,
        end: Span,
        period: Span,
    },
    #[error("stage {stage}: the block window starting at {block_at} overlaps the throttle window [0, {throttle}); set block_at to {throttle} or later")]
    Overlap {
        stage: usize,
        block_at: Span,
        throttle: Span,
    },
    #[error(
        "stage {stage}: both windows are empty; use `action = \"report\"` for a report-only stage"
    )]
    EmptyWindows { stage: usize },
    #[error("stage {stage}: the throttle window and the block window together cover the whole period; use `action = \"block\"`")]
    FullPeriod { stage: usize },
    #[error("stage {stage}: durations must be whole seconds below 136 years")]
    TooLong { stage: usize },
}

const fn days(n: u64) -> Span {
    Span(Duration::from_secs(n * 86_400))
}
const fn mins(n: u64) -> Span {
    Span(Duration::from_secs(n * 60))
}
const HOUR: Span = Span(Duration::from_secs(3600));
const ZERO: Span = Span(Duration::ZERO);

impl Stage {
    /// Refused during minutes `[0, throttle)` and `[throttle, throttle + block)` of every hour.
    pub const fn hourly(after: Span, throttle: Span, block: Span, refusal: Refusal) -> Self {
        Stage {
            after,
            action: Action::Windows {
                period: HOUR,
                throttle,
                block_at: throttle,
                block,
            },
            refusal,
        }
    }
}

impl Default for Schedule {
    /// Exchange Online's published progressive enforcement, SYNs dropped.
    fn default() -> Self {
        Self::exchange_online(Refusal::Drop)
    }
}

impl Schedule {
    /// Exchange Online's published progressive enforcement, counted from first detection, each
    /// refusing stage refusing with `refusal`. The daemon picks `notice` when a milter or policy
    /// service can tell the sender why, `drop` otherwise.
    pub fn exchange_online(refusal: Refusal) -> Self {
        let h = |after, throttle, block| Stage::hourly(after, throttle, block, refusal);
        let whole = |after, action| Stage {
            after,
            action,
            refusal,
        };
        Schedule {
            stages: vec![
                whole(ZERO, Action::Report),
                h(days(30), mins(5), ZERO),
                h(days(40), mins(10), ZERO),
                h(days(50), mins(20), ZERO),
                h(days(60), mins(30), mins(5)),
                h(days(70), ZERO, mins(10)),
                h(days(80), ZERO, mins(20)),
                whole(days(90), Action::Block),
            ],
        }
    }

    /// True when some stage refuses with `notice` (which needs a milter or policy service).
    pub fn uses_notice(&self) -> bool {
        self.stages
            .iter()
            .any(|s| matches!(s.refusal, Refusal::Notice(_)))
    }
}

impl Schedule {
    /// Validates and builds a schedule.
    pub fn new(stages: Vec<Stage>) -> Result<Self, ScheduleError> {
        let Some(first) = stages.first() else {
            return Err(ScheduleError::Empty);
        };
        if first.after.secs() != 0 {
            return Err(ScheduleError::FirstNotZero(first.after));
        }
        for (i, st) in stages.iter().enumerate() {
            let stage = i + 1;
            if i > 0 && st.after <= stages[i - 1].after {
                return Err(ScheduleError::NotIncreasing {
                    stage,
                    after: st.after,
                    prev_stage: i,
                    prev_after: stages[i - 1].after,
                });
            }
            validate_action(stage, &st.action)?;
        }
        Ok(Schedule { stages })
    }

    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    pub fn len(&self) -> u32 {
        self.stages.len() as u32
    }

    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// The 1-based stage `n` (clamped into range).
    pub fn stage(&self, n: u32) -> &Stage {
        let i = (n.max(1) as usize - 1).min(self.stages.len() - 1);
        &self.stages[i]
    }

    /// The stage (1-based) reached after `progress` seconds in enforcement.
    pub fn stage_for_progress(&self, progress: i64) -> u32 {
        let n = self
            .stages
            .iter()
            .take_while(|s| (s.after.secs() as i64) <= progress)
            .count();
        n.max(1) as u32
    }
}

fn validate_action(stage: usize, action: &Action) -> Result<(), ScheduleError> {
    let Action::Windows {
        period,
        throttle,
        block_at,
        block,
    } = *action
    else {
        return Ok(());
    };
    if [period, throttle, block_at, block]
        .iter()
        .any(|s| s.secs() > u32::MAX as u64 || s.0.subsec_nanos() != 0)
    {
        return Err(ScheduleError::TooLong { stage });
    }
    if period.secs() == 0 {
        return Err(ScheduleError::ZeroPeriod { stage });
    }
    if throttle > period {
        return Err(ScheduleError::ThrottleLongerThanPeriod {
            stage,
            window: throttle,
            period,
        });
    }
    if block.secs() > 0 && throttle.secs() > 0 && block_at < throttle {
        return Err(ScheduleError::Overlap {
            stage,
            block_at,
            throttle,
        });
    }
    let end = Span(block_at.0 + block.0);
    if block.secs() > 0 && end > period {
        return Err(ScheduleError::BlockBeyondPeriod { stage, end, period });
    }
    if throttle.secs() == 0 && block.secs() == 0 {
        return Err(ScheduleError::EmptyWindows { stage });
    }
    if crate::rule::windows_cover_period(
        period.secs(),
        throttle.secs(),
        block_at.secs(),
        block.secs(),
    ) {
        return Err(ScheduleError::FullPeriod { stage });
    }
    Ok(())
}

impl Action {
    /// Whether a connect at unix time `now` is refused, and by which window (`"throttle"`/`"block"`).
    /// Mirrors the kernel: periods start at multiples of `period` since the Unix epoch.
    pub fn refuses_at(&self, now: i64) -> Option<&'static str> {
        match *self {
            Action::Report => None,
            Action::Block => Some("block"),
            Action::Windows {
                period,
                throttle,
                block_at,
                block,
            } => {
                let off = now.rem_euclid(period.secs() as i64) as u64;
                if off < throttle.secs() {
                    Some("throttle")
                } else if off >= block_at.secs() && off < block_at.secs() + block.secs() {
                    Some("block")
                } else {
                    None
                }
            }
        }
    }

    /// Short operator text: "report only", "throttle 5m/1h", "throttle 30m/1h + block 5m/1h", "block".
    pub fn describe(&self) -> String {
        match *self {
            Action::Report => "report only".into(),
            Action::Block => "block".into(),
            Action::Windows {
                period,
                throttle,
                block,
                ..
            } => {
                let mut parts = Vec::new();
                if throttle.secs() > 0 {
                    parts.push(format!("throttle {throttle}/{period}"));
                }
                if block.secs() > 0 {
                    parts.push(format!("block {block}/{period}"));
                }
                parts.join(" + ")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(s: &str) -> Span {
        s.parse().unwrap()
    }

    fn win(period: &str, throttle: &str, block_at: &str, block: &str) -> Action {
        Action::Windows {
            period: sp(period),
            throttle: sp(throttle),
            block_at: sp(block_at),
            block: sp(block),
        }
    }

    fn stage(after: &str, action: Action) -> Stage {
        Stage {
            after: sp(after),
            action,
            refusal: Refusal::Drop,
        }
    }

    #[test]
    fn default_is_exchange_online() {
        let s = Schedule::default();
        Schedule::new(s.stages().to_vec()).expect("default validates");
        assert_eq!(s.len(), 8);
        let described: Vec<_> = s.stages().iter().map(|st| st.action.describe()).collect();
        assert_eq!(
            described,
            [
                "report only",
                "throttle 5m/1h",
                "throttle 10m/1h",
                "throttle 20m/1h",
                "throttle 30m/1h + block 5m/1h",
                "block 10m/1h",
                "block 20m/1h",
                "block"
            ]
        );
        let afters: Vec<_> = s
            .stages()
            .iter()
            .map(|st| st.after.secs() / 86_400)
            .collect();
        assert_eq!(afters, [0, 30, 40, 50, 60, 70, 80, 90]);
    }

    #[test]
    fn stage_for_progress_at_boundaries() {
        let s = Schedule::default();
        let d = 86_400;
        assert_eq!(s.stage_for_progress(-5), 1);
        assert_eq!(s.stage_for_progress(0), 1);
        assert_eq!(s.stage_for_progress(30 * d - 1), 1);
        assert_eq!(s.stage_for_progress(30 * d), 2);
        assert_eq!(s.stage_for_progress(90 * d - 1), 7);
        assert_eq!(s.stage_for_progress(90 * d), 8);
        assert_eq!(s.stage_for_progress(9000 * d), 8);
    }

    #[test]
    fn window_placement() {
        // Stage 5: throttle [0,30m), block [30m,35m) of every hour.
        let a = Schedule::default().stage(5).action;
        let hour = 1_700_000_000 - 1_700_000_000 % 3600;
        assert_eq!(a.refuses_at(hour), Some("throttle"));
        assert_eq!(a.refuses_at(hour + 30 * 60 - 1), Some("throttle"));
        assert_eq!(a.refuses_at(hour + 30 * 60), Some("block"));
        assert_eq!(a.refuses_at(hour + 35 * 60 - 1), Some("block"));
        assert_eq!(a.refuses_at(hour + 35 * 60), None);
        assert_eq!(a.refuses_at(hour + 3599), None);
        // Stage 6: block-only window at the top of the hour.
        let a = Schedule::default().stage(6).action;
        assert_eq!(a.refuses_at(hour), Some("block"));
        assert_eq!(a.refuses_at(hour + 600), None);
        assert_eq!(Schedule::default().stage(1).action.refuses_at(hour), None);
        assert_eq!(
            Schedule::default().stage(8).action.refuses_at(hour + 7),
            Some("block")
        );
    }

    #[test]
    fn rejects_each_bad_schedule() {
        use ScheduleError::*;
        type Check = fn(&ScheduleError) -> bool;
        let cases: Vec<(Vec<Stage>, Check)> = vec![
            (vec![], |e| matches!(e, Empty)),
            (vec![stage("1d", Action::Report)], |e| {
                matches!(e, FirstNotZero(_))
            }),
            (
                vec![stage("0s", Action::Report), stage("0s", Action::Block)],
                |e| matches!(e, NotIncreasing { stage: 2, .. }),
            ),
            (vec![stage("0s", win("0s", "0s", "0s", "0s"))], |e| {
                matches!(e, ZeroPeriod { stage: 1 })
            }),
            (vec![stage("0s", win("1h", "2h", "2h", "0s"))], |e| {
                matches!(e, ThrottleLongerThanPeriod { .. })
            }),
            (vec![stage("0s", win("1h", "10m", "55m", "10m"))], |e| {
                matches!(e, BlockBeyondPeriod { .. })
            }),
            (vec![stage("0s", win("1h", "10m", "5m", "10m"))], |e| {
                matches!(e, Overlap { .. })
            }),
            (vec![stage("0s", win("1h", "0s", "0s", "0s"))], |e| {
                matches!(e, EmptyWindows { .. })
            }),
            (vec![stage("0s", win("1h", "30m", "30m", "30m"))], |e| {
                matches!(e, FullPeriod { .. })
            }),
        ];
        for (stages, check) in cases {
            let err = Schedule::new(stages.clone()).unwrap_err();
            assert!(check(&err), "{stages:?} gave {err}");
            assert!(!err.to_string().is_empty());
        }
        // Block window placed explicitly after a gap is fine.
        Schedule::new(vec![stage("0s", win("1h", "10m", "40m", "10m"))]).unwrap();
    }

    #[test]
    fn exchange_online_with_notice() {
        let n = NoticeRate::DEFAULT;
        let s = Schedule::exchange_online(Refusal::Notice(n));
        Schedule::new(s.stages().to_vec()).expect("validates");
        assert!(s.uses_notice());
        assert!(!Schedule::default().uses_notice());
        for (a, b) in s.stages().iter().zip(Schedule::default().stages()) {
            assert_eq!((a.after, a.action), (b.after, b.action));
            assert_eq!(a.refusal, Refusal::Notice(n));
        }
    }
}
