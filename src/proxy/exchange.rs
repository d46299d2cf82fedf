//! `POST /api/v1/{client_id}/session/confirm`: MDR's exchange of a refresh token for an access
//! token and the next refresh token. The gateway answers it itself; it never reaches an upstream.
//!
//! The body is `{"refresh_token": "…"}`, read whole but capped at [`MAX_BODY_BYTES`] and at the
//! request's SessionTimeout. Failures follow RFC 6749 §5.2 (see [`GatewayError::Exchange`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;

use super::access::Access;
use super::body::ProxyBody;
use super::error::{ExchangeRefusal, GatewayError};
use crate::auth::exchange::{self, ExchangeError, GrantFailure};
use crate::auth::principal::Principal;
use crate::config::validate::connections::now_secs;
use crate::state::{Gateway, Snapshot};

/// Largest exchange body: a refresh token is well under 1 KiB.
pub const MAX_BODY_BYTES: usize = 4096;
/// How long the body may take when SessionTimeout is 0 (unlimited).
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often, at most, an exchange also drops expired marks from the session store.
const PURGE_EVERY_SECS: u64 = 3600;

/// The client ID of an exchange URL, when the gateway has connections to exchange for.
pub fn route<'r>(gw: &Gateway, req: &'r Request<Incoming>) -> Option<&'r str> {
    if gw.connections.is_empty() {
        return None;
    }
    let client_id = req
        .uri()
        .path()
        .strip_prefix("/api/v1/")?
        .strip_suffix("/session/confirm")?;
    (!client_id.is_empty() && !client_id.contains('/')).then_some(client_id)
}

#[derive(Deserialize)]
struct Body {
    refresh_token: String,
}

/// Answers one exchange. Success is 200 with both tokens and `Cache-Control: no-store`.
pub async fn serve(
    gw: &Arc<Gateway>,
    snap: &Snapshot,
    client_id: &str,
    req: Request<Incoming>,
    access: &mut Access,
) -> Result<Response<ProxyBody>, GatewayError> {
    let refuse = |why| GatewayError::Exchange(why);
    if req.method() != Method::POST {
        return Err(refuse(ExchangeRefusal::MethodNotAllowed));
    }
    let (Some(keys), Some(store)) = (&snap.jwt, gw.sessions()) else {
        return Err(refuse(ExchangeRefusal::Unavailable));
    };
    let limit = snap.session_timeout.unwrap_or(BODY_TIMEOUT);
    let body = Limited::new(req.into_body(), MAX_BODY_BYTES);
    let bytes: Bytes = match tokio::time::timeout(limit, body.collect()).await {
        Err(_) => return Err(GatewayError::RequestTimeout),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            gw.metrics.exchange("too_large");
            return Err(refuse(ExchangeRefusal::TooLarge));
        }
        Ok(Err(_)) => return Err(GatewayError::BadRequest("client body aborted")),
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    let Ok(parsed) = serde_json::from_slice::<Body>(&bytes) else {
        gw.metrics.exchange("invalid_request");
        return Err(refuse(ExchangeRefusal::InvalidRequest));
    };
    let now = now_secs();
    purge_now_and_then(gw, now);
    let lifetimes = &snap.settings.gateway.sessions;
    let result = exchange::exchange(
        keys,
        &gw.connections,
        store.as_ref(),
        lifetimes,
        client_id,
        &parsed.refresh_token,
        now,
    )
    .await;
    match result {
        Ok((issued, record)) => {
            gw.metrics.exchange("ok");
            tracing::info!(connection = &*record.name, "refresh token exchanged");
            access.principal = Some(Principal::Connection(record));
            let body = serde_json::json!({
                "access_token": issued.access_token,
                "refresh_token": issued.refresh_token,
            });
            let mut resp = Response::new(ProxyBody::full(body.to_string()));
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            Ok(resp)
        }
        Err(ExchangeError::InvalidGrant(why)) => {
            gw.metrics.exchange(why.as_str());
            if why == GrantFailure::Reused {
                let name = gw.connections.get(client_id).map(|c| c.name.clone());
                gw.metrics.refresh_reused(name.as_deref().unwrap_or(""));
            }
            Err(refuse(ExchangeRefusal::InvalidGrant))
        }
        Err(ExchangeError::Unavailable(e)) => {
            gw.metrics.exchange("unavailable");
            tracing::error!(error = %e, "session store unavailable; exchange refused with 503");
            Err(refuse(ExchangeRefusal::Unavailable))
        }
    }
}

/// Drops expired single-use marks and dead families, at most once an hour, off the request path.
fn purge_now_and_then(gw: &Arc<Gateway>, now: u64) {
    let last = gw.last_purge.load(Ordering::Relaxed);
    if now < last + PURGE_EVERY_SECS
        || gw
            .last_purge
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    let gw = Arc::clone(gw);
    tokio::spawn(async move {
        gw.connections.purge_dead(now);
        if let Some(store) = gw.sessions() {
            match store.purge(now).await {
                Ok(rows) => tracing::debug!(rows, "session store purged"),
                Err(e) => tracing::warn!(error = %e, "session store purge failed"),
            }
        }
    });
}
