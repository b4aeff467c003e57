//! RFC 5322 header blocks: `Name: value` fields, folded over lines that start with space or tab, ended
//! by an empty line. CRLF and bare LF are both accepted.

use nom::bytes::complete::take_while1;
use nom::IResult;

use super::line::line_at;
use super::{DecodeError, Decoded, Item};

/// One header field. `value` is the raw text after the colon, still folded (use [`unfold`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderField<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
}

impl HeaderField<'_> {
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }
}

/// Decodes the header block at the start of `input`, up to and including its empty line.
pub fn decode_header_block(input: &[u8]) -> Result<Decoded<Vec<HeaderField<'_>>>, DecodeError> {
    let item = Item::HeaderBlock;
    let mut fields: Vec<HeaderField<'_>> = Vec::new();
    // (name, value start) of the field being read; its value runs to the end of its last folded line.
    let mut open: Option<(&[u8], usize, usize)> = None;
    let mut pos = 0;
    loop {
        let Some(line) = line_at(input, pos) else {
            // A partial first line that is already no field name is malformed rather than incomplete.
            if let Some(off) = bad_partial_name(&input[pos..], open.is_some()) {
                return Err(DecodeError::malformed(
                    item,
                    pos + off,
                    "a header line is `Name: value` (name: printable ASCII, no spaces)",
                ));
            }
            return Err(DecodeError::Incomplete(item));
        };
        if line.text.is_empty() {
            if let Some((name, start, end)) = open.take() {
                fields.push(HeaderField {
                    name,
                    value: &input[start..end],
                });
            }
            return Ok(Decoded {
                value: fields,
                consumed: line.next,
            });
        }
        if matches!(line.text[0], b' ' | b'\t') {
            match open.as_mut() {
                Some((_, _, end)) => *end = line.start + line.text.len(),
                None => {
                    return Err(DecodeError::malformed(
                        item,
                        pos,
                        "a folded continuation line comes before any field",
                    ))
                }
            }
        } else {
            if let Some((name, start, end)) = open.take() {
                fields.push(HeaderField {
                    name,
                    value: &input[start..end],
                });
            }
            let (name, colon) = field_name(line.text).map_err(|off| {
                DecodeError::malformed(
                    item,
                    pos + off,
                    "a header line is `Name: value` (name: printable ASCII, no spaces)",
                )
            })?;
            let start = line.start + colon + 1;
            open = Some((name, start, line.start + line.text.len()));
        }
        pos = line.next;
    }
}

/// The field name and the index of its colon, or the offset of the first byte that is not allowed.
fn field_name(text: &[u8]) -> Result<(&[u8], usize), usize> {
    let res: IResult<&[u8], &[u8]> =
        take_while1(|b: u8| (33..=126).contains(&b) && b != b':')(text);
    let Ok((rest, name)) = res else { return Err(0) };
    // Obsolete syntax (RFC 5322 §4.5.3) allows white space before the colon.
    let ws = rest
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t'))
        .count();
    match rest.get(ws) {
        Some(b':') => Ok((name, name.len() + ws)),
        _ => Err(name.len()),
    }
}

fn bad_partial_name(rest: &[u8], continuing: bool) -> Option<usize> {
    if rest.is_empty() || (continuing && matches!(rest[0], b' ' | b'\t')) {
        return None;
    }
    if rest[0] == b'\r' && rest.len() == 1 {
        return None;
    }
    match rest
        .iter()
        .position(|&b| !(33..=126).contains(&b) || b == b':')
    {
        Some(0) if matches!(rest[0], b' ' | b'\t') => Some(0),
        Some(0) => Some(0),
        Some(i) if rest[i] == b':' => None,
        Some(i) if matches!(rest[i], b' ' | b'\t') => None, // obsolete `Name :` may still come
        Some(i) => Some(i),
        None => None,
    }
}

/// Unfolds a raw field value: line breaks removed, outer white space trimmed.
pub fn unfold(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    unfold_into(value, &mut out);
    out
}

/// [`unfold`] into a reusable buffer (cleared first).
pub fn unfold_into(value: &[u8], out: &mut Vec<u8>) {
    out.clear();
    // Copy the runs between line breaks whole rather than byte by byte.
    for run in value.trim_ascii().split(|b| *b == b'\r' || *b == b'\n') {
        out.extend_from_slice(run);
    }
}
