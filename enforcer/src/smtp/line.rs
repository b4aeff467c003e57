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
    let lf = rest.iter().position(|&b| b == b'\n')?;
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
