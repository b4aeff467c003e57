//! `EHLO`/`HELO` command lines (RFC 5321 §4.1.1.1) and the multi-line `250` EHLO response with its
//! extension keywords and parameters (`SIZE 37748736`, `AUTH NTLM`, `X-EXPS GSSAPI NTLM`, `XEXCH50`…).

use nom::bytes::complete::{tag_no_case, take_till, take_while1};
use nom::IResult;

use super::line::line_at;
use super::reply;
use super::{DecodeError, Decoded, Item};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeloVerb {
    Ehlo,
    Helo,
}

/// A client's `EHLO domain` / `HELO domain` line. `domain` is a name or an address literal `[1.2.3.4]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeloCommand<'a> {
    pub verb: HeloVerb,
    pub domain: &'a [u8],
}

impl HeloCommand<'_> {
    pub fn render(&self) -> Vec<u8> {
        let mut out = match self.verb {
            HeloVerb::Ehlo => b"EHLO ".to_vec(),
            HeloVerb::Helo => b"HELO ".to_vec(),
        };
        out.extend_from_slice(self.domain);
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// Decodes one `EHLO`/`HELO` line. Verbs are case-insensitive; anything after the domain is ignored
/// (some clients append junk) but the domain itself is required.
pub fn decode_ehlo_command(input: &[u8]) -> Result<Decoded<HeloCommand<'_>>, DecodeError> {
    let item = Item::EhloCommand;
    let Some(line) = line_at(input, 0) else {
        let n = input.len().min(4);
        if !b"EHLO"[..n].eq_ignore_ascii_case(&input[..n])
            && !b"HELO"[..n].eq_ignore_ascii_case(&input[..n])
        {
            return Err(DecodeError::malformed(item, 0, "expected EHLO or HELO"));
        }
        return Err(DecodeError::Incomplete(item));
    };
    let (rest, verb) = helo_verb(line.text)
        .map_err(|_| DecodeError::malformed(item, 0, "expected EHLO or HELO"))?;
    let after_verb = line.text.len() - rest.len();
    let spaces = rest
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t'))
        .count();
    if spaces == 0 && !rest.is_empty() {
        return Err(DecodeError::malformed(
            item,
            after_verb,
            "EHLO/HELO must be followed by a space",
        ));
    }
    let rest = &rest[spaces..];
    let res: IResult<&[u8], &[u8]> = take_till(|b: u8| b == b' ' || b == b'\t')(rest);
    let (_, domain) =
        res.map_err(|_| DecodeError::malformed(item, after_verb, "missing domain"))?;
    if domain.is_empty() {
        return Err(DecodeError::malformed(
            item,
            after_verb + spaces,
            "EHLO/HELO needs a domain or address literal",
        ));
    }
    Ok(Decoded {
        value: HeloCommand { verb, domain },
        consumed: line.next,
    })
}

fn helo_verb(i: &[u8]) -> IResult<&[u8], HeloVerb> {
    if let Ok((rest, _)) = tag_no_case::<_, _, nom::error::Error<&[u8]>>(&b"EHLO"[..])(i) {
        return Ok((rest, HeloVerb::Ehlo));
    }
    let (rest, _) = tag_no_case(&b"HELO"[..])(i)?;
    Ok((rest, HeloVerb::Helo))
}

/// One EHLO extension line: keyword and its space-separated parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EhloKeyword<'a> {
    pub name: &'a [u8],
    pub params: Vec<&'a [u8]>,
}

impl EhloKeyword<'_> {
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }
}

/// A successful (`250`) EHLO response: the server's domain, its greeting text, and its extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EhloResponse<'a> {
    pub domain: &'a [u8],
    pub greeting: &'a [u8],
    pub keywords: Vec<EhloKeyword<'a>>,
}

impl EhloResponse<'_> {
    pub fn has(&self, name: &str) -> bool {
        self.keywords.iter().any(|k| k.is(name))
    }

    pub fn render(&self) -> Vec<u8> {
        let mut first = self.domain.to_vec();
        if !self.greeting.is_empty() {
            first.push(b' ');
            first.extend_from_slice(self.greeting);
        }
        let mut lines = vec![first];
        for k in &self.keywords {
            let mut l = k.name.to_vec();
            for p in &k.params {
                l.push(b' ');
                l.extend_from_slice(p);
            }
            lines.push(l);
        }
        let r = reply::Reply {
            code: 250,
            enhanced: None,
            lines: lines.iter().map(|l| &l[..]).collect(),
        };
        r.render()
    }
}

/// Decodes a `250` EHLO response. Old-style `AUTH=LOGIN` lines are read as keyword `AUTH` with parameter
/// `LOGIN`.
pub fn decode_ehlo_response(input: &[u8]) -> Result<Decoded<EhloResponse<'_>>, DecodeError> {
    let item = Item::EhloResponse;
    let d = reply::decode(input, item)?;
    if d.value.code != 250 {
        return Err(DecodeError::malformed(
            item,
            0,
            "an EHLO response that accepts the client has code 250",
        ));
    }
    let first = d.value.lines[0];
    let (domain, greeting) = split_word(first);
    if domain.is_empty() {
        return Err(DecodeError::malformed(
            item,
            4,
            "the first line of an EHLO response names the server's domain",
        ));
    }
    let mut keywords = Vec::with_capacity(d.value.lines.len() - 1);
    for (n, text) in d.value.lines[1..].iter().enumerate() {
        let res: IResult<&[u8], &[u8]> =
            take_while1(|b: u8| !matches!(b, b' ' | b'\t' | b'='))(text);
        let Ok((rest, name)) = res else {
            // Where extension line `n` starts (walked only on this error path).
            let mut pos = 0;
            for _ in 0..=n {
                pos = line_at(input, pos).map_or(pos, |l| l.next);
            }
            return Err(DecodeError::malformed(
                item,
                pos + 4,
                "an EHLO extension line starts with a keyword",
            ));
        };
        let rest = rest.strip_prefix(b"=").unwrap_or(rest);
        let params = rest
            .split(|&b| b == b' ' || b == b'\t')
            .filter(|p| !p.is_empty())
            .collect();
        keywords.push(EhloKeyword { name, params });
    }
    Ok(Decoded {
        value: EhloResponse {
            domain,
            greeting,
            keywords,
        },
        consumed: d.consumed,
    })
}

fn split_word(t: &[u8]) -> (&[u8], &[u8]) {
    match t.iter().position(|&b| b == b' ' || b == b'\t') {
        Some(i) => (&t[..i], t[i + 1..].trim_ascii_start()),
        None => (t, &t[t.len()..]),
    }
}
