//! Operator-level policy: what an entry means in words (block, throttle 5m of every hour, ...), shared
//! by the CLI, the store and the engine. [`Rule::to_kernel`] is the only place that turns wall-clock
//! times into the kernel's `CLOCK_BOOTTIME` fields.

use enforcer_common::policy::{
    PolicyEntry, ACTION_DROP, ACTION_PASS, ACTION_RATE_LIMIT, ACTION_REJECT, ACTION_THROTTLE,
    ENTRY_FLAG_RST,
};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

use crate::datapath::Clock;
use crate::duration::Span;
use crate::net::Prefix;

/// What a SYN from a matching source gets.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Drop,
    Reject,
    /// Token bucket per source address; over-rate SYNs are dropped, or reset when `rst`.
    RateLimit {
        per_min: u32,
        burst: u32,
        rst: bool,
    },
    /// Refused during `window` of every `period`, starting `phase` after each wall-clock multiple of
    /// `period` since the Unix epoch; plus an optional block window
    /// `[block_offset, block_offset + block)` in the same period (`block` = 0: none).
    Throttle {
        period: Span,
        window: Span,
        phase: Span,
        block_offset: Span,
        block: Span,
        rst: bool,
        /// `refusal = "notice"`: inside the windows this many SYNs per source pass (so the MTA can
        /// answer with the reason), the rest are dropped; `rst` is then ignored.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        notice: Option<NoticeRate>,
    },
}

/// A notice budget, `COUNT/PERIOD` as operators write it (`2/10m`): SYNs admitted per source address
/// inside a window, so they reach the MTA whose milter or policy service tells the sender why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NoticeRate {
    pub count: u32,
    pub period: Span,
}

impl NoticeRate {
    /// Two connects per ten minutes: enough for one message attempt and one retry to read the text.
    pub const DEFAULT: NoticeRate = NoticeRate {
        count: 2,
        period: Span(std::time::Duration::from_secs(600)),
    };
}

impl Default for NoticeRate {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl std::fmt::Display for NoticeRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.count, self.period)
    }
}

impl FromStr for NoticeRate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let fix = "write COUNT/PERIOD, e.g. 2/10m (two connects per source every ten minutes)";
        let Some((count, period)) = s.trim().split_once('/') else {
            return Err(format!("`{s}` is not a notice rate; {fix}"));
        };
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("`{s}`: `{count}` is not a whole number of connects; {fix}"))?;
        if count == 0 {
            return Err(format!(
                "`{s}` admits no connect, so no sender would read why; use at least 1, or refusal = \"drop\""
            ));
        }
        let period: Span = period.trim().parse().map_err(|e| format!("`{s}`: {e}"))?;
        if period.secs() == 0 || period.0.subsec_nanos() != 0 || period.secs() > u32::MAX as u64 {
            return Err(format!(
                "`{s}`: the period must be whole seconds, longer than 0s and below 136 years; {fix}"
            ));
        }
        Ok(NoticeRate { count, period })
    }
}

crate::text_serde::serde_via_str!(NoticeRate);

/// Who made a rule: the operator (CLI) or the progressive-enforcement engine.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RuleSource {
    Operator,
    Engine { stage: u32 },
}

/// One policy entry for a source prefix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub prefix: Prefix,
    pub verdict: Verdict,
    /// Unix seconds after which the rule no longer applies; `None` = never.
    pub expires_at: Option<i64>,
    pub reason: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    pub source: RuleSource,
    /// The named list (`enforcer import --list NAME`) this entry belongs to; importing that list
    /// again replaces every entry carrying its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<String>,
}

const NS: i128 = 1_000_000_000;

impl Verdict {
    /// Short operator-facing name: `pass`, `drop`, `reject`, `rate_limit`, `throttle`.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Drop => "drop",
            Verdict::Reject => "reject",
            Verdict::RateLimit { .. } => "rate_limit",
            Verdict::Throttle { .. } => "throttle",
        }
    }

    /// Parameters in words, e.g. `3/min burst 3 drop` or `5m every 1h phase 0s reject`.
    pub fn describe(&self) -> String {
        let how = |rst: bool| if rst { "reject" } else { "drop" };
        match self {
            Verdict::Pass | Verdict::Drop | Verdict::Reject => self.name().to_string(),
            Verdict::RateLimit {
                per_min,
                burst,
                rst,
            } => format!("rate_limit {per_min}/min burst {burst} {}", how(*rst)),
            Verdict::Throttle {
                period,
                window,
                phase,
                block_offset,
                block,
                rst,
                notice,
            } => {
                let mut s = format!("throttle {window} every {period} phase {phase}");
                if block.secs() > 0 {
                    s.push_str(&format!(" block {block} at +{block_offset}"));
                }
                s.push(' ');
                match notice {
                    Some(n) => s.push_str(&format!("notice {n}")),
                    None => s.push_str(how(*rst)),
                }
                s
            }
        }
    }

    /// Checks the parameters; the error says what is wrong and how to fix it.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Verdict::Pass | Verdict::Drop | Verdict::Reject => Ok(()),
            Verdict::RateLimit { per_min, burst, .. } => {
                if *per_min == 0 {
                    return Err(
                        "rate must be at least 1/min (to refuse every connect use `enforcer block`)"
                            .into(),
                    );
                }
                if *burst == 0 {
                    return Err("burst must be at least 1".into());
                }
                Ok(())
            }
            Verdict::Throttle {
                period,
                window,
                phase,
                block_offset,
                block,
                notice,
                ..
            } => {
                let (p, w, ph, bo, b) = (
                    period.secs(),
                    window.secs(),
                    phase.secs(),
                    block_offset.secs(),
                    block.secs(),
                );
                if p == 0 {
                    return Err("--period must be longer than 0s (e.g. --period 1h)".into());
                }
                if p > u32::MAX as u64 {
                    return Err(format!("--period {period} is too long (at most 136 years)"));
                }
                if w == 0 && b == 0 {
                    return Err("--window must be longer than 0s (e.g. --window 5m)".into());
                }
                if w > p {
                    return Err(format!(
                        "--window {window} is longer than --period {period}; the window must fit in the period"
                    ));
                }
                if ph >= p {
                    return Err(format!(
                        "--phase {phase} must be shorter than --period {period}"
                    ));
                }
                if let Some(n) = notice {
                    if n.count == 0 || n.period.secs() == 0 || n.period.secs() > u32::MAX as u64 {
                        return Err(format!(
                            "notice rate {n}: use at least 1 connect per period longer than 0s"
                        ));
                    }
                }
                // A notice entry may cover the whole period: that is how a full block stage lets its
                // notice budget through (a block is never answered at the SMTP level otherwise).
                if notice.is_none() && windows_cover_period(p, w, bo, b) {
                    return Err(format!(
                        "--window {window} covers the whole --period {period}: every connect would be refused; use `enforcer block` for that, or a shorter --window"
                    ));
                }
                if b > 0 {
                    if bo + b > p {
                        return Err(format!(
                            "block window {block} at +{block_offset} does not fit in the period {period}"
                        ));
                    }
                    if bo < w {
                        return Err(format!(
                            "block window at +{block_offset} overlaps the throttle window {window}; start it at or after +{window}"
                        ));
                    }
                }
                Ok(())
            }
        }
    }
}

/// Whether a throttle window `[0, window)` and a block window `[block_at, block_at + block)` (all
/// in seconds) together cover a whole period: then every connect is refused, which is a block, not a
/// throttle. The one rule for `enforcer throttle` and the config's stages.
pub fn windows_cover_period(period: u64, window: u64, block_at: u64, block: u64) -> bool {
    let covered = if block == 0 {
        window
    } else if block_at == window {
        window + block
    } else {
        window.max(block)
    };
    covered >= period
}

/// An operator's `--reason`: at most 1024 bytes of printable text on one line. Newlines and
/// terminal control sequences would break `list` and could rewrite an operator's terminal.
pub fn check_reason(r: &str) -> Result<(), String> {
    if r.len() > 1024 {
        return Err("--reason is longer than 1024 bytes; shorten it".into());
    }
    if let Some((i, c)) = r.char_indices().find(|(_, c)| c.is_control()) {
        let what = match c {
            '\n' | '\r' => "a line break".to_string(),
            '\x1b' => "an escape character (terminal control sequence)".to_string(),
            '\t' => "a tab".to_string(),
            c => format!("the control character U+{:04X}", c as u32),
        };
        return Err(format!(
            "--reason contains {what} at byte {i}; give one line of printable text"
        ));
    }
    Ok(())
}

impl Verdict {
    /// The verdict a kernel entry enforces (the throttle phase recovered from its anchor), so
    /// listings show what the kernel does even for entries no store knows about.
    pub fn from_kernel(e: &PolicyEntry, clock: &Clock) -> Verdict {
        let rst = e.flags & ENTRY_FLAG_RST != 0;
        let secs = |s: u32| Span(std::time::Duration::from_secs(u64::from(s)));
        match e.action {
            ACTION_DROP => Verdict::Drop,
            ACTION_REJECT => Verdict::Reject,
            ACTION_RATE_LIMIT => Verdict::RateLimit {
                per_min: e.rate_per_min,
                burst: e.burst,
                rst,
            },
            ACTION_THROTTLE => {
                let period = i128::from(e.period_secs.max(1));
                let anchor_unix = round_secs(clock.unix_ns_at_boot(e.anchor_ns));
                Verdict::Throttle {
                    period: secs(e.period_secs),
                    window: secs(e.throttle_secs),
                    phase: secs((i128::from(anchor_unix)).rem_euclid(period) as u32),
                    block_offset: secs(e.block_offset_secs),
                    block: secs(e.block_secs),
                    rst: rst && !e.is_notice(),
                    notice: e.is_notice().then(|| NoticeRate {
                        count: e.notice_count,
                        period: secs(e.notice_period_secs),
                    }),
                }
            }
            _ => Verdict::Pass,
        }
    }
}

/// Unix seconds of a kernel expiry (`None` = never).
pub fn expiry_from_kernel(e: &PolicyEntry, clock: &Clock) -> Option<i64> {
    (e.expires_ns != 0).then(|| round_secs(clock.unix_ns_at_boot(e.expires_ns)))
}

fn round_secs(ns: i128) -> i64 {
    (ns + NS / 2).div_euclid(NS) as i64
}

impl Rule {
    /// Checks the verdict and times; the error says what is wrong and how to fix it.
    pub fn validate(&self) -> Result<(), String> {
        self.verdict.validate()?;
        if let Some(exp) = self.expires_at {
            if exp <= self.created_at {
                return Err("--ttl must be longer than 0s (e.g. --ttl 1h)".into());
            }
        }
        if let Some(r) = &self.reason {
            check_reason(r)?;
        }
        Ok(())
    }

    /// True when the rule has an expiry at or before `now_unix`.
    pub fn is_expired(&self, now_unix: i64) -> bool {
        self.expires_at.is_some_and(|e| e <= now_unix)
    }

    /// The kernel entry for this rule, with wall-clock times converted through `clock`.
    pub fn to_kernel(&self, clock: &Clock) -> PolicyEntry {
        let mut e = PolicyEntry {
            expires_ns: match self.expires_at {
                None => 0,
                // An expiry before boot (or exactly at boot ns 0, which means "never") is already past.
                Some(unix) => clock.boot_ns_at_unix(unix as i128 * NS).max(1),
            },
            ..PolicyEntry::default()
        };
        match &self.verdict {
            Verdict::Pass => e.action = ACTION_PASS,
            Verdict::Drop => e.action = ACTION_DROP,
            Verdict::Reject => e.action = ACTION_REJECT,
            Verdict::RateLimit {
                per_min,
                burst,
                rst,
            } => {
                e.action = ACTION_RATE_LIMIT;
                e.rate_per_min = *per_min;
                e.burst = *burst;
                e.flags = if *rst { ENTRY_FLAG_RST } else { 0 };
            }
            Verdict::Throttle {
                period,
                window,
                phase,
                block_offset,
                block,
                rst,
                notice,
            } => {
                e.action = ACTION_THROTTLE;
                e.flags = if *rst { ENTRY_FLAG_RST } else { 0 };
                e.period_secs = clamp_u32(period.secs());
                e.throttle_secs = clamp_u32(window.secs());
                e.block_offset_secs = clamp_u32(block_offset.secs());
                e.block_secs = clamp_u32(block.secs());
                e.anchor_ns = throttle_anchor(clock, period.secs(), phase.secs());
                if let Some(n) = notice {
                    e = PolicyEntry::notice(e, n.count, clamp_u32(n.period.secs()));
                }
            }
        }
        e.with_interval()
    }
}

fn clamp_u32(v: u64) -> u32 {
    v.min(u32::MAX as u64) as u32
}

/// CLOCK_BOOTTIME ns of a period start: a wall-clock instant `k * period + phase` since the epoch.
/// The latest such instant not after now, unless that lies before boot, in which case the first one
/// after boot (the kernel handles anchors in the future with the same modular arithmetic).
pub fn throttle_anchor(clock: &Clock, period_secs: u64, phase_secs: u64) -> u64 {
    if period_secs == 0 {
        return clock.boot_ns();
    }
    let period = period_secs as i128 * NS;
    let phase = (phase_secs as i128 * NS) % period;
    let now = clock.unix_ns();
    let start_unix = (now - phase).div_euclid(period) * period + phase;
    let mut boot = start_unix - (now - clock.boot_ns() as i128);
    if boot < 0 {
        boot += (-boot + period - 1) / period * period;
    }
    boot.clamp(0, u64::MAX as i128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(s: &str) -> Span {
        s.parse().unwrap()
    }

    fn throttle(period: &str, window: &str, phase: &str) -> Verdict {
        Verdict::Throttle {
            period: span(period),
            window: span(window),
            phase: span(phase),
            block_offset: Span::default(),
            block: Span::default(),
            rst: false,
            notice: None,
        }
    }

    fn rule(verdict: Verdict) -> Rule {
        Rule {
            prefix: "192.0.2.0/24".parse().unwrap(),
            verdict,
            expires_at: None,
            reason: None,
            created_at: 1_700_000_000,
            source: RuleSource::Operator,
            list: None,
        }
    }

    #[test]
    fn a_window_covering_its_period_is_refused_by_cli_and_config_alike() {
        let cli = throttle("1h", "1h", "0s").validate().unwrap_err();
        assert!(cli.contains("covers the whole --period"), "{cli}");
        assert!(throttle("1h", "59m", "0s").validate().is_ok());
        let toml = |w: &str| {
            format!(
                "[[enforcement.stages]]\nafter = \"0s\"\naction = \"report\"\n[[enforcement.stages]]\nafter = \"1d\"\naction = \"windows\"\nperiod = \"1h\"\nthrottle = \"{w}\"\n"
            )
        };
        let cfg = crate::config::FileConfig::parse("t.toml", &toml("1h")).unwrap_err();
        assert!(cfg.to_string().contains("cover the whole period"), "{cfg}");
        assert!(crate::config::FileConfig::parse("t.toml", &toml("59m")).is_ok());
    }

    #[test]
    fn reasons_are_one_printable_line() {
        let mut r = rule(Verdict::Drop);
        for bad in [
            "two\nlines",
            "cr\rhere",
            "\x1b[2Jclear",
            "bell\x07",
            "c1\u{9b}31m",
        ] {
            r.reason = Some(bad.into());
            let e = r.validate().unwrap_err();
            assert!(e.starts_with("--reason contains"), "{bad:?}: {e}");
        }
        r.reason = Some("spam run from AS64500 – see ticket #42 ✓".into());
        assert!(r.validate().is_ok());
        r.reason = Some("x".repeat(1025));
        assert!(r.validate().is_err());
    }

    #[test]
    fn validation_catches_bad_parameters() {
        let bad = [
            Verdict::RateLimit {
                per_min: 0,
                burst: 1,
                rst: false,
            },
            Verdict::RateLimit {
                per_min: 5,
                burst: 0,
                rst: false,
            },
            throttle("1h", "2h", "0s"),
            throttle("0s", "0s", "0s"),
            throttle("1h", "0s", "0s"),
            throttle("1h", "5m", "1h"),
            Verdict::Throttle {
                period: span("1h"),
                window: span("10m"),
                phase: span("0s"),
                block_offset: span("5m"),
                block: span("10m"),
                rst: false,
                notice: None,
            },
            Verdict::Throttle {
                period: span("1h"),
                window: span("10m"),
                phase: span("0s"),
                block_offset: span("55m"),
                block: span("10m"),
                rst: false,
                notice: None,
            },
        ];
        for v in bad {
            assert!(rule(v.clone()).validate().is_err(), "{v:?}");
        }
        for v in [
            Verdict::Drop,
            throttle("1h", "5m", "0s"),
            throttle("1h", "59m", "30m"),
            Verdict::RateLimit {
                per_min: 3,
                burst: 3,
                rst: true,
            },
        ] {
            assert!(rule(v.clone()).validate().is_ok(), "{v:?}");
        }
        let mut r = rule(Verdict::Drop);
        r.expires_at = Some(r.created_at);
        assert!(r.validate().is_err());
    }

    #[test]
    fn anchor_lands_on_wall_clock_period_starts() {
        // Wall clock 10:07:30 UTC on some day; booted 2 days ago.
        let day = 86_400i128;
        let now_unix = (19_000 * day + 10 * 3600 + 7 * 60 + 30) * NS;
        let clock = Clock::fixed(now_unix, (2 * day * NS) as u64);
        let anchor = throttle_anchor(&clock, 3600, 0);
        // 10:00:00 is 7m30s ago.
        assert_eq!(clock.boot_ns() - anchor, (7 * 60 + 30) * 1_000_000_000);
        let anchor = throttle_anchor(&clock, 3600, 600);
        // 10:10 is in the future, so the anchor is 09:10, 57m30s ago.
        assert_eq!(clock.boot_ns() - anchor, (57 * 60 + 30) * 1_000_000_000);
        // Just booted (5 s ago): the anchor is the next period start, in the future.
        let clock = Clock::fixed(now_unix, 5_000_000_000);
        let anchor = throttle_anchor(&clock, 3600, 0);
        assert_eq!(anchor - clock.boot_ns(), (52 * 60 + 30) * 1_000_000_000);
    }

    #[test]
    fn to_kernel_fills_fields() {
        let clock = Clock::fixed(1_700_000_000 * NS, 1_000 * NS as u64);
        let mut r = rule(Verdict::RateLimit {
            per_min: 3,
            burst: 4,
            rst: true,
        });
        r.expires_at = Some(1_700_000_060);
        let e = r.to_kernel(&clock);
        assert_eq!(e.action, ACTION_RATE_LIMIT);
        assert_eq!((e.rate_per_min, e.burst, e.flags), (3, 4, ENTRY_FLAG_RST));
        assert_eq!(e.expires_ns, 1_060 * NS as u64);
        // Expired before boot still reads as expired, never as "no expiry".
        r.expires_at = Some(1_000);
        assert_eq!(r.to_kernel(&clock).expires_ns, 1);
        let e = rule(throttle("1h", "5m", "0s")).to_kernel(&clock);
        assert_eq!(
            (e.action, e.period_secs, e.throttle_secs, e.block_secs),
            (ACTION_THROTTLE, 3600, 300, 0)
        );
    }

    #[test]
    fn kernel_entries_read_back() {
        let clock = Clock::fixed(1_700_000_123 * NS, 5_000 * NS as u64);
        let mut r = rule(Verdict::Throttle {
            period: span("1h"),
            window: span("5m"),
            phase: span("10m"),
            block_offset: span("30m"),
            block: span("1m"),
            rst: true,
            notice: None,
        });
        r.expires_at = Some(1_700_003_600);
        let e = r.to_kernel(&clock);
        assert_eq!(Verdict::from_kernel(&e, &clock), r.verdict);
        assert_eq!(expiry_from_kernel(&e, &clock), r.expires_at);
        for v in [
            Verdict::Pass,
            Verdict::Drop,
            Verdict::Reject,
            Verdict::RateLimit {
                per_min: 3,
                burst: 3,
                rst: false,
            },
        ] {
            assert_eq!(
                Verdict::from_kernel(&rule(v.clone()).to_kernel(&clock), &clock),
                v
            );
        }
    }

    #[test]
    fn json_round_trip() {
        let mut r = rule(throttle("1h", "5m", "0s"));
        r.reason = Some("EOL Exchange 2013".into());
        let s = serde_json::to_string(&r).unwrap();
        assert!(s.contains("\"action\":\"throttle\""), "{s}");
        assert_eq!(serde_json::from_str::<Rule>(&s).unwrap(), r);
    }

    #[test]
    fn notice_rates_parse_and_print() {
        for (text, count, secs, back) in [
            ("2/10m", 2, 600, "2/10m"),
            ("1/1h", 1, 3600, "1/1h"),
            (" 5 / 30s ", 5, 30, "5/30s"),
        ] {
            let r: NoticeRate = text.parse().unwrap();
            assert_eq!((r.count, r.period.secs()), (count, secs), "{text}");
            assert_eq!(r.to_string(), back);
        }
        assert_eq!(NoticeRate::default().to_string(), "2/10m");
        for (bad, says) in [
            ("", "COUNT/PERIOD"),
            ("2", "COUNT/PERIOD"),
            ("x/10m", "not a whole number"),
            ("-1/10m", "not a whole number"),
            ("0/10m", "admits no connect"),
            ("2/10", "not a duration"),
            ("2/0s", "longer than 0s"),
            ("2/10m/1", "not a duration"),
        ] {
            let e = bad.parse::<NoticeRate>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn notice_throttles_reach_the_kernel_and_read_back() {
        let clock = Clock::fixed(1_700_000_123 * NS, 5_000 * NS as u64);
        let mut v = throttle("1h", "5m", "0s");
        if let Verdict::Throttle { rst, notice, .. } = &mut v {
            *rst = true;
            *notice = Some("3/15m".parse().unwrap());
        }
        let r = rule(v);
        let e = r.to_kernel(&clock);
        assert!(e.is_notice());
        assert_eq!(e.flags & ENTRY_FLAG_RST, 0, "a notice is never a RST");
        assert_eq!((e.notice_count, e.notice_period_secs), (3, 900));
        assert_eq!((e.period_secs, e.throttle_secs), (3600, 300));
        let back = Verdict::from_kernel(&e, &clock);
        assert!(
            matches!(back, Verdict::Throttle { rst: false, notice: Some(n), .. } if n.count == 3 && n.period.secs() == 900),
            "{back:?}"
        );
        assert!(
            back.describe().ends_with("notice 3/15m"),
            "{}",
            back.describe()
        );
        // The store's JSON keeps the budget, and entries written before it existed still read.
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"notice\":\"3/15m\""), "{json}");
        assert_eq!(serde_json::from_str::<Rule>(&json).unwrap(), r);
        let old = json.replace(",\"notice\":\"3/15m\"", "");
        assert!(matches!(
            serde_json::from_str::<Rule>(&old).unwrap().verdict,
            Verdict::Throttle { notice: None, .. }
        ));
        // A block window over the whole period is how a full block tells the sender why: valid
        // with a notice budget, refused without one (that would be a block, not a throttle).
        let whole = |notice| Verdict::Throttle {
            period: span("1h"),
            window: Span::default(),
            phase: Span::default(),
            block_offset: Span::default(),
            block: span("1h"),
            rst: false,
            notice,
        };
        assert!(rule(whole(Some(NoticeRate::DEFAULT))).validate().is_ok());
        assert!(rule(whole(None)).validate().is_err());
    }
}
