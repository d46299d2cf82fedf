//! `GatewaySettings`: scangate's own block. Every child is scangate's, so an unknown one is an error.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use http::Uri;

use super::server::{socket_addr, unix_path};
use super::{join, Ctx, Group, Leaf, Unknown};
use crate::config::xml::Element;
use crate::config::{GatewaySettings, UpstreamAddr};

const KNOWN: &[&str] = &[
    "Upstreams",
    "TokenKeyFile",
    "AdminConnectionString",
    "Realm",
    "UpstreamCaFile",
    "Sessions",
];

/// `GatewaySettings`, with defaults for what is absent.
pub(super) fn gateway(ctx: &mut Ctx, el: &Element<'_>) -> GatewaySettings {
    let g = Group::new(
        ctx,
        el,
        "GatewaySettings".to_owned(),
        KNOWN,
        Unknown::Reject,
    );
    let upstreams = match g.required(ctx, "Upstreams") {
        Some(el) => upstreams(ctx, el, &g.path()),
        None => Vec::new(),
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
    GatewaySettings {
        upstreams,
        token_key_file: g
            .leaf(ctx, "TokenKeyFile")
            .map_or_else(|| PathBuf::from("scangate.key"), |leaf| leaf.text.into()),
        admin,
        realm: realm.map_or("scangate", |leaf| leaf.text).to_owned(),
        upstream_ca_file: g.leaf(ctx, "UpstreamCaFile").map(|leaf| leaf.text.into()),
        sessions: super::connections::sessions(ctx, g.one("Sessions"), &g.path()),
    }
}

/// `Upstreams/Upstream`: at least one.
fn upstreams(ctx: &mut Ctx, el: &Element<'_>, parent: &str) -> Vec<UpstreamAddr> {
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
    let parsed = leaves.iter().map(|leaf| (leaf, upstream(leaf.text)));
    parsed
        .filter_map(|(leaf, parsed)| parsed.map_err(|rule| ctx.bad(leaf, rule)).ok())
        .collect()
}

/// `http://host:port`, `https://host:port` (a host name is fine: the client resolves it per
/// connection) or an absolute unix socket path.
fn upstream(text: &str) -> Result<UpstreamAddr, String> {
    if text.starts_with('/') {
        return unix_path(text).map(UpstreamAddr::Unix);
    }
    let not_url = || format!("upstream {text:?} is not an http(s) URL or a unix socket path");
    let uri: Uri = text.parse().map_err(|_| not_url())?;
    let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
        return Err(not_url());
    };
    if authority.as_str().contains('@') {
        return Err(format!(
            "upstream {text:?} must not hold a user name or password"
        ));
    }
    // Without user info, anything after the host is `:port`, and the port must be a number.
    let bad_port = authority.as_str().len() > authority.host().len() && authority.port().is_none();
    if !matches!(scheme.as_str(), "http" | "https") || authority.host().is_empty() || bad_port {
        return Err(not_url());
    }
    if uri.path() != "/" || uri.query().is_some() {
        return Err(format!("upstream {text:?} must not have a path or query"));
    }
    let uri = Uri::builder()
        .scheme(scheme.clone())
        .authority(authority.clone())
        .path_and_query("/")
        .build()
        .map_err(|_| not_url())?;
    Ok(UpstreamAddr::Http(uri))
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
