//! SMTP replies (RFC 5321 §4.2): `NNN text`, multi-line `NNN-text` … `NNN text`, optional enhanced status
//! code (RFC 3463, e.g. `4.7.230`). A server greeting is a reply with code 220 (or 554, "no service").

use nom::bytes::complete::take_while_m_n;
use nom::character::complete::u16 as dec_u16;
use nom::IResult;

use super::line::line_at;
use super::{DecodeError, Decoded, Item};

/// One SMTP reply. `lines` hold the text after `NNN-`/`NNN ` of each line, exactly as sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply<'a> {
    pub code: u16,
    /// The enhanced status code at the start of the first line's text, if any.
    pub enhanced: Option<EnhancedStatus>,
    pub lines: Vec<&'a [u8]>,
}

/// RFC 3463 `class.subject.detail`, e.g. `5.7.230`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnhancedStatus {
    pub class: u8,
    pub subject: u16,
    pub detail: u16,
}

impl std::fmt::Display for EnhancedStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

impl Reply<'_> {
    /// The reply as it goes on the wire (CRLF line ends).
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let n = self.lines.len();
        for (i, text) in self.lines.iter().enumerate() {
            out.extend_from_slice(format!("{:03}", self.code).as_bytes());
            if i + 1 < n {
                out.push(b'-');
                out.extend_from_slice(text);
            } else if !text.is_empty() {
                out.push(b' ');
                out.extend_from_slice(text);
            }
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// Text of all lines, enhanced status codes removed, joined by single spaces (lossy UTF-8).
    pub fn text(&self) -> String {
        let mut s = String::new();
        for line in &self.lines {
            let t = match enhanced_status(line) {
                Ok((rest, _)) => rest,
                Err(_) => line,
            };
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(&String::from_utf8_lossy(t.trim_ascii()));
        }
        s
    }
}

/// Decodes one complete reply from the start of `input`.
pub fn decode_reply(input: &[u8]) -> Result<Decoded<Reply<'_>>, DecodeError> {
    decode(input, Item::Reply)
}

/// Decodes a server greeting: a reply whose code is 220 (service ready) or 554 (no service).
pub fn decode_greeting(input: &[u8]) -> Result<Decoded<Reply<'_>>, DecodeError> {
    let d = decode(input, Item::Greeting)?;
    if d.value.code != 220 && d.value.code != 554 {
        return Err(DecodeError::malformed(
            Item::Greeting,
            0,
            "a greeting must have code 220 or 554",
        ));
    }
    Ok(d)
}

pub(crate) fn decode(input: &[u8], item: Item) -> Result<Decoded<Reply<'_>>, DecodeError> {
    let mut pos = 0;
    let mut code = None;
    let mut lines = Vec::new();
    loop {
        let Some(line) = line_at(input, pos) else {
            // A partial line that already cannot be a reply line is malformed, not incomplete.
            let rest = &input[pos..];
            if let Some(off) = bad_prefix(rest) {
                return Err(DecodeError::malformed(
                    item,
                    pos + off,
                    "a reply line starts with a 3-digit code 200-599",
                ));
            }
            return Err(DecodeError::Incomplete(item));
        };
        let (c, last, text) = reply_line(line.text)
            .map_err(|(off, reason)| DecodeError::malformed(item, line.start + off, reason))?;
        match code {
            None => code = Some(c),
            Some(prev) if prev != c => {
                return Err(DecodeError::malformed(
                    item,
                    line.start,
                    "a multi-line reply changes its code",
                ));
            }
            Some(_) => {}
        }
        lines.push(text);
        pos = line.next;
        if last {
            let code = code.unwrap_or(c);
            let enhanced = lines
                .first()
                .and_then(|t| enhanced_status(t).ok())
                .map(|(_, e)| e);
            // Enhanced codes share the reply's class (RFC 3463 §2); otherwise it is just text.
            let enhanced = enhanced.filter(|e| u16::from(e.class) == code / 100);
            return Ok(Decoded {
                value: Reply {
                    code,
                    enhanced,
                    lines,
                },
                consumed: pos,
            });
        }
    }
}

/// Offset of the first byte of a partial line that rules out a reply line, if any.
fn bad_prefix(rest: &[u8]) -> Option<usize> {
    for (i, &b) in rest.iter().take(3).enumerate() {
        let ok = match i {
            0 => (b'1'..=b'5').contains(&b),
            _ => b.is_ascii_digit(),
        };
        if !ok {
            return Some(i);
        }
    }
    match rest.get(3) {
        Some(b' ' | b'-' | b'\r') | None => None,
        Some(_) => Some(3),
    }
}

/// `NNN`, then `-` (more lines follow) or ` `/nothing (last line), then text.
pub(crate) fn reply_line(line: &[u8]) -> Result<(u16, bool, &[u8]), (usize, &'static str)> {
    let res: IResult<&[u8], &[u8]> = take_while_m_n(3, 3, |b: u8| b.is_ascii_digit())(line);
    let Ok((rest, digits)) = res else {
        return Err((0, "a reply line starts with a 3-digit code 200-599"));
    };
    let code = u16::from(digits[0] - b'0') * 100
        + u16::from(digits[1] - b'0') * 10
        + u16::from(digits[2] - b'0');
    if !(100..600).contains(&code) {
        return Err((0, "reply codes run from 100 to 599"));
    }
    match rest.first() {
        None => Ok((code, true, rest)),
        Some(b' ') => Ok((code, true, &rest[1..])),
        Some(b'-') => Ok((code, false, &rest[1..])),
        Some(_) => Err((
            3,
            "the reply code must be followed by a space, '-' or the line end",
        )),
    }
}

/// `class.subject.detail` followed by a space or the end of the text.
pub(crate) fn enhanced_status(text: &[u8]) -> IResult<&[u8], EnhancedStatus> {
    use nom::bytes::complete::tag;
    use nom::error::{Error, ErrorKind};
    let (rest, class) = take_while_m_n(1, 1, |b: u8| matches!(b, b'2' | b'4' | b'5'))(text)?;
    let (rest, _) = tag(&b"."[..])(rest)?;
    let (rest, subject) = bounded(rest)?;
    let (rest, _) = tag(&b"."[..])(rest)?;
    let (rest, detail) = bounded(rest)?;
    match rest.first() {
        None | Some(b' ') | Some(b'\t') => {}
        Some(_) => return Err(nom::Err::Error(Error::new(rest, ErrorKind::Verify))),
    }
    let rest = rest.trim_ascii_start();
    Ok((
        rest,
        EnhancedStatus {
            class: class[0] - b'0',
            subject,
            detail,
        },
    ))
}

/// 1 to 3 digits (RFC 3463 limits subject and detail to 3 digits).
fn bounded(i: &[u8]) -> IResult<&[u8], u16> {
    let (rest, digits) = take_while_m_n(1, 3, |b: u8| b.is_ascii_digit())(i)?;
    let (_, n) = dec_u16(digits)?;
    Ok((rest, n))
}
