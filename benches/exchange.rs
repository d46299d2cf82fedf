//! Exchanges per second with each session store: the whole library path of one
//! `session/confirm` (verify the refresh token, consume it in the store, mint the next pair), on
//! a real SQLite file in a temp folder and on a real `redis-server` on loopback (append-only
//! file, fsync on every write, as durable as SQLite's `synchronous=FULL`; skipped when
//! `redis-server` is not installed). The HTTP part is the same as any request's and is measured
//! by the load bench.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use scangate::auth::connections::Connections;
use scangate::auth::exchange::{console_refresh_token, exchange};
use scangate::auth::jwt::JwtKeys;
use scangate::auth::sessions::{RedisStore, SessionStore, SqliteStore};
use scangate::config::{ConnectionEntry, Role, SessionSettings};

mod common;

const CID: &str = "AbCdEfGhIjKlMnOpQrStUv";

fn exchanges(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(&dir.path().join("state.db")).unwrap();
    let mut g = c.benchmark_group("exchange");
    rotate(&mut g, "sqlite_rotate", &sqlite);
    match common::Redis::start(dir.path()) {
        Some(redis) => {
            let url = format!("redis://127.0.0.1:{}/0", redis.port);
            let store = RedisStore::new(&scangate::config::RedisUrl::parse(&url).unwrap()).unwrap();
            rotate(&mut g, "redis_rotate", &store);
        }
        None => eprintln!("exchange/redis_rotate skipped: redis-server is not installed"),
    }
    g.finish();
}

/// Benches one client chain of exchanges against `store`.
fn rotate(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    store: &dyn SessionStore,
) {
    let keys = JwtKeys::derive(&common::key());
    let connections = Connections::default();
    let entry = ConnectionEntry {
        name: "bench".into(),
        client_id: CID.into(),
        role: Role::SecurityOfficer,
        tenants: vec!["acme".into()],
        root_tenant: false,
        description: None,
        enabled: true,
        not_before: 0,
        revoked: false,
        limits: None,
    };
    connections.apply(&[entry], |_| {});
    let lifetimes = SessionSettings::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let now = scangate::config::validate::connections::now_secs();
    let (mut refresh, _) = console_refresh_token(&keys, CID, Duration::from_secs(86_400), now);
    // Each iteration exchanges the refresh token the previous one returned, as a client does.
    g.bench_function(name, |b| {
        b.iter(|| {
            let (issued, _) = rt
                .block_on(exchange(
                    &keys,
                    &connections,
                    store,
                    &lifetimes,
                    CID,
                    &refresh,
                    now,
                ))
                .unwrap();
            refresh = issued.refresh_token;
        })
    });
}

criterion_group!(benches, exchanges);
criterion_main!(benches);
