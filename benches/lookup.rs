//! Token lookup by digest at 1, 10k and 1M tokens, from 1 and 2 threads: the gateway's `DashMap`
//! store against an immutable `HashMap` swapped whole behind `arc-swap` (the alternative design).
//! Keys are spread over the whole map, so the 1M case pays its cache misses.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use scangate::auth::store::{
    digest_key, DigestHasher, DigestKey, Lookup, SharedRecord, TokenStore,
};
use scangate::auth::token::Digest;
use subtle::ConstantTimeEq;

mod common;

type Snapshot = ArcSwap<HashMap<DigestKey, SharedRecord, DigestHasher>>;

/// The arc-swap design's lookup, doing the same work as `TokenStore::lookup`.
fn snapshot_lookup(map: &Snapshot, digest: &Digest) -> Lookup {
    let key = digest_key(digest);
    let map = map.load();
    let Some((stored, record)) = map.get_key_value(&key) else {
        return Lookup::Unknown;
    };
    if !bool::from(stored.ct_eq(&key)) {
        return Lookup::Unknown;
    }
    let record = SharedRecord::clone(record);
    if record.enabled {
        Lookup::Valid(record)
    } else {
        Lookup::Disabled(record)
    }
}

/// Runs `iters` lookups on each of `threads` threads at once; returns the wall time.
fn timed(
    threads: usize,
    iters: u64,
    keys: &[Digest],
    f: impl Fn(&Digest) -> Lookup + Sync,
) -> Duration {
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let f = &f;
            s.spawn(move || {
                for i in 0..iters as usize {
                    black_box(f(&keys[(i + t * 977) % keys.len()]));
                }
            });
        }
    });
    started.elapsed()
}

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("lookup");
    for n in [1, 10_000, 1_000_000] {
        let digests = common::digests(n);
        let store: TokenStore = common::store(&digests);
        let snapshot: Snapshot = ArcSwap::from_pointee(
            (digests.iter())
                .map(|d| match store.lookup(d) {
                    Lookup::Valid(r) | Lookup::Disabled(r) => (digest_key(d), r),
                    Lookup::Unknown => unreachable!("the store holds every digest"),
                })
                .collect::<HashMap<_, _, DigestHasher>>(),
        );
        let keys: Vec<Digest> = common::indexes(n, 1 << 16)
            .into_iter()
            .map(|i| digests[i])
            .collect();
        for threads in [1, 2] {
            g.throughput(Throughput::Elements(threads as u64));
            let id = format!("{n}/{threads}t");
            g.bench_function(BenchmarkId::new("dashmap", &id), |b| {
                b.iter_custom(|iters| timed(threads, iters, &keys, |d| store.lookup(d)))
            });
            g.bench_function(BenchmarkId::new("arcswap_hashmap", &id), |b| {
                b.iter_custom(|iters| {
                    timed(threads, iters, &keys, |d| snapshot_lookup(&snapshot, d))
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
