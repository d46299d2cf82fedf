//! The Redis session store against a real `redis-server`: the [`SessionStore`] contract (single
//! use under concurrency across handles, dead families keeping the later time, purge, last
//! exchanges), the follower (kills from another handle arrive; out of sync means a quick refusal)
//! and errors that never show the password. Skips without `redis-server` unless
//! `SCANGATE_REQUIRE_REDIS` is set.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::replicas::{have, RedisServer, REDIS_PASSWORD};
use scangate::auth::sessions::{
    Consumed, DeadFamily, RedisStore, SessionStore, StoreEvents, CALL_TIMEOUT,
};
use scangate::config::RedisUrl;

const EXP: u64 = 4_000_000_000;

fn store(url: &str) -> RedisStore {
    RedisStore::new(&RedisUrl::parse(url).unwrap()).unwrap()
}

fn dead(family: &str, until: u64) -> DeadFamily {
    DeadFamily {
        client_id: "client-one-000001".into(),
        family: family.into(),
        until,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_contract_holds_on_a_real_server() {
    if !have("redis-server") {
        return;
    }
    let redis = RedisServer::start();
    let s = store(&redis.url());
    assert_eq!(
        s.consume("c1", "f", "j1", EXP).await.unwrap(),
        Consumed::Fresh
    );
    assert_eq!(
        s.consume("c1", "f", "j1", EXP).await.unwrap(),
        Consumed::Reused
    );
    assert_eq!(
        s.consume("c2", "f", "j2", EXP).await.unwrap(),
        Consumed::Fresh
    );
    // The mark expires with the token.
    let ttl = redis.cli(&["ttl", "scangate:{c1}:used:j1"]);
    assert!(ttl.trim().parse::<u64>().unwrap() > 1_000_000, "{ttl}");

    s.kill_family(&dead("fam-a", 3_000_000_000)).await.unwrap();
    s.kill_family(&dead("fam-a", 2_000_000_000)).await.unwrap();
    s.kill_family(&dead("fam-b", 1_000)).await.unwrap();
    assert_eq!(
        s.dead_families(2_000).await.unwrap(),
        [dead("fam-a", 3_000_000_000)],
        "the later until is kept; fam-b is over"
    );
    // The connection's set expires with its latest family, so nothing needs purging.
    let expires = redis.cli(&["expiretime", "scangate:{client-one-000001}:dead"]);
    assert_eq!(expires.trim(), "3000000000");
    assert_eq!(s.purge(2_000).await.unwrap(), 0);

    // A reuse is found and recorded in one step: the family is dead in the store at once.
    assert_eq!(
        s.consume_or_kill("client-one-000001", "fam-c", "jc", EXP, 3_500_000_000)
            .await
            .unwrap(),
        Consumed::Fresh
    );
    assert!(!s
        .dead_families(0)
        .await
        .unwrap()
        .contains(&dead("fam-c", 3_500_000_000)));
    assert_eq!(
        s.consume_or_kill("client-one-000001", "fam-c", "jc", EXP, 3_500_000_000)
            .await
            .unwrap(),
        Consumed::Reused
    );
    assert!(s
        .dead_families(0)
        .await
        .unwrap()
        .contains(&dead("fam-c", 3_500_000_000)));

    s.record_exchange("c1", 200).await.unwrap();
    s.record_exchange("c1", 100).await.unwrap();
    s.record_exchange("c0", 50).await.unwrap();
    assert_eq!(
        s.last_exchanges().await.unwrap(),
        [("c0".to_owned(), 50), ("c1".to_owned(), 200)]
    );
    assert_eq!(
        s.describe(),
        format!("redis://***@127.0.0.1:{}/0", redis.port)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_consumes_over_three_handles_give_one_fresh() {
    if !have("redis-server") {
        return;
    }
    let redis = RedisServer::start();
    let stores: Vec<Arc<RedisStore>> = (0..3).map(|_| Arc::new(store(&redis.url()))).collect();
    for round in 0..5 {
        let jti = format!("race-{round}");
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let (s, jti) = (Arc::clone(&stores[i % 3]), jti.clone());
                tokio::spawn(async move { s.consume("c1", "fam", &jti, EXP).await.unwrap() })
            })
            .collect();
        let mut fresh = 0;
        for t in tasks {
            fresh += usize::from(t.await.unwrap() == Consumed::Fresh);
        }
        assert_eq!(fresh, 1, "round {round}");
    }
}

/// What a follower delivered.
#[derive(Default)]
struct Seen {
    dead: Mutex<Vec<DeadFamily>>,
    up: Mutex<Vec<bool>>,
}

impl StoreEvents for Seen {
    fn family_died(&self, dead: &DeadFamily) {
        self.dead.lock().unwrap().push(dead.clone());
    }
    fn store_up(&self, up: bool) {
        self.up.lock().unwrap().push(up);
    }
}

async fn until(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while !f() {
        if Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_resyncs_then_hears_kills_and_refuses_quickly_while_out_of_sync() {
    if !have("redis-server") {
        return;
    }
    let mut redis = RedisServer::start();
    let other = store(&redis.url());
    other.kill_family(&dead("before", EXP)).await.unwrap();

    let followed = store(&redis.url());
    let seen = Arc::new(Seen::default());
    followed.follow(seen.clone());
    // The resync brings what was killed before it subscribed.
    assert!(until(Duration::from_secs(5), || followed.in_sync()).await);
    assert_eq!(*seen.dead.lock().unwrap(), [dead("before", EXP)]);
    assert_eq!(*seen.up.lock().unwrap(), [true]);

    // A kill by another handle arrives by pub/sub.
    let sent = Instant::now();
    other.kill_family(&dead("after", EXP)).await.unwrap();
    assert!(
        until(Duration::from_secs(1), || seen.dead.lock().unwrap().len()
            == 2)
        .await
    );
    eprintln!("kill delivered by pub/sub in {:?}", sent.elapsed());

    // Redis gone: out of sync, and calls refused without waiting for a timeout.
    redis.kill();
    assert!(until(Duration::from_secs(3), || !followed.in_sync()).await);
    let asked = Instant::now();
    let err = followed
        .consume("c1", "f", "j-down", EXP)
        .await
        .unwrap_err();
    assert!(asked.elapsed() < CALL_TIMEOUT / 4, "{:?}", asked.elapsed());
    let text = err.to_string();
    assert!(text.contains("not in sync"), "{text}");
    assert!(!text.contains(REDIS_PASSWORD), "{text}");
    assert_eq!(*seen.up.lock().unwrap(), [true, false]);

    // Back: the follower resyncs by itself (the full set again) and calls work.
    redis.restart();
    assert!(until(Duration::from_secs(5), || followed.in_sync()).await);
    assert_eq!(*seen.up.lock().unwrap(), [true, false, true]);
    assert_eq!(
        seen.dead.lock().unwrap().len(),
        4,
        "both families again after the resync"
    );
    assert_eq!(
        followed.consume("c1", "f", "j-up", EXP).await.unwrap(),
        Consumed::Fresh
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_or_no_server_fails_within_the_timeout_and_never_shows_the_password() {
    if !have("redis-server") {
        return;
    }
    let redis = RedisServer::start();
    let wrong = format!("redis://:Not-{REDIS_PASSWORD}@127.0.0.1:{}/0", redis.port);
    let nobody = format!(
        "redis://:{REDIS_PASSWORD}@127.0.0.1:{}/0",
        common::process::free_port()
    );
    for url in [wrong, nobody] {
        let s = store(&url);
        let asked = Instant::now();
        let err = s
            .consume("c1", "f", "j1", EXP)
            .await
            .unwrap_err()
            .to_string();
        assert!(asked.elapsed() <= CALL_TIMEOUT + Duration::from_millis(200));
        eprintln!("{err}");
        assert!(
            err.starts_with("session store redis://***@127.0.0.1:"),
            "{err}"
        );
        assert!(!err.contains(REDIS_PASSWORD), "{err}");
    }
}
