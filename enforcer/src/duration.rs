//! Durations as operators write them: `45s`, `10m`, `1h`, `30d`, `1w`, or combined `1h30m`. A bare
//! number is rejected: a unit is always required so `--ttl 30` can't mean seconds to one reader and
//! days to another.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A parsed duration that prints back in the same compact form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span(pub Duration);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a duration: {why} (write e.g. 45s, 10m, 1h, 30d, 1h30m)")]
pub struct SpanError {
    input: String,
    why: &'static str,
}

const UNITS: [(char, u64); 5] = [
    ('w', 7 * 86_400),
    ('d', 86_400),
    ('h', 3_600),
    ('m', 60),
    ('s', 1),
];

impl FromStr for Span {
    type Err = SpanError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |why| SpanError {
            input: input.to_string(),
            why,
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(err("it is empty"));
        }
        let mut total: u64 = 0;
        let mut digits = String::new();
        for c in s.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let Some(&(_, secs)) = UNITS.iter().find(|(u, _)| *u == c) else {
                return Err(err("unknown unit (use s, m, h, d or w)"));
            };
            if digits.is_empty() {
                return Err(err("a unit without a number"));
            }
            let n: u64 = digits.parse().map_err(|_| err("number too large"))?;
            total = n
                .checked_mul(secs)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(|| err("too large"))?;
            digits.clear();
        }
        if !digits.is_empty() {
            return Err(err("the last number has no unit"));
        }
        // Keep every duration inside what the kernel's u32 seconds fields and u64 ns clocks can hold.
        if total > 100 * 365 * 86_400 {
            return Err(err("longer than 100 years"));
        }
        Ok(Span(Duration::from_secs(total)))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut secs = self.0.as_secs();
        if secs == 0 {
            return f.write_str("0s");
        }
        // Weeks are accepted on input but never printed: `30d` should read back as `30d`, not `4w2d`.
        for (u, n) in UNITS.into_iter().skip(1) {
            if secs >= n {
                write!(f, "{}{u}", secs / n)?;
                secs %= n;
            }
        }
        Ok(())
    }
}

impl Span {
    pub fn secs(&self) -> u64 {
        self.0.as_secs()
    }
}

crate::text_serde::serde_via_str!(Span);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        for (s, secs) in [
            ("45s", 45),
            ("10m", 600),
            ("1h", 3600),
            ("30d", 30 * 86_400),
            ("1w", 604_800),
            ("1h30m", 5400),
            ("0s", 0),
        ] {
            assert_eq!(s.parse::<Span>().unwrap().secs(), secs, "{s}");
        }
    }

    #[test]
    fn round_trips() {
        for s in ["45s", "10m", "1h", "30d", "1h30m", "9d3h4m5s", "0s"] {
            assert_eq!(s.parse::<Span>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "30",
            "h",
            "5x",
            "1.5h",
            "-5m",
            "99999999999999999999s",
            "200000w",
        ] {
            assert!(bad.parse::<Span>().is_err(), "{bad}");
        }
    }
}
