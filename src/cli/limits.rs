//! The limit flags `token add` and `connection add` share; they write a `RateLimit` element.

use crate::config::{LimitScope, Limits, Rate};
use std::num::NonZeroU32;

/// `--rate-limit`, `--burst`, `--max-concurrent`, the quotas and `--limit-scope`. None given: no
/// `RateLimit` is written and the defaults (`GatewaySettings/Limits`) apply.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct LimitArgs {
    /// RequestsPerSecond: sustained requests per second, 1 to 1000000.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_limit: Option<u32>,
    /// Burst: requests at once from a full bucket (default: the rate); needs --rate-limit.
    #[arg(long, value_name = "N", requires = "rate_limit",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub burst: Option<u32>,
    /// MaxConcurrent: requests in flight at once on one replica.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent: Option<u32>,
    /// DailyQuota: requests per UTC day.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000_000_000))]
    pub daily_quota: Option<u64>,
    /// MonthlyQuota: requests per UTC calendar month.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000_000_000))]
    pub monthly_quota: Option<u64>,
    /// DailyQuotaBytes: uploaded bytes per UTC day.
    #[arg(long, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000_000_000_000))]
    pub daily_quota_bytes: Option<u64>,
    /// LimitScope: replica (each replica counts its own quota) or cluster (one count in Redis).
    #[arg(long, value_name = "SCOPE", value_parser = ["replica", "cluster"])]
    pub limit_scope: Option<String>,
    /// Write an empty RateLimit: this principal is not limited, whatever GatewaySettings/Limits say.
    #[arg(long, conflicts_with_all = ["rate_limit", "burst", "max_concurrent", "daily_quota",
          "monthly_quota", "daily_quota_bytes", "limit_scope"])]
    pub unlimited: bool,
}

impl LimitArgs {
    /// The `RateLimit` to write: `None` when no flag was given.
    pub fn limits(&self) -> Option<Limits> {
        let nz = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let limits = Limits {
            rate: self.rate_limit.map(|r| Rate {
                per_second: nz(r),
                burst: nz(self.burst.unwrap_or(r)),
            }),
            max_concurrent: self.max_concurrent.map(nz),
            daily_quota: self.daily_quota,
            monthly_quota: self.monthly_quota,
            daily_quota_bytes: self.daily_quota_bytes,
            scope: match self.limit_scope.as_deref() {
                Some("cluster") => LimitScope::Cluster,
                _ => LimitScope::Replica,
            },
        };
        (self.unlimited || !limits.is_empty() || self.limit_scope.is_some()).then_some(limits)
    }
}
