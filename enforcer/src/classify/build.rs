//! Dotted build numbers as Exchange prints them: `15.1.2507.39`, the zero-padded MAPI form
//! `15.00.1497.040`, and short forms with two or three parts (`5.5.2653`). Normalised to plain decimals.

use std::cmp::Ordering;
use std::fmt;

/// A build number of 2 to 4 parts. Missing parts compare as 0 (`15.1.2507` < `15.1.2507.1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Build {
    parts: [u32; 4],
    len: u8,
}

impl Build {
    pub const fn new(major: u32, minor: u32, build: u32, revision: u32) -> Self {
        Build {
            parts: [major, minor, build, revision],
            len: 4,
        }
    }

    /// Parses `a.b[.c[.d]]`; each part 1-9 decimal digits (leading zeros allowed). Nothing else may follow.
    pub fn parse(s: &[u8]) -> Option<Build> {
        // One pass over the bytes, reading each part as it goes: this runs for the `id` of every
        // Received hop and for comments that may hold a build, most of which are none.
        let mut parts = [0u32; 4];
        let mut len = 0usize;
        let mut digits = 0;
        for &b in s {
            if b == b'.' {
                // An empty part, or a fifth one.
                if digits == 0 || len == 3 {
                    return None;
                }
                len += 1;
                digits = 0;
            } else if b.is_ascii_digit() && digits < 9 {
                parts[len] = parts[len] * 10 + u32::from(b - b'0');
                digits += 1;
            } else {
                return None;
            }
        }
        if digits == 0 {
            return None;
        }
        len += 1;
        (len >= 2).then_some(Build {
            parts,
            len: len as u8,
        })
    }

    pub fn major(&self) -> u32 {
        self.parts[0]
    }
    pub fn minor(&self) -> u32 {
        self.parts[1]
    }
    pub fn part(&self, i: usize) -> u32 {
        self.parts[i]
    }
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl Ord for Build {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.parts, self.len).cmp(&(other.parts, other.len))
    }
}

impl PartialOrd for Build {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Build {
    // Formats into a stack buffer and writes once: builds are printed for every Exchange hop and
    // catalog finding, and one `write_str` is much cheaper than a `write!` per part.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Four u32 parts of at most 10 digits each plus three dots.
        let mut buf = [0u8; 43];
        let mut n = 0;
        for (i, &p) in self.parts[..self.len()].iter().enumerate() {
            if i > 0 {
                buf[n] = b'.';
                n += 1;
            }
            let mut digits = [0u8; 10];
            let mut d = 0;
            let mut v = p;
            loop {
                digits[d] = b'0' + (v % 10) as u8;
                d += 1;
                v /= 10;
                if v == 0 {
                    break;
                }
            }
            for k in (0..d).rev() {
                buf[n] = digits[k];
                n += 1;
            }
        }
        // Only ASCII digits and dots were written.
        f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `Build::parse` as first written (split at dots, then each part checked): the reference the
    /// one-pass reading keeps.
    fn reference_parse(s: &[u8]) -> Option<Build> {
        let mut parts = [0u32; 4];
        let mut len = 0usize;
        for piece in s.split(|&b| b == b'.') {
            if len == 4
                || piece.is_empty()
                || piece.len() > 9
                || !piece.iter().all(u8::is_ascii_digit)
            {
                return None;
            }
            parts[len] = piece
                .iter()
                .fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0'));
            len += 1;
        }
        (len >= 2).then_some(Build {
            parts,
            len: len as u8,
        })
    }

    proptest! {
        #[test]
        fn parse_matches_the_reference(s in prop_oneof![
            "[0-9.]{0,24}",
            "[0-9]{0,11}(\\.[0-9]{0,11}){0,5}",
            "[0-9.a-zV ]{0,12}",
        ]) {
            prop_assert_eq!(Build::parse(s.as_bytes()), reference_parse(s.as_bytes()), "{}", s);
        }
    }

    #[test]
    fn forms() {
        assert_eq!(
            Build::parse(b"15.00.1497.040").unwrap().to_string(),
            "15.0.1497.40"
        );
        assert_eq!(
            Build::parse(b"15.1.2507.39").unwrap(),
            Build::new(15, 1, 2507, 39)
        );
        assert_eq!(Build::parse(b"5.5.2653").unwrap().to_string(), "5.5.2653");
        assert!(Build::parse(b"15").is_none());
        assert!(Build::parse(b"15.1.").is_none());
        assert!(Build::parse(b"1.2.3.4.5").is_none());
        assert!(Build::parse(b"15.1.x").is_none());
        assert!(Build::parse(b"9999999999.1").is_none());
        assert!(Build::parse(b"15.1.2507") < Build::parse(b"15.1.2507.1"));
    }

    proptest! {
        #[test]
        fn display_round_trips(p in proptest::collection::vec(0u32..1_000_000_000, 2..=4)) {
            let s = p.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(".");
            let b = Build::parse(s.as_bytes()).unwrap();
            prop_assert_eq!(b.to_string(), s.clone());
            prop_assert_eq!(Build::parse(b.to_string().as_bytes()), Some(b));
        }

        #[test]
        fn never_panics(s in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = Build::parse(&s);
        }
    }
}
