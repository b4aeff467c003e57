//! One responder session as a sans-IO state machine: bytes in, reply lines out. It never accepts
//! mail: MAIL FROM and every other command but EHLO/HELO, NOOP, RSET and QUIT are answered with the
//! sender's refusal. Bounded in lines, bytes and commands, so a client can hold one slot only as
//! long as the listener's timeouts allow.

use bytes::{Buf as _, BytesMut};

use crate::evidence::reply::Answer;

/// Longest command line, CRLF included (RFC 5321 §4.5.3.1.4).
pub const MAX_LINE: usize = 512;
/// Bytes a session may send in all.
pub const MAX_SESSION_BYTES: usize = 4096;
/// Commands a session may send in all.
pub const MAX_COMMANDS: usize = 20;

/// What the caller does after writing the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Read more.
    More,
    /// Close the connection.
    Close,
}

pub struct Session {
    host: String,
    /// The refusal line (`450 4.7.230 …` or `550 5.7.230 …`), `None` when the sender left its
    /// window between the SYN and this session.
    refusal: Option<String>,
    read: usize,
    commands: usize,
    helo: Option<String>,
}

impl Session {
    /// `host`: this server's name for the greeting; `answer`: the sender's answer at connect.
    pub fn new(host: &str, answer: &Answer) -> Self {
        Session {
            host: one_line(host),
            refusal: answer.smtp().map(|l| one_line(&l)),
            read: 0,
            commands: 0,
            helo: None,
        }
    }

    /// The `220` greeting.
    pub fn greeting(&self) -> String {
        format!("220 {} ESMTP enforcer notice service\r\n", self.host)
    }

    /// The reply code the sender reads at MAIL FROM (`450`, `550`, or `421` outside a window).
    pub fn code(&self) -> &str {
        self.refusal.as_deref().map_or("421", |r| &r[..3])
    }

    /// The first EHLO/HELO name the client sent: evidence for its address.
    pub fn helo(&self) -> Option<&str> {
        self.helo.as_deref()
    }

    /// Answers every complete line in `input` (pipelined commands in order) and consumes it.
    /// `replies` collects the code of each answer (for metrics).
    pub fn feed(
        &mut self,
        input: &mut BytesMut,
        out: &mut Vec<u8>,
        replies: &mut Vec<u16>,
    ) -> Step {
        loop {
            let Some(nl) = input.iter().position(|b| *b == b'\n') else {
                if input.len() >= MAX_LINE {
                    self.reply(out, replies, 500, "5.5.2 Line too long; closing");
                    return Step::Close;
                }
                return Step::More;
            };
            if nl + 1 > MAX_LINE {
                self.reply(out, replies, 500, "5.5.2 Line too long; closing");
                return Step::Close;
            }
            let line = input.split_to(nl + 1);
            self.read += line.len();
            self.commands += 1;
            if self.read > MAX_SESSION_BYTES || self.commands > MAX_COMMANDS {
                self.reply(out, replies, 421, "4.7.0 Too many commands; closing");
                return Step::Close;
            }
            if self.command(&line, out, replies) == Step::Close {
                input.advance(input.len());
                return Step::Close;
            }
        }
    }

    fn command(&mut self, line: &[u8], out: &mut Vec<u8>, replies: &mut Vec<u16>) -> Step {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches(['\r', '\n']);
        let (verb, arg) = match text.split_once([' ', '\t']) {
            Some((v, a)) => (v, a.trim()),
            None => (text, ""),
        };
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" | "HELO" => {
                let Some(name) = arg.split_whitespace().next() else {
                    let msg = format!("5.5.4 {verb} requires a domain name");
                    self.reply(out, replies, 501, &msg);
                    return Step::More;
                };
                if self.helo.is_none() {
                    self.helo = Some(crate::classify::evidence_text(name.as_bytes()));
                }
                let msg = self.host.clone();
                self.reply(out, replies, 250, &msg);
                Step::More
            }
            "NOOP" | "RSET" => {
                self.reply(out, replies, 250, "2.0.0 OK");
                Step::More
            }
            "QUIT" => {
                let msg = format!("2.0.0 {} closing connection", self.host);
                self.reply(out, replies, 221, &msg);
                Step::Close
            }
            _ => match &self.refusal {
                Some(r) => {
                    let code = r[..3].parse().unwrap_or(450);
                    out.extend_from_slice(r.as_bytes());
                    out.extend_from_slice(b"\r\n");
                    replies.push(code);
                    Step::More
                }
                None => {
                    let msg = format!("4.7.0 {} try again later; closing", self.host);
                    self.reply(out, replies, 421, &msg);
                    Step::Close
                }
            },
        }
    }

    fn reply(&self, out: &mut Vec<u8>, replies: &mut Vec<u16>, code: u16, text: &str) {
        out.extend_from_slice(format!("{code} {text}\r\n").as_bytes());
        replies.push(code);
    }
}

/// A reply must stay one line whatever a text or name holds.
fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(s: &mut Session, input: &[u8]) -> (String, Step, Vec<u16>) {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        let mut codes = Vec::new();
        let step = s.feed(&mut buf, &mut out, &mut codes);
        (String::from_utf8(out).unwrap(), step, codes)
    }

    fn throttled() -> Session {
        Session::new("mx.test", &Answer::Tempfail("patch your server".into()))
    }

    #[test]
    fn a_client_reads_the_refusal_at_mail_from() {
        let mut s = throttled();
        assert_eq!(
            s.greeting(),
            "220 mx.test ESMTP enforcer notice service\r\n"
        );
        let (out, step, _) = run(&mut s, b"EHLO ex2013.sender.example\r\n");
        assert_eq!((out.as_str(), step), ("250 mx.test\r\n", Step::More));
        assert_eq!(s.helo(), Some("ex2013.sender.example"));
        let (out, step, codes) = run(&mut s, b"MAIL FROM:<a@b>\r\n");
        assert_eq!(out, "450 4.7.230 patch your server\r\n");
        assert_eq!((step, codes), (Step::More, vec![450]));
        let (out, step, _) = run(&mut s, b"QUIT\r\n");
        assert_eq!(out, "221 2.0.0 mx.test closing connection\r\n");
        assert_eq!(step, Step::Close);
        assert_eq!(s.code(), "450");
        let mut r = Session::new("mx.test", &Answer::Reject("blocked".into()));
        let (out, _, _) = run(&mut r, b"HELO x\nMAIL FROM:<a@b>\n");
        assert_eq!(out, "250 mx.test\r\n550 5.7.230 blocked\r\n");
    }

    #[test]
    fn pipelined_commands_are_answered_in_order_and_partial_lines_wait() {
        let mut s = throttled();
        let mut buf = BytesMut::from(
            &b"EHLO a.example\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nQUIT\r\nNOOP\r\n"[..],
        );
        let mut out = Vec::new();
        let mut codes = Vec::new();
        assert_eq!(s.feed(&mut buf, &mut out, &mut codes), Step::Close);
        assert_eq!(codes, vec![250, 450, 450, 450, 221]);
        assert!(buf.is_empty(), "nothing after QUIT is answered");
        let mut s = throttled();
        let (out, step, _) = run(&mut s, b"EHLO a.exa");
        assert_eq!((out.as_str(), step), ("", Step::More));
        // The helo of a repeated EHLO is the first one; an empty one is refused.
        let (_, _, codes) = run(&mut s, b"EHLO first\r\nHELO second\r\nEHLO\r\n");
        assert_eq!(codes, vec![250, 250, 501]);
        assert_eq!(s.helo(), Some("first"));
    }

    #[test]
    fn garbage_long_lines_and_endless_sessions_are_bounded() {
        let mut s = throttled();
        let (out, step, _) = run(&mut s, b"\xff\xfe\x00garbage\r\n");
        assert_eq!(
            (out.as_str(), step),
            ("450 4.7.230 patch your server\r\n", Step::More)
        );
        let (out, step, _) = run(&mut s, &[b'A'; MAX_LINE]);
        assert!(out.starts_with("500 5.5.2"), "{out}");
        assert_eq!(step, Step::Close);
        let mut long = vec![b'A'; MAX_LINE + 10];
        long.extend_from_slice(b"\r\n");
        let (_, step, codes) = run(&mut throttled(), &long);
        assert_eq!((step, codes), (Step::Close, vec![500]));
        let mut s = throttled();
        let many = b"NOOP\r\n".repeat(MAX_COMMANDS + 5);
        let (_, step, codes) = run(&mut s, &many);
        assert_eq!(step, Step::Close);
        assert_eq!(codes.len(), MAX_COMMANDS + 1);
        assert_eq!(codes.last(), Some(&421));
        let mut s = throttled();
        let mut big = Vec::new();
        for _ in 0..12 {
            big.extend_from_slice(&[b'N'; 400]);
            big.extend_from_slice(b"\r\n");
        }
        let (_, step, codes) = run(&mut s, &big);
        assert_eq!((step, codes.last()), (Step::Close, Some(&421)));
    }

    #[test]
    fn outside_a_window_the_client_is_sent_away_and_texts_stay_one_line() {
        let mut s = Session::new("mx\r\n.test", &Answer::Continue);
        assert_eq!(s.code(), "421");
        let (out, step, _) = run(&mut s, b"MAIL FROM:<a@b>\r\n");
        assert!(
            out.starts_with("421 4.7.0 mx  .test try again later"),
            "{out}"
        );
        assert_eq!(step, Step::Close);
        let mut s = Session::new("mx", &Answer::Tempfail("a\r\nb".into()));
        let (out, _, _) = run(&mut s, b"RCPT TO:<x>\r\n");
        assert_eq!(out, "450 4.7.230 a  b\r\n");
    }
}
