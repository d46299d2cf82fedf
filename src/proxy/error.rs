//! The one place where gateway failures become HTTP statuses.
//!
//! Downstream faults (the client's) are 4xx; upstream faults are 502/503/504. Every body is a small
//! JSON `{"error": "..."}` that never echoes anything the client sent.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use super::body::ProxyBody;
use crate::auth::header::AuthFailure;
use crate::auth::limits::{Denied, LimitKind};

/// The `WWW-Authenticate` values of a 401, built once per reload from the realm and scheme.
#[derive(Debug, Clone)]
pub struct Challenge {
    /// `Bearer realm="…"` (or `Token realm="…"`): no credential, or a static token refused.
    pub plain: HeaderValue,
    /// `Bearer realm="…", error="invalid_token"` (RFC 6750 §3.1): an access token that is
    /// expired, revoked or forged.
    pub invalid_token: HeaderValue,
}

impl Challenge {
    /// The challenges for `realm`; `bearer` is UseBearerAuthScheme.
    pub fn new(realm: &str, bearer: bool) -> Challenge {
        let scheme = if bearer { "Bearer" } else { "Token" };
        // The realm was validated as a quoted-string-safe header value.
        let value = |extra: &str| {
            HeaderValue::from_str(&format!(r#"{scheme} realm="{realm}"{extra}"#))
                .expect("a validated realm makes a valid header value")
        };
        Challenge {
            plain: value(""),
            invalid_token: value(r#", error="invalid_token""#),
        }
    }
}

/// Everything the gateway itself can answer with instead of the upstream's response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayError {
    /// 401: no usable token, an unknown one or a disabled one.
    Unauthorized(AuthFailure),
    /// 403: the token's role may not make this call.
    Forbidden,
    /// 403: a `scanfile` object outside `ScanningPaths`, or a body that names none scangate can
    /// read exactly.
    ScanPathRefused,
    /// 400: a request scangate refuses to forward (ambiguous framing and the like).
    BadRequest(&'static str),
    /// 408: SessionTimeout passed while the request body was still arriving.
    RequestTimeout,
    /// 413: the body is larger than MaxTCPFileSize (declared or streamed).
    PayloadTooLarge,
    /// 502: the upstream refused the connection, reset it or sent garbage.
    UpstreamFailed,
    /// 503: no scan engine the request may use is up (active checks), so it fails at once.
    Unavailable,
    /// 503: MaxHTTPSessionsNum connections are open and none freed up in time.
    Overloaded,
    /// 503: the client's address holds MaxConnectionsPerClient connections already.
    TooManyConnections,
    /// 503 with `Retry-After`: every engine the request may use is at its MaxSessions, and no
    /// session came free within QueueTimeoutMs (or the queue held MaxQueue requests already).
    EnginesBusy,
    /// 504: the upstream did not answer within SessionTimeout.
    UpstreamTimeout,
    /// The token exchange refused the request (RFC 6749 §5.2 bodies).
    Exchange(ExchangeRefusal),
    /// 429 with `Retry-After`: the principal is over its rate, concurrency or quota limit.
    Limited(Denied),
}

/// How the exchange endpoint refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeRefusal {
    /// 400 `invalid_request`: the body is not `{"refresh_token": "…"}`.
    InvalidRequest,
    /// 413 `invalid_request`: the body is over 4 KiB.
    TooLarge,
    /// 400 `invalid_grant`: unknown, expired, used, revoked or foreign; never saying which.
    InvalidGrant,
    /// 405: only POST exchanges.
    MethodNotAllowed,
    /// 503 `temporarily_unavailable` with `Retry-After`: the session store is down.
    Unavailable,
}

impl GatewayError {
    /// The status for this failure.
    pub fn status(self) -> StatusCode {
        match self {
            GatewayError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            GatewayError::Forbidden | GatewayError::ScanPathRefused => StatusCode::FORBIDDEN,
            GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            GatewayError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::UpstreamFailed => StatusCode::BAD_GATEWAY,
            GatewayError::Unavailable
            | GatewayError::Overloaded
            | GatewayError::TooManyConnections
            | GatewayError::EnginesBusy => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::Limited(_) => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::Exchange(why) => match why {
                ExchangeRefusal::InvalidRequest | ExchangeRefusal::InvalidGrant => {
                    StatusCode::BAD_REQUEST
                }
                ExchangeRefusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                ExchangeRefusal::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
                ExchangeRefusal::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            },
        }
    }

    /// The JSON body. Built from constants only: nothing from the request is echoed.
    pub fn body(self) -> Bytes {
        let text = match self {
            GatewayError::Unauthorized(AuthFailure::Missing) => r#"{"error":"missing API token"}"#,
            GatewayError::Unauthorized(AuthFailure::Scheme) => {
                r#"{"error":"malformed API token header"}"#
            }
            GatewayError::Unauthorized(f) if f.is_access_token() => r#"{"error":"invalid_token"}"#,
            GatewayError::Unauthorized(_) => r#"{"error":"invalid API token"}"#,
            GatewayError::Forbidden => r#"{"error":"token not allowed for this operation"}"#,
            GatewayError::ScanPathRefused => r#"{"error":"scan path not allowed"}"#,
            GatewayError::BadRequest(reason) => {
                return Bytes::from(format!(r#"{{"error":"bad request: {reason}"}}"#));
            }
            GatewayError::RequestTimeout => r#"{"error":"request timeout"}"#,
            GatewayError::PayloadTooLarge => r#"{"error":"request body too large"}"#,
            GatewayError::UpstreamFailed => r#"{"error":"upstream connection failed"}"#,
            GatewayError::Unavailable => r#"{"error":"no scan engine available"}"#,
            GatewayError::Overloaded => r#"{"error":"gateway overloaded"}"#,
            GatewayError::TooManyConnections => {
                r#"{"error":"too many connections from this address"}"#
            }
            GatewayError::EnginesBusy => r#"{"error":"all scan engines busy"}"#,
            GatewayError::UpstreamTimeout => r#"{"error":"upstream timeout"}"#,
            GatewayError::Limited(denied) => match denied.kind {
                LimitKind::Rate => r#"{"error":"rate limit exceeded"}"#,
                LimitKind::Concurrency => r#"{"error":"too many concurrent requests"}"#,
                LimitKind::Quota => r#"{"error":"quota exceeded"}"#,
            },
            GatewayError::Exchange(why) => match why {
                ExchangeRefusal::InvalidRequest | ExchangeRefusal::TooLarge => {
                    r#"{"error":"invalid_request"}"#
                }
                ExchangeRefusal::InvalidGrant => r#"{"error":"invalid_grant"}"#,
                ExchangeRefusal::MethodNotAllowed => r#"{"error":"method not allowed"}"#,
                ExchangeRefusal::Unavailable => r#"{"error":"temporarily_unavailable"}"#,
            },
        };
        Bytes::from_static(text.as_bytes())
    }

    /// Why the gateway answered itself, for the access log: the auth reason for 401s, else the
    /// condition.
    pub fn reason(self) -> &'static str {
        match self {
            GatewayError::Unauthorized(failure) => failure.as_str(),
            GatewayError::Forbidden => "forbidden",
            GatewayError::ScanPathRefused => "scan_path",
            GatewayError::BadRequest(_) => "bad_request",
            GatewayError::RequestTimeout => "request_timeout",
            GatewayError::PayloadTooLarge => "too_large",
            GatewayError::UpstreamFailed => "upstream_failed",
            GatewayError::Unavailable => "no_upstream",
            GatewayError::Overloaded => "overloaded",
            GatewayError::TooManyConnections => "client_connections",
            GatewayError::EnginesBusy => "engines_busy",
            GatewayError::UpstreamTimeout => "upstream_timeout",
            GatewayError::Limited(denied) => denied.kind.reason(),
            GatewayError::Exchange(why) => match why {
                ExchangeRefusal::InvalidRequest | ExchangeRefusal::TooLarge => "invalid_request",
                ExchangeRefusal::InvalidGrant => "invalid_grant",
                ExchangeRefusal::MethodNotAllowed => "method_not_allowed",
                ExchangeRefusal::Unavailable => "store_unavailable",
            },
        }
    }

    /// Which side failed, for logs and metrics.
    pub fn side(self) -> &'static str {
        match self {
            GatewayError::UpstreamFailed
            | GatewayError::Unavailable
            | GatewayError::EnginesBusy
            | GatewayError::UpstreamTimeout => "upstream",
            GatewayError::Overloaded | GatewayError::Exchange(ExchangeRefusal::Unavailable) => {
                "gateway"
            }
            _ => "downstream",
        }
    }

    /// The same answer as raw HTTP/1.1 bytes, for connections turned away before hyper serves them.
    pub fn raw_http1(self) -> Vec<u8> {
        let body = self.body();
        let status = self.status();
        let mut out = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(&body);
        out
    }

    /// The response. `challenge` holds the precomputed `WWW-Authenticate` values for 401s.
    pub fn into_response(self, challenge: &Challenge) -> Response<ProxyBody> {
        let mut resp = Response::new(ProxyBody::full(self.body()));
        *resp.status_mut() = self.status();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let GatewayError::Unauthorized(failure) = self {
            let value = match failure.is_access_token() {
                true => &challenge.invalid_token,
                false => &challenge.plain,
            };
            h.insert(header::WWW_AUTHENTICATE, value.clone());
        }
        match self {
            GatewayError::Exchange(ExchangeRefusal::Unavailable) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            GatewayError::Exchange(ExchangeRefusal::MethodNotAllowed) => {
                h.insert(header::ALLOW, HeaderValue::from_static("POST"));
            }
            _ => {}
        }
        if let GatewayError::Limited(denied) = self {
            h.insert(
                header::RETRY_AFTER,
                HeaderValue::from(denied.retry_after_secs),
            );
        }
        if self == GatewayError::EnginesBusy {
            // Scans take seconds at most: by then a connection has likely come free.
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if matches!(
            self,
            GatewayError::RequestTimeout
                | GatewayError::PayloadTooLarge
                | GatewayError::BadRequest(_)
                | GatewayError::Exchange(ExchangeRefusal::TooLarge)
        ) {
            // The rest of the request body is unread; the connection cannot be reused.
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_body_is_json_with_an_error_field() {
        let all = [
            GatewayError::Unauthorized(AuthFailure::Missing),
            GatewayError::Unauthorized(AuthFailure::Scheme),
            GatewayError::Unauthorized(AuthFailure::Unknown),
            GatewayError::Forbidden,
            GatewayError::ScanPathRefused,
            GatewayError::BadRequest("x"),
            GatewayError::RequestTimeout,
            GatewayError::PayloadTooLarge,
            GatewayError::UpstreamFailed,
            GatewayError::Unavailable,
            GatewayError::Overloaded,
            GatewayError::TooManyConnections,
            GatewayError::EnginesBusy,
            GatewayError::UpstreamTimeout,
            GatewayError::Exchange(ExchangeRefusal::InvalidRequest),
            GatewayError::Exchange(ExchangeRefusal::TooLarge),
            GatewayError::Exchange(ExchangeRefusal::InvalidGrant),
            GatewayError::Exchange(ExchangeRefusal::MethodNotAllowed),
            GatewayError::Exchange(ExchangeRefusal::Unavailable),
            GatewayError::Limited(Denied {
                kind: LimitKind::Rate,
                policy: "burst",
                retry_after_secs: 1,
            }),
        ];
        for e in all {
            let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
            assert!(v["error"].is_string(), "{e:?}");
        }
    }

    #[test]
    fn unauthorized_carries_the_challenge() {
        let challenge = Challenge::new("scangate", true);
        let resp = GatewayError::Unauthorized(AuthFailure::Unknown).into_response(&challenge);
        assert_eq!(resp.status(), 401);
        assert_eq!(
            resp.headers()[header::WWW_AUTHENTICATE],
            r#"Bearer realm="scangate""#
        );
        let expired = GatewayError::Unauthorized(AuthFailure::Expired).into_response(&challenge);
        assert_eq!(expired.status(), 401);
        assert_eq!(
            expired.headers()[header::WWW_AUTHENTICATE],
            r#"Bearer realm="scangate", error="invalid_token""#
        );
        let token = Challenge::new("r", false);
        let resp = GatewayError::Unauthorized(AuthFailure::Revoked).into_response(&token);
        assert_eq!(
            resp.headers()[header::WWW_AUTHENTICATE],
            r#"Token realm="r", error="invalid_token""#
        );
        let resp = GatewayError::UpstreamTimeout.into_response(&challenge);
        assert_eq!(resp.status(), 504);
        assert!(resp.headers().get(header::WWW_AUTHENTICATE).is_none());
    }

    #[test]
    fn a_limit_is_a_429_with_its_message_reason_and_retry_after() {
        let cases = [
            (
                LimitKind::Rate,
                1,
                r#"{"error":"rate limit exceeded"}"#,
                "rate_limited",
            ),
            (
                LimitKind::Concurrency,
                1,
                r#"{"error":"too many concurrent requests"}"#,
                "concurrency_limited",
            ),
            (
                LimitKind::Quota,
                3600,
                r#"{"error":"quota exceeded"}"#,
                "quota_exceeded",
            ),
        ];
        for (kind, secs, body, reason) in cases {
            let err = GatewayError::Limited(Denied {
                kind,
                policy: "any",
                retry_after_secs: secs,
            });
            let resp = err.into_response(&Challenge::new("r", true));
            assert_eq!(resp.status(), 429);
            assert_eq!(
                resp.headers()[header::RETRY_AFTER],
                secs.to_string().as_str()
            );
            assert_eq!(err.body(), body.as_bytes());
            assert_eq!((err.reason(), err.side()), (reason, "downstream"));
        }
    }
}
