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
    /// Its name in `RateLimit-Policy` (`burst`, `concurrency`, `daily`, `daily-bytes` or
    /// `monthly`), which the refusal's `RateLimit` field names.
    pub policy: &'static str,
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
            cell.peek(limits, now)
                .map_err(|(policy, retry_after_secs)| Denied {
                    kind: LimitKind::Quota,
                    policy,
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
                    policy: "concurrency",
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
                    policy: "burst",
                    retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
                });
            }
        }
    }
    if let Some(cell) = &quota {
        // Decided again, with the count, under one lock: another request may have taken the
        // last one since the peek. (`permit` drops here and frees its slot.)
        remaining.quota = cell
            .take(limits, now)
            .map_err(|(policy, retry_after_secs)| Denied {
                kind: LimitKind::Quota,
                policy,
                retry_after_secs,
            })?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::store::{Lookup, TokenStore};
    use crate::config::TokenEntry;

    fn entry(name: &str, seed: u8, limits: Option<Limits>) -> TokenEntry {
        TokenEntry {
            name: name.into(),
            digest: [seed; 64],
            description: None,
            enabled: true,
            role: None,
            tenants: vec![],
            allow_scan_file: None,
            limits: limits.map(Arc::new),
        }
    }

    fn rate(per_second: u32, burst: u32) -> Limits {
        Limits {
            rate: Some(Rate {
                per_second: NonZeroU32::new(per_second).unwrap(),
                burst: NonZeroU32::new(burst).unwrap(),
            }),
            daily_quota: Some(1000),
            ..Limits::default()
        }
    }

    fn principal(store: &TokenStore, seed: u8) -> Principal {
        match store.lookup(&[seed; 64]) {
            Lookup::Valid(r) => Principal::Token(r),
            other => panic!("{other:?}"),
        }
    }

    fn admitted(store: &TokenStore, seed: u8, ledger: &QuotaLedger, n: usize) -> usize {
        let p = principal(store, seed);
        let limits = Arc::clone(p.limits().unwrap());
        (0..n)
            .filter(|_| check(&p, &limits, ledger, 1_800_000_000).is_ok())
            .count()
    }

    #[test]
    fn the_bucket_is_kept_unless_the_rate_changes_and_freed_with_its_principal() {
        let store = TokenStore::new();
        let ledger = QuotaLedger::default();
        store.apply(&[entry("a", 1, Some(rate(1, 3)))]);
        assert_eq!(admitted(&store, 1, &ledger, 10), 3);

        // A quota edit and a rotation keep the (empty) bucket...
        let mut edited = rate(1, 3);
        edited.daily_quota = Some(2000);
        store.apply(&[entry("a", 1, Some(edited.clone()))]);
        assert_eq!(admitted(&store, 1, &ledger, 10), 0);
        store.apply(&[entry("a", 2, Some(edited))]);
        assert_eq!(admitted(&store, 2, &ledger, 10), 0);
        // ...a new rate gets a new, full one.
        store.apply(&[entry("a", 2, Some(rate(1, 4)))]);
        assert_eq!(admitted(&store, 2, &ledger, 10), 4);
        assert_eq!(ledger.live().len(), 1);

        // Removed: its state goes with its record.
        store.apply(&[entry("b", 3, None)]);
        assert!(ledger.live().is_empty());
        assert!(principal(&store, 3).limits().is_none());
    }

    #[test]
    fn an_admission_says_what_is_left_of_the_bucket_and_the_slots() {
        let store = TokenStore::new();
        let ledger = QuotaLedger::default();
        let limits = Limits {
            max_concurrent: NonZeroU32::new(3),
            ..rate(2, 5)
        };
        store.apply(&[entry("a", 1, Some(limits.clone()))]);
        let p = principal(&store, 1);
        let now = 1_800_000_000;
        let first = check(&p, &limits, &ledger, now).unwrap();
        assert_eq!(first.remaining.burst, Some(4));
        assert_eq!(first.remaining.burst_reset_secs, 1, "1 cell at 2/s: 1 s");
        assert_eq!(first.remaining.concurrent, Some(2));
        let second = check(&p, &limits, &ledger, now).unwrap();
        let third = check(&p, &limits, &ledger, now).unwrap();
        assert_eq!(third.remaining.burst, Some(2));
        assert_eq!(third.remaining.burst_reset_secs, 2, "3 cells at 2/s: 2 s");
        assert_eq!(third.remaining.concurrent, Some(0));
        assert_eq!(third.remaining.quota.daily.map(|(left, _)| left), Some(997));
        drop((first, second, third));
    }

    #[test]
    fn refill_takes_whole_seconds_and_none_when_nothing_is_used() {
        let r = |per_second, burst| rate(per_second, burst).rate.unwrap();
        assert_eq!(refill_secs(r(5, 10), 0), 0);
        assert_eq!(refill_secs(r(5, 10), 1), 1);
        assert_eq!(refill_secs(r(5, 10), 5), 1);
        assert_eq!(refill_secs(r(5, 10), 6), 2);
        assert_eq!(refill_secs(r(2, 10), 5), 3);
    }

    #[test]
    fn a_refused_request_holds_no_concurrency_slot() {
        let store = TokenStore::new();
        let ledger = QuotaLedger::default();
        let limits = Limits {
            max_concurrent: NonZeroU32::new(1),
            ..rate(1, 1)
        };
        store.apply(&[entry("a", 1, Some(limits.clone()))]);
        let p = principal(&store, 1);
        let first = check(&p, &limits, &ledger, 1_800_000_000).unwrap();
        let refused = check(&p, &limits, &ledger, 1_800_000_000).unwrap_err();
        assert_eq!(refused.kind, LimitKind::Concurrency);
        assert_eq!(p.stats().limits.in_flight(), 1);
        drop(first);
        assert_eq!(p.stats().limits.in_flight(), 0);
        // Rate-refused: the slot it took is handed back.
        let refused = check(&p, &limits, &ledger, 1_800_000_000).unwrap_err();
        assert_eq!(
            (refused.kind, refused.retry_after_secs),
            (LimitKind::Rate, 1)
        );
        assert_eq!(p.stats().limits.in_flight(), 0);
    }
}
