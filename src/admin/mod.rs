//! The admin listener (`AdminConnectionString`, default 127.0.0.1:9090). It is separate from the
//! client listener and never behind client auth, so it binds to loopback unless told otherwise.
//!
//! - `/healthz`: the process is alive (always 200).
//! - `/readyz`: 200 when a config is in force, at least one scan engine is up (active health
//!   checks, run by the upstream set itself: [`crate::proxy::upstream::health`]) and the gateway is
//!   not draining; 503 with a JSON reason otherwise.
//! - `/metrics`: the Prometheus registry (OpenMetrics text).
//! - `/console/`: the web console for tokens and connections, and its Engines page
//!   ([`console`]), behind its own sign-in with an Administrator token.
//! - `/config`: the generation, the last reload's result and error, the token names with their
//!   states, and each engine's state, sessions in flight and cap. Never a Value or the key: the gateway holds neither in a form it
//!   could show (the token store keeps digests, and this page does not print them). Off loopback it
//!   needs an Administrator token ([`guard`]).
//!
//! Every request must name an IP literal or `localhost` as its `Host` (against DNS rebinding), and
//! at most [`guard::MAX_ADMIN_CONNECTIONS`] connections are served at once.

pub mod console;
pub mod guard;

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::config::Role;
use crate::metrics::EngineGauges;
use crate::net::Listener;
use crate::proxy::body::ProxyBody;
use crate::proxy::error::GatewayError;
use crate::proxy::upstream::health::now_ms;
use crate::state::Gateway;

/// Slow admin clients are cut off after this; a scraper sends its head at once.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The content type Prometheus negotiates for the OpenMetrics text prometheus-client writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves the admin endpoints on `listener` until `shutdown` resolves. Run it past the client listener's drain, so `/readyz` can say
/// "draining" while connections finish.
pub async fn run(
    listener: Listener,
    gw: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let protected = guard::needs_credential(listener.local_addr());
    tracing::info!(
        listen = listener.describe(),
        config_needs_administrator_token = protected,
        "admin listening"
    );
    let slots = Arc::new(Semaphore::new(guard::MAX_ADMIN_CONNECTIONS));
    let console = Arc::new(console::Console::default());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept_retrying() => accepted,
            () = &mut shutdown => break,
        };
        // Past the cap the socket is dropped (closed) at once: nothing is owed to it.
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!("admin connection cap reached; connection closed");
            continue;
        };
        let gw = Arc::clone(&gw);
        let console = Arc::clone(&console);
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |req: Request<Incoming>| {
                let (gw, console) = (Arc::clone(&gw), Arc::clone(&console));
                async move {
                    let path = req.uri().path();
                    let resp = if guard::host_allowed(req.headers())
                        && (path == "/console" || path.starts_with("/console/"))
                    {
                        console::handle(&gw, &console, req, peer).await
                    } else {
                        route(&gw, &req, protected)
                    };
                    Ok::<_, Infallible>(resp)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "admin connection ended with an error");
            }
        });
    }
    Ok(())
}

/// Answers one admin request. `protected`: `/config` needs an Administrator token.
fn route(gw: &Gateway, req: &Request<Incoming>, protected: bool) -> Response<ProxyBody> {
    if !guard::host_allowed(req.headers()) {
        return json_response(
            StatusCode::MISDIRECTED_REQUEST,
            &json!({"error": "admin requests must name an IP address or localhost as Host"}),
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": "method not allowed"}),
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    match req.uri().path() {
        "/healthz" => json_response(StatusCode::OK, &json!({"status": "alive"})),
        "/readyz" => {
            let (status, body) = readiness(gw);
            json_response(status, &body)
        }
        "/metrics" => {
            engine_gauges(gw);
            let mut resp = Response::new(ProxyBody::full(gw.metrics.encode()));
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(OPENMETRICS));
            resp
        }
        "/config" => {
            if protected {
                let snap = gw.snapshot.load();
                let denied = match guard::administrator(&snap, &gw.tokens, req.headers()) {
                    Ok(()) => None,
                    Err(guard::Denied::Unauthorized(why)) => Some(GatewayError::Unauthorized(why)),
                    Err(guard::Denied::NotAdministrator) => Some(GatewayError::Forbidden),
                };
                if let Some(err) = denied {
                    return err.into_response(&snap.challenge);
                }
            }
            json_response(StatusCode::OK, &config_page(gw))
        }
        _ => json_response(StatusCode::NOT_FOUND, &json!({"error": "not found"})),
    }
}

/// The `/readyz` answer: 200 or 503, with the reason when not ready.
pub fn readiness(gw: &Gateway) -> (StatusCode, serde_json::Value) {
    let snap = gw.snapshot.load();
    let up = snap.upstreams.up_count();
    let reason = if gw.draining.load(Ordering::Relaxed) {
        Some("draining")
    } else if up == 0 {
        Some("no scan engine up")
    } else {
        None
    };
    let body = json!({
        "ready": reason.is_none(),
        "reason": reason,
        "generation": snap.generation,
        "upstreams_up": up,
        "upstreams": snap.upstreams.all().len(),
    });
    match reason {
        None => (StatusCode::OK, body),
        Some(_) => (StatusCode::SERVICE_UNAVAILABLE, body),
    }
}

/// Sets the engine gauges from the live state, when `/metrics` is read: the request path never
/// touches a gauge for them.
fn engine_gauges(gw: &Gateway) {
    let snap = gw.snapshot.load();
    let now = now_ms();
    for u in snap.upstreams.all() {
        let gauges = EngineGauges {
            up: u.health.is_up(),
            ejected: u.health.is_ejected(now),
            in_flight: u.in_flight(),
        };
        gw.metrics.upstream_up(&u.label, gauges.up);
        gw.metrics.engines.engine(&u.label, gauges);
    }
    gw.metrics.engines.queue_length(snap.upstreams.queue_len());
}

/// The `/config` page. Built from the token records, which hold names, states and roles; the
/// digest is deliberately left out.
pub fn config_page(gw: &Gateway) -> serde_json::Value {
    let snap = gw.snapshot.load();
    let last = gw.last_reload();
    let tokens: Vec<_> = gw
        .tokens
        .records()
        .iter()
        .map(|t| {
            json!({
                "name": &*t.name,
                "state": if t.enabled { "enabled" } else { "disabled" },
                "role": t.role().map(role_name),
            })
        })
        .collect();
    let now = now_ms();
    let upstreams: Vec<_> = snap
        .upstreams
        .all()
        .iter()
        .map(|u| {
            let max = u.max_sessions();
            json!({
                "upstream": &*u.label,
                "state": u.health.state(now).as_str(),
                "last_check": u.health.last_check().map(|pass| if pass { "pass" } else { "fail" }),
                "in_flight": u.in_flight(),
                "max_sessions": (max != usize::MAX).then_some(max),
                "weight": u.weight(),
            })
        })
        .collect();
    // The store as the log names it: a Redis URL without its password.
    let session_store = gw
        .sessions()
        .map(|s| json!({"store": s.describe(), "in_sync": s.in_sync()}));
    json!({
        "generation": snap.generation,
        "config_path": gw.config_path.display().to_string(),
        "last_reload": {
            "result": last.result.as_str(),
            "error": last.error,
            "at_unix_seconds": last.at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        },
        "use_access_token": snap.auth_enabled,
        "tokens": tokens,
        "upstreams": upstreams,
        "session_store": session_store,
        "queue_length": snap.upstreams.queue_len(),
    })
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Administrator => "Administrator",
        Role::SeniorSecurityOfficer => "SeniorSecurityOfficer",
        Role::SecurityOfficer => "SecurityOfficer",
    }
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(body.to_string()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
