//! `GatewaySettings/MaxUpstreamConnections`: the upstream connections in use at once, per upstream.
//!
//! Without a bound, a request that finds no idle connection opens a new one, so one token with
//! 256 HTTP/2 streams on each of many connections opens that many sockets to the engine, and file
//! descriptors run out on both sides. A connection is in use from the moment a request reserves
//! it until its response body has been read to the end (it goes back to the pool) or dropped (it
//! is closed). Idle pooled connections do not count.
//!
//! A request that finds every connection busy waits up to [`UPSTREAM_QUEUE_WAIT`] (or its
//! SessionTimeout deadline, if sooner) for one, then gets 503 `{"error":"all scan engines busy"}`.
//!
//! tokio's `Semaphore` takes a mutex on every release, and one upstream is shared by every worker
//! thread; so the count is an atomic here, and only a request that has to wait touches the
//! [`Notify`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Longest wait for a busy upstream's connection, when SessionTimeout does not end it sooner:
/// long enough to ride out a burst while scans finish, short enough that a client told
/// `Retry-After: 1` is back before its own timeout.
pub const UPSTREAM_QUEUE_WAIT: Duration = Duration::from_secs(2);

/// One upstream's count of connections in use, shared by every worker thread and kept across
/// reloads with the upstream. The bound itself comes with each reservation, from the snapshot.
#[derive(Debug, Default)]
pub struct UpstreamLimit {
    in_use: AtomicUsize,
    /// Requests waiting in [`UpstreamLimit::reserve`]; releases notify only when there are some.
    waiting: AtomicUsize,
    freed: Notify,
}

/// Every connection to the upstream is in use, and none came free in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// A connection's place under the bound, held while the connection is in use; dropping it frees
/// the place.
#[derive(Debug)]
pub struct UpstreamPermit {
    limit: Arc<UpstreamLimit>,
}

impl UpstreamLimit {
    /// Connections in use now.
    pub fn in_use(&self) -> usize {
        self.in_use.load(Ordering::SeqCst)
    }

    /// Takes a place if fewer than `max` are in use.
    fn try_reserve(self: &Arc<Self>, max: usize) -> Option<UpstreamPermit> {
        self.in_use
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(UpstreamPermit {
            limit: Arc::clone(self),
        })
    }

    /// Takes a place under `max` (`None` = unbounded, counted all the same), waiting until
    /// `deadline` or [`UPSTREAM_QUEUE_WAIT`], whichever is sooner.
    pub async fn reserve(
        self: &Arc<Self>,
        max: Option<usize>,
        deadline: Option<Instant>,
    ) -> Result<UpstreamPermit, Busy> {
        let max = max.unwrap_or(usize::MAX);
        if let Some(permit) = self.try_reserve(max) {
            return Ok(permit);
        }
        // Boxed: the waiting state (a timer and a Notified) would otherwise grow every request's
        // future, though only a request that has to wait uses it.
        Box::pin(self.wait(max, deadline)).await
    }

    /// The slow path of [`UpstreamLimit::reserve`].
    async fn wait(
        self: &Arc<Self>,
        max: usize,
        deadline: Option<Instant>,
    ) -> Result<UpstreamPermit, Busy> {
        let mut until = Instant::now() + UPSTREAM_QUEUE_WAIT;
        if let Some(deadline) = deadline {
            until = until.min(deadline);
        }
        let _waiting = Waiting::enter(self);
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a release between the two is not missed.
            freed.as_mut().enable();
            if let Some(permit) = self.try_reserve(max) {
                return Ok(permit);
            }
            if tokio::time::timeout_at(until, freed).await.is_err() {
                return Err(Busy);
            }
        }
    }
}

impl Drop for UpstreamPermit {
    fn drop(&mut self) {
        let limit = &self.limit;
        limit.in_use.fetch_sub(1, Ordering::SeqCst);
        if limit.waiting.load(Ordering::SeqCst) > 0 {
            limit.freed.notify_one();
        }
    }
}

/// Counts one request in [`UpstreamLimit::waiting`] for as long as it waits (also when the
/// waiting future is dropped).
struct Waiting<'a>(&'a UpstreamLimit);

impl<'a> Waiting<'a> {
    fn enter(limit: &'a UpstreamLimit) -> Waiting<'a> {
        limit.waiting.fetch_add(1, Ordering::SeqCst);
        Waiting(limit)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn past_the_bound_a_request_waits_then_is_busy() {
        let limit = Arc::new(UpstreamLimit::default());
        let _a = limit.reserve(Some(2), None).await.unwrap();
        let _b = limit.reserve(Some(2), None).await.unwrap();
        let started = Instant::now();
        assert_eq!(limit.reserve(Some(2), None).await.unwrap_err(), Busy);
        assert_eq!(started.elapsed(), UPSTREAM_QUEUE_WAIT);
        assert_eq!(limit.in_use(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_ends_at_the_request_deadline_if_sooner() {
        let limit = Arc::new(UpstreamLimit::default());
        let _a = limit.reserve(Some(1), None).await.unwrap();
        let started = Instant::now();
        let deadline = started + Duration::from_millis(300);
        assert_eq!(
            limit.reserve(Some(1), Some(deadline)).await.unwrap_err(),
            Busy
        );
        assert_eq!(started.elapsed(), Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn a_released_connection_goes_to_a_waiting_request() {
        let limit = Arc::new(UpstreamLimit::default());
        let a = limit.reserve(Some(1), None).await.unwrap();
        let waiter = {
            let limit = Arc::clone(&limit);
            tokio::spawn(async move { limit.reserve(Some(1), None).await.map(|_| Instant::now()) })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let released = Instant::now();
        drop(a);
        assert_eq!(waiter.await.unwrap().unwrap(), released);
        assert_eq!(limit.in_use(), 0);
        assert_eq!(limit.waiting.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn unbounded_still_counts() {
        let limit = Arc::new(UpstreamLimit::default());
        let permits: Vec<_> = (0..5)
            .map(|_| limit.try_reserve(usize::MAX).unwrap())
            .collect();
        assert_eq!(limit.in_use(), 5);
        drop(permits);
        assert_eq!(limit.in_use(), 0);
        assert!(limit.reserve(None, None).await.is_ok());
    }
}
