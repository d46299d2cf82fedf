//! Whole per-request decisions: the auth decision for one header (extract → HMAC → lookup) at 10k
//! tokens, and the hop-by-hop strip for a typical scan request.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use scangate::auth::header::{extract, AuthFailure};
use scangate::auth::store::{Lookup, TokenStore};
use scangate::auth::token::TokenKey;
use scangate::proxy::headers::strip_hop_by_hop;

mod common;

/// The gateway's auth decision, as `proxy::handler` makes it.
fn decide(headers: &HeaderMap, key: &TokenKey, store: &TokenStore) -> Result<(), AuthFailure> {
    let token = extract(headers, &AUTHORIZATION, true)?;
    match store.lookup(&key.digest(token)) {
        Lookup::Valid(_) => Ok(()),
        Lookup::Disabled(_) => Err(AuthFailure::Disabled),
        Lookup::Unknown => Err(AuthFailure::Unknown),
    }
}

/// Headers of a typical KAV scan request, as a client library sends them.
fn typical(auth: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    let mut add = |k: &'static str, v: &str| {
        h.append(
            HeaderName::from_static(k),
            HeaderValue::from_str(v).unwrap(),
        );
    };
    add("host", "scan.example:8443");
    add("user-agent", "kav-client/1.0");
    add("accept", "*/*");
    add("content-type", "application/octet-stream");
    add("content-length", "65536");
    add("connection", "keep-alive");
    if let Some(auth) = auth {
        add("authorization", auth);
    }
    h
}

fn decision(c: &mut Criterion) {
    let digests = common::digests(10_000);
    let store = common::store(&digests);
    let key = common::key();
    let valid = typical(Some(&format!("Bearer {}", common::token(1234))));
    let unknown = typical(Some(&format!("Bearer {}", common::token(99_999))));
    let missing = typical(None);
    assert_eq!(decide(&valid, &key, &store), Ok(()));

    let mut g = c.benchmark_group("auth_decision");
    g.bench_function("valid", |b| {
        b.iter(|| decide(black_box(&valid), &key, &store))
    });
    g.bench_function("unknown", |b| {
        b.iter(|| decide(black_box(&unknown), &key, &store))
    });
    g.bench_function("missing", |b| {
        b.iter(|| decide(black_box(&missing), &key, &store))
    });
    g.finish();

    // Each iteration strips a fresh copy; the copying is setup, outside the timing.
    c.bench_function("hop_by_hop/typical_request", |b| {
        b.iter_batched_ref(|| valid.clone(), strip_hop_by_hop, BatchSize::SmallInput)
    });
}

criterion_group!(benches, decision);
criterion_main!(benches);
