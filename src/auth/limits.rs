//! A principal's live limit state: its GCRA bucket (governor), its in-flight count and its quota
//! counts. It hangs off the principal's [`TokenStats`](super::store::TokenStats), which a reload,
//! a rotation or an edit of the limits hands on by name, and which goes with a removed principal.
//!
//! Principals without limits never reach this module: [`check`] is only called for a principal
//! whose record carries [`Limits`], so the unlimited hot path stays one `Option` test.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwapOption;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use super::principal::Principal;
use super::quota::{QuotaCell, QuotaLedger, QuotaUse};
use crate::config::{Limits, Rate};

type Limiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

/// A bucket and the rate it was built for, so a reload that leaves the rate alone keeps it.
struct Bucket {
    rate: Rate,
    limiter: Limiter,
}

/// The live limit state of one principal. Empty until its first limited request.
#[derive(Default)]
pub struct LimitState {
    /// The GCRA bucket; rebuilt (full) only when `RequestsPerSecond` or `Burst` changes.
    bucket: ArcSwapOption<Bucket>,
    /// Requests admitted and not yet finished (their response body has not ended).
    in_flight: AtomicU32,
    /// The quota counts, registered with the gateway's ledger on first use.
    quota: OnceLock<Arc<QuotaCell>>,
}

impl std::fmt::Debug for LimitState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimitState")
            .field("in_flight", &self.in_flight.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl LimitState {
    /// Requests in flight now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The quota cell, if the principal has counted against a quota.
    pub fn quota(&self) -> Option<&Arc<QuotaCell>> {
        self.quota.get()
    }

    /// The quota cell of the principal `name`, registered with `ledger` on first use.
    pub fn quota_cell(&self, ledger: &QuotaLedger, name: &str, limits: &Limits) -> &Arc<QuotaCell> {
        self.quota
            .get_or_init(|| ledger.register(name, limits.scope))
    }

    /// The bucket for `rate`: the one in place when it was built for the same rate, else a new,
    /// full one. Two first requests at once may both build one; the last stored wins.
    fn bucket(&self, rate: Rate) -> Arc<Bucket> {
        if let Some(b) = self.bucket.load_full().filter(|b| b.rate == rate) {
            return b;
        }
        let quota = Quota::per_second(rate.per_second).allow_burst(rate.burst);
        let fresh = Arc::new(Bucket {
            rate,
            limiter: RateLimiter::direct(quota).with_middleware::<StateInformationMiddleware>(),
        });
        self.bucket.store(Some(Arc::clone(&fresh)));
        fresh
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// `RequestsPerSecond`/`Burst`.
    Rate,
    /// `MaxConcurrent`.
    Concurrency,
    /// `DailyQuota`, `MonthlyQuota` or `DailyQuotaBytes`.
    Quota,
}

impl LimitKind {
    /// Every kind, for metrics registered at zero.
    pub const ALL: [LimitKind; 3] = [LimitKind::Rate, LimitKind::Concurrency, LimitKind::Quota];

    /// The access log's `reason`.
    pub fn reason(self) -> &'static str {
        match self {
            LimitKind::Rate => "rate_limited",
            LimitKind::Concurrency => "concurrency_limited",
            LimitKind::Quota => "quota_exceeded",
        }
    }

    /// The `kind` label of `scangate_rate_limited_total`.
    pub fn label(self) -> &'static str {
        match self {
            LimitKind::Rate => "rate",
            LimitKind::Concurrency => "concurrency",
            LimitKind::Quota => "quota",
        }
    }
}

/// A refusal: which limit, and when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied {
    /// The limit that refused.
    pub kind: LimitKind,
    /// `Retry-After`, whole seconds, at least 1.
    pub retry_after_secs: u64,
}

/// What the limit phase saw, for the `RateLimit` header of the response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Remaining {
    /// Requests the bucket allows at once now.
    pub burst: Option<u32>,
    /// Seconds until the bucket is full again.
    pub burst_reset_secs: u64,
    /// Concurrent requests still allowed.
    pub concurrent: Option<u32>,
    /// Quota left, with the seconds until its window ends.
    pub quota: QuotaUse,
}

/// Held while a request of a principal with `MaxConcurrent` is in flight: dropping it (when the
/// response body ends, or the client goes away) frees the slot.
pub struct ConcurrencyPermit {
    principal: Principal,
}

impl std::fmt::Debug for ConcurrencyPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConcurrencyPermit({:?})", self.principal.name())
    }
}

impl Drop for ConcurrencyPermit {
    fn drop(&mut self) {
        (self.principal.stats().limits.in_flight).fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a limited principal is granted: the permit to hold while in flight (with `MaxConcurrent`),
/// the quota cell to charge the uploaded bytes to, and what is left, for the headers.
#[derive(Debug)]
pub struct Admission {
    /// The concurrency slot; `None` without `MaxConcurrent`.
    pub permit: Option<ConcurrencyPermit>,
    /// Where the request's uploaded bytes are counted when it ends; `None` without a quota.
    pub quota: Option<Arc<QuotaCell>>,
    /// What is left after this request.
    pub remaining: Remaining,
}

/// Decides a request of `principal` under `limits` at unix time `now`: quota, then concurrency,
/// then rate, so a request refused by one does not use up another (except the quota count, which
/// is only taken once every check has passed).
pub fn check(
    principal: &Principal,
    limits: &Limits,
    ledger: &QuotaLedger,
    now: u64,
) -> Result<Admission, Denied> {
    let state = &principal.stats().limits;
    let mut remaining = Remaining::default();
    let quota = match limits.has_no_quota() {
        true => None,
        false => {
            let cell = state.quota_cell(ledger, principal.name(), limits);
            cell.peek(limits, now).map_err(|retry_after_secs| Denied {
                kind: LimitKind::Quota,
                retry_after_secs,
            })?;
            Some(Arc::clone(cell))
        }
    };
    let permit = match limits.max_concurrent {
        None => None,
        Some(max) => {
            let before = state.in_flight.fetch_add(1, Ordering::AcqRel);
            let permit = ConcurrencyPermit {
                principal: principal.clone(),
            };
            if before >= max.get() {
                return Err(Denied {
                    kind: LimitKind::Concurrency,
                    retry_after_secs: 1,
                });
            }
            remaining.concurrent = Some(max.get() - before - 1);
            Some(permit)
        }
    };
    if let Some(rate) = limits.rate {
        let bucket = state.bucket(rate);
        match bucket.limiter.check() {
            Ok(snapshot) => {
                let left = snapshot.remaining_burst_capacity();
                remaining.burst = Some(left);
                remaining.burst_reset_secs = refill_secs(rate, rate.burst.get() - left);
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(bucket.limiter.clock().now());
                // `permit` drops here and frees its slot.
                return Err(Denied {
                    kind: LimitKind::Rate,
                    retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
                });
            }
        }
    }
    if let Some(cell) = &quota {
        remaining.quota = cell.take(limits, now);
    }
    Ok(Admission {
        permit,
        quota,
        remaining,
    })
}

/// Whole seconds for `used` cells to drip back at `rate` (at least 1 when any are used).
fn refill_secs(rate: Rate, used: u32) -> u64 {
    if used == 0 {
        return 0;
    }
    (u64::from(used)).div_ceil(u64::from(NonZeroU32::get(rate.per_second)))
}
