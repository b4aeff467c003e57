//! Durable state: one redb database `<state-dir>/enforcer.redb`. Every write is one committed
//! transaction. Tables live in their own files (`operator.rs`: operator rules, `senders.rs`: sender
//! records of the progressive enforcement engine).
//!
//! A bad file never panics and never passes for an empty store: a database that exists but is empty
//! (0 bytes) or unreadable is an error naming the file ([`Damaged`], exit status 2), so nothing
//! reconciles the kernel to "no entries". `enforcer run --reset-state` moves such a file aside.
//! A write that fails (disk full) closes the database; the next access reopens it, so one I/O error
//! never makes every later write fail until a restart.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use redb::Database;

use crate::error::UsageError;

pub mod fleet;
pub mod operator;
pub mod perms;
pub mod senders;

/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/enforcer";
/// Database file name inside the state directory.
pub const DB_FILE: &str = "enforcer.redb";

/// The open database. redb locks the file, so only one process holds it at a time; open it for a
/// command and drop it afterwards.
pub struct Store {
    /// `None` after a failed write closed it; reopened on the next access.
    db: Mutex<Option<Database>>,
    path: PathBuf,
    /// Unit tests: every write fails while set (what a full disk does).
    #[cfg(test)]
    failing: std::sync::atomic::AtomicBool,
}

/// The state directory cannot be created or used (permissions, a file in the way, read-only).
#[derive(Debug, thiserror::Error)]
#[error("cannot create the state directory {path}: {err} (run as root, or pass --state-dir DIR / set ENFORCER_STATE_DIR)")]
pub struct StateDirError {
    pub path: PathBuf,
    pub err: std::io::Error,
}

/// The database is held by another process (another CLI command or a daemon that keeps it open).
#[derive(Debug, thiserror::Error)]
#[error(
    "the state database {0} is in use by another enforcer process; try again, or stop that process"
)]
pub struct Locked(pub PathBuf);

/// How to get out of a damaged database; part of every such error.
const RESET_HINT: &str = "the kernel entries were left as they are; restore the file from a backup, or start over with `enforcer run --reset-state` (moves the file aside; the kernel entries it held are then removed)";

thread_local! {
    /// Set while [`guarded`] runs on this thread: a panic there is reported as an error, so the
    /// panic hook stays quiet instead of printing "panicked at" to the operator.
    static GUARDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Wraps the panic hook once so panics inside [`guarded`] are not printed (they become errors).
fn quiet_guarded_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if GUARDED.with(|g| g.get()) {
                log::debug!("redb panicked (reported as a damaged database): {info}");
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, turning a panic inside redb (it panics on some corrupt files) into an error that names
/// the file.
fn guarded<R>(path: &Path, f: impl FnOnce() -> anyhow::Result<R>) -> anyhow::Result<R> {
    quiet_guarded_panics();
    let outer = GUARDED.with(|g| g.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(outer));
    match result {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            Err(UsageError(format!(
                "the state database {} is damaged (redb failed reading it: {msg}); {RESET_HINT}",
                path.display()
            ))
            .into())
        }
    }
}

/// Whether redb reported the file as corrupt somewhere in `e`.
fn is_corruption(e: &anyhow::Error) -> bool {
    use redb::StorageError::Corrupted;
    e.chain().any(|c| {
        matches!(c.downcast_ref::<redb::StorageError>(), Some(Corrupted(_)))
            || matches!(
                c.downcast_ref::<redb::Error>(),
                Some(redb::Error::Corrupted(_))
            )
            || matches!(
                c.downcast_ref::<redb::TableError>(),
                Some(redb::TableError::Storage(Corrupted(_)))
            )
            || matches!(
                c.downcast_ref::<redb::TransactionError>(),
                Some(redb::TransactionError::Storage(Corrupted(_)))
            )
            || matches!(
                c.downcast_ref::<redb::CommitError>(),
                Some(redb::CommitError::Storage(Corrupted(_)))
            )
    })
}

/// Opens `path`, waiting up to 3 s for another process to release it. A file that exists but is
/// empty or unreadable is an error naming it.
/// redb's page cache. Its default (1 GiB) would keep most of a million-entry store resident in the
/// daemon after start-up reads it once; the daemon reads the store rarely (start-up, listings,
/// records on demand), and the OS page cache serves those reads.
const CACHE_BYTES: usize = 32 << 20;

fn open_db(path: &Path) -> anyhow::Result<Database> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() == 0 => {
            return Err(UsageError(format!(
                "the state database {} exists but is empty (0 bytes): it lost what it held (a crash of the filesystem, or a truncate); {RESET_HINT}",
                path.display()
            ))
            .into())
        }
        _ => {}
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match guarded(path, || {
            Ok(Database::builder().set_cache_size(CACHE_BYTES).create(path))
        })? {
            Ok(db) => return Ok(db),
            Err(redb::DatabaseError::DatabaseAlreadyOpen) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(Locked(path.to_path_buf()).into())
            }
            Err(redb::DatabaseError::Storage(redb::StorageError::Io(e)))
                if e.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                return Err(UsageError(format!(
                    "permission denied opening {}: run the command as root",
                    path.display()
                ))
                .into())
            }
            Err(e) => {
                return Err(UsageError(format!(
                    "the state database {} cannot be read ({e}); {RESET_HINT}",
                    path.display()
                ))
                .into())
            }
        }
    }
}

impl Store {
    /// Opens (creating if needed) `<dir>/enforcer.redb`, waiting up to 3 s for another process to
    /// release it.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        perms::secure_dir(dir).map_err(|err| StateDirError {
            path: dir.to_path_buf(),
            err,
        })?;
        let path = dir.join(DB_FILE);
        let db = open_db(&path)?;
        perms::secure_file(&path)?;
        let store = Self {
            db: Mutex::new(Some(db)),
            path,
            #[cfg(test)]
            failing: Default::default(),
        };
        store.init_tables()?;
        Ok(store)
    }

    /// Moves `<dir>/enforcer.redb` aside (to `enforcer.redb.reset-<unix time>`) so the next open
    /// starts empty; returns where it went, `None` when there was no file.
    pub fn reset(dir: &Path) -> anyhow::Result<Option<PathBuf>> {
        let path = dir.join(DB_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let aside = dir.join(format!("{DB_FILE}.reset-{now}"));
        std::fs::rename(&path, &aside)
            .with_context(|| format!("moving {} aside to {}", path.display(), aside.display()))?;
        Ok(Some(aside))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The database slot. Panics inside redb are caught while it is held, so a poisoned lock
    /// still guards a consistent slot.
    fn slot(&self) -> MutexGuard<'_, Option<Database>> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the database (reopening it if a failed write closed it), panic-safe.
    pub(crate) fn read<R>(
        &self,
        f: impl FnOnce(&Database) -> anyhow::Result<R>,
    ) -> anyhow::Result<R> {
        let mut slot = self.slot();
        if slot.is_none() {
            *slot = Some(open_db(&self.path)?);
            log::info!("reopened the state database {}", self.path.display());
        }
        let db = slot.as_ref().expect("opened above");
        guarded(&self.path, || f(db)).map_err(|e| {
            if e.downcast_ref::<UsageError>().is_some() {
                e
            } else if is_corruption(&e) {
                UsageError(format!(
                    "the state database {} is damaged ({e:#}); {RESET_HINT}",
                    self.path.display()
                ))
                .into()
            } else {
                e.context(format!("state database {}", self.path.display()))
            }
        })
    }

    /// Runs the write `f`. redb refuses every write after one I/O error (disk full) until the
    /// database is reopened, so a failure closes it, reopens it and tries once more; if that fails
    /// too the error says so and the next write starts again from a fresh open.
    pub(crate) fn write<R>(&self, f: impl Fn(&Database) -> anyhow::Result<R>) -> anyhow::Result<R> {
        #[cfg(test)]
        if self.failing.load(std::sync::atomic::Ordering::Relaxed) {
            anyhow::bail!("injected store failure");
        }
        match self.read(&f) {
            Ok(r) => Ok(r),
            Err(first) => {
                log::warn!(
                    "writing {} failed ({first:#}); reopening the database and retrying once",
                    self.path.display()
                );
                *self.slot() = None;
                self.read(&f).map_err(|e| {
                    *self.slot() = None;
                    e.context(format!(
                        "could not write the state database {} (disk full? nothing was changed; free space and retry)",
                        self.path.display()
                    ))
                })
            }
        }
    }

    /// Unit tests: makes every write fail (`true`) or work again.
    #[cfg(test)]
    pub(crate) fn fail_writes(&self, on: bool) {
        self.failing.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Creates every table so readers never meet a missing one.
    fn init_tables(&self) -> anyhow::Result<()> {
        self.write(|db| {
            let tx = db.begin_write()?;
            tx.open_table(operator::TABLE)?;
            tx.commit()?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests;

/// `def` opened in a read transaction; `None` when the table does not exist (a database made by a
/// version before the table).
pub(crate) fn read_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &redb::ReadTransaction,
    def: redb::TableDefinition<K, V>,
) -> anyhow::Result<Option<redb::ReadOnlyTable<K, V>>> {
    use redb::TableHandle as _;
    match txn.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("opening the {} table", def.name())),
    }
}
