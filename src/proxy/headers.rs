//! Header rules for both directions: hop-by-hop removal (RFC 9110 §7.6.1), the token header and
//! client-sent `X-Scangate-*` removal, and the forwarding headers scangate adds.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection, never the message (RFC 9110 §7.6.1 and common legacy ones).
/// `Expect` is here too: hyper answers `100 Continue` to the client itself when the body is first
/// read, so passing it on would make the upstream send a second, unexpected interim response.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::EXPECT,
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// The prefix of headers only scangate may set. Anything a client sends with it is dropped, so a
/// backend can trust `X-Scangate-Token-Name`.
const SCANGATE_PREFIX: &[u8] = b"x-scangate-";

/// `X-Scangate-Token-Name`: the authenticated token's Name.
pub static X_SCANGATE_TOKEN_NAME: HeaderName = HeaderName::from_static("x-scangate-token-name");
/// `X-Scangate-Tenants`: the token's tenants, comma-separated.
pub static X_SCANGATE_TENANTS: HeaderName = HeaderName::from_static("x-scangate-tenants");
/// `X-Scangate-Root-Tenant: 1`: the principal's scope includes MDR's "Root without tenants"
/// (assets of no tenant). Absent otherwise.
pub static X_SCANGATE_ROOT_TENANT: HeaderName = HeaderName::from_static("x-scangate-root-tenant");
/// `X-Forwarded-For`.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes hop-by-hop headers, including every header the `Connection` header names. `Upgrade` is
/// removed too: scangate does not tunnel protocol upgrades.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // The usual request has none, and the usual response only `Connection: keep-alive`: one pass
    // over the names finds them, and only names that are there are removed.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let mut doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| is_hop_by_hop(k))
        .cloned()
        .collect();
    // Names listed in Connection go too (`keep-alive` and `close` are options, not headers).
    for value in headers.get_all(header::CONNECTION) {
        let Ok(value) = value.to_str() else { continue };
        for option in value.split(',').map(str::trim) {
            if option.eq_ignore_ascii_case("keep-alive") || option.eq_ignore_ascii_case("close") {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(option.as_bytes()) {
                doomed.push(name);
            }
        }
    }
    for name in doomed {
        headers.remove(name);
    }
}

/// Removes client-sent `X-Scangate-*` headers. Allocates only when the client sent some.
pub fn strip_scangate(headers: &mut HeaderMap) {
    let forged = headers.keys().any(is_scangate);
    if forged {
        let names: Vec<HeaderName> = headers.keys().filter(|k| is_scangate(k)).cloned().collect();
        for name in names {
            headers.remove(name);
        }
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::UPGRADE || HOP_BY_HOP.contains(name)
}

fn is_scangate(name: &HeaderName) -> bool {
    name.as_str().as_bytes().starts_with(SCANGATE_PREFIX)
}

/// What the gateway tells the upstream about the downstream connection.
#[derive(Debug, Clone, Copy)]
pub struct Forwarded<'a> {
    /// The client's IP as a header value ([`client_ip`]); `None` on a unix socket.
    pub client_ip: Option<&'a HeaderValue>,
    /// The client listener terminates TLS.
    pub https: bool,
}

/// A client's IP as an `X-Forwarded-For` element, made once per connection.
pub fn client_ip(ip: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&ip.to_string()).expect("an IP address is a valid header value")
}

/// Adds `X-Forwarded-For` (appended to what earlier proxies wrote), `X-Forwarded-Proto` and
/// `X-Forwarded-Host` (the Host the client asked for; `host` is it, from the header or the h2
/// `:authority`).
pub fn add_forwarded(headers: &mut HeaderMap, fwd: Forwarded, host: Option<HeaderValue>) {
    if let Some(ip) = fwd.client_ip {
        let value = match headers.get(&X_FORWARDED_FOR).map(HeaderValue::as_bytes) {
            Some(prior) => HeaderValue::from_bytes(&[prior, b", ", ip.as_bytes()].concat()).ok(),
            None => Some(ip.clone()),
        };
        if let Some(v) = value {
            headers.insert(X_FORWARDED_FOR.clone(), v);
        }
    }
    let proto = if fwd.https { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    if let Some(host) = host {
        headers.insert(X_FORWARDED_HOST.clone(), host);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Custom-Hop"),
            ("keep-alive", "timeout=5"),
            ("x-custom-hop", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic x"),
            ("expect", "100-continue"),
            ("content-type", "application/json"),
            ("x-kav-timeout", "10"),
        ]);
        strip_hop_by_hop(&mut h);
        // HeaderMap keeps no order across removals; which names are left is what counts.
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "x-kav-timeout"]);
    }

    #[test]
    fn strips_only_scangate_prefixed_headers() {
        let mut h = map(&[
            ("x-scangate-token-name", "forged"),
            ("X-Scangate-Tenants", "evil"),
            ("x-scangatex", "keep"),
        ]);
        strip_scangate(&mut h);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-scangatex"]);
    }

    #[test]
    fn forwarded_headers_append_the_client() {
        let mut h = map(&[("x-forwarded-for", "10.0.0.1")]);
        let ip = client_ip("192.0.2.7".parse().unwrap());
        let fwd = Forwarded {
            client_ip: Some(&ip),
            https: true,
        };
        add_forwarded(
            &mut h,
            fwd,
            Some(HeaderValue::from_static("scan.example:8443")),
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "scan.example:8443");

        let mut h = HeaderMap::new();
        add_forwarded(
            &mut h,
            Forwarded {
                client_ip: None,
                https: false,
            },
            None,
        );
        assert!(h.get("x-forwarded-for").is_none());
        assert_eq!(h["x-forwarded-proto"], "http");
    }
}
