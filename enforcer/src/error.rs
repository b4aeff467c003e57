//! Error classes shared by every command and the daemon: what the user gave us was wrong (exit
//! status 2, nothing changed) or something else failed (exit status 1).

use crate::datapath::OpenError;

/// Exit status for bad input (arguments, config, unreadable evidence): nothing was changed.
pub const EXIT_USAGE: i32 = 2;

/// An error caused by what the user gave us (arguments, config, input file): exit status 2, and the
/// message says what was wrong and how to fix it. Anything else exits 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Shorthand for returning a [`UsageError`].
pub fn usage<T>(msg: impl Into<String>) -> anyhow::Result<T> {
    Err(UsageError(msg.into()).into())
}

/// Maps datapath errors the operator can fix (no datapath pinned, pin dir not on bpffs) to exit
/// status 2.
pub fn operator_error(e: anyhow::Error) -> anyhow::Error {
    if let Some(o) = e.downcast_ref::<OpenError>() {
        return UsageError(o.to_string()).into();
    }
    e
}
