//! The live view of API connections (MDR's model): what the request path needs to judge an access
//! token without touching the session store.
//!
//! An access token is a signed JWT, so its signature and `exp` need no state. What does is whether
//! its connection still admits it, and that is decided from memory here: the connection exists and
//! is enabled, the token's family began at or after the connection's `NotBefore` (which
//! `connection refresh` and `revoke` move to now), and the family has not been killed by a reuse
//! of one of its refresh tokens. The config feeds the first two on every reload; the session
//! store feeds the dead families at start-up and the exchange endpoint adds to them.
//!
//! [`ops`] holds the operations that change connections (add, refresh, revoke, …), shared by the
//! CLI and the web console.

pub mod ops;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use compact_str::CompactString;
use dashmap::DashMap;
use http::HeaderValue;

use super::header::AuthFailure;
use super::jwt::Claims;
use super::store::{header_value, tenants_header, TokenStats};
use crate::config::{ConnectionEntry, Role};

/// What the gateway knows about one connection. Holds no secret: its clients' tokens are signed,
/// not stored.
pub struct ConnectionRecord {
    /// `Name`: logged, counted and forwarded as `X-Scangate-Token-Name` (MDR's `author_name`).
    pub name: CompactString,
    /// `ClientId`: the `sub` of its tokens.
    pub client_id: Box<str>,
    /// `X-Scangate-Token-Name` value, built once per reload.
    pub name_header: HeaderValue,
    /// `X-Scangate-Tenants` value, when it has named tenants.
    pub tenants_header: Option<HeaderValue>,
    /// MDR's "Root without tenants": sent as `X-Scangate-Root-Tenant: 1`.
    pub root_tenant: bool,
    /// `Role`.
    pub role: Role,
    /// `Enabled`.
    pub enabled: bool,
    /// `NotBefore`, unix seconds: families begun before it are dead.
    pub not_before: u64,
    /// `Revoked`, for `/config` and the console.
    pub revoked: bool,
    /// Live counters, kept across reloads by name (as a Token's are).
    pub stats: Arc<TokenStats>,
    /// `RateLimit` or the defaults; `None` = unlimited.
    pub limits: Option<Arc<crate::config::Limits>>,
}

impl std::fmt::Debug for ConnectionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionRecord")
            .field("name", &self.name)
            .field("client_id", &self.client_id)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

impl ConnectionRecord {
    /// Whether tokens of the family that began at `family_issued_at` may still be used.
    fn admits_family(&self, family_issued_at: u64) -> Result<(), AuthFailure> {
        if !self.enabled || family_issued_at < self.not_before {
            return Err(AuthFailure::Revoked);
        }
        Ok(())
    }
}

/// Connections by client ID, and the families killed by a reuse.
#[derive(Default)]
pub struct Connections {
    by_client: ArcSwap<HashMap<Box<str>, Arc<ConnectionRecord>>>,
    /// Family id → unix seconds until which it stays dead (its tokens' latest possible `exp`).
    dead: DashMap<Box<str>, u64>,
    /// Whether `dead` may hold a family: set before a family is added, cleared only when a purge
    /// leaves none. Every request asks [`Connections::is_dead`], and asking an empty `DashMap`
    /// read-locks each of its shards.
    any_dead: AtomicBool,
    /// Held by whoever adds or purges families, so a purge that empties `dead` cannot clear
    /// `any_dead` after a concurrent add has set it.
    dead_writer: Mutex<()>,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("connections", &self.by_client.load().len())
            .field("dead_families", &self.dead.len())
            .finish()
    }
}

impl Connections {
    /// Whether the config has any connection: without one, no request is checked as a JWT.
    pub fn is_empty(&self) -> bool {
        self.by_client.load().is_empty()
    }

    /// The connection with `client_id`.
    pub fn get(&self, client_id: &str) -> Option<Arc<ConnectionRecord>> {
        self.by_client.load().get(client_id).cloned()
    }

    /// Every connection, in no particular order.
    pub fn records(&self) -> Vec<Arc<ConnectionRecord>> {
        self.by_client.load().values().cloned().collect()
    }

    /// Replaces the view with the config's connections. A connection that keeps its Name keeps its
    /// counters; `gone` sees each one that left the config, so its series can go too.
    pub fn apply(&self, entries: &[ConnectionEntry], mut gone: impl FnMut(&ConnectionRecord)) {
        let previous = self.by_client.load_full();
        let mut stats_by_name: HashMap<&str, &Arc<TokenStats>> = previous
            .values()
            .map(|r| (r.name.as_str(), &r.stats))
            .collect();
        let next: HashMap<Box<str>, Arc<ConnectionRecord>> = entries
            .iter()
            .map(|e| {
                let stats = stats_by_name
                    .remove(e.name.as_str())
                    .cloned()
                    .unwrap_or_default();
                let record = ConnectionRecord {
                    name: e.name.clone(),
                    client_id: e.client_id.as_str().into(),
                    name_header: header_value(&e.name),
                    tenants_header: tenants_header(&e.tenants),
                    root_tenant: e.root_tenant,
                    role: e.role,
                    enabled: e.enabled,
                    not_before: e.not_before,
                    revoked: e.revoked,
                    stats,
                    limits: e.limits.clone(),
                };
                (record.client_id.clone(), Arc::new(record))
            })
            .collect();
        let left: Vec<&str> = stats_by_name.into_keys().collect();
        for record in previous
            .values()
            .filter(|r| left.contains(&r.name.as_str()))
        {
            gone(record);
        }
        self.by_client.store(Arc::new(next));
    }

    /// Judges a verified token's claims at `now`: its connection must exist and admit its family,
    /// the family must be alive, and it must not have expired since it was verified (a
    /// connection's memo keeps verified claims).
    pub fn admit(&self, claims: &Claims, now: u64) -> Result<Arc<ConnectionRecord>, AuthFailure> {
        if claims.exp <= now {
            return Err(AuthFailure::Expired);
        }
        let record = self.get(&claims.sub).ok_or(AuthFailure::InvalidToken)?;
        record.admits_family(claims.fit)?;
        if self.is_dead(&claims.fam) {
            return Err(AuthFailure::Revoked);
        }
        Ok(record)
    }

    /// Marks a family dead until `until`, in this process (the store keeps it across restarts).
    pub fn kill_family(&self, family: &str, until: u64) {
        let _writer = self.dead_writer.lock().unwrap_or_else(|p| p.into_inner());
        // Set before the family is there: a reader that finds the flag clear is ordered before
        // this kill, never after it.
        self.any_dead.store(true, Ordering::SeqCst);
        self.dead
            .entry(family.into())
            .and_modify(|u| *u = (*u).max(until))
            .or_insert(until);
    }

    /// Whether a reuse killed `family`.
    pub fn is_dead(&self, family: &str) -> bool {
        self.any_dead.load(Ordering::SeqCst) && self.dead.contains_key(family)
    }

    /// Forgets dead families whose every token has expired by `now`.
    pub fn purge_dead(&self, now: u64) {
        let _writer = self.dead_writer.lock().unwrap_or_else(|p| p.into_inner());
        self.dead.retain(|_, until| *until > now);
        if self.dead.is_empty() {
            self.any_dead.store(false, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_killed_family_is_dead_until_a_purge_past_its_last_expiry() {
        let c = Connections::default();
        assert!(!c.is_dead("f1"));
        c.kill_family("f1", 100);
        c.kill_family("f2", 200);
        assert!(c.is_dead("f1") && c.is_dead("f2"));
        assert!(!c.is_dead("f3"));
        // A later kill of the same family keeps the later expiry.
        c.kill_family("f1", 150);
        c.kill_family("f1", 120);
        c.purge_dead(140);
        assert!(c.is_dead("f1"), "f1 stays dead until 150");
        c.purge_dead(150);
        assert!(!c.is_dead("f1"));
        assert!(c.is_dead("f2"));
        c.purge_dead(200);
        assert!(!c.is_dead("f2"));
        assert!(
            !c.any_dead.load(Ordering::SeqCst),
            "an empty purge clears the flag"
        );
        // A family killed after the table emptied is dead again.
        c.kill_family("f4", 300);
        assert!(c.is_dead("f4"));
    }

    #[test]
    fn a_purge_that_leaves_a_family_keeps_the_flag() {
        let c = Connections::default();
        c.kill_family("f1", 100);
        c.kill_family("f2", 200);
        c.purge_dead(100);
        assert!(c.any_dead.load(Ordering::SeqCst));
        assert!(c.is_dead("f2"));
    }

    #[test]
    fn a_kill_racing_a_purge_that_empties_the_table_is_never_lost() {
        // Each round: "temp" (dead until 1) is in the table; one thread purges at 10, which
        // empties it, while this one kills "victim" until 1000. Whichever goes first, the victim
        // must read as dead afterwards; then a purge at 1000 empties the table for the next round.
        let c = Arc::new(Connections::default());
        let rounds = 5_000;
        let go = Arc::new(std::sync::Barrier::new(2));
        let purger = {
            let (c, go) = (Arc::clone(&c), Arc::clone(&go));
            std::thread::spawn(move || {
                for _ in 0..rounds {
                    go.wait();
                    c.purge_dead(10);
                    go.wait();
                }
            })
        };
        for round in 0..rounds {
            c.kill_family("temp", 1);
            go.wait();
            c.kill_family("victim", 1000);
            go.wait();
            assert!(
                c.is_dead("victim"),
                "round {round}: the kill was lost to the purge"
            );
            c.purge_dead(1000);
            assert!(!c.is_dead("victim"));
        }
        purger.join().unwrap();
    }
}
