//! systemd's readiness protocol (sd_notify): one datagram per state change to `$NOTIFY_SOCKET`, when
//! systemd runs us as `Type=notify`. Without the variable every call does nothing.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (e.g. `READY=1`, `RELOADING=1`, `STOPPING=1`, `STATUS=...`) to systemd. Errors are
/// logged, never fatal: readiness is a courtesy to the service manager.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = (|| -> std::io::Result<()> {
        let sock = UnixDatagram::unbound()?;
        let bytes = path.as_encoded_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            // An abstract socket: a leading NUL instead of the '@'.
            use std::os::linux::net::SocketAddrExt as _;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &addr)?;
        } else {
            sock.send_to(state.as_bytes(), &path)?;
        }
        Ok(())
    })();
    if let Err(e) = sent {
        log::warn!("could not notify systemd ({state}) on {path:?}: {e}");
    }
}

/// `RELOADING=1` with the monotonic timestamp systemd ≥ 253 expects next to it.
pub fn reloading() {
    let usec = crate::datapath::clock::read(libc::CLOCK_MONOTONIC) / 1_000;
    notify(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_the_notify_socket() {
        let dir = std::env::temp_dir().join(format!("enforcer-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        // SAFETY: this test is the only one in the crate touching NOTIFY_SOCKET.
        unsafe { std::env::set_var("NOTIFY_SOCKET", &path) };
        notify("READY=1");
        reloading();
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        notify("STOPPING=1"); // no socket: nothing sent, nothing fails
        let mut buf = [0u8; 256];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        let n = rx.recv(&mut buf).unwrap();
        let msg = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(msg.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{msg}");
        rx.set_nonblocking(true).unwrap();
        assert!(
            rx.recv(&mut buf).is_err(),
            "nothing after the variable was removed"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
