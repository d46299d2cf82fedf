//! What the admin listener checks before it answers: the `Host` a request names, the credential
//! `/config` needs when the listener is reachable from other hosts, and the cap on its
//! connections.
//!
//! The admin listener is not behind client auth, so on loopback anything local can read it. Two
//! attacks reach it from further away:
//! - **DNS rebinding.** A page in a browser on the gateway's host points a name it controls at
//!   127.0.0.1 and reads the admin pages as same-origin. The browser then sends that name as
//!   `Host`, so a listener that answers only IP literals and `localhost` gives it nothing.
//! - **Exposure.** An admin listener bound off loopback (a container binds `0.0.0.0`) is reachable
//!   by every host on that network. Liveness, readiness and metrics stay open there, since
//!   kubelets and scrapers need them and they name no credential. `/config` lists every token
//!   name, role and state, the config path and the last reload error, so off loopback it needs an
//!   Administrator token, presented as clients present theirs.

use std::net::{IpAddr, SocketAddr};

use http::{header, HeaderMap};

use crate::auth::header::{extract, AuthFailure};
use crate::auth::store::{Lookup, TokenStore};
use crate::config::Role;
use crate::state::Snapshot;

/// Admin connections served at once. Scrapers, probes and an operator need a handful; past the
/// cap a connection is closed at once, so a flood of them cannot exhaust file descriptors.
pub const MAX_ADMIN_CONNECTIONS: usize = 64;

/// Whether `Host` names this listener in a way no DNS-rebinding page can: an IP literal (with or
/// without a port) or `localhost`. A request without `Host` (HTTP/1.0) passes: browsers always
/// send one. Two `Host` headers fail.
pub fn host_allowed(headers: &HeaderMap) -> bool {
    let mut hosts = headers.get_all(header::HOST).iter();
    let Some(host) = hosts.next() else {
        return true;
    };
    if hosts.next().is_some() {
        return false;
    }
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = strip_port(host);
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok()
        || name
            .strip_prefix('[')
            .and_then(|v6| v6.strip_suffix(']'))
            .is_some_and(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok())
}

/// `host` without a trailing `:port`. A bare IPv6 literal (several colons, no brackets) is left
/// whole; HTTP requires the brackets, and the parse above then accepts it as an address anyway.
fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (name.starts_with('[') || !name.contains(':')) =>
        {
            name
        }
        _ => host,
    }
}

/// Whether pages that list names and errors need an Administrator token on this listener: only
/// when it is bound off loopback.
pub fn needs_credential(bound: Option<SocketAddr>) -> bool {
    !bound.is_some_and(|a| a.ip().is_loopback())
}

/// Why a request may not read a protected admin page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No usable token (401): missing, malformed, unknown or disabled, or token auth is off.
    Unauthorized(AuthFailure),
    /// A valid token whose role is not Administrator (403).
    NotAdministrator,
}

/// Checks for the admin credential: a valid token whose role is Administrator (or no Role, which
/// has full access on the client listener too), sent in `AuthRequestField` the way clients send
/// theirs. With UseAccessToken=0 there is no token to present, so the answer is always 401.
pub fn administrator(
    snap: &Snapshot,
    tokens: &TokenStore,
    headers: &HeaderMap,
) -> Result<(), Denied> {
    let key = match (&snap.key, snap.auth_enabled) {
        (Some(key), true) => key,
        _ => return Err(Denied::Unauthorized(AuthFailure::Unknown)),
    };
    let token = extract(headers, &snap.auth_field, snap.bearer).map_err(Denied::Unauthorized)?;
    match tokens.lookup(&key.digest(token)) {
        Lookup::Valid(record) => match record.role() {
            None | Some(Role::Administrator) => Ok(()),
            Some(_) => Err(Denied::NotAdministrator),
        },
        Lookup::Disabled(_) => Err(Denied::Unauthorized(AuthFailure::Disabled)),
        Lookup::Unknown => Err(Denied::Unauthorized(AuthFailure::Unknown)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with_host(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::HOST, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn only_ip_literals_and_localhost_are_accepted_as_host() {
        for ok in [
            "127.0.0.1",
            "127.0.0.1:9090",
            "10.1.2.3:9090",
            "localhost",
            "LocalHost:9090",
            "[::1]",
            "[::1]:9090",
            "::1",
        ] {
            assert!(host_allowed(&with_host(&[ok])), "{ok} should pass");
        }
        for bad in [
            "attacker.example",
            "attacker.example:9090",
            "localhost.attacker.example",
            "127.0.0.1.nip.io",
            "localhost:",
            "localhost:90x",
            "[::1",
            "[evil]:9090",
            "",
        ] {
            assert!(!host_allowed(&with_host(&[bad])), "{bad} should fail");
        }
        assert!(host_allowed(&HeaderMap::new()), "no Host (HTTP/1.0)");
        assert!(!host_allowed(&with_host(&["127.0.0.1", "127.0.0.1"])));
        let mut h = HeaderMap::new();
        h.insert(
            header::HOST,
            HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        );
        assert!(!host_allowed(&h), "non-ASCII Host");
    }

    #[test]
    fn credential_is_needed_off_loopback_only() {
        assert!(!needs_credential(Some("127.0.0.1:9090".parse().unwrap())));
        assert!(!needs_credential(Some("[::1]:9090".parse().unwrap())));
        assert!(needs_credential(Some("0.0.0.0:9090".parse().unwrap())));
        assert!(needs_credential(Some("192.0.2.4:9090".parse().unwrap())));
        assert!(needs_credential(None));
    }
}
