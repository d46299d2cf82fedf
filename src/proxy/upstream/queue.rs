//! Sessions and the queue: an [`EnginePermit`] is one request's place under an engine's
//! `MaxSessions`; when every engine a request may use is full, it waits in one bounded FIFO
//! ([`Queue`]) shared by all groups, as HAProxy's backend queue with `maxconn` and `timeout queue`.
//!
//! A session that ends hands its engine to the first waiter that may use it ([`Queue::dispatch`]),
//! so waiters are served in order of arrival and no waiter is woken for nothing. A new request
//! skips the queue only while it is empty. A waiter that goes away (its client left, its future
//! was dropped) leaves the queue at once.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::health::now_ms;
use super::select::{Group, Pick};
use super::Upstream;

/// Why no session was had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No engine the request may use is up (or every other one, for a retry).
    NoEngine,
    /// Every engine it may use stayed full past `QueueTimeoutMs`, or the queue was full.
    Busy,
}

/// One request's session on an engine: held from upstream selection until the response body has
/// been read (or dropped), then given to the next waiter.
#[derive(Debug)]
pub struct EnginePermit {
    engine: Arc<Upstream>,
    /// Dropped inside [`Queue::dispatch`]: free the session but do not dispatch again.
    quiet: bool,
}

impl EnginePermit {
    /// A session already counted in `engine`'s in-flight requests.
    pub(super) fn new(engine: Arc<Upstream>) -> EnginePermit {
        EnginePermit {
            engine,
            quiet: false,
        }
    }

    /// The engine this session is on.
    pub fn engine(&self) -> &Arc<Upstream> {
        &self.engine
    }
}

impl Drop for EnginePermit {
    fn drop(&mut self) {
        self.engine.in_flight.fetch_sub(1, Ordering::SeqCst);
        let queue = &self.engine.queue;
        if !self.quiet && !queue.is_empty() {
            queue.dispatch();
        }
    }
}

/// A session and how long the request waited for it.
#[derive(Debug)]
pub struct Acquired {
    /// The session.
    pub permit: EnginePermit,
    /// Time spent in the queue; `None` when it was had at once.
    pub queued: Option<Duration>,
}

struct Waiter {
    id: u64,
    group: Arc<Group>,
    exclude: Option<Arc<Upstream>>,
    tx: oneshot::Sender<Result<EnginePermit, Refusal>>,
}

#[derive(Default)]
struct Waiters {
    list: VecDeque<Waiter>,
    next_id: u64,
}

/// The waiting requests, oldest first. Kept across reloads with the set, so a reload never drops
/// a waiter.
#[derive(Default)]
pub struct Queue {
    waiters: Mutex<Waiters>,
    /// `waiters.list.len()`, readable without the lock: a session that ends looks here first.
    len: AtomicUsize,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("len", &self.len()).finish()
    }
}

/// The queue's limits, from the snapshot the request started with.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// `QueueTimeoutMs`.
    pub timeout: Duration,
    /// `MaxQueue`.
    pub max: usize,
}

impl Queue {
    /// Requests waiting now.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::SeqCst)
    }

    /// Whether no request waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiters> {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A session on the least loaded engine of `group` (never `exclude`): at once when one is
    /// free and nobody waits, else after waiting in line until `limits.timeout` or `deadline`.
    pub async fn acquire(
        self: &Arc<Self>,
        group: &Arc<Group>,
        exclude: Option<&Arc<Upstream>>,
        limits: QueueLimits,
        deadline: Option<Instant>,
    ) -> Result<Acquired, Refusal> {
        let now = now_ms();
        if self.is_empty() {
            match group.try_pick(now, exclude) {
                Pick::Got(engine) => {
                    return Ok(Acquired {
                        permit: EnginePermit::new(engine),
                        queued: None,
                    })
                }
                Pick::NoEngine => return Err(Refusal::NoEngine),
                Pick::Full => {}
            }
        } else if !group.any_available(now, exclude) {
            return Err(Refusal::NoEngine);
        }
        if limits.timeout.is_zero() || limits.max == 0 {
            return Err(Refusal::Busy);
        }
        // Boxed: only a request that has to wait carries the waiting state.
        Box::pin(self.wait(group, exclude, limits, deadline)).await
    }

    async fn wait(
        self: &Arc<Self>,
        group: &Arc<Group>,
        exclude: Option<&Arc<Upstream>>,
        limits: QueueLimits,
        deadline: Option<Instant>,
    ) -> Result<Acquired, Refusal> {
        let started = Instant::now();
        let (tx, mut rx) = oneshot::channel();
        let id = {
            let mut w = self.lock();
            if w.list.len() >= limits.max {
                return Err(Refusal::Busy);
            }
            w.next_id += 1;
            let id = w.next_id;
            w.list.push_back(Waiter {
                id,
                group: Arc::clone(group),
                exclude: exclude.cloned(),
                tx,
            });
            self.len.store(w.list.len(), Ordering::SeqCst);
            id
        };
        // Declared after `rx`, so dropped before it: the waiter leaves the queue before a permit
        // that reached it late is dropped (which dispatches and so takes the lock).
        let _in_line = InLine { queue: self, id };
        // A session may have ended between the pick above and joining the line.
        self.dispatch();
        let mut until = started + limits.timeout;
        if let Some(d) = deadline {
            until = until.min(d);
        }
        let outcome = match tokio::time::timeout_at(until, &mut rx).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(Refusal::Busy),
            // A permit sent at the last moment is used rather than wasted.
            Err(_) => rx.try_recv().unwrap_or(Err(Refusal::Busy)),
        };
        outcome.map(|permit| Acquired {
            permit,
            queued: Some(started.elapsed()),
        })
    }

    /// Gives free sessions to waiters, oldest first; a waiter whose engines are all down is told so.
    /// Called when a session ends, when an engine comes back up, and when a waiter joins.
    pub fn dispatch(self: &Arc<Self>) {
        let now = now_ms();
        let mut w = self.lock();
        // Groups found full in this pass: their later waiters are skipped without a look.
        let mut full: Vec<*const Group> = Vec::new();
        let mut i = 0;
        while i < w.list.len() {
            let waiter = &w.list[i];
            if waiter.tx.is_closed() {
                w.list.remove(i);
                continue;
            }
            let group = Arc::as_ptr(&waiter.group);
            if waiter.exclude.is_none() && full.contains(&group) {
                i += 1;
                continue;
            }
            match waiter.group.try_pick(now, waiter.exclude.as_ref()) {
                Pick::Got(engine) => {
                    let waiter = w.list.remove(i).expect("index checked");
                    let permit = EnginePermit::new(engine);
                    if let Err(Ok(mut permit)) = waiter.tx.send(Ok(permit)) {
                        // Gone since the check: the session is free again for the next waiter.
                        permit.quiet = true;
                    }
                }
                Pick::NoEngine => {
                    let waiter = w.list.remove(i).expect("index checked");
                    let _ = waiter.tx.send(Err(Refusal::NoEngine));
                }
                Pick::Full => {
                    if waiter.exclude.is_none() {
                        full.push(group);
                    }
                    i += 1;
                }
            }
        }
        self.len.store(w.list.len(), Ordering::SeqCst);
    }
}

/// A waiter's place in line, given up when the waiting future ends or is dropped.
struct InLine<'a> {
    queue: &'a Queue,
    id: u64,
}

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        let mut w = self.queue.lock();
        if let Some(i) = w.list.iter().position(|x| x.id == self.id) {
            w.list.remove(i);
        }
        self.queue.len.store(w.list.len(), Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::upstream::test_engine;

    const LIMITS: QueueLimits = QueueLimits {
        timeout: Duration::from_secs(5),
        max: 2,
    };

    fn one_engine() -> (Arc<Queue>, Arc<Group>, Arc<Upstream>) {
        let e = test_engine(1, 1);
        let g = Arc::new(Group::new(vec![Arc::clone(&e)]));
        (Arc::clone(&e.queue), g, e)
    }

    #[tokio::test(start_paused = true)]
    async fn freed_sessions_go_to_waiters_in_arrival_order() {
        let (q, g, e) = one_engine();
        let first = q.acquire(&g, None, LIMITS, None).await.unwrap();
        assert_eq!(first.queued, None);
        let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel();
        for name in ["a", "b"] {
            let (q, g, tx) = (Arc::clone(&q), Arc::clone(&g), done_tx.clone());
            tokio::spawn(async move {
                let got = q.acquire(&g, None, LIMITS, None).await.unwrap();
                tx.send(name).unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
                drop(got);
            });
            // Let it join the line before the next one.
            tokio::task::yield_now().await;
        }
        assert_eq!(q.len(), 2);
        // Full queue (MaxQueue 2): refused at once.
        assert_eq!(
            q.acquire(&g, None, LIMITS, None).await.unwrap_err(),
            Refusal::Busy
        );
        drop(first);
        assert_eq!(done.recv().await, Some("a"));
        assert_eq!(done.recv().await, Some("b"));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!((q.len(), e.in_flight()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_timeout_a_waiter_is_busy_and_a_dropped_one_leaves_the_line() {
        let (q, g, e) = one_engine();
        let _held = q.acquire(&g, None, LIMITS, None).await.unwrap();
        let started = Instant::now();
        let short = QueueLimits {
            timeout: Duration::from_millis(300),
            max: 2,
        };
        assert_eq!(
            q.acquire(&g, None, short, None).await.unwrap_err(),
            Refusal::Busy
        );
        assert_eq!(started.elapsed(), Duration::from_millis(300));
        assert_eq!(q.len(), 0);
        // A request deadline sooner than the queue timeout ends the wait.
        let deadline = Some(Instant::now() + Duration::from_millis(100));
        assert_eq!(
            q.acquire(&g, None, LIMITS, deadline).await.unwrap_err(),
            Refusal::Busy
        );
        let waiter = {
            let (q, g) = (Arc::clone(&q), Arc::clone(&g));
            tokio::spawn(async move { q.acquire(&g, None, LIMITS, None).await.map(|_| ()) })
        };
        tokio::task::yield_now().await;
        assert_eq!(q.len(), 1);
        waiter.abort();
        let _ = waiter.await;
        assert_eq!(q.len(), 0);
        assert_eq!(e.in_flight(), 1);
    }

    #[tokio::test]
    async fn a_waiter_whose_engines_go_down_is_told_at_once() {
        let (q, g, e) = one_engine();
        let held = q.acquire(&g, None, LIMITS, None).await.unwrap();
        let waiter = {
            let (q, g) = (Arc::clone(&q), Arc::clone(&g));
            tokio::spawn(async move { q.acquire(&g, None, LIMITS, None).await.map(|_| ()) })
        };
        while q.is_empty() {
            tokio::task::yield_now().await;
        }
        for _ in 0..3 {
            e.health.checked(false);
        }
        q.dispatch();
        assert_eq!(waiter.await.unwrap(), Err(Refusal::NoEngine));
        drop(held);
        assert_eq!(
            q.acquire(&g, None, LIMITS, None).await.unwrap_err(),
            Refusal::NoEngine
        );
    }
}
