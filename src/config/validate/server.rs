//! `ServerSettings`: the client listener, its limits and `KeepAliveSettings`. Children scangate does
//! not use (MaxIncomingConnectionsNum, Flags, CORS …) belong to Scan Engine and are ignored, so a
//! kavhttpd.xml loads.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::{auth, join, Ctx, Group, Leaf, Unknown};
use crate::config::xml::Element;
use crate::config::{AuthSettings, KeepAlive, ListenAddr, ServerSettings, TlsFiles};

const KNOWN: &[&str] = &[
    "ConnectionString",
    "MaxHTTPSessionsNum",
    "MaxTCPFileSize",
    "SessionTimeout",
    "TlsCertificateFile",
    "TlsCertificateKeyFile",
    "TlsSessionTickets",
    "KeepAliveSettings",
    "AuthSettings",
];

const KEEP_ALIVE: &[&str] = &["Enabled", "TimeoutMs", "MaxRequests"];

/// `MaxHTTPSessionsNum` when absent or 0.
pub(super) const DEFAULT_MAX_SESSIONS: usize = 1024;

/// `TlsSessionTickets` when absent: none. With ring a resumed TLS 1.3 handshake costs the
/// server as much as a full one, and each ticket adds to every handshake (benches/RESULTS.md).
pub(super) const DEFAULT_TLS_SESSION_TICKETS: usize = 0;
/// The most `TlsSessionTickets` a handshake sends: a client holds a few (rustls keeps 8 per
/// server), so more only costs the server work.
const MAX_TLS_SESSION_TICKETS: u64 = 8;

/// Scan Engine's "uint" is 32 bits.
const UINT_MAX: u64 = u32::MAX as u64;

/// Longest unix socket path: `sun_path` holds 108 bytes, NUL included.
const MAX_UNIX_PATH_BYTES: usize = 107;

/// `ServerSettings` and the `AuthSettings` inside it. The server part is `None` only when
/// `ConnectionString` is unusable (the error is recorded).
pub(super) fn server(ctx: &mut Ctx, el: &Element<'_>) -> (Option<ServerSettings>, AuthSettings) {
    let g = Group::new(ctx, el, "ServerSettings".to_owned(), KNOWN, Unknown::Ignore);
    let listen = g.required_leaf(ctx, "ConnectionString");
    let listen = listen.and_then(|leaf| listen_addr(ctx, &leaf));
    let max_sessions = match g.uint(ctx, "MaxHTTPSessionsNum", UINT_MAX) {
        None | Some(0) => DEFAULT_MAX_SESSIONS,
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
    };
    let max_request_bytes = match g.uint(ctx, "MaxTCPFileSize", u64::MAX) {
        None | Some(0) => 104_857_600,
        Some(n) => n,
    };
    let session_timeout = zero_is_none(g.uint(ctx, "SessionTimeout", UINT_MAX), 10_000);
    let cert = g
        .leaf(ctx, "TlsCertificateFile")
        .map(|l| PathBuf::from(l.text));
    let key = g
        .leaf(ctx, "TlsCertificateKeyFile")
        .map(|l| PathBuf::from(l.text));
    let tls = match listen {
        Some(ListenAddr::Tcp { tls: true, .. }) => {
            for name in ["TlsCertificateFile", "TlsCertificateKeyFile"] {
                if g.one(name).is_none() {
                    let rule = format!("ConnectionString is https:// but <{name}> is missing");
                    ctx.fault(g.offset(), g.path(), rule);
                }
            }
            cert.zip(key).map(|(cert, key)| TlsFiles { cert, key })
        }
        _ => None,
    };
    let tls_session_tickets = g
        .uint(ctx, "TlsSessionTickets", MAX_TLS_SESSION_TICKETS)
        .map_or(DEFAULT_TLS_SESSION_TICKETS, |n| n as usize);
    let keep_alive = match g.one("KeepAliveSettings") {
        Some(el) => keep_alive(ctx, el, &g.path()),
        None => KeepAlive::default(),
    };
    let auth = auth::auth(ctx, g.one("AuthSettings"), &g.path());
    let server = listen.map(|listen| ServerSettings {
        listen,
        max_sessions,
        max_request_bytes,
        session_timeout: session_timeout.map(Duration::from_millis),
        tls,
        tls_session_tickets,
        keep_alive,
    });
    (server, auth)
}

/// `KeepAliveSettings`, with Scan Engine's ranges and defaults.
fn keep_alive(ctx: &mut Ctx, el: &Element<'_>, parent: &str) -> KeepAlive {
    let path = join(parent, "KeepAliveSettings");
    let g = Group::new(ctx, el, path, KEEP_ALIVE, Unknown::Reject);
    let idle_ms = zero_is_none(g.uint(ctx, "TimeoutMs", 18_000), 5_000);
    let max_requests = zero_is_none(g.uint(ctx, "MaxRequests", 1_000), 1_000);
    KeepAlive {
        enabled: g.flag(ctx, "Enabled").unwrap_or(true),
        idle_timeout: idle_ms.map(Duration::from_millis),
        max_requests: max_requests.map(|n| u32::try_from(n).expect("capped at 1000")),
    }
}

/// Scan Engine's convention for limits: absent means the default, 0 means none.
fn zero_is_none(value: Option<u64>, default: u64) -> Option<u64> {
    match value {
        None => Some(default),
        Some(0) => None,
        Some(n) => Some(n),
    }
}

/// `ConnectionString`: `http://ip:port`, `https://ip:port` or a unix socket path.
fn listen_addr(ctx: &mut Ctx, leaf: &Leaf<'_, '_>) -> Option<ListenAddr> {
    let text = leaf.text;
    let parsed = match text.split_once("://") {
        // Scan Engine on Windows writes a bare `127.0.0.1:9999`; as a socket path it would surprise.
        None if socket_addr(text).is_ok() => Err(format!(
            "ConnectionString {text:?} has no scheme: write http://{text} or https://{text}"
        )),
        None => unix_path(text).map(ListenAddr::Unix),
        Some((scheme, rest)) => {
            let tls = match scheme.to_ascii_lowercase().as_str() {
                "http" => Some(false),
                "https" => Some(true),
                _ => None,
            };
            let rest = rest.strip_suffix('/').unwrap_or(rest);
            match tls {
                Some(tls) => socket_addr(rest)
                    .map(|addr| ListenAddr::Tcp { addr, tls })
                    .map_err(|why| format!("ConnectionString {text:?}: {why}")),
                None => Err(format!(
                    "ConnectionString must be http://ip:port, https://ip:port or a unix socket \
                     path, found {text:?}"
                )),
            }
        }
    };
    parsed.map_err(|rule| ctx.bad(leaf, rule)).ok()
}

/// `ip:port`, `[v6]:port` or `localhost:port`. Host names are refused: a listener binds an address,
/// and resolving a name at start-up would make the bind depend on DNS.
pub(crate) fn socket_addr(text: &str) -> Result<SocketAddr, &'static str> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err("needs a port, as in 127.0.0.1:8080");
    };
    let port = match port.parse::<u16>() {
        Ok(n) if port.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => return Err("the port must be a number from 0 to 65535"),
    };
    if host.eq_ignore_ascii_case("localhost") {
        Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
    } else if host.parse::<IpAddr>().is_ok() {
        Err("write an IPv6 address in brackets, as in [::1]:8080")
    } else {
        Err("use an IP address (or localhost), not a host name")
    }
}

/// A unix socket path, if the kernel can bind it.
pub(crate) fn unix_path(text: &str) -> Result<PathBuf, String> {
    if text.len() > MAX_UNIX_PATH_BYTES {
        return Err(format!(
            "unix socket path is {} bytes long; the limit is {MAX_UNIX_PATH_BYTES}",
            text.len()
        ));
    }
    Ok(PathBuf::from(text))
}
