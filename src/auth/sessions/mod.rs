//! Session state for API connections: which refresh tokens were used, and which token families a
//! reuse killed. Single use needs state shared by everything that exchanges tokens, so it sits
//! behind [`SessionStore`]: SQLite in a file for one node ([`SqliteStore`]), and a store that
//! replicas share (Redis) implements the same trait.
//!
//! The request path never calls a store: it judges access tokens from memory
//! ([`crate::auth::connections`]). Only the exchange endpoint and start-up do.

mod sqlite;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

pub use sqlite::SqliteStore;

/// What [`SessionStore::consume`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumed {
    /// First use: the caller may issue the next pair.
    Fresh,
    /// Used before: a reuse, which kills the family.
    Reused,
}

/// A family killed by a reuse: every token of it is refused until `until`, when the last of them
/// has expired anyway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadFamily {
    /// The connection it belongs to.
    pub client_id: String,
    /// The family id (the `fam` claim).
    pub family: String,
    /// Unix seconds.
    pub until: u64,
}

/// Why the store could not answer. Names the store and the cause; never a token.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The SQLite file could not be opened, created or read as a session store.
    #[error("{}: cannot open the session store: {cause}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// What SQLite or the OS said.
        cause: String,
    },
    /// A query failed on an open store.
    #[error("{}: session store query failed: {cause}", path.display())]
    Query {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        cause: String,
    },
    /// The blocking task that runs a query could not run or panicked.
    #[error("session store worker failed: {0}")]
    Runtime(String),
}

/// A boxed future of a store call, so the trait stays object-safe (`Arc<dyn SessionStore>`).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The state single use needs. Every call is atomic on the store's side, so several gateways may
/// share one store.
pub trait SessionStore: Send + Sync + 'static {
    /// Marks refresh token `jti` used, atomically: exactly one of any number of concurrent calls
    /// for the same jti gets [`Consumed::Fresh`]. The mark is kept until `exp`, so a reuse is
    /// detected until then, restarts included.
    fn consume<'a>(
        &'a self,
        client_id: &'a str,
        family: &'a str,
        jti: &'a str,
        exp: u64,
    ) -> StoreFuture<'a, Consumed>;

    /// Records that a family is dead until `dead.until`. Idempotent.
    fn kill_family<'a>(&'a self, dead: &'a DeadFamily) -> StoreFuture<'a, ()>;

    /// Every family still dead at `now`.
    fn dead_families(&self, now: u64) -> StoreFuture<'_, Vec<DeadFamily>>;

    /// Records a successful exchange by a connection, for its status and last-exchange time.
    fn record_exchange<'a>(&'a self, client_id: &'a str, at: u64) -> StoreFuture<'a, ()>;

    /// Client ID → last exchange time (unix seconds).
    fn last_exchanges(&self) -> StoreFuture<'_, Vec<(String, u64)>>;

    /// Drops marks and dead families that expired before `now`; returns how many rows went.
    fn purge(&self, now: u64) -> StoreFuture<'_, u64>;
}

impl std::fmt::Debug for dyn SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionStore")
    }
}
