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

/// Exit status for an error: 2 when the operator can fix it by changing what they typed or how they
/// run it (bad input, missing privileges, a pin directory off bpffs, an uncreatable state directory,
/// a `--mode` that does not match the live attachment): nothing was changed. 1 for everything else
/// (the daemon is not running, the kernel refused, I/O failed).
pub fn exit_status(err: &anyhow::Error) -> i32 {
    use crate::control::client::ClientError;
    let operator_fixable = err.chain().any(|e| {
        e.is::<UsageError>()
            || e.is::<OpenError>()
            || e.is::<crate::store::StateDirError>()
            || matches!(
                e.downcast_ref::<ClientError>(),
                Some(ClientError::Denied(_)) | Some(ClientError::Refused { usage: true, .. })
            )
    });
    if operator_fixable {
        EXIT_USAGE
    } else {
        1
    }
}

/// Maps datapath errors the operator can fix (no datapath pinned, pin dir not on bpffs) to exit
/// status 2.
pub fn operator_error(e: anyhow::Error) -> anyhow::Error {
    if let Some(o) = e.downcast_ref::<OpenError>() {
        return UsageError(o.to_string()).into();
    }
    e
}
