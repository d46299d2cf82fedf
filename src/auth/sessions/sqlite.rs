//! The embedded default [`SessionStore`]: one SQLite file, for a single gateway (or several
//! processes on one host sharing the file).
//!
//! Every write is one statement, so its atomicity is SQLite's: the consume insert either adds the
//! mark or finds it, and concurrent writers queue on the file lock (WAL, busy timeout). One
//! connection per store behind a mutex; calls run on tokio's blocking pool so a slow disk never
//! stalls a worker thread.

use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, TransactionBehavior, MAIN_DB};

use super::{Consumed, DeadFamily, SessionStore, StoreError, StoreFuture};

/// Schema version kept in `PRAGMA user_version`. A new version comes with a migration from the
/// old one; a file from a newer scangate is refused, never reset.
const SCHEMA_VERSION: i64 = 1;

/// How long a statement waits for another connection's or process's write lock. Writes take
/// microseconds, so a wait of seconds means a stuck writer, and failing is better than hanging.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Marks keyed by `jti` (128 random bits, so unique across connections); families by connection
/// and family id; the last exchange per connection.
const SCHEMA: &str = "
CREATE TABLE consumed (
    jti       TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    family    TEXT NOT NULL,
    exp       INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX consumed_exp ON consumed (exp);
CREATE TABLE dead_family (
    client_id TEXT NOT NULL,
    family    TEXT NOT NULL,
    until     INTEGER NOT NULL,
    PRIMARY KEY (client_id, family)
) WITHOUT ROWID;
CREATE TABLE last_exchange (
    client_id TEXT PRIMARY KEY,
    at        INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Quota counts by key (`d<day>:<name>…`, `m<month>:<name>…`, see `auth::quota`).
const QUOTA_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS quota_usage (
    key      TEXT PRIMARY KEY,
    requests INTEGER NOT NULL,
    bytes    INTEGER NOT NULL,
    expires  INTEGER NOT NULL
) WITHOUT ROWID;
";

/// The SQLite session store. Cheap to clone: clones share one connection.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// For error messages.
    path: PathBuf,
    /// One connection; SQLite connections are not `Sync`, and one writer per process is all a
    /// file can use anyway.
    conn: Mutex<Connection>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl SqliteStore {
    /// Opens or creates the file (0600 when created), WAL, a busy timeout of a few seconds, schema
    /// versioned with PRAGMA user_version. Missing file: created. Corrupt file, a file that is not
    /// SQLite, an unreadable or unwritable file or folder: an error naming the path and the cause,
    /// never a silent reset.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        create_if_missing(path)?;
        check_regular_file(path)?;
        let err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags).map_err(err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        // SQLite silently opens a write-protected file read-only; every exchange would then fail.
        if conn.is_readonly(MAIN_DB).map_err(err)? {
            return Err(StoreError::ReadOnly {
                path: path.to_owned(),
            });
        }
        // The first statement reads the header: a file that is not SQLite fails here.
        // WAL: readers (the CLI) never block the gateway's writes.
        let _: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(err)?;
        // FULL: a consumed mark must survive a power cut, or a replayed token would pass once more.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |row| row.get(0))
            .map_err(err)?;
        if check != "ok" {
            return Err(StoreError::Corrupt {
                path: path.to_owned(),
                detail: check,
            });
        }
        migrate(&mut conn, path)?;
        // Quota counts came after schema 1; the table is added without a new version, so an
        // older scangate still opens the file (it never reads the table).
        (conn.execute_batch(QUOTA_SCHEMA)).map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        Ok(SqliteStore::new(path, conn))
    }

    /// Read-only, for the CLI (`connection list` reads last exchange times while a gateway runs).
    /// A missing file is [`StoreError::Missing`], so the CLI can show "no exchange yet".
    pub fn open_read_only(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Err(source) = std::fs::metadata(path) {
            return Err(match source.kind() {
                io::ErrorKind::NotFound => StoreError::Missing {
                    path: path.to_owned(),
                },
                _ => StoreError::File {
                    path: path.to_owned(),
                    source,
                },
            });
        }
        check_regular_file(path)?;
        let err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(err)?;
        if version != SCHEMA_VERSION {
            return Err(foreign(path, version));
        }
        Ok(SqliteStore::new(path, conn))
    }

    fn new(path: &Path, conn: Connection) -> SqliteStore {
        SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                conn: Mutex::new(conn),
            }),
        }
    }

    /// The state file, for log lines.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on the connection in tokio's blocking pool.
    fn run<T, F>(&self, f: F) -> StoreFuture<'static, T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let task = Arc::clone(&inner);
            let done = tokio::task::spawn_blocking(move || {
                // A panic while holding the lock leaves SQLite consistent: statements are atomic.
                let conn = task.conn.lock().unwrap_or_else(PoisonError::into_inner);
                f(&conn)
            })
            .await;
            let path = || inner.path.clone();
            match done {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(source)) => Err(StoreError::Query {
                    path: path(),
                    source,
                }),
                Err(source) => Err(StoreError::Task {
                    path: path(),
                    source,
                }),
            }
        })
    }
}

impl SessionStore for SqliteStore {
    fn consume<'a>(
        &'a self,
        client_id: &'a str,
        family: &'a str,
        jti: &'a str,
        exp: u64,
    ) -> StoreFuture<'a, Consumed> {
        let (client_id, family, jti) = (client_id.to_owned(), family.to_owned(), jti.to_owned());
        self.run(move |conn| {
            // One statement: the primary key decides, inside SQLite's write lock, who was first.
            let added = conn
                .prepare_cached(
                    "INSERT INTO consumed (jti, client_id, family, exp) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (jti) DO NOTHING",
                )?
                .execute(params![jti, client_id, family, to_sql(exp)])?;
            Ok(if added == 1 {
                Consumed::Fresh
            } else {
                Consumed::Reused
            })
        })
    }

    fn kill_family<'a>(&'a self, dead: &'a DeadFamily) -> StoreFuture<'a, ()> {
        let dead = dead.clone();
        self.run(move |conn| {
            conn.prepare_cached(
                "INSERT INTO dead_family (client_id, family, until) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (client_id, family) DO UPDATE SET until = max(until, excluded.until)",
            )?
            .execute(params![dead.client_id, dead.family, to_sql(dead.until)])?;
            Ok(())
        })
    }

    fn dead_families(&self, now: u64) -> StoreFuture<'_, Vec<DeadFamily>> {
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT client_id, family, until FROM dead_family WHERE until > ?1 \
                 ORDER BY client_id, family",
            )?;
            let rows = stmt.query_map([to_sql(now)], |row| {
                Ok(DeadFamily {
                    client_id: row.get(0)?,
                    family: row.get(1)?,
                    until: from_sql(row.get(2)?),
                })
            })?;
            rows.collect()
        })
    }

    fn record_exchange<'a>(&'a self, client_id: &'a str, at: u64) -> StoreFuture<'a, ()> {
        let client_id = client_id.to_owned();
        self.run(move |conn| {
            conn.prepare_cached(
                "INSERT INTO last_exchange (client_id, at) VALUES (?1, ?2) \
                 ON CONFLICT (client_id) DO UPDATE SET at = max(at, excluded.at)",
            )?
            .execute(params![client_id, to_sql(at)])?;
            Ok(())
        })
    }

    fn last_exchanges(&self) -> StoreFuture<'_, Vec<(String, u64)>> {
        self.run(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT client_id, at FROM last_exchange ORDER BY client_id")?;
            let rows = stmt.query_map([], |row| Ok((row.get(0)?, from_sql(row.get(1)?))))?;
            rows.collect()
        })
    }

    fn add_usage<'a>(
        &'a self,
        key: &'a str,
        requests: u64,
        bytes: u64,
        expires_at: u64,
    ) -> StoreFuture<'a, (u64, u64)> {
        let key = key.to_owned();
        self.run(move |conn| {
            let (requests, bytes, expires) = (to_sql(requests), to_sql(bytes), to_sql(expires_at));
            let (r, b): (i64, i64) = conn
                .prepare_cached(
                    "INSERT INTO quota_usage (key, requests, bytes, expires) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (key) DO UPDATE SET requests = requests + excluded.requests, \
                     bytes = bytes + excluded.bytes RETURNING requests, bytes",
                )?
                .query_row(params![key, requests, bytes, expires], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?;
            Ok((from_sql(r), from_sql(b)))
        })
    }

    fn purge(&self, now: u64) -> StoreFuture<'_, u64> {
        self.run(move |conn| {
            let now = to_sql(now);
            conn.prepare_cached("DELETE FROM quota_usage WHERE expires < ?1")?
                .execute([now])?;
            let marks = conn
                .prepare_cached("DELETE FROM consumed WHERE exp < ?1")?
                .execute([now])?;
            let families = conn
                .prepare_cached("DELETE FROM dead_family WHERE until < ?1")?
                .execute([now])?;
            Ok((marks + families) as u64)
        })
    }

    fn describe(&self) -> String {
        format!("sqlite:{}", self.inner.path.display())
    }
}

/// Creates an empty file with mode 0600 (an empty file is a valid empty database). Done here,
/// not by SQLite, for the mode and for an OS error that says why (no such folder, not a folder,
/// permission denied) where SQLite only says "unable to open database file".
fn create_if_missing(path: &Path) -> Result<(), StoreError> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(StoreError::File {
            path: path.to_owned(),
            source,
        }),
    }
}

/// A folder or a device at the path would give SQLite's vague "unable to open"; say what it is.
fn check_regular_file(path: &Path) -> Result<(), StoreError> {
    let file = |source| StoreError::File {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(file)?;
    if meta.is_file() {
        Ok(())
    } else {
        Err(file(io::Error::other("not a regular file")))
    }
}

/// Brings a new file to [`SCHEMA_VERSION`]; refuses any file that is not ours.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let err = |source| StoreError::Open {
        path: path.to_owned(),
        source,
    };
    // IMMEDIATE takes the write lock first, so two processes opening a new file at once do not
    // both create the schema.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(err)?;
    if version == 0 {
        let objects: i64 = tx
            .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
            .map_err(err)?;
        if objects != 0 {
            return Err(foreign(path, version));
        }
        tx.execute_batch(SCHEMA).map_err(err)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(err)?;
    } else if version != SCHEMA_VERSION {
        return Err(foreign(path, version));
    }
    tx.commit().map_err(err)
}

fn foreign(path: &Path, version: i64) -> StoreError {
    StoreError::Foreign {
        path: path.to_owned(),
        reason: format!("schema version {version}, this scangate uses {SCHEMA_VERSION}"),
    }
}

/// Unix seconds as SQLite's signed integer; values past `i64::MAX` (a "never" sentinel) clamp.
fn to_sql(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// The reverse; a negative value (only a hand-edited file has one) reads as 0, long expired.
fn from_sql(secs: i64) -> u64 {
    u64::try_from(secs).unwrap_or(0)
}
