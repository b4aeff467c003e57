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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::client::ClientError;
    use std::path::PathBuf;

    #[test]
    fn exit_status_classes() {
        let two: Vec<anyhow::Error> = vec![
            UsageError("bad".into()).into(),
            OpenError::NotBpffs(PathBuf::from("/tmp/x")).into(),
            OpenError::ModeMismatch {
                iface: "eth0".into(),
                kind: "tcx",
            }
            .into(),
            crate::store::StateDirError {
                path: PathBuf::from("/x"),
                err: std::io::Error::from(std::io::ErrorKind::NotADirectory),
            }
            .into(),
            anyhow::Error::from(ClientError::Denied(PathBuf::from("/run/x.sock"))),
            anyhow::Error::from(OpenError::NotPinned(PathBuf::from("/x"))).context("listing"),
        ];
        for e in &two {
            assert_eq!(exit_status(e), EXIT_USAGE, "{e:#}");
        }
        let one: Vec<anyhow::Error> = vec![
            anyhow::Error::from(ClientError::NotRunning(PathBuf::from("/run/x.sock"))),
            anyhow::anyhow!("the kernel refused"),
        ];
        for e in &one {
            assert_eq!(exit_status(e), 1, "{e:#}");
        }
    }
}
