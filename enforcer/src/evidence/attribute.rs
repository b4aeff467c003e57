//! Which classification a sighting from the MTA yields for the connecting address. The one place the
//! milter and the policy service call the classifier, so both follow the same attribution rule.

use time::Date;

use super::milter::session::Sighting;
use crate::classify::{classify_connecting, Classification, SupportOverrides};

/// Classifies what the MTA saw from `s.addr`: the HELO name as an `EHLO` line, then the message's
/// header block, attributed to the connecting server (`classify_connecting`: only the newest
/// Received fields that server wrote count, never an older hop). `None` when nothing in it names a
/// mail server.
pub fn attribute(
    s: &Sighting,
    today: Date,
    overrides: &SupportOverrides,
) -> Option<Classification> {
    let mut text = String::with_capacity(s.headers.len() + 64);
    if let Some(h) = s.helo.as_deref().filter(|h| !h.trim().is_empty()) {
        text.push_str("EHLO ");
        text.push_str(h);
        text.push_str("\r\n");
    }
    text.push_str(&s.headers);
    classify_connecting(text.as_bytes(), s.addr, today, overrides).ok()
}
