//! One milter connection as a pure state machine: commands in, at most one response out, plus the
//! evidence a finished header block carries. The caller supplies the answer for a sender (so the
//! session never reads a clock or the engine) and does the I/O.
//!
//! Stages negotiated: connect (the sender's address), HELO (weak evidence), MAIL (where the refusal is
//! answered: Postfix and Sendmail both send a milter's MAIL reply text to the client as is), headers
//! and end of headers (the Received fields the connecting server wrote). Body, recipients, DATA and
//! unknown commands are skipped when the MTA allows it; stages that need no answer are flagged "no
//! reply" when the MTA supports that.

use std::net::IpAddr;

use super::codec::{proto, Command, Response, VERSION};
use crate::evidence::reply::Answer;

/// Header bytes kept per message; the rest of a longer header block is counted and ignored, so a
/// session never holds more than this (plus one frame).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;

/// The stages we skip when the MTA allows it.
const SKIP: u32 = proto::NOBODY | proto::NORCPT | proto::NODATA | proto::NOUNKNOWN;
/// The stages whose answer is always "continue", so the MTA need not wait for it.
const NO_REPLY: u32 = proto::NR_CONN | proto::NR_HELO | proto::NR_HDR | proto::NR_EOH;

/// Evidence from one message: the connecting address, its HELO name and the header block as the MTA
/// received it (newest field first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sighting {
    pub addr: IpAddr,
    pub helo: Option<String>,
    /// `Name: value` lines, CRLF-terminated, in arrival order.
    pub headers: String,
}

/// What one command produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Step {
    pub response: Option<Response>,
    pub sighting: Option<Sighting>,
    /// The answer given at MAIL (or, in report-only mode, the one that would have been given).
    pub answered: Option<Answer>,
    /// The MTA ended the session.
    pub close: bool,
}

#[derive(Clone, Debug)]
pub struct Session {
    report_only: bool,
    max_header_bytes: usize,
    /// The protocol flags agreed in option negotiation.
    protocol: u32,
    peer: Option<IpAddr>,
    helo: Option<String>,
    headers: String,
    /// Header bytes seen in this message, kept or not.
    header_bytes: usize,
}

impl Session {
    pub fn new(report_only: bool, max_header_bytes: usize) -> Self {
        Session {
            report_only,
            max_header_bytes,
            protocol: 0,
            peer: None,
            helo: None,
            headers: String::new(),
            header_bytes: 0,
        }
    }

    /// Header bytes seen in the current message (kept or ignored).
    pub fn header_bytes(&self) -> usize {
        self.header_bytes
    }

    /// Handles one command; `decide` gives the answer for the connecting address at MAIL.
    pub fn handle(&mut self, cmd: Command, decide: impl FnOnce(IpAddr) -> Answer) -> Step {
        let mut step = Step::default();
        let cont = |flag: u32, s: &Self| (s.protocol & flag == 0).then_some(Response::Continue);
        match cmd {
            Command::OptNeg {
                version, protocol, ..
            } => {
                self.protocol = protocol & (SKIP | NO_REPLY);
                step.response = Some(Response::OptNeg {
                    version: version.min(VERSION),
                    actions: 0,
                    protocol: self.protocol,
                });
            }
            Command::Macros { .. } => {}
            Command::Connect { .. } => {
                self.reset_connection();
                self.peer = cmd.peer_ip();
                step.response = cont(proto::NR_CONN, self);
            }
            Command::Helo(name) => {
                self.helo = Some(crate::classify::evidence_text(&name));
                step.response = cont(proto::NR_HELO, self);
            }
            Command::Mail(_) => {
                self.reset_message();
                let answer = self.peer.map_or(Answer::Continue, decide);
                step.response = Some(match answer.smtp() {
                    Some(reply) if !self.report_only => Response::ReplyCode(reply),
                    _ => Response::Continue,
                });
                if answer != Answer::Continue {
                    step.answered = Some(answer);
                }
            }
            Command::Header { name, value } => {
                self.header_bytes = self
                    .header_bytes
                    .saturating_add(name.len() + value.len() + 4);
                if self.header_bytes <= self.max_header_bytes {
                    self.headers.push_str(&String::from_utf8_lossy(&name));
                    self.headers.push_str(": ");
                    self.headers.push_str(&String::from_utf8_lossy(&value));
                    self.headers.push_str("\r\n");
                }
                step.response = cont(proto::NR_HDR, self);
            }
            Command::EndOfHeaders => {
                if let Some(addr) = self.peer {
                    if !self.headers.is_empty() || self.helo.is_some() {
                        step.sighting = Some(Sighting {
                            addr,
                            helo: self.helo.clone(),
                            headers: std::mem::take(&mut self.headers),
                        });
                    }
                }
                step.response = cont(proto::NR_EOH, self);
            }
            Command::Rcpt(_) | Command::Data | Command::Body(_) | Command::Unknown(_) => {
                step.response = Some(Response::Continue);
            }
            Command::EndOfMessage => {
                self.reset_message();
                step.response = Some(Response::Continue);
            }
            Command::Abort => self.reset_message(),
            Command::QuitNewConnection => self.reset_connection(),
            Command::Quit => step.close = true,
        }
        step
    }

    fn reset_message(&mut self) {
        self.headers.clear();
        self.header_bytes = 0;
    }

    fn reset_connection(&mut self) {
        self.reset_message();
        self.peer = None;
        self.helo = None;
    }
}

#[cfg(test)]
mod tests;
