//! The write deadline on client connections (`SendTimeoutMs`, nginx's `send_timeout`).
//!
//! hyper has no write timeout, and its header timer does not run while it writes. A client that
//! stops reading (pipelined requests it never collects, or one large response it never drains)
//! would hold its connection slot, and the upstream connection streaming to it, for ever. This
//! wrapper fails a write that has made no progress for the limit; hyper then drops the
//! connection, and the response body (with its upstream connection) goes with it.
//!
//! Progress is any write or flush that completes: a client that reads slowly but steadily is
//! served, as nginx serves it. The timer is only armed while a write waits, and allocated the
//! first time one does, so connections whose writes never block pay nothing for it.
//!
//! The wrapper also counts completed writes ([`Written`]), so the idle close in
//! [`super::conn`] can tell a connection still flushing its last response from a stuck one.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// How many writes to a connection have completed (each moved at least one byte).
#[derive(Debug, Default)]
pub struct Written(AtomicU64);

impl Written {
    /// Writes completed so far.
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Counts one write, for tests of what reads the count.
    #[cfg(test)]
    pub(crate) fn add_for_test(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// A client connection's IO, whose writes fail after `limit` without progress.
pub struct SendTimeout<S> {
    inner: S,
    limit: Option<Duration>,
    written: Arc<Written>,
    /// Allocated on the first write that has to wait.
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether `timer` runs for the current wait; cleared by every completed write.
    armed: bool,
}

impl<S> SendTimeout<S> {
    /// Wraps `inner`; `None` never times out.
    pub fn new(inner: S, limit: Option<Duration>) -> SendTimeout<S> {
        SendTimeout {
            inner,
            limit,
            written: Arc::default(),
            timer: None,
            armed: false,
        }
    }

    /// The count of this connection's completed writes.
    pub fn written(&self) -> Arc<Written> {
        Arc::clone(&self.written)
    }

    /// Called when the inner write is pending: starts the timer for this wait (if it is not
    /// running yet) and fails once it has run out.
    fn stalled(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let Some(limit) = self.limit else {
            return Poll::Pending;
        };
        let timer = match &mut self.timer {
            Some(timer) => {
                if !self.armed {
                    timer.as_mut().reset(Instant::now() + limit);
                }
                timer
            }
            None => self.timer.insert(Box::pin(tokio::time::sleep(limit))),
        };
        self.armed = true;
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "client stopped reading (SendTimeoutMs)",
            )),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Counts a write that moved bytes.
    fn count(&self, polled: &Poll<io::Result<usize>>) {
        if let Poll::Ready(Ok(1..)) = polled {
            self.written.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Passes a completed write through and disarms the timer; a pending one arms it.
    fn progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(done) => {
                self.armed = false;
                Poll::Ready(done)
            }
            Poll::Pending => self.stalled(cx).map(Err),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendTimeout<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SendTimeout<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.count(&polled);
        this.progress(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.count(&polled);
        this.progress(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.progress(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.progress(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn a_write_the_peer_never_drains_fails_after_the_limit() {
        // The peer's buffer holds 16 bytes and nobody reads it.
        let (ours, _theirs) = tokio::io::duplex(16);
        let mut io = SendTimeout::new(ours, Some(Duration::from_secs(5)));
        let started = Instant::now();
        let err = io.write_all(&[0; 64]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_but_steady_reader_is_served_to_the_end() {
        let (ours, mut theirs) = tokio::io::duplex(16);
        let reader = tokio::spawn(async move {
            let mut got = 0;
            let mut chunk = [0; 8];
            while got < 64 {
                // Each read comes 4 s after the last: under the limit, though the whole write
                // takes far longer than it.
                tokio::time::sleep(Duration::from_secs(4)).await;
                got += tokio::io::AsyncReadExt::read(&mut theirs, &mut chunk)
                    .await
                    .unwrap();
            }
        });
        let mut io = SendTimeout::new(ours, Some(Duration::from_secs(5)));
        io.write_all(&[0; 64]).await.unwrap();
        reader.await.unwrap();
        // The 16-byte pipe took the 64 bytes in pieces.
        assert!(io.written().count() >= 4);
    }

    #[tokio::test(start_paused = true)]
    async fn no_limit_waits_as_long_as_it_takes() {
        let (ours, _theirs) = tokio::io::duplex(16);
        let mut io = SendTimeout::new(ours, None);
        let write = tokio::time::timeout(Duration::from_secs(3600), io.write_all(&[0; 64]));
        assert!(write.await.is_err(), "the write should still be waiting");
    }
}
