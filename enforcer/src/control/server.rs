//! Daemon side of the control socket. Connections are served concurrently, but every request is
//! handed to the engine loop over one channel, so changes are applied one at a time in arrival order.
//! A malformed request gets an error reply on its connection and changes nothing else.

use super::protocol::{decode_request, Reply, Request, MAX_REQUEST};
use crate::daemon::gate::{Gate, ListenerMetrics};
use anyhow::Context;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, Semaphore};

/// A connection idle this long is closed.
const IDLE: Duration = Duration::from_secs(120);

/// How much a control socket may hold: connections, and request bytes buffered by all of them together
/// (each one may buffer up to `MAX_REQUEST` for one request: an `import` carries its whole list).
/// Without the shared budget, 64 connections with partial lines could pin gigabytes; with it, all
/// of them together hold at most `total_buffer`.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_conns: usize,
    pub max_line: usize,
    pub total_buffer: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_conns: 64,
            max_line: MAX_REQUEST,
            total_buffer: MAX_REQUEST + (32 << 20),
        }
    }
}

/// Request bytes are read and accounted in chunks of this size.
const CHUNK: usize = 64 << 10;

/// One validated request and where its reply goes.
pub struct Incoming {
    pub request: Request,
    pub reply: oneshot::Sender<Reply>,
}

/// The bound socket; the socket file is removed when this is dropped.
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    gate: Gate,
    limits: Limits,
    /// Bytes of request data all connections may still buffer, in units of [`CHUNK`].
    budget: Arc<Semaphore>,
}
impl ControlServer {
    /// Binds `path` with mode 0600. A stale socket file from a killed daemon is replaced; a live one
    /// (another daemon) is an error. Must be called inside a tokio runtime.
    pub fn bind(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating the socket directory {}", dir.display()))?;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
            }
        }
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                anyhow::bail!(
                    "another enforcer daemon is already listening on {}; stop it first or pass --socket",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("removing the stale socket {}", path.display()))?;
        }
        // Created 0600 from the start: no window in which another user could connect.
        let old = unsafe { libc::umask(0o177) };
        let bound = UnixListener::bind(path);
        unsafe { libc::umask(old) };
        let listener =
            bound.with_context(|| format!("binding the control socket {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        let limits = Limits::default();
        Ok(ControlServer {
            listener,
            path: path.to_path_buf(),
            gate: Gate::new("control", limits.max_conns, ListenerMetrics::default()),
            budget: Arc::new(Semaphore::new(limits.total_buffer / CHUNK)),
            limits,
        })
    }

    /// Counts connections and refusals in `metrics` (registered by the daemon).
    pub fn with_metrics(mut self, metrics: &ListenerMetrics) -> Self {
        self.gate = Gate::new("control", self.limits.max_conns, metrics.clone());
        self
    }

    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.gate = Gate::new("control", limits.max_conns, self.gate.metrics().clone());
        self.budget = Arc::new(Semaphore::new(limits.total_buffer.div_ceil(CHUNK)));
        self.limits = limits;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts connections until the receiver side of `tx` is gone. Over the connection cap, the
    /// client gets an error line and the connection is closed.
    pub async fn serve(&self, tx: mpsc::Sender<Incoming>) {
        loop {
            let (stream, slot) = self.gate.accept(|| self.listener.accept()).await;
            let stream = stream.0;
            if tx.is_closed() {
                return;
            }
            let Some(slot) = slot else {
                let msg = Reply::internal(format!(
                    "the daemon is serving its maximum of {} control connections; retry in a moment",
                    self.gate.max_conns()
                ));
                // Best effort and never waiting: the socket buffer of a fresh connection has room.
                let _ = stream.try_write(msg.to_line().as_bytes());
                continue;
            };
            let conn = Conn {
                tx: tx.clone(),
                gate: self.gate.clone(),
                limits: self.limits,
                budget: self.budget.clone(),
            };
            tokio::spawn(async move {
                let _slot = slot;
                if let Err(e) = conn.serve(stream).await {
                    log::debug!("control connection ended: {e}");
                }
            });
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What one connection needs from its server.
struct Conn {
    tx: mpsc::Sender<Incoming>,
    gate: Gate,
    limits: Limits,
    budget: Arc<Semaphore>,
}

/// Why a request line could not be read.
enum LineEnd {
    Eof,
    TooLong,
    OverBudget,
}

impl Conn {
    async fn serve(self, stream: UnixStream) -> anyhow::Result<()> {
        let me = unsafe { libc::geteuid() };
        let peer = stream.peer_cred()?.uid();
        let (rd, mut wr) = stream.into_split();
        if peer != 0 && peer != me {
            wr.write_all(
                Reply::usage("the control socket is root only; run the command as root")
                    .to_line()
                    .as_bytes(),
            )
            .await?;
            return Ok(());
        }
        let mut rd = BufReader::with_capacity(8 << 10, rd);
        let mut line = Vec::new();
        loop {
            line.clear();
            let read = tokio::time::timeout(IDLE, self.read_line(&mut rd, &mut line))
                .await
                .map_err(|_| anyhow::anyhow!("idle"))??;
            // The budget held while reading is released by `read_line`; the line is handed on below.
            let reply = match read {
                Err(LineEnd::Eof) => return Ok(()),
                Err(LineEnd::TooLong) => {
                    let r = Reply::usage(format!(
                        "request longer than {} bytes; closing the connection",
                        self.limits.max_line
                    ));
                    wr.write_all(r.to_line().as_bytes()).await?;
                    return Ok(());
                }
                Err(LineEnd::OverBudget) => {
                    self.gate.refused("buffer_cap");
                    let r = Reply::internal(format!(
                        "the daemon is already holding {} KiB of unfinished requests from other connections; retry in a moment",
                        self.limits.total_buffer >> 10
                    ));
                    wr.write_all(r.to_line().as_bytes()).await?;
                    return Ok(());
                }
                Ok(()) => self.handle(&line).await,
            };
            line = Vec::new(); // a large request's buffer is not kept for the life of the connection
            wr.write_all(reply.to_line().as_bytes()).await?;
        }
    }

    /// Reads one line into `line`, `CHUNK` bytes at a time, taking a share of the server-wide budget
    /// before each chunk.
    async fn read_line(
        &self,
        rd: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
        line: &mut Vec<u8>,
    ) -> std::io::Result<Result<(), LineEnd>> {
        let mut held = Vec::new();
        loop {
            if line.len() > self.limits.max_line {
                return Ok(Err(LineEnd::TooLong));
            }
            // The first chunk is free: every connection may send ordinary small requests.
            if line.len() >= CHUNK {
                match self.budget.clone().try_acquire_owned() {
                    Ok(p) => held.push(p),
                    Err(_) => return Ok(Err(LineEnd::OverBudget)),
                }
            }
            let n = (&mut *rd)
                .take(CHUNK as u64)
                .read_until(b'\n', line)
                .await?;
            if n == 0 {
                return Ok(if line.is_empty() {
                    Err(LineEnd::Eof)
                } else {
                    Ok(()) // a last request without its newline
                });
            }
            if line.last() == Some(&b'\n') {
                return Ok(if line.len() > self.limits.max_line + 1 {
                    Err(LineEnd::TooLong)
                } else {
                    Ok(())
                });
            }
        }
    }

    async fn handle(&self, line: &[u8]) -> Reply {
        match decode_request(line) {
            Err(r) => r,
            Ok(request) => {
                let (otx, orx) = oneshot::channel();
                if self
                    .tx
                    .send(Incoming {
                        request,
                        reply: otx,
                    })
                    .await
                    .is_err()
                {
                    Reply::internal("the daemon is shutting down")
                } else {
                    orx.await
                        .unwrap_or_else(|_| Reply::internal("the engine dropped the request"))
                }
            }
        }
    }
}
