//! CLI side of the control socket: one request, one reply, blocking, with timeouts.

use super::protocol::{Reply, Request, MAX_LINE, MAX_REQUEST};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Evidence classification and a durable commit take well under a second; this only catches a hung daemon.
const TIMEOUT: Duration = Duration::from_secs(30);
/// A bulk import or removal writes up to millions of entries (a few seconds per million in a release
/// build); the daemon is given this long.
const BULK_TIMEOUT: Duration = Duration::from_secs(600);
/// Largest reply read. Lists that can be long (`list`) come in pages far below this.
pub const MAX_REPLY: usize = MAX_LINE * 4;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the enforcer daemon is not running (nothing listens on {0}); start it with `enforcer run --iface IFACE`, or pass --socket PATH if it uses another socket")]
    NotRunning(PathBuf),
    #[error(
        "permission denied on the control socket {0}: it is root only; run this command as root"
    )]
    Denied(PathBuf),
    #[error("talking to the daemon on {path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("the daemon sent a reply that is not valid JSON: {0}")]
    BadReply(String),
    /// The request was sent but no complete reply came back (the daemon died, was restarted or hung):
    /// it may or may not have been applied.
    #[error("the daemon on {path} {how} before it replied: the outcome of the request is unknown (it may or may not have been applied); check with `enforcer list` or `enforcer sender`, then retry if needed")]
    OutcomeUnknown { path: PathBuf, how: String },
    #[error("the daemon's reply is larger than {0} bytes; narrow the request (e.g. `enforcer list --prefix`, `--limit`)")]
    ReplyTooLarge(usize),
    /// The daemon refused the request; `usage` = bad input.
    #[error("{msg}")]
    Refused { usage: bool, msg: String },
}

/// Whether a daemon is listening on `socket`.
pub fn daemon_running(socket: &Path) -> bool {
    request(socket, &Request::Ping {}).is_ok()
}

/// Whether a daemon listens on `socket` and owns `state_dir` (then it holds the database open and
/// operator changes must go through it).
pub fn daemon_owning(socket: &Path, state_dir: &Path) -> bool {
    let Ok(v) = request(socket, &Request::Ping {}) else {
        return false;
    };
    let Some(theirs) = v.get("state_dir").and_then(|s| s.as_str()) else {
        return false;
    };
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    canon(Path::new(theirs)) == canon(state_dir)
}

/// Sends one request and returns the reply's `result`.
pub fn request(socket: &Path, req: &Request) -> Result<serde_json::Value, ClientError> {
    send(socket, req).map(|(v, _)| v)
}

/// Sends a request whose reply is followed by `count(result)` lines (`list`): returns the reply's
/// `result` and the lines, read one at a time as the caller asks for them.
pub fn request_lines(
    socket: &Path,
    req: &Request,
    count: impl FnOnce(&serde_json::Value) -> u64,
) -> Result<(serde_json::Value, Lines), ClientError> {
    let (v, rd) = send(socket, req)?;
    let left = count(&v);
    Ok((
        v,
        Lines {
            rd,
            left,
            line: Vec::new(),
            path: socket.to_path_buf(),
        },
    ))
}

/// The lines that follow a reply, each at most [`MAX_LINE`] bytes.
pub struct Lines {
    rd: BufReader<UnixStream>,
    left: u64,
    line: Vec<u8>,
    path: PathBuf,
}

impl Lines {
    /// The next line without its `\n`; `None` after the last.
    pub fn next_line(&mut self) -> Result<Option<&[u8]>, ClientError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        self.line.clear();
        let unknown = |how: String| ClientError::OutcomeUnknown {
            path: self.path.clone(),
            how,
        };
        (&mut self.rd)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut self.line)
            .map_err(|e| unknown(format!("failed in the middle of its reply ({e})")))?;
        match self.line.pop() {
            Some(b'\n') => Ok(Some(&self.line)),
            _ if self.line.len() > MAX_LINE => Err(ClientError::ReplyTooLarge(MAX_LINE)),
            _ => Err(unknown(format!(
                "closed the connection in the middle of its reply ({} lines missing)",
                self.left + 1
            ))),
        }
    }
}

/// Sends one request; returns the reply's `result` and the connection, positioned after the
/// reply's line.
fn send(
    socket: &Path,
    req: &Request,
) -> Result<(serde_json::Value, BufReader<UnixStream>), ClientError> {
    let io = |err| ClientError::Io {
        path: socket.to_path_buf(),
        err,
    };
    let mut stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            ClientError::NotRunning(socket.to_path_buf())
        }
        std::io::ErrorKind::PermissionDenied => ClientError::Denied(socket.to_path_buf()),
        _ => io(e),
    })?;
    let timeout = match req {
        Request::Import { .. } | Request::RemoveRules { .. } => BULK_TIMEOUT,
        _ => TIMEOUT,
    };
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut line = serde_json::to_string(req).map_err(|e| ClientError::BadReply(e.to_string()))?;
    if line.len() > MAX_REQUEST {
        return Err(ClientError::Refused {
            usage: true,
            msg: format!(
                "the request is {} bytes, more than the {} bytes the daemon accepts; send less (a shorter transcript, or split the list into several files)",
                line.len(),
                MAX_REQUEST
            ),
        });
    }
    line.push('\n');
    let unknown = |how: String| ClientError::OutcomeUnknown {
        path: socket.to_path_buf(),
        how,
    };
    stream
        .write_all(line.as_bytes())
        .map_err(|e| unknown(format!("failed while the request was sent ({e})")))?;
    let mut reply = Vec::new();
    let mut rd = BufReader::with_capacity(64 << 10, stream);
    (&mut rd)
        .take(MAX_REPLY as u64 + 1)
        .read_until(b'\n', &mut reply)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                unknown(format!("did not answer within {}s", timeout.as_secs()))
            }
            _ => unknown(format!("failed ({e})")),
        })?;
    if reply.last() != Some(&b'\n') {
        if reply.len() > MAX_REPLY {
            return Err(ClientError::ReplyTooLarge(MAX_REPLY));
        }
        return Err(unknown(if reply.is_empty() {
            "closed the connection".into()
        } else {
            format!("closed the connection after {} bytes", reply.len())
        }));
    }
    let reply: Reply = serde_json::from_slice(&reply).map_err(|e| {
        ClientError::BadReply(format!(
            "{e}: {}",
            String::from_utf8_lossy(&reply[..reply.len().min(200)])
        ))
    })?;
    if reply.ok {
        Ok((reply.result.unwrap_or(serde_json::Value::Null), rd))
    } else {
        Err(ClientError::Refused {
            usage: reply.usage,
            msg: reply
                .error
                .unwrap_or_else(|| "the daemon refused the request".into()),
        })
    }
}

/// Maps a client error into the CLI's error kinds (bad input => exit status 2).
pub fn to_cli_error(e: ClientError) -> anyhow::Error {
    match e {
        ClientError::Refused { usage: true, msg } => crate::error::UsageError(msg).into(),
        other => anyhow::anyhow!(other),
    }
}
