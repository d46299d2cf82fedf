//! Upstream selection and the upstream request: a session on the least loaded engine the
//! principal may use (queued when all are full), the send, and at most one retry on another
//! engine. Retries follow two rules only:
//! - a request that no engine connection took (no byte sent) goes to another engine, whatever its
//!   method;
//! - a KAV scan call (read-only) whose body was kept (at most `RetryBufferBytes`) goes to another
//!   engine when its engine failed before the response head.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, request, HeaderMap, Method, Request, Response, Uri, Version};
use hyper::body::Incoming;
use tokio::time::Instant;

use super::access::Access;
use super::body::{GuardedBody, Upload, UploadState};
use super::error::GatewayError;
use super::upstream::{Acquired, Failed, Group, Outcome, Refusal, Upstream, UpstreamBody};
use crate::auth::policy::{self, Operation};
use crate::metrics::{RetryReason, UpstreamErrorKind};
use crate::state::{Gateway, Snapshot};

/// Whether a request is a scan call small enough to keep for a retry: `POST` to `scanmemory`,
/// `scanfile` or `checkurl` with a declared length of at most `RetryBufferBytes`.
pub fn keeps_body(snap: &Snapshot, parts: &request::Parts, declared: Option<u64>) -> bool {
    let limit = snap.settings.gateway.upstream.retry_buffer_bytes;
    let scan = policy::route(parts.uri.path()).is_some_and(|r| {
        matches!(
            r.op,
            Operation::ScanMemory | Operation::ScanFile | Operation::CheckUrl
        )
    });
    limit > 0 && parts.method == Method::POST && scan && declared.is_some_and(|n| n <= limit)
}

/// What a retry of a kept scan needs besides the body.
struct Head {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

/// Selects an engine, sends, retries once as the module says. `kept` is the body when it was read
/// whole for a retry.
#[allow(clippy::too_many_arguments, clippy::manual_async_fn)] // an async block: see the body
pub fn forward<'a>(
    gw: &'a Arc<Gateway>,
    snap: &'a Snapshot,
    group: &'a Arc<Group>,
    parts: request::Parts,
    body: GuardedBody,
    kept: Option<Bytes>,
    deadline: Option<Instant>,
    has_body: bool,
    access: &'a mut Access,
) -> impl Future<Output = Result<Response<UpstreamBody>, GatewayError>> + 'a {
    // An async block, not an async fn: an async fn moves its arguments into locals once more, and
    // its state keeps both copies (rustc -Zprint-type-sizes).
    async move {
        let upload = Arc::clone(&access.upload);
        // A kept scan is retried on another engine of the group: with one engine there is none, so
        // its head is not copied (a HeaderMap clone is two allocations).
        let retryable = kept.is_some() && group.engines().len() > 1;
        let head = retryable.then(|| Head {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
        });
        let mut acquired = session(gw, snap, group, None, deadline).await?;
        access.queued = acquired.queued;
        let mut req = Request::from_parts(parts, body);
        let mut retried = false;
        loop {
            let engine = Arc::clone(acquired.permit.engine());
            access.upstream = Some(Arc::clone(&engine.label));
            req.headers_mut()
                .insert(header::HOST, engine.host().clone());
            // Boxed: the timeout below would otherwise move the whole send future by value.
            let sent = super::boxed(|| engine.send(req, acquired.permit));
            let result = match deadline {
                Some(d) => match tokio::time::timeout_at(d, sent).await {
                    Ok(r) => r,
                    Err(_) => {
                        let err = timeout_error(&upload, has_body);
                        if err == GatewayError::UpstreamTimeout {
                            gw.metrics
                                .upstream_error(&engine.label, UpstreamErrorKind::Timeout);
                            // A stuck engine never frees a session for an active check: its
                            // timeouts are what ejects it.
                            snap.upstreams.record(&engine, Outcome::Failed, &gw.metrics);
                        }
                        return Err(err);
                    }
                },
                None => sent.await,
            };
            let failed = match result {
                Ok(resp) => {
                    let outcome = match resp.status().is_server_error() {
                        true => Outcome::Failed,
                        false => Outcome::Answered,
                    };
                    snap.upstreams.record(&engine, outcome, &gw.metrics);
                    return Ok(resp);
                }
                Err(failed) => failed,
            };
            // Decided outside this future: what a failure leaves alive here is kept in the future's
            // state across the retry's await, and every request's future is that much larger.
            let scan = kept.as_ref().zip(head.as_ref());
            let (next, reason) = after_failure(gw, snap, &engine, &upload, failed, retried, scan)?;
            // No other engine to try, or none free in time: the first failure stands. Boxed: the
            // retry is the rare case, and its future would otherwise sit in every request's.
            acquired = Box::pin(session(gw, snap, group, Some(&engine), deadline))
                .await
                .map_err(|_| GatewayError::UpstreamFailed)?;
            gw.metrics.engines.retry(&engine.label, reason);
            tracing::info!(
                upstream = &*engine.label,
                to = &*acquired.permit.engine().label,
                "request retried on another engine"
            );
            if let Some(q) = acquired.queued {
                access.queued = Some(access.queued.unwrap_or_default() + q);
            }
            req = next;
            retried = true;
        }
    }
}

/// A send that failed on `engine`: counts it, and returns the request to retry on another engine
/// (the unsent request itself, or the kept scan rebuilt from `scan`, its body and head), or the
/// error that stands. Once `retried`, nothing is retried again.
fn after_failure(
    gw: &Gateway,
    snap: &Snapshot,
    engine: &Arc<Upstream>,
    upload: &UploadState,
    failed: Failed,
    retried: bool,
    scan: Option<(&Bytes, &Head)>,
) -> Result<(Request<GuardedBody>, RetryReason), GatewayError> {
    match upload.outcome() {
        Upload::TooLarge => return Err(GatewayError::PayloadTooLarge),
        Upload::TimedOut => return Err(GatewayError::RequestTimeout),
        Upload::Aborted => return Err(GatewayError::BadRequest("client body aborted")),
        Upload::Streaming | Upload::Complete => {}
    }
    let e = &failed.error;
    tracing::warn!(upstream = &*engine.label, error = %error_chain(e), "upstream request failed");
    let kind = match e.is_connect() {
        true => UpstreamErrorKind::Connect,
        false => UpstreamErrorKind::Request,
    };
    gw.metrics.upstream_error(&engine.label, kind);
    snap.upstreams.record(engine, Outcome::Failed, &gw.metrics);
    match (retried, failed.unsent, scan) {
        (true, _, _) => Err(GatewayError::UpstreamFailed),
        (false, Some(unsent), _) => Ok((unsent, RetryReason::Connect)),
        (false, None, Some((bytes, head))) => Ok((rebuild(head, bytes), RetryReason::Scan)),
        (false, None, None) => Err(GatewayError::UpstreamFailed),
    }
}

/// A session on an engine of `group` (not `exclude`), with the queue wait counted.
async fn session(
    gw: &Gateway,
    snap: &Snapshot,
    group: &Arc<Group>,
    exclude: Option<&Arc<Upstream>>,
    deadline: Option<Instant>,
) -> Result<Acquired, GatewayError> {
    let acquired = snap
        .upstreams
        .acquire(group, exclude, deadline)
        .await
        .map_err(|refusal| match refusal {
            Refusal::NoEngine => GatewayError::Unavailable,
            Refusal::Busy => GatewayError::EnginesBusy,
        })?;
    if let Some(waited) = acquired.queued {
        gw.metrics.engines.queue_wait.observe(waited);
    }
    Ok(acquired)
}

/// The kept scan, as it was sent the first time (its own upload record: the access log counts the
/// client's bytes once).
fn rebuild(head: &Head, bytes: &Bytes) -> Request<GuardedBody> {
    let mut req = Request::new(GuardedBody::read(
        bytes.clone(),
        Arc::new(UploadState::default()),
    ));
    *req.method_mut() = head.method.clone();
    *req.uri_mut() = head.uri.clone();
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = head.headers.clone();
    req
}

/// At the deadline: the client's fault if its upload was still arriving, else the upstream's.
pub fn timeout_error(upload: &UploadState, has_body: bool) -> GatewayError {
    match upload.outcome() {
        Upload::TimedOut => GatewayError::RequestTimeout,
        Upload::Streaming if has_body => GatewayError::RequestTimeout,
        Upload::TooLarge => GatewayError::PayloadTooLarge,
        _ => GatewayError::UpstreamTimeout,
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Reads a scan body whole for a retry (its declared length is at most `RetryBufferBytes`).
pub async fn keep(
    body: Incoming,
    cap: u64,
    deadline: Option<Instant>,
) -> Result<Bytes, GatewayError> {
    super::scanfile::read(body, cap, deadline).await
}
