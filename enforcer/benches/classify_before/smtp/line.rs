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

/// Index of the first LF: sixteen bytes at a time with SSE2 (part of every x86_64 CPU, so no runtime
/// detection), the rest eight at a time. Lines of headers and transcripts are long enough for this to beat
/// a byte loop, and this runs once per input line.
#[cfg(target_arch = "x86_64")]
pub(crate) fn find_lf(hay: &[u8]) -> Option<usize> {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8};
    let mut i = 0;
    // SAFETY: SSE2 is enabled on every x86_64 target (cfg above), and each load reads the 16 bytes
    // at `i`, which the loop condition keeps inside `hay`; the load is unaligned.
    unsafe {
        let lf = _mm_set1_epi8(b'\n' as i8);
        while i + 16 <= hay.len() {
            let v = _mm_loadu_si128(hay.as_ptr().add(i).cast());
            let hits = _mm_movemask_epi8(_mm_cmpeq_epi8(v, lf)) as u32;
            if hits != 0 {
                return Some(i + hits.trailing_zeros() as usize);
            }
            i += 16;
        }
    }
    find_lf_swar(&hay[i..]).map(|p| i + p)
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn find_lf(hay: &[u8]) -> Option<usize> {
    find_lf_swar(hay)
}

/// Index of the first LF, eight bytes at a time; the tail is checked byte by byte.
fn find_lf_swar(hay: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const LF: u64 = LO * b'\n' as u64;
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0;
    for c in &mut chunks {
        let x = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) ^ LF;
        // Classic "has a zero byte": true exactly when some byte of `x` is 0.
        let found = x.wrapping_sub(LO) & !x & HI;
        if found != 0 {
            return Some(base + (found.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| base + i)
}
