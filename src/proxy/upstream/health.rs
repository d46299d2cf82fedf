//! Whether an engine takes traffic: active checks (a GET of `HealthCheckPath` every
//! `HealthCheckIntervalMs`; down after [`FALL`] failures in a row, up after [`RISE`] passes,
//! HAProxy's defaults) and passive ejection (after [`CONSECUTIVE_FAILURES`] failed requests in a
//! row the engine is out for a period that grows with each ejection, as Envoy's outlier
//! detection does). The state lives in each [`Upstream`], so a reload that keeps an engine keeps it.
//!
//! The checker is the upstream set's own background task ([`run`]), started with the client
//! listener, so it runs whether or not the admin listener is on. Each round also closes idle
//! pooled connections past their idle timeout.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{header, Method, Request};
use tokio::task::JoinSet;

use super::Upstream;
use crate::proxy::body::{GuardedBody, UploadState};
use crate::state::Gateway;

/// Failed checks in a row that take an engine down (HAProxy `fall`).
pub const FALL: u32 = 3;
/// Passed checks in a row that bring it back (HAProxy `rise`).
pub const RISE: u32 = 2;
/// Failed requests in a row (connect failures, resets, 5xx) that eject an engine (Envoy's
/// `consecutive_5xx` default).
pub const CONSECUTIVE_FAILURES: u32 = 5;
/// The first ejection's length; the n-th lasts n times as long (Envoy's `base_ejection_time`
/// grows the same way).
pub const BASE_EJECTION: Duration = Duration::from_secs(10);
/// The longest ejection; an engine not ejected for this long starts again from the base.
pub const MAX_EJECTION: Duration = Duration::from_secs(300);
/// The longest a check may take (less when the interval is shorter).
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Milliseconds since the process's first look at the clock, on the coarse monotonic clock
/// ([`crate::clock`]): the atomics below hold these. Counting from the process's start keeps an
/// engine that has not answered yet "answered" within the first check interval, so the first
/// checks come one interval after start.
pub fn now_ms() -> u64 {
    // Never 0: 0 means "never" in the fields below.
    crate::clock::monotonic_ms().max(1)
}

/// One engine's health, shared by every worker and kept across reloads.
#[derive(Debug)]
pub struct Health {
    /// Active state. Engines start up, as HAProxy's do, so traffic flows before the first check.
    up: AtomicBool,
    fails: AtomicU32,
    passes: AtomicU32,
    /// The last check: 0 none yet, 1 passed, 2 failed.
    last_check: AtomicU8,
    /// Failed requests in a row (passive).
    failures: AtomicU32,
    /// Ejected until this [`now_ms`]; 0 = not ejected.
    ejected_until: AtomicU64,
    /// Ejections so far in this run of them, for the growing period.
    ejections: AtomicU32,
    /// When the last ejection started.
    last_ejection: AtomicU64,
    /// When a request last got a good answer: traffic that succeeds makes a check needless.
    last_success: AtomicU64,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            up: AtomicBool::new(true),
            fails: AtomicU32::new(0),
            passes: AtomicU32::new(0),
            last_check: AtomicU8::new(0),
            failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            last_ejection: AtomicU64::new(0),
            last_success: AtomicU64::new(0),
        }
    }
}

/// How an engine stands, for `/config` and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineState {
    /// Takes traffic.
    Up,
    /// Active checks failed; no traffic until they pass again.
    Down,
    /// Failed requests ejected it for a while.
    Ejected,
}

impl EngineState {
    /// The name `/config` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineState::Up => "up",
            EngineState::Down => "down",
            EngineState::Ejected => "ejected",
        }
    }
}

impl Health {
    /// Active checks say up.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Passive ejection holds it out at `now` (see [`now_ms`]).
    pub fn is_ejected(&self, now: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now
    }

    /// Whether it may take a request at `now`.
    pub fn available(&self, now: u64) -> bool {
        self.is_up() && !self.is_ejected(now)
    }

    /// Up, down or ejected at `now`.
    pub fn state(&self, now: u64) -> EngineState {
        match (self.is_up(), self.is_ejected(now)) {
            (false, _) => EngineState::Down,
            (true, true) => EngineState::Ejected,
            (true, false) => EngineState::Up,
        }
    }

    /// The last check's result; `None` before the first.
    pub fn last_check(&self) -> Option<bool> {
        match self.last_check.load(Ordering::Relaxed) {
            1 => Some(true),
            2 => Some(false),
            _ => None,
        }
    }

    /// Applies an active check's result. Returns the new active state when it changed. A pass
    /// also ends an ejection (Envoy's `successful_active_health_check_uneject_host`).
    pub fn checked(&self, pass: bool) -> Option<bool> {
        self.last_check
            .store(if pass { 1 } else { 2 }, Ordering::Relaxed);
        if pass {
            self.fails.store(0, Ordering::Relaxed);
            self.ejected_until.store(0, Ordering::Relaxed);
            let passes = self.passes.fetch_add(1, Ordering::Relaxed) + 1;
            if passes >= RISE && !self.up.swap(true, Ordering::Relaxed) {
                self.failures.store(0, Ordering::Relaxed);
                return Some(true);
            }
        } else {
            self.passes.store(0, Ordering::Relaxed);
            let fails = self.fails.fetch_add(1, Ordering::Relaxed) + 1;
            if fails >= FALL && self.up.swap(false, Ordering::Relaxed) {
                return Some(false);
            }
        }
        None
    }

    /// A request got a good answer (a response head below 500).
    pub fn succeeded(&self, now: u64) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if self.last_success.load(Ordering::Relaxed) != now {
            self.last_success.store(now, Ordering::Relaxed);
        }
    }

    /// A request failed on this engine; returns the failures in a row.
    pub fn failed(&self) -> u32 {
        self.failures.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Ejects it from `now`; returns for how long.
    pub fn eject(&self, now: u64) -> Duration {
        let max = MAX_EJECTION.as_millis() as u64;
        let last = self.last_ejection.swap(now, Ordering::Relaxed);
        let n = match last != 0 && now.saturating_sub(last) < max {
            true => self.ejections.fetch_add(1, Ordering::Relaxed) + 1,
            false => {
                self.ejections.store(1, Ordering::Relaxed);
                1
            }
        };
        let period = (BASE_EJECTION * n).min(MAX_EJECTION);
        self.ejected_until
            .store(now + period.as_millis() as u64, Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
        period
    }

    /// Whether requests proved the engine healthy since `since` (a check would add nothing).
    fn answered_since(&self, since: u64) -> bool {
        self.last_success.load(Ordering::Relaxed) >= since
    }
}

/// Checks every engine of the current snapshot every `HealthCheckIntervalMs`, and right after each
/// applied reload. Runs until aborted (the client listener stops it when it stops).
pub async fn run(gw: Arc<Gateway>) {
    loop {
        let interval = round(&gw).await;
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = gw.reloaded.notified() => {}
        }
    }
}

/// One round: prunes idle connections and checks each engine concurrently. Returns the interval
/// to the next round.
pub async fn round(gw: &Arc<Gateway>) -> Duration {
    let snap = gw.snapshot.load_full();
    let settings = &snap.settings.gateway.upstream;
    let Some(interval) = settings.health_check_interval else {
        for upstream in snap.upstreams.all() {
            upstream.prune_idle();
        }
        return Duration::from_secs(1);
    };
    let since = now_ms().saturating_sub(interval.as_millis() as u64);
    let timeout = interval.min(CHECK_TIMEOUT);
    let mut checks = JoinSet::new();
    for upstream in snap.upstreams.all() {
        upstream.prune_idle();
        // A request answered within the interval shows the engine up: no check is needed. This also
        // keeps checks off the busiest engines.
        let busy = upstream.health.available(now_ms()) && upstream.health.answered_since(since);
        if busy {
            continue;
        }
        let (upstream, snap, gw) = (Arc::clone(upstream), Arc::clone(&snap), Arc::clone(gw));
        checks.spawn(async move {
            // The check takes a session like any request, so an engine never sees more than
            // MaxSessions; a full engine is busy, not down, and is not checked this round.
            let Some(permit) = snap.upstreams.try_session(&upstream) else {
                return;
            };
            let path = &snap.settings.gateway.upstream.health_check_path;
            let pass = upstream.check(path, timeout, permit).await;
            gw.metrics.engines.check(&upstream.label, pass);
            match upstream.health.checked(pass) {
                Some(true) => {
                    tracing::info!(upstream = &*upstream.label, "scan engine up again");
                    snap.upstreams.wake();
                }
                Some(false) => tracing::warn!(
                    upstream = &*upstream.label,
                    path = path.as_str(),
                    "scan engine down: {FALL} health checks failed in a row"
                ),
                None => {}
            }
            // A reload may have removed it (and its series) during the check.
            let current = gw.snapshot.load();
            if current
                .upstreams
                .all()
                .iter()
                .any(|u| Arc::ptr_eq(u, &upstream))
            {
                gw.metrics
                    .upstream_up(&upstream.label, upstream.health.is_up());
            }
        });
    }
    while checks.join_next().await.is_some() {}
    interval
}

impl Upstream {
    /// One active check: a GET of `path`, passed by a 2xx or 3xx answer within `timeout`. It goes
    /// like a request (a pooled connection when there is one), under its own session.
    pub async fn check(&self, path: &str, timeout: Duration, permit: super::EnginePermit) -> bool {
        let check = async {
            let upload = Arc::new(UploadState::default());
            let req = Request::builder()
                .method(Method::GET)
                .uri(path)
                .header(header::HOST, self.host().clone())
                .header(header::USER_AGENT, "scangate-health-check")
                .body(GuardedBody::read(bytes::Bytes::new(), upload));
            let Ok(req) = req else { return false };
            let Ok(resp) = self.send(req, permit).await else {
                return false;
            };
            let pass = resp.status().is_success() || resp.status().is_redirection();
            // Read to the end, so the connection goes back to the pool.
            pass && http_body_util::BodyExt::collect(resp.into_body())
                .await
                .is_ok()
        };
        tokio::time::timeout(timeout, check).await.unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_after_three_failed_checks_up_after_two_passes() {
        let h = Health::default();
        assert!(h.is_up());
        assert_eq!(h.checked(false), None);
        assert_eq!(h.checked(false), None);
        // A pass in between starts the count again.
        assert_eq!(h.checked(true), None);
        assert_eq!(h.checked(false), None);
        assert_eq!(h.checked(false), None);
        assert_eq!(h.checked(false), Some(false));
        assert_eq!(h.state(now_ms()), EngineState::Down);
        assert_eq!(h.checked(false), None);
        assert_eq!(h.checked(true), None);
        assert_eq!(h.checked(true), Some(true));
        assert_eq!(h.last_check(), Some(true));
        assert_eq!(h.state(now_ms()), EngineState::Up);
    }

    #[test]
    fn ejections_grow_and_a_passing_check_ends_one() {
        let h = Health::default();
        let t = 1_000;
        assert_eq!(h.eject(t), BASE_EJECTION);
        assert!(h.is_ejected(t + 9_999) && !h.is_ejected(t + 10_000));
        assert_eq!(h.state(t + 1), EngineState::Ejected);
        assert_eq!(h.eject(t + 20_000), BASE_EJECTION * 2);
        assert_eq!(h.eject(t + 60_000), BASE_EJECTION * 3);
        // Long after the last one, the period starts again from the base.
        assert_eq!(h.eject(t + 60_000 + 300_000), BASE_EJECTION);
        for i in 0..40 {
            h.eject(t + 400_000 + i);
        }
        assert_eq!(h.eject(t + 400_100), MAX_EJECTION);
        assert_eq!(h.checked(true), None);
        assert!(!h.is_ejected(t + 400_101));
    }

    #[test]
    fn failures_count_in_a_row_and_a_success_resets_them() {
        let h = Health::default();
        assert_eq!(h.failed(), 1);
        assert_eq!(h.failed(), 2);
        h.succeeded(5);
        assert_eq!(h.failed(), 1);
        assert!(h.answered_since(5) && !h.answered_since(6));
    }
}
