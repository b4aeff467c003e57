//! Sans-IO Postfix policy delegation protocol codec (`check_policy_service`, SMTPD_POLICY_README):
//! a request is `name=value` lines ending in LF, closed by an empty line; the answer is
//! `action=<what>` then an empty line. One connection carries many requests.

use bytes::{BufMut, Bytes, BytesMut};

use crate::smtp::line::find_lf;

/// A request larger than this is not from Postfix (its requests are a few hundred bytes).
pub const DEFAULT_MAX_REQUEST: usize = 64 * 1024;

/// One request: its attributes in arrival order (a later duplicate wins in [`Request::get`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    attrs: Vec<(String, String)>,
}

impl Request {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn attrs(&self) -> &[(String, String)] {
        &self.attrs
    }

    pub fn new(attrs: Vec<(String, String)>) -> Self {
        Request { attrs }
    }

    /// The request as Postfix writes it.
    pub fn encode(&self, out: &mut BytesMut) {
        for (n, v) in &self.attrs {
            out.extend_from_slice(n.as_bytes());
            out.put_u8(b'=');
            out.extend_from_slice(v.as_bytes());
            out.put_u8(b'\n');
        }
        out.put_u8(b'\n');
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("policy request longer than {max} bytes without its closing empty line")]
    TooLong { max: usize },
    #[error("policy request line {line} has no `=`: expected `name=value`")]
    NoEquals { line: usize },
    #[error("policy request line {line} has an empty attribute name")]
    EmptyName { line: usize },
    #[error("policy request line {line} is not UTF-8 text")]
    NotText { line: usize },
}

/// Splits requests off a growing buffer, bounded in size.
#[derive(Clone, Copy, Debug)]
pub struct Decoder {
    max_request: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DEFAULT_MAX_REQUEST)
    }
}

impl Decoder {
    pub fn new(max_request: usize) -> Self {
        Decoder {
            max_request: max_request.max(64),
        }
    }

    /// Takes one whole request off the front of `buf`. `Ok(None)`: wait for more bytes. Leading empty
    /// lines (a stray blank between requests) are skipped.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Request>, RequestError> {
        let Some(end) = request_end(buf) else {
            if buf.len() > self.max_request {
                return Err(RequestError::TooLong {
                    max: self.max_request,
                });
            }
            return Ok(None);
        };
        if end > self.max_request {
            return Err(RequestError::TooLong {
                max: self.max_request,
            });
        }
        let raw: Bytes = buf.split_to(end).freeze();
        let mut attrs = Vec::new();
        for (i, line) in raw.split(|&b| b == b'\n').enumerate() {
            // CRLF-tolerant: every trailing CR goes, so no value ends in one.
            let line = trim_cr(line);
            if line.is_empty() {
                continue;
            }
            let n = i + 1;
            let text = std::str::from_utf8(line).map_err(|_| RequestError::NotText { line: n })?;
            let (name, value) = text
                .split_once('=')
                .ok_or(RequestError::NoEquals { line: n })?;
            if name.is_empty() {
                return Err(RequestError::EmptyName { line: n });
            }
            attrs.push((name.to_owned(), value.to_owned()));
        }
        if attrs.is_empty() {
            return Ok(None);
        }
        Ok(Some(Request { attrs }))
    }
}

/// Index just past the empty line closing the first request that has any attribute line.
fn request_end(buf: &[u8]) -> Option<usize> {
    let mut start = 0;
    let mut seen_attr = false;
    loop {
        let lf = find_lf(&buf[start..])? + start;
        let line = trim_cr(&buf[start..lf]);
        start = lf + 1;
        if line.is_empty() {
            if seen_attr {
                return Some(start);
            }
        } else {
            seen_attr = true;
        }
    }
}

fn trim_cr(mut line: &[u8]) -> &[u8] {
    while let [head @ .., b'\r'] = line {
        line = head;
    }
    line
}

/// The answer to one request, e.g. `DUNNO`, `450 4.7.230 text`, `550 5.7.230 text`.
pub fn encode_action(action: &str, out: &mut BytesMut) {
    out.extend_from_slice(b"action=");
    out.extend(
        action
            .bytes()
            .map(|b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &[u8] = b"request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nclient_address=10.200.0.2\nclient_name=unknown\nhelo_name=ex2013.example\nsender=a@b\nrecipient=c@d\n\n";

    #[test]
    fn decodes_a_postfix_request_byte_by_byte() {
        let d = Decoder::default();
        let mut buf = BytesMut::new();
        for (i, b) in REQ.iter().enumerate() {
            buf.put_u8(*b);
            let r = d.decode(&mut buf).unwrap();
            if i + 1 < REQ.len() {
                assert_eq!(r, None, "at byte {i}");
            } else {
                let r = r.unwrap();
                assert_eq!(r.get("client_address"), Some("10.200.0.2"));
                assert_eq!(r.get("helo_name"), Some("ex2013.example"));
                assert_eq!(r.get("missing"), None);
                assert_eq!(r.attrs().len(), 8);
            }
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn pipelined_requests_values_with_equals_and_crlf() {
        let mut buf = BytesMut::from(&b"\na=1\r\nb=x=y\r\n\r\nc=\n\n"[..]);
        let d = Decoder::default();
        let r = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!((r.get("a"), r.get("b")), (Some("1"), Some("x=y")));
        let r = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(r.get("c"), Some(""));
        assert!(buf.is_empty());
        let mut round = BytesMut::new();
        r.encode(&mut round);
        assert_eq!(d.decode(&mut round).unwrap(), Some(r));
    }

    #[test]
    fn malformed_requests_are_errors() {
        let d = Decoder::default();
        let e = |s: &[u8]| d.decode(&mut BytesMut::from(s)).unwrap_err();
        assert_eq!(e(b"a=1\nnoequals\n\n"), RequestError::NoEquals { line: 2 });
        assert_eq!(e(b"=v\n\n"), RequestError::EmptyName { line: 1 });
        assert_eq!(e(b"a=\xff\n\n"), RequestError::NotText { line: 1 });
        let small = Decoder::new(64);
        let long = [b'a'; 65];
        assert_eq!(
            small.decode(&mut BytesMut::from(&long[..])).unwrap_err(),
            RequestError::TooLong { max: 64 }
        );
        let mut long = b"a=".to_vec();
        long.extend_from_slice(&[b'x'; 80]);
        long.extend_from_slice(b"\n\n");
        assert_eq!(
            small.decode(&mut BytesMut::from(&long[..])).unwrap_err(),
            RequestError::TooLong { max: 64 }
        );
    }

    #[test]
    fn actions() {
        let mut out = BytesMut::new();
        encode_action("450 4.7.230 a\r\nb", &mut out);
        encode_action("DUNNO", &mut out);
        assert_eq!(&out[..], b"action=450 4.7.230 a  b\n\naction=DUNNO\n\n");
    }
}
