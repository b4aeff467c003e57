//! Daemon side of the control socket. Connections are served concurrently, but every request is
//! handed to the engine loop over one channel, so changes are applied one at a time in arrival order.
//! A malformed request gets an error reply on its connection and changes nothing else.

use super::protocol::{decode_request, Reply, Request, MAX_REQUEST};
use anyhow::Context;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

/// A connection idle this long is closed.
const IDLE: Duration = Duration::from_secs(120);

/// One validated request and where its reply goes.
pub struct Incoming {
    pub request: Request,
    pub reply: oneshot::Sender<Reply>,
}

/// The bound socket; the socket file is removed when this is dropped.
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
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
        Ok(ControlServer {
            listener,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts connections until the receiver side of `tx` is gone.
    pub async fn serve(&self, tx: mpsc::Sender<Incoming>) {
        loop {
            let stream = match self.listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    log::warn!("control socket accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if tx.is_closed() {
                return;
            }
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Err(e) = serve_conn(stream, tx).await {
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

async fn serve_conn(stream: UnixStream, tx: mpsc::Sender<Incoming>) -> anyhow::Result<()> {
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
    let mut rd = BufReader::new(rd);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = tokio::time::timeout(
            IDLE,
            (&mut rd)
                .take(MAX_REQUEST as u64 + 1)
                .read_until(b'\n', &mut line),
        )
        .await
        .map_err(|_| anyhow::anyhow!("idle"))??;
        if n == 0 {
            return Ok(());
        }
        if line.len() > MAX_REQUEST {
            let r = Reply::usage(format!(
                "request longer than {MAX_REQUEST} bytes; closing the connection"
            ));
            wr.write_all(r.to_line().as_bytes()).await?;
            return Ok(());
        }
        let reply = match decode_request(&line) {
            Err(r) => r,
            Ok(request) => {
                let (otx, orx) = oneshot::channel();
                if tx
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
        };
        wr.write_all(reply.to_line().as_bytes()).await?;
    }
}
