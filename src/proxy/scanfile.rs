//! The `scanfile` request filter: while `GatewaySettings/ScanningPaths` is set, a `scanfile` body
//! is read (capped), its object checked against the list, and the same bytes forwarded. Only
//! `scanfile` pays for this; every other body streams.

use std::path::PathBuf;

use bytes::Bytes;
use http::{request, Method};
use http_body::Body as _;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use tokio::time::Instant;

use super::error::GatewayError;
use crate::auth::policy::Api;
use crate::auth::scan_path::{self, MAX_SCANFILE_BODY_BYTES};

/// Reads `body` (at most [`MAX_SCANFILE_BODY_BYTES`] and `max_bytes`, before `deadline`) and
/// returns it when the object it names lies under `allowed`.
///
/// An empty OPTIONS passes: it names no object, and CORS preflights look like that.
pub async fn check(
    parts: &request::Parts,
    body: Incoming,
    api: Api,
    allowed: &[PathBuf],
    max_bytes: u64,
    deadline: Option<Instant>,
) -> Result<Bytes, GatewayError> {
    let bytes = read(body, MAX_SCANFILE_BODY_BYTES.min(max_bytes), deadline).await?;
    if bytes.is_empty() && parts.method == Method::OPTIONS {
        return Ok(bytes);
    }
    let multipart = super::headers::is_multipart(&parts.headers);
    match scan_path::body_allowed(allowed, api, &bytes, multipart) {
        true => Ok(bytes),
        false => Err(GatewayError::ScanPathRefused),
    }
}

/// The whole body, refused past `cap` bytes (at once when Content-Length says so) or `deadline`.
pub(super) async fn read(
    body: Incoming,
    cap: u64,
    deadline: Option<Instant>,
) -> Result<Bytes, GatewayError> {
    if body.size_hint().lower() > cap {
        return Err(GatewayError::PayloadTooLarge);
    }
    let limit = usize::try_from(cap).unwrap_or(usize::MAX);
    let collect = Limited::new(body, limit).collect();
    let collected = match deadline {
        Some(d) => tokio::time::timeout_at(d, collect)
            .await
            .map_err(|_| GatewayError::RequestTimeout)?,
        None => collect.await,
    };
    match collected {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(GatewayError::PayloadTooLarge),
        Err(_) => Err(GatewayError::BadRequest("client body aborted")),
    }
}
