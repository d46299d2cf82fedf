//! Fixtures shared by the criterion benches: deterministic tokens, their digests and a filled store.
#![allow(dead_code)]

use scangate::auth::store::TokenStore;
use scangate::auth::token::{Digest, TokenKey};
use scangate::config::TokenEntry;

/// The HMAC key every bench uses.
pub const KEY: [u8; 32] = [7; 32];

/// The key with its keyed state precomputed, as the gateway holds it.
pub fn key() -> TokenKey {
    TokenKey::from_bytes(&KEY)
}

/// Token `i`: shaped like a minted one (`sg_` + 44 characters), deterministic.
pub fn token(i: usize) -> String {
    format!("sg_bench{i:039}")
}

/// Digests of tokens `0..n`.
pub fn digests(n: usize) -> Vec<Digest> {
    let key = key();
    (0..n).map(|i| key.digest(token(i).as_bytes())).collect()
}

/// A store holding tokens `0..n`, all enabled and without a role, as a typical config has them.
pub fn store(digests: &[Digest]) -> TokenStore {
    let entries: Vec<TokenEntry> = digests
        .iter()
        .enumerate()
        .map(|(i, d)| TokenEntry {
            name: format!("client-{i}").into(),
            digest: *d,
            description: None,
            enabled: true,
            role: None,
            tenants: vec![],
            allow_scan_file: None,
        })
        .collect();
    let store = TokenStore::new();
    store.apply(&entries);
    store
}

/// A cheap deterministic sequence of indexes below `n` (xorshift), so lookups hit the whole map
/// rather than one cached entry.
pub fn indexes(n: usize, count: usize) -> Vec<usize> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        })
        .collect()
}
