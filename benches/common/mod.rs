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
            limits: None,
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

/// A `redis-server` child on a free loopback port (append-only file, fsync on every write, in
/// `dir`), killed on drop. None when redis-server is not installed.
pub struct Redis {
    pub child: std::process::Child,
    pub port: u16,
}

impl Redis {
    pub fn start(dir: &std::path::Path) -> Option<Redis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let redis = Redis { child, port };
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(redis);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
