//! One `enforcer run` per state directory: an exclusive `flock` on `<state-dir>/daemon.lock`, held
//! for the daemon's lifetime and released by the kernel however the process ends (kill -9 too).

use std::io::{Read as _, Seek as _, Write as _};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use crate::error::usage;

/// Held for the daemon's lifetime.
pub struct DaemonLock(#[allow(dead_code)] std::fs::File);

impl DaemonLock {
    pub fn acquire(state_dir: &Path) -> anyhow::Result<Self> {
        if let Err(e) = crate::store::perms::secure_dir(state_dir) {
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                return usage(format!(
                    "permission denied creating {}: `enforcer run` needs root; run it as root",
                    state_dir.display()
                ));
            }
            return Err(anyhow::Error::from(e).context(format!(
                "creating the state directory {} (pass --state-dir to use another)",
                state_dir.display()
            )));
        }
        let path = state_dir.join("daemon.lock");
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(crate::store::perms::FILE_MODE)
            .open(&path)
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::PermissionDenied {
                    usage(format!(
                        "permission denied opening {}: `enforcer run` needs root (CAP_BPF and CAP_NET_ADMIN); run it as root",
                        path.display()
                    ))
                } else {
                    Err(anyhow::Error::from(e).context(format!("opening {}", path.display())))
                }
            })?;
        crate::store::perms::secure_file(&path)?;
        // SAFETY: flock on a file we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut pid = String::new();
            let _ = f.read_to_string(&mut pid);
            return usage(format!(
                "another `enforcer run` (pid {}) already uses {}; stop it first",
                pid.trim(),
                state_dir.display()
            ));
        }
        f.set_len(0)?;
        f.rewind()?;
        write!(f, "{}", std::process::id())?;
        Ok(Self(f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::UsageError;

    #[test]
    fn one_daemon_per_state_dir() {
        let dir = std::env::temp_dir().join(format!("enforcer-lock-{}", std::process::id()));
        let a = DaemonLock::acquire(&dir).unwrap();
        let e = DaemonLock::acquire(&dir).err().unwrap();
        assert!(e.downcast_ref::<UsageError>().is_some());
        assert!(
            e.to_string().contains(&std::process::id().to_string()),
            "{e}"
        );
        drop(a);
        drop(DaemonLock::acquire(&dir).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
