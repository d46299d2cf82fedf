//! The shared [`SessionStore`] for several replicas: a Redis server (6.2 or later, for `SET …
//! EXAT` and `ZADD GT`), reached through redis-rs's connection manager, which reconnects by
//! itself.
//!
//! Every write is one command or one `MULTI` block, so its atomicity is the server's:
//! - `scangate:{CLIENT_ID}:used:JTI` is a used refresh token's mark, set with `NX` and expiring
//!   at the token's `exp`; whichever replica's `SET` lands first gets `OK`, every other one nil.
//!   The braces are a Cluster hash tag: one connection's keys share a slot.
//! - `scangate:dead` is a sorted set of dead families (member `CLIENT_ID FAMILY`, score the unix
//!   second until which it stays dead); `ZADD GT` keeps the later time. Each kill is also
//!   published on the channel of the same name, which [`super::redis_follow`] turns into the
//!   in-memory view of every replica.
//! - `scangate:last-exchange` is a sorted set of client IDs scored by their last exchange.
//!
//! No call waits longer than [`CALL_TIMEOUT`]; while the follower says the replica is out of step
//! with the store (Redis unreachable, or reached but not yet resynced), calls fail at once, so
//! exchanges get a quick 503 rather than a slow one.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, FromRedisValue};

use super::{Consumed, DeadFamily, SessionStore, StoreError, StoreEvents, StoreFuture};
use crate::config::RedisUrl;

/// The longest any store call may take, connecting included. An exchange waits this long at worst
/// before its 503; the follower's ping notices a stalled server within about as long.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// Sorted set and pub/sub channel of dead families.
pub(super) const DEAD: &str = "scangate:dead";
/// Sorted set of last exchanges.
const LAST_EXCHANGE: &str = "scangate:last-exchange";

/// The Redis session store. Cheap to clone: clones share one connection manager.
#[derive(Clone)]
pub struct RedisStore {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    /// The URL, shown without its password.
    pub(super) url: RedisUrl,
    pub(super) client: Client,
    /// Created on the first call (it needs a runtime), then shared.
    manager: OnceLock<ConnectionManager>,
    /// Set by [`RedisStore::follow`]: calls then also need `in_sync`.
    pub(super) followed: AtomicBool,
    /// Whether the follower is subscribed and has loaded the full dead set since it last
    /// (re)connected. Until then this replica's view may miss a kill, so exchanges wait.
    pub(super) in_sync: AtomicBool,
    /// Dropped with the store, which ends the follower thread.
    pub(super) stop: OnceLock<tokio::sync::watch::Sender<()>>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.inner.url)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store for `url`. Connects nowhere yet: a gateway starts while Redis is down, and its
    /// exchanges answer 503 until Redis is up.
    pub fn new(url: &RedisUrl) -> Result<RedisStore, StoreError> {
        let client = Client::open(url.expose()).map_err(|e| StoreError::Redis {
            url: url.to_string(),
            detail: redacted(&e),
        })?;
        Ok(RedisStore {
            inner: Arc::new(Inner {
                url: url.clone(),
                client,
                manager: OnceLock::new(),
                followed: AtomicBool::new(false),
                in_sync: AtomicBool::new(false),
                stop: OnceLock::new(),
            }),
        })
    }

    /// The URL without its password, for log lines.
    pub fn url(&self) -> &RedisUrl {
        &self.inner.url
    }

    /// Runs one command or `MULTI` block within [`CALL_TIMEOUT`]; refused at once while a
    /// followed store is out of sync.
    fn run<T, Q>(&self, query: Q) -> StoreFuture<'static, T>
    where
        T: FromRedisValue + Send + 'static,
        Q: Query,
    {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            if inner.followed.load(Ordering::Acquire) && !inner.in_sync.load(Ordering::Acquire) {
                return Err(StoreError::OutOfSync {
                    url: inner.url.to_string(),
                });
            }
            inner.query(query).await
        })
    }
}

/// A command or a pipeline, sent the same way.
pub(super) trait Query: Send + 'static {
    fn send<T: FromRedisValue + Send>(
        self,
        conn: ConnectionManager,
    ) -> impl std::future::Future<Output = redis::RedisResult<T>> + Send;
}

impl Query for redis::Cmd {
    async fn send<T: FromRedisValue + Send>(
        self,
        mut conn: ConnectionManager,
    ) -> redis::RedisResult<T> {
        self.query_async(&mut conn).await
    }
}

impl Query for redis::Pipeline {
    async fn send<T: FromRedisValue + Send>(
        self,
        mut conn: ConnectionManager,
    ) -> redis::RedisResult<T> {
        self.query_async(&mut conn).await
    }
}

impl Inner {
    /// The connection manager, created on first use in the caller's runtime.
    fn manager(&self) -> Result<ConnectionManager, StoreError> {
        if let Some(m) = self.manager.get() {
            return Ok(m.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let made = ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            .map_err(|e| self.error(&e))?;
        Ok(self.manager.get_or_init(|| made).clone())
    }

    /// Sends `query` within [`CALL_TIMEOUT`], in sync or not (the follower's resync uses this).
    pub(super) async fn query<T, Q>(&self, query: Q) -> Result<T, StoreError>
    where
        T: FromRedisValue + Send,
        Q: Query,
    {
        let conn = self.manager()?;
        match tokio::time::timeout(CALL_TIMEOUT, query.send(conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.error(&e)),
            Err(_) => Err(StoreError::Redis {
                url: self.url.to_string(),
                detail: format!("no answer within {CALL_TIMEOUT:?}"),
            }),
        }
    }

    pub(super) fn error(&self, e: &redis::RedisError) -> StoreError {
        StoreError::Redis {
            url: self.url.to_string(),
            detail: redacted(e),
        }
    }

    /// Every family dead after `now`, read whatever the sync state.
    pub(super) async fn dead_families(&self, now: u64) -> Result<Vec<DeadFamily>, StoreError> {
        let mut cmd = redis::cmd("ZRANGE");
        cmd.arg(DEAD)
            .arg(format!("({now}"))
            .arg("+inf")
            .arg("BYSCORE")
            .arg("WITHSCORES");
        let rows: Vec<(String, f64)> = self.query(cmd).await?;
        Ok(rows
            .into_iter()
            .filter_map(|(member, until)| parse_dead(&member, until as u64))
            .collect())
    }
}

/// A redis-rs error's text. redis-rs does not put the URL in its errors, but a server's reply
/// could quote anything, so only the kind and the code are kept for a reply from the server.
pub(super) fn redacted(e: &redis::RedisError) -> String {
    match e.code() {
        Some(code) => format!("{:?}: server replied {code}", e.kind()),
        None => e.to_string(),
    }
}

/// `CLIENT_ID FAMILY` as stored in [`DEAD`] (neither part holds a space: both are URL-safe).
pub(super) fn parse_dead(member: &str, until: u64) -> Option<DeadFamily> {
    let (client_id, family) = member.split_once(' ')?;
    Some(DeadFamily {
        client_id: client_id.to_owned(),
        family: family.to_owned(),
        until,
    })
}

impl SessionStore for RedisStore {
    fn consume<'a>(
        &'a self,
        client_id: &'a str,
        family: &'a str,
        jti: &'a str,
        exp: u64,
    ) -> StoreFuture<'a, Consumed> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(format!("scangate:{{{client_id}}}:used:{jti}"))
            .arg(family)
            .arg("NX")
            .arg("EXAT")
            .arg(exp);
        let set = self.run::<Option<String>, _>(cmd);
        Box::pin(async move {
            Ok(match set.await? {
                Some(_) => Consumed::Fresh,
                None => Consumed::Reused,
            })
        })
    }

    fn kill_family<'a>(&'a self, dead: &'a DeadFamily) -> StoreFuture<'a, ()> {
        let member = format!("{} {}", dead.client_id, dead.family);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("ZADD")
            .arg(DEAD)
            .arg("GT")
            .arg(dead.until)
            .arg(&member)
            .ignore()
            .cmd("PUBLISH")
            .arg(DEAD)
            .arg(format!("{} {member}", dead.until))
            .ignore();
        self.run(pipe)
    }

    fn dead_families(&self, now: u64) -> StoreFuture<'_, Vec<DeadFamily>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { inner.dead_families(now).await })
    }

    fn record_exchange<'a>(&'a self, client_id: &'a str, at: u64) -> StoreFuture<'a, ()> {
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(LAST_EXCHANGE).arg("GT").arg(at).arg(client_id);
        let added = self.run::<i64, _>(cmd);
        Box::pin(async move { added.await.map(drop) })
    }

    fn last_exchanges(&self) -> StoreFuture<'_, Vec<(String, u64)>> {
        let mut cmd = redis::cmd("ZRANGE");
        cmd.arg(LAST_EXCHANGE).arg(0).arg(-1).arg("WITHSCORES");
        let rows = self.run::<Vec<(String, f64)>, _>(cmd);
        Box::pin(async move {
            let mut rows: Vec<(String, u64)> = rows
                .await?
                .into_iter()
                .map(|(id, at)| (id, at as u64))
                .collect();
            rows.sort();
            Ok(rows)
        })
    }

    fn purge(&self, now: u64) -> StoreFuture<'_, u64> {
        // Marks expire by themselves (EXAT); only the dead set needs trimming.
        let mut cmd = redis::cmd("ZREMRANGEBYSCORE");
        cmd.arg(DEAD).arg("-inf").arg(format!("({now}"));
        self.run(cmd)
    }

    fn follow(&self, events: Arc<dyn StoreEvents>) {
        super::redis_follow::start(self, events);
    }

    fn in_sync(&self) -> bool {
        self.inner.in_sync.load(Ordering::Acquire)
    }

    fn describe(&self) -> String {
        self.inner.url.to_string()
    }
}
