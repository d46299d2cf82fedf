//! Session state for API connections: which refresh tokens were used, which token families are
//! dead, and when each connection last exchanged.
//!
//! Refresh tokens are single use (RFC 9700 §4.14.2), and single use needs state that outlives a
//! request and a restart. It sits behind [`SessionStore`] so the embedded default
//! ([`SqliteStore`], one node) and the shared store for several replicas ([`RedisStore`]) are
//! interchangeable. The hot path never calls the store: access tokens are checked by signature
//! and an in-memory view that the caller fills from [`SessionStore::dead_families`].

mod redis_follow;
mod redis_store;
mod sqlite;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

pub use redis_store::{RedisStore, CALL_TIMEOUT};
pub use sqlite::SqliteStore;

use std::sync::Arc;

/// What [`SessionStore::consume`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumed {
    /// First use: the caller may issue the successor pair.
    Fresh,
    /// The token was used before: a replay, so the family must die (reuse detection).
    Reused,
}

/// A token family that must no longer be honoured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadFamily {
    /// The connection (ClientId) the family belongs to.
    pub client_id: String,
    /// The family id: the `jti` of its console-issued refresh token.
    pub family: String,
    /// Unix seconds after which no token of the family can be valid anyway, so the record can go.
    pub until: u64,
}

/// Why the store failed. Display names the file and the cause; never a token or a `jti`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No runtime could be started to run a store call from synchronous code.
    #[error("cannot start a runtime for the session store: {0}")]
    Runtime(std::io::Error),
    /// The file could not be created or inspected (no such folder, a path through a regular file,
    /// permission denied), or the path is not a regular file.
    #[error("{}: cannot create or inspect session state store: {source}", path.display())]
    File {
        /// The state file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A read-only open found no file: no gateway has written one yet.
    #[error("{}: session state store does not exist", path.display())]
    Missing {
        /// The state file.
        path: PathBuf,
    },
    /// SQLite refused the file: not a database, unreadable, or locked past the busy timeout.
    #[error("{}: cannot open session state store: {source}", path.display())]
    Open {
        /// The state file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The file can be read but not written, so no refresh token could be consumed.
    #[error("{}: session state store is read-only; the gateway must be able to write it", path.display())]
    ReadOnly {
        /// The state file.
        path: PathBuf,
    },
    /// SQLite's integrity check failed: restore the file or move it away (every refresh token
    /// then counts as unused again), never silently.
    #[error("{}: session state store is corrupt: {detail}", path.display())]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// The first problem `PRAGMA quick_check` reported.
        detail: String,
    },
    /// The file is a SQLite database but not one of ours, or one from a newer scangate.
    #[error("{}: not a scangate session state store ({reason})", path.display())]
    Foreign {
        /// The state file.
        path: PathBuf,
        /// What does not match: the schema version found.
        reason: String,
    },
    /// A read or write failed after a successful open (disk full, I/O error, lock timeout).
    #[error("{}: session state store: {source}", path.display())]
    Query {
        /// The state file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// Redis refused a call, did not answer within [`CALL_TIMEOUT`], or could not be reached.
    /// `url` is shown without its password.
    #[error("session store {url}: {detail}")]
    Redis {
        /// The store's URL, redacted.
        url: String,
        /// What failed.
        detail: String,
    },
    /// The replica lost its subscription to revocations and has not yet reloaded the dead set,
    /// so it refuses exchanges rather than risk honouring a family killed meanwhile.
    #[error("session store {url}: not in sync since the connection was lost; retrying")]
    OutOfSync {
        /// The store's URL, redacted.
        url: String,
    },
    /// The blocking task running the query panicked or was cancelled.
    #[error("{}: session state store task failed: {source}", path.display())]
    Task {
        /// The state file.
        path: PathBuf,
        /// Tokio's error.
        source: tokio::task::JoinError,
    },
}

/// Runs a store call to completion from synchronous code, inside a runtime or outside any (the
/// CLI, start-up, a reload's blocking thread): on a thread of its own with a runtime of its own,
/// since a runtime cannot be blocked on from one of its own threads.
pub fn block_on<T: Send>(call: StoreFuture<'_, T>) -> Result<T, StoreError> {
    std::thread::scope(|s| {
        let run = s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(StoreError::Runtime)?
                .block_on(call)
        });
        run.join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// The future every store method returns: boxed so the trait is object safe (`Arc<dyn
/// SessionStore>`), `Send` so it runs on any worker.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// What a shared store tells the gateway while it runs (see [`SessionStore::follow`]).
pub trait StoreEvents: Send + Sync + 'static {
    /// Another replica (or this one) killed a family: the in-memory view must refuse it now.
    fn family_died(&self, dead: &DeadFamily);
    /// The store became reachable and in sync (`true`), or stopped being so (`false`).
    fn store_up(&self, up: bool);
}

/// Async, with consume atomic on the store's side, so a single file and a server several
/// replicas share can both implement it.
pub trait SessionStore: Send + Sync + 'static {
    /// Marks refresh token `jti` used, atomically: exactly one of N concurrent calls for the same
    /// jti (from any number of tasks or processes sharing the store) gets Fresh. The mark is kept
    /// until `exp`, so a reuse is detected (Reused) until then, also after a restart.
    fn consume<'a>(
        &'a self,
        client_id: &'a str,
        family: &'a str,
        jti: &'a str,
        exp: u64,
    ) -> StoreFuture<'a, Consumed>;

    /// [`consume`](SessionStore::consume), and on a reuse also records the family dead until
    /// `dead_until` ([`kill_family`](SessionStore::kill_family)). A shared store does both in one
    /// atomic step, so a reuse is never detected without being recorded for every replica. The
    /// default makes two calls; a failed kill is logged, and the reuse is still reported.
    fn consume_or_kill<'a>(
        &'a self,
        client_id: &'a str,
        family: &'a str,
        jti: &'a str,
        exp: u64,
        dead_until: u64,
    ) -> StoreFuture<'a, Consumed> {
        Box::pin(async move {
            let consumed = self.consume(client_id, family, jti, exp).await?;
            if consumed == Consumed::Reused {
                let dead = DeadFamily {
                    client_id: client_id.to_owned(),
                    family: family.to_owned(),
                    until: dead_until,
                };
                if let Err(e) = self.kill_family(&dead).await {
                    tracing::error!(error = %e, "cannot record a dead token family in the session store; it is dead in this process only");
                }
            }
            Ok(consumed)
        })
    }

    /// Records that a family is dead until `until` (its tokens' latest possible exp). Idempotent;
    /// a second call keeps the later `until`.
    fn kill_family<'a>(&'a self, dead: &'a DeadFamily) -> StoreFuture<'a, ()>;

    /// Every family still dead at `now` (loaded at start-up and after a reconnect).
    fn dead_families(&self, now: u64) -> StoreFuture<'_, Vec<DeadFamily>>;

    /// Records a successful exchange by a connection (for `connection list`'s status and
    /// last-exchange time). Keeps the later time if one is already there.
    fn record_exchange<'a>(&'a self, client_id: &'a str, at: u64) -> StoreFuture<'a, ()>;

    /// client_id → last exchange time.
    fn last_exchanges(&self) -> StoreFuture<'_, Vec<(String, u64)>>;

    /// Drops marks and dead families that expired before `now` (`exp < now`, `until < now`);
    /// returns how many rows went. Replicas sharing a store should pass `now` minus their clock
    /// skew, so no replica still honours a token whose mark another one dropped.
    fn purge(&self, now: u64) -> StoreFuture<'_, u64>;

    /// Starts keeping the gateway's view in step with other replicas, off the request path (a
    /// shared store's pub/sub). One node has nothing to follow: the default does nothing.
    fn follow(&self, events: Arc<dyn StoreEvents>) {
        let _ = events;
    }

    /// Whether calls can be trusted now; a followed shared store is not while it resyncs.
    fn in_sync(&self) -> bool {
        true
    }

    /// Adds `requests` and `bytes` to the quota count `key` and returns its new totals (across
    /// every replica that shares the store). The count may go once `expires_at` (unix seconds)
    /// has passed. Called once per principal per flush interval, never per request.
    fn add_usage<'a>(
        &'a self,
        key: &'a str,
        requests: u64,
        bytes: u64,
        expires_at: u64,
    ) -> StoreFuture<'a, (u64, u64)>;

    /// The store for logs and `/config`, never with a password.
    fn describe(&self) -> String;
}

impl std::fmt::Debug for dyn SessionStore {
    /// Nothing a store holds is for a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionStore")
    }
}
