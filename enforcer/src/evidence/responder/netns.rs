//! Creating the responder's listening sockets inside the MTA's network namespace: a socket belongs
//! to the namespace it was created in, and the kernel only hands a lookup to a socket of the
//! lookup's namespace. A short-lived thread enters the namespace, creates the sockets and ends; the
//! daemon's own threads never change namespace.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::os::fd::AsRawFd as _;
use std::path::Path;

use anyhow::Context as _;

/// The IPv4 and IPv6 listening sockets (IPv6 is `None` where the namespace has no IPv6). They listen
/// on loopback with a port the kernel picks: the `sk_lookup` program steers to them whatever the
/// SYN's destination, and nothing reaches them otherwise.
pub struct Sockets {
    pub v4: TcpListener,
    pub v6: Option<TcpListener>,
}

pub fn sockets_in(netns: &Path) -> anyhow::Result<Sockets> {
    let path = netns.to_path_buf();
    std::thread::Builder::new()
        .name("notice-netns".into())
        .spawn(move || -> anyhow::Result<Sockets> {
            let ns = std::fs::File::open(&path).with_context(|| {
                format!(
                    "opening the network namespace {} (notice.netns)",
                    path.display()
                )
            })?;
            // SAFETY: setns on a valid namespace fd; it changes this thread only.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("entering the network namespace {}", path.display()));
            }
            let v4 = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).with_context(
                || {
                    format!(
                        "listening on 127.0.0.1 in {} (is loopback up there?)",
                        path.display()
                    )
                },
            )?;
            let v6 = match TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, 0))) {
                Ok(l) => Some(l),
                Err(e) => {
                    log::warn!(
                        "notice responder: no IPv6 listener in {} ({e}); IPv6 senders in a notice window get the fallback",
                        path.display()
                    );
                    None
                }
            };
            for l in std::iter::once(&v4).chain(v6.as_ref()) {
                l.set_nonblocking(true)?;
            }
            Ok(Sockets { v4, v6 })
        })
        .context("starting a thread for the notice responder's namespace")?
        .join()
        .map_err(|_| anyhow::anyhow!("the notice responder's namespace thread panicked"))?
}
