//! Durable state: one redb database `<state-dir>/enforcer.redb`. Every write is one committed
//! transaction. Tables live in their own files (`operator.rs`: operator rules, `senders.rs`: sender
//! records of the progressive enforcement engine).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;

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
    pub(crate) db: redb::Database,
    path: PathBuf,
}

/// The database is held by another process (another CLI command or a daemon that keeps it open).
#[derive(Debug, thiserror::Error)]
#[error(
    "the state database {0} is in use by another enforcer process; try again, or stop that process"
)]
pub struct Locked(pub PathBuf);

impl Store {
    /// Opens (creating if needed) `<dir>/enforcer.redb`, waiting up to 3 s for another process to
    /// release it.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        perms::secure_dir(dir).with_context(|| {
            format!(
                "creating the state directory {} (pass --state-dir to use another)",
                dir.display()
            )
        })?;
        let path = dir.join(DB_FILE);
        let deadline = Instant::now() + Duration::from_secs(3);
        let db = loop {
            match redb::Database::create(&path) {
                Ok(db) => break db,
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Err(Locked(path).into()),
                Err(e) => {
                    return Err(e).with_context(|| format!("opening {}", path.display()));
                }
            }
        };
        perms::secure_file(&path)?;
        let store = Self { db, path };
        store.init_tables()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates every table so readers never meet a missing one.
    fn init_tables(&self) -> anyhow::Result<()> {
        let tx = self.db.begin_write()?;
        tx.open_table(operator::TABLE)?;
        tx.commit()?;
        Ok(())
    }
}
