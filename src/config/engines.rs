//! `GatewaySettings/UpstreamSettings` and the per-`Upstream` attributes: how scangate shares its
//! scan engines (session cap, queue, health checks, retries, tenant routing).

use std::time::Duration;

/// `MaxSessions` when absent: Scan Engine's own default `MaxHTTPSessionsNum`.
pub const DEFAULT_MAX_SESSIONS: usize = 10;
/// `QueueTimeoutMs` when absent.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_millis(5000);
/// `MaxQueue` when absent.
pub const DEFAULT_MAX_QUEUE: usize = 1024;
/// `HealthCheckPath` when absent: a cheap KAV call that every engine answers.
pub const DEFAULT_HEALTH_CHECK_PATH: &str = "/api/v3.0/basesdate";
/// `HealthCheckIntervalMs` when absent (HAProxy's `inter`).
pub const DEFAULT_HEALTH_CHECK_INTERVAL: Duration = Duration::from_millis(2000);
/// `RetryBufferBytes` when absent (Envoy's retry buffer is of this order).
pub const DEFAULT_RETRY_BUFFER_BYTES: u64 = 64 * 1024;

/// `GatewaySettings/UpstreamSettings`. Reload applies every field; engines that stay in the config
/// keep their health, their in-flight count and their place in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSettings {
    /// `MaxSessions`: requests in flight to one engine at once, pooled HTTP/1 connections included
    /// (a Scan Engine serves `MaxHTTPSessionsNum` = 10 by default and leaves the rest in its
    /// backlog). Default 10; `None` (0 in the file) = no cap. An `Upstream`'s `MaxSessions`
    /// attribute overrides it. The deprecated `MaxUpstreamConnections` sets it when it is absent.
    pub max_sessions: Option<usize>,
    /// `QueueTimeoutMs`: how long a request waits for a free session when every engine it may use
    /// is full, then 503 `all scan engines busy`. Default 5000; 0 = no waiting.
    pub queue_timeout: Duration,
    /// `MaxQueue`: requests that may wait at once; past it, 503 at once. Default 1024.
    pub max_queue: usize,
    /// `HealthCheckPath`: the GET each active check sends. Default `/api/v3.0/basesdate`.
    pub health_check_path: String,
    /// `HealthCheckIntervalMs`: time between active checks of each engine. Default 2000; `None`
    /// (0 in the file) = no active checks (passive ejection still applies).
    pub health_check_interval: Option<Duration>,
    /// `RetryBufferBytes`: a scan call whose body is at most this big is kept, so it can be sent to
    /// another engine if its engine fails before answering. Default 64 KiB; 0 = never.
    pub retry_buffer_bytes: u64,
    /// Per upstream, in the order of `GatewaySettings::upstreams`: its attributes.
    pub engines: Vec<EngineOptions>,
    /// `MaxUpstreamConnections` was in the file (deprecated; `check` and start-up warn).
    pub legacy_max_upstream_connections: bool,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        UpstreamSettings {
            max_sessions: Some(DEFAULT_MAX_SESSIONS),
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
            max_queue: DEFAULT_MAX_QUEUE,
            health_check_path: DEFAULT_HEALTH_CHECK_PATH.to_owned(),
            health_check_interval: Some(DEFAULT_HEALTH_CHECK_INTERVAL),
            retry_buffer_bytes: DEFAULT_RETRY_BUFFER_BYTES,
            engines: Vec::new(),
            legacy_max_upstream_connections: false,
        }
    }
}

impl UpstreamSettings {
    /// The options of upstream `i` (defaults when the list is shorter, as in hand-built settings).
    pub fn engine(&self, i: usize) -> EngineOptions {
        self.engines.get(i).cloned().unwrap_or_default()
    }
}

/// The attributes of one `<Upstream>`: `<Upstream MaxSessions="4" Weight="2" Tenants="acme">`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineOptions {
    /// `MaxSessions`: this engine's own session cap; `None` = `UpstreamSettings/MaxSessions`.
    pub max_sessions: Option<usize>,
    /// `Weight`, 1 to 256 (default 1): balancing compares in-flight requests divided by weight,
    /// so an engine of weight 2 carries twice the load of one of weight 1.
    pub weight: u32,
    /// `Tenants`, comma-separated: the engine serves only principals with one of these tenants.
    /// Empty = the default group, which serves everyone whose tenants have no engines of their own.
    pub tenants: Vec<String>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_sessions: None,
            weight: 1,
            tenants: Vec::new(),
        }
    }
}
