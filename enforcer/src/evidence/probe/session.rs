//! The probe's SMTP dialogue, sans-IO: feed it the bytes the server sent, it answers with the bytes
//! to send and finally the transcript (banner and EHLO response). Greeting, `EHLO name`, the
//! capabilities, `QUIT`. Every reply is bounded in line length, lines and total bytes, so a hostile
//! or broken server costs at most [`MAX_BYTES`] of memory.

/// Longest reply line accepted (RFC 5321 allows 512 octets; real servers stay well below).
pub const MAX_LINE: usize = 1024;
/// Most lines in one reply (an EHLO response has one per extension).
pub const MAX_LINES: usize = 64;
/// Most bytes read in one session.
pub const MAX_BYTES: usize = 16 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("reply line longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("reply of more than {MAX_LINES} lines")]
    TooManyLines,
    #[error("server sent more than {MAX_BYTES} bytes")]
    TooMuch,
    #[error("not an SMTP reply: {0:?}")]
    NotSmtp(String),
    #[error("the server closed the connection before the dialogue ended")]
    Closed,
    #[error("the server refused the connection: {0}")]
    Refused(String),
}

/// What the server said: the greeting and the EHLO response, as read (one entry per line).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transcript {
    pub banner: Vec<String>,
    pub ehlo: Vec<String>,
}

impl Transcript {
    /// The transcript as the classifier reads it (`220 …` then the `250-…` lines).
    pub fn text(&self) -> String {
        let mut out = String::new();
        for l in self.banner.iter().chain(&self.ehlo) {
            out.push_str(l);
            out.push('\n');
        }
        out
    }
}

/// The next thing to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Read more bytes.
    Read,
    /// Send these bytes, then read.
    Send(Vec<u8>),
    /// Send these bytes (QUIT) and close: the transcript is complete.
    Done(Vec<u8>, Transcript),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Banner,
    Ehlo,
    Finished,
}

pub struct Session {
    ehlo_name: String,
    state: State,
    buf: Vec<u8>,
    read: usize,
    reply: Vec<String>,
    transcript: Transcript,
}

impl Session {
    /// `ehlo_name` is sent as is after `EHLO ` (checked by the configuration: a host name).
    pub fn new(ehlo_name: &str) -> Self {
        Self {
            ehlo_name: ehlo_name.to_string(),
            state: State::Banner,
            buf: Vec::new(),
            read: 0,
            reply: Vec::new(),
            transcript: Transcript::default(),
        }
    }

    /// Feeds bytes read from the server. An empty slice means the server closed the connection.
    pub fn feed(&mut self, data: &[u8]) -> Result<Step, SessionError> {
        if self.state == State::Finished {
            return Ok(Step::Read);
        }
        if data.is_empty() {
            return Err(SessionError::Closed);
        }
        self.read += data.len();
        if self.read > MAX_BYTES {
            return Err(SessionError::TooMuch);
        }
        self.buf.extend_from_slice(data);
        while let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
            let raw: Vec<u8> = self.buf.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&raw[..nl])
                .trim_end_matches('\r')
                .to_string();
            if line.len() > MAX_LINE {
                return Err(SessionError::LineTooLong);
            }
            if let Some(step) = self.line(line)? {
                return Ok(step);
            }
        }
        if self.buf.len() > MAX_LINE {
            return Err(SessionError::LineTooLong);
        }
        Ok(Step::Read)
    }

    /// One reply line; `Some` when a complete reply decided the next step.
    fn line(&mut self, line: String) -> Result<Option<Step>, SessionError> {
        let b = line.as_bytes();
        let code_ok = b.len() >= 3 && b[..3].iter().all(u8::is_ascii_digit);
        let sep = b.get(3).copied();
        if !code_ok || !matches!(sep, None | Some(b' ') | Some(b'-')) {
            return Err(SessionError::NotSmtp(line.chars().take(80).collect()));
        }
        if let Some(first) = self.reply.first() {
            if first.as_bytes()[..3] != b[..3] {
                return Err(SessionError::NotSmtp(line.chars().take(80).collect()));
            }
        }
        if self.reply.len() >= MAX_LINES {
            return Err(SessionError::TooManyLines);
        }
        let last = sep != Some(b'-');
        self.reply.push(line);
        if !last {
            return Ok(None);
        }
        let reply = std::mem::take(&mut self.reply);
        let class = reply[0].as_bytes()[0];
        match self.state {
            State::Banner => {
                if class != b'2' {
                    return Err(SessionError::Refused(reply[0].clone()));
                }
                self.transcript.banner = reply;
                self.state = State::Ehlo;
                Ok(Some(Step::Send(
                    format!("EHLO {}\r\n", self.ehlo_name).into_bytes(),
                )))
            }
            State::Ehlo => {
                // A refused EHLO still leaves the greeting as evidence.
                if class == b'2' {
                    self.transcript.ehlo = reply;
                }
                self.state = State::Finished;
                Ok(Some(Step::Done(
                    b"QUIT\r\n".to_vec(),
                    std::mem::take(&mut self.transcript),
                )))
            }
            State::Finished => Ok(None),
        }
    }
}
