//! The limit phase of the request path: a limited principal's rate, concurrency and quota, checked
//! after auth and policy and before any body is read or any upstream work is done; and the IETF
//! `RateLimit-Policy` / `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers-11) on every
//! response of a limited principal.

use http::{HeaderMap, HeaderName, HeaderValue};

use super::error::GatewayError;
use crate::auth::limits::{self, Admission, Denied, LimitKind, Remaining};
use crate::auth::principal::Principal;
use crate::config::validate::connections::now_secs;
use crate::config::Limits;
use crate::state::Gateway;

/// `RateLimit-Policy`: the limits in force (stable per principal).
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`: what is left of them now.
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// A 30-day month, as the `w` of the monthly policy (its `t` gives the real end).
const MONTH_SECS: u64 = 30 * 86_400;

/// The two fields for a response.
#[derive(Debug, Clone)]
pub struct LimitHeaders {
    policy: HeaderValue,
    current: HeaderValue,
}

impl LimitHeaders {
    /// Sets both fields on a response.
    pub fn apply(self, headers: &mut HeaderMap) {
        headers.insert(RATELIMIT_POLICY.clone(), self.policy);
        headers.insert(RATELIMIT.clone(), self.current);
    }
}

/// Checks `principal`'s limits. `Ok(None)`: it has none (the common case, one branch). On a
/// refusal the refusal is counted, and `headers` is set either way.
pub fn limit(
    gw: &Gateway,
    principal: &Principal,
    headers: &mut Option<LimitHeaders>,
) -> Result<Option<Admission>, GatewayError> {
    let Some(spec) = principal.limits() else {
        return Ok(None);
    };
    match limits::check(principal, spec, &gw.quotas, now_secs()) {
        Ok(admission) => {
            *headers = Some(LimitHeaders {
                policy: policy(spec),
                current: current(&admission.remaining),
            });
            Ok(Some(admission))
        }
        Err(denied) => {
            gw.metrics
                .limits
                .limited(principal.name(), denied.kind.label());
            *headers = Some(LimitHeaders {
                policy: policy(spec),
                current: violated(denied),
            });
            Err(GatewayError::Limited(denied))
        }
    }
}

/// `RateLimit-Policy` for `limits`, e.g. `"burst";q=5;w=1, "concurrency";q=2;qu="concurrent-requests"`.
fn policy(limits: &Limits) -> HeaderValue {
    let mut items = Vec::new();
    if let Some(rate) = limits.rate {
        // The bucket refills `burst` cells in burst / rate seconds.
        let (b, r) = (
            u64::from(rate.burst.get()),
            u64::from(rate.per_second.get()),
        );
        items.push(format!("\"burst\";q={b};w={}", b.div_ceil(r)));
    }
    if let Some(n) = limits.max_concurrent {
        items.push(format!("\"concurrency\";q={n};qu=\"concurrent-requests\""));
    }
    if let Some(n) = limits.daily_quota {
        items.push(format!("\"daily\";q={n};w=86400"));
    }
    if let Some(n) = limits.monthly_quota {
        items.push(format!("\"monthly\";q={n};w={MONTH_SECS}"));
    }
    if let Some(n) = limits.daily_quota_bytes {
        items.push(format!(
            "\"daily-bytes\";q={n};qu=\"content-bytes\";w=86400"
        ));
    }
    value(items)
}

/// `RateLimit` after an admitted request.
fn current(left: &Remaining) -> HeaderValue {
    let mut items = Vec::new();
    if let Some(r) = left.burst {
        items.push(format!("\"burst\";r={r};t={}", left.burst_reset_secs));
    }
    if let Some(r) = left.concurrent {
        items.push(format!("\"concurrency\";r={r}"));
    }
    let quotas = [
        ("daily", left.quota.daily),
        ("monthly", left.quota.monthly),
        ("daily-bytes", left.quota.daily_bytes),
    ];
    for (name, q) in quotas {
        if let Some((r, t)) = q {
            items.push(format!("\"{name}\";r={r};t={t}"));
        }
    }
    value(items)
}

/// `RateLimit` on a refusal: the policy that refused, with nothing left until `Retry-After`.
fn violated(denied: Denied) -> HeaderValue {
    let t = denied.retry_after_secs;
    let policy = denied.policy;
    value(vec![match denied.kind {
        LimitKind::Concurrency => format!("\"{policy}\";r=0"),
        LimitKind::Rate | LimitKind::Quota => format!("\"{policy}\";r=0;t={t}"),
    }])
}

fn value(items: Vec<String>) -> HeaderValue {
    HeaderValue::from_str(&items.join(", ")).expect("numbers and fixed names make a valid value")
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;
    use crate::auth::quota::QuotaUse;
    use crate::config::{LimitScope, Rate};

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[test]
    fn the_fields_follow_the_ietf_draft() {
        let limits = Limits {
            rate: Some(Rate {
                per_second: nz(5),
                burst: nz(10),
            }),
            max_concurrent: Some(nz(2)),
            daily_quota: Some(1000),
            monthly_quota: None,
            daily_quota_bytes: Some(4096),
            scope: LimitScope::Replica,
        };
        assert_eq!(
            policy(&limits),
            "\"burst\";q=10;w=2, \"concurrency\";q=2;qu=\"concurrent-requests\", \
             \"daily\";q=1000;w=86400, \"daily-bytes\";q=4096;qu=\"content-bytes\";w=86400"
        );
        let left = Remaining {
            burst: Some(7),
            burst_reset_secs: 1,
            concurrent: Some(1),
            quota: QuotaUse {
                daily: Some((998, 3600)),
                monthly: None,
                daily_bytes: Some((4000, 3600)),
            },
        };
        assert_eq!(
            current(&left),
            "\"burst\";r=7;t=1, \"concurrency\";r=1, \"daily\";r=998;t=3600, \"daily-bytes\";r=4000;t=3600"
        );
        let denied = Denied {
            kind: LimitKind::Rate,
            policy: "burst",
            retry_after_secs: 1,
        };
        assert_eq!(violated(denied), "\"burst\";r=0;t=1");
        let denied = Denied {
            kind: LimitKind::Quota,
            policy: "monthly",
            retry_after_secs: 99,
        };
        assert_eq!(violated(denied), "\"monthly\";r=0;t=99");
        let denied = Denied {
            kind: LimitKind::Concurrency,
            policy: "concurrency",
            retry_after_secs: 1,
        };
        assert_eq!(violated(denied), "\"concurrency\";r=0");
    }

    /// A monthly quota's window is 30 days in seconds (its `t` gives the real end), and its
    /// `RateLimit` item comes after the daily one's.
    #[test]
    fn a_monthly_quota_has_a_30_day_window() {
        let limits = Limits {
            rate: None,
            max_concurrent: None,
            daily_quota: Some(100),
            monthly_quota: Some(2000),
            daily_quota_bytes: None,
            scope: LimitScope::Cluster,
        };
        assert_eq!(
            policy(&limits),
            "\"daily\";q=100;w=86400, \"monthly\";q=2000;w=2592000"
        );
        let left = Remaining {
            burst: None,
            burst_reset_secs: 0,
            concurrent: None,
            quota: QuotaUse {
                daily: Some((99, 60)),
                monthly: Some((1999, 86_460)),
                daily_bytes: None,
            },
        };
        assert_eq!(
            current(&left),
            "\"daily\";r=99;t=60, \"monthly\";r=1999;t=86460"
        );
    }
}
