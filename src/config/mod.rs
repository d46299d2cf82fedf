//! Configuration: the kavhttpd.xml-shaped file, parsed in two stages.
//!
//! `xml` reads the text into a tree of raw elements that mirrors the file (with positions);
//! [`validate`] turns that into the typed [`Settings`] below, collecting every error with its
//! position. No XML type leaves this module (`xml` is private). [`load`] is the one place that
//! touches the filesystem for a config: it reads the file (with a size cap), resolves relative paths
//! against the file's folder and reads the key file. [`edit`] changes Token elements in place for the
//! `token` commands. [`perms`] says who may read the config and key files; [`hygiene`] lists what
//! works but weakens the gateway, for start-up warnings and `check`.

pub mod edit;
pub mod engines;
pub mod hygiene;
pub mod limits;
pub mod load;
pub mod perms;
mod redis_url;
pub mod validate;
pub mod watch;
mod xml;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use compact_str::CompactString;
use http::HeaderName;

pub use engines::{EngineOptions, UpstreamSettings};
pub use limits::{LimitScope, Limits, Rate};
pub use load::{load, LoadError, Loaded};
pub use redis_url::RedisUrl;
pub use validate::{ConfigError, ConfigErrors};

/// Largest config file scangate reads. A million tokens is roughly 250 MiB of XML; the cap keeps a
/// hostile or runaway file from exhausting memory while leaving room for that.
pub const MAX_CONFIG_BYTES: u64 = 512 * 1024 * 1024;

/// Everything scangate takes from the file, validated and typed.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `ServerSettings`: the client-facing listener and its limits.
    pub server: ServerSettings,
    /// `ServerSettings/AuthSettings`: how clients authenticate.
    pub auth: AuthSettings,
    /// `GatewaySettings`: scangate's own block.
    pub gateway: GatewaySettings,
}

/// Where the client listener binds. Needs a restart to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// `http://ip:port` or `https://ip:port`.
    Tcp {
        /// Address to bind.
        addr: SocketAddr,
        /// `https://`: terminate TLS with `TlsCertificateFile`/`TlsCertificateKeyFile`.
        tls: bool,
    },
    /// A unix socket path (anything that does not start with a scheme).
    Unix(PathBuf),
}

/// `ServerSettings` children that scangate uses. Others are ignored so a kavhttpd.xml loads.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    /// `ConnectionString`. Mandatory. Restart to change.
    pub listen: ListenAddr,
    /// `MaxHTTPSessionsNum`: concurrent client connections. Default 1024 (0 = default). Restart to change.
    pub max_sessions: usize,
    /// `MaxTCPFileSize`: largest request, headers plus body, in bytes. Default 104857600 (0 = default).
    /// Reload applies it.
    pub max_request_bytes: u64,
    /// `SessionTimeout`: one request end to end. Default 10000 ms; 0 = none. Reload applies it.
    pub session_timeout: Option<Duration>,
    /// `TlsCertificateFile` + `TlsCertificateKeyFile`, resolved against the config folder.
    /// Mandatory for `https://`. Reload re-reads them.
    pub tls: Option<TlsFiles>,
    /// `TlsSessionTickets` (scangate extension): the TLS 1.3 session tickets sent after each
    /// handshake, for clients that save their own work by resuming. Default 0, which saves the
    /// gateway's: with ring a resumed handshake costs it as much as a full one, and every ticket
    /// adds to each handshake. Reload applies it to new handshakes.
    pub tls_session_tickets: usize,
    /// `KeepAliveSettings`.
    pub keep_alive: KeepAlive,
}

/// PEM files for the TLS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key: PKCS#8, RSA (PKCS#1) or EC (SEC1).
    pub key: PathBuf,
}

/// `KeepAliveSettings`, as Scan Engine defines them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepAlive {
    /// `Enabled`: 0 closes every connection after one response. Default 1.
    pub enabled: bool,
    /// `TimeoutMs`: idle time before a kept-alive connection closes. Default 5000; 0 = unlimited.
    pub idle_timeout: Option<Duration>,
    /// `MaxRequests`: requests per connection. Default 1000; 0 = unlimited.
    pub max_requests: Option<u32>,
}

impl Default for KeepAlive {
    fn default() -> Self {
        KeepAlive {
            enabled: true,
            idle_timeout: Some(Duration::from_millis(5000)),
            max_requests: Some(1000),
        }
    }
}

/// `AuthSettings`. Reload applies all of it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthSettings {
    /// `UseAccessToken`: 0 lets every request through (and scangate warns loudly). Default 0, as in
    /// Scan Engine.
    pub use_access_token: bool,
    /// `AuthRequestField`: header that carries the token. Default `Authorization`.
    pub request_field: HeaderName,
    /// `UseBearerAuthScheme`: expect `Bearer <token>`. Default 1.
    pub bearer: bool,
    /// `AccessTokens/Token`, in file order.
    pub tokens: Vec<TokenEntry>,
    /// `ApiConnections/Connection` (scangate extension), in file order.
    pub connections: Vec<ConnectionEntry>,
}

/// One `Connection` element: MDR's API connection. Its clients hold signed refresh and access
/// tokens that name its `ClientId`; the file holds no secret of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionEntry {
    /// `Name`: unique across Tokens and Connections; MDR's `author_name`. What logs, metrics and
    /// `X-Scangate-Token-Name` show.
    pub name: CompactString,
    /// `ClientId`: generated, URL-safe; the `sub` of its tokens and the `{client_id}` of the
    /// exchange URL.
    pub client_id: String,
    /// `Role`: mandatory for a connection (MDR asks for one).
    pub role: Role,
    /// `Tenants/Tenant`: the named tenants.
    pub tenants: Vec<String>,
    /// `Tenants/RootWithoutTenants`: MDR's "Root without tenants", assets of no tenant.
    pub root_tenant: bool,
    /// `Description`: up to 1000 characters.
    pub description: Option<String>,
    /// `Enabled`: a disabled connection's tokens are refused (401, and `invalid_grant` at the
    /// exchange) until it is enabled again.
    pub enabled: bool,
    /// `NotBefore` (unix seconds; 0 when absent): every token family begun before it is dead.
    /// `connection refresh` and `connection revoke` move it to now.
    pub not_before: u64,
    /// `Revoked`: set by `connection revoke`, cleared by `connection refresh`; for `list`.
    pub revoked: bool,
    /// `RateLimit`, or else `GatewaySettings/Limits`: `None` when nothing limits the connection.
    /// Reload applies it and keeps the live state.
    pub limits: Option<std::sync::Arc<Limits>>,
}

/// One `Token` element. Holds only the keyed digest, never a token. Its Debug leaves the digest
/// out all the same: with the key, a digest is what a client's token is checked against.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenEntry {
    /// `Name`: 1–40 Unicode characters, unique. Appears in logs, metrics and `X-Scangate-Token-Name`.
    /// Inline up to 24 bytes, so reading a million tokens costs no allocation per name.
    pub name: CompactString,
    /// `Value`, decoded: HMAC-SHA-512(key, token).
    pub digest: [u8; 64],
    /// `Description`: up to 1000 characters.
    pub description: Option<String>,
    /// `Enabled`: a disabled token is rejected with 401.
    pub enabled: bool,
    /// `Role` (scangate extension): what the token may call. `None` = full access.
    pub role: Option<Role>,
    /// `Tenants/Tenant` (scangate extension): forwarded to the backend as `X-Scangate-Tenants`.
    pub tenants: Vec<String>,
    /// `AllowScanFile` (scangate extension): 1 grants `scanfile`, 0 withholds it; absent, the role
    /// decides (see `auth::policy::Grant`). Reload applies it.
    pub allow_scan_file: Option<bool>,
    /// `RateLimit` (scangate extension), or else `GatewaySettings/Limits`: `None` when nothing
    /// limits the token. One `Arc` is shared by every token on the defaults. Reload applies it
    /// and keeps the live state (bucket, counts).
    pub limits: Option<std::sync::Arc<Limits>>,
}

impl std::fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEntry")
            .field("name", &self.name)
            .field("digest", &format_args!("<redacted>"))
            .field("description", &self.description)
            .field("enabled", &self.enabled)
            .field("role", &self.role)
            .field("tenants", &self.tenants)
            .field("limits", &self.limits)
            .finish()
    }
}

/// Token roles, after the MDR model (see `auth::policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything, including `update/*` and `clearstatistics`.
    Administrator,
    /// Scans plus statistics and update status; no update start or statistics reset.
    SeniorSecurityOfficer,
    /// Scans and read-only liveness calls only.
    SecurityOfficer,
}

impl Role {
    /// The name scangate writes in `Role` and shows in `token list`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Administrator => "Administrator",
            Role::SeniorSecurityOfficer => "SeniorSecurityOfficer",
            Role::SecurityOfficer => "SecurityOfficer",
        }
    }
}

/// `GatewaySettings`: scangate's own block. Unknown children are errors.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewaySettings {
    /// `Upstreams/Upstream`: at least one. Reload applies them; unchanged upstreams keep their pools.
    pub upstreams: Vec<UpstreamAddr>,
    /// `TokenKeyFile`: the HMAC key, resolved against the config folder. Default `scangate.key`.
    pub token_key_file: PathBuf,
    /// `AdminConnectionString`: health and metrics listener. Default 127.0.0.1:9090. Restart to change.
    pub admin: Option<SocketAddr>,
    /// `Realm`: in `WWW-Authenticate`. Default `scangate`.
    pub realm: String,
    /// `UpstreamCaFile`: extra CA bundle for `https://` upstreams, on top of the system roots.
    pub upstream_ca_file: Option<PathBuf>,
    /// `MaxConnectionsPerClient`: client connections one address may hold at once (an IPv6 client
    /// counts by its /64), so one host cannot take every MaxHTTPSessionsNum slot. Default a quarter
    /// of MaxHTTPSessionsNum (256 by default): room for a busy client host, while it takes four
    /// addresses to fill the gateway. `None` (0 in the file) = no cap, for a gateway behind a load
    /// balancer that hides the clients' addresses. Restart to change.
    pub max_connections_per_client: Option<usize>,
    /// `SendTimeoutMs`: how long a write to a client may make no progress before the connection is
    /// dropped, so a client that stops reading frees its slot and its upstream connection. Default
    /// 60 s (nginx's `send_timeout`); `None` (0 in the file) = none. Reload applies it to new
    /// connections.
    pub send_timeout: Option<Duration>,
    /// `UpstreamSettings` plus the `Upstream` attributes: session caps, the queue, health checks,
    /// retries and tenant routing (see [`UpstreamSettings`]). Reload applies it.
    pub upstream: UpstreamSettings,
    /// `ScanningPaths/ScanningPath`: where a `scanfile` object may lie, lexically normalised
    /// absolute paths. The engine applies its own list to remote clients only, and behind scangate
    /// every client is local to it, so scangate applies this one to every `scanfile`. `None` (the
    /// default): no gateway-side check; present but empty: every `scanfile` is refused. Reload
    /// applies it.
    pub scanning_paths: Option<Vec<PathBuf>>,
    /// `Sessions`: token lifetimes and the session store for API connections.
    pub sessions: SessionSettings,
    /// `Audit`: reading the engine's verdicts, the audit log and per-credential statistics.
    pub audit: AuditSettings,
    /// `Limits`: the limits of every Token and Connection without a `RateLimit` of its own.
    /// Default: none. Reload applies it.
    pub limits: Limits,
}

/// `GatewaySettings/Audit` (issue 18). Reload applies every field to requests that start after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// `Enabled`: read the verdict of every scan call as its answer streams past, count it per
    /// credential and write an audit line per detection. Default 1: it costs a few hundred
    /// nanoseconds per scan and is why scangate sits where it does; 0 makes scan answers pass
    /// untouched, like any other.
    pub enabled: bool,
    /// `LogNonScanned`: an audit line for NON_SCANNED verdicts too (password-protected or corrupted
    /// objects, which may hide what a scan would find). Default 0: on mail relays they are common.
    pub log_non_scanned: bool,
    /// `RedactObjects`: leave the object (path, URL host, name) out of audit lines and the console,
    /// where those are personal data or secret. Default 0.
    pub redact_objects: bool,
    /// `GatewayStatistics`: scangate answers `GET /api/v3.0/getstatistics` itself, with the
    /// engine's counters restricted to the caller's own scans, so one tenant does not see another's
    /// numbers. Default 0 (forwarded to the engine, as before). Needs `Enabled` 1. The counters
    /// count the scans made while it is on.
    pub gateway_statistics: bool,
    /// `RecentDetections`: how many detections the console keeps in memory (0 to 100000).
    /// Default 1000. The log is the durable record.
    pub recent_detections: usize,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            enabled: true,
            log_non_scanned: false,
            redact_objects: false,
            gateway_statistics: false,
            recent_detections: 1000,
        }
    }
}

/// `GatewaySettings/Sessions`. Reload applies the lifetimes to tokens issued after it; the store
/// is opened once, when the first Connection appears, and changing it needs a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSettings {
    /// `AccessTokenLifetimeSec`: default 3600 (MDR's 1 h).
    pub access_lifetime: std::time::Duration,
    /// `RefreshTokenLifetimeSec`: refresh tokens an exchange returns; default 604800 (7 days).
    pub refresh_lifetime: std::time::Duration,
    /// `ConsoleRefreshTokenLifetimeSec`: refresh tokens `connection add`/`refresh` print;
    /// default 86400 (24 h).
    pub console_refresh_lifetime: std::time::Duration,
    /// `StateStore`: where single use is recorded: `sqlite:PATH` (one node) or
    /// `redis://[USER:PASSWORD@]HOST[:PORT][/DB]` / `rediss://…` (replicas sharing it). Default
    /// `sqlite:scangate-state.db`. A restart applies a change.
    pub state_store: StateStore,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            access_lifetime: std::time::Duration::from_secs(3600),
            refresh_lifetime: std::time::Duration::from_secs(7 * 24 * 3600),
            console_refresh_lifetime: std::time::Duration::from_secs(24 * 3600),
            state_store: StateStore::Sqlite(PathBuf::from("scangate-state.db")),
        }
    }
}

/// Where the session state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateStore {
    /// A SQLite file (one node), resolved against the config's folder.
    Sqlite(PathBuf),
    /// A Redis server (6.2 or later) that several replicas share.
    Redis(RedisUrl),
}

impl std::fmt::Display for StateStore {
    /// `sqlite:PATH` or the Redis URL without its password: for logs and `/config`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateStore::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            StateStore::Redis(url) => url.fmt(f),
        }
    }
}

/// One backend scan service.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UpstreamAddr {
    /// `http://host:port` or `https://host:port`; kept as written (scheme + authority, no path).
    Http(http::Uri),
    /// A unix socket path.
    Unix(PathBuf),
}

impl std::fmt::Display for UpstreamAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamAddr::Http(uri) => write!(
                f,
                "{}://{}",
                uri.scheme_str().unwrap_or("http"),
                uri.authority().map(|a| a.as_str()).unwrap_or("")
            ),
            UpstreamAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}
