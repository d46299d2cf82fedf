//! The embedded session store: one SQLite file (WAL), for a gateway on one node.
//!
//! Consume is one statement, `INSERT … ON CONFLICT DO NOTHING`: SQLite serialises writers, so of
//! any number of concurrent consumes of one jti, from this process or another that opens the same
//! file, exactly one inserts the row. Queries run on tokio's blocking pool, never on a request's
//! thread.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags};

use super::{Consumed, DeadFamily, SessionStore, StoreError, StoreFuture};

/// The schema version this code writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

/// How long a write waits for another writer (another gateway on the same file) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(3);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS consumed (
    jti TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    family TEXT NOT NULL,
    exp INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS consumed_exp ON consumed(exp);
CREATE TABLE IF NOT EXISTS dead_families (
    family TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    until INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS exchanges (
    client_id TEXT PRIMARY KEY,
    at INTEGER NOT NULL
) WITHOUT ROWID;
";

/// A SQLite session store.
#[derive(Clone)]
pub struct SqliteStore {
    path: Arc<PathBuf>,
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SqliteStore({})", self.path.display())
    }
}

impl SqliteStore {
    /// Opens or creates the store at `path` (mode 0600 when created). A file that is not a
    /// session store, or that cannot be read or written, is an error naming it; it is never reset.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let open_err = |cause: String| StoreError::Open {
            path: path.to_owned(),
            cause,
        };
        let created = !path.exists();
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| open_err(e.to_string()))?;
        if created {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| open_err(e.to_string()))?;
        }
        let setup = || -> rusqlite::Result<i64> {
            conn.busy_timeout(BUSY_TIMEOUT)?;
            // The first read is where SQLite notices a file that is not a database.
            let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            Ok(version)
        };
        let version = setup().map_err(|e| open_err(e.to_string()))?;
        if version > SCHEMA_VERSION {
            return Err(open_err(format!(
                "schema version {version} is newer than this scangate's {SCHEMA_VERSION}"
            )));
        }
        conn.execute_batch(SCHEMA)
            .and_then(|()| conn.pragma_update(None, "user_version", SCHEMA_VERSION))
            .map_err(|e| open_err(e.to_string()))?;
        Ok(SqliteStore {
            path: Arc::new(path.to_owned()),
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Opens an existing store read-only, for the CLI to read exchange times while a gateway
    /// writes.
    pub fn open_read_only(path: &Path) -> Result<SqliteStore, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .and_then(|c| {
                c.busy_timeout(BUSY_TIMEOUT)?;
                c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))?;
                Ok(c)
            })
            .map_err(|e| StoreError::Open {
                path: path.to_owned(),
                cause: e.to_string(),
            })?;
        Ok(SqliteStore {
            path: Arc::new(path.to_owned()),
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` on the connection on the blocking pool.
    fn run<T, F>(&self, f: F) -> StoreFuture<'static, T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (conn, path) = (Arc::clone(&self.conn), Arc::clone(&self.path));
        Box::pin(async move {
            let done = tokio::task::spawn_blocking(move || {
                let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                f(&conn)
            })
            .await
            .map_err(|e| StoreError::Runtime(e.to_string()))?;
            done.map_err(|e| StoreError::Query {
                path: path.to_path_buf(),
                cause: e.to_string(),
            })
        })
    }
}

fn secs(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl SessionStore for SqliteStore {
    fn consume<'a>(
        &'a self,
        client_id: &'a str,
        family: &'a str,
        jti: &'a str,
        exp: u64,
    ) -> StoreFuture<'a, Consumed> {
        let (c, f, j) = (client_id.to_owned(), family.to_owned(), jti.to_owned());
        self.run(move |conn| {
            let inserted = conn.execute(
                "INSERT INTO consumed(jti, client_id, family, exp) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT(jti) DO NOTHING",
                params![j, c, f, secs(exp)],
            )?;
            Ok(if inserted == 1 {
                Consumed::Fresh
            } else {
                Consumed::Reused
            })
        })
    }

    fn kill_family<'a>(&'a self, dead: &'a DeadFamily) -> StoreFuture<'a, ()> {
        let dead = dead.clone();
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO dead_families(family, client_id, until) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(family) DO UPDATE SET until = max(until, excluded.until)",
                params![dead.family, dead.client_id, secs(dead.until)],
            )?;
            Ok(())
        })
    }

    fn dead_families(&self, now: u64) -> StoreFuture<'_, Vec<DeadFamily>> {
        self.run(move |conn| {
            let mut stmt = conn
                .prepare("SELECT client_id, family, until FROM dead_families WHERE until > ?1")?;
            let rows = stmt.query_map(params![secs(now)], |r| {
                Ok(DeadFamily {
                    client_id: r.get(0)?,
                    family: r.get(1)?,
                    until: r.get::<_, i64>(2)?.max(0) as u64,
                })
            })?;
            rows.collect()
        })
    }

    fn record_exchange<'a>(&'a self, client_id: &'a str, at: u64) -> StoreFuture<'a, ()> {
        let client_id = client_id.to_owned();
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO exchanges(client_id, at) VALUES (?1, ?2) \
                 ON CONFLICT(client_id) DO UPDATE SET at = max(at, excluded.at)",
                params![client_id, secs(at)],
            )?;
            Ok(())
        })
    }

    fn last_exchanges(&self) -> StoreFuture<'_, Vec<(String, u64)>> {
        self.run(|conn| {
            let mut stmt = conn.prepare("SELECT client_id, at FROM exchanges")?;
            let rows =
                stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64)))?;
            rows.collect()
        })
    }

    fn purge(&self, now: u64) -> StoreFuture<'_, u64> {
        self.run(move |conn| {
            let marks = conn.execute("DELETE FROM consumed WHERE exp <= ?1", params![secs(now)])?;
            let dead = conn.execute(
                "DELETE FROM dead_families WHERE until <= ?1",
                params![secs(now)],
            )?;
            Ok((marks + dead) as u64)
        })
    }
}

#[cfg(test)]
#[path = "sqlite_tests.rs"]
mod tests;
