//! Per-principal limits (scangate extension): the `RateLimit` element of a Token or a Connection
//! and the defaults in `GatewaySettings/Limits`.
//!
//! A principal's own `RateLimit` replaces the defaults as a whole (Kong's rule: a consumer's
//! plugin instance wins over the global one), so `<RateLimit/>` lifts every default for it.

use std::num::NonZeroU32;

/// Where quota counts are shared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum LimitScope {
    /// Each replica counts its own share (Envoy's local rate limit). Default.
    #[default]
    Replica,
    /// Quotas are counted once for the cluster in the Redis store (Kong's `redis` policy). Rates
    /// and concurrency stay per replica: a shared bucket would cost a Redis round trip per request.
    Cluster,
}

impl LimitScope {
    /// The value as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitScope::Replica => "replica",
            LimitScope::Cluster => "cluster",
        }
    }
}

/// `RequestsPerSecond` and `Burst`: a GCRA bucket (governor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    /// `RequestsPerSecond`: the sustained rate, 1–1,000,000.
    pub per_second: NonZeroU32,
    /// `Burst`: requests allowed at once from a full bucket; default `RequestsPerSecond`.
    pub burst: NonZeroU32,
}

/// One principal's limits, as validated. Every field is optional; `Limits::default()` limits
/// nothing. Reload applies every field; the live state (bucket, in-flight count, quota counts)
/// is kept, and the bucket is rebuilt only when `rate` itself changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Limits {
    /// `RequestsPerSecond` + `Burst`.
    pub rate: Option<Rate>,
    /// `MaxConcurrent`: requests in flight for the principal on this replica.
    pub max_concurrent: Option<NonZeroU32>,
    /// `DailyQuota`: requests per UTC day.
    pub daily_quota: Option<u64>,
    /// `MonthlyQuota`: requests per UTC calendar month.
    pub monthly_quota: Option<u64>,
    /// `DailyQuotaBytes`: uploaded (request body) bytes per UTC day.
    pub daily_quota_bytes: Option<u64>,
    /// `LimitScope`: `replica` (default) or `cluster` (quotas counted in Redis).
    pub scope: LimitScope,
}

impl Limits {
    /// True when nothing is limited: such a principal takes the lock-free path with no state.
    pub fn is_empty(&self) -> bool {
        self.rate.is_none() && self.max_concurrent.is_none() && self.has_no_quota()
    }

    /// True when no quota is set.
    pub fn has_no_quota(&self) -> bool {
        self.daily_quota.is_none()
            && self.monthly_quota.is_none()
            && self.daily_quota_bytes.is_none()
    }

    /// A one-line summary for `token list` and the console, e.g. `5/s burst 5, 2 concurrent,
    /// 1000/day`; `-` when nothing is limited.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(r) = self.rate {
            parts.push(format!("{}/s burst {}", r.per_second, r.burst));
        }
        if let Some(n) = self.max_concurrent {
            parts.push(format!("{n} concurrent"));
        }
        if let Some(n) = self.daily_quota {
            parts.push(format!("{n}/day"));
        }
        if let Some(n) = self.monthly_quota {
            parts.push(format!("{n}/month"));
        }
        if let Some(n) = self.daily_quota_bytes {
            parts.push(format!("{n} B/day"));
        }
        if parts.is_empty() {
            return "-".to_owned();
        }
        if self.scope == LimitScope::Cluster && !self.has_no_quota() {
            parts.push("cluster".to_owned());
        }
        parts.join(", ")
    }
}
