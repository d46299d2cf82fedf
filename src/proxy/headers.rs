//! Header rules for both directions: hop-by-hop removal (RFC 9110 §7.6.1), removal of what a client
//! may not claim (the token header, `X-Scangate-*`, forwarding headers, in every `_`/`-` spelling),
//! and the forwarding headers scangate adds.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection, never the message (RFC 9110 §7.6.1 and common legacy ones).
/// `Expect` is here too: hyper answers `100 Continue` to the client itself when the body is first
/// read, so passing it on would make the upstream send a second, unexpected interim response.
const HOP_BY_HOP: [HeaderName; 10] = [
    header::EXPECT,
    header::UPGRADE,
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// `X-Scangate-Token-Name`: the authenticated token's Name. Only scangate sets it (a client's is
/// removed by [`strip_client_claims`]), so a backend can trust it.
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
    // over the names notes which fixed names are there, and only those are removed. Nothing is
    // allocated unless `Connection` names a header.
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(i) = hop_by_hop_index(name) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    // Names listed in Connection go too (`keep-alive` and `close` are options, not headers).
    let mut listed: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
        let Ok(value) = value.to_str() else { continue };
        for option in value.split(',').map(str::trim) {
            if option.eq_ignore_ascii_case("keep-alive") || option.eq_ignore_ascii_case("close") {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(option.as_bytes()) {
                listed.push(name);
            }
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    for name in listed {
        headers.remove(name);
    }
}

/// Removes what a client may not say about itself: the token header (`auth_field`, when scangate
/// checks tokens), `X-Scangate-*`, `Forwarded`, `X-Real-IP`, every `X-Forwarded-*` but
/// `X-Forwarded-For` (which [`add_forwarded`] extends) and the URL overrides `X-Original-URL` and
/// `X-Rewrite-URL` (some backends route by them, around the policy's path check).
///
/// Names are compared with `_` read as `-`: CGI, WSGI, PHP and Rack backends see `X_Scangate_Tenants`
/// as `X-Scangate-Tenants`, so every spelling goes. One pass over the names; nothing is allocated
/// unless the client sent such a header.
pub fn strip_client_claims(headers: &mut HeaderMap, auth_field: Option<&HeaderName>) {
    // The token header itself is in nearly every request: a lookup, not the allocating path below.
    if let Some(field) = auth_field {
        headers.remove(field);
    }
    let field = auth_field.map(|f| f.as_str().as_bytes());
    let is_claim = |name: &HeaderName| is_client_claim(name.as_str().as_bytes(), field);
    if !headers.keys().any(is_claim) {
        return;
    }
    let names: Vec<HeaderName> = headers.keys().filter(|k| is_claim(k)).cloned().collect();
    for name in names {
        headers.remove(name);
    }
}

fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    HOP_BY_HOP.iter().position(|h| h == name)
}

/// Whether a (lowercase) header name is one [`strip_client_claims`] removes. `field` is the token
/// header; its exact spelling is already gone, so only its other spellings count here.
fn is_client_claim(name: &[u8], field: Option<&[u8]>) -> bool {
    if field.is_some_and(|f| f != name && same_name(name, f)) {
        return true;
    }
    // Every fixed name below starts with `x` or `f`: most names are done after one byte.
    if !matches!(name.first(), Some(b'x' | b'f')) {
        return false;
    }
    if starts_with_name(name, b"x-scangate-") {
        return true;
    }
    if starts_with_name(name, b"x-forwarded-") {
        return name != b"x-forwarded-for";
    }
    [
        &b"forwarded"[..],
        b"x-real-ip",
        b"x-original-url",
        b"x-rewrite-url",
    ]
    .iter()
    .any(|claim| same_name(name, claim))
}

/// Header names as a backend that merges `_` and `-` compares them. Both sides are lowercase.
fn same_name(a: &[u8], b: &[u8]) -> bool {
    let dash = |c: u8| if c == b'_' { b'-' } else { c };
    a.len() == b.len() && a.iter().zip(b).all(|(&x, &y)| dash(x) == dash(y))
}

/// [`same_name`] for a prefix.
fn starts_with_name(name: &[u8], prefix: &[u8]) -> bool {
    name.get(..prefix.len())
        .is_some_and(|head| same_name(head, prefix))
}

/// What the gateway tells the upstream about the downstream connection.
#[derive(Debug, Clone, Copy)]
pub struct Forwarded<'a> {
    /// The client's IP as a header value ([`client_ip`]); `None` on a unix socket, where
    /// `X-Forwarded-For` gets [`UNIX_CLIENT`] instead.
    pub client_ip: Option<&'a HeaderValue>,
    /// The client listener terminates TLS.
    pub https: bool,
}

/// A client's IP as an `X-Forwarded-For` element, made once per connection.
pub fn client_ip(ip: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&ip.to_string()).expect("an IP address is a valid header value")
}

/// The `X-Forwarded-For` element for a client on a unix socket, which has no address. Written
/// anyway, so the last element is always scangate's own view and a client-sent list can never pass
/// as the whole truth (nginx writes `unix:` in the same place).
pub static UNIX_CLIENT: HeaderValue = HeaderValue::from_static("unix");

/// Adds `X-Forwarded-For` (the client's IP, or [`UNIX_CLIENT`], appended to what earlier proxies
/// wrote), `X-Forwarded-Proto` and `X-Forwarded-Host` (the Host the client asked for; `host` is it,
/// from the header or the h2 `:authority`). Run [`strip_client_claims`] first: it removes the other
/// forwarding headers a client could forge.
pub fn add_forwarded(headers: &mut HeaderMap, fwd: Forwarded, host: Option<HeaderValue>) {
    let last = fwd.client_ip.unwrap_or(&UNIX_CLIENT);
    let mut prior = headers.get_all(&X_FORWARDED_FOR).iter().peekable();
    let value = match prior.peek() {
        None => last.clone(),
        Some(_) => {
            // Several header lines are one comma-separated list (RFC 9110 §5.3).
            let mut joined = Vec::with_capacity(64);
            for v in prior {
                joined.extend_from_slice(v.as_bytes());
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(last.as_bytes());
            HeaderValue::from_bytes(&joined).expect("header values joined by \", \" are one")
        }
    };
    headers.insert(X_FORWARDED_FOR.clone(), value);
    let proto = if fwd.https { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    if let Some(host) = host {
        headers.insert(X_FORWARDED_HOST.clone(), host);
    }
}

/// Whether the request's Content-Type is `multipart/*` (KAV protocol v2 bodies).
pub fn is_multipart(headers: &HeaderMap) -> bool {
    (headers.get(header::CONTENT_TYPE))
        .and_then(|v| v.as_bytes().get(..10))
        .is_some_and(|kind| kind.eq_ignore_ascii_case(b"multipart/"))
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
    fn strips_names_from_every_connection_line_and_keeps_the_rest() {
        let mut h = map(&[
            ("connection", "close"),
            ("connection", "x-a , X-B"),
            ("x-a", "1"),
            ("x-b", "2"),
            ("x-c", "3"),
            ("upgrade", "websocket"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(left(&h), ["x-c"]);
        // No hop-by-hop name (one only looks like one): nothing is removed.
        let mut h = map(&[("x-a", "1"), ("keep-alive-ish", "2")]);
        strip_hop_by_hop(&mut h);
        assert_eq!(left(&h), ["keep-alive-ish", "x-a"]);
        // Only the last fixed name present still goes.
        let mut h = map(&[("x-a", "1"), ("transfer-encoding", "chunked")]);
        strip_hop_by_hop(&mut h);
        assert_eq!(left(&h), ["x-a"]);
    }

    fn left(h: &HeaderMap) -> Vec<&str> {
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        left
    }

    #[test]
    fn strips_client_claims_in_every_spelling() {
        let mut h = map(&[
            ("x-scangate-token-name", "forged"),
            ("X-Scangate-Tenants", "evil"),
            ("X_Scangate_Tenants", "evil"),
            ("x_scangate-token_name", "evil"),
            ("x-scangatex", "keep"),
            ("x_scangatex", "keep"),
            ("forwarded", "for=1.2.3.4"),
            ("Forwarded_", "keep"),
            ("x-real-ip", "1.2.3.4"),
            ("X_Real_Ip", "1.2.3.4"),
            ("x-real-ipx", "keep"),
            ("x-forwarded-for", "keep"),
            ("x_forwarded_for", "1.2.3.4"),
            ("x-forwarded-port", "443"),
            ("x-forwarded-prefix", "/x"),
            ("x_forwarded_proto", "https"),
            ("x-forwarded-host", "evil"),
            ("x-forwardedx", "keep"),
            ("x-original-url", "/x"),
            ("x_rewrite_url", "/x"),
            ("authorization", "Bearer t"),
            ("content-type", "application/json"),
            ("f", "keep"),
            ("x", "keep"),
        ]);
        strip_client_claims(&mut h, None);
        let want = [
            "authorization",
            "content-type",
            "f",
            "forwarded_",
            "x",
            "x-forwarded-for",
            "x-forwardedx",
            "x-real-ipx",
            "x-scangatex",
            "x_scangatex",
        ];
        assert_eq!(left(&h), want);
    }

    #[test]
    fn strips_the_token_header_in_every_spelling() {
        let field = HeaderName::from_static("x-api-key");
        let mut h = map(&[
            ("x-api-key", "t"),
            ("x_api_key", "t"),
            ("x-api_key", "t"),
            ("x-api-keys", "keep"),
            ("x-api-ke", "keep"),
            ("authorization", "keep"),
        ]);
        strip_client_claims(&mut h, Some(&field));
        assert_eq!(left(&h), ["authorization", "x-api-ke", "x-api-keys"]);

        // A field written with `_` loses its `-` spelling too; without a field nothing of it goes.
        let field = HeaderName::from_static("x_api_key");
        let mut h = map(&[("x-api-key", "t"), ("x_api_key", "t")]);
        strip_client_claims(&mut h, Some(&field));
        assert!(h.is_empty());
        let mut h = map(&[("x-api-key", "t"), ("authorization", "t")]);
        strip_client_claims(&mut h, None);
        assert_eq!(left(&h), ["authorization", "x-api-key"]);
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
        assert_eq!(h["x-forwarded-for"], "unix");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert!(h.get("x-forwarded-host").is_none());

        // Several client lines are one list; on a unix socket `unix` is the last element.
        let mut h = map(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-for", "10.0.0.2"),
        ]);
        let fwd = Forwarded {
            client_ip: None,
            https: false,
        };
        add_forwarded(&mut h, fwd, None);
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 10.0.0.2, unix");
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
    }
}
