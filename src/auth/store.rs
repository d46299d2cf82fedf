//! The live token map: digest → token record, with per-token state that survives reloads.
//!
//! Lookups are lock-free reads of one `DashMap` shard. A reload applies inserts and updates first and
//! removals after them, so a token that is valid before and after a reload is never missing.
//!
//! Memory per token is the budget here (≤ 128 bytes of RSS at a million tokens, see
//! `benches/RESULTS.md`): the map holds one pointer per token, the 80-byte record holds the key,
//! the name inline and a pointer to a policy many tokens share, the apply keeps one more pointer
//! per token (its order), and a token's counters and name header are allocated on its first
//! request.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::ops::Deref;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use compact_str::CompactString;
use dashmap::{DashMap, Entry};
use http::HeaderValue;
use once_cell::race::OnceBox;
use subtle::ConstantTimeEq;

use super::limits::LimitState;
use super::token::Digest;
use crate::config::{Limits, Role, TokenEntry};
use crate::metrics::minutes::MinuteSeries;
use crate::metrics::TokenMeter;

/// Bytes of the digest the map is keyed by: the first half of the HMAC-SHA-512 output. A truncated
/// HMAC is still a MAC (RFC 4868's HMAC-SHA-512-256 is this truncation), and half the key is half
/// the memory.
pub const KEY_BYTES: usize = 32;

/// What the map is keyed by and compares in constant time: the first [`KEY_BYTES`] of a digest.
pub type DigestKey = [u8; KEY_BYTES];

/// The map key of a digest.
pub fn digest_key(digest: &Digest) -> DigestKey {
    *digest
        .first_chunk()
        .expect("a digest is longer than its key")
}

/// The shared handle to a record: what a lookup returns and a [`crate::auth::Principal`] holds.
/// triomphe's `Arc` has no weak count, 8 bytes less per token than `std::sync::Arc`, which puts
/// a record in a 96-byte heap chunk instead of a 112-byte one.
pub type SharedRecord = triomphe::Arc<TokenRecord>;

/// What the gateway knows about one token. Never holds the token itself, and its Debug leaves out
/// the digest key. 80 bytes: what many tokens have in common is in the shared [`TokenPolicy`].
pub struct TokenRecord {
    /// The digest prefix this record is stored under, compared in constant time after the lookup.
    key: DigestKey,
    /// `Name`: logged, counted and forwarded instead of the token. Names of up to 24 bytes are
    /// stored inline, without an allocation of their own.
    pub name: CompactString,
    /// Role, scanfile grant, tenants and limits, one allocation for every token that has the same.
    policy: Arc<TokenPolicy>,
    /// Live counters, shared across reloads by token name.
    pub stats: StatsSlot,
    /// The apply that last found this record in the config: what an apply did not mark, it removes.
    applied: AtomicU32,
    /// `Enabled`: disabled tokens stay in the map so a rejection can say "disabled", not "unknown".
    pub enabled: bool,
}

/// What a token may do and who it speaks for: the same for most tokens of a large file, so an
/// apply makes one of each and the records point to it.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TokenPolicy {
    /// `Role`; `None` = full access.
    role: Option<Role>,
    /// `AllowScanFile`; `None` = the role decides (see [`crate::auth::policy::Grant`]).
    allow_scan_file: Option<bool>,
    /// `Tenants/Tenant`, as the config lists them (compared on reload).
    tenants: Vec<String>,
    /// `X-Scangate-Tenants` value, if the token has tenants; built once per policy.
    tenants_header: Option<HeaderValue>,
    /// `RateLimit` or the defaults; `None` = unlimited (the request path skips the limit phase).
    limits: Option<Arc<Limits>>,
}

impl TokenPolicy {
    fn of(entry: &TokenEntry) -> TokenPolicy {
        TokenPolicy {
            role: entry.role,
            allow_scan_file: entry.allow_scan_file,
            tenants: entry.tenants.clone(),
            tenants_header: tenants_header(&entry.tenants),
            limits: entry.limits.clone(),
        }
    }

    /// Whether `entry` has this policy.
    fn fits(&self, entry: &TokenEntry) -> bool {
        self.role == entry.role
            && self.allow_scan_file == entry.allow_scan_file
            && self.tenants == entry.tenants
            && self.limits == entry.limits
    }
}

impl TokenRecord {
    /// `Role`; `None` = full access.
    pub fn role(&self) -> Option<Role> {
        self.policy.role
    }

    /// `AllowScanFile`; `None` = the role decides (see [`crate::auth::policy::Grant`]).
    pub fn allow_scan_file(&self) -> Option<bool> {
        self.policy.allow_scan_file
    }

    /// `RateLimit` or the defaults; `None` = unlimited (the request path skips the limit phase).
    pub fn limits(&self) -> Option<&Arc<Limits>> {
        self.policy.limits.as_ref()
    }

    /// The `X-Scangate-Tenants` value, if the token has tenants.
    pub fn tenants_header(&self) -> Option<&HeaderValue> {
        self.policy.tenants_header.as_ref()
    }

    /// The `X-Scangate-Token-Name` value, built on the token's first request and kept with its
    /// stats (which follow the name across reloads): most tokens of a large file never send one.
    pub fn name_header(&self) -> &HeaderValue {
        (self.stats.name_header).get_or_init(|| header_value(&self.name))
    }
}

impl std::fmt::Debug for TokenRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRecord")
            .field("name", &self.name)
            .field("enabled", &self.enabled)
            .field("role", &self.policy.role)
            .field("tenants_header", &self.policy.tenants_header)
            .finish_non_exhaustive()
    }
}

/// Per-token live state. Keyed by name so it survives a reload and a rotation.
#[derive(Debug, Default)]
pub struct TokenStats {
    /// Requests this token was accepted for.
    pub requests: AtomicU64,
    /// The token's Prometheus series, created on first use (see [`crate::metrics`]).
    pub meter: OnceLock<TokenMeter>,
    /// Unix seconds of its last finished request (0: none since start), for the console.
    pub last_used: AtomicU64,
    /// Its finished requests per minute over the last hour, for the console's charts.
    pub minutes: MinuteSeries,
    /// The engine's statistics counters restricted to its own scans (see [`crate::audit`]).
    pub scans: crate::audit::ScanCounters,
    /// Its rate-limit bucket, in-flight count and quota counts (see [`super::limits`]).
    pub limits: LimitState,
    /// A token's `X-Scangate-Token-Name` value, made on first use (see
    /// [`TokenRecord::name_header`]); connections keep theirs in their record.
    pub name_header: OnceLock<HeaderValue>,
}

/// A token's [`TokenStats`], allocated on first use: most of a large token set never sends a request
/// between two restarts, and a pointer costs 8 bytes where the stats cost over 100. Reading through
/// `Deref` allocates them; [`StatsSlot::get`] does not.
#[derive(Debug, Default)]
pub struct StatsSlot(OnceBox<Arc<TokenStats>>);

impl StatsSlot {
    fn sharing(stats: Arc<TokenStats>) -> StatsSlot {
        StatsSlot(OnceBox::with_value(Box::new(stats)))
    }

    /// The stats, if this token has used them.
    pub fn get(&self) -> Option<&TokenStats> {
        self.0.get().map(|stats| &**stats)
    }

    /// The stats, allocated now if need be, to share with the token's next record.
    fn shared(&self) -> Arc<TokenStats> {
        Arc::clone(self.0.get_or_init(Box::default))
    }
}

impl Deref for StatsSlot {
    type Target = TokenStats;

    fn deref(&self) -> &TokenStats {
        // Two first requests at once may both allocate; one wins and the other's box is dropped
        // before anything counted in it.
        self.0.get_or_init(Box::default)
    }
}

/// Outcome of a lookup.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// An enabled token.
    Valid(SharedRecord),
    /// A known token with `Enabled` = 0.
    Disabled(SharedRecord),
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
    /// Names whose value, enabled flag, role, tenants, scanfile grant or limits changed.
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
        // A `[u8; N]` hashes as its length, then its bytes: both land here, XORed together.
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

/// A map entry: the record, hashed and compared by its key. The map is a set of records, so each
/// token costs the map one pointer rather than a copy of its key beside the pointer.
#[derive(Debug, Clone)]
struct Slot(SharedRecord);

impl Hash for Slot {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The same as hashing the `DigestKey` itself, as `Borrow` requires.
        self.0.key.hash(state);
    }
}

impl PartialEq for Slot {
    fn eq(&self, other: &Slot) -> bool {
        self.0.key == other.0.key
    }
}

impl Eq for Slot {}

impl Borrow<DigestKey> for Slot {
    fn borrow(&self) -> &DigestKey {
        &self.0.key
    }
}

/// The token map. Shared by every connection; replaced entry by entry on reload, never wholesale.
/// Its Debug shows the count only: a million records are no log line, and the keys are digests.
#[derive(Default)]
pub struct TokenStore {
    map: DashMap<Slot, (), DigestHasher>,
    /// Serialises applies, and keeps what the next one starts from.
    applies: Mutex<Applied>,
    /// Map lookups the applies made: the tests check that a token at its place costs none.
    #[cfg(test)]
    apply_lookups: std::sync::atomic::AtomicUsize,
}

/// What the last apply left behind.
#[derive(Default)]
struct Applied {
    /// Its number, for [`TokenRecord::applied`].
    number: u32,
    /// The records it put in force, in the order of the config they came from (all `Some`; the
    /// next apply takes them out one by one). The next apply reads the new config beside it, so a
    /// token that stands where it stood is checked without a map lookup, and the removals are
    /// found in this list rather than by a walk over the map: both read memory in order instead
    /// of at random, which is most of an apply's time at a million tokens. 8 bytes a token.
    order: Vec<Option<SharedRecord>>,
}

/// How many records past the last one found an apply looks for a token, to stay in step past a
/// few removed ones.
const RESYNC: usize = 8;

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStore")
            .field("tokens", &self.len())
            .finish_non_exhaustive()
    }
}

impl TokenStore {
    /// An empty store.
    pub fn new() -> TokenStore {
        TokenStore::default()
    }

    /// Looks a digest up.
    pub fn lookup(&self, digest: &Digest) -> Lookup {
        let key = digest_key(digest);
        let Some(record) = self.map.get(&key).map(|e| SharedRecord::clone(&e.key().0)) else {
            return Lookup::Unknown;
        };
        // The map compared with `==`; compare again in constant time so this path never depends on
        // early-exit comparison, whatever the map implementation does.
        if !bool::from(record.key.ct_eq(&key)) {
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
        self.map.len()
    }

    /// True when no token is loaded.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The records in force, by name (for `/config` and metrics).
    pub fn records(&self) -> Vec<SharedRecord> {
        let mut v: Vec<_> = (self.map.iter())
            .map(|e| SharedRecord::clone(&e.key().0))
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The record called `name`, by a scan without allocating: for the console's session check,
    /// not the request path.
    pub fn find_by_name(&self, name: &str) -> Option<SharedRecord> {
        (self.map.iter())
            .find(|e| e.key().0.name == name)
            .map(|e| SharedRecord::clone(&e.key().0))
    }

    /// Makes `tokens` the store's content: inserts and updates first, removals after.
    pub fn apply(&self, tokens: &[TokenEntry]) -> ApplyCounts {
        self.apply_with(tokens, |_| {})
    }

    /// [`apply`](Self::apply), calling `removed` with the record of each name that left the store
    /// (so its metric series can go with it).
    ///
    /// `tokens` must have unique names and unique digest keys, as validation guarantees.
    pub fn apply_with(
        &self,
        tokens: &[TokenEntry],
        mut removed: impl FnMut(&TokenRecord),
    ) -> ApplyCounts {
        let mut last = self.applies.lock().expect("token store lock");
        // Every record in the map carries the previous number, so wrapping around is harmless.
        last.number = last.number.wrapping_add(1);
        let mark = last.number;
        let mut previous = std::mem::take(&mut last.order);
        let mut order: Vec<Option<SharedRecord>> = vec![None; tokens.len()];
        let mut counts = ApplyCounts::default();
        let mut policies = Policies::default();
        for entry in tokens {
            match entry.enabled {
                true => counts.enabled += 1,
                false => counts.disabled += 1,
            }
        }

        // 1. Tokens whose digest is in force under the same name: found at their place in the last
        //    config, else by a lookup. Unchanged ones are marked; changed flags replace the record
        //    in place (the old one is marked too: it is replaced, not removed).
        let mut unmatched = Vec::new();
        // Where the last token found at its place stood in the old order, and how far that was
        // from its place in the new one. The next token is looked for at the same distance (past
        // a block of tokens replaced by as many others) and just after the last one (past
        // inserted tokens, and up to RESYNC removed ones).
        let (mut cursor, mut shift) = (0, 0);
        for (i, entry) in tokens.iter().enumerate() {
            let key = digest_key(&entry.digest);
            let same_token = |r: &SharedRecord| r.key == key && r.name == entry.name;
            let mut places = (i.checked_add_signed(shift).into_iter())
                .chain(cursor..previous.len().min(cursor + RESYNC));
            let near = places
                .find(|&j| (previous.get(j).and_then(Option::as_ref)).is_some_and(same_token));
            let old = match near {
                Some(j) => {
                    cursor = j + 1;
                    shift = j as isize - i as isize;
                    previous[j].take()
                }
                None => {
                    #[cfg(test)]
                    self.apply_lookups.fetch_add(1, Ordering::Relaxed);
                    (self.map.get(&key))
                        .map(|slot| SharedRecord::clone(&slot.key().0))
                        .filter(same_token)
                }
            };
            let Some(old) = old else {
                unmatched.push(i);
                continue;
            };
            old.applied.store(mark, Ordering::Relaxed);
            if same_record(&old, entry) {
                order[i] = Some(old);
                continue;
            }
            counts.changed += 1;
            let stats = old.stats.shared();
            order[i] = Some(self.put(record_for(entry, &mut policies, Some(stats), mark)));
        }

        // 2. New names and new Values: inserted under their digest, taking over an old name's stats.
        //    The old digest of a changed name goes in step 3, so both work for the instant between.
        //    What the last apply put in force and this one neither marked nor replaced is stale.
        let stale: Vec<SharedRecord> = (previous.into_iter().flatten())
            .filter(|r| r.applied.load(Ordering::Relaxed) != mark)
            .collect();
        let mut gone: HashMap<&str, &SharedRecord> =
            stale.iter().map(|r| (r.name.as_str(), r)).collect();
        for i in unmatched {
            let entry = &tokens[i];
            let old = gone.remove(entry.name.as_str());
            match old {
                Some(_) => counts.changed += 1,
                None => counts.added += 1,
            }
            let stats = old.map(|o| o.stats.shared());
            order[i] = Some(self.put(record_for(entry, &mut policies, stats, mark)));
        }

        // 3. Removals: the records no entry marked or replaced. A record whose key another name has
        //    taken over in step 2 is already out of the map.
        for old in &stale {
            if gone.contains_key(old.name.as_str()) {
                counts.removed += 1;
                removed(old);
            }
            self.map
                .remove_if(&old.key, |slot, _| SharedRecord::ptr_eq(&slot.0, old));
        }
        last.order = order;
        counts
    }

    /// Inserts a record, replacing the one under the same key in one step (never remove + insert,
    /// which would leave the token missing in between).
    fn put(&self, record: TokenRecord) -> SharedRecord {
        let record = SharedRecord::new(record);
        match self.map.entry(Slot(SharedRecord::clone(&record))) {
            Entry::Occupied(e) => _ = e.replace_entry(()),
            Entry::Vacant(e) => _ = e.insert(()),
        }
        record
    }
}

fn same_record(old: &TokenRecord, entry: &TokenEntry) -> bool {
    old.key == digest_key(&entry.digest) && old.enabled == entry.enabled && old.policy.fits(entry)
}

/// The policies one apply has made, so that the records it makes with the same policy share one.
/// (A record an apply keeps keeps its policy, so after many reloads a few equal policies may
/// exist side by side: one per apply that changed such a token, not one per token.)
#[derive(Default)]
struct Policies {
    /// The last one used: every token of a typical file has the same.
    last: Option<Arc<TokenPolicy>>,
    /// By hash; policies whose hashes collide share a list.
    all: HashMap<u64, Vec<Arc<TokenPolicy>>>,
    hasher: std::hash::RandomState,
}

impl Policies {
    fn of(&mut self, entry: &TokenEntry) -> Arc<TokenPolicy> {
        if let Some(last) = self.last.as_ref().filter(|p| p.fits(entry)) {
            return Arc::clone(last);
        }
        let policy = TokenPolicy::of(entry);
        let hash = self.hasher.hash_one(&policy);
        let same = self.all.entry(hash).or_default();
        let shared = match same.iter().find(|p| p.fits(entry)) {
            Some(known) => Arc::clone(known),
            None => {
                let new = Arc::new(policy);
                same.push(Arc::clone(&new));
                new
            }
        };
        self.last = Some(Arc::clone(&shared));
        shared
    }
}

fn record_for(
    entry: &TokenEntry,
    policies: &mut Policies,
    stats: Option<Arc<TokenStats>>,
    mark: u32,
) -> TokenRecord {
    TokenRecord {
        key: digest_key(&entry.digest),
        name: entry.name.clone(),
        policy: policies.of(entry),
        stats: stats.map(StatsSlot::sharing).unwrap_or_default(),
        enabled: entry.enabled,
        applied: AtomicU32::new(mark),
    }
}

pub(crate) fn tenants_header(tenants: &[String]) -> Option<HeaderValue> {
    (!tenants.is_empty()).then(|| header_value(&tenants.join(",")))
}

/// Names and tenants are Unicode; header values should be visible ASCII. Percent-encode anything
/// else (and `%` itself) so the backend can decode it unambiguously.
pub(crate) fn header_value(text: &str) -> HeaderValue {
    let plain = |b: u8| (0x20..0x7f).contains(&b) && b != b'%';
    if text.bytes().all(plain) {
        return HeaderValue::from_str(text).expect("visible ASCII is a valid header value");
    }
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if plain(b) {
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
            allow_scan_file: None,
            limits: None,
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
    fn renames_and_swapped_values_move_tokens_and_stats_by_name() {
        let store = TokenStore::new();
        store.apply(&[entry("a", 1, true), entry("b", 2, true)]);
        let Lookup::Valid(a) = store.lookup(&[1; 64]) else {
            panic!()
        };
        a.stats.requests.fetch_add(3, Ordering::Relaxed);

        // a and b swap Values: both changed, nothing added or removed, a's stats follow the name.
        let mut gone = Vec::new();
        let c = store.apply_with(&[entry("a", 2, true), entry("b", 1, true)], |r| {
            gone.push(r.name.to_string())
        });
        assert_eq!((c.added, c.removed, c.changed), (0, 0, 2));
        assert!(gone.is_empty());
        let Lookup::Valid(a2) = store.lookup(&[2; 64]) else {
            panic!()
        };
        assert_eq!(
            (&*a2.name, a2.stats.requests.load(Ordering::Relaxed)),
            ("a", 3)
        );
        assert!(matches!(store.lookup(&[1; 64]), Lookup::Valid(r) if &*r.name == "b"));

        // b's Value under a new name c: c is added, b removed, and the token never stops working.
        let c = store.apply_with(&[entry("a", 2, true), entry("c", 1, false)], |r| {
            gone.push(r.name.to_string())
        });
        assert_eq!((c.added, c.removed, c.changed), (1, 1, 0));
        assert_eq!(gone, ["b"]);
        assert!(matches!(store.lookup(&[1; 64]), Lookup::Disabled(r) if &*r.name == "c"));
        assert_eq!(store.len(), 2);
        let names: Vec<_> = store.records().iter().map(|r| r.name.to_string()).collect();
        assert_eq!(names, ["a", "c"]);
    }

    #[test]
    fn stats_are_allocated_on_first_use_and_kept_when_flags_change() {
        let store = TokenStore::new();
        store.apply(&[entry("a", 1, true)]);
        let Lookup::Valid(a) = store.lookup(&[1; 64]) else {
            panic!()
        };
        assert!(a.stats.get().is_none());
        a.stats.requests.fetch_add(2, Ordering::Relaxed);
        assert!(a.stats.get().is_some());

        let c = store.apply(&[entry("a", 1, false)]);
        assert_eq!((c.added, c.removed, c.changed, c.disabled), (0, 0, 1, 1));
        let Lookup::Disabled(a2) = store.lookup(&[1; 64]) else {
            panic!()
        };
        assert_eq!(a2.stats.requests.load(Ordering::Relaxed), 2);
        a.stats.requests.fetch_add(1, Ordering::Relaxed);
        assert_eq!(a2.stats.requests.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn the_map_is_keyed_by_the_first_32_digest_bytes() {
        let store = TokenStore::new();
        store.apply(&[entry("a", 1, true)]);
        let mut other_tail = [1; 64];
        other_tail[63] = 9;
        assert!(matches!(store.lookup(&other_tail), Lookup::Valid(_)));
        let mut other_head = [1; 64];
        other_head[31] = 9;
        assert!(matches!(store.lookup(&other_head), Lookup::Unknown));
    }

    #[test]
    fn unchanged_apply_is_a_no_op() {
        let store = TokenStore::new();
        store.apply(&[entry("a", 1, true)]);
        let c = store.apply(&[entry("a", 1, true)]);
        assert_eq!((c.added, c.removed, c.changed), (0, 0, 0));

        // A scanfile grant alone is a change, and the new record carries it.
        let granted = TokenEntry {
            allow_scan_file: Some(true),
            ..entry("a", 1, true)
        };
        let c = store.apply(std::slice::from_ref(&granted));
        assert_eq!((c.added, c.removed, c.changed), (0, 0, 1));
        let Lookup::Valid(a) = store.lookup(&[1; 64]) else {
            panic!()
        };
        assert_eq!(a.allow_scan_file(), Some(true));
    }

    /// An apply reads the new config beside the last one's order; tokens that moved, a run of
    /// removals longer than it looks ahead, insertions and a reversed file all come out right.
    #[test]
    fn applies_find_tokens_wherever_they_moved() {
        let store = TokenStore::new();
        let all: Vec<TokenEntry> = (1..=60).map(|i| entry(&format!("t{i}"), i, true)).collect();
        store.apply(&all);
        let check = |entries: &[TokenEntry]| {
            assert_eq!(store.len(), entries.len());
            for e in entries {
                let found = match store.lookup(&e.digest) {
                    Lookup::Valid(r) | Lookup::Disabled(r) => r,
                    Lookup::Unknown => panic!("{} missing", e.name),
                };
                assert_eq!((&*found.name, found.enabled), (e.name.as_str(), e.enabled));
            }
        };

        // Twenty removed at the front, two new ones in the middle, one disabled near the end.
        let mut next: Vec<TokenEntry> = all[20..].to_vec();
        next.insert(10, entry("new1", 101, true));
        next.insert(11, entry("new2", 102, true));
        next[35].enabled = false;
        let mut gone = Vec::new();
        let c = store.apply_with(&next, |r| gone.push(r.name.to_string()));
        assert_eq!((c.added, c.removed, c.changed), (2, 20, 1));
        assert_eq!(gone.len(), 20);
        check(&next);

        // The same tokens in reverse: nothing changes. Then a rotation and a rename at once.
        next.reverse();
        let c = store.apply(&next);
        assert_eq!((c.added, c.removed, c.changed), (0, 0, 0));
        check(&next);
        next[0] = entry(next[0].name.as_str(), 150, true);
        next[5].name = "renamed".into();
        let c = store.apply(&next);
        assert_eq!((c.added, c.removed, c.changed), (1, 1, 1));
        check(&next);
        assert!(matches!(store.lookup(&[60; 64]), Lookup::Unknown));

        // A block at the front replaced by as many new tokens.
        for (i, e) in next.iter_mut().take(5).enumerate() {
            *e = entry(&format!("block{i}"), 200 + i as u8, true);
        }
        let c = store.apply(&next);
        assert_eq!((c.added, c.removed, c.changed), (5, 5, 0));
        check(&next);
    }

    /// Only the tokens that are not where they stood in the last config cost a map lookup: past
    /// a replaced block, removals at the front, a run of RESYNC - 1 removals, and insertions.
    #[test]
    fn an_apply_looks_up_only_tokens_that_moved_beyond_its_reach() {
        let store = TokenStore::new();
        let lookups = || store.apply_lookups.swap(0, Ordering::Relaxed);
        let all: Vec<TokenEntry> = (1..=40).map(|i| entry(&format!("t{i}"), i, true)).collect();
        store.apply(&all);
        assert_eq!(lookups(), 40, "an empty store has no order to follow");
        store.apply(&all);
        assert_eq!(lookups(), 0);

        let mut next = all.clone();
        for (i, e) in next[10..20].iter_mut().enumerate() {
            *e = entry(&format!("n{i}"), 100 + i as u8, true);
        }
        assert_eq!(store.apply(&next).added, 10);
        assert_eq!(lookups(), 10, "the replaced block only");

        let mut next: Vec<TokenEntry> = next[2..].to_vec();
        assert_eq!(store.apply(&next).removed, 2);
        assert_eq!(lookups(), 0, "two removed at the front");

        next.drain(10..10 + RESYNC - 1);
        assert_eq!(store.apply(&next).removed, RESYNC - 1);
        assert_eq!(lookups(), 0, "a run of removals within reach");

        next.insert(20, entry("m1", 150, true));
        next.insert(21, entry("m2", 151, true));
        assert_eq!(store.apply(&next).added, 2);
        assert_eq!(lookups(), 2, "the inserted ones only");
        assert_eq!(store.len(), next.len());
    }

    #[test]
    fn tokens_with_the_same_policy_share_it() {
        let tenants = |seed, t: &[&str]| TokenEntry {
            tenants: t.iter().map(|t| t.to_string()).collect(),
            ..entry(&format!("t{seed}"), seed, true)
        };
        let store = TokenStore::new();
        let entries = [
            tenants(1, &["a", "b"]),
            tenants(2, &[]),
            tenants(3, &["a", "b"]),
            tenants(4, &[]),
            tenants(5, &["a"]),
        ];
        store.apply(&entries);
        let record = |seed| match store.lookup(&[seed; 64]) {
            Lookup::Valid(r) => r,
            other => panic!("{other:?}"),
        };
        let same = |a: u8, b: u8| Arc::ptr_eq(&record(a).policy, &record(b).policy);
        assert!(same(1, 3) && same(2, 4));
        assert!(!same(1, 2) && !same(1, 5) && !same(2, 5));
        assert_eq!(record(1).tenants_header().unwrap(), "a,b");
        assert_eq!(record(5).tenants_header().unwrap(), "a");
        assert!(record(2).tenants_header().is_none());

        // A tenant change is a change, and the record gets the other policy.
        let mut next = entries.clone();
        next[4].tenants = vec!["a".into(), "b".into()];
        let c = store.apply(&next);
        assert_eq!((c.added, c.removed, c.changed), (0, 0, 1));
        assert_eq!(record(5).tenants_header().unwrap(), "a,b");
    }

    #[test]
    fn the_name_header_is_made_on_first_use_and_follows_the_name() {
        let store = TokenStore::new();
        store.apply(&[entry("почта", 1, true)]);
        let Lookup::Valid(a) = store.lookup(&[1; 64]) else {
            panic!()
        };
        assert!(a.stats.get().is_none());
        assert_eq!(a.name_header(), "%D0%BF%D0%BE%D1%87%D1%82%D0%B0");
        let made = a.name_header() as *const HeaderValue;
        store.apply(&[entry("почта", 2, true)]);
        let Lookup::Valid(b) = store.lookup(&[2; 64]) else {
            panic!()
        };
        assert_eq!(b.name_header() as *const HeaderValue, made);
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
