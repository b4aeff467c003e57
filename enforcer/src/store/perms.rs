//! The state directory holds operator reasons and sender evidence: private to root. The directory is
//! 0700 and every file in it 0600, created so and corrected on every start for installs made before.

use anyhow::Context as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::Path;

pub const DIR_MODE: u32 = 0o700;
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` as 0700 (with missing parents), or tightens an existing one to 0700. A shared
/// directory (sticky bit, like /tmp) passed as the state directory is left as it is with a warning:
/// tightening it would break every other user of it.
pub fn secure_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    let meta = std::fs::metadata(dir)?;
    let mode = meta.mode() & 0o7777;
    if mode & libc::S_ISVTX != 0 {
        log::warn!(
            "the state directory {} is a shared directory (mode {mode:o}); use a private one such as /var/lib/enforcer",
            dir.display()
        );
        return Ok(());
    }
    if mode & 0o777 != DIR_MODE {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))?;
        log::info!("state directory {}: mode {mode:o} -> 700", dir.display());
    }
    Ok(())
}

/// Makes an existing file 0600 (a no-op when it already is or does not exist).
pub fn secure_file(path: &Path) -> anyhow::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("checking {}", path.display())),
    };
    if meta.is_file() && meta.mode() & 0o777 != FILE_MODE {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(FILE_MODE))
            .with_context(|| format!("making {} private (mode 600)", path.display()))?;
        log::info!("{}: mode {:o} -> 600", path.display(), meta.mode() & 0o777);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().mode() & 0o7777
    }

    fn tmp(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("enforcer-perms-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn new_state_is_private() {
        let d = tmp("new").join("state");
        let s = crate::store::Store::open(&d).unwrap();
        assert_eq!(mode(&d), 0o700);
        assert_eq!(mode(s.path()), 0o600);
        drop(s);
        let lock = crate::daemon::lock::DaemonLock::acquire(&d).unwrap();
        assert_eq!(mode(&d.join("daemon.lock")), 0o600);
        drop(lock);
        std::fs::remove_dir_all(d.parent().unwrap()).unwrap();
    }

    #[test]
    fn an_existing_install_is_tightened_on_start() {
        let d = tmp("old");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        drop(crate::store::Store::open(&d).unwrap());
        // As an older version left them: world-readable files in a world-readable directory.
        std::fs::write(d.join("daemon.lock"), b"1").unwrap();
        for p in [d.join("enforcer.redb"), d.join("daemon.lock"), d.clone()] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let lock = crate::daemon::lock::DaemonLock::acquire(&d).unwrap();
        drop(crate::store::Store::open(&d).unwrap());
        assert_eq!(mode(&d), 0o700);
        assert_eq!(mode(&d.join("enforcer.redb")), 0o600);
        assert_eq!(mode(&d.join("daemon.lock")), 0o600);
        drop(lock);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_shared_sticky_directory_is_left_alone() {
        let d = tmp("sticky");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
        secure_dir(&d).unwrap();
        assert_eq!(mode(&d), 0o1777);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
