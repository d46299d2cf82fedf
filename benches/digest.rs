//! HMAC-SHA-512 of one token: keyed state precomputed (what the gateway does) against the key
//! schedule computed per call, and ring (the gateway's) against the RustCrypto `hmac` + `sha2`
//! crates, both precomputed.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use hmac::{Hmac, Mac};
use scangate::auth::token::TokenKey;
use sha2::Sha512;

mod common;

fn digest(c: &mut Criterion) {
    let token = common::token(42);
    let key = common::key();
    let mut g = c.benchmark_group("digest");
    g.bench_function("precomputed", |b| {
        b.iter(|| key.digest(black_box(token.as_bytes())))
    });
    g.bench_function("per_call", |b| {
        b.iter(|| TokenKey::from_bytes(black_box(&common::KEY)).digest(black_box(token.as_bytes())))
    });
    let rustcrypto = <Hmac<Sha512> as Mac>::new_from_slice(&common::KEY).unwrap();
    g.bench_function("rustcrypto_precomputed", |b| {
        b.iter(|| {
            let mut mac = rustcrypto.clone();
            mac.update(black_box(token.as_bytes()));
            mac.finalize().into_bytes()
        })
    });
    g.finish();
}

criterion_group!(benches, digest);
criterion_main!(benches);
