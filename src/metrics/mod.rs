//! Prometheus metrics: one registry, and handles that the request path bumps without allocating or
//! taking a lock.
//!
//! Per-token series hang off the token's [`TokenStats`](crate::auth::store::TokenStats) as a
//! [`TokenMeter`], so a request reaches its counters through the record it already looked up. The
//! `token` label is the token's Name: its cardinality is bounded by the config, and a request
//! without a known token is counted under `token=""`, so no client can create a series.
//! prometheus-client does the text encoding; this module only chooses what to count.

mod engines;
mod histogram;
mod limits;
mod meter;
pub mod minutes;
mod sessions;
pub use limits::LimitMetrics;
pub use sessions::StoreHealth;

use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::auth::header::AuthFailure;
pub use engines::{EngineGauges, EngineMetrics, RetryReason};
pub use histogram::{LatencyHistogram, DURATION_BUCKETS};
pub use meter::TokenMeter;
use meter::{same_upstream, TokenFamilies};

/// `status_class` label values, indexed by the status's first digit minus one.
pub(crate) const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The `reason` of `scangate_auth_failures_total`, in [`AuthFailure`] order.
const AUTH_REASONS: [&str; 7] = [
    "missing",
    "scheme",
    "unknown",
    "disabled",
    "invalid_token",
    "expired",
    "revoked",
];

/// The `result` of `scangate_config_reload_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    /// A new generation is in force.
    Ok,
    /// The file or key was invalid; the last good config stays.
    Error,
    /// The file and key were byte-identical; nothing was done.
    Unchanged,
}

impl ReloadResult {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Ok => "ok",
            ReloadResult::Error => "error",
            ReloadResult::Unchanged => "unchanged",
        }
    }
}

/// The `kind` of `scangate_upstream_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// The connection could not be made (refused, unreachable, DNS).
    Connect,
    /// The connection broke or the upstream sent garbage before the response head.
    Request,
    /// No response head within SessionTimeout.
    Timeout,
    /// The response body broke off mid-stream.
    Body,
}

impl UpstreamErrorKind {
    const ALL: [UpstreamErrorKind; 4] = [
        UpstreamErrorKind::Connect,
        UpstreamErrorKind::Request,
        UpstreamErrorKind::Timeout,
        UpstreamErrorKind::Body,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamErrorKind::Connect => "connect",
            UpstreamErrorKind::Request => "request",
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::Body => "body",
        }
    }
}

/// A label value from the config (a token Name, an upstream address), shared rather than copied.
/// prometheus-client 0.23 writes label values verbatim, and a Name may hold `"` or `\`, so the
/// escaping the text format requires is done here.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct LabelText(pub(crate) Arc<str>);

impl EncodeLabelValue for LabelText {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        use std::fmt::Write as _;
        let mut rest = &*self.0;
        while let Some(i) = rest.find(['\\', '"', '\n']) {
            encoder.write_str(&rest[..i])?;
            encoder.write_str(match rest.as_bytes()[i] {
                b'\\' => "\\\\",
                b'"' => "\\\"",
                _ => "\\n",
            })?;
            rest = &rest[i + 1..];
        }
        encoder.write_str(rest)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub(crate) token: LabelText,
    pub(crate) status_class: &'static str,
    pub(crate) upstream: LabelText,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TokenLabels {
    pub(crate) token: LabelText,
}

/// `scangate_scan_results_total`: `result` is one of [`crate::audit::ScanResult`]'s fixed labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ScanLabels {
    pub(crate) token: LabelText,
    pub(crate) result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamErrorLabels {
    upstream: LabelText,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: LabelText,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabels {
    worker: u32,
}

/// One worker thread's share of the client traffic (`scangate_worker_connections_total`,
/// `scangate_worker_requests_total`). Each worker holds its own handles, so counting is one
/// uncontended atomic add.
#[derive(Clone, Debug, Default)]
pub struct WorkerMeter {
    /// Client connections this worker accepted and served.
    pub connections: Counter,
    /// Requests this worker's connections handed to the gateway.
    pub requests: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// Holds one unit of `scangate_connections_open`.
#[derive(Debug)]
pub struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The registry and every handle the gateway updates. One per [`Gateway`](crate::state::Gateway).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    families: TokenFamilies,
    /// `scangate_request_duration_seconds`: from the request head to the last response byte.
    pub duration: LatencyHistogram,
    auth_failures: [Counter; 7],
    upstream_errors: Family<UpstreamErrorLabels, Counter>,
    upstream_up: Family<UpstreamLabels, Gauge>,
    reloads: [Counter; 3],
    watch_events: Counter,
    generation: Gauge,
    tokens_enabled: Gauge,
    tokens_disabled: Gauge,
    /// `scangate_connections_open`: client connections being served now.
    connections_open: Gauge,
    worker_connections: Family<WorkerLabels, Counter>,
    worker_requests: Family<WorkerLabels, Counter>,
    /// Requests without a valid token (rejected before or at auth, or UseAccessToken = 0).
    pub anonymous: TokenMeter,
    /// Every finished request per minute over the last hour, for the console's gateway chart.
    pub minutes: minutes::MinuteSeries,
    sessions: sessions::SessionMetrics,
    /// The scan-engine pool: state, sessions, queue, checks, ejections, retries.
    pub engines: EngineMetrics,
    /// Per-principal limits: refusals, quota used, quota store health.
    pub limits: LimitMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every scangate series registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("scangate");
        let families = TokenFamilies {
            requests: Family::default(),
            request_bytes: Family::default(),
            response_bytes: Family::default(),
            scan_results: Family::default(),
            detections: Family::default(),
        };
        registry.register(
            "requests",
            "Requests answered, by token Name (empty when no valid token), status class and upstream (empty when none was chosen)",
            families.requests.clone(),
        );
        let duration = LatencyHistogram::new();
        registry.register_with_unit(
            "request_duration",
            "Time from the request head to the last response byte",
            Unit::Seconds,
            duration.clone(),
        );
        let auth: Family<ReasonLabels, Counter> = Family::default();
        registry.register(
            "auth_failures",
            "Requests refused with 401, by reason: missing, scheme, unknown, disabled, and for access tokens invalid_token, expired or revoked",
            auth.clone(),
        );
        let auth_failures =
            AUTH_REASONS.map(|reason| auth.get_or_create(&ReasonLabels { reason }).clone());
        let upstream_errors = Family::default();
        registry.register(
            "upstream_errors",
            "Failed upstream exchanges, by upstream and kind: connect, request, timeout or body",
            upstream_errors.clone(),
        );
        let upstream_up = Family::default();
        registry.register(
            "upstream_up",
            "1 while active health checks say the engine is up (down after 3 failed checks, up again after 2 passes)",
            upstream_up.clone(),
        );
        let reload: Family<ResultLabels, Counter> = Family::default();
        registry.register(
            "config_reload",
            "Config reloads, by result: ok, error or unchanged",
            reload.clone(),
        );
        let reloads = [
            ReloadResult::Ok,
            ReloadResult::Error,
            ReloadResult::Unchanged,
        ]
        .map(|r| {
            reload
                .get_or_create(&ResultLabels { result: r.as_str() })
                .clone()
        });
        let watch_events = Counter::default();
        registry.register(
            "config_watch_events",
            "Events the config folder watch received from the OS, before they are filtered by file name",
            watch_events.clone(),
        );
        let generation = Gauge::default();
        registry.register(
            "config_generation",
            "Generation of the config in force; starts at 1 and grows with each applied reload",
            generation.clone(),
        );
        let tokens: Family<StateLabels, Gauge> = Family::default();
        registry.register("tokens", "Tokens in the config, by state", tokens.clone());
        let tokens_enabled = tokens
            .get_or_create(&StateLabels { state: "enabled" })
            .clone();
        let tokens_disabled = tokens
            .get_or_create(&StateLabels { state: "disabled" })
            .clone();
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "Client connections being served",
            connections_open.clone(),
        );
        let worker_connections = Family::default();
        registry.register(
            "worker_connections",
            "Client connections accepted, by worker thread (0 to --threads minus 1)",
            worker_connections.clone(),
        );
        let worker_requests = Family::default();
        registry.register(
            "worker_requests",
            "Requests received, by worker thread (0 to --threads minus 1)",
            worker_requests.clone(),
        );
        registry.register(
            "request_body_bytes",
            "Request body bytes received from clients, by token Name",
            families.request_bytes.clone(),
        );
        registry.register(
            "response_body_bytes",
            "Response body bytes sent to clients, by token Name",
            families.response_bytes.clone(),
        );
        registry.register(
            "scan_results",
            "Scan answers read by the audit, by token Name (empty when no valid token) and result: clean, detect, disinfected, deleted, non_scanned, server_error, unknown (a result word the reference does not list), error (the engine refused the request) or unparsed (no verdict could be read)",
            families.scan_results.clone(),
        );
        registry.register(
            "detections",
            "Scans in which the engine found something (DETECT, DISINFECTED or DELETED), by token Name",
            families.detections.clone(),
        );
        registry.register(
            "log_writer_waits",
            "Times a thread waited to hand log lines over because stderr could not keep up (no line is dropped)",
            crate::logging::waits().clone(),
        );
        let sessions = sessions::SessionMetrics::register(&mut registry);
        let engines = EngineMetrics::register(&mut registry);
        let limits = LimitMetrics::register(&mut registry);
        Metrics {
            engines,
            limits,
            sessions,
            anonymous: TokenMeter::new("", &families),
            minutes: minutes::MinuteSeries::default(),
            registry,
            families,
            duration,
            auth_failures,
            upstream_errors,
            upstream_up,
            reloads,
            watch_events,
            generation,
            tokens_enabled,
            tokens_disabled,
            connections_open,
            worker_connections,
            worker_requests,
        }
    }

    /// Worker `i`'s counters, for that worker to hold.
    pub fn worker(&self, i: usize) -> WorkerMeter {
        let labels = WorkerLabels {
            worker: u32::try_from(i).unwrap_or(u32::MAX),
        };
        WorkerMeter {
            connections: self.worker_connections.get_or_create(&labels).clone(),
            requests: self.worker_requests.get_or_create(&labels).clone(),
        }
    }

    /// Counts an exchange at session/confirm by its result (`ok`, or why it was refused).
    pub fn exchange(&self, result: &'static str) {
        self.sessions.exchange(result);
    }

    /// The session store's health series, for whoever watches the store.
    pub fn session_store_health(&self) -> StoreHealth {
        self.sessions.store.clone()
    }

    /// Counts a refresh-token reuse of the connection `name`.
    pub fn refresh_reused(&self, name: &str) {
        self.sessions.reused(name);
    }

    /// The Prometheus text for `/metrics` (OpenMetrics 1.0).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Counts a client connection as open until the guard drops.
    /// Client connections being served now, by every worker.
    pub fn connections_open(&self) -> i64 {
        self.connections_open.get()
    }

    pub fn connection_opened(&self) -> OpenConnection {
        self.connections_open.inc();
        OpenConnection(self.connections_open.clone())
    }

    /// A meter for the token `name`, registering its byte series at 0.
    pub fn token_meter(&self, name: &str) -> TokenMeter {
        TokenMeter::new(name, &self.families)
    }

    /// Counts a 401. `Forbidden` is a 403 and counted only in `scangate_requests_total`.
    pub fn auth_failure(&self, failure: AuthFailure) {
        let i = match failure {
            AuthFailure::Missing => 0,
            AuthFailure::Scheme => 1,
            AuthFailure::Unknown => 2,
            AuthFailure::Disabled => 3,
            AuthFailure::InvalidToken => 4,
            AuthFailure::Expired => 5,
            AuthFailure::Revoked => 6,
            AuthFailure::Forbidden => return,
        };
        self.auth_failures[i].inc();
    }

    /// Counts a failed exchange with `upstream`. Off the happy path, so the family lookup is fine.
    pub fn upstream_error(&self, upstream: &Arc<str>, kind: UpstreamErrorKind) {
        let labels = UpstreamErrorLabels {
            upstream: LabelText(Arc::clone(upstream)),
            kind: kind.as_str(),
        };
        self.upstream_errors.get_or_create(&labels).inc();
    }

    /// Records the engine's active health state.
    pub fn upstream_up(&self, upstream: &Arc<str>, up: bool) {
        let labels = UpstreamLabels {
            upstream: LabelText(Arc::clone(upstream)),
        };
        self.upstream_up.get_or_create(&labels).set(i64::from(up));
    }

    /// Counts a reload attempt.
    pub fn reload(&self, result: ReloadResult) {
        let i = match result {
            ReloadResult::Ok => 0,
            ReloadResult::Error => 1,
            ReloadResult::Unchanged => 2,
        };
        self.reloads[i].inc();
    }

    /// `scangate_config_watch_events_total`, for the folder watch to count what the OS delivers.
    pub fn watch_events(&self) -> Counter {
        self.watch_events.clone()
    }

    /// Sets the gauges that describe the config in force.
    pub fn config_in_force(&self, generation: u64, enabled: usize, disabled: usize) {
        self.generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
        self.tokens_enabled.set(enabled as i64);
        self.tokens_disabled.set(disabled as i64);
    }

    /// Drops every series of a token whose name left the config.
    pub fn forget_token(&self, meter: &TokenMeter) {
        meter.forget_rows(|_| false);
        meter.forget_scans();
        let labels = TokenLabels {
            token: meter.token.clone(),
        };
        self.families.request_bytes.remove(&labels);
        self.families.response_bytes.remove(&labels);
        self.limits.forget(&meter.token);
    }

    /// Drops every series of an upstream that left the config, from `meters` and the upstream
    /// families.
    pub fn forget_upstream<'a>(
        &self,
        upstream: &Arc<str>,
        meters: impl IntoIterator<Item = &'a TokenMeter>,
    ) {
        let keep = |u: Option<&Arc<str>>| !same_upstream(u, Some(upstream));
        self.anonymous.forget_rows(keep);
        for meter in meters {
            meter.forget_rows(keep);
        }
        let label = LabelText(Arc::clone(upstream));
        for kind in UpstreamErrorKind::ALL {
            self.upstream_errors.remove(&UpstreamErrorLabels {
                upstream: label.clone(),
                kind: kind.as_str(),
            });
        }
        self.upstream_up.remove(&UpstreamLabels { upstream: label });
        self.engines.forget(upstream);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn token_requests_are_counted_by_class_and_upstream() {
        let m = Metrics::new();
        let meter = m.token_meter("mail");
        let up: Arc<str> = Arc::from("http://127.0.0.1:9999");
        for _ in 0..3 {
            meter.record(Some(&up), 200, 10, 20);
        }
        meter.record(Some(&Arc::from("http://127.0.0.1:9999")), 502, 0, 5);
        meter.record(None, 403, 0, 0);
        let text = m.encode();
        assert_eq!(
            line(
                &text,
                r#"scangate_requests_total{token="mail",status_class="2xx",upstream="http://127.0.0.1:9999"}"#
            ),
            Some(
                r#"scangate_requests_total{token="mail",status_class="2xx",upstream="http://127.0.0.1:9999"} 3"#
            )
        );
        assert!(text
            .contains(r#"{token="mail",status_class="5xx",upstream="http://127.0.0.1:9999"} 1"#));
        assert!(text.contains(r#"{token="mail",status_class="4xx",upstream=""} 1"#));
        assert!(text.contains(r#"scangate_request_body_bytes_total{token="mail"} 30"#));
        assert!(text.contains(r#"scangate_response_body_bytes_total{token="mail"} 65"#));
        assert!(
            !text.contains("3xx"),
            "classes that never happened are not exported"
        );
    }

    #[test]
    fn scan_results_are_counted_per_token_with_bounded_labels() {
        use crate::audit::ScanResult;
        let m = Metrics::new();
        let a = m.token_meter("a");
        let b = m.token_meter("b");
        a.scan_result(ScanResult::Detect);
        a.scan_result(ScanResult::Detect);
        a.scan_result(ScanResult::Unparsed);
        b.scan_result(ScanResult::Clean);
        let text = m.encode();
        assert!(text.contains(r#"scangate_scan_results_total{token="a",result="detect"} 2"#));
        assert!(text.contains(r#"scangate_scan_results_total{token="a",result="unparsed"} 1"#));
        assert!(text.contains(r#"scangate_scan_results_total{token="b",result="clean"} 1"#));
        assert!(text.contains(r#"scangate_detections_total{token="a"} 2"#));
        assert!(
            !text.contains(r#"scangate_detections_total{token="b"}"#),
            "{text}"
        );
        assert!(
            !text.contains(r#"result="clean"} 0"#),
            "only results that happened"
        );
        m.forget_token(&a);
        let text = m.encode();
        assert!(!text.contains(r#"token="a""#), "{text}");
        assert!(text.contains(r#"token="b""#));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        let meter = m.token_meter("a\"b\\c\nd");
        meter.record(None, 200, 0, 0);
        let text = m.encode();
        assert!(text.contains(r#"token="a\"b\\c\nd""#), "{text}");
    }

    #[test]
    fn forgetting_a_token_or_upstream_removes_its_series() {
        let m = Metrics::new();
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("http://a:1"), Arc::from("http://b:2"));
        let meter = m.token_meter("gone");
        meter.record(Some(&a), 200, 1, 1);
        meter.record(Some(&b), 200, 1, 1);
        m.upstream_error(&a, UpstreamErrorKind::Connect);
        m.forget_upstream(&a, [&meter]);
        let text = m.encode();
        assert!(!text.contains("http://a:1"), "{text}");
        assert!(text.contains(r#"upstream="http://b:2"} 1"#));
        m.forget_token(&meter);
        assert!(!m.encode().contains("gone"));
    }

    #[test]
    fn auth_failures_and_reloads_exist_at_zero() {
        let m = Metrics::new();
        m.auth_failure(AuthFailure::Unknown);
        m.auth_failure(AuthFailure::Forbidden);
        m.reload(ReloadResult::Error);
        let text = m.encode();
        assert!(text.contains(r#"scangate_auth_failures_total{reason="missing"} 0"#));
        assert!(text.contains(r#"scangate_auth_failures_total{reason="unknown"} 1"#));
        assert!(!text.contains("forbidden"));
        assert!(text.contains(r#"scangate_config_reload_total{result="error"} 1"#));
        assert!(text.contains(r#"scangate_config_reload_total{result="ok"} 0"#));
    }
}
