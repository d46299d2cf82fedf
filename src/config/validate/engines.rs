//! `GatewaySettings/UpstreamSettings` and the attributes of each `Upstream`.

use std::time::Duration;

use super::auth::check_tenant;
use super::{join, Ctx, Group, Unknown};
use crate::config::engines::DEFAULT_MAX_SESSIONS;
use crate::config::xml::Element;
use crate::config::{EngineOptions, UpstreamSettings};

const KNOWN: &[&str] = &[
    "MaxSessions",
    "QueueTimeoutMs",
    "MaxQueue",
    "HealthCheckPath",
    "HealthCheckIntervalMs",
    "RetryBufferBytes",
];

/// Scan Engine's "uint".
const UINT_MAX: u64 = u32::MAX as u64;
/// Most requests that may wait at once.
const MAX_QUEUE_LIMIT: u64 = 1_000_000;
/// Largest body kept for a retry: a retry buffer is memory held per request.
const RETRY_BUFFER_LIMIT: u64 = 16 * 1024 * 1024;
/// Fastest active check: more often than this only loads the engines.
const MIN_INTERVAL_MS: u64 = 100;
/// Slowest active check: an hour.
const MAX_INTERVAL_MS: u64 = 3_600_000;
/// Largest `Weight` (HAProxy's range, without 0).
const MAX_WEIGHT: u64 = 256;

/// `UpstreamSettings` (absent: every default). `legacy` is the deprecated
/// `MaxUpstreamConnections`, which sets `MaxSessions` when that is absent.
pub(super) fn upstream_settings(
    ctx: &mut Ctx,
    el: Option<&Element<'_>>,
    parent: &str,
    legacy: Option<u64>,
    engines: Vec<EngineOptions>,
) -> UpstreamSettings {
    let mut out = UpstreamSettings {
        engines,
        legacy_max_upstream_connections: legacy.is_some(),
        ..UpstreamSettings::default()
    };
    let cap = |n: u64| (n > 0).then(|| usize::try_from(n).unwrap_or(usize::MAX));
    out.max_sessions = legacy.map_or(Some(DEFAULT_MAX_SESSIONS), cap);
    let Some(el) = el else {
        return out;
    };
    let g = Group::new(
        ctx,
        el,
        join(parent, "UpstreamSettings"),
        KNOWN,
        Unknown::Reject,
    );
    if let Some(n) = g.uint(ctx, "MaxSessions", UINT_MAX) {
        out.max_sessions = cap(n);
    }
    if let Some(ms) = g.uint(ctx, "QueueTimeoutMs", UINT_MAX) {
        out.queue_timeout = Duration::from_millis(ms);
    }
    if let Some(n) = g.uint(ctx, "MaxQueue", MAX_QUEUE_LIMIT) {
        out.max_queue = usize::try_from(n).unwrap_or(usize::MAX);
    }
    if let Some(n) = g.uint(ctx, "RetryBufferBytes", RETRY_BUFFER_LIMIT) {
        out.retry_buffer_bytes = n;
    }
    if let Some(leaf) = g.leaf(ctx, "HealthCheckIntervalMs") {
        match leaf.text.parse::<u64>() {
            Ok(0) if leaf.text.bytes().all(|b| b.is_ascii_digit()) => {
                out.health_check_interval = None
            }
            Ok(ms)
                if leaf.text.bytes().all(|b| b.is_ascii_digit())
                    && (MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&ms) =>
            {
                out.health_check_interval = Some(Duration::from_millis(ms))
            }
            _ => {
                let rule = format!(
                    "HealthCheckIntervalMs must be 0 (no active checks) or from {MIN_INTERVAL_MS} \
                     to {MAX_INTERVAL_MS}, found {:?}",
                    leaf.text
                );
                ctx.bad(&leaf, rule);
            }
        }
    }
    if let Some(leaf) = g.leaf(ctx, "HealthCheckPath") {
        match health_check_path(leaf.text) {
            Ok(()) => out.health_check_path = leaf.text.to_owned(),
            Err(rule) => ctx.bad(&leaf, rule),
        }
    }
    out
}

/// An origin-form path (and query) the check can send as is.
fn health_check_path(text: &str) -> Result<(), String> {
    let ok = text.starts_with('/')
        && text.len() <= 1000
        && !text.contains('#')
        && text.parse::<http::uri::PathAndQuery>().is_ok();
    match ok {
        true => Ok(()),
        false => Err(format!(
            "HealthCheckPath must be an absolute path such as /api/v3.0/basesdate, found {text:?}"
        )),
    }
}

/// The attributes of one `<Upstream>` at `path`; unknown or bad ones are reported.
pub(super) fn engine_options(ctx: &mut Ctx, el: &Element<'_>, path: &str) -> EngineOptions {
    let mut out = EngineOptions::default();
    for (name, value) in ctx.attributes(el, path) {
        let number = |max: u64| {
            let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
            value
                .parse::<u64>()
                .ok()
                .filter(|n| digits && (1..=max).contains(n))
        };
        match name.as_str() {
            "MaxSessions" => match number(UINT_MAX) {
                Some(n) => out.max_sessions = Some(usize::try_from(n).unwrap_or(usize::MAX)),
                None => {
                    let rule = format!(
                        "MaxSessions must be a whole number from 1 to {UINT_MAX}, found {value:?}"
                    );
                    ctx.fault(el.offset, path, rule);
                }
            },
            "Weight" => match number(MAX_WEIGHT) {
                Some(n) => out.weight = n as u32,
                None => {
                    let rule = format!(
                        "Weight must be a whole number from 1 to {MAX_WEIGHT}, found {value:?}"
                    );
                    ctx.fault(el.offset, path, rule);
                }
            },
            "Tenants" => {
                for tenant in value.split(',') {
                    let tenant = tenant.trim();
                    match check_tenant(tenant) {
                        Ok(()) if !out.tenants.iter().any(|t| t == tenant) => {
                            out.tenants.push(tenant.to_owned())
                        }
                        Ok(()) => {}
                        Err(why) => ctx.fault(el.offset, path, format!("Tenants: {why}")),
                    }
                }
            }
            other => {
                let rule = format!(
                    "unknown attribute {other:?} on <Upstream>; it takes MaxSessions, Weight and Tenants"
                );
                ctx.fault(el.offset, path, rule);
            }
        }
    }
    out
}

/// Tenant routing needs a default group: engines that serve every principal whose tenants have no
/// engines of their own.
pub(super) fn check_default_group(
    ctx: &mut Ctx,
    engines: &[EngineOptions],
    offset: usize,
    path: &str,
) {
    if !engines.is_empty() && engines.iter().all(|e| !e.tenants.is_empty()) {
        let rule = "at least one <Upstream> must have no Tenants attribute: those engines serve \
                    every principal whose tenants have no engines of their own";
        ctx.fault(offset, path, rule);
    }
}

#[cfg(test)]
#[path = "engines_tests.rs"]
mod tests;
