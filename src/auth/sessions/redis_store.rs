//! The shared [`SessionStore`] for several replicas: a Redis server (6.2 or later, for `SET …
//! EXAT` and `ZADD GT`), reached through redis-rs's connection manager, which reconnects by
//! itself.
//!
//! Every write is one command or one Lua script, so its atomicity is the server's. The braces
//! are a Cluster hash tag: a script touches one connection's keys only, which share a slot.
//! - `scangate:{CLIENT_ID}:used:JTI` is a used refresh token's mark, set with `NX` and expiring
//!   at the token's `exp`; whichever replica's `SET` lands first wins, every other one finds it.
//! - `scangate:{CLIENT_ID}:dead` is the connection's dead families (a sorted set: member the
//!   family, score the unix second until which it stays dead; `ZADD GT` keeps the later time),
//!   expiring with the latest of them. A reuse finds the mark and records the kill in the same
//!   script ([`CONSUME`]), so no reuse is ever detected without being recorded and published.
//! - Each kill is published on the channel `scangate:dead` (`UNTIL CLIENT_ID FAMILY`), which
//!   [`super::redis_follow`] turns into the in-memory view of every replica.
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

/// The pub/sub channel of kills.
pub(super) const DEAD: &str = "scangate:dead";
/// What a connection's dead-family key looks like, for the resync's SCAN.
const DEAD_KEYS: &str = "scangate:{*}:dead";

/// The kill, shared by both scripts. KEYS[2] the dead set; ARGV: family, exp, until, now,
/// channel, message. The set lives as long as its latest family (TTL -1: no expiry yet).
macro_rules! kill_lua {
    () => {
        "redis.call('ZADD', KEYS[2], 'GT', ARGV[3], ARGV[1]) \
         if redis.call('TTL', KEYS[2]) < tonumber(ARGV[3]) - tonumber(ARGV[4]) then \
           redis.call('EXPIREAT', KEYS[2], ARGV[3]) end \
         redis.call('PUBLISH', ARGV[5], ARGV[6]) "
    };
}

/// Consume or, on a reuse, kill the family: 1 = fresh, 0 = reused (and recorded). KEYS[1] the
/// mark.
const CONSUME: &str = concat!(
    "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EXAT', ARGV[2]) then return 1 end ",
    kill_lua!(),
    "return 0"
);

/// A kill on its own (KEYS[1] is unused and the same key as KEYS[2]).
const KILL: &str = concat!(kill_lua!(), "return 0");
/// Sorted set of last exchanges.
/// Adds to a quota count and returns both totals; the count expires after its window.
const ADD_USAGE: &str = "local r = redis.call('HINCRBY', KEYS[1], 'requests', ARGV[1]) \
    local b = redis.call('HINCRBY', KEYS[1], 'bytes', ARGV[2]) \
    redis.call('EXPIREAT', KEYS[1], ARGV[3]) return {r, b}";
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

    /// Runs one command or script within [`CALL_TIMEOUT`]; refused at once while a
    /// followed store is out of sync.
    fn run<T>(&self, cmd: redis::Cmd) -> StoreFuture<'static, T>
    where
        T: FromRedisValue + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            if inner.followed.load(Ordering::Acquire) && !inner.in_sync.load(Ordering::Acquire) {
                return Err(StoreError::OutOfSync {
                    url: inner.url.to_string(),
                });
            }
            inner.query(cmd).await
        })
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

    /// Sends `cmd` within [`CALL_TIMEOUT`], in sync or not (the follower's resync uses this).
    pub(super) async fn query<T>(&self, cmd: redis::Cmd) -> Result<T, StoreError>
    where
        T: FromRedisValue + Send,
    {
        let mut conn = self.manager()?;
        match tokio::time::timeout(CALL_TIMEOUT, cmd.query_async(&mut conn)).await {
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

    /// Every family dead after `now`, read whatever the sync state: each connection's set.
    pub(super) async fn dead_families(&self, now: u64) -> Result<Vec<DeadFamily>, StoreError> {
        let mut found = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(DEAD_KEYS)
                .arg("COUNT")
                .arg(1000);
            let (next, keys): (u64, Vec<String>) = self.query(scan).await?;
            for key in keys {
                let Some(client_id) = key
                    .strip_prefix("scangate:{")
                    .and_then(|k| k.strip_suffix("}:dead"))
                else {
                    continue;
                };
                let mut range = redis::cmd("ZRANGE");
                range
                    .arg(&key)
                    .arg(format!("({now}"))
                    .arg("+inf")
                    .arg("BYSCORE")
                    .arg("WITHSCORES");
                let rows: Vec<(String, f64)> = self.query(range).await?;
                found.extend(rows.into_iter().map(|(family, until)| DeadFamily {
                    client_id: client_id.to_owned(),
                    family,
                    until: until as u64,
                }));
            }
            if next == 0 {
                found.sort_by(|a, b| (&a.client_id, &a.family).cmp(&(&b.client_id, &b.family)));
                return Ok(found);
            }
            cursor = next;
        }
    }
}

/// The script call that records `family` of `client_id` dead until `until` (and, for
/// [`CONSUME`], first tries to mark `jti` used until `exp`).
fn script(
    lua: &str,
    client_id: &str,
    family: &str,
    jti: Option<&str>,
    exp: u64,
    until: u64,
) -> redis::Cmd {
    let dead_key = format!("scangate:{{{client_id}}}:dead");
    let first_key = match jti {
        Some(jti) => format!("scangate:{{{client_id}}}:used:{jti}"),
        None => dead_key.clone(),
    };
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(lua)
        .arg(2)
        .arg(first_key)
        .arg(dead_key)
        .arg(family)
        .arg(exp)
        .arg(until)
        .arg(crate::config::validate::connections::now_secs())
        .arg(DEAD)
        .arg(format!("{until} {client_id} {family}"));
    cmd
}

/// A redis-rs error's text. redis-rs does not put the URL in its errors, but a server's reply
/// could quote anything, so only the kind and the code are kept for a reply from the server.
pub(super) fn redacted(e: &redis::RedisError) -> String {
    match e.code() {
        Some(code) => format!("{:?}: server replied {code}", e.kind()),
        None => e.to_string(),
    }
}

/// `CLIENT_ID FAMILY`, as a kill message carries them after its time (neither part holds a
/// space: both are URL-safe).
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
        let set = self.run::<Option<String>>(cmd);
        Box::pin(async move {
            Ok(match set.await? {
                Some(_) => Consumed::Fresh,
                None => Consumed::Reused,
            })
        })
    }

    fn consume_or_kill<'a>(
        &'a self,
        client_id: &'a str,
        family: &'a str,
        jti: &'a str,
        exp: u64,
        dead_until: u64,
    ) -> StoreFuture<'a, Consumed> {
        let cmd = script(CONSUME, client_id, family, Some(jti), exp, dead_until);
        let ran = self.run::<i64>(cmd);
        Box::pin(async move {
            Ok(match ran.await? {
                1 => Consumed::Fresh,
                _ => Consumed::Reused,
            })
        })
    }

    fn kill_family<'a>(&'a self, dead: &'a DeadFamily) -> StoreFuture<'a, ()> {
        let cmd = script(KILL, &dead.client_id, &dead.family, None, 0, dead.until);
        let ran = self.run::<i64>(cmd);
        Box::pin(async move { ran.await.map(drop) })
    }

    fn dead_families(&self, now: u64) -> StoreFuture<'_, Vec<DeadFamily>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { inner.dead_families(now).await })
    }

    fn record_exchange<'a>(&'a self, client_id: &'a str, at: u64) -> StoreFuture<'a, ()> {
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(LAST_EXCHANGE).arg("GT").arg(at).arg(client_id);
        let added = self.run::<i64>(cmd);
        Box::pin(async move { added.await.map(drop) })
    }

    fn last_exchanges(&self) -> StoreFuture<'_, Vec<(String, u64)>> {
        let mut cmd = redis::cmd("ZRANGE");
        cmd.arg(LAST_EXCHANGE).arg(0).arg(-1).arg("WITHSCORES");
        let rows = self.run::<Vec<(String, f64)>>(cmd);
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

    fn add_usage<'a>(
        &'a self,
        key: &'a str,
        requests: u64,
        bytes: u64,
        expires_at: u64,
    ) -> StoreFuture<'a, (u64, u64)> {
        // One hash per count, hash-tagged alone; both fields and the expiry in one atomic call.
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(ADD_USAGE)
            .arg(1)
            .arg(format!("scangate:quota:{{{key}}}"))
            .arg(requests)
            .arg(bytes)
            .arg(expires_at);
        let totals = self.run::<(u64, u64)>(cmd);
        Box::pin(totals)
    }

    fn purge(&self, now: u64) -> StoreFuture<'_, u64> {
        // Marks expire at their token's exp and each dead set with its latest family, by
        // themselves; a set's older families are filtered out on reading.
        let _ = now;
        Box::pin(async { Ok(0) })
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
