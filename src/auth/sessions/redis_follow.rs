//! Keeps a replica's in-memory view of dead families in step with the other replicas' through
//! Redis pub/sub, on a thread of its own so no request ever waits on it.
//!
//! Each round: connect, subscribe to [`DEAD`], then load the whole dead set, and only then call
//! the store in sync (subscribing first means a kill published in between is heard twice, never
//! missed). While subscribed, every published kill reaches the view within milliseconds, and a
//! ping every [`PING_EVERY`] notices a server that stopped answering (a stopped process keeps its
//! sockets open). Any failure ends the round: the store is out of sync, exchanges answer 503, and
//! the next round starts after a short backoff, for as long as the store exists.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::time::timeout;

use super::redis_store::{parse_dead, Inner, RedisStore, CALL_TIMEOUT, DEAD};
use super::{DeadFamily, StoreError, StoreEvents};
use crate::config::validate::connections::now_secs;

/// How often the subscription is pinged.
const PING_EVERY: Duration = Duration::from_millis(500);
/// First wait before a reconnect; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between reconnects: recovery is noticed within about this long.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Starts following `store` (once; later calls do nothing). The thread ends when the store is
/// dropped.
pub(super) fn start(store: &RedisStore, events: Arc<dyn StoreEvents>) {
    let inner = &store.inner;
    if inner.followed.swap(true, Ordering::AcqRel) {
        return;
    }
    let (stop_tx, stop_rx) = watch::channel(());
    let _ = inner.stop.set(stop_tx);
    let weak = Arc::downgrade(inner);
    let spawned = std::thread::Builder::new()
        .name("scangate-redis".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(rt) => rt.block_on(run(weak, events, stop_rx)),
                Err(e) => tracing::error!(error = %e, "cannot start the session store follower"),
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the session store follower thread");
    }
}

/// Rounds until the store is dropped.
async fn run(weak: Weak<Inner>, events: Arc<dyn StoreEvents>, mut stop: watch::Receiver<()>) {
    let mut reported: Option<bool> = None;
    let mut backoff = MIN_BACKOFF;
    loop {
        let ended = tokio::select! {
            ended = round(&weak, &*events, &mut reported, &mut backoff) => ended,
            _ = stop.changed() => return,
        };
        let Err(e) = ended;
        let Some(inner) = weak.upgrade() else {
            return;
        };
        inner.in_sync.store(false, Ordering::Release);
        if reported != Some(false) {
            tracing::error!(
                store = %inner.url,
                error = %e,
                "session store down: exchanges answer 503 until it is back; access tokens keep working"
            );
            events.store_up(false);
            reported = Some(false);
        }
        drop(inner);
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's life: subscribe, resync, then follow until something fails.
async fn round(
    weak: &Weak<Inner>,
    events: &dyn StoreEvents,
    reported: &mut Option<bool>,
    backoff: &mut Duration,
) -> Result<Infallible, StoreError> {
    let gone = || StoreError::Redis {
        url: String::new(),
        detail: "store dropped".into(),
    };
    let inner = weak.upgrade().ok_or_else(gone)?;
    let (client, url) = (inner.client.clone(), inner.url.to_string());
    drop(inner);
    let late = || StoreError::Redis {
        url: url.clone(),
        detail: format!("no answer within {CALL_TIMEOUT:?}"),
    };
    let failed = |e: redis::RedisError| StoreError::Redis {
        url: url.clone(),
        detail: super::redis_store::redacted(&e),
    };
    let pubsub = timeout(CALL_TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(|_| late())?
        .map_err(failed)?;
    let (mut sink, mut stream) = pubsub.split();
    timeout(CALL_TIMEOUT, sink.subscribe(DEAD))
        .await
        .map_err(|_| late())?
        .map_err(failed)?;
    let inner = weak.upgrade().ok_or_else(gone)?;
    let dead = inner.dead_families(now_secs()).await?;
    for family in &dead {
        events.family_died(family);
    }
    inner.in_sync.store(true, Ordering::Release);
    drop(inner);
    if *reported != Some(true) {
        tracing::info!(
            store = %url,
            dead_families = dead.len(),
            "session store in sync: subscribed to revocations and loaded the dead families"
        );
        events.store_up(true);
        *reported = Some(true);
    }
    *backoff = MIN_BACKOFF;
    let mut ping = tokio::time::interval(PING_EVERY);
    loop {
        tokio::select! {
            msg = stream.next() => {
                let msg = msg.ok_or_else(|| StoreError::Redis {
                    url: url.clone(),
                    detail: "subscription closed".into(),
                })?;
                match msg.get_payload::<String>().ok().as_deref().and_then(parse_message) {
                    Some(family) => events.family_died(&family),
                    None => tracing::warn!(channel = DEAD, "ignoring a malformed revocation message"),
                }
            }
            _ = ping.tick() => {
                timeout(CALL_TIMEOUT, sink.ping::<redis::Value>())
                    .await
                    .map_err(|_| late())?
                    .map_err(failed)?;
            }
        }
    }
}

/// `UNTIL CLIENT_ID FAMILY`, as [`RedisStore`]'s `kill_family` publishes it.
fn parse_message(text: &str) -> Option<DeadFamily> {
    let (until, member) = text.split_once(' ')?;
    parse_dead(member, until.parse().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_parse_or_are_ignored() {
        assert_eq!(
            parse_message("1800000000 client-id-000000001 fam"),
            Some(DeadFamily {
                client_id: "client-id-000000001".into(),
                family: "fam".into(),
                until: 1_800_000_000,
            })
        );
        assert_eq!(parse_message("soon client fam"), None);
        assert_eq!(parse_message("1800000000 client"), None);
        assert_eq!(parse_message(""), None);
    }
}
