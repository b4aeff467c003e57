//! Sans-IO milter protocol (version 6) codec: frames in, [`Command`]s out; [`Response`]s in, bytes out.
//!
//! A frame is a 4-byte big-endian length, then that many bytes: one command byte and its data. The
//! length counts the command byte, so 0 is malformed, and a frame longer than the decoder's limit is
//! refused before any of it is buffered (a peer cannot make us hold more than the limit per session).
//! Strings inside commands are NUL-terminated; nom does the parsing and never leaks out of this file.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use nom::bytes::complete::{take, take_until};
use nom::number::complete::{be_u16, be_u32, u8 as byte};
use nom::{IResult, Parser};

/// The protocol version this codec speaks (Postfix ≥ 2.6 and Sendmail 8.14 offer it).
pub const VERSION: u32 = 6;
/// Default and largest useful frame: Postfix sends at most 64 KiB of body per frame and headers far
/// smaller; anything past this is a broken or hostile peer.
pub const DEFAULT_MAX_FRAME: usize = 128 * 1024;

/// `SMFIP_*` protocol flags: stages the MTA may skip and stages that need no reply.
pub mod proto {
    pub const NOCONNECT: u32 = 0x1;
    pub const NOHELO: u32 = 0x2;
    pub const NOMAIL: u32 = 0x4;
    pub const NORCPT: u32 = 0x8;
    pub const NOBODY: u32 = 0x10;
    pub const NOHDRS: u32 = 0x20;
    pub const NOEOH: u32 = 0x40;
    pub const NR_HDR: u32 = 0x80;
    pub const NOUNKNOWN: u32 = 0x100;
    pub const NODATA: u32 = 0x200;
    pub const SKIP: u32 = 0x400;
    pub const RCPT_REJ: u32 = 0x800;
    pub const NR_CONN: u32 = 0x1000;
    pub const NR_HELO: u32 = 0x2000;
    pub const NR_MAIL: u32 = 0x4000;
    pub const NR_RCPT: u32 = 0x8000;
    pub const NR_DATA: u32 = 0x10000;
    pub const NR_UNKN: u32 = 0x20000;
    pub const NR_EOH: u32 = 0x40000;
    pub const NR_BODY: u32 = 0x80000;
    pub const HDR_LEADSPC: u32 = 0x100000;
}

/// Which kind of peer address the connect command carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `'U'`: the MTA does not know (e.g. a local pipe); no port or address follows.
    Unknown,
    /// `'L'`: a unix-domain socket; the "address" is a path.
    Unix,
    Inet,
    Inet6,
}

/// One command from the MTA. Byte fields share the frame's buffer (no copies).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `'O'`: option negotiation: what the MTA offers.
    OptNeg {
        version: u32,
        actions: u32,
        protocol: u32,
    },
    /// `'D'`: macros for the command named by `stage` (e.g. `b'C'` for connect).
    Macros {
        stage: u8,
        pairs: Vec<(Bytes, Bytes)>,
    },
    /// `'C'`: the SMTP client: its host name (or `[addr]`), address family, port and address text.
    Connect {
        hostname: Bytes,
        family: Family,
        port: u16,
        address: Bytes,
    },
    /// `'H'`: the HELO/EHLO argument.
    Helo(Bytes),
    /// `'M'`: envelope sender, then ESMTP parameters.
    Mail(Vec<Bytes>),
    /// `'R'`: one recipient, then ESMTP parameters.
    Rcpt(Vec<Bytes>),
    /// `'T'`: the DATA command.
    Data,
    /// `'L'`: one header field, name and (unfolded by the MTA or not) value.
    Header { name: Bytes, value: Bytes },
    /// `'N'`: end of headers.
    EndOfHeaders,
    /// `'B'`: a body chunk.
    Body(Bytes),
    /// `'E'`: end of message.
    EndOfMessage,
    /// `'A'`: the current message is abandoned; the connection stays.
    Abort,
    /// `'Q'`: the session ends.
    Quit,
    /// `'K'`: this SMTP connection ends, a new one follows on the same milter connection.
    QuitNewConnection,
    /// `'U'`: an SMTP command the MTA did not recognise.
    Unknown(Bytes),
}

impl Command {
    /// Short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Command::OptNeg { .. } => "optneg",
            Command::Macros { .. } => "macro",
            Command::Connect { .. } => "connect",
            Command::Helo(_) => "helo",
            Command::Mail(_) => "mail",
            Command::Rcpt(_) => "rcpt",
            Command::Data => "data",
            Command::Header { .. } => "header",
            Command::EndOfHeaders => "eoh",
            Command::Body(_) => "body",
            Command::EndOfMessage => "eom",
            Command::Abort => "abort",
            Command::Quit => "quit",
            Command::QuitNewConnection => "quit_nc",
            Command::Unknown(_) => "unknown",
        }
    }

    /// The peer address of a connect command, IPv4-mapped IPv6 normalised to IPv4. `None` for unix
    /// sockets, unknown families and unparsable address text (Postfix writes `[` `]` around nothing).
    pub fn peer_ip(&self) -> Option<IpAddr> {
        let Command::Connect {
            family, address, ..
        } = self
        else {
            return None;
        };
        let text = std::str::from_utf8(address).ok()?;
        let text = text.trim_start_matches('[').trim_end_matches(']');
        match family {
            Family::Inet => text.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
            Family::Inet6 => {
                // Sendmail writes "IPv6:" before the address.
                let text = text.strip_prefix("IPv6:").unwrap_or(text);
                let v6 = text.parse::<Ipv6Addr>().ok()?;
                Some(match v6.to_ipv4_mapped() {
                    Some(v4) => IpAddr::V4(v4),
                    None => IpAddr::V6(v6),
                })
            }
            Family::Unix | Family::Unknown => None,
        }
    }
}

/// What the milter answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// `'O'`: the negotiated version, actions we may take and protocol flags we want.
    OptNeg {
        version: u32,
        actions: u32,
        protocol: u32,
    },
    /// `'c'`: go on to the next stage.
    Continue,
    /// `'a'`: accept this message (or connection) without asking us again.
    Accept,
    /// `'y'`: refuse with this SMTP reply, e.g. `450 4.7.230 text`. Its first digit decides: 4 is a
    /// temporary, 5 a permanent failure.
    ReplyCode(String),
}

impl Response {
    /// Appends the frame for this response to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Response::OptNeg {
                version,
                actions,
                protocol,
            } => {
                out.put_u32(13);
                out.put_u8(b'O');
                out.put_u32(*version);
                out.put_u32(*actions);
                out.put_u32(*protocol);
            }
            Response::Continue => {
                out.put_u32(1);
                out.put_u8(b'c');
            }
            Response::Accept => {
                out.put_u32(1);
                out.put_u8(b'a');
            }
            Response::ReplyCode(text) => {
                // The MTA reads a C string: a NUL inside would cut it; CR/LF would break the SMTP reply.
                let clean = text.bytes().map(|b| match b {
                    0 | b'\r' | b'\n' => b' ',
                    b => b,
                });
                out.put_u32(text.len() as u32 + 2);
                out.put_u8(b'y');
                out.extend(clean);
                out.put_u8(0);
            }
        }
    }
}

/// Why a frame could not be decoded. Every variant ends the session: the stream position is lost.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("milter frame announces {len} bytes, more than the {max}-byte limit; the peer is not speaking the milter protocol or is broken")]
    TooLong { len: usize, max: usize },
    #[error("milter frame of length 0 has no command byte")]
    Empty,
    #[error("milter command {cmd:?} is not part of protocol version 6")]
    UnknownCommand { cmd: char },
    #[error("malformed milter {command} command: {reason}")]
    Malformed {
        command: &'static str,
        reason: &'static str,
    },
}

/// Splits frames off a growing buffer, bounded in size.
#[derive(Clone, Copy, Debug)]
pub struct Decoder {
    max_frame: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DEFAULT_MAX_FRAME)
    }
}

impl Decoder {
    pub fn new(max_frame: usize) -> Self {
        Decoder {
            max_frame: max_frame.max(16),
        }
    }

    /// How many more bytes the frame at the front of `buf` needs (0 when a whole frame is there). Lets
    /// the caller reserve exactly, and refuse an oversized frame before reading it.
    pub fn needed(&self, buf: &[u8]) -> Result<usize, FrameError> {
        let Some(len) = buf.get(..4) else {
            return Ok(4 - buf.len());
        };
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len == 0 {
            return Err(FrameError::Empty);
        }
        if len > self.max_frame {
            return Err(FrameError::TooLong {
                len,
                max: self.max_frame,
            });
        }
        Ok((4 + len).saturating_sub(buf.len()))
    }

    /// Takes one whole frame off the front of `buf` and parses it. `Ok(None)`: wait for more bytes.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Command>, FrameError> {
        if self.needed(buf)? > 0 {
            return Ok(None);
        }
        let len = buf.get_u32() as usize;
        let frame = buf.split_to(len).freeze();
        parse_command(frame).map(Some)
    }
}

/// Parses one frame's payload (command byte and data).
pub fn parse_command(frame: Bytes) -> Result<Command, FrameError> {
    let Some((&cmd, data)) = frame.split_first() else {
        return Err(FrameError::Empty);
    };
    let sub = |s: &[u8]| frame.slice_ref(s);
    let bad = |command, reason| FrameError::Malformed { command, reason };
    let none = |command: &'static str, c: Command| {
        if data.is_empty() {
            Ok(c)
        } else {
            Err(bad(command, "this command carries no data"))
        }
    };
    Ok(match cmd {
        b'O' => match words3(data) {
            // Newer MTAs may append fields; version 6 defines three words.
            Ok((_, (version, actions, protocol))) => Command::OptNeg {
                version,
                actions,
                protocol,
            },
            Err(_) => return Err(bad("optneg", "needs three 32-bit words")),
        },
        b'D' => {
            let (&stage, rest) = data
                .split_first()
                .ok_or(bad("macro", "no command letter"))?;
            let strs = cstrings(rest).ok_or(bad("macro", "a name or value lacks its NUL"))?;
            if strs.len() % 2 != 0 {
                return Err(bad("macro", "a macro name has no value"));
            }
            let pairs = strs
                .chunks_exact(2)
                .map(|p| (sub(p[0]), sub(p[1])))
                .collect();
            Command::Macros { stage, pairs }
        }
        b'C' => {
            let (hostname, family, port, address) = connect(data)
                .map_err(|_| bad("connect", "expected host\\0 family [port address\\0]"))?
                .1;
            Command::Connect {
                hostname: sub(hostname),
                family,
                port,
                address: sub(address),
            }
        }
        b'H' => Command::Helo(sub(
            one_cstring(data).ok_or(bad("helo", "the name lacks its NUL"))?
        )),
        b'M' => Command::Mail(
            args(data)
                .ok_or(bad("mail", "an argument lacks its NUL"))?
                .into_iter()
                .map(sub)
                .collect(),
        ),
        b'R' => Command::Rcpt(
            args(data)
                .ok_or(bad("rcpt", "an argument lacks its NUL"))?
                .into_iter()
                .map(sub)
                .collect(),
        ),
        b'L' => {
            let strs = cstrings(data).ok_or(bad("header", "name or value lacks its NUL"))?;
            match strs[..] {
                [name, value] if !name.is_empty() => Command::Header {
                    name: sub(name),
                    value: sub(value),
                },
                _ => {
                    return Err(bad(
                        "header",
                        "expected exactly a non-empty name and a value",
                    ))
                }
            }
        }
        b'U' => Command::Unknown(sub(
            one_cstring(data).ok_or(bad("unknown", "the command lacks its NUL"))?
        )),
        b'B' => Command::Body(frame.slice(1..)),
        b'T' => none("data", Command::Data)?,
        b'N' => none("eoh", Command::EndOfHeaders)?,
        b'E' => Command::EndOfMessage, // may carry a last body chunk, which we never read
        b'A' => none("abort", Command::Abort)?,
        b'Q' => none("quit", Command::Quit)?,
        b'K' => none("quit_nc", Command::QuitNewConnection)?,
        other => return Err(FrameError::UnknownCommand { cmd: other as char }),
    })
}

/// A connect command's host name, family, port and address.
type ConnectFields<'a> = (&'a [u8], Family, u16, &'a [u8]);

/// `host\0 family` then, unless the family is unknown, `port(be16) address\0`.
fn connect(i: &[u8]) -> IResult<&[u8], ConnectFields<'_>> {
    let (i, hostname) = cstr(i)?;
    let (i, fam) = byte(i)?;
    let family = match fam {
        b'U' => return Ok((i, (hostname, Family::Unknown, 0, &i[..0]))),
        b'L' => Family::Unix,
        b'4' => Family::Inet,
        b'6' => Family::Inet6,
        _ => {
            return Err(nom::Err::Error(nom::error::Error::new(
                i,
                nom::error::ErrorKind::Alt,
            )))
        }
    };
    let (i, port) = be_u16(i)?;
    let (i, address) = cstr(i)?;
    Ok((i, (hostname, family, port, address)))
}

fn words3(i: &[u8]) -> IResult<&[u8], (u32, u32, u32)> {
    (be_u32, be_u32, be_u32).parse(i)
}

fn cstr(i: &[u8]) -> IResult<&[u8], &[u8]> {
    let (i, s) = take_until(&b"\0"[..]).parse(i)?;
    let (i, _) = take(1usize).parse(i)?;
    Ok((i, s))
}

/// Every NUL-terminated string in `data`; `None` if bytes follow the last NUL.
fn cstrings(mut data: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let (rest, s) = cstr(data).ok()?;
        out.push(s);
        data = rest;
    }
    Some(out)
}

fn one_cstring(data: &[u8]) -> Option<&[u8]> {
    match cstr(data) {
        Ok(([], s)) => Some(s),
        _ => None,
    }
}

/// MAIL/RCPT: at least the address, then ESMTP arguments.
fn args(data: &[u8]) -> Option<Vec<&[u8]>> {
    cstrings(data).filter(|v| !v.is_empty())
}

/// Builds the frame for a command, as an MTA would send it (for tests, fuzz round trips and the
/// benchmark's synthetic peer).
pub fn encode_command(cmd: &Command, out: &mut BytesMut) {
    let mut body = BytesMut::new();
    let letter = match cmd {
        Command::OptNeg {
            version,
            actions,
            protocol,
        } => {
            body.put_u32(*version);
            body.put_u32(*actions);
            body.put_u32(*protocol);
            b'O'
        }
        Command::Macros { stage, pairs } => {
            body.put_u8(*stage);
            for (n, v) in pairs {
                put_cstr(&mut body, n);
                put_cstr(&mut body, v);
            }
            b'D'
        }
        Command::Connect {
            hostname,
            family,
            port,
            address,
        } => {
            put_cstr(&mut body, hostname);
            match family {
                Family::Unknown => body.put_u8(b'U'),
                f => {
                    body.put_u8(match f {
                        Family::Unix => b'L',
                        Family::Inet => b'4',
                        _ => b'6',
                    });
                    body.put_u16(*port);
                    put_cstr(&mut body, address);
                }
            }
            b'C'
        }
        Command::Helo(h) => {
            put_cstr(&mut body, h);
            b'H'
        }
        Command::Mail(a) | Command::Rcpt(a) => {
            for s in a {
                put_cstr(&mut body, s);
            }
            if matches!(cmd, Command::Mail(_)) {
                b'M'
            } else {
                b'R'
            }
        }
        Command::Data => b'T',
        Command::Header { name, value } => {
            put_cstr(&mut body, name);
            put_cstr(&mut body, value);
            b'L'
        }
        Command::EndOfHeaders => b'N',
        Command::Body(b) => {
            body.extend_from_slice(b);
            b'B'
        }
        Command::EndOfMessage => b'E',
        Command::Abort => b'A',
        Command::Quit => b'Q',
        Command::QuitNewConnection => b'K',
        Command::Unknown(u) => {
            put_cstr(&mut body, u);
            b'U'
        }
    };
    out.put_u32(body.len() as u32 + 1);
    out.put_u8(letter);
    out.extend_from_slice(&body);
}

fn put_cstr(out: &mut BytesMut, s: &[u8]) {
    out.extend_from_slice(s);
    out.put_u8(0);
}

/// Parses a response frame (the MTA's side; for tests and the benchmark peer). `Ok(None)`: incomplete.
pub fn decode_response(buf: &mut BytesMut) -> Result<Option<Response>, FrameError> {
    if Decoder::default().needed(buf)? > 0 {
        return Ok(None);
    }
    let len = buf.get_u32() as usize;
    let frame = buf.split_to(len);
    let bad = |reason| FrameError::Malformed {
        command: "response",
        reason,
    };
    Ok(Some(match (frame[0], &frame[1..]) {
        (b'c', []) => Response::Continue,
        (b'a', []) => Response::Accept,
        (b'O', rest) => {
            let (_, (version, actions, protocol)) =
                words3(rest).map_err(|_| bad("optneg needs three words"))?;
            Response::OptNeg {
                version,
                actions,
                protocol,
            }
        }
        (b'y', rest) => {
            let text = one_cstring(rest).ok_or(bad("reply code lacks its NUL"))?;
            Response::ReplyCode(String::from_utf8_lossy(text).into_owned())
        }
        (other, _) => return Err(FrameError::UnknownCommand { cmd: other as char }),
    }))
}

#[cfg(test)]
mod tests;
