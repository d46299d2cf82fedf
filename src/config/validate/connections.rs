//! `AuthSettings/ApiConnections/Connection` (scangate extension, MDR's API connection) and
//! `GatewaySettings/Sessions`.
//!
//! A connection is a name with a role and a tenant scope, whose clients hold signed refresh and
//! access tokens rather than a token stored in the file. The file holds what every replica needs
//! to judge those tokens: the client ID they name, whether the connection is enabled, and the
//! moment before which every token family it issued is dead (`NotBefore`).

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::auth::{check_description, check_name, check_tenant, parse_role};
use super::{join, limits, Ctx, ElPath, Group, Leaf, Unknown};
use crate::config::xml::Element;
use crate::config::{ConnectionEntry, RedisUrl, SessionSettings, StateStore, TokenEntry};

const CONNECTION: &[&str] = &[
    "Name",
    "ClientId",
    "Role",
    "Tenants",
    "Description",
    "Enabled",
    "NotBefore",
    "Revoked",
    "RateLimit",
];

/// The element that stands for MDR's "Root without tenants" inside `Tenants`.
pub const ROOT_TENANT: &str = "RootWithoutTenants";

/// `ApiConnections`: every Connection, checked alone, against the others and against the Tokens
/// (a Name is unique across both kinds, since it is what logs, metrics and the upstream see).
pub(super) fn connections(
    ctx: &mut Ctx,
    el: &Element<'_>,
    parent: &str,
    tokens: &[TokenEntry],
) -> Vec<ConnectionEntry> {
    let g = Group::new(
        ctx,
        el,
        join(parent, "ApiConnections"),
        &["Connection"],
        Unknown::Reject,
    );
    let elements = g.all("Connection");
    if elements.is_empty() {
        return Vec::new();
    }
    let parent = g.path();
    let token_names: HashSet<&str> = tokens.iter().map(|t| t.name.as_str()).collect();
    let mut names = HashSet::new();
    let mut client_ids = HashSet::new();
    let mut entries = Vec::with_capacity(elements.len());
    for (i, el) in elements.iter().enumerate() {
        let path = ElPath::Nth {
            parent: &parent,
            name: "Connection",
            index: i + 1,
        };
        let c = Group::new(ctx, el, path, CONNECTION, Unknown::Reject);
        let name = c.required_leaf(ctx, "Name").filter(|leaf| {
            let rule = match check_name(leaf.text) {
                Err(rule) => rule,
                Ok(()) if token_names.contains(leaf.text) => {
                    format!("duplicate name {:?} (a Token has it)", leaf.text)
                }
                Ok(()) if !names.insert(leaf.text) => format!("duplicate name {:?}", leaf.text),
                Ok(()) => return true,
            };
            ctx.bad(leaf, rule);
            false
        });
        let client_id = c.required_leaf(ctx, "ClientId").filter(|leaf| {
            let rule = match check_client_id(leaf.text) {
                Err(rule) => rule,
                Ok(()) if !client_ids.insert(leaf.text) => {
                    format!("duplicate ClientId {:?}", leaf.text)
                }
                Ok(()) => return true,
            };
            ctx.bad(leaf, rule);
            false
        });
        let role = c.required_leaf(ctx, "Role").and_then(|leaf| {
            parse_role(leaf.text)
                .map_err(|rule| ctx.bad(&leaf, rule))
                .ok()
        });
        let (tenants, root_tenant) = match c.one("Tenants") {
            Some(el) => tenants(ctx, el, &c.path()),
            None => (Vec::new(), false),
        };
        let description = c.maybe_empty_leaf(ctx, "Description").and_then(|leaf| {
            if let Err(rule) = check_description(leaf.text) {
                ctx.bad(&leaf, rule);
            }
            (!leaf.text.is_empty()).then(|| leaf.text.to_owned())
        });
        let enabled = c.required(ctx, "Enabled").and(c.flag(ctx, "Enabled"));
        let not_before = match c.leaf(ctx, "NotBefore") {
            Some(leaf) => time(ctx, &leaf),
            None => Some(0),
        };
        let revoked = c.flag(ctx, "Revoked").unwrap_or(false);
        let own_limits = (c.one("RateLimit"))
            .map(|el| std::sync::Arc::new(limits::limits(ctx, el, join(&c.path(), "RateLimit"))));
        if let (Some(name), Some(client_id), Some(role), Some(enabled), Some(not_before)) =
            (name, client_id, role, enabled, not_before)
        {
            entries.push(ConnectionEntry {
                name: name.text.into(),
                client_id: client_id.text.to_owned(),
                role,
                tenants,
                root_tenant,
                description,
                enabled,
                not_before,
                revoked,
                limits: own_limits,
            });
        }
    }
    entries
}

/// `ClientId`: what `connection add` generates (22 base64url characters, 128 bits), or any
/// 16–64 URL-safe characters, since it travels in the exchange URL's path.
pub fn check_client_id(text: &str) -> Result<(), String> {
    let url_safe = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    if !(16..=64).contains(&text.len()) || !text.bytes().all(url_safe) {
        return Err(format!(
            "ClientId must be 16 to 64 characters of A-Z, a-z, 0-9, - and _, found {text:?}"
        ));
    }
    Ok(())
}

/// `Tenants`: named `Tenant`s and, on its own, `RootWithoutTenants` (MDR's "Root without
/// tenants": assets that belong to no tenant).
fn tenants(ctx: &mut Ctx, el: &Element<'_>, parent: &str) -> (Vec<String>, bool) {
    let g = Group::new(
        ctx,
        el,
        join(parent, "Tenants"),
        &["Tenant", ROOT_TENANT],
        Unknown::Reject,
    );
    let mut tenants = Vec::new();
    for leaf in g.leaves(ctx, "Tenant") {
        match check_tenant(leaf.text) {
            Ok(()) if tenants.iter().any(|t| t == leaf.text) => {
                ctx.bad(&leaf, format!("duplicate tenant {:?}", leaf.text));
            }
            Ok(()) => tenants.push(leaf.text.to_owned()),
            Err(rule) => ctx.bad(&leaf, rule),
        }
    }
    let root = g.one(ROOT_TENANT).is_some_and(|el| {
        // An empty element: it is a value of its own, not a text.
        let empty = el.children.is_empty() && super::trim(&el.text).is_empty();
        if !empty {
            let rule = format!("<{ROOT_TENANT}/> must be empty");
            ctx.fault(el.offset, join(&g.path(), ROOT_TENANT), rule);
        }
        empty
    });
    (tenants, root)
}

/// `NotBefore`: an RFC 3339 UTC time such as `2026-12-01T20:45:01Z`, as unix seconds.
fn time(ctx: &mut Ctx, leaf: &Leaf<'_, '_>) -> Option<u64> {
    match parse_time(leaf.text) {
        Ok(secs) => Some(secs),
        Err(rule) => {
            ctx.bad(leaf, rule);
            None
        }
    }
}

/// Parses `NotBefore`'s RFC 3339 form into unix seconds.
pub fn parse_time(text: &str) -> Result<u64, String> {
    humantime::parse_rfc3339(text)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .ok_or_else(|| {
            format!(
                "NotBefore must be an RFC 3339 UTC time like 2026-12-01T20:45:01Z, found {text:?}"
            )
        })
}

/// Unix seconds in `NotBefore`'s form.
pub fn format_time(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

const SESSIONS: &[&str] = &[
    "AccessTokenLifetimeSec",
    "RefreshTokenLifetimeSec",
    "ConsoleRefreshTokenLifetimeSec",
    "StateStore",
];

/// A year: no lifetime is longer.
const MAX_LIFETIME_SECS: u64 = 366 * 24 * 3600;

/// `GatewaySettings/Sessions`; absent means the defaults (MDR's lifetimes).
pub(super) fn sessions(ctx: &mut Ctx, el: Option<&Element<'_>>, parent: &str) -> SessionSettings {
    let mut s = SessionSettings::default();
    let Some(el) = el else {
        return s;
    };
    let g = Group::new(ctx, el, join(parent, "Sessions"), SESSIONS, Unknown::Reject);
    let lifetime = |ctx: &mut Ctx, name: &'static str, slot: &mut Duration| {
        if let Some(secs) = g.uint(ctx, name, MAX_LIFETIME_SECS) {
            if secs < 60 {
                let rule = format!("{name} must be at least 60 seconds, found {secs}");
                if let Some(leaf) = g.leaf(ctx, name) {
                    ctx.bad(&leaf, rule);
                }
            } else {
                *slot = Duration::from_secs(secs);
            }
        }
    };
    lifetime(ctx, "AccessTokenLifetimeSec", &mut s.access_lifetime);
    lifetime(ctx, "RefreshTokenLifetimeSec", &mut s.refresh_lifetime);
    lifetime(
        ctx,
        "ConsoleRefreshTokenLifetimeSec",
        &mut s.console_refresh_lifetime,
    );
    if let Some(leaf) = g.leaf(ctx, "StateStore") {
        match parse_state_store(leaf.text) {
            Ok(store) => s.state_store = store,
            Err(rule) => ctx.bad(&leaf, rule),
        }
    }
    s
}

/// `StateStore`: `sqlite:PATH` (relative to the config's folder), or a `redis://` or `rediss://`
/// URL. Errors never repeat the text: a URL may carry a password.
fn parse_state_store(text: &str) -> Result<StateStore, String> {
    if text.starts_with("redis://") || text.starts_with("rediss://") {
        return RedisUrl::parse(text).map(StateStore::Redis);
    }
    match text.strip_prefix("sqlite:") {
        Some(path) if !path.is_empty() && !path.contains('\0') => {
            Ok(StateStore::Sqlite(PathBuf::from(path)))
        }
        _ => Err(format!(
            "StateStore must be sqlite:PATH or redis://[USER:PASSWORD@]HOST[:PORT][/DB] \
             (rediss:// for TLS), found {:?}",
            // Only the scheme: a store URL may carry a password.
            text.split_once(':').map_or(text, |(scheme, _)| scheme)
        )),
    }
}

/// Seconds since the epoch, now.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
#[path = "connections_tests.rs"]
mod tests;
