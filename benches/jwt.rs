//! Verifying an access token (what the hot path does for a connection) against the HMAC digest of
//! a 47-byte static token (what it does for a static token), to size the JWT path's extra cost.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use scangate::auth::jwt::{self, Claims, JwtKeys, Kind};

mod common;

/// A fixed "now" inside the token's lifetime, so the bench never depends on the clock.
const NOW: u64 = 1_800_000_000;

fn verify(c: &mut Criterion) {
    let key = common::key();
    let keys = JwtKeys::derive(&key);
    let claims = Claims {
        sub: "c_4bY2kQ9mX7tL0pR3sV8wZ1".into(),
        iat: NOW,
        exp: NOW + 3600,
        jti: jwt::new_id(),
        fam: jwt::new_id(),
        fit: NOW,
    };
    let access = jwt::mint(&keys, Kind::Access, &claims);
    let token = common::token(42);
    assert_eq!(token.len(), 47);
    let mut g = c.benchmark_group("jwt");
    g.bench_function("verify_access", |b| {
        b.iter(|| jwt::verify(&keys, Kind::Access, black_box(&access), NOW).unwrap())
    });
    g.bench_function("looks_like_jwt", |b| {
        b.iter(|| jwt::looks_like_jwt(black_box(access.as_bytes())))
    });
    g.bench_function("static_digest_47", |b| {
        b.iter(|| key.digest(black_box(token.as_bytes())))
    });
    g.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
