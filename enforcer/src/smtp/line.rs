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

/// Index of the first LF, eight bytes at a time (lines of headers and transcripts are long enough for
/// this to beat a byte loop; the tail is checked byte by byte).
pub(crate) fn find_lf(hay: &[u8]) -> Option<usize> {
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

#[cfg(test)]
mod tests {
    use super::find_lf;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn find_lf_matches_a_byte_loop(hay in proptest::collection::vec(prop_oneof![Just(b'\n'), any::<u8>()], 0..80)) {
            prop_assert_eq!(find_lf(&hay), hay.iter().position(|&b| b == b'\n'));
        }
    }
}
