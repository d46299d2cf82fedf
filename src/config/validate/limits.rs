//! `RateLimit` (in a Token or a Connection) and `GatewaySettings/Limits`: the same children, the
//! same rules. See [`crate::config::limits`] for what they mean.

use std::num::NonZeroU32;

use super::{Ctx, Group, Leaf, Unknown};
use crate::config::limits::{LimitScope, Limits, Rate};
use crate::config::xml::Element;

/// The children of `RateLimit` and `Limits`.
pub(super) const KNOWN: &[&str] = &[
    "RequestsPerSecond",
    "Burst",
    "MaxConcurrent",
    "DailyQuota",
    "MonthlyQuota",
    "DailyQuotaBytes",
    "LimitScope",
];

/// Fastest rate and largest burst: a million a second is past what one gateway serves.
const MAX_RATE: u64 = 1_000_000;
/// Scan Engine's "uint".
const UINT_MAX: u64 = u32::MAX as u64;
/// Largest request quota: a trillion, far past any day's traffic, and exact in every store.
const MAX_QUOTA: u64 = 1_000_000_000_000;
/// Largest byte quota: a petabyte.
const MAX_QUOTA_BYTES: u64 = 1_000_000_000_000_000;

/// One `RateLimit` or `Limits` element at `path`.
pub(super) fn limits(ctx: &mut Ctx, el: &Element<'_>, path: String) -> Limits {
    let g = Group::new(ctx, el, path, KNOWN, Unknown::Reject);
    let per_second = positive(ctx, &g, "RequestsPerSecond", MAX_RATE);
    let burst = positive(ctx, &g, "Burst", MAX_RATE);
    let rate = match (per_second, burst) {
        (Some(per_second), burst) => Some(Rate {
            per_second: small(per_second),
            burst: small(burst.unwrap_or(per_second)),
        }),
        (None, Some(_)) => {
            let rule = "Burst needs RequestsPerSecond in the same element";
            ctx.fault(g.offset(), g.path(), rule);
            None
        }
        (None, None) => None,
    };
    let scope = match g.leaf(ctx, "LimitScope") {
        None => LimitScope::Replica,
        Some(leaf) => match leaf.text {
            "replica" => LimitScope::Replica,
            "cluster" => {
                ctx.cluster_scopes.push((leaf.offset, leaf.path()));
                LimitScope::Cluster
            }
            other => {
                ctx.bad(
                    &leaf,
                    format!("LimitScope must be replica or cluster, found {other:?}"),
                );
                LimitScope::Replica
            }
        },
    };
    Limits {
        rate,
        max_concurrent: positive(ctx, &g, "MaxConcurrent", UINT_MAX).map(small),
        daily_quota: positive(ctx, &g, "DailyQuota", MAX_QUOTA),
        monthly_quota: positive(ctx, &g, "MonthlyQuota", MAX_QUOTA),
        daily_quota_bytes: positive(ctx, &g, "DailyQuotaBytes", MAX_QUOTA_BYTES),
        scope,
    }
}

/// An optional whole number from 1 to `max`; 0 is refused, since a limit of 0 would refuse every
/// request (disable the principal instead) and "0 = no limit" would read as the opposite.
fn positive(ctx: &mut Ctx, g: &Group<'_, '_, '_>, name: &'static str, max: u64) -> Option<u64> {
    let leaf: Leaf<'_, '_> = g.leaf(ctx, name)?;
    let digits = leaf.text.bytes().all(|b| b.is_ascii_digit());
    match leaf.text.parse::<u64>() {
        Ok(n) if digits && (1..=max).contains(&n) => Some(n),
        _ => {
            let rule = format!(
                "{name} must be a whole number from 1 to {max}, found {:?}",
                leaf.text
            );
            ctx.bad(&leaf, rule);
            None
        }
    }
}

/// A checked value (1..=u32::MAX) as a `NonZeroU32`.
fn small(n: u64) -> NonZeroU32 {
    NonZeroU32::new(u32::try_from(n).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN)
}

/// Gives every principal without a `RateLimit` of its own the defaults, and drops empty limits, so
/// a principal carries limits exactly when something limits it.
pub(super) fn apply_defaults(auth: &mut crate::config::AuthSettings, defaults: &Limits) {
    let defaults = (!defaults.is_empty()).then(|| std::sync::Arc::new(defaults.clone()));
    let resolve = |own: &mut Option<std::sync::Arc<Limits>>| {
        *own = match own.take() {
            None => defaults.clone(),
            Some(l) if l.is_empty() => None,
            Some(l) => Some(l),
        };
    };
    auth.tokens.iter_mut().for_each(|t| resolve(&mut t.limits));
    auth.connections
        .iter_mut()
        .for_each(|c| resolve(&mut c.limits));
}

#[cfg(test)]
#[path = "limits_tests.rs"]
mod tests;
