//! One `enforcer run` per state directory and one per datapath: an exclusive `flock` on
//! `<state-dir>/daemon.lock` and one on the pin directory itself, both held for the daemon's lifetime
//! and released by the kernel however the process ends (kill -9 too). bpffs holds no regular files,
//! so the pin directory's holder is found through `/proc/locks`.

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
            return Err(crate::store::StateDirError {
                path: state_dir.to_path_buf(),
                err: e,
            }
            .into());
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

/// Held for the daemon's lifetime: nobody else runs or detaches the datapath pinned there.
pub struct PinLock(#[allow(dead_code)] std::fs::File);

/// The process holding a pin directory's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// Its command line, as far as `/proc` shows it.
    pub cmdline: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.cmdline.is_empty() {
            write!(f, "pid {}", self.pid)
        } else {
            write!(f, "pid {}: `{}`", self.pid, self.cmdline)
        }
    }
}

impl PinLock {
    /// Creates the pin directory if needed and locks it. Another daemon holding it is a usage error
    /// naming that daemon.
    pub fn acquire(pin_dir: &Path) -> anyhow::Result<Self> {
        if pin_dir.starts_with(crate::datapath::sys::BPFFS_ROOT) {
            // Mounting is the loader's job too; here it only has to exist to be locked.
            let _ = crate::datapath::sys::ensure_bpffs_root();
        }
        if let Err(e) = std::fs::create_dir_all(pin_dir) {
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                return usage(format!(
                    "permission denied creating {}: `enforcer run` needs root; run it as root",
                    pin_dir.display()
                ));
            }
            return Err(anyhow::Error::from(e).context(format!(
                "creating the pin directory {} (is bpffs mounted? `mount -t bpf bpf /sys/fs/bpf`)",
                pin_dir.display()
            )));
        }
        match Self::try_acquire(pin_dir)? {
            Ok(lock) => Ok(lock),
            Err(holder) => usage(format!(
                "another `enforcer run` ({holder}) already runs the datapath pinned at {}: one daemon per datapath; stop it first, or give this one its own --pin-dir",
                pin_dir.display()
            )),
        }
    }

    /// The daemon running the datapath at `pin_dir`, if one does (`None` when the directory does
    /// not exist or nobody holds it).
    pub fn holder(pin_dir: &Path) -> anyhow::Result<Option<Holder>> {
        if !pin_dir.exists() {
            return Ok(None);
        }
        Ok(Self::try_acquire(pin_dir)?.err())
    }

    /// Locks the existing pin directory, or says who holds it.
    pub fn try_acquire(pin_dir: &Path) -> anyhow::Result<Result<Self, Holder>> {
        let dir = std::fs::File::open(pin_dir).map_err(|e| {
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                anyhow::Error::from(crate::error::UsageError(format!(
                    "permission denied opening {}: run the command as root",
                    pin_dir.display()
                )))
            } else {
                anyhow::Error::from(e).context(format!("opening {}", pin_dir.display()))
            }
        })?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(Ok(Self(dir)));
        }
        use std::os::unix::fs::MetadataExt as _;
        let ino = dir.metadata().map(|m| m.ino()).unwrap_or(0);
        let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
        let me = std::process::id();
        let pid = flock_holders(&locks, ino).into_iter().find(|p| *p != me);
        let pid = pid.unwrap_or(me);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| {
                b.split(|c| *c == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        Ok(Err(Holder { pid, cmdline }))
    }
}

/// Pids holding a FLOCK on inode `ino`, from the text of `/proc/locks`
/// (`1: FLOCK  ADVISORY  WRITE 1234 00:2a:5678 0 EOF`).
fn flock_holders(locks: &str, ino: u64) -> Vec<u32> {
    locks
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let at = f.iter().position(|w| *w == "FLOCK")?;
            let pid = f.get(at + 3)?.parse().ok()?;
            let dev_ino = f.get(at + 4)?;
            let lock_ino: u64 = dev_ino.rsplit(':').next()?.parse().ok()?;
            (lock_ino == ino).then_some(pid)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::UsageError;

    #[test]
    fn one_daemon_per_pin_dir_and_the_second_names_the_first() {
        let dir = std::env::temp_dir().join(format!("enforcer-pinlock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(PinLock::holder(&dir).unwrap(), None);
        let a = PinLock::acquire(&dir).unwrap();
        let e = PinLock::acquire(&dir).err().unwrap();
        assert!(e.downcast_ref::<UsageError>().is_some());
        let me = std::process::id().to_string();
        assert!(e.to_string().contains(&format!("pid {me}")), "{e}");
        assert!(e.to_string().contains(&dir.display().to_string()), "{e}");
        assert_eq!(
            PinLock::holder(&dir).unwrap().map(|h| h.pid),
            Some(std::process::id())
        );
        drop(a);
        assert_eq!(PinLock::holder(&dir).unwrap(), None);
        drop(PinLock::acquire(&dir).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn proc_locks_lines_parse() {
        let text = "1: FLOCK  ADVISORY  WRITE 4321 00:2a:77 0 EOF\n2: POSIX  ADVISORY  WRITE 99 00:2a:77 0 EOF\n3: FLOCK  ADVISORY  WRITE 55 00:19:78 0 EOF\n4: -> FLOCK  ADVISORY  WRITE 66 00:2a:77 0 EOF\n";
        assert_eq!(flock_holders(text, 77), vec![4321, 66]);
        assert_eq!(flock_holders(text, 78), vec![55]);
        assert!(flock_holders("garbage\n", 77).is_empty());
    }

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
