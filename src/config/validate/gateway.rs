//! `GatewaySettings`: scangate's own block. Every child is scangate's, so an unknown one is an error.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use http::Uri;

use super::scan_paths::scanning_paths;
use super::server::{socket_addr, unix_path};
use super::{engines, join, limits, Ctx, Group, Leaf, Unknown};
use crate::config::xml::Element;
use crate::config::{EngineOptions, GatewaySettings, UpstreamAddr};

const KNOWN: &[&str] = &[
    "Upstreams",
    "TokenKeyFile",
    "AdminConnectionString",
    "Realm",
    "UpstreamCaFile",
    "MaxConnectionsPerClient",
    "SendTimeoutMs",
    "MaxUpstreamConnections",
    "ScanningPaths",
    "Sessions",
    "UpstreamSettings",
    "Audit",
    "Limits",
];

// Two branches each added a name here and together passed the old bound: a panic at load time,
// caught only by tests. Now it does not compile.
const _: () = assert!(KNOWN.len() <= super::MAX_KNOWN);

/// Scan Engine's "uint" is 32 bits; scangate's numbers use the same range.
const UINT_MAX: u64 = u32::MAX as u64;

/// `SendTimeoutMs` when absent: nginx's `send_timeout`.
const SEND_TIMEOUT_MS: u64 = 60_000;

/// `GatewaySettings`, with defaults for what is absent. `max_sessions` (MaxHTTPSessionsNum) sets
/// the default connection caps.
pub(super) fn gateway(ctx: &mut Ctx, el: &Element<'_>, max_sessions: usize) -> GatewaySettings {
    let g = Group::new(
        ctx,
        el,
        "GatewaySettings".to_owned(),
        KNOWN,
        Unknown::Reject,
    );
    let (upstreams, engines) = match g.required(ctx, "Upstreams") {
        Some(el) => upstreams(ctx, el, &g.path()),
        None => (Vec::new(), Vec::new()),
    };
    let admin = match g.leaf(ctx, "AdminConnectionString") {
        None => Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 9090))),
        Some(leaf) if leaf.text == "off" => None,
        Some(leaf) => socket_addr(leaf.text)
            .map_err(|why| {
                let text = leaf.text;
                let rule =
                    format!("AdminConnectionString must be ip:port or off, found {text:?}: {why}");
                ctx.bad(&leaf, rule);
            })
            .ok(),
    };
    let realm = g.leaf(ctx, "Realm").filter(|leaf| realm_ok(ctx, leaf));
    let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    let per_client = g.uint(ctx, "MaxConnectionsPerClient", UINT_MAX);
    // Deprecated: the per-engine session cap is UpstreamSettings/MaxSessions now.
    let legacy_cap = g.uint(ctx, "MaxUpstreamConnections", UINT_MAX);
    let upstream = engines::upstream_settings(
        ctx,
        g.one("UpstreamSettings"),
        &g.path(),
        legacy_cap,
        engines,
    );
    let send_timeout_ms = g.uint(ctx, "SendTimeoutMs", UINT_MAX);
    GatewaySettings {
        upstreams,
        token_key_file: g
            .leaf(ctx, "TokenKeyFile")
            .map_or_else(|| PathBuf::from("scangate.key"), |leaf| leaf.text.into()),
        admin,
        realm: realm.map_or("scangate", |leaf| leaf.text).to_owned(),
        upstream_ca_file: g.leaf(ctx, "UpstreamCaFile").map(|leaf| leaf.text.into()),
        max_connections_per_client: match per_client {
            None => Some((max_sessions / 4).max(1)),
            Some(0) => None,
            Some(n) => Some(count(n)),
        },
        send_timeout: match send_timeout_ms.unwrap_or(SEND_TIMEOUT_MS) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        },
        upstream,
        scanning_paths: (g.one("ScanningPaths")).map(|el| scanning_paths(ctx, el, &g.path())),
        sessions: super::connections::sessions(ctx, g.one("Sessions"), &g.path()),
        audit: super::audit::audit(ctx, g.one("Audit"), &g.path()),
        limits: (g.one("Limits"))
            .map(|el| limits::limits(ctx, el, join(&g.path(), "Limits")))
            .unwrap_or_default(),
    }
}

/// `Upstreams/Upstream`: at least one, each with its attributes (same order).
fn upstreams(
    ctx: &mut Ctx,
    el: &Element<'_>,
    parent: &str,
) -> (Vec<UpstreamAddr>, Vec<EngineOptions>) {
    let g = Group::new(
        ctx,
        el,
        join(parent, "Upstreams"),
        &["Upstream"],
        Unknown::Reject,
    );
    if g.all("Upstream").is_empty() {
        let rule = "Upstreams needs at least one <Upstream>";
        ctx.fault(g.offset(), g.path(), rule);
    }
    let leaves = g.leaves(ctx, "Upstream");
    let mut addrs = Vec::with_capacity(leaves.len());
    let mut options = Vec::with_capacity(leaves.len());
    for leaf in &leaves {
        let Some(el) = g
            .all("Upstream")
            .into_iter()
            .find(|e| e.offset == leaf.offset)
        else {
            continue;
        };
        let opts = engines::engine_options(ctx, el, &leaf.path());
        match upstream(leaf.text) {
            Ok(addr) => {
                addrs.push(addr);
                options.push(opts);
            }
            Err(rule) => ctx.bad(leaf, rule),
        }
    }
    engines::check_default_group(ctx, &options, g.offset(), &g.path());
    (addrs, options)
}

/// `http://host:port`, `https://host:port` (a host name is fine: the client resolves it per
/// connection) or an absolute unix socket path.
fn upstream(text: &str) -> Result<UpstreamAddr, String> {
    if text.starts_with('/') {
        return unix_path(text).map(UpstreamAddr::Unix);
    }
    // Errors reach logs and the admin `/config` page: they quote scheme, host and port only.
    let quoted = redacted(text);
    let not_url = || format!("upstream {quoted:?} is not an http(s) URL or a unix socket path");
    let uri: Uri = text.parse().map_err(|_| not_url())?;
    let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
        return Err(not_url());
    };
    if authority.as_str().contains('@') {
        return Err(format!(
            "upstream {quoted:?} must not hold a user name or password"
        ));
    }
    // Without user info, anything after the host is `:port`, and the port must be a number.
    let bad_port = authority.as_str().len() > authority.host().len() && authority.port().is_none();
    if !matches!(scheme.as_str(), "http" | "https") || authority.host().is_empty() || bad_port {
        return Err(not_url());
    }
    if uri.path() != "/" || uri.query().is_some() {
        return Err(format!("upstream {quoted:?} must not have a path or query"));
    }
    let uri = Uri::builder()
        .scheme(scheme.clone())
        .authority(authority.clone())
        .path_and_query("/")
        .build()
        .map_err(|_| not_url())?;
    Ok(UpstreamAddr::Http(uri))
}

/// An upstream's text as an error may quote it: scheme, host and port. User info becomes `***` and
/// whatever follows the host (path, query, fragment) becomes `…`, since any of them may hold a
/// secret. Text without a scheme keeps its slashes: it is most likely a mistyped socket path.
fn redacted(text: &str) -> String {
    let scheme = text.split_once("://").filter(|(scheme, _)| {
        let scheme_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.');
        !scheme.is_empty() && scheme.chars().all(scheme_char)
    });
    let (prefix, rest, stops) = match scheme {
        Some((scheme, rest)) => (format!("{scheme}://"), rest, &['/', '?', '#'][..]),
        None => (String::new(), text, &['?', '#'][..]),
    };
    let (authority, tail) = rest.split_at(rest.find(stops).unwrap_or(rest.len()));
    let host = match authority.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => authority.to_owned(),
    };
    let elided = match tail.chars().next() {
        Some(first) => format!("{first}…"),
        None => String::new(),
    };
    format!("{prefix}{host}{elided}")
}

/// `Realm` goes inside a quoted string in `WWW-Authenticate`, so it is kept to printable ASCII
/// without the two characters that would need escaping there.
fn realm_ok(ctx: &mut Ctx, leaf: &Leaf<'_, '_>) -> bool {
    let printable = |b: u8| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\';
    let ok = leaf.text.len() <= 100 && leaf.text.bytes().all(printable);
    if !ok {
        let rule = format!(
            "Realm must be 1 to 100 printable ASCII characters without \" or \\, found {:?}",
            leaf.text
        );
        ctx.bad(leaf, rule);
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_keep_scheme_host_and_port_only() {
        let cases = [
            ("http://engine:9999", "http://engine:9999"),
            ("http://user:hunter2@engine:9999", "http://***@engine:9999"),
            ("https://a@b@engine", "https://***@engine"),
            ("http://engine:1/scan?key=s3cret", "http://engine:1/…"),
            ("http://engine:1?key=s3cret", "http://engine:1?…"),
            ("http://engine:1#frag", "http://engine:1#…"),
            ("http://u:p@engine:1/?k=v", "http://***@engine:1/…"),
            ("user:hunter2@engine:1", "***@engine:1"),
            ("engine:1?key=s3cret", "engine:1?…"),
            ("run/kav.sock", "run/kav.sock"),
            ("u:p@h://x", "***@h://x"),
            ("://u:p@h", "***@h"),
            ("", ""),
        ];
        for (text, quoted) in cases {
            assert_eq!(redacted(text), quoted, "{text}");
        }
    }

    #[test]
    fn no_upstream_error_quotes_a_password_or_query() {
        for text in [
            "http://user:hunter2@engine:9999",
            "http://engine:9999/?key=hunter2",
            "https://user:hunter2@engine:99999/x",
            "hxxp://user:hunter2@engine",
            "http://engine:9999/hunter2",
            "http://user:hunter2@",
            "user:hunter2@engine:1",
        ] {
            let rule = upstream(text).unwrap_err();
            assert!(!rule.contains("hunter2"), "{text}: {rule}");
        }
    }
}
