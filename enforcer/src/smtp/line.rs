//! Line splitting shared by the line-oriented decoders: CRLF or bare LF, any length.

/// One line of input: its content without the terminator, where it starts, and where the next begins.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Line<'a> {
    pub text: &'a [u8],
    pub start: usize,
    pub next: usize,
}

/// The line starting at `start`, or `None` when no LF terminates it yet (the caller reports Incomplete).
pub(crate) fn line_at(input: &[u8], start: usize) -> Option<Line<'_>> {
    let rest = input.get(start..)?;
    let lf = find_lf(rest)?;
    let mut text = &rest[..lf];
    if let [head @ .., b'\r'] = text {
        text = head;
    }
    Some(Line {
        text,
        start,
        next: start + lf + 1,
    })
}

/// Index of the first LF (see [`find_end`]).
pub(crate) fn find_lf(hay: &[u8]) -> Option<usize> {
    find_end::<false>(hay)
}

/// Index of the first CR or LF (see [`find_end`]): the scanner ends lines at LF, CRLF or a lone CR, and
/// finding both in one pass spares a second walk over every line for a stray CR.
pub(crate) fn find_eol(hay: &[u8]) -> Option<usize> {
    find_end::<true>(hay)
}

/// Index of the first LF, or of the first CR or LF when `CR`: sixteen bytes at a time with SSE2 (part of
/// every x86_64 CPU, so no runtime detection), the rest eight at a time. Lines of headers and transcripts
/// are long enough for this to beat a byte loop, and this runs once per input line. `CR` is a constant,
/// so each finder compiles to its own loop with no test for the other.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn find_end<const CR: bool>(hay: &[u8]) -> Option<usize> {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    let mut i = 0;
    // SAFETY: SSE2 is enabled on every x86_64 target (cfg above), and each load reads the 16 bytes
    // at `i`, which the loop condition keeps inside `hay`; the load is unaligned.
    unsafe {
        let lf = _mm_set1_epi8(b'\n' as i8);
        let cr = _mm_set1_epi8(b'\r' as i8);
        while i + 16 <= hay.len() {
            let v = _mm_loadu_si128(hay.as_ptr().add(i).cast());
            let mut m = _mm_cmpeq_epi8(v, lf);
            if CR {
                m = _mm_or_si128(m, _mm_cmpeq_epi8(v, cr));
            }
            let hits = _mm_movemask_epi8(m) as u32;
            if hits != 0 {
                return Some(i + hits.trailing_zeros() as usize);
            }
            i += 16;
        }
    }
    find_end_swar::<CR>(&hay[i..]).map(|p| i + p)
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn find_end<const CR: bool>(hay: &[u8]) -> Option<usize> {
    find_end_swar::<CR>(hay)
}

/// [`find_end`] eight bytes at a time; the tail is checked byte by byte.
#[inline(always)]
fn find_end_swar<const CR: bool>(hay: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const LF: u64 = LO * b'\n' as u64;
    const CR_: u64 = LO * b'\r' as u64;
    // Classic "has a zero byte": flags the bytes of `x` that are 0. The lowest flag is exact (borrows
    // only run upwards), so with both patterns the lower of the two is the first line end.
    let zero = |x: u64| x.wrapping_sub(LO) & !x & HI;
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0;
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        let mut found = zero(w ^ LF);
        if CR {
            found |= zero(w ^ CR_);
        }
        if found != 0 {
            return Some(base + (found.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'\n' || (CR && b == b'\r'))
        .map(|i| base + i)
}

#[cfg(test)]
mod tests {
    use super::{find_end_swar, find_eol, find_lf};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn find_lf_matches_a_byte_loop(hay in proptest::collection::vec(prop_oneof![Just(b'\n'), any::<u8>()], 0..80)) {
            prop_assert_eq!(find_lf(&hay), hay.iter().position(|&b| b == b'\n'));
            prop_assert_eq!(find_end_swar::<false>(&hay), hay.iter().position(|&b| b == b'\n'));
        }

        #[test]
        fn find_eol_matches_a_byte_loop(hay in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), any::<u8>()], 0..80)) {
            let naive = hay.iter().position(|&b| b == b'\n' || b == b'\r');
            prop_assert_eq!(find_eol(&hay), naive);
            prop_assert_eq!(find_end_swar::<true>(&hay), naive);
        }
    }
}
