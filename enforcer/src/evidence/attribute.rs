//! Which classification a sighting from the MTA yields for the connecting address. The one place the
//! milter and the policy service call the classifier, so both follow the same attribution rule.

use time::Date;

use super::milter::session::Sighting;
use crate::classify::{classify_bytes, Classification, SupportOverrides};

/// Classifies what the MTA saw from `s.addr`: the HELO name as an `EHLO` line, then the message's
/// header block. `None` when nothing in it names a mail server.
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
    classify_bytes(text.as_bytes(), today, overrides).ok()
}
