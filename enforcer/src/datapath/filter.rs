//! Writer side of the presence filters and the per-slot prefix-length masks in front of the prefix
//! maps (`enforcer_common::filter` says what a bit means). The arrays are mmapped, so setting bits
//! is an atomic OR in place: two writers (the daemon and a CLI import) never lose each other's bits.
//!
//! The one rule every write path keeps: a prefix's bits (filter bit and length bit) are set BEFORE
//! its map entry is written, so the kernel never sees a prefix whose bucket reads clear or whose
//! length it would not probe. Removing a prefix leaves its bits (a stale bit only costs a probe);
//! [`Filter::rebuild`] recomputes both arrays from the prefixes left, which `PolicyMaps` does after
//! removals.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd as _, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use enforcer_common::filter::{
    v4_bit, v4_slot, v4_slot_word, v6_bit, v6_slot, word_of, FILTER_BITS, FILTER_WORDS,
    LENGTH_SLOTS_V4, LENGTH_SLOTS_V6, LENGTH_WORDS_V4, V4_BUCKET_LEN, V4_SLOT_LEN, V6_BUCKET_LEN,
};

use crate::net::Prefix;

/// One family's filter array and length-mask array, mapped into this process.
pub struct Filter {
    words: *const AtomicU64,
    /// `AtomicU64` words: two IPv4 slots per word, or two words per IPv6 slot (lengths 0–63, then
    /// 64–127).
    lengths: *const AtomicU64,
    v4: bool,
}

// SAFETY: the mapping is shared memory only ever accessed through atomics; it lives as long as the
// `Filter` (unmapped in Drop) and not through any other alias of this process.
unsafe impl Send for Filter {}
unsafe impl Sync for Filter {}

const BYTES: usize = FILTER_WORDS as usize * 8;

/// Bytes of one family's length-mask array.
const fn length_bytes(v4: bool) -> usize {
    if v4 {
        LENGTH_WORDS_V4 as usize * 8
    } else {
        LENGTH_SLOTS_V6 as usize * 16
    }
}

/// Slots of one family's length-mask array.
const fn length_slots(v4: bool) -> u32 {
    if v4 {
        LENGTH_SLOTS_V4
    } else {
        LENGTH_SLOTS_V6
    }
}

fn mmap(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<*mut libc::c_void> {
    // SAFETY: a fresh shared mapping of the whole array; the kernel keeps the map alive while it
    // is mapped, whatever happens to `fd`.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(p)
}

impl Filter {
    /// Maps the arrays behind `bits` (`PREFIX_FILTER_V4` when `v4`, else `PREFIX_FILTER_V6`) and
    /// `lengths` (`PREFIX_LENGTHS_V4` / `_V6`); the caller has checked their sizes against the
    /// contract.
    pub fn map(bits: BorrowedFd<'_>, lengths: BorrowedFd<'_>, v4: bool) -> io::Result<Self> {
        let words = mmap(bits, BYTES)?;
        let lengths = match mmap(lengths, length_bytes(v4)) {
            Ok(l) => l,
            Err(e) => {
                // SAFETY: the mapping just made, unmapped once.
                unsafe { libc::munmap(words, BYTES) };
                return Err(e);
            }
        };
        Ok(Self {
            words: words.cast::<AtomicU64>().cast_const(),
            lengths: lengths.cast::<AtomicU64>().cast_const(),
            v4,
        })
    }

    fn word(&self, i: u32) -> &AtomicU64 {
        debug_assert!(i < FILTER_WORDS);
        // SAFETY: `i` < FILTER_WORDS, inside the mapping, which outlives `&self`.
        unsafe { &*self.words.add(i as usize) }
    }

    /// The length-mask word `i`.
    fn length_word(&self, i: usize) -> &AtomicU64 {
        // SAFETY: callers pass a word of a slot of this family's array, inside the mapping, which
        // outlives `&self`.
        unsafe { &*self.lengths.add(i) }
    }

    /// The length mask of slot `i` (bit L = length L).
    fn lengths_of(&self, i: u32) -> u128 {
        debug_assert!(i < length_slots(self.v4));
        if self.v4 {
            let (w, shift) = v4_slot_word(i);
            u128::from((self.length_word(w as usize).load(Ordering::SeqCst) >> shift) as u32)
        } else {
            let w = 2 * i as usize;
            u128::from(self.length_word(w).load(Ordering::SeqCst))
                | u128::from(self.length_word(w + 1).load(Ordering::SeqCst)) << 64
        }
    }

    /// ORs (`or`) or ANDs (`!or`) `mask` into slot `i`'s length mask.
    fn update_lengths(&self, i: u32, mask: u128, or: bool) {
        debug_assert!(i < length_slots(self.v4));
        let parts: [(usize, u64); 2] = if self.v4 {
            let (w, shift) = v4_slot_word(i);
            // The other slot of the word is left alone: ones for an AND, zeros for an OR.
            let other = if or {
                0
            } else {
                u64::from(u32::MAX) << (32 - shift)
            };
            let part = u64::from(mask as u32) << shift | other;
            [
                (w as usize, part),
                (w as usize, if or { 0 } else { u64::MAX }),
            ]
        } else {
            [
                (2 * i as usize, mask as u64),
                (2 * i as usize + 1, (mask >> 64) as u64),
            ]
        };
        for (w, part) in parts {
            if or {
                self.length_word(w).fetch_or(part, Ordering::SeqCst);
            } else {
                self.length_word(w).fetch_and(part, Ordering::SeqCst);
            }
        }
    }

    /// The prefix lengths the kernel probes for a source `ip` of this family (bit L = length L;
    /// tests check what writers left).
    pub fn lengths_at(&self, ip: IpAddr) -> u128 {
        match ip {
            IpAddr::V4(a) if self.v4 => self.lengths_of(v4_slot(a.octets())),
            IpAddr::V6(a) if !self.v4 => {
                let o = a.octets();
                self.lengths_of(v6_slot(u32::from_be_bytes([o[0], o[1], o[2], o[3]])))
            }
            _ => 0,
        }
    }

    /// Sets the bits of every prefix (of this filter's family; others and hosts, which the kernel
    /// finds in the host maps, are ignored).
    pub fn add<'a>(&self, prefixes: impl IntoIterator<Item = &'a Prefix>) {
        for p in prefixes {
            if p.is_ipv4() == self.v4 && !p.is_host() {
                for_each_bit(p, |word, mask| {
                    self.word(word).fetch_or(mask, Ordering::SeqCst);
                });
                let bit = 1u128 << p.len();
                for_each_slot(p, |slot| self.update_lengths(slot, bit, true));
            }
        }
    }

    /// True when every bit of `p` is set, filter and length bits (what the kernel needs to find
    /// `p`).
    pub fn covers(&self, p: &Prefix) -> bool {
        let mut all = true;
        for_each_bit(p, |word, mask| {
            all &= self.word(word).load(Ordering::SeqCst) & mask == mask;
        });
        if p.is_host() || p.is_ipv4() != self.v4 {
            return all;
        }
        let bit = 1u128 << p.len();
        for_each_slot(p, |slot| all &= self.lengths_of(slot) & bit != 0);
        all
    }

    /// Makes the filter exactly the bits of `prefixes` (the whole prefix map of this family, read
    /// after the removals), filter words and length masks. Only clears bits: a bit another writer
    /// set meanwhile for a prefix it is about to insert stays unless the word is recomputed in
    /// between (one writer at a time: the daemon, or a CLI with no daemon running). Returns how
    /// many words and slots changed.
    pub fn rebuild<'a>(&self, prefixes: impl IntoIterator<Item = &'a Prefix> + Clone) -> usize {
        let mut changed = 0;
        let want = lengths_for(prefixes.clone(), self.v4);
        for (i, w) in want.iter().enumerate() {
            let have = self.lengths_of(i as u32);
            if have & !w != 0 {
                self.update_lengths(i as u32, *w | !have, false);
                changed += 1;
            }
            if w & !have != 0 {
                self.update_lengths(i as u32, *w, true);
                changed += 1;
            }
        }
        let want = words_for(prefixes, self.v4);
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

    /// The length masks as they are now, one per slot (tests compare them with [`lengths_for`]).
    pub fn lengths_snapshot(&self) -> Vec<u128> {
        (0..length_slots(self.v4))
            .map(|i| self.lengths_of(i))
            .collect()
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
        unsafe {
            libc::munmap(self.words.cast_mut().cast(), BYTES);
            libc::munmap(self.lengths.cast_mut().cast(), length_bytes(self.v4));
        }
    }
}

/// The length masks a family's array must hold for `prefixes` (hosts and the other family's
/// prefixes need none).
pub fn lengths_for<'a>(prefixes: impl IntoIterator<Item = &'a Prefix>, v4: bool) -> Vec<u128> {
    let mut want = vec![0u128; length_slots(v4) as usize];
    for p in prefixes {
        if p.is_ipv4() == v4 && !p.is_host() {
            let bit = 1u128 << p.len();
            for_each_slot(p, |slot| want[slot as usize] |= bit);
        }
    }
    want
}

/// Calls `f(slot)` for every length-mask slot a prefix intersects: its own slot when it is at
/// least as long as a slot, every slot it covers when shorter (for IPv6 the slots of the hashes of
/// the /32s it covers, and every slot once that is more than the array).
pub fn for_each_slot(p: &Prefix, mut f: impl FnMut(u32)) {
    let len = p.len();
    match p.addr() {
        IpAddr::V4(a) => {
            let first = v4_slot(a.octets());
            if len >= V4_SLOT_LEN {
                return f(first);
            }
            for slot in first..first + (1u32 << (V4_SLOT_LEN - len)) {
                f(slot);
            }
        }
        IpAddr::V6(a) => {
            let o = a.octets();
            let top = u32::from_be_bytes([o[0], o[1], o[2], o[3]]);
            if len >= V6_BUCKET_LEN {
                return f(v6_slot(top));
            }
            let span = V6_BUCKET_LEN - len;
            if 1u64 << span >= u64::from(FILTER_BITS) {
                for slot in 0..LENGTH_SLOTS_V6 {
                    f(slot);
                }
                return;
            }
            for n in 0..(1u32 << span) {
                f(v6_slot(top | n));
            }
        }
    }
}

/// The words a filter must hold for `prefixes` (those of the family `v4` says; hosts never need
/// bits: skipped).
pub fn words_for<'a>(prefixes: impl IntoIterator<Item = &'a Prefix>, v4: bool) -> Vec<u64> {
    let mut want = vec![0u64; FILTER_WORDS as usize];
    for p in prefixes {
        if p.is_ipv4() == v4 && !p.is_host() {
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

    fn slots(p: &str) -> Vec<u32> {
        let mut out = Vec::new();
        for_each_slot(&p.parse().unwrap(), |s| out.push(s));
        out
    }

    #[test]
    fn prefixes_name_their_length_slots() {
        let own = v4_slot([10, 0, 16, 0]);
        assert_eq!(slots("10.0.16.0/20"), vec![own]);
        assert_eq!(slots("10.0.17.128/25"), vec![own]);
        assert_eq!(
            slots("10.0.0.0/16"),
            (v4_slot([10, 0, 0, 0])..own + 15).collect::<Vec<_>>()
        );
        assert_eq!(slots("0.0.0.0/0").len(), LENGTH_SLOTS_V4 as usize);
        let top = 0x2001_0db8;
        assert_eq!(slots("2001:db8:1::/48"), vec![v6_slot(top)]);
        assert_eq!(slots("2001:db8::/31").len(), 2);
        assert_eq!(slots("::/0").len(), LENGTH_SLOTS_V6 as usize);
        let want = lengths_for(
            &[
                "10.0.16.0/20".parse().unwrap(),
                "10.0.0.0/8".parse().unwrap(),
                "10.0.16.1".parse().unwrap(),
            ],
            true,
        );
        assert_eq!(want[own as usize], 1 << 20 | 1 << 8, "hosts add no length");
        assert_eq!(want[v4_slot([10, 9, 0, 0]) as usize], 1 << 8);
        assert_eq!(want[v4_slot([11, 0, 0, 0]) as usize], 0);
    }
}
