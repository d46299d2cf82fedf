//! The live token map: digest → token record, with per-token state that survives reloads.
//!
//! Lookups are lock-free reads of one `DashMap` shard. A reload applies inserts and updates first and
//! removals after them, so a token that is valid before and after a reload is never missing.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use http::HeaderValue;
use subtle::ConstantTimeEq;

use super::token::Digest;
use crate::config::{Role, TokenEntry};
use crate::metrics::TokenMeter;

/// What the gateway knows about one token. Never holds the token itself.
#[derive(Debug)]
pub struct TokenRecord {
    /// The digest this record is stored under, compared in constant time after the lookup.
    pub digest: Digest,
    /// `Name`: logged, counted and forwarded instead of the token.
    pub name: Arc<str>,
    /// `X-Scangate-Token-Name` value, built once per reload rather than per request.
    pub name_header: HeaderValue,
    /// `Enabled`: disabled tokens stay in the map so a rejection can say "disabled", not "unknown".
    pub enabled: bool,
    /// `Role`; `None` = full access.
    pub role: Option<Role>,
    /// `X-Scangate-Tenants` value, if the token has tenants.
    pub tenants_header: Option<HeaderValue>,
    /// Live counters, shared across reloads by token name.
    pub stats: Arc<TokenStats>,
}

/// Per-token live state. Keyed by name so it survives a reload and a rotation.
#[derive(Debug, Default)]
pub struct TokenStats {
    /// Requests this token was accepted for.
    pub requests: AtomicU64,
    /// The token's Prometheus series, created on first use (see [`crate::metrics`]).
    pub meter: OnceLock<TokenMeter>,
}

/// Outcome of a lookup.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// An enabled token.
    Valid(Arc<TokenRecord>),
    /// A known token with `Enabled` = 0.
    Disabled(Arc<TokenRecord>),
    /// No such token.
    Unknown,
}

/// Counts from applying one config to the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyCounts {
    /// Tokens whose name is new.
    pub added: usize,
    /// Names that are gone.
    pub removed: usize,
    /// Names whose value, enabled flag, role or tenants changed.
    pub changed: usize,
    /// Tokens in force after the apply that are enabled.
    pub enabled: usize,
    /// Tokens in force after the apply that are disabled.
    pub disabled: usize,
}

/// Digests are HMAC outputs under a secret key: uniformly random and not chosen by clients. Their
/// first 8 bytes are already a good hash, so hashing them again (SipHash) would be wasted work, and
/// hash flooding is impossible without the key.
#[derive(Debug, Clone, Copy, Default)]
pub struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 64]` hashes as its 64 bytes (arrays write without a length prefix).
        for chunk in bytes.chunks(8).take(1) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(b);
        }
    }
}

impl BuildHasher for DigestHasher {
    type Hasher = DigestHasher;
    fn build_hasher(&self) -> DigestHasher {
        DigestHasher(0)
    }
}

/// The token map. Shared by every connection; replaced entry by entry on reload, never wholesale.
#[derive(Debug, Default)]
pub struct TokenStore {
    by_digest: DashMap<Digest, Arc<TokenRecord>, DigestHasher>,
    /// Name → record as of the last apply; only touched by the (single) reload task.
    by_name: std::sync::Mutex<HashMap<Arc<str>, Arc<TokenRecord>>>,
}

impl TokenStore {
    /// An empty store.
    pub fn new() -> TokenStore {
        TokenStore::default()
    }

    /// Looks a digest up.
    pub fn lookup(&self, digest: &Digest) -> Lookup {
        let Some(record) = self.by_digest.get(digest).map(|r| Arc::clone(r.value())) else {
            return Lookup::Unknown;
        };
        // The map compared with `==`; compare again in constant time so this path never depends on
        // early-exit comparison, whatever the map implementation does.
        if !bool::from(record.digest.ct_eq(digest)) {
            return Lookup::Unknown;
        }
        if record.enabled {
            Lookup::Valid(record)
        } else {
            Lookup::Disabled(record)
        }
    }

    /// Number of tokens (enabled and disabled) in the map.
    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    /// True when no token is loaded.
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// The records in force, by name (for `/config` and metrics).
    pub fn records(&self) -> Vec<Arc<TokenRecord>> {
        let by_name = self.by_name.lock().expect("token store lock");
        let mut v: Vec<_> = by_name.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Makes `tokens` the store's content: inserts and updates first, removals after.
    pub fn apply(&self, tokens: &[TokenEntry]) -> ApplyCounts {
        self.apply_with(tokens, |_| {})
    }

    /// [`apply`](Self::apply), calling `removed` with the record of each name that left the store
    /// (so its metric series can go with it).
    pub fn apply_with(
        &self,
        tokens: &[TokenEntry],
        mut removed: impl FnMut(&TokenRecord),
    ) -> ApplyCounts {
        let mut by_name = self.by_name.lock().expect("token store lock");
        let mut counts = ApplyCounts::default();
        let mut next: HashMap<Arc<str>, Arc<TokenRecord>> = HashMap::with_capacity(tokens.len());

        // 1. Inserts and updates. A changed Value is inserted under its new digest here; the old
        //    digest goes in step 2, so both work for the instant in between.
        for entry in tokens {
            let old = by_name.get(entry.name.as_str());
            let record = match old {
                Some(old) if same_record(old, entry) => Arc::clone(old),
                _ => {
                    match old {
                        Some(_) => counts.changed += 1,
                        None => counts.added += 1,
                    }
                    let stats = old.map(|o| Arc::clone(&o.stats)).unwrap_or_default();
                    let record = Arc::new(record_for(entry, stats));
                    self.by_digest.insert(record.digest, Arc::clone(&record));
                    record
                }
            };
            if record.enabled {
                counts.enabled += 1;
            } else {
                counts.disabled += 1;
            }
            next.insert(Arc::clone(&record.name), record);
        }

        // 2. Removals: digests of names that are gone, and old digests of changed names.
        for (name, old) in by_name.iter() {
            match next.get(name) {
                Some(new) if new.digest == old.digest => {}
                Some(_) => {
                    self.by_digest
                        .remove_if(&old.digest, |_, r| Arc::ptr_eq(r, old));
                }
                None => {
                    counts.removed += 1;
                    removed(old);
                    self.by_digest
                        .remove_if(&old.digest, |_, r| Arc::ptr_eq(r, old));
                }
            }
        }
        *by_name = next;
        counts
    }
}

fn same_record(old: &TokenRecord, entry: &TokenEntry) -> bool {
    old.digest == entry.digest
        && old.enabled == entry.enabled
        && old.role == entry.role
        && old.tenants_header == tenants_header(&entry.tenants)
}

fn record_for(entry: &TokenEntry, stats: Arc<TokenStats>) -> TokenRecord {
    TokenRecord {
        digest: entry.digest,
        name: Arc::from(entry.name.as_str()),
        name_header: header_value(&entry.name),
        enabled: entry.enabled,
        role: entry.role,
        tenants_header: tenants_header(&entry.tenants),
        stats,
    }
}

fn tenants_header(tenants: &[String]) -> Option<HeaderValue> {
    (!tenants.is_empty()).then(|| header_value(&tenants.join(",")))
}

/// Names and tenants are Unicode; header values should be visible ASCII. Percent-encode anything
/// else (and `%` itself) so the backend can decode it unambiguously.
fn header_value(text: &str) -> HeaderValue {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&out).expect("visible ASCII is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    fn entry(name: &str, seed: u8, enabled: bool) -> TokenEntry {
        TokenEntry {
            name: name.into(),
            digest: [seed; 64],
            description: None,
            enabled,
            role: None,
            tenants: vec![],
        }
    }

    #[test]
    fn lookup_distinguishes_valid_disabled_unknown() {
        let store = TokenStore::new();
        store.apply(&[entry("a", 1, true), entry("b", 2, false)]);
        assert!(matches!(store.lookup(&[1; 64]), Lookup::Valid(r) if &*r.name == "a"));
        assert!(matches!(store.lookup(&[2; 64]), Lookup::Disabled(r) if &*r.name == "b"));
        assert!(matches!(store.lookup(&[3; 64]), Lookup::Unknown));
    }

    #[test]
    fn apply_counts_and_keeps_stats_across_rotation() {
        let store = TokenStore::new();
        let c = store.apply(&[entry("a", 1, true), entry("b", 2, true)]);
        assert_eq!((c.added, c.removed, c.changed, c.enabled), (2, 0, 0, 2));
        let Lookup::Valid(a) = store.lookup(&[1; 64]) else {
            panic!()
        };
        a.stats.requests.fetch_add(5, Ordering::Relaxed);

        // Rotate a, drop b, add c.
        let c = store.apply(&[entry("a", 9, true), entry("c", 3, false)]);
        assert_eq!(
            (c.added, c.removed, c.changed, c.enabled, c.disabled),
            (1, 1, 1, 1, 1)
        );
        assert!(matches!(store.lookup(&[1; 64]), Lookup::Unknown));
        assert!(matches!(store.lookup(&[2; 64]), Lookup::Unknown));
        let Lookup::Valid(a2) = store.lookup(&[9; 64]) else {
            panic!()
        };
        assert_eq!(a2.stats.requests.load(Ordering::Relaxed), 5);
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn unchanged_apply_is_a_no_op() {
        let store = TokenStore::new();
        store.apply(&[entry("a", 1, true)]);
        let c = store.apply(&[entry("a", 1, true)]);
        assert_eq!((c.added, c.removed, c.changed), (0, 0, 0));
    }

    #[test]
    fn unicode_names_are_percent_encoded_in_headers() {
        assert_eq!(header_value("mail-gw"), "mail-gw");
        assert_eq!(
            header_value("почта 100%"),
            "%D0%BF%D0%BE%D1%87%D1%82%D0%B0 100%25"
        );
    }

    #[test]
    fn stable_token_is_never_missing_during_applies() {
        let store = Arc::new(TokenStore::new());
        store.apply(&[entry("stable", 1, true)]);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut misses = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if !matches!(store.lookup(&[1; 64]), Lookup::Valid(_)) {
                        misses += 1;
                    }
                }
                misses
            })
        };
        for i in 0..2000u32 {
            let other = (i % 200) as u8 + 2;
            store.apply(&[
                entry(&format!("t{i}"), other, true),
                entry("stable", 1, true),
            ]);
        }
        stop.store(true, Ordering::Relaxed);
        assert_eq!(reader.join().unwrap(), 0);
    }
}
