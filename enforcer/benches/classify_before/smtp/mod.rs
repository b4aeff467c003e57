//! Sans-IO SMTP evidence decoders: server greetings, `EHLO`/`HELO` commands, EHLO responses, any reply,
//! RFC 5322 header blocks and `Received:` fields.
//!
//! Every decoder takes bytes and returns borrowed values plus the number of bytes consumed, so a caller
//! can feed a growing buffer: [`DecodeError::Incomplete`] means "wait for more bytes", never "bad input".
//! Malformed input gives [`DecodeError::Malformed`] naming the byte offset. Lines end in CRLF or bare LF,
//! may be of any length and may carry 8-bit bytes. nom is an implementation detail and never leaks out.

mod ehlo;
mod header;
pub(crate) mod line;
mod received;
mod reply;

pub use ehlo::{
    decode_ehlo_command, decode_ehlo_response, EhloKeyword, EhloResponse, HeloCommand, HeloVerb,
};
pub use header::{decode_header_block, unfold, unfold_into, HeaderField};
pub use received::{parse_received, Clause, ClauseKind, Received};
pub(crate) use received::{Tokens, TokensView};
pub use reply::{decode_greeting, decode_reply, EnhancedStatus, Reply};

/// What a decoder was reading when it failed; part of [`DecodeError::Malformed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Item {
    Reply,
    Greeting,
    EhloCommand,
    EhloResponse,
    HeaderBlock,
    Received,
}

impl std::fmt::Display for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Item::Reply => "SMTP reply",
            Item::Greeting => "server greeting",
            Item::EhloCommand => "EHLO/HELO command",
            Item::EhloResponse => "EHLO response",
            Item::HeaderBlock => "header block",
            Item::Received => "Received field",
        })
    }
}

/// Why a decoder did not return a value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ends before the item does (no line terminator yet, a `250-` continuation without its
    /// last line, a header block without its empty line). Feed more bytes and decode again.
    #[error("incomplete input: the {0} continues past the end of the buffer")]
    Incomplete(Item),
    /// The bytes cannot be this item. `offset` is the byte index in the decoder's input.
    #[error("malformed {item} at byte {offset}: {reason}")]
    Malformed {
        item: Item,
        offset: usize,
        reason: &'static str,
    },
}

impl DecodeError {
    pub(crate) fn malformed(item: Item, offset: usize, reason: &'static str) -> Self {
        DecodeError::Malformed {
            item,
            offset,
            reason,
        }
    }
}

/// A decoded value and how many input bytes it used (including its final line terminator).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded<T> {
    pub value: T,
    pub consumed: usize,
}
