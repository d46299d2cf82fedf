//! The logging phase: when a response body ends (or is dropped, when the client goes away), one
//! access-log line and the request's metrics. Done at the end rather than when the head is sent,
//! so the duration and `bytes_out` cover the whole body.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

use super::access_line::AccessLine;
use super::body::{ProxyBody, UploadState};
use crate::auth::limits::Admission;
use crate::auth::principal::Principal;
use crate::metrics::UpstreamErrorKind;
use crate::state::Gateway;

/// What the access line and the metrics need from one request, gathered along its path.
#[derive(Debug)]
pub struct Access {
    gw: Arc<Gateway>,
    started: Instant,
    client: Option<SocketAddr>,
    method: Method,
    /// A clone of the request URI: it shares the request's bytes, so no per-request copy.
    uri: Uri,
    /// The client's body as it streamed upstream; `bytes_in` comes from it.
    pub upload: Arc<UploadState>,
    /// Who made the request, once authenticated.
    pub principal: Option<Principal>,
    /// Why the gateway answered itself (`unknown`, `forbidden`, `upstream_timeout`…).
    pub reason: Option<&'static str>,
    /// The upstream chosen, once one was (the last one, after a retry).
    pub upstream: Option<Arc<str>>,
    /// How long the request waited in the queue for an engine session; `None` if it did not.
    pub queued: Option<std::time::Duration>,
    /// What the limit phase granted a limited principal: its concurrency slot, freed when this
    /// record goes (the body ended), and the quota its uploaded bytes count against.
    pub admission: Option<Admission>,
    status: u16,
    bytes_out: u64,
}

impl Access {
    /// Starts the record for a request that arrived at `started`.
    pub fn begin(
        gw: Arc<Gateway>,
        started: Instant,
        client: Option<SocketAddr>,
        method: &Method,
        uri: &Uri,
    ) -> Access {
        Access {
            gw,
            started,
            client,
            method: method.clone(),
            uri: uri.clone(),
            upload: Arc::new(UploadState::default()),
            principal: None,
            reason: None,
            upstream: None,
            queued: None,
            admission: None,
            status: 0,
            bytes_out: 0,
        }
    }

    /// Attaches the record to the response: it is written when the body ends.
    pub fn respond(mut self, resp: Response<ProxyBody>) -> Response<LoggedBody> {
        self.status = resp.status().as_u16();
        resp.map(|inner| LoggedBody {
            inner,
            access: Some(self),
        })
    }

    fn finish(self) {
        let elapsed = self.started.elapsed();
        let bytes_in = self.upload.bytes();
        let metrics = &self.gw.metrics;
        let meter = match &self.principal {
            Some(p) => p
                .stats()
                .meter
                .get_or_init(|| metrics.token_meter(p.name())),
            None => &metrics.anonymous,
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        metrics.minutes.record(self.status, now);
        if let Some(quota) = self.admission.as_ref().and_then(|a| a.quota.as_ref()) {
            quota.add_bytes(bytes_in, now);
        }
        if let Some(p) = &self.principal {
            p.stats().minutes.record(self.status, now);
            p.stats().last_used.store(now, Ordering::Relaxed);
        }
        meter.record(
            self.upstream.as_ref(),
            self.status,
            bytes_in,
            self.bytes_out,
        );
        metrics.duration.observe(elapsed);
        AccessLine {
            client: self.client,
            method: &self.method,
            path: self.uri.path(),
            status: self.status,
            duration_ms: elapsed.as_micros() as f64 / 1000.0,
            bytes_in,
            bytes_out: self.bytes_out,
            token: self.principal.as_ref().map(Principal::name),
            reason: self.reason,
            upstream: self.upstream.as_deref(),
            queued_ms: self.queued.map(|q| q.as_micros() as f64 / 1000.0),
        }
        .log();
    }
}

/// The response body as the client receives it: counts the bytes and writes the access record
/// when the last frame is out, or when hyper drops it early.
pub struct LoggedBody {
    inner: ProxyBody,
    access: Option<Access>,
}

impl LoggedBody {
    fn finish(&mut self) {
        if let Some(access) = self.access.take() {
            access.finish();
        }
    }
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Pending => {}
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(access), Some(data)) = (this.access.as_mut(), frame.data_ref()) {
                    access.bytes_out += data.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.finish();
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(access) = this.access.as_mut() {
                    if let Some(upstream) = &access.upstream {
                        access
                            .gw
                            .metrics
                            .upstream_error(upstream, UpstreamErrorKind::Body);
                    }
                    access.reason = Some("upstream_body");
                }
                this.finish();
            }
            Poll::Ready(None) => this.finish(),
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        self.finish();
    }
}
