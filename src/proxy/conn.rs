//! Driving one client connection to its end: the idle deadline and the drain.
//!
//! A connection is idle while none of its requests is open: before the first request (TLS done,
//! the HTTP/1-or-2 sniff, the first head), between keep-alive requests, and on HTTP/2 while no
//! stream is open. PINGs and SETTINGS are not requests, so an h2 peer that answers pings is still
//! idle. When a connection has been idle for the idle timeout it is shut down gracefully (hyper
//! cancels the sniff, closes an idle HTTP/1 connection, sends GOAWAY on HTTP/2), and dropped if
//! it then goes [`IDLE_CLOSE_GRACE`] without finishing or writing anything. (A response body is
//! done before its last bytes reach a slow reader; such a connection keeps writing and is let
//! finish, under the write timeout.)
//!
//! hyper would time only part of this itself: its HTTP/1 header timer starts after the sniff (and
//! costs a timer per request, so it is off), and its HTTP/2 server has no idle timeout at all.
//! Counting open requests here covers every phase and both protocols with one timer per
//! connection: a head, whole or cut short, arrives while the connection is idle.
//!
//! A request is open from the moment hyper hands it to the service until its response body is
//! dropped (sent, failed, or abandoned by the client). Counting it costs two atomic operations
//! and, when the connection becomes idle, one clock read.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::sync::watch;
use tokio::time::Instant;

use super::send_timeout::Written;

/// How long an idle connection that was asked to close may go without finishing or writing
/// (an HTTP/2 peer acknowledging GOAWAY, an HTTP/1 client finishing a head) before it is dropped.
pub const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What one client connection is doing, shared by its requests and its idle watch.
#[derive(Debug)]
pub struct Activity {
    /// The connection's start; `idle_since_ms` counts from it.
    started: Instant,
    /// Requests handed to the service whose response body is not dropped yet.
    open: AtomicUsize,
    /// When `open` last dropped to 0, in ms after `started`.
    idle_since_ms: AtomicU64,
    /// Responses produced, for KeepAliveSettings/MaxRequests.
    responses: AtomicU32,
}

impl Activity {
    /// A connection starting now, idle until its first request.
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            started: Instant::now(),
            open: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            responses: AtomicU32::new(0),
        })
    }

    /// Opens a request; it stays open until the returned exchange is dropped.
    pub fn begin(self: &Arc<Self>) -> Exchange {
        self.open.fetch_add(1, Ordering::AcqRel);
        Exchange(Arc::clone(self))
    }

    /// When the connection's idle timeout runs out; `None` while a request is open.
    fn idle_deadline(&self, idle: Duration) -> Option<Instant> {
        if self.open.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        Some(self.started + since + idle)
    }
}

/// One open request. Move it into the response body with [`Tracked`]; dropping it closes the
/// request.
#[derive(Debug)]
pub struct Exchange(Arc<Activity>);

impl Exchange {
    /// Counts this request's response; returns how many the connection has produced, this one
    /// included.
    pub fn respond(&self) -> u32 {
        self.0.responses.fetch_add(1, Ordering::Relaxed) + 1
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        let activity = &self.0;
        if activity.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            let ms = u64::try_from(activity.started.elapsed().as_millis()).unwrap_or(u64::MAX);
            activity.idle_since_ms.store(ms, Ordering::Release);
        }
    }
}

pin_project! {
    /// A response body that keeps its request open until hyper drops it.
    pub struct Tracked<B> {
        #[pin]
        inner: B,
        exchange: Exchange,
    }
}

impl<B> Tracked<B> {
    /// `inner`, holding `exchange` open.
    pub fn new(inner: B, exchange: Exchange) -> Tracked<B> {
        Tracked { inner, exchange }
    }
}

impl<B: Body<Data = Bytes>> Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Polls `conn` to its end. `shutdown` starts its graceful shutdown: once when the drain begins
/// (`drain` changes or its sender goes away), or when it has been idle for `idle`. An idle
/// connection still open after that is dropped, which ends it with `Ok`, as soon as it has gone
/// [`IDLE_CLOSE_GRACE`] with no new write counted in `written`.
pub async fn drive<C, E>(
    conn: C,
    shutdown: impl Fn(Pin<&mut C>),
    activity: &Activity,
    written: &Written,
    idle: Duration,
    mut drain: watch::Receiver<()>,
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    tokio::pin!(conn);
    let timer = tokio::time::sleep_until(activity.started + idle);
    tokio::pin!(timer);
    let (mut shut, mut draining) = (false, false);
    // Set once the idle close has begun: the write count when the grace last started.
    let mut closing_idle: Option<u64> = None;
    loop {
        tokio::select! {
            biased;
            ended = conn.as_mut() => return ended,
            _ = drain.changed(), if !draining => {
                draining = true;
                if !shut {
                    shut = true;
                    shutdown(conn.as_mut());
                }
            }
            () = timer.as_mut() => {
                let now = Instant::now();
                if let Some(before) = closing_idle {
                    let writes = written.count();
                    if writes == before {
                        tracing::debug!("idle connection did not close within its grace; dropped");
                        return Ok(());
                    }
                    // Still flushing to the client: another grace.
                    closing_idle = Some(writes);
                    timer.as_mut().reset(now + IDLE_CLOSE_GRACE);
                    continue;
                }
                match activity.idle_deadline(idle) {
                    Some(at) if at <= now => {
                        tracing::debug!("connection idle past the idle timeout; closing");
                        if !shut {
                            shut = true;
                            shutdown(conn.as_mut());
                        }
                        closing_idle = Some(written.count());
                        timer.as_mut().reset(now + IDLE_CLOSE_GRACE);
                    }
                    Some(at) => timer.as_mut().reset(at),
                    // Busy: look again in a while. The deadline is recomputed from the moment it
                    // went idle, so this only sets how often a busy connection is looked at.
                    None => timer.as_mut().reset(now + idle),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// A connection that ends once shut down, if `cooperative`; else never.
    struct FakeConn {
        shut: Arc<AtomicBool>,
        cooperative: bool,
    }

    /// A write count no test moves, for connections that write nothing.
    fn no_writes() -> Arc<Written> {
        Arc::default()
    }

    impl Future for FakeConn {
        type Output = Result<(), ()>;
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
            match self.cooperative && self.shut.load(Ordering::SeqCst) {
                true => Poll::Ready(Ok(())),
                false => Poll::Pending,
            }
        }
    }

    /// Drives a fake connection in a task; returns its shut flag and the task.
    fn spawn(
        activity: &Arc<Activity>,
        cooperative: bool,
        written: Arc<Written>,
        drain: watch::Receiver<()>,
    ) -> (Arc<AtomicBool>, tokio::task::JoinHandle<Instant>) {
        let shut = Arc::new(AtomicBool::new(false));
        let conn = FakeConn {
            shut: Arc::clone(&shut),
            cooperative,
        };
        let activity = Arc::clone(activity);
        let task = tokio::spawn(async move {
            let shutdown = |c: Pin<&mut FakeConn>| c.shut.store(true, Ordering::SeqCst);
            let idle = Duration::from_secs(5);
            let _ = drive(conn, shutdown, &activity, &written, idle, drain).await;
            Instant::now()
        });
        (shut, task)
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_with_no_request_closes_at_the_idle_timeout() {
        let (_tx, rx) = watch::channel(());
        let activity = Activity::new();
        let (_, task) = spawn(&activity, true, no_writes(), rx);
        assert_eq!(
            task.await.unwrap() - activity.started,
            Duration::from_secs(5)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_request_holds_it_open_and_the_timeout_counts_from_its_end() {
        let (_tx, rx) = watch::channel(());
        let activity = Activity::new();
        let exchange = activity.begin();
        let (shut, task) = spawn(&activity, true, no_writes(), rx);
        tokio::time::sleep(Duration::from_secs(12)).await;
        assert!(!shut.load(Ordering::SeqCst));
        drop(Tracked::new(
            http_body_util::Empty::<Bytes>::new(),
            exchange,
        ));
        let ended = task.await.unwrap();
        assert_eq!(ended - activity.started, Duration::from_secs(17));
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_ignores_the_shutdown_is_dropped_after_the_grace() {
        let (_tx, rx) = watch::channel(());
        let activity = Activity::new();
        let (shut, task) = spawn(&activity, false, no_writes(), rx);
        let ended = task.await.unwrap();
        assert!(shut.load(Ordering::SeqCst));
        assert_eq!(
            ended - activity.started,
            Duration::from_secs(5) + IDLE_CLOSE_GRACE
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_still_writing_after_the_shutdown_gets_more_grace() {
        let (_tx, rx) = watch::channel(());
        let activity = Activity::new();
        let written = Arc::new(Written::default());
        let (_, task) = spawn(&activity, false, Arc::clone(&written), rx);
        // Writes every 600 ms until 8 s: the grace runs out 1 s after the last one counted.
        for _ in 0..13 {
            tokio::time::sleep(Duration::from_millis(600)).await;
            written.add_for_test();
        }
        let ended = task.await.unwrap() - activity.started;
        assert!(
            ended > Duration::from_millis(7800) && ended <= Duration::from_millis(9800),
            "dropped after {ended:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_drain_shuts_down_a_busy_connection_at_once() {
        let (tx, rx) = watch::channel(());
        let activity = Activity::new();
        let _exchange = activity.begin();
        let (shut, task) = spawn(&activity, true, no_writes(), rx);
        tokio::time::sleep(Duration::from_secs(1)).await;
        tx.send(()).unwrap();
        let ended = task.await.unwrap();
        assert!(shut.load(Ordering::SeqCst));
        assert_eq!(ended - activity.started, Duration::from_secs(1));
    }
}
