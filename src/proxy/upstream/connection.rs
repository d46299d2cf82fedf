//! One HTTP/1.1 connection to an engine, driven by the task that is using it.
//!
//! hyper's client splits a connection in two: the sender, which hands requests over, and the
//! connection future, which does the reading and writing. The usual way is to spawn the future as
//! a task of its own; then every request crosses between two tasks four times (the request to the
//! connection's task, the response head back, each body chunk back, and the wake-ups that go with
//! them). Here the future stays with the sender, and whoever holds the connection drives it: the
//! request's task while it sends and reads the head, the response body while the client's
//! connection reads it (see [`super::UpstreamBody`]). An idle connection in the pool is driven by
//! nobody; a poll with a no-op waker when it is taken out (or pruned) notices that the engine closed
//! it.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;

use super::connect::OpenGuard;
use crate::proxy::body::GuardedBody;

/// The reading and writing half of a connection, boxed so both transports (TCP with or without
/// TLS, a unix socket) share one type.
type Driver = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

/// An open connection to an engine: its sender and its driver, and its place among the engine's
/// open connections, which it gives back when dropped.
pub(super) struct Connection {
    sender: http1::SendRequest<GuardedBody>,
    /// `None` once the connection has ended (closed by the engine, or failed).
    driver: Option<Driver>,
    _open: OpenGuard,
}

impl Connection {
    /// A connection that has done its handshake.
    pub(super) fn new<T>(
        sender: http1::SendRequest<GuardedBody>,
        conn: http1::Connection<T, GuardedBody>,
        open: OpenGuard,
    ) -> Connection
    where
        T: hyper::rt::Read + hyper::rt::Write + Send + Unpin + 'static,
    {
        Connection {
            sender,
            driver: Some(Box::pin(conn)),
            _open: open,
        }
    }

    /// Moves the connection's reading and writing along, waking `cx` when it can go further.
    pub(super) fn drive(&mut self, cx: &mut Context<'_>) {
        drive(&mut self.driver, cx);
    }

    /// Whether the connection has ended or cannot take a request now. It is driven once (without
    /// a waker) first, so an end of stream from the engine since the last use is seen.
    pub(super) fn is_closed(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        self.drive(&mut cx);
        self.driver.is_none() || self.sender.is_closed()
    }

    /// Whether the connection is known to have ended, without driving it.
    pub(super) fn has_ended(&self) -> bool {
        self.driver.is_none() || self.sender.is_closed()
    }

    /// Whether the connection is open and free for the next request: its last exchange is over.
    pub(super) fn is_reusable(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        self.drive(&mut cx);
        self.driver.is_some() && matches!(self.sender.poll_ready(&mut cx), Poll::Ready(Ok(())))
    }

    /// Sends `req` and waits for the response head, driving the connection meanwhile. A request
    /// that the connection refused before writing a byte of it comes back in the error.
    #[allow(clippy::manual_async_fn)] // an async block: see the body
    pub(super) fn send(
        &mut self,
        req: Request<GuardedBody>,
    ) -> impl Future<Output = Result<Response<Incoming>, Refused>> + '_ {
        // An async block, not an async fn: an async fn moves its arguments into locals once more,
        // and its state keeps both copies (rustc -Zprint-type-sizes).
        async move {
            let Connection { sender, driver, .. } = self;
            let ready = poll_fn(|cx| {
                drive(driver, cx);
                sender.poll_ready(cx)
            })
            .await;
            if let Err(error) = ready {
                return Err(Refused {
                    error,
                    unsent: Some(req),
                });
            }
            let mut sent = std::pin::pin!(sender.try_send_request(req));
            poll_fn(|cx| {
                drive(driver, cx);
                sent.as_mut().poll(cx)
            })
            .await
            .map_err(|mut e| Refused {
                unsent: e.take_message(),
                error: e.into_error(),
            })
        }
    }
}

/// A send that failed.
pub(super) struct Refused {
    /// What went wrong.
    pub(super) error: hyper::Error,
    /// The request, when no byte of it was written.
    pub(super) unsent: Option<Request<GuardedBody>>,
}

/// Polls `driver` once; drops it when the connection has ended, which fails any exchange still
/// waiting on it.
fn drive(driver: &mut Option<Driver>, cx: &mut Context<'_>) {
    if let Some(d) = driver {
        if let Poll::Ready(ended) = d.as_mut().poll(cx) {
            if let Err(e) = ended {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
            *driver = None;
        }
    }
}
