//! Bodies on the request path: the client's upload as sent upstream ([`GuardedBody`], which enforces
//! MaxTCPFileSize and the receive deadline while streaming), and what goes back to the client
//! ([`ProxyBody`]). Neither collects a whole body, except a `scanfile` body that the handler has
//! read (at most 64 KiB) to check its object against `ScanningPaths`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;

use super::audit::Sniff;
use super::upstream::UpstreamBody;
use tokio::time::{Instant, Sleep};

/// How an upload ended, shared between the body (which sees it) and the handler (which answers).
#[derive(Debug, Default)]
pub struct UploadState {
    outcome: AtomicU8,
    bytes: AtomicU64,
}

/// The upload outcomes the handler cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// Still arriving (or never started).
    Streaming,
    /// The client sent the whole body.
    Complete,
    /// The body grew past MaxTCPFileSize.
    TooLarge,
    /// SessionTimeout passed while it was still arriving.
    TimedOut,
    /// The client's connection failed mid-body.
    Aborted,
}

impl UploadState {
    /// What happened to the upload so far.
    pub fn outcome(&self) -> Upload {
        match self.outcome.load(Ordering::Acquire) {
            1 => Upload::Complete,
            2 => Upload::TooLarge,
            3 => Upload::TimedOut,
            4 => Upload::Aborted,
            _ => Upload::Streaming,
        }
    }

    /// Body bytes received from the client.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    fn set(&self, outcome: Upload) {
        let v = match outcome {
            Upload::Streaming => 0,
            Upload::Complete => 1,
            Upload::TooLarge => 2,
            Upload::TimedOut => 3,
            Upload::Aborted => 4,
        };
        self.outcome.store(v, Ordering::Release);
    }
}

/// Why an upload stopped early. The upstream sees the stream fail; the client gets the status.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// Past MaxTCPFileSize.
    #[error("request body exceeds the size limit")]
    TooLarge,
    /// Past SessionTimeout.
    #[error("request body not received within the session timeout")]
    TimedOut,
    /// The client's side failed.
    #[error("client body error: {0}")]
    Client(#[from] hyper::Error),
}

/// The client's body on its way upstream, capped in bytes and in time.
///
/// `Unpin` (the hyper client requires it): the deadline timer is boxed, and only created the first
/// time the client makes us wait, so a body that arrives in one go never allocates a timer.
pub struct GuardedBody {
    inner: Source,
    remaining: u64,
    state: Arc<UploadState>,
    deadline: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
}

/// Where the body's bytes come from.
enum Source {
    /// Streamed from the client as they arrive: the usual case.
    Client(Incoming),
    /// Read whole before forwarding (a `scanfile` body checked against `ScanningPaths`); `None`
    /// once sent.
    Read(Option<Bytes>),
}

impl GuardedBody {
    /// Wraps `inner`, allowing at most `max_bytes` and failing at `deadline` if still incomplete.
    pub fn new(
        inner: Incoming,
        max_bytes: u64,
        deadline: Option<Instant>,
        state: Arc<UploadState>,
    ) -> GuardedBody {
        GuardedBody {
            inner: Source::Client(inner),
            remaining: max_bytes,
            state,
            deadline,
            timer: None,
        }
    }

    /// A body the handler already read in full (and within the limits): the same bytes, sent as
    /// they are.
    pub fn read(bytes: Bytes, state: Arc<UploadState>) -> GuardedBody {
        GuardedBody {
            inner: Source::Read((!bytes.is_empty()).then_some(bytes)),
            remaining: u64::MAX,
            state,
            deadline: None,
            timer: None,
        }
    }
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = UploadError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UploadError>>> {
        let this = self.get_mut();
        let polled = match &mut this.inner {
            Source::Client(body) => Pin::new(body).poll_frame(cx),
            Source::Read(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        };
        let frame = match polled {
            Poll::Pending => {
                if let Some(deadline) = this.deadline {
                    let timer = this
                        .timer
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                    ready!(timer.as_mut().poll(cx));
                    this.state.set(Upload::TimedOut);
                    return Poll::Ready(Some(Err(UploadError::TimedOut)));
                }
                return Poll::Pending;
            }
            Poll::Ready(None) => {
                this.state.set(Upload::Complete);
                return Poll::Ready(None);
            }
            Poll::Ready(Some(Err(e))) => {
                this.state.set(Upload::Aborted);
                return Poll::Ready(Some(Err(e.into())));
            }
            Poll::Ready(Some(Ok(frame))) => frame,
        };
        if let Some(data) = frame.data_ref() {
            let len = data.len() as u64;
            if len > this.remaining {
                this.state.set(Upload::TooLarge);
                return Poll::Ready(Some(Err(UploadError::TooLarge)));
            }
            this.remaining -= len;
            this.state.bytes.fetch_add(len, Ordering::Relaxed);
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Source::Client(body) => body.is_end_stream(),
            Source::Read(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Source::Client(body) => body.size_hint(),
            Source::Read(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

pin_project! {
    /// A response body: the upstream's, streamed, or a small one scangate wrote itself.
    #[project = ProxyBodyProj]
    pub enum ProxyBody {
        /// Streamed from the upstream as it arrives.
        Upstream { #[pin] body: UpstreamBody },
        /// Streamed from the upstream as it arrives, its verdict read on the way (a scan call's
        /// answer, see [`super::audit`]). Each frame goes on as soon as it came.
        Sniffed { #[pin] body: UpstreamBody, sniff: Box<Sniff> },
        /// A gateway-made body (errors, admin pages).
        Full { data: Option<Bytes> },
    }
}

impl ProxyBody {
    /// A body with fixed content.
    pub fn full(data: impl Into<Bytes>) -> ProxyBody {
        let data: Bytes = data.into();
        ProxyBody::Full {
            data: (!data.is_empty()).then_some(data),
        }
    }

    /// The upstream's streamed body.
    pub fn upstream(body: UpstreamBody) -> ProxyBody {
        ProxyBody::Upstream { body }
    }

    /// This body with `sniff` reading the verdict from it. Only an upstream body has one; any other
    /// is returned as it is, and `sniff` records that no verdict was read.
    pub fn sniffed(self, sniff: Box<Sniff>) -> ProxyBody {
        match self {
            ProxyBody::Upstream { body } => ProxyBody::Sniffed { body, sniff },
            other => other,
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.project() {
            ProxyBodyProj::Upstream { body } => body.poll_frame(cx),
            ProxyBodyProj::Sniffed { mut body, sniff } => {
                let polled = body.as_mut().poll_frame(cx);
                match &polled {
                    Poll::Pending => {}
                    Poll::Ready(Some(Ok(frame))) => {
                        // hyper may drop a body that says it ended without polling it again.
                        let last = body.is_end_stream();
                        match frame.data_ref() {
                            Some(data) => sniff.frame(data, last),
                            None if last => sniff.end(true),
                            None => {}
                        }
                    }
                    Poll::Ready(Some(Err(_))) => sniff.end(false),
                    Poll::Ready(None) => sniff.end(true),
                }
                polled
            }
            ProxyBodyProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream { body } | ProxyBody::Sniffed { body, .. } => body.is_end_stream(),
            ProxyBody::Full { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream { body } | ProxyBody::Sniffed { body, .. } => body.size_hint(),
            ProxyBody::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}
