//! The request path, in request order: request filter (auth, policy, limits), upstream selection,
//! upstream request, response filter, logging. One straight-line function per phase.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::{header, HeaderValue, Request, Response, Uri, Version};
use hyper::body::Incoming;
use tokio::time::Instant;

use super::access::{Access, LoggedBody};
use super::audit::{self, ScanAudit};
use super::body::{GuardedBody, ProxyBody};
use super::error::GatewayError;
use super::exchange;
use super::forward;
use super::headers::{
    self, Forwarded, X_SCANGATE_ROOT_TENANT, X_SCANGATE_TENANTS, X_SCANGATE_TOKEN_NAME,
};
use super::limits::{limit, LimitHeaders};
use super::scanfile;
use crate::auth::header::{extract, AuthFailure};
use crate::auth::jwt::JwtError;
use crate::auth::memo::DigestMemo;
use crate::auth::policy::{self, Decision, Grant};
use crate::auth::principal::Principal;
use crate::auth::store::Lookup;
use crate::auth::token::MAX_TOKEN_BYTES;
use crate::config::validate::connections::now_secs;
use crate::state::{Gateway, Snapshot};

/// What the handler knows about the downstream connection.
#[derive(Debug, Clone)]
pub struct Downstream {
    /// The client's address; `None` on a unix socket.
    pub peer: Option<SocketAddr>,
    /// The client's IP as an `X-Forwarded-For` element, formatted once per connection.
    pub client_ip: Option<HeaderValue>,
    /// The digest of the last token this connection presented.
    pub memo: Arc<DigestMemo>,
    /// The listener terminates TLS.
    pub https: bool,
}

/// Handles one request. Never fails: every failure is a response from [`GatewayError`]. The
/// logging phase runs when the returned body ends (see [`super::access`]).
#[allow(clippy::manual_async_fn)] // an async block: see the body
pub fn handle(
    gw: Arc<Gateway>,
    downstream: Downstream,
    req: Request<Incoming>,
) -> impl Future<Output = Result<Response<LoggedBody>, std::convert::Infallible>> {
    // Async blocks, here and in `proxy`, not async fns: an async fn moves its arguments into
    // locals once more, and its state keeps both copies (rustc -Zprint-type-sizes).
    async move {
        let started = Instant::now();
        let snap = gw.snapshot.load_full();
        let mut access = Access::begin(
            Arc::clone(&gw),
            started,
            downstream.peer,
            req.method(),
            req.uri(),
        );
        let mut limit_headers = None;
        let proxied = proxy(
            &gw,
            &snap,
            &downstream,
            req,
            started,
            &mut access,
            &mut limit_headers,
        );
        let mut resp = match proxied.await {
            Ok(resp) => resp,
            Err(err) => {
                if let GatewayError::Unauthorized(failure) = err {
                    gw.metrics.auth_failure(failure);
                }
                access.reason = Some(err.reason());
                err.into_response(&snap.challenge)
            }
        };
        if let Some(fields) = limit_headers {
            fields.apply(resp.headers_mut());
        }
        Ok(access.respond(resp))
    }
}

#[allow(clippy::manual_async_fn)] // an async block: see the body
fn proxy<'a>(
    gw: &'a Arc<Gateway>,
    snap: &'a Snapshot,
    downstream: &'a Downstream,
    req: Request<Incoming>,
    started: Instant,
    access: &'a mut Access,
    limit_headers: &'a mut Option<LimitHeaders>,
) -> impl Future<Output = Result<Response<ProxyBody>, GatewayError>> + 'a {
    async move {
        // Request filter 0: framing. hyper has picked one framing already; a request that
        // declares two is ambiguous to some hop on the path (request smuggling), so it is never
        // forwarded.
        if let Some(err) = framing_error(&req) {
            return Err(err);
        }
        // Request filter 1: the token exchange of API connections is answered here, never upstream.
        if let Some(client_id) = exchange::route(gw, &req) {
            let client_id = client_id.to_owned();
            return exchange::serve(gw, snap, &client_id, req, access).await;
        }
        // Request filter 2: authenticate.
        access.principal = match authenticate(gw, snap, &downstream.memo, &req) {
            Ok(principal) => principal,
            Err(AuthFailure::Forbidden) => return Err(GatewayError::Forbidden),
            Err(failure) => return Err(GatewayError::Unauthorized(failure)),
        };
        // Request filter 3: what this principal (or, with UseAccessToken=0, anyone) may call.
        let grant = (access.principal.as_ref()).map_or(Grant::UNCHECKED, |p| {
            Grant::new(p.role(), p.allow_scan_file())
        });
        let scan_paths = snap.settings.gateway.scanning_paths.as_deref();
        let scan_check = match policy::decide(grant, req.uri().path(), scan_paths.is_some()) {
            Decision::Allow => None,
            Decision::CheckScanPath(api) => Some(api),
            Decision::Deny => return Err(GatewayError::Forbidden),
        };
        // Request filter 4: the principal's limits (quota, concurrency, rate), before any body is
        // read or any upstream work; its concurrency slot rides with the access record and is freed
        // when the response body ends.
        if let Some(p) = &access.principal {
            access.admission = limit(gw, p, limit_headers)?;
            p.stats().requests.fetch_add(1, Ordering::Relaxed);
        }
        // Request filter 5: with GatewayStatistics, a caller's getstatistics is its own scans only.
        let principal = access.principal.as_ref();
        if let Some(resp) = audit::statistics(snap, req.method(), req.uri().path(), principal) {
            access.reason = Some("statistics");
            return Ok(resp);
        }
        // Request filter 6: a declared body over the limit is refused before any upstream work.
        if let Some(len) = declared_length(&req) {
            if len > snap.max_request_bytes {
                return Err(GatewayError::PayloadTooLarge);
            }
        }
        let deadline = snap.session_timeout.map(|t| started + t);
        let upload = Arc::clone(&access.upload);
        let (mut parts, body) = req.into_parts();
        let has_body = !http_body::Body::is_end_stream(&body);
        // A scan call's answer is audited (read as it streams back); nothing else is.
        let scan_call = audit::scan_call(
            &snap.settings.gateway.audit,
            &parts.method,
            parts.uri.path(),
        );
        // Request filter 7: a scanfile object must lie under ScanningPaths. Only scanfile, and a
        // scan small enough to keep for a retry (RetryBufferBytes), are read whole; every other
        // body streams.
        let keep = forward::keeps_body(snap, &parts, declared_length_of(&parts.headers));
        let (body, kept, held) = match (scan_check, scan_paths) {
            (Some(api), Some(allowed)) => {
                let max = snap.max_request_bytes;
                let bytes = scanfile::check(&parts, body, api, allowed, max, deadline).await?;
                let kept = keep.then(|| bytes.clone());
                let held = scan_call.map(|_| bytes.clone());
                (GuardedBody::read(bytes, Arc::clone(&upload)), kept, held)
            }
            _ if keep => {
                let limit = snap.settings.gateway.upstream.retry_buffer_bytes;
                let bytes = forward::keep(body, limit, deadline).await?;
                let held = scan_call.map(|_| bytes.clone());
                (
                    GuardedBody::read(bytes.clone(), Arc::clone(&upload)),
                    Some(bytes),
                    held,
                )
            }
            _ => {
                let max = snap.max_request_bytes;
                let streamed = GuardedBody::new(body, max, deadline, Arc::clone(&upload));
                (streamed, None, None)
            }
        };
        // Only a v1 body can be v2 multipart.
        let v1 = scan_call.is_some_and(|c| c.wire() == crate::audit::Wire::Text);
        let multipart = v1 && headers::is_multipart(&parts.headers);

        // Upstream request: same method, path, query and body; gateway-owned headers (the engine's
        // `Host` is set once one is chosen).
        let host = parts.headers.get(header::HOST).cloned().or_else(|| {
            (parts.uri.authority()).and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        // Origin form: the connection already goes to the upstream.
        let uri = (parts.uri.path_and_query())
            .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
        {
            let h = &mut parts.headers;
            headers::strip_hop_by_hop(h);
            // Identity is scangate's to state: whatever the client claimed goes, then only what the
            // token has is set (no token, or no tenants: no header).
            headers::strip_client_claims(h, snap.auth_enabled.then_some(&snap.auth_field));
            let fwd = Forwarded {
                client_ip: downstream.client_ip.as_ref(),
                https: downstream.https,
            };
            headers::add_forwarded(h, fwd, host);
            if let Some(p) = &access.principal {
                h.insert(X_SCANGATE_TOKEN_NAME.clone(), p.name_header().clone());
                if let Some(tenants) = p.tenants_header() {
                    h.insert(X_SCANGATE_TENANTS.clone(), tenants.clone());
                }
                if p.root_tenant() {
                    h.insert(
                        X_SCANGATE_ROOT_TENANT.clone(),
                        HeaderValue::from_static("1"),
                    );
                }
            }
        }
        parts.uri = uri;
        parts.version = Version::HTTP_11;

        // Upstream selection and request: the principal's engines (its tenants' group, else the
        // default one), a session on the least loaded, one retry at most.
        let tenants = access.principal.as_ref().and_then(|p| p.tenants_header());
        let group = snap.upstreams.group_for(tenants);
        let resp = forward::forward(
            gw, snap, &group, parts, body, kept, deadline, has_body, access,
        )
        .await?;

        // Response filter: hop-by-hop headers never cross the gateway; a scan's verdict is read on
        // its way to the client.
        let (mut parts, body) = resp.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        let mut body = ProxyBody::upstream(body);
        if let Some(call) = scan_call {
            let engine = access.upstream.clone();
            let principal = access.principal.clone();
            let audit = ScanAudit::new(
                gw,
                snap,
                call,
                principal,
                downstream.peer,
                engine,
                held,
                multipart,
                upload,
            );
            body = audit.watch(parts.status, body);
        }
        Ok(Response::from_parts(parts, body))
    }
}

/// Runs the auth decision: `Ok(None)` when auth is off, `Ok(Some)` for a valid credential.
fn authenticate(
    gw: &Gateway,
    snap: &Snapshot,
    memo: &DigestMemo,
    req: &Request<Incoming>,
) -> Result<Option<Principal>, AuthFailure> {
    if !snap.auth_enabled {
        return Ok(None);
    }
    let key = snap.key.as_ref().ok_or(AuthFailure::Unknown)?;
    let token = extract(req.headers(), &snap.auth_field, snap.bearer)?;
    // An access token of an API connection: checked by signature, expiry and the live
    // connection view, never the session store. A static token shaped like a JWT (a user may
    // choose one) fails the signature and is looked up as a static token after all.
    // Every JWT starts with `eyJ` (`{"` in base64); the memo, then the whole shape test, decide
    // the rest.
    let jwt_failure = match (&snap.jwt, gw.connections.is_empty()) {
        (Some(keys), false) if token.starts_with(b"eyJ") => {
            let now = now_secs();
            match memo.access_claims(keys, snap.generation, token, now) {
                Some(Ok(claims)) => {
                    let record = gw.connections.admit(&claims, now)?;
                    return Ok(Some(Principal::Connection(record)));
                }
                Some(Err(JwtError::Expired)) => return Err(AuthFailure::Expired),
                // Any other failure, a refresh token sent as an access token included, may
                // still be a static token a user chose in the shape of a JWT.
                Some(Err(_)) => Some(AuthFailure::InvalidToken),
                None => None,
            }
        }
        _ => None,
    };
    if token.len() > MAX_TOKEN_BYTES {
        return Err(jwt_failure.unwrap_or(AuthFailure::Scheme));
    }
    match gw.tokens.lookup(&memo.digest(key, snap.generation, token)) {
        Lookup::Valid(record) => Ok(Some(Principal::Token(record))),
        Lookup::Disabled(record) => {
            // The one 401 a name can be put to: the console charts it on the token's row.
            record.stats.minutes.record(401, now_secs());
            Err(AuthFailure::Disabled)
        }
        Lookup::Unknown => Err(jwt_failure.unwrap_or(AuthFailure::Unknown)),
    }
}

fn framing_error(req: &Request<Incoming>) -> Option<GatewayError> {
    let h = req.headers();
    let lengths = h.get_all(header::CONTENT_LENGTH).iter().count();
    if lengths > 0 && h.contains_key(header::TRANSFER_ENCODING) {
        return Some(GatewayError::BadRequest(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    if lengths > 1 {
        return Some(GatewayError::BadRequest("duplicate Content-Length"));
    }
    None
}

fn declared_length(req: &Request<Incoming>) -> Option<u64> {
    declared_length_of(req.headers())
}

fn declared_length_of(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}
