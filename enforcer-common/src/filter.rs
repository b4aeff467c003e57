//! Presence filters in front of the prefix tries: one bit per IPv4 /24 (`PREFIX_FILTER_V4`) and
//! one bit per hashed IPv6 /32 (`PREFIX_FILTER_V6`), each an array of `u64` words. A bit is set
//! whenever some prefix entry intersects its bucket (covers it, or lies inside it), so a clear bit
//! proves that no prefix contains the source and the trie walk (60–90 ns with 65,536 prefixes) is
//! skipped for an inlined array read. A set bit only means "walk the trie": stale bits cost time,
//! never a verdict. Writers set the bits before they insert a prefix and clear them only by
//! recomputing from the tries after removals.
//!
//! Behind each filter, the prefix lengths present per slot (`PREFIX_LENGTHS_V4`: 32 bits per IPv4
//! /20, two slots to a `u64` element (array elements are 8-byte strided), bit L = some /L prefix
//! intersects the /20; `PREFIX_LENGTHS_V6`: two `u64` per filter word,
//! i.e. per 64 hashed /32s, bit L of the pair likewise for /0–/127). The prefix maps are exact hash
//! maps keyed by (length, masked address); the kernel probes only the lengths its slot names,
//! longest first, so the first hit is the longest match. Like a filter bit, a length bit is set
//! before its prefix is written and cleared only by recomputing: a stale bit costs one probe.

/// Words of each filter: 2^24 bits = 2 MiB per family.
pub const FILTER_WORDS: u32 = 1 << 18;
/// Bits of each filter.
pub const FILTER_BITS: u32 = FILTER_WORDS * 64;
/// The IPv4 bucket length: one bit per /24.
pub const V4_BUCKET_LEN: u8 = 24;
/// The IPv6 bucket length: one bit per hash of the /32.
pub const V6_BUCKET_LEN: u8 = 32;

/// Filter bit of an IPv4 address (network-order bytes): its /24, directly.
#[inline(always)]
pub const fn v4_bit(addr: [u8; 4]) -> u32 {
    u32::from_be_bytes(addr) >> (32 - V4_BUCKET_LEN)
}

/// Filter bit of an IPv6 address's first 32 bits (`top32` = those bits as a host-order integer):
/// a multiplicative (Fibonacci) hash onto the 2^24 bits, so operators' /32 allocations spread over
/// the array instead of landing in the few `2xxx` rows.
#[inline(always)]
pub const fn v6_bit(top32: u32) -> u32 {
    top32.wrapping_mul(0x9e37_79b1) >> (32 - 24)
}

/// Word index and mask of a filter bit.
#[inline(always)]
pub const fn word_of(bit: u32) -> (u32, u64) {
    (bit >> 6, 1u64 << (bit & 63))
}

/// The IPv4 length-mask slot: one per /20.
pub const V4_SLOT_LEN: u8 = 20;
/// IPv4 length-mask slots (32 bits each: 4 MiB).
pub const LENGTH_SLOTS_V4: u32 = 1 << V4_SLOT_LEN;
/// Elements of `PREFIX_LENGTHS_V4`: a `u64` holds two slots, the even one in its low half.
pub const LENGTH_WORDS_V4: u32 = LENGTH_SLOTS_V4 / 2;
/// IPv6 length-mask slots, one per filter word (`[u64; 2]` each: 4 MiB).
pub const LENGTH_SLOTS_V6: u32 = FILTER_WORDS;

/// Length-mask slot of an IPv4 address (network-order bytes): its /20.
#[inline(always)]
pub const fn v4_slot(addr: [u8; 4]) -> u32 {
    u32::from_be_bytes(addr) >> (32 - V4_SLOT_LEN)
}

/// Element of `PREFIX_LENGTHS_V4` holding an IPv4 slot, and the shift of the slot's 32 bits in it.
#[inline(always)]
pub const fn v4_slot_word(slot: u32) -> (u32, u32) {
    (slot >> 1, (slot & 1) * 32)
}

/// Length-mask slot of an IPv6 address's first 32 bits: the filter word of its bit.
#[inline(always)]
pub const fn v6_slot(top32: u32) -> u32 {
    v6_bit(top32) >> 6
}

/// Word and bit of prefix length `len` (0–127) in an IPv6 length mask.
#[inline(always)]
pub const fn v6_length_bit(len: u8) -> (usize, u64) {
    ((len >> 6) as usize, 1u64 << (len & 63))
}

const _: () = assert!(FILTER_BITS == 1 << 24);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_bits_are_the_slash_24() {
        assert_eq!(v4_bit([10, 200, 7, 1]), v4_bit([10, 200, 7, 255]));
        assert_ne!(v4_bit([10, 200, 7, 1]), v4_bit([10, 200, 8, 1]));
        assert_eq!(v4_bit([255, 255, 255, 255]), FILTER_BITS - 1);
        assert_eq!(word_of(v4_bit([0, 0, 0x41, 9])), (1, 2));
    }

    #[test]
    fn v6_bits_stay_in_range_and_spread() {
        let mut seen = std::collections::HashSet::new();
        for n in 0..4096u32 {
            let b = v6_bit(0x2001_0000 | n);
            assert!(b < FILTER_BITS);
            seen.insert(b);
        }
        // Consecutive /32s do not collide.
        assert_eq!(seen.len(), 4096);
    }

    #[test]
    fn length_slots_stay_in_range() {
        assert_eq!(v4_slot([10, 0, 15, 1]), v4_slot([10, 0, 0, 0]));
        assert_ne!(v4_slot([10, 0, 16, 1]), v4_slot([10, 0, 0, 0]));
        assert_eq!(v4_slot([255; 4]), LENGTH_SLOTS_V4 - 1);
        assert!(v6_slot(u32::MAX) < LENGTH_SLOTS_V6);
        assert_eq!(v4_slot_word(LENGTH_SLOTS_V4 - 1), (LENGTH_WORDS_V4 - 1, 32));
        assert_eq!(v4_slot_word(6), (3, 0));
        assert_eq!(v6_length_bit(0), (0, 1));
        assert_eq!(v6_length_bit(64), (1, 1));
        assert_eq!(v6_length_bit(127), (1, 1 << 63));
    }
}
