//! Writer side of the presence filters in front of the prefix tries (`enforcer_common::filter`
//! says what a bit means). The arrays are mmapped, so setting bits is an atomic OR in place: two
//! writers (the daemon and a CLI import) never lose each other's bits.
//!
//! The one rule every write path keeps: a prefix's bits are set BEFORE its trie entry is written,
//! so the kernel never sees a prefix whose bucket reads clear. Removing a prefix leaves its bits
//! (a stale bit only costs a trie walk); [`Filter::rebuild`] recomputes the words from the prefixes
//! left, which `PolicyMaps` does after removals.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd as _, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use enforcer_common::filter::{
    v4_bit, v6_bit, word_of, FILTER_BITS, FILTER_WORDS, V4_BUCKET_LEN, V6_BUCKET_LEN,
};

use crate::net::Prefix;

/// One family's filter array, mapped into this process.
pub struct Filter {
    words: *const AtomicU64,
    v4: bool,
}

// SAFETY: the mapping is shared memory only ever accessed through atomics; it lives as long as the
// `Filter` (unmapped in Drop) and not through any other alias of this process.
unsafe impl Send for Filter {}
unsafe impl Sync for Filter {}

const BYTES: usize = FILTER_WORDS as usize * 8;

impl Filter {
    /// Maps the array behind `fd` (`PREFIX_FILTER_V4` when `v4`, else `PREFIX_FILTER_V6`); the
    /// caller has checked its size against the contract.
    pub fn map(fd: BorrowedFd<'_>, v4: bool) -> io::Result<Self> {
        // SAFETY: a fresh shared mapping of the whole array; the kernel keeps the map alive while
        // it is mapped, whatever happens to `fd`.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            words: p.cast::<AtomicU64>().cast_const(),
            v4,
        })
    }

    fn word(&self, i: u32) -> &AtomicU64 {
        debug_assert!(i < FILTER_WORDS);
        // SAFETY: `i` < FILTER_WORDS, inside the mapping, which outlives `&self`.
        unsafe { &*self.words.add(i as usize) }
    }

    /// Sets the bits of every prefix (of this filter's family; others are ignored).
    pub fn add<'a>(&self, prefixes: impl IntoIterator<Item = &'a Prefix>) {
        for p in prefixes {
            if p.is_ipv4() == self.v4 {
                for_each_bit(p, |word, mask| {
                    self.word(word).fetch_or(mask, Ordering::SeqCst);
                });
            }
        }
    }

    /// True when every bit of `p` is set (what the kernel needs to find `p`).
    pub fn covers(&self, p: &Prefix) -> bool {
        let mut all = true;
        for_each_bit(p, |word, mask| {
            all &= self.word(word).load(Ordering::SeqCst) & mask == mask;
        });
        all
    }

    /// Makes the filter exactly the bits of `prefixes` (the whole trie of this family, read after
    /// the removals). Only clears bits: a bit another writer set meanwhile for a prefix it is about
    /// to insert stays unless the word is recomputed in between (one writer at a time: the daemon,
    /// or a CLI with no daemon running). Returns how many words changed.
    pub fn rebuild<'a>(&self, prefixes: impl IntoIterator<Item = &'a Prefix>) -> usize {
        let want = words_for(prefixes, self.v4);
        let mut changed = 0;
        for (i, w) in want.iter().enumerate() {
            let cur = self.word(i as u32);
            let have = cur.load(Ordering::SeqCst);
            if have & !w != 0 {
                cur.fetch_and(*w | !have, Ordering::SeqCst);
                changed += 1;
            }
            if w & !have != 0 {
                cur.fetch_or(*w, Ordering::SeqCst);
                changed += 1;
            }
        }
        changed
    }

    /// The words as they are now (tests compare them with what the prefixes need).
    pub fn snapshot(&self) -> Vec<u64> {
        (0..FILTER_WORDS)
            .map(|i| self.word(i).load(Ordering::SeqCst))
            .collect()
    }
}

impl Drop for Filter {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once.
        unsafe { libc::munmap(self.words.cast_mut().cast(), BYTES) };
    }
}

/// The words a filter must hold for `prefixes` (those of the family `v4` says; hosts never need
/// bits, but setting theirs is harmless).
pub fn words_for<'a>(prefixes: impl IntoIterator<Item = &'a Prefix>, v4: bool) -> Vec<u64> {
    let mut want = vec![0u64; FILTER_WORDS as usize];
    for p in prefixes {
        if p.is_ipv4() == v4 {
            for_each_bit(p, |word, mask| want[word as usize] |= mask);
        }
    }
    want
}

/// Calls `f(word, mask)` for the filter bits of a prefix, a word at a time: every bucket the
/// prefix intersects (its own bucket when it is longer than a bucket, every bucket it covers when
/// shorter; for IPv6 the hashes of those /32s, and every bit once that is more than the array).
pub fn for_each_bit(p: &Prefix, mut f: impl FnMut(u32, u64)) {
    let len = p.len();
    match p.addr() {
        IpAddr::V4(a) => {
            let first = v4_bit(a.octets());
            if len >= V4_BUCKET_LEN {
                let (w, m) = word_of(first);
                return f(w, m);
            }
            let count = 1u32 << (V4_BUCKET_LEN - len);
            let mut bit = first;
            let end = first + count;
            while bit < end {
                let (w, m) = word_of(bit);
                // Whole words at once when the range allows.
                let take = (64 - (bit & 63)).min(end - bit);
                let mask = if take == 64 {
                    u64::MAX
                } else {
                    ((1u64 << take) - 1) << (bit & 63)
                };
                debug_assert_eq!(mask & m, m);
                f(w, mask);
                bit += take;
            }
        }
        IpAddr::V6(a) => {
            let o = a.octets();
            let top = u32::from_be_bytes([o[0], o[1], o[2], o[3]]);
            if len >= V6_BUCKET_LEN {
                let (w, m) = word_of(v6_bit(top));
                return f(w, m);
            }
            let span = V6_BUCKET_LEN - len;
            if 1u64 << span >= u64::from(FILTER_BITS) {
                for w in 0..FILTER_WORDS {
                    f(w, u64::MAX);
                }
                return;
            }
            for n in 0..(1u32 << span) {
                let (w, m) = word_of(v6_bit(top | n));
                f(w, m);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(p: &str) -> Vec<(u32, u64)> {
        let mut out = Vec::new();
        for_each_bit(&p.parse().unwrap(), |w, m| out.push((w, m)));
        out
    }

    fn count(p: &str) -> u32 {
        bits(p).iter().map(|(_, m)| m.count_ones()).sum()
    }

    #[test]
    fn v4_prefixes_cover_their_slash_24s() {
        let b = bits("10.0.65.7");
        assert_eq!(b, vec![word_of(v4_bit([10, 0, 65, 7]))]);
        assert_eq!(bits("10.0.65.128/25"), b);
        assert_eq!(bits("10.0.65.0/24"), b);
        assert_eq!(count("10.0.64.0/23"), 2);
        assert_eq!(count("10.0.0.0/16"), 256);
        assert_eq!(count("10.0.0.0/8"), 1 << 16);
        assert_eq!(count("0.0.0.0/0"), FILTER_BITS);
        // A range that starts and ends inside words: exactly its buckets.
        let b = bits("10.0.32.0/19");
        assert_eq!(b.iter().map(|(_, m)| m.count_ones()).sum::<u32>(), 32);
        let first = v4_bit([10, 0, 32, 0]);
        for (w, m) in b {
            for i in 0..64 {
                if m & (1 << i) != 0 {
                    let bit = w * 64 + i;
                    assert!((first..first + 32).contains(&bit));
                }
            }
        }
    }

    #[test]
    fn v6_prefixes_hash_their_slash_32s() {
        let top = 0x2001_0db8;
        let one = vec![word_of(v6_bit(top))];
        assert_eq!(bits("2001:db8::1"), one);
        assert_eq!(bits("2001:db8:1::/48"), one);
        assert_eq!(bits("2001:db8::/32"), one);
        let b = bits("2001:db8::/31");
        assert_eq!(b.len(), 2);
        assert!(b.contains(&word_of(v6_bit(0x2001_0db9))));
        assert_eq!(bits("2001::/16").len(), 1 << 16);
        assert_eq!(count("::/0"), FILTER_BITS);
        assert_eq!(count("2000::/7"), FILTER_BITS);
    }
}
