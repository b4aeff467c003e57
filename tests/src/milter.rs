//! A minimal milter *client* (the MTA's side of the protocol, version 6), written from the protocol
//! description independently of enforcer's codec, to drive enforcer's milter the way Postfix does
//! and to misbehave in ways Postfix never would (garbage, oversized frames, disconnects mid-message).
//!
//! A frame is a 4-byte big-endian length (counting the command byte), one command byte, its data.

use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// `SMFIP_*` flags the client offers and then honours: stages the milter asks to skip (`NO*`) are
/// not sent, stages flagged "no reply" (`NR_*`) are not waited for.
pub mod proto {
    pub const NOCONNECT: u32 = 0x1;
    pub const NOHELO: u32 = 0x2;
    pub const NOMAIL: u32 = 0x4;
    pub const NORCPT: u32 = 0x8;
    pub const NOBODY: u32 = 0x10;
    pub const NOHDRS: u32 = 0x20;
    pub const NOEOH: u32 = 0x40;
    pub const NR_HDR: u32 = 0x80;
    pub const NODATA: u32 = 0x200;
    pub const NR_CONN: u32 = 0x1000;
    pub const NR_HELO: u32 = 0x2000;
    pub const NR_MAIL: u32 = 0x4000;
    pub const NR_RCPT: u32 = 0x8000;
    pub const NR_EOH: u32 = 0x40000;
    /// Everything Postfix 3.7 offers.
    pub const ALL: u32 = 0x1f_ffff;
}

/// One reply from the milter: its command byte and data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub cmd: u8,
    pub data: Vec<u8>,
}

impl Reply {
    /// `'y'` (replycode) text, e.g. `450 4.7.230 …`.
    pub fn code_text(&self) -> Option<String> {
        (self.cmd == b'y').then(|| {
            String::from_utf8_lossy(self.data.strip_suffix(b"\0").unwrap_or(&self.data))
                .into_owned()
        })
    }

    pub fn is_continue(&self) -> bool {
        self.cmd == b'c'
    }
}

/// Encodes one frame.
pub fn frame(cmd: u8, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(5 + data.len());
    f.extend_from_slice(&(data.len() as u32 + 1).to_be_bytes());
    f.push(cmd);
    f.extend_from_slice(data);
    f
}

fn cstrs(parts: &[&[u8]]) -> Vec<u8> {
    let mut d = Vec::new();
    for p in parts {
        d.extend_from_slice(p);
        d.push(0);
    }
    d
}

/// A milter session from the MTA's side.
pub struct Client {
    pub stream: TcpStream,
    /// The protocol flags the milter chose.
    pub protocol: u32,
}

impl Client {
    /// Connects (bounded) to a milter listening on `addr`; reads and writes time out after 10 s.
    pub fn connect(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        Ok(Client {
            stream,
            protocol: 0,
        })
    }

    pub fn send(&mut self, cmd: u8, data: &[u8]) -> io::Result<()> {
        self.stream.write_all(&frame(cmd, data))
    }

    /// Reads one reply frame (at most 1 MiB).
    pub fn read(&mut self) -> io::Result<Reply> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 || len > 1 << 20 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("reply frame length {len}"),
            ));
        }
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body)?;
        Ok(Reply {
            cmd: body[0],
            data: body[1..].to_vec(),
        })
    }

    /// Option negotiation offering version 6, every action and `offered` protocol flags; returns
    /// the milter's answer (version, actions, protocol) and remembers its protocol flags.
    pub fn negotiate(&mut self, offered: u32) -> io::Result<(u32, u32, u32)> {
        let mut d = Vec::new();
        d.extend_from_slice(&6u32.to_be_bytes());
        d.extend_from_slice(&0x1ffu32.to_be_bytes());
        d.extend_from_slice(&offered.to_be_bytes());
        self.send(b'O', &d)?;
        let r = self.read()?;
        if r.cmd != b'O' || r.data.len() < 12 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("negotiation answered with {r:?}"),
            ));
        }
        let word = |i: usize| u32::from_be_bytes(r.data[i..i + 4].try_into().unwrap());
        self.protocol = word(8);
        Ok((word(0), word(4), word(8)))
    }

    /// Sends a stage unless the milter asked to skip it (`skip` flag); waits for its reply unless
    /// it is flagged "no reply" (`no_reply` flag). `None`: nothing sent or nothing to wait for.
    fn stage(
        &mut self,
        skip: u32,
        no_reply: u32,
        cmd: u8,
        data: &[u8],
    ) -> io::Result<Option<Reply>> {
        if skip != 0 && self.protocol & skip != 0 {
            return Ok(None);
        }
        self.send(cmd, data)?;
        if no_reply != 0 && self.protocol & no_reply != 0 {
            return Ok(None);
        }
        self.read().map(Some)
    }

    /// `'C'` for an IPv4 or IPv6 client (family `'4'`/`'6'`), port 25000.
    pub fn conn(&mut self, host: &str, ip: std::net::IpAddr) -> io::Result<Option<Reply>> {
        let mut d = cstrs(&[host.as_bytes()]);
        d.push(if ip.is_ipv4() { b'4' } else { b'6' });
        d.extend_from_slice(&25000u16.to_be_bytes());
        d.extend_from_slice(ip.to_string().as_bytes());
        d.push(0);
        self.stage(proto::NOCONNECT, proto::NR_CONN, b'C', &d)
    }

    pub fn helo(&mut self, name: &str) -> io::Result<Option<Reply>> {
        self.stage(
            proto::NOHELO,
            proto::NR_HELO,
            b'H',
            &cstrs(&[name.as_bytes()]),
        )
    }

    pub fn mail(&mut self, from: &str) -> io::Result<Option<Reply>> {
        self.stage(
            proto::NOMAIL,
            proto::NR_MAIL,
            b'M',
            &cstrs(&[from.as_bytes()]),
        )
    }

    pub fn rcpt(&mut self, to: &str) -> io::Result<Option<Reply>> {
        self.stage(
            proto::NORCPT,
            proto::NR_RCPT,
            b'R',
            &cstrs(&[to.as_bytes()]),
        )
    }

    pub fn header(&mut self, name: &str, value: &str) -> io::Result<Option<Reply>> {
        self.stage(
            proto::NOHDRS,
            proto::NR_HDR,
            b'L',
            &cstrs(&[name.as_bytes(), value.as_bytes()]),
        )
    }

    pub fn eoh(&mut self) -> io::Result<Option<Reply>> {
        self.stage(proto::NOEOH, proto::NR_EOH, b'N', &[])
    }

    pub fn body(&mut self, chunk: &[u8]) -> io::Result<Option<Reply>> {
        self.stage(proto::NOBODY, 0, b'B', chunk)
    }

    /// End of message: always answered.
    pub fn eom(&mut self) -> io::Result<Reply> {
        self.send(b'E', &[])?;
        self.read()
    }

    pub fn quit(&mut self) -> io::Result<()> {
        self.send(b'Q', &[])
    }

    /// One whole message from `ip` the way Postfix sends it: connect, HELO, MAIL, RCPT, the header
    /// `fields` (`(name, value)`), end of headers, a body line, end of message. Returns the MAIL
    /// reply (if one was sent) and the end-of-message reply.
    pub fn message(
        &mut self,
        ip: std::net::IpAddr,
        helo: &str,
        fields: &[(&str, &str)],
    ) -> io::Result<(Option<Reply>, Reply)> {
        self.conn(&format!("[{ip}]"), ip)?;
        self.helo(helo)?;
        let mail = self.mail("<sender@sender.example>")?;
        if let Some(r) = &mail {
            if !r.is_continue() {
                return Ok((mail.clone(), r.clone()));
            }
        }
        self.rcpt("<user@enforcer.test>")?;
        for (n, v) in fields {
            self.header(n, v)?;
        }
        self.eoh()?;
        self.body(b"hello\r\n")?;
        let eom = self.eom()?;
        Ok((mail, eom))
    }
}
