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
