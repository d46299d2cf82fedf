//! Exchanges per second with the SQLite session store: the whole library path of one
//! `session/confirm` (verify the refresh token, consume it in SQLite, mint the next pair), on a
//! real file in a temp folder. The HTTP part is the same as any request's and is measured by the
//! load bench.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use scangate::auth::connections::Connections;
use scangate::auth::exchange::{console_refresh_token, exchange};
use scangate::auth::jwt::JwtKeys;
use scangate::auth::sessions::SqliteStore;
use scangate::config::{ConnectionEntry, Role, SessionSettings};

mod common;

const CID: &str = "AbCdEfGhIjKlMnOpQrStUv";

fn exchanges(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
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
    };
    connections.apply(&[entry], |_| {});
    let lifetimes = SessionSettings::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let now = scangate::config::validate::connections::now_secs();
    let (mut refresh, _) = console_refresh_token(&keys, CID, Duration::from_secs(86_400), now);
    let mut g = c.benchmark_group("exchange");
    // Each iteration exchanges the refresh token the previous one returned, as a client does.
    g.bench_function("sqlite_rotate", |b| {
        b.iter(|| {
            let (issued, _) = rt
                .block_on(exchange(
                    &keys,
                    &connections,
                    &store,
                    &lifetimes,
                    CID,
                    &refresh,
                    now,
                ))
                .unwrap();
            refresh = issued.refresh_token;
        })
    });
    g.finish();
}

criterion_group!(benches, exchanges);
criterion_main!(benches);
