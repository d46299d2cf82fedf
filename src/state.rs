//! The gateway's shared state: the token store plus an immutable snapshot of everything else, and
//! the one reload function that all triggers call.
//!
//! A reload builds the new snapshot off to the side and fails without touching anything; only then
//! does it apply the tokens (inserts before removals) and swap the snapshot in one store.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use http::HeaderName;

use crate::auth::connections::Connections;
use crate::auth::jwt::JwtKeys;
use crate::auth::limits::LimitState;
use crate::auth::quota::QuotaLedger;
use crate::auth::sessions::{
    DeadFamily, RedisStore, SessionStore, SqliteStore, StoreError, StoreEvents,
};
use crate::auth::store::{ApplyCounts, TokenStore};
use crate::auth::token::TokenKey;
use crate::config::load::Buffers;
use crate::config::{self, LoadError, Loaded, Settings, StateStore};
use crate::metrics::{Metrics, ReloadResult, StoreHealth};
use crate::proxy::error::Challenge;
use crate::proxy::tls::{self, TlsError};
use crate::proxy::upstream::{UpstreamError, UpstreamSet};

/// Everything a request reads besides the tokens, swapped whole on reload. Read it with
/// `load_full()` and never hold the guard across an `.await`.
#[derive(Debug)]
pub struct Snapshot {
    /// Counts successful loads, starting at 1.
    pub generation: u64,
    /// The settings this snapshot came from, except `auth.tokens`, which is moved into the token
    /// store and left empty here.
    pub settings: Settings,
    /// The HMAC key; `None` only when UseAccessToken is 0.
    pub key: Option<TokenKey>,
    /// The API connections' JWT signing keys, derived from `key`.
    pub jwt: Option<JwtKeys>,
    /// `AuthRequestField`.
    pub auth_field: HeaderName,
    /// `UseAccessToken`.
    pub auth_enabled: bool,
    /// `UseBearerAuthScheme`.
    pub bearer: bool,
    /// `WWW-Authenticate` value for 401s, built once.
    pub challenge: Challenge,
    /// `MaxTCPFileSize`, in bytes.
    pub max_request_bytes: u64,
    /// `SessionTimeout`; `None` = unlimited.
    pub session_timeout: Option<Duration>,
    /// The upstreams, with their pools.
    pub upstreams: UpstreamSet,
    /// TLS for an `https://` listener; new handshakes use the current one.
    pub tls: Option<tls::ServerTls>,
}

/// Why a (re)load failed. The previous generation stays in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// Reading, parsing or validating the config, or reading the key file.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Building the upstream clients.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The TLS certificate or key at start-up. (On reload a bad certificate keeps the old one.)
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The session store the API connections need could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a successful reload changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The file and key are byte-identical to the last load: nothing was done.
    Unchanged,
    /// A new generation is in force.
    Applied {
        /// The new generation.
        generation: u64,
        /// Token counts.
        counts: ApplyCounts,
        /// How long parsing, building and applying took.
        elapsed: Duration,
    },
}

/// The state shared by every connection and the reloader. Its Debug shows no token and no hash.
pub struct Gateway {
    /// The config file this gateway reloads from.
    pub config_path: PathBuf,
    /// The live token map.
    pub tokens: TokenStore,
    /// The live view of API connections and their dead token families. Shared with a shared
    /// session store's follower, which adds the families other replicas kill.
    pub connections: Arc<Connections>,
    /// Where single use is recorded; opened when the first Connection appears.
    sessions: OnceLock<Arc<dyn SessionStore>>,
    /// When the session store last dropped expired marks (unix seconds).
    pub(crate) last_purge: AtomicU64,
    /// The current snapshot.
    pub snapshot: ArcSwap<Snapshot>,
    /// Serialises reloads; holds what one leaves the next.
    reload_lock: Mutex<Reloads>,
    generation: AtomicU64,
    /// Set when shutdown starts: readiness turns false while connections drain.
    pub draining: AtomicBool,
    /// The Prometheus registry and the handles the request path and reloads update.
    pub metrics: Metrics,
    /// The last load or reload attempt, for the admin `/config` page.
    last_reload: Mutex<ReloadReport>,
    /// Notified after each applied reload, so the health checker checks new engines at once.
    pub reloaded: tokio::sync::Notify,
    /// The latest detections and per-credential counts for the console (see [`crate::audit`]).
    pub recent: crate::audit::Recent,
    /// Every principal's quota counts, flushed to the session store once a second.
    pub quotas: QuotaLedger,
    /// This replica's name in replica-scope quota keys: `SCANGATE_REPLICA`, else the host name,
    /// so a restarted replica finds its own counts again.
    pub replica: String,
}

/// What one reload leaves the next.
struct Reloads {
    /// The content hash of the config in force: a reload with the same one does nothing.
    last_hash: Option<u128>,
    /// The large buffers of the last reload, kept until the reload loop sees a quiet spell.
    buffers: Buffers,
}

/// The outcome of the last load or reload attempt, as `/config` shows it.
#[derive(Debug, Clone)]
pub struct ReloadReport {
    /// When it finished.
    pub at: SystemTime,
    /// What came of it.
    pub result: ReloadResult,
    /// The error, for `result` = error. Config errors name positions and rules, never a Value.
    pub error: Option<String>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("config_path", &self.config_path)
            .field("generation", &self.generation())
            .field("tokens", &self.tokens)
            .field("draining", &self.draining)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Loads the config at `path` for the first time. Errors here are start-up errors.
    pub fn start(path: &Path) -> Result<Arc<Gateway>, ReloadError> {
        let loaded = config::load(path)?;
        let hash = loaded.content_hash;
        let mut snapshot = build_snapshot(loaded, 1, None)?;
        let tokens = TokenStore::new();
        let quotas = has_quotas(&snapshot.settings);
        let counts = tokens.apply(&take_tokens(&mut snapshot));
        crate::heap::release_free_pages();
        let metrics = Metrics::new();
        metrics.config_in_force(1, counts.enabled, counts.disabled);
        let sessions = OnceLock::new();
        let connections = Arc::new(Connections::default());
        open_sessions(
            &sessions,
            &connections,
            &metrics,
            &snapshot.settings,
            quotas,
        )?;
        connections.apply(&take_connections(&mut snapshot), |_| {});
        let ledger = QuotaLedger::default();
        let replica = replica_name();
        if quotas {
            load_quotas(&tokens, &connections, &ledger, sessions.get(), &replica);
        }
        Ok(Arc::new(Gateway {
            config_path: path.to_owned(),
            tokens,
            connections,
            sessions,
            last_purge: AtomicU64::new(0),
            snapshot: ArcSwap::from_pointee(snapshot),
            reload_lock: Mutex::new(Reloads {
                last_hash: Some(hash),
                buffers: Buffers::default(),
            }),
            generation: AtomicU64::new(1),
            draining: AtomicBool::new(false),
            metrics,
            last_reload: Mutex::new(ReloadReport {
                at: SystemTime::now(),
                result: ReloadResult::Ok,
                error: None,
            }),
            reloaded: tokio::sync::Notify::new(),
            recent: crate::audit::Recent::default(),
            quotas: ledger,
            replica,
        }))
    }

    /// The last load or reload attempt.
    pub fn last_reload(&self) -> ReloadReport {
        self.last_reload.lock().expect("reload report lock").clone()
    }

    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Re-reads the config. On any error nothing changes. Reloads are serialised; call it from a
    /// blocking context (it reads files and may parse a large document). Every attempt is counted
    /// in `scangate_config_reload_total` and reported by `/config`, whichever trigger called it.
    pub fn reload(&self) -> Result<ReloadOutcome, ReloadError> {
        let outcome = self.reload_inner();
        let (result, error) = match &outcome {
            Ok(ReloadOutcome::Applied { .. }) => (ReloadResult::Ok, None),
            Ok(ReloadOutcome::Unchanged) => (ReloadResult::Unchanged, None),
            Err(e) => (ReloadResult::Error, Some(e.to_string())),
        };
        self.metrics.reload(result);
        *self.last_reload.lock().expect("reload report lock") = ReloadReport {
            at: SystemTime::now(),
            result,
            error,
        };
        if result == ReloadResult::Ok {
            self.reloaded.notify_one();
        }
        outcome
    }

    /// Drops the buffers the last reload kept for the next one and gives their pages back.
    /// Returns the bytes they held. The reload loop calls this after a quiet spell.
    pub fn release_buffers(&self) -> usize {
        let mut reloads = self.reload_lock.lock().expect("reload lock");
        let held = reloads.buffers.capacity_bytes();
        reloads.buffers = Buffers::default();
        drop(reloads);
        if held > 0 {
            crate::heap::release_free_pages();
        }
        held
    }

    /// The bytes the last reload's buffers hold, kept for the next one.
    pub fn buffers_held(&self) -> usize {
        let reloads = self.reload_lock.lock().expect("reload lock");
        reloads.buffers.capacity_bytes()
    }

    fn reload_inner(&self) -> Result<ReloadOutcome, ReloadError> {
        let started = Instant::now();
        let mut reloads = self.reload_lock.lock().expect("reload lock");
        let Reloads { last_hash, buffers } = &mut *reloads;
        let previous = self.snapshot.load_full();
        // Compare before parsing: a folder event for an unchanged file must not cost a full parse.
        let mut bytes = std::mem::take(&mut buffers.file);
        config::load::read_capped_into(&self.config_path, &mut bytes)?;
        let hashed = config::load::hash_config(&bytes);
        let in_force = &previous.settings;
        let quick = config::load::content_hash_with(
            hashed.clone(),
            &in_force.gateway.token_key_file,
            in_force.server.tls.as_ref(),
        );
        if *last_hash == Some(quick) {
            buffers.file = bytes;
            return Ok(ReloadOutcome::Unchanged);
        }
        let tokens = std::mem::take(&mut buffers.tokens);
        let loaded = config::load::load_read(&self.config_path, &bytes, hashed, tokens);
        bytes.clear();
        buffers.file = bytes;
        let loaded = loaded?;
        if *last_hash == Some(loaded.content_hash) {
            let mut loaded = loaded;
            buffers.tokens = take_tokens_of(&mut loaded.settings);
            buffers.tokens.clear();
            return Ok(ReloadOutcome::Unchanged);
        }
        let hash = loaded.content_hash;
        let generation = previous.generation + 1;
        let mut snapshot = build_snapshot(loaded, generation, Some(&previous))?;
        warn_restart_needed(&previous.settings, &snapshot.settings);

        let quotas = has_quotas(&snapshot.settings);
        // Tokens first, then the snapshot: a new token works as soon as the new key is in force, and
        // when the key changes every digest changes with it, so both land in one reload anyway.
        let mut tokens = take_tokens(&mut snapshot);
        let counts = self.tokens.apply_with(&tokens, |gone| {
            if let Some(meter) = gone.stats.get().and_then(|s| s.meter.get()) {
                self.metrics.forget_token(meter);
            }
        });
        tokens.clear();
        buffers.tokens = tokens;
        open_sessions(
            &self.sessions,
            &self.connections,
            &self.metrics,
            &snapshot.settings,
            quotas,
        )?;
        self.connections
            .apply(&take_connections(&mut snapshot), |gone| {
                if let Some(meter) = gone.stats.meter.get() {
                    self.metrics.forget_token(meter);
                }
            });
        if quotas {
            load_quotas(
                &self.tokens,
                &self.connections,
                &self.quotas,
                self.sessions.get(),
                &self.replica,
            );
        }
        // The parse's garbage is freed by now; hand its pages back before the next one.
        crate::heap::release_free_pages();
        self.forget_removed_upstreams(&previous, &snapshot);
        self.snapshot.store(Arc::new(snapshot));
        self.generation.store(generation, Ordering::Relaxed);
        self.metrics
            .config_in_force(generation, counts.enabled, counts.disabled);
        *last_hash = Some(hash);
        Ok(ReloadOutcome::Applied {
            generation,
            counts,
            elapsed: started.elapsed(),
        })
    }
}

impl Gateway {
    /// Upstreams that left the config take their series with them, so label cardinality stays
    /// bounded by the config.
    fn forget_removed_upstreams(&self, previous: &Snapshot, next: &Snapshot) {
        let kept = |label: &Arc<str>| next.upstreams.all().iter().any(|u| &u.label == label);
        let gone: Vec<_> = previous
            .upstreams
            .all()
            .iter()
            .filter(|u| !kept(&u.label))
            .collect();
        if gone.is_empty() {
            return;
        }
        let records = self.tokens.records();
        for upstream in gone {
            let meters = (records.iter()).filter_map(|r| r.stats.get().and_then(|s| s.meter.get()));
            self.metrics.forget_upstream(&upstream.label, meters);
        }
    }
}

fn build_snapshot(
    loaded: Loaded,
    generation: u64,
    previous: Option<&Snapshot>,
) -> Result<Snapshot, ReloadError> {
    let Loaded { settings, key, .. } = loaded;
    let upstreams = UpstreamSet::rebuild(
        &settings.gateway.upstreams,
        settings.gateway.upstream_ca_file.as_deref(),
        &settings.gateway.upstream,
        previous.map(|p| &p.upstreams),
    )?;
    let server_tls = match (&settings.server.tls, previous) {
        (None, _) => None,
        (Some(files), previous) => match tls::load(
            files,
            settings.server.tls_session_tickets,
            previous.and_then(|p| p.tls.as_ref()),
        ) {
            Ok(tls) => Some(tls),
            // A bad certificate on reload keeps the last good one; everything else still applies,
            // so a certificate typo never blocks a token revocation.
            Err(e) => match previous.and_then(|p| p.tls.clone()) {
                Some(old) => {
                    tracing::error!(error = %e, "TLS files not applied; keeping the previous certificate");
                    Some(old)
                }
                None => return Err(e.into()),
            },
        },
    };
    let challenge = Challenge::new(&settings.gateway.realm, settings.auth.bearer);
    Ok(Snapshot {
        generation,
        jwt: key.as_ref().map(JwtKeys::derive),
        key,
        auth_field: settings.auth.request_field.clone(),
        auth_enabled: settings.auth.use_access_token,
        bearer: settings.auth.bearer,
        challenge,
        max_request_bytes: settings.server.max_request_bytes,
        session_timeout: settings.server.session_timeout,
        upstreams,
        tls: server_tls,
        settings,
    })
}

/// Moves the parsed token list out of the snapshot. The store holds every token from then on;
/// keeping the list too would double the memory per token (≈ 190 bytes each at 1M tokens, measured in
/// benches/RESULTS.md), so `Snapshot::settings.auth.tokens` is always empty.
fn take_tokens(snapshot: &mut Snapshot) -> Vec<config::TokenEntry> {
    take_tokens_of(&mut snapshot.settings)
}

fn take_tokens_of(settings: &mut Settings) -> Vec<config::TokenEntry> {
    std::mem::take(&mut settings.auth.tokens)
}

/// Moves the connections out of the snapshot into [`Connections`], as the tokens are moved.
fn take_connections(snapshot: &mut Snapshot) -> Vec<config::ConnectionEntry> {
    std::mem::take(&mut snapshot.settings.auth.connections)
}

/// How often the quota flusher purges the session store (expired marks and past days' counts).
const QUOTA_PURGE_EVERY_SECS: u64 = 3600;

/// Whether any principal has a quota, which the session store counts.
fn has_quotas(settings: &Settings) -> bool {
    let quota = |l: &Option<Arc<config::Limits>>| l.as_ref().is_some_and(|l| !l.has_no_quota());
    settings.auth.tokens.iter().any(|t| quota(&t.limits))
        || settings.auth.connections.iter().any(|c| quota(&c.limits))
}

/// Reads the stored quota counts of every principal with a quota that has none in memory yet, so
/// a restarted gateway (or a principal given a quota by a reload) starts from what was counted.
/// Runs at start-up and on a reload's blocking thread, never on the request path. A store that
/// does not answer leaves the counts to the periodic flush.
fn load_quotas(
    tokens: &TokenStore,
    connections: &Connections,
    ledger: &QuotaLedger,
    store: Option<&Arc<dyn SessionStore>>,
    replica: &str,
) {
    // A shared store that is not in sync (Redis down or resyncing) is left to the periodic
    // flush: a reload must not wait out its timeouts.
    let Some(store) = store.filter(|s| s.in_sync()) else {
        return;
    };
    let now = crate::config::validate::connections::now_secs();
    let mut fresh = false;
    let mut prime = |name: &str, limits: Option<&Arc<config::Limits>>, state: &LimitState| {
        if let Some(limits) = limits.filter(|l| !l.has_no_quota()) {
            if state.quota().is_none() {
                state.quota_cell(ledger, name, limits).prime(limits, now);
                fresh = true;
            }
        }
    };
    for t in tokens.records() {
        prime(&t.name, t.limits(), &t.stats.limits);
    }
    for c in connections.records() {
        prime(&c.name, c.limits.as_ref(), &c.stats.limits);
    }
    if fresh {
        let flushed = crate::auth::quota::flush(ledger, &**store, replica, true);
        let _ = crate::auth::sessions::block_on(Box::pin(async move { Ok(flushed.await) }));
    }
}

/// `SCANGATE_REPLICA`, else the host name, else `local`.
fn replica_name() -> String {
    std::env::var("SCANGATE_REPLICA")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "local".to_owned())
}

/// Opens the session store the first time the config has a Connection or a quota, and loads the families
/// a reuse killed before the last restart, so none of their tokens works again. A SQLite store
/// that cannot be opened fails the load: exchanges cannot be single use without it. A Redis store
/// connects in the background instead: the data plane must start while Redis is down, and its
/// follower loads the dead families (and every later kill) once Redis answers.
fn open_sessions(
    slot: &OnceLock<Arc<dyn SessionStore>>,
    connections: &Arc<Connections>,
    metrics: &Metrics,
    settings: &Settings,
    quotas: bool,
) -> Result<(), StoreError> {
    if (settings.auth.connections.is_empty() && !quotas) || slot.get().is_some() {
        return Ok(());
    }
    let health = metrics.session_store_health();
    let store: Arc<dyn SessionStore> = match &settings.gateway.sessions.state_store {
        StateStore::Sqlite(path) => {
            let store: Arc<dyn SessionStore> = Arc::new(SqliteStore::open(path)?);
            let now = crate::config::validate::connections::now_secs();
            let loaded = crate::auth::sessions::block_on(store.dead_families(now))?;
            for dead in &loaded {
                connections.kill_family(&dead.family, dead.until);
            }
            health.set(true);
            tracing::info!(
                store = %store.describe(),
                dead_families = loaded.len(),
                "session store opened"
            );
            store
        }
        StateStore::Redis(url) => {
            let store: Arc<dyn SessionStore> = Arc::new(RedisStore::new(url)?);
            health.set(false);
            store.follow(Arc::new(SessionEvents {
                connections: Arc::clone(connections),
                health,
            }));
            tracing::info!(store = %url, "session store configured; connecting in the background");
            store
        }
    };
    let _ = slot.set(store);
    Ok(())
}

/// Where a shared store's follower delivers: the in-memory view and the health series.
struct SessionEvents {
    connections: Arc<Connections>,
    health: StoreHealth,
}

impl StoreEvents for SessionEvents {
    fn family_died(&self, dead: &DeadFamily) {
        self.connections.kill_family(&dead.family, dead.until);
    }

    fn store_up(&self, up: bool) {
        self.health.set(up);
    }
}

impl Gateway {
    /// The session store, once the config has a Connection or a quota.
    pub fn sessions(&self) -> Option<&Arc<dyn SessionStore>> {
        self.sessions.get()
    }

    /// Sends the pending quota counts to the session store and takes the totals back (see
    /// [`crate::auth::quota`]): every count when `all`, else the busy cluster-scope ones. Then
    /// updates the quota series.
    pub async fn flush_quotas(&self, all: bool) {
        let Some(store) = self.sessions() else {
            return;
        };
        let ok = crate::auth::quota::flush(&self.quotas, &**store, &self.replica, all).await;
        self.metrics.limits.store_up.set(i64::from(ok));
        if all {
            for cell in self.quotas.live() {
                self.metrics.limits.quota_used(cell.name(), cell.used());
            }
            // Counts of past days go with the store's purge, which otherwise runs only with
            // exchanges (a config of tokens alone has none).
            let now = crate::config::validate::connections::now_secs();
            let last = self.last_purge.load(Ordering::Relaxed);
            let due = now >= last + QUOTA_PURGE_EVERY_SECS
                && (self.last_purge)
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok();
            if due {
                if let Err(e) = store.purge(now).await {
                    tracing::warn!(error = %e, "session store purge failed");
                }
            }
        }
    }
}

fn warn_restart_needed(old: &Settings, new: &Settings) {
    if old.server.listen != new.server.listen {
        tracing::warn!("ConnectionString changed; the listener keeps its address until a restart");
    }
    if old.gateway.admin != new.gateway.admin {
        tracing::warn!(
            "AdminConnectionString changed; the admin listener keeps its address until a restart"
        );
    }
    if old.server.max_sessions != new.server.max_sessions {
        tracing::warn!("MaxHTTPSessionsNum changed; it applies after a restart");
    }
    if old.gateway.max_connections_per_client != new.gateway.max_connections_per_client {
        tracing::warn!("MaxConnectionsPerClient changed; it applies after a restart");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::token::encode_value;
    use crate::config::edit::{ConfigFile, Document, NewToken};

    /// The ways a digest can show in Debug output: its `Value`, its bytes as a derived Debug
    /// prints them (whole, or the 32-byte map key), and hex.
    fn shows_digest(text: &str, digest: &[u8; 64]) -> bool {
        let bytes = format!("{:?}", &digest[..4]);
        let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        text.contains(&encode_value(digest))
            || text.contains(bytes.trim_end_matches(']'))
            || text.contains(&hex)
    }

    #[tokio::test]
    async fn no_debug_output_shows_a_digest_or_a_value() {
        let dir = tempfile::tempdir().unwrap();
        let key = TokenKey::from_bytes(&[9; 32]);
        std::fs::write(
            dir.path().join("scangate.key"),
            "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n",
        )
        .unwrap();
        let digest = key.digest(b"Debug-Probe-1");
        let value = encode_value(&digest);
        let path = dir.path().join("scangate.xml");
        let xml = format!(
            "<Configuration><ServerSettings><ConnectionString>http://127.0.0.1:0</ConnectionString>\
             <AuthSettings><UseAccessToken>1</UseAccessToken><AuthRequestField>Authorization\
             </AuthRequestField><UseBearerAuthScheme>1</UseBearerAuthScheme><AccessTokens><Token>\
             <Name>probe</Name><Value>{value}</Value><Enabled>1</Enabled><Tenants><Tenant>t\
             </Tenant></Tenants></Token></AccessTokens></AuthSettings></ServerSettings>\
             <GatewaySettings><Upstreams><Upstream>http://127.0.0.1:9</Upstream></Upstreams>\
             <AdminConnectionString>off</AdminConnectionString></GatewaySettings></Configuration>"
        );
        std::fs::write(&path, &xml).unwrap();

        let loaded = config::load(&path).unwrap();
        assert_eq!(loaded.settings.auth.tokens[0].digest, digest, "the probe");
        let gw = Gateway::start(&path).unwrap();
        let record = match gw.tokens.lookup(&digest) {
            crate::auth::store::Lookup::Valid(record) => record,
            other => panic!("{other:?}"),
        };
        let file = ConfigFile::open(&path).unwrap();
        let doc = Document::read(file.text(), "t.xml").unwrap();
        let new = NewToken {
            limits: None,
            name: "n".into(),
            value: value.clone(),
            description: None,
            enabled: true,
            role: None,
            tenants: Vec::new(),
        };
        let shown = [
            format!("{:?}", loaded.settings.auth.tokens[0]),
            format!("{:?}", loaded.settings),
            format!("{loaded:?}"),
            format!("{gw:?}"),
            format!("{:?}", gw.tokens),
            format!("{record:?}"),
            format!("{:?}", gw.tokens.lookup(&digest)),
            format!("{file:?}"),
            format!("{doc:?}"),
            format!("{new:?}"),
        ];
        for text in &shown {
            assert!(!shows_digest(text, &digest), "{text}");
        }
        // Still useful: the name shows where a token does.
        assert!(
            shown[0].contains("probe") && shown[5].contains("probe"),
            "{shown:?}"
        );
    }
}
