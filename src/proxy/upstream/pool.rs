//! Each upstream's idle HTTP/1.1 connections, one stack per worker thread, and the lease that
//! gives a connection back when its response body has been read to the end.

use std::cell::Cell;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::connection::Connection;
use super::EnginePermit;
use super::{POOL_IDLE_TIMEOUT, POOL_MAX_IDLE};

/// Idle-connection stacks per upstream: one per worker thread (modulo this), so a connection is
/// reused on the thread whose runtime drives it.
const POOL_SLOTS: usize = 64;

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Marks the current thread as worker `i`: the upstream connections it opens go back to its own
/// idle stack. Threads that never call it share stack 0.
pub fn set_worker(i: usize) {
    WORKER.with(|w| w.set(i));
}

/// An upstream's idle connections, per worker, most recently used last.
pub(super) struct Pool {
    slots: Box<[Mutex<VecDeque<Idle>>]>,
}

impl Default for Pool {
    fn default() -> Pool {
        Pool {
            slots: (0..POOL_SLOTS).map(|_| Mutex::default()).collect(),
        }
    }
}

struct Idle {
    conn: Connection,
    since: Instant,
}

impl Pool {
    /// The most recently used idle connection that is still open and not past the idle timeout.
    pub(super) fn checkout(&self) -> Option<Connection> {
        fresh(&mut self.mine(), Instant::now())
    }

    /// Like [`Pool::checkout`], from another worker's stack: its connection goes on being driven
    /// by that worker's runtime, and comes back to this worker's stack after use.
    pub(super) fn borrow_other(&self) -> Option<Connection> {
        let now = Instant::now();
        let me = WORKER.with(Cell::get) % POOL_SLOTS;
        let others = (self.slots.iter().enumerate()).filter(|(i, _)| *i != me);
        others
            .filter_map(|(_, slot)| fresh(&mut slot.lock().unwrap_or_else(|p| p.into_inner()), now))
            .next()
    }

    fn checkin(&self, mut conn: Connection) {
        // One whose exchange is not over (the engine answered before the whole upload was
        // written) is closed rather than kept: the next request would wait behind it.
        if !conn.is_reusable() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.mine();
        // The oldest idle connections are at the front: expire those first, by what is known
        // without driving them (`prune` drives the idle ones once a second, off the request path).
        while idle
            .front()
            .is_some_and(|c| c.conn.has_ended() || now.duration_since(c.since) >= POOL_IDLE_TIMEOUT)
        {
            idle.pop_front();
        }
        if idle.len() >= POOL_MAX_IDLE {
            idle.pop_front();
        }
        idle.push_back(Idle { conn, since: now });
    }

    pub(super) fn prune(&self, now: Instant) {
        for slot in &*self.slots {
            let mut idle = slot.lock().unwrap_or_else(|p| p.into_inner());
            idle.retain_mut(|c| {
                !c.conn.is_closed() && now.duration_since(c.since) < POOL_IDLE_TIMEOUT
            });
        }
    }

    /// This worker's idle stack.
    fn mine(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        let slot = &self.slots[WORKER.with(Cell::get) % POOL_SLOTS];
        slot.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The newest connection of `idle` that is open and not past the idle timeout; staler ones go.
/// It is not driven here: one the engine has closed since is refused on its first use, and
/// the request goes to the next (see `Upstream::send`).
fn fresh(idle: &mut VecDeque<Idle>, now: Instant) -> Option<Connection> {
    while let Some(c) = idle.pop_back() {
        if now.duration_since(c.since) < POOL_IDLE_TIMEOUT && !c.conn.has_ended() {
            return Some(c.conn);
        }
    }
    None
}

/// A connection on loan to one response: back to the pool when the body has been read to the end,
/// closed if the body is dropped or fails before that. Either way its place under
/// the engine's session (under MaxSessions) is freed with it.
struct Lease {
    conn: Connection,
    pool: Arc<Pool>,
    _permit: EnginePermit,
}

/// Wraps a response so its body returns `sender` to `pool` when read to the end.
pub(super) fn lease(
    resp: Response<Incoming>,
    conn: Connection,
    pool: Arc<Pool>,
    permit: EnginePermit,
) -> Response<UpstreamBody> {
    resp.map(|body| UpstreamBody {
        body,
        lease: Some(Lease {
            conn,
            pool,
            _permit: permit,
        }),
    })
}

/// An upstream response body. It returns its connection to the pool as soon as the last frame
/// has been read, before the client has even received it.
pub struct UpstreamBody {
    body: Incoming,
    lease: Option<Lease>,
}

impl UpstreamBody {
    fn release(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.pool.checkin(lease.conn);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        // The connection is driven here, by the task that reads its response (see
        // `connection`): this reads the engine's socket into the body.
        if let Some(lease) = &mut this.lease {
            lease.conn.drive(cx);
        }
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.release(),
            Poll::Ready(Some(Err(_))) => this.lease = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // An empty body (204, Content-Length: 0) is never polled; its connection is reusable too.
        if self.body.is_end_stream() {
            self.release();
        }
    }
}
